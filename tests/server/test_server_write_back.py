"""``--conf write_back sr,seg,map`` against a real Orthanc on loopback: after scoring the archive holds each
scored radiograph's SR, lung SEG and heatmap capture in the radiograph's own study, readable with the right
values and references and free of dciodvfy errors; a rescoring with the same model writes nothing; a new model
version writes a new report; a reviewer's verdict becomes its own SR; a failed write is retried, logged and shown
in /info without failing the scoring. (With write-back off the archive is unchanged: test_server_dicomweb.py.)"""

from __future__ import annotations

import io
import json
import shutil

import highdicom as hd
import pydicom
import pytest
from dicom_check import dciodvfy_errors
from server_env import make_client
from server_orthanc import Orthanc, push_test_radiographs

from anatpaste.score.detector import Detector

KINDS = {"SR": "sr", "SEG": "seg", "OT": "map"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model):
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc_wb"))
    try:
        push_test_radiographs(orthanc)
        tmp = tmp_path_factory.mktemp("write_back")
        client, app_dir, _ = make_client(tmp, {"model_path": str(tiny_model), "write_back": "sr,seg,map"},
                                         studies_url=orthanc.dicomweb)
        with client:
            yield client, orthanc
    finally:
        orthanc.stop()


def _derived(orthanc: Orthanc, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """The study's SR / SEG / OT instances, retrieved by WADO-RS (Orthanc's REST for the file)."""
    out: dict[str, list[pydicom.Dataset]] = {}
    for iid in orthanc.instances():
        tags = orthanc.rest.get(f"/instances/{iid}/simplified-tags").json()
        if tags.get("StudyInstanceUID") == study_uid and tags.get("Modality") in KINDS:
            data = orthanc.rest.get(f"/instances/{iid}/file").content
            out.setdefault(tags["Modality"], []).append(pydicom.dcmread(io.BytesIO(data)))
    return out


def test_scoring_writes_sr_seg_and_map_into_each_source_study(env, tmp_path):
    client, orthanc = env
    r = client.post("/scoring/anatpaste_score?run_sync=true")
    assert r.status_code == 200, r.text
    objects = client.get("/datastore/?output=all").json()["objects"]
    infos = {k: v["image"]["info"] for k, v in objects.items()}
    scored = {k: i for k, i in infos.items() if i.get("anomaly_score") is not None}
    assert len(scored) >= 3, infos  # the input gate may refuse a film; the others are scored and written
    version = client.get("/info/").json()["models"]["anatpaste"]["version"]
    for uid, info in scored.items():
        source = pydicom.dcmread(orthanc_file(orthanc, uid), stop_before_pixels=True)
        found = _derived(orthanc, source.StudyInstanceUID)
        mine = {m: [d for d in ds if _references(d, uid)] for m, ds in found.items()}
        assert {m: len(v) for m, v in mine.items()} == {"SR": 1, "SEG": 1, "OT": 1}, uid
        sr = hd.sr.ComprehensiveSR.from_dataset(mine["SR"][0])
        group = sr.content.get_image_measurement_groups()[0]
        values = {m.name.value: m.value for m in group.get_measurements()}
        # the SR holds the film's single-image score (/infer's); the worklist's batched one agrees to float32
        assert values["AP001"] == pytest.approx(info["anomaly_score"], rel=1e-5)
        assert values["AP002"] == pytest.approx(info["anomaly_threshold"], abs=1e-5)
        assert group.source_images[0].referenced_sop_instance_uid == uid
        assert list(sr.SoftwareVersions)[1] == version
        for modality, (ds,) in mine.items():
            assert ds.StudyInstanceUID == source.StudyInstanceUID
            assert ds.SeriesInstanceUID != source.SeriesInstanceUID
            assert ds.PatientID == source.PatientID
            path = tmp_path / f"{uid}_{KINDS[modality]}.dcm"
            ds.save_as(path, write_like_original=False)
            assert dciodvfy_errors(path) == [], (uid, modality)
    wb = client.get("/info/").json()["write_back"]
    assert wb["kinds"] == ["sr", "seg", "map"] and wb["written"] == len(scored) and wb["failed"] == 0
    # the radiograph list is still the CR/DX instances only: nothing written back is listed as a study
    assert set(client.get("/datastore/?output=all").json()["objects"]) == set(orthanc.uids.values())


def orthanc_file(orthanc: Orthanc, sop_uid: str) -> io.BytesIO:
    found = orthanc.rest.post("/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}).json()
    return io.BytesIO(orthanc.rest.get(f"/instances/{found[0]}/file").content)


def _references(ds: pydicom.Dataset, uid: str) -> bool:
    refs = [s.ReferencedSOPInstanceUID for s in ds.get("SourceImageSequence", [])]
    for series in ds.get("ReferencedSeriesSequence", []):
        refs += [i.ReferencedSOPInstanceUID for i in series.get("ReferencedInstanceSequence", [])]
    for ev in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in ev.ReferencedSeriesSequence:
            refs += [i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence]
    return uid in refs


def test_rescoring_with_the_same_model_writes_nothing(env):
    client, orthanc = env
    before = sorted(orthanc.instances()), orthanc.last_edit()
    r = client.post("/scoring/anatpaste_score?run_sync=true", json={"force": True})
    assert r.status_code == 200, r.text
    assert (sorted(orthanc.instances()), orthanc.last_edit()) == before


def test_a_new_model_version_writes_a_new_report(env, tiny_model, tmp_path):
    client, orthanc = env
    from monailabel.interfaces.utils.app import app_instance

    app = app_instance()
    other = tmp_path / "tiny_v2.pt"
    shutil.copy(tiny_model, other)
    det = Detector.load(other)
    assert det.version != app.model.version()
    uid = orthanc.uids["RG1_UNCR.dcm"]
    before = set(orthanc.instances())
    assert app.write_back.after_scoring(app.datastore(), det, ids=[uid]) == {"written": 1, "failed": 0}
    study = pydicom.dcmread(orthanc_file(orthanc, uid), stop_before_pixels=True).StudyInstanceUID
    srs = [d for d in _derived(orthanc, study)["SR"] if _references(d, uid)]
    assert sorted(list(d.SoftwareVersions)[1] for d in srs) == sorted([app.model.version(), det.version])
    assert len(set(orthanc.instances()) - before) == 3  # SR, SEG, capture of the new version


def test_a_review_becomes_its_own_sr(env, tmp_path):
    client, orthanc = env
    uid = orthanc.uids["RG1_J2KR.dcm"]
    r = client.put("/datastore/image/info", params={"image": uid}, data={"info": json.dumps({"review": "abnormal"})})
    assert r.status_code == 200, r.text
    info = client.get("/datastore/image/info", params={"image": uid}).json()
    study = pydicom.dcmread(orthanc_file(orthanc, uid), stop_before_pixels=True).StudyInstanceUID
    reviews = [d for d in _derived(orthanc, study)["SR"] if _references(d, uid) and "review" in d.SeriesDescription]
    assert len(reviews) == 1
    sr = hd.sr.ComprehensiveSR.from_dataset(reviews[0])
    group = sr.content.get_image_measurement_groups()[0]
    assert [(q.name.value, q.value.value) for q in group.get_qualitative_evaluations()] == [("AP020", "263654008")]
    stamp = info["reviewed_at"].replace("-", "").replace(":", "").replace("T", "")[:14]
    assert sr.ObservationDateTime == stamp
    sr.save_as(tmp_path / "review.dcm", write_like_original=False)
    assert dciodvfy_errors(tmp_path / "review.dcm") == []


def test_a_failed_write_is_retried_logged_and_shown_in_info(env, caplog):
    client, orthanc = env
    from monailabel.interfaces.utils.app import app_instance

    wb = app_instance().write_back
    calls = []

    def refuse(datasets):
        calls.append(len(datasets))
        raise ConnectionError("archive down")

    store, wb._store, wb.backoff_s = wb._store, refuse, 0.0
    try:
        uid = orthanc.uids["RG1_UNCR.dcm"]
        r = client.put("/datastore/image/info", params={"image": uid}, data={"info": json.dumps({"review": "normal"})})
        assert r.status_code == 200, r.text  # the review is stored whatever the archive does
        assert calls == [1] * wb.retries
        status = client.get("/info/").json()["write_back"]
        assert status["failed"] == 1 and "archive down" in status["failures"][-1]["error"]
        assert "not written" in caplog.text
    finally:
        wb._store = store
