"""The reference pages are complete: the README's module map names every module of the package, and
docs/runs.md shows every command the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

from mae_utils.app.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _module_map() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"## Module map\n\n```\n(.*?)```", readme, flags=re.S).group(1)


def test_module_map_names_every_module():
    words = set(re.findall(r"[\w.]+", _module_map()))
    modules = [p for p in (ROOT / "mae_utils").rglob("*.py") if p.name != "__init__.py"]
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in words and p.stem not in words]
    assert modules and not missing, f"README's module map lacks {missing}"


def test_runs_page_shows_every_command():
    commands_block = re.search(r"## Commands\n.*?```bash\n(.*?)```", (ROOT / "docs" / "runs.md").read_text(),
                               flags=re.S).group(1)
    shown = set(re.findall(r"python -m mae_utils (\w+)", commands_block))
    assert shown == set(COMMANDS), f"docs/runs.md shows {sorted(shown)}; the CLI has {sorted(COMMANDS)}"
