# mermaid(): the sequence diagram of one saga, or the overview of a whole run, drawn from trace
# records. Built from hand-made records where the point is one rendering rule, and from real
# runs where the point is the whole diagram.

from __future__ import annotations

import re

import pytest

from trio_saga.diagram import mermaid, participants
from trio_saga.scenario import Scenario
from trio_saga.shop import SHOP
from trio_saga.simulation import SimulationResult, simulate
from trio_saga.trace import Record

ARROW = re.compile(r"^ {4,8}(\w+)(->>|-->>|-x|--x)(\w+): [^;#\n]+$")
NOTE = re.compile(r"^ {4,8}Note over (\w+)(?:,(\w+))?: [^;#\n]+$")
BRANCH = re.compile(r"^    (alt|else) [^;#\n]+$|^    end$")
IDS = re.compile(r"^        Note over \w+,\w+: ((?:[\w.-]+(?:, |<br/>)?)+)$")
PARTICIPANT = re.compile(r"^    participant (\w+)(?: as [\w ]+)?$")
COMMENT = re.compile(r"^    %%.*$")

#: Declared first, in this order: the client, the bus, then the shop's services by step.
PARTICIPANTS = participants(SHOP)


def rec(seq: int, kind: str, node: str = "", saga: str = "", event: str = "", **kw: str) -> Record:
    return Record(
        seq=seq,
        t_us=int(kw.get("t_us", seq * 1000)),
        kind=kind,
        node=node,
        saga=saga,
        event=event,
        ref=kw.get("ref", ""),
        info=kw.get("info", ""),
    )


def run(name: str, seed: int | None = None) -> SimulationResult:
    return simulate(Scenario.load(name).simulation(seed))


def body(text: str) -> list[str]:
    return [line for line in text.splitlines() if not PARTICIPANT.match(line)][1:]


def check_syntax(text: str) -> None:
    """Every line is a statement Mermaid's sequence grammar knows, branches open once and
    close once, and every participant an arrow or note names is declared."""
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    declared = [m.group(1) for line in lines if (m := PARTICIPANT.match(line))]
    assert declared[: len(PARTICIPANTS)] == list(PARTICIPANTS)
    branches = [m.group(1) or "end" for line in lines if (m := BRANCH.match(line))]
    assert branches in ([], ["alt", *(["else"] * (len(branches) - 2)), "end"]), branches
    for line in lines[1:]:
        match = ARROW.match(line) or NOTE.match(line)
        if match is None:
            assert PARTICIPANT.match(line) or COMMENT.match(line) or BRANCH.match(line), line
            continue
        names = [match.group(1), match.group(3) if match.re is ARROW else match.group(2)]
        assert {n for n in names if n} <= set(declared), line


def test_the_participants_come_from_the_saga_in_step_order() -> None:
    assert PARTICIPANTS == ("client", "bus", "inventory", "payment", "shipping")


def test_one_completed_saga_reads_like_the_choreography() -> None:
    text = mermaid(run("happy-path").trace, "saga-1")
    check_syntax(text)
    expected = [
        "client->>bus: reserve_inventory",
        "bus->>inventory: reserve_inventory",
        "inventory-->>client: reserve_inventory_ok r1",
        "inventory->>bus: InventoryReserved",
        "bus->>payment: InventoryReserved",
        "payment->>bus: PaymentCharged",
        "bus->>shipping: PaymentCharged",
        "shipping->>bus: ShipmentCreated",
        "Note over client,shipping: saga-1 completed",
        "bus->>inventory: ShipmentCreated",
    ]
    arrows = [line.strip() for line in body(text) if "->>" in line or "completed" in line]
    assert arrows == expected


def test_compensation_is_drawn_in_reverse_order() -> None:
    result = run("shipping-failure")
    forced = next(r.saga for r in result.trace if r.kind == "fail")
    text = mermaid(result.trace, forced)
    check_syntax(text)
    published = [m.group(1) for m in re.finditer(r"\w+->>bus: (\w+)", text)]
    assert published[1:] == [
        "InventoryReserved",
        "PaymentCharged",
        "ShipmentFailed",
        "PaymentRefunded",
        "InventoryReleased",
    ]
    assert f"Note over shipping: FORCED FAILURE of shipping for {forced}" in text
    assert f"{forced} compensated" in text


