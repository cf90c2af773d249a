#!/usr/bin/env python3
"""Tables of GradBench logs written by scripts/vs_manual.sh: per workload the
mean primal and derivative time of Slope and of `manual` (GradBench's own
statistic: the mean of all `evaluate` timings of a function, the first run
included), and per eval the ratio of the sums (primal + derivative over every
workload), Slope / manual. Invalid outputs are counted and shown. When the
one-thread logs (`EVAL-slope1.jsonl`) are there too, the summary adds Slope
on one thread and the speed-up from one thread to all. When vs_manual.sh ran
Slope's sessions several times, alternating (ROUNDS=N: `EVAL-slope-2.jsonl`,
`EVAL-slope1-2.jsonl`, …), each workload's cell is the lowest of its rounds'
means, so that the machine's drift between the sessions hits both columns
alike, and an output invalid in any round counts as invalid.

    python3 scripts/gradbench_ratio.py OUTDIR EVAL...
"""
import glob
import json
import re
import sys


def load(path):
    """{(workload, function): (mean ms, valid)} and the workload order (both
    empty when there is no log: `manual` does not implement every eval)."""
    messages, cells, order, valid = {}, {}, [], {}
    try:
        f = open(path)
    except FileNotFoundError:
        return {}, []
    with f:
        for line in f:
            entry = json.loads(line)
            if "message" in entry:
                m = entry["message"]
                messages[m["id"]] = m
                if m.get("kind") == "analysis":
                    valid[m.get("of")] = m.get("valid")
                continue
            r = entry.get("response", {})
            m = messages.get(r.get("id"))
            if not m or m.get("kind") != "evaluate" or not r.get("success"):
                continue
            runs = [t["nanoseconds"] / 1e6 for t in r.get("timings", []) if t.get("name") == "evaluate"]
            if runs:
                workload = m.get("description", "")
                if workload not in order:
                    order.append(workload)
                cells[(workload, m["function"], m["id"])] = sum(runs) / len(runs)
    table = {}
    for (workload, function, mid), ms in cells.items():
        table[(workload, function)] = (ms, valid.get(mid, True))
    return table, order


def load_rounds(out, e, tool):
    """`load` of every round of a Slope session: per cell the lowest mean,
    valid only if valid in every round."""
    paths = [f"{out}/{e}-{tool}.jsonl"] + sorted(
        p for p in glob.glob(f"{out}/{e}-{tool}-*.jsonl") if re.fullmatch(rf".*/{e}-{tool}-[0-9]+\.jsonl", p)
    )
    table, order = {}, []
    for path in paths:
        t, o = load(path)
        order = order or o
        for key, (ms, ok) in t.items():
            old = table.get(key)
            table[key] = (min(ms, old[0]), ok and old[1]) if old else (ms, ok)
    return table, order


def main():
    out, evals = sys.argv[1], sys.argv[2:]
    summary = []
    for e in evals:
        slope, order = load_rounds(out, e, "slope")
        manual, _ = load(f"{out}/{e}-manual.jsonl")
        functions = sorted({f for (_, f) in slope} | {f for (_, f) in manual})
        print(f"\n{e} (ms, mean per call; {' / '.join(functions)})")
        print(f"{'workload':<26}{'slope':>28}{'manual':>28}")
        totals = {"slope": 0.0, "manual": 0.0}
        invalid = 0
        for w in order:
            row = []
            for name, table in (("slope", slope), ("manual", manual)):
                parts = []
                for f in functions:
                    cell = table.get((w, f))
                    if cell is None:
                        parts.append("-")
                        continue
                    parts.append(f"{cell[0]:.3g}" + ("" if cell[1] else "!"))
                    totals[name] += cell[0]
                    invalid += int(name == "slope" and not cell[1])
                row.append(" / ".join(parts))
            print(f"{w:<26}{row[0]:>28}{row[1]:>28}")
        ratio = totals["slope"] / totals["manual"] if totals["manual"] else None
        shown = f"ratio {ratio:.2f}" if ratio is not None else "(manual does not implement this eval)"
        print(f"{'sum':<26}{totals['slope']:>28.1f}{totals['manual']:>28.1f}   {shown}")
        one, _ = load_rounds(out, e, "slope1")
        one_total = sum(ms for (w, f), (ms, _) in one.items())
        summary.append((e, totals["slope"], totals["manual"], ratio, invalid, one_total))
    threads = any(one for *_, one in summary)
    if threads:
        print("\n| eval | Slope, 1 thread (ms) | Slope, all cores (ms) | speed-up | manual (ms) | Slope / manual | invalid |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print("\n| eval | Slope (ms) | manual (ms) | Slope / manual | invalid |")
        print("|---|---:|---:|---:|---:|")
    for e, s, m, r, invalid, one in summary:
        m_cell = f"{m:.1f}" if r is not None else "—"
        r_cell = f"{r:.2f}" if r is not None else "—"
        if threads:
            up = f"{one / s:.2f}" if one and s else "—"
            print(f"| {e} | {one:.1f} | {s:.1f} | {up} | {m_cell} | {r_cell} | {invalid} |")
        else:
            print(f"| {e} | {s:.1f} | {m_cell} | {r_cell} | {invalid} |")


if __name__ == "__main__":
    main()
