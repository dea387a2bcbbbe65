"""POST /infer/anatpaste in-process: JSON, NRRD maps in the radiograph's geometry, uploads, refusals."""

from __future__ import annotations

import ast
import io
import json
import sys

import nrrd
import numpy as np
import pytest
from PIL import Image
from requests_toolbelt.multipart.decoder import MultipartDecoder
from server_env import DICOM, REPO, SHARED_DATA, require

from anatpaste.io import read_radiograph
from anatpaste.model.file import load_model
from anatpaste.score.detector import Detector

JSON_KEYS = {
    "image",
    "score",
    "label",
    "threshold",
    "model_version",
    "heatmap_display_max",
    "heatmap_coloured",
    "spacing",
    "shape",
}


@pytest.fixture(scope="module")
def client(client_env):
    return client_env[0]


@pytest.fixture(scope="module")
def studies(client_env):
    return client_env[2]


@pytest.fixture(scope="module")
def version(client):
    return client.get("/info/").json()["models"]["anatpaste"]["version"]


def parts(response) -> dict[str, bytes]:
    """The multipart answer of output=all, by part name."""
    dec = MultipartDecoder(response.content, response.headers["content-type"])
    out = {}
    for part in dec.parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        out[name] = part.content
    return out


def test_info_describes_the_model_the_trainer_and_the_worklist(client, version):
    info = client.get("/info/").json()
    model = info["models"]["anatpaste"]
    assert model["type"] == "anomaly"
    assert model["image_size"] == 64
    assert np.isfinite(model["threshold"])
    assert version.startswith("tiny-")
    assert "anatpaste" in info["trainers"]
    assert info["train_stats"]["anatpaste"]["current_version"] == version
    assert "anatpaste_score" in info["scoring"]
    assert "most_anomalous" in info["strategies"]
    assert info["datastore"]["total"] == 7


def test_the_app_code_has_one_import_name(client):
    """MONAI Label loads main.py from the app folder; its code is monailabel_app.lib there and here, so a class
    has one identity (and no ``lib`` module, which MONAI Label would unload and reload, exists at all)."""
    from monailabel.interfaces.utils.app import app_instance

    from monailabel_app.lib.model_store import LiveModel
    from monailabel_app.lib.train_anatpaste import AnatPasteTrain

    client.get("/info/")
    app = app_instance()
    assert isinstance(app.model, LiveModel)
    assert isinstance(app._trainers["anatpaste"], AnatPasteTrain)
    assert "lib" not in sys.modules
    for path in (REPO / "monailabel_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(n == "lib" or n.startswith("lib.") for n in names), f"{path}: imports {names}"


@pytest.mark.parametrize(
    ("image_id", "filename"),
    [
        ("IM-0001-0001", "IM-0001-0001.jpeg"),
        ("dx_thorax_mono1_small", "dx_thorax_mono1_small.dcm"),
    ],
)
def test_infer_json_for_a_datastore_image(client, studies, version, tiny_model, image_id, filename):
    r = client.post(f"/infer/anatpaste?image={image_id}&output=json")
    assert r.status_code == 200, r.text
    res = r.json()
    assert set(res) >= JSON_KEYS
    rg = read_radiograph(studies / filename)
    expected = Detector(load_model(tiny_model), version=version).score(rg.pixels, maps=False)
    assert res["image"] == image_id
    assert res["model_version"] == version
    assert res["score"] == pytest.approx(expected.score, rel=1e-4)
    assert res["label"] == ("abnormal" if res["score"] > res["threshold"] else "normal")
    assert res["heatmap_coloured"] is (res["label"] == "abnormal")  # colour on flagged films only
    assert res["shape"] == list(rg.pixels.shape)
    assert res["spacing"] == (list(rg.spacing) if rg.spacing else None)


def test_infer_all_gives_json_and_an_nrrd_overlay_in_the_radiographs_geometry(
    client, studies, version, tiny_model, tmp_path
):
    r = client.post("/infer/anatpaste?image=dx_thorax_mono1_small&output=all")
    assert r.status_code == 200, r.text
    p = parts(r)
    res = json.loads(p["params"])
    header = nrrd.read_header(io.BytesIO(p["image"]))
    (tmp_path / "maps.nrrd").write_bytes(p["image"])
    data, _ = nrrd.read(str(tmp_path / "maps.nrrd"), index_order="C")

    rg = read_radiograph(studies / "dx_thorax_mono1_small.dcm")
    h, w = rg.pixels.shape
    assert rg.spacing is not None
    assert list(header["sizes"]) == [2, w, h, 1]
    assert header["type"] == "float"
    assert header["encoding"] == "gzip"  # lossless; 28.8 MB raw -> 7.6 MB for a 2k film (result_image.py)
    assert header["kinds"] == ["vector", "domain", "domain", "domain"]
    dirs = header["space directions"]
    assert dirs[1][0] == pytest.approx(rg.spacing[1])  # column spacing along NRRD's first domain axis
    assert dirs[2][1] == pytest.approx(rg.spacing[0])
    assert list(header["space origin"]) == [0, 0, 0]
    assert header["anatpaste_model_version"] == version == res["model_version"]

    expected = Detector(load_model(tiny_model), version=version).score(rg.pixels, maps=True)
    heat, lung = data[0, :, :, 0], data[0, :, :, 1]
    assert np.allclose(heat, expected.heatmap, rtol=1e-4, atol=1e-4)
    assert set(np.unique(lung)) <= {0.0, 1.0}
    assert np.array_equal(lung > 0.5, expected.lung_mask)


def test_output_image_is_the_nrrd_alone(client):
    r = client.post("/infer/anatpaste?image=IM-0003-0001&output=image")
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"NRRD000")
    header = nrrd.read_header(io.BytesIO(r.content))
    assert list(header["sizes"]) == [2, 224, 224, 1]


