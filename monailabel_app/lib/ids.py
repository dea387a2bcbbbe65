"""Image ids arriving from clients: names inside a datastore, never paths."""

from __future__ import annotations

MAX_ID_LENGTH = 255


class BadImageIdError(ValueError):
    """An image id that could address a file outside the datastore (a path, ``..``, a control character)."""


def check_image_id(image_id: object) -> str:
    """Return ``image_id`` if it is a plain datastore id, else raise :class:`BadImageIdError`.

    A local datastore id is a file name without its extension; a DICOMweb id is a series UID. Neither holds a
    path separator, so refusing separators, ``.``/``..``, NUL and other control characters is enough to make
    ``os.path.join(datastore, id + ext)`` stay inside the datastore.

    Example:
        >>> check_image_id("IM-0001-0001")
        'IM-0001-0001'
        >>> is_image_id("../etc/passwd"), is_image_id("/etc/passwd"), is_image_id("1.2.840.113619.2.1")
        (False, False, True)
    """
    if not isinstance(image_id, str) or not image_id:
        raise BadImageIdError(f"image id must be a non-empty string, got {image_id!r}")
    if len(image_id) > MAX_ID_LENGTH:
        raise BadImageIdError(f"image id is {len(image_id)} characters long; the limit is {MAX_ID_LENGTH}")
    if "/" in image_id or "\\" in image_id:
        raise BadImageIdError(f"image id {image_id!r} is not a datastore id: it contains a path separator")
    if image_id in (".", ".."):
        raise BadImageIdError(f"image id {image_id!r} is not a datastore id")
    if any(ord(c) < 32 or ord(c) == 127 for c in image_id):
        raise BadImageIdError(f"image id {image_id!r} contains a control character")
    return image_id


def is_image_id(image_id: object) -> bool:
    """True when :func:`check_image_id` accepts ``image_id``."""
    try:
        check_image_id(image_id)
    except BadImageIdError:
        return False
    return True
