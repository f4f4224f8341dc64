"""The oracle can fail: broken handlers plugged into real simulations are reported with the saga,
the invariant and the trace lines that show it; each invariant on hand-made records; and a
correct system over the same seeds is clean."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest

from faults import parse_fault
from trio_saga.events import Event
from trio_saga.oracle import FinishedRun, check, check_saga, describe, judge, number_of
from trio_saga.participant import (
    Participant,
    SagaService,
    StepContext,
    World,
)
from trio_saga.saga import (
    EVERY_SAGA_ENDS,
    NO_EFFECT_WITHOUT_CAUSE,
    OUTCOME_MATCHES_EVENTS,
    SagaDefinition,
    Violation,
)
from trio_saga.saga_log import SagaLog, SagaRecord
from trio_saga.shop import SHOP
from trio_saga.shop.checks import MONEY, STOCK, money_is_conserved, stock_is_conserved
from trio_saga.shop.events import (
    InventoryReserved,
    PaymentCharged,
    ReserveInventory,
    ShipmentCreated,
)
from trio_saga.shop.services import (
    Inventory,
    PaymentService,
    ShippingService,
)
from trio_saga.simulation import SagaOrder, Simulation, SimulationResult, orders, simulate
from trio_saga.summary import summarize
from trio_saga.trace import Trace

SEEDS = range(5)

# -- deliberately broken variants --------------------------------------------------------------


@attrs.define
class InboxlessParticipant(Participant):
    """Commits state and outbox but never consults (or fills) its inbox, so a duplicate or a
    redelivery reaches the service's handler again."""

    def receive(self, event: Event, ctx: StepContext) -> Sequence[Event] | None:
        produced = self.service.handle(event, ctx)
        self.outbox.extend(produced)
        return produced


@attrs.define
class BrokenPayment(PaymentService):
    """Charges on every InventoryReserved it is handed: forgets `saga_id in self.payments`."""

    def charge(self, event: InventoryReserved, ctx: StepContext) -> Sequence[Event]:
        self.payments.pop(event.saga_id, None)
        return super().charge(event, ctx)


@attrs.define
class CarelessShipping(ShippingService):
    """Takes a PaymentCharged seen again after its shipment failed as a second chance to ship,
    although the failure is published and the saga is being compensated."""

    def handle(self, event: Event, ctx: StepContext) -> Sequence[Event]:
        saga_id = event.saga_id
        failed_before = saga_id in self.shipments and self.shipments[saga_id] is None
        if isinstance(event, PaymentCharged) and failed_before:
            self.shipments_made += 1
            shipment_id = f"s{self.shipments_made}"
            self.shipments[saga_id] = shipment_id
            return (
                ShipmentCreated(
                    saga_id=saga_id,
                    event_id=self.ids.next(),
                    timestamp=ctx.timestamp,
                    shipment_id=shipment_id,
                ),
            )
        return super().handle(event, ctx)


def broken_payment(state: Mapping[str, Any]) -> list[SagaService]:
    return [Inventory(), BrokenPayment(), ShippingService()]


def careless_shipping(state: Mapping[str, Any]) -> list[SagaService]:
    return [Inventory(), PaymentService(), CarelessShipping()]


# A broken system is a different saga: the shop with broken services or participant.
BROKEN_PAYMENT = attrs.evolve(SHOP, services=broken_payment, ref=None)
BROKEN_PAYMENT_INBOXLESS = attrs.evolve(BROKEN_PAYMENT, participant=InboxlessParticipant)
INBOXLESS = attrs.evolve(SHOP, participant=InboxlessParticipant, ref=None)
CARELESS_INBOXLESS = attrs.evolve(
    SHOP, services=careless_shipping, participant=InboxlessParticipant, ref=None
)

ENDS, MATCHES, CAUSE = EVERY_SAGA_ENDS, OUTCOME_MATCHES_EVENTS, NO_EFFECT_WITHOUT_CAUSE


