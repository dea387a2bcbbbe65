"""Read a single-frame grey DICOM radiograph with pydicom (Pillow, else gdcm, decodes JPEG / JPEG 2000)."""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi, convert_color_space
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

from anatpaste.errors import (
    ImageTooLargeError,
    NoPixelDataError,
    RadiographError,
    UnreadableImageError,
    UnsupportedImageError,
)
from anatpaste.gate.dicom_header import check_dicom_header
from anatpaste.image import as_unit_image
from anatpaste.io.grey import colour_to_grey
from anatpaste.io.radiograph import Radiograph

_UNDEFINED_LENGTH = 0xFFFFFFFF
_PILLOW_SYNTAXES = (JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000Lossless, JPEG2000)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Non-identifying header fields copied into Radiograph.meta (never names, IDs, dates of birth).
_META_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "Rows",
    "Columns",
    "ViewPosition",
    "BodyPartExamined",
)


def read_dicom(path: str | os.PathLike, *, max_pixels: int, force: bool = False) -> Radiograph:
    """Read a DICOM file and map it to display values, higher = brighter.

    The grey pipeline is the standard one: stored values (masked to Bits Stored, sign-extended)
    -> Modality LUT (Rescale Slope/Intercept or LUT sequence) -> VOI (first VOI LUT, else the first
    Window Center/Width, else the full range) -> MONOCHROME1 inverted.

    Args:
        path: the DICOM file.
        max_pixels: largest accepted Rows x Columns, checked before decoding.
        force: read a file without the "DICM" preamble; the result must still look like an image
            object or the file is reported unreadable.

    Returns:
        The radiograph with spacing (PixelSpacing, else ImagerPixelSpacing) and Modality.

    Raises:
        UnreadableImageError: not DICOM, truncated, or pixel data that cannot be decoded.
        NoPixelDataError: no pixel data element.
        NotAChestRadiographError: the DICOM header says it is no frontal chest film (a CT, a lateral
            view, a knee, ...): see :mod:`anatpaste.gate.dicom_header`.
        UnsupportedImageError: several frames, more than one sample that is not grey RGB/YBR.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        ImageTooSmallError: a side shorter than the image contract allows.
    """
    try:
        ds = pydicom.dcmread(os.fspath(path), force=force)
    except Exception as exc:  # InvalidDicomError, EOFError, struct.error, ... from a bad file
        raise UnreadableImageError(f"{path}: not a readable DICOM file: {exc}") from exc
    try:
        return _radiograph(ds, os.fspath(path), max_pixels=max_pixels, forced=force)
    except RadiographError:
        raise
    except Exception as exc:  # corrupt values and decoders (numpy, gdcm, pillow) raise anything at all
        raise UnreadableImageError(f"{path}: cannot decode DICOM data (corrupt file?): {exc}") from exc


def _radiograph(ds: Dataset, path: str, *, max_pixels: int, forced: bool) -> Radiograph:
    """Check what the header promises, then decode; see :func:`read_dicom`."""
    if forced and not _looks_like_image_object(ds):
        raise UnreadableImageError(f"{path}: not a DICOM file (no DICOM header found)")
    check_dicom_header(ds, path)  # before decoding: a CT or a lateral is refused by its header alone
    if not any(kw in ds for kw in _PIXEL_KEYWORDS):
        # pydicom 2.x stops quietly at the end of a cut file: tell a truncated image from a header-only one.
        if _parse_stopped_early(ds, os.path.getsize(path)):
            raise UnreadableImageError(f"{path}: truncated DICOM file (the data ends inside an element)")
        raise NoPixelDataError(
            f"{path}: DICOM object has no pixel data (SOP class {ds.get('SOPClassUID')}; "
            "a header-only object, or a file cut before the pixel data)"
        )

    n_frames = _int(ds.get("NumberOfFrames"), 1)
    if n_frames > 1:
        raise UnsupportedImageError(f"{path}: DICOM has {n_frames} frames; expected a single 2-D radiograph")
    samples = _int(ds.get("SamplesPerPixel"), 1)
    if samples not in (1, 3):
        raise UnsupportedImageError(f"{path}: {samples} samples per pixel; expected 1 (grey) or 3")
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    if rows * cols > max_pixels:
        raise ImageTooLargeError(f"{path}: {rows}x{cols} = {rows * cols} pixels exceeds the limit of {max_pixels}")

    _check_pixel_module(ds, path)

    meta = _meta(ds)  # before decoding: a handler may rewrite PhotometricInterpretation to RGB
    photometric = meta.get("PhotometricInterpretation", "MONOCHROME2").upper()
    arr = _decode(ds)
    if samples == 3:
        grey = _colour_to_grey(arr, ds, path)
    elif arr.ndim != 2:
        raise UnsupportedImageError(f"{path}: decoded pixel array has shape {arr.shape}, not 2-D")
    else:
        grey, meta["voi"] = _grey_pipeline(arr, ds)

    unit = as_unit_image(grey)
    if samples == 1 and photometric == "MONOCHROME1":  # the lowest value is white
        np.subtract(np.float32(1.0), unit, out=unit)
    modality = str(ds.get("Modality") or "").strip() or None
    return Radiograph(pixels=unit, spacing=_spacing(ds), source=path, modality=modality, meta=meta)


