"""Benchmark: does the heatmap stay in the lungs, and does a normal film stay (almost) blank?

    python bench/heatmap_in_lungs.py [--model FILE] [--side 256]

For every test film of ZhangLab (children) and NIH (adults), normal and abnormal: the map as the Detector
returns it (lung window and per-location scale of the model file) and, for comparison, the same map without
the lung window. Figures per site and class:
- the share of the map's mass inside the (undilated) lung mask, all of it and the part above the display
  threshold;
- the share of films with any pixel above the display threshold (the target is <= 10 % of normals), and the
  share with any colour as served: the map is coloured on flagged films only (``served_any_colour``).
Films are scored at ``--side`` px (the map is smooth and bilinear upsampling adds no maxima, so the
any-pixel figure holds at full resolution too). Also writes a figure of 8 films (2 normal + 2 abnormal per
site, drawn with a fixed seed, not picked by eye). Nothing here is used to choose anything.
Writes bench/results/heatmap_in_lungs.json and bench/results/heatmap_examples.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.data import find_images  # noqa: E402
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from anatpaste.score.features import extract  # noqa: E402
from anatpaste.score.overlay import render_overlay  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402

SETS = {
    ("zhanglab", "normal"): SHARED_DATA / "zhanglab" / "test" / "NORMAL",
    ("zhanglab", "abnormal"): SHARED_DATA / "zhanglab" / "test" / "PNEUMONIA",
    ("nih", "normal"): SHARED_DATA / "nih" / "test" / "NORMAL",
    ("nih", "abnormal"): SHARED_DATA / "nih" / "test" / "PNEUMONIA",
}


def _at_side(pixels: np.ndarray, side: int) -> np.ndarray:
    """The film with its longer side at ``side`` px, aspect ratio kept (as a viewer would show it)."""
    h, w = pixels.shape
    f = side / max(h, w)
    if f >= 1:
        return pixels
    t = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(max(32, round(h * f)), max(32, round(w * f))), mode="area")[0, 0].numpy()


def film_figures(det: Detector, image: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray, bool]:
    res = det.score(image)
    heat, lung = res.heatmap, res.lung_mask
    # The same map without the window: undo it where the window is > 0, recompute it where it is 0.
    grid = extract(det.encoder, det._input(image), det.mean, det.std, with_grid=True)[1]
    raw_small = det.heat.heatmap(grid, (det.image_size, det.image_size))
    raw = F.interpolate(raw_small[None], size=image.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    thr = det.heat_display_max
    out = {}
    for name, m in (("windowed", heat), ("unwindowed", raw)):
        above = np.clip(m - thr, 0, None)
        out[f"{name}_mass_in_lung"] = float((m * lung).sum() / max(m.sum(), 1e-9))
        out[f"{name}_above_mass_in_lung"] = float((above * lung).sum() / above.sum()) if above.sum() > 0 else np.nan
        out[f"{name}_any_above"] = float(m.max() > thr)
    # as served: colour only on a flagged film (ScoreResult.heatmap_coloured)
    out["served_any_colour"] = float(res.heatmap_coloured and heat.max() > thr)
    out["flagged"] = float(res.is_abnormal)
    out["score"] = res.score
    return out, heat, lung, res.heatmap_coloured


def _tile(
    image: np.ndarray, heat: np.ndarray, lung: np.ndarray, coloured: bool, det: Detector, label: str, side: int
) -> Image.Image:
    rgb = render_overlay(image, heat, lung, det.heat_display_max, coloured=coloured)
    tile = Image.fromarray(rgb).resize((side, side))
    ImageDraw.Draw(tile).text((6, 6), label, fill=(255, 255, 0))
    return tile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--side", type=int, default=256, help="longer side of the films as scored here")
    ap.add_argument("--limit", type=int, default=0, help="at most this many films per set (0 = all)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/heatmap_in_lungs.json"))
    ap.add_argument("--figure", type=Path, default=Path("bench/results/heatmap_examples.png"))
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    det = Detector.load(args.model)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    results, tiles = {}, []
    for (site, cls), folder in SETS.items():
        paths = find_images(folder)
        if args.limit:
            paths = paths[: args.limit]
        shown = set(rng.choice(len(paths), size=2, replace=False).tolist())
        rows = []
        for i, p in enumerate(paths):
            image = _at_side(read_radiograph(p).pixels, args.side)
            fig, heat, lung, coloured = film_figures(det, image)
            rows.append(fig)
            if i in shown:
                label = f"{site} {cls} score {fig['score']:.2f}" + (" FLAGGED" if fig["score"] > det.threshold else "")
                tiles.append(_tile(image, heat, lung, coloured, det, label, 320))
        keys = [k for k in rows[0] if k != "score"]
        results[f"{site}/{cls}"] = {
            "n": len(rows), **{k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in keys},
        }
        print(site, cls, results[f"{site}/{cls}"], flush=True)
    sheet = Image.new("RGB", (4 * 320, 2 * 320))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % 4) * 320, (i // 4) * 320))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.figure)
    write_results(args.out, {
        "what": "heatmap of the model file: share of map mass inside the lung mask and share of films with any "
                "pixel above the display threshold, windowed (as served) vs unwindowed, per site and class; "
                "served_any_colour: films with colour as served (flagged and above the display threshold)",
        "model": str(args.model.name), "model_version": det.version,
        "display_threshold": det.heat_display_max, "display_how": det.payload["heatmap"].get("display_how"),
        "film_side_px": args.side, "command": command_line(argv), "commit": git_commit(), "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1), "results": results,
        "figure": str(args.figure), "figure_rows": "top: ZhangLab normal, normal, pneumonia, pneumonia; "
                                                   "bottom: NIH normal, normal, pneumonia, pneumonia",
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
