#!/usr/bin/env bash
# Checks gradbench/tool/ (Slope as a GradBench tool) against a GradBench
# checkout, as GradBench's own CI would see it, and then runs the tool's
# entry-point command under GradBench's runner on every eval it lists.
#
#   cargo build --release
#   gradbench/tool/check.sh GB_CHECKOUT
#
# GB_CHECKOUT is a clone of github.com/gradbench/gradbench with its runner
# built (`cargo build --profile=release-with-debug -p gradbench`, or set GB to
# the binary), the C++ `manual` tool built (`make -C tools/manual`), and a
# Python with numpy, scipy and pydantic first on PATH whose
# `python/gradbench` is importable (PYTHONPATH) — the same workbench as
# scripts/vs_manual.sh. Exits non-zero on the first failed check.
#
# 1. Format, by the rules of GradBench's CONTRIBUTING.md and of its runner
#    (`evals_to_tools` and the test `test_tool_evals_sorted` in
#    crates/gradbench/src/main.rs): a Dockerfile with an ENTRYPOINT and
#    GradBench's LABEL as its last line, a README.md, and evals.txt with one
#    eval per line, sorted, each an eval of the checkout — and here, each
#    with examples/gradbench/<eval>.slope, and no such file left unlisted.
# 2. Runs: each eval of evals.txt under `gradbench run` with the tool command
#    the Dockerfile's ENTRYPOINT runs (Slope from this checkout), on small
#    workloads, every output validated against GradBench's reference.
set -u
checkout=$(realpath "${1:?usage: check.sh GB_CHECKOUT}")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
gb=${GB:-$checkout/target/release-with-debug/gradbench}
fail() { echo "check.sh: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# 1. Format.
[ -d "$checkout/evals" ] && [ -d "$checkout/tools" ] || fail "$checkout is not a GradBench checkout (no evals/ and tools/)"
for f in Dockerfile README.md evals.txt; do [ -s "$here/$f" ] || fail "missing $f"; done
grep -q '^ENTRYPOINT \[' "$here/Dockerfile" || fail "the Dockerfile has no ENTRYPOINT in exec form"
label='LABEL org.opencontainers.image.source=https://github.com/gradbench/gradbench'
[ "$(tail -n 1 "$here/Dockerfile")" = "$label" ] || fail "the Dockerfile's last line must be: $label"
sort -u -c "$here/evals.txt" 2>/dev/null || fail "evals.txt is not sorted and unique"
! grep -q ' ' "$here/evals.txt" || fail "evals.txt lists accepted bad outcomes; Slope is to pass every eval"
evals=$(cat "$here/evals.txt")
for e in $evals; do
  [ -d "$checkout/evals/$e" ] || fail "evals.txt lists $e, which the checkout has no eval for"
  [ -f "$repo/examples/gradbench/$e.slope" ] || fail "evals.txt lists $e, but examples/gradbench/$e.slope is missing"
done
for e in $(ls "$checkout/evals"); do
  if [ -f "$repo/examples/gradbench/$e.slope" ] && ! grep -qx "$e" "$here/evals.txt"; then
    fail "examples/gradbench/$e.slope exists but evals.txt does not list $e"
  fi
done
if grep -q '^ARG SLOPE_GIT=$' "$here/Dockerfile"; then
  echo "warning: the Dockerfile has no default SLOPE_GIT; write in the repository's public URL before sending it upstream"
fi
ok "format: Dockerfile, README.md, evals.txt ($(echo $evals | wc -w) evals)"

# 2. Runs under GradBench's runner, small workloads, every output validated.
slope="$repo/target/release/slope"
[ -x "$slope" ] || fail "build Slope first: cargo build --release"
tool="$slope gradbench --dir $repo/examples/gradbench"
fast="--min-runs 1 --min-seconds 0"
args_for() {
  case $1 in
    hello) echo "" ;;
    lse) echo "$fast" ;;
    ode) echo "-n 1000 -s 1 10 $fast" ;;
    gmm) echo "-d 2 10 -k 5 10 -n 1000 $fast" ;;
    lstm) echo "-l 2 -c 1024 $fast" ;;
    ba) echo "--max 2 $fast" ;;
    ht) echo "--max 1 --model small $fast" ;;
    llsq) echo "-n 16 1024 $fast" ;;
    det) echo "-l 5 6 7 8 $fast" ;;
    kmeans) echo "-k 10 -n 1000 -d 8 $fast" ;;
    *) echo "$fast" ;;
  esac
}
log=$(mktemp -d)
for e in $evals; do
  (cd "$checkout" && "$gb" run --eval "python3 python/gradbench/gradbench/evals/$e/run.py $(args_for "$e")" \
    --tool "$tool" -o "$log/$e.jsonl" > "$log/$e.txt" 2>&1)
  status=$?
  valid=$(grep -c '✓' "$log/$e.txt")
  invalid=$(grep -c '✗' "$log/$e.txt")
  if [ $status -ne 0 ] || [ "$valid" -eq 0 ] || [ "$invalid" -ne 0 ]; then
    cat "$log/$e.txt" >&2
    fail "$e: exit $status, $valid validated, $invalid rejected (log in $log/$e.jsonl)"
  fi
  ok "$e: $valid outputs validated under gradbench run"
done
rm -rf "$log"
echo "all checks passed"
