"""Benchmark: does a site's Gaussian gain from the shipped model's covariance as a prior?

    python bench/site_covariance_prior.py [--model FILE] [--draws 3]

``calibrate`` fits the site's Gaussian on its own normals alone: a mean and a Ledoit-Wolf covariance of 512-d
embeddings from 25–184 films. The shipped file already holds a covariance fitted on about 1,400 normals (one per
training source). This asks whether the site's covariance is better estimated by pulling it towards that one:

    Σ = (n S + κ Σ₀) / (n + κ),   the site's mean kept,

with S the site's sample covariance, Σ₀ the shipped Gaussian's covariance of the source nearest to the site's
normals (smallest median distance), rescaled to the site's total variance, and κ a pseudo-count (κ = 0 is S
shrunk by Ledoit-Wolf, as shipped; κ = ∞ is Σ₀ with the site's mean). Same sites, draws and test films as
``bench/site_adaptation.py``. Beside each test AUC two label-free figures, computed on the site's local normals
only: the lesion check (half fits, the other half against copies with the synthetic lesions of
``anatpaste.adapt.check``, mean AUC over the families) and the cross-fitted mean log-likelihood of held-out
normals (5 folds). Test AUCs are reported, never used to choose. Writes bench/results/site_covariance_prior.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.adapt.check import lesioned_copies  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector, GaussianScorer  # noqa: E402
from anatpaste.score.crossfit import fold_index  # noqa: E402
from anatpaste.score.features import extract  # noqa: E402
from anatpaste.score.source_gaussians import SourceGaussians  # noqa: E402
from bench.common import command_line, git_commit, machine, write_results  # noqa: E402
from bench.scoring_variants_sites import auc  # noqa: E402
from bench.site_adaptation import BUDGETS, draw_split, load_site  # noqa: E402

KAPPAS: tuple[float, ...] = (0.0, 25.0, 100.0, 400.0, 1600.0, math.inf)


def prior_covariances(det: Detector) -> list[torch.Tensor]:
    """Covariances (D, D) of the model file's image Gaussians (one per training source, or one)."""
    parts = det.gaussian.parts if isinstance(det.gaussian, SourceGaussians) else [det.gaussian]
    return [torch.linalg.inv(g.precision.double()) for g in parts]


class PriorGaussian:
    """Gaussian with the local mean and Σ = (n S + κ Σ₀)/(n + κ) (κ = 0: Ledoit-Wolf of the local normals)."""

    def __init__(self, local: torch.Tensor, prior: torch.Tensor, kappa: float) -> None:
        x = GaussianScorer.normalise(local).double()
        n = x.shape[0]
        self.mean = x.mean(0)
        if kappa == 0:
            cov = torch.from_numpy(ledoit_wolf(x.numpy())[0])
        else:
            s = torch.cov(x.T, correction=0)
            p = prior * (torch.trace(s) / torch.trace(prior))  # the site's total variance, the prior's shape
            cov = p if math.isinf(kappa) else (n * s + kappa * p) / (n + kappa)
        self.precision = torch.linalg.inv(cov)
        self.logdet = torch.linalg.slogdet(cov)[1]

    def distance(self, emb: torch.Tensor) -> torch.Tensor:
        d = GaussianScorer.normalise(emb).double() - self.mean
        return torch.einsum("nd,de,ne->n", d, self.precision, d).clamp_min(0).sqrt()

    def loglik(self, emb: torch.Tensor) -> float:
        """Mean log-density (up to the constant) of held-out embeddings."""
        return float((-0.5 * (self.distance(emb) ** 2 + self.logdet)).mean())


def nearest_prior(priors: list[torch.Tensor], det: Detector, local: torch.Tensor) -> torch.Tensor:
    if len(priors) == 1:
        return priors[0]
    parts, scales = det.gaussian.parts, det.gaussian.scales  # type: ignore[union-attr]
    med = [float(g.score(local).median()) / s for g, s in zip(parts, scales, strict=True)]
    return priors[int(np.argmin(med))]


def embed(det: Detector, images: torch.Tensor) -> torch.Tensor:
    return extract(det.encoder, images, det.mean, det.std)[0].float()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--sites", nargs="+", default=["nih", "montgomery", "shenzhen"])
    ap.add_argument("--out", type=Path, default=Path("bench/results/site_covariance_prior.json"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    det = Detector.load(args.model)
    priors = prior_covariances(det)
    rows = []
    for site in args.sites:
        pool_all, abnormal, fixed = load_site(site, det.image_size)
        pe, ae = embed(det, pool_all.images), embed(det, abnormal.images)
        fe = embed(det, fixed.images) if fixed is not None else None
        for draw in range(args.draws):  # the draws of bench/site_adaptation.py
            drawn, pool = draw_split(site, len(pool_all), draw, fe is not None)
            tn = fe if drawn is None else pe[drawn]
            for b in BUDGETS:
                if b != "all" and int(b) >= len(pool):
                    continue
                idx = pool if b == "all" else pool[: int(b)]
                local = pe[idx]
                prior = nearest_prior(priors, det, local)
                half = len(idx) // 2
                fit_half, check_half = local[:half], local[half:]
                lesioned = [embed(det, imgs) for imgs in lesioned_copies(pool_all.subset(idx[half:].tolist()), 2,
                                                                         seed=draw).values()]
                fold = fold_index(len(idx), 5, seed=draw)
                row = {"site": site, "draw": draw, "budget": str(b), "n_local": len(idx), "methods": {}}
                for kappa in KAPPAS:
                    g = PriorGaussian(local, prior, kappa)
                    gh = PriorGaussian(fit_half, prior, kappa)
                    c0 = gh.distance(check_half)
                    lesion = float(np.mean([auc(c0, gh.distance(le)) for le in lesioned]))
                    ll = float(np.mean([PriorGaussian(local[fold != f], prior, kappa).loglik(local[fold == f])
                                        for f in range(5)]))
                    row["methods"][str(kappa)] = {"test_auc": round(auc(g.distance(tn), g.distance(ae)), 4),
                                                  "lesion_check": round(lesion, 4), "heldout_loglik": round(ll, 2)}
                rows.append(row)
                print(site, draw, b, {k: v["test_auc"] for k, v in row["methods"].items()}, flush=True)
    summary: dict[str, dict] = {}
    for site in args.sites:
        for b in map(str, BUDGETS):
            rs = [r for r in rows if r["site"] == site and r["budget"] == b]
            if rs:
                summary[f"{site}/{b}"] = {
                    k: {f: round(float(np.mean([r["methods"][k][f] for r in rs])), 4)
                        for f in ("test_auc", "lesion_check", "heldout_loglik")}
                    for k in rs[0]["methods"]}
    write_results(args.out, {
        "what": "site Gaussian with the shipped covariance as a prior: Sigma = (n S + kappa Sigma0)/(n + kappa); "
                "kappa 0 = Ledoit-Wolf of the local normals (shipped calibrate), inf = Sigma0 with the local mean; "
                "test AUC beside two label-free figures from the local normals",
        "model": args.model.name, "model_version": det.version, "draws": args.draws, "kappas": list(map(str, KAPPAS)),
        "command": command_line(argv), "commit": git_commit(), "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1), "summary_mean_over_draws": summary, "rows": rows,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
