"""What the server's JSON answers mean to the extension (docs/server-api.md): the model, training and a
score, each read defensively (a field that is missing or malformed becomes None, or a BadResponseError
where the answer is unusable without it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import BadResponseError

MODEL = "anatpaste"
REVIEW_VALUES = ("normal", "abnormal")
RUNNING_STATES = ("SUBMITTED", "RUNNING")


@dataclass(frozen=True)
class TrainingStatus:
    """Where training stands (``train_stats.anatpaste`` merged with MONAI Label's task status).

    ``status``: SUBMITTED, RUNNING, DONE, ERROR, STOPPED (MONAI Label's task states), INTERRUPTED, or
    "NONE" when the server has never trained. ``outcome``: the server's verdict on a finished run
    ("published", "rejected" by the sanity gate, "failed", "stopped"). ``message``: why a run failed.
    """

    status: str = "NONE"
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    synthetic_auc: float | None = None
    new_confirmed_normals: int = 0
    published_version: str | None = None
    outcome: str | None = None
    phase: str | None = None
    message: str | None = None
    mode: str | None = None  # calibrate, adapt, finetune, scratch
    gate_reason: str | None = None  # the gate's verdict in words
    acceptance_auc: float | None = None  # candidate's AUC on the site's acceptance set (reviewed studies)
    acceptance_published_auc: float | None = None  # the published model's, on the same studies
    expected_fpr: float | None = None  # share of new normals expected above the new threshold
    fpr_interval: tuple[float, float] | None = None  # 90 % interval of that share
    adapt_chosen: str | None = None  # adapt: "calibrated" or the kept fine-tune's recipe ("gentle", "strong")
    seen_left_out: int = 0  # normals left out of the new threshold because the model had trained on them
    threshold_warning: str | None = None  # the threshold came from normals the model trained on: too many flags

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES

    @property
    def fraction(self) -> float | None:
        """step / total in [0, 1], or None when unknown."""
        if self.step is None or not self.total:
            return None
        return min(max(self.step / self.total, 0.0), 1.0)

    @classmethod
    def from_json(cls, stats: dict[str, Any] | None, task: dict[str, Any] | None = None) -> TrainingStatus:
        """Build from ``train_stats.anatpaste`` and, optionally, ``GET /train/``'s task record.

        The task record is the newer of the two (this server adds the trainer's progress to it) and wins,
        ``status`` included: stats written by a killed trainer can still say RUNNING.
        """
        stats = {**(stats if isinstance(stats, dict) else {}), **(task if isinstance(task, dict) else {})}
        status = str(stats.get("status") or "NONE").upper()
        gate = _dict(stats.get("gate"))
        acceptance = _dict(gate.get("acceptance"))
        message = opt_str(stats.get("error"))
        details = stats.get("details") or []
        if message is None and status == "ERROR" and isinstance(details, list) and details:
            message = str(details[-1]).strip()
        return cls(
            status=status,
            step=_opt_int(stats.get("step")),
            total=_opt_int(stats.get("total")),
            loss=_opt_float(stats.get("loss")),
            synthetic_auc=_opt_float(stats.get("synthetic_auc")),
            new_confirmed_normals=_opt_int(stats.get("new_confirmed_normals")) or 0,
            published_version=opt_str(stats.get("published_version")),
            outcome=opt_str(stats.get("outcome")),
            phase=opt_str(stats.get("phase")),
            message=message,
            mode=opt_str(stats.get("mode")),
            gate_reason=opt_str(gate.get("reason")),
            acceptance_auc=_opt_float(_dict(acceptance.get("candidate")).get("auc")),
            acceptance_published_auc=_opt_float(_dict(acceptance.get("current")).get("auc")),
            expected_fpr=_opt_float(stats.get("expected_fpr")),
            fpr_interval=_opt_pair(stats.get("fpr_interval")),
            adapt_chosen=opt_str(stats.get("adapt_chosen")),
            seen_left_out=_opt_int(stats.get("n_seen_left_out")) or 0,
            threshold_warning=opt_str(stats.get("threshold_warning")),
        )


@dataclass(frozen=True)
class ServerInfo:
    """What ``GET /info/`` says about the AnatPaste model (None fields: the server did not say)."""

    name: str
    models: tuple[str, ...]
    model_available: bool
    model_version: str | None
    threshold: float | None
    image_size: int | None
    trainer_available: bool
    training: TrainingStatus
    datastore: dict[str, Any] = field(default_factory=dict)
    archive_url: str | None = None  # the DICOMweb archive the server serves, if it serves one

    @classmethod
    def from_json(cls, info: Any) -> ServerInfo:
        if not isinstance(info, dict) or not isinstance(info.get("models"), dict):
            raise BadResponseError("the server's /info/ answer has no 'models': is this a MONAI Label server?")
        models = info["models"]
        model = models.get(MODEL) if isinstance(models.get(MODEL), dict) else {}
        trainers = info.get("trainers") if isinstance(info.get("trainers"), dict) else {}
        stats = info.get("train_stats") if isinstance(info.get("train_stats"), dict) else {}
        archive = info.get("archive") if isinstance(info.get("archive"), dict) else {}
        return cls(
            name=str(info.get("name") or ""),
            models=tuple(sorted(models)),
            model_available=MODEL in models,
            model_version=opt_str(model.get("version")),
            threshold=_opt_float(model.get("threshold")),
            image_size=_opt_int(model.get("image_size")),
            trainer_available=MODEL in trainers,
            training=TrainingStatus.from_json(stats.get(MODEL)),
            datastore=info.get("datastore") if isinstance(info.get("datastore"), dict) else {},
            archive_url=opt_str(archive.get("dicomweb")),
        )


@dataclass(frozen=True)
class ScoreResult:
    """One scored radiograph (the JSON of ``POST /infer/anatpaste``) and, if asked for, the maps NRRD."""

    score: float
    label: str
    threshold: float
    model_version: str
    image: str | None = None
    heatmap_display_max: float | None = None
    # colour on flagged films only (the server's ``heatmap_coloured``; servers before it coloured every map)
    heatmap_coloured: bool = True
    spacing: tuple[float, float] | None = None
    shape: tuple[int, int] | None = None
    maps_nrrd: bytes | None = field(default=None, repr=False)
    # The input gate's words for the reader (docs/input-gate.md): a flag (``no_lungs``, ``unfamiliar``: the score
    # may mean nothing) or a fix (``inverted``: re-inverted before scoring). Empty for an ordinary film.
    warnings: tuple[str, ...] = ()

    @property
    def abnormal(self) -> bool:
        return self.label == "abnormal"

    def summary(self, name: str) -> str:
        """The line the module shows after scoring ``name``: the verdict, then the gate's warnings."""
        verdict = "abnormal" if self.abnormal else "normal"
        quiet = [] if self.heatmap_coloured else ["No heatmap colour below the threshold."]
        return " ".join([f"Scored {name}: {verdict}.", *quiet, *(f"Warning: {w}" for w in self.warnings)])

    @classmethod
    def from_json(cls, d: Any, maps_nrrd: bytes | None = None) -> ScoreResult:
        if not isinstance(d, dict):
            raise BadResponseError(f"the score answer is not a JSON object: {shorten(d)}")
        missing = [k for k in ("score", "label", "threshold", "model_version") if d.get(k) is None]
        if missing:
            raise BadResponseError(f"the score answer lacks {', '.join(missing)}: {shorten(d)}")
        label = str(d["label"])
        if label not in REVIEW_VALUES:
            raise BadResponseError(f"the score answer has an unknown label {label!r}")
        try:
            spacing = tuple(float(v) for v in d["spacing"]) if d.get("spacing") else None
            shape = tuple(int(v) for v in d["shape"]) if d.get("shape") else None
            return cls(
                score=float(d["score"]),
                label=label,
                threshold=float(d["threshold"]),
                model_version=str(d["model_version"]),
                image=opt_str(d.get("image")),
                heatmap_display_max=_opt_float(d.get("heatmap_display_max")),
                heatmap_coloured=d.get("heatmap_coloured") is not False,
                spacing=spacing if spacing and len(spacing) == 2 else None,  # type: ignore[arg-type]
                shape=shape if shape and len(shape) == 2 else None,  # type: ignore[arg-type]
                maps_nrrd=maps_nrrd,
                warnings=tuple(str(w) for w in d.get("warnings") or () if str(w).strip()),
            )
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"the score answer has a malformed number: {shorten(d)}") from exc



def shorten(value: Any, limit: int = 200) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _opt_pair(v: Any) -> tuple[float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        a, b = _opt_float(v[0]), _opt_float(v[1])
        if a is not None and b is not None:
            return a, b
    return None


def _opt_float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _opt_int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def opt_str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)
