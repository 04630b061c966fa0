"""What a trained encoder knows about real faces: linear probes on UTKFace and Yale.

    OMP_NUM_THREADS=1 python benchmarks/probe_real_faces.py --run runs/my_faces \\
        --utkface data/utkface --yale data/yale --max-train 6000 --json probe.json

Part 1, the table of ``python -m mae_utils probe`` for four targets: UTKFace gender, age (mean
absolute error in years) and race, read from the file names ``age_gender_race_*.jpg``, fitted on a
seeded subset of ``--max-train`` of the run's training faces and scored on all its test faces; and
Yale identity (38 people), a folder the model never saw, split here 75/25, stratified by person.
Yale again with 3 training faces per person (a few-shot split, the rest tested). Each: the MAE
encoder's mean patch token and class token, the same encoder with random weights, PCA
pixels of the same width, chance, with the wall time of each probe.

Part 2 (``--sweep``), cheap changes that need no training, on gender and age: features of each block
(before any norm), several blocks concatenated, the final norm or not, standardised or not, class
token or mean. Every variant is compared with PCA pixels *of its own width* and with the same
variant of the random-weights encoder, so a wider feature gets no free advantage.

Prints markdown tables and the machine's load; ``--json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mae_utils.tools import probe  # noqa: E402
from mae_utils import load_model_from_run  # noqa: E402

UTK_REGEX = r"^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_"
YALE_REGEX = r"yaleB(?P<person>\d\d)_"


def fmt(row: dict, task: str) -> str:
    if task == "classify":
        return f"{100 * row['score']:.1f}% [{100 * row['low']:.1f}, {100 * row['high']:.1f}]"
    return f"{row['score']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def main_tables(args, model, config) -> dict:
    """Part 1: the probe command's table for each target."""
    out = {}
    few_shot = 1 - 3 * 38 / 871  # 3 training faces per person; none left to choose a block on
    jobs = [("UTKFace", None, UTK_REGEX, ["gender", "age", "race"], args.max_train, 0.25, 0.15),
            ("Yale", args.yale, YALE_REGEX, ["person"], None, 0.25, 0.15),
            ("Yale, 3 shots", args.yale, YALE_REGEX, ["person"], None, few_shot, 0.0)]
    if args.skip_main:
        jobs = jobs[-1:]
    for name, data_dir, regex, targets, max_train, test_frac, val_frac in jobs:
        started = time.perf_counter()
        settings = probe.ProbeSettings(
            targets=targets, data_dir=data_dir, label_regex=regex, test_frac=test_frac,
            val_frac=val_frac, max_train=max_train, seed=args.seed, cv=args.cv,
            cache_dir=args.cache_dir, device="cpu", progress=False,
        ).validate()
        data = probe.load_probe_data(args.run, config, settings)
        sets = probe.feature_sets(model, data, settings)
        print(f"\n{name}: " + "; ".join(data.notes) + f" (data + features {time.perf_counter() - started:.0f} s)")
        for target in targets:
            rows = probe.probe_features(sets, data, target, settings)
            print(probe.format_table(rows, target, data.tasks[target], len(data.train_pos), len(data.test_pos)))
            out[f"{name} {target}"] = {"task": data.tasks[target], "n_train": len(data.train_pos),
                                       "n_test": len(data.test_pos), "rows": rows}  # fmt: skip
    return out


