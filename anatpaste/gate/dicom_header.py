"""DICOM header checks: refuse objects whose own header says they are not a frontal chest radiograph.

Only an explicit statement refuses: a missing or empty tag, or a value we do not recognise, lets the file
go on (real chest films often lack View Position or Body Part Examined). The rules are in docs/input-gate.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from anatpaste.errors import NotAChestRadiographError

# Projection radiography. DR is not a DICOM defined term but some vendors write it; RG (retired:
# "radiographic imaging, conventional film/screen") is what digitised film often carries.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
# Modalities that say nothing about the content (secondary capture, other): the content decides.
UNDECIDED_MODALITIES = frozenset({"OT", "SC"})
_MODALITY_NAMES = {
    "CT": "computed tomography",
    "MR": "magnetic resonance",
    "NM": "nuclear medicine",
    "PT": "PET",
    "US": "ultrasound",
    "MG": "mammography",
    "XA": "X-ray angiography",
    "RF": "fluoroscopy",
    "IO": "intra-oral dental",
    "PX": "panoramic dental",
    "DG": "diaphanography",
    "ES": "endoscopy",
    "XC": "external camera photograph",
    "OP": "ophthalmic photograph",
    "SM": "slide microscopy",
    "SEG": "segmentation",
    "SR": "structured report",
    "PR": "presentation state",
    "KO": "key object selection",
    "DOC": "document",
    "ECG": "ECG waveform",
    "REG": "registration",
    "RTDOSE": "RT dose",
    "RTPLAN": "RT plan",
    "RTSTRUCT": "RT structure set",
    "RTIMAGE": "RT image",
    "RTRECORD": "RT treatment record",
}

# View Position (0018,5101) defined terms and common free-text spellings.
_LATERAL_VIEWS = frozenset(
    {
        "LL",
        "RL",
        "LAT",
        "LATERAL",
        "LLAT",
        "RLAT",
        "LEFT LATERAL",
        "RIGHT LATERAL",
        "L LAT",
        "R LAT",
        "LATERAL LEFT",
        "LATERAL RIGHT",
        "LAT L",
        "LAT R",
    }
)
_OBLIQUE_VIEWS = frozenset({"RLO", "LLO", "RAO", "LAO", "RPO", "LPO", "OBL", "OBLIQUE"})
# View Code Sequence (CID 4010) codes, SNOMED RT and SNOMED CT, besides matching the code meaning.
_LATERAL_CODES = frozenset({"R-102CD", "R-10236", "R-10232", "399067008"})
_OBLIQUE_CODES = frozenset({"R-102C1", "399182000"})

# Body Part Examined values that mean the chest (any language seen in the wild): a value holding one of
# these words is accepted even if it also names another region ("CHEST ABDOMEN").
_CHEST_WORDS = (
    "CHEST",
    "THORAX",
    "THORAC",
    "TORAX",
    "TORAC",
    "LUNG",
    "POUMON",
    "PULMO",
    "BRUST",
    "POITRINE",
    "PECHO",
    "TORACE",
    "BORST",
    "HEART",
)
_CHEST_TOKENS = frozenset({"RIB", "RIBS", "CXR", "PA", "AP"})
# Explicit non-chest regions (DICOM PS3.16 Annex L defined terms and common spellings), compared with the
# value's words and with the value with spaces, dashes and underscores removed ("L-SPINE" -> "LSPINE").
_NON_CHEST_PARTS = frozenset(
    {
        "HEAD",
        "SKULL",
        "BRAIN",
        "FACE",
        "JAW",
        "MANDIBLE",
        "MAXILLA",
        "TMJ",
        "SINUS",
        "ORBIT",
        "NOSE",
        "EAR",
        "IAC",
        "SELLA",
        "MASTOID",
        "ZYGOMA",
        "TEETH",
        "TOOTH",
        "NECK",
        "HEADNECK",
        "CSPINE",
        "TSPINE",
        "LSPINE",
        "SSPINE",
        "CTSPINE",
        "TLSPINE",
        "LSSPINE",
        "SPINE",
        "SACRUM",
        "COCCYX",
        "ABDOMEN",
        "ABDOMENPELVIS",
        "PELVIS",
        "HIP",
        "SIJOINT",
        "KIDNEY",
        "BLADDER",
        "COLON",
        "STOMACH",
        "LIVER",
        "BOWEL",
        "ESOPHAGUS",
        "UTERUS",
        "PROSTATE",
        "BREAST",
        "SHOULDER",
        "CLAVICLE",
        "SCAPULA",
        "ARM",
        "HUMERUS",
        "ELBOW",
        "FOREARM",
        "RADIUS",
        "ULNA",
        "WRIST",
        "HAND",
        "FINGER",
        "THUMB",
        "LEG",
        "FEMUR",
        "KNEE",
        "PATELLA",
        "TIBIA",
        "FIBULA",
        "ANKLE",
        "FOOT",
        "HEEL",
        "CALCANEUS",
        "TOE",
        "EXTREMITY",
        "UPPEREXTREMITY",
        "LOWEREXTREMITY",
        "WHOLEBODY",
    }
)


def check_dicom_header(ds: Dataset, path: str) -> None:
    """Raise :class:`NotAChestRadiographError` when the header says this is not a frontal chest film.

    Checked in this order: Modality, then the view (View Position, View Code Sequence, Patient
    Orientation), then Body Part Examined. Missing or unrecognised values never refuse.
    """
    modality = _text(_get(ds, "Modality"))
    if modality and modality not in RADIOGRAPH_MODALITIES and modality not in UNDECIDED_MODALITIES:
        name = _MODALITY_NAMES.get(modality) or ("radiotherapy object" if modality.startswith("RT") else None)
        shown = f"{modality} ({name})" if name else modality
        raise NotAChestRadiographError(
            f"{path}: not a chest radiograph: the DICOM Modality is {shown}; only projection radiographs "
            f"({', '.join(sorted(RADIOGRAPH_MODALITIES))}) are scored",
            reason="modality",
            detail=modality,
        )

    view = _view(ds)
    if view is not None:
        kind, tag, value = view
        raise NotAChestRadiographError(
            f"{path}: not a frontal chest radiograph: {tag} says {value!r} ({kind} view); only frontal "
            "(PA/AP) films are scored",
            reason=kind,
            detail=value,
        )

    orientation = _orientation_problem(_get(ds, "PatientOrientation"))
    if orientation is not None:
        reason, value, why = orientation
        raise NotAChestRadiographError(
            f"{path}: not scored: Patient Orientation {value!r} says {why}",
            reason=reason,
            detail=value,
        )

    part = str(_get(ds, "BodyPartExamined") or "").strip()
    if part and _is_non_chest(_text(part)):
        raise NotAChestRadiographError(
            f"{path}: not a chest radiograph: Body Part Examined is {part!r}",
            reason="body_part",
            detail=part,
        )


def _get(ds: Dataset, keyword: str) -> object:
    """A header value, or None when it cannot be decoded: a broken optional tag is no reason to refuse."""
    try:
        return ds.get(keyword)
    except Exception:  # pydicom converts raw elements lazily and may raise anything on a bad value
        return None


def _text(value: object) -> str:
    """A header value as upper-case text without accents ("TÓRAX" -> "TORAX"), with runs of spaces, dashes,
    dots, slashes and underscores as one space."""
    if value is None:
        return ""
    plain = "".join(c for c in unicodedata.normalize("NFKD", str(value)) if not unicodedata.combining(c))
    return re.sub(r"[\s_\-./]+", " ", plain).strip().upper()


def _view(ds: Dataset) -> tuple[str, str, str] | None:
    """(``"lateral"``/``"oblique"``, tag name, value) when View Position or View Code Sequence says so."""
    raw = str(_get(ds, "ViewPosition") or "").strip()
    position = _text(raw)
    if position in _LATERAL_VIEWS:
        return "lateral", "View Position", raw
    if position in _OBLIQUE_VIEWS:
        return "oblique", "View Position", raw
    for item in _items(_get(ds, "ViewCodeSequence")):
        code = str(item.get("CodeValue") or "").strip().upper()
        meaning = _text(item.get("CodeMeaning"))
        shown = str(item.get("CodeMeaning") or code)
        # "lateral decubitus" is a frontal projection of a patient lying on the side: not a lateral view.
        if "DECUBITUS" in meaning:
            continue
        if code in _LATERAL_CODES or "LATERAL" in meaning or "LATERO" in meaning:
            return "lateral", "View Code Sequence", shown
        if code in _OBLIQUE_CODES or "OBLIQUE" in meaning:
            return "oblique", "View Code Sequence", shown
    return None


def _items(seq: Any) -> Iterable[Dataset]:  # any header value: only a sequence of datasets has items
    try:
        return [item for item in seq if isinstance(item, Dataset)] if seq else []
    except TypeError:  # a malformed value that is not a sequence: say nothing
        return []


def _orientation_problem(value: object) -> tuple[str, str, str] | None:
    """Read Patient Orientation (row direction, column direction) of a projection film.

    A frontal film's rows run across the patient (L or R) and its columns down (F); rows running
    anterior/posterior mean a lateral projection, rows running head/foot a film turned by 90 degrees,
    and columns running towards the head a film upside down. Only the first letter of each direction
    counts (the main axis of an oblique direction such as "LP").
    """
    if value is None:
        return None
    parts = [str(p).strip().upper() for p in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
    if len(parts) != 2 or not all(parts):
        return None
    row, col = parts[0][0], parts[1][0]
    shown = "\\".join(parts)
    if row in "AP" and col in "HF":
        return "lateral", shown, "the rows run front to back: a lateral projection; only frontal films are scored"
    if row in "HF" and col in "LRAP":
        return "orientation", shown, "the film is turned by 90 degrees (head to foot runs across the image)"
    if row in "LR" and col == "H":
        return "orientation", shown, "the film is upside down (the head is at the bottom)"
    return None


def _is_non_chest(part: str) -> bool:
    """True for an explicit non-chest region; a chest word anywhere (or an unknown value) says False."""
    words = part.split()
    joined = part.replace(" ", "")
    if joined.endswith("SPINE"):  # "THORACIC SPINE" holds a chest word but is a spine film
        return True
    if any(word in part for word in _CHEST_WORDS) or _CHEST_TOKENS.intersection(words):
        return False
    return joined in _NON_CHEST_PARTS or any(w in _NON_CHEST_PARTS for w in words)
