"""The data a report page embeds: a compact JSON digest of one run's trace, or of an
exploration, built in Python; the page (page.html, *.js, report.css beside this module) draws it.

This module owns what the page is told, in plain JSON values. It must never run or change a
simulation, never produce markup, and never know a particular saga: the lanes, who publishes
each event and which events compensate come from the run's saga definition (or as
parameters). It must never import the command line or explore (those import
the report), so an exploration is read through the `Exploration` protocol below.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..oracle import FAILED, number_of
from ..saga import SagaDefinition
from ..scenario import Scenario
from ..simulation import SimulationResult
from ..trace import US, Record

#: Record kinds drawn as markers on a saga's timeline; deliveries are drawn as arrows instead,
#: and sends and acks (the bulk of a trace) are left out: they carry nothing a marker would add.
MARK_KINDS = (
    "start",
    "reply",
    "publish",
    "handle",
    "ignore",
    "redeliver",
    "drop",
    "duplicate",
    "delay",
    "reorder",
    "hold",
    "lost",
    "fail",
)
#: Kinds that are a fault hitting the saga (the overview shows these as ticks).
FAULT_KINDS = frozenset({"drop", "duplicate", "delay", "reorder", "hold", "lost", "fail"})
#: Records that start one transmission of a delivery (by delivery id); the arrow starts at the
#: last of them, or else (a plain send leaves no record) at the publish of the event.
SEND_KINDS = frozenset(
    {"start", "send", "drop", "duplicate", "delay", "reorder", "hold", "redeliver"}
)
#: The saga log's word for a saga that never ended, and the report's.
IN_PROGRESS, STUCK = "in_progress", "stuck"


class _Table:
    """Interned strings: the page refers to event and kind names by index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.items)
            self.items.append(value)
        return found


class _Lanes:
    """Lane numbers by name: the given lanes first, in their order, then any node the trace
    names that they left out (so nothing is drawn on a lane it does not belong to)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        for name in names:
            self(name)

    def __call__(self, name: str) -> int:
        found = self._index.get(name)
        if found is None:
            found = self._index[name] = len(self.names)
            self.names.append(name)
        return found


def run_data(
    title: str,
    result: SimulationResult,
    scenario: Scenario | None = None,
    *,
    lanes: Sequence[str] | None = None,
    publisher: Mapping[str, str] | None = None,
    compensating: Collection[str] | None = None,
) -> dict[str, Any]:
    """What the page draws, as plain JSON: sagas with their markers and arrows, the crash and
    partition windows, the outcome counts and the invariant results.

    `lanes` are the timeline's lanes top to bottom: where sagas start (the client), then the
    saga's services in step order. `publisher` maps an event type, or the command that starts
    a saga, to the lane that sends it; a message it does not name is drawn from the node that
    published it in the trace. Deliveries of a `compensating` event are drawn dashed. Each
    defaults to what the run's saga definition says."""
    records: list[Record] = list(result.trace.records)
    definition = result.saga
    lane = _Lanes(definition.lanes if lanes is None else lanes)
    if not lane.names:
        raise ValueError("a report needs at least one lane")
    sender = dict(definition.publisher if publisher is None else publisher)
    dashed = definition.compensating if compensating is None else compensating
    names, kinds = _Table(), _Table()
    windows: list[dict[str, Any]] = []
    open_windows: dict[tuple[str, str], dict[str, Any]] = {}
    per_saga: dict[str, dict[str, Any]] = {}
    last_send: dict[str, tuple[int, int]] = {}
    last_publish: dict[tuple[str, str], tuple[int, int]] = {}
    published_by: dict[tuple[str, str], str] = {}
    for record in records:
        if record.kind in ("crash", "partition"):
            window = {
                "kind": record.kind,
                "node": record.node,
                "t0": record.t_us,
                "t1": None,
                "info": record.info,
            }
            windows.append(window)
            open_windows[(record.kind, record.node)] = window
            continue
        if record.kind in ("restart", "heal"):
            opened = open_windows.pop(
                ("crash" if record.kind == "restart" else "partition", record.node), None
            )
            if opened is not None:
                opened["t1"] = record.t_us
            continue
        if not record.saga:
            continue
        saga = per_saga.setdefault(record.saga, {"marks": [], "msgs": []})
        if record.kind in SEND_KINDS and record.ref:
            last_send[record.ref] = (record.seq, record.t_us)
        if record.kind in ("start", "publish"):
            published_by.setdefault((record.saga, record.event), record.node)
        if record.kind == "publish":
            last_publish[(record.saga, record.event)] = (record.seq, record.t_us)
        if record.kind == "deliver":
            sent_seq, sent_t = last_send.get(
                record.ref, last_publish.get((record.saga, record.event), (record.seq, record.t_us))
            )
            source = sender.get(record.event) or published_by.get(
                (record.saga, record.event), lane.names[0]
            )
            saga["msgs"].append(
                [
                    sent_seq,
                    sent_t,
                    record.seq,
                    record.t_us,
                    lane(source),
                    lane(record.node),
                    names(record.event),
                    record.info.removeprefix("attempt "),
                ]
            )
        elif record.kind in MARK_KINDS:
            saga["marks"].append(
                [
                    record.seq,
                    record.t_us,
                    lane(record.node),
                    kinds(record.kind),
                    names(record.event),
                    record.info,
                ]
            )
    end = result.virtual_us
    for window in windows:
        if window["t1"] is None:
            window["t1"] = end
        lane(str(window["node"]))
    violated: dict[str, list[int | str]] = {}
    for violation in result.violations:
        if violation.saga_id is not None:
            number = number_of(result.saga, violation.invariant)
            violated.setdefault(violation.saga_id, []).append(number)
    sagas = []
    for entry in result.saga_log:
        data = per_saga.get(entry.saga_id, {"marks": [], "msgs": []})
        t0 = records[entry.started_seq].t_us if entry.started_seq < len(records) else 0
        if entry.ended_seq is not None and entry.ended_seq < len(records):
            t1 = records[entry.ended_seq].t_us
        else:
            times = [m[1] for m in data["marks"]] + [m[3] for m in data["msgs"]]
            t1 = max(times, default=t0)
        sagas.append(
            {
                "id": entry.saga_id,
                "status": STUCK if entry.status == IN_PROGRESS else entry.status,
                "reason": entry.reason or "",
                "t0": t0,
                "t1": t1,
                "events": list(entry.types),
                "violated": sorted(set(violated.get(entry.saga_id, []))),
                "faults": sum(1 for m in data["marks"] if kinds.items[m[3]] in FAULT_KINDS),
                "marks": data["marks"],
                "msgs": data["msgs"],
            }
        )
    counts = {(STUCK if k == IN_PROGRESS else k): v for k, v in result.counts().items()}
    return {
        "title": title,
        "description": scenario.description if scenario is not None else "",
        "scenario": scenario.name if scenario is not None else "",
        "lanes": lane.names,
        # Outcomes in the saga log's order, the one that never ended last.
        "outcomes": [k for k in counts if k != STUCK] + [STUCK],
        "fault_kinds": sorted(FAULT_KINDS),
        "compensating": sorted(n for n in names.items if n in dashed),
        "names": names.items,
        "kinds": kinds.items,
        "end": max(end, 1),
        "us": US,
        "counts": counts,
        "faults": dict(result.fault_counts),
        "virtual_s": result.virtual_us / US,
        "wall_s": round(result.wall_s, 4),
        "trace_lines": len(result.trace),
        "invariants": [
            {"n": n, "name": name, "ok": state != FAILED, "result": state}
            for n, (name, state) in enumerate(result.verdict.results, start=1)
        ],
        "violations": [
            {"n": number_of(result.saga, v.invariant), "saga": v.saga_id, "detail": v.detail}
            for v in result.violations
        ],
        "windows": windows,
        "sagas": sagas,
    }


