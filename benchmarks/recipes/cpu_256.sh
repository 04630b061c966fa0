#!/usr/bin/env bash
# CPU recipe at the paper's geometry: 256 px images, 16 px patches (256 patches, 64 visible), a small
# MAE, sized for about 2 hours on 2 CPU cores. Trains on DATA_DIR, evaluates its held-out test split
# and, if OTHER_DIR is given, every image of another source.
#   usage: benchmarks/recipes/cpu_256.sh DATA_DIR OUT_DIR [OTHER_DIR]
# Same augmentation as cpu_quick.sh (see benchmarks/cpu_recipe.md for why). Not yet measured end to end:
# the README says so until a run has filled in its time and both results.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 DATA_DIR OUT_DIR [OTHER_DIR]" >&2; exit 2; fi
DATA_DIR=$1 OUT_DIR=$2 OTHER_DIR=${3:-}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$PY" -m mae_utils train --data-dir "$DATA_DIR" --out-dir "$OUT_DIR" --device cpu \
  --image-size 256 --patch-size 16 --embed-dim 192 --depth 6 --num-heads 3 \
  --decoder-embed-dim 128 --decoder-depth 2 --decoder-num-heads 4 \
  --batch-size 16 --base-lr 0.032 --epochs ${EPOCHS:-6} --num-workers 1 \
  --crop-scale-min 0.5 --crop-scale-max 1.4 --sample-every 0

"$PY" -m mae_utils evaluate --run "$OUT_DIR" --device cpu --name test --limit 1000
if [ -n "$OTHER_DIR" ]; then
  "$PY" -m mae_utils evaluate --run "$OUT_DIR" --data-dir "$OTHER_DIR" --device cpu --name other
fi
