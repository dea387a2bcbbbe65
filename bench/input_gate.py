"""Input gate benchmark: how much non-chest input is refused, how many real frontal films are refused wrongly.

Non-chest corpus (built from files that packages ship, nothing downloaded):

* every DICOM test file of the installed pydicom, read as a user would (``read_radiograph``: header gate,
  reader checks, then the content check on what decodes);
* the same files' pixels decoded directly with pydicom, header ignored (what if a CT slice were mislabelled
  CR, or exported as PNG): content check only;
* scikit-image's bundled sample images (``skimage.data``), written as PNG and read as a user would; colour
  ones also converted to grey, so the content check sees them too;
* real films edited: upside down (mirrored top-bottom, and turned by 180 degrees), turned by 90 degrees
  either way, grey scale inverted, top quarter only.

Held out (``held_out_edits``, reported apart and not in the corpus totals): edits of the same real films that
played no part in designing the rules (top half, bottom half, left half, the middle half of each side), to see
how the rules do on kinds of input they were not made for.

Every input goes through what ``anatpaste score`` does: the reader (header gate, reader checks), the content
gate (:func:`anatpaste.gate.content.check_content`: re-inverts ``inverted``, flags ``no_lungs``), the score on
the shipped model and the model-side checks (:func:`anatpaste.gate.familiarity.model_checks`: refuses
``orientation``; flags ``unfamiliar``, ``unusual_layout``, ``unusual_texture``, ``partial_film``).

Real frontal films: every image in ../shared/data zhanglab, nih, lungmasks and dicom (``--limit`` per folder
for a quick run). The cues of every rule have their percentiles over the real films in the results file.
``dicom/dx_thorax_mono1_small.dcm`` is a dog's lateral thorax and ``siim_cr_chest_header_mono1.dcm`` is shown
inverted on purpose (a MONOCHROME1 header on MONOCHROME2 pixels): both are counted with the real films because
the project's tests require them to be read.

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
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anatpaste.errors import NotAChestRadiographError, RadiographError  # noqa: E402
from anatpaste.gate.content import LungFields, check_content  # noqa: E402
from anatpaste.gate.familiarity import (  # noqa: E402
    LAYOUT_SPREADS,
    PARTIAL_ASPECT,
    SPREADS,
    TEXTURE_SPREADS,
    TURNED_EVIDENCE,
    input_statistics,
    model_checks,
    unfamiliar_limit,
)
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.score.detector import Detector  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402

REAL_FOLDERS = {
    "zhanglab": ("zhanglab", "*.jpeg"),
    "nih": ("nih", "*.png"),
    "lungmasks": ("lungmasks/images", "*.png"),
    "dicom": ("dicom", "*.dcm"),
}


CUES = ("lung_fraction", "lungs_darker", "tall", "below_minus_above", "symmetry", "score", "layout", "texture",
        "turned_gain", "turned_evidence")


def _cues(fields: LungFields, symmetry: float) -> dict:
    return {"lung_fraction": round(fields.total, 4), "lungs_darker": round(fields.darker, 4),
            "tall": round(fields.tall, 4),
            "below_minus_above": round(fields.below_minus_above, 4), "symmetry": round(symmetry, 4)}


class Gate:
    """The scoring path's gate: reader, content gate, score on the model, the model-side checks."""

    def __init__(self, model: Path | None) -> None:
        self.det = Detector.load(model)
        self.limit = unfamiliar_limit(self.det.payload)
        self.statistics = input_statistics(self.det) is not None

    def verdict(self, read, name: str) -> dict:
        """Refused (by the header gate, the reader or the content gate) or scored, with flags and fixes."""
        t0 = time.perf_counter()
        try:
            pixels = read()
        except NotAChestRadiographError as err:
            return {"name": name, "refused": True, "by": "header", "reason": err.reason}
        except RadiographError as err:
            return {"name": name, "refused": True, "by": "reader", "reason": type(err).__name__}
        t1 = time.perf_counter()
        try:
            gate = check_content(pixels, name)
        except RadiographError as err:  # e.g. too small for the segmentation: scoring would refuse it too
            return {"name": name, "refused": True, "by": "segmentation", "reason": type(err).__name__}
        t2 = time.perf_counter()
        score = self.det.score(gate.pixels, maps=False).score
        t3 = time.perf_counter()
        cues = {**_cues(gate.fields, gate.symmetry), "score": round(score, 3), "suspect": gate.suspect}
        try:  # the same order as familiarity.score_gated, timed apart
            flags = model_checks(self.det, gate, score, name)
        except NotAChestRadiographError as err:
            return {"name": name, "refused": True, "by": "model", "reason": err.reason, "detail": err.detail, **cues,
                    **_measures(gate), "content_ms": (t2 - t1) * 1e3}
        t4 = time.perf_counter()
        return {"name": name, "refused": False, "flags": gate.flags + flags, "fixed": gate.fixed, **cues,
                **_measures(gate), "content_ms": (t2 - t1 + t4 - t3) * 1e3, "model_checks_ms": (t4 - t3) * 1e3,
                "read_ms": (t1 - t0) * 1e3, "score_ms": (t3 - t2) * 1e3}


