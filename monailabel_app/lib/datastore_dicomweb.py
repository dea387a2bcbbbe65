"""A DICOMweb archive (e.g. Orthanc) as the datastore: CR/DX radiographs, one image per DICOM instance.

MONAI Label's own DICOMweb datastore is made for CT/MR volumes: it searches ``Modality=CT`` series, converts
each series to NIfTI, downloads dcmqi from the internet at start-up and writes final labels back to the
archive as DICOM SEG. For radiographs this datastore instead

- searches instances of the configured modalities (default CR and DX) with QIDO-RS: a radiography series
  often holds several images (views), so an image id is a SOP Instance UID;
- retrieves an instance with WADO-RS on first use, in its stored transfer syntax, into a local cache folder,
  where ``read_radiograph`` reads it as any DICOM file;
- keeps scores and reviews in the cache's ``datastore_v2.json`` (locked read-modify-write, as the local
  datastore) and never writes to the archive: adding or removing images or labels answers 405;
- needs no dcmqi and nothing from the internet.

No patient identifiers are copied into the image info (``GET /datastore/?output=all`` lists it to every
user); the cached files are the archive's own objects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel

from .datastore_local import AnatPasteLocalDatastore, checked_id
from .errors import not_allowed

logger = logging.getLogger(__name__)

DEFAULT_MODALITIES = ("CR", "DX")
_INFO_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "StudyDate", "SeriesNumber", "InstanceNumber")
_READ_ONLY = "the DICOMweb archive is read-only for this app: nothing is written back"


class AnatPasteDICOMwebDatastore(AnatPasteLocalDatastore):
    """Radiographs of a DICOMweb archive, cached locally on first use; metadata kept in the cache folder."""

    def __init__(
        self,
        client: DICOMwebClient,
        cache_path: str | os.PathLike,
        modalities: tuple[str, ...] = DEFAULT_MODALITIES,
        refresh_seconds: float = 10.0,
    ) -> None:
        self._client = client
        self._modalities = tuple(modalities)
        self._refresh_seconds = refresh_seconds
        self._listed: list[str] = []
        self._listed_at = -float("inf")
        self._sync_lock = threading.Lock()
        Path(cache_path).mkdir(parents=True, exist_ok=True)
        super().__init__(str(cache_path), extensions=["*.dcm"], auto_reload=False)
        logger.info(f"DICOMweb datastore {client.base_url}: modalities {self._modalities}; cache {cache_path}")

    def name(self) -> str:
        return str(self._client.base_url)

    # ---- listing -------------------------------------------------------------------------------------

    def _search(self) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for modality in self._modalities:
            for js in self._client.search_for_instances(search_filters={"Modality": modality}, get_remaining=True):
                ds = pydicom.Dataset.from_json(js)
                uid = str(ds.get("SOPInstanceUID", ""))
                if uid:
                    found[uid] = {t: str(ds.get(t)) if ds.get(t) is not None else None for t in _INFO_TAGS}
        return [{"id": uid, **info} for uid, info in sorted(found.items())]

    def list_images(self) -> list[str]:
        """The archive's instances of the configured modalities (re-searched at most every few seconds)."""
        self._fresh()
        with self._sync_lock:
            if time.monotonic() - self._listed_at > self._refresh_seconds:
                try:
                    remote = self._search()
                except requests.RequestException as err:  # keep serving what is known; retry at the next call
                    logger.error(f"DICOMweb search failed ({self._client.base_url}): {err}")
                    return list(self._listed or self._datastore.objects)
                self._sync(remote)
                self._listed_at = time.monotonic()
            return list(self._listed)

    def _sync(self, remote: list[dict[str, Any]]) -> None:
        """Register new instances and forget ones the archive no longer has (their scores and reviews too)."""
        ids = []
        with FileLock(self._lock_file):
            self._reload_unlocked()
            objects = self._datastore.objects
            for item in remote:
                image_id = item.pop("id")
                ids.append(image_id)
                if image_id not in objects:
                    info = {**item, "name": f"{image_id}.dcm", "ts": int(time.time())}
                    objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=".dcm"))
            gone = set(objects) - set(ids)
            for image_id in gone:
                objects.pop(image_id)
                Path(self._datastore.image_path(), f"{image_id}.dcm").unlink(missing_ok=True)
            if gone or len(ids) != len(self._listed) or set(ids) != set(self._listed):
                self._update_datastore_file(lock=False)
        self._listed = ids

    def _remove_non_existing(self) -> int:
        """Instances not downloaded yet have no file in the cache: they stay (the archive is the reference)."""
        return 0

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return self.list_images()

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return []

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        return []

    def status(self) -> dict[str, Any]:
        return {"total": len(self.list_images()), "completed": 0, "label_tags": {}}

    # ---- images --------------------------------------------------------------------------------------

    def get_image_uri(self, image_id: str) -> str:
        """The cached DICOM file of ``image_id`` (retrieved now if needed), or "" for an unknown id."""
        checked_id(image_id)
        obj = self._datastore.objects.get(image_id)
        if obj is None:
            self._listed_at = -float("inf")
            if image_id not in self.list_images():
                return ""
            obj = self._datastore.objects[image_id]
        path = Path(self._datastore.image_path(), f"{image_id}.dcm")
        if not path.is_file():
            info = obj.image.info
            ds = self._client.retrieve_instance(
                info["StudyInstanceUID"], info["SeriesInstanceUID"], image_id, media_types=(("application/dicom", "*"),)
            )
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                ds.save_as(tmp, write_like_original=False)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return str(path)

    def get_image(self, image_id: str, params: Any = None) -> Any:
        uri = self.get_image_uri(image_id)
        return self._to_bytes(uri) if uri else None

    def update_image_infos(self, updates: dict[str, dict[str, Any]]) -> None:
        if any(i not in self._datastore.objects for i in updates):
            self._listed_at = -float("inf")
            self.list_images()  # an instance stored in the archive since the last search
        super().update_image_infos(updates)

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        self._fresh()
        obj = self._datastore.objects.get(image_id)
        return self._without_paths(dict(obj.image.info)) if obj else {}

    # ---- nothing goes back to the archive ------------------------------------------------------------

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        raise not_allowed(_READ_ONLY)

    def remove_image(self, image_id: str) -> None:
        raise not_allowed(_READ_ONLY)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        raise not_allowed(_READ_ONLY)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise not_allowed(_READ_ONLY)
