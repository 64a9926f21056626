#!/usr/bin/env bash
# The CIFAR-100-LT counterpart of the README's experiment: FixMatch, CReST
# and CReST+ on CIFAR-100-LT, gamma 50 / 100 / 200, folds 1-5, with the same
# flags as the CIFAR-10-LT sweep (10% labeled by default: set
# PERCENT_LABELED for the paper's CIFAR-100-LT labeled fraction).
#
#   scripts/sweep_cifar100lt.sh                     # 45 runs, one at a time
#   GPUS="0 1 2 3" MODEL_DIR=/data/runs scripts/sweep_cifar100lt.sh
#   FOLDS=1 RATIOS=0.01 METHODS="fixmatch crestplus" DRY_RUN=1 \
#     scripts/sweep_cifar100lt.sh
#   python3 scripts/summarize.py "$MODEL_DIR"     # the table
#
# Methods: fixmatch = --num_generation=1; crest = --num_generation=6;
# crestplus = --num_generation=6 --do_distalign=True --how_dalign=adaptive
# --dalign_t=0.5 (CReST+).
#
# Environment (defaults in brackets):
#   FOLDS [1 2 3 4 5]  RATIOS (--class_im_ratio) [0.02 0.01 0.005]
#   METHODS [fixmatch crest crestplus]  MODEL_DIR [./runs/cifar100lt]
#   PERCENT_LABELED [0.1]  GPUS [] (ids: one run per GPU in parallel;
#   empty: sequential)  EXTRA_FLAGS [] (appended to every run)
#   EXTRA_FLAGS_<method> [] (appended to that method's runs)
#   PYTHON [python3]  DRY_RUN [0] (1: print the commands only)
# Data: $ML_DATA/cifar-lt/cifar-100-data-im-{ratio}/ (scripts/prepare_cifar.py).
# Finished runs are skipped, unfinished ones resumed; each run's log is
# MODEL_DIR/METHOD/ratioR/foldF/train.log; exits 1 if a run failed.
# Same grid, flags and environment variables as sweep_cifar10lt.sh (which it
# runs with the dataset set to cifar100lt).
SWEEP_DATASET=cifar100lt exec "$(dirname "${BASH_SOURCE[0]}")/sweep_cifar10lt.sh" "$@"
