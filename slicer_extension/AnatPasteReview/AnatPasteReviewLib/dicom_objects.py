"""AnatPaste's DICOM objects read back (docs/dicom-write-back.md): the result SR, the reviewer SR, the lung SEG and the
heatmap capture, with pydicom and numpy only (both ship with 3D Slicer; no highdicom, no anatpaste).

Each reader takes a pydicom dataset and returns a frozen dataclass, or raises
:class:`~.errors.MalformedObjectError` saying in words what the object lacks. The SEG is read in its own pixel grid
(Rows x Columns, row 0 on top), which is the source radiograph's: :mod:`.scene` lays it on that radiograph.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

from .errors import MalformedObjectError, NotADicomStudyError

MANUFACTURER = "AnatPaste open-source project"  # every AnatPaste object's Manufacturer
SCHEME = "99ANATPASTE"  # AnatPaste's private coding scheme
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR (what AnatPaste writes)
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
}
MAX_PIXELS = 60_000_000  # the server's own limit for one image (docs/server-api.md)

SCORE = ("AP001", SCHEME)
THRESHOLD = ("AP002", SCHEME)
VERDICT = ("AP004", SCHEME)
INPUT_CHECK = ("AP010", SCHEME)
INPUT_FLAG = ("AP013", SCHEME)
INPUT_FIX = ("AP014", SCHEME)
REVIEWER_VERDICT = ("AP020", SCHEME)
NORMALITY = ("121402", "DCM")  # TID 310 property of the score
ALGORITHM_VERSION = ("111003", "DCM")
PERSON_OBSERVER = ("121008", "DCM")
MEASUREMENT_GROUP = ("125007", "DCM")
INPUT_CHECK_VALUES = {"AP011": "accepted", "AP012": "flagged"}
NORMAL_CODES = {"17621005": "normal", "263654008": "abnormal"}  # SCT, CID 222
UNKNOWN_REVIEWER = "UNKNOWN^REVIEWER"  # the server ran without sign-in
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class ResultReport:
    """One AnatPaste result SR: what a model version said about one radiograph."""

    sop_instance_uid: str
    source_uid: str  # the radiograph's SOP Instance UID
    score: float
    threshold: float
    label: str  # "normal" | "abnormal" at the threshold
    model_version: str
    written_at: _dt.datetime | None  # the SR's Content Date/Time
    input_check: str | None = None  # "accepted" | "flagged"
    flags: tuple[str, ...] = ()  # the input gate's flags (no_lungs, unfamiliar)
    fixes: tuple[str, ...] = ()  # what the gate corrected (inverted)

    @property
    def when(self) -> _dt.datetime | None:
        return self.written_at


@dataclass(frozen=True)
class ReviewReport:
    """One reviewer SR: a clinician's verdict on a radiograph."""

    sop_instance_uid: str
    source_uid: str
    verdict: str  # "normal" | "abnormal"
    reviewer: str | None  # None: the server ran without sign-in
    reviewed_at: _dt.datetime | None  # Observation DateTime (else the SR's Content Date/Time)
    ai_model_version: str | None = None  # the model whose result the reviewer saw

    @property
    def when(self) -> _dt.datetime | None:
        return self.reviewed_at


@dataclass(frozen=True, eq=False)
class Segment:
    number: int
    label: str
    property_type: str | None  # e.g. "Lung" (Segmented Property Type's meaning)
    mask: np.ndarray  # bool (Rows, Columns)


@dataclass(frozen=True, eq=False)
class SegObject:
    """A DICOM SEG of one radiograph: its segments in the radiograph's pixel grid."""

    sop_instance_uid: str
    source_uids: tuple[str, ...]
    model_version: str | None
    written_at: _dt.datetime | None
    rows: int
    columns: int
    segments: tuple[Segment, ...]

    @property
    def when(self) -> _dt.datetime | None:
        return self.written_at


@dataclass(frozen=True, eq=False)
class CaptureObject:
    """The heatmap secondary capture: uint8 RGB (Rows, Columns, 3) in the radiograph's pixel grid."""

    sop_instance_uid: str
    source_uids: tuple[str, ...]
    model_version: str | None
    written_at: _dt.datetime | None
    pixels: np.ndarray

    @property
    def when(self) -> _dt.datetime | None:
        return self.written_at


