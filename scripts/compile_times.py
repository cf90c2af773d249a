#!/usr/bin/env python3
"""Compile time of every example, whole pipeline (Cranelift included).

Usage: scripts/compile_times.py [--runs N] [--slope PATH] [--baseline PATH] [FILE ...]

Runs `slope check --timings FILE` N times (default 5) per program and prints
a table of the median per stage: the total, the array optimiser (`opt`), the
loop optimiser's passes together (`loops`: simplify … parallel) and
Cranelift (`clif`). With `--baseline OTHER_SLOPE`, runs of the two binaries
alternate and a column gives the baseline's median total. Default programs: examples/gradbench/*.slope and
examples/*.slope. This is a benchmark, not a test: issue #11's target is a
total under 100 ms for every example; the table says where the time goes.
"""

import argparse
import glob
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOP_PASSES = ["simplify", "unroll", "ranges", "fuse", "split", "scalarize", "simd", "parallel", "strands", "memory"]


def timings(slope, path):
    out = subprocess.run([slope, "check", "--timings", path], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{path}: slope check failed:\n{out.stderr}")
    stages = {}
    for line in out.stderr.splitlines():
        m = re.match(r"\s*(\S+)\s+([0-9.]+) ms$", line)
        if m:
            stages[m.group(1)] = stages.get(m.group(1), 0.0) + float(m.group(2))
    return stages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slope", default=os.path.join(ROOT, "target", "release", "slope"))
    ap.add_argument("--baseline", help="another slope binary to compare with, run alternately")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(ROOT, "examples", "gradbench", "*.slope"))) + sorted(
        glob.glob(os.path.join(ROOT, "examples", "*.slope"))
    )
    print(f"median of {args.runs} runs of `slope check --timings FILE`, ms")
    base = " baseline total |" if args.baseline else ""
    print(f"| program |{base} total | opt | loops | clif | over 100 ms |")
    print(f"|---|{'---:|' if args.baseline else ''}---:|---:|---:|---:|---|")
    for path in files:
        runs, base_runs = [], []
        for _ in range(args.runs):
            runs.append(timings(args.slope, path))
            if args.baseline:
                base_runs.append(timings(args.baseline, path))

        def med(f):
            return statistics.median(f(r) for r in runs)

        total = med(lambda r: r.get("total", 0.0))
        row = ([statistics.median(r.get("total", 0.0) for r in base_runs)] if args.baseline else []) + [
            total,
            med(lambda r: r.get("opt", 0.0)),
            med(lambda r: sum(r.get(p, 0.0) for p in LOOP_PASSES)),
            med(lambda r: r.get("clif", 0.0)),
        ]
        name = os.path.relpath(path, ROOT)
        cells = " | ".join(f"{x:.1f}" for x in row)
        print(f"| {name} | {cells} | {'**yes**' if total > 100 else ''} |")


if __name__ == "__main__":
    main()
