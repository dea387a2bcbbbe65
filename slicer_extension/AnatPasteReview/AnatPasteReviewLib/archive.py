"""What the DICOMweb archive (e.g. Orthanc) holds from AnatPaste for a study: QIDO-RS to list it, WADO-RS to fetch it.

The AnatPaste server writes, with ``--conf write_back sr,seg,map``, a result SR, a lung SEG and a heatmap capture per
scored radiograph and model version, and a reviewer SR per review, into the radiograph's own study
(docs/dicom-write-back.md). :meth:`ArchiveClient.study_results` finds them by their Manufacturer, reads the SRs
(every radiograph of the study, every model version), and fetches this radiograph's SEG (and capture) only.

``requests`` and ``pydicom`` ship with 3D Slicer; no slicer or qt here. Every call has a connect timeout, a read
timeout, a total deadline and a size limit, and every failure is an :class:`~.errors.ArchiveError` in words.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import urllib3

from .answers import shorten
from .client import _BROKEN, _TIMEOUTS, BodyCut, Timeouts, _caused_by, _os_reason, normalize_server_url, read_capped
from .dicom_objects import (
    MANUFACTURER,
    ArchiveFindings,
    CaptureObject,
    DicomIdentity,
    ResultReport,
    ReviewReport,
    SegObject,
    dataset_from_bytes,
    dicom_datetime,
    is_uid,
    newest_first,
    read_capture,
    read_seg,
    read_sr,
)
from .errors import (
    ArchiveAnswerError,
    ArchiveError,
    ArchiveTimeoutError,
    ArchiveUnreachableError,
    MalformedObjectError,
    NoAnatPasteReportError,
)
from .multipart import MultipartError, decode_multipart

__all__ = ["ArchiveClient", "ArchiveEntry", "normalize_archive_url"]

# QIDO-RS fields asked for each instance of the study (beyond the defaults)
_FIELDS = {
    "manufacturer": "00080070",
    "software_versions": "00181020",
    "content_date": "00080023",
    "content_time": "00080033",
    "series_uid": "0020000E",
    "modality": "00080060",
    "sop_uid": "00080018",
    "rows": "00280010",
    "columns": "00280011",
}
_DICOM = 'multipart/related; type="application/dicom"'


def normalize_archive_url(text: str) -> str:
    """The DICOMweb root, e.g. ``127.0.0.1:8042/dicom-web`` -> ``http://127.0.0.1:8042/dicom-web``.

    Raises:
        ValueError: empty, a scheme other than http/https, or no host.
    """
    if not (text or "").strip():
        raise ValueError("enter the archive's DICOMweb address, e.g. http://127.0.0.1:8042/dicom-web")
    return normalize_server_url(text)


@dataclass(frozen=True)
class ArchiveEntry:
    """One AnatPaste instance of the study, as QIDO-RS lists it."""

    series_uid: str
    sop_instance_uid: str
    modality: str
    manufacturer: str
    model_version: str | None
    rows: int | None
    columns: int | None
    content: str  # Content Date + Time, as the archive has them (for the order)

    @property
    def when(self):
        return dicom_datetime(self.content)

    @property
    def by_anatpaste(self) -> bool:
        return self.manufacturer == MANUFACTURER

    def fits(self, identity: DicomIdentity) -> bool:
        """The object's grid can be the radiograph's (sizes unknown on either side: it may)."""
        known = None not in (self.rows, self.columns, identity.rows, identity.columns)
        return not known or (self.rows, self.columns) == (identity.rows, identity.columns)


T = TypeVar("T", SegObject, CaptureObject)


class ArchiveClient:
    """The study's AnatPaste objects on a DICOMweb archive.

    Args:
        archive_url: the DICOMweb root (Orthanc: ``http://host:8042/dicom-web``).
        timeouts: connect / read / total seconds of each call (:class:`~.client.Timeouts`).
        max_response_bytes: larger answers are refused (a capture of a 3000 x 3000 film is 27 MB).
        max_reports: at most this many SRs are read, the newest first.
        max_tries: at most this many SEGs (and captures) are fetched to find this radiograph's.
        http_session: a ``requests.Session`` (proxies, certificates, authentication); default: a new one.

    Example:
        >>> ArchiveClient("127.0.0.1:8042/dicom-web/").archive_url
        'http://127.0.0.1:8042/dicom-web'
    """

    def __init__(
        self,
        archive_url: str,
        *,
        timeouts: Timeouts | None = None,
        max_response_bytes: int = 64 * 2**20,
        max_reports: int = 50,
        max_tries: int = 8,
        http_session: requests.Session | None = None,
    ):
        self.archive_url = normalize_archive_url(archive_url)
        self.timeouts = timeouts or Timeouts(connect=5.0, read=30.0, total=120.0)
        self.max_response_bytes = max_response_bytes
        self.max_reports = max_reports
        self.max_tries = max_tries
        self.http = http_session or requests.Session()
        self.http.headers.update({"User-Agent": "AnatPasteReview", "Accept-Encoding": "identity"})

    # ------------------------------------------------------------------------------------------ study
    def study_results(self, identity: DicomIdentity, *, capture: bool = False) -> ArchiveFindings:
        """Reports and reviews of the study (newest first), this radiograph's SEG, and its capture if asked.

        Raises:
            NoAnatPasteReportError: the archive does not hold the study, or holds no AnatPaste report in it.
            MalformedObjectError: every AnatPaste report of the study is unreadable.
            ArchiveUnreachableError, ArchiveTimeoutError, ArchiveAnswerError: see the module docstring.
        """
        everything = self.study_instances(identity.study_uid)
        if not everything:
            raise NoAnatPasteReportError(
                f"the archive at {self.archive_url} does not hold this radiograph's study ({identity.study_uid})"
            )
        entries = [e for e in everything if e.by_anatpaste]
        problems: list[ArchiveError] = []  # objects that could not be fetched or read; the others are shown
        results: list[ResultReport] = []
        reviews: list[ReviewReport] = []
        for entry in newest_first([e for e in entries if e.modality == "SR"])[: self.max_reports]:
            try:
                report = read_sr(self.retrieve(identity.study_uid, entry))
            except (MalformedObjectError, ArchiveAnswerError) as exc:
                problems.append(exc)
                continue
            (results if isinstance(report, ResultReport) else reviews).append(report)
        if not results and not reviews:
            if problems:
                first = problems[0]
                more = f" (and {len(problems) - 1} more unreadable report(s))" if len(problems) > 1 else ""
                raise type(first)(f"{first}{more}", status=first.status) from first
            raise NoAnatPasteReportError(
                f"the archive at {self.archive_url} holds no AnatPaste report for this study ({identity.study_uid}): "
                "the server writes them only with write-back on (--conf write_back sr,seg,map)"
            )
        results, reviews = newest_first(results), newest_first(reviews)
        findings = ArchiveFindings(self.archive_url, identity.study_uid, identity.image_uid, tuple(results),
                                   tuple(reviews))
        preferred = findings.latest.model_version if findings.latest else None
        seg = self._find(identity, entries, "SEG", preferred, read_seg, problems)
        shot = self._find(identity, entries, "OT", preferred, read_capture, problems) if capture else None
        return ArchiveFindings(self.archive_url, identity.study_uid, identity.image_uid, tuple(results),
                               tuple(reviews), seg, shot, tuple(str(p) for p in problems))

    def _find(
        self,
        identity: DicomIdentity,
        entries: list[ArchiveEntry],
        modality: str,
        preferred: str | None,
        read: Callable[[Any], T],
        problems: list[ArchiveError],
    ) -> T | None:
        """This radiograph's object of a kind: the preferred model version first, then the newest."""
        candidates = newest_first([e for e in entries if e.modality == modality and e.fits(identity)])
        candidates.sort(key=lambda e: e.model_version != preferred)  # stable: newest first within each
        for entry in candidates[: self.max_tries]:
            try:
                obj = read(self.retrieve(identity.study_uid, entry))
            except (MalformedObjectError, ArchiveAnswerError) as exc:  # too large, gone meanwhile, unreadable
                problems.append(exc)
                continue
            if identity.image_uid in obj.source_uids:
                return obj
        return None

    # ---------------------------------------------------------------------------------------- DICOMweb
    def study_instances(self, study_uid: str) -> list[ArchiveEntry]:
        """QIDO-RS: every instance of the study (those without valid UIDs left out)."""
        _check_uid(study_uid, "study")
        query = {"includefield": list(_FIELDS.values())}
        try:
            answer = self._get(f"/studies/{study_uid}/instances", query, "application/dicom+json")
        except ArchiveAnswerError as exc:
            if exc.status == 404:  # some archives say so for an unknown study (Orthanc answers [])
                return []
            raise
        if answer.status == 204 or not answer.body.strip():
            return []
        try:
            items = json.loads(answer.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ArchiveAnswerError(f"the archive's study listing is not JSON: {shorten(answer.body)}") from exc
        if not isinstance(items, list):
            raise ArchiveAnswerError(f"the archive's study listing is not a list: {shorten(answer.body)}")
        return [e for e in map(_entry, items) if e is not None]

    def retrieve(self, study_uid: str, entry: ArchiveEntry):
        """WADO-RS: one instance as a pydicom dataset.

        Raises:
            MalformedObjectError: the answer holds no readable DICOM file.
        """
        what = f"the archive's AnatPaste {entry.modality} {entry.sop_instance_uid}"
        path = f"/studies/{study_uid}/series/{entry.series_uid}/instances/{entry.sop_instance_uid}"
        answer = self._get(path, None, f"{_DICOM}, application/dicom")
        content_type = answer.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/"):
            try:
                parts = decode_multipart(answer.body, content_type)
            except MultipartError as exc:
                raise MalformedObjectError(f"{what} arrived broken: {exc}") from exc
            data = parts[0].data
        else:
            data = answer.body
        return dataset_from_bytes(data, what)

    def _get(self, path: str, query: dict[str, Any] | None, accept: str):
        url = self.archive_url + path
        deadline = time.monotonic() + self.timeouts.total
        try:
            resp = self.http.get(url, params=query, headers={"Accept": accept}, stream=True,
                                 timeout=(self.timeouts.connect, self.timeouts.read))
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc) from exc
        try:
            body = self._read_body(resp, deadline)
        finally:
            resp.close()
        answer = _Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, body)
        if answer.status >= 400:
            explain = {401: " (the archive wants a login)", 403: " (not allowed)", 404: " (not found)"}
            raise ArchiveAnswerError(
                f"the archive at {self.archive_url} answered {answer.status}{explain.get(answer.status, '')} "
                f"to GET {path}: {shorten(body, 120) or resp.reason}",
                status=answer.status,
            )
        return answer

    def _read_body(self, resp: requests.Response, deadline: float) -> bytes:
        limit = self.max_response_bytes
        try:
            return read_capped(resp, limit, deadline)
        except _TIMEOUTS as exc:
            raise self._read_timeout() from exc
        except _BROKEN as exc:
            raise ArchiveAnswerError(f"the archive at {self.archive_url} broke off its answer") from exc
        except BodyCut as cut:
            if cut.why == "late":
                raise ArchiveTimeoutError(
                    f"the answer from the archive at {self.archive_url} took longer than {self.timeouts.total:g} s"
                ) from None
            raise ArchiveAnswerError({
                "declared": f"the archive's answer is too large ({cut.declared} bytes; the limit is {limit})",
                "larger": f"the archive's answer is larger than {limit} bytes (the module's limit)",
                "truncated": f"the archive's answer is truncated ({cut.got} of {cut.declared} bytes)",
            }[cut.why]) from None

    def _read_timeout(self) -> ArchiveTimeoutError:
        return ArchiveTimeoutError(f"the archive at {self.archive_url} did not answer within {self.timeouts.read:g} s")

    def _transport_error(self, exc: requests.exceptions.RequestException):
        url = self.archive_url
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return ArchiveUnreachableError(
                f"no answer from the archive at {url} within {self.timeouts.connect:g} s: is it running and the "
                "address right?"
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return self._read_timeout()
        if isinstance(exc, requests.exceptions.ConnectionError) and _caused_by(
            exc, urllib3.exceptions.NewConnectionError
        ):
            return ArchiveUnreachableError(
                f"cannot connect to the archive at {url}: {_os_reason(exc)}. Is it running and the address right?"
            )
        return ArchiveUnreachableError(f"connection to the archive at {url} failed: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _check_uid(uid: str, what: str) -> None:
    if not is_uid(uid):
        raise ValueError(f"not a DICOM {what} UID: {uid!r}")


def _value(item: dict, tag: str, index: int = 0) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[index] if len(values) > index else None


def _entry(item: Any) -> ArchiveEntry | None:
    """One instance of a QIDO-RS answer (DICOM JSON), or None without valid UIDs."""
    if not isinstance(item, dict):
        return None
    series, sop = _value(item, _FIELDS["series_uid"]), _value(item, _FIELDS["sop_uid"])
    if not (is_uid(series) and is_uid(sop)):
        return None
    versions = (item.get(_FIELDS["software_versions"]) or {}).get("Value") or []

    def number(tag: str) -> int | None:
        v = _value(item, tag)
        return int(v) if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit()) else None

    return ArchiveEntry(
        series_uid=series,
        sop_instance_uid=sop,
        modality=str(_value(item, _FIELDS["modality"]) or ""),
        manufacturer=str(_value(item, _FIELDS["manufacturer"]) or ""),
        model_version=str(versions[1]) if len(versions) >= 2 and versions[1] else None,
        rows=number(_FIELDS["rows"]),
        columns=number(_FIELDS["columns"]),
        content=f"{_value(item, _FIELDS['content_date']) or ''}{_value(item, _FIELDS['content_time']) or ''}",
    )
