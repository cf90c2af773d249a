#!/usr/bin/env python3
"""GradBench message files at GradBench's default sizes, and a timing summary.

`generate` writes `<out>/<eval>.jsonl` for lse, ode, gmm and lstm: the messages
GradBench's eval would send (start, define, then for every default workload an
`evaluate` of the primal function and one of the derivative), usable as
`slope gradbench` stdin. Shapes and distributions follow
GradBench's input generators (python/gradbench/gradbench/evals/<eval>/); the values come from Python's
seeded `random` (pure Python: no numpy), so they are reproducible but are not
numpy's streams. lstm's text is a seeded synthetic text with one U+2019, which
makes b = 14 bits as GradBench's Shakespeare prefix does.

`summarize MESSAGES RESPONSES` reads a message file and the responses
`slope gradbench` wrote for it and prints GradBench-style timings: per
workload the mean primal and mean derivative time (all runs, the first
included), and the score 1 / (sum over workloads of primal + derivative).
Failed responses are reported and leave their cell empty.

    python3 scripts/gradbench_inputs.py generate --out /tmp/gb
    slope gradbench < /tmp/gb/gmm.jsonl > /tmp/gb/gmm.out
    python3 scripts/gradbench_inputs.py summarize /tmp/gb/gmm.jsonl /tmp/gb/gmm.out
"""

import argparse
import json
import os
import random
import sys

SEED = 31337

# The primal and the derivative function of each eval.
FUNCTIONS = {
    "lse": ("primal", "gradient"),
    "ode": ("primal", "gradient"),
    "gmm": ("objective", "jacobian"),
    "lstm": ("objective", "jacobian"),
}


def uniform(rng, *shape):
    if len(shape) == 1:
        return [rng.random() for _ in range(shape[0])]
    return [uniform(rng, *shape[1:]) for _ in range(shape[0])]


def normal(rng, *shape):
    if len(shape) == 1:
        return [rng.gauss(0.0, 1.0) for _ in range(shape[0])]
    return [normal(rng, *shape[1:]) for _ in range(shape[0])]


def lse_workloads():
    # One stream for all workloads, as GradBench seeds once.
    rng = random.Random(SEED)
    for n in [2500 * 2**i for i in range(10)]:
        yield f"n={n}", {"x": uniform(rng, n)}


def ode_workloads():
    sizes = sorted(((n, s) for n in (1000, 10000, 100000) for s in (1, 10, 100)), key=lambda ns: ns[0] * ns[1])
    for n, s in sizes:
        rng = random.Random(SEED)
        yield f"n={n},s={s}", {"x": uniform(rng, n), "s": s}


