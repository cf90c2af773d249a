#!/usr/bin/env bash
# Slope against GradBench's hand-written C++ tool `manual`, under GradBench's
# own runner (which validates every output against `manual`), one eval after
# the other, then one table per eval and a summary of ratios.
#
# Needs a GradBench workbench: a checkout of github.com/gradbench/gradbench with
# its runner built (`cargo build --profile=release-with-debug -p gradbench`), the
# `manual` tool built (`make -C tools/manual`) and its Python evals importable.
# Point at it with GB_ROOT (the checkout) and GB (the runner binary); a Python
# with numpy, scipy and pydantic first on PATH.
#
#   cargo build --release
#   scripts/vs_manual.sh OUTDIR lse ode gmm lstm ba ht llsq det kmeans particle saddle
#
# ba and ht run GradBench's default workloads (ba1-ba8; hand1-hand11, complicated
# variant, big model); the others every default workload of their eval.
# Slope runs on every core (its default) and, for the multicore speed-up,
# once more on one thread (`SLOPE_THREADS=1`, logs `EVAL-slope1.*`); set
# ONE_THREAD=0 to skip that run. ROUNDS=N (default 1) runs Slope's sessions
# N times, alternating one thread and all cores (logs `EVAL-slope-K.*` for
# rounds K >= 2), and the tables take each workload's best round: GradBench
# runs a session in minutes, and this machine's speed drifts more than that
# between two sessions (issue #12: no eval slower on two threads).
set -u
out=$(realpath -m "${1:?usage: vs_manual.sh OUTDIR EVAL...}"); shift
: "${GB:?set GB to the GradBench runner binary}" "${GB_ROOT:?set GB_ROOT to a GradBench checkout}"
here=$(cd "$(dirname "$0")/.." && pwd)
slope="$here/target/release/slope gradbench --dir $here/examples/gradbench"
manual="python3 python/gradbench/gradbench/cpp.py manual"
evals=python/gradbench/gradbench/evals
mkdir -p "$out"
# The marks GradBench's runner prints for a validated and a rejected output.
pass='✓'
fail='✗'
cd "$GB_ROOT" || exit 2
for e in "$@"; do
  case $e in
    ba) eval_cmd="python3 $evals/ba/run.py --max 8" ;;
    ht) eval_cmd="python3 $evals/ht/run.py --max 11" ;;
    *) eval_cmd="python3 $evals/$e/run.py" ;;
  esac
  tools="slope"
  [ "${ONE_THREAD:-1}" = 1 ] && tools="slope1 slope"
  rounds=""
  for ((k = 1; k <= ${ROUNDS:-1}; k++)); do
    for t in $tools; do
      if [ "$k" = 1 ]; then rounds="$rounds $t"; else rounds="$rounds $t-$k"; fi
    done
  done
  tools="$rounds manual"
  # GradBench's `manual` has no particle or saddle; their evals check
  # against constants, so Slope alone is run (and validated).
  case $e in particle|saddle) tools=${tools% manual} ;; esac
  for tool in $tools; do
    case $tool in
      slope | slope-*) cmd=$slope ;;
      slope1 | slope1-*) cmd="env SLOPE_THREADS=1 $slope" ;;
      *) cmd=$manual ;;
    esac
    "$GB" run --eval "$eval_cmd" --tool "$cmd" -o "$out/$e-$tool.jsonl" > "$out/$e-$tool.txt" 2>&1
    status=$?
    valid=$(grep -c "$pass" "$out/$e-$tool.txt")
    invalid=$(grep -c "$fail" "$out/$e-$tool.txt")
    echo "$e $tool: exit $status, $valid valid, $invalid invalid"
  done
done
python3 "$here/scripts/gradbench_ratio.py" "$out" "$@"