def _measures(gate) -> dict:
    return {k: round(float(v), 4) for k, v in gate.measures.items()}


def _caught(v: dict) -> bool:
    return v["refused"] or bool(v.get("flags")) or bool(v.get("fixed"))


def _percentiles(values: list[float]) -> dict:
    a = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not a.size:
        return {}
    qs = (0, 0.1, 0.5, 1, 5, 50, 95, 99, 99.5, 99.9, 100)
    return {"n": int(a.size), **{f"p{q:g}": round(float(np.percentile(a, q)), 4) for q in qs}}


def _summary(verdicts: list[dict], cues: bool = False) -> dict:
    refused = [v for v in verdicts if v["refused"]]
    flagged = [v for v in verdicts if v.get("flags")]
    fixed = [v for v in verdicts if v.get("fixed")]
    n = len(verdicts)
    out = {
        "n": n, "refused": len(refused), "flagged": len(flagged), "fixed": len(fixed),
        "suspected_orientation": sum(v.get("suspect") is not None for v in verdicts),
        "neither": sum(not _caught(v) for v in verdicts),
        "refused_flagged_or_fixed_rate": round(sum(map(_caught, verdicts)) / n, 4) if n else None,
        "refusal_rate": round(len(refused) / n, 4) if n else None,
        "flag_rate": round(len(flagged) / n, 4) if n else None,
        "by": dict(Counter(f"{v['by']}:{v['reason']}" for v in refused)
                   + Counter(f"flag:{f}" for v in flagged for f in v["flags"])
                   + Counter(f"fixed:{f}" for v in fixed for f in v["fixed"])),
    }
    if cues:
        out["cue_percentiles"] = {c: _percentiles([v.get(c) for v in verdicts]) for c in CUES}
    return out