class _Decision(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class _Replay(Protocol):
    @property
    def decisions(self) -> Sequence[_Decision] | None: ...
    @property
    def shrunk(self) -> bool: ...
    @property
    def tests(self) -> int: ...


class _Run(Protocol):
    @property
    def seed(self) -> int: ...
    @property
    def violations(self) -> Sequence[tuple[str, str | None, str]]: ...
    @property
    def faults(self) -> Sequence[str]: ...
    @property
    def decisions(self) -> Sequence[Any] | None: ...
    @property
    def counts(self) -> Mapping[str, int]: ...


class Exploration(Protocol):
    """What the report reads of an exploration (explore.ExploreResult has it all)."""

    @property
    def scenario(self) -> str: ...
    @property
    def saga(self) -> SagaDefinition: ...
    @property
    def swarm(self) -> bool: ...
    @property
    def jobs(self) -> int: ...
    @property
    def runs(self) -> Sequence[_Run]: ...
    @property
    def failing(self) -> Sequence[_Run]: ...
    @property
    def replays(self) -> Mapping[int, _Replay]: ...
    @property
    def paths(self) -> Mapping[int, Path]: ...
    @property
    def wall_s(self) -> float: ...
    @property
    def shrink_s(self) -> float: ...
    @property
    def runs_per_s(self) -> float: ...
    def matrix(self) -> Sequence[tuple[str, Mapping[str, int]]]: ...


#: The matrix cells that are not outcome columns, and the one that counts runs, not sagas.
RUNS, VIOLATED = "runs", "violated"


def explore_data(
    title: str,
    result: Exploration,
    *,
    replay_command: Callable[[Path], str] | None = None,
) -> dict[str, Any]:
    """What the explore page draws: the fault x outcome matrix (its columns as the matrix gives
    them) and every failing seed with its shrunk decisions, the replay file it saved and, with
    `replay_command`, the command line that replays it."""
    failing = []
    for run in result.failing:
        replay = result.replays.get(run.seed)
        path = result.paths.get(run.seed)
        failing.append(
            {
                "seed": run.seed,
                "violations": [
                    {
                        "n": number_of(result.saga, name),
                        "name": name,
                        "saga": saga,
                        "detail": detail,
                    }
                    for name, saga, detail in run.violations
                ],
                "faults": list(run.faults),
                "recorded": len(run.decisions or ()),
                "decisions": [d.to_json() for d in (replay.decisions if replay else None) or ()],
                "shrunk": bool(replay and replay.shrunk),
                "tests": replay.tests if replay else 0,
                "file": str(path) if path else "",
                "command": replay_command(path) if path and replay_command else "",
            }
        )
    matrix = [{"row": row, **cells} for row, cells in result.matrix()]
    columns = [c for c in (matrix[0] if matrix else {}) if c not in ("row", RUNS)]
    return {
        "title": title,
        "scenario": result.scenario,
        "swarm": result.swarm,
        "jobs": result.jobs,
        "runs": len(result.runs),
        "sagas": sum(sum(r.counts.values()) for r in result.runs),
        "wall_s": round(result.wall_s, 3),
        "shrink_s": round(result.shrink_s, 3),
        "runs_per_s": round(result.runs_per_s, 2),
        "columns": columns,
        "outcomes": [c for c in columns if c != VIOLATED],
        "matrix": matrix,
        "failing": failing,
    }
