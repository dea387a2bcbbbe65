"""Typed errors for bad input: callers (CLI, server) map them to clear messages / 4xx answers."""


class AnatPasteError(Exception):
    """Base class of every error this package raises on purpose."""


class RadiographError(AnatPasteError, ValueError):
    """The input cannot be used as a chest radiograph."""


class UnreadableImageError(RadiographError):
    """The file is missing, truncated, corrupt or of an unknown format."""


class NoPixelDataError(RadiographError):
    """A DICOM file without pixel data (e.g. a structured report or a header-only object)."""


class UnsupportedImageError(RadiographError):
    """Readable, but not a 2-D grey radiograph: a volume, a colour photo, a multi-frame object, ..."""


class ImageTooSmallError(RadiographError):
    """Too few pixels to hold a chest radiograph (e.g. a 1x1 image)."""


class ImageTooLargeError(RadiographError):
    """More pixels or bytes than the reader accepts (protects the server's memory)."""


class ModelFileError(AnatPasteError, ValueError):
    """A model file that is missing, corrupt, or of an incompatible version."""
