"""DICOM objects of a scored radiograph (anatpaste.report) on the real chest DICOMs of ../shared/data/dicom:
what highdicom/pydicom read back, the references to the source, and dciodvfy's verdict."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_check import dciodvfy_errors
from shared_data import SHARED_DATA

from anatpaste.gate.content import check_content
from anatpaste.io import read_radiograph
from anatpaste.report import Finding, Review, build_objects, review_sr, write_objects
from anatpaste.report import codes as C
from anatpaste.score.detector import Detector
from anatpaste.score.overlay import render_overlay

DICOM = SHARED_DATA / "dicom"
# uncompressed CR with a zero Pixel Spacing; the same film as JPEG 2000; a lossy JPEG secondary capture with an
# invalid Patient's Age and no compression ratio
SOURCES = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "siim_cr_chest_mono2_jpeg.dcm"]


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.load()


def _scored(detector: Detector, name: str, flags: list[str] | None = None) -> tuple[pydicom.Dataset, Finding]:
    path = DICOM / name
    assert path.is_file(), f"missing {path} (CI provides ../shared/data)"
    gate = check_content(read_radiograph(path).pixels, str(path))
    res = detector.score(gate.pixels, maps=True)
    finding = Finding.of(res, gate.flags + (flags or []), gate.fixed, gate.pixels, detector.heat_display_max)
    return pydicom.dcmread(path), finding


@pytest.fixture(scope="module")
def written(detector, tmp_path_factory):
    """{name: (source, finding, {kind: path})} for every source, all three kinds written as files."""
    out = {}
    for i, name in enumerate(SOURCES):
        source, finding = _scored(detector, name, flags=["unfamiliar"] if i == 1 else None)
        folder = tmp_path_factory.mktemp(name.split(".")[0])
        paths = write_objects(build_objects(source, finding), folder, "x")
        out[name] = (source, finding, {p.stem.split("_")[-1]: p for p in paths})
    return out


def _same_patient_and_study(obj: pydicom.Dataset, source: pydicom.Dataset) -> None:
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "AccessionNumber", "ReferringPhysicianName"):
        assert str(obj.get(kw) or "") == str(source.get(kw) or ""), kw
    assert obj.SeriesInstanceUID != source.SeriesInstanceUID
    assert obj.SOPInstanceUID != source.SOPInstanceUID
    assert "NOT FOR DIAGNOSTIC USE" in obj.SeriesDescription
    assert obj.Manufacturer == "AnatPaste open-source project"


@pytest.mark.parametrize("name", SOURCES)
def test_sr_holds_the_result_and_references_the_source(written, name):
    source, finding, paths = written[name]
    sr = hd.sr.srread(paths["sr"])
    assert sr.Modality == "SR"
    assert sr.SOPClassUID == pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.88.33")  # Comprehensive SR
    _same_patient_and_study(sr, source)
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    assert list(sr.SoftwareVersions)[1] == finding.model_version
    group = sr.content.get_image_measurement_groups()[0]
    values = {m.name.value: m.value for m in group.get_measurements()}
    assert values["AP001"] == pytest.approx(finding.score, abs=1e-6)
    assert values["AP002"] == pytest.approx(finding.threshold, abs=1e-6)
    assert all(m.unit.value == "1" for m in group.get_measurements())
    score = group.get_measurements(name=C.ANOMALY_SCORE)[0]
    normality = [i.ConceptCodeSequence[0].CodeValue for i in _walk(score[0]) if i.ValueType == "CODE"
                 and i.ConceptNameCodeSequence[0].CodeValue == "121402"]  # TID 310 Normality
    assert normality == ["263654008" if finding.label == "abnormal" else "17621005"]
    evaluations = [(q.name.value, q.value.value) for q in group.get_qualitative_evaluations()]
    assert ("AP004", C.normality(finding.label).value) in evaluations
    assert ("AP010", "AP012" if finding.flags else "AP011") in evaluations
    assert [v for n, v in evaluations if n == "AP013"] == finding.flags
    versions = [i.TextValue for i in group[0].ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111003"]
    assert versions == [finding.model_version]  # TID 4019 Algorithm Version
    ref = group.source_images[0]
    assert (ref.referenced_sop_instance_uid, ref.referenced_sop_class_uid) == (source.SOPInstanceUID,
                                                                                source.SOPClassUID)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    texts = [i.TextValue for i in _walk(sr) if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue
             == "121106"]
    assert any("NOT FOR DIAGNOSTIC USE" in t for t in texts)


def test_flags_of_the_input_gate_are_in_the_sr(written):
    _, finding, paths = written["RG1_J2KR.dcm"]
    assert "unfamiliar" in finding.flags
    group = hd.sr.srread(paths["sr"]).content.get_image_measurement_groups()[0]
    evaluations = {(q.name.value, q.value.value) for q in group.get_qualitative_evaluations()}
    assert {("AP010", "AP012"), ("AP013", "unfamiliar")} <= evaluations


@pytest.mark.parametrize("name", SOURCES)
def test_seg_is_the_lung_mask_on_the_source_grid(written, name):
    source, finding, paths = written[name]
    seg = pydicom.dcmread(paths["seg"])  # highdicom 0.22 reads a SEG back only with a Slice Thickness: below
    _same_patient_and_study(seg, source)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Lung fields"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"
    mask = seg.pixel_array.astype(bool)  # one frame, 1 bit per pixel
    assert mask.shape == (source.Rows, source.Columns) == finding.lung_mask.shape
    assert np.array_equal(mask, finding.lung_mask)
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    derivation = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert derivation.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert list(seg.SoftwareVersions)[1] == finding.model_version
    assert seg.LossyImageCompression == source.get("LossyImageCompression", "00")


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_highdicom_reads_the_seg_back(written, name):
    """Sources without Pixel Spacing: highdicom's reader wants Slice Thickness with it (a 1C the SEG of a
    radiograph with spacing lacks, as the standard allows), so the SIIM film's SEG is read by pydicom above."""
    source, finding, paths = written[name]
    seg = hd.seg.segread(paths["seg"])
    assert seg.get_source_image_uids() == [(source.StudyInstanceUID, source.SeriesInstanceUID,
                                             source.SOPInstanceUID)]
    mask = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    assert np.array_equal(mask[0, :, :, 0].astype(bool), finding.lung_mask)


