#!/usr/bin/env python3
"""Replays the messages of a GradBench session log into `slope gradbench`,
several times, each in a new process, and prints each process's total: the
sum over the session's evaluate messages of the mean time per call (in ms,
GradBench's statistic, as `gradbench_ratio.py` sums it).

    python3 scripts/replay_session.py [--by-message] LOG SLOPE THREADS [PROCESSES]

LOG is a tool's log from `side_by_side.sh` or `vs_manual.sh` (for example
`/tmp/sbs30d/lse-slope.jsonl`); the messages are sent in order, all at once,
from a file, to `SLOPE gradbench --dir examples/gradbench` with
`SLOPE_THREADS=THREADS`. PROCESSES defaults to 5. Without GradBench's
runner and its eval in between, this shows what the session costs Slope
alone, and how much that varies from one process to the next (lse on two
threads: about 15 or about 18 ms, docs/performance.md, thirtieth session).

With --by-message, a table follows: a row per evaluate message (function
and workload) and a column per process, each cell that message's mean time
per call in ms — which messages a slow process lost on (thirty-first
session: the gradients of the largest sizes).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile


def means(responses):
    """The mean `evaluate` time of each response that has one, in ms, by
    the id of the message it answers."""
    ms = {}
    for line in responses.splitlines():
        response = json.loads(line)
        timings = [t["nanoseconds"] for t in response.get("timings", []) if t["name"] == "evaluate"]
        if timings:
            ms[response["id"]] = sum(timings) / len(timings) / 1e6
    return ms


def main():
    args = sys.argv[1:]
    by_message = "--by-message" in args
    args = [a for a in args if a != "--by-message"]
    if len(args) not in (3, 4):
        sys.exit(__doc__)
    log, slope, threads = args[:3]
    processes = int(args[3]) if len(args) == 4 else 5
    root = pathlib.Path(__file__).resolve().parent.parent
    evaluations = []
    with open(log) as f, tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as messages:
        for line in f:
            entry = json.loads(line)
            if "message" in entry:
                message = entry["message"]
                messages.write(json.dumps(message) + "\n")
                if message.get("kind") == "evaluate":
                    evaluations.append(message)
    env = dict(os.environ, SLOPE_THREADS=threads)
    runs = []
    try:
        for _ in range(processes):
            with open(messages.name) as stdin:
                out = subprocess.run(
                    [slope, "gradbench", "--dir", str(root / "examples" / "gradbench")],
                    stdin=stdin, capture_output=True, text=True, env=env, check=True,
                ).stdout
            runs.append(means(out))
            print(f"{sum(runs[-1].values()):.2f}", flush=True)
    finally:
        os.unlink(messages.name)
    if by_message:
        print()
        for m in evaluations:
            cells = "".join(f"{run.get(m['id'], float('nan')):>10.3f}" for run in runs)
            print(f"{m['function'] + ' ' + m.get('description', ''):<32}{cells}")


if __name__ == "__main__":
    main()
