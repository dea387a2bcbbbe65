"""A tiny CPU training run: it must learn, save a model that scores, and be deterministic and resumable."""

import json
import logging

import numpy as np
import pytest
import torch

from anatpaste.gate import familiarity
from anatpaste.gate.familiarity import score_gated
from anatpaste.gate.picture import KEY, MIN_NORMALS, encoder_fingerprint, statistics_problem
from anatpaste.io import read_radiograph
from anatpaste.model.file import load_model
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.score.detector import Detector
from anatpaste.train import TrainConfig, train
from anatpaste.train.export import build_payload


@pytest.fixture(scope="module")
def image_set(tiny_training):
    return tiny_training["data"]


@pytest.fixture(scope="module")
def trained(tiny_training):
    return tiny_training["path"], tiny_training["summary"], tiny_training["losses"]


def test_training_loss_falls(trained):
    _, _, losses = trained
    assert np.mean(losses[:5]) > np.mean(losses[-5:]), f"loss did not fall: {losses[:5]} → {losses[-5:]}"


def test_training_separates_synthetic_anomalies_better_than_chance(trained):
    # Held-out normals vs AnatPaste copies of them, scored by the pretext head: the network learnt the task.
    # (The shipped Gaussian's synthetic AUC needs more than 34 fitting images to move; it is checked to be
    # recorded, and on real scale in the benchmarks.)
    _, summary, _ = trained
    history = summary["history"]
    assert history[0]["step"] == 0, "the untrained baseline is recorded first"
    assert all(0 <= h["synthetic_auc"] <= 1 for h in history)
    final = history[-1]["classifier_auc"]
    assert final > 0.6, history
    assert final > history[0]["classifier_auc"] + 0.1, history


def test_model_file_carries_everything_needed_to_score(trained):
    path, summary, _ = trained
    payload = load_model(path)
    assert payload["preprocessing"]["image_size"] == 64
    assert payload["threshold"]["value"] == pytest.approx(summary["threshold"])
    assert payload["training"]["n_train"] + payload["training"]["n_holdout"] == 48
    assert payload["encoder_quantized"] is True
    torch.load(path, weights_only=True)  # the safe loader must accept the file


def test_the_trained_file_holds_picture_statistics_the_gate_uses(trained, image_set, caplog):
    """Fitted at export on all 48 normals (hold-out included) with the int8 encoder as stored: the gate loads
    them from the written file, fingerprint and all, and runs its layout and texture checks."""
    path, _, _ = trained
    payload = load_model(path)
    assert payload["encoder_quantized"] is True and statistics_problem(payload) is None
    assert payload[KEY]["n_normals"] == len(image_set) == 48
    assert payload[KEY]["encoder_sha256"] == encoder_fingerprint(payload["encoder"])
    det = Detector.load(path)
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.familiarity"):
        assert familiarity.input_statistics(det) is not None
        _, gate = score_gated(det, read_radiograph(image_set.paths[0]).pixels, "a training normal", maps=False)
    assert not [r.getMessage() for r in caplog.records if "input statistics" in r.getMessage()]
    assert {"layout", "texture"} <= set(gate.measures), gate.measures  # the checks ran on the file's statistics


def test_export_fits_the_statistics_with_an_fp32_encoder_and_none_from_too_few_normals(image_set, caplog):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = ResNet18Encoder(in_channels=1)  # untrained: the statistics need an encoder, not a good one
    cfg = TrainConfig(image_size=64, quantize=False, seed=0)
    half = len(image_set) // 2
    train_set, holdout = image_set.subset(list(range(half))), image_set.subset(list(range(half, len(image_set))))
    fp32 = build_payload(encoder, cfg, train_set, holdout, {}, {})
    assert fp32["encoder_quantized"] is False and statistics_problem(fp32) is None
    assert fp32[KEY]["n_normals"] == len(image_set)
    few = image_set.subset(list(range(MIN_NORMALS - 1)))
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.picture"):
        none = build_payload(encoder, cfg, few.subset(list(range(30))), few.subset(list(range(30, len(few)))), {}, {})
    assert KEY not in none and "holds none" in caplog.text


