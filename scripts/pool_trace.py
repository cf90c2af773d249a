#!/usr/bin/env python3
"""Summary of a pool trace (scripts/pool_trace.patch): per segment size, how
the caller (C) and the worker (W) shared the chunks and how fast each ran
them, and the calls in which one thread ran its chunks more than 20 %
slower than the other — on a machine whose cores run alike there are none.

    python3 scripts/pool_trace.py TRACE.log [MIN_WALL_US]

Only calls on the pool of at least MIN_WALL_US (default 1000) µs count.
"""
import collections
import re
import sys

LINE = re.compile(
    r"TRACE seg=\w+ n=(\d+) pool=true chunks=\d+ wall=(\d+)us "
    r"C:(\d+)ch/\d+on0/(\d+)us W:(\d+)ch/\d+on0/(\d+)us"
)


def main():
    path = sys.argv[1]
    least = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    by_size = collections.defaultdict(list)
    for line in open(path):
        m = LINE.match(line)
        if m:
            n, wall, cc, cw, wc, ww = map(int, m.groups())
            if wall >= least and cc and wc:
                by_size[n].append((wall, cc, cw / cc, wc, ww / wc))
    print(f"{'n':>9} {'calls':>5} {'wall us':>8} {'C share':>7} {'C us/ch':>7} {'W us/ch':>7} {'uneven':>6}")
    for n, calls in sorted(by_size.items()):
        k = len(calls)
        uneven = sum(1 for _, _, c, _, w in calls if max(c, w) > 1.2 * min(c, w))
        print(
            f"{n:>9} {k:>5} {sum(c[0] for c in calls) / k:>8.0f}"
            f" {sum(c[1] / (c[1] + c[3]) for c in calls) / k:>7.2f}"
            f" {sum(c[2] for c in calls) / k:>7.1f} {sum(c[4] for c in calls) / k:>7.1f} {uneven:>6}"
        )


if __name__ == "__main__":
    main()
