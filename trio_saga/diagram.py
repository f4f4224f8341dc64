"""A Mermaid sequence diagram of a run, drawn from its trace: the client, the event bus and the
services as participants; every command, publish, delivery and reply as an arrow; every fault
as a visibly marked note or a crossed arrow.

This module owns the diagram text and nothing else. It must never run or change a simulation
and must only read trace records, so that a diagram can be drawn from a saved trace too. The
text depends on the records alone (no clock, no dict order from hashing), so the same run gives
the same bytes in any process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .saga import SagaDefinition
from .shop import SHOP
from .trace import US, Record

#: Without `saga_id`, a run with more sagas than this shows only its first ones: Mermaid
#: renders thousands of messages neither quickly nor readably.
DEFAULT_MAX_SAGAS = 10

BUS = "bus"


def participants(saga: SagaDefinition) -> tuple[str, ...]:
    """Declared first, in this order, so that the arrows read left to right like the saga."""
    return ("client", BUS, *saga.service_names)


#: Record kinds that concern the whole run rather than one saga, shown in every diagram.
GLOBAL_KINDS = frozenset({"crash", "restart", "partition", "heal"})

#: Faults of one transmission, folded into one note.
NETWORK_KINDS = frozenset({"delay", "reorder", "duplicate"})

INDENT = "    "


def mermaid(
    trace_records: Iterable[Record],
    saga_id: str | None = None,
    *,
    max_sagas: int = DEFAULT_MAX_SAGAS,
    saga: SagaDefinition = SHOP,
) -> str:
    """The `sequenceDiagram` of `saga_id`, or of all sagas (at most `max_sagas` of them, in the
    order they started, with a note saying how many were left out). Raises ValueError for a
    saga that is not in the trace."""
    records = list(trace_records)
    order = _saga_order(records)
    if saga_id is not None:
        if saga_id not in order:
            raise ValueError(f"no saga {saga_id!r} in this trace")
        shown = [saga_id]
    else:
        shown = order[: max(max_sagas, 1)]
    declared_first = participants(saga)
    drawing = _Drawing(single=saga_id is not None, saga=saga)
    selected = set(shown)
    for record in records:
        if record.kind in GLOBAL_KINDS or record.saga in selected:
            drawing.draw(record)
    header = [f"{INDENT}%% trio-saga: {_text(_header(order, shown, saga_id))}"]
    omitted = len(order) - len(shown)
    if saga_id is None and omitted > 0:
        header.append(
            f"{INDENT}Note over {declared_first[0]},{declared_first[-1]}: showing the first"
            f" {len(shown)} of {len(order)} sagas ({omitted} left out), draw one with --saga ID"
        )
    elif saga_id is not None:
        header.append(
            f"{INDENT}Note over {declared_first[0]},{declared_first[-1]}: {_text(saga_id)}"
        )
    names = [*declared_first, *(n for n in drawing.nodes if n not in declared_first)]
    declared = [
        f"{INDENT}participant {BUS} as event bus" if name == BUS else f"{INDENT}participant {name}"
        for name in names
    ]
    return "\n".join(["sequenceDiagram", *declared, *header, *drawing.lines]) + "\n"


def _saga_order(records: Sequence[Record]) -> list[str]:
    """Saga ids in the order they started (first appearance for a trace without starts)."""
    started = [r.saga for r in records if r.kind == "start" and r.saga]
    seen = dict.fromkeys(started)
    for record in records:
        if record.saga:
            seen.setdefault(record.saga)
    return list(seen)


def _header(order: Sequence[str], shown: Sequence[str], saga_id: str | None) -> str:
    if saga_id is not None:
        return f"{saga_id}, one of {len(order)} sagas"
    return f"{len(shown)} of {len(order)} sagas"


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

    def __init__(self, *, single: bool, saga: SagaDefinition) -> None:
        self.single = single
        self.terminal = saga.terminal
        self.entry = saga.entry
        self.span = participants(saga)
        self.nodes: list[str] = []
        self._lines: list[list[str | int]] = []  # [text, repeats]
        self._attempt: dict[str, int] = {}
        self._faults_of: tuple[int, str, str] | None = None  # (t, ref, dest) of the last note

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
        self._emit(f"{INDENT}{source}{arrow}{dest}: {_text(label)}")

    def _note(self, over: str, label: str) -> None:
        self._node(over)
        self._emit(f"{INDENT}Note over {over}: {_text(label)}")

    def _what(self, record: Record) -> str:
        """The message, with its saga unless the diagram shows only one."""
        return record.event if self.single else f"{record.event} {record.saga}"

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
            self._arrow("client", "->>", BUS, what)
        elif kind == "publish":
            self._arrow(node, "->>", BUS, what)
            outcome = self.terminal.get(record.event)
            if outcome is not None:
                self._emit(
                    f"{INDENT}Note over {self.span[0]},{self.span[-1]}:"
                    f" {_text(f'{record.saga} {outcome}')}"
                )
        elif kind == "redeliver":
            self._attempt[record.ref] = self._attempt.get(record.ref, 1) + 1
        elif kind == "deliver":
            self._arrow(BUS, "->>", node, what + self._tries(record))
        elif kind == "reply":
            self._arrow(self.entry, "-->>", node, f"{what} {record.info}")
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
