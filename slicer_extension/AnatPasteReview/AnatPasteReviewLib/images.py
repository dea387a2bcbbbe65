"""Bytes <-> arrays, numpy only: the server's maps NRRD in, a 16-bit grey PNG out.

3D Slicer's Python has numpy but not pynrrd or Pillow, so both formats are handled here. The NRRD
reader covers what the server writes (docs/server-api.md): attached data, raw or gzip encoding, any
endianness, the usual scalar types; anything else is refused by name.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass

import numpy as np

_NRRD_TYPES = {
    "float": "f4",
    "double": "f8",
    "uchar": "u1",
    "unsigned char": "u1",
    "uint8": "u1",
    "uint8_t": "u1",
    "signed char": "i1",
    "int8": "i1",
    "int8_t": "i1",
    "short": "i2",
    "short int": "i2",
    "signed short": "i2",
    "int16": "i2",
    "int16_t": "i2",
    "ushort": "u2",
    "unsigned short": "u2",
    "unsigned short int": "u2",
    "uint16": "u2",
    "uint16_t": "u2",
    "int": "i4",
    "signed int": "i4",
    "int32": "i4",
    "int32_t": "i4",
    "uint": "u4",
    "unsigned int": "u4",
    "uint32": "u4",
    "uint32_t": "u4",
    "longlong": "i8",
    "long long": "i8",
    "int64": "i8",
    "int64_t": "i8",
    "ulonglong": "u8",
    "unsigned long long": "u8",
    "uint64": "u8",
    "uint64_t": "u8",
}


class ImageDecodeError(ValueError):
    """Bytes that are not a usable image of the expected kind."""


@dataclass(frozen=True)
class ResultMaps:
    """The server's result image split into its two maps, row 0 = top of the radiograph."""

    heatmap: np.ndarray  # float32 (H, W), Mahalanobis distance
    lung_mask: np.ndarray  # bool (H, W)
    spacing: tuple[float, float] | None  # (row, col) mm from the NRRD, for information only


def read_nrrd(data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    """Decode an NRRD file held in memory.

    Returns:
        (array in C order, i.e. NRRD's axes reversed: sizes ``2 W H 1`` -> shape ``(1, H, W, 2)``;
        header fields as text, lower-case keys).

    Raises:
        ImageDecodeError: not NRRD, detached data, an unsupported type or encoding, or too few bytes.
    """
    if not data.startswith(b"NRRD000"):
        raise ImageDecodeError("not an NRRD file (no NRRD000x magic)")
    # The header ends at the first blank line (LF or CRLF line ends); raw data may contain either.
    ends = [(i, len(sep)) for sep in (b"\n\n", b"\r\n\r\n") if (i := data.find(sep)) >= 0]
    if not ends:
        raise ImageDecodeError("NRRD header has no end (blank line missing)")
    end, skip = min(ends)
    head, payload = data[:end], data[end + skip :]
    header: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines()[1:]:
        if not line or line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
        elif ": " in line:
            key, value = line.split(": ", 1)
        else:
            raise ImageDecodeError(f"malformed NRRD header line {line!r}")
        header[key.strip().lower()] = value.strip()
    if "data file" in header or "datafile" in header:
        raise ImageDecodeError("NRRD with detached data is not supported")
    try:
        sizes = [int(s) for s in header["sizes"].split()]
        dtype = np.dtype(_NRRD_TYPES[header["type"].lower()])
    except KeyError as exc:
        raise ImageDecodeError(f"NRRD header lacks or has an unknown {exc}") from exc
    except ValueError as exc:
        raise ImageDecodeError(f"NRRD sizes are not integers: {header.get('sizes')!r}") from exc
    if int(header.get("dimension", len(sizes))) != len(sizes) or any(s <= 0 for s in sizes):
        raise ImageDecodeError(f"NRRD dimension/sizes disagree: {header.get('dimension')} vs {sizes}")
    encoding = header.get("encoding", "raw").lower()
    if encoding in ("gzip", "gz"):
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImageDecodeError(f"NRRD gzip data is corrupt: {exc}") from exc
    elif encoding != "raw":
        raise ImageDecodeError(f"NRRD encoding {encoding!r} is not supported (raw or gzip)")
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if header.get("endian", "little").lower() == "big" else "<")
    count = int(np.prod(sizes))
    if len(payload) < count * dtype.itemsize:
        raise ImageDecodeError(f"NRRD data is truncated: {len(payload)} bytes for {count} x {dtype.itemsize}")
    array = np.frombuffer(payload, dtype=dtype, count=count).reshape(sizes[::-1])
    return array.astype(dtype.newbyteorder("="), copy=True), header


def read_result_maps(data: bytes, shape: tuple[int, int] | None = None) -> ResultMaps:
    """Split the server's ``2 W H 1`` maps NRRD into heatmap and lung mask.

    Args:
        data: the NRRD bytes (``output=image`` or the file part of ``output=all``).
        shape: (H, W) the score JSON announced; checked when given.

    Raises:
        ImageDecodeError: not the documented layout, or not the announced shape.
    """
    array, header = read_nrrd(data)
    if array.ndim == 4 and array.shape[0] == 1 and array.shape[3] == 2:
        maps = array[0]
    elif array.ndim == 3 and array.shape[2] == 2:  # a writer that dropped the single slice
        maps = array
    else:
        raise ImageDecodeError(f"expected NRRD sizes '2 W H 1', got {header.get('sizes')!r}")
    heatmap = np.ascontiguousarray(maps[:, :, 0], dtype=np.float32)
    if shape is not None and tuple(heatmap.shape) != tuple(shape):
        raise ImageDecodeError(f"maps are {heatmap.shape[0]}x{heatmap.shape[1]}, the score says {shape[0]}x{shape[1]}")
    if not np.all(np.isfinite(heatmap)):
        raise ImageDecodeError("the heatmap holds NaN or infinite values")
    return ResultMaps(heatmap, maps[:, :, 1] > 0.5, _nrrd_spacing(header))


def _nrrd_spacing(header: dict[str, str]) -> tuple[float, float] | None:
    """(row, col) mm from ``space directions`` (axes: component, column, row, ...)."""
    text = header.get("space directions")
    if not text:
        return None
    vectors = []
    for token in text.replace(") (", ")|(").split():
        for item in token.split("|"):
            if item.lower() == "none":
                vectors.append(None)
            else:
                try:
                    vectors.append([float(v) for v in item.strip("()").split(",")])
                except ValueError:
                    return None
    spatial = [v for v in vectors if v is not None]
    if len(spatial) < 2:
        return None
    col, row = (float(np.linalg.norm(v)) for v in spatial[:2])
    return (row, col) if row > 0 and col > 0 else None


def encode_png16(pixels: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of a 2-D array, min-max scaled, row 0 at the top.

    Used to send a radiograph that exists only in the scene (no file on disk) to the server.

    Raises:
        ValueError: not 2-D, empty, or not finite.
    """
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("image holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    scaled = np.zeros(a.shape) if hi <= lo else (a - lo) / (hi - lo)
    grey = np.round(scaled * 65535).astype(">u2")
    h, w = grey.shape
    raw = b"".join(b"\x00" + grey[r].tobytes() for r in range(h))  # filter type 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)  # 16-bit, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
