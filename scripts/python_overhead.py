"""The cost of calling Slope from Python (issue 17): prints a table with the
time of a call of an entry that does nothing, and of GMM's objective and
jacobian from Python next to `slope bench`'s time for the same input (native
code alone, as GradBench times it). Each side is timed in three alternating
rounds (medians of many calls per round) and the best round is reported,
since a noisy machine drifts by tens of per cent within minutes. Needs the package installed (python/test.sh builds a debug one;
`pip install ./python` a release one — time that) and target/release/slope.

    python3 scripts/python_overhead.py [d k n] [runs]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import slope

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(call, runs):
    call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gmm_input(d, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "d": d, "k": k, "n": n,
        "x": rng.normal(size=(n, d)), "m": 0, "gamma": 1.0,
        "alpha": rng.normal(size=k), "mu": rng.normal(size=(k, d)),
        "q": rng.normal(size=(k, d)) * 0.1, "l": rng.normal(size=(k, d * (d - 1) // 2)) * 0.1,
    }


def cli_median_ms(entry, args, runs):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in args.items()}, f)
    try:
        out = subprocess.run(
            [os.path.join(ROOT, "target", "release", "slope"), "bench", os.path.join(ROOT, "examples/gradbench/gmm.slope"),
             "--input", f.name, "--entry", entry, "--runs", str(runs)],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    row = [line for line in out.splitlines() if "gmm.slope" in line][0]
    return float(row.split("|")[4])


def main():
    d, k, n = (int(a) for a in sys.argv[1:4]) if len(sys.argv) >= 4 else (10, 25, 1000)
    runs = int(sys.argv[4]) if len(sys.argv) >= 5 else 50
    nothing = slope.compile_source("entry nothing (x: f64) : f64 = x")
    noop = median_seconds(lambda: nothing.nothing(1.0), 20000)
    gmm = slope.compile(os.path.join(ROOT, "examples/gradbench/gmm.slope"))
    args = gmm_input(d, k, n)
    print(f"date: {time.strftime('%Y-%m-%d')}; gmm d={d} k={k} n={n}; best of 3 rounds of medians of {runs} calls (no-op: one median of 20000)\n")
    print("| call | from Python | `slope bench` | Python / CLI |")
    print("|---|---:|---:|---:|")
    print(f"| no-op entry (`x -> x`) | {noop * 1e6:.2f} µs | — | — |")
    for entry in ("objective", "jacobian"):
        py, cli = float("inf"), float("inf")
        for _ in range(3):
            py = min(py, median_seconds(lambda: getattr(gmm, entry)(**args), runs) * 1e3)
            cli = min(cli, cli_median_ms(entry, args, runs))
        print(f"| gmm {entry} | {py:.3f} ms | {cli:.3f} ms | {py / cli:.3f} |")


if __name__ == "__main__":
    main()