def found(result: SimulationResult) -> list[tuple[str, str | None, str]]:
    return [(v.invariant, v.saga_id, v.detail) for v in result.violations]


def evidence_lines(result: SimulationResult, violation: Violation) -> list[dict[str, object]]:
    """The trace lines a violation's description shows, parsed back."""
    lines = describe(violation, result.saga, result.trace).splitlines()
    number = number_of(result.saga, violation.invariant)
    assert (
        lines[0]
        == f"invariant {number} ({violation.invariant}) violated: "
        + (f"saga {violation.saga_id}: " if violation.saga_id else "")
        + violation.detail
    )
    assert all(line.startswith("    {") for line in lines[1:])
    return [json.loads(line) for line in lines[1:]]


# -- (a) a double charge -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_non_idempotent_payment_without_inbox_is_caught_charging_twice(seed: int) -> None:
    result = simulate(
        Simulation(
            orders=orders(3),
            faults=[parse_fault("duplicate:p=1")],
            seed=seed,
            saga=BROKEN_PAYMENT_INBOXLESS,
        )
    )
    events = "[InventoryReserved, PaymentCharged, PaymentCharged, ShipmentCreated]"
    sagas = ("saga-1", "saga-2", "saga-3")
    expected: list[tuple[str, str | None, str]] = []
    for saga in sagas:
        expected += [
            (MATCHES, saga, f"completed but its events are {events}"),
            (MATCHES, saga, "PaymentCharged published 2 times"),
        ]
    # the per-saga invariants for every saga first, then the shop's own checks
    expected += [(MONEY, saga, "charged 2 times") for saga in sagas]
    # The shop's idempotency key saves the customer at the gateway (issue 11): what is wrong
    # is the event stream, not the money that moved.
    assert found(result) == expected
    assert len(result.world.applied("gateway", "charge")) == 3
    double = result.violations[6]
    assert (double.invariant, double.saga_id) == (MONEY, "saga-1")
    shown = evidence_lines(result, double)
    charges = [line for line in shown if line.get("event") == "PaymentCharged"]
    assert [(c["kind"], c["node"], c["saga"]) for c in charges] == [
        ("publish", "payment", "saga-1"),
        ("publish", "payment", "saga-1"),
    ]
    assert charges[0]["ref"] != charges[1]["ref"]  # two distinct charges, not one seen twice
    assert shown[0]["kind"] == "start"
    payment = result.participants["payment"].service
    assert isinstance(payment, PaymentService)
    assert payment.charged_cents == 6 * 9999


def test_the_inbox_alone_saves_the_broken_payment_from_duplicates() -> None:
    # Same bug, same faults, but the durable inbox answers the duplicates: nothing to report.
    for seed in SEEDS:
        result = simulate(
            Simulation(
                orders=orders(3),
                faults=[parse_fault("duplicate:p=1")],
                seed=seed,
                saga=BROKEN_PAYMENT,
            )
        )
        assert result.violations == []
        assert result.fault_counts["duplicate"] > 0


def test_the_services_records_alone_save_an_inboxless_system() -> None:
    # Correct services keep one record per saga, so even without the inbox nothing is redone.
    for seed in SEEDS:
        result = simulate(
            Simulation(
                orders=orders(3),
                faults=[parse_fault("duplicate:p=1")],
                seed=seed,
                saga=INBOXLESS,
            )
        )
        assert result.violations == []


# -- (b) a shipment after the refund -----------------------------------------------------------


def test_shipping_after_a_refund_is_caught() -> None:
    # Shipping fails (forced), crashes before publishing or acking, so its PaymentCharged is
    # redelivered, and the redelivery arrives only after the saga was compensated.
    result = simulate(
        Simulation(
            orders=[SagaOrder(saga_id="saga-1", fail=frozenset({"shipping"}))],
            faults=[parse_fault("crash:service=shipping,after=ShipmentFailed")],
            saga=CARELESS_INBOXLESS,
        )
    )
    assert found(result) == [
        (
            MATCHES,
            "saga-1",
            "compensated but its events are [InventoryReserved, PaymentCharged, ShipmentFailed,"
            " PaymentRefunded, InventoryReleased, ShipmentCreated]",
        ),
        (CAUSE, "saga-1", "ShipmentCreated after PaymentRefunded"),
    ]
    shown = evidence_lines(result, result.violations[1])
    published = [(line["kind"], line["event"]) for line in shown if line["kind"] == "publish"]
    assert published[-3:] == [
        ("publish", "PaymentRefunded"),
        ("publish", "InventoryReleased"),
        ("publish", "ShipmentCreated"),
    ]
    times = [float(str(line["t"])) for line in shown]
    assert times == sorted(times)


