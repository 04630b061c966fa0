"""The minutes-to-margin figure (benchmarks/plot_margin_curve.py): margins read from evaluate's JSON,
a table with a gap where a run has no refiner, a figure, and a clear error for a missing evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import plot_margin_curve as curve  # noqa: E402


def _eval(run: Path, name: str, model: float, refine: float | None) -> None:
    """An evaluate-style record: the best baseline is biharmonic here, harmonic a worse one."""
    record = {"best_baseline": "biharmonic",
              "paired_model_minus_baseline_psnr_masked": {"harmonic": {"mean": 9.0, "ci95": 1.0},
                                                          "biharmonic": {"mean": model, "ci95": 0.1}}}  # fmt: skip
    if refine is not None:
        record["paired_refine_minus_other_psnr_masked"] = {"biharmonic": {"mean": refine, "ci95": 0.2}}
    (run / "eval").mkdir(parents=True, exist_ok=True)
    (run / "eval" / f"{name}.json").write_text(json.dumps(record))


def test_table_and_figure_from_evaluations(tmp_path, capsys):
    short, long = tmp_path / "short", tmp_path / "long"
    _eval(short, "own", 1.0, None)
    _eval(long, "own", 2.0, 2.5)
    out = tmp_path / "curve.png"
    assert curve.main(["--point", "10", str(long), "--point", "5", str(short), "--eval", "own", "own split",
                       "--out", str(out)]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| minutes | own split (model) | own split (model+refine) |"
    assert lines[2] == "| 5 | +1.00 ± 0.10 | - |"  # sorted by minutes; no refiner: a gap, not a shifted cell
    assert lines[3] == "| 10 | +2.00 ± 0.10 | +2.50 ± 0.20 |"
    with Image.open(out) as img:
        assert img.size[0] > 300 and img.size[1] > 200


def test_missing_evaluation_and_bad_minutes_are_named(tmp_path, capsys):
    run = tmp_path / "run"
    _eval(run, "own", 1.0, None)
    with pytest.raises(SystemExit, match="yale.json is missing"):
        curve.main(["--point", "5", str(run), "--eval", "yale", "Yale", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit):
        curve.main(["--point", "five", str(run), "--eval", "own", "own", "--out", str(tmp_path / "x.png")])
    assert "MINUTES must be a number" in capsys.readouterr().err


def test_the_figure_redraws_from_its_csv(tmp_path, capsys):
    run = tmp_path / "run"
    _eval(run, "own", 1.5, 1.75)
    out = tmp_path / "curve.png"
    assert curve.main(["--point", "7.5", str(run), "--eval", "own", "own split", "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[:3]
    saved = out.with_suffix(".csv")
    assert saved.read_text().splitlines()[1:] == ["own split,model,7.5,1.50,0.10", "own split,model+refine,7.5,1.75,0.20"]
    redrawn = tmp_path / "again.png"
    assert curve.main(["--from-csv", str(saved), "--out", str(redrawn)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == first  # the same table from the CSV as from the runs
    assert redrawn.is_file()
    saved.write_text("source,method,minutes,margin_db,ci95_db\nown,model,ten,1,0.1\n")
    with pytest.raises(SystemExit, match="line 2: minutes, margin_db and ci95_db must be numbers"):
        curve.main(["--from-csv", str(saved), "--out", str(redrawn)])
