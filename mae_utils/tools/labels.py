"""Labels for a probe, from what a user already has: class sub-folders, file names, or the built-in
synthetic faces' own attributes.

* **folders** (the ImageFolder convention): ``DIR/<class>/*.jpg``, the first folder below the root
  names the class;
* **a file-name pattern** (``--label-regex``) with a named group, matched against each file's name:
  ``^(?P<age>\\d+)_(?P<gender>\\d)_(?P<race>\\d)_`` reads UTKFace's ``age_gender_race_date.jpg``,
  ``yaleB(?P<person>\\d\\d)_`` the person in the Extended Yale B faces. Files the pattern does not
  match are left out, and counted;
* **synthetic faces**: :func:`mae_utils.synthetic.face_attributes` (glasses, beard, hair colour,
  ...).

Whether a target is a class (logistic regression, accuracy) or a number (ridge regression, mean
absolute error) is :func:`decide_task`'s job: ``auto`` treats numbers with many distinct values as
numbers, except zero-padded codes such as ``01`` .. ``39``, which are identifiers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

import numpy as np

from ..util.errors import UserError
from ..synthetic import ATTRIBUTES, face_attributes

__all__ = ["TASKS", "Labels", "check_classes", "check_pattern", "dataset_labels", "decide_task",
           "folder_labels", "nested_repeat", "regex_labels", "synthetic_labels"]

TASKS = ("auto", "classify", "regress")
# the parser behind re.compile (Python 3.10: re.sre_parse), to read a pattern's structure; it
# holds the opcodes' names too
_sre = getattr(re, "_parser", None) or getattr(re, "sre_parse")
_POSSESSIVE = getattr(_sre, "POSSESSIVE_REPEAT", None)  # Python 3.11+: ++, *+, ?+
_ATOMIC = getattr(_sre, "ATOMIC_GROUP", None)  # Python 3.11+: (?>...)
#: ``auto``: a numeric target with more distinct values than this is regressed (UTKFace age: ~100).
MAX_AUTO_CLASSES = 20


@dataclass
class Labels:
    """One label per kept image: ``values`` (str for classes, float for numbers), and ``keep``, the
    positions (in the list that was labelled) of the images that have a label."""

    target: str
    values: np.ndarray
    keep: np.ndarray
    task: str  # "classify" or "regress"
    source: str  # "folders", "regex" or "synthetic"
    notes: list[str] = field(default_factory=list)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def decide_task(
    values: Sequence[str], task: str = "auto", target: str = "target"
) -> tuple[str, str]:
    """``(task, why)``: 'classify' or 'regress' for these label texts (``task`` 'auto' decides)."""
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    distinct = sorted(set(values))
    numeric = all(_is_number(v) for v in distinct)
    if task == "regress":
        if not numeric:
            bad = next(v for v in distinct if not _is_number(v))
            raise UserError(f"--task regress needs numbers, but target {target!r} has the value "
                            f"{bad!r}")
        return "regress", "asked for (--task regress)"
    if task == "classify":
        return "classify", "asked for (--task classify)"
    if not numeric:
        return "classify", "values are names"
    if _zero_padded(distinct):
        return "classify", ("zero-padded codes are identifiers (pass --task regress to treat them "
                            "as numbers)")
    if len(distinct) > MAX_AUTO_CLASSES:
        return "regress", (f"{len(distinct)} distinct numbers (pass --task classify to treat them "
                           "as classes)")
    return "classify", (f"only {len(distinct)} distinct values (pass --task regress to treat them "
                        "as numbers)")


def _zero_padded(distinct: list[str]) -> bool:
    """Digit codes of one width (> 1) that start with 0, such as ``01`` .. ``39``."""
    widths = {len(v) for v in distinct}
    digits = all(v.isdigit() for v in distinct)
    return len(widths) == 1 and min(widths) > 1 and digits and distinct[0].startswith("0")


def check_classes(values: np.ndarray, target: str, where: str) -> None:
    """At least two classes, and at least two images of each (one to fit on, one to score)."""
    counts = Counter(values.tolist())
    if len(counts) < 2:
        only = next(iter(counts)) if counts else "none"
        raise UserError(f"target {target!r} in {where} has a single class ({only!r}): nothing to "
                        "tell apart")
    single = sorted(k for k, n in counts.items() if n < 2)
    if single:
        shown = ", ".join(repr(s) for s in single[:5]) + (" ..." if len(single) > 5 else "")
        raise UserError(
            f"target {target!r} in {where}: {len(single)} class(es) with one image ({shown}); a "
            "class needs at least two (one to fit, one to test): add images, or remove that class"
        )


def _finish(target: str, texts: list[str], keep: list[int], task: str, source: str, where: str,
            notes: list[str], check: bool) -> Labels:
    chosen, why = decide_task(texts, task, target)
    values = np.asarray(texts, dtype=str)
    if chosen == "classify":
        if check:
            check_classes(values, target, where)
        notes.append(f"target {target!r}: {len(set(texts))} classes ({why})")
    else:
        values = values.astype(np.float64)
        if check and (len(values) < 4 or np.ptp(values) == 0):
            raise UserError(f"target {target!r} in {where} needs at least 4 images with differing "
                            "values")
        span = f"{values.min():.3g} .. {values.max():.3g}"
        notes.append(f"target {target!r}: a number, {span} ({why})")
    return Labels(target, values, np.asarray(keep, dtype=np.int64), chosen, source, notes)


def folder_labels(rel_files: Sequence[str], where: str, task: str = "auto", target: str = "class",
                  check: bool = True) -> Labels:
    """The class sub-folder of each file (``<class>/.../name.jpg``, relative to the data folder).

    ``check``: refuse a single class, a class with one image, or constant numbers
    (:func:`check_classes`).
    """
    texts, keep, loose = [], [], 0
    for i, rel in enumerate(rel_files):
        parts = PurePosixPath(rel).parts
        if len(parts) < 2:
            loose += 1
            continue
        texts.append(parts[0])
        keep.append(i)
    if not texts:
        raise UserError(
            f"{where} has no labels: its images are not in class sub-folders "
            "(DIR/<class>/image.jpg); pass --label-regex with a named group to read labels from "
            "the file names"
        )
    notes = [f"labels: the class sub-folders of {where}"]
    if loose:
        notes.append(f"left out {loose} image(s) directly in {where} (in no class folder)")
    return _finish(target, texts, keep, task, "folders", where, notes, check)


def _repeats(items) -> list[tuple[int, int, Any]]:
    """Every repeat (``+``, ``*``, ``{m,n}``; greedy or lazy) in a parsed pattern, as (min, max,
    body), outermost first. Possessive ones (``++``) never backtrack: left out, not their bodies."""
    found = []
    for op, av in items:
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            found.append(av)
            found += _repeats(av[2])
        elif op is _POSSESSIVE:
            found += _repeats(av[2])
        elif op is _sre.SUBPATTERN:
            found += _repeats(av[3])
        elif op is _sre.BRANCH:
            for branch in av[1]:
                found += _repeats(branch)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT) or op is _ATOMIC:
            found += _repeats(av[1] if op is not _ATOMIC else av)
        elif op is _sre.GROUPREF_EXISTS:
            found += _repeats(av[1]) + (_repeats(av[2]) if av[2] is not None else [])
    return found


def nested_repeat(pattern: str) -> bool:
    """Whether ``pattern`` repeats a varying number of times something that itself repeats a varying
    number of times, one of them without bound, such as ``([\\d_]+)+`` or ``(a*)*``: on a name that
    almost matches, Python's ``re`` tries every way to share the characters among the repeats
    (catastrophic backtracking) and does not return for hours. ``pattern`` must be valid."""
    for low, high, body in _repeats(_sre.parse(pattern)):
        inner = [(lo, hi) for lo, hi, _ in _repeats(body)]
        if low < high > 1 and any(lo < hi > 1 and _sre.MAXREPEAT in (high, hi) for lo, hi in inner):
            return True  # both may take a varying number of turns, one of them any number
    return False


def check_pattern(pattern: str) -> re.Pattern[str]:
    """``--label-regex`` compiled, or a :class:`UserError`: not a valid pattern, or one that can
    hang (:func:`nested_repeat`); patterns are shown as typed."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--label-regex '{pattern}' is not a valid regular expression: "
                        f"{exc}") from None
    if nested_repeat(pattern):
        raise UserError(
            f"--label-regex '{pattern}' repeats a part that itself repeats (like ([\\d_]+)+), "
            "which can run for hours on a name it almost matches: repeat once (e.g. [\\d_]+ "
            "instead of ([\\d_]+)+)"
        )
    return regex


