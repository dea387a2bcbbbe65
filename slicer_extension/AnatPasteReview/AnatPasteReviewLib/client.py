"""Client for the AnatPaste MONAI Label server (docs/server-api.md) on ``requests``.

``requests`` ships with 3D Slicer's Python, so the same client runs inside Slicer and in the project's
tests; it imports no slicer or qt. Every call has a connect timeout, a read timeout (per socket
operation), a total deadline for the whole answer and a size limit, and every failure becomes a
:class:`~.errors.ServerError` whose text a clinician can read.
"""

from __future__ import annotations

import dataclasses
import http
import json
import os
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

from .answers import MODEL, REVIEW_VALUES, ScoreResult, ServerInfo, TrainingStatus, opt_str, shorten
from .errors import (
    AuthenticationError,
    BadResponseError,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnreachableError,
    TrainingAlreadyRunningError,
)
from .multipart import MultipartError, decode_multipart, header_param

__all__ = [
    "AnatPasteClient",
    "AuthenticationError",
    "BadResponseError",
    "ScoreResult",
    "ServerError",
    "ServerInfo",
    "ServerResponseError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "Timeouts",
    "TrainingAlreadyRunningError",
    "TrainingStatus",
    "normalize_server_url",
]

SCORING_METHOD = "anatpaste_score"
STRATEGY = "most_anomalous"
CHUNK = 1 << 16

