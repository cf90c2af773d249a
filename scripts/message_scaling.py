#!/usr/bin/env python3
"""Slope binaries and thread counts on one GradBench message sequence, interleaved.

Usage: scripts/message_scaling.py [--rounds R] [--min-seconds S] MESSAGES SLOPE...

MESSAGES is a GradBench session as `slope gradbench` reads it: one JSON
message per line (start, define, evaluate…). A log of GradBench's runner
(`scripts/vs_manual.sh OUT EVAL` writes OUT/EVAL-slope.jsonl) is accepted too:
its `message` records are taken. Each evaluate's `min_seconds` is set to S
(default 0.4) to keep a round short.

For each of R rounds (default 3), every SLOPE binary runs the whole session
with `--threads 1` and then `--threads 2`, so that drift of the machine's
speed hits every column alike. Each run is scored as GradBench scores it: the
sum over evaluate messages of the mean of their timings (the first run
included). Prints the median over rounds per binary and thread count and
the speed-up from one thread to two.

Unlike `scripts/thread_scaling.py`, which times one input, this replays the
workloads in GradBench's order in one process, as GradBench does: what one
call leaves behind (the arena's cached blocks, a loop's observed cost) is
what the next one starts from. A benchmark, not a test.
"""

import argparse
import json
import statistics
import subprocess
import sys


def session(path, min_seconds):
    messages = []
    for line in open(path):
        record = json.loads(line)
        message = record.get("message", record)
        if "kind" not in message:
            continue
        if message["kind"] == "evaluate":
            message["input"]["min_seconds"] = min_seconds
        messages.append(message)
    return "".join(json.dumps(m) + "\n" for m in messages)


def score(slope, threads, text):
    out = subprocess.run([slope, "--threads", str(threads), "gradbench"], input=text, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{slope} --threads {threads} gradbench failed:\n{out.stderr}")
    total = 0.0
    for line in out.stdout.splitlines():
        response = json.loads(line)
        if response.get("success") is False:
            sys.exit(f"{slope}: a message failed: {line[:400]}")
        timings = [t["nanoseconds"] / 1e6 for t in response.get("timings", []) if t["name"] == "evaluate"]
        if timings:
            total += sum(timings) / len(timings)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=0.4)
    ap.add_argument("messages")
    ap.add_argument("slope", nargs="+")
    args = ap.parse_args()
    text = session(args.messages, args.min_seconds)
    scores = {}
    for _ in range(args.rounds):
        for slope in args.slope:
            for threads in (1, 2):
                scores.setdefault((slope, threads), []).append(score(slope, threads, text))
    print(f"median over {args.rounds} interleaved rounds, ms (sum over workloads of mean primal + mean derivative)")
    print("| slope | 1 thread | 2 threads | speed-up |")
    print("|---|---:|---:|---:|")
    for slope in args.slope:
        one = statistics.median(scores[(slope, 1)])
        two = statistics.median(scores[(slope, 2)])
        print(f"| {slope} | {one:.1f} | {two:.1f} | {one / two:.2f} |")


if __name__ == "__main__":
    main()
