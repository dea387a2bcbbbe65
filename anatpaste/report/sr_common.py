"""What the AI SR and the reviewer SR share: TID 1500 around one TID 1501 group on the source image."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset

from anatpaste.report import codes
from anatpaste.report.equipment import MANUFACTURER, NOT_FOR_DIAGNOSIS, software_versions


def measurement_report(
    source: Dataset,
    observation_context: hd.sr.ObservationContext,
    group: hd.sr.MeasurementsAndQualitativeEvaluations,
    comments: Sequence[str],
) -> hd.sr.MeasurementReport:
    """TID 1500 on ``source`` (in its Image Library), with TID 1500's Qualitative Evaluations container holding
    ``comments`` as TEXT items (the "not for diagnostic use" notice goes there: TID 1501 allows no text)."""
    report = hd.sr.MeasurementReport(
        observation_context=observation_context,
        procedure_reported=codes.CHEST_XRAY,
        imaging_measurements=[group],
    )
    items = report[0].ContentSequence
    items.insert(len(items) - 1, image_library(source))  # TID 1500 order: ..., Image Library, Imaging Measurements
    evaluations = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    evaluations.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=codes.COMMENT, value=text[:1024], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
            for text in comments
        ]
    )
    report[0].ContentSequence.append(evaluations)
    return report


_MODALITIES = {"CR": "Computed Radiography", "DX": "Digital Radiography"}
_ACQ = hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
_PIXELS = CodedConcept("{pixels}", "UCUM", "Pixels")
_MM = CodedConcept("mm", "UCUM", "millimeter")


def image_library(source: Dataset) -> hd.sr.ContainerContentItem:
    """TID 1600 with the source as its one entry: TID 1602 descriptors, and TID 1603's (orientation, imager
    pixel spacing) only where the header has them; highdicom's own Image Library requires both, and many real
    radiographs lack one (they are "MC: if known")."""
    modality = str(source.get("Modality") or "OT")
    descriptors = [
        hd.sr.CodeContentItem(
            name=codes_dcm("121139", "Modality"),
            relationship_type=_ACQ,
            value=CodedConcept(modality, "DCM", _MODALITIES.get(modality, modality)),
        ),
        hd.sr.NumContentItem(
            name=codes_dcm("110910", "Pixel Data Rows"), value=int(source.Rows), unit=_PIXELS, relationship_type=_ACQ
        ),
        hd.sr.NumContentItem(
            name=codes_dcm("110911", "Pixel Data Columns"),
            value=int(source.Columns),
            unit=_PIXELS,
            relationship_type=_ACQ,
        ),
    ]
    orientation = source.get("PatientOrientation")
    if orientation is not None and len(orientation) == 2 and all(orientation):
        descriptors += [
            hd.sr.TextContentItem(
                name=codes_dcm("111044", "Patient Orientation Row"), value=str(orientation[0]), relationship_type=_ACQ
            ),
            hd.sr.TextContentItem(
                name=codes_dcm("111043", "Patient Orientation Column"),
                value=str(orientation[1]),
                relationship_type=_ACQ,
            ),
        ]
    spacing = source.get("ImagerPixelSpacing")
    if spacing is not None and len(spacing) == 2:
        descriptors += [
            hd.sr.NumContentItem(
                name=codes_dcm("111026", "Horizontal Pixel Spacing"),
                value=float(spacing[1]),
                unit=_MM,
                relationship_type=_ACQ,
            ),
            hd.sr.NumContentItem(
                name=codes_dcm("111066", "Vertical Pixel Spacing"),
                value=float(spacing[0]),
                unit=_MM,
                relationship_type=_ACQ,
            ),
        ]
    image = hd.sr.ImageContentItem(
        name=CodedConcept("260753009", "SCT", "Source"),
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    image.ContentSequence = hd.sr.ContentSequence(descriptors)
    group = hd.sr.ContainerContentItem(
        name=codes_dcm("126200", "Image Library Group"), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    group.ContentSequence = hd.sr.ContentSequence([image])
    library = hd.sr.ContainerContentItem(
        name=codes_dcm("111028", "Image Library"), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def codes_dcm(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, "DCM", meaning)


def evaluation(name: CodedConcept, value: CodedConcept) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=name, value=value)


def source_reference(source: Dataset) -> list[hd.sr.SourceImageForMeasurementGroup]:
    return [hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]


def sr_document(
    source: Dataset,
    report: hd.sr.MeasurementReport,
    *,
    series_uid: str,
    series_number: int,
    sop_uid: str,
    model_version: str,
    description: str,
) -> hd.sr.ComprehensiveSR:
    """A Comprehensive SR in ``source``'s study (patient and study modules copied by highdicom from the evidence),
    final but not verified: no person attests the AI's content."""
    sr = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=True,
        is_verified=False,
        series_description=f"{description} - {NOT_FOR_DIAGNOSIS}"[:64],
    )
    sr.SoftwareVersions = software_versions(model_version)  # type: ignore[assignment]  # highdicom types it Tuple[str] (one item); it takes several
    sr.CodingSchemeIdentificationSequence = [codes.scheme_identification()]
    return sr
