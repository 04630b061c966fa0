#!/usr/bin/env bash
# CPU recipe at the paper's geometry: 256 px images, 16 px patches (256 patches, 64 visible), a small
# MAE (192x6 encoder, 128x2 decoder), 9 epochs, then the seam refiner on part of an epoch. Trains on
# DATA_DIR, then scores LIMIT (default 300) seeded faces of its held-out test split and of each
# OTHER_DIR (at 256 px the harmonic and biharmonic baselines take ~0.6 and ~0.35 s per image on one
# core), all evaluations at once, one thread each. Wall time on 2 idle cores: benchmarks/cpu_recipe.md.
#   usage: benchmarks/recipes/cpu_256.sh DATA_DIR OUT_DIR [OTHER_DIR ...]
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 DATA_DIR OUT_DIR [OTHER_DIR ...]" >&2; exit 2; fi
DATA_DIR=$1 OUT_DIR=$2
shift 2
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
LIMIT=${LIMIT:-300}

# The same framing as cpu_quick.sh (crops of 0.5..4 of the area drawn log-uniformly, a real-photo
# surround; why: benchmarks/cpu_recipe.md). The earlier flat-surround crops (2026-11-29) are
# EXTRA="--crop-scale-max 1.4 --crop-scale-draw uniform --zoom-fill mean".
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$PY" -m mae_utils train --data-dir "$DATA_DIR" --out-dir "$OUT_DIR" \
  --device cpu --image-size 256 --patch-size 16 --embed-dim 192 --depth 6 --num-heads 3 \
  --decoder-embed-dim 128 --decoder-depth 2 --decoder-num-heads 4 \
  --batch-size 16 --base-lr 0.032 --epochs ${EPOCHS:-9} \
  --crop-scale-min 0.5 --crop-scale-max 4 --crop-scale-draw log --zoom-fill photo --sample-every 0 ${EXTRA:-}

# The seam refiner (docs/model.md#seam-refiner-optional) runs at ~4 images/s at 256 px on CPU (a full
# epoch ~80 min), so it trains on REFINE_IMAGES (default 2400) images of one epoch; REFINE_IMAGES=0 skips it.
if [ "${REFINE_IMAGES:-2400}" != 0 ]; then
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$PY" -m mae_utils refine --run "$OUT_DIR" --device cpu --epochs 1 \
    --batch-size 16 --images-per-epoch "${REFINE_IMAGES:-2400}" --overwrite
fi

# All evaluations at once, one thread each (the baselines use one core anyway; with three sources on
# two cores none waits for another to finish); each writes its table to OUT_DIR/eval/NAME.log,
# printed at the end.
mkdir -p "$OUT_DIR/eval"
evaluate() {  # NAME [--data-dir DIR]
  OMP_NUM_THREADS=1 "$PY" -m mae_utils evaluate --run "$OUT_DIR" --device cpu --limit "$LIMIT" --batch-size 16 \
    --name "$@" > "$OUT_DIR/eval/$1.log" 2>&1
}
names=(test) pids=() failed=0
evaluate test & pids+=($!)
for other in "$@"; do
  name=$(basename "$other")
  names+=("$name")
  evaluate "$name" --data-dir "$other" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
for name in "${names[@]}"; do
  tr '\r' '\n' < "$OUT_DIR/eval/$name.log" | grep -v -E '^(evaluating|caching)' || true
done
if [ "$failed" -ne 0 ]; then
  echo "an evaluation failed; see $OUT_DIR/eval/*.log" >&2
  exit 1
fi