def test_a_duplicated_charge_reaching_careless_shipping_is_caught() -> None:
    result = simulate(
        Simulation(
            orders=[SagaOrder(saga_id="saga-1", fail=frozenset({"shipping"}))],
            faults=[parse_fault("duplicate:p=1")],
            saga=CARELESS_INBOXLESS,
        )
    )
    assert (MATCHES, "saga-1") in [(v.invariant, v.saga_id) for v in result.violations]
    record = result.saga_log.get("saga-1")
    assert record is not None
    assert record.types.index("ShipmentCreated") > record.types.index("ShipmentFailed")
    # the refund went out too, so the money no longer adds up for a "completed" saga
    assert any(v.invariant == MONEY and v.saga_id is None for v in result.violations)


# -- (d) the correct system over the same runs --------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_the_correct_system_over_the_same_runs_is_clean(seed: int) -> None:
    for sim in (
        Simulation(orders=orders(3), faults=[parse_fault("duplicate:p=1")], seed=seed),
        Simulation(
            orders=[SagaOrder(saga_id="saga-1", fail=frozenset({"shipping"}))],
            faults=[parse_fault("crash:service=shipping,after=ShipmentFailed")],
            seed=seed,
        ),
        Simulation(
            orders=[SagaOrder(saga_id="saga-1", fail=frozenset({"shipping"}))],
            faults=[parse_fault("duplicate:p=1")],
            seed=seed,
        ),
    ):
        result = simulate(sim)
        assert result.violations == []
        assert not result.stopped_early
        assert all(record.done for record in result.saga_log)


# -- (c) each invariant on hand-made records ----------------------------------------------------


def record(status: str, *types: str, saga: str = "s1") -> SagaRecord:
    return SagaRecord(
        saga_id=saga,
        client="c",
        started_seq=0,
        types=list(types),
        event_ids=[f"e{n}" for n in range(len(types))],
        seqs=[10 * (n + 1) for n in range(len(types))],
        status=status,
    )


IR, IRF, IRel = "InventoryReserved", "InventoryReservationFailed", "InventoryReleased"
PC, PF, PR = "PaymentCharged", "PaymentFailed", "PaymentRefunded"
SC, SF = "ShipmentCreated", "ShipmentFailed"


