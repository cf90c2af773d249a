#!/usr/bin/env bash
# The cost of a call from C (issue 17): a no-op entry called N times through
# an ahead-of-time library (`slope build`) and through the JIT-backed
# libslope_c, best of five rounds each, three alternating runs.
#   cargo build --release && cargo build --release -p slope-c
#   scripts/c_overhead/run.sh [N]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/scripts/c_overhead"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$root/target/release/slope" build "$here/noop.slope" -o "$out/libnoop.so" > /dev/null
cc -O2 -DAOT "$here/calls.c" -I"$out" -L"$out" -lnoop -Wl,-rpath,"$out" -o "$out/aot"
cc -O2 "$here/calls.c" -I"$root/c/include" -L"$root/target/release" -lslope_c \
  -Wl,-rpath,"$root/target/release" -o "$out/jit"
cd "$here"   # the JIT side compiles noop.slope from here
for _ in 1 2 3; do
  "$out/aot" "${1:-200000}" "slope build:"
  "$out/jit" "${1:-200000}" "libslope_c: "
done
