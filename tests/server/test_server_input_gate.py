"""The input gate through the server: a CT slice or a turned film is answered 422 with the reason, stored as an
error, never served; an inverted film is re-inverted and scored with a warning; an unfamiliar picture is flagged.

In-process MONAI Label app on the shipped model (no training needed), the sample studies plus two pydicom test
files (a CT and an MR slice) and edited copies of a real film (turned by 90 degrees, inverted) dropped into the
datastore.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from server_env import SHARED_DATA, make_client, require

from anatpaste.io import read_radiograph

NOT_CHEST = ("CT_small.dcm", "MR_small.dcm")
REAL = SHARED_DATA / "lungmasks" / "images" / "MCUCXR_0001_0.png"  # an adult normal, Montgomery
TURNED, INVERTED = "turned_film.png", "inverted_film.png"
PHOTO = "camera_photo.png"  # scikit-image's cameraman: dark parts that pass for lung fields, no radiograph


def png_bytes(pixels: np.ndarray, path: Path) -> bytes:
    Image.fromarray(np.round(255 * np.clip(pixels, 0, 1)).astype(np.uint8)).save(path)
    return path.read_bytes()


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing from the installed pydicom"
    return Path(path)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    client, _app_dir, studies = make_client(tmp_path_factory.mktemp("gate"), {})  # {}: the shipped model
    for name in NOT_CHEST:
        shutil.copy(pydicom_file(name), Path(studies) / name)
    pixels = read_radiograph(require(REAL)).pixels
    png_bytes(np.rot90(pixels), Path(studies) / TURNED)
    png_bytes(1.0 - pixels, Path(studies) / INVERTED)
    png_bytes(_camera(), Path(studies) / PHOTO)
    with client:
        yield client


def _camera() -> np.ndarray:
    import skimage.data

    return skimage.data.camera() / 255.0


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
    objects = client.get("/datastore/?output=all").json()["objects"]
    errors = {i for i, o in objects.items() if o["image"]["info"].get("anomaly_error")}
    # the sample studies' own films may be refused too (the benchmark refuses 2 of 2,756 real films)
    assert r.json()["failed"] == len(errors) and errors >= {Path(n).stem for n in (*NOT_CHEST, TURNED)}
    for name in NOT_CHEST:
        info = objects[Path(name).stem]["image"]["info"]
        assert info["anomaly_score"] is None
        assert info["anomaly_error"].startswith("NotAChestRadiographError: ")
        assert "Modality is" in info["anomaly_error"]
    turned = objects[Path(TURNED).stem]["image"]["info"]
    assert turned["anomaly_score"] is None and "turned by 90 degrees" in turned["anomaly_error"]
    inverted = objects[Path(INVERTED).stem]["image"]["info"]
    assert inverted["anomaly_fixed"] == ["inverted"] and inverted["anomaly_score"] > 0
    assert inverted["anomaly_error"] is None and inverted["anomaly_flags"] == []
    for image_id in ("IM-0001-0001", "IM-0003-0001"):  # real films: no flag, nothing fixed
        info = objects[image_id]["image"]["info"]
        assert (info["anomaly_flags"], info["anomaly_fixed"]) == ([], []), info
    served = set()
    while (answer := client.post("/activelearning/most_anomalous", json={}).json()):
        served.add(answer["id"])
        put = client.put("/datastore/image/info", params={"image": answer["id"]}, data={"info": '{"review": "normal"}'})
        assert put.status_code == 200, put.text
    assert served and not served & {Path(n).stem for n in (*NOT_CHEST, TURNED)}
    assert Path(INVERTED).stem in served


def test_an_uploaded_turned_film_is_422_with_the_reason(client, tmp_path):
    turned = png_bytes(np.rot90(read_radiograph(REAL).pixels), tmp_path / "t.png")
    r = client.post("/infer/anatpaste?output=json", files={"file": ("turned.png", turned)})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("NotAChestRadiographError: uploaded image: not scored: the film looks turned by 90")
    assert "/tmp" not in detail


def test_an_uploaded_inverted_film_is_re_inverted_scored_and_says_so(client, tmp_path):
    pixels = read_radiograph(REAL).pixels
    upright = client.post("/infer/anatpaste?output=json",
                          files={"file": ("a.png", png_bytes(pixels, tmp_path / "a.png"))})
    r = client.post("/infer/anatpaste?output=json",
                    files={"file": ("b.png", png_bytes(1.0 - pixels, tmp_path / "b.png"))})
    assert upright.status_code == r.status_code == 200, r.text
    res, ref = r.json(), upright.json()
    assert res["fixed"] == ["inverted"] and res["flags"] == [] and "re-inverted" in res["warnings"][0]
    assert (ref["fixed"], ref["flags"], ref["warnings"]) == ([], [], [])
    assert res["score"] == pytest.approx(ref["score"], abs=0.5)


def test_a_datastore_turned_film_is_422_by_id(client):
    r = client.post(f"/infer/anatpaste?image={Path(TURNED).stem}&output=json")
    assert r.status_code == 422, r.text
    assert "turned by 90 degrees" in r.json()["detail"]


def test_an_uploaded_page_of_text_is_scored_and_flagged_unfamiliar(client, tmp_path):
    import skimage.data

    r = client.post("/infer/anatpaste?output=json",
                    files={"file": ("text.png", png_bytes(skimage.data.text() / 255.0, tmp_path / "text.png"))})
    assert r.status_code == 200, r.text
    res = r.json()
    assert "unfamiliar" in res["flags"] and any("far outside" in w for w in res["warnings"])


def test_a_grey_photograph_is_scored_and_flagged_by_the_pictures_statistics(client, tmp_path):
    """Upload and worklist alike: the model file's layout and texture statistics flag it, with the reason."""
    r = client.post("/infer/anatpaste?output=json", files={"file": ("c.png", png_bytes(_camera(), tmp_path / "c.png"))})
    assert r.status_code == 200, r.text
    res = r.json()
    assert {"unusual_layout", "unusual_texture"} <= set(res["flags"]) and res["score"] > 0
    assert any("texture is unlike" in w for w in res["warnings"])
    assert client.post("/scoring/anatpaste_score?run_sync=true").status_code == 200
    info = client.get("/datastore/?output=all").json()["objects"][Path(PHOTO).stem]["image"]["info"]
    assert {"unusual_layout", "unusual_texture"} <= set(info["anomaly_flags"]) and info["anomaly_score"] > 0