# socket.timeout is TimeoutError from Python 3.10 on; 3D Slicer 5.2-5.8 bundle Python 3.9.
_TIMEOUTS = (socket.timeout, TimeoutError, urllib3.exceptions.ReadTimeoutError)  # noqa: UP041
_BROKEN = (
    http.client.HTTPException,
    urllib3.exceptions.ProtocolError,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
)
_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".dcm": "application/dicom"}


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
    """Seconds. ``connect``: to open the connection; ``read``: for each socket read once connected;
    ``total``: for one whole call, body included."""

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
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class AnatPasteClient:
    """Calls of docs/server-api.md.

    The worker threads of a :class:`~.session.ReviewSession` share one ``requests.Session``: its
    connection pool (urllib3's) is thread-safe, and nothing else in it changes after construction (the
    token goes into each request's headers).

    Args:
        server_url: e.g. ``http://127.0.0.1:8000`` (normalised by :func:`normalize_server_url`).
        timeouts: see :class:`Timeouts`.
        token: a bearer token (after :meth:`login`, or one obtained elsewhere).
        max_response_bytes: larger answers are refused (a runaway server cannot fill memory).
        http_session: a ``requests.Session`` to use (proxies, certificates); default: a new one.

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
        http_session: requests.Session | None = None,
    ):
        self.server_url = normalize_server_url(server_url)
        self.timeouts = timeouts or Timeouts()
        self.token = token
        self.max_response_bytes = max_response_bytes
        self.http = http_session or requests.Session()
        # identity: the body is read as it arrives (see _read_body), so no HTTP-level decoding; the maps
        # NRRD is gzip-encoded inside.
        self.http.headers.update({"User-Agent": "AnatPasteReview", "Accept-Encoding": "identity"})

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
        answer = self._json("POST", "/auth/token", data={"username": username, "password": password}, auth=False)
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
            upload = {"data": {"params": "{}"}, "files": {"file": file_part(path)}}
            resp = self._request("POST", f"/infer/{MODEL}", query={"output": output}, **upload)
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
            raise BadResponseError(f"the score answer's JSON part is not valid JSON: {shorten(meta.data)}") from exc
        return ScoreResult.from_json(d, maps_nrrd=image.data)

    def score_all(self) -> dict:
        """``POST /scoring/anatpaste_score``: score every image not yet scored by the current model."""
        return self._json("POST", f"/scoring/{SCORING_METHOD}")

    # ------------------------------------------------------------------------------------- datastore
    def next_study(self) -> str | None:
        """``POST /activelearning/most_anomalous``: the most anomalous unreviewed image id, or None."""
        answer = self._json("POST", f"/activelearning/{STRATEGY}", json_body={})
        if not isinstance(answer, dict):
            raise BadResponseError(f"the worklist answer is not a JSON object: {shorten(answer)}")
        return opt_str(answer.get("id"))

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
        query = {"image": image_id} if image_id else None
        upload = {"data": {"params": "{}"}, "files": {"file": file_part(path)}}
        answer = self._json("PUT", "/datastore/image", query=query, **upload)
        image = answer.get("image") if isinstance(answer, dict) else None
        if not image:
            raise BadResponseError(f"the upload answer has no image id: {shorten(answer)}")
        return str(image)

    def set_review(self, image_id: str, review: str | None) -> dict:
        """``PUT /datastore/image/info``: store a clinician's review ("normal", "abnormal", or None to
        withdraw it). "normal" is a confirmed normal: the trainer uses it."""
        if review is not None and review not in REVIEW_VALUES:
            raise ValueError(f"review must be one of {REVIEW_VALUES} or None, got {review!r}")
        form = {"info": json.dumps({"review": review})}
        return self._json("PUT", "/datastore/image/info", query={"image": image_id}, data=form)

    # -------------------------------------------------------------------------------------- training
    def start_training(self, params: dict[str, Any] | None = None) -> dict:
        """``POST /train/anatpaste`` with ``params`` as the JSON body (e.g. ``{"steps": 200}``).

        Raises:
            TrainingAlreadyRunningError: the server is already training (429).
        """
        try:
            return self._json("POST", f"/train/{MODEL}", json_body=params or {})
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
        data: dict[str, str] | None = None,
        json_body: Any = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        auth: bool = True,
    ) -> _Response:
        headers = {"Accept": "application/json, multipart/form-data, */*"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        deadline = time.monotonic() + self.timeouts.total
        try:
            resp = self.http.request(
                method,
                self.server_url + path,
                params=query,
                data=data,
                json=json_body,
                files=files,
                headers=headers,
                timeout=(self.timeouts.connect, self.timeouts.read),
                stream=True,  # the body is read below, under the total deadline and the size limit
            )
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(method, path, exc) from exc
        try:
            body = self._read_body(resp, method, path, deadline)
        finally:
            resp.close()
        response = _Response(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, body)
        if response.status >= 400:
            raise _status_error(method, f"{self.server_url}{path}", response)
        return response

    def _read_body(self, resp: requests.Response, method: str, path: str, deadline: float) -> bytes:
        limit = self.max_response_bytes
        try:
            return read_capped(resp, limit, deadline)
        except _TIMEOUTS as exc:
            raise self._read_timeout(method, path) from exc
        except _BROKEN as exc:
            raise _broke_off(self.server_url, method, path, exc) from exc
        except BodyCut as cut:
            if cut.why == "late":
                total = self.timeouts.total
                raise ServerTimeoutError(f"the answer from {self.server_url} took longer than {total:g} s") from None
            raise BadResponseError({
                "declared": f"the server's answer is too large ({cut.declared} bytes)",
                "larger": f"the server's answer is larger than {limit} bytes",
                "truncated": f"the server's answer is truncated ({cut.got} of {cut.declared} bytes)",
            }[cut.why]) from None

    def _read_timeout(self, method: str, path: str) -> ServerTimeoutError:
        return ServerTimeoutError(
            f"the server at {self.server_url} did not answer {method} {path} within {self.timeouts.read:g} s"
        )

    def _transport_error(self, method: str, path: str, exc: requests.exceptions.RequestException) -> ServerError:
        """What went wrong before an answer came back, in words."""
        url = self.server_url
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return ServerUnreachableError(
                f"no answer from {url} within {self.timeouts.connect:g} s: is the server running and the address right?"
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return self._read_timeout(method, path)
        if isinstance(exc, requests.exceptions.SSLError):
            return ServerUnreachableError(f"secure connection to {url} failed: {exc}")
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _caused_by(exc, urllib3.exceptions.NewConnectionError):
                return ServerUnreachableError(
                    f"cannot connect to {url}: {_os_reason(exc)}. Is the server running and the address right?"
                )
            return _broke_off(url, method, path, exc)  # connected, then the answer broke off
        return ServerUnreachableError(f"connection to {url} failed: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------ helpers
class BodyCut(Exception):
    """Why :func:`read_capped` stopped reading an answer: ``why`` is ``declared`` (its Content-Length is over
    the limit), ``larger`` (it grew over the limit), ``late`` (past the deadline) or ``truncated`` (shorter than
    its Content-Length). Each client says it in its own words."""

    def __init__(self, why: str, got: int = 0, declared: int = 0) -> None:
        super().__init__(why)
        self.why, self.got, self.declared = why, got, declared


def read_capped(resp: requests.Response, limit: int, deadline: float) -> bytes:
    """A streamed answer's body, at most ``limit`` bytes, read by ``time.monotonic()`` ``deadline``.

    Raises:
        BodyCut: over the limit, late or truncated.
        The transport's own timeout (``_TIMEOUTS``) and broken-connection (``_BROKEN``) exceptions.
    """
    length = resp.headers.get("content-length", "")
    declared = int(length) if length.isdigit() else None
    if declared is not None and declared > limit:
        raise BodyCut("declared", declared=declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise BodyCut("late", got=size)
        chunk = _read_some(resp.raw, CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyCut("larger", got=size)
        chunks.append(chunk)
    if declared is not None and size < declared:
        raise BodyCut("truncated", got=size, declared=declared)
    return b"".join(chunks)


def _read_some(raw: Any, n: int) -> bytes:
    """Up to ``n`` bytes of the body as they arrive (a plain read waits for all ``n``: a server that
    drips a byte at a time would then outlast the total deadline)."""
    read1 = getattr(raw, "read1", None)  # urllib3 >= 2.3
    if read1 is not None:
        return read1(n)
    return raw._fp.read1(n)  # urllib3 1.26 (3D Slicer 5.2-5.8): http.client's response underneath


def file_part(path: str | os.PathLike) -> tuple[str, bytes, str]:
    """A file to upload as (name, bytes, media type), named so the server can tell its format (DICOM
    files in Slicer's database have no suffix: ``.dcm`` is added when the content says DICOM)."""
    with open(path, "rb") as f:
        data = f.read()
    base = os.path.basename(os.fspath(path)) or "image"
    suffix = os.path.splitext(base)[1]
    if suffix.lower() not in _MEDIA_TYPES:
        sniffed = sniff_suffix(data)
        if sniffed:
            base, suffix = base + sniffed, sniffed
    return base, data, _MEDIA_TYPES.get(suffix.lower(), "application/octet-stream")


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
        raise BadResponseError(f"the server sent something that is not JSON: {shorten(resp.body)}") from exc


def _status_error(method: str, where: str, resp: _Response) -> ServerResponseError:
    detail = None
    try:
        payload = json.loads(resp.body.decode("utf-8"))
        if isinstance(payload, dict) and payload.get("detail") is not None:
            d = payload["detail"]
            detail = d if isinstance(d, str) else json.dumps(d)
    except (UnicodeDecodeError, ValueError):
        text = resp.body.decode("utf-8", "replace").strip()
        detail = shorten(text) if text else None
    try:
        reason = http.HTTPStatus(resp.status).phrase
    except ValueError:
        reason = "error"
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


def _broke_off(url: str, method: str, path: str, exc: BaseException) -> BadResponseError:
    return BadResponseError(f"the server at {url} broke off its answer to {method} {path}: {type(exc).__name__}")


def _causes(exc: BaseException):
    """The exception and what it wraps (``raise from``, urllib3's ``reason``, requests' first argument)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *(e.args[:1] if e.args else ())]


def _caused_by(exc: BaseException, kind: type) -> bool:
    return any(isinstance(e, kind) for e in _causes(exc))


def _os_reason(exc: BaseException) -> str:
    """The operating system's reason beneath requests' and urllib3's wrappers."""
    for e in _causes(exc):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "unknown host name"
    for e in _causes(exc):
        wrapper = isinstance(e, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError))
        if isinstance(e, OSError) and not wrapper:
            return e.strerror or str(e) or type(e).__name__
    return str(exc)