def variants(enc: probe.EncoderFeatures) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (features (N, width), standardise?) for the cheap no-training changes."""
    depth = enc.block_mean.shape[1] - 1
    v = {"final norm, mean (default)": (enc.mean, True), "final norm, mean, not standardised": (enc.mean, False),
         "final norm, class token": (enc.cls, True), "final norm, mean + class token": (np.hstack([enc.mean, enc.cls]), True)}  # fmt: skip
    for k in range(depth + 1):
        v[f"block {k} (pre-norm), mean"] = (enc.block_mean[:, k], True)
    for k in range(1, depth + 1):
        v[f"block {k} (pre-norm), class token"] = (enc.block_cls[:, k], True)
    v[f"blocks 1-{depth} concatenated, mean"] = (enc.block_mean[:, 1:].reshape(len(enc.mean), -1), True)
    v[f"blocks 1-{depth} concatenated, mean + class token"] = (
        np.hstack([enc.block_mean[:, 1:].reshape(len(enc.mean), -1), enc.block_cls[:, 1:].reshape(len(enc.mean), -1)]), True)  # fmt: skip
    return v


def sweep(args, model, config) -> dict:
    """Part 2: every variant of the trained and the random encoder, and PCA pixels at each width."""
    settings = probe.ProbeSettings(targets=["gender", "age"], label_regex=UTK_REGEX,
                                   max_train=args.max_train, seed=args.seed,
                                   cache_dir=args.cache_dir).validate()
    data = probe.load_probe_data(args.run, config, settings)
    feats = {}
    for key, m in (("mae", model), ("random", probe.random_twin(model, args.seed))):
        feats[key] = [probe.encode(m, ds, pos, all_blocks=True, progress=False)
                      for ds, pos in ((data.train_set, data.train_pos), (data.test_set, data.test_pos))]  # fmt: skip
    px = [probe.pixels(data.train_set, data.train_pos), probe.pixels(data.test_set, data.test_pos)]
    out: dict = {}
    for target in ("gender", "age"):
        task, y_tr, y_te = data.tasks[target], data.y_train[target], data.y_test[target]
        pca_cache: dict[int, dict] = {}
        print(f"\n| {target}: variant | width | MAE encoder | random weights | PCA pixels, same width | fit s |")
        print("|---|---|---|---|---|---|")
        for name in variants(feats["mae"][0]):
            row = {}
            for key in ("mae", "random"):
                (x_tr, std), (x_te, _) = variants(feats[key][0])[name], variants(feats[key][1])[name]
                row[key] = probe.fit_probe((x_tr, y_tr), (x_te, y_te), task, standardize=std,
                                           seed=args.seed, cv=args.sweep_cv)
            width = row["mae"]["width"]
            if width not in pca_cache:
                pca_cache[width] = probe.fit_probe((px[0], y_tr), (px[1], y_te), task,
                                                   pca_width=width, standardize=False,
                                                   seed=args.seed, cv=args.sweep_cv)
            row["pixels"] = pca_cache[width]
            print(f"| {name} | {width} | {fmt(row['mae'], task)} | {fmt(row['random'], task)} | "
                  f"{fmt(row['pixels'], task)} | {row['mae']['seconds']:.1f} |", flush=True)  # fmt: skip
            out[f"{target}: {name}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run trained on UTKFace (its split.json gives train/test)")
    parser.add_argument("--utkface", default=None, help="UTKFace folder, if not where the run's config says")
    parser.add_argument("--yale", required=True, help="Extended Yale B folder (yaleBNN_*.png)")
    parser.add_argument("--max-train", type=int, default=6000, help="training faces per probe (seeded subset)")
    parser.add_argument("--cv", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="decoded-face cache (default: the run's)")
    parser.add_argument("--sweep", action="store_true", help="also part 2: blocks, norms, pooling")
    parser.add_argument("--sweep-cv", type=int, default=3, help="cross-validation folds in part 2 (default 3: ~30 fits)")
    parser.add_argument("--skip-main", action="store_true", help="of part 1, only Yale with 3 shots per person")
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args()
    model, config = load_model_from_run(args.run, "best", "cpu")
    if args.utkface:
        config.data_dir = args.utkface
    print(f"run {args.run}: {config.epochs} epochs, {config.image_size} px, encoder {model.config['embed_dim']} wide, "
          f"{model.config['depth']} blocks; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    started = time.perf_counter()
    result = {"main": main_tables(args, model, config)}
    if args.sweep:
        result["sweep"] = sweep(args, model, config)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
