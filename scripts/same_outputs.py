#!/usr/bin/env python3
"""Whether Slope's outputs in GradBench logs written by scripts/vs_manual.sh
are the same bit for bit on one thread and on all cores (issue #12).

    python3 scripts/same_outputs.py OUTDIR EVAL...

For each eval, compares every output of the one-thread session
(`EVAL-slope1.jsonl`) with the same message's output in the all-core session
(`EVAL-slope.jsonl`) and in later rounds (`EVAL-slope1-2.jsonl`,
`EVAL-slope-2.jsonl`, …, when vs_manual.sh ran with ROUNDS=N). Outputs are
compared as JSON text after a round trip through Python, which reads each
number as a double and prints the shortest text that reads back to it (and
keeps the sign of zero), so equal text is equal bits. Only messages whose
inputs are the same in both sessions are compared: GradBench's `lstm` eval
draws new random inputs for every session, so its outputs cannot be
compared this way (they are counted as "other inputs"). Exits 1 when any
compared output differs or a session has none to compare.
"""
import glob
import json
import os
import sys


def outputs(path):
    """{message id: (input, output), both as JSON text} of one session's log."""
    inputs, found = {}, {}
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            message = entry.get("message")
            if isinstance(message, dict) and "input" in message:
                inputs[message["id"]] = json.dumps(message["input"], sort_keys=True)
            response = entry.get("response")
            if isinstance(response, dict) and "output" in response:
                output = json.dumps(response["output"], sort_keys=True)
                found[response["id"]] = (inputs.get(response["id"]), output)
    return found


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, evals = sys.argv[1], sys.argv[2:]
    failed = False
    for ev in evals:
        base = outputs(os.path.join(out, f"{ev}-slope1.jsonl"))
        others = [os.path.join(out, f"{ev}-slope.jsonl")]
        others += sorted(glob.glob(os.path.join(out, f"{ev}-slope1-*.jsonl")))
        others += sorted(glob.glob(os.path.join(out, f"{ev}-slope-*.jsonl")))
        for path in others:
            other = outputs(path)
            same_input = [k for k in base if k in other and other[k][0] == base[k][0]]
            differ = [k for k in same_input if other[k][1] != base[k][1]]
            failed |= bool(differ) or not same_input
            name = os.path.basename(path)
            print(
                f"{ev}: {name} against {ev}-slope1.jsonl: {len(same_input)} outputs compared, "
                f"{len(differ)} differ ({len(base) - len(same_input)} of other inputs)"
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