def _check_pixel_module(ds: Dataset, path: str) -> None:
    """Refuse impossible Image Pixel values before any decoder sees them.

    gdcm can abort the whole process (an uncaught C++ exception) on e.g. Bits Stored = 4360.
    """
    allocated = _int(ds.get("BitsAllocated"), 0)
    stored = _int(ds.get("BitsStored"), allocated)
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    problems = []
    if "PixelData" in ds and allocated not in (1, 8, 16, 32):
        problems.append(f"Bits Allocated {ds.get('BitsAllocated')}")
    if not 1 <= stored <= max(allocated, 1):
        problems.append(f"Bits Stored {ds.get('BitsStored')} (Bits Allocated {ds.get('BitsAllocated')})")
    if _int(ds.get("PixelRepresentation"), 0) not in (0, 1):
        problems.append(f"Pixel Representation {ds.get('PixelRepresentation')}")
    if rows < 1 or cols < 1:
        problems.append(f"size {rows}x{cols}")
    if problems:
        raise UnreadableImageError(f"{path}: corrupt DICOM header: invalid {', '.join(problems)}")


def _decode(ds: Dataset) -> np.ndarray:
    """Decode the pixel data, preferring Pillow over gdcm for JPEG and JPEG 2000.

    Pillow raises Python exceptions on corrupt streams where gdcm may abort the process, and it is
    faster on baseline JPEG; gdcm stays the fallback for what pydicom's Pillow handler cannot do.
    """
    _ensure_transfer_syntax(ds)
    if ds.file_meta.TransferSyntaxUID in _PILLOW_SYNTAXES:
        # NotImplementedError (e.g. 12-bit JPEG) is no decoding failure: let gdcm try.
        with contextlib.suppress(NotImplementedError):
            ds.convert_pixel_data("pillow")
    return ds.pixel_array


def _grey_pipeline(arr: np.ndarray, ds: Dataset) -> tuple[np.ndarray, str]:
    """Apply stored-bit masking, the Modality LUT and the VOI; return the array and the VOI used.

    Linear steps run in float32 here because pydicom's float64 versions take 2-3x longer
    on a 2k x 2k image; LUT sequences go through pydicom.
    """
    arr = _stored_values(arr, ds)
    if ds.get("ModalityLUTSequence"):
        arr = apply_modality_lut(arr, ds)
    else:
        slope = _float(ds.get("RescaleSlope"), 1.0)
        intercept = _float(ds.get("RescaleIntercept"), 0.0)
        if slope == 0.0:  # a header defect that would blank the image: ignore the rescale
            slope, intercept = 1.0, 0.0
        if (slope, intercept) != (1.0, 0.0):
            arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)

    if _has_voi_lut(ds):
        if not np.issubdtype(arr.dtype, np.integer):  # the LUT is indexed by integer input values
            arr = np.rint(arr).astype(np.int64)
        return apply_voi(arr, ds, 0), "lut"
    window = _window(ds)
    if window is None:
        return arr, "none"
    center, width, function = window
    out = arr.astype(np.float32)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (out - np.float32(center)) / np.float32(width))), "window"
    if function == "LINEAR_EXACT":
        lo, span = center - width / 2, width
    else:  # LINEAR, PS3.3 C.11.2.1.2.1
        lo, span = center - 0.5 - (width - 1) / 2, width - 1
    if span <= 0:  # width 1: a threshold
        return (out > np.float32(lo)).astype(np.float32), "window"
    out -= np.float32(lo)
    out *= np.float32(1.0 / span)
    np.clip(out, 0.0, 1.0, out=out)
    return out, "window"


