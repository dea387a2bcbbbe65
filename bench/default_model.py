"""Benchmark: the shipped default model (and earlier candidates, for comparison) on every site's test films.

Test figures are reported, never used to choose: each model's label-free figure (synthetic-anomaly AUC of the
model file as stored on its run's held-out normals, recomputed here, and the figure its training loop saw) is
printed beside them, and the former is what decided which model ships.

    python bench/default_model.py                                    # the shipped model
    python bench/default_model.py --compare runs/general/general*.pt  # plus earlier phases
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.data import ImageSet, find_images, load_image_set  # noqa: E402
from anatpaste.evaluate import detection_metrics  # noqa: E402
from anatpaste.io import read_radiograph  # noqa: E402
from anatpaste.model.shipped import DEFAULT_MODEL  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from anatpaste.train.selection import detector_synthetic_auc  # noqa: E402
from bench.common import REPO, SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402


class TrainingNormals:
    """A model's training normals (its run's sources, as stored in the file), read and segmented once per
    (sources, input size), so that its label-free figure is recomputed on exactly its held-out normals."""

    def __init__(self) -> None:
        self._sets: dict[tuple, ImageSet] = {}

    def of(self, det: Detector) -> ImageSet:
        data = det.payload["training"]["data"]
        sources = [tuple(g) for g in data.get("sources") or [data["folders"]]]
        sets = [self._group(g, det.image_size) for g in sources]
        return sets[0] if len(sets) == 1 else ImageSet.concat(sets)

    def _group(self, folders: tuple[str, ...], size: int) -> ImageSet:
        if (folders, size) not in self._sets:
            paths = [p for f in folders for p in find_images(REPO / f)]
            self._sets[(folders, size)] = load_image_set(paths, size)
        return self._sets[(folders, size)]


def test_sets() -> dict[str, tuple[list[Path], list[Path]]]:
    """Every test split of ../shared/data that no shipped model trains on: (normal films, abnormal films).

    Montgomery and Shenzhen (lungmasks) are used whole: no default model trains on any lungmasks film."""
    zl, nih, lm = SHARED_DATA / "zhanglab" / "test", SHARED_DATA / "nih" / "test", SHARED_DATA / "lungmasks" / "images"
    out = {
        "zhanglab": (find_images(zl / "NORMAL"), find_images(zl / "PNEUMONIA")),
        "nih": (find_images(nih / "NORMAL"), find_images(nih / "PNEUMONIA")),
    }
    for site, prefix in (("montgomery", "MCUCXR"), ("shenzhen", "CHNCXR")):
        films = sorted(lm.glob(f"{prefix}_*.png"))
        out[site] = ([p for p in films if p.stem.endswith("_0")], [p for p in films if p.stem.endswith("_1")])
    return out


def _shown(path: Path) -> str:
    """Repository-relative where possible, so results files do not carry this machine's paths."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def site_figures(det: Detector, normal: list, abnormal: list) -> dict[str, object]:
    s0, s1 = det.score_many(normal), det.score_many(abnormal)
    m = detection_metrics(s0, s1)
    return {
        "n_normal": len(normal), "n_abnormal": len(abnormal),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()},
        "spec_at_threshold": round(float((s0 <= det.threshold).mean()), 4),
        "sens_at_threshold": round(float((s1 > det.threshold).mean()), 4),
    }


def evaluate(model: Path, sites: dict[str, tuple[list, list]], training: TrainingNormals) -> dict[str, object]:
    t = time.perf_counter()
    det = Detector.load(model)
    cfg = det.payload["config"]
    file_auc = detector_synthetic_auc(det, training.of(det), cfg["holdout_fraction"], cfg["seed"])
    run = det.payload["training"]
    selected = run["selected_step"]
    syn = {h["step"]: round(h["synthetic_auc"], 4) for h in run["history"]}
    return {
        "model": _shown(model), "model_version": det.version, "threshold": round(det.threshold, 4),
        "trained_on": run["data"].get("sources") or run["data"]["folders"],
        "file_synthetic_auc": round(file_auc, 4),
        "selection_synthetic_auc": syn.get(selected), "selected_step": selected, "synthetic_auc_by_step": syn,
        "sites": {name: site_figures(det, n, a) for name, (n, a) in sites.items()},
        "seconds": round(time.perf_counter() - t, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--compare", type=Path, nargs="*", default=[], help="earlier candidates, reported beside it")
    ap.add_argument("--sites", nargs="+", default=["zhanglab", "nih", "montgomery", "shenzhen"])
    ap.add_argument("--out", type=Path, default=Path("bench/results/default_model.json"))
    args = ap.parse_args(argv)
    files = test_sets()
    sites = {s: ([read_radiograph(p).pixels for p in files[s][0]], [read_radiograph(p).pixels for p in files[s][1]])
             for s in args.sites}
    training = TrainingNormals()
    shipped = evaluate(args.model, sites, training)
    print(json.dumps(shipped), flush=True)
    others = []
    for path in args.compare:
        others.append(evaluate(path, sites, training))
        print(json.dumps(others[-1]), flush=True)
    write_results(args.out, {
        "benchmark": "default model, zero-shot, on every test split in ../shared/data: ZhangLab (children), NIH, "
                     "Montgomery, Shenzhen (adults)",
        "machine": machine(), "commit": git_commit(), "command": command_line(argv),
        "result": shipped, "compared": others,
        "note": "file_synthetic_auc (label-free: the model file as stored, int8 weights included, on its run's "
                "held-out normals and fixed pasted copies of them) chose the shipped model; selection_synthetic_auc "
                "is the figure the training loop saw; test figures were not used for any choice",
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
