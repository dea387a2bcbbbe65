"""Benchmark: train AnatPaste on ZhangLab normals and test on ZhangLab's test split, for several seeds.

Prints and writes (JSON) the throughput of the full training step (batched on-device paste included) and of
the network alone, measured in the same process, and per seed the test AUC / AP / specificity at 95 % and
99 % sensitivity with label-free checkpoint selection. Meant for a GPU; ``--tiny`` checks it on a CPU.

    python bench/train_zhanglab.py --seeds 0 1 2 --steps 1500 --size 256 --batch-size 128
    python bench/train_zhanglab.py --tiny            # minutes on a CPU, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.data import ImageSet, find_images, load_image_set  # noqa: E402
from anatpaste.evaluate import detection_metrics  # noqa: E402
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.model import AnatPasteNet  # noqa: E402
from anatpaste.paste import AnatPaste  # noqa: E402
from anatpaste.preprocess import NORM_MEAN, NORM_STD, model_grid  # noqa: E402
from anatpaste.score import GaussianScorer  # noqa: E402
from anatpaste.score.detector import Detector  # noqa: E402
from anatpaste.score.features import autocast_for, extract, normalise_input  # noqa: E402
from anatpaste.train import TrainConfig, train  # noqa: E402
from anatpaste.train.selection import fit_subset, split_holdout  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def step_throughput(data: ImageSet, size: int, batch: int, steps: int, dev: torch.device) -> dict[str, float]:
    """Images/s of (a) the network alone on random tensors and (b) the full step with on-device paste."""
    torch.manual_seed(0)
    net = AnatPasteNet(in_channels=1).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    labels = torch.cat([torch.zeros(batch), torch.ones(batch)]).long().to(dev)
    images, lungs = data.images.to(dev), data.lungs.to(dev)
    paster, gen = AnatPaste(), torch.Generator(device=dev).manual_seed(0)
    rand = torch.randn(2 * batch, 1, size, size, device=dev).contiguous(memory_format=torch.channels_last)

    def net_only() -> None:
        with autocast_for(dev):
            loss = F.cross_entropy(net(rand)[1].float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def full() -> None:
        idx = torch.randint(0, images.shape[0], (batch,), device=dev, generator=gen)
        x = images[idx].float() / 255.0
        xb = normalise_input(torch.cat([x, paster(x, lungs[idx], generator=gen)]), 0.5, 0.25)
        with autocast_for(dev):
            loss = F.cross_entropy(net(xb)[1].float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def paste_only() -> None:
        idx = torch.randint(0, images.shape[0], (batch,), device=dev, generator=gen)
        x = images[idx].float() / 255.0
        paster(x, lungs[idx], generator=gen)

    drawn = paster.draw(lungs[:batch], generator=gen)
    x_fixed = images[:batch].float() / 255.0

    def paste_draw_only() -> None:
        paster.draw(lungs[:batch], generator=gen)

    def paste_apply_only() -> None:
        paster.apply(x_fixed, lungs[:batch], drawn)

    out: dict[str, float] = {}
    # Interleave repeats so clock drift or thermal effects hit both sides alike.
    parts = (("network_only", net_only), ("full_step", full), ("paste_only", paste_only),
             ("paste_draw_only", paste_draw_only), ("paste_apply_only", paste_apply_only))
    for name, fn in parts * 2:
        for _ in range(max(2, steps // 10)):
            fn()
        _sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(dev)
        rate = 2 * batch * steps / (time.perf_counter() - t)
        out[f"{name}_img_per_s"] = max(out.get(f"{name}_img_per_s", 0.0), rate)
    out["full_over_network_ratio"] = out["full_step_img_per_s"] / out["network_only_img_per_s"]
    result: dict[str, float | str] = {k: round(v, 3) for k, v in out.items()}
    result["host_sync_in_full_step"] = host_sync(full, dev)
    return result


def host_sync(fn: Callable[[], None], dev: torch.device) -> str:
    """'none' when ``fn`` runs without a CPU-GPU synchronisation (which would drain the GPU's queue every
    step), else the first synchronising call, as CUDA's sync debug mode reports it."""
    if dev.type != "cuda":
        return "not applicable (CPU)"
    fn()  # warm-up: first calls may allocate or pick kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return "none"
    except RuntimeError as err:
        return str(err).splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()


def read_folder(paths: list[Path]) -> list[np.ndarray]:
    return [read_radiograph(p).pixels for p in paths]


