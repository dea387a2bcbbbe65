"""The site's acceptance set: reviewed abnormal studies plus reviewed normals kept out of every training.

Abnormal reviews are never trained on. Once a site has :data:`MIN_EACH` reviewed abnormals, a fixed fifth of
its reviewed normals (chosen by a hash of the study id, so the choice never changes as reviews come in) is
held out of training and calibration too; together they are a small labelled test set of the site's own
films. The gate then computes AUC and specificity at 95 % sensitivity on it for the published model and the
candidate and refuses a candidate that is worse. This is a deployment feature (the site's own labels decide
what the site publishes); the reported benchmarks never use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from monailabel.interfaces.datastore import Datastore

from anatpaste.data import load_image_set
from anatpaste.errors import RadiographError
from anatpaste.evaluate import detection_metrics
from anatpaste.model.file import load_model
from anatpaste.score.detector import Detector

from .review import reviewed

MIN_EACH = 5  # reviewed abnormals and held-out reviewed normals needed before the set is used
HOLDOUT_MODULUS = 5  # one reviewed normal in five is held out


def held_out(image_id: str) -> bool:
    """Whether a reviewed normal belongs to the acceptance set (stable: a hash of its id)."""
    return int(hashlib.sha256(image_id.encode()).hexdigest(), 16) % HOLDOUT_MODULUS == 0


@dataclass
class AcceptanceSet:
    normal_ids: list[str]  # held-out reviewed normals
    abnormal_ids: list[str]
    active: bool

    def to_dict(self) -> dict:
        return {"n_normal": len(self.normal_ids), "n_abnormal": len(self.abnormal_ids), "active": self.active,
                "min_each": MIN_EACH}


def acceptance_set(datastore: Datastore) -> AcceptanceSet:
    normal, abnormal = reviewed(datastore)
    active = len(abnormal) >= MIN_EACH
    held = [i for i in normal if held_out(i)] if active else []
    return AcceptanceSet(held, abnormal, active and len(held) >= MIN_EACH)


@dataclass
class AcceptanceFigures:
    auc: float
    spec_at_sens95: float
    n_normal: int
    n_abnormal: int


def evaluate(model_file: str, normal_paths: list[str], abnormal_paths: list[str]) -> AcceptanceFigures:
    det = Detector(load_model(model_file), version="acceptance")
    sets = [load_image_set(p, det.image_size, progress=False) for p in (normal_paths, abnormal_paths)]
    s0, s1 = (det.score_grids(s.images) for s in sets)
    m = detection_metrics(np.asarray(s0), np.asarray(s1))
    return AcceptanceFigures(round(m["auc"], 4), round(m["spec_at_sens95"], 4), len(s0), len(s1))


@dataclass
class AcceptanceVerdict:
    passed: bool
    reason: str
    candidate: dict | None
    current: dict | None

    def to_dict(self) -> dict:
        return asdict(self)


def check(
    candidate: str, current: str | None, accept: AcceptanceSet, datastore: Datastore, tolerance: float
) -> AcceptanceVerdict:
    """Refuse a candidate whose acceptance-set AUC is below the published model's by more than ``tolerance``."""
    if not accept.active:
        return AcceptanceVerdict(True, f"acceptance set not used yet (needs {MIN_EACH} reviewed abnormals and "
                                 f"{MIN_EACH} held-out reviewed normals)", None, None)
    normals = [datastore.get_image_uri(i) for i in accept.normal_ids]
    abnormals = [datastore.get_image_uri(i) for i in accept.abnormal_ids]
    try:
        cand = evaluate(candidate, normals, abnormals)
        cur = evaluate(current, normals, abnormals) if current else None
    except RadiographError as err:
        return AcceptanceVerdict(True, f"acceptance set unreadable, not used: {err}", None, None)
    c, p = asdict(cand), (asdict(cur) if cur else None)
    if cur is not None and cand.auc < cur.auc - tolerance:
        return AcceptanceVerdict(False, f"acceptance set: AUC {cand.auc:.3f} is worse than the published "
                                 f"model's {cur.auc:.3f} by more than {tolerance:.3f}", c, p)
    versus = f" (published model: {cur.auc:.3f})" if cur else ""
    return AcceptanceVerdict(True, f"acceptance set: AUC {cand.auc:.3f}{versus}", c, p)
