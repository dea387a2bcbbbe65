"""Uploaded files on the server: written to a temporary file that is removed whatever the answer.

MONAI Label writes each upload to ``NamedTemporaryFile(suffix=<every suffix of the client's file name>)`` and
removes it in a background task, which FastAPI runs only after a successful answer: every 4xx/5xx upload
left its file in ``TMPDIR``, and a name with 200 suffixes failed with ``Errno 36`` (file name too long).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fastapi import HTTPException

RADIOGRAPH_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
CHUNK = 1 << 20


def upload_suffix(filename: str | None, allowed: tuple[str, ...] = RADIOGRAPH_SUFFIXES) -> str:
    """The last suffix of a client's file name, lower case, if it is one of ``allowed``; else ""."""
    suffix = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    return suffix if suffix in allowed else ""


def upload_stem(filename: str | None) -> str:
    """The client's file name without folders and without its last suffix (a default image id)."""
    return os.path.splitext(os.path.basename(filename or ""))[0]


@contextlib.contextmanager
def saved_upload(
    source: BinaryIO, suffix: str = "", folder: str | os.PathLike | None = None, max_bytes: int | None = None
) -> Iterator[Path]:
    """Copy ``source`` into a new temporary file (in ``folder``, default ``TMPDIR``); remove it on exit.

    Raises:
        HTTPException: 413 when ``source`` holds more than ``max_bytes``.
    """
    fd, name = tempfile.mkstemp(prefix="anatpaste-upload-", suffix=suffix, dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if max_bytes is None:
                shutil.copyfileobj(source, out, CHUNK)
            else:
                written = 0
                while block := source.read(CHUNK):
                    written += len(block)
                    if written > max_bytes:
                        raise HTTPException(413, f"the upload is larger than the limit of {max_bytes} bytes")
                    out.write(block)
        yield path
    finally:
        path.unlink(missing_ok=True)