def gmm_workloads():
    n = 1000
    sizes = sorted(((d, k) for d in (2, 10, 20, 32, 64) for k in (5, 10, 25, 50, 100)), key=lambda dk: dk[0] * dk[1])
    for d, k in sizes:
        # A fresh generator per workload, drawing in GradBench's order.
        rng = random.Random(SEED)
        x = normal(rng, n, d)
        alpha = normal(rng, k)
        mu = uniform(rng, k, d)
        q = normal(rng, k, d)
        l = normal(rng, k, d * (d - 1) // 2)
        yield f"{d}_{k}_{n}", {
            "d": d, "k": k, "n": n, "x": x, "m": 0, "gamma": 1.0,
            "alpha": alpha, "mu": mu, "q": q, "l": l,
        }


def synthetic_text(length, rng):
    # Letters, spaces and punctuation, with a U+2019 early on so that every
    # default prefix needs 14 bits, like GradBench's Shakespeare text.
    alphabet = "abcdefghijklmnopqrstuvwxyz      ,.;:!?\nABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chars = [rng.choice(alphabet) for _ in range(length)]
    chars[min(10, length - 1)] = "\u2019"
    return "".join(chars)


def lstm_workloads():
    sizes = sorted(((l, c) for l in (2, 4, 6) for c in (1024, 4096, 8192)), key=lambda lc: lc[0] * lc[1])
    text = synthetic_text(8192, random.Random(SEED))
    for l, c in sizes:
        prefix = text[:c]
        b = max(ord(ch) for ch in prefix).bit_length()
        sequence = [[float(bit) for bit in format(ord(ch), f"0{b}b")] for ch in prefix]
        rng = random.Random(SEED + l * 100003 + c)
        yield f"l={l},c={c}", {
            "main_params": uniform(rng, 2 * l, 4 * b),
            "extra_params": uniform(rng, 3, b),
            "state": uniform(rng, 2 * l, b),
            "sequence": sequence,
        }


WORKLOADS = {"lse": lse_workloads, "ode": ode_workloads, "gmm": gmm_workloads, "lstm": lstm_workloads}


def dumps(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def generate(args):
    os.makedirs(args.out, exist_ok=True)
    for eval_name in args.evals:
        path = os.path.join(args.out, f"{eval_name}.jsonl")
        ident = 0
        with open(path, "w") as out:

            def send(message):
                nonlocal ident
                out.write(dumps({"id": ident, **message}) + "\n")
                ident += 1

            send({"kind": "start", "eval": eval_name})
            send({"kind": "define", "module": eval_name})
            for number, (description, data) in enumerate(WORKLOADS[eval_name]()):
                if args.first is not None and number >= args.first:
                    break
                for function in FUNCTIONS[eval_name]:
                    send({
                        "kind": "evaluate",
                        "module": eval_name,
                        "function": function,
                        "input": {**data, "min_runs": args.min_runs, "min_seconds": args.min_seconds},
                        "description": description,
                    })
        print(f"{path}: {ident} messages", file=sys.stderr)


def summarize(args):
    messages = {}
    with open(args.messages) as f:
        for line in f:
            if line.strip():
                m = json.loads(line)
                messages[m["id"]] = m
    rows = {}  # description -> {function: mean seconds}
    order = []
    eval_name = None
    failures = 0
    with open(args.responses) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            m = messages.get(r.get("id"))
            if m is None or m.get("kind") != "evaluate":
                continue
            eval_name = m["module"]
            description = m.get("description", "")
            if description not in rows:
                rows[description] = {}
                order.append(description)
            if not r.get("success"):
                failures += 1
                print(f"{description} {m['function']}: {r.get('error')}", file=sys.stderr)
                continue
            runs = [t["nanoseconds"] for t in r["timings"] if t["name"] == "evaluate"]
            rows[description][m["function"]] = sum(runs) / len(runs) / 1e9
    if eval_name is None:
        sys.exit("no evaluate responses")
    primal, derivative = FUNCTIONS.get(eval_name, ("objective", "jacobian"))
    print(f"| {eval_name} workload | mean {primal} (s) | mean {derivative} (s) |")
    print("|---|---:|---:|")
    total = 0.0
    complete = True
    for description in order:
        cells = []
        for function in (primal, derivative):
            seconds = rows[description].get(function)
            if seconds is None:
                complete = False
                cells.append("—")
            else:
                total += seconds
                cells.append(f"{seconds:.6g}")
        print(f"| {description} | {cells[0]} | {cells[1]} |")
    if complete and total > 0:
        print(f"\nscore: {1 / total:.6g} s⁻¹ (1 / {total:.6g} s)")
    else:
        print(f"\nno score: {failures} failed or missing evaluations")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    g = commands.add_parser("generate", help="write <out>/<eval>.jsonl message files")
    g.add_argument("--out", required=True, help="directory for the message files")
    g.add_argument("--evals", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    g.add_argument("--min-runs", type=int, default=1)
    g.add_argument("--min-seconds", type=float, default=1.0)
    g.add_argument("--first", type=int, help="only the first N (smallest) workloads of each eval")
    g.set_defaults(run=generate)
    s = commands.add_parser("summarize", help="mean timings per workload from a session's responses")
    s.add_argument("messages")
    s.add_argument("responses")
    s.set_defaults(run=summarize)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
