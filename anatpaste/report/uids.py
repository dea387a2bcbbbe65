"""UIDs derived from what an object says, so that writing the same result twice names the same instance.

A rerun with the same model on the same image yields the same SOP Instance UID: an archive that already holds
it keeps its one copy (Orthanc answers "AlreadyStored"), whatever the server's own record of writes says.
"""

from __future__ import annotations

import hashlib
import uuid

# Series numbers of the written series: high, so a PACS lists them after the acquisition's own.
SERIES_NUMBER = {"sr": 9901, "seg": 9902, "map": 9903, "review": 9904}


def derived_uid(*parts: str) -> str:
    """A ``2.25.`` UID (PS3.5 B.2: from a UUID, no registered root needed) that is a function of ``parts``.

    pydicom 2's ``generate_uid(prefix=None)`` ignores its entropy sources (a random UUID): hence our own.
    """
    digest = hashlib.sha256("\x1f".join(["anatpaste-report", *parts]).encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=5).int}"


def series_uid(study_uid: str, kind: str, key: str) -> str:
    """One series per study, kind and model version (or reviewer): a version's SRs of a study sit together."""
    return derived_uid("series", study_uid, kind, key)


def instance_uid(source_uid: str, kind: str, key: str) -> str:
    return derived_uid("instance", source_uid, kind, key)
