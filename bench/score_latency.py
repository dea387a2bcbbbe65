"""Benchmark: CPU latency of read → score + heatmap + lung mask for real DICOM radiographs (e.g. 2k×2k).

    python bench/score_latency.py [--model FILE] [--repeats 20]

Prints per-stage medians and writes bench/results/score_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.score.detector import Detector  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402


def _ms(fn, repeats: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--files", nargs="+", type=Path,
                    default=[SHARED_DATA / "dicom" / "RG1_UNCR.dcm", SHARED_DATA / "dicom" / "RG1_J2KR.dcm"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/score_latency.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    det = Detector.load(args.model)
    det.score(read_radiograph(args.files[0]).pixels)  # warm-up (allocations, lazy init)
    results = []
    for f in args.files:
        read_ms, _, rg = _ms(lambda f=f: read_radiograph(f), args.repeats)
        score_ms, _, _ = _ms(lambda rg=rg: det.score(rg.pixels, maps=False), args.repeats)
        maps_ms, _, _ = _ms(lambda rg=rg: det.score(rg.pixels, maps=True), args.repeats)
        total_ms, total_max, _ = _ms(lambda f=f: det.score(read_radiograph(f).pixels, maps=True), args.repeats)
        row = {"file": f.name, "shape": list(rg.pixels.shape), "read_ms": round(read_ms, 1),
               "score_only_ms": round(score_ms, 1), "score_heatmap_mask_ms": round(maps_ms, 1),
               "end_to_end_ms": round(total_ms, 1), "end_to_end_max_ms": round(total_max, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    out = {"benchmark": "score_latency", "machine": machine(), "commit": git_commit(),
           "torch_threads": torch.get_num_threads(), "model": det.version, "model_input": det.image_size,
           "repeats": args.repeats, "command": command_line(), "results": results}
    write_results(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
