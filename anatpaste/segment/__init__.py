"""Unsupervised lung segmentation of chest radiographs (overlap with reference masks: ``anatpaste.evaluate``)."""

from anatpaste.segment.lungs import DEFAULT_METHOD, METHODS, prior_lungs, segment_lungs

__all__ = ["DEFAULT_METHOD", "METHODS", "prior_lungs", "segment_lungs"]
