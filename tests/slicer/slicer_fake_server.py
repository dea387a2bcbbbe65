"""A local HTTP server for the client tests: docs/server-api.md by default, misbehaving on request.

Responses are built with other implementations than the client's (pynrrd for NRRD, requests_toolbelt
for multipart, as MONAI Label does), so a client bug cannot hide behind a matching server bug.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nrrd
import numpy as np
from requests_toolbelt import MultipartDecoder, MultipartEncoder

Behaviour = Callable[["Handler"], None]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    client_port: int = 0  # which TCP connection carried the request

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))

    def multipart(self) -> dict[str, tuple[str | None, bytes]]:
        """name -> (filename, data), decoded with requests_toolbelt."""
        out = {}
        for part in MultipartDecoder(self.body, self.headers["content-type"]).parts:
            disp = part.headers[b"Content-Disposition"].decode()
            params = dict(p.strip().split("=", 1) for p in disp.split(";")[1:])
            name = params["name"].strip('"')
            filename = params["filename"].strip('"') if "filename" in params else None
            out[name] = (filename, part.content)
        return out


def maps_nrrd(heatmap: np.ndarray, mask: np.ndarray) -> bytes:
    """The server's result image: gzip-encoded float32 ``2 W H 1`` (docs/server-api.md), written by pynrrd."""
    h, w = heatmap.shape
    data = np.empty((1, h, w, 2), dtype="<f4")
    data[0, :, :, 0] = heatmap
    data[0, :, :, 1] = mask
    buf = io.BytesIO()
    header = {
        "type": "float",
        "encoding": "gzip",
        "endian": "little",
        "kinds": ["vector", "domain", "domain", "domain"],
        "space": "left-posterior-superior",
        "space origin": np.zeros(3),
        "space directions": np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]),
    }
    nrrd.write(buf, data, header, index_order="C")
    return buf.getvalue()


