"""The largest radiograph the server accepts, which bounds the memory of one request.

An ``output=all`` answer holds the radiograph, its heatmap and lung mask at full resolution and a float32
2-component NRRD of them, copied once more into the multipart body: a 7700 x 7700 PNG (59 M pixels, under
the core's own limit of 60 M) took 2.2 GB at peak and answered 474 MB. Chest radiographs are at most about
4300 x 4300 (43 cm at 100 um), so the server refuses more than ``DEFAULT_MAX_PIXELS`` (5000 x 5000) with 422
``ImageTooLargeError``; ``--conf max_pixels N`` changes it. At the limit one ``output=all`` request needs
at most ``MAX_REQUEST_BYTES_PER_PIXEL`` bytes per pixel beyond the server's resting memory (measured by
tests/server/test_server_hardening.py) and answers 8 bytes per pixel of NRRD (200 MB).
"""

from __future__ import annotations

DEFAULT_MAX_PIXELS = 25_000_000
CORE_MAX_PIXELS = 60_000_000  # anatpaste.io.read_radiograph's own limit
MAX_REQUEST_BYTES_PER_PIXEL = 48  # the stated bound: 1.2 GB at the default limit


def max_pixels(conf: dict[str, str]) -> int:
    """``--conf max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`), between 1 M and the core's limit.

    Raises:
        ValueError: not an integer in that range.
    """
    value = int(conf.get("max_pixels", DEFAULT_MAX_PIXELS))
    if not 1_000_000 <= value <= CORE_MAX_PIXELS:
        raise ValueError(f"max_pixels must be in [1000000, {CORE_MAX_PIXELS}], got {value}")
    return value
