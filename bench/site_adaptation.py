"""Benchmark: how the shipped model does at adult hospitals it never saw, and what calibrate / fine-tune /
adapt make of each site's own normals.

Sites, each treated as its own hospital: Montgomery (80 N / 58 TB) and Shenzhen (54 / 56) from
``shared/data/lungmasks``, NIH (``shared/data/nih``: 184 train normals, test 68 N / 270 pneumonia).
For each site and draw (3 seeds): a test set (NIH: its test split; lungmasks: a random share of the normals
plus every TB film) and, nested, 25 / 50 / 100 / all of the remaining normals as the site's local normals.

Methods: ``zero-shot`` (the shipped file as is), ``calibrate``, ``finetune-<recipe>`` for each recipe of the
adapt ladder (``gentle``, ``strong``: that fine-tuned encoder, calibrated, whatever the check says), ``adapt``
(what ``anatpaste adapt`` publishes: the check's choice),
``finetune-server-old`` (the server's retrain before adapt existed: ``anatpaste.train.train`` fine-tuning the
whole net, 200 steps of 16 + 16, lr 0.01, fp32; only at the largest budget of the first draw, it is slow).
The fine-tuning methods run at the budgets of ``--finetune-budgets`` (default 50 and all); calibrate at all.
Abnormal films are only ever scored for the reported figures: nothing here trains on them or picks with them.

    python bench/site_adaptation.py                      # everything (about an hour on the 2-core CPU)
    python bench/site_adaptation.py --sites nih --draws 1 --budgets 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.adapt import adapt, calibrate, ladder  # noqa: E402
from anatpaste.adapt.adapt import MARGIN  # noqa: E402
from anatpaste.data import ImageSet, find_images, load_image_set  # noqa: E402
from anatpaste.evaluate import detection_metrics  # noqa: E402
from anatpaste.model.file import load_model  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from anatpaste.train import TrainConfig, train  # noqa: E402
from bench.common import REPO, SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402
from bench.default_model import TrainingNormals  # noqa: E402

RESULTS = REPO / "bench" / "results" / "site_adaptation.json"
TEST_NORMALS = {"montgomery": 24, "shenzhen": 20}  # lungmasks normals drawn into each draw's test set
BUDGETS = (25, 50, 100, "all")


def site_files(site: str) -> tuple[list[Path], list[Path], list[Path] | None]:
    """(local-normal pool, abnormal test films, fixed test normals or None = draw them from the pool)."""
    if site == "nih":
        root = SHARED_DATA / "nih"
        test_n = find_images(root / "test/NORMAL")
        return find_images(root / "train/NORMAL"), find_images(root / "test/PNEUMONIA"), test_n
    prefix = {"montgomery": "MCUCXR", "shenzhen": "CHNCXR"}[site]
    imgs = sorted((SHARED_DATA / "lungmasks" / "images").glob(f"{prefix}_*.png"))
    return [p for p in imgs if p.stem.endswith("_0")], [p for p in imgs if p.stem.endswith("_1")], None


def load_site(site: str, size: int) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """:func:`site_files` read at ``size`` px: (local-normal pool, abnormal test films, fixed test normals or None)."""
    pool_paths, abn_paths, fixed = site_files(site)
    sets = [load_image_set(p, size, progress=False) for p in (pool_paths, abn_paths)]
    return sets[0], sets[1], load_image_set(fixed, size, progress=False) if fixed else None


def draw_split(site: str, n_pool: int, draw: int, fixed_test: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """(indices of the pool's films drawn as test normals, or None when the site has fixed test normals; indices of
    the local-normal pool in draw order): the draws every site bench shares."""
    order = np.random.default_rng(1000 + draw).permutation(n_pool)
    if fixed_test:
        return None, order
    k = TEST_NORMALS[site]
    return order[:k], order[k:]


def figures(payload: dict, test_n: ImageSet, test_a: ImageSet) -> dict:
    det = Detector(payload, version="bench")
    s0, s1 = det.score_grids(test_n.images), det.score_grids(test_a.images)
    m = detection_metrics(s0, s1)
    target = 1 - float(payload["threshold"].get("quantile", 0.95))
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
    out.update(fpr_at_threshold=round(float(np.mean(s0 > det.threshold)), 4), target_fpr=round(target, 4),
               tpr_at_threshold=round(float(np.mean(s1 > det.threshold)), 4))
    thr = payload["threshold"]  # how many normals set the threshold, and how many the network had trained on
    out.update(threshold_n=thr.get("n"), n_seen_left_out=thr.get("n_seen_left_out"),
               threshold_warning=bool(thr.get("warning")))
    return out


def old_server_retrain(payload_path: Path, local: ImageSet, seed: int) -> dict:
    """The server's default retrain before ``adapt``: the core training loop fine-tuning everything."""
    config = TrainConfig(image_size=local.images.shape[-1], steps=200, batch_size=16, lr=0.01, seed=seed,
                         eval_every=50, checkpoint_every=0, log_every=50, init_weights=str(payload_path))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "candidate.pt"
        train(config, local, out, device="cpu")
        return load_model(out)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model_path = Path(args.model)
    parent = load_model(model_path)
    size = int(parent["preprocessing"]["image_size"])
    detector = Detector.load(model_path)
    replay = TrainingNormals().of(detector)  # the gentle recipe's replay: the model's own training normals
    results = {
        "benchmark": "site_adaptation", "machine": machine(), "commit": git_commit(), "command": command_line(),
        "model": str(model_path.relative_to(REPO)) if model_path.is_relative_to(REPO) else str(model_path),
        "model_version": detector.version,
        "adapt_recipes": {n: r.to_dict() for n, r in ladder().items()},
        "replay": f"the model's own training normals ({len(replay)} films: "
                  f"{', '.join(f for g in detector.payload['training']['data'].get('sources', []) for f in g)})",
        "test_normals_drawn": TEST_NORMALS, "rows": [],
    }
    if args.append and Path(args.results).exists():  # keep the other sites' rows of an earlier run
        earlier = json.loads(Path(args.results).read_text())
        if earlier.get("model_version") != results["model_version"]:
            raise SystemExit(f"--append: {args.results} is of model {earlier.get('model_version')}, not this one")
        results["rows"] = [r for r in earlier["rows"] if r["site"] not in args.sites]
        results["command"] = f"{earlier.get('command')}; then {results['command']}"
    for site in args.sites:
        pool_all, test_a, fixed = load_site(site, size)
        for draw in range(args.draws):
            drawn, order = draw_split(site, len(pool_all), draw, fixed is not None)
            test_n = fixed if drawn is None else pool_all.subset(drawn.tolist())
            pool = pool_all.subset(order.tolist())
            base = {"site": site, "draw": draw, "n_test_normal": len(test_n), "n_test_abnormal": len(test_a)}
            rows = [{**base, "method": "zero-shot", "n_local": 0, **figures(parent, test_n, test_a)}]
            budgets = [b for b in args.budgets if b == "all" or int(b) < len(pool)]
            for b in budgets:
                n = len(pool) if b == "all" else int(b)
                local = pool.subset(list(range(n)))  # nested: the first n of this draw's order
                row = {**base, "budget": str(b), "n_local": n}
                t0 = time.perf_counter()
                cal = calibrate(parent, local, seed=draw)
                rows.append({**row, "method": "calibrate", "seconds": round(time.perf_counter() - t0, 2),
                             **figures(cal, test_n, test_a)})
                if "adapt" in args.methods and str(b) in args.finetune_budgets and draw < args.finetune_draws:
                    t0 = time.perf_counter()
                    res = adapt(parent, local, recipes=ladder(seed=draw), replay=replay)
                    sec = round(time.perf_counter() - t0, 2)
                    for name, cand in res.finetuned.items():
                        check = {"calibrated": res.check["calibrated"], "finetuned": res.check[name],
                                 "chosen": res.chosen, "n_check": res.check["n_check"]}
                        rows.append({**row, "method": f"finetune-{name}", "seconds": sec, "check": check,
                                     **figures(cand, test_n, test_a)})
                    rows.append({**row, "method": "adapt", "seconds": sec, "chosen": res.chosen,
                                 "ladder": res.check.get("ladder"),
                                 **figures(res.payload, test_n, test_a)})
                if "server-old" in args.methods and b == budgets[-1] and draw < args.server_old_draws:
                    t0 = time.perf_counter()
                    old = old_server_retrain(model_path, local, seed=draw)
                    rows.append({**row, "method": "finetune-server-old", "seconds": round(time.perf_counter() - t0, 2),
                                 **figures(old, test_n, test_a)})
            for r in rows:
                print(json.dumps({k: r.get(k) for k in ("site", "draw", "method", "n_local", "auc", "fpr_at_threshold",
                                                         "chosen", "seconds")}), flush=True)
            results["rows"] += rows
            write_results(Path(args.results), results)  # after every draw: a stopped run keeps what it did
    finish(results, Path(args.results))
    return results


