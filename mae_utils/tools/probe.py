"""What the encoder learned: linear probes of its frozen features, ``python -m mae_utils probe``.

The MAE paper's own yardstick for the encoder (He et al. 2021, sec. 4 and appendix A.2): freeze it,
show it the *whole* face (no masking), pool its output into one vector per face, and fit a linear
model on those vectors. Here the pooled vector is the mean of the patch tokens or the class token
(both reported), the linear model is scikit-learn's logistic regression for classes or ridge
regression for numbers, on standardised features (the paper's probe puts a BatchNorm without affine
parameters before its linear layer: the same thing), with the regularisation strength chosen by
cross-validation on the training faces only. It is scored on held-out faces, with a 95% interval.

A number alone says little, so every table holds, with the same linear model and the same width:

* **PCA pixels**: the raw pixels reduced by PCA (fitted on the training faces) to as many numbers as
  the encoder gives: what the encoder must beat to have learnt more than a compression;
* **random weights**: the same architecture, freshly initialised (seeded) and never trained: random
  transformers already give usable features, so training must beat this too;
* **chance**: the majority class, or the training mean for a number.

Which faces: the run's own data uses its ``split.json`` (fit on ``train``, score on ``test``). Any
other folder (e.g. Yale faces for a model trained on UTKFace) is split here, seeded and stratified by
the label, and the output says so. Labels: :mod:`mae_utils.tools.labels`. The features, pooled in
other ways (other blocks, before the last norm), are in :func:`encode` for experiments
(``benchmarks/probe_real_faces.py``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..util.errors import UserError, check_seed
from ..util.folders import is_several
from ..util.progress import tqdm
from ..util.runtime import resolve_device
from ..config import DEVICES, TrainConfig, check_run_dir
from ..data import FaceFolder
from ..metrics import prediction_score
from ..model import MaskedAutoencoder
from ..pretrained import load_model_from_run
from ..splits import prepare_data
from ..transforms import batch_to_input
from .labels import TASKS, Labels, check_pattern, dataset_labels

__all__ = [
    "EncoderFeatures", "ProbeData", "add_cli_arguments", "encode", "fit_probe", "format_table", "load_probe_data",
    "pixels", "probe_features", "probe_run", "random_twin", "run_cli",
]  # fmt: skip

#: Regularisation grids searched by cross-validation (inverse strength C; ridge alpha).
LOGISTIC_CS = tuple(np.logspace(-4, 2, 7))
RIDGE_ALPHAS = tuple(np.logspace(-2, 5, 15))


# ---------------------------------------------------------------------- which faces, which labels
@dataclass
class ProbeData:
    """Training and test faces (a dataset and positions in it) with one label array per target."""

    train_set: Any
    train_pos: np.ndarray
    test_set: Any
    test_pos: np.ndarray
    y_train: dict[str, np.ndarray]
    y_test: dict[str, np.ndarray]
    tasks: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _common(labels: list[Labels]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Positions labelled for every target, and each target's values at them."""
    keep = labels[0].keep
    for lab in labels[1:]:
        keep = np.intersect1d(keep, lab.keep)
    values = {}
    for lab in labels:
        where = {int(p): i for i, p in enumerate(lab.keep)}
        values[lab.target] = lab.values[[where[int(p)] for p in keep]]
    return keep, values


