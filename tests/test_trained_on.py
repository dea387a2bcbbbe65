"""Model files record which normals their encoder trained on (real radiographs), and ``calibrate`` leaves those
out of a site's threshold: the encoder scores them lower than new normals, so a threshold set from them flags
too many new normals (NIH with the shipped model: 23 % of test normals against a 5 % target)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA, zhang_files

from anatpaste.adapt import MIN_NORMALS, adapt, calibrate, ladder
from anatpaste.adapt.adapt import split_check
from anatpaste.adapt.calibrate import crossfit_scores
from anatpaste.cli import main
from anatpaste.data import load_image_set
from anatpaste.model.file import load_model
from anatpaste.model.shipped import DEFAULT_MODEL
from anatpaste.model.trained_on import KEY, image_fingerprints, seen_by_encoder, with_trained_on
from anatpaste.score import Detector
from anatpaste.score.features import extract
from anatpaste.train import TrainConfig, train
from anatpaste.train.selection import holdout_split

NIH = SHARED_DATA / "nih"


@pytest.fixture(scope="module")
def shipped() -> dict:
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def fresh(shipped) -> dict:
    """The shipped model as if it recorded nothing: the tests below choose what it has seen."""
    return {k: v for k, v in shipped.items() if k != KEY}


@pytest.fixture(scope="module")
def site(shipped):
    files = sorted((NIH / "test" / "NORMAL").glob("*.png"))[:40]
    assert len(files) == 40, f"expected NIH test normals under {NIH} (CI provides ../shared/data)"
    return load_image_set(files, int(shipped["preprocessing"]["image_size"]), progress=False)


def test_fingerprints_tell_images_apart_and_match_a_file_read_again(site, shipped):
    fps = image_fingerprints(site.images)
    assert fps.dtype == torch.int64 and len(set(fps.tolist())) == len(site)
    again = load_image_set(site.paths[:3], int(shipped["preprocessing"]["image_size"]), progress=False)
    assert torch.equal(image_fingerprints(again.images), fps[:3])
    flipped = site.images[:3].flip(-1)
    assert not torch.isin(image_fingerprints(flipped), fps).any()


def test_a_trained_file_records_its_training_normals_and_not_its_holdout(tiny_training):
    payload, data = load_model(tiny_training["path"]), tiny_training["data"]
    train_idx, hold_idx = holdout_split(data, 0.3, 0)  # the tiny run's settings (tests/conftest.py)
    seen = seen_by_encoder(payload, data.images)
    assert seen[train_idx].all() and not seen[hold_idx].any()
    assert payload[KEY]["n"] == len(train_idx) and payload[KEY]["image_size"] == 64


def test_a_run_from_a_parent_inherits_what_the_parent_trained_on_at_the_same_side(tmp_path, tiny_training):
    parent = load_model(tiny_training["path"])
    data = load_image_set(zhang_files("train", "NORMAL")[100:112], 64, progress=False)
    cfg = TrainConfig(image_size=64, steps=2, batch_size=4, seed=0, eval_every=0, checkpoint_every=0,
                      holdout_fraction=0.25, init_weights=str(tiny_training["path"]))
    train(cfg, data, tmp_path / "child.pt", device="cpu")
    child = load_model(tmp_path / "child.pt")
    own_train, own_hold = holdout_split(data, 0.25, 0)
    seen = seen_by_encoder(child, data.images)
    assert seen[own_train].all() and not seen[own_hold].any()
    old = tiny_training["data"].images
    assert torch.equal(seen_by_encoder(child, old), seen_by_encoder(parent, old))
    # A parent at another input side (the shipped 128-px model) leaves nothing usable at 64 px.
    cfg = TrainConfig(image_size=64, steps=2, batch_size=4, seed=0, eval_every=0, checkpoint_every=0,
                      holdout_fraction=0.25, init_weights=str(DEFAULT_MODEL))
    train(cfg, data, tmp_path / "from_shipped.pt", device="cpu")
    assert load_model(tmp_path / "from_shipped.pt")[KEY]["n"] == len(own_train)


def test_calibrate_leaves_out_the_normals_the_encoder_trained_on(fresh, site):
    n_seen = len(site) - MIN_NORMALS - 5
    payload = with_trained_on(fresh, site.images[:n_seen])
    out = calibrate(payload, site, seed=1)
    thr = out["threshold"]
    assert (thr["n"], thr["n_seen_by_encoder"], thr["n_seen_left_out"]) == (len(site) - n_seen, n_seen, n_seen)
    assert "never trained on" in thr["how"] and "warning" not in thr
    det = Detector(payload, version="t")
    scores = crossfit_scores(extract(det.encoder, site.images, det.mean, det.std)[0], seed=1)[n_seen:]
    k = min(thr["n"], math.ceil(thr["quantile"] * (thr["n"] + 1)))
    assert thr["k"] == k and thr["value"] == pytest.approx(np.sort(scores)[k - 1], rel=1e-5)
    assert out[KEY] is payload[KEY], "the encoder is the same, so is what it trained on"
    # Nothing recorded: every normal counts, as before.
    plain = calibrate(fresh, site, seed=1)["threshold"]
    assert (plain["n"], plain["n_seen_left_out"]) == (len(site), 0)


def test_calibrate_warns_when_too_few_new_normals_remain(fresh, site):
    payload = with_trained_on(fresh, site.images[: len(site) - MIN_NORMALS + 1])
    thr = calibrate(payload, site)["threshold"]
    assert thr["n"] == len(site) and thr["n_seen_left_out"] == 0
    assert str(MIN_NORMALS) in thr["warning"] and "trained on" in thr["warning"]


def test_the_shipped_model_records_its_training_normals(shipped):
    """NIH train normals: 90 % trained on, the 10 % hold-out not; NIH test normals never."""
    size = int(shipped["preprocessing"]["image_size"])
    train_files = sorted((NIH / "train" / "NORMAL").glob("*.png"))
    seen = seen_by_encoder(shipped, load_image_set(train_files, size, progress=False).images)
    assert 0.85 * len(train_files) < int(seen.sum()) < 0.95 * len(train_files)
    test = load_image_set(sorted((NIH / "test" / "NORMAL").glob("*.png")), size, progress=False)
    assert not seen_by_encoder(shipped, test.images).any()


def test_adapted_candidates_record_their_fine_tune_normals_and_a_later_calibrate_leaves_them_out(fresh, site):
    res = adapt(fresh, site, recipes=ladder(["strong"], steps=2, batch_size=4))
    cand = res.finetuned["strong"]
    tune_idx, check_idx = split_check(len(site), 0)
    seen = seen_by_encoder(cand, site.images)
    assert seen[tune_idx].all() and not seen[check_idx].any()
    assert KEY not in res.calibrated, "the calibrated model keeps the parent's encoder and its (empty) record"
    later = calibrate(cand, site)["threshold"]  # a site calibrating again on the normals it adapted on
    assert later["n_seen_left_out"] == len(tune_idx) or "warning" in later
    assert later["n"] == (len(check_idx) if len(check_idx) >= MIN_NORMALS else len(site))


def test_cli_calibrate_says_how_many_normals_it_left_out(tmp_path, capsys, fresh):
    import shutil

    from anatpaste.model.file import save_model

    folder = tmp_path / "site"
    folder.mkdir()
    trained = sorted((NIH / "train" / "NORMAL").glob("*.png"))[:20]  # mostly films the shipped model trained on
    new = sorted((NIH / "test" / "NORMAL").glob("*.png"))[:12]
    for f in trained + new:
        shutil.copy(f, folder / f.name)
    model = save_model(fresh, tmp_path / "fresh.pt")
    assert main(["calibrate", "--normal", str(folder), "--model", str(model), "--output", str(tmp_path / "c.pt")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (line["n_images"], line["n_seen_left_out"]) == (32, 0) and "warning" not in line
    assert main(["calibrate", "--normal", str(folder), "--output", str(tmp_path / "s.pt")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 15 <= line["n_seen_by_encoder"] <= 20 and line["n_seen_left_out"] == line["n_seen_by_encoder"]
    assert load_model(tmp_path / "s.pt")["threshold"]["n"] == 32 - line["n_seen_left_out"]
