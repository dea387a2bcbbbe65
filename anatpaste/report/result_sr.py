"""The AI result as a TID 1500 Comprehensive SR: score, threshold, normal/abnormal, model, input check."""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset

from anatpaste.report import codes
from anatpaste.report.equipment import DEVICE_UID, MANUFACTURER, MODEL_NAME, RESEARCH_NOTICE
from anatpaste.report.finding import Finding
from anatpaste.report.sr_common import evaluation, measurement_report, source_reference, sr_document
from anatpaste.report.uids import SERIES_NUMBER, instance_uid, series_uid


def _device_context(model_version: str) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=DEVICE_UID,
        name="AnatPaste",
        manufacturer_name=MANUFACTURER,
        model_name=MODEL_NAME,
        serial_number=model_version[:64],  # software has no serial number: the model file it ran stands in
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"), observer_identifying_attributes=device
        )
    )


def result_sr(source: Dataset, finding: Finding) -> hd.sr.ComprehensiveSR:
    """The SR of ``finding`` on the radiograph ``source``; its UIDs depend on the source and the model version."""
    algorithm = hd.sr.AlgorithmIdentification(
        name="AnatPaste", version=finding.model_version[:64], parameters=[f"threshold={finding.threshold:.6g}"]
    )
    score = hd.sr.Measurement(
        name=codes.ANOMALY_SCORE,
        value=round(finding.score, 6),
        unit=codes.NO_UNITS,
        algorithm_id=algorithm,
        method=codes.METHOD,
        finding_sites=[hd.sr.FindingSite(codes.THORAX)],
        properties=hd.sr.MeasurementProperties(normality=codes.normality(finding.label)),
    )
    threshold = hd.sr.Measurement(
        name=codes.THRESHOLD,
        value=round(finding.threshold, 6),
        unit=codes.NO_UNITS,
        algorithm_id=algorithm,
    )
    verdicts = [
        evaluation(codes.VERDICT, codes.normality(finding.label)),
        evaluation(codes.INPUT_CHECK, codes.FLAGGED if finding.flags else codes.ACCEPTED),
        *(evaluation(codes.INPUT_FLAG, codes.flag_code(f)) for f in finding.flags),
        *(evaluation(codes.INPUT_FIX, codes.flag_code(f)) for f in finding.fixed),
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=instance_uid(source.SOPInstanceUID, "tracking", finding.model_version),
            identifier="AnatPaste anomaly score",
        ),
        method=codes.METHOD,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.THORAX)],
        measurements=[score, threshold],
        qualitative_evaluations=verdicts,
        source_images=source_reference(source),
    )
    comments = [
        f"{RESEARCH_NOTICE}. Self-supervised anomaly score of a frontal chest radiograph (AnatPaste, trained on "
        "normal films only); it says how unlike the model's normals the film is, not which disease it shows.",
        f"Score {finding.score:.4f}, threshold {finding.threshold:.4f}: {finding.label}. Input check: "
        f"{finding.gate_verdict}" + (f" ({', '.join(finding.flags)})" if finding.flags else "") + ".",
    ]
    report = measurement_report(source, _device_context(finding.model_version), group, comments)
    return sr_document(
        source,
        report,
        series_uid=series_uid(source.StudyInstanceUID, "sr", finding.model_version),
        series_number=SERIES_NUMBER["sr"],
        sop_uid=instance_uid(source.SOPInstanceUID, "sr", finding.model_version),
        model_version=finding.model_version,
        description="AnatPaste anomaly score",
    )
