"""The module reads what the AnatPaste server wrote into the DICOMweb archive (issue 14's Slicer part).

Everything here is real but 3D Slicer's application: a real Orthanc with its DICOMweb plugin on loopback
(tests/server/server_orthanc.py), real objects made by ``anatpaste.report`` from the two shipped models' real scores
of a real DICOM radiograph (``../shared/data/dicom``), stored by STOW-RS (dicomweb-client), and the module's Lib
(archive client, readers, session, Logic, scene) on slicer-core's real MRML. Replaced: ``slicer.util.loadVolume``
(here SimpleITK, the ITK reader Slicer uses, into a one-slice volume) and, in the last test, Slicer's GUI (qt, the
widget's ui, the ScriptedLoadableModule bases), mocked as test_slicer_module_shell.py does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import socket
import sys
import threading
import time
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicer
import vtk
from AnatPasteReviewLib import scene as S
from AnatPasteReviewLib.archive import ArchiveClient
from AnatPasteReviewLib.client import Timeouts
from AnatPasteReviewLib.dicom_objects import (
    ResultReport,
    dataset_from_bytes,
    dicom_identity,
    newest_first,
    read_seg,
    read_sr,
)
from AnatPasteReviewLib.errors import (
    ArchiveAnswerError,
    ArchiveTimeoutError,
    ArchiveUnreachableError,
    MalformedObjectError,
    NoAnatPasteReportError,
    NotADicomStudyError,
)
from AnatPasteReviewLib.logic import ReviewLogic
from AnatPasteReviewLib.session import ReviewSession
from AnatPasteReviewLib.workflow import controls
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid
from slicer_support import REPO
from test_slicer_scene import OBLIQUE, set_matrix, slice_view

sys.path.insert(0, str(REPO / "tests" / "server"))
from server_orthanc import Orthanc  # noqa: E402 - the server tests' Orthanc on loopback

from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.report import Finding, Review, build_objects, review_sr  # noqa: E402
from anatpaste.score.detector import Detector  # noqa: E402

DICOM = REPO.parent / "shared" / "data" / "dicom"
FILM = DICOM / "dx_thorax_mono1_small.dcm"  # DX, 169 x 211 (not square), Pixel Spacing 1.2 \ 1.2012
NOT_WRITTEN = DICOM / "siim_cr_chest_mono2_jpeg.dcm"  # stored in the archive, never scored
NEVER_STORED = DICOM / "RG1_UNCR.dcm"
FAST = Timeouts(connect=0.5, read=0.5, total=5.0)
REVIEWED_AT = "2026-01-02T03:04:05+00:00"


def _finding(detector: Detector, pixels: np.ndarray) -> Finding:
    result = detector.score(pixels, maps=True)
    return Finding.of(result, [], [], pixels, detector.heat_display_max)


def _copy(path: Path, folder: Path, *, new_study: bool = False, roll: int = 0) -> Path:
    """The film as another instance (new SOP Instance and series UIDs; a new study if asked), pixels rolled."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if new_study:
        ds.StudyInstanceUID = generate_uid()
    if roll:
        ds.PixelData = np.roll(ds.pixel_array, roll, axis=1).astype(ds.pixel_array.dtype).tobytes()
    out = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(out)
    return out


