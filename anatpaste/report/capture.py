"""The heatmap as a Secondary Capture: the film with the heatmap and lung outline burned in, plus a notice.

A secondary capture is the one image object every PACS viewer shows; the numbers behind it are in the SR.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from anatpaste.report.equipment import MANUFACTURER, MODEL_NAME, NOT_FOR_DIAGNOSIS, RESEARCH_NOTICE, software_versions
from anatpaste.report.finding import Finding
from anatpaste.report.uids import SERIES_NUMBER, instance_uid, series_uid
from anatpaste.score.overlay import render_overlay


def _with_notice(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """Burn ``lines`` into the top-left corner on a dark band, sized to the image."""
    img = Image.fromarray(rgb)
    size = max(12, rgb.shape[0] // 40)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(img)
    y: float = size // 2  # then below each line's box, whose edges Pillow gives as floats
    for line in lines:
        box = draw.textbbox((size // 2, y), line, font=font)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.text((size // 2, y), line, fill=(255, 255, 0), font=font)
        y = box[3] + size // 3
    return np.asarray(img)


def heatmap_capture(source: Dataset, finding: Finding) -> hd.sc.SCImage:
    """RGB, 8 bits, the source's pixel grid; Burned In Annotation YES (the notice and the result are in it)."""
    if finding.heatmap is None or finding.display is None:
        raise ValueError("a heatmap capture needs the finding's heatmap and the film as scored")
    rgb = render_overlay(
        finding.display, finding.heatmap, finding.lung_mask, finding.heat_display_max, coloured=finding.heatmap_coloured
    )
    lines = [
        RESEARCH_NOTICE,
        f"AnatPaste anomaly heatmap - score {finding.score:.2f} (threshold {finding.threshold:.2f}): {finding.label}",
        finding.model_version,
    ]
    if not finding.heatmap_coloured:
        lines.append("no heatmap colour: the score is below the threshold")
    rgb = _with_notice(rgb, lines)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid(source.StudyInstanceUID, "map", finding.model_version),
        series_number=SERIES_NUMBER["map"],
        sop_instance_uid=instance_uid(source.SOPInstanceUID, "map", finding.model_version),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=_orientation(source) or ("L", "F"),  # highdicom insists; replaced below
        series_description=f"AnatPaste heatmap - {NOT_FOR_DIAGNOSIS}"[:64],
    )
    sc.PatientOrientation = list(_orientation(source) or [])  # Type 2: empty when the source did not say
    sc.Laterality = ""  # Type 2C (General Series); the chest is unpaired and the film's side is not known here
    sc.ManufacturerModelName = MODEL_NAME
    sc.SoftwareVersions = software_versions(finding.model_version)  # type: ignore[assignment]  # highdicom types it Tuple[str] (one item); it takes several
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = "AnatPaste anomaly heatmap over the film as scored; " + NOT_FOR_DIAGNOSIS
    sc.ImageComments = RESEARCH_NOTICE
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID = source.SOPClassUID
    source_ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [source_ref]
    if len(sc.PixelData) % 2:  # an odd number of RGB pixels: DICOM values have even length
        sc.PixelData += b"\0"
    return sc


def _orientation(source: Dataset) -> tuple[str, str] | None:
    """The source's Patient Orientation (the header copy keeps only a valid one)."""
    value = source.get("PatientOrientation")
    return (str(value[0]), str(value[1])) if value else None