@pytest.mark.parametrize(
    "made",
    [
        record("completed", IR, PC, SC),
        record("compensated", IR, PF, IRel),
        record("compensated", IR, PC, SF, PR, IRel),
        record("failed", IRF),
    ],
    ids=["completed", "compensated-at-payment", "compensated-at-shipping", "failed"],
)
def test_check_saga_accepts_every_allowed_outcome(made: SagaRecord) -> None:
    assert check_saga(SHOP, made) == []


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (record("in_progress"), [(ENDS, "stuck in progress after nothing")]),
        (
            record("in_progress", IR, PC),
            [(ENDS, "stuck in progress after [InventoryReserved, PaymentCharged]")],
        ),
        (
            record("completed", IR, PC, SC, PR),
            [
                (
                    MATCHES,
                    "completed but its events are [InventoryReserved, PaymentCharged,"
                    " ShipmentCreated, PaymentRefunded]",
                )
            ],
        ),
        (
            record("compensated", IR, PC, SF, IRel, PR),
            [
                (
                    MATCHES,
                    "compensated but its events are [InventoryReserved, PaymentCharged,"
                    " ShipmentFailed, InventoryReleased, PaymentRefunded]",
                )
            ],
        ),
        (
            record("compensated", IR, PC, SF, IRel),
            [
                (
                    MATCHES,
                    "compensated but its events are [InventoryReserved, PaymentCharged,"
                    " ShipmentFailed, InventoryReleased]",
                )
            ],
        ),
        (
            record("failed", IRF, IR),
            [
                (
                    MATCHES,
                    "failed but its events are [InventoryReservationFailed, InventoryReserved]",
                )
            ],
        ),
        (
            record("in_progress", IR, PC, PC),
            [
                (
                    ENDS,
                    "stuck in progress after [InventoryReserved, PaymentCharged, PaymentCharged]",
                ),
                (MATCHES, "PaymentCharged published 2 times"),
            ],
        ),
        (
            record("compensated", IR, PC, SF, PR, PR, IRel),
            [
                (
                    MATCHES,
                    "compensated but its events are [InventoryReserved, PaymentCharged,"
                    " ShipmentFailed, PaymentRefunded, PaymentRefunded, InventoryReleased]",
                ),
                (MATCHES, "PaymentRefunded published 2 times"),
            ],
        ),
        (
            record("in_progress", IR, IR, IR),
            [
                (
                    ENDS,
                    "stuck in progress after [InventoryReserved, InventoryReserved,"
                    " InventoryReserved]",
                ),
                (MATCHES, "InventoryReserved published 3 times"),
            ],
        ),
        (
            record("in_progress", PC),
            [
                (ENDS, "stuck in progress after [PaymentCharged]"),
                (CAUSE, "PaymentCharged without InventoryReserved before it"),
            ],
        ),
        (
            record("compensated", IRel),
            [
                (MATCHES, "compensated but its events are [InventoryReleased]"),
                (CAUSE, "InventoryReleased without InventoryReserved before it"),
            ],
        ),
        (
            record("completed", IR, SC),
            [
                (MATCHES, "completed but its events are [InventoryReserved, ShipmentCreated]"),
                (CAUSE, "ShipmentCreated without PaymentCharged before it"),
            ],
        ),
        (
            record("in_progress", IR, PR),
            [
                (ENDS, "stuck in progress after [InventoryReserved, PaymentRefunded]"),
                (CAUSE, "PaymentRefunded without PaymentCharged before it"),
            ],
        ),
        (
            record("compensated", IR, PC, SF, PR, IRel, SC),
            [
                (
                    MATCHES,
                    "compensated but its events are [InventoryReserved, PaymentCharged,"
                    " ShipmentFailed, PaymentRefunded, InventoryReleased, ShipmentCreated]",
                ),
                (CAUSE, "ShipmentCreated after PaymentRefunded"),
            ],
        ),
        (
            record("compensated", IR, PF, IRel, PC),
            [
                (
                    MATCHES,
                    "compensated but its events are [InventoryReserved, PaymentFailed,"
                    " InventoryReleased, PaymentCharged]",
                ),
                (CAUSE, "PaymentCharged after InventoryReleased"),
            ],
        ),
    ],
)
def test_check_saga_reports_each_invariant(
    made: SagaRecord, expected: list[tuple[str, str]]
) -> None:
    violations = check_saga(SHOP, made)
    assert [(v.invariant, v.detail) for v in violations] == expected
    for violation in violations:
        assert violation.saga_id == "s1"
        assert violation.evidence == (0, *made.seqs)


def test_invariant_names() -> None:
    # The generic invariants first, then the shop's own checks; on screen by position.
    assert SHOP.invariants == (
        "every saga ends",
        "outcome matches events",
        "no effect without its cause",
        "stock is conserved",
        "money is conserved",
    )
    assert [number_of(SHOP, name) for name in SHOP.invariants] == [1, 2, 3, 4, 5]
    assert (STOCK, MONEY) == ("stock is conserved", "money is conserved")
    assert number_of(SHOP, "no such invariant") == "?"


