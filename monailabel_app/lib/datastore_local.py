"""MONAI Label's local folder datastore with what this app needs on top.

- ``.png/.jpg/.jpeg/.dcm/.dicom`` files are images (MONAI Label's default list lacks DICOM).
- Ids that are paths are refused (400) where MONAI Label would join them onto the datastore folder.
- Unknown ids answer 404 instead of 500.
- Reviews are checked and stamped (:mod:`.review`).
- Uploads (:meth:`AnatPasteLocalDatastore.add_image`) must be a radiograph suffix and an id that reads back as
  itself from the stored file name (``..jpeg`` would be stored as id ``.``, which every later call refuses);
  an existing id answers 409 unless the caller asks to replace it, and then nothing of the old study stays.
- The app stores no labels: label writes answer 405, label reads check id and tag like image ids (MONAI
  Label joins ``tag`` onto the labels folder, so ``../../x`` or an absolute tag would leave the datastore).
- Image infos never carry the server's file path (MONAI Label adds ``path``).
- Info updates re-read ``datastore_v2.json`` under its file lock before writing, so the scoring subprocess and
  a clinician's review written at the same moment do not overwrite each other (MONAI Label's own update
  writes the whole file from the process's in-memory copy).
- MONAI Label's file watcher reconciles ids with files as one locked read-modify-write
  (:meth:`AnatPasteLocalDatastore._reconcile_datastore`); its own version could list a study whose delete had
  returned, and write back scores from before another process's.
- Reads (listing, image info, the whole datastore) re-read ``datastore_v2.json`` when its modification time
  changed: the scores the scoring subprocess writes reach the worklist even without MONAI Label's file
  watcher (off for the DICOMweb datastore, optional for folders).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from monailabel.config import settings
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel

from .errors import bad_request, conflict, not_allowed, not_found
from .ids import BadImageIdError, check_image_id
from .review import stamp_review

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.dcm", "*.dicom")
IMAGE_SUFFIXES = tuple(p[1:] for p in IMAGE_PATTERNS)
MAX_NAME_LENGTH = 255  # bytes of one file name on ext4 and most other file systems
REPLACE_KEY = "replace"  # upload params: replace an existing study of the same id
NO_LABELS = "this app stores no labels: it keeps scores and reviews in the image info"


def checked_id(image_id: str) -> str:
    try:
        return check_image_id(image_id)
    except BadImageIdError as err:
        raise bad_request(str(err)) from err


def checked_tag(tag: str) -> str:
    """A label tag names a folder under ``labels/``: the same rules as an image id."""
    try:
        return check_image_id(tag)
    except BadImageIdError as err:
        raise bad_request(f"label tag: {err}") from err


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
        """Store an uploaded radiograph under ``image_id`` (default: the file name without its suffix).

        ``image_info[REPLACE_KEY]`` true replaces a study of the same id: its old file, scores and review go.

        Raises:
            HTTPException: 400 for a suffix that is not a radiograph's or an id the app would refuse later,
                409 for an existing id without ``replace``.
        """
        info = dict(image_info or {})
        replace = bool(info.pop(REPLACE_KEY, False))
        base = os.path.basename(image_filename)
        ext = os.path.splitext(base)[1].lower()
        if ext not in IMAGE_SUFFIXES:
            raise bad_request(f"an upload must be one of {list(IMAGE_SUFFIXES)}, got {ext or 'no suffix'!r}")
        image_id = checked_id(image_id or base[: -len(ext)])
        name = self._filename(image_id, ext)
        if len(name.encode()) > MAX_NAME_LENGTH:
            raise bad_request(f"image id is too long for a file name ({len(name.encode())} > {MAX_NAME_LENGTH} bytes)")
        if self._to_id(name) != (image_id, ext):
            raise bad_request(f"image id {image_id!r} cannot be stored as {name!r}: it would read back as another id")
        with FileLock(self._lock_file):
            self._reload_unlocked()
            old = self._datastore.objects.get(image_id)
            if old is not None:
                if not replace:
                    raise conflict(f"image {image_id!r} already exists; upload with params {{\"{REPLACE_KEY}\": true}}")
                self._remove_files(image_id, old)
            dest = os.path.join(self._datastore.image_path(), name)
            shutil.copy(image_filename, dest)
            info.update(ts=int(time.time()), name=name)
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
            self._update_datastore_file(lock=False)
        logger.info(f"added image {image_id} ({'replaced' if old is not None else 'new'})")
        return image_id

    def _remove_files(self, image_id: str, obj: ImageLabelModel) -> None:
        """The image file and label files of ``obj`` (the caller holds the file lock)."""
        Path(self._datastore.image_path(), self._filename(image_id, obj.image.ext)).unlink(missing_ok=True)
        for tag, label in obj.labels.items():
            Path(self._datastore.label_path(tag), self._filename(image_id, label.ext)).unlink(missing_ok=True)

    def remove_image(self, image_id: str) -> None:
        """Remove the image, its labels and its info (404 for an unknown id; MONAI Label answered 500)."""
        checked_id(image_id)
        with FileLock(self._lock_file):
            self._reload_unlocked()
            obj = self._datastore.objects.pop(image_id, None)
            if obj is None:
                raise not_found(f"image {image_id!r} is not in the datastore")
            self._remove_files(image_id, obj)
            self._update_datastore_file(lock=False)

    def _reconcile_datastore(self) -> None:
        """Match the stored ids to the image files on disk, as one locked read-modify-write.

        MONAI Label's file watcher calls this on every file created or deleted (and the constructor once).
        Its own version lists the folder and reloads the JSON file at different moments without holding the
        lock, then writes its in-memory copy: an upload deleted just after it was made came back as a study
        without a file, and scores the scoring subprocess wrote meanwhile were lost. The app stores no
        labels, so only images are reconciled.
        """
        with FileLock(self._lock_file):
            self._reload_unlocked()
            folder = self._datastore.image_path()
            objects = self._datastore.objects
            gone = [i for i, o in objects.items() if not Path(folder, self._filename(i, o.image.ext)).exists()]
            for image_id in gone:
                logger.info(f"image {image_id!r}: its file is gone, removed from the datastore")
                del objects[image_id]
            added = 0
            for name in sorted(self._list_files(folder, self._extensions)):
                image_id, ext = self._to_id(name)
                if image_id not in objects:
                    logger.info(f"image {image_id!r}: new file {name!r}, added to the datastore")
                    info = {"ts": int(time.time()), "name": name}
                    objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
                    added += 1
            if gone or added:
                self._update_datastore_file(lock=False)

    # ---- labels: none are stored; reads stay inside the datastore ------------------------------------

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        raise not_allowed(NO_LABELS)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise not_allowed(NO_LABELS)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        raise not_allowed(NO_LABELS)

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        return super().get_label_uri(checked_id(label_id), checked_tag(label_tag))

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        return super().get_label_info(checked_id(label_id), checked_tag(label_tag))

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
        info = super().get_image_info(image_id)
        info.pop("path", None)  # the server's file layout is not the clients' business
        return self._without_paths(info)

    def json(self) -> dict[str, Any]:
        self._fresh()
        data = super().json()
        for obj in data.get("objects", {}).values():
            self._without_paths(obj.get("image", {}).get("info", {}))
        return data

    def _without_paths(self, info: dict[str, Any]) -> dict[str, Any]:
        """``anomaly_error`` without the datastore's folder: scoring names images by id now, but errors stored
        by earlier versions named the file by its server path (kept until the next model version)."""
        error = info.get("anomaly_error")
        if isinstance(error, str):
            for root in {self._datastore_path, os.path.realpath(self._datastore_path)}:
                error = error.replace(os.path.join(root, ""), "").replace(root, "")
            info["anomaly_error"] = error
        return info

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
