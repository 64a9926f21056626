#!/usr/bin/env bash
# FixMatch, CReST and CReST+ on the DARP protocol (CIFAR-10, N1 = 1500,
# M1 = 3000) with the unlabeled set's class distribution consistent with the
# labeled one, uniform or reversed (DASO, ACR, SimPro, USB "reversed"),
# gamma 100 / 150, seeds 1-3; the CIFAR-10-LT command's settings
# (--num_epoch=64 --sched_level=1 --unlab_ratio=7 --temperature=0; CReST+
# --dalign_t=0.5).
#
#   scripts/sweep_darp.sh                          # 54 runs, one at a time
#   GPUS="0 1 2 3" MODEL_DIR=/data/runs scripts/sweep_darp.sh
#   GAMMAS=150 UNLABELED="reversed" FOLDS=1 DRY_RUN=1 scripts/sweep_darp.sh
#   DATASET=cifar100ltdarp GAMMAS="10 20" EXTRA_FLAGS="--darp_n1=50 \
#     --darp_m1=400" scripts/sweep_darp.sh          # SimPro's CIFAR-100 grid
#   python3 scripts/summarize.py "$MODEL_DIR" [--stat median20]
#
# summarize.py puts the grid in one table per metric: rows FixMatch, CReST,
# CReST+; one column per (gamma, unlabeled distribution), e.g.
# "gamma=100, reversed"; cells mean (std) over the seeds.
#
# Methods: fixmatch = --num_generation=1; crest = --num_generation=6;
# crestplus = --num_generation=6 --do_distalign=True --how_dalign=adaptive
# --dalign_t=0.5. On the DARP datasets --fold does not change the data (the
# files define the split), so each fold sets --seed=FOLD: the repetitions
# differ by their training seed. CReST's selection uses the labeled
# distribution (gt_p_data) whatever the unlabeled one is.
#
# Environment (defaults in brackets):
#   FOLDS (seeds) [1 2 3]  GAMMAS [100 150]  UNLABELED (consistent, uniform,
#   reversed, middle, head_tail) [consistent uniform reversed]
#   RATIOS [every GAMMA_UNLABELED; consistent is the plain GAMMA]
#   METHODS [fixmatch crest crestplus]  DATASET [cifar10ltdarp]
#   MODEL_DIR [./runs/darp-DATASET]  GPUS [] (ids: one run per GPU in
#   parallel; empty: sequential)  EXTRA_FLAGS [] (appended to every run)
#   EXTRA_FLAGS_<method> []  PYTHON [python3]  DRY_RUN [0] (1: print only)
# Data: $ML_DATA/cifar-darp/, made by
#   scripts/prepare_cifar.py --archive=cifar-10-python.tar.gz \
#     --darp_gamma=100,150 --darp_unlabeled=consistent,uniform,reversed
# Finished runs are skipped, unfinished ones resumed; each run's log is
# MODEL_DIR/METHOD/ratioGAMMA[_UNLABELED]/foldF/train.log; exits 1 if a run
# failed.
set -u
: "${FOLDS:=1 2 3}"
: "${GAMMAS:=100 150}"
: "${UNLABELED:=consistent uniform reversed}"
: "${METHODS:=fixmatch crest crestplus}"
: "${DATASET:=cifar10ltdarp}"
: "${MODEL_DIR:=$PWD/runs/darp-$DATASET}"
VALID_METHODS="fixmatch crest crestplus"
BASE_FLAGS=(--method=fixmatch "--dataset=$DATASET" --num_epoch=64
            --sched_level=1 --dalign_t=0.5 --unlab_ratio=7 --temperature=0)

fold_flags() { echo "--seed=$1"; }

method_flags() { crest_method_flags "$1" fixmatch "6" 0.5; }

. "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
: "${RATIOS:=$(darp_ratio_grid "$GAMMAS" "$UNLABELED")}"
ratio_flags() { darp_ratio_flags "$1"; }
sweep_main
