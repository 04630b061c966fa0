"""What the encoder learned: linear probes of its frozen features, ``python -m mae_utils probe``.

The MAE paper's own yardstick for the encoder (He et al. 2021, sec. 4 and appendix A.2): freeze it,
show it the *whole* face (no masking), read its output into one row of numbers per face, and fit a
linear model on those rows. Every readout of :mod:`mae_utils.tools.readouts` is its own row of the
table: the mean patch token, the class token, the patch tokens on a coarse grid of regions, each
block's mean token, and the best block (chosen on the validation faces, never on the test faces).
Each is standardised with the training faces' statistics (the paper's probe puts a BatchNorm
without affine parameters before its linear layer: the same thing). The linear model is
scikit-learn's logistic regression for classes or ridge regression for numbers, its regularisation
chosen by cross-validation on the training faces only. It is scored on held-out faces, with a 95%
interval.

A number alone says little, so every table holds, with the same linear model:

* **PCA pixels**: the raw pixels reduced by PCA (fitted on the training faces) to the width of each
  readout: what the encoder must beat to have learnt more than a compression. The components are
  not standardised: that would whiten them, giving the faintest (mostly noise) directions as much
  weight as the strongest, and at a width near the number of training faces such a probe scores
  at chance; unscaled, the penalty of the linear model favours the strong directions;
* **random weights**: the same architecture, freshly initialised (seeded) and never trained: random
  transformers already give usable features, so training must beat this too;
* **chance**: the majority class, or the training mean for a number.

Settings: :class:`~mae_utils.tools.probe_settings.ProbeSettings`; faces and labels:
:mod:`mae_utils.tools.probe_data`.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ..util.errors import UserError
from ..util.fileio import atomic_write_text
from ..util.runtime import resolve_device
from ..util.text_table import aligned_table
from ..config import check_run_dir
from ..metrics import prediction_score, score_text
from ..model import MaskedAutoencoder
from ..pretrained import load_model_from_run
from .probe_data import ProbeData, load_probe_data
from .probe_settings import ProbeSettings, add_settings_arguments, settings_from_args
from .readouts import (EncoderFeatures, Standardiser, encode, pixels, random_twin,
                       readout_features)

__all__ = [
    "EncoderFeatures", "ProbeData", "ProbeSettings", "add_cli_arguments", "chance", "encode",
    "feature_sets", "fit_probe", "format_table", "load_probe_data", "pixels", "probe_features",
    "probe_run", "random_twin", "run_cli",
]

#: Regularisation grids searched by cross-validation (inverse strength C; ridge alpha).
LOGISTIC_CS = tuple(np.logspace(-4, 2, 7))
RIDGE_ALPHAS = tuple(np.logspace(-2, 5, 15))


# ---------------------------------------------------------------------- the linear probe
def _model(task: str, y_train: np.ndarray, pca_width: int | None, standardize: bool, seed: int,
           cv: int):
    from sklearn.decomposition import PCA  # local: scikit-learn is heavy (~1.5 s)
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV  # local: as above
    from sklearn.model_selection import StratifiedKFold  # local: as above
    from sklearn.pipeline import make_pipeline  # local: as above
    from sklearn.preprocessing import StandardScaler  # local: as above

    steps: list[Any] = []
    if pca_width:
        steps.append(PCA(n_components=pca_width, svd_solver="randomized", random_state=seed))
    if standardize:
        steps.append(StandardScaler())
    if task == "regress":
        return make_pipeline(*steps, RidgeCV(alphas=RIDGE_ALPHAS))
    smallest = min(np.unique(y_train, return_counts=True)[1])
    folds = StratifiedKFold(n_splits=int(max(2, min(cv, smallest))), shuffle=True,
                            random_state=seed)
    clf = LogisticRegressionCV(Cs=list(LOGISTIC_CS), cv=folds, l1_ratios=(0.0,),
                               scoring="accuracy", max_iter=2000, use_legacy_attributes=False)
    return make_pipeline(*steps, clf)


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    task: str,
    *,
    pca_width: int | None = None,
    standardize: bool = True,
    seed: int = 0,
    cv: int = 5,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Fit one linear probe on the training rows ``(x, y)`` (regularisation by ``cv``-fold
    cross-validation on them only; PCA, when asked, fitted on them too) and score it on ``test``.

    Returns ``score`` (accuracy, or mean absolute error), ``low`` / ``high`` (95% interval),
    ``width`` (numbers per face the linear model sees), ``seconds``, ``reg`` (the chosen C or
    alpha) and, given ``val`` rows, ``val_score`` (the same fit scored on them).
    """
    (x_train, y_train), (x_test, y_test) = train, test
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError("features and labels differ in length")
    started = time.perf_counter()
    if pca_width:  # no more components than faces: a narrower row, shown as such in the table
        pca_width = min(pca_width, x_train.shape[0] - 1, x_train.shape[1])  # rank n - 1 centred
    y_fit = y_train.astype(np.float64) if task == "regress" else y_train
    model = _model(task, y_train, pca_width, standardize, seed, cv)
    dtype = np.float32 if pca_width else np.float64  # pixels stay float32: 300 MB at 6,000 faces
    out: dict[str, Any] = {}
    # one BLAS thread: these small fits ran many times slower with two threads than with one on a
    # two-core machine (threads waiting on each other), and never faster
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")  # lbfgs convergence notes and sklearn deprecations
        model.fit(np.asarray(x_train, dtype), y_fit)
        out.update(prediction_score(task, y_test, model.predict(np.asarray(x_test, dtype))))
        if val is not None:
            pred = model.predict(np.asarray(val[0], dtype))
            out["val_score"] = prediction_score(task, val[1], pred)["score"]
    last = model[-1]
    out["reg"] = float(np.ravel(last.C_)[0]) if task == "classify" else float(last.alpha_)
    out["width"] = int(pca_width or x_train.shape[1])
    out["seconds"] = time.perf_counter() - started
    return out


