"""Benchmark: the maps NRRD on the wire (heatmap + lung mask of one 2k film), raw against gzip.

    python bench/maps_wire_size.py [--image ../shared/data/dicom/RG1_UNCR.dcm] [--repeats 5]

Scores the film with the shipped model, then for each encoding (raw = the format before, gzip level 1 = the
server's now, gzip level 6 for comparison) measures the bytes, the server's write (monailabel_app's
``write_maps_nrrd`` with the encoding swapped), and the Slicer side's read: the multipart answer decoded with
the ``email`` parser, then the NRRD read with SimpleITK (``AnatPasteReviewLib``), plus pynrrd's read. Every
encoding must give back the same float32 maps. Writes bench/results/maps_wire_size.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from requests_toolbelt import MultipartEncoder

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "slicer_extension" / "AnatPasteReview")]
from AnatPasteReviewLib.images import read_result_maps  # noqa: E402
from AnatPasteReviewLib.multipart import decode_multipart  # noqa: E402

from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402
from monailabel_app.lib import result_image  # noqa: E402

ENCODINGS = {"raw (before)": ("raw", None), "gzip level 1 (server now)": ("gzip", 1), "gzip level 6": ("gzip", 6)}


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1), out


def measure(heat: np.ndarray, mask: np.ndarray, spacing, encoding: str, level: int | None, repeats: int) -> dict:
    header = result_image.maps_header
    patched = lambda *a: {**header(*a), "encoding": encoding}  # noqa: E731 - the writer with another encoding
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(result_image, "maps_header", patched):
        path = Path(tmp) / "m.nrrd"
        with mock.patch.object(result_image, "GZIP_LEVEL", level or 1):
            write_ms, _ = _median_ms(lambda: result_image.write_maps_nrrd(path, heat, mask, spacing), repeats)
        data = path.read_bytes()
        pynrrd_ms, (h2, m2, _) = _median_ms(lambda: result_image.read_maps_nrrd(path), repeats)
    enc = MultipartEncoder(
        fields={"params": (None, "{}", "application/json"), "image": ("m.nrrd", data, "application/octet-stream")}
    )
    body = enc.to_string()  # what MONAI Label sends for output=all
    parse_ms, parts = _median_ms(lambda: decode_multipart(body, enc.content_type), repeats)
    sitk_ms, maps = _median_ms(lambda: read_result_maps(parts[1].data, heat.shape), repeats)
    assert np.array_equal(maps.heatmap, heat) and np.array_equal(maps.lung_mask, mask), encoding
    assert np.array_equal(h2, heat) and np.array_equal(m2, mask), encoding
    return {
        "nrrd_bytes": len(data),
        "multipart_bytes": len(body),
        "server_write_ms": write_ms,
        "slicer_multipart_decode_ms": parse_ms,
        "slicer_nrrd_read_simpleitk_ms": sitk_ms,
        "pynrrd_read_ms": pynrrd_ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=SHARED_DATA / "dicom" / "RG1_UNCR.dcm")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "maps_wire_size.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    det = Detector.load(args.model)
    rg = read_radiograph(args.image)
    res = det.score(rg.pixels, maps=True)
    heat, mask = np.asarray(res.heatmap, np.float32), np.asarray(res.lung_mask, bool)
    results = {}
    for name, (encoding, level) in ENCODINGS.items():
        results[name] = measure(heat, mask, rg.spacing, encoding, level, args.repeats)
        print(json.dumps({name: results[name]}), flush=True)
    out = {
        "benchmark": "maps_wire_size",
        "machine": machine(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other jobs share these cores
        "commit": git_commit(),
        "model": det.version,
        "image": args.image.name,
        "image_shape": list(rg.pixels.shape),
        "heatmap_nonzero_fraction": round(float((heat != 0).mean()), 4),
        "lung_mask_fraction": round(float(mask.mean()), 4),
        "repeats": args.repeats,
        "results": results,
        "command": command_line(),
    }
    write_results(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