def _split_here(n: int, strata: np.ndarray | None, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split of ``range(n)``, stratified by ``strata`` (a class label) when given."""
    from sklearn.model_selection import train_test_split  # local: a heavy import only probes need

    try:
        train, test = train_test_split(np.arange(n), test_size=test_frac, random_state=seed, stratify=strata)
    except ValueError as exc:
        raise UserError(f"cannot split these faces {test_frac:.0%} for testing, stratified by label: {exc}") from None
    return np.sort(train), np.sort(test)


def _is_foreign(data_dir: str | Path | None, config: TrainConfig) -> bool:
    if data_dir is None:
        return False
    if config.data_dir is None or is_several(config.data_dir):  # a folder given alone is split here
        return True
    try:
        return Path(data_dir).expanduser().resolve() != Path(config.data_dir).expanduser().resolve()
    except OSError:
        return True


def load_probe_data(
    run_dir: str | Path, config: TrainConfig, targets: Sequence[str], *, data_dir: str | Path | None = None,
    label_regex: str | None = None, task: str = "auto", max_train: int | None = None, max_test: int | None = None,
    test_frac: float = 0.25, seed: int = 0, cache_dir: str | None = None,
) -> ProbeData:  # fmt: skip
    """The faces a probe fits on and scores on, with their labels (see the module docstring)."""
    cache = cache_dir if cache_dir else config.cache_dir
    if _is_foreign(data_dir, config):
        ds = FaceFolder(data_dir, config.image_size, cache_dir=cache)
        labels = dataset_labels(ds, targets, label_regex, task, str(data_dir))
        keep, values = _common(labels)
        first = labels[0]
        tr, te = _split_here(len(keep), values[first.target] if first.task == "classify" else None, test_frac, seed)
        notes = [f"data: {data_dir} is not the run's data, so it is split here: {len(tr)} train / {len(te)} test "
                 f"(seed {seed}{', stratified by ' + repr(first.target) if first.task == 'classify' else ''})"]
        train = (ds, keep[tr], {t: v[tr] for t, v in values.items()})
        test = (ds, keep[te], {t: v[te] for t, v in values.items()})
    else:
        split_path = Path(run_dir) / "split.json"
        if not split_path.is_file():
            raise UserError(f"{split_path} not found: cannot tell which images {run_dir} trained on")
        folder = data_dir if data_dir is not None else config.data_dir
        if folder is not None and not is_several(folder) and not Path(folder).expanduser().is_dir():
            raise UserError(f"the run's data folder {folder!r} is not a folder here; pass --data-dir with its location")
        splits = prepare_data(
            folder, config.image_size, max_images=config.max_images, val_frac=config.val_frac,
            test_frac=config.test_frac, seed=config.seed, split_path=split_path, cache_dir=cache,
            augment=False, log=lambda _m: None,
        )  # fmt: skip
        where = "the synthetic faces" if folder is None else str(folder)
        labels = dataset_labels(splits.train, targets, label_regex, task,
                                f"the training faces of {where}", check=False)
        test_labels = dataset_labels(splits.test, targets, label_regex,
                                     {lab.target: lab.task for lab in labels},
                                     f"the test faces of {where}", check=False)
        train, test = (splits.train, *_common(labels)), (splits.test, *_common(test_labels))
        notes = [f"data: the run's own split ({where}, {split_path.name}): fit on train, score on test"]
    notes += [n for lab in labels for n in lab.notes]
    return _select(train, test, {lab.target: lab.task for lab in labels}, max_train, max_test, seed, notes)


def _select(train: tuple, test: tuple, tasks: dict[str, str], max_train: int | None, max_test: int | None,
            seed: int, notes: list[str]) -> ProbeData:  # fmt: skip
    """Seeded subsets of at most ``max_train`` / ``max_test`` faces."""
    parts = []
    for (ds, pos, values), limit, salt in ((train, max_train, 0), (test, max_test, 1)):
        pick = np.arange(len(pos))
        if limit is not None and limit < len(pos):
            pick = np.sort(np.random.default_rng([seed, salt]).choice(len(pos), size=int(limit), replace=False))
        parts.append((ds, pos[pick], {t: v[pick] for t, v in values.items()}, len(pos)))
    (tr_ds, tr_pos, y_tr, n_tr), (te_ds, te_pos, y_te, n_te) = parts
    if len(tr_pos) < n_tr or len(te_pos) < n_te:
        notes.append(f"subsampled (seed {seed}): {len(tr_pos)} of {n_tr} training faces, {len(te_pos)} of {n_te} test faces")
    for target, task in tasks.items():
        if task != "classify":
            continue
        classes, counts = np.unique(y_tr[target], return_counts=True)
        rare = classes[counts < 2]
        if len(rare):  # cross-validation cannot hold out a class seen once: fit without it (its test faces stay)
            keep = ~np.isin(y_tr[target], rare)
            tr_pos, y_tr = tr_pos[keep], {t: v[keep] for t, v in y_tr.items()}
            notes.append(f"left out {int((~keep).sum())} training face(s) of {target!r} classes seen once in "
                         f"training: {', '.join(map(repr, rare[:5].tolist()))}")  # fmt: skip
        if len(set(y_tr[target].tolist())) < 2:
            raise UserError(f"the training faces hold a single class of {target!r}: nothing to tell apart")
    return ProbeData(tr_ds, tr_pos, te_ds, te_pos, y_tr, y_te, tasks, notes)


# ---------------------------------------------------------------------- features
@dataclass
class EncoderFeatures:
    """Pooled encoder outputs of N faces. ``mean`` / ``cls``: the mean patch token / the class token after
    the encoder's final norm (the usual features), (N, D). With ``all_blocks``: ``block_mean`` /
    ``block_cls`` (N, depth + 1, D), the same pooling of every block's output *before* any norm (index
    0: the embedded patches, k: after block k). ``seconds``: the wall time it took."""

    mean: np.ndarray
    cls: np.ndarray
    block_mean: np.ndarray | None
    block_cls: np.ndarray | None
    seconds: float


def _batches(dataset: Any, positions: np.ndarray, batch_size: int):
    for start in range(0, len(positions), batch_size):
        yield torch.stack([dataset[int(i)] for i in positions[start : start + batch_size]])


@torch.no_grad()
def encode(
    model: MaskedAutoencoder, dataset: Any, positions: Sequence[int] | np.ndarray | None = None, *,
    batch_size: int = 256, device: str | torch.device = "cpu", all_blocks: bool = False, progress: bool = True,
    desc: str = "encoding faces",
) -> EncoderFeatures:  # fmt: skip
    """The frozen encoder on whole faces (every patch visible, in order: no masking), pooled per face."""
    positions = np.arange(len(dataset)) if positions is None else np.asarray(positions, dtype=np.int64)
    device = torch.device(device)
    model = model.to(device).eval()
    outs: dict[str, list[torch.Tensor]] = {"mean": [], "cls": [], "block_mean": [], "block_cls": []}
    started = time.perf_counter()
    bar = tqdm(total=len(positions), desc=desc, unit="img", disable=not progress)
    for batch in _batches(dataset, positions, batch_size):
        x = batch_to_input(batch, device)
        tokens = model.patch_embed(model.patch_embed.flatten_patches(x)) + model.pos_embed[:, 1:]
        cls = (model.cls_token + model.pos_embed[:, :1]).expand(len(x), -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        per_block = [h]
        for block in model.blocks:
            h = block(h)
            per_block.append(h)
        final = model.norm(h)
        outs["mean"].append(final[:, 1:].mean(1).cpu())
        outs["cls"].append(final[:, 0].cpu())
        if all_blocks:
            outs["block_mean"].append(torch.stack([b[:, 1:].mean(1) for b in per_block], 1).cpu())
            outs["block_cls"].append(torch.stack([b[:, 0] for b in per_block], 1).cpu())
        bar.update(len(x))
    bar.close()
    cat = {k: (torch.cat(v).numpy() if v else None) for k, v in outs.items()}
    return EncoderFeatures(cat["mean"], cat["cls"], cat["block_mean"], cat["block_cls"], time.perf_counter() - started)


def random_twin(model: MaskedAutoencoder, seed: int = 0) -> MaskedAutoencoder:
    """The same architecture with fresh, seeded initial weights: the never-trained baseline."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MaskedAutoencoder(**model.config).eval()


