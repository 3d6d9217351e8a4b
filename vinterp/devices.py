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


# glibc hands every freed block above its mmap threshold (at most 32 MB by default) straight
# back to the OS, so each full-resolution tensor of a frame pair (the 45-channel field upsample
# alone is 41 MB at 640x360) is mapped and page-faulted in anew: 1.5 million minor faults and a
# fifth of the upsample loop on a 40-frame clip. Raising the thresholds keeps freed blocks for
# reuse; memory stays flat because the next pair needs the same sizes. One arena: `upsample`
# interpolates two pairs at once on two threads, and with an arena per thread a block freed
# by one was not reused by the other (4x the page faults, +25% peak memory on sam2_bedroom).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
REUSE_BYTES = 1 << 30


def reuse_freed_memory() -> bool:
    """Make the C allocator keep freed blocks up to `REUSE_BYTES` instead of unmapping them,
    in one arena for all threads (process-wide, like torch's thread count; the arena setting
    only holds if no thread has allocated yet, so `upsample_file` calls this first).
    Returns whether it applied: glibc only; False elsewhere (macOS, musl, Windows), where
    nothing changes."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all([mallopt(_M_MMAP_THRESHOLD, REUSE_BYTES), mallopt(_M_TRIM_THRESHOLD, REUSE_BYTES),
                mallopt(_M_ARENA_MAX, 1)])