@pytest.mark.parametrize(
    "name",
    [
        "RG1_UNCR.dcm",  # CR, 15 bits stored, MONOCHROME1, 1955x1841, spacing "0.000"
        "RG1_J2KR.dcm",  # same pixels, JPEG 2000 lossless
        "siim_cr_chest_mono2_jpeg.dcm",  # 8-bit JPEG baseline
        "dx_thorax_mono1_small.dcm",  # DX, MONOCHROME1
    ],
)
def test_upload_dicom_is_scored_and_not_stored(client, name):
    before = client.get("/datastore/").json()["total"]
    path = require(DICOM / name)
    with open(path, "rb") as f:
        r = client.post("/infer/anatpaste?output=json", files={"file": (name, f)})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["image"] is None
    assert res["shape"] == list(read_radiograph(path).pixels.shape)
    assert res["modality"] in ("CR", "DX")
    assert client.get("/datastore/").json()["total"] == before


def test_uncompressed_and_jpeg2000_dicom_score_the_same(client):
    scores = []
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm"):
        with open(DICOM / name, "rb") as f:
            scores.append(client.post("/infer/anatpaste?output=json", files={"file": (name, f)}).json()["score"])
    assert scores[0] == pytest.approx(scores[1])


def test_upload_16_bit_png_scores_like_its_8_bit_source(client):
    src = require(SHARED_DATA / "lungmasks" / "images" / "CHNCXR_0005_0.png")
    grey8 = np.asarray(Image.open(src).convert("L"))
    buf8, buf16 = io.BytesIO(), io.BytesIO()
    Image.fromarray(grey8).save(buf8, format="PNG")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(buf16, format="PNG")  # 16-bit, same intensities
    r8 = client.post("/infer/anatpaste?output=json", files={"file": ("a.png", buf8.getvalue())})
    r16 = client.post("/infer/anatpaste?output=json", files={"file": ("b.png", buf16.getvalue())})
    assert r8.status_code == r16.status_code == 200, (r8.text, r16.text)
    assert r16.json()["score"] == pytest.approx(r8.json()["score"], rel=1e-3)


def test_upload_output_all_has_the_maps_at_the_upload_size(client):
    with open(DICOM / "siim_cr_chest_mono2_jpeg.dcm", "rb") as f:
        r = client.post("/infer/anatpaste?output=all", files={"file": ("x.dcm", f)})
    assert r.status_code == 200, r.text
    header = nrrd.read_header(io.BytesIO(parts(r)["image"]))
    assert list(header["sizes"]) == [2, 1024, 1024, 1]


def test_unknown_model_is_404(client):
    r = client.post("/infer/no_such_model?image=IM-0001-0001&output=json")
    assert r.status_code == 404
    assert "no_such_model" in r.json()["detail"]


def test_unknown_trainer_scoring_method_and_strategy_are_404(client):
    assert client.post("/train/no_such_model", json={}).status_code == 404
    assert client.post("/scoring/no_such_method").status_code == 404
    assert client.post("/activelearning/no_such_strategy", json={}).status_code == 404


def test_unknown_image_is_404(client):
    assert client.post("/infer/anatpaste?image=not-in-the-datastore&output=json").status_code == 404


@pytest.mark.parametrize("image_id", ["../etc/passwd", "/etc/passwd", "..", "a\\b", "../../anatpaste/__init__"])
def test_path_like_image_ids_are_400(client, image_id):
    r = client.post("/infer/anatpaste", params={"image": image_id, "output": "json"})
    assert r.status_code == 400, r.text


def test_params_cannot_name_the_image(client):
    r = client.post(
        "/infer/anatpaste?image=IM-0001-0001&output=json",
        data={"params": json.dumps({"image": "/etc/passwd"})},
    )
    assert r.status_code == 400


def test_a_relative_path_in_the_server_cwd_is_not_read(client, tmp_path, monkeypatch):
    (tmp_path / "secret.png").write_bytes((SHARED_DATA / "lungmasks" / "images" / "CHNCXR_0005_0.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert client.post("/infer/anatpaste?image=secret.png&output=json").status_code == 404


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _colour_png() -> bytes:
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[64:192, 64:192, 2] = 255
    return _png(rgb)


BAD_UPLOADS = {
    "text": (lambda: b"this is not an image", "UnreadableImageError"),
    "truncated-dicom": (lambda: (DICOM / "RG1_UNCR.dcm").read_bytes()[:5000], None),  # any typed error
    "one-pixel": (lambda: _png(np.zeros((1, 1), np.uint8)), "ImageTooSmallError"),
    "colour-photo": (_colour_png, "UnsupportedImageError"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_unreadable_uploads_are_422_with_the_typed_error(client, case):
    make, error = BAD_UPLOADS[case]
    r = client.post("/infer/anatpaste?output=json", files={"file": ("x.png", make())})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    name = detail.split(":")[0]
    assert name.endswith("Error")
    assert " " not in name
    if error:
        assert name == error
    assert "/tmp" not in detail  # the server's temporary path is not revealed
