"""Write the results tables of README.md, docs/results.md and benchmarks/cpu_recipe.md from one file.

    python benchmarks/results_tables.py          # rewrite the tables from benchmarks/results.csv
    python benchmarks/results_tables.py --check  # exit 1 if a committed table differs from the records

Every measured score the documentation shows is a row of ``benchmarks/results.csv`` (one row per run
and test source: the run's recipe, date and settings, the faces scored, masked-region PSNR of the raw
and refined model, the strongest classical baseline and the paired margins over it with their 95%
intervals, wall time). The tables live between marker comments, ``<!-- NAME: begin -->`` and
``<!-- NAME: end -->``, so a number is typed once, in the records, and every page that shows it agrees.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "results.csv"
RUN_FIELDS = ("recipe", "status", "date", "settings", "model_time", "wall_time")  # equal on a run's rows


def load_records(path: Path = RECORDS) -> list[dict[str, str]]:
    """The records, in file order; a run's rows must agree on the run's own fields."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    first: dict[str, dict[str, str]] = {}
    for row in rows:
        seen = first.setdefault(row["run"], row)
        differing = [name for name in RUN_FIELDS if row[name] != seen[name]]
        if differing:
            raise ValueError(f"{path.name}: run {row['run']!r} has different {', '.join(differing)} on its rows")
    return rows


def _runs(rows: list[dict[str, str]], status: str) -> list[list[dict[str, str]]]:
    """The rows of each run with this status, grouped by run in file order."""
    groups: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row["status"] == status:
            groups.setdefault(row["run"], []).append(row)
    return list(groups.values())


def _value(row: dict[str, str], name: str) -> str:
    """``19.17 ± 0.20`` from a value and its ``_ci`` column; the value alone without an interval."""
    value, ci = row[name], row.get(f"{name}_ci", "")
    return f"{value} ± {ci}" if value and ci else value


def _faces(row: dict[str, str]) -> str:
    return f"{int(row['faces']):,}"


def _run_name(row: dict[str, str]) -> str:
    return f"{row['recipe']}, {row['date']}"


def _arrow(row: dict[str, str], raw: str, refined: str) -> str:
    """``raw -> **refined**`` where the run has a refiner, the raw value alone where it has none."""
    return f"{_value(row, raw)} -> **{_value(row, refined)}**" if row[refined] else _value(row, raw)


def readme_table(rows: list[dict[str, str]]) -> str:
    """The README's table: the current recipes, one row per run and source."""
    lines = ["| run (recipe, date) | test faces | model trained in, 2 CPU cores | masked PSNR (dB), raw -> refined "
             "| best classical (dB) | over best classical (dB), raw -> refined |",
             "|---|---|---|---|---|---|"]
    for run in _runs(rows, "current"):
        for row in run:
            lines.append(f"| {_run_name(row)} | {_faces(row)} {row['source']} | {row['model_time']} "
                         f"| {_arrow(row, 'raw', 'refined')} | {row['baseline']} {row['baseline_psnr']} "
                         f"| {_arrow(row, 'margin_raw', 'margin_refined')} |")
    return "\n".join(lines)


def results_table(rows: list[dict[str, str]]) -> str:
    """docs/results.md's table: the current recipes with their settings, wall time and seam scores
    (the refiner's gain over the raw model is ``refiner_gain``'s, stated there once)."""
    lines = ["| run (recipe, date) and settings | wall time | test faces | masked PSNR (dB): raw / refined "
             "| best classical (dB) | raw - best | refined - best | blockiness raw -> refined |",
             "|---|---|---|---|---|---|---|---|"]
    for run in _runs(rows, "current"):
        for i, row in enumerate(run):
            what = f"{_run_name(row)}: {row['settings']}" if i == 0 else "(same run)"
            wall = row["wall_time"] if i == 0 else ""
            lines.append(f"| {what} | {wall} | {_faces(row)} {row['source']} "
                         f"| {_value(row, 'raw')} / {_value(row, 'refined')} | {row['baseline']} "
                         f"{row['baseline_psnr']} | {_value(row, 'margin_raw')} | {_value(row, 'margin_refined')} "
                         f"| {row['blockiness_raw']} -> {row['blockiness_refined']} |")
    return "\n".join(lines)


def refiner_gain(rows: list[dict[str, str]]) -> str:
    """The seam refiner's gain over the raw model, once, each figure with the run it comes from."""
    lines = []
    for status in ("current", "history"):
        for run in _runs(rows, status):
            scored = [row for row in run if row["gain"]]
            if not scored:
                continue
            per_source = "; ".join(f"{row['source']} {_value(row, 'gain')}" for row in scored)
            lines.append(f"- {_run_name(run[0])} ({run[0]['settings']}): {per_source} dB")
    return "\n".join(lines)


def history_table(rows: list[dict[str, str]]) -> str:
    """benchmarks/cpu_recipe.md's table of earlier recipes and other runs, kept as history."""
    lines = ["| run (recipe, date) and settings | test faces | masked PSNR (dB), raw -> refined "
             "| best classical (dB) | over best classical (dB), raw -> refined | training time |",
             "|---|---|---|---|---|---|"]
    for run in _runs(rows, "history"):
        for i, row in enumerate(run):
            what = f"{_run_name(row)} (`{row['run']}`): {row['settings']}" if i == 0 else "(same run)"
            baseline = f"{row['baseline']} {row['baseline_psnr']}".strip()
            lines.append(f"| {what} | {_faces(row)} {row['source']} | {_arrow(row, 'raw', 'refined')} | {baseline} "
                         f"| {_arrow(row, 'margin_raw', 'margin_refined')} | {row['model_time'] if i == 0 else ''} |")
    return "\n".join(lines)


BLOCKS: dict[str, dict[str, Callable[[list[dict[str, str]]], str]]] = {
    "README.md": {"results table": readme_table},
    "docs/results.md": {"results table": results_table, "refiner gain": refiner_gain},
    "benchmarks/cpu_recipe.md": {"history table": history_table},
}


def fill(text: str, name: str, body: str, where: str = "") -> str:
    """``text`` with the lines between ``<!-- name: begin -->`` and ``<!-- name: end -->`` set to ``body``."""
    begin, end = f"<!-- {name}: begin -->\n", f"\n<!-- {name}: end -->"
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{where}: no '<!-- {name}: begin -->' ... '<!-- {name}: end -->' markers")
    return text[: start + len(begin)] + body + text[stop:]


def rendered(root: Path = ROOT, rows: list[dict[str, str]] | None = None) -> dict[Path, str]:
    """Each documentation file's text with its tables as the records give them."""
    rows = load_records(root / "benchmarks" / "results.csv") if rows is None else rows
    out = {}
    for name, blocks in BLOCKS.items():
        text = (root / name).read_text()
        for block, build in blocks.items():
            text = fill(text, block, build(rows), where=name)
        out[root / name] = text
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files whose tables differ")
    args = parser.parse_args(argv)
    try:
        pages = rendered()
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stale = [path for path, text in pages.items() if path.read_text() != text]
    for path in stale:
        if args.check:
            print(f"{path.relative_to(ROOT)}: its tables differ from benchmarks/results.csv", file=sys.stderr)
        else:
            path.write_text(pages[path])
            print(f"written: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
