"""MONAI Label's ``PUT`` and ``DELETE /model/{model}`` routes, replaced (their role was annotator, and they
wrote over or renamed the published file past the gate and the version store; see :mod:`.model_upload`).

- ``PUT /model/anatpaste`` (admin): multipart ``file`` = a model file; published as a new version if it
  passes the checks of :mod:`.model_upload`; answers ``{"version", "previous", "gate"}``.
- ``DELETE /model/anatpaste`` (admin): 405. The published model is never deleted over HTTP; an admin rolls
  back on the server machine (``python -m monailabel_app.lib.model_store ... rollback``).

``GET /model/{model}`` (download, admin) and ``GET /model/info/{model}`` stay MONAI Label's.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, File, UploadFile
from fastapi.routing import APIRoute, APIRouter
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User

from .errors import not_allowed, not_found
from .model_upload import ModelUpload

ADMIN = settings.MONAI_LABEL_AUTH_ROLE_ADMIN
PUT_SUMMARY = "[Admin] Upload a model file: checked, gated, published as a new version"
DELETE_SUMMARY = "[Admin] Not allowed: roll back on the server machine instead"


def _is_model_write(route: Any, path: str) -> bool:
    return isinstance(route, APIRoute) and route.path == path and bool(route.methods & {"PUT", "DELETE"})


def _replace_routes(app: FastAPI, put: Any, delete: Any) -> None:
    """Swap the PUT/DELETE routes inside MONAI Label's ``/model`` router, where FastAPI 0.165 looks them up
    at each request (it keeps included routers as such); in a FastAPI that copies routes into the app when
    a router is included, swap the app's copies too."""
    from monailabel.endpoints import model as ml_model

    router: APIRouter = ml_model.router
    router.routes[:] = [r for r in router.routes if not _is_model_write(r, f"{router.prefix}/{{model}}")]
    router.add_api_route("/{model}", put, methods=["PUT"], summary=PUT_SUMMARY)
    router.add_api_route("/{model}", delete, methods=["DELETE"], summary=DELETE_SUMMARY)
    full = f"{settings.MONAI_LABEL_API_STR}{router.prefix}/{{model}}"
    if any(_is_model_write(r, full) for r in app.router.routes):
        kept = [r for r in app.router.routes if not _is_model_write(r, full)]
        extra = APIRouter()
        extra.add_api_route(full, put, methods=["PUT"], summary=PUT_SUMMARY)
        extra.add_api_route(full, delete, methods=["DELETE"], summary=DELETE_SUMMARY)
        app.router.routes[:] = [*extra.routes, *kept]
    app.openapi_schema = None  # rebuilt with the new routes on the next /openapi.json


def install(app: FastAPI, served: str, upload: ModelUpload) -> None:
    """Replace the two routes on ``app`` (MONAI Label's FastAPI app) for the model named ``served``."""

    def known(model: str) -> None:
        if model != served:
            raise not_found(f"unknown model {model!r}; this server has {[served]}")

    def put(model: str, file: UploadFile = File(...), user: User = Depends(RBAC(ADMIN))) -> dict[str, Any]:  # noqa: B008
        known(model)
        return upload(file.file, user.username)

    def delete(model: str, user: User = Depends(RBAC(ADMIN))) -> dict[str, Any]:  # noqa: B008
        known(model)
        raise not_allowed(
            "the published model is not deleted over HTTP; roll back on the server machine with "
            "`python -m monailabel_app.lib.model_store --app APP rollback [VERSION]`"
        )

    _replace_routes(app, put, delete)
