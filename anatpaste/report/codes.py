"""Every coded concept the objects use: DICOM/SNOMED/UCUM where a standard code fits, else the private scheme
``99ANATPASTE`` (declared in each object's Coding Scheme Identification Sequence)."""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import Code, codes

SCHEME = "99ANATPASTE"
SCHEME_NAME = "AnatPaste result codes"


def _std(dictionary: str, name: str) -> CodedConcept:
    """The concept ``codes.<dictionary>.<name>`` of pydicom's code dictionary (a scheme such as ``SCT``, or a
    CID such as ``cid222``), looked up by name because pydicom types each step as scheme, CID or code."""
    code = getattr(getattr(codes, dictionary), name)
    if not isinstance(code, Code):
        raise LookupError(f"codes.{dictionary}.{name} is not a code")
    return CodedConcept(value=code.value, scheme_designator=code.scheme_designator, meaning=code.meaning)


def _private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


# standard (pydicom's code dictionary, so meanings are the standard's own)
CHEST_XRAY = CodedConcept("399208008", "SCT", "Plain chest X-ray")  # procedure reported
THORAX = _std("SCT", "Chest")  # finding site of the whole-film score
LUNG = _std("SCT", "Lung")
ANATOMICAL_STRUCTURE = _std("cid7150", "AnatomicalStructure")  # SEG property category (CID 7150)
NORMAL = _std("cid222", "Normal")  # CID 222 Normality Codes
ABNORMAL = _std("cid222", "Abnormal")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
COMMENT = _std("DCM", "Comment")
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500 row 12
ARTIFICIAL_INTELLIGENCE = _std("cid7162", "ArtificialIntelligence")  # algorithm family (CID 7162)
HISTOGRAM_ANALYSIS = _std("cid7162", "HistogramAnalysis")  # the lung mask: Otsu thresholds + morphology

# private: AnatPaste's own quantities, for which no standard code exists
ANOMALY_SCORE = _private("AP001", "Anomaly score")
THRESHOLD = _private("AP002", "Anomaly score threshold")
METHOD = _private("AP003", "AnatPaste self-supervised anomaly detection")
VERDICT = _private("AP004", "Result at the threshold")  # value: NORMAL / ABNORMAL (DCM Finding is TID 1501's type)
INPUT_CHECK = _private("AP010", "Input check")
ACCEPTED = _private("AP011", "Accepted")
FLAGGED = _private("AP012", "Flagged")
INPUT_FLAG = _private("AP013", "Input check flag")
INPUT_FIX = _private("AP014", "Input correction")
REVIEWER_VERDICT = _private("AP020", "Reviewer verdict on the AI result")
FLAG_CODES = {
    "no_lungs": _private("no_lungs", "No lung field found"),
    "unfamiliar": _private("unfamiliar", "Far outside the training data"),
    "unusual_layout": _private("unusual_layout", "Laid out unlike a frontal chest film"),
    "unusual_texture": _private("unusual_texture", "Texture unlike a radiograph"),
    "partial_film": _private("partial_film", "Shape unlike any film format"),
    "inverted": _private("inverted", "Grey scale inverted, re-inverted"),
}


def flag_code(flag: str) -> CodedConcept:
    """A gate flag's code; a flag added to the gate after this table gets its own name as code (<= 16 chars)."""
    return FLAG_CODES.get(flag) or _private(flag[:16], flag[:64])


def normality(label: str) -> CodedConcept:
    return ABNORMAL if label == "abnormal" else NORMAL


def scheme_identification() -> Dataset:
    """The Coding Scheme Identification Sequence item that declares the private scheme."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "AnatPaste open-source project"
    return item
