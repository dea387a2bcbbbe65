"""Input gate benchmark: how much non-chest input is refused, how many real frontal films are refused wrongly.

Non-chest corpus (built from files that packages ship, nothing downloaded):

* every DICOM test file of the installed pydicom, read as a user would (``read_radiograph``: header gate,
  reader checks, then the content check on what decodes);
* the same files' pixels decoded directly with pydicom, header ignored (what if a CT slice were mislabelled
  CR, or exported as PNG): content check only;
* scikit-image's bundled sample images (``skimage.data``), written as PNG and read as a user would; colour
  ones also converted to grey, so the content check sees them too;
* real films edited: upside down, turned by 90 degrees, grey scale inverted, top quarter only.

Real frontal films: every image in ../shared/data zhanglab, nih, lungmasks and dicom (``--limit`` per folder
for a quick run), read and content-checked as ``anatpaste score`` does. ``dicom/dx_thorax_mono1_small.dcm`` is a
dog's lateral thorax and ``siim_cr_chest_header_mono1.dcm`` is shown inverted on purpose: both are counted with
the real films because the project's tests require them to be read.

Usage (from the repository root, gently on a shared machine)::

    nice -n 10 .venv/bin/python bench/input_gate.py --limit 40 --out /tmp/gate_small.json
    nice -n 10 .venv/bin/python bench/input_gate.py            # everything -> bench/results/input_gate.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anatpaste.content_gate import content_flags, lung_fields  # noqa: E402
from anatpaste.errors import NotAChestRadiographError, RadiographError  # noqa: E402
from anatpaste.io import read_radiograph  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402

REAL_FOLDERS = {
    "zhanglab": ("zhanglab", "*.jpeg"),
    "nih": ("nih", "*.png"),
    "lungmasks": ("lungmasks/images", "*.png"),
    "dicom": ("dicom", "*.dcm"),
}


def _verdict(read, name: str) -> dict:
    """Read then content-check one input: refused (by the header gate or the reader) or read, flagged or not."""
    t0 = time.perf_counter()
    try:
        pixels = read()
    except NotAChestRadiographError as err:
        return {"name": name, "refused": True, "by": "header", "reason": err.reason}
    except RadiographError as err:
        return {"name": name, "refused": True, "by": "reader", "reason": type(err).__name__}
    t1 = time.perf_counter()
    try:
        fields = lung_fields(pixels)
    except RadiographError as err:  # e.g. too small for the segmentation: scoring would refuse it too
        return {"name": name, "refused": True, "by": "segmentation", "reason": type(err).__name__}
    t2 = time.perf_counter()
    flags = content_flags(fields)
    return {"name": name, "refused": False, "flags": flags, "lung_fraction": round(fields.total, 4),
            "lungs_darker": round(fields.darker, 4), "content_ms": (t2 - t1) * 1e3, "read_ms": (t1 - t0) * 1e3}


def _summary(verdicts: list[dict]) -> dict:
    refused = [v for v in verdicts if v["refused"]]
    flagged = [v for v in verdicts if v.get("flags")]
    n = len(verdicts)
    out = {
        "n": n, "refused": len(refused), "flagged": len(flagged),
        "refused_or_flagged_rate": round((len(refused) + len(flagged)) / n, 4) if n else None,
        "refusal_rate": round(len(refused) / n, 4) if n else None,
        "flag_rate": round(len(flagged) / n, 4) if n else None,
        "by": dict(Counter(f"{v['by']}:{v['reason']}" for v in refused)
                   + Counter(f"content:{f}" for v in flagged for f in v["flags"])),
    }
    fracs = [v["lung_fraction"] for v in verdicts if "lung_fraction" in v]
    if fracs:
        qs = (0, 0.1, 1, 5, 50)
        out["lung_fraction_percentiles"] = {f"p{q:g}": round(float(np.percentile(fracs, q)), 4) for q in qs}
    return out


def _real(limit: int | None) -> dict[str, list[dict]]:
    out = {}
    for key, (folder, pattern) in REAL_FOLDERS.items():
        files = sorted((SHARED_DATA / folder).rglob(pattern))
        assert files, f"no {pattern} under {SHARED_DATA / folder}"
        if limit:
            files = files[:: max(1, len(files) // limit)][:limit]  # spread over the sub-folders
        out[key] = [_verdict(lambda p=p: read_radiograph(p).pixels, str(p.relative_to(SHARED_DATA))) for p in files]
        print(f"{key}: {_summary(out[key])}", flush=True)
    return out


def _pydicom_files() -> list[Path]:
    from pydicom.data import get_testdata_file

    folder = Path(get_testdata_file("CT_small.dcm")).parent
    return sorted(folder.glob("*.dcm"))


def _raw_pixels(path: Path) -> np.ndarray:
    """The first frame / first channel of a file's pixels, decoded by pydicom with the header ignored."""
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    arr = np.asarray(ds.pixel_array, dtype=np.float32)
    if arr.ndim == 4 or (arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1):
        arr = arr[0]
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    return arr


