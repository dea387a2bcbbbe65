"""Command line: ``anatpaste train | calibrate | adapt | score | evaluate | segment`` (also ``python -m anatpaste``).

The last line printed by ``train``, ``calibrate``, ``adapt``, ``evaluate`` and ``segment --reference`` is one
JSON object: scripts parse it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from anatpaste.errors import AnatPasteError, NotAChestRadiographError, RadiographError

ADAPT_RECIPES = ("gentle", "strong")

if TYPE_CHECKING:  # the commands import their heavy modules lazily
    from anatpaste.data import ImageSet


def _cmd_train(args: argparse.Namespace) -> int:
    from anatpaste.train import TrainConfig, TrainProgress, train

    config = TrainConfig(
        image_size=args.size,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        eval_every=args.eval_every,
        select=args.select,
        checkpoint_every=args.checkpoint_every,
        init_weights=args.init_weights,
        quantize=not args.no_quantize,
        threshold_quantile=args.threshold_quantile,
        precision=args.precision,
        balance_sources=args.balance_sources,
        paste_lungs=args.paste_lungs,
        paste_halo=args.paste_halo,
        input_norm=args.input_norm,
        jitter_originals=args.jitter_originals,
    )
    groups = args.normal  # one list of folders per --normal: each is a source
    if len(groups) == 1:
        data = _load_normals(groups[0], args.size, progress=True, min_files=4)
    else:
        from anatpaste.data import ImageSet

        data = ImageSet.concat([_load_normals(g, args.size, progress=True, min_files=2) for g in groups])
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 shows progress and the summary
    bar = tqdm(total=config.steps, desc="training", unit="step", disable=rank != 0)

    def progress(p: TrainProgress) -> None:
        bar.n = p.step
        post = {"loss": f"{p.loss:.3f}", "img/s": f"{p.images_per_s:.0f}"}
        if p.best_synthetic_auc is not None:
            post["syn_auc"] = f"{p.best_synthetic_auc:.3f}"
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    checkpoint = args.checkpoint or str(Path(args.output).with_suffix(".ckpt"))
    summary = train(
        config,
        data,
        args.output,
        device=args.device,
        checkpoint=checkpoint,
        progress=progress,
        data_summary={
            "folders": [str(d) for g in groups for d in g],
            "sources": [[str(d) for d in g] for g in groups],
            "n_images": len(data),
            "n_skipped": len(data.skipped),
            "n_per_source": _counts_per_source(data),
            "balance_sources": config.balance_sources,
        },
    )
    bar.close()
    summary.pop("history", None)
    if rank == 0:
        print(json.dumps(summary))
    return 0


def _counts_per_source(data: ImageSet) -> list[int]:
    return [len(data)] if data.source is None else [int(c) for c in data.source.bincount()]


def _load_normals(folders: list[str], size: int, progress: bool = False, min_files: int = 1) -> ImageSet:
    """Every radiograph under ``folders`` at ``size`` px with its lung mask; skipped files said on stderr."""
    from anatpaste.data import find_images, load_image_set

    paths = [p for d in folders for p in find_images(d)]
    if len(paths) < min_files:
        raise AnatPasteError(f"found {len(paths)} images under {folders}; need at least {min_files} normals")
    data = load_image_set(paths, size, progress=progress)
    for p, why in data.skipped:
        print(f"skipped {p}: {why}", file=sys.stderr)
    return data


def _site_summary(args: argparse.Namespace, data: ImageSet, parent: str) -> dict:
    return {
        "folders": [str(d) for d in args.normal],
        "n_skipped": len(data.skipped),
        "skipped": [p for p, _ in data.skipped],
        "parent_model": parent,
    }


def _adapt_line(out: Path, payload: dict, data: ImageSet, t0: float, parent: str) -> dict:
    from anatpaste.score.detector import Detector

    thr = payload["threshold"]
    return {
        "n_images": len(data),
        "n_skipped": len(data.skipped),
        "threshold": round(thr["value"], 6),
        "target_fpr": thr["target_fpr"],
        "expected_fpr": thr["expected_fpr"],
        "fpr_interval": thr["fpr_interval"],
        "n_seen_by_encoder": thr.get("n_seen_by_encoder", 0),
        "n_seen_left_out": thr.get("n_seen_left_out", 0),
        **({"warning": thr["warning"]} if thr.get("warning") else {}),
        "seconds": round(time.perf_counter() - t0, 2),
        "model_version": Detector.load(out).version,
        "parent_version": parent,
        "output": str(out),
    }


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from anatpaste.adapt import MIN_NORMALS, calibrate
    from anatpaste.model.file import save_model
    from anatpaste.score.detector import Detector

    t0 = time.perf_counter()
    det = Detector.load(args.model)
    data = _load_normals(args.normal, det.image_size, min_files=MIN_NORMALS)
    payload = calibrate(
        det.payload, data, quantile=args.quantile, seed=args.seed, summary=_site_summary(args, data, det.version)
    )
    out = save_model(payload, args.output)
    print(json.dumps(_adapt_line(out, payload, data, t0, det.version)))
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from anatpaste.adapt import MIN_NORMALS, adapt, ladder
    from anatpaste.model.file import save_model
    from anatpaste.score.detector import Detector

    t0 = time.perf_counter()
    det = Detector.load(args.model)
    data = _load_normals(args.normal, det.image_size, min_files=MIN_NORMALS)
    replay = _load_normals(args.replay, det.image_size) if args.replay else None
    recipes = ladder(args.recipe, steps=args.steps, seed=args.seed)
    bar = tqdm(total=sum(r.steps for r in recipes.values()), desc="fine-tuning " + " + ".join(recipes), unit="step")

    def progress(step: int, total: int, loss: float) -> None:
        bar.n = step
        bar.set_postfix({"loss": f"{loss:.3f}"}, refresh=False)
        bar.refresh()

    res = adapt(
        det.payload,
        data,
        recipes=recipes,
        replay=replay,
        device=args.device or "cpu",
        progress=progress,
        summary=_site_summary(args, data, det.version),
    )
    bar.close()
    out = save_model(res.payload, args.output)
    line = _adapt_line(out, res.payload, data, t0, det.version)
    line.update(chosen=res.chosen, check={k: res.check[k]["mean"] for k in ("calibrated", *recipes)})
    print(json.dumps(line))
    return 0


def _score_rows(args: argparse.Namespace) -> list[dict]:
    from anatpaste.data import find_images
    from anatpaste.gate.familiarity import score_gated
    from anatpaste.io import read_radiograph
    from anatpaste.score.detector import Detector
    from anatpaste.score.overlay import render_overlay, save_png

    det = Detector.load(args.model)
    paths = find_images(args.input)
    want_maps = args.overlays is not None
    if want_maps:
        Path(args.overlays).mkdir(parents=True, exist_ok=True)
    rows = []
    for p in tqdm(paths, desc="scoring", unit="img", disable=len(paths) < 2):
        try:
            rg = read_radiograph(p)
            # the content gate (docs/input-gate.md): refuses a turned film, re-inverts an inverted one, flags
            res, gate = score_gated(
                det, rg.pixels, str(p), maps=want_maps or bool(args.dicom_out), strict=args.refuse_flagged
            )
        except RadiographError as err:
            row = {"path": str(p), "error": f"{type(err).__name__}: {err}"}
            if isinstance(err, NotAChestRadiographError):  # machine-readable: modality, lateral, body_part, ...
                row["reason"] = err.reason
            rows.append(row)
            continue
        extra = {k: ";".join(v) for k, v in (("flag", gate.flags), ("fixed", gate.fixed)) if v}
        rows.append({"path": str(p), **res.to_json(), **extra})
        if args.dicom_out:  # SR + lung SEG + heatmap capture beside the study (docs/dicom-write-back.md)
            from anatpaste.report.files import write_for_input

            write_for_input(p, args.dicom_out, res, gate.flags, gate.fixed, gate.pixels, det.heat_display_max)
        if want_maps:
            assert res.lung_mask is not None  # scored with maps=True
            stem = Path(args.overlays) / p.stem
            rgb = render_overlay(
                gate.pixels, res.heatmap, res.lung_mask, det.heat_display_max, coloured=res.heatmap_coloured
            )
            save_png(rgb, f"{stem}_overlay.png")
            save_png(res.lung_mask, f"{stem}_lungs.png")
    return rows


def _cmd_score(args: argparse.Namespace) -> int:
    from anatpaste.gate.content import WARNINGS

    rows = _score_rows(args)
    fmt = args.format or (Path(args.output).suffix.lstrip(".") if args.output else "csv")
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "json":
            json.dump(rows, out, indent=1)
            out.write("\n")
        else:
            fields = ["path", "score", "threshold", "label", "model_version", "flag", "fixed", "error", "reason"]
            w = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()
    for r in rows:
        for what, verb in (("flag", "flagged"), ("fixed", "fixed")):
            for reason in filter(None, r.get(what, "").split(";")):
                print(f"{verb} {r['path']}: {WARNINGS[reason]}", file=sys.stderr)
    failed = [r for r in rows if "error" in r]
    for r in failed:
        print(f"could not score {r['path']}: {r['error']}", file=sys.stderr)
    return 2 if rows and len(failed) == len(rows) else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from anatpaste.data import find_images
    from anatpaste.evaluate import detection_metrics
    from anatpaste.io import read_radiograph
    from anatpaste.score.detector import Detector

    det = Detector.load(args.model)
    scores: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for name, folder in (("normal", args.normal), ("abnormal", args.abnormal)):
        paths = find_images(folder)
        if not paths:
            raise AnatPasteError(f"no images found in {folder}")
        imgs = [read_radiograph(p).pixels for p in tqdm(paths, desc=f"reading {name}", unit="img")]
        scores[name] = det.score_many(imgs)
    result = {
        **detection_metrics(scores["normal"], scores["abnormal"]),
        "threshold": det.threshold,
        "spec_at_threshold": float(np.mean(scores["normal"] <= det.threshold)),
        "sens_at_threshold": float(np.mean(scores["abnormal"] > det.threshold)),
        "model_version": det.version,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(json.dumps(result))
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from anatpaste.data import find_images
    from anatpaste.evaluate import dice, iou
    from anatpaste.io import read_radiograph
    from anatpaste.score.overlay import save_png
    from anatpaste.segment import segment_lungs

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dices, ious, missing = [], [], []
    for p in tqdm(find_images(args.input), desc="segmenting", unit="img"):
        try:
            img = read_radiograph(p).pixels
        except RadiographError as err:
            print(f"skipped {p}: {err}", file=sys.stderr)
            continue
        mask = segment_lungs(img)
        save_png(mask, out / f"{p.stem}.png")
        if args.reference:
            ref_path = Path(args.reference) / f"{p.stem}.png"
            if not ref_path.is_file():
                missing.append(str(ref_path))
                continue
            ref = np.asarray(read_reference_mask(ref_path, (mask.shape[0], mask.shape[1])))
            dices.append(dice(mask, ref))
            ious.append(iou(mask, ref))
    if args.reference:
        if not dices:
            raise AnatPasteError(f"no reference masks matched the inputs in {args.reference}")
        print(
            json.dumps(
                {
                    "dice": float(np.mean(dices)),
                    "iou": float(np.mean(ious)),
                    "n": len(dices),
                    "n_missing_reference": len(missing),
                }
            )
        )
    return 0


def read_reference_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A 0/255 reference mask (anti-aliased edges thresholded at >127), resized to ``shape`` if needed."""
    from PIL import Image

    im = Image.open(path).convert("L")
    if im.size != (shape[1], shape[0]):
        im = im.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(im) > 127