def test_every_fault_is_visibly_marked() -> None:
    # The faults of one transmission (same time, same delivery) share one note.
    records = [
        rec(0, "start", "client", "s1", "reserve_inventory", ref="1"),
        rec(1, "drop", "inventory", "s1", "reserve_inventory", ref="1"),
        rec(2, "redeliver", "inventory", "s1", "reserve_inventory", ref="1", info="attempt 2"),
        rec(3, "delay", "inventory", "s1", "reserve_inventory", ref="1", info="+0.5s"),
        rec(
            4,
            "duplicate",
            "inventory",
            "s1",
            "reserve_inventory",
            ref="1",
            info="1 extra",
            t_us="3000",
        ),
        rec(5, "deliver", "inventory", "s1", "reserve_inventory", ref="1", info="attempt 2"),
        rec(6, "deliver", "inventory", "s1", "reserve_inventory", ref="1", info="attempt 2"),
        rec(7, "fail", "inventory", "s1", info="inventory_unavailable"),
        rec(8, "partition", "payment", info="both until 4s, drop"),
        rec(9, "crash", "payment", info="down 1s"),
        rec(10, "lost", "payment", "s2", "InventoryReserved", ref="9", info="service down"),
        rec(11, "hold", "payment", "s2", "InventoryReserved", ref="9", info="partitioned"),
        rec(12, "drop", "payment", "s2", "ack", ref="9", info="partitioned"),
        rec(13, "restart", "payment"),
        rec(14, "heal", "payment", info="both"),
        rec(15, "reorder", "shipping", "s2", "PaymentCharged", ref="12", info="+0.1s"),
        rec(16, "lost", "shipping", "s2", "PaymentCharged", ref="12", info="crashed"),
        rec(17, "ignore", "payment", "s2", "InventoryReserved", ref="inv-1", info="duplicate"),
    ]
    first, second = mermaid(records, "s1"), mermaid(records, "s2")
    check_syntax(first)
    check_syntax(second)
    run_wide = [
        "Note over payment: PARTITION both until 4s, drop (t=0.008s)",
        "Note over payment: CRASH down 1s (t=0.009s)",
        "Note over payment: RESTART from durable state (t=0.013s)",
        "Note over payment: HEAL partition both (t=0.014s)",
    ]
    for line in [
        "bus-xinventory: DROPPED reserve_inventory",
        "Note over bus: DELAY +0.5s, DUPLICATE 1 extra: reserve_inventory to inventory",
        "bus->>inventory: reserve_inventory (attempt 2) x2",
        "Note over inventory: FORCED FAILURE of inventory for s1: inventory_unavailable",
        *run_wide,
    ]:
        assert f"    {line}\n" in first, line
    for line in [
        "bus-xpayment: LOST InventoryReserved, payment is down",
        "Note over bus: HELD by partition: InventoryReserved to payment, until the heal",
        "payment--xbus: DROPPED by partition ack",
        "Note over bus: REORDER +0.1s: PaymentCharged to shipping",
        "Note over shipping: LOST PaymentCharged with the crash (t=0.016s)",
        "Note over payment: ignored duplicate InventoryReserved",
        *run_wide,
    ]:
        assert f"    {line}\n" in second, line


def test_a_saga_filter_keeps_only_that_saga_and_the_run_wide_faults() -> None:
    result = run("chaos", 3)
    text = mermaid(result.trace, "saga-7")
    check_syntax(text)
    assert set(re.findall(r"saga-\d+", text)) == {"saga-7"}
    crashes = sum(1 for r in result.trace if r.kind == "crash")
    assert crashes > 0
    assert text.count("CRASH") == crashes
    assert "PARTITION" in text
    assert "HEAL" in text


def test_unknown_saga_is_an_error() -> None:
    with pytest.raises(ValueError, match="no saga 'saga-99'"):
        mermaid(run("happy-path").trace, "saga-99")


def saga_ids(note: str) -> list[str]:
    """The saga ids an overview note names, with `saga-3..5` unfolded."""
    ids = []
    for part in note.replace("<br/>", ", ").split(", "):
        prefix, _, rest = part.rpartition("-")
        first, _, last = rest.partition("..")
        ids += [f"{prefix}-{n}" for n in range(int(first), int(last or first) + 1)]
    return ids


