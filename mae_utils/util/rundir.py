"""The life of a run folder: one run at a time, nothing
lost on ``--overwrite``, nothing left by a failure.

:class:`RunFolder` implements the rules written once in ``docs/runs.md`` ("Reliability of a run
folder"): the ``RUN/.lock`` taken before anything is read, what counts as a run (a saved
checkpoint), ``--overwrite`` moving the old run into ``RUN/.replaced/`` until the new one has a
checkpoint, rollback of a failed start, and removal of killed writers' temporaries.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from .checkpoint import resolve
from .errors import UserError
from .fileio import (
    atomic_write_text,
    environment_error,
    host_name,
    pid_alive,
    remove_dead_tmp_files,
)

__all__ = ["LOCK_FILE", "REFINER_DIR", "REPLACED_DIR", "RUN_ENTRIES", "RunFolder",
           "holds_checkpoint", "is_run_folder", "new_run_id", "read_lock", "read_run_id",
           "stamp_split"]

LOCK_FILE = ".lock"
REPLACED_DIR = ".replaced"
#: The seam refiner's folder (mae_utils.tools.refine): trained on this run's weights, so it is the
#: run's.
REFINER_DIR = "refiner"
#: What a training run writes into its folder (everything else there is the user's and left alone);
#: the refiner is among them so that ``--overwrite`` replaces it with the weights it was trained on.
RUN_ENTRIES = (
    "config.json", "split.json", "metrics.jsonl", "log.txt", "checkpoints", "samples", "eval",
    REFINER_DIR,
)


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a training run's folder: a ``config.json`` with the run's image and patch
    sizes, and at least one other thing a run writes (checkpoints, split, metrics, figures): its
    ``samples/*.png`` are not faces."""
    path = Path(path)
    if not any((path / n).exists() for n in RUN_ENTRIES[1:]):
        return False
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"image_size", "patch_size"} <= set(config)


def holds_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir/checkpoints`` has a complete
    checkpoint (``last`` or ``best``, or their ``.old``)."""
    for name in ("last", "best"):
        try:
            resolve(run_dir / "checkpoints" / name)
            return True
        except UserError:
            continue
    return False


def new_run_id() -> str:
    """A fresh id for a run; config.json, split.json and every checkpoint of the run carry it."""
    return uuid.uuid4().hex


def read_run_id(run_dir: Path) -> str:
    """The id recorded in ``run_dir/config.json`` (a
    new one for runs written before ids existed)."""
    try:
        return str(json.loads((run_dir / "config.json").read_text()).get("run_id") or new_run_id())
    except (OSError, ValueError, AttributeError):
        return new_run_id()


def stamp_split(path: Path, run_id: str) -> None:
    """Record the run's id in its split.json, so evaluate
    can tell a split that belongs to another run."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(record, dict) and record.get("run_id") != run_id:
        atomic_write_text(path, json.dumps({**record, "run_id": run_id}, indent=1) + "\n")


