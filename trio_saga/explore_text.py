"""What a person reads of an exploration: the fault-kind x outcome matrix as text, the summary
of failing seeds with the commands that replay them, and the terminal's progress bar.

This module owns that text. It must never run anything or decide anything: it reads an
`explore.ExploreResult` (and its `Progress`), which the engine in `explore.py` produces.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .explore import OUTCOME_COLUMNS, ExploreResult, Progress
from .oracle import number_of
from .saga import BUILT_IN, SagaDefinition, saga_argument


def format_matrix(matrix: Sequence[tuple[str, dict[str, int]]]) -> str:
    width = max([len(row) for row, _ in matrix] + [len("fault kind")])
    head = f"{'fault kind':<{width}}  {'runs':>6}  " + "  ".join(
        f"{c:>11}" for c in OUTCOME_COLUMNS
    )
    lines = [head, "-" * len(head)]
    for row, cells in matrix:
        lines.append(
            f"{row:<{width}}  {cells['runs']:>6}  "
            + "  ".join(f"{cells[c]:>11}" for c in OUTCOME_COLUMNS)
        )
    lines.append("(completed .. stuck count sagas; runs and violated count runs)")
    return "\n".join(lines)


def decisions_text(count: int) -> str:
    return f"{count} decision{'' if count == 1 else 's'}"


def replay_command_line(path: Path, saga: SagaDefinition | None = None) -> str:
    """The command that replays a saved file; a saga that does not ship with trio-saga must
    be named on it (a replay file never imports code by itself)."""
    ref = None if saga is None else saga_argument(saga)
    if ref is None or ref in BUILT_IN.values():
        return f"python run.py replay {path}"
    return f"python run.py replay {path} --saga-def {ref}"


def format_explore(result: ExploreResult) -> str:
    runs = len(result.runs)
    sagas = sum(sum(r.counts.values()) for r in result.runs)
    mode = "swarm fault mixes" if result.swarm else "the scenario's faults"
    lines = [
        f"explore {result.scenario}: {runs} runs ({sagas} sagas) with {mode},"
        f" {result.jobs} job{'s' if result.jobs != 1 else ''}",
        "",
        format_matrix(result.matrix()),
        "",
        f"speed      {result.runs_per_s:.1f} runs/s ({result.wall_s:.2f}s wall"
        + (f", then {result.shrink_s:.2f}s shrinking" if result.shrink_s else "")
        + ")",
    ]
    failing = result.failing
    if not failing:
        lines.append("result     PASS: no invariant violated")
        return "\n".join(lines)
    lines.append(f"result     FAIL: {len(failing)} of {runs} runs violated an invariant")
    signatures = dict.fromkeys(run.signature for run in failing)
    lines.append(
        f"signatures {len(signatures)} distinct; replay files for {len(result.replays)}"
        f" of the {len(failing)} failing seeds"
    )
    for run in failing:
        invariant, saga, detail = run.violations[0]
        where = f" {saga}" if saga else ""
        more = f" (+{len(run.violations) - 1} more)" if len(run.violations) > 1 else ""
        lines.append(
            f"  seed {run.seed}: invariant {number_of(result.saga, invariant)} ({invariant})"
            f"{where}: {detail}{more}"
        )
        others = run.invariants[1:]
        if others:
            shown = ", ".join(f"{number_of(result.saga, n)} ({n})" for n in others)
            lines.append(f"    also violated: {shown}")
        replay = result.replays.get(run.seed)
        if replay is None and result.replays:
            lines.append("    no replay file (over --max-replays; re-run this seed to get one)")
        if replay is not None:
            if replay.shrunk and replay.decisions is not None:
                kinds = ", ".join(sorted({d.kind for d in replay.decisions})) or "no faults"
                lines.append(
                    f"    shrunk {replay.recorded} -> {decisions_text(len(replay.decisions))}"
                    f" ({kinds}) in {replay.tests} replays"
                )
            elif replay.decisions is None:
                lines.append(
                    "    not shrunk: its decisions do not replay it, so the file re-runs the seed"
                )
            else:
                lines.append(f"    not shrunk (all {replay.recorded} decisions kept)")
        path = result.paths.get(run.seed)
        if path is not None:
            lines.append(f"    {replay_command_line(path, result.saga)}")
    return "\n".join(lines)


# -- the progress bar --------------------------------------------------------------------------


class ProgressBar:
    """One line on a terminal, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = 0.0
        self._drawn = False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.total is not None and p.done >= p.total
        if not final and now - self._last < 0.1:
            return
        self._last = now
        if p.total:
            fraction, count = p.done / p.total, f"{p.done}/{p.total} runs"
        elif p.budget_s:
            fraction, count = p.elapsed / p.budget_s, f"{p.done} runs"
        else:
            fraction, count = 0.0, f"{p.done} runs"
        filled = round(min(max(fraction, 0.0), 1.0) * self.WIDTH)
        rate = p.done / p.elapsed if p.elapsed > 0 else 0.0
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"[{bar}] {count}  {rate:.1f}/s  {p.violated} violated  {p.elapsed:.0f}s"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
