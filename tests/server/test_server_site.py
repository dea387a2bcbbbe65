"""Site adaptation through the server (in-process, run_sync): ``mode`` calibrate and adapt publish through the
gate; the acceptance set (reviewed abnormals + held-out reviewed normals) refuses a deliberately worse candidate.

Real films only: ZhangLab normals as the site's normals, ZhangLab pneumonia films as its reviewed abnormals.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from server_env import ZHANGLAB, make_client, require

from monailabel_app.lib import train_anatpaste
from monailabel_app.lib.acceptance import MIN_EACH, held_out
from monailabel_app.lib.model_store import ModelStore


def pick_normals(held: bool, n: int, skip: int = 20) -> list:
    files = sorted(require(ZHANGLAB / "test" / "NORMAL").glob("*.jpeg"))[skip:]
    out = [f for f in files if held_out(f.stem) == held][:n]
    if len(out) < n:
        pytest.fail(f"need {n} ZhangLab test normals with held_out={held}")
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model, base_normals):
    tmp = tmp_path_factory.mktemp("site")
    client, app_dir, studies = make_client(tmp, {"model_path": str(tiny_model), "base_normals": str(base_normals)})
    site_normals = pick_normals(False, 4) + pick_normals(True, MIN_EACH)
    abnormals = sorted(require(ZHANGLAB / "test" / "PNEUMONIA").glob("*.jpeg"))[: MIN_EACH + 1]
    for f in site_normals + abnormals:
        shutil.copy(f, studies / f.name)
    with client:
        yield client, ModelStore(app_dir / "model" / "anatpaste"), site_normals, abnormals


def review(client, ids, value):
    for image_id in ids:
        info = json.dumps({"review": value})
        r = client.put("/datastore/image/info", params={"image": image_id}, data={"info": info})
        assert r.status_code == 200, r.text


def encoder_bytes(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["encoder"]


def same_encoder(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k]["q"], b[k]["q"]) if isinstance(a[k], dict) else torch.equal(a[k], b[k]) for k in a
    )


def test_calibrate_publishes_the_same_encoder_with_a_crossfitted_threshold(env):
    client, store, site_normals, _ = env
    parent = store.current()
    review(client, [f.stem for f in site_normals[:4]], "normal")
    r = client.post("/train/anatpaste?run_sync=true", json={"mode": "calibrate"})
    assert r.status_code == 200, r.text
    result = r.json()
    new = result["published_version"]
    assert new and new.startswith("calibrate-") and new != parent.name
    assert result["gate"]["passed"] is True and result["mode"] == "calibrate"
    lo, hi = result["fpr_interval"]
    assert lo < result["expected_fpr"] < hi
    payload = torch.load(store.current().path, map_location="cpu", weights_only=True)
    assert same_encoder(payload["encoder"], encoder_bytes(parent.path))
    assert payload["threshold"]["n"] == payload["calibration"]["n_images"] == 4 + 10  # confirmed + base normals
    # None of them is a film the tiny model trained on (ZhangLab train normals): nothing left out, no warning.
    assert result["n_seen_left_out"] == 0 and result["threshold_warning"] is None
    stats = client.get("/info/").json()["train_stats"]["anatpaste"]
    assert stats["outcome"] == "published" and stats["mode"] == "calibrate"


def test_adapt_publishes_through_the_gate_and_says_which_encoder_it_kept(env):
    client, store, _, _ = env
    parent = store.current()
    r = client.post("/train/anatpaste?run_sync=true", json={"adapt_steps": 3, "batch_size": 4})  # mode: the default
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["mode"] == "adapt" and result["gate"]["passed"] is True
    assert result["adapt_chosen"] in ("gentle", "strong", "calibrated")
    check = result["adapt_check"]
    assert {"calibrated", "gentle", "strong", "margin"} <= set(check)
    assert check["chosen"] == result["adapt_chosen"]
    same = same_encoder(encoder_bytes(store.current().path), encoder_bytes(parent.path))
    assert same == (result["adapt_chosen"] == "calibrated")
    stats = client.get("/info/").json()["train_stats"]["anatpaste"]
    assert stats["step"] == stats["total"] == 3 * 2  # 3 steps of each recipe of the default ladder


def test_the_acceptance_set_refuses_a_deliberately_worse_candidate(env, monkeypatch):
    from anatpaste.data import load_image_set

    client, store, site_normals, abnormals = env
    review(client, [f.stem for f in site_normals], "normal")
    review(client, [f.stem for f in abnormals], "abnormal")
    real_calibrate = train_anatpaste.calibrate

    def fitted_on_abnormals(payload, data, **kw):  # a Gaussian of pneumonia films: normals look anomalous
        size = data.images.shape[-1]
        return real_calibrate(payload, load_image_set([str(f) for f in abnormals] * 2, size, progress=False), **kw)

    published = store.current()
    monkeypatch.setattr(train_anatpaste, "calibrate", fitted_on_abnormals)
    r = client.post("/train/anatpaste?run_sync=true", json={"mode": "calibrate"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["published_version"] is None
    gate = result["gate"]
    assert gate["passed"] is False and "acceptance set" in gate["reason"]
    acc = gate["acceptance"]
    assert acc["candidate"]["auc"] < acc["current"]["auc"]
    assert acc["candidate"]["n_normal"] == MIN_EACH and acc["candidate"]["n_abnormal"] == MIN_EACH + 1
    assert store.current() == published
    stats = client.get("/info/").json()["train_stats"]["anatpaste"]
    assert stats["outcome"] == "rejected"
    assert stats["acceptance"] == {"n_normal": MIN_EACH, "n_abnormal": MIN_EACH + 1, "active": True,
                                   "min_each": MIN_EACH}
    assert stats["gate"]["acceptance"]["candidate"]["auc"] == acc["candidate"]["auc"]

    # The real calibration on the same normals passes the acceptance set, and never used its films.
    monkeypatch.setattr(train_anatpaste, "calibrate", real_calibrate)
    r = client.post("/train/anatpaste?run_sync=true", json={"mode": "calibrate"})
    result = r.json()
    assert result["gate"]["passed"] is True, result["gate"]
    assert result["gate"]["acceptance"]["candidate"] is not None
    entry = store.entry(result["published_version"])
    held = {f.stem for f in site_normals if held_out(f.stem)}
    assert held and not held & set(entry["confirmed_normals"])
    assert not {f.stem for f in abnormals} & set(entry["confirmed_normals"])


def test_too_few_site_normals_for_calibrate_names_the_minimum(tmp_path, tiny_model):
    # Last in the module: a second app replaces the module's in MONAI Label's globals.
    client, _, _ = make_client(tmp_path, {"model_path": str(tiny_model)})  # no base normals
    with client:
        review(client, ["IM-0001-0001", "IM-0003-0001"], "normal")
        with pytest.raises(Exception, match="needs at least 10"):
            client.post("/train/anatpaste?run_sync=true", json={"mode": "calibrate"})
