"""Writing a `.npy` array of frames one frame at a time, without knowing their number ahead.

The header is written first with room reserved for any shape, frames are appended, and the
header is rewritten with the real shape at the end. The file is a standard `.npy` (format 1.0,
the header padded with spaces as numpy itself does), so `np.load(path, mmap_mode="r")` reads it.
The bytes depend only on the frames, which keeps reruns byte-identical.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_TOTAL = 128  # magic + length + dict, a multiple of 64 as numpy requires


def _header(shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape!r}, }}"
    room = _HEADER_TOTAL - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} does not fit the reserved .npy header")
    text = text.ljust(room - 1) + "\n"
    return _MAGIC + struct.pack("<H", room) + text.encode("latin1")


class NpyFrameWriter:
    """Append (H, W, 3) uint8 frames of one size to `path`; `close()` fixes the header.

    Use as a context manager or call `close()`; `abort()` removes the partial file.
    """

    def __init__(self, path: str | Path, height: int, width: int):
        self.path = Path(path)
        self.height, self.width = height, width
        self.count = 0
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._f.write(_header((0, height, width, 3)))

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} does not match "
                             f"({self.height}, {self.width}, 3) uint8")
        self._f.write(np.ascontiguousarray(frame).tobytes())
        self.count += 1

    def close(self) -> int:
        """Finish the file; returns the number of frames."""
        if not self._f.closed:
            self._f.seek(0)
            self._f.write(_header((self.count, self.height, self.width, 3)))
            self._f.close()
        return self.count

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> NpyFrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
