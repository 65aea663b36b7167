"""Print the share of mutants killed per module from a finished ``mutmut run`` (run in the tree mutmut used).

``make mutation`` calls it; it reads mutmut's own result files (``mutants/<path>.meta``) and counts a timeout
as a kill (the mutant made the tests hang: they noticed), as mutmut's own score does. With ``--survivors`` it
also lists the surviving mutants' names (``mutmut show NAME`` prints one's diff). Exits 1 when a module is below
``GOAL`` (naming each), so that ``make mutation`` fails.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

GOAL = 85.0
KILLS = ("killed", "timeout")


def main(argv: list[str]) -> int:
    rows, survivors = [], []
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        all_codes = json.loads(meta.read_text())["exit_code_by_key"]
        # a run narrowed by mutant names (make mutation MUTANTS=...) leaves the others unchecked (None)
        exit_codes = {name: code for name, code in all_codes.items() if code is not None}
        if not exit_codes:
            continue
        statuses = Counter(status_by_exit_code[code] for code in exit_codes.values())
        module = str(meta.relative_to("mutants")).removesuffix(".meta")
        killed = sum(statuses[status] for status in KILLS)
        rows.append((module, killed, len(exit_codes), statuses))
        survivors += [name for name, code in exit_codes.items() if status_by_exit_code[code] not in KILLS]
    if not rows:
        print("no mutmut results under mutants/: did `mutmut run` run here?", file=sys.stderr)
        return 1
    print(f"{'module':<36} {'killed':>7} {'total':>6} {'rate':>7}  other")
    for module, killed, total, statuses in rows:
        other = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()) if s not in KILLS)
        flag = "" if 100 * killed / total >= GOAL else f"  (below {GOAL:.0f}%)"
        print(f"{module:<36} {killed:>7} {total:>6} {100 * killed / total:>6.1f}%  {other}{flag}")
    if "--survivors" in argv:
        print("\nsurvivors (`mutmut show NAME` in the mutation tree shows one):")
        print("\n".join(f"  {name}" for name in sorted(survivors)))
    below = [module for module, killed, total, _ in rows if 100 * killed / total < GOAL]
    if below:
        print(
            f"\nerror: below the goal of {GOAL:.0f}% killed: {', '.join(below)} — add tests that fail for their "
            "survivors (SURVIVORS=1 lists them), or say in tests/mutation/RESULTS.md why a survivor is equivalent",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