@dataclass(frozen=True)
class DicomIdentity:
    """Which study and instance a radiograph file is."""

    study_uid: str
    image_uid: str
    rows: int | None = None
    columns: int | None = None


@dataclass(frozen=True, eq=False)
class ArchiveFindings:
    """What the archive holds from AnatPaste for one radiograph's study.

    ``results`` and ``reviews`` cover every radiograph of the study, newest first; ``seg`` and ``capture`` are this
    radiograph's (of the model version of its newest result, when the archive has one of that version).
    ``problems``: objects that could not be read, in words (the others are shown).
    """

    archive_url: str
    study_uid: str
    image_uid: str
    results: tuple[ResultReport, ...] = ()
    reviews: tuple[ReviewReport, ...] = ()
    seg: SegObject | None = None
    capture: CaptureObject | None = None
    problems: tuple[str, ...] = ()

    @property
    def latest(self) -> ResultReport | None:
        """The newest result on this radiograph."""
        return next((r for r in self.results if r.source_uid == self.image_uid), None)


T = TypeVar("T")


def newest_first(objects: Iterable[T]) -> list[T]:
    """By their ``when`` (undated last), then by SOP Instance UID so that the order never depends on the archive's."""
    return sorted(objects, key=lambda o: (o.when is not None, o.when or _dt.datetime.min, o.sop_instance_uid),
                  reverse=True)


# ----------------------------------------------------------------------------------------------- files
def dicom_identity(path: str | os.PathLike) -> DicomIdentity:
    """Study and SOP Instance UID (and size) of a radiograph file.

    Raises:
        NotADicomStudyError: not a DICOM file, or one without the UIDs.
    """
    name = os.path.basename(os.fspath(path))
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise NotADicomStudyError(
            f"{name} is not a DICOM file, so it has no study in the archive: open the study from the archive or "
            "Slicer's DICOM database"
        ) from exc
    except OSError as exc:
        raise NotADicomStudyError(f"{name} cannot be read: {exc.strerror or exc}") from exc
    study, image = str(ds.get("StudyInstanceUID") or ""), str(ds.get("SOPInstanceUID") or "")
    if not (_UID.match(study) and _UID.match(image)):
        raise NotADicomStudyError(f"{name} has no valid Study or SOP Instance UID: it cannot be found in an archive")
    rows, columns = ds.get("Rows"), ds.get("Columns")
    return DicomIdentity(study, image, int(rows) if rows else None, int(columns) if columns else None)


