"""The infer task's image result: heatmap and lung mask as one NRRD in the radiograph's own pixel grid."""

from __future__ import annotations

import os

import nrrd
import numpy as np

COMPONENTS = ("heatmap", "lung_mask")


def maps_header(shape: tuple[int, int], spacing: tuple[float, float] | None, fields: dict[str, str]) -> dict:
    """NRRD header for a ``2 W H 1`` float32 vector image (docs/server-api.md, ``output=image``).

    Axis order is NRRD's (fastest first): component, column, row, slice. Spacing is the radiograph's
    (row, col) in mm, or 1 mm when unknown; origin 0; identity directions.
    """
    h, w = shape
    row_mm, col_mm = spacing if spacing else (1.0, 1.0)
    header = {
        "type": "float",
        "dimension": 4,
        "space": "left-posterior-superior",
        "sizes": np.array([len(COMPONENTS), w, h, 1]),
        "space directions": np.array(
            [[np.nan] * 3, [col_mm, 0.0, 0.0], [0.0, row_mm, 0.0], [0.0, 0.0, 1.0]], dtype=float
        ),
        "kinds": ["vector", "domain", "domain", "domain"],
        "space origin": np.zeros(3),
        "endian": "little",
        "encoding": "raw",
    }
    header.update({f"anatpaste_{k}": str(v) for k, v in fields.items()})
    header["anatpaste_components"] = ",".join(COMPONENTS)
    return header


def write_maps_nrrd(
    path: str | os.PathLike,
    heatmap: np.ndarray,
    lung_mask: np.ndarray,
    spacing: tuple[float, float] | None,
    fields: dict[str, str] | None = None,
) -> None:
    """Write component 0 = heatmap (float32, Mahalanobis distance), component 1 = lung mask (0/1).

    Args:
        path: the ``.nrrd`` file to write.
        heatmap: float (H, W), row 0 = top, as the core returns it.
        lung_mask: bool (H, W), same grid.
        spacing: (row, col) mm or None.
        fields: extra ``key:=value`` header entries (prefixed ``anatpaste_``), e.g. the model version.

    Raises:
        ValueError: the two maps do not share one 2-D shape.
    """
    if heatmap.ndim != 2 or heatmap.shape != lung_mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and lung mask {lung_mask.shape} must be one (H, W) shape")
    h, w = heatmap.shape
    data = np.empty((1, h, w, len(COMPONENTS)), dtype="<f4")  # C order: slice, row, column, component
    data[0, :, :, 0] = heatmap
    data[0, :, :, 1] = lung_mask
    nrrd.write(str(path), data, maps_header((h, w), spacing, fields or {}), index_order="C")


def read_maps_nrrd(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Inverse of :func:`write_maps_nrrd`: (heatmap float32 (H, W), lung mask bool (H, W), header)."""
    data, header = nrrd.read(str(path), index_order="C")
    return data[0, :, :, 0].astype(np.float32), data[0, :, :, 1] > 0.5, header
