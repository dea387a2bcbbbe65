"""One reviewer's session with the server: every call runs off the GUI thread, every answer updates a
:class:`~.workflow.ReviewState` on the GUI thread, and signals tell the GUI and the scene.

No Qt and no MRML here: the module's Logic connects :attr:`ReviewSession.result_ready` to the scene
layer and the widget connects :attr:`ReviewSession.changed` to :func:`~.workflow.controls`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from .archive import ArchiveClient
from .client import (
    AnatPasteClient,
    AuthenticationError,
    ScoreResult,
    ServerError,
    ServerInfo,
    ServerUnreachableError,
    Timeouts,
)
from .dicom_objects import ArchiveFindings, dicom_identity
from .errors import NotADicomStudyError
from .images import ImageDecodeError, ResultMaps, read_result_maps
from .signal import Signal
from .tasks import TaskRunner
from .workflow import (
    ARCHIVE,
    CONNECT,
    LOAD,
    LOGIN,
    POLL,
    REVIEW,
    SCORE,
    STOP,
    TRAIN,
    ReviewState,
    Study,
    poll_interval,
)

logger = logging.getLogger(__name__)

Consent = Callable[[Study, str], bool]


def _refuse(study: Study, action: str) -> bool:
    return False


class ReviewSession:
    """Connect, open, score, review, train, follow training: the reviewer's actions.

    Args:
        client_factory: builds the client for a URL (tests inject one with short timeouts).
        runner: where blocking calls run (default: background threads, see :class:`TaskRunner`).
        consent: asked before image data leaves this computer: ``consent(study, "score"|"store")``
            returns True to go on. The default refuses (nothing is ever sent without a yes).
        clock: seconds, monotonic (tests inject a fake).
        archive_factory: builds the DICOMweb archive client for a URL (:class:`~.archive.ArchiveClient`).

    Signals:
        changed(): the state changed (re-read :attr:`state`).
        result_ready(study, ScoreResult, ResultMaps): a score with its maps, for the current study.
        study_downloaded(path, image_id): "next study" fetched a file; open it and call :meth:`set_study`.
        archive_ready(study, ArchiveFindings): what the archive holds for the current study.
    """

    def __init__(
        self,
        client_factory: Callable[[str], AnatPasteClient] | None = None,
        runner: TaskRunner | None = None,
        consent: Consent | None = None,
        clock: Callable[[], float] = time.monotonic,
        archive_factory: Callable[[str], ArchiveClient] | None = None,
    ):
        self.client_factory = client_factory or (lambda url: AnatPasteClient(url, timeouts=Timeouts()))
        self.archive_factory = archive_factory or ArchiveClient
        self.runner = runner or TaskRunner()
        self.consent: Consent = consent or _refuse
        self.clock = clock
        self.state = ReviewState()
        self.client: AnatPasteClient | None = None
        self.training_params: dict[str, Any] = {}
        self.changed = Signal()
        self.result_ready = Signal()
        self.study_downloaded = Signal()
        self.archive_ready = Signal()
        self._last_poll = float("-inf")

    # ------------------------------------------------------------------------------ connection
    def connect(self, url: str) -> None:
        """Connect to a server: auth check, /info/, training status. Errors end up in ``state.error``."""
        if self.runner.busy(CONNECT):
            raise RuntimeError("already connecting")
        client = self.client_factory(url)  # ValueError for a malformed address: the caller shows it
        s = self.state
        if s.study and s.study.image_id and client.server_url != s.server_url:
            # the study's datastore id means nothing to another server: it becomes a local file again
            s.study = dataclasses.replace(s.study, image_id=None, source="file" if s.study.path else "scene")
        self.client = client
        s.server_url, s.connected, s.logged_in, s.info, s.training = (
            client.server_url,
            False,
            False,
            None,
            None,
        )
        s.result, s.review = None, None

        def work() -> tuple[bool, ServerInfo | None]:
            auth = client.auth_enabled()
            if auth and not client.token:
                return auth, None  # /info/ needs a login on such a server
            return auth, client.server_state()

        self._start(CONNECT, work, self._connected, f"Connecting to {client.server_url} ...")

    def _connected(self, answer: tuple[bool, ServerInfo | None]) -> None:
        auth, info = answer
        s = self.state
        s.connected, s.auth_enabled = True, auth
        if info is None:
            s.message = "This server wants a login: enter your user name and password."
            return
        s.logged_in = auth
        s.info, s.training = info, info.training
        s.message = f"Connected: {len(info.models)} model(s) on the server."
        if not info.model_available:
            s.error = "This server has no 'anatpaste' model: is it the AnatPaste MONAI Label app?"
        self._last_poll = self.clock()
        if s.study and s.study.image_id:
            self._fetch_review(s.study)

    def login(self, username: str, password: str) -> None:
        client = self._need_client()
        self._start(
            LOGIN,
            lambda: (client.login(username, password), client.server_state()),
            self._logged_in,
            "Logging in ...",
        )

    def _logged_in(self, answer: tuple[str, ServerInfo]) -> None:
        _, info = answer
        s = self.state
        s.logged_in, s.info, s.training, s.message = True, info, info.training, "Logged in."

    # ---------------------------------------------------------------------------------- studies
    def set_study(self, study: Study | None) -> None:
        """Make ``study`` the one under review (clears the previous score and review)."""
        s = self.state
        s.study, s.result, s.review, s.error, s.archive = study, None, None, None, None
        s.message = f"Opened {study.name}." if study else None
        if study and study.image_id and s.ready:
            self._fetch_review(study)
        self.changed.emit()

    def _fetch_review(self, study: Study) -> None:
        client = self._need_client()
        if self.runner.busy("study_info"):
            return

        def done(info: Any) -> None:
            current = self.state.study
            if current == study and isinstance(info, dict):
                review = info.get("review")
                self.state.review = review if review in ("normal", "abnormal") else None
            elif current is not None and current.image_id and self.state.ready:
                self._fetch_review(current)  # the reviewer moved on while this was in flight

        self._start("study_info", lambda: client.image_info(study.image_id), done, None, quiet=True)

    def next_study(self, folder: str) -> None:
        """Ask the worklist for the most anomalous unreviewed study and download it into ``folder``."""
        client = self._need_client()

        def work() -> tuple[str, str] | None:
            image_id = client.next_study()
            return None if image_id is None else (client.download_image(image_id, folder), image_id)

        def done(got: tuple[str, str] | None) -> None:
            if got is None:
                self.state.message = "No unreviewed studies left on the server."
                return
            self.state.message = f"Downloaded study {got[1]}."
            self.study_downloaded.emit(*got)

        self._start(LOAD, work, done, "Fetching the next study ...")

    def _study_and_client(self) -> tuple[Study, AnatPasteClient]:
        study = self.state.study
        if study is None:
            raise RuntimeError("no study is open")
        return study, self._need_client()

    def _upload_allowed(self, study: Study, purpose: str, refusal: str) -> bool:
        """True when the study is on the server already or the user agrees to send it for ``purpose``."""
        if not study.needs_upload:
            return True
        if not study.path:
            raise RuntimeError(f"study {study.name!r} has neither a datastore id nor a file to send")
        if self.consent(study, purpose):
            return True
        self.state.message = refusal
        self.changed.emit()
        return False

    # ------------------------------------------------------------------------------------ score
    def score(self) -> bool:
        """Score the current study (by datastore id, or upload after consent). False if not sent."""
        study, client = self._study_and_client()
        if not self._upload_allowed(study, "score", "Not sent: scoring needs the image on the server."):
            return False

        def work() -> tuple[ScoreResult, ResultMaps]:
            if study.image_id is not None:
                result = client.score(image_id=study.image_id, maps=True)
            else:
                result = client.score(path=study.path, maps=True)
            try:
                maps = read_result_maps(result.maps_nrrd or b"", result.shape)
            except ImageDecodeError as exc:
                raise ServerError(f"the server's heatmap could not be read: {exc}") from exc
            return result, maps

        def done(answer: tuple[ScoreResult, ResultMaps]) -> None:
            result, maps = answer
            if self.state.study != study:  # the reviewer moved on meanwhile
                return
            self.state.result = result
            self.state.message = result.summary(study.name)
            self.result_ready.emit(study, result, maps)

        self._start(SCORE, work, done, f"Scoring {study.name} ...")
        return True

    # ----------------------------------------------------------------------------------- review
    def confirm(self, review: str) -> bool:
        """Store "normal" (a confirmed normal: the trainer uses it) or "abnormal" for the current study.

        A study the server does not have is added to its datastore first, after consent. False if not sent.
        """
        if review not in ("normal", "abnormal"):
            raise ValueError(f"review must be 'normal' or 'abnormal', got {review!r}")
        study, client = self._study_and_client()
        if not self._upload_allowed(study, "store", "Not stored: a review needs the image in the server's studies."):
            return False

        def work() -> tuple[str, ServerInfo]:
            image_id = study.image_id or client.upload_image(study.path)
            client.set_review(image_id, review)
            return image_id, client.server_state()

        def done(answer: tuple[str, ServerInfo]) -> None:
            image_id, info = answer
            self._take_info(info)
            if self.state.study == study:
                updated = dataclasses.replace(study, image_id=image_id)
                self.state.study, self.state.review = updated, review
                if self.state.result is not None and self.state.result.image is None:
                    self.state.result = dataclasses.replace(self.state.result, image=image_id)
            self.state.message = f"Stored: {study.name} is {'normal' if review == 'normal' else 'not normal'}."

        self._start(REVIEW, work, done, "Saving review ...")
        return True

    # ---------------------------------------------------------------------------------- archive
    def look_up_archive(self, archive_url: str, capture: bool = False) -> None:
        """What the DICOMweb archive holds from AnatPaste for the current study: its result SRs (every model
        version, every radiograph of the study), its reviewer SRs, this radiograph's lung SEG, and with ``capture``
        its heatmap capture. Needs no AnatPaste server; nothing is sent but the study's UID. An empty
        ``archive_url`` means the archive the connected server serves (its ``/info``), if it names one.

        Raises:
            RuntimeError: no study is open.
            ValueError: a malformed archive address, or none given and none named by the server.
        """
        study = self.state.study
        if study is None:
            raise RuntimeError("no study is open")
        served = self.state.info.archive_url if self.state.info is not None else None
        if not archive_url.strip() and not served:
            raise ValueError("no archive address: type the archive's DICOMweb address (e.g. "
                             "http://pacs:8042/dicom-web), or connect to a server that serves one")
        archive = self.archive_factory(archive_url.strip() or str(served))

        def work() -> ArchiveFindings:
            if not study.path:
                raise NotADicomStudyError(f"{study.name} has no DICOM file, so it has no study in the archive")
            return archive.study_results(dicom_identity(study.path), capture=capture)

        def done(found: ArchiveFindings) -> None:
            if self.state.study != study:  # the reviewer moved on meanwhile
                return
            self.state.archive = found
            latest = found.latest
            self.state.message = (f"Archive: the newest AnatPaste result on {study.name} says {latest.label} "
                                  f"(model {latest.model_version})." if latest else
                                  f"Archive: no AnatPaste result on {study.name} itself.")
            self.archive_ready.emit(study, found)

        self._start(ARCHIVE, work, done, f"Looking up {study.name} in the archive at {archive.archive_url} ...",
                    server=False)

    # --------------------------------------------------------------------------------- training
    def start_training(self, params: dict[str, Any] | None = None) -> None:
        """Start training on the server (``params`` overrides :attr:`training_params`)."""
        client = self._need_client()
        body = {**self.training_params, **(params or {})}
        self._start(
            TRAIN,
            lambda: (client.start_training(body), client.server_state()),
            lambda a: self._take_info(a[1]),
            "Starting training ...",
        )

    def stop_training(self) -> None:
        client = self._need_client()
        self._start(
            STOP,
            lambda: (client.stop_training(), client.server_state()),
            lambda a: self._take_info(a[1]),
            "Stopping training ...",
        )

    def _take_info(self, info: ServerInfo) -> None:
        s = self.state
        before = s.model_version
        was_running = s.training_running
        s.info, s.training = info, info.training
        after = s.model_version
        if was_running and not s.training_running:
            s.message = _training_end_message(info)
        elif before is not None and after is not None and after != before:
            s.message = f"New model version {after} is published."

    # ----------------------------------------------------------------------------------- errors
    def report_error(self, message: str) -> None:
        """Show a problem found outside a server call (a file that does not open, an overlay chosen
        as the radiograph, a volume removed meanwhile): the one way the Logic and the widget set it."""
        self.state.error = message
        self.changed.emit()

    # ------------------------------------------------------------------------------------ timer
    def tick(self, wait: float = 0.0) -> None:
        """Call from a GUI timer: deliver finished calls, and poll the server when it is time."""
        self.runner.poll(wait=wait)
        interval = poll_interval(self.state)
        if interval is None or self.runner.busy(POLL) or self.runner.busy(CONNECT):
            return
        if self.clock() - self._last_poll >= interval:
            self.poll_now()

    def poll_now(self) -> None:
        """Refresh model version and training progress now."""
        client = self._need_client()
        self._last_poll = self.clock()
        self._start(POLL, client.server_state, self._take_info, None, quiet=True)

    # ---------------------------------------------------------------------------------- helpers
    def _need_client(self) -> AnatPasteClient:
        if self.client is None:
            raise RuntimeError("not connected to a server")
        return self.client

    def _start(
        self,
        name: str,
        work: Callable[[], Any],
        done: Callable[[Any], None],
        message: str | None,
        quiet: bool = False,
        server: bool = True,
    ) -> None:
        if self.runner.busy(name):
            raise RuntimeError(f"{name} is already in progress")
        s = self.state
        if not quiet:
            s.busy.add(name)
            s.error = None
            if message:
                s.message = message

        # answers from a server the reviewer has left are dropped (``server=False``: a call that needs none)
        client = self.client if server else None

        def finish(result: Any) -> None:
            s.busy.discard(name)
            if server and client is not self.client:
                return
            try:
                done(result)
            except Exception as exc:  # a slot failed (scene, file loading): say so, keep the GUI alive
                logger.exception(f"AnatPasteReview: handling the answer to {name} failed")
                known = isinstance(exc, (ValueError, RuntimeError, OSError))
                s.error = str(exc) if known else f"{name} failed: {type(exc).__name__}: {exc}"
            self.changed.emit()

        def fail(exc: BaseException) -> None:
            s.busy.discard(name)
            if server and client is not self.client:
                return
            self._failed(name, exc)
            self.changed.emit()

        self.runner.submit(name, work, finish, fail)
        self.changed.emit()

    def _failed(self, name: str, exc: BaseException) -> None:
        s = self.state
        if not isinstance(exc, ServerError):
            s.error = f"{name} failed: {type(exc).__name__}: {exc}"  # a bug, or a local file problem
            return
        s.error = str(exc)
        if isinstance(exc, ServerUnreachableError) and name in (POLL, CONNECT):
            s.connected = False
            s.error = f"Lost the server: {exc}" if name == POLL else str(exc)
        if isinstance(exc, AuthenticationError) and s.auth_enabled and exc.status == 401:
            s.logged_in = False


def _training_end_message(info: ServerInfo) -> str:
    t = info.training
    if t.status == "DONE" and t.outcome == "rejected":
        why = f" ({t.gate_reason})" if t.gate_reason else ""
        return f"Training finished, but the new model failed the gate{why}: the published model is unchanged."
    if t.status == "DONE":
        return f"Training finished; model {t.published_version or info.model_version or '?'} is published."
    if t.status == "STOPPED":
        return "Training stopped; the published model is unchanged."
    if t.status == "ERROR":
        return f"Training failed: {t.message or 'see the server log'}."
    return f"Training ended ({t.status})."
