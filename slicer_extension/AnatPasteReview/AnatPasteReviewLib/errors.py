"""The client's errors: every failed call to the server or the archive is a :class:`ServerError` whose text a
clinician can read; the subclasses say what kind of failure it was."""

from __future__ import annotations


class ServerError(Exception):
    """A call to the server failed. ``str(err)`` is a readable sentence.

    Attributes:
        status: the HTTP status, or None when no HTTP answer came back.
        detail: the server's own explanation (FastAPI's ``detail``), when it gave one.
    """

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class ServerUnreachableError(ServerError):
    """No connection: wrong address, server not running, network or TLS failure, connect timeout."""


class ServerTimeoutError(ServerError):
    """Connected, but the server did not answer (or finish answering) in time."""


class ServerResponseError(ServerError):
    """The server answered with an HTTP error status (4xx/5xx)."""


class AuthenticationError(ServerResponseError):
    """401/403: log in, or the account lacks the role this action needs."""


class TrainingAlreadyRunningError(ServerResponseError):
    """429 on ``POST /train``: a training task is already running."""


class BadResponseError(ServerError):
    """The server answered 2xx with something this client cannot use (bad JSON, truncated body, ...)."""



class ArchiveError(ServerError):
    """Reading a study's AnatPaste objects from the DICOMweb archive failed (archive.py)."""


class ArchiveUnreachableError(ArchiveError):
    """No connection to the archive: wrong address, archive not running, network or TLS failure, connect timeout."""


class ArchiveTimeoutError(ArchiveError):
    """Connected, but the archive did not answer (or finish answering) in time."""


class ArchiveAnswerError(ArchiveError):
    """The archive answered with an HTTP error, or with something unusable: too large, truncated, not JSON."""


class NotADicomStudyError(ArchiveError):
    """The radiograph under review is no DICOM file (a PNG/JPEG, or only in the scene): it has no study to look up."""


class NoAnatPasteReportError(ArchiveError):
    """The archive holds no AnatPaste object for this study (or does not hold the study at all)."""


class MalformedObjectError(ArchiveError):
    """An AnatPaste object in the archive cannot be read: not DICOM, or without the content it must have."""
