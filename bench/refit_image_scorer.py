"""Refit a trained model file's image scorer and threshold with the current export code (same encoder, heatmap
and input statistics): for files trained before the per-source Gaussians (:mod:`anatpaste.score.source_gaussians`).

The training split is rebuilt from the file and checked as in ``bench/record_trained_on.py`` (the old scorer
must reproduce the stored hold-out scores), then ``anatpaste.train.export.image_score_fit`` fits what a training
run exports today.

    python bench/refit_image_scorer.py --model anatpaste/weights/default.pt --output anatpaste/weights/default.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.model.file import load_model, save_model  # noqa: E402
from anatpaste.score.detector import Detector  # noqa: E402
from anatpaste.score.features import extract  # noqa: E402
from anatpaste.train.export import image_score_fit  # noqa: E402
from bench.record_trained_on import check_holdout, rebuilt_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    payload = load_model(args.model)
    train_set, holdout = rebuilt_split(payload)
    check_holdout(payload, holdout)
    det = Detector(payload, version="refit")
    emb = extract(det.encoder, train_set.images, det.mean, det.std)[0]
    h_emb = extract(det.encoder, holdout.images, det.mean, det.std)[0]
    cfg = payload["config"]
    image = image_score_fit(emb, train_set.source, h_emb, holdout.source, int(cfg["seed"]),
                            float(cfg["threshold_quantile"]))
    before = {"threshold": payload["threshold"]["value"], "by_source": payload["threshold"].get("by_source")}
    out = {**payload, **image}
    save_model(out, args.output)
    print(json.dumps({"image_scorer": out["image_scorer"], "before": before,
                      "threshold": image["threshold"]["value"], "by_source": image["threshold"]["by_source"],
                      "output": args.output}))


if __name__ == "__main__":
    main()
