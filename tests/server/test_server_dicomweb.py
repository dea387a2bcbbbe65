"""The DICOMweb datastore against a real archive: Orthanc + DICOMweb plugin on loopback.

The DICOM files of ../shared/data/dicom are pushed into Orthanc, listed through MONAI Label, scored, reviewed;
the archive must not change (no instance added, removed or modified).
"""

from __future__ import annotations

import json

import pytest
from server_env import DICOM, make_client
from server_orthanc import Orthanc, push_test_radiographs

from anatpaste.io import read_radiograph


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        push_test_radiographs(orthanc)
        yield orthanc
    finally:
        orthanc.stop()


@pytest.fixture(scope="module")
def env(archive, tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("dicomweb")
    client, app_dir, _ = make_client(tmp, {"model_path": str(tiny_model)}, studies_url=archive.dicomweb)
    with client:
        yield client, app_dir, archive


@pytest.fixture(scope="module")
def before(archive):
    """The archive's state after the push, before MONAI Label touches it."""
    return sorted(archive.instances()), archive.last_edit()


def test_lists_the_cr_and_dx_instances_only(env, before):
    client, app_dir, archive = env
    assert client.get("/datastore/").json()["total"] == 5
    objects = client.get("/datastore/?output=all").json()["objects"]
    assert set(objects) == set(archive.uids.values())
    assert archive.other_uid not in objects
    info = objects[archive.uids["dx_thorax_mono1_small.dcm"]]["image"]["info"]
    assert info["Modality"] == "DX"
    assert "PatientName" not in info
    assert "PatientID" not in info
    assert not (app_dir / "bin" / "itkimage2segimage").exists()  # no dcmqi download


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "dx_thorax_mono1_small.dcm"])
def test_infer_by_sop_instance_uid(env, before, name):
    client, _, archive = env
    uid = archive.uids[name]
    r = client.post(f"/infer/anatpaste?image={uid}&output=json")
    assert r.status_code == 200, r.text
    res = r.json()
    rg = read_radiograph(DICOM / name)
    assert res["image"] == uid
    assert res["shape"] == list(rg.pixels.shape)
    assert res["modality"] == rg.modality
    assert (res["spacing"] is None) == (rg.spacing is None)


def test_unknown_and_path_like_ids(env, before):
    client, _, _ = env
    assert client.post("/infer/anatpaste?image=1.2.3.4.5&output=json").status_code == 404
    assert client.post("/infer/anatpaste?image=../1.2.3&output=json").status_code == 400


def test_scoring_scores_every_archive_image_and_stores_the_results_locally(env, before):
    client, _, archive = env
    r = client.post("/scoring/anatpaste_score?run_sync=true")
    assert r.status_code == 200, r.text
    assert r.json()["scored"] == 5
    objects = client.get("/datastore/?output=all").json()["objects"]
    version = client.get("/info/").json()["models"]["anatpaste"]["version"]
    for uid in archive.uids.values():
        info = objects[uid]["image"]["info"]
        assert info["scored_by"] == version
        assert isinstance(info["anomaly_score"], float)
    # Uncompressed and JPEG 2000 copies of one radiograph score the same through the archive.
    s = {n: objects[archive.uids[n]]["image"]["info"]["anomaly_score"] for n in ("RG1_UNCR.dcm", "RG1_J2KR.dcm")}
    assert s["RG1_UNCR.dcm"] == pytest.approx(s["RG1_J2KR.dcm"])


def test_review_and_worklist_on_the_archive(env, before):
    client, _, archive = env
    dx = archive.uids["dx_thorax_mono1_small.dcm"]
    r = client.put("/datastore/image/info", params={"image": dx}, data={"info": json.dumps({"review": "normal"})})
    assert r.status_code == 200, r.text
    assert client.get("/datastore/image/info", params={"image": dx}).json()["review"] == "normal"
    objects = client.get("/datastore/?output=all").json()["objects"]
    unreviewed = {k: v["image"]["info"]["anomaly_score"] for k, v in objects.items() if k != dx}
    top = client.post("/activelearning/most_anomalous", json={}).json()
    assert top["id"] == max(unreviewed, key=unreviewed.get)


def test_nothing_is_written_to_the_archive(env, before):
    client, _, archive = env
    some = archive.uids["RG1_UNCR.dcm"]
    png = (DICOM / "dx_thorax_mono1_small.dcm").read_bytes()
    assert client.put("/datastore/image", params={"image": "new"}, files={"file": ("x.dcm", png)}).status_code == 405
    assert client.delete("/datastore/image", params={"id": some}).status_code == 405
    instances, last_change = before
    assert sorted(archive.instances()) == instances
    assert archive.last_edit() == last_change
