"""The readable summary of one run: outcome counts, faults injected, invariants, times.

This module owns the text a person reads after `run.py scenario` or `run.py replay`. It must
never decide pass or fail itself: the oracle and the scenario's expectations do.
"""

from __future__ import annotations

from collections.abc import Sequence

from .oracle import describe
from .simulation import SimulationResult
from .trace import US

MAX_VIOLATIONS_SHOWN = 5


def summarize(
    title: str,
    result: SimulationResult,
    *,
    seed: int | None,
    description: str = "",
    expected: dict[str, int] | None = None,
    mismatches: Sequence[str] = (),
) -> str:
    lines = [f"{title}" + (f" (seed {seed})" if seed is not None else "")]
    if description:
        lines.append(f"  {description}")
    if result.saga.name != "shop":
        lines.append(f"saga       {result.saga.name}")
    counts = result.counts()
    total = sum(counts.values())
    lines.append(f"sagas      {total}")
    for outcome in ("completed", "compensated", "failed", "in_progress"):
        want = (
            ""
            if expected is None or outcome == "in_progress"
            else f"  (expected {expected[outcome]})"
        )
        if counts[outcome] or want:
            lines.append(f"  {outcome:<12}{counts[outcome]:>6}{want}")
    faults = result.fault_counts
    if faults:
        lines.append("faults     " + ", ".join(f"{kind} {n}" for kind, n in faults.items()))
    else:
        lines.append("faults     none")
    for number, (name, state) in enumerate(result.verdict.results, start=1):
        lines.append(f"  [{state:>4}] {number}. {name}")
    for violation in result.violations[:MAX_VIOLATIONS_SHOWN]:
        lines.append(describe(violation, result.saga, result.trace))
    if len(result.violations) > MAX_VIOLATIONS_SHOWN:
        lines.append(f"  ... and {len(result.violations) - MAX_VIOLATIONS_SHOWN} more violations")
    for problem in mismatches:
        lines.append(f"outcome    {problem}")
    lines.append(
        f"time       {result.virtual_us / US:.3f}s virtual, {result.wall_s:.3f}s wall,"
        f" {len(result.trace)} trace lines"
    )
    verdict = "PASS" if result.ok and not mismatches else "FAIL"
    lines.append(f"result     {verdict}")
    return "\n".join(lines)
