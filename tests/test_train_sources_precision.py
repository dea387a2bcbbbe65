"""Training under bf16 autocast where the CPU runs it natively, fp32 otherwise; several sources drawn equally."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA, zhang_files

import anatpaste.precision as precision
from anatpaste.data import ImageSet, find_images, load_image_set
from anatpaste.model.file import load_model
from anatpaste.precision import cpu_bf16_supported, use_bf16
from anatpaste.train import TrainConfig, train
from anatpaste.train.batches import draw_batch, source_balanced_cdf
from anatpaste.train.selection import holdout_split, split_holdout


@pytest.fixture(scope="module")
def two_sites() -> ImageSet:
    children = load_image_set(zhang_files("train", "NORMAL", n=30), 64, progress=False)
    adults = load_image_set(find_images(SHARED_DATA / "nih" / "train" / "NORMAL")[:10], 64, progress=False)
    return ImageSet.concat([children, adults])


def test_this_cpu_runs_bf16_natively_so_auto_chooses_it():
    # CI runs on the same CPU family as the throughput benchmark (avx512_bf16): the bf16 path must run here.
    assert cpu_bf16_supported(), "expected native bf16 on this machine (see bench/results/cpu_train_throughput.json)"
    assert use_bf16("auto", torch.device("cpu")) and not use_bf16("fp32", torch.device("cpu"))


def test_auto_falls_back_to_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    assert not use_bf16("auto", torch.device("cpu"))
    assert use_bf16("bf16", torch.device("cpu")), "an explicit bf16 is honoured (emulated, slow)"
    assert use_bf16("auto", torch.device("cuda"))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("prec", ["bf16", "fp32"])
def test_training_runs_and_records_its_precision(tmp_path, two_sites, prec):
    cfg = TrainConfig(image_size=64, steps=3, batch_size=8, eval_every=0, checkpoint_every=0, precision=prec)
    summary = train(cfg, two_sites, tmp_path / "m.pt", device="cpu")
    assert summary["bf16"] is (prec == "bf16")
    payload = load_model(tmp_path / "m.pt")
    assert payload["training"]["bf16"] is (prec == "bf16") and payload["config"]["precision"] == prec


def test_bf16_and_fp32_steps_agree_closely_from_the_same_start(two_sites):
    from anatpaste.model import AnatPasteNet
    from anatpaste.paste import AnatPaste
    from anatpaste.train.step import pretext_step

    x = two_sites.images[:8].float() / 255
    xp = AnatPaste()(x, two_sites.lungs[:8], generator=torch.Generator().manual_seed(0))
    labels = torch.cat([torch.zeros(8), torch.ones(8)]).long()
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        net = AnatPasteNet(in_channels=1).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        sched = torch.optim.lr_scheduler.ConstantLR(opt, 1.0)
        losses[bf16] = float(pretext_step(net, x, xp, labels, opt, sched, (0.5, 0.25), bf16).detach())
    assert losses[True] == pytest.approx(losses[False], rel=0.05), losses


def test_balanced_draws_give_each_source_the_same_share():
    source = torch.cat([torch.zeros(90, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    cdf = source_balanced_cdf(source)
    idx = draw_batch(100, 20_000, torch.Generator().manual_seed(0), cdf)
    share = float((source[idx] == 1).float().mean())
    assert 0.48 < share < 0.52, share
    assert source_balanced_cdf(torch.zeros(5, dtype=torch.long)) is None, "one source: plain uniform draws"


def test_each_source_holds_out_what_it_would_alone(two_sites):
    tr, ho = holdout_split(two_sites, 0.2, seed=0)
    assert sorted(tr.tolist() + ho.tolist()) == list(range(40))
    _, alone = split_holdout(30, 0.2, seed=0)
    assert ho[ho < 30].tolist() == alone.tolist(), "adding a source leaves the first source's hold-out unchanged"
    assert (ho >= 30).sum() == 2, "the second source holds out its own 20 %"


def test_cli_trains_on_two_sources_with_balanced_draws(tmp_path):
    from anatpaste.cli import main

    a, b = tmp_path / "children", tmp_path / "adults"
    for folder, files in ((a, zhang_files("train", "NORMAL", n=8)),
                          (b, find_images(SHARED_DATA / "nih" / "train" / "NORMAL")[:6])):
        folder.mkdir()
        for p in files:
            (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "m.pt"
    assert main(["train", "--normal", str(a), "--normal", str(b), "--balance-sources", "--output", str(out),
                 "--size", "64", "--steps", "2", "--batch-size", "4", "--eval-every", "0", "--device", "cpu"]) == 0
    data = load_model(out)["training"]["data"]
    assert data["n_per_source"] == [8, 6] and data["balance_sources"] is True
    assert data["sources"] == [[str(a)], [str(b)]]


@pytest.mark.parametrize(("field", "value"), [
    ("log_every", 0), ("lr", 0.0), ("eval_every", -1), ("steps", 0), ("batch_size", 1), ("image_size", 32),
    ("momentum", 1.5), ("heatmap_channels", 0),
    ("paste_lungs", "otsu"), ("input_norm", "imagenet"), ("paste_halo", "false"), ("jitter_originals", 1),
])
def test_training_settings_out_of_range_are_refused_where_they_are_defined(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_the_cli_and_the_server_take_their_training_defaults_and_ranges_from_the_core():
    from anatpaste.cli import build_parser
    from monailabel_app.lib.config import ConfigError, TrainOptions

    args = build_parser().parse_args(["train", "--normal", "x", "--output", "y"])
    core = TrainConfig()
    assert (args.size, args.steps, args.batch_size, args.lr, args.eval_every, args.checkpoint_every) == (
        core.image_size, core.steps, core.batch_size, core.lr, core.eval_every, core.checkpoint_every)
    assert (args.paste_lungs, args.paste_halo, args.input_norm, args.jitter_originals) == (
        core.paste_lungs, core.paste_halo, core.input_norm, core.jitter_originals)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainOptions(batch_size=5000)
    with pytest.raises(ConfigError, match="lr"):
        TrainOptions(lr=-1.0)


def test_the_threshold_is_the_highest_per_source_quantile_so_no_source_exceeds_its_target():
    from anatpaste.score.source_quantile import MIN_SOURCE_NORMALS, highest_source_quantile

    rng = np.random.default_rng(0)
    children, adults = rng.normal(10, 1, 135), rng.normal(14, 1, 18)  # the general model's held-out sizes
    scores = np.concatenate([children, adults])
    source = torch.tensor([0] * 135 + [1] * 18)
    value, by_source = highest_source_quantile(scores, source, 0.95)
    assert value == pytest.approx(np.quantile(adults, 0.95))
    assert value > np.quantile(scores, 0.95), "the pooled quantile would sit inside the adults' normals"
    assert [(b["source"], b["n"]) for b in by_source] == [(0, 135), (1, 18)]
    for k, part in ((0, children), (1, adults)):
        assert (part > value).sum() <= np.ceil(0.05 * len(part)), f"source {k} flags more normals than the target"
    # A source too small for its own quantile only joins the pool; one source alone is the plain quantile.
    few = torch.tensor([0] * 135 + [1] * (MIN_SOURCE_NORMALS - 1))
    small = scores[: 135 + MIN_SOURCE_NORMALS - 1]
    assert highest_source_quantile(small, few, 0.95)[0] == pytest.approx(np.quantile(small, 0.95))
    assert highest_source_quantile(children, None, 0.95) == (pytest.approx(np.quantile(children, 0.95)), [])


def test_the_heatmap_display_threshold_is_also_the_highest_per_source_quantile():
    from anatpaste.score import Detector
    from anatpaste.score.features import extract
    from anatpaste.score.heat_calibration import DISPLAY_QUANTILE, calibrate_heatmap, windowed_maps
    from anatpaste.score.heatmap import HeatmapScorer

    det = Detector.load()
    payload = det.payload
    children = load_image_set(zhang_files("test", "NORMAL", n=12), 128, progress=False)
    adults = load_image_set(find_images(SHARED_DATA / "nih" / "test" / "NORMAL")[:12], 128, progress=False)
    both = ImageSet.concat([children, adults])
    _, grids = extract(det.encoder, both.images, det.mean, det.std, with_grid=True)
    heat = HeatmapScorer.from_state_dict(payload["heatmap"])
    distances = heat.distance_grid(grids)
    scaled, display, by_source = calibrate_heatmap(heat, distances, both.lungs, both.source)
    peaks = windowed_maps(scaled, distances, both.lungs).flatten(1).amax(1)
    per_source = [float(torch.quantile(peaks[both.source == k], DISPLAY_QUANTILE)) for k in (0, 1)]
    assert [b["n"] for b in by_source] == [12, 12]
    assert display == pytest.approx(max(per_source))
    assert [b["quantile_value"] for b in by_source] == pytest.approx(per_source)
    pooled = calibrate_heatmap(heat, distances, both.lungs)
    assert pooled[1] == pytest.approx(float(torch.quantile(peaks, DISPLAY_QUANTILE))) and pooled[2] == []
    # The shipped file records how its display threshold was chosen.
    assert payload["heatmap"]["display_max"] == pytest.approx(
        max(b["quantile_value"] for b in payload["heatmap"]["display_by_source"]))
