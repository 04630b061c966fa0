"""The options benchmark (benchmarks/bench_options.py): every contender takes real training steps and
the table gives each one's time relative to the default step."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_options  # noqa: E402


def test_every_contender_is_timed_against_the_default(capsys):
    assert bench_options.main(["--image-size", "32", "--batch-size", "2", "--rounds", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^\| ([^|]+?) \| [\d.]+ \| ([\d.]+)x \|", out, flags=re.M))
    assert set(rows) == set(bench_options.CONTENDERS) and rows["default"] == "1.00"
    assert re.search(r"harmonic fill alone: [\d.]+ ms per batch = [\d.]+% of a default step", out)


def test_the_table_states_ratios_to_the_default_step():
    text = bench_options.table({"default": 0.050, "decode_fraction 0.5": 0.040}, fill_seconds=0.005)
    assert "| decode_fraction 0.5 | 40.0 | 0.80x | 1.25 |" in text
    assert "5.00 ms per batch = 10.0% of a default step" in text
