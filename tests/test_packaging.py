"""`pip install .[dev]` then `pytest` works: the package's dependencies plus its `dev` extra name the
same packages as requirements.txt plus requirements-dev.txt (the files CI installs)."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the TOML reader pip itself uses
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """The package a requirement names, normalised: 'torch>=2.3' -> 'torch', 'Foo_Bar' -> 'foo-bar'."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _file_names(path: Path) -> set[str]:
    """Package names in a requirements file, following its ``-r other.txt`` lines."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            names |= _file_names(path.parent / line[2:].strip())
        elif line:
            names.add(_name(line))
    return names


def test_dev_extra_installs_what_the_requirement_files_install():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    installed = {_name(r) for r in project["dependencies"]} | {_name(r) for r in extras["dev"]}
    assert installed == _file_names(ROOT / "requirements-dev.txt")
    assert {_name(r) for r in extras["notebooks"]} <= installed


def test_what_pytest_runs_needs_is_in_the_dev_extra():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = {_name(r) for r in config["project"]["optional-dependencies"]["dev"]}
    assert "--nbmake" in config["tool"]["pytest"]["ini_options"]["addopts"] and "nbmake" in dev
    assert {"pytest", "papermill", "transformers"} <= dev


def test_requirement_names_are_read_as_pip_reads_them(tmp_path):
    (tmp_path / "base.txt").write_text("torch>=2.3\nscikit_image   # comment\n\n# only a comment\n")
    (tmp_path / "dev.txt").write_text("-r base.txt\nPyTest==8.0\n")
    assert _file_names(tmp_path / "dev.txt") == {"torch", "scikit-image", "pytest"}
