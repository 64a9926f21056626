#!/usr/bin/env bash
# The paper's ImageNet127 experiment: FixMatch, CReST and CReST+ on
# ImageNet-127 at 32x32 and 64x64, 10% labeled, ResNet-50.
#
#   scripts/sweep_imagenet127.sh                      # 2 sizes x 3 methods
#   GPUS="0 1 2 3" MODEL_DIR=/data/runs scripts/sweep_imagenet127.sh
#   SIZES=64 METHODS=crestplus DRY_RUN=1 scripts/sweep_imagenet127.sh
#   python3 scripts/summarize.py "$MODEL_DIR/64"     # the tables
#
# Methods: fixmatch = --num_generation=1; crest = --num_generation=$NUM_GEN;
# crestplus = crest + --do_distalign=True --how_dalign=adaptive --dalign_t=0.5.
# Every run: --net_arch=ResNet50 --net_width=1 --percent_labeled=0.1
# --unlab_ratio=7 --temperature=0 --num_epoch=64 (x 1024 steps, batch 64),
# the original's other defaults (SGD Nesterov lr 0.03, halfcos level 1, wd
# 5e-4, EMA 0.999, threshold 0.95, augment dh / dh / dhrac). The paper leaves
# most of these open; the README says which come from where.
#
# ImageNet-127 ignores --class_im_ratio (its imbalance is the data's). The
# sweep passes the prepared data's N_min / N_max (from classes.tsv), so the
# run directories (ratioR) and the tables (gamma=...) show the real gamma.
#
# Environment (defaults in brackets):
#   SIZES [32 64]  FOLDS [1]  METHODS [fixmatch crest crestplus]
#   NUM_GEN [6]  TEST (--imagenet127_test) [imbalanced]
#   MODEL_DIR [./runs/imagenet127] (each size in MODEL_DIR/SIZE)
#   PERCENT_LABELED [0.1]  GPUS [] (ids: one run per GPU in parallel)
#   EXTRA_FLAGS []  EXTRA_FLAGS_<method> []  PYTHON [python3]
#   DRY_RUN [0] (1: print the commands only)  ML_DATA (the data root)
# Data: $ML_DATA/imagenet127/{32,64}/ (scripts/prepare_imagenet127.py).
# The paper's metric is the mean of the per-class recalls
# (test_per_class_recall in each generation.json); with TEST=balanced the
# plain accuracy the tables show is that mean.
# Finished runs are skipped, unfinished ones resumed; each run's log is
# MODEL_DIR/SIZE/METHOD/ratioR/foldF/train.log; exits 1 if a run failed.
set -u
: "${SIZES:=32 64}"
: "${FOLDS:=1}"
: "${METHODS:=fixmatch crest crestplus}"
: "${NUM_GEN:=6}"
: "${TEST:=imbalanced}"
: "${MODEL_DIR:=$PWD/runs/imagenet127}"
: "${PERCENT_LABELED:=0.1}"
: "${ML_DATA:=}"
VALID_METHODS="fixmatch crest crestplus"
SWEEP_ROOT_DIR="$MODEL_DIR"

method_flags() { crest_method_flags "$1" fixmatch "$NUM_GEN" 0.5; }

# N_min / N_max of the prepared training set of one size.
data_ratio() {
  "${PYTHON:-python3}" - "$ML_DATA/imagenet127/$1/classes.tsv" <<'EOF'
import csv, sys
with open(sys.argv[1]) as f:
  counts = [int(r['train_count']) for r in csv.DictReader(f, delimiter='\t')]
print(repr(min(counts) / max(counts)))
EOF
}

. "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"

status=0
for size in $SIZES; do
  if [[ "$size" != 32 && "$size" != 64 ]]; then
    echo "error: SIZES has '$size'; ImageNet-127 comes as 32 or 64" >&2
    exit 2
  fi
  if ! RATIOS="$(data_ratio "$size" 2>/dev/null)"; then
    if [[ "$DRY_RUN" != 1 ]]; then
      echo "error: no prepared ImageNet-127 ${size}x${size} under" \
        "ML_DATA='$ML_DATA'; run scripts/prepare_imagenet127.py" >&2
      exit 2
    fi
    RATIOS=0.1  # Dry run without data: a placeholder.
  fi
  MODEL_DIR="$SWEEP_ROOT_DIR/$size"
  BASE_FLAGS=(--method=fixmatch "--dataset=imagenet127_$size"
              "--imagenet127_test=$TEST" --net_arch=ResNet50 --net_width=1
              "--percent_labeled=$PERCENT_LABELED" --num_epoch=64
              --sched_level=1 --unlab_ratio=7 --temperature=0)
  [[ -n "$ML_DATA" ]] && BASE_FLAGS+=("--ml_data=$ML_DATA")
  echo "== ImageNet-127 ${size}x${size} (class_im_ratio $RATIOS) in $MODEL_DIR"
  sweep_main
  rc=$?
  [[ $rc -eq 130 ]] && exit 130
  [[ $rc -ne 0 ]] && status=$rc
done
exit "$status"
