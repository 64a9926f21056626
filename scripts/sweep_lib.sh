# Shared functions of the sweep scripts (sourced, not run).
#
# A sweep script sets BASE_FLAGS (array), the defaults of FOLDS, RATIOS,
# METHODS and MODEL_DIR, defines `method_flags METHOD` (prints the method's
# flags, fails on an unknown method), optionally `fold_flags FOLD` (extra flags
# of a fold, e.g. --seed=FOLD), optionally `ratio_flags RATIO` (the flags of
# one RATIOS entry; default --class_im_ratio=RATIO; see `darp_ratio_flags`),
# and calls `sweep_main`. Every run gets its
# own --model_dir, $MODEL_DIR/METHOD/ratioRATIO/foldFOLD, with its log
# (stdout and stderr, appended on each attempt) in train.log there.
#
# Environment (all optional):
#   FOLDS        folds (space-separated), e.g. "1 2 3 4 5"
#   RATIOS       --class_im_ratio values, e.g. "0.02 0.01 0.005"
#   METHODS      methods of the script, e.g. "fixmatch crest crestplus"
#   MODEL_DIR    where the runs go
#   GPUS         GPU ids, e.g. "0 1 2 3": one run per GPU in parallel
#                (CUDA_VISIBLE_DEVICES=id); empty: one run at a time on
#                whatever devices are visible
#   EXTRA_FLAGS  flags appended to every run (they override the script's)
#   EXTRA_FLAGS_<METHOD>  flags appended to that method's runs only, e.g.
#                EXTRA_FLAGS_crestplus="--dalign_t=0.8"
#   PYTHON       the Python interpreter (default python3)
#   DRY_RUN=1    print each run's command (and whether it is finished)
#                without running anything
#
# A run whose last generation has generation.json is skipped; an unfinished
# one is resumed by the training entry point. A failed run is reported with
# its exit code and log and does not stop the others. The sweep ends with a
# summary and exits 1 if any run failed (130 if interrupted).

SWEEP_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${PYTHON:=python3}"
: "${GPUS:=}"
: "${EXTRA_FLAGS:=}"
: "${DRY_RUN:=0}"

# Prints the run directory and num_generation of these training flags (the
# same computation as the entry point: crest.run_dir.path); fails if the
# flags do not parse.
sweep_run_dir() {
  (cd "$SWEEP_REPO" && "$PYTHON" - "$@" 2>/dev/null <<'EOF'
import sys

from absl import flags

from crest import flags as crest_flags
from crest import run_dir

values = flags.FlagValues()
crest_flags.define_flags(values)
values(['run_dir'] + sys.argv[1:])
cfg = crest_flags.config_from_values(*crest_flags.values_from_flags(values))
print(run_dir.path(cfg))
print(cfg.num_generation)
EOF
  )
}

# Succeeds if the run of these flags has its last generation's record.
# (Without its --model_dir directory it cannot be: no Python is started.)
sweep_is_finished() {
  local out run_dir num_gen last a model_dir=""
  for a in "$@"; do [[ "$a" == --model_dir=* ]] && model_dir="${a#*=}"; done
  [[ -z "$model_dir" || -d "$model_dir" ]] || return 1
  out="$(sweep_run_dir "$@")" || return 1
  run_dir="$(sed -n 1p <<<"$out")"
  num_gen="$(sed -n 2p <<<"$out")"
  [[ -n "$run_dir" && "$num_gen" =~ ^[0-9]+$ ]] || return 1
  last="$(printf '%02d' $((num_gen - 1)))"
  compgen -G "$run_dir/gen_${last}*/generation.json" >/dev/null
}

# Starts one run in the background: sweep_launch GPU NAME LOG FLAGS...
# Appends "EXIT_CODE NAME LOG" to $SWEEP_STATUS when it ends.
sweep_launch() {
  local gpu="$1" name="$2" log="$3"
  shift 3
  (
    trap 'kill -TERM "$child" 2>/dev/null' TERM INT
    if [[ -n "$gpu" ]]; then export CUDA_VISIBLE_DEVICES="$gpu"; fi
    cd "$SWEEP_REPO" || exit 1
    echo "=== $(date '+%F %T') ${gpu:+CUDA_VISIBLE_DEVICES=$gpu }$PYTHON -m" \
      "train_and_eval_loop $*" >>"$log"
    "$PYTHON" -m train_and_eval_loop "$@" >>"$log" 2>&1 &
    child=$!
    wait "$child"
    rc=$?
    while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
    echo "$rc $name $log" >>"$SWEEP_STATUS"
    exit "$rc"
  ) &
}

# The rows of the paper's tables: crest_method_flags NAME BASE GENERATIONS
# DALIGN_T prints the flags of NAME = BASE (fixmatch / mixmatch alone),
# crest or crestplus (CReST+: adaptive alignment down to DALIGN_T); returns 1
# for another name.
crest_method_flags() {
  case "$1" in
    "$2") echo "--num_generation=1" ;;
    crest) echo "--num_generation=$3" ;;
    crestplus) echo "--num_generation=$3 --do_distalign=True" \
                    "--how_dalign=adaptive --dalign_t=$4" ;;
    *) return 1 ;;
  esac
}

# The DARP sweeps' RATIOS entries: GAMMA (the labeled profile for the
# unlabeled set too) or GAMMA_PROFILE, PROFILE one of uniform, reversed,
# middle, head_tail (--darp_gamma_u / --darp_unlabeled_shape).
darp_ratio_flags() {
  local gamma="${1%%_*}" profile=""
  [[ "$1" == *_* ]] && profile="${1#*_}"
  [[ -n "$gamma" ]] || return 1
  case "$profile" in
    ""|consistent) echo "--class_im_ratio=$gamma" ;;
    uniform) echo "--class_im_ratio=$gamma --darp_gamma_u=1" ;;
    reversed) echo "--class_im_ratio=$gamma --darp_gamma_u=-$gamma" ;;
    middle|head_tail) echo "--class_im_ratio=$gamma" \
                           "--darp_unlabeled_shape=$profile" ;;
    *) return 1 ;;
  esac
}