def compile_pattern(pattern: str, target: str | None) -> tuple[re.Pattern[str], str]:
    """The compiled ``--label-regex`` (:func:`check_pattern`) and the named group to read
    (``target``, or its only group)."""
    regex = check_pattern(pattern)
    groups = list(regex.groupindex)
    if not groups:
        raise UserError(f"--label-regex '{pattern}' has no named group; write the label part as "
                        "(?P<name>...)")
    if target is None:
        if len(groups) > 1:
            raise UserError(f"--label-regex has several named groups ({', '.join(groups)}); "
                            "choose one with --target")
        return regex, groups[0]
    if target not in groups:
        raise UserError(
            f"--target {target!r} is not a named group of --label-regex '{pattern}' (its groups: "
            f"{', '.join(groups)})"
        )
    return regex, target


def regex_labels(rel_files: Sequence[str], pattern: str, target: str | None, where: str,
                 task: str = "auto", check: bool = True) -> Labels:
    """The named group ``target`` of ``pattern``, searched in each file's name (not its folders)."""
    regex, group = compile_pattern(pattern, target)
    texts, keep = [], []
    for i, rel in enumerate(rel_files):
        m = regex.search(PurePosixPath(rel).name)
        if m is not None and m.group(group) is not None:
            texts.append(m.group(group))
            keep.append(i)
    if not texts:
        example = PurePosixPath(rel_files[0]).name if len(rel_files) else "(no files)"
        raise UserError(
            f"--label-regex '{pattern}' matches none of the {len(rel_files)} file names in {where} "
            f"(e.g. {example!r}); it is searched in the file name only"
        )
    notes = [f"labels: group {group!r} of '{pattern}' in the file names of {where}"]
    if len(keep) < len(rel_files):
        notes.append(f"left out {len(rel_files) - len(keep)} of {len(rel_files)} image(s) whose "
                     "names do not match")
    return _finish(group, texts, keep, task, "regex", where, notes, check)


