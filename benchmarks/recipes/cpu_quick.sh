#!/usr/bin/env bash
# CPU quick recipe: 64 px images, 8 px patches, a 1.3 M-parameter MAE, 18 epochs on 2 CPU threads,
# then one epoch of the seam refiner (wall time on 2 idle cores: benchmarks/cpu_recipe.md).
# Trains on DATA_DIR (several folders joined by ':' train on their union, each split on its own),
# then evaluates on EVAL_LIMIT (default 500) seeded faces of its held-out test split (of several
# folders: each one's and the union's) and of each OTHER_DIR, sources the model never saw
# (e.g. data/yale data/lfw):
# raw MAE, MAE + seam blend, MAE + refiner (made seam-free), against the classical baselines.
#   usage: benchmarks/recipes/cpu_quick.sh DATA_DIR[:DATA_DIR...] OUT_DIR [OTHER_DIR ...]
# Measured results and the ablation behind the settings: benchmarks/cpu_recipe.md.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 DATA_DIR[:DATA_DIR...] OUT_DIR [OTHER_DIR ...]" >&2; exit 2; fi
DATA_DIR=$1 OUT_DIR=$2
shift 2
IFS=: read -r -a TRAIN_DIRS <<< "$DATA_DIR"  # "A:B" -> (A B)
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # both cores; 1 keeps a shared machine predictable, at about twice the time

# Random crops of 0.5..4 of the image area, drawn log-uniformly (zoom in, mild zoom out and a face at
# half the frame side each about a third of the time), so faces are zoomed in (the MAE paper's random
# resized crop) and out (smaller in the frame, as in wide photos such as LFW's), the surround another
# training photo met by the face's mirrored borders (a flat mean-grey surround is in no photo), and
# flipped: the model learns faces, not one data set's framing. The earlier flat-surround crops (the
# recipe of 2026-11-29 in cpu_recipe.md) are EXTRA="--crop-scale-max 1.4 --crop-scale-draw uniform --zoom-fill mean".
# EXTRA adds flags (e.g. EXTRA="--grey-prob 0.2"); later flags win.
"$PY" -m mae_utils train --data-dir "${TRAIN_DIRS[@]}" --out-dir "$OUT_DIR" --device cpu \
  --image-size 64 --patch-size 8 --embed-dim 128 --depth 4 --num-heads 4 \
  --decoder-embed-dim 128 --decoder-depth 2 --decoder-num-heads 4 \
  --batch-size 16 --base-lr 0.032 --epochs ${EPOCHS:-18} \
  --crop-scale-min 0.5 --crop-scale-max 4 --crop-scale-draw log --zoom-fill photo \
  --sample-every 0 ${EXTRA:-}

# The learned seam refiner on the frozen MAE (docs/model.md#seam-refiner-optional): one epoch is most
# of its gain; REFINE_EPOCHS=0 skips it.
if [ "${REFINE_EPOCHS:-1}" != 0 ]; then
  "$PY" -m mae_utils refine --run "$OUT_DIR" --device cpu --epochs "${REFINE_EPOCHS:-1}" --overwrite
fi

"$PY" -m mae_utils evaluate --run "$OUT_DIR" --device cpu --limit "${EVAL_LIMIT:-500}" --name test
for other in "$@"; do
  "$PY" -m mae_utils evaluate --run "$OUT_DIR" --data-dir "$other" --device cpu --limit "${EVAL_LIMIT:-500}" --name "$(basename "$other")"
done
