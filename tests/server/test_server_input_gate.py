"""The input gate through the server: a CT slice is answered 422 with the reason, stored as an error, never served.

In-process MONAI Label app on the shipped model (no training needed), the sample studies plus two pydicom test
files (a CT and an MR slice) dropped into the datastore.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from server_env import make_client

NOT_CHEST = ("CT_small.dcm", "MR_small.dcm")


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing from the installed pydicom"
    return Path(path)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    client, _app_dir, studies = make_client(tmp_path_factory.mktemp("gate"), {})  # {}: the shipped model
    for name in NOT_CHEST:
        shutil.copy(pydicom_file(name), Path(studies) / name)
    with client:
        yield client


def test_an_uploaded_ct_slice_is_422_with_the_reason(client):
    r = client.post("/infer/anatpaste?output=json",
                    files={"file": ("ct.dcm", pydicom_file("CT_small.dcm").read_bytes())})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("NotAChestRadiographError: ")
    assert "Modality is CT" in detail
    assert "/tmp" not in detail  # the upload's temporary path is not revealed


def test_a_datastore_ct_is_422_by_id(client):
    r = client.post("/infer/anatpaste?image=CT_small&output=json")
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("NotAChestRadiographError: CT_small")


def test_scoring_stores_the_refusal_and_the_worklist_never_serves_it(client):
    r = client.post("/scoring/anatpaste_score?run_sync=true")
    assert r.status_code == 200, r.text
    assert r.json()["failed"] == len(NOT_CHEST)
    objects = client.get("/datastore/?output=all").json()["objects"]
    for name in NOT_CHEST:
        info = objects[Path(name).stem]["image"]["info"]
        assert info["anomaly_score"] is None
        assert info["anomaly_error"].startswith("NotAChestRadiographError: ")
        assert "Modality is" in info["anomaly_error"]
    served = set()
    while (answer := client.post("/activelearning/most_anomalous", json={}).json()):
        served.add(answer["id"])
        put = client.put("/datastore/image/info", params={"image": answer["id"]}, data={"info": '{"review": "normal"}'})
        assert put.status_code == 200, put.text
    assert served and not served & {Path(n).stem for n in NOT_CHEST}
