"""The source radiograph's header as highdicom needs it: real headers carry values it cannot take.

Measured on ../shared/data/dicom: Pixel Spacing "0.000\\0.000" (copied into the SEG as a zero spacing, an error),
an empty Patient Orientation, Patient's Age "62" (AS is "062Y"; which unit is not known), and Lossy Image
Compression "01" without the ratio (highdicom raises). The copy drops what is invalid and fills the ratio from
the stored data; nothing is invented.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydicom.dataset import Dataset

_SPACINGS = ("PixelSpacing", "ImagerPixelSpacing")


def _valid_pair(value: Any) -> bool:  # any header value: what is not a pair of positive numbers is not valid
    try:
        return len(value) == 2 and all(float(v) > 0 for v in value)
    except (TypeError, ValueError):
        return False


def lossy_ratio(ds: Dataset) -> float | None:
    """The stored compression ratio of an encapsulated (compressed) source: decoded size / stored size."""
    data = ds.get("PixelData")
    if data is None or not ds.file_meta.TransferSyntaxUID.is_compressed or not len(data):
        return None
    frames = int(ds.get("NumberOfFrames") or 1)
    decoded = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
    return round(decoded * frames / len(data), 2)


def source_header(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without pixel data and without the invalid values above."""
    ratio = ds.get("LossyImageCompressionRatio") or lossy_ratio(ds)
    out = copy.deepcopy(Dataset({k: v for k, v in ds.items() if k != 0x7FE00010}))  # not the pixel data
    out.file_meta = copy.deepcopy(ds.file_meta)
    for kw in _SPACINGS:
        if kw in out and not _valid_pair(out.get(kw)):
            del out[kw]
    if "PatientOrientation" in out and not _valid_pair_text(out.PatientOrientation):
        del out.PatientOrientation
    if "PatientAge" in out and not re.fullmatch(r"\d{3}[DWMY]", str(out.PatientAge or "")):
        del out.PatientAge  # Type 3: dropped rather than copied invalid into every object
    if out.get("LossyImageCompression") == "01" and not out.get("LossyImageCompressionRatio"):
        if ratio:
            out.LossyImageCompressionRatio = ratio
        else:  # lossy once, ratio unknown: highdicom needs a ratio, and none can be stated honestly
            del out.LossyImageCompression
    return out


def _valid_pair_text(value: Any) -> bool:
    try:
        return len(value) == 2 and all(str(v).strip() for v in value)
    except TypeError:
        return False
