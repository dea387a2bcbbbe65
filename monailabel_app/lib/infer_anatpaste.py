"""MONAI Label infer task: score one radiograph with the published AnatPaste model.

Answer (docs/server-api.md): the JSON below (with the input gate's ``flags``, ``fixed`` and ``warnings``,
docs/input-gate.md), and unless the request says ``maps: false`` an NRRD with the
heatmap and the lung mask in the radiograph's own pixel grid.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask

from anatpaste.errors import ModelFileError, RadiographError
from anatpaste.gate.familiarity import score_gated
from anatpaste.io import read_radiograph

from .errors import bad_request, unavailable, unprocessable
from .limits import DEFAULT_MAX_PIXELS
from .model_store import LiveModel, ModelStoreError
from .result_image import write_maps_nrrd

logger = logging.getLogger(__name__)


def as_bool(value: Any) -> bool:
    """Request flags arrive as JSON booleans or as strings ("false", "0")."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


class AnatPasteInfer(InferTask):
    """Anomaly score, label at the model's threshold, heatmap and lung mask for one radiograph."""

    def __init__(self, model: LiveModel, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(
            type="anomaly",
            labels=["heatmap", "lung_mask"],
            dimension=2,
            description="AnatPaste anomaly score, label at the model threshold, heatmap and lung mask",
        )
        self.model = model
        self.max_pixels = max_pixels  # bounds one request's memory (:mod:`.limits`)

    def is_valid(self) -> bool:
        return self.model.version() is not None

    def get_path(self, validate: bool = True) -> str | None:
        current = self.model.store.current()
        return str(current.path) if current else None

    def info(self) -> dict[str, Any]:
        meta = super().info()
        try:
            det = self.model.get()
        except (ModelStoreError, ModelFileError) as err:
            meta["error"] = str(err)
            return meta
        meta.update(
            version=det.version,
            threshold=det.threshold,
            image_size=det.image_size,
            heatmap_display_max=det.heat_display_max,
        )
        return meta

    def __call__(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise bad_request("the anatpaste model takes an image file (a datastore id or an upload)")
        image_id = request.get("image_id")
        maps = as_bool(request.get("maps", True))
        try:
            det = self.model.get()
        except (ModelStoreError, ModelFileError) as err:
            raise unavailable(f"no usable model: {err}") from err

        t0 = time.perf_counter()
        try:
            rg = read_radiograph(path, max_pixels=self.max_pixels)
            t1 = time.perf_counter()
            # the content gate (docs/input-gate.md): a turned film is refused (422), an inverted one re-inverted
            res, gate = score_gated(det, rg.pixels, path, maps=maps)
        except RadiographError as err:
            raise unprocessable(err, path, shown=image_id or "uploaded image") from err
        t2 = time.perf_counter()
        result = {
            "image": image_id,
            **res.to_json(),
            "flags": gate.flags,
            "fixed": gate.fixed,
            "warnings": gate.warnings,
            "heatmap_display_max": det.heat_display_max,
            "heatmap_coloured": res.heatmap_coloured,  # colour on flagged films only (ScoreResult.heatmap_coloured)
            "spacing": list(rg.spacing) if rg.spacing else None,
            "shape": list(rg.pixels.shape),
            "modality": rg.modality,
        }
        out = None
        if maps:
            fd, out = tempfile.mkstemp(prefix="anatpaste-", suffix=".nrrd")
            os.close(fd)
            fields = {"model_version": det.version, "heatmap_display_max": f"{det.heat_display_max:.6g}"}
            write_maps_nrrd(out, res.heatmap, res.lung_mask, rg.spacing, fields)
        t3 = time.perf_counter()
        result["latencies"] = {
            "read": round(t1 - t0, 4),
            "score": round(t2 - t1, 4),  # with the content gate
            "encode": round(t3 - t2, 4),
            "total": round(t3 - t0, 4),
        }
        logger.info(f"{image_id or 'upload'}: score {res.score:.4f} ({res.label}); latencies {result['latencies']}")
        return out, result
