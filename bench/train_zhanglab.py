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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.data import ImageSet, find_images, load_image_set  # noqa: E402
from anatpaste.detector import Detector  # noqa: E402
from anatpaste.features import autocast_for, normalise_input  # noqa: E402
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.metrics import detection_metrics  # noqa: E402
from anatpaste.model import AnatPasteNet  # noqa: E402
from anatpaste.paste import AnatPaste  # noqa: E402
from anatpaste.train import TrainConfig, train  # noqa: E402
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

    out = {}
    # Interleave repeats so clock drift or thermal effects hit both sides alike.
    for name, fn in (("network_only", net_only), ("full_step", full), ("paste_only", paste_only)) * 2:
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
    return {k: round(v, 3) for k, v in out.items()}


def score_folder(det: Detector, paths: list[Path]) -> np.ndarray:
    return det.score_many([read_radiograph(p).pixels for p in paths])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "zhanglab")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--throughput-steps", type=int, default=50)
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

    def listing(*parts: str) -> list[Path]:
        paths = find_images(args.data.joinpath(*parts))
        return paths[: args.limit] if args.limit else paths

    train_paths = listing("train", "NORMAL") + listing("val", "NORMAL")
    test_normal, test_abnormal = listing("test", "NORMAL"), listing("test", "PNEUMONIA")
    t0 = time.perf_counter()
    data = load_image_set(train_paths, args.size)
    prep_s = time.perf_counter() - t0
    print(f"read + segmented {len(data)} training normals in {prep_s:.1f} s", flush=True)

    thr = step_throughput(data, args.size, args.batch_size, args.throughput_steps, dev)
    print(json.dumps(thr), flush=True)

    runs = []
    args.workdir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        cfg = TrainConfig(image_size=args.size, steps=args.steps, batch_size=args.batch_size, seed=seed,
                          eval_every=args.eval_every, checkpoint_every=0)
        model_path = args.workdir / f"zhanglab_s{seed}_{args.size}.pt"
        t = time.perf_counter()
        summary = train(cfg, data, model_path, device=str(dev),
                        data_summary={"dataset": "zhanglab train/NORMAL + val/NORMAL", "n_images": len(data)})
        wall = time.perf_counter() - t
        det = Detector.load(model_path)
        metrics = detection_metrics(score_folder(det, test_normal), score_folder(det, test_abnormal))
        run = {"seed": seed, "wall_s": round(wall, 1), "train_s": summary["train_seconds"],
               "img_per_s": summary["images_per_s"], "selected_step": summary["selected_step"],
               "synthetic_auc": [h["synthetic_auc"] for h in summary["history"]],
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
        runs.append(run)
        print(json.dumps(run), flush=True)

    mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in ("auc", "ap", "spec_at_sens95",
                                                                         "spec_at_sens99", "wall_s", "img_per_s")}
    result = {
        "benchmark": "zhanglab", "tiny_smoke_run": args.tiny, "machine": machine(), "commit": git_commit(),
        "command": command_line(argv),
        "size": args.size, "steps": args.steps, "batch_size": args.batch_size, "selection": "synthetic-auc",
        "n_train": len(data), "n_test_normal": len(test_normal), "n_test_abnormal": len(test_abnormal),
        "prep_seconds": round(prep_s, 1), "throughput": thr, "runs": runs, "mean": mean,
    }
    out = args.out or Path("bench/results") / f"zhanglab_{'tiny_' if args.tiny else ''}{dev.type}.json"
    print(json.dumps({"mean": mean}))
    write_results(out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