def test_the_whole_run_is_one_branch_per_path_with_its_sagas() -> None:
    result = run("chaos")
    text = mermaid(result.trace)
    check_syntax(text)
    lines = text.splitlines()
    assert len(lines) < 120  # 120 sagas, readable: not one arrow per message
    paths: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for saga in result.saga_log:
        status = "stuck" if saga.status == "in_progress" else saga.status
        paths.setdefault((status, tuple(saga.types)), []).append(saga.saga_id)
    heads = [line.strip() for line in lines if BRANCH.match(line) and line.strip() != "end"]
    named = [saga_ids(m.group(1)) for line in lines if (m := IDS.match(line))]
    # One branch per distinct (outcome, events) path, most sagas first, each naming its sagas.
    expected = sorted(paths.items(), key=lambda p: -len(p[1]))
    assert len(heads) == len(named) == len(expected)
    for head, ids, ((status, _), sagas) in zip(heads, named, expected, strict=True):
        assert head.split(" ", 1)[1] == f"{status}, {len(sagas)} sagas"
        assert ids == sagas
    # The run-wide faults come once, before the paths.
    crashes = sum(1 for r in result.trace if r.kind == "crash")
    assert text.count("CRASH") == crashes > 0
    assert text.index("CRASH") < text.index("    alt ")
    counts = result.counts()
    assert f"{counts['completed']} completed" in lines[len(PARTICIPANTS) + 2]


def test_a_run_where_every_saga_completes_is_one_path() -> None:
    result = run("happy-path")
    text = mermaid(result.trace)
    check_syntax(text)
    assert "    alt completed, 20 sagas\n        Note over client,shipping: saga-1..20\n" in text
    assert text.count("    else ") == 0
    flow = [line.strip() for line in text.splitlines() if line.startswith("    ") and ">>" in line]
    assert flow == [
        "client->>bus: reserve_inventory",
        "bus->>inventory: reserve_inventory",
        "inventory-->>client: reserve_inventory_ok",
        "inventory->>bus: InventoryReserved",
        "bus->>payment: InventoryReserved",
        "payment->>bus: PaymentCharged",
        "bus->>shipping: PaymentCharged",
        "shipping->>bus: ShipmentCreated",
        "bus->>inventory: ShipmentCreated",
    ]
    assert "        Note over bus: faults on these sagas: none\n" in text


def test_participants_and_terminal_events_come_from_the_caller() -> None:
    records = [
        rec(0, "start", "client", "trip-1", "book", ref="1"),
        rec(1, "deliver", "hotel", "trip-1", "book", ref="1"),
        rec(2, "reply", "client", "trip-1", "book_ok", info="h1"),
        rec(3, "publish", "hotel", "trip-1", "HotelBooked", ref="e1"),
        rec(4, "deliver", "flight", "trip-1", "HotelBooked", ref="e1"),
        rec(5, "publish", "flight", "trip-1", "FlightBooked", ref="e2"),
    ]
    lanes = ("client", "hotel", "flight")
    terminal = {"FlightBooked": "completed"}
    one = mermaid(records, "trip-1", participants=lanes, terminal=terminal)
    whole = mermaid(records, participants=lanes, terminal=terminal)
    for text in (one, whole):
        declared = [m.group(1) for line in text.splitlines() if (m := PARTICIPANT.match(line))]
        assert declared == ["client", "bus", "hotel", "flight"]
        assert "hotel-->>client: book_ok" in text  # the service the command reached answers
        assert "inventory" not in text
    assert "    Note over client,flight: trip-1 completed\n" in one
    assert "    alt completed, 1 saga\n" in whole


def test_same_records_same_text() -> None:
    first, second = run("chaos", 11), run("chaos", 11)
    assert mermaid(first.trace) == mermaid(second.trace)
    assert mermaid(first.trace, "saga-50") == mermaid(second.trace, "saga-50")
    assert mermaid(first.trace) != mermaid(run("chaos", 12).trace)


def test_text_that_would_break_mermaid_is_neutralised() -> None:
    records = [
        rec(0, "start", "client", "s1", "reserve_inventory", ref="1"),
        rec(1, "fail", "payment", "s1", info="card; declined #42\nreally"),
    ]
    text = mermaid(records, "s1")
    check_syntax(text)
    assert "card, declined no. 42 really" in text


def test_an_unknown_node_is_declared_after_the_known_ones() -> None:
    records = [
        rec(0, "start", "client", "s1", "reserve_inventory", ref="1"),
        rec(1, "publish", "loyalty", "s1", "PointsAwarded", ref="pts-1"),
    ]
    text = mermaid(records)
    check_syntax(text)
    declared = [m.group(1) for line in text.splitlines() if (m := PARTICIPANT.match(line))]
    assert declared == [*PARTICIPANTS, "loyalty"]
