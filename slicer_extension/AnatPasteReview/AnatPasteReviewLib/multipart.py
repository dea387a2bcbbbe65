"""The server's multipart answers, read with the standard library's ``email`` parser.

MONAI Label answers ``output=all`` with ``multipart/form-data`` (requests_toolbelt's encoder): a JSON
part and the maps file. ``email`` finds the delimiters as RFC 2046 defines them (a line starting with
``--boundary``), keeps binary payloads byte for byte and records a missing closing delimiter as a defect,
which here means a truncated answer. (``cgi``, which MONAI Label's own plugin uses, is gone in Python 3.13.)
Uploads are encoded by ``requests``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import errors
from email.message import Message
from email.parser import BytesParser

_TRUNCATED = (errors.StartBoundaryNotFoundDefect, errors.CloseBoundaryNotFoundDefect)


class MultipartError(ValueError):
    """A multipart body or its Content-Type header is malformed."""


@dataclass(frozen=True)
class Part:
    """One decoded part of a multipart body."""

    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes


def header_param(value: str, param: str, header: str = "content-type") -> str | None:
    """One parameter of a header value, e.g. ``boundary`` of a Content-Type (quotes removed)."""
    msg = Message()
    msg[header] = value
    got = msg.get_param(param, header=header)
    if got is None or isinstance(got, tuple):  # RFC 2231 tuples do not occur in these answers
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
        MultipartError: not multipart, no boundary, no part, a part without a header block, or no
            closing delimiter (a truncated body).

    Example:
        >>> body = b'--B\\r\\nContent-Disposition: form-data; name="x"\\r\\n\\r\\n1\\r\\n--B--\\r\\n'
        >>> [(p.name, p.data) for p in decode_multipart(body, "multipart/form-data; boundary=B")]
        [('x', b'1')]
    """
    if not content_type.lower().startswith("multipart/"):
        raise MultipartError(f"expected a multipart body, got Content-Type {content_type!r}")
    if not header_param(content_type, "boundary"):
        raise MultipartError(f"multipart Content-Type without a boundary: {content_type!r}")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser().parsebytes(head + body)
    parts = message.get_payload() if message.is_multipart() else []
    if any(isinstance(d, _TRUNCATED) for d in message.defects) or not parts:
        raise MultipartError("multipart body is truncated or has no parts (closing boundary missing)")
    decoded = []
    for part in parts:
        if any(isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in part.defects):
            raise MultipartError("multipart part without a header block")
        decoded.append(
            Part(
                name=header_param(part.get("content-disposition", ""), "name", "content-disposition"),
                filename=part.get_filename(),
                content_type=part.get("content-type"),
                data=part.get_payload(decode=True) or b"",
            )
        )
    return decoded