def _real(gate: Gate, limit: int | None) -> dict[str, list[dict]]:
    out = {}
    for key, (folder, pattern) in REAL_FOLDERS.items():
        files = sorted((SHARED_DATA / folder).rglob(pattern))
        assert files, f"no {pattern} under {SHARED_DATA / folder}"
        if limit:
            files = files[:: max(1, len(files) // limit)][:limit]  # spread over the sub-folders
        out[key] = [gate.verdict(lambda p=p: read_radiograph(p).pixels, str(p.relative_to(SHARED_DATA))) for p in files]
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


EDITS = {
    "upside_down": lambda a: a[::-1],  # mirrored top-bottom (a film hung upside down, seen from behind)
    "turned_180": lambda a: a[::-1, ::-1],
    "turned_90": lambda a: np.rot90(a),
    "turned_270": lambda a: np.rot90(a, 3),
    "inverted": lambda a: 1.0 - a,
    "top_quarter": lambda a: a[: max(32, a.shape[0] // 4)],
}
# Not used while the rules were designed: how they do on other cut-out parts of a film.
HELD_OUT_EDITS = {
    "top_half": lambda a: a[: a.shape[0] // 2],
    "bottom_half": lambda a: a[a.shape[0] // 2 :],
    "left_half": lambda a: a[:, : a.shape[1] // 2],
    "middle": lambda a: a[a.shape[0] // 4 : 3 * a.shape[0] // 4, a.shape[1] // 4 : 3 * a.shape[1] // 4],
}


def _non_chest(gate: Gate, tmp: Path, edited_sources: list[Path]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {"pydicom_as_read": [], "pydicom_pixels": [], "skimage_as_read": [],
                                     "skimage_grey": [], "edited_real_films": [], "held_out_edits": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in _pydicom_files():
            groups["pydicom_as_read"].append(gate.verdict(lambda p=p: read_radiograph(p).pixels, p.name))
            try:
                raw = _raw_pixels(p)
            except Exception:  # no pixel data or an undecodable test file: nothing to content-check
                continue
            if raw.ndim == 2 and min(raw.shape) >= 32:
                groups["pydicom_pixels"].append(gate.verdict(lambda a=raw: a, p.name))
    for name, img in _skimage_images().items():
        f = img.astype(np.float64)
        arr = img if img.dtype == np.uint8 else (255 * (f - f.min()) / max(float(np.ptp(f)), 1e-9)).astype(np.uint8)
        png = tmp / f"{name}.png"
        Image.fromarray(arr).save(png)
        groups["skimage_as_read"].append(gate.verdict(lambda f=png: read_radiograph(f).pixels, name))
        grey = arr if arr.ndim == 2 else arr[..., :3].astype(np.float32).mean(axis=-1)
        groups["skimage_grey"].append(gate.verdict(lambda a=grey: a, name))
    for p in edited_sources:
        pixels = read_radiograph(p).pixels
        for key, edits in (("edited_real_films", EDITS), ("held_out_edits", HELD_OUT_EDITS)):
            for edit, fn in edits.items():
                changed = np.ascontiguousarray(fn(pixels))
                v = gate.verdict(lambda a=changed: a, f"{p.name}:{edit}")
                v["edit"] = edit
                groups[key].append(v)
    return groups


def _timing(verdicts: list[dict], key: str) -> dict:
    ms = [v[key] for v in verdicts if key in v]
    return {"n": len(ms), "median_ms": round(float(np.median(ms)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def _edited_sources(n: int) -> list[Path]:
    """``n`` real films spread over the three sites (a third each): the films the edits start from."""
    third = n // 3
    return (sorted((SHARED_DATA / "lungmasks" / "images").glob("*.png"))[::12][:third]
            + sorted((SHARED_DATA / "nih").rglob("*.png"))[::50][:third]
            + sorted((SHARED_DATA / "zhanglab").rglob("*.jpeg"))[::150][: n - 2 * third])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="real films per folder (a quick run); default: all")
    ap.add_argument("--edited", type=int, default=60, help="real films (lungmasks, nih, zhanglab) edited")
    ap.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: two on the shared 2-core machine scored a film 15x slower)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "input_gate.json")
    args = ap.parse_args(argv)
    load0 = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    gate = Gate(args.model)
    real = _real(gate, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        non_chest = _non_chest(gate, Path(tmp), _edited_sources(args.edited))
    all_real = [v for vs in real.values() for v in vs]
    held_out = non_chest.pop("held_out_edits")
    edits = non_chest["edited_real_films"]
    corpus = [v for vs in non_chest.values() for v in vs]
    big = read_radiograph(SHARED_DATA / "dicom" / "RG1_UNCR.dcm").pixels
    check_content(big, "RG1_UNCR")  # warm-up
    t = time.perf_counter()
    for _ in range(5):
        check_content(big, "RG1_UNCR")
    big_ms = (time.perf_counter() - t) / 5 * 1e3
    result = {
        "benchmark": "input gate: refusal of non-chest inputs, false refusal of real frontal films",
        "rule": "refused: header gate (anatpaste.gate.dicom_header), reader checks, orientation (the turned-back "
                "copy laid out and scored more like the normals, anatpaste.gate.familiarity); fixed: inverted grey "
                "scale, re-inverted and scored (anatpaste.gate.content); flagged: no_lungs (no lung field, or "
                "fields not darker than the mediastinum), unfamiliar (score beyond the model file's limit), "
                "unusual_layout, unusual_texture (the picture's statistics in the model file, anatpaste.gate.picture), "
                "partial_film (one side more than twice the other)",
        "limits": {"unfamiliar_spreads": SPREADS, "layout_spreads": LAYOUT_SPREADS,
                   "texture_spreads": TEXTURE_SPREADS, "turned_evidence": TURNED_EVIDENCE,
                   "partial_aspect": PARTIAL_ASPECT},
        "model": {"version": gate.det.version, "threshold": gate.det.threshold, "unfamiliar_limit": gate.limit,
                  "input_statistics": gate.statistics},
        "real_frontal_films": {"all": _summary(all_real, cues=True), **{k: _summary(v) for k, v in real.items()},
                               "refused_flagged_or_fixed": [v for v in all_real if _caught(v)]},
        "non_chest": {k: _summary(v) for k, v in non_chest.items() if k != "edited_real_films"},
        "non_chest_all_but_edits": _summary([v for k, vs in non_chest.items() if k != "edited_real_films"
                                             for v in vs]),
        "edited_real_films": {e: _summary([v for v in edits if v["edit"] == e], cues=True) for e in EDITS},
        "non_chest_all": _summary(corpus),
        "held_out_edits": {e: _summary([v for v in held_out if v["edit"] == e], cues=True) for e in HELD_OUT_EDITS},
        "held_out_neither_refused_flagged_nor_fixed": [
            {"name": v["name"], **{c: v.get(c) for c in CUES}} for v in held_out if not _caught(v)],
        "neither_refused_flagged_nor_fixed_non_chest": [
            {"name": f"{k}:{v['name']}", **{c: v.get(c) for c in CUES}}
            for k, vs in non_chest.items() for v in vs if not _caught(v)],
        "time": {"content_gate_real_films_as_stored": _timing(all_real, "content_ms"),
                 "model_checks_real_films_as_stored": _timing(all_real, "model_checks_ms"),
                 "score_real_films_as_stored": _timing(all_real, "score_ms"),
                 "content_gate_RG1_UNCR_1955x1841_ms": round(big_ms, 2)},
        "limit_per_folder": args.limit,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {**machine(), "torch_threads": args.threads, "load_average_at_start": load0, "load_average_at_end":
                    [round(x, 2) for x in os.getloadavg()], "nice": os.nice(0)},
        "commit": git_commit(),
        "command": command_line(argv),
    }
    write_results(args.out, result)
    print({k: result[k] for k in ("non_chest_all_but_edits", "non_chest_all")})
    print({e: (v["refused"], v["flagged"], v["fixed"], v["neither"]) for e, v in result["edited_real_films"].items()})
    print({e: (v["refused"], v["flagged"], v["fixed"], v["neither"]) for e, v in result["held_out_edits"].items()})
    print(result["real_frontal_films"]["all"]["by"], result["time"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
