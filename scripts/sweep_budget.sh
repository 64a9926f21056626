#!/usr/bin/env bash
# What CReST gains at which budget: FixMatch, CReST and CReST+ on
# Fashion-MNIST-LT (the quick start's settings: scripts/fashion_lt_settings.sh)
# at STEPS training steps per generation.
#
#   STEPS=900 RATIOS="0.02 0.01" FOLDS="1 2 3" scripts/sweep_budget.sh
#
# METHODS (default "fixmatch fixmatchx3 crest3 crestplus3"):
#   fixmatch      FixMatch, one generation of STEPS steps
#   fixmatchxG    FixMatch given G generations' steps in one (G * STEPS steps,
#                 one cosine schedule): the same total compute as CReST with
#                 G generations
#   crestG        CReST, G generations of STEPS steps each (no alignment;
#                 its generation 0 is FixMatch of STEPS steps)
#   crestplusG    CReST+, G generations, adaptive alignment down to t = 0.5
# with G any positive integer (the paper uses 2, 3, 6 generations).
# Each generation is 2 epochs of STEPS / 2 steps (STEPS even). Runs go to
# MODEL_DIR [./runs/budget/stepsSTEPS]/METHOD/ratioR/foldF; the sweep
# environment (GPUS, EXTRA_FLAGS, DRY_RUN, ...) is scripts/sweep_lib.sh's.
# Tables: scripts/summarize.py MODEL_DIR --per_generation.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
: "${STEPS:=900}"
if ! [[ "$STEPS" =~ ^[0-9]+$ ]] || (( STEPS < 2 || STEPS % 2 )); then
  echo "error: STEPS=$STEPS must be an even number of steps >= 2" >&2
  exit 2
fi
: "${FOLDS:=1 2 3}"
: "${RATIOS:=0.02 0.01}"
: "${METHODS:=fixmatch fixmatchx3 crest3 crestplus3}"
: "${MODEL_DIR:=$PWD/runs/budget/steps$STEPS}"
VALID_METHODS="fixmatch fixmatchxG crestG crestplusG (G a positive integer)"
if [[ -z "${GPUS:-}" ]]; then export CUDA_VISIBLE_DEVICES=""; fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
. scripts/fashion_lt_settings.sh
BASE_FLAGS=("${FASHION_LT_FLAGS[@]}" --num_batch=$((STEPS / 2)))

method_flags() {
  [[ "$1" =~ ^(fixmatch|fixmatchx|crest|crestplus)([1-9][0-9]*)?$ ]] ||
    return 1
  local name="${BASH_REMATCH[1]}" g="${BASH_REMATCH[2]}"
  case "$name" in
    fixmatch) [[ -z "$g" ]] && echo "--num_epoch=2 --num_generation=1" ;;
    fixmatchx) [[ -n "$g" ]] &&
                 echo "--num_epoch=$((2 * g)) --num_generation=1" ;;
    *) [[ -n "$g" ]] &&
         echo "--num_epoch=2 $(crest_method_flags "$name" fixmatch "$g" 0.5)" ;;
  esac
}

. scripts/sweep_lib.sh
sweep_main
