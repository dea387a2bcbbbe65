"""Benchmark: what each divergence from the original AnatPaste code costs, arm by arm at the same CPU budget.

Every arm trains on ZhangLab's train + val normals with the same seeds (so the same random init, hold-out
and label-free check), steps, batch size, input size and precision; only the recipe differs:

- ``shipped``: today's recipe (improved lung masks, no halo, (x - 0.5) / 0.25, only the patch jittered);
- ``original-masks``: pastes into the published threshold masks, blended with the original's dark halo;
- ``original-input``: the original's (x - 0.5) / 0.5 and brightness/contrast jitter of the whole originals;
- ``original-all``: both.

Per run: wall seconds, training images/s, the label-free figure the project selects by (synthetic-anomaly AUC
of held-out normals vs pasted copies of them, at the selected step, as the training loop reports it; also
recomputed from the stored file) and, for reporting only, the test AUC on ZhangLab's test split and, zero-shot,
on NIH's. That synthetic figure uses the shipped paste, so it favours the shipped arm; a second label-free
figure, ``lesion_auc`` (held-out normals vs copies with synthetic lesions no arm trained on), favours none. An
arm replaces ``shipped`` only if it is best on both. Results are written after every run, and a
rerun with the same settings skips the runs already in the results file (an interrupted run resumes from its
checkpoint in ``--workdir``).

    python bench/paper_fidelity.py                                  # 4 arms, seed 0, 400 steps at 128 px
    python bench/paper_fidelity.py --seeds 0 1 2 --arms shipped original-all
    python bench/paper_fidelity.py --tiny                           # seconds; numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.adapt.check import lesion_scores, lesioned_copies  # noqa: E402
from anatpaste.data import ImageSet, find_images, load_image_set  # noqa: E402
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from anatpaste.train import TrainConfig, train  # noqa: E402
from anatpaste.train.selection import detector_synthetic_auc, holdout_split  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402
from bench.default_model import site_figures, test_sets  # noqa: E402

# TrainConfig options of each arm; everything else is the same for all of them.
ARMS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "original-masks": {"paste_lungs": "anatpaste", "paste_halo": True},
    "original-input": {"input_norm": "original", "jitter_originals": True},
    "original-all": {"paste_lungs": "anatpaste", "paste_halo": True, "input_norm": "original",
                     "jitter_originals": True},
}
TEST_SITES = ("zhanglab", "nih")
CHOICE_RULE = ("two label-free figures: synthetic_auc (held-out training normals vs pasted copies of them, at the "
               "step the run selected, as the training loop reports it) and lesion_auc (the same held-out normals "
               "vs copies with synthetic lesions no arm trained on); an arm other than shipped is kept only if it "
               "is best on both; the test AUCs (ZhangLab test, NIH test zero-shot) are reported, never used to "
               "choose")
LABEL_FREE_NOTE = ("every arm is checked on the same synthetic anomalies: the shipped paste recipe (improved lung "
                   "masks, no halo) into the run's held-out normals, so arms that train on the original's pastes "
                   "are judged on pastes they were not trained on")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100, help="steps between label-free evaluations")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    ap.add_argument("--limit", type=int, default=0, help="only this many training normals per folder (smoke runs)")
    ap.add_argument("--test-limit", type=int, default=0, help="only this many test films per folder (smoke runs)")
    ap.add_argument("--tiny", action="store_true", help="smoke run: 64 px, 4 steps, 24 normals, 6 films per folder")
    ap.add_argument("--fresh", action="store_true", help="ignore the runs already in the results file")
    ap.add_argument("--workdir", type=Path, default=None, help="model files and checkpoints (default: runs/...)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.tiny:
        args.size, args.steps, args.batch_size, args.eval_every = 64, 4, 8, 2
        args.limit, args.test_limit, args.seeds = 24, 6, args.seeds[:1]
    name = "paper_fidelity_tiny" if args.tiny else "paper_fidelity"
    args.workdir = args.workdir or Path("runs") / name
    args.out = args.out or Path("bench/results") / f"{name}.json"
    return args


def training_normals(limit: int, size: int) -> tuple[ImageSet, dict[str, Any]]:
    folders = [SHARED_DATA / "zhanglab" / "train" / "NORMAL", SHARED_DATA / "zhanglab" / "val" / "NORMAL"]
    paths = [p for f in folders for p in (find_images(f)[:limit] if limit else find_images(f))]
    data = load_image_set(paths, size)
    return data, {"dataset": "zhanglab train/NORMAL + val/NORMAL", "n_images": len(data),
                  "folders": ["zhanglab/train/NORMAL", "zhanglab/val/NORMAL"]}


def test_films(limit: int) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """ZhangLab's and NIH's test films, read once: (normal, pneumonia) pixels per site."""
    files = test_sets()

    def read(paths: list[Path]) -> list[np.ndarray]:
        return [read_radiograph(p).pixels for p in (paths[:limit] if limit else paths)]

    return {site: (read(files[site][0]), read(files[site][1])) for site in TEST_SITES}


def run_arm(arm: str, seed: int, args: argparse.Namespace, data: ImageSet, data_summary: dict[str, Any],
            films: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], device: str) -> dict[str, Any]:
    """Train one arm with one seed (resuming its checkpoint if there is one), then its figures."""
    cfg = TrainConfig(image_size=args.size, steps=args.steps, batch_size=args.batch_size, seed=seed,
                      eval_every=args.eval_every, checkpoint_every=args.eval_every, precision=args.precision,
                      **ARMS[arm])
    model, ckpt = args.workdir / f"{arm}_s{seed}.pt", args.workdir / f"{arm}_s{seed}.ckpt"
    if args.fresh:
        ckpt.unlink(missing_ok=True)
    resumed = ckpt.is_file()
    t = time.perf_counter()
    summary = train(cfg, data, model, device=device, checkpoint=ckpt, data_summary=data_summary)
    wall = time.perf_counter() - t
    det = Detector.load(model)
    by_step = {h["step"]: round(h["synthetic_auc"], 4) for h in summary["history"]}
    selected = summary["selected_step"]
    return {
        "arm": arm, "seed": seed, "options": ARMS[arm],
        "wall_s": round(wall, 1), "train_s": summary["train_seconds"],
        # From the checkpointed training clock, so a resumed run's rate still covers all of its steps.
        "img_per_s": round(2 * args.batch_size * args.steps / max(summary["train_seconds"], 1e-9), 1),
        "bf16": summary["bf16"], "resumed": resumed,
        "selected_step": selected, "synthetic_auc": by_step.get(selected),
        "file_synthetic_auc": round(detector_synthetic_auc(det, data, cfg.holdout_fraction, seed), 4),
        "synthetic_auc_by_step": by_step,
        **{f"{site}_test": site_figures(det, *films[site]) for site in TEST_SITES},
    }


def lesion_auc(det: Detector, data: ImageSet, holdout_fraction: float, seed: int) -> dict[str, float]:
    """A second label-free figure that favours no paste recipe: the run's held-out normals against copies with
    synthetic lesions no arm trained on (``anatpaste.adapt.check``: opacity, nodules, haze), Gaussian on the
    run's training normals, the model file as stored."""
    train_idx, hold_idx = holdout_split(data, holdout_fraction, seed)
    holdout = data.subset(hold_idx)
    lesioned = lesioned_copies(holdout, 4, seed)
    return lesion_scores(det.encoder, data.subset(train_idx), holdout, lesioned, (det.mean, det.std)).aucs()