def _plain(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A highdicom object as the archive would give it back (a plain pydicom dataset)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _without_score(sr: pydicom.Dataset) -> pydicom.Dataset:
    broken = _plain(sr)
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = generate_uid()

    def drop(seq):
        kept = [i for i in seq if not ("ConceptNameCodeSequence" in i and i.ConceptNameCodeSequence[0].CodeValue
                                       == "AP001")]
        for item in kept:
            if "ContentSequence" in item:
                item.ContentSequence = drop(item.ContentSequence)
        return pydicom.Sequence(kept)

    broken.ContentSequence = drop(broken.ContentSequence)
    return broken


def _truncated(seg: pydicom.Dataset) -> pydicom.Dataset:
    broken = _plain(seg)
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    broken.PixelData = broken.PixelData[:1000]
    return broken


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An Orthanc holding, by STOW-RS, in the film's study:
    - the film and a second radiograph (a copy with its pixels rolled: another lung mask),
    - the pediatric model's SR, SEG and capture of the film, then the general model's (newer), then the general
      model's SR and SEG of the second radiograph (its SEG the newest of the study), and a reviewer's SR;
    and three more studies: one never scored, one whose only SR lacks its score (and whose SEG is truncated), one
    with a good SR and a truncated SEG."""
    tmp = tmp_path_factory.mktemp("orthanc_slicer")
    orthanc = Orthanc(tmp)
    try:
        old_model, new_model = Detector.load("zhanglab_cpu"), Detector.load()
        assert old_model.version != new_model.version
        film = pydicom.dcmread(FILM)
        second_path = _copy(FILM, tmp, roll=40)
        second = pydicom.dcmread(second_path)
        pixels = read_radiograph(FILM).pixels
        old = _finding(old_model, pixels)
        objects_old = build_objects(film, old)
        new = _finding(new_model, pixels)
        objects_new = build_objects(film, new)
        other = _finding(new_model, read_radiograph(second_path).pixels)
        assert not np.array_equal(other.lung_mask, new.lung_mask)
        objects_other = build_objects(second, other, ["sr", "seg"])
        review = review_sr(film, Review("abnormal", REVIEWED_AT, "jdoe", new.score, new.label, new.model_version))
        broken_path = _copy(FILM, tmp, new_study=True)
        broken = build_objects(pydicom.dcmread(broken_path), new, ["sr", "seg"])
        partly_path = _copy(FILM, tmp, new_study=True)
        partly = build_objects(pydicom.dcmread(partly_path), new, ["sr", "seg"])
        for path in (FILM, second_path, NOT_WRITTEN, broken_path, partly_path):
            orthanc.store(path.read_bytes())
        DICOMwebClient(orthanc.dicomweb).store_instances([
            *objects_old.values(), *objects_new.values(), *objects_other.values(), review,
            _without_score(broken["sr"]), _truncated(broken["seg"]), partly["sr"], _truncated(partly["seg"]),
        ])
        yield types.SimpleNamespace(
            url=orthanc.dicomweb, orthanc=orthanc, film=film, second=second, second_path=second_path,
            old=old, new=new, other=other, objects_new=objects_new, broken_path=broken_path,
            partly_path=partly_path,
        )
    finally:
        orthanc.stop()


def load_dicom(scene, path) -> slicer.vtkMRMLScalarVolumeNode:
    """What slicer.util.loadVolume gives for a DICOM radiograph: ITK's pixels and spacing, LPS directions."""
    image = sitk.ReadImage(str(path))
    col_mm, row_mm = image.GetSpacing()[:2]
    pixels = sitk.GetArrayFromImage(image)[0].astype(np.float32)
    return S.volume_from_array(scene, pixels, spacing=(row_mm, col_mm), name=Path(path).stem)


def matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def labelmap_matrix(seg_node) -> np.ndarray:
    """IJK -> RAS of the segmentation's own binary labelmap (its first segment)."""
    image = seg_node.GetSegmentation().GetNthSegment(0).GetRepresentation("Binary labelmap")
    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


@pytest.fixture
def logic(mrml, tmp_path):
    slice_view(mrml, "Red")
    session = ReviewSession(archive_factory=lambda url: ArchiveClient(url, timeouts=Timeouts(2.0, 10.0, 30.0)))
    return ReviewLogic(mrml, lambda path: load_dicom(mrml, path), session=session, temp_folder=lambda: str(tmp_path))


def settle(session: ReviewSession) -> None:
    assert session.runner.wait_idle(60.0), "the archive look-up did not finish"


# ----------------------------------------------------------------------------------------- reports
def test_every_anatpaste_report_of_the_study_is_found_newest_first(archive):
    found = ArchiveClient(archive.url).study_results(dicom_identity(FILM))
    film_uid = archive.film.SOPInstanceUID
    assert (found.study_uid, found.image_uid) == (archive.film.StudyInstanceUID, film_uid)
    mine = [r for r in found.results if r.source_uid == film_uid]
    assert [r.model_version for r in mine] == [archive.new.model_version, archive.old.model_version]
    assert mine[0].written_at > mine[1].written_at
    for report, finding in zip(mine, (archive.new, archive.old), strict=True):
        assert report.score == pytest.approx(finding.score, abs=1e-5)
        assert report.threshold == pytest.approx(finding.threshold, abs=1e-5)
        assert report.label == finding.label
        assert (report.input_check, report.flags, report.fixes) == ("accepted", (), ())
    assert mine[0].score != pytest.approx(mine[1].score)  # two models, two scores
    assert found.latest == mine[0]
    others = [r for r in found.results if r.source_uid != film_uid]
    assert [(r.source_uid, r.model_version) for r in others] == [(archive.second.SOPInstanceUID,
                                                                   archive.new.model_version)]
    assert found.results[0] == others[0]  # the study's newest report comes first
    (review,) = found.reviews
    assert (review.verdict, review.reviewer, review.source_uid) == ("abnormal", "jdoe", film_uid)
    assert review.reviewed_at == dt.datetime(2026, 1, 2, 3, 4, 5)
    assert review.ai_model_version == archive.new.model_version
    assert found.problems == () and found.capture is None


def test_the_lung_seg_is_this_radiographs_of_the_newest_results_model(archive):
    found = ArchiveClient(archive.url).study_results(dicom_identity(FILM))
    seg = found.seg
    assert archive.film.SOPInstanceUID in seg.source_uids
    assert seg.model_version == archive.new.model_version
    assert (seg.rows, seg.columns) == (169, 211)
    assert [(s.number, s.label, s.property_type) for s in seg.segments] == [(1, "Lung fields", "Lung")]
    np.testing.assert_array_equal(seg.segments[0].mask, archive.new.lung_mask)
    # the second radiograph's SEG is the study's newest, and of the same size: it must not be taken for the film's
    other = ArchiveClient(archive.url).study_results(dicom_identity(archive.second_path)).seg
    assert other.source_uids == (archive.second.SOPInstanceUID,)
    np.testing.assert_array_equal(other.segments[0].mask, archive.other.lung_mask)


@pytest.mark.parametrize("geometry", ["dicom", "oblique"])
def test_the_seg_lands_on_the_radiograph_with_its_geometry(archive, mrml, geometry):
    volume = load_dicom(mrml, FILM)
    assert S.radiograph_shape(volume) == (169, 211)
    np.testing.assert_allclose(np.diag(matrix(volume))[:2], [-1.2012, -1.2], atol=1e-4)
    if geometry == "oblique":
        set_matrix(volume, OBLIQUE)
    seg = ArchiveClient(archive.url).study_results(dicom_identity(FILM)).seg
    node = S.show_archive_segments(mrml, volume, [(s.label, s.mask) for s in seg.segments], "archive SEG",
                                   seg.sop_instance_uid)
    masks = S.segment_masks(node, volume)
    assert list(masks) == ["Lung fields"]
    np.testing.assert_array_equal(masks["Lung fields"], archive.new.lung_mask)
    # the segment's own labelmap is on the radiograph's grid: voxel (i, j) of both sits at the same RAS point
    np.testing.assert_allclose(labelmap_matrix(node), matrix(volume), atol=1e-9)
    assert node.GetAttribute(S.OBJECT_ATTRIBUTE) == seg.sop_instance_uid
    assert S.is_overlay(node) and S.archive_nodes(mrml, volume) == {S.ARCHIVE_SEGMENTATION: node}
    small = S.volume_from_array(mrml, np.zeros((40, 50), np.float32), name="a PNG")
    with pytest.raises(S.SceneError, match="belongs to another image"):
        S.show_archive_segments(mrml, small, [(s.label, s.mask) for s in seg.segments], "archive SEG")


def test_the_heatmap_capture_is_loaded_when_asked(archive, mrml):
    found = ArchiveClient(archive.url).study_results(dicom_identity(FILM), capture=True)
    capture = found.capture
    assert capture.model_version == archive.new.model_version
    assert capture.source_uids == (archive.film.SOPInstanceUID,)
    np.testing.assert_array_equal(capture.pixels, archive.objects_new["map"].pixel_array)
    volume = load_dicom(mrml, FILM)
    node = S.show_archive_capture(mrml, volume, capture.pixels, "archive heatmap", capture.sop_instance_uid)
    assert node.IsA("vtkMRMLVectorVolumeNode")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node)[0], capture.pixels)
    np.testing.assert_allclose(matrix(node), matrix(volume))
    assert S.is_overlay(node)