def finish(results: dict, path: Path) -> None:
    """Summary, the check's agreement with the real AUC, the plot."""
    results["summary"] = summarise(results["rows"])
    results["check_agreement"] = check_agreement(results["rows"])
    write_results(path, results)
    plot(results, path.with_suffix(".png"))


def check_agreement(rows: list[dict]) -> dict:
    """How often the label-free check picked the encoder with the better real test AUC (a tie: within 0.005)."""
    cal = {(r["site"], r["draw"], r.get("budget")): r["auc"] for r in rows if r["method"] == "calibrate"}
    cases = []
    for r in rows:
        if not r["method"].startswith("finetune-") or "check" not in r:
            continue
        key = (r["site"], r["draw"], r.get("budget"))
        real_gain = round(r["auc"] - cal[key], 4)
        check_gain = round(r["check"]["finetuned"]["mean"] - r["check"]["calibrated"]["mean"], 4)
        prefers = check_gain > MARGIN
        agrees = abs(real_gain) <= 0.005 or (real_gain > 0) == prefers
        cases.append({"site": key[0], "draw": key[1], "budget": key[2], "recipe": r["method"],
                      "real_auc_gain": real_gain, "check_gain": check_gain, "check_prefers": prefers,
                      "chosen": r["check"]["chosen"], "agrees": agrees})
    return {"n": len(cases), "agree": sum(c["agrees"] for c in cases), "cases": cases,
            "how": f"per fine-tuned candidate: agree = the check rates it above the calibrated encoder by more than "
                   f"the margin ({MARGIN}) and its test AUC is higher, or the check does not and its test AUC is "
                   "not higher; a real difference within 0.005 counts as a tie"}


