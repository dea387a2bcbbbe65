"""Readers: PNG, JPEG and DICOM chest radiographs -> :class:`Radiograph` in the core's image contract."""

from anatpaste.io.radiograph import Radiograph
from anatpaste.io.read import SUPPORTED_SUFFIXES, read_radiograph

__all__ = ["SUPPORTED_SUFFIXES", "Radiograph", "read_radiograph"]