def test_the_logic_looks_up_the_open_study_and_shows_what_the_archive_holds(archive, logic, mrml):
    volume = logic.open_file(str(FILM))
    logic.look_up_archive(archive.url, capture=True)
    assert "Looking in the archive" in controls(logic.session.state).archive_text
    settle(logic.session)
    state = logic.session.state
    assert state.error is None, state.error
    assert state.message == (f"Archive: the newest AnatPaste result on {FILM.name} says {archive.new.label} "
                             f"(model {archive.new.model_version}).")
    lines = controls(state).archive_text.splitlines()
    assert lines[0] == "2 AnatPaste result(s) on this radiograph in the archive (newest first):"
    assert f"model {archive.new.model_version}: score {archive.new.score:.2f}" in lines[1]
    assert f"model {archive.old.model_version}: score {archive.old.score:.2f}" in lines[2]
    assert lines[3] == "1 on other radiographs of the study:"
    assert lines[5].startswith("Review 2026-01-02 03:04: NOT normal by jdoe, having seen model ")
    assert lines[6] == f"Lung SEG loaded (Lung fields; model {archive.new.model_version})."
    assert lines[7] == f"Heatmap capture loaded (model {archive.new.model_version})."
    nodes = S.archive_nodes(mrml, volume)
    assert set(nodes) == {S.ARCHIVE_SEGMENTATION, S.ARCHIVE_CAPTURE}
    np.testing.assert_array_equal(S.segment_masks(nodes[S.ARCHIVE_SEGMENTATION], volume)["Lung fields"],
                                  archive.new.lung_mask)
    red = next(n for n in S._nodes(mrml, "vtkMRMLSliceCompositeNode") if n.GetLayoutName() == "Red")
    assert (red.GetBackgroundVolumeID(), red.GetForegroundVolumeID()) == (volume.GetID(),
                                                                          nodes[S.ARCHIVE_CAPTURE].GetID())
    logic.look_up_archive(archive.url)  # again: the same nodes, no second copy
    settle(logic.session)
    assert mrml.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    logic.session.set_study(None)
    assert controls(logic.session.state).archive_text == ""


