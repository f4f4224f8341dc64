#!/usr/bin/env python3
# The shrink benchmark of issue 11: it owns which planted bugs are explored on which scenario
# and the table it prints. It must never change what shrinking does (no other budget, no other
# passes than explore's own): it reports what a user's `explore` would save.
"""How small explore's replay files are: every planted bug of the suite and of the examples,
explored over swarm seeds, every failing seed shrunk (not only the first ten), sizes counted.

    python benchmarks/shrink_sizes.py               # 200 seeds each, a table
    python benchmarks/shrink_sizes.py --seeds 50 --only FORGETFUL,forgetful_hotel
    python benchmarks/shrink_sizes.py --json        # one JSON object on stdout

The goal (issue 11): each bug found within 200 seeds, its replay shrunk to at most 3 decisions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in ("", "tests", "examples/travel", "examples/transfer"):
    sys.path.insert(0, str(ROOT / folder))

import effect_bugs  # noqa: E402
import planted_bugs  # noqa: E402
import transfer_bugs  # noqa: E402
import travel_bugs  # noqa: E402

from trio_saga import SagaDefinition  # noqa: E402
from trio_saga.explore import RunCrashed, explore  # noqa: E402
from trio_saga.scenario import Scenario  # noqa: E402

SHOP = "chaos"
TRAVEL = str(ROOT / "examples/travel/scenarios/storm.toml")
TRANSFER = str(ROOT / "examples/transfer/scenarios/storm.toml")

#: name -> (saga, scenario it is explored on, with swarm)
BUGS: dict[str, tuple[SagaDefinition, str]] = {
    "DOUBLE_CHARGE": (planted_bugs.DOUBLE_CHARGE, SHOP),
    "INBOXLESS": (planted_bugs.INBOXLESS, SHOP),
    "EXPLODING": (planted_bugs.EXPLODING, SHOP),
    "WRONG_REFUND": (planted_bugs.WRONG_REFUND, SHOP),
    "KEYLESS": (effect_bugs.KEYLESS, SHOP),
    "FORGETFUL": (effect_bugs.FORGETFUL, SHOP),
    "CACHING": (effect_bugs.CACHING, SHOP),
    "BRITTLE": (effect_bugs.BRITTLE, SHOP),
    "forgetful_hotel": (travel_bugs.forgetful_hotel, TRAVEL),
    "eager_debit": (transfer_bugs.eager_debit, TRANSFER),
}
GOAL = 3


def measure(name: str, seeds: int, jobs: int) -> dict[str, object]:
    saga, scenario = BUGS[name]
    started = time.perf_counter()
    try:
        result = explore(
            Scenario.load(scenario),
            seeds,
            jobs,
            swarm=True,
            saga=saga,
            max_shrinks=seeds,
            max_replays=seeds,
        )
    except RunCrashed as exc:  # a bug that makes the run raise (EXPLODING) is found, not shrunk
        return {"bug": name, "error": str(exc).splitlines()[0]}
    sizes = sorted(
        len(r.decisions) for r in result.replays.values() if r.shrunk and r.decisions is not None
    )
    return {
        "bug": name,
        "failing": len(result.failing),
        "seeds": seeds,
        "first_seed": min((r.seed for r in result.failing), default=None),
        "shrunk": len(sizes),
        "min": sizes[0] if sizes else None,
        "median": statistics.median(sizes) if sizes else None,
        "max": sizes[-1] if sizes else None,
        "over_goal": sum(s > GOAL for s in sizes),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated bug names")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BUGS)
    rows = []
    for name in names:
        row = measure(name, args.seeds, args.jobs)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"goal_max_decisions": GOAL, "bugs": rows}))
        return
    print(
        f"{'bug':16} {'failing':>9} {'shrunk':>6} {'min':>4} {'median':>6} {'max':>4}"
        f" {'>3':>4} {'wall s':>7}"
    )
    for row in rows:
        if "error" in row:
            print(f"{row['bug']:16} {row['error']}")
            continue
        print(
            f"{row['bug']:16} {row['failing']:>4}/{row['seeds']:<4} {row['shrunk']:>6}"
            f" {row['min']!s:>4} {row['median']!s:>6} {row['max']!s:>4}"
            f" {row['over_goal']:>4} {row['wall_s']:>7}"
        )


if __name__ == "__main__":
    main()
