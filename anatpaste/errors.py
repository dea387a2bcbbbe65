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


class NotAChestRadiographError(RadiographError):
    """Readable, but not a frontal chest radiograph: a CT slice, a lateral view, a knee film, ...

    ``reason`` is a short machine-readable word (one of :data:`NOT_A_CHEST_REASONS`) that callers can
    store or branch on instead of parsing the message; ``detail`` is what was seen (e.g. the modality).
    """

    def __init__(self, message: str, *, reason: str, detail: str | None = None) -> None:
        if reason not in NOT_A_CHEST_REASONS:
            raise ValueError(f"unknown reason {reason!r}; expected one of {sorted(NOT_A_CHEST_REASONS)}")
        super().__init__(message)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # keyword-only arguments: keep the error picklable (worker processes)
        return _rebuild_not_a_chest, (str(self), self.reason, self.detail)


# The reasons an input gate may give, with what each means (docs/input-gate.md has the rules).
NOT_A_CHEST_REASONS: dict[str, str] = {
    "modality": "the DICOM Modality is not projection radiography (CT, MR, NM, US, ...)",
    "lateral": "a lateral view; only frontal (PA/AP) films are scored",
    "oblique": "an oblique view; only frontal (PA/AP) films are scored",
    "body_part": "the DICOM Body Part Examined names a region other than the chest",
    "orientation": "the film is rotated or upside down (the header says so, or the lung fields show it)",
    "inverted": "the grey scale is inverted (bones dark, lungs bright)",
    "no_lungs": "no plausible pair of lung fields was found",
    "unfamiliar": "the model's anomaly score is far beyond anything real films reach (outside its experience)",
    "unusual_layout": "the picture is laid out unlike the model's training films (crop, other view or body part)",
    "unusual_texture": "the picture's texture is unlike the model's training films (photograph, CT or MR slice)",
    "partial_film": "the picture's shape is unlike any film format (a strip cut out of a film?)",
}


def _rebuild_not_a_chest(message: str, reason: str, detail: str | None) -> NotAChestRadiographError:
    return NotAChestRadiographError(message, reason=reason, detail=detail)


class ModelFileError(AnatPasteError, ValueError):
    """A model file that is missing, corrupt, or of an incompatible version."""