def test_scoring_is_deterministic_and_maps_keep_the_input_geometry(trained, image_set):
    path, _, _ = trained
    trained_paths = image_set.paths
    det = Detector.load(path)
    img = read_radiograph(trained_paths[0]).pixels[:, :200]  # non-square on purpose
    a, b = det.score(img), Detector.load(path).score(img)
    assert a.score == b.score
    assert a.heatmap.shape == img.shape and a.lung_mask.shape == img.shape
    assert a.lung_mask.dtype == bool and a.lung_mask.any()
    assert a.is_abnormal == (a.score > a.threshold)
    assert np.isclose(det.score_many([img])[0], a.score, rtol=1e-5)


def test_same_seed_gives_the_same_model(tmp_path, image_set):
    cfg = TrainConfig(image_size=64, steps=4, batch_size=8, seed=3, eval_every=0, checkpoint_every=0)
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    train(cfg, image_set, a, device="cpu")
    train(cfg, image_set, b, device="cpu")
    assert torch.equal(load_model(a)["gaussian"]["mean"], load_model(b)["gaussian"]["mean"])


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path, image_set):
    full = TrainConfig(image_size=64, steps=6, batch_size=8, seed=1, eval_every=3, checkpoint_every=3, log_every=1)
    train(full, image_set, tmp_path / "full.pt", device="cpu")
    ckpt = tmp_path / "run.ckpt"

    class Stop(Exception):
        pass

    def stop_after_3(p):
        if p.step == 4:
            raise Stop

    with pytest.raises(Stop):
        train(full, image_set, tmp_path / "resumed.pt", device="cpu", checkpoint=ckpt, progress=stop_after_3)
    assert ckpt.is_file() and not (tmp_path / "resumed.pt").exists()
    train(full, image_set, tmp_path / "resumed.pt", device="cpu", checkpoint=ckpt)
    m1, m2 = load_model(tmp_path / "full.pt"), load_model(tmp_path / "resumed.pt")
    assert torch.allclose(m1["gaussian"]["mean"], m2["gaussian"]["mean"], atol=1e-5)
    assert json.dumps(m1["training"]["history"]) == json.dumps(m2["training"]["history"])
    # Re-running the finished run only re-exports it: same weights, and the throughput of the whole run.
    train(full, image_set, tmp_path / "again.pt", device="cpu", checkpoint=ckpt)
    m3 = load_model(tmp_path / "again.pt")
    assert m3["training"]["images_per_s"] == m2["training"]["images_per_s"] > 0
    assert torch.equal(m3["gaussian"]["mean"], m2["gaussian"]["mean"])


def test_report_callback_is_recorded_at_every_evaluation_and_never_drives_selection(tmp_path, image_set):
    cfg = TrainConfig(image_size=64, steps=4, batch_size=8, seed=2, eval_every=2, checkpoint_every=0)
    seen = []

    def report(step, encoder):
        seen.append(step)
        return {"test_auc": 1.0 - step / 10}  # best at step 0, worst last: selection must ignore it

    plain = train(cfg, image_set, tmp_path / "plain.pt", device="cpu")
    reported = train(cfg, image_set, tmp_path / "reported.pt", device="cpu", report=report)
    assert seen == [0, 2, 4]
    assert [h["report"]["test_auc"] for h in reported["history"]] == [1.0, 0.8, 0.6]
    assert reported["selected_step"] == plain["selected_step"]
    m1, m2 = load_model(tmp_path / "plain.pt"), load_model(tmp_path / "reported.pt")
    assert torch.equal(m1["gaussian"]["mean"], m2["gaussian"]["mean"])


def test_training_leaves_the_global_random_state_as_it_was(tmp_path, image_set):
    cfg = TrainConfig(image_size=64, steps=2, batch_size=8, seed=5, eval_every=1, checkpoint_every=0)
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    train(cfg, image_set, tmp_path / "m.pt", device="cpu")
    assert torch.equal(torch.rand(4), expected), "train() drew from or re-seeded torch's global generator"
