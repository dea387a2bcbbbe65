"""MONAI Label's local folder datastore with what this app needs on top.

- ``.png/.jpg/.jpeg/.dcm/.dicom`` files are images (MONAI Label's default list lacks DICOM).
- Ids that are paths are refused (400) where MONAI Label would join them onto the datastore folder.
- Unknown ids answer 404 instead of 500.
- Reviews are checked and stamped (:mod:`.review`).
- Info updates re-read ``datastore_v2.json`` under its file lock before writing, so the scoring subprocess and
  a clinician's review written at the same moment do not overwrite each other (MONAI Label's own update
  writes the whole file from the process's in-memory copy).
- Reads (listing, image info, the whole datastore) re-read ``datastore_v2.json`` when its modification time
  changed: the scores the scoring subprocess writes reach the worklist even without MONAI Label's file
  watcher (off for the DICOMweb datastore, optional for folders).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from filelock import FileLock
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore, LocalDatastoreModel

from .errors import bad_request, not_found
from .ids import BadImageIdError, check_image_id
from .review import stamp_review

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.dcm", "*.dicom")


def checked_id(image_id: str) -> str:
    try:
        return check_image_id(image_id)
    except BadImageIdError as err:
        raise bad_request(str(err)) from err


class AnatPasteLocalDatastore(LocalDatastore):
    """A folder of PNG/JPEG/DICOM radiographs; metadata in ``datastore_v2.json`` beside them."""

    def __init__(
        self,
        path: str,
        extensions: list[str] | None = None,
        auto_reload: bool = False,
        read_only: bool = False,
    ) -> None:
        patterns = list(dict.fromkeys([*(extensions or []), *IMAGE_PATTERNS]))
        super().__init__(path, extensions=patterns, auto_reload=auto_reload, read_only=read_only)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        if image_id:
            checked_id(image_id)
        return super().add_image(image_id, image_filename, image_info)

    def _fresh(self) -> None:
        """Pick up what another process (the scoring or training subprocess) wrote; a stat when nothing did.

        The modification time is compared before taking the file lock: taking the lock on every read made each
        ``/infer`` about 40 ms slower on the live server (bench/server_latency.py).
        """
        try:
            ts = os.stat(self._datastore_config_path).st_mtime
        except OSError:
            return
        if ts != self._config_ts:
            self._init_from_datastore_file()

    def list_images(self) -> list[str]:
        self._fresh()
        return super().list_images()

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        self._fresh()
        return super().get_image_info(image_id)

    def json(self) -> dict[str, Any]:
        self._fresh()
        return super().json()

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self.update_image_infos({image_id: info})

    def update_image_infos(self, updates: dict[str, dict[str, Any]]) -> None:
        """Merge ``{id: info}`` into the stored infos with one locked read-modify-write of the JSON file.

        Raises:
            HTTPException: 400 for an id that is a path, 404 for an unknown id (nothing is written then).
        """
        updates = {checked_id(i): stamp_review(info, settings.MONAI_LABEL_AUTH_ENABLE) for i, info in updates.items()}
        with FileLock(self._lock_file):
            self._reload_unlocked()
            missing = [i for i in updates if i not in self._datastore.objects]
            if missing:
                raise not_found(f"image {missing[0]!r} is not in the datastore")
            for image_id, info in updates.items():
                self._datastore.objects[image_id].image.info.update(info)
            self._update_datastore_file(lock=False)

    def _reload_unlocked(self) -> None:
        """Re-read the JSON file (the caller holds the file lock)."""
        try:
            with open(self._datastore_config_path) as fp:
                model = LocalDatastoreModel.model_validate_json(fp.read())
        except FileNotFoundError:
            return
        model.base_path = self._datastore_path
        self._datastore = model
