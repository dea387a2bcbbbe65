"""Input checks for ``/infer`` and ``/train``, progress for ``GET /train/``, around MONAI Label's own code.

MONAI Label 0.8.5 builds its FastAPI app before it loads an app and offers no hook on requests; its
``/infer`` takes ``image`` as either a datastore id or any path on the server, and its ``GET /train/`` shows
only the task record. Its route functions delegate to module functions (``monailabel.endpoints.infer.
run_inference``, ``monailabel.endpoints.train.status`` and ``.run_model``, ``monailabel.endpoints.scoring.
run_method``); :func:`install` wraps those (in the server process only, once) so the routes, their role
checks and their answers stay MONAI Label's:

- ``image`` must be a datastore id (400 for a path or ``..``), and ``params`` may not name the image; an
  uploaded file is written and removed here (:mod:`.uploads`); neither image nor file, or a label, is 400;
- ``output=json`` tells the infer task to skip the maps (``maps: false``);
- ``GET /train/`` adds the trainer's progress (step, total, loss, synthetic AUC, ...) to the task record;
- ``POST /train/{model}`` checks its body (400 for a bad field) before MONAI Label starts the subprocess,
  and answers 429 while a training is submitted or running, also with ``enqueue=true``;
- an unknown model (``POST /train/{model}``) or scoring method (``POST /scoring/{method}``) answers 404
  (MONAI Label starts a subprocess that fails, and answers 200).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

from .config import ConfigError, TrainOptions
from .errors import bad_request, not_found
from .ids import BadImageIdError, check_image_id
from .uploads import saved_upload, upload_suffix

logger = logging.getLogger(__name__)

_MARK = "__anatpaste_wrapped__"


def checked_infer_params(image: str, params: str, has_file: bool, output: Any) -> str:
    """The ``params`` JSON to pass on, after the checks of the module docstring.

    Raises:
        HTTPException: 400 for a path-like image id, params that are not a JSON object or name the image.
    """
    try:
        p = json.loads(params) if params else {}
    except ValueError as err:
        raise bad_request(f"params is not JSON: {err}") from err
    if not isinstance(p, dict):
        raise bad_request("params must be a JSON object")
    if "image" in p:
        raise bad_request("params may not name the image: use the image query parameter or upload a file")
    if image and not has_file:
        try:
            check_image_id(image)
        except BadImageIdError as err:
            raise bad_request(str(err)) from err
    p.pop("image_id", None)  # set by the app from the checked id, never by the client
    if getattr(output, "value", output) == "json":
        p["maps"] = False
    return json.dumps(p)


def _wrap_run_inference(original: Callable) -> Callable:
    @functools.wraps(original)
    def run_inference(
        background_tasks, model, image="", session_id="", params="{}", file=None, label=None, output=None
    ):
        if label is not None:
            raise bad_request("the anatpaste model takes no label upload")
        if file is None and not image and not session_id:
            raise bad_request("give an image id (?image=<id>) or upload a file (multipart field 'file')")
        params = checked_infer_params(image, params, file is not None, output)
        if file is None:
            return original(background_tasks, model, image, session_id, params, None, None, output)
        # The upload is written here, not by MONAI Label, so that it is removed whatever the answer
        # (:mod:`.uploads`); the infer is done when ``original`` returns.
        with saved_upload(file.file, upload_suffix(file.filename)) as path:
            return original(background_tasks, model, str(path), session_id, params, None, None, output)

    setattr(run_inference, _MARK, True)
    return run_inference


def _wrap_train_status(original: Callable) -> Callable:
    @functools.wraps(original)
    def status(all: bool = False, check_if_running: bool = False):  # noqa: A002 (MONAI Label's name)
        res = original(all, check_if_running)
        if isinstance(res, dict):
            return {**status.train_stats(), **res}
        return res

    status.train_stats = dict
    setattr(status, _MARK, True)
    return status


def _wrap_run_model(original: Callable) -> Callable:
    @functools.wraps(original)
    def run_model(model, params=None, run_sync=False, enqueue=False):
        if model not in run_model.trainers:
            raise not_found(f"unknown model {model!r}; this server trains {sorted(run_model.trainers)}")
        try:
            TrainOptions.from_values(params or {})
        except ConfigError as err:
            raise bad_request(str(err)) from err
        if _train_pending():
            # MONAI Label only counts a training once its subprocess exists, so a second POST in the moment
            # between SUBMITTED and RUNNING would queue a second training behind the first; ``enqueue=true``
            # queued one on purpose, and GET /train/ and /info then showed the queued one instead of the
            # running one. One training at a time, queued or not.
            raise HTTPException(status_code=429, detail="a training is already submitted or running")
        return original(model, params, run_sync, enqueue)

    run_model.trainers = ()
    setattr(run_model, _MARK, True)
    return run_model


def _train_pending() -> bool:
    from monailabel.utils.async_tasks.utils import tasks

    return any(t.get("status") in ("SUBMITTED", "RUNNING") for t in tasks("train"))


def _wrap_run_method(original: Callable) -> Callable:
    @functools.wraps(original)
    def run_method(method, params=None, run_sync=False):
        if method not in run_method.methods:
            raise not_found(f"unknown scoring method {method!r}; this server has {sorted(run_method.methods)}")
        return original(method, params, run_sync)

    run_method.methods = ()
    setattr(run_method, _MARK, True)
    return run_method


def install(trainers: list[str], scoring_methods: list[str], train_stats: Callable[[], dict[str, Any]]) -> None:
    """Wrap the endpoint functions (once per process); point them at the app being started."""
    from monailabel.endpoints import infer as ml_infer
    from monailabel.endpoints import scoring as ml_scoring
    from monailabel.endpoints import train as ml_train

    if not getattr(ml_infer.run_inference, _MARK, False):
        ml_infer.run_inference = _wrap_run_inference(ml_infer.run_inference)
    if not getattr(ml_train.status, _MARK, False):
        ml_train.status = _wrap_train_status(ml_train.status)
    if not getattr(ml_train.run_model, _MARK, False):
        ml_train.run_model = _wrap_run_model(ml_train.run_model)
    if not getattr(ml_scoring.run_method, _MARK, False):
        ml_scoring.run_method = _wrap_run_method(ml_scoring.run_method)
    ml_train.status.train_stats = train_stats
    ml_train.run_model.trainers = tuple(trainers)
    ml_scoring.run_method.methods = tuple(scoring_methods)