def chance(task: str, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """The majority training class (classes) or the training mean (numbers), scored like a probe."""
    if task == "classify":
        values, counts = np.unique(y_train, return_counts=True)
        pred = np.full(len(y_test), values[np.argmax(counts)], dtype=y_test.dtype)
    else:
        pred = np.full(len(y_test), float(np.mean(y_train.astype(np.float64))))
    return {**prediction_score(task, y_test, pred), "width": 0, "seconds": 0.0, "reg": float("nan")}


# ---------------------------------------------------------------------- the features
READOUT_NAMES = {
    "mean": "mean patch token",
    "cls": "class token",
    "grid": "patch tokens on 2x2 + 4x4 regions",
}
MODEL_NAMES = {"mae": "MAE encoder", "random": "random weights", "second": "second run"}


def _readout_name(model_name: str, readout: str, depth: int) -> str:
    if readout.startswith("block"):
        return f"{model_name}, block {readout[5:]} of {depth}, mean patch token"
    return f"{model_name}, {READOUT_NAMES[readout]}"


def _model_sets(key: str, model: MaskedAutoencoder, data: ProbeData, settings: ProbeSettings,
                readouts: list[str]) -> dict[str, dict[str, Any]]:
    """One model's readouts for every part of ``data``, standardised with the training faces'
    statistics."""
    what = MODEL_NAMES[key]
    enc = {part: encode(model, ds, pos, batch_size=settings.batch_size,
                        device=resolve_device(settings.device), all_blocks="blocks" in readouts,
                        progress=settings.progress, desc=f"{what}: {part} faces")
           for part, (ds, pos) in data.parts().items()}
    seconds = sum(e.seconds for e in enc.values())
    rows = {part: readout_features(e, readouts) for part, e in enc.items()}
    depth = len(model.blocks)
    sets = {}
    for name, x_train in rows["train"].items():
        standardise = Standardiser.fit(x_train)
        entry = {part: standardise(r[name]) for part, r in rows.items()}
        sets[f"{key}_{name}"] = {"name": _readout_name(what, name, depth), "pca": None,
                                 "seconds": seconds, **entry}
    return sets


def _pca_rows(train: np.ndarray, test: np.ndarray, width: int, seed: int):
    """``train`` and ``test`` pixel rows reduced by a PCA fitted on ``train``: at most ``width``
    components, and no more than the faces allow (rank n - 1 once centred)."""
    from sklearn.decomposition import PCA  # local: scikit-learn is heavy (~1.5 s)

    width = min(width, train.shape[0] - 1, train.shape[1])
    # "auto": randomized for a narrow PCA, an exact SVD when the width nears the rank (faster there)
    pca = PCA(n_components=width, svd_solver="auto", random_state=seed).fit(train)
    return pca.transform(train).astype(np.float32), pca.transform(test).astype(np.float32)


def _pixel_sets(data: ProbeData, widths: dict[str, int], seed: int) -> dict[str, dict[str, Any]]:
    """PCA pixels at each width in ``widths`` ({kind: width}). Each PCA is fitted once, on the
    training faces (it never sees a label), and its rows serve every target's probe."""
    started = time.perf_counter()
    train, test = pixels(data.train_set, data.train_pos), pixels(data.test_set, data.test_pos)
    seconds = time.perf_counter() - started
    sets = {}
    for kind, width in widths.items():
        started = time.perf_counter()
        reduced = _pca_rows(train, test, width, seed)
        sets[kind] = {"name": "PCA of pixels", "train": reduced[0], "test": reduced[1],
                      "pca": reduced[0].shape[1], "standardize": False,
                      "seconds": seconds + time.perf_counter() - started}
    return sets


def feature_sets(model: MaskedAutoencoder, data: ProbeData, settings: ProbeSettings,
                 second: MaskedAutoencoder | None = None) -> dict[str, dict[str, Any]]:
    """Every feature kind of the table for the training, test (and validation) faces:
    ``{kind: {"name", "train", "test"[, "val"], "pca", "seconds"}}``. Pixels come already reduced
    by their PCA (``"pca"``: its width; ``None`` for the encoder's rows) and with
    ``"standardize": False`` (see the module docstring); :func:`pixels` gives the raw ones.

    Kinds: ``mae_<readout>`` for each readout of ``settings.readouts`` (``mae_block1`` ..),
    ``random_mean``, ``second_mean`` / ``second_cls``, ``pixels`` (PCA at the encoder's width) and
    ``pixels_grid`` (at the grid readout's width)."""
    sets = _model_sets("mae", model, data, settings, settings.readouts)
    if settings.random_weights:
        twin = random_twin(model, settings.seed)
        sets.update(_model_sets("random", twin, data, settings, ["mean"]))
    if second is not None:
        sets.update(_model_sets("second", second, data, settings, ["mean", "cls"]))
    if settings.pixel_baseline:
        width = model.config["embed_dim"]
        widths = {"pixels": width}
        if "mae_grid" in sets:
            widths["pixels_grid"] = sets["mae_grid"]["train"].shape[1]
        sets.update(_pixel_sets(data, widths, settings.seed))
    return sets


# ---------------------------------------------------------------------- the rows
def _best_block(rows: list[dict[str, Any]], task: str) -> dict[str, Any] | None:
    """The block row with the best validation score (ties: the earlier block), as its own row."""
    blocks = [r for r in rows if r["kind"].startswith("mae_block") and "val_score" in r]
    if not blocks:
        return None
    sign = 1.0 if task == "classify" else -1.0
    best = max(blocks, key=lambda r: (sign * r["val_score"], -int(r["kind"][9:])))
    k, depth = best["kind"][9:], len(blocks)
    name = f"MAE encoder, best block ({k} of {depth}, chosen on validation)"
    return {**best, "kind": "mae_best_block", "name": name, "block": int(k)}


def probe_features(sets: dict[str, dict[str, Any]], data: ProbeData, target: str,
                   settings: ProbeSettings) -> list[dict[str, Any]]:
    """One row per feature kind, the best block after the blocks, then chance: ``{"kind", "name",
    "score", "low", "high", "width", "seconds", ...}``.

    ``settings.shuffle_labels``: fit on randomly permuted training labels (seeded): the honesty
    check, every row should then score at chance.
    """
    task = data.tasks[target]
    y_train, y_test = data.y_train[target], data.y_test[target]
    if settings.shuffle_labels:
        y_train = np.random.default_rng(settings.seed).permutation(y_train)
    rows = []
    for kind, s in sets.items():
        chooses = "val" in s and kind.startswith("mae_block")
        val = (s["val"], data.y_val[target]) if chooses else None
        row = fit_probe((s["train"], y_train), (s["test"], y_test), task,
                        standardize=s.get("standardize", True), seed=settings.seed,
                        cv=settings.cv, val=val)
        rows.append({"kind": kind, "name": s["name"], **row, "fit_seconds": row["seconds"],
                     "seconds": row["seconds"] + s["seconds"]})
    best = _best_block(rows, task)
    if best is not None:  # right after the last block's row
        at = max(i for i, r in enumerate(rows) if r["kind"].startswith("mae_block")) + 1
        rows.insert(at, best)
    name = "chance (majority class)" if task == "classify" else "chance (training mean)"
    rows.append({"kind": "chance", "name": name, **chance(task, y_train, y_test),
                 "fit_seconds": 0.0})
    return rows


def format_table(rows: list[dict[str, Any]], target: str, task: str, n_train: int,
                 n_test: int) -> str:
    """A plain-text table of one target's probes: score, 95% interval, width, wall time."""
    metric = "accuracy" if task == "classify" else "mean abs. error"
    better = "higher is better" if task == "classify" else "lower is better"
    table = [["features", "width", metric, "95% interval", "time"]]
    for r in rows:
        interval = f"[{score_text(r['low'], task)}, {score_text(r['high'], task)}]"
        seconds = f"{r['seconds']:.1f} s" if r["seconds"] else "-"
        table.append([r["name"], str(r["width"] or "-"), score_text(r["score"], task), interval,
                      seconds])
    lines = [f"target {target!r}: {metric} on {n_test} test faces ({better}); linear probes "
             f"fitted on {n_train} training faces"]
    return "\n".join(lines + aligned_table(table))


# ---------------------------------------------------------------------- the library entry point
def _load_models(run_dir: str | Path, settings: ProbeSettings):
    """(model, its TrainConfig, the second run's model or None), on the settings' device."""
    check_run_dir(run_dir)
    if settings.second_run is not None:
        check_run_dir(settings.second_run, "--second-run")
    dev = resolve_device(settings.device)
    model, config = load_model_from_run(run_dir, settings.checkpoint, dev)
    if settings.second_run is None:
        return model, config, None
    second, second_config = load_model_from_run(settings.second_run, settings.checkpoint, dev)
    if second_config.image_size != config.image_size:
        raise UserError(f"--second-run {settings.second_run} takes {second_config.image_size} px "
                        f"faces, {run_dir} {config.image_size} px: probe it on its own")
    return model, config, second


def probe_run(run_dir: str | Path, settings: ProbeSettings) -> dict[str, Any]:
    """Linear probes of a run's frozen encoder against PCA pixels, random weights and chance.

    Returns ``tables`` {target: text}, ``rows`` {target: rows of :func:`probe_features`}, ``notes``
    (which data, labels and split), ``data`` (:class:`ProbeData`), ``sets`` (the features, for
    maps and neighbours) and ``seconds`` (the whole call).
    """
    started = time.perf_counter()
    settings = replace(settings).validate()
    model, config, second = _load_models(run_dir, settings)
    data = load_probe_data(run_dir, config, settings)
    sets = feature_sets(model, data, settings, second)
    rows, tables = {}, {}
    for target in data.tasks:
        rows[target] = probe_features(sets, data, target, settings)
        tables[target] = format_table(rows[target], target, data.tasks[target],
                                      len(data.train_pos), len(data.test_pos))
    notes = list(data.notes)
    if "blocks" in settings.readouts and not len(data.val_pos):
        notes.append("no validation faces (val_frac 0): no best-block row")
    if settings.shuffle_labels:
        notes.append("honesty check: training labels shuffled (seeded); every row should score at "
                     "chance")
    return {"tables": tables, "rows": rows, "notes": notes, "data": data, "sets": sets,
            "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Linear probes of a run's frozen encoder (no masking; each readout its own row: mean "
        "patch token, class token, patch tokens on coarse regions, every block and the best one on "
        "the validation faces) against PCA pixels of the same width, the same encoder with random "
        "weights, and chance: accuracy for classes, mean absolute error for numbers, on held-out "
        "faces with a 95% interval."
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR",
                        help="a training run directory (runs/NAME)")
    add_settings_arguments(parser)
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the notes and every row to this JSON file")


def _json_rows(result: dict[str, Any]) -> str:
    out = {"notes": result["notes"], "tasks": result["data"].tasks, "rows": result["rows"],
           "seconds": result["seconds"]}
    return json.dumps(out, indent=1, default=float)


def run_cli(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.json is not None and not Path(args.json).parent.is_dir():
        raise UserError(f"--json {args.json}: its folder does not exist; create it or choose "
                        "another")
    result = probe_run(args.run, settings)
    print("\n".join(result["notes"]))
    for table in result["tables"].values():
        print()
        print(table)
    if args.json is not None:
        atomic_write_text(args.json, _json_rows(result))
        print(f"\nrows written to {args.json}")
    print(f"\ntotal wall time {result['seconds']:.1f} s")
    return 0
