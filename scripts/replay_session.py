#!/usr/bin/env python3
"""Replays the messages of a GradBench session log into `slope gradbench`,
several times, each in a new process, and prints each process's total: the
sum over the session's evaluate messages of the mean time per call (in ms,
GradBench's statistic, as `gradbench_ratio.py` sums it).

    python3 scripts/replay_session.py LOG SLOPE THREADS [PROCESSES]

LOG is a tool's log from `side_by_side.sh` or `vs_manual.sh` (for example
`/tmp/sbs30d/lse-slope.jsonl`); the messages are sent in order, all at once,
from a file, to `SLOPE gradbench --dir examples/gradbench` with
`SLOPE_THREADS=THREADS`. PROCESSES defaults to 5. Without GradBench's
runner and its eval in between, this shows what the session costs Slope
alone, and how much that varies from one process to the next (lse on two
threads: about 15 or about 18 ms, docs/performance.md, thirtieth session).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile


def total(responses):
    """Sum over responses of the mean `evaluate` time, in ms."""
    ms = 0.0
    for line in responses.splitlines():
        timings = [t["nanoseconds"] for t in json.loads(line).get("timings", []) if t["name"] == "evaluate"]
        if timings:
            ms += sum(timings) / len(timings) / 1e6
    return ms


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    log, slope, threads = sys.argv[1:4]
    processes = int(sys.argv[4]) if len(sys.argv) == 5 else 5
    root = pathlib.Path(__file__).resolve().parent.parent
    with open(log) as f, tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as messages:
        for line in f:
            entry = json.loads(line)
            if "message" in entry:
                messages.write(json.dumps(entry["message"]) + "\n")
    env = dict(os.environ, SLOPE_THREADS=threads)
    try:
        for _ in range(processes):
            with open(messages.name) as stdin:
                out = subprocess.run(
                    [slope, "gradbench", "--dir", str(root / "examples" / "gradbench")],
                    stdin=stdin, capture_output=True, text=True, env=env, check=True,
                ).stdout
            print(f"{total(out):.2f}", flush=True)
    finally:
        os.unlink(messages.name)


if __name__ == "__main__":
    main()
