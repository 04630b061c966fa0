"""Margin over the best classical baseline against training minutes: the minutes-to-margin curve.

    python benchmarks/plot_margin_curve.py --point 5.3 runs/q05 --point 10.6 runs/q10 ... \
        --eval m_utk500 "own test split" --eval m_yale500 Yale --eval m_lfw500 LFW \
        --out benchmarks/minutes_to_margin.png

Each ``--point MINUTES RUN`` is one training run of the recipe with its own One-Cycle schedule for
that budget (not a snapshot of a longer run, whose learning rate would still be high); MINUTES is the
training time it stands for on 2 idle cores (see benchmarks/cpu_recipe.md for how it was measured).
Each ``--eval NAME LABEL`` reads ``RUN/eval/NAME.json`` written by ``python -m mae_utils evaluate``:
the paired per-image margin of the model (and of ``model+refine`` where the run has one) over the
strongest baseline, with its 95% interval. Prints a markdown table and writes the figure, and the
points beside it as CSV (``--out`` with ``.csv``), so the figure can be redrawn once the runs are gone:

    python benchmarks/plot_margin_curve.py --from-csv benchmarks/minutes_to_margin.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def margin(record: dict, method: str = "model") -> tuple[float, float] | None:
    """(mean, ci95) of ``method`` minus the best baseline, masked PSNR, paired per image; None if absent."""
    best = record["best_baseline"]
    table = {"model": "paired_model_minus_baseline_psnr_masked",
             "model+refine": "paired_refine_minus_other_psnr_masked"}.get(method)  # fmt: skip
    stat = record.get(table, {}).get(best) if table else None
    return (stat["mean"], stat["ci95"]) if stat else None


def read_points(points: list[tuple[float, Path]], evals: list[tuple[str, str]]) -> dict:
    """{label: {method: [(minutes, mean, ci95), ...]}} from each run's evaluation files."""
    curves: dict[str, dict[str, list]] = {label: {} for _, label in evals}
    for minutes, run in points:
        for name, label in evals:
            path = run / "eval" / f"{name}.json"
            if not path.is_file():
                sys.exit(f"error: {path} is missing; run `python -m mae_utils evaluate --run {run} --name {name} ...` first")
            record = json.loads(path.read_text())
            for method in ("model", "model+refine"):
                if (m := margin(record, method)) is not None:
                    curves[label].setdefault(method, []).append((minutes, *m))
    return curves


CSV_FIELDS = ("source", "method", "minutes", "margin_db", "ci95_db")


def write_csv(curves: dict, path: Path) -> None:
    """The plotted points, one row per (source, method, minutes): the figure's data, kept with it."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_FIELDS)
        for label, methods in curves.items():
            for method, pts in methods.items():
                out.writerows((label, method, f"{x:g}", f"{y:.2f}", f"{e:.2f}") for x, y, e in sorted(pts))


def read_csv(path: Path) -> dict:
    """The curves written by ``write_csv``; names the file and row when a cell is not a number."""
    curves: dict[str, dict[str, list]] = {}
    with path.open(newline="") as f:
        rows = csv.DictReader(f)
        if tuple(rows.fieldnames or ()) != CSV_FIELDS:
            sys.exit(f"error: {path} must have the header {','.join(CSV_FIELDS)}; got {rows.fieldnames}")
        for i, row in enumerate(rows, start=2):
            try:
                point = (float(row["minutes"]), float(row["margin_db"]), float(row["ci95_db"]))
            except ValueError:
                sys.exit(f"error: {path} line {i}: minutes, margin_db and ci95_db must be numbers; got {row}")
            curves.setdefault(row["source"], {}).setdefault(row["method"], []).append(point)
    return curves


def markdown_table(curves: dict, minutes: list[float]) -> str:
    """One row per training budget, one column per (source, method); "-" where a run lacks that method."""
    columns = [(label, method) for label, methods in curves.items() for method in methods]
    lines = ["| minutes | " + " | ".join(f"{label} ({method})" for label, method in columns) + " |",
             "|---" * (1 + len(columns)) + "|"]  # fmt: skip
    for t in minutes:
        cells = []
        for label, method in columns:
            hit = [(y, e) for x, y, e in curves[label][method] if x == t]
            cells.append(f"{hit[0][0]:+.2f} ± {hit[0][1]:.2f}" if hit else "-")
        lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict, out: Path, title: str, budget: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    if budget:
        ax.axvline(budget, color="black", ls=":", lw=1, label=f"the recipe's budget ({budget:g} min)")
    for i, (label, methods) in enumerate(curves.items()):
        colour = f"C{i}"
        for method, pts in methods.items():
            x, y, e = zip(*sorted(pts))
            style = "-o" if method == "model" else "--s"
            ax.errorbar(x, y, yerr=e, fmt=style, color=colour, capsize=3,
                        label=f"{label}" + ("" if method == "model" else " + refiner (minutes not counted)"))  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training minutes on 2 CPU cores")
    ax.set_ylabel("masked PSNR margin over best classical (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", nargs=2, action="append", metavar=("MINUTES", "RUN"))
    parser.add_argument("--eval", nargs=2, action="append", metavar=("NAME", "LABEL"))
    parser.add_argument("--from-csv", type=Path, metavar="CSV", help="redraw from a saved CSV instead of runs")
    parser.add_argument("--out", default="benchmarks/minutes_to_margin.png")
    parser.add_argument("--budget", type=float, default=30.0, help="minutes; a dotted line (0: none)")
    parser.add_argument("--title", default="cpu_quick.sh: margin over the best classical inpainting vs training time")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.from_csv:
        if args.point or args.eval:
            parser.error("give either --from-csv or --point/--eval, not both")
        if not args.from_csv.is_file():
            parser.error(f"--from-csv: {args.from_csv} is not a file")
        curves = read_csv(args.from_csv)
    else:
        if not (args.point and args.eval):
            parser.error("give --point MINUTES RUN and --eval NAME LABEL (each at least once), or --from-csv")
        try:
            points = [(float(m), Path(r)) for m, r in args.point]
        except ValueError:
            parser.error(f"--point MINUTES RUN: MINUTES must be a number; got {[m for m, _ in args.point]}")
        curves = read_points(points, [tuple(e) for e in args.eval])
    minutes = sorted({x for methods in curves.values() for pts in methods.values() for x, _, _ in pts})
    print(markdown_table(curves, minutes))
    plot(curves, out, args.title, args.budget)
    print(f"wrote {out}")
    if out.with_suffix(".csv") != args.from_csv:
        write_csv(curves, out.with_suffix(".csv"))
        print(f"wrote {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
