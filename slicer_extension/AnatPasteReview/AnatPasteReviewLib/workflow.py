"""What the reviewer may do next, and what to tell them: pure rules over a :class:`ReviewState`.

No network, no Qt, no MRML: the widget turns :func:`controls` into enabled buttons and labels, and the
tests check every rule directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .answers import ScoreResult, ServerInfo, TrainingStatus

if TYPE_CHECKING:  # dicom_objects needs pydicom and numpy; the rules only read its dataclasses
    from .dicom_objects import ArchiveFindings

# Names of calls that can be in flight (ReviewState.busy).
CONNECT, LOGIN, LOAD, SCORE, REVIEW, TRAIN, STOP, POLL, ARCHIVE = (
    "connect",
    "login",
    "load",
    "score",
    "review",
    "train",
    "stop",
    "poll",
    "archive",
)

SOURCES = ("file", "dicom", "server", "scene")


@dataclass(frozen=True)
class Study:
    """The radiograph under review.

    Attributes:
        name: what the reviewer sees (file name or datastore id).
        source: "file" (local PNG/JPEG/DICOM), "dicom" (Slicer's DICOM database), "server" (the
            server's worklist) or "scene" (a volume already in the scene, no file known).
        image_id: the server's datastore id, when the study is (or has been added) there.
        path: a local file that can be uploaded, when there is one.
        volume_id: the MRML node ID of the radiograph volume (opaque here).
    """

    name: str
    source: str
    image_id: str | None = None
    path: str | None = None
    volume_id: str | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"study source must be one of {SOURCES}, got {self.source!r}")

    @property
    def needs_upload(self) -> bool:
        """Scoring it sends image data to the server (it is not in the server's datastore)."""
        return self.image_id is None


@dataclass
class ReviewState:
    """Everything the rules look at. The session updates it; nothing here talks to the server."""

    server_url: str | None = None
    connected: bool = False
    auth_enabled: bool = False
    logged_in: bool = False
    info: ServerInfo | None = None
    study: Study | None = None
    result: ScoreResult | None = None
    review: str | None = None
    training: TrainingStatus | None = None
    archive: ArchiveFindings | None = None  # what the DICOMweb archive holds for the study (after a look-up)
    busy: set[str] = field(default_factory=set)
    error: str | None = None
    message: str | None = None

    @property
    def ready(self) -> bool:
        """Connected, and logged in when the server wants a login."""
        return self.connected and (self.logged_in or not self.auth_enabled)

    @property
    def model_version(self) -> str | None:
        """The published model version (from /info/; the last training's publication as a fallback)."""
        if self.info and self.info.model_version:
            return self.info.model_version
        return self.training.published_version if self.training else None

    @property
    def training_running(self) -> bool:
        return bool(self.training and self.training.running)


@dataclass(frozen=True)
class Controls:
    """What the widget shows: which actions are enabled and the texts of the labels."""

    connect: bool
    login: bool
    open_file: bool
    next_study: bool
    score: bool
    confirm_normal: bool
    confirm_abnormal: bool
    start_training: bool
    start_calibration: bool
    stop_training: bool
    rescore: bool
    server_text: str
    score_text: str
    verdict: str
    review_text: str
    training_text: str
    training_fraction: float | None
    train_hint: str
    new_model_text: str
    status_text: str
    archive_lookup: bool = False
    archive_text: str = ""


def controls(state: ReviewState) -> Controls:
    """The rules. Each enabled flag is the conjunction documented beside it."""
    ready = state.ready
    busy = state.busy
    study = state.study
    info = state.info
    model = bool(info and info.model_available)
    # score: a study, a model, and no score in flight
    can_score = ready and model and study is not None and SCORE not in busy and LOAD not in busy
    # reviews need a study the server has or can receive; one review call at a time
    can_review = ready and study is not None and REVIEW not in busy and LOAD not in busy
    train_ok, train_hint = _training_allowed(state)
    new_version = new_model_version(state)
    return Controls(
        connect=CONNECT not in busy,
        login=state.connected and state.auth_enabled and not state.logged_in and LOGIN not in busy,
        open_file=LOAD not in busy,
        next_study=ready and LOAD not in busy and SCORE not in busy,
        score=can_score,
        confirm_normal=can_review and state.review != "normal",
        confirm_abnormal=can_review and state.review != "abnormal",
        start_training=train_ok,
        start_calibration=train_ok,
        stop_training=ready and state.training_running and STOP not in busy and TRAIN not in busy,
        rescore=can_score and new_version is not None,
        server_text=_server_text(state),
        score_text=_score_text(state.result),
        verdict=state.result.label if state.result else "",
        review_text=_review_text(state),
        training_text=training_text(state.training),
        training_fraction=state.training.fraction if state.training else None,
        train_hint=train_hint,
        new_model_text=(
            f"A new model ({new_version}) is published: press Re-score to see its result." if new_version else ""
        ),
        status_text=state.error or state.message or "",
        # the archive: a study is open (its file says which DICOM study it is); no server needed
        archive_lookup=study is not None and ARCHIVE not in busy and LOAD not in busy,
        archive_text=archive_text(state),
    )


def _training_allowed(state: ReviewState) -> tuple[bool, str]:
    """Start training only with new confirmed normals and nothing running (server or request)."""
    if not state.ready:
        return False, "Connect to the server first."
    if not (state.info and state.info.trainer_available):
        return False, "This server cannot train the AnatPaste model."
    if state.training_running or TRAIN in state.busy:
        return False, "Training is running."
    if STOP in state.busy:
        return False, "Training is being stopped."
    normals = state.training.new_confirmed_normals if state.training else 0
    if normals <= 0:
        return False, "No new confirmed normals since the last training: confirm normal studies first."
    return True, f"Train on {normals} new confirmed normal{'s' if normals != 1 else ''}."


def new_model_version(state: ReviewState) -> str | None:
    """The published model version, when the shown score came from an older one."""
    version = state.model_version
    if state.result is None or version is None or state.result.model_version == version:
        return None
    return version


def _server_text(state: ReviewState) -> str:
    if CONNECT in state.busy:
        return f"Connecting to {state.server_url} ..."
    if not state.connected:
        return "Not connected."
    if state.auth_enabled and not state.logged_in:
        return f"Connected to {state.server_url}: log in to continue."
    info = state.info
    if info is None:
        return f"Connected to {state.server_url}."
    if not info.model_available:
        models = ", ".join(info.models) or "none"
        return f"Connected to {state.server_url}, but it has no AnatPaste model (models: {models})."
    training = "training" if state.training_running else "idle"
    others = [m for m in info.models if m != "anatpaste"]
    extra = f" (also: {', '.join(others)})" if others else ""
    return f"{state.server_url} - model anatpaste {state.model_version or '?'}{extra} - {training}"


def _score_text(result: ScoreResult | None) -> str:
    if result is None:
        return ""
    verdict = "ABNORMAL" if result.abnormal else "normal"
    score = f"Score {result.score:.2f} (threshold {result.threshold:.2f})"
    return f"{score}: {verdict} - model {result.model_version}"


def _review_text(state: ReviewState) -> str:
    if REVIEW in state.busy:
        return "Saving review ..."
    if state.review == "normal":
        return "Confirmed normal (used by the next training)."
    if state.review == "abnormal":
        return "Marked not normal."
    return "Not reviewed." if state.study else ""


def training_text(t: TrainingStatus | None) -> str:
    """One line: what ran, status, step/total, loss, synthetic-anomaly AUC; when done the gate's verdict with its
    figures and the false-positive rate expected at the new threshold."""
    if t is None or t.status == "NONE":
        return "No training yet."
    if t.mode == "calibrate":
        return _calibration_text(t)
    words = {
        "SUBMITTED": "Training queued",
        "RUNNING": "Training",
        "DONE": "Training finished",
        "ERROR": "Training failed",
        "STOPPED": "Training stopped",
        "INTERRUPTED": "Training interrupted",
    }
    parts = [words.get(t.status, f"Training {t.status.lower()}")]
    if t.step is not None and t.total:
        parts.append(f"step {t.step}/{t.total}")
    if t.loss is not None:
        parts.append(f"loss {t.loss:.3f}")
    if t.synthetic_auc is not None:
        parts.append(f"synthetic-anomaly AUC {t.synthetic_auc:.3f}")
    if t.mode:
        parts[0] += f" ({t.mode})"
    parts += _verdict_parts(t)
    text = " - ".join(parts)
    if t.status in ("ERROR", "INTERRUPTED") and t.message:
        text += f": {t.message}"
    return text


def _calibration_text(t: TrainingStatus) -> str:
    words = {"SUBMITTED": "Calibration queued", "RUNNING": "Calibrating", "DONE": "Calibration finished",
             "ERROR": "Calibration failed", "STOPPED": "Calibration stopped", "INTERRUPTED": "Calibration interrupted"}
    text = " - ".join([words.get(t.status, f"Calibration {t.status.lower()}"), *_verdict_parts(t)])
    if t.status in ("ERROR", "INTERRUPTED") and t.message:
        text += f": {t.message}"
    return text


def _verdict_parts(t: TrainingStatus) -> list[str]:
    """The gate's verdict of a finished run, with the figures a reviewer can weigh."""
    if t.status != "DONE":
        return []
    parts = []
    if t.outcome == "rejected":
        why = f" ({t.gate_reason})" if t.gate_reason else ""
        parts.append(f"the new model failed the gate{why}; the published model is unchanged")
    elif t.published_version:
        parts.append(f"published {t.published_version}")
        if t.adapt_chosen:
            parts.append("fine-tune not better: calibrated only" if t.adapt_chosen == "calibrated"
                         else f"fine-tuned encoder kept ({t.adapt_chosen} recipe)")
        if t.expected_fpr is not None:
            fpr = f"expected false-positive rate {100 * t.expected_fpr:.1f} %"
            if t.fpr_interval:
                fpr += f" (90 %: {100 * t.fpr_interval[0]:.1f}-{100 * t.fpr_interval[1]:.1f} %)"
            if t.seen_left_out:
                fpr += f"; {t.seen_left_out} normals the model had trained on left out of the threshold"
            parts.append(fpr)
        if t.threshold_warning:
            parts.append(f"warning: {t.threshold_warning}")
    if t.acceptance_auc is not None:
        vs = f" vs published {t.acceptance_published_auc:.3f}" if t.acceptance_published_auc is not None else ""
        parts.append(f"acceptance-set AUC {t.acceptance_auc:.3f}{vs}")
    return parts


def archive_text(state: ReviewState) -> str:
    """What the archive holds for the study: AnatPaste results (newest first; this radiograph's, then the study's
    other radiographs'), reviews, and the lung SEG found; one line each."""
    if ARCHIVE in state.busy:
        return "Looking in the archive ..."
    found = state.archive
    if found is None:
        return ""
    mine = [r for r in found.results if r.source_uid == found.image_uid]
    others = [r for r in found.results if r.source_uid != found.image_uid]
    lines = [f"{len(mine)} AnatPaste result(s) on this radiograph in the archive (newest first):" if mine
             else "No AnatPaste result on this radiograph in the archive."]
    lines += [_result_line(r) for r in mine]
    if others:
        lines.append(f"{len(others)} on other radiographs of the study:")
        lines += [f"{_result_line(r)} (image ...{r.source_uid[-8:]})" for r in others]
    reviews = [r for r in found.reviews if r.source_uid == found.image_uid]
    for r in reviews:
        who = r.reviewer or "a reviewer without sign-in"
        seen = f", having seen model {r.ai_model_version}" if r.ai_model_version else ""
        lines.append(f"Review {_when(r.reviewed_at)}: {'normal' if r.verdict == 'normal' else 'NOT normal'} "
                     f"by {who}{seen}")
    if found.seg is not None:
        names = ", ".join(s.label for s in found.seg.segments)
        lines.append(f"Lung SEG loaded ({names}; model {found.seg.model_version or '?'}).")
    elif mine:
        lines.append("No lung SEG of this radiograph in the archive.")
    if found.capture is not None:
        lines.append(f"Heatmap capture loaded (model {found.capture.model_version or '?'}).")
    if found.problems:
        lines.append(f"{len(found.problems)} object(s) could not be read: {found.problems[0]}")
    return "\n".join(lines)


def _result_line(r) -> str:
    verdict = "ABNORMAL" if r.label == "abnormal" else "normal"
    check = f", input {r.input_check}" if r.input_check == "flagged" else ""
    if r.flags:
        check += f" ({', '.join(r.flags)})"
    fixed = f", {', '.join(r.fixes)} fixed" if r.fixes else ""
    return (f"{_when(r.written_at)}  model {r.model_version}: score {r.score:.2f} (threshold {r.threshold:.2f}) "
            f"{verdict}{check}{fixed}")


def _when(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t is not None else "(no date)"


def poll_interval(state: ReviewState) -> float | None:
    """Seconds between server polls: fast while training, slow when idle, none when not ready."""
    if not state.ready:
        return None
    if state.training_running or TRAIN in state.busy or STOP in state.busy:
        return 2.0
    return 20.0


def upload_question(study: Study, action: str = "score") -> str:
    """The privacy question asked before image data leaves this computer.

    Args:
        study: the study whose image would be sent.
        action: "score" (the server scores it and does not keep it) or "store" (a review: the image is
            added to the server's studies and stays there).
    """
    what = "the DICOM file, including its header," if study.source == "dicom" else f"the image {study.name!r}"
    if action == "store":
        first = f"Storing a review adds {what} to the AnatPaste server's studies, where it stays."
    elif action == "score":
        first = f"Scoring sends {what} to the AnatPaste server."
    else:
        raise ValueError(f"action must be 'score' or 'store', got {action!r}")
    return f"{first} Send it only if this server is approved for patient data at your site. Continue?"


def remember_url(history: list[str], url: str, limit: int = 10) -> list[str]:
    """URL history, most recent first, without duplicates, at most ``limit`` entries."""
    return [url] + [u for u in history if u and u != url][: max(limit - 1, 0)]
