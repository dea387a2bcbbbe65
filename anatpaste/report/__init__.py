"""DICOM objects for a scored radiograph, beside it in its study: an SR with the result, a SEG of the lungs,
a secondary capture of the heatmap, and a reviewer's SR (docs/dicom-write-back.md)."""

from anatpaste.report.build import KINDS, build_objects, write_objects
from anatpaste.report.finding import Finding, Review
from anatpaste.report.review_sr import review_sr

__all__ = ["KINDS", "Finding", "Review", "build_objects", "review_sr", "write_objects"]
