"""Client for the AnatPaste MONAI Label server (docs/server-api.md), standard library only.

No slicer, qt, requests or httpx import: the same client runs inside 3D Slicer's Python and in the
project's tests. Every call has a connect timeout, a read timeout (per socket operation) and a total
deadline for the whole response, and every failure becomes a :class:`ServerError` whose text a
clinician can read.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from .multipart import FilePart, MultipartError, decode_multipart, encode_multipart, header_param

MODEL = "anatpaste"
SCORING_METHOD = "anatpaste_score"
STRATEGY = "most_anomalous"
REVIEW_VALUES = ("normal", "abnormal")
RUNNING_STATES = ("SUBMITTED", "RUNNING")

# socket.timeout is TimeoutError from Python 3.10 on; 3D Slicer 5.2-5.8 bundle Python 3.9.
_TIMEOUTS = (socket.timeout, TimeoutError)  # noqa: UP041
_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".dcm": "application/dicom"}


# --------------------------------------------------------------------------------------------- errors
class ServerError(Exception):
    """A call to the server failed. ``str(err)`` is a readable sentence.

    Attributes:
        status: the HTTP status, or None when no HTTP answer came back.
        detail: the server's own explanation (FastAPI's ``detail``), when it gave one.
    """

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class ServerUnreachableError(ServerError):
    """No connection: wrong address, server not running, network or TLS failure, connect timeout."""


class ServerTimeoutError(ServerError):
    """Connected, but the server did not answer (or finish answering) in time."""


class ServerResponseError(ServerError):
    """The server answered with an HTTP error status (4xx/5xx)."""


class AuthenticationError(ServerResponseError):
    """401/403: log in, or the account lacks the role this action needs."""


class TrainingAlreadyRunningError(ServerResponseError):
    """429 on ``POST /train``: a training task is already running."""


class BadResponseError(ServerError):
    """The server answered 2xx with something this client cannot use (bad JSON, truncated body, ...)."""


# ------------------------------------------------------------------------------------------ results
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
    adapt_chosen: str | None = None  # adapt: "finetuned" or "calibrated" encoder

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
        message = _opt_str(stats.get("error"))
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
            published_version=_opt_str(stats.get("published_version")),
            outcome=_opt_str(stats.get("outcome")),
            phase=_opt_str(stats.get("phase")),
            message=message,
            mode=_opt_str(stats.get("mode")),
            gate_reason=_opt_str(gate.get("reason")),
            acceptance_auc=_opt_float(_dict(acceptance.get("candidate")).get("auc")),
            acceptance_published_auc=_opt_float(_dict(acceptance.get("current")).get("auc")),
            expected_fpr=_opt_float(stats.get("expected_fpr")),
            fpr_interval=_opt_pair(stats.get("fpr_interval")),
            adapt_chosen=_opt_str(stats.get("adapt_chosen")),
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

    @classmethod
    def from_json(cls, info: Any) -> ServerInfo:
        if not isinstance(info, dict) or not isinstance(info.get("models"), dict):
            raise BadResponseError("the server's /info/ answer has no 'models': is this a MONAI Label server?")
        models = info["models"]
        model = models.get(MODEL) if isinstance(models.get(MODEL), dict) else {}
        trainers = info.get("trainers") if isinstance(info.get("trainers"), dict) else {}
        stats = info.get("train_stats") if isinstance(info.get("train_stats"), dict) else {}
        return cls(
            name=str(info.get("name") or ""),
            models=tuple(sorted(models)),
            model_available=MODEL in models,
            model_version=_opt_str(model.get("version")),
            threshold=_opt_float(model.get("threshold")),
            image_size=_opt_int(model.get("image_size")),
            trainer_available=MODEL in trainers,
            training=TrainingStatus.from_json(stats.get(MODEL)),
            datastore=info.get("datastore") if isinstance(info.get("datastore"), dict) else {},
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
    spacing: tuple[float, float] | None = None
    shape: tuple[int, int] | None = None
    maps_nrrd: bytes | None = field(default=None, repr=False)

    @property
    def abnormal(self) -> bool:
        return self.label == "abnormal"

    @classmethod
    def from_json(cls, d: Any, maps_nrrd: bytes | None = None) -> ScoreResult:
        if not isinstance(d, dict):
            raise BadResponseError(f"the score answer is not a JSON object: {_short(d)}")
        missing = [k for k in ("score", "label", "threshold", "model_version") if d.get(k) is None]
        if missing:
            raise BadResponseError(f"the score answer lacks {', '.join(missing)}: {_short(d)}")
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
                image=_opt_str(d.get("image")),
                heatmap_display_max=_opt_float(d.get("heatmap_display_max")),
                spacing=spacing if spacing and len(spacing) == 2 else None,  # type: ignore[arg-type]
                shape=shape if shape and len(shape) == 2 else None,  # type: ignore[arg-type]
                maps_nrrd=maps_nrrd,
            )
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"the score answer has a malformed number: {_short(d)}") from exc


# ------------------------------------------------------------------------------------------- client
def normalize_server_url(text: str) -> str:
    """``"localhost:8000"`` -> ``"http://localhost:8000"``; trailing slashes removed.

    Raises:
        ValueError: empty text, a scheme other than http/https, or no host.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("enter the server address, e.g. http://127.0.0.1:8000")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"server address must start with http:// or https://, got {parts.scheme}://")
    if not parts.hostname:
        raise ValueError(f"server address has no host name: {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"server address has a bad port: {text!r}") from exc
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect``: to open the connection; ``read``: for each socket read/write once
    connected; ``total``: for one whole call, body included."""

    connect: float = 5.0
    read: float = 60.0
    total: float = 300.0

    def __post_init__(self):
        for name in ("connect", "read", "total"):
            if not getattr(self, name) > 0:
                raise ValueError(f"timeout {name} must be > 0 seconds, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class AnatPasteClient:
    """Calls of docs/server-api.md. Thread-safe: each call opens its own connection.

    Args:
        server_url: e.g. ``http://127.0.0.1:8000`` (normalised by :func:`normalize_server_url`).
        timeouts: see :class:`Timeouts`.
        token: a bearer token (after :meth:`login`, or one obtained elsewhere).
        max_response_bytes: larger answers are refused (a runaway server cannot fill memory).

    Example:
        >>> client = AnatPasteClient("127.0.0.1:8000")
        >>> client.server_url
        'http://127.0.0.1:8000'
    """

    def __init__(
        self,
        server_url: str,
        *,
        timeouts: Timeouts | None = None,
        token: str | None = None,
        max_response_bytes: int = 512 * 2**20,
    ):
        self.server_url = normalize_server_url(server_url)
        self.timeouts = timeouts or Timeouts()
        self.token = token
        self.max_response_bytes = max_response_bytes
        parts = urllib.parse.urlsplit(self.server_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path

    # ---------------------------------------------------------------------------------- server state
    def info(self) -> ServerInfo:
        """``GET /info/``: models, model version, threshold, trainer, training progress."""
        return ServerInfo.from_json(self._json("GET", "/info/"))

    def auth_enabled(self) -> bool:
        """``GET /auth/``: whether the server wants a login."""
        try:
            answer = self._json("GET", "/auth/")
        except ServerResponseError as err:
            if err.status == 404:  # a server without the auth router
                return False
            raise
        return bool(isinstance(answer, dict) and answer.get("enabled"))

    def login(self, username: str, password: str) -> str:
        """``POST /auth/token`` (password grant); keeps and returns the bearer token."""
        body = urllib.parse.urlencode({"username": username, "password": password}).encode()
        answer = self._json(
            "POST", "/auth/token", body=body, content_type="application/x-www-form-urlencoded", auth=False
        )
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise AuthenticationError("the server did not return an access token (is auth enabled?)", status=None)
        self.token = str(token)
        return self.token

    # --------------------------------------------------------------------------------------- scoring
    def score(
        self, image_id: str | None = None, path: str | os.PathLike | None = None, *, maps: bool = True
    ) -> ScoreResult:
        """``POST /infer/anatpaste``: score a datastore image (``image_id``) or upload a file (``path``).

        Args:
            image_id: a datastore id (nothing is uploaded).
            path: a local PNG/JPEG/DICOM file to upload (not stored by the server).
            maps: also fetch the heatmap + lung mask NRRD (``output=all``).

        Raises:
            ValueError: neither or both of ``image_id`` and ``path``.
            ServerError: see the module docstring.
        """
        if (image_id is None) == (path is None):
            raise ValueError("give exactly one of image_id or path")
        output = "all" if maps else "json"
        if image_id is not None:
            resp = self._request("POST", f"/infer/{MODEL}", query={"image": image_id, "output": output})
        else:
            body, ctype = encode_multipart({"params": "{}"}, {"file": file_part(path)})
            resp = self._request("POST", f"/infer/{MODEL}", query={"output": output}, body=body, content_type=ctype)
        if not maps or not resp.content_type.lower().startswith("multipart/"):
            if maps:
                raise BadResponseError("the server sent the score without the heatmap (expected a multipart answer)")
            return ScoreResult.from_json(_parse_json(resp))
        try:
            parts = decode_multipart(resp.body, resp.content_type)
        except MultipartError as exc:
            raise BadResponseError(f"the score answer could not be decoded: {exc}") from exc
        meta = next((p for p in parts if p.filename is None), None)
        image = next((p for p in parts if p.filename is not None), None)
        if meta is None or image is None:
            raise BadResponseError("the score answer lacks its JSON part or its image part")
        try:
            d = json.loads(meta.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadResponseError(f"the score answer's JSON part is not valid JSON: {_short(meta.data)}") from exc
        return ScoreResult.from_json(d, maps_nrrd=image.data)

    def score_all(self) -> dict:
        """``POST /scoring/anatpaste_score``: score every image not yet scored by the current model."""
        return self._json("POST", f"/scoring/{SCORING_METHOD}")

    # ------------------------------------------------------------------------------------- datastore
    def next_study(self) -> str | None:
        """``POST /activelearning/most_anomalous``: the most anomalous unreviewed image id, or None."""
        answer = self._json("POST", f"/activelearning/{STRATEGY}", body=b"{}", content_type="application/json")
        if not isinstance(answer, dict):
            raise BadResponseError(f"the worklist answer is not a JSON object: {_short(answer)}")
        return _opt_str(answer.get("id"))

    def datastore(self) -> dict:
        """``GET /datastore/?output=all``: every image with its info (scores, reviews)."""
        return self._json("GET", "/datastore/", query={"output": "all"})

    def image_info(self, image_id: str) -> dict:
        """``GET /datastore/image/info?image=<id>``."""
        return self._json("GET", "/datastore/image/info", query={"image": image_id})

    def download_image(self, image_id: str, folder: str | os.PathLike) -> str:
        """``GET /datastore/image?image=<id>``: save the image into ``folder``; return its path.

        The file keeps the server's suffix (or one sniffed from its first bytes) so that 3D Slicer
        picks the right reader.
        """
        resp = self._request("GET", "/datastore/image", query={"image": image_id})
        name = header_param(resp.headers.get("content-disposition", ""), "filename", "content-disposition")
        suffix = os.path.splitext(os.path.basename(name or ""))[1].lower()
        if suffix not in _MEDIA_TYPES:
            suffix = sniff_suffix(resp.body) or ".bin"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("._") or "study"
        path = os.path.join(os.fspath(folder), safe + suffix)
        with open(path, "wb") as f:
            f.write(resp.body)
        return path

    def upload_image(self, path: str | os.PathLike, image_id: str | None = None) -> str:
        """``PUT /datastore/image``: add a local file to the server's studies; return its id."""
        body, ctype = encode_multipart({"params": "{}"}, {"file": file_part(path)})
        query = {"image": image_id} if image_id else None
        answer = self._json("PUT", "/datastore/image", query=query, body=body, content_type=ctype)
        image = answer.get("image") if isinstance(answer, dict) else None
        if not image:
            raise BadResponseError(f"the upload answer has no image id: {_short(answer)}")
        return str(image)

    def set_review(self, image_id: str, review: str | None) -> dict:
        """``PUT /datastore/image/info``: store a clinician's review ("normal", "abnormal", or None to
        withdraw it). "normal" is a confirmed normal: the trainer uses it."""
        if review is not None and review not in REVIEW_VALUES:
            raise ValueError(f"review must be one of {REVIEW_VALUES} or None, got {review!r}")
        body = urllib.parse.urlencode({"info": json.dumps({"review": review})}).encode()
        return self._json(
            "PUT",
            "/datastore/image/info",
            query={"image": image_id},
            body=body,
            content_type="application/x-www-form-urlencoded",
        )

    # -------------------------------------------------------------------------------------- training
    def start_training(self, params: dict[str, Any] | None = None) -> dict:
        """``POST /train/anatpaste`` with ``params`` as the JSON body (e.g. ``{"steps": 200}``).

        Raises:
            TrainingAlreadyRunningError: the server is already training (429).
        """
        body = json.dumps(params or {}).encode()
        try:
            return self._json("POST", f"/train/{MODEL}", body=body, content_type="application/json")
        except ServerResponseError as err:
            if err.status == 429:
                raise TrainingAlreadyRunningError(
                    "training is already running on the server", status=429, detail=err.detail
                ) from err
            raise

    def server_state(self) -> ServerInfo:
        """:meth:`info` with its training status merged with ``GET /train/`` (the task's own status:
        it knows a stopped or crashed trainer; 404 there = never trained)."""
        try:  # the task first: a run that ends between the two calls then shows in /info/'s version
            task = self._json("GET", "/train/")
        except ServerResponseError as err:
            if err.status != 404:
                raise
            task = None
        raw = self._json("GET", "/info/")
        info = ServerInfo.from_json(raw)
        if task is None:
            return info
        stats = raw.get("train_stats", {}).get(MODEL) if isinstance(raw.get("train_stats"), dict) else None
        training = TrainingStatus.from_json(stats, task if isinstance(task, dict) else None)
        return dataclasses.replace(info, training=training)

    def training_status(self) -> TrainingStatus:
        """Training progress: step/total, loss, synthetic-anomaly AUC, status (see :meth:`server_state`)."""
        return self.server_state().training

    def stop_training(self) -> dict:
        """``DELETE /train/``: stop training; the published model stays as it was."""
        return self._json("DELETE", "/train/")

    # ---------------------------------------------------------------------------------------- HTTP
    def _json(self, method: str, path: str, **kwargs) -> Any:
        return _parse_json(self._request(method, path, **kwargs))

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
    ) -> _Response:
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json, multipart/form-data, */*", "User-Agent": "AnatPasteReview"}
        if content_type:
            headers["Content-Type"] = content_type
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        where = f"{self.server_url}{path}"
        deadline = time.monotonic() + self.timeouts.total
        conn = self._connection()
        try:
            try:
                conn.connect()
            except _TIMEOUTS as exc:
                raise ServerUnreachableError(
                    f"no answer from {self.server_url} within {self.timeouts.connect:g} s: is the server "
                    "running and the address right?"
                ) from exc
            except ssl.SSLError as exc:
                raise ServerUnreachableError(f"secure connection to {self.server_url} failed: {exc}") from exc
            except OSError as exc:
                raise ServerUnreachableError(
                    f"cannot connect to {self.server_url}: {_os_reason(exc)}. Is the server running and the "
                    "address right?"
                ) from exc
            conn.sock.settimeout(self.timeouts.read)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = self._read_body(resp, deadline)
            except _TIMEOUTS as exc:
                raise ServerTimeoutError(
                    f"the server at {self.server_url} did not answer {method} {path} within {self.timeouts.read:g} s"
                ) from exc
            except (http.client.HTTPException, ConnectionError) as exc:
                raise BadResponseError(
                    f"the server at {self.server_url} broke off its answer to {method} {path}: "
                    f"{type(exc).__name__} {exc}".rstrip()
                ) from exc
            except OSError as exc:
                raise ServerUnreachableError(f"connection to {self.server_url} failed: {_os_reason(exc)}") from exc
        finally:
            conn.close()
        response = _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if response.status >= 400:
            raise _status_error(method, where, response)
        return response

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeouts.connect, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeouts.connect)

    def _read_body(self, resp: http.client.HTTPResponse, deadline: float) -> bytes:
        length = resp.getheader("content-length")
        if length and length.isdigit() and int(length) > self.max_response_bytes:
            raise BadResponseError(f"the server's answer is too large ({length} bytes)")
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise ServerTimeoutError(
                    f"the answer from {self.server_url} took longer than {self.timeouts.total:g} s"
                )
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_response_bytes:
                raise BadResponseError(f"the server's answer is larger than {self.max_response_bytes} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        if length and length.isdigit() and len(data) < int(length):
            raise BadResponseError(f"the server's answer is truncated ({len(data)} of {length} bytes)")
        return data


# ------------------------------------------------------------------------------------------ helpers
def file_part(path: str | os.PathLike) -> FilePart:
    """A file to upload, named so the server can tell its format (DICOM files in Slicer's database
    have no suffix: ``.dcm`` is added when the content says DICOM)."""
    with open(path, "rb") as f:
        data = f.read()
    base = os.path.basename(os.fspath(path)) or "image"
    stem, suffix = os.path.splitext(base)
    if suffix.lower() not in _MEDIA_TYPES:
        sniffed = sniff_suffix(data)
        if sniffed:
            base, suffix = base + sniffed, sniffed
    return FilePart(base, data, _MEDIA_TYPES.get(suffix.lower(), "application/octet-stream"))


def sniff_suffix(head: bytes) -> str | None:
    """``.png`` / ``.jpg`` / ``.dcm`` from a file's first bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[128:132] == b"DICM":
        return ".dcm"
    return None


def _parse_json(resp: _Response) -> Any:
    try:
        return json.loads(resp.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadResponseError(f"the server sent something that is not JSON: {_short(resp.body)}") from exc


def _status_error(method: str, where: str, resp: _Response) -> ServerResponseError:
    detail = None
    try:
        payload = json.loads(resp.body.decode("utf-8"))
        if isinstance(payload, dict) and payload.get("detail") is not None:
            d = payload["detail"]
            detail = d if isinstance(d, str) else json.dumps(d)
    except (UnicodeDecodeError, ValueError):
        text = resp.body.decode("utf-8", "replace").strip()
        detail = _short(text) if text else None
    reason = http.client.responses.get(resp.status, "error")
    explain = {
        400: "the request was refused",
        401: "log in first",
        403: "your account is not allowed to do this",
        404: "not found on the server",
        422: "the server cannot use this image",
        429: "the server is busy with the same task",
        500: "the server failed",
        502: "a proxy could not reach the server",
        503: "the server is not ready",
    }.get(resp.status, reason)
    if resp.status == 422 and detail and detail.startswith("NotAChestRadiographError"):
        # The server's input gate: say in words why there is no score (the reason follows in the detail).
        explain = "not a frontal chest radiograph, so it gets no score"
    message = f"{method} {where}: {resp.status} {reason} ({explain})"
    if detail:
        message += f": {detail}"
    cls = AuthenticationError if resp.status in (401, 403) else ServerResponseError
    return cls(message, status=resp.status, detail=detail)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    return exc.strerror or str(exc) or type(exc).__name__


def _short(value: Any, limit: int = 200) -> str:
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


def _opt_str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)
