#!/usr/bin/env bash
# MixMatch counterparts: MixMatch, MixMatch + CReST and MixMatch + CReST+ on
# the DARP protocol (CIFAR-10, gamma 50 / 100 / 150), folds 1-5, with the
# command users ran for the paper's MixMatch numbers (--num_epoch=128
# --sched_level=5 --alpha=2.0 --temperature=0.5 --num_weakaug=2
# --num_strongaug=0; CReST+ with --dalign_t=0.8).
#
#   scripts/sweep_mixmatch.sh
#   GPUS="0 1" RATIOS="150" scripts/sweep_mixmatch.sh
#   UNLABELED="consistent uniform reversed" RATIOS="100 150" \
#     scripts/sweep_mixmatch.sh     # mismatched unlabeled distributions
#   DATASET=cifar10lt RATIOS="0.02 0.01 0.005" \
#     EXTRA_FLAGS=--percent_labeled=0.1 \
#     scripts/sweep_mixmatch.sh     # MixMatch on the CIFAR-10-LT protocol
#   python3 scripts/summarize.py "$MODEL_DIR"
#
# Methods: mixmatch = --num_generation=1; crest = --num_generation=6;
# crestplus = --num_generation=6 --do_distalign=True --how_dalign=adaptive
# --dalign_t=0.8. On the DARP datasets --fold does not change the data (the
# files define the split), so each fold also sets --seed=FOLD there: the
# repetitions differ by their training seed (summarize.py averages over both).
#
# Environment (defaults in brackets):
#   FOLDS [1 2 3 4 5]  RATIOS (--class_im_ratio; gamma itself for DARP)
#   [50 100 150]  UNLABELED (DARP: the unlabeled distributions, consistent,
#   uniform, reversed, middle, head_tail; runs of the others go to
#   ratioGAMMA_UNLABELED) [consistent]
#   METHODS [mixmatch crest crestplus]  DATASET [cifar10ltdarp]
#   MODEL_DIR [./runs/mixmatch-DATASET]  GPUS [] (ids: one run per GPU in
#   parallel; empty: sequential)  EXTRA_FLAGS [] (appended to every run)
#   EXTRA_FLAGS_<method> []  PYTHON [python3]  DRY_RUN [0] (1: print only)
# Data: $ML_DATA/cifar-darp/ (scripts/prepare_cifar.py --darp_gamma=...).
# Finished runs are skipped, unfinished ones resumed; each run's log is
# MODEL_DIR/METHOD/ratioR/foldF/train.log; exits 1 if a run failed.
set -u
: "${FOLDS:=1 2 3 4 5}"
: "${RATIOS:=50 100 150}"
: "${METHODS:=mixmatch crest crestplus}"
: "${DATASET:=cifar10ltdarp}"
: "${MODEL_DIR:=$PWD/runs/mixmatch-$DATASET}"
VALID_METHODS="mixmatch crest crestplus"
BASE_FLAGS=(--method=mixmatch "--dataset=$DATASET" --num_epoch=128
            --sched_level=5 --alpha=2.0 --num_weakaug=2 --num_strongaug=0
            --temperature=0.5)

fold_flags() {
  if [[ "$DATASET" == *darp ]]; then echo "--seed=$1"; fi
}

method_flags() { crest_method_flags "$1" mixmatch "6" 0.8; }

. "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
if [[ "$DATASET" == *darp ]]; then
  RATIOS="$(darp_ratio_grid "$RATIOS" "${UNLABELED:-consistent}")"
  ratio_flags() { darp_ratio_flags "$1"; }
fi
sweep_main
