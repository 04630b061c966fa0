"""Label efficiency: fine-tuned from the MAE against from scratch at several shares of the labels,
its table and its figure, on a tiny synthetic-face run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mae_utils import config as config_module
from mae_utils import viz
from mae_utils.train import fit
from mae_utils.tools.finetune import FinetuneConfig
from mae_utils.tools.label_efficiency import (MODES, epochs_for_share, label_efficiency,
                                              points_table, result_point)
from mae_utils.util.errors import UserError

from tiny_runs import TINY


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "run"
    fit(config_module.TrainConfig(**{**TINY, "epochs": 1}, max_images=80, out_dir=str(out),
                                  cache_dir="off"))
    return out


@pytest.mark.parametrize(("passes", "share", "epochs"),
                         [(1.5, 0.1, 15), (1.5, 1.0, 2), (0.3, 0.01, 30), (3, 1.0, 3), (0.01, 1, 1)])
def test_fewer_labels_get_more_epochs_for_about_the_same_steps(passes, share, epochs) -> None:
    assert epochs_for_share(passes, share) == epochs


@pytest.mark.parametrize(("passes", "share", "says"), [(1, 0, "share"), (1, 1.5, "share"),
                                                       (0, 0.5, "passes")])
def test_a_share_or_budget_out_of_range_is_named(passes, share, says) -> None:
    with pytest.raises(UserError, match=says):
        epochs_for_share(passes, share)


def test_each_share_is_fine_tuned_from_the_mae_and_from_scratch(synthetic_run, tmp_path) -> None:
    settings = FinetuneConfig(run=str(synthetic_run), target="skin_tone", batch_size=8,
                              device="cpu", base_lr=1e-2)
    points = label_efficiency(settings, [0.5, 1.0], 1.0, tmp_path / "ft", log=lambda _m: None)
    assert [(p["share"], p["mode"]) for p in points] == [(0.5, "mae"), (0.5, "scratch"),
                                                         (1.0, "mae"), (1.0, "scratch")]
    for p in points:
        folder = tmp_path / "ft" / f"skin_tone_{p['share']:g}_{p['mode']}"
        record = json.loads((folder / "config.json").read_text())["finetune"]
        assert record["from_scratch"] == (p["mode"] == "scratch")
        assert record["train_fraction"] == p["share"] and record["epochs"] == p["epochs"]
        assert p == result_point(json.loads((folder / "results.json").read_text()), p["share"],
                                 p["mode"])
        assert p["metric"] == "mean absolute error" and p["low"] <= p["score"] <= p["high"]
    half, whole = points[0], points[2]
    assert (half["epochs"], whole["epochs"]) == (2, 1)  # half the labels, twice the passes
    assert half["labels"] < whole["labels"]
    table = points_table(points)
    assert all(label in table for label in MODES.values()) and "lower is better" in table
    assert table.count("skin_tone  ") == 2  # a row per share, both modes side by side
    gap = points[0]["score"] - points[1]["score"]
    assert f"{gap:+.3g}" in table


def test_the_figure_has_a_panel_per_target_and_a_curve_per_mode() -> None:
    def point(target, share, mode, score, metric="accuracy"):
        return {"target": target, "share": share, "mode": mode, "label": MODES[mode],
                "metric": metric, "score": score, "low": score - 0.05, "high": score + 0.05,
                "chance": 0.5}

    points = [point(t, s, m, 0.6 + 0.1 * s) for t in ("gender", "race") for s in (0.01, 0.1)
              for m in MODES]
    fig = viz.label_efficiency_figure(points, [{"target": "race", "label": "PCA pixels",
                                                "score": 0.7, "share": 0.1}])
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["gender", "race"]
    assert len(axes[0].containers) == 2  # two error-bar curves
    legend = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert "PCA pixels" in legend and "chance" in legend
    assert axes[0].get_ylabel() == "test accuracy (%)"
    with pytest.raises(UserError, match="no fine-tune"):
        viz.label_efficiency_figure([])
