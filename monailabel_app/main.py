"""MONAI Label app: AnatPaste anomaly scoring, retraining on confirmed normals, a worklist.

Run (from the repository root)::

    monailabel start_server --app monailabel_app --studies monailabel_app/sample_studies --host 127.0.0.1

See ``monailabel_app/README.md`` for ``--conf`` keys and ``docs/server-api.md`` for the API.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import torch
from dicomweb_client.session_utils import create_session_from_user_pass
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.async_tasks.utils import processes as running_processes
from monailabel.utils.others.generic import md5_digest

from anatpaste.errors import ModelFileError
from anatpaste.model.shipped import DEFAULT_MODEL
from monailabel_app.lib.config import AppConfig
from monailabel_app.lib.datastore_dicomweb import AnatPasteDICOMwebDatastore
from monailabel_app.lib.datastore_local import AnatPasteLocalDatastore, checked_id
from monailabel_app.lib.errors import not_found
from monailabel_app.lib.infer_anatpaste import AnatPasteInfer
from monailabel_app.lib.limits import max_pixels
from monailabel_app.lib.model_store import LiveModel, ModelStore
from monailabel_app.lib.model_upload import ModelUpload
from monailabel_app.lib.scoring import VERSION_KEY, AnatPasteScoring
from monailabel_app.lib.strategy import MostAnomalous
from monailabel_app.lib.train_anatpaste import AnatPasteTrain
from monailabel_app.lib.worklist_fallback import unscored_study
from monailabel_app.lib.write_back import WriteBack, parse_kinds

logger = logging.getLogger(__name__)

MODEL = "anatpaste"



def public_url(url: str) -> str:
    """``url`` without a user name or password in it (``http://user:secret@host/x`` -> ``http://host/x``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))

class AnatPasteApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.config = AppConfig.from_conf(conf or {}, app_dir)
        self.store = ModelStore(self.config.model_dir)
        seed = self.config.model_path or DEFAULT_MODEL
        try:
            version = self.store.seed(seed)
            logger.info(f"AnatPaste model {version.name} from {self.store.root}")
        except ModelFileError as err:  # the server still starts: /info shows no model, /infer answers 503
            logger.error(f"no AnatPaste model published and the seed cannot be used: {err}")
        self.model = LiveModel(self.store, device=self.config.device)
        self.max_pixels = max_pixels(conf or {})
        self.write_back: WriteBack | None = None  # set by the DICOMweb datastore when --conf write_back asks
        self._write_back_kinds = parse_kinds((conf or {}).get("write_back"))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="AnatPaste",
            description="Self-supervised anomaly detection on chest radiographs (AnatPaste)",
            version="1",
        )
        torch.set_num_threads(self.config.infer_threads)  # the trainer sets its own in its subprocess
        server = sys.modules.get("monailabel.app")  # the FastAPI app; absent in MONAI Label's task subprocesses
        if server is not None:
            from monailabel_app.lib import auth_fix, datastore_routes, model_routes, routes

            auth_fix.install()
            stats = self._trainers[MODEL].stats if MODEL in self._trainers else dict
            routes.install(list(self._trainers), list(self._scoring_methods), stats)
            datastore_routes.install()
            model_routes.install(server.app, MODEL, self._model_upload())

    def _model_upload(self) -> ModelUpload:
        """``PUT /model/anatpaste``: gated on the normals a training would use now (`lib/model_upload.py`)."""
        return ModelUpload(self.store, self._trainers[MODEL], self.datastore, self.config.train)

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return self._dicomweb_datastore()
        if self._write_back_kinds:
            logger.warning("write_back is for a DICOMweb archive (--studies http://.../dicom-web); off for a folder")
        return AnatPasteLocalDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def _dicomweb_datastore(self) -> Datastore:
        """CR/DX instances of a DICOMweb archive (replaces MONAI Label's CT-series datastore, no dcmqi)."""
        url = self.studies.rstrip("/")
        user = settings.MONAI_LABEL_DATASTORE_USERNAME or settings.MONAI_LABEL_DICOMWEB_USERNAME
        password = settings.MONAI_LABEL_DATASTORE_PASSWORD or settings.MONAI_LABEL_DICOMWEB_PASSWORD
        session = create_session_from_user_pass(user, password) if user and password else None
        client = DICOMwebClientX(
            url=url,
            session=session,
            qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
        )
        cache = self.config.dicomweb_cache or Path(self.app_dir, "model", "dicomweb-cache", md5_digest(url))
        if self._write_back_kinds:  # STOW-RS into the source studies (lib/write_back.py)
            self.write_back = WriteBack(self._write_back_kinds, client.store_instances, Path(cache, "write_back.json"))
        return AnatPasteDICOMwebDatastore(client, cache, self.config.dicomweb_modalities)

    def init_infers(self) -> dict[str, InferTask]:
        return {MODEL: AnatPasteInfer(self.model, max_pixels=self.max_pixels)}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {MODEL: AnatPasteTrain(self.store, self.config.train, self.config.base_normals, self._datastore,
                                      self.config.replay_normals)}

    def init_strategies(self) -> dict[str, Strategy]:
        return {"most_anomalous": MostAnomalous(), "random": Random()}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {"anatpaste_score": AnatPasteScoring(self.model, max_pixels=self.max_pixels, write_back=self.write_back)}

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """MONAI Label's, with 404 for an unknown strategy (MONAI Label answers 500), scoring started only
        when an image lacks a score of the current model (MONAI Label starts a scoring subprocess per call),
        an unscored study while none is scored (`lib/worklist_fallback.py`), and no server path."""
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise not_found(f"unknown strategy {strategy!r}; this server has {sorted(self._strategies)}")
        res = self._strategies[strategy](request, self.datastore())
        if self._auto_update_scoring and not running_processes("scoring") and self._unscored():
            self.async_scoring(None)
        if (not res or not res.get("id")) and strategy == "most_anomalous":
            res = unscored_study(self.datastore(), self.model.version())  # while scoring has not got there
        if not res or not res.get("id"):
            return {}
        # No "path" (MONAI Label adds the server's file path): clients fetch a study by its id; for an
        # archive, looking the path up also downloaded the instance.
        return res

    def _unscored(self) -> bool:
        version = self.model.version()
        ds = self.datastore()
        return version is not None and any(ds.get_image_info(i).get(VERSION_KEY) != version for i in ds.list_images())

    def info(self) -> dict[str, Any]:
        meta = super().info()
        if self.studies.startswith(("http://", "https://")):  # where clients read results back (Slicer's Archive)
            meta["archive"] = {"dicomweb": public_url(self.studies.rstrip("/"))}
        if self.write_back is not None:
            meta["write_back"] = self.write_back.status()
        return meta

    def after_review(self, image_id: str) -> None:
        """A reviewer's verdict into the archive as its own SR (with write_back sr; never raises)."""
        if self.write_back is not None:
            self.write_back.after_review(self.datastore(), image_id)

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, with 404 for an unknown model or image and ids never read as paths."""
        model = request.get("model")
        if model not in self._infers:
            raise not_found(f"unknown model {model!r}; this server has {sorted(self._infers)}")
        image = request.get("image")
        if isinstance(image, str) and not (os.path.isabs(image) and os.path.isfile(image)):
            # a datastore id (uploads arrive as absolute paths of files MONAI Label wrote; the infer route
            # refuses absolute paths from clients)
            ds = datastore or self.datastore()
            uri = ds.get_image_uri(checked_id(image))
            if not uri:
                raise not_found(f"image {image!r} is not in the datastore")
            request = {**request, "image": uri, "image_id": image}
        return super().infer(request, datastore)
