# mermaid(): the sequence diagram drawn from trace records. Built from hand-made records where
# the point is one rendering rule, and from real runs where the point is the whole diagram.

from __future__ import annotations

import re

import pytest

from trio_saga.diagram import DEFAULT_MAX_SAGAS, mermaid, participants
from trio_saga.scenario import Scenario
from trio_saga.shop import SHOP
from trio_saga.simulation import SimulationResult, simulate
from trio_saga.trace import Record

ARROW = re.compile(r"^    (\w+)(->>|-->>|-x|--x)(\w+): [^;#\n]+$")
NOTE = re.compile(r"^    Note over (\w+)(?:,(\w+))?: [^;#\n]+$")
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
    """Every line is a statement Mermaid's sequence grammar knows, and every participant an
    arrow or note names is declared."""
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    declared = [m.group(1) for line in lines if (m := PARTICIPANT.match(line))]
    assert declared[: len(PARTICIPANTS)] == list(PARTICIPANTS)
    for line in lines[1:]:
        match = ARROW.match(line) or NOTE.match(line)
        if match is None:
            assert PARTICIPANT.match(line) or COMMENT.match(line), line
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
    text = mermaid(records)
    check_syntax(text)
    for line in [
        "bus-xinventory: DROPPED reserve_inventory s1",
        "Note over bus: DELAY +0.5s, DUPLICATE 1 extra: reserve_inventory s1 to inventory",
        "bus->>inventory: reserve_inventory s1 (attempt 2) x2",
        "Note over inventory: FORCED FAILURE of inventory for s1: inventory_unavailable",
        "Note over payment: PARTITION both until 4s, drop (t=0.008s)",
        "Note over payment: CRASH down 1s (t=0.009s)",
        "bus-xpayment: LOST InventoryReserved s2, payment is down",
        "Note over bus: HELD by partition: InventoryReserved s2 to payment, until the heal",
        "payment--xbus: DROPPED by partition ack s2",
        "Note over payment: RESTART from durable state (t=0.013s)",
        "Note over payment: HEAL partition both (t=0.014s)",
        "Note over bus: REORDER +0.1s: PaymentCharged s2 to shipping",
        "Note over shipping: LOST PaymentCharged s2 with the crash (t=0.016s)",
        "Note over payment: ignored duplicate InventoryReserved s2",
    ]:
        assert f"    {line}\n" in text, line


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


def test_many_sagas_are_cut_to_the_first_few_with_a_note() -> None:
    result = run("chaos")
    text = mermaid(result.trace)
    check_syntax(text)
    shown = {f"saga-{n}" for n in range(1, DEFAULT_MAX_SAGAS + 1)}
    assert set(re.findall(r"saga-\d+", text)) == shown
    total = len(result.saga_log)
    left = total - DEFAULT_MAX_SAGAS
    assert f"showing the first {DEFAULT_MAX_SAGAS} of {total} sagas ({left} left out)" in text
    assert len(text.splitlines()) < 1000


def test_max_sagas_can_show_all() -> None:
    result = run("happy-path")
    text = mermaid(result.trace, max_sagas=100)
    assert set(re.findall(r"saga-\d+", text)) == {f"saga-{n}" for n in range(1, 21)}
    assert "left out" not in text
    assert text.count(" completed") == 20


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
    text = mermaid(records)
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
