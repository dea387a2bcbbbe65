"""Make MONAI Label 0.8.5's token check work with PyJWT 2: it calls ``jwt.decode`` without ``algorithms``.

PyJWT 2 then refuses every token ("It is required that you pass in a value for the "algorithms" argument"),
so with ``MONAI_LABEL_AUTH_ENABLE=true`` every request answers 401. MONAI Label fetches the realm's RSA
public key and expects Keycloak's RS256 tokens; :func:`install` gives its ``auth`` module a ``jwt`` whose
``decode`` accepts RS256 only (never ``none`` or an HMAC made with the public key).
"""

from __future__ import annotations

from typing import Any

import jwt

ALGORITHMS = ["RS256"]


class RS256OnlyJWT:
    """The ``jwt`` module, except that ``decode`` always passes ``algorithms=["RS256"]``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(jwt, name)

    @staticmethod
    def decode(token: str, key: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs["algorithms"] = ALGORITHMS
        return jwt.decode(token, key, *args, **kwargs)


def install() -> None:
    """Replace the ``jwt`` that ``monailabel.endpoints.user.auth`` uses (idempotent)."""
    from monailabel.endpoints.user import auth

    if not isinstance(auth.jwt, RS256OnlyJWT):
        auth.jwt = RS256OnlyJWT()
