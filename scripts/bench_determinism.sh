#!/usr/bin/env bash
# One 300-step generation of the quick start's FixMatch run with
# --deterministic=$1 (True / False) in a throw-away directory: time two
# calls alternately to see what determinism costs, e.g.
#   farm-bench -n 3 --warmup 0 --timeout 1200 \
#     --vs "scripts/bench_determinism.sh False" -- scripts/bench_determinism.sh True
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
case "${1:-}" in True|False) ;; *) echo "usage: $0 True|False" >&2; exit 2 ;; esac
. scripts/fashion_lt_settings.sh
dir="$(mktemp -d "${TMPDIR:-/tmp}/bench_determinism.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
CUDA_VISIBLE_DEVICES="" TF_CPP_MIN_LOG_LEVEL=2 "${PYTHON:-python3}" \
  -m train_and_eval_loop "${FASHION_LT_FLAGS[@]}" --class_im_ratio=0.02 \
  --num_epoch=1 --num_batch=300 --num_generation=1 "--deterministic=$1" \
  "--model_dir=$dir" >"$dir.log" 2>&1
rc=$?
[[ $rc -eq 0 ]] || tail -20 "$dir.log" >&2
rm -f "$dir.log"
exit $rc
