"""Benchmark: round trip of POST /infer/anatpaste on the real MONAI Label server (2k DICOM, JSON and JSON + NRRD).

    python bench/server_latency.py [--model FILE] [--repeats 20] [--image ../shared/data/dicom/RG1_UNCR.dcm]

Starts ``monailabel start_server`` on 127.0.0.1 with a copy of the app and its sample studies plus the image,
posts the image as a datastore id and as an upload with ``output=json`` and ``output=all``, and reports the
median / p90 round trip in ms, with the server's own split (read / score + maps / NRRD encode) and an
in-process split (read / score only / heatmap + lung mask / NRRD encode). Writes
bench/results/server_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402
from monailabel_app.launch import free_port, server_command, server_env, stop_process  # noqa: E402
from monailabel_app.lib.result_image import write_maps_nrrd  # noqa: E402


def _stats(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=10) if len(ms) > 1 else ms * 9
    return {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(q[8], 1), "n": len(ms)}


def _timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, out


def in_process(model: Path, image: Path, repeats: int, threads: int) -> dict[str, object]:
    """The server's work without HTTP: read, score, maps, NRRD encode."""
    torch.set_num_threads(threads)
    det = Detector.load(model)
    rg = read_radiograph(image)
    det.score(rg.pixels)  # warm-up
    read_ms, _ = _timed(lambda: read_radiograph(image), repeats)
    score_ms, _ = _timed(lambda: det.score(rg.pixels, maps=False), repeats)
    maps_ms, res = _timed(lambda: det.score(rg.pixels, maps=True), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.nrrd"
        encode_ms, _ = _timed(lambda: write_maps_nrrd(out, res.heatmap, res.lung_mask, rg.spacing), repeats)
        nrrd_bytes = out.stat().st_size
    med = statistics.median
    return {
        "read_ms": round(med(read_ms), 1),
        "score_only_ms": round(med(score_ms), 1),
        "heatmap_and_lung_mask_ms": round(med(maps_ms) - med(score_ms), 1),
        "nrrd_encode_ms": round(med(encode_ms), 1),
        "nrrd_bytes": nrrd_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model file (default: the shipped model)")
    ap.add_argument("--image", type=Path, default=SHARED_DATA / "dicom" / "RG1_UNCR.dcm")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="server torch threads (default: the app's)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server_latency.json")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        ap.error(f"model file not found: {args.model} (train one or pass --model)")

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        app = tmp / "app"
        run_time = ("model", "logs", "bin", "__pycache__", "datastore_v2.json", ".lock", "labels")
        shutil.copytree(REPO / "monailabel_app", app, ignore=shutil.ignore_patterns(*run_time))
        studies = app / "sample_studies"
        shutil.copy(args.image, studies / args.image.name)
        image_id = args.image.name.rsplit(".", 1)[0]
        conf = {"model_path": args.model.resolve()}
        if args.threads:
            conf["infer_threads"] = args.threads
        cmd = server_command(studies, port=port, app=app, conf=conf)
        env = server_env(MONAI_LABEL_AUTO_UPDATE_SCORING="false", MONAI_LABEL_SESSION_PATH=str(tmp / "sessions"))
        log = open(tmp / "server.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        try:
            deadline = time.monotonic() + 240
            while True:
                try:
                    info = client.get("/info/")
                    if info.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + (tmp / "server.log").read_text()[-3000:])
                time.sleep(0.5)
            data = args.image.read_bytes()
            cases = {
                "datastore_json": lambda: client.post(f"/infer/anatpaste?image={image_id}&output=json"),
                "datastore_all": lambda: client.post(f"/infer/anatpaste?image={image_id}&output=all"),
                "upload_json": lambda: client.post(
                    "/infer/anatpaste?output=json", files={"file": (args.image.name, data)}
                ),
                "upload_all": lambda: client.post(
                    "/infer/anatpaste?output=all", files={"file": (args.image.name, data)}
                ),
            }
            results = {}
            for name, call in cases.items():
                for _ in range(args.warmup):
                    call().raise_for_status()
                times, server_split = [], []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    r = call()
                    times.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    if name.endswith("json"):
                        server_split.append(r.json()["latencies"])
                results[name] = {**_stats(times), "response_bytes": len(r.content)}
                if server_split:
                    results[name]["server_split_ms"] = {
                        k: round(1000 * statistics.median(s[k] for s in server_split), 1) for k in server_split[0]
                    }
                print(json.dumps({name: results[name]}), flush=True)
            model_version = cases["datastore_json"]().json()["model_version"]
        finally:
            client.close()
            stop_process(proc)
            log.close()
    split = in_process(args.model, args.image, args.repeats, args.threads or max(1, (os.cpu_count() or 2) // 2))
    rg = read_radiograph(args.image)
    out = {
        "benchmark": "server_latency",
        "machine": machine(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other jobs share these cores
        "commit": git_commit(),
        "model": model_version,
        "model_input": info.json()["models"]["anatpaste"]["image_size"],
        "image": args.image.name,
        "image_shape": list(rg.pixels.shape),
        "repeats": args.repeats,
        "target": "DICOM 2k x 2k -> JSON + heatmap <= 300 ms server round trip (2-core CPU)",
        "round_trip": results,
        "in_process_split": split,
        "command": command_line(),
    }
    print(json.dumps({"in_process_split": split}))
    write_results(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
