"""The app's refusals as HTTP answers: one place for the status codes of docs/server-api.md.

MONAI Label answers 500 for most client mistakes (an unknown model, an unknown image); the app raises these
instead, from inside MONAI Label's endpoints, where FastAPI turns them into the answer.
"""

from __future__ import annotations

import os

from fastapi import HTTPException

from anatpaste.errors import RadiographError


def bad_request(message: str) -> HTTPException:
    """400: a malformed request, e.g. an image id that is a path."""
    return HTTPException(status_code=400, detail=message)


def not_found(message: str) -> HTTPException:
    """404: an unknown model or image id."""
    return HTTPException(status_code=404, detail=message)


def not_allowed(message: str) -> HTTPException:
    """405: an action this datastore does not offer, e.g. writing into a read-only archive."""
    return HTTPException(status_code=405, detail=message)


def conflict(message: str) -> HTTPException:
    """409: the request clashes with what is stored, e.g. an upload under an id that already exists."""
    return HTTPException(status_code=409, detail=message)


def unavailable(message: str) -> HTTPException:
    """503: the server cannot answer now, e.g. no model has been published yet."""
    return HTTPException(status_code=503, detail=message)


def unprocessable(err: RadiographError, path: str | os.PathLike | None = None, shown: str = "image") -> HTTPException:
    """422 for an image the core refused, as ``"<TypedErrorName>: message"``.

    The core names the file it read; the server's own path (a temporary upload or a datastore path) is
    replaced by ``shown`` so answers do not reveal the server's file layout.
    """
    message = str(err)
    if path is not None:
        message = message.replace(str(path), shown)
    return HTTPException(status_code=422, detail=f"{type(err).__name__}: {message}")