def _stored_values(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Keep only the Bits Stored bits and sign-extend signed data.

    pydicom 2.x returns the raw Bits Allocated container: bits above High Bit (overlays, garbage)
    survive, and a signed 12-bit value stored without sign extension reads as a large positive one.
    """
    if not np.issubdtype(arr.dtype, np.integer):
        return arr
    container = arr.dtype.itemsize * 8
    stored = _int(ds.get("BitsStored"), container)
    if not 0 < stored < container:
        return arr
    shift = container - stored
    if not arr.flags.writeable:  # some decoders hand back a view of an immutable buffer
        arr = arr.copy()
    unsigned = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    if _int(ds.get("PixelRepresentation"), 0) == 1:
        # Shift the sign bit to the top, then an arithmetic right shift copies it down.
        unsigned <<= shift
        signed = unsigned.view(np.dtype(f"i{arr.dtype.itemsize}"))
        signed >>= shift
        return signed
    unsigned &= (1 << stored) - 1
    return unsigned


def _colour_to_grey(arr: np.ndarray, ds: Dataset, path: str) -> np.ndarray:
    """A 3-sample DICOM is accepted only when it is grey; return its grey values."""
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise UnsupportedImageError(f"{path}: decoded colour array has shape {arr.shape}, not (H, W, 3)")
    photometric = str(ds.get("PhotometricInterpretation", "RGB")).upper()
    if photometric in ("YBR_FULL", "YBR_FULL_422"):  # not converted by the decoder
        arr = convert_color_space(arr, photometric, "RGB")
    bits = _int(ds.get("BitsStored"), arr.dtype.itemsize * 8)
    return colour_to_grey(arr, 2**bits - 1, path)


def _has_voi_lut(ds: Dataset) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def _window(ds: Dataset) -> tuple[float, float, str] | None:
    """First Window Center/Width pair and VOI LUT Function, or None if absent or unusable."""
    center = _float(_first(ds.get("WindowCenter")), math.nan)
    width = _float(_first(ds.get("WindowWidth")), math.nan)
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    if not (math.isfinite(center) and math.isfinite(width)):
        return None
    min_width_ok = width >= 1 if function == "LINEAR" else width > 0  # the standard's lower bounds
    if not min_width_ok:
        return None
    return center, width, function


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, col) mm per pixel from PixelSpacing, else ImagerPixelSpacing; None when neither is valid."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(keyword)
            values = [float(v) for v in value] if value is not None else []
        except (TypeError, ValueError):  # unparsable DS strings
            continue
        if len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values):
            return values[0], values[1]
    return None


def _meta(ds: Dataset) -> dict[str, str]:
    meta = {"format": "dicom"}
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax:
        meta["TransferSyntaxUID"] = str(syntax)
    for keyword in _META_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # a malformed value must not stop the read; it is only metadata
            continue
        text = str(value).strip() if value is not None else ""
        if text:
            meta[keyword] = text
    return meta


def _looks_like_image_object(ds: Dataset) -> bool:
    """After a forced read, demand elements a real image object has; random bytes rarely parse to these."""
    has_size = "Rows" in ds and "Columns" in ds
    return "SOPClassUID" in ds or has_size or any(kw in ds for kw in _PIXEL_KEYWORDS)


def _parse_stopped_early(ds: Dataset, file_size: int) -> bool:
    """True when the last top-level element read does not end exactly at the end of the file.

    A cut inside a value leaves it shorter than its declared length; a cut inside an element header
    or inside an undefined-length value (encapsulated pixel data) makes pydicom drop that element,
    so the last one kept ends before the file does. Only unconverted (raw) elements carry lengths.
    A cut inside the file meta header leaves no data set elements at all.
    """
    if len(ds) == 0:  # nothing after the file meta header
        return True
    last_start, last_end = -1, None
    for elem in ds.values():  # values() does not convert raw elements
        if isinstance(elem, RawDataElement) and elem.value_tell > last_start:
            last_start = elem.value_tell
            # An undefined-length element that was kept ended at its delimiter: complete.
            last_end = None if elem.length == _UNDEFINED_LENGTH else elem.value_tell + elem.length
    return last_end is not None and last_end != file_size


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a file meta header (no preamble) lack the syntax the decoders dispatch on."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    if getattr(ds.file_meta, "TransferSyntaxUID", None):
        return
    if ds.is_implicit_VR:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif ds.is_little_endian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _first(value: Any) -> Any:
    """First item of a multi-valued element (several windows are alternatives; take the first)."""
    if value is not None and not isinstance(value, (str, bytes)) and hasattr(value, "__getitem__"):
        return value[0] if len(value) else None
    return value


def _float(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