def test_describe_without_and_with_a_trace() -> None:
    trace = Trace()
    trace.add(0, "start", "client", "s1", "reserve_inventory", "1")
    trace.add(1_500_000, "publish", "payment", "s1", "PaymentCharged", "pay-1")
    trace.add(2_000_000, "publish", "payment", "s2", "PaymentCharged", "pay-2")
    violation = Violation(
        invariant=MONEY, saga_id="s1", detail="charged 2 times", evidence=(1, 0, 1)
    )
    head = "invariant 5 (money is conserved) violated: saga s1: charged 2 times"
    assert describe(violation, SHOP) == head
    assert describe(violation, SHOP, trace) == "\n".join(
        [
            head,
            '    {"t":0.0,"seq":0,"kind":"start","node":"client","saga":"s1",'
            '"event":"reserve_inventory","ref":"1"}',
            '    {"t":1.5,"seq":1,"kind":"publish","node":"payment","saga":"s1",'
            '"event":"PaymentCharged","ref":"pay-1"}',
        ]
    )
    total = Violation(invariant=STOCK, saga_id=None, detail="sku a: off")
    assert describe(total, SHOP, trace) == "invariant 4 (stock is conserved) violated: sku a: off"


# -- stock and money on hand-made services --------------------------------------------------------


def log_of(*records: SagaRecord) -> SagaLog:
    return SagaLog(SHOP, sagas={r.saga_id: r for r in records})


def finished(
    saga_log: SagaLog,
    *services: SagaService,
    saga: SagaDefinition = SHOP,
    world: World | None = None,
) -> FinishedRun:
    """A run that has gone quiet with these services' final state (and what they did in the
    outside world)."""
    return FinishedRun(
        saga=saga,
        saga_log=saga_log,
        participants={service.name: Participant(service) for service in services},
        world=world if world is not None else World(),
    )


def stock_violations(inventory: Inventory, saga_log: SagaLog) -> list[Violation]:
    found = stock_is_conserved(finished(saga_log, inventory))
    assert found is not None
    return found


def money_violations(
    payment: PaymentService, saga_log: SagaLog, world: World | None = None
) -> list[Violation]:
    found = money_is_conserved(finished(saga_log, payment, world=world))
    assert found is not None
    return found


def test_check_stock_conservation_and_leaks() -> None:
    inventory = Inventory(stock={"a": 5, "b": 2})
    assert stock_violations(inventory, log_of()) == []
    inventory.stock["a"] = 3
    inventory.reserved["a"] = 1
    inventory.stock["b"] = 3
    inventory.shipped["b"] = -1
    assert [(v.invariant, v.saga_id, v.detail) for v in stock_violations(inventory, log_of())] == [
        (STOCK, None, "sku a: available 3 + reserved 1 + shipped 0 != initial 5"),
        (STOCK, None, "sku b: available 3 + reserved 0 + shipped -1 != initial 2"),
    ]


def test_check_stock_finds_a_reservation_leak_of_a_finished_saga() -> None:
    inventory = Inventory(stock={"a": 5})
    for saga in ("s1", "s2"):
        inventory.reserve(
            ReserveInventory(saga_id=saga, sku="a", quantity=2),
            StepContext(timestamp=0),
        )
    saga_log = log_of(
        record("compensated", IR, PF, IRel, saga="s1"), record("in_progress", IR, saga="s2")
    )
    violations = stock_violations(inventory, saga_log)
    assert [(v.invariant, v.saga_id, v.detail) for v in violations] == [
        (STOCK, "s1", "compensated but 2 x a still reserved (a reservation leak)")
    ]
    assert violations[0].evidence == (0, 10, 20, 30)