def test_maps(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A heatmap with a hot square in the upper left and a mask of the right half: asymmetric, so a flip
    or transpose anywhere shows."""
    h, w = shape
    heat = np.zeros(shape, np.float32)
    heat[h // 8 : h // 3, w // 8 : w // 3] = 5.0
    mask = np.zeros(shape, bool)
    mask[h // 4 : 3 * h // 4, w // 2 : w - 2] = True
    return heat, mask


test_maps.__test__ = False  # a helper, not a pytest test


@dataclass
class Training:
    running: bool = False
    step: int = 0
    total: int = 0
    status: str = "NONE"
    published: str | None = None


@dataclass
class FakeState:
    version: str = "v1"
    threshold: float = 2.5
    images: dict[str, dict] = field(default_factory=dict)  # id -> {"shape":(h,w), "data": bytes, "info": {}}
    training: Training = field(default_factory=Training)
    requests: list[Request] = field(default_factory=list)
    auth: bool = False
    token: str = "secret-token"


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def setup(self):
        super().setup()
        self.server.connections.add(self.connection)  # closed by FakeServer.stop, as a stopped process would

    def _dispatch(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.req = Request(
            method,
            parts.path,
            dict(urllib.parse.parse_qsl(parts.query)),
            {k.lower(): v for k, v in self.headers.items()},
            body,
            self.client_address[1],
        )
        fake = self.server.fake
        fake.state.requests.append(self.req)
        behaviour = fake.overrides.get((method, parts.path)) or fake.routes.get((method, parts.path))
        if behaviour is None:
            self.send_json({"detail": "Not Found"}, 404)
            return
        behaviour(self)

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def send_bytes(self, body: bytes, content_type: str, status: int = 200, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj, status: int = 200) -> None:
        self.send_bytes(json.dumps(obj).encode(), "application/json", status)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer
    connections: set[socket.socket]


class FakeServer:
    """Start with :meth:`start`; ``url``; ``state``; replace a route's behaviour with :meth:`on`."""

    def __init__(self, images: dict[str, tuple[int, int]] | None = None):
        self.state = FakeState()
        for image_id, shape in (images or {"study-a": (48, 64), "study-b": (40, 40)}).items():
            self.state.images[image_id] = {"shape": shape, "data": _png_bytes(shape), "info": {}}
        self.overrides: dict[tuple[str, str], Behaviour] = {}
        self.routes: dict[tuple[str, str], Behaviour] = {
            ("GET", "/info/"): self._info,
            ("GET", "/auth/"): lambda h: h.send_json({"enabled": self.state.auth}),
            ("POST", "/auth/token"): self._token,
            ("POST", "/infer/anatpaste"): self._infer,
            ("GET", "/datastore/image"): self._download,
            ("PUT", "/datastore/image"): self._upload,
            ("GET", "/datastore/image/info"): self._get_info,
            ("PUT", "/datastore/image/info"): self._put_info,
            ("POST", "/activelearning/most_anomalous"): self._next,
            ("POST", "/train/anatpaste"): self._train,
            ("GET", "/train/"): self._train_status,
            ("DELETE", "/train/"): self._stop,
        }
        self._httpd: _Server | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> FakeServer:
        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.fake = self
        self._httpd.connections = set()
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop the open keep-alive connections (the client's pool holds some)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            for conn in list(self._httpd.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def on(self, method: str, path: str, behaviour: Behaviour) -> None:
        self.overrides[(method, path)] = behaviour

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.state.requests if r.method == method and r.path == path]

    # ------------------------------------------------------------------------------- contract
    def _authorized(self, h: Handler) -> bool:
        if self.state.auth and h.req.headers.get("authorization") != f"Bearer {self.state.token}":
            h.send_json({"detail": "Not authenticated"}, 401)
            return False
        return True

    def _stats(self) -> dict:
        t = self.state.training
        normals = sum(1 for im in self.state.images.values() if im["info"].get("review") == "normal")
        return {
            "status": "RUNNING" if t.running else t.status,
            "step": t.step,
            "total": t.total,
            "loss": 0.5,
            "synthetic_auc": 0.75,
            "new_confirmed_normals": normals,
            "published_version": t.published,
        }

    def _info(self, h: Handler) -> None:
        if not self._authorized(h):
            return
        h.send_json(
            {
                "name": "AnatPaste",
                "models": {
                    "anatpaste": {
                        "type": "anomaly",
                        "version": self.state.version,
                        "threshold": self.state.threshold,
                        "image_size": 64,
                    }
                },
                "trainers": {"anatpaste": {}},
                "train_stats": {"anatpaste": self._stats()},
                "datastore": {"total": len(self.state.images)},
            }
        )

    def _token(self, h: Handler) -> None:
        form = h.req.form()
        if form.get("username") == "doc" and form.get("password") == "pw":
            h.send_json({"access_token": self.state.token, "token_type": "bearer"})
        else:
            h.send_json({"detail": "Invalid credentials"}, 401)

    def _infer(self, h: Handler) -> None:
        if not self._authorized(h):
            return
        q = h.req.query
        if "image" in q:
            image = self.state.images.get(q["image"])
            if image is None:
                h.send_json({"detail": f"image {q['image']!r} is not in the datastore"}, 404)
                return
            shape = image["shape"]
        else:
            name, data = h.req.multipart()["file"]
            if not data.startswith(b"\x89PNG"):
                h.send_json({"detail": "UnreadableImageError: not a radiograph"}, 422)
                return
            from PIL import Image

            w, hh = Image.open(io.BytesIO(data)).size
            shape = (hh, w)
        heat, mask = test_maps(shape)
        meta = {
            "image": q.get("image"),
            "score": 3.0,
            "label": "abnormal",
            "threshold": self.state.threshold,
            "model_version": self.state.version,
            "heatmap_display_max": 5.0,
            "spacing": None,
            "shape": list(shape),
        }
        if q.get("output") == "json":
            h.send_json(meta)
            return
        enc = MultipartEncoder(
            fields={
                "params": (None, json.dumps(meta), "application/json"),
                "image": ("result.nrrd", maps_nrrd(heat, mask), "application/octet-stream"),
            }
        )
        h.send_bytes(enc.to_string(), enc.content_type)

    def _download(self, h: Handler) -> None:
        image = self.state.images.get(h.req.query.get("image", ""))
        if image is None:
            h.send_json({"detail": "Image NOT Found"}, 404)
            return
        h.send_bytes(
            image["data"],
            "image/png",
            headers={"Content-Disposition": f'attachment; filename="{h.req.query["image"]}.png"'},
        )

    def _upload(self, h: Handler) -> None:
        filename, data = h.req.multipart()["file"]
        image_id = h.req.query.get("image") or filename.rsplit(".", 1)[0]
        from PIL import Image

        w, hh = Image.open(io.BytesIO(data)).size
        self.state.images[image_id] = {"shape": (hh, w), "data": data, "info": {}}
        h.send_json({"image": image_id})

    def _get_info(self, h: Handler) -> None:
        image = self.state.images.get(h.req.query.get("image", ""))
        if image is None:
            h.send_json({"detail": "Image NOT Found"}, 404)
            return
        h.send_json(image["info"])

    def _put_info(self, h: Handler) -> None:
        image = self.state.images.get(h.req.query.get("image", ""))
        if image is None:
            h.send_json({"detail": "image not found"}, 404)
            return
        image["info"].update(json.loads(h.req.form()["info"]))
        h.send_json(image["info"])

    def _next(self, h: Handler) -> None:
        for image_id, image in self.state.images.items():
            if "review" not in image["info"]:
                h.send_json({"id": image_id})
                return
        h.send_json({})

    def _train(self, h: Handler) -> None:
        t = self.state.training
        if t.running:
            h.send_json({"detail": "++++++++++ Train Task is Already Running"}, 429)
            return
        params = json.loads(h.req.body or b"{}")
        t.running, t.step, t.total, t.status = True, 0, int(params.get("steps", 3)), "RUNNING"
        h.send_json({"id": "task-1", "status": "SUBMITTED"})

    def _train_status(self, h: Handler) -> None:
        t = self.state.training
        if t.status == "NONE":
            h.send_json({"detail": "No Train Tasks Found"}, 404)
            return
        if t.running:  # one step per status call: progress the tests can follow without sleeping
            t.step += 1
            if t.step >= t.total:
                t.running, t.status = False, "DONE"
                self.state.version = t.published = f"v{int(self.state.version[1:]) + 1}"
        # as the AnatPaste server does: the trainer's progress merged into MONAI Label's task record
        h.send_json(
            {
                **self._stats(),
                "id": "task-1",
                "status": "RUNNING" if t.running else t.status,
                "details": ["a log line"],
            }
        )

    def _stop(self, h: Handler) -> None:
        t = self.state.training
        if t.running:
            t.running, t.status = False, "STOPPED"
        h.send_json({"id": "task-1", "status": t.status})


def _png_bytes(shape: tuple[int, int]) -> bytes:
    from PIL import Image

    h, w = shape
    a = (np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------ misbehaviours
def hang(seconds: float) -> Behaviour:
    """Accept the request and say nothing for ``seconds``."""

    def behave(h: Handler) -> None:
        time.sleep(seconds)

    return behave


def status(code: int, body: bytes, content_type: str = "application/json") -> Behaviour:
    return lambda h: h.send_bytes(body, content_type, code)


def truncated(body: bytes, claimed: int, content_type: str = "application/json") -> Behaviour:
    """Announce ``claimed`` bytes, send ``body`` (shorter), close."""

    def behave(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(claimed))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        h.close_connection = True

    return behave


def drip(total_bytes: int, interval: float) -> Behaviour:
    """Send a body one byte every ``interval`` s (each read succeeds; only a total deadline stops it)."""

    def behave(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(total_bytes))
        h.end_headers()
        try:
            for _ in range(total_bytes):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass

    return behave
