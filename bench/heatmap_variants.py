"""Benchmark: which encoder layers should the heatmap's per-location Gaussians use?

    python bench/heatmap_variants.py [--model FILE]

The shipped map (``anatpaste/score/heatmap.py``) uses layer2 pooled onto layer3's grid (8 x 8 at 128 px).
Finer grids are the obvious alternative (PaDiM uses layer1-3 at layer1's grid). Each variant here is fitted,
scaled and windowed exactly as a model file's map (``HeatmapScorer`` + ``calibrate_heatmap``): Gaussians
on the model's training normals, the per-location scale and the display threshold on its held-out normals.

Label-free figures (what a choice may rest on), on the held-out normals and modified copies of them:
- ``*_auc``: the map's peak separates the normals from their copies (AnatPaste pastes; the lesion families
  of ``anatpaste.paste.lesions``, which the network never trained on);
- ``*_hit``: the share of copies whose map peak lies where the image was changed (5 px slack).
Test figures, reported and never used to choose: the peak's AUC on ZhangLab and NIH test films, and the
share of normal / abnormal test films with any pixel above the display threshold. All at the model's input
size (the served map is this one, upsampled). Writes bench/results/heatmap_variants.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.adapt.check import lesioned_copies  # noqa: E402
from anatpaste.data import find_images, load_image_set  # noqa: E402
from anatpaste.evaluate import detection_metrics  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.paste import AnatPaste  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from anatpaste.score.features import normalise_input  # noqa: E402
from anatpaste.score.heat_calibration import calibrate_heatmap, windowed_maps  # noqa: E402
from anatpaste.score.heatmap import HeatmapScorer, feature_grid  # noqa: E402
from anatpaste.train.selection import holdout_split, pasted_copies  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402
from bench.default_model import TrainingNormals  # noqa: E402

Maps = dict[str, torch.Tensor]


def _up(x: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(x, size=side, mode="bilinear", align_corners=False)


VARIANTS: dict[str, Callable[[Maps], torch.Tensor]] = {
    "layer2+3 @ layer3 grid (shipped)": lambda m: feature_grid({"layer2": m["l2"], "layer3": m["l3"]}),
    "layer2 @ layer2 grid": lambda m: m["l2"],
    "layer2+3 @ layer2 grid": lambda m: torch.cat([m["l2"], _up(m["l3"], m["l2"].shape[-1])], 1),
    "layer1+2+3 @ layer2 grid": lambda m: torch.cat(
        [F.adaptive_avg_pool2d(m["l1"], m["l2"].shape[-1]), m["l2"], _up(m["l3"], m["l2"].shape[-1])], 1
    ),
    "layer1+2 @ layer1 grid": lambda m: torch.cat([m["l1"], _up(m["l2"], m["l1"].shape[-1])], 1),
}
TESTS = {
    "zhanglab": ("zhanglab/test/NORMAL", "zhanglab/test/PNEUMONIA"),
    "nih": ("nih/test/NORMAL", "nih/test/PNEUMONIA"),
}


@torch.no_grad()
def layer_maps(det: Detector, images: torch.Tensor, batch: int = 128) -> Maps:
    """layer1-3 feature maps (float32) of uint8 images on the model's grid."""
    enc = det.encoder.eval()
    out: dict[str, list[torch.Tensor]] = {"l1": [], "l2": [], "l3": []}
    for i in range(0, len(images), batch):
        x = normalise_input(images[i : i + batch], det.mean, det.std).expand(-1, enc.in_channels, -1, -1)
        l1 = enc.layer1(enc.maxpool(enc.relu(enc.bn1(enc.conv1(x)))))
        l2 = enc.layer2(l1)
        for k, v in (("l1", l1), ("l2", l2), ("l3", enc.layer3(l2))):
            out[k].append(v.float().contiguous())
    return {k: torch.cat(v) for k, v in out.items()}


def peak_hit(maps: torch.Tensor, original: torch.Tensor, changed: torch.Tensor) -> float:
    """Share of changed copies whose map peak lies where the copy differs from its original (5 px slack)."""
    where = (original.float() - changed.float()).abs()[:, 0] > 2
    where = F.max_pool2d(where.float()[:, None], 11, 1, 5)[:, 0] > 0
    idx = maps.flatten(1).argmax(1)
    return float(where.flatten(1)[torch.arange(len(idx)), idx].float().mean())


def _auc(neg: torch.Tensor, pos: torch.Tensor) -> float:
    return detection_metrics(neg.numpy(), pos.numpy())["auc"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=Path("bench/results/heatmap_variants.json"))
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    det = Detector.load(args.model)
    size, seed = det.image_size, int(det.payload["config"]["seed"])
    data = TrainingNormals().of(det)
    tr, ho = holdout_split(data, float(det.payload["config"]["holdout_fraction"]), seed)
    train, hold = data.subset(tr), data.subset(ho)
    copies = {"paste": pasted_copies(hold, AnatPaste(), seed=seed + 12345)}
    copies.update({f"lesion {k}": v for k, v in lesioned_copies(hold, 1, seed + 7).items()})
    tests = {
        (site, cls): load_image_set(find_images(SHARED_DATA / d), size, progress=False)
        for site, dirs in TESTS.items()
        for cls, d in zip(("normal", "abnormal"), dirs, strict=True)
    }
    feats = {"train": layer_maps(det, train.images), "hold": layer_maps(det, hold.images)}
    copy_feats = {k: layer_maps(det, v) for k, v in copies.items()}
    test_feats = {k: layer_maps(det, s.images) for k, s in tests.items()}
    results = {}
    for name, grid_of in VARIANTS.items():
        heat = HeatmapScorer.fit(
            grid_of(feats["train"]),
            int(det.payload["config"]["heatmap_channels"]),
            generator=torch.Generator().manual_seed(seed),
        )
        # scaled and given its display threshold exactly as a model file's map (per source, as export does)
        heat, display, _ = calibrate_heatmap(heat, heat.distance_grid(grid_of(feats["hold"])), hold.lungs, hold.source)

        def peaks(m: Maps, lungs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = windowed_maps(heat, heat.distance_grid(grid_of(m)), lungs)  # noqa: B023 (used at once)
            return w, w.flatten(1).amax(1)

        _, normal_peaks = peaks(feats["hold"], hold.lungs)
        row: dict[str, float] = {"display_threshold": display}
        for kind, f in copy_feats.items():
            maps, p = peaks(f, hold.lungs)
            row[f"label_free {kind} auc"] = _auc(normal_peaks, p)
            row[f"label_free {kind} hit"] = peak_hit(maps, hold.images, copies[kind])
        for site in TESTS:
            _, pn = peaks(test_feats[(site, "normal")], tests[(site, "normal")].lungs)
            _, pa = peaks(test_feats[(site, "abnormal")], tests[(site, "abnormal")].lungs)
            row[f"test {site} peak auc"] = _auc(pn, pa)
            row[f"test {site} normals above"] = float((pn > display).float().mean())
            row[f"test {site} abnormals above"] = float((pa > display).float().mean())
        results[name] = {k: round(v, 4) for k, v in row.items()}
        print(name, results[name], flush=True)
    write_results(
        args.out,
        {
            "what": "heatmap Gaussians on other encoder layers/grids: label-free figures on held-out normals and "
            "modified copies, test figures beside them (never used to choose)",
            "model": args.model.name,
            "model_version": det.version,
            "input_px": size,
            "command": command_line(argv),
            "commit": git_commit(),
            "machine": machine(),
            "seconds": round(time.perf_counter() - t0, 1),
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
