"""Who made the objects, said honestly: open-source research software, not a medical device."""

from __future__ import annotations

from importlib import metadata

from anatpaste.report.uids import derived_uid

MANUFACTURER = "AnatPaste open-source project"
MODEL_NAME = "AnatPaste chest radiograph anomaly detector"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
RESEARCH_NOTICE = f"Research software result - {NOT_FOR_DIAGNOSIS}"
DEVICE_UID = derived_uid("device", MANUFACTURER, MODEL_NAME)  # the SR's device observer


def package_version() -> str:
    try:
        return metadata.version("anatpaste")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def software_versions(model_version: str) -> list[str]:
    """Software Versions (LO, 64 chars each): the code, then the trained model file it ran."""
    return [f"anatpaste {package_version()}"[:64], model_version[:64]]