def pixels(dataset: Any, positions: Sequence[int] | np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Faces as flat pixel rows in [0, 1], float32 (N, H * W * 3): the input of the PCA baseline."""
    rows = [b.reshape(len(b), -1).numpy().astype(np.float32) / 255.0
            for b in _batches(dataset, np.asarray(positions, dtype=np.int64), batch_size)]  # fmt: skip
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------- the linear probe
def _model(task: str, y_train: np.ndarray, pca_width: int | None, standardize: bool, seed: int, cv: int):
    from sklearn.decomposition import PCA  # local: scikit-learn is heavy (~1.5 s); every CLI call loads this module
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
    folds = StratifiedKFold(n_splits=int(max(2, min(cv, smallest))), shuffle=True, random_state=seed)
    clf = LogisticRegressionCV(Cs=list(LOGISTIC_CS), cv=folds, l1_ratios=(0.0,), scoring="accuracy", max_iter=2000,
                               use_legacy_attributes=False)  # fmt: skip
    return make_pipeline(*steps, clf)


def fit_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, task: str, *,
    pca_width: int | None = None, standardize: bool = True, seed: int = 0, cv: int = 5,
) -> dict[str, Any]:  # fmt: skip
    """Fit one linear probe on the training rows (regularisation by ``cv``-fold cross-validation on them
    only; PCA, when asked, fitted on them too) and score it on the test rows.

    Returns ``score`` (accuracy, or mean absolute error), ``low`` / ``high`` (95% interval), ``width``
    (numbers per face the linear model sees), ``seconds`` and ``reg`` (the chosen C or alpha).
    """
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError("features and labels differ in length")
    started = time.perf_counter()
    if pca_width:  # PCA cannot give more components than faces: a narrower row, shown as such in the table
        pca_width = min(pca_width, x_train.shape[0] - 1, x_train.shape[1])  # centred data has rank n - 1
    y_fit = y_train.astype(np.float64) if task == "regress" else y_train
    model = _model(task, y_train, pca_width, standardize, seed, cv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes and sklearn deprecations are not the user's
        dtype = np.float32 if pca_width else np.float64  # pixels stay float32: 6,000 faces at 64 px are 300 MB
        model.fit(np.asarray(x_train, dtype), y_fit)
        pred = model.predict(np.asarray(x_test, dtype))
    last = model[-1]
    reg = float(np.ravel(last.C_)[0]) if task == "classify" else float(last.alpha_)
    width = pca_width or x_train.shape[1]
    seconds = time.perf_counter() - started
    return {**prediction_score(task, y_test, pred), "width": int(width), "seconds": seconds,
            "reg": reg}


def chance(task: str, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """The majority training class (classes) or the training mean (numbers), scored like a probe."""
    if task == "classify":
        values, counts = np.unique(y_train, return_counts=True)
        pred = np.full(len(y_test), values[np.argmax(counts)], dtype=y_test.dtype)
    else:
        pred = np.full(len(y_test), float(np.mean(y_train.astype(np.float64))))
    return {**prediction_score(task, y_test, pred), "width": 0, "seconds": 0.0, "reg": float("nan")}


# ---------------------------------------------------------------------- the table
FEATURE_NAMES = {
    "mae_mean": "MAE encoder, mean patch token",
    "mae_cls": "MAE encoder, class token",
    "random_mean": "random weights, mean patch token",
    "pixels": "PCA of pixels",
    "second_mean": "second run, mean patch token",
    "second_cls": "second run, class token",
}


def feature_sets(
    model: MaskedAutoencoder, data: ProbeData, *, second: MaskedAutoencoder | None = None, random_weights: bool = True,
    pixel_baseline: bool = True, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Every feature kind of the table, for the training and the test faces: ``{kind: {"name", "train",
    "test", "pca" (the PCA width, pixels only), "seconds" (extraction)}}``."""
    sets: dict[str, dict[str, Any]] = {}
    models = [("mae", model, "MAE encoder")]
    if random_weights:
        models.append(("random", random_twin(model, seed), "random weights"))
    if second is not None:
        models.append(("second", second, "second run"))
    for key, m, what in models:
        enc = {part: encode(m, ds, pos, batch_size=batch_size, device=device, progress=progress,
                            desc=f"{what}: {part} faces")
               for part, ds, pos in (("train", data.train_set, data.train_pos), ("test", data.test_set, data.test_pos))}  # fmt: skip
        seconds = enc["train"].seconds + enc["test"].seconds
        for pool in ("mean", "cls") if key != "random" else ("mean",):
            sets[f"{key}_{pool}"] = {"name": FEATURE_NAMES[f"{key}_{pool}"], "train": getattr(enc["train"], pool),
                                     "test": getattr(enc["test"], pool), "pca": None, "seconds": seconds}  # fmt: skip
    if pixel_baseline:
        started = time.perf_counter()
        sets["pixels"] = {"name": FEATURE_NAMES["pixels"], "train": pixels(data.train_set, data.train_pos),
                          "test": pixels(data.test_set, data.test_pos), "pca": sets["mae_mean"]["train"].shape[1],
                          "seconds": time.perf_counter() - started}  # fmt: skip
    return sets


def probe_features(sets: dict[str, dict[str, Any]], data: ProbeData, target: str, *, seed: int = 0, cv: int = 5,
                   shuffle_labels: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """One row per feature kind, then chance: ``{"kind", "name", "score", "low", "high", "width", "seconds", ...}``.

    ``shuffle_labels``: fit on randomly permuted training labels (seeded): the honesty check, every row
    should then score at chance.
    """
    task = data.tasks[target]
    y_train, y_test = data.y_train[target], data.y_test[target]
    if shuffle_labels:
        y_train = np.random.default_rng(seed).permutation(y_train)
    rows = []
    for kind, s in sets.items():
        row = fit_probe(s["train"], y_train, s["test"], y_test, task, pca_width=s["pca"], seed=seed, cv=cv)
        rows.append({"kind": kind, "name": s["name"], **row, "fit_seconds": row["seconds"],
                     "seconds": row["seconds"] + s["seconds"]})  # fmt: skip
    rows.append({"kind": "chance", "name": "chance (majority class)" if task == "classify" else "chance (training mean)",
                 **chance(task, y_train, y_test), "fit_seconds": 0.0})  # fmt: skip
    return rows


def format_table(rows: list[dict[str, Any]], target: str, task: str, n_train: int, n_test: int) -> str:
    """A plain-text table of one target's probes: score, 95% interval, width, wall time."""
    metric = "accuracy" if task == "classify" else "mean abs. error"
    better = "higher is better" if task == "classify" else "lower is better"
    fmt = (lambda v: f"{100 * v:.1f}%") if task == "classify" else (lambda v: f"{v:.3g}")
    table = [["features", "width", metric, "95% interval", "time"]]
    for r in rows:
        table.append([r["name"], str(r["width"] or "-"), fmt(r["score"]), f"[{fmt(r['low'])}, {fmt(r['high'])}]",
                      f"{r['seconds']:.1f} s" if r["seconds"] else "-"])  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [f"target {target!r}: {metric} on {n_test} test faces ({better}); linear probes fitted on {n_train} "
             "training faces"]  # fmt: skip
    for j, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------- the library entry point
def probe_run(
    run_dir: str | Path, targets: str | Sequence[str], *, data_dir: str | Path | None = None,
    label_regex: str | None = None, task: str = "auto", second_run: str | Path | None = None, which: str = "best",
    max_train: int | None = None, max_test: int | None = None, test_frac: float = 0.25, seed: int = 0, cv: int = 5,
    shuffle_labels: bool = False, random_weights: bool = True, pixel_baseline: bool = True, batch_size: int = 256,
    device: str = "auto", cache_dir: str | None = None, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Linear probes of a run's frozen encoder against PCA pixels, random weights and chance.

    Returns ``tables`` {target: text}, ``rows`` {target: rows of :func:`probe_features`}, ``notes``
    (which data, labels and split), ``data`` (:class:`ProbeData`), ``sets`` (the features, for maps
    and neighbours) and ``seconds`` (the whole call).
    """
    started = time.perf_counter()
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise UserError("name at least one --target")
    check_seed(seed)
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    for name, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 2:
            raise UserError(f"{name} must be at least 2; got {value}")
    if not 0 < test_frac < 1:
        raise UserError(f"test_frac must lie between 0 and 1; got {test_frac}")
    if label_regex:
        check_pattern(label_regex)  # before the model and the faces are loaded
    check_run_dir(run_dir)
    if second_run is not None:
        check_run_dir(second_run, "--second-run")
    dev = resolve_device(device)
    model, config = load_model_from_run(run_dir, which, dev)
    second = None
    if second_run is not None:
        second, second_config = load_model_from_run(second_run, which, dev)
        if second_config.image_size != config.image_size:
            raise UserError(f"--second-run {second_run} takes {second_config.image_size} px faces, {run_dir} "
                            f"{config.image_size} px: probe it on its own")  # fmt: skip
    data = load_probe_data(run_dir, config, targets, data_dir=data_dir, label_regex=label_regex, task=task,
                           max_train=max_train, max_test=max_test, test_frac=test_frac, seed=seed,
                           cache_dir=cache_dir)  # fmt: skip
    sets = feature_sets(model, data, second=second, random_weights=random_weights, pixel_baseline=pixel_baseline,
                        seed=seed, batch_size=batch_size, device=dev, progress=progress)  # fmt: skip
    rows, tables = {}, {}
    for target in data.tasks:
        rows[target] = probe_features(sets, data, target, seed=seed, cv=cv, shuffle_labels=shuffle_labels)
        tables[target] = format_table(rows[target], target, data.tasks[target], len(data.train_pos), len(data.test_pos))
    notes = list(data.notes)
    if shuffle_labels:
        notes.append("honesty check: training labels shuffled (seeded); every row should score at chance")
    return {"tables": tables, "rows": rows, "notes": notes, "data": data, "sets": sets,
            "seconds": time.perf_counter() - started}  # fmt: skip


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Linear probes of a run's frozen encoder (mean patch token and class token, no masking) against PCA "
        "pixels of the same width, the same encoder with random weights, and chance: accuracy for classes, "
        "mean absolute error for numbers, on held-out faces with a 95% interval."
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a training run directory (runs/NAME)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="default: the run's own data and split; another folder is split here (seeded, "
                             "stratified by label)")  # fmt: skip
    parser.add_argument("--target", nargs="+", required=True, metavar="NAME",
                        help="what to predict: a synthetic attribute (glasses, beard, hair_colour, skin_tone, "
                             "yaw, ...), a named group of --label-regex, or any name for class sub-folders")  # fmt: skip
    parser.add_argument("--label-regex", default=None, metavar="PATTERN",
                        help=r"read labels from file names, e.g. '^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_' "
                             r"(UTKFace) or 'yaleB(?P<person>\d\d)_' (Yale)")  # fmt: skip
    parser.add_argument("--task", default="auto", choices=TASKS,
                        help="classify (logistic regression) or regress (ridge); default auto: many distinct "
                             "numbers are regressed")  # fmt: skip
    parser.add_argument("--second-run", default=None, metavar="RUN_DIR", help="probe a second run's encoder too")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="default: best")
    parser.add_argument("--max-train", type=int, default=None, metavar="N",
                        help="fit on a seeded random subset of N training faces (default: all)")  # fmt: skip
    parser.add_argument("--max-test", type=int, default=None, metavar="N", help="score at most N test faces")
    parser.add_argument("--test-frac", type=float, default=0.25,
                        help="share of faces held out when --data-dir is not the run's data (default 0.25)")  # fmt: skip
    parser.add_argument("--cv", type=int, default=5, help="cross-validation folds for the regularisation (default 5)")
    parser.add_argument("--shuffle-labels", action="store_true",
                        help="honesty check: fit on shuffled labels; every row should score at chance")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of splits, subsets and random weights (default 0)")
    parser.add_argument("--batch-size", type=int, default=256, help="faces per encoder call (default 256)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="default: auto")
    parser.add_argument("--cache-dir", default=None, help="where decoded faces are cached (default: the run's)")


def run_cli(args: argparse.Namespace) -> int:
    if args.cv < 2:
        raise UserError(f"--cv must be at least 2; got {args.cv}")
    result = probe_run(
        args.run, args.target, data_dir=args.data_dir, label_regex=args.label_regex, task=args.task,
        second_run=args.second_run, which=args.checkpoint, max_train=args.max_train, max_test=args.max_test,
        test_frac=args.test_frac, seed=args.seed, cv=args.cv, shuffle_labels=args.shuffle_labels,
        batch_size=args.batch_size, device=args.device, cache_dir=args.cache_dir,
    )  # fmt: skip
    print("\n".join(result["notes"]))
    for table in result["tables"].values():
        print()
        print(table)
    print(f"\ntotal wall time {result['seconds']:.1f} s")
    return 0
