"""Site adaptation on real adult films (NIH normals): calibrate keeps the encoder and picks the cross-fitted
quantile; adapt fine-tunes gently and publishes a calibrated model either way; too few normals is a clear error."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA

from anatpaste.adapt import (
    DEFAULT_LADDER,
    MIN_NORMALS,
    RECIPES,
    CalibrationError,
    FinetuneRecipe,
    adapt,
    calibrate,
    finetune,
    ladder,
)
from anatpaste.adapt.adapt import MARGIN, choose
from anatpaste.adapt.calibrate import crossfit_scores, crossfit_threshold, fold_index
from anatpaste.adapt.check import CheckScores, paired_gain
from anatpaste.adapt.finetune import frozen_modules
from anatpaste.cli import ADAPT_RECIPES, main
from anatpaste.data import load_image_set
from anatpaste.gate import familiarity
from anatpaste.gate.picture import KEY, encoder_fingerprint, statistics_problem
from anatpaste.gate.picture import MIN_NORMALS as PICTURE_MIN_NORMALS
from anatpaste.model.file import dequantize_state, encoder_of, load_model, quantize_state, save_model
from anatpaste.model.shipped import DEFAULT_MODEL
from anatpaste.precision import cpu_bf16_supported
from anatpaste.score import Detector, GaussianScorer
from anatpaste.score.features import extract

NIH_NORMAL = SHARED_DATA / "nih" / "train" / "NORMAL"


def nih_files(n: int) -> list:
    files = sorted(NIH_NORMAL.glob("*.png"))
    assert len(files) >= n, f"expected NIH normals under {NIH_NORMAL} (CI provides ../shared/data)"
    return files[:n]


@pytest.fixture(scope="module")
def parent() -> dict:
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def site(parent):
    size = int(parent["preprocessing"]["image_size"])
    return load_image_set(nih_files(40), size, progress=False)


def test_calibrate_keeps_every_encoder_weight(parent, site):
    out = calibrate(parent, site)
    assert out["encoder"].keys() == parent["encoder"].keys()
    for k, v in parent["encoder"].items():
        w = out["encoder"][k]
        if isinstance(v, dict):
            assert torch.equal(w["q"], v["q"]) and torch.equal(w["scale"], v["scale"]), k
        else:
            assert torch.equal(w, v), k
    # The image Gaussian is refitted on the site's normals: one, as a site is one source (the shipped file has
    # one per training source).
    assert set(out["gaussian"]) == {"mean", "precision"} and "per_source" in parent["gaussian"]
    assert not torch.equal(out["heatmap"]["mean"], parent["heatmap"]["mean"]), "the heatmap Gaussians were refitted"
    # the input gate's picture statistics are the encoder's: the parent's, untouched, and still valid
    assert out[KEY] is parent[KEY] and statistics_problem(out) is None


def test_calibrate_fits_picture_statistics_only_where_the_payload_holds_none_usable(parent, site, caplog):
    """None (a file from before them): fitted on the site's normals. Its parent's copied along with a new encoder
    (as ``adapt`` builds a fine-tuned candidate) and too few normals to refit them: none, rather than stale ones."""
    assert len(site) >= PICTURE_MIN_NORMALS
    fitted = calibrate({k: v for k, v in parent.items() if k != KEY}, site)
    assert statistics_problem(fitted) is None and fitted[KEY]["n_normals"] == len(site)
    enc = encoder_of(parent)
    with torch.no_grad():
        enc.layer3[0].conv1.weight.mul_(1.1)
    tuned = {**parent, "encoder": quantize_state(enc.state_dict())}
    assert "another encoder" in statistics_problem(tuned)
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.picture"):
        out = calibrate(tuned, site.subset(list(range(PICTURE_MIN_NORMALS - 1))))
    assert KEY not in out and "the model file holds none" in caplog.text


def test_calibrated_threshold_is_the_crossfitted_order_statistic(parent, site):
    out = calibrate(parent, site, quantile=0.9, seed=3)
    thr = out["threshold"]
    n = len(site)
    k = math.ceil(0.9 * (n + 1))
    assert thr["n"] == n and thr["k"] == k
    assert thr["value"] == pytest.approx(sorted(thr["crossfit_scores"])[k - 1])
    # Each cross-fitted score comes from a Gaussian fitted without that image's fold: recompute one fold.
    det = Detector(parent, version="t")
    emb = extract(det.encoder, site.images, det.mean, det.std)[0]
    fold = fold_index(n, min(n, 20), seed=3)
    inside = torch.from_numpy(fold == 0)
    expect = GaussianScorer.fit(emb[~inside]).score(emb[inside]).numpy()
    got = crossfit_scores(emb, seed=3)[fold == 0]
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    # Stored scores are not the in-sample ones (those are smaller: the Gaussian saw them).
    in_sample = GaussianScorer.fit(emb).score(emb).numpy()
    assert np.median(thr["crossfit_scores"]) > np.median(in_sample)
    lo, hi = thr["fpr_interval"]
    assert 0 < lo < thr["expected_fpr"] < hi < 1
    assert "cross-fitted" in thr["how"]


def test_crossfit_threshold_interval_narrows_with_more_normals():
    rng = np.random.default_rng(0)
    small, large = crossfit_threshold(rng.normal(size=25), 0.95), crossfit_threshold(rng.normal(size=400), 0.95)
    width = [t.fpr_interval[1] - t.fpr_interval[0] for t in (small, large)]
    assert width[1] < width[0] / 2
    assert small.expected_fpr <= 0.05 + 1e-9 and large.expected_fpr <= 0.05 + 1e-9


def test_calibrate_refuses_fewer_than_the_minimum(parent, site):
    with pytest.raises(CalibrationError, match=str(MIN_NORMALS)):
        calibrate(parent, site.subset(list(range(MIN_NORMALS - 1))))


def test_cli_calibrate_lists_unreadable_files_and_prints_one_json_line(tmp_path, capsys):
    folder = tmp_path / "site"
    folder.mkdir()
    for p in nih_files(12):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "site.pt"
    assert main(["calibrate", "--normal", str(folder), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["n_images"] == 12 and line["n_skipped"] == 1
    assert "broken.png" in captured.err
    assert line["target_fpr"] == pytest.approx(0.05)
    assert line["fpr_interval"][0] < line["expected_fpr"] < line["fpr_interval"][1]
    assert line["model_version"] == Detector.load(out).version
    assert load_model(out)["calibration"]["skipped"] == [str(folder / "broken.png")]


def test_cli_calibrate_with_too_few_normals_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "few"
    folder.mkdir()
    for p in nih_files(5):
        (folder / p.name).write_bytes(p.read_bytes())
    assert main(["calibrate", "--normal", str(folder), "--output", str(tmp_path / "x.pt")]) == 2
    assert f"at least {MIN_NORMALS}" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_finetune_trains_only_the_unfrozen_layers(parent, site, precision):
    if precision == "bf16" and not cpu_bf16_supported():
        pytest.fail("this CI machine's CPU has native bf16 (avx512_bf16); the bf16 path must be tested here")
    state = dequantize_state(parent["encoder"])
    recipe = FinetuneRecipe(steps=3, batch_size=8, freeze="layer2", precision=precision, lr=0.01)
    enc = finetune(state, site, recipe, replay=site.subset(list(range(10))))
    ref = encoder_of(parent)
    frozen = {id(p) for m in frozen_modules(enc, "layer2") for p in m.parameters()}
    new, old = dict(enc.named_parameters()), dict(ref.named_parameters())
    changed = [k for k in new if not torch.equal(new[k], old[k])]
    assert changed and all(id(new[k]) not in frozen for k in changed)
    assert all(k.startswith(("layer3", "layer4")) for k in changed), changed
    # Frozen BatchNorm keeps its running statistics too.
    assert torch.equal(enc.layer2[0].bn1.running_mean, ref.layer2[0].bn1.running_mean)


def test_adapt_publishes_a_calibrated_model_and_says_why(parent, site, tmp_path, caplog):
    res = adapt(parent, site, recipes=ladder(steps=4, batch_size=8))
    assert set(res.finetuned) == {"gentle", "strong"}
    check = res.check
    assert check["n_check"] + check["n_finetune"] == len(site)
    for name in ("calibrated", "gentle", "strong"):
        assert set(check[name]) == {"opacity", "nodules", "haze", "mean"}
    # The ladder's record: each recipe against the one kept before it, and the last one kept is published.
    kept = "calibrated"
    for step in check["ladder"]:
        assert step["against"] == kept
        assert step["kept"] == (step["gain"] > check["margin"] and step["gain_low"] > 0)
        assert step["gain"] == pytest.approx(check[step["recipe"]]["mean"] - check[kept]["mean"], abs=2e-5)
        assert step["gain_low"] <= step["gain"] + 1e-9
        kept = step["recipe"] if step["kept"] else kept
    assert [s["recipe"] for s in check["ladder"]] == ["gentle", "strong"]
    assert res.chosen == kept
    assert res.payload is (res.calibrated if kept == "calibrated" else res.finetuned[kept])
    for p in (res.calibrated, *res.finetuned.values()):
        assert p["adaptation"]["check"]["chosen"] == res.chosen
    assert res.calibrated["threshold"]["n"] == len(site)
    for name, p in res.finetuned.items():
        # The fine-tuned model's threshold comes only from the normals the fine-tune never saw.
        assert p["threshold"]["n"] == check["n_check"] < len(site)
        assert "never trained on" in p["threshold"]["how"]
        assert p["adaptation"]["recipe"] == ladder(steps=4, batch_size=8)[name].to_dict()
    # The two recipes train differently: the strong one moves the early layers, the gentle one cannot.
    g, st = (dequantize_state(res.finetuned[k]["encoder"]) for k in ("gentle", "strong"))
    ref = dequantize_state(parent["encoder"])
    assert torch.equal(g["layer1.0.bn1.weight"], ref["layer1.0.bn1.weight"])
    assert not torch.equal(st["layer1.0.bn1.weight"], ref["layer1.0.bn1.weight"])
    assert all(torch.equal(res.calibrated["encoder"][k]["q"], v["q"])
               for k, v in parent["encoder"].items() if isinstance(v, dict))
    # Picture statistics: the calibrated model keeps its parent's (same encoder); each fine-tuned one gets its
    # own, fitted with its encoder on all the site's normals, which the gate uses without a word.
    assert res.calibrated[KEY] is parent[KEY]
    for name, p in res.finetuned.items():
        assert p[KEY]["encoder_sha256"] == encoder_fingerprint(p["encoder"]) != parent[KEY]["encoder_sha256"], name
        assert p[KEY]["n_normals"] == len(site)
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.familiarity"):
        assert all(familiarity.input_statistics(Detector(p, version=n)) is not None for n, p in res.finetuned.items())
    assert "input statistics" not in caplog.text
    out = save_model(res.payload, tmp_path / "adapted.pt")
    img = site.images[0, 0].float().numpy() / 255.0
    r = Detector.load(out).score(img)
    assert math.isfinite(r.score) and r.heatmap.shape == img.shape


def test_choose_walks_the_ladder_and_a_stronger_recipe_must_beat_the_one_kept_past_margin_and_noise():
    means = {"calibrated": 0.70, "gentle": 0.75, "strong": 0.78}
    lows = {("gentle", "calibrated"): 0.01, ("strong", "gentle"): 0.005, ("strong", "calibrated"): 0.04}

    def gain(recipe, against):
        return round(means[recipe] - means[against], 5), lows[(recipe, against)]

    kept, steps = choose(["gentle", "strong"], gain)
    assert kept == "strong" and [s["against"] for s in steps] == ["calibrated", "gentle"]
    means["strong"] = 0.75 + MARGIN  # not past the margin over gentle, though far past calibrated
    assert choose(["gentle", "strong"], gain)[0] == "gentle"
    means["strong"] = 0.78
    lows[("strong", "gentle")] = -0.01  # past the margin, but within the check's noise
    assert choose(["gentle", "strong"], gain)[0] == "gentle"
    lows[("gentle", "calibrated")] = -0.002  # gentle not sure: strong is compared with calibrated
    kept, steps = choose(["gentle", "strong"], gain)
    assert kept == "strong" and steps[1]["against"] == "calibrated"
    assert choose([], gain) == ("calibrated", [])


def test_paired_gain_is_sure_of_a_shift_seen_on_many_normals_and_not_on_few():
    rng = np.random.default_rng(0)

    def pair(n):
        base = CheckScores(rng.normal(size=n), {f: rng.normal(0.8, size=(4, n)) for f in ("a", "b")})
        # the other encoder: the same normals, lesions a little easier to see, unevenly so
        other = CheckScores(base.normal, {f: s + rng.normal(0.15, 0.6, size=s.shape) for f, s in base.lesioned.items()})
        return base, other

    gain_many, low_many = paired_gain(*pair(200))
    gain_few, low_few = paired_gain(*pair(7))
    assert gain_many > 0 and low_many > 0
    assert low_few < 0  # 7 normals, as the check of a site with 34: the same shift is not sure
    base, _ = pair(12)
    assert paired_gain(base, base) == (0.0, 0.0)


def test_ladder_names_and_overrides():
    lad = ladder(["strong"], steps=7, seed=3)
    assert list(lad) == ["strong"] and lad["strong"].steps == 7 and lad["strong"].seed == 3
    assert lad["strong"].freeze == RECIPES["strong"].freeze == "none"
    assert tuple(ladder()) == DEFAULT_LADDER == ADAPT_RECIPES  # the CLI spells the names out
    with pytest.raises(ValueError, match="recipes must be among"):
        ladder(["bold"])
    with pytest.raises(ValueError, match="recipes must be among"):
        ladder([])


def test_cli_adapt_writes_a_model_and_one_json_line(tmp_path, capsys):
    folder = tmp_path / "site"
    folder.mkdir()
    for p in nih_files(12):
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "adapted.pt"
    argv = ["adapt", "--normal", str(folder), "--output", str(out), "--steps", "2", "--replay", str(folder)]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["chosen"] in ("gentle", "strong", "calibrated") and line["n_images"] == 12
    assert set(line["check"]) == {"calibrated", "gentle", "strong"}
    payload = load_model(out)
    assert all(r["steps"] == 2 for r in payload["adaptation"]["recipes"].values())
    assert payload["adaptation"]["n_replay"] == 12
    assert line["model_version"] == Detector.load(out).version
