"""multipart/form-data: encode a request body, decode a response body (standard library only).

MONAI Label takes uploads as ``multipart/form-data`` and answers ``output=all`` with a multipart body
holding a JSON part and a file part. ``cgi`` (removed in Python 3.13) is not used: header parameters are
parsed with :mod:`email.message`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from email.message import Message


class MultipartError(ValueError):
    """A multipart body or its Content-Type header is malformed."""


@dataclass(frozen=True)
class FilePart:
    """A file to upload: its name as the server will see it, its bytes and its media type."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Part:
    """One decoded part of a multipart body."""

    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


def encode_multipart(fields: dict[str, str], files: dict[str, FilePart] | None = None) -> tuple[bytes, str]:
    """Build a ``multipart/form-data`` body.

    Args:
        fields: form fields, name -> text (sent as UTF-8).
        files: file fields, name -> :class:`FilePart`.

    Returns:
        (body, the Content-Type header value carrying the boundary).

    Example:
        >>> body, ctype = encode_multipart({"params": "{}"})
        >>> ctype.startswith("multipart/form-data; boundary=")
        True
    """
    boundary = f"anatpaste-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(_part_head(boundary, name, None, None))
        chunks.append(value.encode("utf-8"))
        chunks.append(b"\r\n")
    for name, fp in (files or {}).items():
        chunks.append(_part_head(boundary, name, fp.filename, fp.content_type))
        chunks.append(fp.data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _part_head(boundary: str, name: str, filename: str | None, content_type: str | None) -> bytes:
    disposition = f'form-data; name="{_quote(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quote(filename)}"'
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _quote(text: str) -> str:
    """Make a header parameter safe: no quotes, backslashes or line breaks."""
    return text.replace("\\", "_").replace('"', "%22").replace("\r", " ").replace("\n", " ")


def header_param(value: str, param: str, header: str = "content-type") -> str | None:
    """One parameter of a header value, e.g. ``boundary`` of a Content-Type (quotes removed)."""
    msg = Message()
    msg[header] = value
    got = msg.get_param(param, header=header)
    if got is None or isinstance(got, tuple):  # RFC 2231 tuples do not occur in our responses
        return None
    return str(got)


def decode_multipart(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart body into its parts.

    Args:
        body: the whole response body.
        content_type: the response's Content-Type header (must carry a ``boundary``).

    Returns:
        The parts in order.

    Raises:
        MultipartError: no boundary, no part, a part without a header block, or no closing delimiter
            (a truncated body).
    """
    if not content_type.lower().startswith("multipart/"):
        raise MultipartError(f"expected a multipart body, got Content-Type {content_type!r}")
    boundary = header_param(content_type, "boundary")
    if not boundary:
        raise MultipartError(f"multipart Content-Type without a boundary: {content_type!r}")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    # sections[0] is the preamble; the last must start with "--" (the closing delimiter).
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise MultipartError("multipart body is truncated or has no parts (closing boundary missing)")
    parts = []
    for raw in sections[1:-1]:
        if raw.startswith(b"\r\n"):
            raw = raw[2:]
        head, sep, data = raw.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("multipart part without a header block")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        parts.append(
            Part(
                name=header_param(disposition, "name", "content-disposition") if disposition else None,
                filename=header_param(disposition, "filename", "content-disposition") if disposition else None,
                content_type=headers.get("content-type"),
                data=data,
                headers=headers,
            )
        )
    return parts
