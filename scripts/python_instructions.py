"""The cost of a call from Python in instructions (issue 17): the machine's
wall clock drifts by tens of per cent, instruction counts do not. Counts the
instructions of one GMM objective and jacobian call from Python and from
`slope bench` (both on one thread) under valgrind's callgrind, as the
difference between runs of 30 and 10 calls (which cancels start-up and
compilation), and prints a table with their ratio. Needs valgrind, the
package installed in release mode (`pip install ./python`) and
target/release/slope.

    python3 scripts/python_instructions.py [d k n]
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GMM = os.path.join(ROOT, "examples/gradbench/gmm.slope")
SLOPE = os.path.join(ROOT, "target", "release", "slope")


def instructions(command):
    """Instructions valgrind's callgrind counts for `command`."""
    env = dict(os.environ, SLOPE_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + command,
                         capture_output=True, text=True, env=env, check=True).stderr
    return int([line for line in out.splitlines() if "Collected" in line][0].split()[-1])


def calls_from_python(d, k, n, entry, calls):
    """Runs in the child: `calls` calls of `entry` from Python."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from python_overhead import gmm_input
    import slope

    args = gmm_input(d, k, n)
    f = getattr(slope.compile(GMM, threads=1), entry)
    for _ in range(calls):
        f(**args)


def main():
    if sys.argv[1:2] == ["--calls"]:
        d, k, n, entry, calls = sys.argv[2:7]
        calls_from_python(int(d), int(k), int(n), entry, int(calls))
        return
    d, k, n = (int(a) for a in sys.argv[1:4]) if len(sys.argv) >= 4 else (10, 25, 1000)
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from python_overhead import gmm_input
    import numpy as np

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({key: v.tolist() if isinstance(v, np.ndarray) else v for key, v in gmm_input(d, k, n).items()}, f)
    print(f"gmm d={d} k={k} n={n}; instructions per call (callgrind, calls 11-30), one thread\n")
    print("| call | from Python | `slope bench` | Python / CLI |")
    print("|---|---:|---:|---:|")
    try:
        for entry in ("objective", "jacobian"):
            py = [instructions([sys.executable, __file__, "--calls", str(d), str(k), str(n), entry, str(c)])
                  for c in (10, 30)]
            cli = [instructions([SLOPE, "--threads", "1", "bench", GMM, "--input", f.name, "--entry", entry,
                                 "--runs", str(c)]) for c in (10, 30)]
            per_py, per_cli = (py[1] - py[0]) / 20, (cli[1] - cli[0]) / 20
            print(f"| gmm {entry} | {per_py / 1e6:.2f} M | {per_cli / 1e6:.2f} M | {per_py / per_cli:.4f} |")
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
