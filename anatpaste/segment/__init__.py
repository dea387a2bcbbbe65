"""Unsupervised lung segmentation of chest radiographs and mask overlap scores."""

from anatpaste.segment.lungs import DEFAULT_METHOD, METHODS, prior_lungs, segment_lungs
from anatpaste.segment.metrics import dice, iou

__all__ = ["DEFAULT_METHOD", "METHODS", "dice", "iou", "prior_lungs", "segment_lungs"]
