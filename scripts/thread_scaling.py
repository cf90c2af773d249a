#!/usr/bin/env python3
"""Speed-up from one thread to several, measured with the runs interleaved.

Usage: scripts/thread_scaling.py [--rounds R] [--runs N] [--threads T] CASE...
  CASE: FILE:INPUT:ENTRY  (INPUT a JSON file of the entry's arguments)

For each case, R rounds (default 5) of `slope bench FILE --input INPUT
--entry ENTRY --runs N --threads 1` then the same with `--threads T`
(default 2), alternating, so that drift of the machine's speed — minutes
apart it can exceed the effect measured — hits both columns alike. Prints
the median over rounds of each `slope bench` median and their ratio. A
benchmark, not a test (issue #12: no eval slower on two threads than on
one). GradBench-sized inputs: `python3 scripts/gradbench_inputs.py generate
--out DIR`, then an `evaluate` message's `input`.
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(slope, path, inp, entry, runs, threads):
    cmd = [slope, "bench", path, "--input", inp, "--entry", entry, "--runs", str(runs), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        # | program | entry | compile (ms) | entry (ms) | …
        if len(cells) > 4 and cells[2] == entry and cells[1].endswith(".slope"):
            return float(cells[4])
    sys.exit(f"no timing in the output of {' '.join(cmd)}:\n{out.stdout}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slope", default=os.path.join(ROOT, "target", "release", "slope"))
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args()
    t = args.threads
    print(f"median over {args.rounds} interleaved rounds of `slope bench --runs {args.runs}`, ms")
    print(f"| program | entry | input | 1 thread | {t} threads | speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for case in args.cases:
        path, inp, entry = case.split(":")
        one, many = [], []
        for _ in range(args.rounds):
            one.append(bench(args.slope, path, inp, entry, args.runs, 1))
            many.append(bench(args.slope, path, inp, entry, args.runs, t))
        a, b = statistics.median(one), statistics.median(many)
        print(f"| {os.path.basename(path)} | {entry} | {os.path.basename(inp)} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
