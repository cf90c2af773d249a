#!/usr/bin/env python3
"""Speed-up from one thread to two, pair by pair, under GradBench's runner.

Usage: scripts/paired_speedup.py OUTDIR ROUNDS EVAL...

For each eval, ROUNDS pairs of GradBench sessions of Slope (every output
validated by the eval): one on one thread (`SLOPE_THREADS=1`), then one on
two. Each pair's speed-up is its one-thread total over its two-thread total
(GradBench's statistic: per workload and function the mean of the
`evaluate` timings, summed), so a drift of the machine's speed between
sessions minutes apart hits the two sides of a pair alike. Beside each
session it prints the CPU time the hypervisor stole from this virtual
machine's vCPUs while it ran (`steal` in /proc/stat, in ms summed over the
vCPUs): a vCPU that the host runs something else on is a slow core to the
threads placed on it, and a two-thread session waits for its slower core.
A vCPU can also run slow with nothing stolen (a busy neighbour on the
host); scripts/pool_trace.patch shows that per parallel loop
(docs/performance.md, thirty-fifth session).

Needs the workbench of ../shared/tools/gradbench (GB, GB_ROOT: `source
env.sh`) and `cargo build --release`. Logs go to OUTDIR/EVAL-slope1-K.jsonl
and OUTDIR/EVAL-slope-K.jsonl (lse's take 170 MB each). A benchmark, not
a test (issue #12).
"""

import os
import statistics
import subprocess
import sys

from gradbench_ratio import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVAL_ARGS = {"ba": ["--max", "8"], "ht": ["--max", "11"]}


def steal_ms():
    """Stolen time summed over every vCPU, in ms (USER_HZ ticks of 10 ms)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) * 1000 // os.sysconf("SC_CLK_TCK")


def session(e, threads, log):
    gb, gb_root = os.environ["GB"], os.environ["GB_ROOT"]
    evals = "python/gradbench/gradbench/evals"
    ev = " ".join(["python3", f"{evals}/{e}/run.py"] + EVAL_ARGS.get(e, []))
    tool = f"{ROOT}/target/release/slope gradbench --dir {ROOT}/examples/gradbench"
    env = dict(os.environ, SLOPE_THREADS=str(threads))
    before = steal_ms()
    out = subprocess.run([gb, "run", "--eval", ev, "--tool", tool, "-o", log], cwd=gb_root, env=env, capture_output=True, text=True)
    stolen = steal_ms() - before
    table, _ = load(log)
    invalid = sum(1 for _, ok in table.values() if not ok)
    if out.returncode != 0 or invalid or not table:
        sys.exit(f"{e} on {threads} thread(s): exit {out.returncode}, {invalid} invalid\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return sum(ms for ms, _ in table.values()), stolen


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    outdir, rounds, evals = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    os.makedirs(outdir, exist_ok=True)
    for e in evals:
        print(f"\n{e}: pair, one thread (ms, steal ms), two threads (ms, steal ms), speed-up", flush=True)
        ups = []
        for k in range(1, rounds + 1):
            one = session(e, 1, f"{outdir}/{e}-slope1-{k}.jsonl")
            two = session(e, 2, f"{outdir}/{e}-slope-{k}.jsonl")
            ups.append(one[0] / two[0])
            print(f"{k:>4}  {one[0]:9.1f} ({one[1]:5d})  {two[0]:9.1f} ({two[1]:5d})  {ups[-1]:5.2f}", flush=True)
        print(f"{e}: speed-up min {min(ups):.2f}, median {statistics.median(ups):.2f}, max {max(ups):.2f} over {len(ups)} pairs")


if __name__ == "__main__":
    main()
