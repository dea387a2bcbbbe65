"""Benchmark: scoring-side variants on one encoder, each with its label-free figure beside the test AUCs.

    python bench/scoring_variants.py [--model FILE] [--checkpoint FILE.ckpt]

Variants (same encoder, no retraining):
- features: the 512-d embedding (shipped), or layer2 + layer3 + layer4 pooled and concatenated (896-d);
- scorer: the Gaussian (Mahalanobis, shipped), the mean cosine distance to the 5 nearest training normals, or
  one Gaussian per training source (children, adults) with the smallest scaled distance (``--scorers``);
- weights: int8 as stored in the model file (shipped), or the fp32 weights of the same step from the run's
  checkpoint (``--checkpoint``, which holds the selected step's fp32 state).
The label-free figure is the synthetic-anomaly AUC: the model's held-out training normals against fixed pasted
copies of them, with the scorer fitted on the training part. Test AUCs (ZhangLab, NIH, Montgomery, Shenzhen)
are reported, never used to choose. Writes bench/results/scoring_variants.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.model import AnatPasteNet  # noqa: E402
from anatpaste.model.resnet import ResNet18Encoder  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import (
    Detector,  # noqa: E402
    GaussianScorer,  # noqa: E402
)
from anatpaste.score.features import normalise_input  # noqa: E402
from anatpaste.score.source_gaussians import SourceGaussians  # noqa: E402
from anatpaste.train.selection import evaluation_sets, holdout_split  # noqa: E402
from bench.common import command_line, git_commit, machine, write_results  # noqa: E402
from bench.default_model import TrainingNormals, test_sets  # noqa: E402


@torch.no_grad()
def features(encoder: ResNet18Encoder, images: torch.Tensor, mean: float, std: float) -> dict[str, torch.Tensor]:
    """{"emb": (N, 512), "l234": (N, 896) pooled layer2, layer3, layer4, each L2-normalised} of uint8 images."""
    encoder.eval()
    embs, multi = [], []
    for i in range(0, images.shape[0], 64):
        x = normalise_input(images[i : i + 64], mean, std)
        emb, maps = encoder(x, return_maps=True)
        parts = [F.adaptive_avg_pool2d(maps[k], 1).flatten(1) for k in ("layer2", "layer3")] + [emb]
        embs.append(emb.float())
        multi.append(torch.cat([F.normalize(p.float(), dim=1) for p in parts], 1))
    return {"emb": torch.cat(embs), "l234": torch.cat(multi)}


def knn_scores(fit: torch.Tensor, x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Mean cosine distance to the ``k`` nearest fitting embeddings."""
    sim = F.normalize(x, dim=1) @ F.normalize(fit, dim=1).T
    return 1 - sim.topk(k, dim=1).values.mean(1)


def scorer(kind: str, fit: torch.Tensor, source: torch.Tensor | None = None):
    if kind == "gaussian":
        g = GaussianScorer.fit(fit)
        return lambda x: g.score(x)
    if kind == "gaussian-per-source":
        assert source is not None
        return SourceGaussians.fit(fit, source).score  # what a multi-source model file scores with
    return lambda x: knn_scores(fit, x)


def auc(s0: torch.Tensor, s1: torch.Tensor) -> float:
    return round(float(roc_auc_score([0] * len(s0) + [1] * len(s1), torch.cat([s0, s1]).numpy())), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--checkpoint", type=Path, help="the run's .ckpt, for the fp32 weights of the selected step")
    ap.add_argument("--out", type=Path, default=Path("bench/results/scoring_variants.json"))
    ap.add_argument("--scorers", nargs="+", default=["gaussian", "knn5"],
                    choices=["gaussian", "knn5", "gaussian-per-source"])
    ap.add_argument("--features", nargs="+", default=["emb", "l234"], choices=["emb", "l234"])
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    det = Detector.load(args.model)
    cfg = det.payload["config"]
    data = TrainingNormals().of(det)
    tr, ho = holdout_split(data, cfg["holdout_fraction"], cfg["seed"])
    train_set, holdout = data.subset(tr), data.subset(ho)
    _, pasted = evaluation_sets(train_set, holdout, cfg["seed"])
    sites = {name: [torch.cat([det._input(read_radiograph(p).pixels) for p in files]) for files in pair]
             for name, pair in test_sets().items()}

    encoders = {"int8 (file)": det.encoder}
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if state["best_step"] != det.payload["training"]["selected_step"]:
            raise SystemExit(f"checkpoint's best step {state['best_step']} is not the file's selected step")
        net = AnatPasteNet(in_channels=1)
        net.load_state_dict(state["best_state"])
        encoders["fp32 (checkpoint)"] = net.encoder
    rows = []
    for wname, enc in encoders.items():
        feats = {k: features(enc, x, det.mean, det.std) for k, x in
                 {"fit": train_set.images, "held": holdout.images, "pasted": pasted}.items()}
        site_feats = {s: [features(enc, x, det.mean, det.std) for x in pair] for s, pair in sites.items()}
        for fname in args.features:
            for kind in args.scorers:
                score = scorer(kind, feats["fit"][fname], train_set.source)
                row = {
                    "weights": wname, "features": fname, "scorer": kind,
                    "label_free_synthetic_auc": auc(score(feats["held"][fname]), score(feats["pasted"][fname])),
                    "test_auc": {s: auc(score(n[fname]), score(a[fname])) for s, (n, a) in site_feats.items()},
                }
                rows.append(row)
                print(row, flush=True)
    write_results(args.out, {
        "what": "scoring-side variants on one encoder: label-free synthetic AUC (held-out training normals vs "
                "pasted copies) beside zero-shot test AUCs; shipped = int8 (file), emb, gaussian",
        "model": args.model.name, "model_version": det.version, "checkpoint": args.checkpoint.name
        if args.checkpoint else None, "n_fit": len(train_set), "n_holdout": len(holdout),
        "command": command_line(argv), "commit": git_commit(), "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1), "variants": rows,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