def add_lesion_figures(runs: list[dict[str, Any]], args: argparse.Namespace, data: ImageSet) -> None:
    """``lesion_auc`` of every finished run that lacks it, from its model file in ``--workdir``."""
    for r in runs:
        model = args.workdir / f"{r['arm']}_s{r['seed']}.pt"
        if "lesion_auc" not in r and model.is_file():
            r["lesion_auc"] = lesion_auc(Detector.load(model), data, TrainConfig().holdout_fraction, r["seed"])
            print(json.dumps({"arm": r["arm"], "seed": r["seed"], "lesion_auc": r["lesion_auc"]}), flush=True)


def arm_means(runs: list[dict[str, Any]], arms: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        rows = [r for r in runs if r["arm"] == arm]
        if not rows:
            continue
        figures = {
            "synthetic_auc": [r["synthetic_auc"] for r in rows],
            "file_synthetic_auc": [r["file_synthetic_auc"] for r in rows],
            **({"lesion_auc": [r["lesion_auc"]["mean"] for r in rows]} if all("lesion_auc" in r for r in rows) else {}),
            **{f"{site}_test_auc": [r[f"{site}_test"]["auc"] for r in rows] for site in TEST_SITES},
            "wall_s": [r["wall_s"] for r in rows],
            "img_per_s": [r["img_per_s"] for r in rows],
        }
        out[arm] = {"n_seeds": len(rows), **{k: round(float(np.mean(v)), 4) for k, v in figures.items()}}
    return out


def choice(means: dict[str, dict[str, Any]], complete: bool) -> dict[str, Any]:
    """The arm best on the synthetic AUC, and the one best on the lesion AUC where every run has it; a change
    from ``shipped`` is kept only where both label-free figures prefer the same arm (the synthetic AUC alone
    favours the shipped paste, see LABEL_FREE_NOTE)."""
    by_paste = max(means, key=lambda a: means[a]["synthetic_auc"]) if means else None
    with_lesions = [a for a in means if "lesion_auc" in means[a]]
    by_lesion = max(with_lesions, key=lambda a: means[a]["lesion_auc"]) if with_lesions else None
    keep = by_paste if by_lesion is None or by_lesion == by_paste else "shipped"
    return {"by": "synthetic_auc and lesion_auc", "rule": CHOICE_RULE, "best_synthetic_auc": by_paste,
            "best_lesion_auc": by_lesion, "keep": keep, "complete": complete, "label_free_note": LABEL_FREE_NOTE}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = {"size": args.size, "steps": args.steps, "batch_size": args.batch_size, "eval_every": args.eval_every,
                "precision": args.precision, "device": device, "limit": args.limit, "test_limit": args.test_limit,
                "torch_threads": torch.get_num_threads()}
    runs: list[dict[str, Any]] = []
    if args.out.is_file() and not args.fresh:
        old = json.loads(args.out.read_text())
        if old.get("settings") == settings:  # same experiment: keep its finished runs
            runs = [r for r in old.get("runs", []) if r["arm"] in ARMS]
            print(f"resuming: {len(runs)} runs already in {args.out}", flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data, data_summary = training_normals(args.limit, args.size)
    films = test_films(args.test_limit)
    prep_s = time.perf_counter() - t0
    print(f"read {len(data)} training normals and the test films in {prep_s:.1f} s", flush=True)

    todo = [(a, s) for s in args.seeds for a in args.arms]
    result: dict[str, Any] = {
        "benchmark": "paper fidelity: the original AnatPaste code's recipe, divergence by divergence",
        "tiny_smoke_run": args.tiny, "machine": machine(), "commit": git_commit(), "command": command_line(argv),
        "settings": settings, "arms": ARMS, "seeds": args.seeds, "n_train": len(data),
        "n_test": {site: [len(films[site][0]), len(films[site][1])] for site in TEST_SITES},
        "prep_seconds": round(prep_s, 1), "runs": runs,
    }
    for arm, seed in todo:
        if any(r["arm"] == arm and r["seed"] == seed for r in runs):
            continue
        runs.append(run_arm(arm, seed, args, data, data_summary, films, device))
        add_lesion_figures(runs[-1:], args, data)
        print(json.dumps(runs[-1]), flush=True)
        result["mean"] = arm_means(runs, list(ARMS))
        done = {(r["arm"], r["seed"]) for r in runs}
        result["choice"] = choice(result["mean"], complete=all(k in done for k in todo))
        write_results(args.out, result)  # after every run: a run cut short keeps the finished ones
    if "mean" not in result or any("lesion_auc" not in r for r in runs):  # nothing was left to run
        add_lesion_figures(runs, args, data)
        result["mean"] = arm_means(runs, list(ARMS))
        result["choice"] = choice(result["mean"], complete=True)
        write_results(args.out, result)
    print(json.dumps({"mean": result["mean"], "keep": result["choice"]["keep"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
