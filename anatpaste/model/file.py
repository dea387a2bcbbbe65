"""The model file: everything needed to score, in a format that loads with ``torch.load(weights_only=True)``.

Contents: format tag and version, encoder weights (int8 per-output-channel for the big convolution and
linear weights when ``quantize=True``, else fp32), the image Gaussian, the heatmap Gaussians, the operating
threshold with how it was chosen, preprocessing, and a summary of the training data and run.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from anatpaste.errors import ModelFileError
from anatpaste.model.resnet import ResNet18Encoder

FORMAT = "anatpaste-model"
FORMAT_VERSION = 1


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Symmetric int8 per output channel for weights with ≥ 2 dims; everything else kept in fp32."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if v.is_floating_point() and v.ndim >= 2:
            scale = v.abs().reshape(v.shape[0], -1).amax(1).clamp_min(1e-12) / 127.0
            q = torch.round(v / scale.view(-1, *([1] * (v.ndim - 1)))).clamp(-127, 127).to(torch.int8)
            out[k] = {"q": q, "scale": scale.float()}
        else:
            out[k] = v.float() if v.is_floating_point() else v
    return out


def dequantize_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_state` (fp32 tensors pass through)."""
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out[k] = v["q"].float() * v["scale"].view(-1, *([1] * (v["q"].ndim - 1)))
        else:
            out[k] = v
    return out


def save_model(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically (temporary file in the same folder, fsync, rename) and verify it loads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    buf = io.BytesIO()
    torch.save(payload, buf)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        load_model(tmp)  # never publish a file that does not load
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a model must be readable like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_model(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a model file.

    Raises:
        ModelFileError: missing, unreadable, not an AnatPaste model, or of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a corrupt zip/pickle
        raise ModelFileError(f"cannot read model file {path}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an AnatPaste model file")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {payload['format_version']}; this anatpaste reads up to {FORMAT_VERSION}"
        )
    for key in ("encoder", "gaussian", "heatmap", "threshold", "preprocessing"):
        if key not in payload:
            raise ModelFileError(f"{path} lacks '{key}'")
    return payload


def encoder_of(payload: dict[str, Any]) -> ResNet18Encoder:
    """A loaded model file's encoder as stored (int8 weights dequantised), in eval mode on the CPU."""
    enc = ResNet18Encoder(in_channels=1)
    enc.load_state_dict(dequantize_state(payload["encoder"]))
    return enc.eval()
