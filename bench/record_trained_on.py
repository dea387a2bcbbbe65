"""Record in a model file which normals its encoder trained on, for files trained before runs recorded it
(:mod:`anatpaste.model.trained_on`), so that ``calibrate`` leaves those normals out of a site's threshold.

The training split is rebuilt from what the file stores (its sources, seed and hold-out fraction) and checked
before anything is written: the rebuilt hold-out, scored with the file's own encoder and Gaussian, must give
the file's stored hold-out scores. ``--lineage`` adds the training normals of the files the encoder descends
from (each checked the same way); every phase of the shipped models trained at the same input side.

    python bench/record_trained_on.py --model anatpaste/weights/default.pt \
        --lineage anatpaste/weights/zhanglab_cpu.pt --output anatpaste/weights/default.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anatpaste.data import ImageSet, find_images, load_image_set
from anatpaste.model.file import load_model, save_model
from anatpaste.model.trained_on import KEY, with_trained_on
from anatpaste.score.detector import Detector
from anatpaste.score.features import extract
from anatpaste.train.selection import holdout_split


def rebuilt_split(payload: dict[str, Any]) -> tuple[ImageSet, ImageSet]:
    """(train, hold-out) normals of the run that wrote ``payload``, rebuilt from its stored data and config."""
    data_summary, config = payload["training"]["data"], payload["config"]
    size = int(payload["preprocessing"]["image_size"])
    sources = data_summary.get("sources") or [data_summary["folders"]]
    sets = [load_image_set([p for d in src for p in find_images(d)], size, progress=False) for src in sources]
    data = sets[0] if len(sets) == 1 else ImageSet.concat(sets)
    if len(data) != int(data_summary["n_images"]):
        raise SystemExit(f"found {len(data)} normals, the file says it trained on {data_summary['n_images']}")
    train_idx, hold_idx = holdout_split(data, float(config["holdout_fraction"]), int(config["seed"]))
    return data.subset(train_idx), data.subset(hold_idx)


def check_holdout(payload: dict[str, Any], holdout: ImageSet) -> float:
    """Largest difference between the rebuilt hold-out's scores and the stored ones; exits if it is not tiny."""
    det = Detector(payload, version="check")
    emb = extract(det.encoder, holdout.images, det.mean, det.std)[0]
    got = np.sort(det.gaussian.score(emb).numpy())
    want = np.asarray(payload["threshold"]["holdout_scores"])
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-3):
        raise SystemExit("the rebuilt hold-out does not give the file's stored hold-out scores: not recording")
    return float(np.abs(got - want).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lineage", nargs="*", default=[], help="model files the encoder descends from")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    payload = load_model(args.model)
    payload = {k: v for k, v in payload.items() if k != KEY}
    images, report = [], []
    for path in [args.model, *args.lineage]:
        p = payload if path == args.model else load_model(path)
        train_set, holdout = rebuilt_split(p)
        report.append({"file": path, "n_train": len(train_set), "n_holdout": len(holdout),
                       "holdout_max_abs_diff": check_holdout(p, holdout)})
        images.append(train_set.images)
    out = with_trained_on(payload, torch.cat(images))
    out[KEY]["lineage"] = [Path(p).name for p in [args.model, *args.lineage]]
    save_model(out, args.output)
    print(json.dumps({"recorded": out[KEY]["n"], "files": report, "output": args.output}))


if __name__ == "__main__":
    main()
