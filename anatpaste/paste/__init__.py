"""Synthetic anomalies: AnatPaste's patch paste restricted to the lung mask, batched in torch."""

from anatpaste.paste.anatpaste import AnatPaste, PasteParams

__all__ = ["AnatPaste", "PasteParams"]