@pytest.mark.parametrize("name", SOURCES)
def test_heatmap_capture_shows_the_film_with_its_notice(written, name):
    source, finding, paths = written[name]
    sc = pydicom.dcmread(paths["map"])
    _same_patient_and_study(sc, source)
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and sc.Modality == "OT"
    assert sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "RGB"
    assert sc.pixel_array.shape == (source.Rows, source.Columns, 3)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    # below the burned-in notice (top band) it is the overlay the CLI draws: film, heatmap, lung outline
    rgb = sc.pixel_array
    expected = render_overlay(  # colour on a flagged film only
        finding.display, finding.heatmap, finding.lung_mask, finding.heat_display_max, coloured=finding.heatmap_coloured
    )
    half = source.Rows // 2
    assert np.array_equal(rgb[half:], expected[half:])
    assert not np.array_equal(rgb[:half], expected[:half])  # the notice


def test_the_heatmap_capture_has_colour_only_when_the_film_is_flagged(detector):
    source, finding = _scored(detector, "RG1_UNCR.dcm")
    hot = finding.heatmap.copy()
    hot[3 * hot.shape[0] // 4, hot.shape[1] // 3] = 10 * finding.heat_display_max  # one pixel surely above
    half = source.Rows // 2
    grey_film = np.repeat((np.clip(finding.display, 0, 1)[..., None] * 255).round().astype(np.uint8), 3, -1)
    outline = np.asarray(render_overlay(finding.display, None, finding.lung_mask, 1.0) != grey_film).any(-1)

    def capture(label: str) -> np.ndarray:
        shown = Finding(**{**finding.__dict__, "label": label, "heatmap": hot})
        return build_objects(source, shown, kinds=["map"])["map"].pixel_array

    flagged, quiet = capture("abnormal"), capture("normal")
    body = ~outline[half:]  # below the notice, off the cyan lung outline
    assert (flagged[half:][body] != grey_film[half:][body]).any(), "a flagged film's heat is drawn"
    assert np.array_equal(quiet[half:][body], grey_film[half:][body]), "a film below the threshold stays grey"


@pytest.mark.parametrize("name", SOURCES)
def test_dciodvfy_finds_no_errors(written, name):
    _, _, paths = written[name]
    for kind, path in paths.items():
        assert dciodvfy_errors(path) == [], kind


def test_uids_follow_the_source_and_the_model_version(detector, written):
    source, finding, paths = written["RG1_UNCR.dcm"]
    again = build_objects(source, finding, kinds=["sr"])["sr"]
    assert again.SOPInstanceUID == pydicom.dcmread(paths["sr"]).SOPInstanceUID
    other = Finding(**{**finding.__dict__, "model_version": "other-000000000000"})
    moved = build_objects(source, other, kinds=["sr", "seg"])
    assert moved["sr"].SOPInstanceUID != again.SOPInstanceUID
    assert moved["sr"].SeriesInstanceUID != again.SeriesInstanceUID
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in paths.values()}
    assert len(uids) == 3


def test_unknown_kind_and_missing_maps_are_refused(written):
    source, finding, _ = written["RG1_UNCR.dcm"]
    with pytest.raises(ValueError, match="unknown"):
        build_objects(source, finding, kinds=["sr", "pm"])
    with pytest.raises(ValueError, match="lung mask"):
        build_objects(source, Finding(**{**finding.__dict__, "lung_mask": None}), kinds=["seg"])


@pytest.mark.parametrize("reviewer", ["dr.grey", None])
def test_review_sr_records_reviewer_time_and_verdict(written, tmp_path, reviewer):
    source, finding, _ = written["RG1_UNCR.dcm"]
    review = Review("normal", "2025-03-04T05:06:07+00:00", reviewer, finding.score, finding.label,
                    finding.model_version)
    sr = review_sr(source, review)
    sr.save_as(tmp_path / "review.dcm", write_like_original=False)
    assert dciodvfy_errors(tmp_path / "review.dcm") == []
    back = hd.sr.srread(tmp_path / "review.dcm")
    _same_patient_and_study(back, source)
    assert back.ObservationDateTime == "20250304050607"
    person = [i for i in _walk(back) if i.ConceptNameCodeSequence[0].CodeValue == "121008"]  # Person Observer Name
    assert str(person[0].PersonName) == (f"{reviewer}^" if reviewer else "UNKNOWN^REVIEWER")
    group = back.content.get_image_measurement_groups()[0]
    assert [(q.name.value, q.value.value) for q in group.get_qualitative_evaluations()] == [("AP020", "17621005")]
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    later = review_sr(source, Review("abnormal", "2025-03-05T00:00:00+00:00", reviewer))
    assert later.SOPInstanceUID != sr.SOPInstanceUID and later.SeriesInstanceUID == sr.SeriesInstanceUID


def _walk(ds: pydicom.Dataset):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk(item)
