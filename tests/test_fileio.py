"""File helpers (mae_utils.util.fileio): atomic writes, environment errors that name the path, file
hashes, and the temporary files a killed writer leaves behind."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mae_utils.util.errors import UserError
from mae_utils.util.fileio import (
    atomic_write,
    atomic_write_text,
    environment_error,
    file_sha256,
    pid_alive,
    remove_dead_tmp_files,
)


def test_atomic_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    atomic_write_text(path, "new \u00e9")
    assert path.read_text(encoding="utf-8") == "new \u00e9"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    seen = []

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half of the n")
        seen.append(tmp)
        raise KeyboardInterrupt  # stopped mid-write: not an OSError, passed on as it is

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old" and not seen[0].exists()
    assert seen[0].name == f".record.json.{os.getpid()}.tmp"  # the writer's pid, for cleaning up


def test_a_full_disk_is_a_user_error_naming_the_path_and_the_way_out(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")

    def disk_full(tmp: Path) -> None:
        tmp.write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError) as info:
        atomic_write(path, disk_full)
    assert str(info.value) == (f"cannot write {path}: No space left on device; "
                               "free some space or choose another folder")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_environment_errors_give_a_hint_only_where_there_is_one(tmp_path):
    denied = environment_error(OSError(errno.EACCES, "Permission denied"), tmp_path, "create")
    assert str(denied) == f"cannot create {tmp_path}: Permission denied; choose a folder you can write to"
    other = environment_error(OSError(errno.EIO, "Input/output error"), "x.bin", "read")
    assert str(other) == "cannot read x.bin: Input/output error"


def test_file_sha256_matches_hashlib_across_read_blocks(tmp_path):
    path = tmp_path / "weights.bin"
    data = os.urandom((1 << 22) + 123)  # more than one 4 MiB block
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit changed in the second block
    assert file_sha256(path) != hashlib.sha256(data).hexdigest()


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(done.stdout)  # a process that has exited
    assert pid_alive(os.getpid()) and not pid_alive(dead_pid) and not pid_alive(0)
    dead = tmp_path / f".cache.npy.{dead_pid}.tmp"
    live = tmp_path / f".cache.npy.{os.getpid()}.tmp"
    odd = tmp_path / ".cache.npy.notapid.tmp"
    for p in (dead, live, odd):
        p.write_bytes(b"partial")
    assert remove_dead_tmp_files(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and odd.exists()
