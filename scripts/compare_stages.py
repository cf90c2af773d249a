#!/usr/bin/env python3
"""Whether two Slope binaries print the same stage for every program, up to
variable numbering.

    python3 scripts/compare_stages.py OLD NEW STAGE [NEW_STAGE]

Runs `OLD emit --stage STAGE FILE` and `NEW emit --stage NEW_STAGE FILE`
(NEW_STAGE defaults to STAGE) on every example and test program, renumbers
the variables of each printed function by first appearance (`acc_17` and
`acc_23` both become `acc_#4` when each is its function's fifth variable),
and lists the programs whose texts still differ. A refactoring that should
not change the code a pass makes — one that only creates its variables at
another time — passes this with 0 differing. Exits 1 when any program
differs.
"""

import pathlib
import re
import subprocess
import sys

# A variable as the loop IR and the array IR print it: a name, `_`, a number.
VARIABLE = re.compile(r"(?<![A-Za-z0-9_])(_*[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z][A-Za-z0-9]*)*)_(\d+)\b")


def renumbered(text):
    """`text` with each function's variables numbered by first appearance."""
    out, seen = [], {}
    for line in text.splitlines(keepends=True):
        if line.startswith(("func ", "entry ")):
            seen = {}

        def rename(match):
            number = seen.setdefault(match.group(0), len(seen))
            return f"{match.group(1)}_#{number}"

        out.append(VARIABLE.sub(rename, line))
    return "".join(out)


def emit(slope, stage, path):
    run = subprocess.run([slope, "emit", "--stage", stage, str(path)], capture_output=True, text=True)
    return renumbered(run.stdout + run.stderr)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    old, new, stage = sys.argv[1:4]
    new_stage = sys.argv[4] if len(sys.argv) == 5 else stage
    root = pathlib.Path(__file__).resolve().parent.parent
    files = sorted(root.glob("examples/*.slope")) + sorted(root.glob("examples/gradbench/*.slope"))
    files += sorted(root.glob("tests/programs/*/*.slope"))
    differ = [f for f in files if emit(old, stage, f) != emit(new, new_stage, f)]
    for f in differ:
        print(f"differs: {f.relative_to(root)}")
    print(f"{len(differ)} of {len(files)} programs differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