def test_without_an_address_the_archive_the_server_names_is_asked(archive, logic):
    from AnatPasteReviewLib.answers import ServerInfo

    logic.open_file(str(FILM))
    with pytest.raises(ValueError, match="no archive address"):
        logic.look_up_archive("")  # no address typed, no server connected
    # What the server's /info says when it serves a DICOMweb archive (tests/server/test_server_dicomweb_live.py).
    answer = {"models": {"anatpaste": {"version": "v1"}}, "archive": {"dicomweb": archive.url}}
    logic.session.state.info = ServerInfo.from_json(answer)
    assert logic.session.state.info.archive_url == archive.url
    logic.look_up_archive("  ")
    settle(logic.session)
    state = logic.session.state
    assert state.error is None, state.error
    assert state.message.startswith(f"Archive: the newest AnatPaste result on {FILM.name} says {archive.new.label}")
    assert ServerInfo.from_json({"models": {}}).archive_url is None


# ------------------------------------------------------------------------------------------- errors
def test_an_unreachable_archive_is_said_in_words(refused_url, silent_url, logic):
    with pytest.raises(ArchiveUnreachableError, match=r"cannot connect to the archive at .*connection refused"):
        ArchiveClient(refused_url, timeouts=FAST).study_results(dicom_identity(FILM))
    with pytest.raises(ArchiveUnreachableError, match=r"no answer from the archive at .* within 0.5 s"):
        ArchiveClient(silent_url, timeouts=FAST).study_results(dicom_identity(FILM))
    logic.open_file(str(FILM))
    logic.look_up_archive(refused_url + "/dicom-web")
    settle(logic.session)
    error = logic.session.state.error
    assert error.startswith(f"cannot connect to the archive at {refused_url}/dicom-web: connection refused")
    assert controls(logic.session.state).status_text == error
    assert "Traceback" not in error


@pytest.fixture
def mute_url():
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):  # the 0.2 s accept timeout: look at ``stop`` again
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
    finally:
        stop.set()
        thread.join(2)
        for c in held:
            c.close()
        listener.close()


def test_an_archive_that_does_not_answer_times_out(mute_url):
    t0 = time.monotonic()
    with pytest.raises(ArchiveTimeoutError, match=r"did not answer within 0.5 s"):
        ArchiveClient(mute_url, timeouts=FAST).study_results(dicom_identity(FILM))
    assert time.monotonic() - t0 < 3


def test_answers_over_the_size_limit_are_refused(archive):
    with pytest.raises(ArchiveAnswerError, match="limit"):
        ArchiveClient(archive.url, max_response_bytes=2000).study_results(dicom_identity(FILM))
    # a limit that lets the listing, the SRs and the SEG through but not the captures: the reports are shown, and
    # the film's two captures (one per model version) are the problems
    found = ArchiveClient(archive.url, max_response_bytes=60_000).study_results(dicom_identity(FILM), capture=True)
    assert found.latest is not None and found.seg is not None and found.capture is None
    assert len(found.problems) == 2
    assert all("larger than 60000 bytes" in p or "the limit is 60000" in p for p in found.problems)


