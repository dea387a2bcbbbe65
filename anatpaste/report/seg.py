"""The lung mask as a binary DICOM SEG on the source radiograph (any PACS with SEG support overlays it)."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from anatpaste.report import codes
from anatpaste.report.equipment import MANUFACTURER, MODEL_NAME, NOT_FOR_DIAGNOSIS, software_versions
from anatpaste.report.uids import SERIES_NUMBER, instance_uid, series_uid


def lung_seg(source: Dataset, lung_mask: np.ndarray, model_version: str) -> hd.seg.Segmentation:
    """One segment, "Lung fields", in the source's pixel grid (Rows x Columns, row 0 = top)."""
    mask = np.asarray(lung_mask, dtype=bool)
    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"lung mask {mask.shape} is not on the source's grid {source.Rows}x{source.Columns}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="AnatPaste lung fields",
        family=codes.HISTOGRAM_ANALYSIS,
        version=model_version[:64],
        source=MANUFACTURER,
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lung fields",
        segmented_property_category=codes.ANATOMICAL_STRUCTURE,
        segmented_property_type=codes.LUNG,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=mask[None].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series_uid(source.StudyInstanceUID, "seg", model_version),
        series_number=SERIES_NUMBER["seg"],
        sop_instance_uid=instance_uid(source.SOPInstanceUID, "seg", model_version),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=software_versions(model_version),  # type: ignore[arg-type]  # as in sr_common
        device_serial_number=model_version[:64],  # software: the model file stands in for a serial number
        series_description=f"AnatPaste lung fields - {NOT_FOR_DIAGNOSIS}"[:64],
        content_description=NOT_FOR_DIAGNOSIS[:64],
        content_label="LUNGS",
    )
    # Type 2C without a frame of reference: the source's orientation, or empty (unknown), never guessed
    seg.PatientOrientation = source.get("PatientOrientation") or ""
    return seg
