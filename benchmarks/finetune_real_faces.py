"""Label efficiency: fine-tuned from the MAE against from scratch, per target and share of labels.

    python benchmarks/finetune_real_faces.py runs/finetune_utk --out benchmarks/label_efficiency.png

Reads the fine-tune folders that ``benchmarks/recipes/finetune_labels.sh`` writes
(``OUT_DIR/TARGET_FRACTION_{mae,scratch}/results.json``), prints a markdown table (score with its 95%
interval, the difference, wall times, chance) and draws test accuracy (or mean absolute error)
against the share of training labels, one panel per target. ``--frozen PROBE.json`` (written by
``python -m mae_utils probe ... --json``) adds the best frozen readout and PCA pixels of the same
width as dashed lines at the share of labels that probe was fitted on (``--frozen-share``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package

from mae_utils.tools.label_efficiency import MODES, result_point  # noqa: E402
from mae_utils.viz import label_efficiency_figure  # noqa: E402


def read_runs(folder: Path) -> dict[tuple[str, float, str], dict]:
    """{(target, fraction, mode): results.json} of every finished fine-tune in ``folder``."""
    runs = {}
    for path in sorted(folder.glob("*_*_*/results.json")):
        target, fraction, mode = path.parent.name.rsplit("_", 2)
        if mode in MODES and fraction.replace(".", "", 1).isdigit():  # other folders are not ours
            runs[(target, float(fraction), mode)] = json.loads(path.read_text())
    if not runs:
        sys.exit(f"error: no fine-tune results (NAME/results.json) in {folder}")
    return runs


def _fmt(value: float, accuracy: bool) -> str:
    return f"{100 * value:.1f}%" if accuracy else f"{value:.2f}"


def table(runs: dict) -> str:
    """One markdown row per (target, fraction): both modes, their difference, times and chance."""
    lines = ["| target | labels (share) | epochs | fine-tuned from the MAE | from scratch | "
             "MAE - scratch | wall MAE / scratch | chance |", "|---|---|---|---|---|---|---|---|"]
    for target, fraction in sorted({(t, f) for t, f, _ in runs}):
        mae, scratch = runs.get((target, fraction, "mae")), runs.get((target, fraction, "scratch"))
        if mae is None or scratch is None:
            continue
        acc = mae["metric"] == "accuracy"
        a, b = mae["rows"][0], scratch["rows"][0]
        cells = [f"{_fmt(r['score'], acc)} [{_fmt(r['low'], acc)}, {_fmt(r['high'], acc)}]"
                 for r in (a, b)]
        diff = a["score"] - b["score"]
        diff_text = f"{100 * diff:+.1f} points" if acc else f"{diff:+.2f}"
        lines.append(f"| {target} | {mae['train_faces']} ({fraction:.0%}) | {mae['epochs']} | "
                     f"{cells[0]} | {cells[1]} | {diff_text} | {mae['seconds']:.0f} s / "
                     f"{scratch['seconds']:.0f} s | {_fmt(mae['rows'][1]['score'], acc)} |")
    return "\n".join(lines)


def _frozen_rows(probe: dict, target: str) -> dict[str, dict]:
    """The best frozen readout (best score of the encoder's rows) and PCA pixels of its width."""
    rows = probe["rows"][target]
    task = probe.get("tasks", {}).get(target, "classify")
    better = max if task == "classify" else min
    encoder = [r for r in rows if r["kind"].startswith("mae_")]
    best = better(encoder, key=lambda r: r["score"])
    pixels = [r for r in rows if r["kind"].startswith("pixels")]
    same_width = min(pixels, key=lambda r: abs(r["width"] - best["width"])) if pixels else None
    return {"best frozen readout": best, "PCA pixels, same width": same_width}


def figure(runs: dict, out: Path, probe: dict | None, frozen_share: float) -> None:
    """The label-efficiency figure (:func:`mae_utils.viz.label_efficiency_figure`), with the probe's
    best frozen readout and PCA pixels of its width as reference lines."""
    points = [result_point(record, fraction, mode) for (_, fraction, mode), record in runs.items()]
    references = []
    for target in {t for t, _, _ in runs}:
        if probe is not None and target in probe.get("rows", {}):
            for label, row in _frozen_rows(probe, target).items():
                if row is not None:
                    references.append({"target": target, "score": row["score"], "share": frozen_share,
                                       "label": f"{label} ({row['width']} wide, {frozen_share:.0%} labels)"})
    out.parent.mkdir(parents=True, exist_ok=True)
    label_efficiency_figure(points, references).savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the fine-tune folders' parent")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/label_efficiency.png"))
    parser.add_argument("--frozen", type=Path, help="a probe's --json file on the same run")
    parser.add_argument("--frozen-share", type=float, default=0.1,
                        help="share of the training labels the probe was fitted on")
    args = parser.parse_args()
    runs = read_runs(args.folder)
    probe = json.loads(args.frozen.read_text()) if args.frozen else None
    print(table(runs))
    figure(runs, args.out, probe, args.frozen_share)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