def test_a_study_without_anatpaste_report_and_a_study_the_archive_lacks(archive):
    client = ArchiveClient(archive.url)
    with pytest.raises(NoAnatPasteReportError, match="holds no AnatPaste report for this study"):
        client.study_results(dicom_identity(NOT_WRITTEN))
    with pytest.raises(NoAnatPasteReportError, match="does not hold this radiograph's study"):
        client.study_results(dicom_identity(NEVER_STORED))


def test_malformed_objects_are_typed_errors(archive, logic):
    client = ArchiveClient(archive.url)
    with pytest.raises(MalformedObjectError, match="has no anomaly score"):
        client.study_results(dicom_identity(archive.broken_path))
    found = client.study_results(dicom_identity(archive.partly_path))  # a good SR, a truncated SEG
    assert found.latest is not None and found.seg is None
    assert len(found.problems) == 1 and "pixel data is truncated (1000 of 4458 bytes)" in found.problems[0]
    logic.open_file(str(archive.broken_path))
    logic.look_up_archive(archive.url)
    settle(logic.session)
    assert "has no anomaly score" in logic.session.state.error
    with pytest.raises(MalformedObjectError, match="is not a readable DICOM file"):
        dataset_from_bytes(b"\0" * 128 + b"DICM" + b"garbage", "an object")
    seg = _plain(archive.objects_new["seg"])
    seg.SegmentSequence[0].SegmentNumber = 7
    with pytest.raises(MalformedObjectError, match=r"undeclared segment\(s\) \[1\]"):
        read_seg(seg)
    with pytest.raises(MalformedObjectError, match="not a structured report"):
        read_sr(seg)


def test_a_radiograph_without_a_dicom_study(archive, mrml, tmp_path):
    png = tmp_path / "chest.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(png)
    with pytest.raises(NotADicomStudyError, match="chest.png is not a DICOM file"):
        dicom_identity(png)
    session = ReviewSession()
    logic = ReviewLogic(mrml, lambda p: S.volume_from_array(mrml, np.asarray(Image.open(p)), name="chest"),
                        session=session)
    logic.open_file(str(png))
    logic.look_up_archive(archive.url)
    settle(session)
    assert session.state.error.startswith("chest.png is not a DICOM file, so it has no study in the archive")
    with pytest.raises(ValueError, match="DICOMweb address"):
        logic.look_up_archive("  ")


def test_newest_first_puts_undated_objects_last():
    def report(uid, when):
        return ResultReport(uid, "1.2", 1.0, 2.0, "normal", "v", when)

    a, b, c = report("1.1", dt.datetime(2026, 1, 1)), report("1.2", None), report("1.3", dt.datetime(2026, 2, 1))
    assert newest_first([a, b, c]) == [c, a, b]


# ----------------------------------------------------------------------------------- the widget hook
def test_the_widget_button_asks_the_logic_with_the_archive_setting(monkeypatch, mrml):
    """Slicer's GUI mocked (qt, slicer.util's settings, the widget's ui and its ScriptedLoadableModule bases)."""
    base = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest",
                 "ScriptedLoadableModuleLogic"):
        setattr(base, name, type(name, (), {"__init__": lambda self, *a: None}))
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Default = wrapper.WithinRange = lambda *a: None
    qt = mock.MagicMock()
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", base)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.delitem(sys.modules, "AnatPasteReview", raising=False)
    import AnatPasteReview as module

    try:
        widget = module.AnatPasteReviewWidget.__new__(module.AnatPasteReviewWidget)
        widget.logic = mock.MagicMock()
        widget.ui = types.SimpleNamespace(archiveUrlLineEdit=types.SimpleNamespace(text=" http://pacs:8042/dicom-web "),
                                          archiveCaptureCheckBox=types.SimpleNamespace(checked=True))
        widget.onArchive()
        widget.logic.look_up_archive.assert_called_once_with("http://pacs:8042/dicom-web", True)
        qt.QSettings.return_value.setValue.assert_called_once_with(module.SETTINGS_ARCHIVE,
                                                                   "http://pacs:8042/dicom-web")
        widget.logic.look_up_archive.side_effect = ValueError("enter the archive's DICOMweb address")
        widget.onArchive()  # a local error goes to the status line, the setting is not saved
        widget.logic.session.report_error.assert_called_once_with("enter the archive's DICOMweb address")
        assert qt.QSettings.return_value.setValue.call_count == 1
    finally:
        sys.modules.pop("AnatPasteReview", None)
