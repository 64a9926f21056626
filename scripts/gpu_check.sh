#!/usr/bin/env bash
# GPU check: prints within 8 minutes (480 s; it stops cleanly at the limit
# and prints what finished) a table of FixMatch and MixMatch training steps
# at the README configuration (WRN-28-2, 64 + 448 x 2 images) in images/s,
# for --net_impl=lean and keras, with and without --jit_compile, float32 and
# --mixed_precision=bfloat16, with evaluation images/s, peak GPU memory and
# the time to the first step, and whether a GPU was found (and if not, why).
#
#   scripts/gpu_check.sh OUT_DIR
#
# Writes OUT_DIR/gpu_check.json (and the worker's log). Installs nothing,
# except `pip install -r requirements.txt` when TensorFlow is not installed
# (that install is not counted in the 8 minutes). GPUs need the CUDA build:
# pip install 'tensorflow[and-cuda]'. Without a GPU it runs on the CPU with
# "CPU, reduced sizes" (the small network, tiny batches), as the test suite
# does. Environment: GPU_CHECK_TIME_LIMIT (seconds, default 480),
# GPU_CHECK_SIZES (auto | readme | reduced; auto: readme with a GPU, reduced
# without), PYTHON [python3]. Exit codes: 0 ran (to the end or the limit),
# 1 nothing measured, 2 bad input.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
: "${PYTHON:=python3}"
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: scripts/gpu_check.sh OUT_DIR (the directory for gpu_check.json)" >&2
  exit 2
fi
# Whether TensorFlow is installed, without the seconds of importing it.
if ! "$PYTHON" -c 'import importlib.util, sys
sys.exit(importlib.util.find_spec("tensorflow") is None)' >/dev/null 2>&1; then
  echo "TensorFlow is not installed: pip install -r requirements.txt" >&2
  "$PYTHON" -m pip install -r requirements.txt || exit 1
fi
exec "$PYTHON" scripts/gpu_check.py "$1"
