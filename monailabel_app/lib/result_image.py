"""The infer task's image result: heatmap and lung mask as one NRRD in the radiograph's own pixel grid.

The data is gzip-encoded (NRRD ``encoding: gzip``, lossless; 3D Slicer, SimpleITK/ITK and pynrrd read it).
The heatmap is zero outside a dilated lung window (39 % of this film's pixels are zero), and the zeros and
the 0/1 mask compress to almost nothing. Measured on the 1955x1841 CR film ``RG1_UNCR.dcm`` with the
shipped model, median of 5, 2-core CPU shared with a training job (load average about 5, so the times
are high): bench/maps_wire_size.py, bench/results/maps_wire_size.json.

==============  ==========  ============  ====================  ===================  ============
encoding        NRRD bytes  server write  Slicer: email decode  Slicer: SimpleITK    pynrrd read
==============  ==========  ============  ====================  ===================  ============
raw (before)    28,793,665  48 ms         660 ms                99 ms                22 ms
gzip level 1    7,647,331   358 ms        244 ms                126 ms               140 ms
gzip level 6    7,307,838   1,561 ms      243 ms                134 ms               143 ms
==============  ==========  ============  ====================  ===================  ============

So 3.8x fewer bytes; the server spends about 0.3 s more and the Slicer side about 0.4 s less on one answer,
before the network (28.8 MB is 2.3 s on a 100 Mbit/s link, 7.6 MB is 0.6 s). Level 1 because level 6
takes 4x the time for 4 % fewer bytes.
"""

from __future__ import annotations

import os

import nrrd
import numpy as np

COMPONENTS = ("heatmap", "lung_mask")
GZIP_LEVEL = 1  # see the module docstring: the fastest level already gives most of the reduction


def maps_header(shape: tuple[int, int], spacing: tuple[float, float] | None, fields: dict[str, str]) -> dict:
    """NRRD header for a gzip-encoded ``2 W H 1`` float32 vector image (docs/server-api.md, ``output=image``).

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
        "encoding": "gzip",
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
    header = maps_header((h, w), spacing, fields or {})
    nrrd.write(str(path), data, header, index_order="C", compression_level=GZIP_LEVEL)


def read_maps_nrrd(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Inverse of :func:`write_maps_nrrd`: (heatmap float32 (H, W), lung mask bool (H, W), header)."""
    data, header = nrrd.read(str(path), index_order="C")
    return data[0, :, :, 0].astype(np.float32), data[0, :, :, 1] > 0.5, header