# RATIOS of a DARP sweep: every GAMMA x UNLABELED profile ("consistent" as
# the plain GAMMA, so those runs keep their directories).
darp_ratio_grid() {
  local g u out=()
  for g in $1; do
    for u in $2; do
      if [[ "$u" == consistent ]]; then out+=("$g"); else out+=("${g}_$u"); fi
    done
  done
  echo "${out[*]}"
}

# Runs the grid FOLDS x RATIOS x METHODS (fold outermost, so the first
# complete table comes first).
sweep_main() {
  local methods=() m
  read -ra methods <<<"$METHODS"
  for m in "${methods[@]}"; do
    if ! method_flags "$m" >/dev/null; then
      echo "error: unknown method '$m' in METHODS; valid: $VALID_METHODS" >&2
      return 2
    fi
  done
  if declare -F ratio_flags >/dev/null; then
    for m in $RATIOS; do
      if ! ratio_flags "$m" >/dev/null; then
        echo "error: bad entry '$m' in RATIOS (GAMMA or GAMMA_PROFILE," \
          "PROFILE one of consistent uniform reversed middle head_tail)" >&2
        return 2
      fi
    done
  fi
  local slots=()
  read -ra slots <<<"$GPUS"
  [[ ${#slots[@]} -gt 0 ]] || slots=("")
  if [[ "$DRY_RUN" == 1 ]]; then  # Writes nothing under MODEL_DIR.
    SWEEP_STATUS="$(mktemp)"
  else
    mkdir -p "$MODEL_DIR" || return 2
    SWEEP_STATUS="$(mktemp "$MODEL_DIR/.sweep_status.XXXXXX")"
  fi
  local pids=() skipped=0 planned=0 stop=0 fold ratio name dir extra var
  local -a args extra_args method_args fold_args ratio_args
  trap 'stop=1; for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done' \
    INT TERM
  for fold in $FOLDS; do
    for ratio in $RATIOS; do
      for m in "${methods[@]}"; do
        [[ $stop -eq 0 ]] || break 3
        name="$m/ratio$ratio/fold$fold"
        dir="$MODEL_DIR/$name"
        var="EXTRA_FLAGS_$m"
        read -ra method_args <<<"$(method_flags "$m")"
        read -ra extra_args <<<"$EXTRA_FLAGS ${!var:-}"
        fold_args=()
        if declare -F fold_flags >/dev/null; then
          read -ra fold_args <<<"$(fold_flags "$fold")"
        fi
        ratio_args=("--class_im_ratio=$ratio")
        if declare -F ratio_flags >/dev/null; then
          read -ra ratio_args <<<"$(ratio_flags "$ratio")"
        fi
        args=("${BASE_FLAGS[@]}" "${ratio_args[@]}" "--fold=$fold"
              "${fold_args[@]}" "${method_args[@]}" "--model_dir=$dir"
              "${extra_args[@]}")
        planned=$((planned + 1))
        if sweep_is_finished "${args[@]}"; then
          echo "finished, skipped: $name"
          skipped=$((skipped + 1))
          continue
        fi
        if [[ "$DRY_RUN" == 1 ]]; then
          echo "would run: $name: $PYTHON -m train_and_eval_loop ${args[*]}"
          continue
        fi
        # Wait for a free slot (a GPU, or the single sequential slot).
        local slot=-1 s
        while [[ $slot -lt 0 && $stop -eq 0 ]]; do
          for s in "${!slots[@]}"; do
            if [[ -z "${pids[$s]:-}" ]] || ! kill -0 "${pids[$s]}" \
                2>/dev/null; then
              slot=$s
              break
            fi
          done
          [[ $slot -ge 0 ]] || wait -n 2>/dev/null || sleep 1
        done
        [[ $stop -eq 0 ]] || break 3
        mkdir -p "$dir"
        echo "running: $name${slots[$slot]:+ on GPU ${slots[$slot]}}" \
          "(log: $dir/train.log)"
        sweep_launch "${slots[$slot]}" "$name" "$dir/train.log" "${args[@]}"
        pids[$slot]=$!
      done
    done
  done
  wait
  sweep_report "$planned" "$skipped" "$stop"
}

# Prints the final summary from $SWEEP_STATUS; returns 0, 1 (a run failed)
# or 130 (interrupted).
sweep_report() {
  local planned="$1" skipped="$2" stop="$3" ok=0 failed=0 rc name log
  local failures=()
  while read -r rc name log; do
    if [[ "$rc" == 0 ]]; then
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
      failures+=("  FAILED (exit $rc): $name, log: $log")
    fi
  done <"$SWEEP_STATUS"
  rm -f "$SWEEP_STATUS"
  echo "Sweep of $planned run(s) in $MODEL_DIR: $((ok + skipped)) finished" \
    "($ok now, $skipped before), $failed failed."
  local line
  for line in "${failures[@]}"; do echo "$line"; done
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "(dry run: nothing was run)"
  elif [[ $failed -eq 0 && $stop -eq 0 ]]; then
    echo "Summarize: $PYTHON $SWEEP_REPO/scripts/summarize.py $MODEL_DIR"
  fi
  if [[ $stop -ne 0 ]]; then
    echo "Interrupted; re-run the same command to resume."
    return 130
  fi
  [[ $failed -eq 0 ]]
}
