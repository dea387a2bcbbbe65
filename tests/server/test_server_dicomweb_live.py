"""The real server on a real archive: ``monailabel start_server --studies http://127.0.0.1:N/dicom-web`` over
Orthanc + DICOMweb (Debian packages) on loopback, as an imaging-AI engineer deploys it next to the archive.

The in-process tests (test_server_dicomweb.py) cover the datastore's rules; this one checks that MONAI Label's
own start-up (its command line, settings and start-up scoring) works with the app's DICOMweb datastore.
"""

from __future__ import annotations

import pytest
from server_env import DICOM, copy_app
from server_live import LiveServer, wait_for
from server_orthanc import Orthanc, push_test_radiographs

from anatpaste.io import read_radiograph


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("dicomweb_live")
    (tmp / "orthanc").mkdir()
    orthanc = Orthanc(tmp / "orthanc")
    srv = None
    try:
        push_test_radiographs(orthanc)
        before = sorted(orthanc.instances()), orthanc.last_edit()
        srv = LiveServer(copy_app(tmp / "app"), orthanc.dicomweb, {"model_path": tiny_model}, tmp)
        srv.wait_ready()
        yield srv, orthanc, before
    finally:
        if srv is not None:
            srv.stop()
        orthanc.stop()


def test_start_up_scoring_ranks_the_archive_and_serves_its_radiographs(live):
    srv, orthanc, (instances, last_change) = live
    c = srv.client
    assert c.get("/datastore/").json()["total"] == 5  # the 5 CR/DX instances, not the OT one
    info = c.get("/info/").json()
    version = info["models"]["anatpaste"]["version"]
    assert info["archive"] == {"dicomweb": orthanc.dicomweb}  # where Slicer's Archive section reads results

    def scored():
        objects = c.get("/datastore/?output=all").json()["objects"]
        infos = {k: v["image"]["info"] for k, v in objects.items()}
        return infos if all(i.get("scored_by") == version for i in infos.values()) else None

    infos = wait_for(scored, 180, "start-up scoring of the archive", srv, interval=2)
    assert set(infos) == set(orthanc.uids.values())
    top = c.post("/activelearning/most_anomalous", json={}).json()
    assert top["id"] == max(infos, key=lambda k: infos[k]["anomaly_score"])

    uid = orthanc.uids["RG1_J2KR.dcm"]  # JPEG 2000, fetched from the archive by SOP Instance UID
    r = c.post(f"/infer/anatpaste?image={uid}&output=json")
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == list(read_radiograph(DICOM / "RG1_J2KR.dcm").pixels.shape)
    assert r.json()["score"] == pytest.approx(infos[uid]["anomaly_score"], rel=1e-5)
    assert c.post("/infer/anatpaste?image=1.2.3.4.5&output=json").status_code == 404

    # Nothing was added, removed or changed in the archive.
    assert sorted(orthanc.instances()) == instances
    assert orthanc.last_edit() == last_change
