"""A model file uploaded by an admin becomes a new version only through the checks a training result passes.

MONAI Label's ``PUT /model/{model}`` copied any upload over the published file in place (same version name,
new bytes; any annotator could), and ``DELETE /model/{model}`` renamed it away. Here an upload is

1. stored in the model store's folder (same file system, so publishing is a rename), at most
   ``MAX_MODEL_BYTES``;
2. loaded as an AnatPaste model file (422 otherwise);
3. checked by the sanity gate (:mod:`.gate`) against the published model on the normals a training would
   use (confirmed + base normals, less the acceptance set's; 409 when there are fewer than a training needs,
   422 when the gate refuses it), then on the site's acceptance set when it has one (:mod:`.acceptance`,
   as a training result; 422 when it is worse than the published model);
4. published as a new version (origin ``upload``, the uploader and both verdicts in ``versions.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore

from anatpaste.data import load_image_set
from anatpaste.errors import ModelFileError
from anatpaste.model.file import load_model
from anatpaste.train import TrainConfig

from . import acceptance, gate
from .config import TrainOptions
from .errors import conflict
from .model_store import ModelStore
from .train_anatpaste import MIN_IMAGES, AnatPasteTrain
from .uploads import saved_upload

logger = logging.getLogger(__name__)

MAX_MODEL_BYTES = 256 * 2**20  # the shipped model is 13 MB


def refused(message: str, **details: Any) -> HTTPException:
    return HTTPException(status_code=422, detail={"message": message, **details} if details else message)


class ModelUpload:
    """``__call__(file, user)`` runs steps 1-4 of the module docstring and answers the new version."""

    def __init__(
        self, store: ModelStore, trainer: AnatPasteTrain, datastore: Callable[[], Datastore], options: TrainOptions
    ) -> None:
        self.store = store
        self.trainer = trainer  # for the normals a training would use now
        self.datastore = datastore
        self.options = options

    def __call__(self, source: BinaryIO, user: str | None) -> dict[str, Any]:
        with saved_upload(source, ".pt", folder=self.store.root, max_bytes=MAX_MODEL_BYTES) as path:
            return self._publish(path, user)

    def _publish(self, path: Path, user: str | None) -> dict[str, Any]:
        try:
            payload = load_model(path)
            image_size = int(payload["preprocessing"]["image_size"])
        except (ModelFileError, KeyError, TypeError, ValueError) as err:
            raise refused(f"not an AnatPaste model file: {str(err).replace(str(path), 'uploaded file')}") from err
        datastore = self.datastore()
        accept = acceptance.acceptance_set(datastore)
        paths = self.trainer.training_paths(datastore, exclude=set(accept.normal_ids))[0]
        if len(paths) < MIN_IMAGES:
            raise conflict(
                f"the sanity gate needs at least {MIN_IMAGES} normal images (confirmed or base normals), "
                f"this server has {len(paths)}: a model cannot be checked, so none is accepted"
            )
        data = load_image_set(paths, image_size, progress=False)
        if len(data) < MIN_IMAGES:
            raise conflict(f"only {len(data)} of {len(paths)} normal images could be read; the gate needs {MIN_IMAGES}")
        config = TrainConfig(image_size=image_size, seed=self.options.seed)
        current = self.store.current()
        try:
            verdict = gate.check(
                path,
                current.path if current else None,
                data,
                config,
                min_auc=self.options.gate_min_auc,
                tolerance=self.options.gate_tolerance,
            )
        except Exception as err:  # a file that loads but whose tensors do not fit the network
            raise refused(f"the uploaded model cannot score: {type(err).__name__}: {err}") from err
        if not verdict.passed:
            raise refused(f"refused by the sanity gate: {verdict.reason}", gate=verdict.to_dict())
        accepted = acceptance.check(
            str(path), str(current.path) if current else None, accept, datastore, tolerance=self.options.gate_tolerance
        )
        gate_dict = {**verdict.to_dict(), "acceptance": accepted.to_dict()}
        if not accepted.passed:
            raise refused(f"refused by the site's acceptance set: {accepted.reason}", gate=gate_dict)
        meta = {"uploaded_by": user, "parent": current.name if current else None, "gate": gate_dict}
        version = self.store.publish(path, origin="upload", meta=meta, move=True)
        logger.info(f"model upload by {user}: published {version.name} ({verdict.reason})")
        return {"version": version.name, "previous": meta["parent"], "gate": gate_dict}