def build_parser() -> argparse.ArgumentParser:
    from anatpaste.train.config import INPUT_NORMS, PASTE_LUNGS, TrainConfig  # the one definition of the defaults

    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="anatpaste", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on folders of normal radiographs")
    t.add_argument(
        "--normal",
        nargs="+",
        action="append",
        required=True,
        help="folders (or files) of normal radiographs; repeat --normal for each source (hospital)",
    )
    t.add_argument(
        "--balance-sources", action="store_true", help="draw each --normal source equally often, whatever its size"
    )
    t.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32",
    )
    t.add_argument("--output", required=True, help="model file to write")
    t.add_argument("--size", type=int, default=defaults.image_size, help="input side in pixels (paper: 256)")
    t.add_argument("--steps", type=int, default=defaults.steps)
    t.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="originals per step (as many pasted are added)"
    )
    t.add_argument("--lr", type=float, default=defaults.lr)
    t.add_argument("--seed", type=int, default=defaults.seed)
    t.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps between label-free evaluations")
    t.add_argument("--select", choices=["synthetic-auc", "last"], default="synthetic-auc")
    t.add_argument("--checkpoint", help="resumable state file (default: OUTPUT with .ckpt); reruns resume")
    t.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    t.add_argument("--init-weights", help="local encoder weights: a model file or a torchvision resnet18 file")
    t.add_argument("--threshold-quantile", type=float, default=defaults.threshold_quantile)
    t.add_argument("--no-quantize", action="store_true", help="store fp32 weights instead of int8")
    # The original AnatPaste code's recipe, piece by piece (bench/paper_fidelity.py measures what each costs).
    t.add_argument(
        "--paste-lungs",
        choices=PASTE_LUNGS,
        default=defaults.paste_lungs,
        help="lung masks the pastes go into: improved (default) or anatpaste (the published threshold recipe)",
    )
    t.add_argument(
        "--paste-halo", action="store_true", help="blend the patch as the original code did, with its dark halo"
    )
    t.add_argument(
        "--input-norm",
        choices=list(INPUT_NORMS),
        default=defaults.input_norm,
        help="input normalisation: shipped (x-0.5)/0.25 or original (x-0.5)/0.5; stored in the model file",
    )
    t.add_argument(
        "--jitter-originals",
        action="store_true",
        help="brightness/contrast jitter (10 %%) of each whole original too, as the original code did",
    )
    t.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("calibrate", help="refit the Gaussians and the threshold on a site's normals (seconds)")
    c.add_argument("--normal", nargs="+", required=True, help="folders (or files) of the site's normal radiographs")
    c.add_argument("--model", help="model file to calibrate (default: the shipped model)")
    c.add_argument("--output", required=True, help="calibrated model file to write")
    c.add_argument("--quantile", type=float, help="threshold quantile of normals (default: the model's, 0.95)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=_cmd_calibrate)

    a = sub.add_parser("adapt", help="calibrate, fine-tune, keep the fine-tune only if a label-free check agrees")
    a.add_argument("--normal", nargs="+", required=True, help="folders (or files) of the site's normal radiographs")
    a.add_argument("--model", help="model file to adapt (default: the shipped model)")
    a.add_argument("--output", required=True, help="adapted model file to write")
    a.add_argument("--replay", nargs="+", help="folders of the model's own training normals, mixed into batches")
    # anatpaste.adapt.RECIPES, spelt out so that building the parser does not import torch (a test keeps them equal)
    a.add_argument(
        "--recipe",
        nargs="+",
        default=list(ADAPT_RECIPES),
        choices=ADAPT_RECIPES,
        help="fine-tune recipes to try; the label-free check keeps the best one or none (default: all)",
    )
    a.add_argument("--steps", type=int, default=300, help="steps of each recipe")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--device", help="cpu / cuda (default: cpu)")
    a.set_defaults(func=_cmd_adapt)

    s = sub.add_parser("score", help="score a radiograph or a folder")
    s.add_argument("input")
    s.add_argument("--model", help="model file (default: the shipped model)")
    s.add_argument("--output", help="write CSV or JSON here (by extension) instead of stdout")
    s.add_argument("--format", choices=["csv", "json"])
    s.add_argument("--overlays", metavar="DIR", help="also write heatmap overlay and lung-mask PNGs here")
    s.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="for DICOM inputs also write a DICOM SR of the result, a "
        "SEG of the lungs and a heatmap secondary capture here (docs/dicom-write-back.md)",
    )
    s.add_argument(
        "--refuse-flagged",
        action="store_true",
        help="refuse (error row, the flag as reason) what would be flagged: no lung field found "
        "(no_lungs), a score far beyond anything real films reach (unfamiliar), a picture laid out "
        "or textured unlike the training films (unusual_layout, unusual_texture), a strip of a film "
        "(partial_film)",
    )
    s.set_defaults(func=_cmd_score)

    e = sub.add_parser("evaluate", help="AUC / AP / specificity at fixed sensitivity on labelled folders")
    e.add_argument("--normal", required=True)
    e.add_argument("--abnormal", required=True)
    e.add_argument("--model")
    e.set_defaults(func=_cmd_evaluate)

    g = sub.add_parser("segment", help="threshold lung masks; Dice/IoU against reference masks")
    g.add_argument("input")
    g.add_argument("--output", required=True)
    g.add_argument("--reference", help="folder of reference masks with the same file names (PNG)")
    g.set_defaults(func=_cmd_segment)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AnatPasteError as err:
        print(f"anatpaste {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
