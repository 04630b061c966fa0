"""Label efficiency: the run's encoder fine-tuned against the same network from scratch, at several
shares of the training labels (the MAE paper's transfer claim, He et al. 2021, sec. 4-5, in one
call).

For each share, :func:`~mae_utils.tools.finetune.finetune` runs twice with the same settings and the
same steps: from the run's encoder and ``from_scratch``. The budget is given in passes over *all*
the training labels, so a share ``f`` of them gets ``passes / f`` epochs: fewer labels, more passes,
about as many steps at every share (the gap measures pre-training, not a shorter schedule). Each
fine-tune is its own run folder, ``OUT_ROOT/TARGET_SHARE_{mae,scratch}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from ..util.errors import UserError
from ..util.text_table import aligned_table
from ..metrics import score_text
from .finetune import RESULTS_FILE, FinetuneConfig, finetune

#: A fine-tune's mode and the label of its curve.
MODES = {"mae": "fine-tuned from the MAE", "scratch": "from scratch"}


def epochs_for_share(passes: float, share: float) -> int:
    """Epochs that give a ``share`` of the labels about ``passes`` passes' worth of all of them."""
    if not 0 < share <= 1:
        raise UserError(f"a share of the training labels must be in (0, 1]; got {share}")
    if passes <= 0:
        raise UserError(f"passes must be positive; got {passes}")
    return max(1, math.ceil(round(passes / share, 6)))


def label_efficiency(settings: FinetuneConfig, shares: Sequence[float], passes: float,
                     out_root: str | Path, *, overwrite: bool = False,
                     log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Fine-tune from the MAE and from scratch at each share of the labels (``settings`` gives the
    run, target and recipe; its ``train_fraction``, ``epochs``, ``from_scratch`` and ``out_dir``
    are set here). One point per fine-tune: target, share, mode, label, epochs, labels, metric,
    the test score with its 95% interval, chance and the wall time (what
    :func:`mae_utils.viz.label_efficiency_figure` draws)."""
    if not shares:
        raise UserError("give at least one share of the training labels")
    points = []
    for share in shares:
        epochs = epochs_for_share(passes, share)
        for mode, label in MODES.items():
            folder = Path(out_root) / f"{settings.target}_{share:g}_{mode}"
            one = dataclasses.replace(settings, train_fraction=float(share), epochs=epochs,
                                      from_scratch=mode == "scratch", out_dir=str(folder))
            result = finetune(one, overwrite=overwrite, log=log)
            record = json.loads((result.run_dir / RESULTS_FILE).read_text())
            points.append(result_point(record, share, mode))
    return points


def result_point(record: dict[str, Any], share: float, mode: str) -> dict[str, Any]:
    """One fine-tune's ``results.json`` (its test score, then chance) as a curve's point."""
    network, chance = record["rows"][0], record["rows"][1]
    return {"target": record["target"], "share": share, "mode": mode, "label": MODES[mode],
            "epochs": record["epochs"], "labels": record["train_faces"],
            "metric": "accuracy" if record["task"] == "classify" else "mean absolute error",
            "score": network["score"], "low": network["low"], "high": network["high"],
            "chance": chance["score"], "seconds": record["seconds"]}


def points_table(points: list[dict[str, Any]]) -> str:
    """The points as a plain-text table: per target and share, each mode's test score with its 95%
    interval, the difference (from the MAE minus from scratch) and the wall times."""
    rows = [["target", "labels", "epochs", *MODES.values(), "difference", "wall time"]]
    for target in dict.fromkeys(p["target"] for p in points):
        for share in sorted({p["share"] for p in points if p["target"] == target}):
            pair = {p["mode"]: p for p in points if p["target"] == target and p["share"] == share}
            first = next(iter(pair.values()))
            task = _task(first)
            cells = [f"{score_text(pair[m]['score'], task)} [{score_text(pair[m]['low'], task)}, "
                     f"{score_text(pair[m]['high'], task)}]" if m in pair else "-" for m in MODES]
            diff = "-"
            if len(pair) == len(MODES):
                gap = pair["mae"]["score"] - pair["scratch"]["score"]
                diff = f"{100 * gap:+.1f} points" if task == "classify" else f"{gap:+.3g}"
            walls = " / ".join(f"{pair[m]['seconds']:.0f} s" for m in MODES if m in pair)
            rows.append([target, f"{first['labels']} ({share:.0%})", str(first["epochs"]), *cells,
                         diff, walls])
    firsts = {t: next(p for p in points if p["target"] == t)
              for t in dict.fromkeys(p["target"] for p in points)}
    notes = [f"{t}: test {p['metric']} ({'higher' if _task(p) == 'classify' else 'lower'} is "
             f"better), chance {score_text(p['chance'], _task(p))}" for t, p in firsts.items()]
    return "\n".join(aligned_table(rows) + [""] + notes)


def _task(point: dict[str, Any]) -> str:
    """The fine-tune's task, from the point's metric."""
    return "classify" if point["metric"] == "accuracy" else "regress"
