"""Each measured number is typed once: the results tables of README.md, docs/results.md and
benchmarks/cpu_recipe.md are what benchmarks/results_tables.py writes from benchmarks/results.csv."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import results_tables as tables  # noqa: E402


def test_committed_tables_are_the_records():
    stale = [str(path.relative_to(ROOT)) for path, text in tables.rendered().items() if path.read_text() != text]
    assert not stale, f"{stale}: run `python benchmarks/results_tables.py` after editing benchmarks/results.csv"


def test_readme_table_holds_the_current_recipes_only_each_row_naming_its_run_and_faces():
    rows = tables.load_records()
    current = [row for row in rows if row["status"] == "current"]
    assert {row["recipe"] for row in current} == {"`maskAE.ipynb` defaults", "`cpu_quick.sh`", "`cpu_256.sh`"}
    readme = (ROOT / "README.md").read_text()
    body = readme.split("<!-- results table: begin -->\n")[1].split("\n<!-- results table: end -->")[0]
    lines = body.splitlines()[2:]
    assert len(lines) == len(current)
    for line, row in zip(lines, current):
        assert line.startswith(f"| {row['recipe']}, {row['date']} | {int(row['faces']):,} {row['source']} |")
    for row in rows:
        if row["status"] == "history":
            assert f"{row['recipe']}, {row['date']}" not in readme


def test_each_refiner_gain_is_stated_once_with_its_run():
    rows = tables.load_records()
    text = tables.refiner_gain(rows)
    gains = [row for row in rows if row["gain"]]
    assert len(text.splitlines()) == len({row["run"] for row in gains})
    for row in gains:
        assert text.count(f"{row['source']} {row['gain']} ± {row['gain_ci']}") >= 1
    assert "refined - raw" not in tables.results_table(rows)  # not repeated in the table beside it


def test_a_table_edited_by_hand_is_found(tmp_path):
    for name in [*tables.BLOCKS, "benchmarks/results.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    assert all(path.read_text() == text for path, text in tables.rendered(tmp_path).items())
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("19.17 ± 0.20", "19.71 ± 0.20"))
    stale = [path.name for path, text in tables.rendered(tmp_path).items() if path.read_text() != text]
    assert stale == ["README.md"]


def test_records_of_one_run_must_agree_and_tables_need_their_markers(tmp_path):
    rows = (ROOT / "benchmarks" / "results.csv").read_text().splitlines()
    header, first, second = rows[0], rows[2], rows[3]  # two rows of the same run
    assert first.split(",")[0] == second.split(",")[0]
    bad = tmp_path / "results.csv"
    bad.write_text("\n".join([header, first, second.replace("2026-12-01", "2026-12-03", 1)]) + "\n")
    with pytest.raises(ValueError, match="different date"):
        tables.load_records(bad)
    with pytest.raises(ValueError, match="no '<!-- results table: begin -->'"):
        tables.fill("a page without markers\n", "results table", "| table |", where="page.md")
