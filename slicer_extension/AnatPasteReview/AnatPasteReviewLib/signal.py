"""A minimal pure-Python signal: custom Qt signals are awkward from PythonQt, and the Lib must run
without Qt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Signal:
    """Call every connected slot with the emitted arguments, in connection order.

    Example:
        >>> changed = Signal()
        >>> seen = []
        >>> changed.connect(seen.append)
        >>> changed.emit(3)
        >>> seen
        [3]
    """

    def __init__(self):
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            slot(*args)