def read_lock(lock: Path) -> dict | None:
    """The owner recorded in a lock file, or None if it cannot be read."""
    try:
        data = json.loads(lock.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _is_stale(owner: dict | None) -> bool:
    """A lock of a process on this machine that is no longer running."""
    return owner is not None and owner.get("host") == host_name() and not pid_alive(owner["pid"])


def _lock_owner(owner: dict | None) -> str:
    if owner is None:
        return "an unreadable lock"
    return f"process {owner['pid']} on {owner.get('host', '?')}, since {owner.get('started', '?')}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class RunFolder:
    """One training attempt's hold on its run folder; see the module docstring for the rules.

    ``open()`` before anything is written; ``committed()`` after the first checkpoint is saved;
    ``close(failed)`` at the end (``failed=True`` before a commit rolls the folder back).
    ``notes`` collects what a start did that the run's log should mention.
    """

    def __init__(self, path: str | Path, *, resume: bool, overwrite: bool) -> None:
        self.path = Path(path)
        self.resume, self.overwrite = resume, overwrite
        self.notes: list[str] = []
        self.has_checkpoint = False
        self.is_committed = False
        self._created: list[Path] = []  # folders this attempt made, outermost first
        self._snapshot: set[str] = set()
        self._locked = False

    # ------------------------------------------------------------------ start
    def open(self) -> "RunFolder":
        self._make_folder()
        try:
            self._lock()
            self._recover_replaced()
            self._remove_temporaries()
            self.has_checkpoint = holds_checkpoint(self.path)
            self._check_mode()
            self._snapshot = set(os.listdir(self.path))
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def _make_folder(self) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise UserError(f"out_dir {path} is a file, not a folder; choose another --out-dir")
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        if p.exists() and not p.is_dir():
            raise UserError(
                f"out_dir {path}: {p} is a file, not a folder; choose another --out-dir"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise environment_error(exc, path, "create out_dir") from None
        self._created = list(reversed(missing))

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        record = {"pid": os.getpid(), "host": host_name(), "started": started}
        tmp = self.path / f".lock.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(record) + "\n")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise environment_error(exc, self.path, "write to out_dir") from None
        try:
            for _ in range(3):
                try:
                    # atomic: fails if a lock exists, and the lock is never half-written
                    os.link(tmp, lock)
                    self._locked = True
                    return
                except FileExistsError:
                    owner = read_lock(lock)
                    if _is_stale(owner):
                        lock.unlink(missing_ok=True)
                        self.notes.append(
                            f"removed a stale lock: process {owner['pid']} (started "
                            f"{owner.get('started', '?')}) is no longer running"
                        )
                        continue
                    raise UserError(
                        f"out_dir {self.path} is in use by another run ({_lock_owner(owner)}); "
                        f"wait for it to finish or choose another --out-dir (if no such process "
                        f"is running, delete {lock})"
                    )
                except OSError as exc:
                    raise environment_error(exc, self.path, "lock out_dir") from None
            raise UserError(f"could not lock out_dir {self.path}: its lock keeps changing")
        finally:
            tmp.unlink(missing_ok=True)

    def _recover_replaced(self) -> None:
        """Finish what an ``--overwrite`` that was killed
        left: keep the new run if it saved, else restore."""
        aside = self.path / REPLACED_DIR
        if not aside.is_dir():
            return
        if holds_checkpoint(self.path):
            shutil.rmtree(aside, ignore_errors=True)
            self.notes.append(f"removed {aside}: the run that replaced it had saved a checkpoint")
            return
        self._remove_entries(RUN_ENTRIES)
        self._move_back(aside)
        self.notes.append(
            "restored the previous run, which an interrupted --overwrite had moved aside"
        )

    def _remove_temporaries(self) -> None:
        removed = []
        ckpts = self.path / "checkpoints"
        if ckpts.is_dir():
            # checkpoint saves that were killed (lock held: none live)
            for tmp in ckpts.glob(".*.tmp-*"):
                _remove(tmp)
                removed.append(tmp)
        for folder in (self.path, self.path / "eval"):
            if folder.is_dir():
                removed += remove_dead_tmp_files(folder)
        if removed:
            names = ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
            what = f"{len(removed)} temporary file(s) left by killed writes"
            self.notes.append(f"removed {what}: {names}")

    def _check_mode(self) -> None:
        path = self.path
        leftovers = [n for n in RUN_ENTRIES if (path / n).exists()]
        if self.resume:
            if not (path / "config.json").is_file():
                raise UserError(f"cannot resume: {path}/config.json not found")
            if not self.has_checkpoint:
                self.notes.append(
                    f"{path} has no checkpoint yet (its run stopped during the first epoch): "
                    "starting it from epoch 0 with its saved settings"
                )
            return
        if self.has_checkpoint:
            if not self.overwrite:
                raise UserError(
                    f"out_dir {path} already holds a run; resume it with --resume {path}, "
                    f"pick another --out-dir, or pass --overwrite"
                )
            aside = path / REPLACED_DIR
            aside.mkdir()
            for name in leftovers:
                os.replace(path / name, aside / name)
            self.notes.append(
                f"--overwrite: moved the previous run's {', '.join(leftovers)} into {aside}; "
                "they are deleted once this run saves its first checkpoint"
            )
        elif leftovers:
            self._remove_entries(leftovers)
            self.notes.append(
                f"removed {', '.join(leftovers)} left by an earlier attempt that never saved "
                "a checkpoint"
            )

    # ------------------------------------------------------------------ progress and end
    def committed(self) -> list[str]:
        """The run saved a checkpoint: from now on the
        folder is its. Deletes a moved-aside old run."""
        notes = []
        if not self.is_committed:
            self.is_committed = True
            aside = self.path / REPLACED_DIR
            if aside.is_dir():
                kept = self._keep_evaluations(aside)
                if kept is not None:
                    notes.append(
                        f"--overwrite: kept the previous run's evaluation results in {kept}"
                    )
                shutil.rmtree(aside, ignore_errors=True)
                saved = "--overwrite: the first checkpoint is saved"
                notes.append(f"{saved}; deleted the previous run ({aside})")
        return notes

    def _keep_evaluations(self, aside: Path) -> Path | None:
        """Move the replaced run's ``eval/`` (results the user made, not the run) to
        ``eval/previous_run_<id>``: a replacing run deletes only what runs create."""
        old_eval = aside / "eval"
        if not old_eval.is_dir() or not any(old_eval.iterdir()):
            return None
        target = self.path / "eval" / f"previous_run_{(read_run_id(aside) or 'unknown')[:8]}"
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"{target.name.split('.')[0]}.{n}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old_eval, target)
        return target

    def close(self, failed: bool = False) -> None:
        """Release the lock; after a failure before the
        first checkpoint, leave the folder as found."""
        try:
            had_a_run = self.resume and self.has_checkpoint
            if failed and not self.is_committed and self._locked and not had_a_run:
                new = set(os.listdir(self.path)) - self._snapshot if self._snapshot else set()
                self._remove_entries([n for n in new if n in RUN_ENTRIES])
                aside = self.path / REPLACED_DIR
                if aside.is_dir():
                    self._move_back(aside)
        finally:
            if self._locked:
                owner = read_lock(self.path / LOCK_FILE)
                if owner is not None and owner["pid"] == os.getpid():
                    (self.path / LOCK_FILE).unlink(missing_ok=True)
                self._locked = False
            if failed and not self.is_committed:
                for folder in reversed(self._created):  # innermost first; only if still empty
                    try:
                        folder.rmdir()
                    except OSError:
                        break

    def _remove_entries(self, names) -> None:
        for name in names:
            _remove(self.path / name)

    def _move_back(self, aside: Path) -> None:
        for entry in aside.iterdir():
            target = self.path / entry.name
            _remove(target)
            os.replace(entry, target)
        aside.rmdir()
