"""Two fixes to MONAI Label 0.8.5's authentication, installed by :func:`install`.

- Its token check calls ``jwt.decode`` without ``algorithms``. PyJWT 2 then refuses every token ("It is
  required that you pass in a value for the "algorithms" argument"), so with ``MONAI_LABEL_AUTH_ENABLE=true``
  every request answers 401. MONAI Label fetches the realm's RSA public key and expects Keycloak's RS256
  tokens; its ``auth`` module gets a ``jwt`` whose ``decode`` accepts RS256 only (never ``none`` or an HMAC
  made with the public key).
- Its ``POST /auth/token`` forwards the password grant to the realm and answers 500 whatever went wrong, so
  a mistyped password read "the server failed". The realm's refusal now answers 401 with the realm's reason,
  and a realm that cannot be reached or fails answers 502.
"""

from __future__ import annotations

from typing import Any

import jwt
import requests
from fastapi import HTTPException

ALGORITHMS = ["RS256"]


class RS256OnlyJWT:
    """The ``jwt`` module, except that ``decode`` always passes ``algorithms=["RS256"]``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(jwt, name)

    @staticmethod
    def decode(token: str, key: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs["algorithms"] = ALGORITHMS
        return jwt.decode(token, key, *args, **kwargs)


class LoginRequests:
    """The ``requests`` module for ``/auth/token``, except that ``post`` turns the realm's answers into
    HTTP errors a client can act on (MONAI Label calls ``raise_for_status`` and answers 500 otherwise)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(requests, name)

    @staticmethod
    def post(*args: Any, **kwargs: Any) -> requests.Response:
        try:
            r = requests.post(*args, **kwargs)
        except requests.RequestException as err:
            raise HTTPException(502, f"the login service did not answer ({type(err).__name__})") from err
        if r.status_code in (400, 401, 403):
            try:
                body = r.json()
            except ValueError:
                body = {}
            reason = (body.get("error_description") or body.get("error")) if isinstance(body, dict) else None
            raise HTTPException(401, f"login refused: {reason or 'wrong user name or password'}")
        if r.status_code >= 300:
            raise HTTPException(502, f"the login service failed (HTTP {r.status_code})")
        return r


def _token_uri(original: Any) -> Any:
    def token_uri() -> str:
        try:
            uri = original()
        except (requests.RequestException, ValueError) as err:
            raise HTTPException(502, f"the login service did not answer ({type(err).__name__})") from err
        if not uri:
            raise HTTPException(502, "the login service has no token endpoint (check MONAI_LABEL_AUTH_REALM_URI)")
        return uri

    token_uri.__anatpaste_wrapped__ = True
    return token_uri


def install() -> None:
    """Replace what ``monailabel.endpoints.user.auth`` and ``.login`` use (idempotent)."""
    from monailabel.endpoints import login
    from monailabel.endpoints.user import auth

    if not isinstance(auth.jwt, RS256OnlyJWT):
        auth.jwt = RS256OnlyJWT()
    if not isinstance(login.requests, LoginRequests):
        login.requests = LoginRequests()
    if not getattr(login.token_uri, "__anatpaste_wrapped__", False):
        login.token_uri = _token_uri(login.token_uri)
