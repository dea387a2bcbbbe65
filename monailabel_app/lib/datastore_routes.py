"""What clients may send to MONAI Label's ``/datastore`` routes (the routes and their role checks stay MONAI
Label's; :func:`install` replaces the module functions they call, as :mod:`.routes` does for ``/infer``).

- ``PUT /datastore/image`` (upload): ``params`` is a JSON object that may hold only ``replace`` (bool); the
  file is written and removed here whatever the answer (:mod:`.uploads`); the datastore checks suffix, id
  and clashes (400, 409). MONAI Label stored every ``params`` key in the image info, scores included.
- ``PUT /datastore/image/info``: ``info`` is a JSON object holding only ``review``: ``reviewer`` and
  ``reviewed_at`` are the server's (token user, server time), score fields the scoring method's.
- ``GET /datastore/image/info``: 400 for a path-like id, 404 for an unknown one (MONAI Label answered ``{}``).
- Bad JSON in ``params`` or ``info`` is 400 (MONAI Label answered 500).
"""

from __future__ import annotations

import json
from typing import Any

from monailabel.interfaces.utils.app import app_instance

from .datastore_local import REPLACE_KEY, checked_id
from .errors import bad_request, not_found
from .review import REVIEW_KEY
from .uploads import saved_upload, upload_stem, upload_suffix

INFO_KEYS = (REVIEW_KEY,)
UPLOAD_PARAMS = (REPLACE_KEY,)
_MARK = "__anatpaste_wrapped__"


def json_object(text: str | None, field: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; 400 otherwise."""
    try:
        value = json.loads(text) if text else {}
    except ValueError as err:
        raise bad_request(f"{field} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise bad_request(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def only_keys(values: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    extra = sorted(set(values) - set(allowed))
    if extra:
        raise bad_request(f"{what} may hold only {list(allowed)}; {extra} are not the client's to set")


def add_image(background_tasks: Any, image: str | None = None, params: str = "{}", file: Any = None,
              user: str | None = None) -> dict[str, str]:
    p = json_object(params, "params")
    only_keys(p, UPLOAD_PARAMS, "upload params")
    replace = p.get(REPLACE_KEY, False)
    if not isinstance(replace, bool):
        raise bad_request(f"params {REPLACE_KEY!r} must be true or false, got {replace!r}")
    suffix = upload_suffix(file.filename)
    if not suffix:
        raise bad_request(f"an upload must be a .png, .jpg, .jpeg, .dcm or .dicom file, got {file.filename!r}")
    image_id = checked_id(image or upload_stem(file.filename))
    datastore = app_instance().datastore()
    with saved_upload(file.file, suffix) as path:
        image_id = datastore.add_image(image_id, str(path), {REPLACE_KEY: replace})
    return {"image": image_id}


def update_image_info(image: str, info: str = "{}", user: str | None = None) -> Any:
    values = json_object(info, "info")
    only_keys(values, INFO_KEYS, "image info from a client")
    if user:
        values["user"] = user  # MONAI Label's: the token's user name (its default "admin" without auth)
    app = app_instance()
    result = app.datastore().update_image_info(checked_id(image), values)
    if REVIEW_KEY in values and hasattr(app, "after_review"):  # the reviewer SR (write_back, lib/write_back.py)
        app.after_review(image)
    return result


def get_image_info(image: str) -> dict[str, Any]:
    datastore = app_instance().datastore()
    info = datastore.get_image_info(checked_id(image))
    if not info and image not in datastore.list_images():
        raise not_found(f"image {image!r} is not in the datastore")
    info.pop("path", None)
    return info


def install() -> None:
    """Point MONAI Label's datastore endpoint functions at the ones above (once per process)."""
    from monailabel.endpoints import datastore as ml_datastore

    for name, replacement in (
        ("add_image", add_image),
        ("update_image_info", update_image_info),
        ("get_image_info", get_image_info),
    ):
        if not getattr(getattr(ml_datastore, name), _MARK, False):
            setattr(replacement, _MARK, True)
            setattr(ml_datastore, name, replacement)
