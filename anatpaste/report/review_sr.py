"""A reviewer's verdict as its own TID 1500 SR: the person (or "unknown" without auth), the time, normal/abnormal."""

from __future__ import annotations

import datetime as _dt

import highdicom as hd
from pydicom.dataset import Dataset

from anatpaste.report import codes
from anatpaste.report.equipment import RESEARCH_NOTICE
from anatpaste.report.finding import Review
from anatpaste.report.source import source_header
from anatpaste.report.sr_common import evaluation, measurement_report, source_reference, sr_document
from anatpaste.report.uids import SERIES_NUMBER, instance_uid, series_uid

UNKNOWN_REVIEWER = "UNKNOWN^REVIEWER"  # the server ran without auth: no user name to record


def _person_name(user: str | None) -> str:
    """A user name as a DICOM PN: one component, no PN delimiters, at most 64 characters."""
    if not user:
        return UNKNOWN_REVIEWER
    name = "".join(c for c in user if c not in "^=\\")[:63]
    return f"{name}^" if name else UNKNOWN_REVIEWER  # the caret: one component (family name) on purpose


def review_sr(source: Dataset, review: Review) -> hd.sr.ComprehensiveSR:
    """The SR of ``review`` on ``source``; one instance per (image, reviewer, time, verdict)."""
    source = source_header(source)
    key = f"{review.reviewer}|{review.reviewed_at}|{review.verdict}"
    person = hd.sr.PersonObserverIdentifyingAttributes(name=_person_name(review.reviewer))
    context = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"), observer_identifying_attributes=person
        )
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=instance_uid(source.SOPInstanceUID, "tracking", key), identifier="AnatPaste review"
        ),
        qualitative_evaluations=[evaluation(codes.REVIEWER_VERDICT, codes.normality(review.verdict))],
        source_images=source_reference(source),
    )
    seen = (
        f"AnatPaste model {review.ai_model_version} scored {review.ai_score:.4f} ({review.ai_label})"
        if review.ai_score is not None
        else "no AnatPaste score was shown"
    )
    comments = [
        f"{RESEARCH_NOTICE}. Reviewer's verdict on the AnatPaste result: {review.verdict}, at "
        f"{review.reviewed_at} by {review.reviewer or 'an unidentified user (server without sign-in)'}; "
        f"{seen}."
    ]
    report = measurement_report(source, context, group, comments)
    sr = sr_document(
        source,
        report,
        series_uid=series_uid(source.StudyInstanceUID, "review", "reviews"),
        series_number=SERIES_NUMBER["review"],
        sop_uid=instance_uid(source.SOPInstanceUID, "review", key),
        model_version=review.ai_model_version or "no model",
        description="AnatPaste review",
    )
    when = _dt.datetime.fromisoformat(review.reviewed_at)
    sr.ObservationDateTime = when.strftime("%Y%m%d%H%M%S")  # the verdict's time (UTC), not the SR's writing
    sr.TimezoneOffsetFromUTC = when.strftime("%z") or "+0000"
    return sr