def test_check_money() -> None:
    payment = PaymentService()
    world = World()
    for n, saga in enumerate(("s1", "s2", "s3"), start=1):
        world.step("payment", saga)  # what the participant does around a handler
        payment.charge(
            InventoryReserved(
                saga_id=saga,
                event_id=f"inv-{n}",
                timestamp=0,
                reservation_id=f"r{n}",
                sku="a",
                quantity=1,
                amount_cents=1000 * n,
            ),
            StepContext(timestamp=0, effects=world),
        )
    saga_log = log_of(
        record("completed", IR, PC, SC, saga="s1"),
        record("completed", IR, PC, SC, saga="s2"),
        record("in_progress", IR, PC, saga="s3"),
    )
    assert [v.detail for v in money_violations(payment, saga_log, world)] == [
        "the gateway charged 60.00 - refunded 0.00 = 60.00, but completed sagas account for 30.00"
    ]
    payment.refunded_cents += 3000  # what the service believes does not count
    assert len(money_violations(payment, saga_log, world)) == 1
    world.step("payment", "s3")
    world.call("gateway", "refund", key="refund-s3", amount_cents=3000)
    assert money_violations(payment, saga_log, world) == []


def test_check_money_counts_each_double_charge_and_refund() -> None:
    saga_log = log_of(
        record("in_progress", IR, PC, PC, saga="s1"),
        record("compensated", IR, PC, SF, PR, PR, IRel, saga="s2"),
    )
    assert [
        (v.invariant, v.saga_id, v.detail) for v in money_violations(PaymentService(), saga_log)
    ] == [
        (MONEY, "s1", "charged 2 times"),
        (MONEY, "s2", "refunded 2 times"),
    ]


def test_check_runs_per_saga_first_then_the_totals() -> None:
    inventory = Inventory(stock={"a": 1})
    inventory.stock["a"] = 0
    payment = PaymentService()
    world = World()
    world.step("payment", "s9")
    world.call("gateway", "charge", key="charge-s9", amount_cents=1)
    participants = {"inventory": Participant(inventory), "payment": Participant(payment)}
    saga_log = log_of(record("in_progress", saga="s9"))
    assert [(v.invariant, v.saga_id) for v in check(SHOP, saga_log, participants, world=world)] == [
        (ENDS, "s9"),
        (STOCK, None),
        (MONEY, None),
    ]


def test_a_saga_ordered_but_never_started_has_not_ended() -> None:
    saga_log = log_of(record("completed", IR, PC, SC, saga="s1"))
    found = check(SHOP, saga_log, {}, ordered=["s1", "s2"])
    assert [(v.invariant, v.saga_id, v.detail) for v in found] == [
        (ENDS, "s2", "ordered but never started (the run ended first)")
    ]


def test_judge_shows_ok_fail_and_not_applicable_per_invariant() -> None:
    # No inventory and no payment service: their checks cannot run, shown as n/a, not ok.
    saga_log = log_of(record("completed", IR, SC, saga="s1"))
    verdict = judge(finished(saga_log, ShippingService()))
    assert verdict.results == (
        (ENDS, "ok"),
        (MATCHES, "FAIL"),
        (CAUSE, "FAIL"),
        (STOCK, "n/a"),
        (MONEY, "n/a"),
    )
    assert not verdict.ok
    clean = judge(finished(log_of(), Inventory(), PaymentService(), ShippingService()))
    assert clean.ok
    assert clean.results == tuple((name, "ok") for name in SHOP.invariants)


def test_the_summary_shows_a_check_that_could_not_run_as_not_applicable() -> None:
    result = simulate(Simulation(orders=orders(2)))
    assert [state for _, state in result.verdict.results] == ["ok"] * 5
    # The same run judged without its inventory: stock cannot be checked, and says so.
    participants = {k: v for k, v in result.participants.items() if k != "inventory"}
    result.verdict = judge(
        FinishedRun(
            saga=SHOP, saga_log=result.saga_log, participants=participants, world=result.world
        )
    )
    shown = [line.strip() for line in summarize("two", result, seed=0).splitlines()]
    assert [line for line in shown if line.startswith("[")] == [
        "[  ok] 1. every saga ends",
        "[  ok] 2. outcome matches events",
        "[  ok] 3. no effect without its cause",
        "[ n/a] 4. stock is conserved",
        "[  ok] 5. money is conserved",
    ]