def _skimage_images() -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for name in sorted(skimage.data.__all__):
        if name in ("data_dir", "download_all", "file_hash", "lbp_frontal_face_cascade_filename", "lfw_subset",
                    "stereo_motorcycle"):
            continue
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # images that need a download (pooch) are not bundled: skipped, and listed
            continue
        if isinstance(img, np.ndarray) and img.ndim in (2, 3) and min(img.shape[:2]) >= 32:
            out[name] = img
    return out


def _non_chest(tmp: Path, edited_sources: list[Path]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {"pydicom_as_read": [], "pydicom_pixels": [], "skimage_as_read": [],
                                     "skimage_grey": [], "edited_real_films": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in _pydicom_files():
            groups["pydicom_as_read"].append(_verdict(lambda p=p: read_radiograph(p).pixels, p.name))
            try:
                raw = _raw_pixels(p)
            except Exception:  # no pixel data or an undecodable test file: nothing to content-check
                continue
            if raw.ndim == 2 and min(raw.shape) >= 32:
                groups["pydicom_pixels"].append(_verdict(lambda a=raw: a, p.name))
    for name, img in _skimage_images().items():
        f = img.astype(np.float64)
        arr = img if img.dtype == np.uint8 else (255 * (f - f.min()) / max(float(np.ptp(f)), 1e-9)).astype(np.uint8)
        png = tmp / f"{name}.png"
        Image.fromarray(arr).save(png)
        groups["skimage_as_read"].append(_verdict(lambda f=png: read_radiograph(f).pixels, name))
        grey = arr if arr.ndim == 2 else arr[..., :3].astype(np.float32).mean(axis=-1)
        groups["skimage_grey"].append(_verdict(lambda a=grey: a, name))
    edits = {
        "upside_down": lambda a: a[::-1],
        "turned_90": lambda a: np.rot90(a),
        "inverted": lambda a: 1.0 - a,
        "top_quarter": lambda a: a[: max(32, a.shape[0] // 4)],
    }
    for p in edited_sources:
        pixels = read_radiograph(p).pixels
        for edit, fn in edits.items():
            changed = np.ascontiguousarray(fn(pixels))
            v = _verdict(lambda a=changed: a, f"{p.name}:{edit}")
            v["edit"] = edit
            groups["edited_real_films"].append(v)
    return groups


def _timing(verdicts: list[dict]) -> dict:
    ms = [v["content_ms"] for v in verdicts if "content_ms" in v]
    return {"n": len(ms), "median_ms": round(float(np.median(ms)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="real films per folder (a quick run); default: all")
    ap.add_argument("--edited", type=int, default=20, help="real films (lungmasks + nih) edited for the corpus")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "input_gate.json")
    args = ap.parse_args(argv)
    load0 = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    real = _real(args.limit)
    half = args.edited // 2
    edited = (sorted((SHARED_DATA / "lungmasks" / "images").glob("*.png"))[::25][:half]
              + sorted((SHARED_DATA / "nih").rglob("*.png"))[::50][: args.edited - half])
    with tempfile.TemporaryDirectory() as tmp:
        non_chest = _non_chest(Path(tmp), edited)
    all_real = [v for vs in real.values() for v in vs]
    edited_by = {e: _summary([v for v in non_chest["edited_real_films"] if v["edit"] == e])
                 for e in ("upside_down", "turned_90", "inverted", "top_quarter")}
    big = read_radiograph(SHARED_DATA / "dicom" / "RG1_UNCR.dcm").pixels
    lung_fields(big)  # warm-up
    t = time.perf_counter()
    for _ in range(5):
        lung_fields(big)
    big_ms = (time.perf_counter() - t) / 5 * 1e3
    result = {
        "benchmark": "input gate: refusal of non-chest inputs, false refusal of real frontal films",
        "rule": "refused: header gate (anatpaste.io.dicom_gate) and reader checks; flagged: content check "
                "no_lungs (anatpaste.content_gate), the segmentation without its mirror/prior fallbacks finds "
                "< 2% of the image as lung",
        "real_frontal_films": {"all": _summary(all_real), **{k: _summary(v) for k, v in real.items()},
                               "refused_or_flagged": [v for v in all_real if v["refused"] or v["flags"]]},
        "non_chest": {k: _summary(v) for k, v in non_chest.items() if k != "edited_real_films"},
        "non_chest_all_but_edits": _summary([v for k, vs in non_chest.items() if k != "edited_real_films"
                                             for v in vs]),
        "edited_real_films": edited_by,
        "neither_refused_nor_flagged_non_chest": {f"{k}:{v['name']}": v["lung_fraction"]
                                                  for k, vs in non_chest.items() for v in vs
                                                  if not v["refused"] and not v["flags"]},
        "content_check_time": {"real_films_as_stored": _timing(all_real),
                               "RG1_UNCR_1955x1841_ms": round(big_ms, 2)},
        "limit_per_folder": args.limit,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {**machine(), "load_average_at_start": load0, "nice": os.nice(0)},
        "commit": git_commit(),
        "command": command_line(argv),
    }
    write_results(args.out, result)
    print({k: result[k] for k in ("non_chest_all_but_edits", "edited_real_films")})
    print(result["real_frontal_films"]["all"], result["content_check_time"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
