"""Device selection shared by training and inference (no device work at import time)."""

from __future__ import annotations

import torch


class DeviceError(Exception):
    """A device that does not exist or is not available here; the message is one line."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") \
            from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name} requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not _mps_available():
        raise DeviceError(f"device {name} requested but MPS is not available; use --device cpu")
    return dev