def synthetic_labels(seed: int, indices: Sequence[int], target: str, task: str = "auto",
                     check: bool = True) -> Labels:
    """Attribute ``target`` of synthetic faces ``indices`` of generator ``seed``; ``task`` 'auto'
    takes the generator's own kind (a class or a number)."""
    if target not in ATTRIBUTES:
        raise UserError(f"synthetic faces have no attribute {target!r}; choose one of "
                        f"{', '.join(ATTRIBUTES)}")
    values = face_attributes(seed, indices)[target]
    kind = ATTRIBUTES[target][0]
    texts = [f"{v:.6g}" for v in values] if kind == "number" else values.tolist()
    notes = [f"labels: the synthetic faces' own attribute {target!r} ({ATTRIBUTES[target][1]})"]
    chosen = task if task != "auto" else "classify" if kind == "class" else "regress"
    where = "the synthetic faces"
    every = list(range(len(texts)))
    labels = _finish(target, texts, every, chosen, "synthetic", where, notes, check)
    if task == "auto":
        labels.notes[-1] = labels.notes[-1].split(" (asked for")[0] + " (the generator's own kind)"
    return labels


def dataset_labels(ds: Any, targets: Sequence[str], label_regex: str | None,
                   task: str | Mapping[str, str], where: str, check: bool = True) -> list[Labels]:
    """One :class:`Labels` per target for every image of ``ds``, from the source its images have:
    the synthetic faces' attributes, ``label_regex`` on the file names, or the class sub-folders.
    ``task``: one for all targets, or one per target."""
    tasks = task if isinstance(task, Mapping) else {t: task for t in targets}
    if not hasattr(ds, "rel_files"):  # synthetic faces
        if label_regex:
            raise UserError("--label-regex reads file names; synthetic faces have attributes: "
                            "drop it")
        return [synthetic_labels(ds.seed, ds.indices, t, tasks[t], check) for t in targets]
    if label_regex:
        return [regex_labels(ds.rel_files, label_regex, t, where, tasks.get(t, "auto"), check)
                for t in targets]
    if len(targets) > 1:
        raise UserError("class sub-folders give one target; name several targets only with "
                        "--label-regex")
    return [folder_labels(ds.rel_files, where, tasks.get(targets[0], "auto"), targets[0], check)]
