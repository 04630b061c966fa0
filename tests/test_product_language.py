"""The product speaks its own language: no ticket numbers and no paths outside the repository in what
a user reads (README, docs, benchmark notes and scripts, notebooks, the package's code and comments)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READ_BY_USERS = sorted(
    {ROOT / "README.md", ROOT / "maskAE.ipynb", *ROOT.glob("docs/*.md"), *ROOT.glob("benchmarks/*.md"),
     *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/recipes/*.sh"), *ROOT.glob("notebooks/*.ipynb"),
     *ROOT.glob("mae_utils/**/*.py")}
)
TICKET = re.compile(r"\bissues? ?[-#]?\d+", re.IGNORECASE)
OUTSIDE = re.compile(r"\.\./shared\b")  # a folder of the machine the project was built on, not the user's


def _hits(pattern: re.Pattern[str]) -> list[str]:
    hits = []
    for path in READ_BY_USERS:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            hits += [f"{path.relative_to(ROOT)}:{number}: {m.group(0)}" for m in pattern.finditer(line)]
    return hits


def test_the_files_a_user_reads_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in READ_BY_USERS}
    assert {"README.md", "maskAE.ipynb", "docs/results.md", "benchmarks/cpu_recipe.md",
            "notebooks/evaluate.ipynb", "mae_utils/model.py", "mae_utils/tools/refine.py"} <= names


@pytest.mark.parametrize(("name", "pattern"), [("ticket numbers", TICKET), ("paths outside the repository", OUTSIDE)])
def test_no_internal_references(name, pattern):
    assert not _hits(pattern), f"{name}: " + "; ".join(_hits(pattern))


def test_the_ticket_pattern_finds_what_it_should():
    found = [m.group(0) for m in TICKET.finditer("Issue 9's crops, issue-21, issues 6 and #4, tissue 3")]
    assert found == ["Issue 9", "issue-21", "issues 6"]
