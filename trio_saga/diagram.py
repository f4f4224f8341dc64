"""Mermaid sequence diagrams of a run, drawn from its trace.

One saga (`saga_id`): the client, the event bus and the services as participants; every
command, publish, delivery and reply as an arrow; every fault as a visibly marked note or a
crossed arrow. A whole run: an overview with one branch per distinct path the sagas took
(their outcome and the events they published, in order), each with how many sagas took it,
which ones, the clean flow of the path and the faults that hit those sagas; the run-wide
faults (crashes, partitions) come first.

This module owns the diagram text and nothing else. It must never run or change a simulation
and must only read trace records, so that a diagram can be drawn from a saved trace too; who
takes part and which events end a saga come from the saga definition (or as parameters). The
text depends on the records alone (no clock, no dict order from hashing), so the same run
gives the same bytes in any process.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .saga import SagaDefinition
from .shop import SHOP
from .trace import US, Record

BUS = "bus"


def participants(saga: SagaDefinition) -> tuple[str, ...]:
    """Declared first, in this order, so that the arrows read left to right like the saga:
    where sagas start, the event bus, then the services in step order."""
    lanes = saga.lanes
    return (lanes[0], BUS, *lanes[1:])


#: Record kinds that concern the whole run rather than one saga, shown in every diagram.
GLOBAL_KINDS = frozenset({"crash", "restart", "partition", "heal"})

#: Faults of one transmission, folded into one note.
NETWORK_KINDS = frozenset({"delay", "reorder", "duplicate"})

#: Record kinds that are a fault hitting one saga, counted per path in the overview.
FAULT_KINDS = ("delay", "drop", "duplicate", "fail", "hold", "lost", "reorder")

#: The overview's name for a saga that never reached a terminal event.
STUCK = "stuck"

#: Saga ids per line of the overview's "which sagas" note.
IDS_PER_LINE = 10

INDENT = "    "


def mermaid(
    trace_records: Iterable[Record],
    saga_id: str | None = None,
    *,
    saga: SagaDefinition = SHOP,
    participants: Sequence[str] | None = None,
    terminal: Mapping[str, str] | None = None,
) -> str:
    """The `sequenceDiagram` of `saga_id`, or the overview of the whole run. Raises ValueError
    for a saga that is not in the trace.

    `participants` are where sagas start (the client) and then the saga's services in step
    order; the event bus is declared after the first. `terminal` maps each event that ends a
    saga to its outcome. Both default to what `saga` says; a node the
    trace names that `participants` leave out is declared after them."""
    records = list(trace_records)
    lanes = list(saga.lanes if participants is None else participants)
    if not lanes:
        raise ValueError("a diagram needs at least one participant")
    ends = dict(saga.terminal if terminal is None else terminal)
    order = _saga_order(records)
    if saga_id is not None and saga_id not in order:
        raise ValueError(f"no saga {saga_id!r} in this trace")
    known = [lanes[0], BUS, *(n for n in lanes[1:] if n != BUS)]
    span = f"{known[0]},{known[-1]}"
    drawing = _Drawing(span=span, terminal=ends, starter=_starter(lanes))
    for record in records:
        if record.kind in GLOBAL_KINDS or (saga_id is not None and record.saga == saga_id):
            drawing.draw(record)
    if saga_id is not None:
        header = [
            f"{INDENT}%% trio-saga: {_text(f'{saga_id}, one of {len(order)} sagas')}",
            f"{INDENT}Note over {span}: {_text(saga_id)}",
        ]
        body = drawing.lines
    else:
        paths = _paths(records, order, ends)
        header = [
            f"{INDENT}%% trio-saga: {len(order)} sagas, {len(paths)} distinct paths",
            f"{INDENT}Note over {span}: {_text(_summary(order, paths))}",
        ]
        body = drawing.lines + _overview(records, paths, drawing)
    declared = [
        f"{INDENT}participant {BUS} as event bus" if name == BUS else f"{INDENT}participant {name}"
        for name in [*known, *(n for n in drawing.nodes if n not in known)]
    ]
    return "\n".join(["sequenceDiagram", *declared, *header, *body]) + "\n"


def _starter(lanes: Sequence[str]) -> str:
    """Who answers the client when nothing in the trace says: the first service."""
    return lanes[1] if len(lanes) > 1 else lanes[0]


class _Path:
    """Sagas that ended the same way after publishing the same events in the same order."""

    def __init__(self, outcome: str, events: tuple[str, ...]) -> None:
        self.outcome = outcome
        self.events = events
        self.sagas: list[str] = []


def _paths(
    records: Sequence[Record], order: Sequence[str], terminal: Mapping[str, str]
) -> list[_Path]:
    """Every distinct path, the one most sagas took first (then the one taken first)."""
    published: dict[str, list[str]] = {saga: [] for saga in order}
    for record in records:
        if record.kind == "publish" and record.saga in published:
            events = published[record.saga]
            if record.event not in events:
                events.append(record.event)
    paths: dict[tuple[str, tuple[str, ...]], _Path] = {}
    for saga in order:
        key = tuple(published[saga])
        outcome = next((terminal[e] for e in key if e in terminal), STUCK)
        path = paths.setdefault((outcome, key), _Path(outcome, key))
        path.sagas.append(saga)
    ranked = sorted(enumerate(paths.values()), key=lambda p: (-len(p[1].sagas), p[0]))
    return [path for _, path in ranked]


def _summary(order: Sequence[str], paths: Sequence[_Path]) -> str:
    outcomes = Counter[str]()
    for path in paths:
        outcomes[path.outcome] += len(path.sagas)
    mix = ", ".join(f"{count} {outcome}" for outcome, count in outcomes.most_common())
    return (
        f"{_sagas(len(order))} ({mix or 'none'}) took {len(paths)} distinct"
        f" path{'' if len(paths) == 1 else 's'}, most taken first; draw one saga in full with"
        " --saga ID"
    )


def _sagas(count: int) -> str:
    return f"{count} saga{'' if count == 1 else 's'}"


def _ids(sagas: Sequence[str]) -> str:
    """Saga ids with runs of consecutive numbers folded: saga-1..4, saga-7, saga-9..10."""
    folded: list[str] = []
    run: list[tuple[str, int]] = []

    def flush() -> None:
        if run:
            (prefix, first), (_, last) = run[0], run[-1]
            folded.append(f"{prefix}{first}" if first == last else f"{prefix}{first}..{last}")
            run.clear()

    for saga in sagas:
        match = re.fullmatch(r"(.*?)(\d+)", saga)
        if match is None:
            flush()
            folded.append(saga)
            continue
        prefix, number = match.group(1), int(match.group(2))
        if run and (run[-1][0] != prefix or run[-1][1] + 1 != number):
            flush()
        run.append((prefix, number))
    flush()
    lines = [
        ", ".join(_text(part) for part in folded[i : i + IDS_PER_LINE])
        for i in range(0, len(folded), IDS_PER_LINE)
    ]
    return "<br/>".join(lines)


def _overview(records: Sequence[Record], paths: Sequence[_Path], drawing: _Drawing) -> list[str]:
    """One `alt` branch per path: who took it, its flow drawn from its first saga's records
    (the first time each message went each way, no faults, no retries), and the faults that
    hit the sagas on it."""
    of_saga: dict[str, list[Record]] = {}
    for record in records:
        if record.saga:
            of_saga.setdefault(record.saga, []).append(record)
    lines: list[str] = []
    for i, path in enumerate(paths):
        keyword = "alt" if i == 0 else "else"
        lines.append(f"{INDENT}{keyword} {_text(f'{path.outcome}, {_sagas(len(path.sagas))}')}")
        lines.append(f"{INDENT * 2}Note over {drawing.span}: {_ids(path.sagas)}")
        flow = _Drawing(
            span=drawing.span,
            terminal={},
            starter=drawing.starter,
            indent=INDENT * 2,
        )
        seen: set[tuple[str, str, str]] = set()
        for record in of_saga.get(path.sagas[0], []):
            if record.kind not in ("start", "publish", "deliver", "reply"):
                continue
            key = (record.kind, record.node, record.event)
            if key in seen:
                continue
            seen.add(key)
            flow.draw(record._replace(info="") if record.kind == "reply" else record)
        lines += flow.lines
        drawing.nodes += [n for n in flow.nodes if n not in drawing.nodes]
        faults = Counter(
            r.kind for saga in path.sagas for r in of_saga.get(saga, []) if r.kind in FAULT_KINDS
        )
        hit = ", ".join(f"{kind} {faults[kind]}" for kind in FAULT_KINDS if faults[kind])
        lines.append(
            f"{INDENT * 2}Note over {BUS}: {_text('faults on these sagas: ' + (hit or 'none'))}"
        )
    if paths:
        lines.append(f"{INDENT}end")
    return lines


def _saga_order(records: Sequence[Record]) -> list[str]:
    """Saga ids in the order they started (first appearance for a trace without starts)."""
    started = [r.saga for r in records if r.kind == "start" and r.saga]
    seen = dict.fromkeys(started)
    for record in records:
        if record.saga:
            seen.setdefault(record.saga)
    return list(seen)


def _text(value: str) -> str:
    """Mermaid reads `;` as a statement end and `#` as an entity code; message text must be one
    line."""
    return " ".join(value.replace(";", ",").replace("#", "no. ").split())


def _seconds(t_us: int) -> str:
    return f"t={t_us / US:.3f}s"


class _Drawing:
    """The diagram body, one record at a time. It remembers each delivery's attempt number,
    folds the faults of one transmission into one note and a run of identical lines into one
    line marked `xN`, so that a storm of duplicates or a long partition stays readable."""

    def __init__(
        self,
        *,
        span: str,
        terminal: Mapping[str, str],
        starter: str,
        indent: str = INDENT,
    ) -> None:
        self.span = span  # "first,last" participant, for notes across the whole diagram
        self.terminal = terminal
        self.starter = starter
        self.indent = indent
        self.nodes: list[str] = []
        self._lines: list[list[str | int]] = []  # [text, repeats]
        self._attempt: dict[str, int] = {}
        self._faults_of: tuple[int, str, str] | None = None  # (t, ref, dest) of the last note
        self._start_ref: dict[str, str] = {}  # saga -> delivery id of its starting command
        self._answers: dict[str, str] = {}  # saga -> the node its starting command reached

    @property
    def lines(self) -> list[str]:
        return [f"{text} x{count}" if count != 1 else str(text) for text, count in self._lines]

    def _emit(self, line: str) -> None:
        self._faults_of = None
        if self._lines and self._lines[-1][0] == line:
            self._lines[-1][1] = int(self._lines[-1][1]) + 1
        else:
            self._lines.append([line, 1])

    def _node(self, name: str) -> str:
        if name not in self.nodes:
            self.nodes.append(name)
        return name

    def _arrow(self, source: str, arrow: str, dest: str, label: str) -> None:
        self._node(source)
        self._node(dest)
        self._emit(f"{self.indent}{source}{arrow}{dest}: {_text(label)}")

    def _note(self, over: str, label: str) -> None:
        self._node(over)
        self._emit(f"{self.indent}Note over {over}: {_text(label)}")

    def _what(self, record: Record) -> str:
        return record.event

    def _tries(self, record: Record) -> str:
        attempt = self._attempt.get(record.ref, 1)
        return f" (attempt {attempt})" if attempt > 1 else ""

    def _network_fault(self, record: Record, what: str) -> None:
        """DELAY, REORDER and DUPLICATE of one transmission share one note over the bus."""
        part = f"{record.kind.upper()} {record.info}"
        key = (record.t_us, record.ref, record.node)
        if self._faults_of == key and self._lines[-1][1] == 1:
            faults, _, target = str(self._lines[-1][0]).rpartition(": ")
            self._lines[-1][0] = f"{faults}, {_text(part)}: {target}"
        else:
            self._note(BUS, f"{part}: {what} to {record.node}")
        self._faults_of = key

    def draw(self, record: Record) -> None:
        kind, node, what = record.kind, record.node, self._what(record)
        at = _seconds(record.t_us)
        if kind not in NETWORK_KINDS:
            self._faults_of = None
        if kind == "start":
            self._start_ref.setdefault(record.saga, record.ref)
            self._arrow(node, "->>", BUS, what)
        elif kind == "publish":
            self._arrow(node, "->>", BUS, what)
            outcome = self.terminal.get(record.event)
            if outcome is not None:
                self._emit(
                    f"{self.indent}Note over {self.span}: {_text(f'{record.saga} {outcome}')}"
                )
        elif kind == "redeliver":
            self._attempt[record.ref] = self._attempt.get(record.ref, 1) + 1
        elif kind == "deliver":
            if self._start_ref.get(record.saga) == record.ref:
                self._answers.setdefault(record.saga, node)
            self._arrow(BUS, "->>", node, what + self._tries(record))
        elif kind == "reply":
            # The reply comes from the service the starting command reached.
            source = self._answers.get(record.saga, self.starter)
            self._arrow(source, "-->>", node, f"{what} {record.info}".strip())
        elif kind == "drop":
            self._drop(record, what)
        elif kind == "lost":
            if record.info == "service down":
                self._arrow(BUS, "-x", node, f"LOST {what}{self._tries(record)}, {node} is down")
            else:
                self._note(node, f"LOST {what} with the crash ({at})")
        elif kind in NETWORK_KINDS:
            self._network_fault(record, what)
        elif kind == "hold":
            if record.event == "ack":
                self._note(node, f"HELD by partition: {what} from {node}, until the heal")
            elif record.info.endswith("in outbox, partitioned"):
                self._note(node, f"HELD by partition: outbox of {node}")
            else:
                self._note(BUS, f"HELD by partition: {what} to {node}, until the heal")
        elif kind == "ignore":
            self._note(node, f"ignored {record.info} {what}")
        elif kind == "fail":
            self._note(node, f"FORCED FAILURE of {node} for {record.saga}: {record.info}")
        elif kind == "crash":
            self._note(node, f"CRASH {record.info} ({at})")
        elif kind == "raise":
            self._note(node, f"RAISED {record.info} handling {what} ({at}): the run stops here")
        elif kind == "restart":
            self._note(node, f"RESTART from durable state ({at})")
        elif kind == "partition":
            self._note(node, f"PARTITION {record.info} ({at})")
        elif kind == "heal":
            self._note(node, f"HEAL partition {record.info} ({at})")
        # send, handle and ack add nothing a reader needs: the arrows around them show it.

    def _drop(self, record: Record, what: str) -> None:
        why = " by partition" if record.info == "partitioned" else ""
        if record.event == "ack":
            # An acknowledgement lost on its way back: the bus will deliver again.
            self._arrow(record.node, "--x", BUS, f"DROPPED{why} {what}")
        else:
            self._arrow(BUS, "-x", record.node, f"DROPPED{why} {what}{self._tries(record)}")