def plot(results: dict, path: Path) -> None:
    """AUC against the number of local normals, one line per method (mean, min-max band), one panel per site."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.get("summary") or summarise(results["rows"])
    sites = list(dict.fromkeys(e["site"] for e in summary))
    fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 3.6), squeeze=False, sharey=True)
    styles = {"zero-shot": ("grey", "--"), "calibrate": ("tab:blue", "-"), "finetune-gentle": ("tab:orange", ":"),
              "finetune-strong": ("tab:purple", ":"),
              "adapt": ("tab:green", "-"), "finetune-server-old": ("tab:red", "none")}
    for ax, site in zip(axes[0], sites, strict=True):
        entries = [e for e in summary if e["site"] == site]
        xmax = max(e["n_local"] for e in entries)
        for method, (colour, line) in styles.items():
            es = sorted((e for e in entries if e["method"] == method), key=lambda e: e["n_local"])
            if not es:
                continue
            if method == "zero-shot":
                ax.axhline(es[0]["auc"]["mean"], color=colour, ls=line, label=method)
                continue
            x = [e["n_local"] for e in es]
            y = [e["auc"]["mean"] for e in es]
            lo, hi = [e["auc"]["min"] for e in es], [e["auc"]["max"] for e in es]
            ax.errorbar(x, y, yerr=[np.subtract(y, lo), np.subtract(hi, y)], color=colour, ls=line,
                        marker="o", capsize=3, label=method)
        ax.set_title(site)
        ax.set_xlabel("local normals")
        ax.set_xlim(0, xmax * 1.08)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test AUC (mean, min-max over draws)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Shipped model at adult sites", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(json.dumps({"written": str(path)}))


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread (min, max) over draws of each (site, method, budget)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["site"], r["method"], r.get("budget", "0")), []).append(r)
    out = []
    for (site, method, budget), rs in groups.items():
        n_local = round(float(np.mean([r["n_local"] for r in rs])), 1)
        entry = {"site": site, "method": method, "budget": budget, "n_local": n_local, "draws": len(rs)}
        for key in ("auc", "ap", "spec_at_sens95", "fpr_at_threshold"):
            v = np.array([r[key] for r in rs], float)
            entry[key] = {"mean": round(float(v.mean()), 4), "min": round(float(v.min()), 4),
                          "max": round(float(v.max()), 4)}
        if method == "adapt":
            entry["chose_finetuned"] = sum(r["chosen"] != "calibrated" for r in rs)
            entry["chosen"] = [r["chosen"] for r in rs]
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--sites", nargs="+", default=["nih", "montgomery", "shenzhen"])
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--budgets", nargs="+", default=[str(b) for b in BUDGETS])
    p.add_argument("--methods", nargs="+", default=["adapt"], help="adapt, server-old (the retrain before adapt)")
    p.add_argument("--finetune-budgets", nargs="+", default=["50", "all"],
                   help="budgets at which the fine-tuning methods run (they take minutes each)")
    p.add_argument("--finetune-draws", type=int, default=99, help="draws in which the fine-tuning methods run")
    p.add_argument("--append", action="store_true", help="keep the rows of other sites already in --results")
    p.add_argument("--server-old-draws", type=int, default=1, help="draws of the slow old server retrain")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--plot-only", action="store_true",
                   help="recompute summary, check agreement and PNG of an existing results file")
    args = p.parse_args(argv)
    if args.plot_only:
        finish(json.loads(Path(args.results).read_text()), Path(args.results))
        return
    run(args)


if __name__ == "__main__":
    main()