def dataset_from_bytes(data: bytes, what: str) -> Dataset:
    """A DICOM Part 10 file's dataset.

    Raises:
        MalformedObjectError: not a readable DICOM file.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        uids = str(ds.get("SOPClassUID") or ""), str(ds.get("SOPInstanceUID") or "")
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        raise MalformedObjectError(f"{what} is not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if not all(is_uid(u) for u in uids):
        raise MalformedObjectError(f"{what} is not a readable DICOM file (no SOP Class or Instance UID)")
    return ds


def is_uid(text: Any) -> bool:
    return isinstance(text, str) and len(text) <= 64 and bool(_UID.match(text))


# ------------------------------------------------------------------------------------------------- SRs
def read_sr(ds: Dataset) -> ResultReport | ReviewReport:
    """An AnatPaste result SR or reviewer SR (TID 1500 with AnatPaste's codes).

    Raises:
        MalformedObjectError: not an SR, neither kind, or a value missing or unreadable.
    """
    what = _what(ds, "SR")
    if str(ds.get("SOPClassUID", "")) not in SR_CLASSES:
        raise MalformedObjectError(f"{what} is not a structured report (SOP Class {ds.get('SOPClassUID', 'none')})")
    try:
        items = list(_walk(ds.get("ContentSequence") or []))
        if any(_named(i, REVIEWER_VERDICT) for i in items):
            return _review(ds, items, what)
        if any(_named(i, code) for i in items for code in (SCORE, THRESHOLD, VERDICT, INPUT_CHECK)):
            return _result(ds, items, what)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise MalformedObjectError(f"{what} has a malformed content tree ({type(exc).__name__}: {exc})") from exc
    raise MalformedObjectError(f"{what} holds neither an AnatPaste score nor a reviewer's verdict")


def _result(ds: Dataset, items: list[Dataset], what: str) -> ResultReport:
    score_item = _one(items, SCORE, what, "anomaly score")
    score = _number(score_item, what, "anomaly score")
    threshold = _number(_one(items, THRESHOLD, what, "threshold"), what, "threshold")
    verdict = next((_code(i) for i in items if _named(i, VERDICT)), None)
    if verdict is None:  # the score's TID 310 Normality property says the same
        verdict = next((_code(i) for i in _walk(score_item.get("ContentSequence") or []) if _named(i, NORMALITY)), None)
    label = NORMAL_CODES.get(verdict or "")
    if label is None:
        raise MalformedObjectError(f"{what} has no normal/abnormal result (code {verdict or 'missing'})")
    version = next((str(i.TextValue) for i in items if _named(i, ALGORITHM_VERSION) and i.get("TextValue")), None)
    version = version or _software_model_version(ds)
    if not version:
        raise MalformedObjectError(f"{what} does not say which model version wrote it")
    check = next((_code(i) for i in items if _named(i, INPUT_CHECK)), None)
    return ResultReport(
        sop_instance_uid=str(ds.SOPInstanceUID),
        source_uid=_source_uid(items, what),
        score=score,
        threshold=threshold,
        label=label,
        model_version=version,
        written_at=_content_time(ds),
        input_check=INPUT_CHECK_VALUES.get(check or ""),
        flags=tuple(str(_code(i)) for i in items if _named(i, INPUT_FLAG)),
        fixes=tuple(str(_code(i)) for i in items if _named(i, INPUT_FIX)),
    )


def _review(ds: Dataset, items: list[Dataset], what: str) -> ReviewReport:
    code = _code(_one(items, REVIEWER_VERDICT, what, "reviewer's verdict"))
    verdict = NORMAL_CODES.get(code or "")
    if verdict is None:
        raise MalformedObjectError(f"{what} has a reviewer's verdict that is neither normal nor abnormal ({code})")
    person = next((str(i.PersonName) for i in items if _named(i, PERSON_OBSERVER) and i.get("PersonName")), None)
    reviewer = None if person in (None, UNKNOWN_REVIEWER) else " ".join(p for p in person.split("^") if p) or None
    seen = _software_model_version(ds)
    return ReviewReport(
        sop_instance_uid=str(ds.SOPInstanceUID),
        source_uid=_source_uid(items, what),
        verdict=verdict,
        reviewer=reviewer,
        reviewed_at=dicom_datetime(ds.get("ObservationDateTime")) or _content_time(ds),
        ai_model_version=None if seen in (None, "no model") else seen,
    )


def _walk(sequence: Sequence[Dataset]) -> Iterator[Dataset]:
    for item in sequence:
        yield item
        yield from _walk(item.get("ContentSequence") or [])


def _named(item: Dataset, code: tuple[str, str]) -> bool:
    names = item.get("ConceptNameCodeSequence")
    return bool(names) and (str(names[0].get("CodeValue")), str(names[0].get("CodingSchemeDesignator"))) == code


def _one(items: list[Dataset], code: tuple[str, str], what: str, name: str) -> Dataset:
    found = [i for i in items if _named(i, code)]
    if not found:
        raise MalformedObjectError(f"{what} has no {name}")
    return found[0]


def _number(item: Dataset, what: str, name: str) -> float:
    try:
        value = float(item.MeasuredValueSequence[0].NumericValue)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise MalformedObjectError(f"{what} has no readable {name} value") from exc
    if not np.isfinite(value):
        raise MalformedObjectError(f"{what} has a {name} of {value}")
    return value


def _code(item: Dataset) -> str | None:
    concepts = item.get("ConceptCodeSequence")
    return str(concepts[0].CodeValue) if concepts and concepts[0].get("CodeValue") else None


def _source_uid(items: list[Dataset], what: str) -> str:
    """The radiograph the report is about: the IMAGE of its measurement group (else any IMAGE item)."""
    group = next((i for i in items if _named(i, MEASUREMENT_GROUP)), None)
    candidates = [i for i in (group.get("ContentSequence") or []) if i.get("ValueType") == "IMAGE"] if group else []
    candidates += [i for i in items if i.get("ValueType") == "IMAGE"]
    for item in candidates:
        refs = item.get("ReferencedSOPSequence")
        uid = str(refs[0].get("ReferencedSOPInstanceUID", "")) if refs else ""
        if is_uid(uid):
            return uid
    raise MalformedObjectError(f"{what} does not reference the radiograph it is about")


# ------------------------------------------------------------------------------------------------- SEG
def read_seg(ds: Dataset) -> SegObject:
    """A DICOM SEG of a radiograph: one frame per segment, BINARY or FRACTIONAL.

    Raises:
        MalformedObjectError: not a SEG, no segments, pixel data that does not fit its header, a segment with
            several frames (a volume's SEG), or a frame of an undeclared segment.
    """
    what = _what(ds, "SEG")
    if str(ds.get("SOPClassUID", "")) != SEG_CLASS:
        raise MalformedObjectError(f"{what} is not a segmentation (SOP Class {ds.get('SOPClassUID', 'none')})")
    try:
        rows, columns, frames = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames") or 1)
        declared = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    except (AttributeError, TypeError, ValueError) as exc:
        raise MalformedObjectError(f"{what} lacks its size or its segment list ({exc})") from exc
    if not declared or min(rows, columns, frames) < 1:
        raise MalformedObjectError(f"{what} declares no segment or has an empty image ({rows}x{columns}x{frames})")
    if rows * columns * frames > MAX_PIXELS:
        raise MalformedObjectError(f"{what} is {rows}x{columns}x{frames} pixels: too large for a radiograph's SEG")
    _check_pixel_length(ds, frames * rows * columns, what)
    pixels = _pixels(ds, what)
    if pixels.size != frames * rows * columns:
        raise MalformedObjectError(f"{what} has {pixels.size} pixels, not {frames}x{rows}x{columns}")
    pixels = pixels.reshape(frames, rows, columns)
    if str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        masks = pixels.astype(np.float32) >= 0.5 * float(ds.get("MaximumFractionalValue") or 255)
    else:
        masks = pixels != 0
    numbers = _frame_segments(ds, frames, what)
    segments = []
    for number, item in sorted(declared.items()):
        mine = [f for f, n in enumerate(numbers) if n == number]
        if len(mine) > 1:
            raise MalformedObjectError(f"{what} has {len(mine)} frames of segment {number}: a volume's SEG, "
                                       "not a radiograph's")
        mask = masks[mine[0]] if mine else np.zeros((rows, columns), bool)
        prop = item.get("SegmentedPropertyTypeCodeSequence")
        segments.append(Segment(number, str(item.get("SegmentLabel") or f"Segment {number}"),
                                str(prop[0].CodeMeaning) if prop and prop[0].get("CodeMeaning") else None, mask))
    unknown = sorted(set(numbers) - set(declared))
    if unknown:
        raise MalformedObjectError(f"{what} has frames of undeclared segment(s) {unknown}")
    return SegObject(str(ds.SOPInstanceUID), _seg_sources(ds), _seg_model_version(ds, declared), _content_time(ds),
                     rows, columns, tuple(segments))


def _check_pixel_length(ds: Dataset, pixels: int, what: str) -> None:
    """Uncompressed 1-bit data must hold every pixel (pydicom would read a short one into garbage)."""
    if "PixelData" not in ds:
        raise MalformedObjectError(f"{what} has no pixel data")
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    compressed = syntax is not None and UID(syntax).is_compressed
    if int(ds.get("BitsAllocated") or 0) == 1 and not compressed and len(ds.PixelData) < (pixels + 7) // 8:
        raise MalformedObjectError(f"{what}'s pixel data is truncated ({len(ds.PixelData)} of "
                                   f"{(pixels + 7) // 8} bytes)")


def _pixels(ds: Dataset, what: str) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise many kinds; all mean "unreadable pixels"
        raise MalformedObjectError(f"{what}'s pixel data cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _frame_segments(ds: Dataset, frames: int, what: str) -> list[int]:
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_number = _segment_number(shared[0]) if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    numbers = []
    for f in range(frames):
        n = _segment_number(per_frame[f]) if f < len(per_frame) else None
        n = n if n is not None else shared_number
        if n is None:
            raise MalformedObjectError(f"{what} does not say which segment frame {f + 1} shows")
        numbers.append(n)
    return numbers


def _segment_number(group: Dataset) -> int | None:
    ident = group.get("SegmentIdentificationSequence")
    try:
        return int(ident[0].ReferencedSegmentNumber) if ident else None
    except (AttributeError, TypeError, ValueError):
        return None


def _seg_sources(ds: Dataset) -> tuple[str, ...]:
    uids = [str(i.get("ReferencedSOPInstanceUID", "")) for s in ds.get("ReferencedSeriesSequence") or []
            for i in s.get("ReferencedInstanceSequence") or []]
    for frame in ds.get("PerFrameFunctionalGroupsSequence") or []:
        for derivation in frame.get("DerivationImageSequence") or []:
            uids += [str(i.get("ReferencedSOPInstanceUID", "")) for i in derivation.get("SourceImageSequence") or []]
    return _unique(uids)


def _seg_model_version(ds: Dataset, declared: dict[int, Dataset]) -> str | None:
    for item in declared.values():
        for algorithm in item.get("SegmentationAlgorithmIdentificationSequence") or []:
            if algorithm.get("AlgorithmVersion"):
                return str(algorithm.AlgorithmVersion)
    return _software_model_version(ds) or (str(ds.DeviceSerialNumber) if ds.get("DeviceSerialNumber") else None)


# --------------------------------------------------------------------------------------------- capture
def read_capture(ds: Dataset) -> CaptureObject:
    """The heatmap secondary capture as uint8 RGB (a grey capture is repeated into three channels).

    Raises:
        MalformedObjectError: no pixel data, pixels that cannot be decoded or are not one 2-D image.
    """
    what = _what(ds, "heatmap capture")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise MalformedObjectError(f"{what} lacks its size") from exc
    if rows * columns > MAX_PIXELS:
        raise MalformedObjectError(f"{what} is {rows}x{columns} pixels: too large")
    if "PixelData" not in ds:
        raise MalformedObjectError(f"{what} has no pixel data")
    pixels = _pixels(ds, what)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if pixels.ndim == 3 and pixels.shape[-1] == 3 and photometric.startswith("YBR"):
        pixels = _to_rgb(pixels, photometric)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.shape != (rows, columns, 3):
        raise MalformedObjectError(f"{what} is not one {rows}x{columns} image (pixels {pixels.shape})")
    if pixels.dtype != np.uint8:
        top = float(pixels.max()) or 1.0
        pixels = np.clip(pixels.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    sources = _unique(str(i.get("ReferencedSOPInstanceUID", "")) for i in ds.get("SourceImageSequence") or [])
    return CaptureObject(str(ds.SOPInstanceUID), sources, _software_model_version(ds), _content_time(ds),
                         np.ascontiguousarray(pixels))


def _to_rgb(pixels: np.ndarray, photometric: str) -> np.ndarray:
    try:  # pydicom 3
        from pydicom.pixels import convert_color_space
    except ImportError:  # pydicom 2 (3D Slicer 5.2-5.8)
        from pydicom.pixel_data_handlers.util import convert_color_space
    return convert_color_space(pixels, photometric, "RGB")


# --------------------------------------------------------------------------------------------- helpers
def _what(ds: Dataset, kind: str) -> str:
    return f"the archive's AnatPaste {kind} {ds.get('SOPInstanceUID', '(no UID)')}"


def _software_model_version(ds: Dataset) -> str | None:
    """Software Versions = ("anatpaste <package version>", "<model version>")."""
    versions = ds.get("SoftwareVersions")
    if versions is None:
        return None
    values = [str(v) for v in (versions if isinstance(versions, (list, tuple, MultiValue))
                               else [versions])]
    return values[1] if len(values) >= 2 and values[1] else None


def _content_time(ds: Dataset) -> _dt.datetime | None:
    date, time = str(ds.get("ContentDate") or ""), str(ds.get("ContentTime") or "")
    return dicom_datetime(date + time) if date else None


def dicom_datetime(value: Any) -> _dt.datetime | None:
    """A DICOM DA+TM or DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, any trailing part left out) as a naive datetime."""
    text = re.split(r"[+-]", str(value or "").strip())[0]
    m = re.match(r"^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$", text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        return _dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                            int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None


def _unique(uids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(u for u in uids if is_uid(u)))
