#!/usr/bin/env bash
# Label efficiency on UTKFace: the run's encoder fine-tuned on 1%, 10% and 100% of the training labels
# of each TARGET (gender, age, race from the file names age_gender_race_*.jpg), against the same
# network from scratch with the same epochs. Each run is a folder OUT_DIR/TARGET_FRACTION_{mae,scratch}
# (an existing results.json is kept, so the script resumes a stopped sweep); then
# `python benchmarks/finetune_real_faces.py OUT_DIR` prints the table and draws the figure.
#   usage: benchmarks/recipes/finetune_labels.sh RUN OUT_DIR [TARGET ...]   (default: gender age race)
# RUN is a run trained on UTKFace (e.g. by cpu_quick.sh): its own split keeps its test faces unseen.
# EXTRA adds flags to every fine-tune (EXTRA=--augment: the run's augmentation, the earlier table).
# Results and the settings behind them: benchmarks/finetune_real_faces.md.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 RUN OUT_DIR [TARGET ...]" >&2; exit 2; fi
RUN=$1 OUT=$2
shift 2
TARGETS=${*:-gender age race}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PATTERN='^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_'
# fewer labels, more passes: about as many steps at 1% as at 10%, three passes over all of them
for target in $TARGETS; do
  for spec in "0.01 30" "0.1 10" "1.0 3"; do
    set -- $spec
    for mode in mae scratch; do
      name="$OUT/${target}_$1_$mode"
      [ -f "$name/results.json" ] && continue
      scratch_flag=""; [ "$mode" = scratch ] && scratch_flag="--from-scratch"
      "$PY" -m mae_utils finetune --run "$RUN" --target "$target" --label-regex "$PATTERN" \
        --train-fraction "$1" --epochs "$2" --device cpu ${scratch_flag:-} ${EXTRA:-} --out-dir "$name" --overwrite
    done
  done
done