def test_auc_reporter(data: ImageSet, seed: int, holdout_fraction: float, size: int, normal: list[np.ndarray],
                      abnormal: list[np.ndarray]) -> Callable[[int, torch.nn.Module], dict[str, float]]:
    """Test AUC/AP at each evaluation of a run, for the step-count study: Gaussian fitted on the run's own
    evaluation fit set (up to 512 training normals, never the held-out ones), fp32 encoder. Reporting only;
    selection never sees it."""
    train_idx, _ = split_holdout(len(data), holdout_fraction, seed)
    fit = fit_subset(data.subset(train_idx))
    grids = [torch.from_numpy(np.stack([model_grid(im, size) for im in ims])).unsqueeze(1)
             for ims in (normal, abnormal)]

    def report(step: int, encoder: torch.nn.Module) -> dict[str, float]:
        fit_emb, e0, e1 = (extract(encoder, x, NORM_MEAN, NORM_STD)[0] for x in (fit, *grids))
        gauss = GaussianScorer.fit(fit_emb)
        m = detection_metrics(gauss.score(e0).numpy(), gauss.score(e1).numpy())
        return {"test_auc": round(m["auc"], 4), "test_ap": round(m["ap"], 4)}

    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "zhanglab")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--throughput-steps", type=int, default=50)
    ap.add_argument("--no-study", action="store_true",
                    help="skip the test AUC at each evaluation (the step-count study; reporting only)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--limit", type=int, default=0, help="use only this many images per folder (smoke runs)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: 64 px, few steps, few images")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.tiny:
        args.size, args.steps, args.batch_size, args.eval_every = 64, 6, 8, 3
        args.throughput_steps, args.limit, args.seeds = 2, 48, args.seeds[:1]
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = args.out or Path("bench/results") / f"zhanglab_{'tiny_' if args.tiny else ''}{dev.type}.json"

    def listing(*parts: str) -> list[Path]:
        paths = find_images(args.data.joinpath(*parts))
        return paths[: args.limit] if args.limit else paths

    train_paths = listing("train", "NORMAL") + listing("val", "NORMAL")
    test_normal, test_abnormal = read_folder(listing("test", "NORMAL")), read_folder(listing("test", "PNEUMONIA"))
    t0 = time.perf_counter()
    data = load_image_set(train_paths, args.size)
    prep_s = time.perf_counter() - t0
    print(f"read + segmented {len(data)} training normals in {prep_s:.1f} s", flush=True)

    thr = step_throughput(data, args.size, args.batch_size, args.throughput_steps, dev)
    print(json.dumps(thr), flush=True)

    result = {
        "benchmark": "zhanglab", "tiny_smoke_run": args.tiny, "machine": machine(), "commit": git_commit(),
        "command": command_line(argv),
        "size": args.size, "steps": args.steps, "batch_size": args.batch_size, "selection": "synthetic-auc",
        "n_train": len(data), "n_test_normal": len(test_normal), "n_test_abnormal": len(test_abnormal),
        "prep_seconds": round(prep_s, 1), "throughput": thr, "runs": [], "mean": None,
        "test_auc_by_step_note": "runs[].test_auc_by_step is reporting only (fp32 encoder, Gaussian on 512 of the "
                                 "run's training normals); selection used synthetic_auc alone",
    }
    runs = result["runs"]
    args.workdir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        cfg = TrainConfig(image_size=args.size, steps=args.steps, batch_size=args.batch_size, seed=seed,
                          eval_every=args.eval_every, checkpoint_every=0)
        report = None if args.no_study else test_auc_reporter(
            data, seed, cfg.holdout_fraction, args.size, test_normal, test_abnormal)
        model_path = args.workdir / f"zhanglab_s{seed}_{args.size}.pt"
        t = time.perf_counter()
        summary = train(cfg, data, model_path, device=str(dev), report=report,
                        data_summary={"dataset": "zhanglab train/NORMAL + val/NORMAL", "n_images": len(data)})
        wall = time.perf_counter() - t
        det = Detector.load(model_path, device=dev)
        metrics = detection_metrics(det.score_many(test_normal), det.score_many(test_abnormal))
        run = {"seed": seed, "wall_s": round(wall, 1), "train_s": summary["train_seconds"],
               "img_per_s": summary["images_per_s"], "selected_step": summary["selected_step"],
               "synthetic_auc": [h["synthetic_auc"] for h in summary["history"]],
               "test_auc_by_step": [{"step": h["step"], **h["report"]} for h in summary["history"] if "report" in h],
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
        runs.append(run)
        print(json.dumps(run), flush=True)
        # Written after every seed: a run cut short by a time limit still leaves its finished seeds.
        result["mean"] = {k: round(float(np.mean([r[k] for r in runs])), 4)
                          for k in ("auc", "ap", "spec_at_sens95", "spec_at_sens99", "wall_s", "train_s", "img_per_s")}
        write_results(out, result)
    print(json.dumps({"mean": result["mean"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
