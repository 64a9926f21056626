#!/usr/bin/env bash
# The README's experiment (the paper's Table 1): FixMatch, CReST and CReST+ on
# CIFAR-10-LT with 10% labeled, gamma 50 / 100 / 200, folds 1-5; the README
# command plus run.sh's --unlab_ratio=7 --temperature=0.
#
#   scripts/sweep_cifar10lt.sh                     # 45 runs, one at a time
#   GPUS="0 1 2 3" MODEL_DIR=/data/runs scripts/sweep_cifar10lt.sh
#   FOLDS=1 RATIOS=0.01 METHODS="fixmatch crestplus" DRY_RUN=1 \
#     scripts/sweep_cifar10lt.sh
#   python3 scripts/summarize.py "$MODEL_DIR"     # the table
#
# Methods: fixmatch = --num_generation=1; crest = --num_generation=6;
# crestplus = --num_generation=6 --do_distalign=True --how_dalign=adaptive
# --dalign_t=0.5 (CReST+).
#
# Environment (defaults in brackets):
#   FOLDS [1 2 3 4 5]  RATIOS (--class_im_ratio) [0.02 0.01 0.005]
#   METHODS [fixmatch crest crestplus]  MODEL_DIR [./runs/cifar10lt]
#   PERCENT_LABELED [0.1]  GPUS [] (ids: one run per GPU in parallel;
#   empty: sequential)  EXTRA_FLAGS [] (appended to every run)
#   EXTRA_FLAGS_<method> [] (appended to that method's runs)
#   PYTHON [python3]  DRY_RUN [0] (1: print the commands only)
# Data: $ML_DATA/cifar-lt/cifar-10-data-im-{ratio}/ (scripts/prepare_cifar.py).
# Finished runs are skipped, unfinished ones resumed; each run's log is
# MODEL_DIR/METHOD/ratioR/foldF/train.log; exits 1 if a run failed.
set -u
: "${FOLDS:=1 2 3 4 5}"
: "${RATIOS:=0.02 0.01 0.005}"
: "${METHODS:=fixmatch crest crestplus}"
SWEEP_DATASET="${SWEEP_DATASET:-cifar10lt}"
: "${MODEL_DIR:=$PWD/runs/$SWEEP_DATASET}"
: "${PERCENT_LABELED:=0.1}"
VALID_METHODS="fixmatch crest crestplus"
BASE_FLAGS=(--method=fixmatch "--dataset=$SWEEP_DATASET" --input_shape=32,32,3
            "--percent_labeled=$PERCENT_LABELED" --num_epoch=64
            --sched_level=1 --dalign_t=0.5 --unlab_ratio=7 --temperature=0)

method_flags() { crest_method_flags "$1" fixmatch "6" 0.5; }

. "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_main
