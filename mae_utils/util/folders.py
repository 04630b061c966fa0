"""Several data folders given together: their checks and the names that label them.

A run may train on the union of several photo folders. Each folder keeps its own split (the one it
would get alone), so its results can be told apart; these helpers check that the folders are
distinct (no folder twice, none inside another, each present) and give each a short name, the
folder's own name made unique, which labels its part of ``split.json`` and its evaluation results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .errors import UserError

__all__ = ["check_several_folders", "folder_names", "is_several", "member_name", "one_or_several"]


def is_several(data_dir: object) -> bool:
    """Whether a ``data_dir`` setting names several folders (a list) rather than one or none."""
    return isinstance(data_dir, (list, tuple))


def one_or_several(data_dir: object) -> object:
    """A ``data_dir`` setting in its one form: a list of one folder is that folder (so
    ``--data-dir A`` is the run it always was), a longer list stays a list."""
    if not is_several(data_dir):
        return data_dir
    folders = list(data_dir)
    return folders[0] if len(folders) == 1 else folders


def _resolved(folder: str | Path) -> Path:
    return Path(folder).expanduser().resolve()


def check_several_folders(folders: Sequence[str | Path], what: str = "data_dir") -> list[Path]:
    """The folders as paths, if each exists and none repeats or lies inside another; else one
    :class:`UserError` naming the folder (a folder inside another would be trained on twice)."""
    if len(folders) < 2:
        raise UserError(f"{what} as a list needs at least two folders; give one folder as text")
    paths = [Path(str(f)).expanduser() for f in folders]
    for path in paths:
        if not path.is_dir():
            state = "is not a folder" if path.exists() else "does not exist"
            raise UserError(f"{what}: {path} {state}; give folders of face photos")
    real = [_resolved(p) for p in paths]
    for i, a in enumerate(real):
        for j, b in enumerate(real):
            if i < j and a == b:
                raise UserError(f"{what}: {paths[i]} is given twice (as {paths[i]} and "
                                f"{paths[j]}); give each folder once")
            if i != j and a != b and a.is_relative_to(b):
                raise UserError(f"{what}: {paths[i]} lies inside {paths[j]}, which already "
                                "includes its photos; give only one of them")
    return paths


def folder_names(folders: Sequence[str | Path]) -> list[str]:
    """Each folder's own name (``data/lfw`` -> ``lfw``), with ``-2``, ``-3``... added where two
    share one: the labels of the folders' splits and results."""
    names: list[str] = []
    for folder in folders:
        base = _resolved(folder).name or "data"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def member_name(folder: str | Path, folders: Sequence[str | Path]) -> str | None:
    """The name of ``folder`` among ``folders`` (the same folder, however written), or None."""
    try:
        target = _resolved(folder)
        for name, other in zip(folder_names(folders), folders):
            if _resolved(other) == target:
                return name
    except OSError:
        return None
    return None
