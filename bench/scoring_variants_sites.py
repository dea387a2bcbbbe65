"""Benchmark: scoring-side variants when a site calibrates on its own normals (same encoder, no fine-tune).

    python bench/scoring_variants_sites.py [--model FILE]

``bench/scoring_variants.py`` compares scorers zero-shot on the model's own training normals, where kNN-5 had the
better label-free figure. A deployed model is calibrated on the site's normals, so this asks the same question
there: at each adult site of ``bench/site_adaptation.py`` (same draws, same test films, budgets 25 / 50 / 100 /
all), each scorer is fitted on the site's local normals and its test AUC reported beside a label-free figure
computed at the site (half of the local normals fit the scorer, the other half against copies of them with the
synthetic lesions of ``anatpaste.adapt.check``: mean AUC over the lesion families). Scorers: the Gaussian
(Mahalanobis, shipped) and the mean cosine distance to the k nearest local normals (k = 1, 5, 10), on the
512-d embedding and on layer2 + layer3 + layer4 pooled (896-d). Test AUCs are reported, never used to choose.
Writes bench/results/scoring_variants_sites.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.adapt.check import lesioned_copies  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector, GaussianScorer  # noqa: E402
from anatpaste.score.features import normalise_input  # noqa: E402
from bench.common import command_line, git_commit, machine, write_results  # noqa: E402
from bench.site_adaptation import BUDGETS, draw_split, load_site  # noqa: E402

KS = (1, 5, 10)


@torch.no_grad()
def features(det: Detector, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"emb": (N, 512), "l234": (N, 896)} of uint8 images (each pooled stage L2-normalised in l234)."""
    det.encoder.eval()
    embs, multi = [], []
    for i in range(0, images.shape[0], 64):
        emb, maps = det.encoder(normalise_input(images[i : i + 64], det.mean, det.std), return_maps=True)
        parts = [F.adaptive_avg_pool2d(maps[k], 1).flatten(1) for k in ("layer2", "layer3")] + [emb]
        embs.append(emb.float())
        multi.append(torch.cat([F.normalize(p.float(), dim=1) for p in parts], 1))
    return {"emb": torch.cat(embs), "l234": torch.cat(multi)}


def scores(fit: dict[str, torch.Tensor], x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every scorer fitted on ``fit``, applied to ``x``."""
    out = {}
    for f in ("emb", "l234"):
        out[f"gaussian-{f}"] = GaussianScorer.fit(fit[f]).score(x[f])
        sim = F.normalize(x[f], dim=1) @ F.normalize(fit[f], dim=1).T
        for k in KS:
            out[f"knn{k}-{f}"] = 1 - sim.topk(min(k, sim.shape[1]), dim=1).values.mean(1)
    return out


def auc(s0: torch.Tensor, s1: torch.Tensor) -> float:
    return float(roc_auc_score([0] * len(s0) + [1] * len(s1), torch.cat([s0, s1]).numpy()))


def pick(d: dict[str, torch.Tensor], idx) -> dict[str, torch.Tensor]:
    return {k: v[torch.as_tensor(np.asarray(idx), dtype=torch.long)] for k, v in d.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/scoring_variants_sites.json"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    det = Detector.load(args.model)
    rows = []
    for site in ("nih", "montgomery", "shenzhen"):
        pool_all, abnormal, fixed = load_site(site, det.image_size)
        pf, af = features(det, pool_all.images), features(det, abnormal.images)
        ff = features(det, fixed.images) if fixed is not None else None
        for draw in range(args.draws):  # the draws of bench/site_adaptation.py
            drawn, pool = draw_split(site, len(pool_all), draw, ff is not None)
            tn = ff if drawn is None else pick(pf, drawn)
            for b in BUDGETS:
                if b != "all" and int(b) >= len(pool):
                    continue
                idx = pool if b == "all" else pool[: int(b)]
                s0, s1 = scores(pick(pf, idx), tn), scores(pick(pf, idx), af)
                half = len(idx) // 2  # label-free: half fits, the other half and its lesioned copies are scored
                check = pool_all.subset(idx[half:].tolist())
                c0 = scores(pick(pf, idx[:half]), pick(pf, idx[half:]))
                lesion: dict[str, list[float]] = {}
                for imgs in lesioned_copies(check, 2, seed=draw).values():
                    c1 = scores(pick(pf, idx[:half]), features(det, imgs))
                    for m in c1:
                        lesion.setdefault(m, []).append(auc(c0[m], c1[m]))
                rows.append({"site": site, "draw": draw, "budget": str(b), "n_local": len(idx),
                             "test_auc": {m: round(auc(s0[m], s1[m]), 4) for m in s0},
                             "label_free": {m: round(float(np.mean(v)), 4) for m, v in lesion.items()}})
                print(rows[-1]["site"], draw, b, {m: rows[-1]["test_auc"][m] for m in ("gaussian-emb", "knn5-emb")},
                      flush=True)
    summary = {}
    for site in ("nih", "montgomery", "shenzhen"):
        for b in ("50", "all"):
            rs = [r for r in rows if r["site"] == site and r["budget"] == b]
            if rs:
                summary[f"{site}/{b}"] = {
                    m: {"test_auc": round(float(np.mean([r["test_auc"][m] for r in rs])), 4),
                        "label_free": round(float(np.mean([r["label_free"][m] for r in rs])), 4)}
                    for m in rs[0]["test_auc"]}
    write_results(args.out, {
        "what": "scorers fitted on a site's own normals (calibrate's setting), test AUC beside a label-free figure "
                "computed at the site; shipped = gaussian-emb",
        "model": args.model.name, "model_version": det.version, "draws": args.draws,
        "command": command_line(argv), "commit": git_commit(), "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1), "summary_mean_over_draws": summary, "rows": rows,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
