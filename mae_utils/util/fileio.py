"""Small file-system helpers shared by the run folder, checkpoints, the data cache and evaluation.

One home for writing a text file atomically (a reader sees the old file or the new one, never half
of one), for turning a failure of the environment (disk full, read-only folder, permission denied)
into a :class:`~mae_utils.util.errors.UserError` that names the path, and for telling whether a
process that left a temporary file or a lock behind is still alive.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
from pathlib import Path
from typing import Callable

from .errors import UserError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "environment_error",
    "file_sha256",
    "host_name",
    "pid_alive",
    "remove_dead_tmp_files",
]


def environment_error(exc: OSError, path: str | Path, doing: str) -> UserError:
    """A one-line :class:`UserError` for an ``OSError``
    met while ``doing`` something to ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "; free some space or choose another folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; choose a folder you can write to"
    return UserError(f"cannot {doing} {path}: {reason}{hint}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Have ``write(tmp)`` write a temporary file in
    ``path``'s folder, then make it ``path`` by one rename.

    The temporary name carries the writer's pid (``.NAME.PID.tmp``), so concurrent writers never
    share one, and :func:`remove_dead_tmp_files` can clear what a killed writer left. Any failure
    removes the temporary file; an OS failure becomes a :class:`UserError` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise environment_error(exc, path, "write") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_write`:
    a reader sees the old file or the new one."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)

    atomic_write(path, write)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine
    (a process we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def host_name() -> str:
    return socket.gethostname()


def remove_dead_tmp_files(folder: Path, pattern: str = ".*.tmp") -> list[Path]:
    """Delete ``.NAME.PID.tmp`` files in ``folder`` whose writer (PID) is no longer running.

    Files from live processes are kept (another run may be writing the same shared cache).
    Returns what was removed.
    """
    removed = []
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return removed
    for tmp in candidates:
        parts = tmp.name.rsplit(".", 2)  # [".NAME", "PID", "tmp"]
        if len(parts) != 3 or not parts[1].isdigit() or pid_alive(int(parts[1])):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed
