"""One entry point for every supported file: check the path, sniff the format, dispatch to a reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from anatpaste.errors import ImageTooLargeError, UnreadableImageError, UnsupportedImageError
from anatpaste.io.radiograph import Radiograph
from anatpaste.io.read_dicom import read_dicom
from anatpaste.io.read_raster import read_raster

SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
_SUPPORTED_TEXT = "PNG, JPEG or DICOM (.png, .jpg, .jpeg, .dcm, .dicom, or any file with the DICM preamble)"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Formats we recognise only to refuse them by name instead of calling them unknown.
_OTHER_IMAGE_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
)


def read_radiograph(
    path: str | os.PathLike, *, max_pixels: int = 60_000_000, max_bytes: int = 512 * 2**20
) -> Radiograph:
    """Read a chest radiograph from a PNG, JPEG or DICOM file.

    The format is decided by the file's content, not its name: a DICOM file without a suffix is
    read when it has the "DICM" preamble, and a ``.dcm`` file without the preamble is read when it
    parses as a DICOM image object.

    Args:
        path: the file to read.
        max_pixels: largest accepted width x height, checked from the header before decoding.
        max_bytes: largest accepted file size.

    Returns:
        The radiograph; ``pixels`` is float32 (H, W) in [0, 1] with higher = brighter.

    Raises:
        UnreadableImageError: missing path, a directory, an empty, truncated, corrupt or unknown file.
        NoPixelDataError: a DICOM object without pixel data.
        NotAChestRadiographError: the DICOM header says it is no frontal chest film (a CT, a lateral
            view, a knee, ...): see :mod:`anatpaste.gate.dicom_header`.
        UnsupportedImageError: a colour picture, several frames, or an image format not supported.
        ImageTooLargeError: more than ``max_pixels`` pixels or ``max_bytes`` bytes.
        ImageTooSmallError: a side shorter than the image contract allows.
    """
    size = _check_file(path)
    if size > max_bytes:
        raise ImageTooLargeError(f"{path}: file is {size} bytes, more than the limit of {max_bytes}")
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise UnreadableImageError(f"{path}: cannot open file: {exc.strerror or exc}") from exc

    if head[128:132] == b"DICM":
        return read_dicom(path, max_pixels=max_pixels)
    if head.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        return read_raster(path, max_pixels=max_pixels)
    for magic, name in _OTHER_IMAGE_MAGIC:
        if head.startswith(magic):
            raise UnsupportedImageError(f"{path}: {name} files are not supported; use {_SUPPORTED_TEXT}")
    # DICOM without preamble/file meta: a .dcm name, or a first tag of group 0002/0008 (little endian).
    if Path(path).suffix.lower() in (".dcm", ".dicom") or head[:2] in (b"\x02\x00", b"\x08\x00"):
        return read_dicom(path, max_pixels=max_pixels, force=True)
    raise UnreadableImageError(f"{path}: unknown file format; supported formats are {_SUPPORTED_TEXT}")


def _check_file(path: str | os.PathLike) -> int:
    """Return the file size, or raise a typed error for a missing path, a directory or an empty file."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise UnreadableImageError(f"{path}: no such file") from exc
    except (OSError, ValueError) as exc:  # permission denied, a NUL in the name, ...
        raise UnreadableImageError(f"{path}: cannot access file: {exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableImageError(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImageError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise UnreadableImageError(f"{path}: empty file")
    return st.st_size
