"""MONAI Label's auth on the real server: RS256 tokens checked against a realm served on loopback.

No Keycloak: the test generates an RSA key pair, serves the realm document (``{"public_key": ...}``) that
MONAI Label fetches, and signs its own tokens. Role rules (MONAI Label's, per route): infer and info need
``monailabel-user``; reviews (image info) need ``monailabel-annotator``; train and stopping it need
``monailabel-admin``. A role is not implied by another: an admin token also needs the user role to infer.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from server_env import REPO, copy_app, copy_studies
from server_live import LiveServer

USER, ANNOTATOR, ADMIN = "monailabel-user", "monailabel-annotator", "monailabel-admin"


def _keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(der).decode()


class Realm:
    """A Keycloak stand-in on a loopback port (Keycloak itself cannot run here): the realm document
    (``/realms/<name>``, its public key), the OpenID configuration, and a password-grant token endpoint that
    signs RS256 tokens for ``users`` ({username: (password, roles)})."""

    def __init__(self, key, public_key_b64: str, users: dict[str, tuple[str, list[str]]] | None = None) -> None:
        realm_doc = json.dumps({"realm": "monailabel", "public_key": public_key_b64}).encode()
        base = "/realms/monailabel"
        token_path = f"{base}/protocol/openid-connect/token"
        users = users or {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict | bytes) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path.rstrip("/") == base:
                    self._send(200, realm_doc)
                elif self.path == f"{base}/.well-known/openid-configuration":
                    self._send(200, {"issuer": outer.uri, "token_endpoint": outer.uri + token_path[len(base):]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                name, password = form.get("username", [""])[0], form.get("password", [""])[0]
                if self.path != token_path or form.get("grant_type") != ["password"]:
                    self._send(400, {"error": "unsupported_grant_type"})
                elif name not in users or users[name][0] != password:
                    self._send(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
                else:
                    self._send(200, {"access_token": token(key, users[name][1], username=name)["Authorization"][7:],
                                     "token_type": "Bearer", "expires_in": 600})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}{base}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def keys():
    return _keypair()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, keys):
    tmp = tmp_path_factory.mktemp("auth")
    realm = Realm(keys[0], keys[1], {"dr_b": ("s3cret", [USER, ANNOTATOR])})
    env = {
        "MONAI_LABEL_AUTH_ENABLE": "true",
        "MONAI_LABEL_AUTH_REALM_URI": realm.uri,
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
    }
    srv = LiveServer(copy_app(tmp / "app"), str(copy_studies(tmp / "studies")), {"model_path": tiny_model}, tmp, env)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
        realm.close()


def token(key, roles, username="dr_a", expires_in=600.0) -> dict[str, str]:
    claims = {
        "preferred_username": username,
        "email": f"{username}@example.org",
        "name": username,
        "realm_access": {"roles": list(roles)},
        "exp": int(time.time() + expires_in),
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='RS256')}"}


def review(server, headers, value="normal"):
    return server.client.put(
        "/datastore/image/info",
        params={"image": "IM-0001-0001"},
        data={"info": json.dumps({"review": value})},
        headers=headers,
    )


def test_no_token_or_a_bad_token_is_401(server, keys):
    c = server.client
    assert c.get("/info/").status_code == 401
    assert c.post("/infer/anatpaste?image=IM-0001-0001&output=json").status_code == 401
    assert c.get("/info/", headers=token(keys[0], [USER], expires_in=-60)).status_code == 401  # expired
    other_key, _ = _keypair()
    assert c.get("/info/", headers=token(other_key, [USER])).status_code == 401  # not the realm's key
    unsigned = jwt.encode({"preferred_username": "x", "realm_access": {"roles": [USER]}}, None, algorithm="none")
    assert c.get("/info/", headers={"Authorization": f"Bearer {unsigned}"}).status_code == 401


def test_a_user_can_infer_but_not_review_or_train(server, keys):
    c, h = server.client, token(keys[0], [USER])
    assert c.get("/info/", headers=h).status_code == 200
    r = c.post("/infer/anatpaste?image=IM-0001-0001&output=json", headers=h)
    assert r.status_code == 200, r.text
    assert review(server, h).status_code == 403
    assert c.post("/train/anatpaste", json={"steps": 0}, headers=h).status_code == 403
    assert c.delete("/train/", headers=h).status_code == 403
    assert c.post("/scoring/anatpaste_score", headers=h).status_code == 403


def test_an_annotator_reviews_and_is_recorded_as_reviewer(server, keys):
    c, h = server.client, token(keys[0], [USER, ANNOTATOR], username="dr_annot")
    r = review(server, h)
    assert r.status_code == 200, r.text
    info = c.get("/datastore/image/info", params={"image": "IM-0001-0001"}, headers=h).json()
    assert info["review"] == "normal"
    assert info["reviewer"] == "dr_annot"
    assert c.post("/train/anatpaste", json={"steps": 0}, headers=h).status_code == 403


def test_an_admin_passes_the_train_role_rule(server, keys):
    c = server.client
    admin_only = token(keys[0], [ADMIN])
    # The body is refused (400) after the role check passed: no training is started by this test.
    assert c.post("/train/anatpaste", json={"steps": 0}, headers=admin_only).status_code == 400
    assert c.delete("/train/", headers=admin_only).status_code == 200
    assert c.post("/infer/anatpaste?image=IM-0001-0001&output=json", headers=admin_only).status_code == 403
    both = token(keys[0], [ADMIN, USER])
    assert c.post("/infer/anatpaste?image=IM-0001-0001&output=json", headers=both).status_code == 200


def test_the_slicer_modules_client_logs_in_through_the_server(server):
    # The extension's own client (stdlib only, as Slicer runs it) against MONAI Label's real /auth/token,
    # which forwards the password grant to the realm's token endpoint.
    sys.path.insert(0, str(REPO / "slicer_extension" / "AnatPasteReview"))
    from AnatPasteReviewLib.client import AnatPasteClient, AuthenticationError

    client = AnatPasteClient(server.url)
    with pytest.raises(AuthenticationError):
        client.info()  # no token yet
    with pytest.raises(AuthenticationError, match="Invalid user credentials"):  # the realm's reason, 401
        client.login("dr_b", "wrong")
    client.login("dr_b", "s3cret")
    assert client.info().model_available
    assert client.score("IM-0001-0001").score > 0
