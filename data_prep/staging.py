"""Temporary names beside an output, and removing the ones a killed process left behind.

Every command builds its output under a hidden name next to the final one that carries the
writer's PID (`.NAME.partial-PID...`, `.NAME.old-PID...`) and renames it into place at the
end. A SIGKILL (or a power cut) skips the clean-up, so each command calls `remove_stale` for
its output's names before it starts: entries whose PID no longer runs are deleted. The PID
test is per machine; a PID reused since is taken as alive, so nothing in use is ever removed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from pathlib import Path

_PID = re.compile(r"(\d+)")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user counts as alive)."""
    if pid <= 0:
        return True  # never ours to judge (0 and negatives address process groups)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is just not ours
        return True
    return True


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree; missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Delete entries of `parent` named `PREFIX<PID>...` whose PID is not running (the digits
    right after the prefix are the PID). Returns what was removed."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        m = _PID.match(p.name, len(prefix))
        if m is None or pid_alive(int(m.group(1))):
            continue
        remove_path(p)
        removed.append(p)
    return removed


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE), so `b`
    always names a complete tree. Returns False where the system or file system cannot, and
    the caller falls back to two renames."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
