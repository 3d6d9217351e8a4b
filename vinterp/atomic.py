"""One way to write a file all or nothing (checkpoints, reports, image strips).

The body writes to a temporary file `.NAME.PID-HEX.tmp` beside the target (same folder, so the
final rename is atomic on POSIX and Windows; the PID lets a later run tell a dead writer's
leftover from a live one, see `checkpoint.remove_stale_temporaries`); the file is flushed,
fsynced and renamed over the target, with the permissions a plain `open()` gives. If the
body raises (Ctrl-C and SIGTERM included, see `vinterp.interrupts`), the temporary file is
removed and the target is left as it was: a reader never sees half a file under the final
name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb",
                 encoding: str | None = None) -> Iterator[IO]:
    """`with atomic_write(path) as f: ...` writes `path` atomically (see the module docstring).

    mode: "wb" or "w" (text, `encoding` default utf-8). Creates missing parent folders.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        text = {"encoding": encoding or "utf-8"} if mode == "w" else {}
        with open(tmp, mode.replace("w", "x"), **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """`text` (utf-8) to `path` atomically; returns the path."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


__all__ = ["atomic_write", "write_text_atomic"]
