"""The trio runtime end to end, on trio's MockClock (`autojump_clock`): outcomes, crashes,
partitions and network faults, determinism, replay, and independence from trio's scheduler."""

from __future__ import annotations

import random

import pytest
import trio
import trio._core._run as trio_run

from faults import Decision, Partition, parse_fault
from trio_saga.bus import EventBus
from trio_saga.oracle import describe
from trio_saga.participant import Participant
from trio_saga.runtime import Runtime
from trio_saga.saga import EVERY_SAGA_ENDS
from trio_saga.saga_log import SagaLog
from trio_saga.shop import SHOP
from trio_saga.shop.events import ReserveInventory
from trio_saga.shop.services import (
    Inventory,
    PaymentService,
    default_services,
)
from trio_saga.simulation import SagaOrder, Simulation, SimulationResult, orders, simulate
from trio_saga.trace import US

PRICE = 9999


def payment_of(result: SimulationResult) -> PaymentService:
    service = result.participants["payment"].service
    assert isinstance(service, PaymentService)
    return service


def inventory_of(result: SimulationResult) -> Inventory:
    service = result.participants["inventory"].service
    assert isinstance(service, Inventory)
    return service


def assert_finished_and_clean(result: SimulationResult) -> None:
    assert result.violations == [], [
        describe(v, result.saga, result.trace) for v in result.violations
    ]
    assert not result.stopped_early
    assert result.counts()["in_progress"] == 0


# -- outcomes ----------------------------------------------------------------------------------


async def test_happy_path(autojump_clock: trio.testing.MockClock) -> None:
    result = await Simulation(orders=orders(3, quantity=2, every=0.5)).run()
    assert_finished_and_clean(result)
    assert result.counts() == {"in_progress": 0, "completed": 3, "compensated": 0, "failed": 0}
    for saga in ("saga-1", "saga-2", "saga-3"):
        assert result.events(saga) == ["InventoryReserved", "PaymentCharged", "ShipmentCreated"]
    inventory = inventory_of(result)
    assert (inventory.stock["abc123"], inventory.reserved["abc123"]) == (1000 - 6, 0)
    assert inventory.shipped["abc123"] == 6
    assert payment_of(result).charged_cents == 3 * 2 * PRICE
    assert result.decisions == []
    assert result.fault_counts == {}
    assert result.virtual_us == 1 * US  # nothing waits: the last saga starts at 1 s
    replies = [r for r in result.trace if r.kind == "reply"]
    assert [(r.saga, r.event, r.info) for r in replies] == [
        ("saga-1", "reserve_inventory_ok", "r1"),
        ("saga-2", "reserve_inventory_ok", "r2"),
        ("saga-3", "reserve_inventory_ok", "r3"),
    ]


@pytest.mark.parametrize(
    ("step", "status", "events", "reason"),
    [
        ("inventory", "failed", ["InventoryReservationFailed"], "inventory_unavailable"),
        (
            "payment",
            "compensated",
            ["InventoryReserved", "PaymentFailed", "InventoryReleased"],
            "insufficient_funds",
        ),
        (
            "shipping",
            "compensated",
            [
                "InventoryReserved",
                "PaymentCharged",
                "ShipmentFailed",
                "PaymentRefunded",
                "InventoryReleased",
            ],
            "carrier_unavailable",
        ),
    ],
)
async def test_each_step_failing(
    autojump_clock: trio.testing.MockClock,
    step: str,
    status: str,
    events: list[str],
    reason: str,
) -> None:
    result = await Simulation(
        orders=[
            SagaOrder(saga_id="ok-1"),
            SagaOrder(saga_id="bad", fail=frozenset({step}), fields={"quantity": 3}),
            SagaOrder(saga_id="ok-2", at=0.1),
        ]
    ).run()
    assert_finished_and_clean(result)
    assert result.status("bad") == status
    assert result.events("bad") == events
    record = result.saga_log.get("bad")
    assert record is not None
    assert record.reason == reason
    assert result.status("ok-1") == result.status("ok-2") == "completed"
    inventory = inventory_of(result)
    assert inventory.stock["abc123"] == 1000 - 2  # the failed saga's 3 are back
    assert inventory.reserved["abc123"] == 0
    payment = payment_of(result)
    assert payment.charged_cents - payment.refunded_cents == 2 * PRICE
    assert result.fault_counts == {f"fail_{step}": 1}


async def test_insufficient_stock_and_funds(autojump_clock: trio.testing.MockClock) -> None:
    result = await Simulation(
        orders=[
            SagaOrder(saga_id="first", fields={"quantity": 2}),
            SagaOrder(saga_id="second", at=0.1, fields={"quantity": 2}),
            SagaOrder(saga_id="too-many", at=0.2, fields={"quantity": 2}),  # 1 left
            SagaOrder(saga_id="too-dear", at=0.3, fields={"quantity": 1}),  # the money ran out
        ],
        state={"stock": {"abc123": 5}, "funds": 4 * PRICE / 100},
    ).run()
    assert_finished_and_clean(result)
    assert result.counts() == {"in_progress": 0, "completed": 2, "compensated": 1, "failed": 1}
    assert result.saga_log.sagas["too-many"].reason == "insufficient_stock"
    assert result.events("too-dear")[1] == "PaymentFailed"
    assert result.saga_log.sagas["too-dear"].reason == "insufficient_funds"
    assert inventory_of(result).stock["abc123"] == 1
    assert payment_of(result).funds_cents == 0


# -- crashes -----------------------------------------------------------------------------------


async def test_crash_after_charge_before_publish_loses_nothing_and_charges_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await Simulation(
        orders=orders(5, every=0.1),
        faults=[parse_fault("crash:service=payment,after=PaymentCharged,downtime=2")],
    ).run()
    assert_finished_and_clean(result)
    assert result.counts()["completed"] == 5
    assert payment_of(result).charged_cents == 5 * PRICE
    assert result.fault_counts == {"crash_after_commit": 1}
    crashed = [r for r in result.trace if r.kind == "crash"]
    assert len(crashed) == 1
    saga = crashed[0].saga
    assert crashed[0].node == "payment"
    assert crashed[0].info == "after committing PaymentCharged, before publishing"
    payment_lines = [
        (r.kind, r.event)
        for r in result.trace
        if r.node == "payment"
        and (r.saga == saga or r.kind == "restart")
        and r.kind in ("handle", "crash", "restart", "publish")
    ]
    assert payment_lines[:4] == [
        ("handle", "InventoryReserved"),
        ("crash", ""),
        ("restart", ""),
        ("publish", "PaymentCharged"),
    ]
    restart = next(r for r in result.trace if r.kind == "restart")
    assert restart.t_us - crashed[0].t_us == 2 * US
    charges = [r for r in result.trace if r.kind == "publish" and r.event == "PaymentCharged"]
    assert sorted(r.saga for r in charges) == [f"saga-{n}" for n in range(1, 6)]
    # the redelivered InventoryReserved is answered by the inbox, not charged again
    assert any(r.kind == "ignore" and r.saga == saga for r in result.trace)


async def test_crash_at_a_time_restarts_from_durable_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await Simulation(
        orders=orders(10, every=0.1),
        faults=[parse_fault("crash:service=inventory,at=0.35,downtime=1.5")],
    ).run()
    assert_finished_and_clean(result)
    assert result.counts()["completed"] == 10
    assert [(r.kind, r.t_us) for r in result.trace if r.kind in ("crash", "restart")] == [
        ("crash", 350_000),
        ("restart", 1_850_000),
    ]
    assert any(r.kind == "lost" and r.node == "inventory" for r in result.trace)
    inventory = inventory_of(result)
    assert inventory.shipped["abc123"] == 10
    assert inventory.reservations_made == 10


# -- partitions and network faults ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "partition:service=payment,start=0.3,duration=3",
        "partition:service=payment,start=0.3,duration=3,mode=hold",
        "partition:service=shipping,start=0.1,duration=2,direction=in",
        "partition:service=inventory,start=0.2,duration=2.5,direction=out,mode=hold",
        "partition:service=payment,start=0.3,duration=2,direction=out",
    ],
)
async def test_a_partition_heals_and_every_saga_finishes(
    autojump_clock: trio.testing.MockClock, spec: str
) -> None:
    result = await Simulation(orders=orders(10, every=0.1), faults=[parse_fault(spec)]).run()
    assert_finished_and_clean(result)
    assert result.counts()["completed"] == 10
    fault = parse_fault(spec)
    marks = [(r.kind, r.node) for r in result.trace if r.kind in ("partition", "heal")]
    assert isinstance(fault, Partition)
    assert marks == [("partition", fault.service), ("heal", fault.service)]
    heal = next(r.t_us for r in result.trace if r.kind == "heal")
    cut = [r for r in result.trace if r.info.endswith("partitioned")]
    assert cut, "the partition must have cut something"
    assert all(r.t_us < heal for r in cut)
    ends = [r.ended_seq for r in result.saga_log if r.ended_seq is not None]
    assert len(ends) == 10
    # what the cut caught finished only after the heal
    assert max(result.trace.records[seq].t_us for seq in ends) >= heal


async def test_a_partition_past_max_time_stops_early_with_stuck_sagas(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await Simulation(
        orders=orders(2),
        faults=[parse_fault("partition:service=payment,start=0,duration=100")],
        max_time=10.0,
    ).run()
    assert result.stopped_early
    assert result.virtual_us <= 10 * US
    assert [(v.invariant, v.saga_id) for v in result.violations] == [
        (EVERY_SAGA_ENDS, "saga-1"),
        (EVERY_SAGA_ENDS, "saga-2"),
    ]


MIXES = [
    ["drop:p=0.3"],
    ["duplicate:p=0.5,copies=2"],
    ["reorder:window=0.5,p=0.8"],
    ["delay:mean=0.2,dist=exponential"],
    ["drop:p=0.2", "duplicate:p=0.3", "reorder:window=0.3", "delay:mean=0.05,dist=uniform"],
    [
        "drop:p=0.1",
        "duplicate:p=0.2",
        "delay:mean=0.1",
        "crash:service=shipping,after=ShipmentCreated,times=3",
        "partition:service=payment,start=1,duration=2,mode=hold",
        "fail_payment:rate=0.2",
        "fail_shipping:rate=0.2",
    ],
]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("specs", MIXES, ids=lambda specs: "+".join(s.split(":")[0] for s in specs))
async def test_network_fault_mixes_end_with_no_violation(
    autojump_clock: trio.testing.MockClock, specs: list[str], seed: int
) -> None:
    result = await Simulation(
        orders=orders(20, every=0.05),
        faults=[parse_fault(spec) for spec in specs],
        seed=seed,
    ).run()
    assert_finished_and_clean(result)
    assert result.decisions, "the faults must have acted"
    counts = result.counts()
    assert counts["completed"] + counts["compensated"] == 20
    payment = payment_of(result)
    assert payment.charged_cents - payment.refunded_cents == counts["completed"] * PRICE
    inventory = inventory_of(result)
    assert inventory.shipped.get("abc123", 0) == counts["completed"]
    assert inventory.stock["abc123"] == 1000 - counts["completed"]


# -- determinism and replay ------------------------------------------------------------------------


def chaos(seed: int = 7, decisions: list[Decision] | None = None) -> Simulation:
    return Simulation(
        orders=[*orders(12, every=0.05), SagaOrder(saga_id="doomed", fail=frozenset({"shipping"}))],
        faults=[
            parse_fault(spec)
            for spec in (
                "drop:p=0.2",
                "duplicate:p=0.3",
                "reorder:window=0.4",
                "delay:mean=0.1",
                "crash:service=payment,after=PaymentCharged,times=2",
                "partition:service=shipping,start=0.5,duration=1.5",
            )
        ],
        seed=seed,
        decisions=decisions,
    )


async def test_same_seed_twice_gives_a_byte_identical_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = await chaos().run()
    second = await chaos().run()
    assert_finished_and_clean(first)
    assert len(first.trace) > 300
    assert first.trace_text() == second.trace_text()
    assert first.decisions == second.decisions
    assert first.fault_counts == second.fault_counts
    other = await chaos(seed=8).run()
    assert other.trace_text() != first.trace_text()


async def test_replaying_the_decisions_gives_the_identical_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    original = await chaos().run()
    replayed = await chaos(seed=12345, decisions=original.decisions).run()
    assert replayed.trace_text() == original.trace_text()
    assert replayed.decisions == original.decisions
    assert replayed.fault_counts == original.fault_counts


async def test_replaying_a_run_with_client_retries_gives_the_identical_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A client that retries sends reserve_inventory for the same saga again: the two commands
    # are different transmissions that share a fault key (command, saga, dest, attempt 1).
    def retrying(seed: int, decisions: list[Decision] | None = None) -> Simulation:
        return Simulation(
            orders=[SagaOrder(saga_id="a"), SagaOrder(saga_id="a", at=0.01)],
            faults=[parse_fault("delay:mean=0.1")],
            seed=seed,
            decisions=decisions,
        )

    for seed in range(3):
        original = await retrying(seed).run()
        assert_finished_and_clean(original)
        replayed = await retrying(seed, original.decisions).run()
        assert replayed.trace_text() == original.trace_text()


async def test_replaying_no_decisions_is_a_fault_free_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    replayed = await chaos(decisions=[]).run()
    plain = await Simulation(orders=[*orders(12, every=0.05), SagaOrder(saga_id="doomed")]).run()
    # the forced failure of "doomed" is a decision too, so without it that saga completes
    assert replayed.status("doomed") == "completed"
    assert replayed.trace_text() == plain.trace_text()


def test_a_run_does_not_depend_on_trios_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    # trio shuffles each batch of runnable tasks with its module-level RNG. Give it different
    # seeds: a probe program does see different task orders, the simulation does not.
    async def probe() -> list[int]:
        order: list[int] = []

        async def task(n: int) -> None:
            await trio.lowlevel.checkpoint()
            order.append(n)

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(task, n)
        return order

    orders_seen: set[tuple[int, ...]] = set()
    traces: set[str] = set()
    for seed in range(4):
        monkeypatch.setattr(trio_run, "_r", random.Random(seed))
        orders_seen.add(tuple(trio.run(probe)))
        traces.add(simulate(chaos()).trace_text())
    assert len(orders_seen) > 1, "the probe must show trio's scheduler varying"
    assert len(traces) == 1


# -- the runtime in serve mode (as the stdio node uses it) ----------------------------------------


async def test_serve_mode_takes_submissions_and_settles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    saga_log = SagaLog(SHOP)
    ended: list[str] = []
    saga_log.on_end = lambda record: ended.append(f"{record.saga_id}:{record.status}")
    bus = EventBus([Participant(s) for s in default_services()], saga=SHOP, saga_log=saga_log)
    runtime = Runtime(bus)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: runtime.run(serve=True, task_status=task_status))
        assert runtime.started
        await runtime.settle()  # nothing to do yet
        runtime.submit(ReserveInventory(saga_id="a", sku="x", quantity=1))
        runtime.submit(ReserveInventory(saga_id="b", sku="x", quantity=2000))
        await runtime.settle()
        assert sorted(ended) == ["a:completed", "b:failed"]
        await trio.sleep(5)
        runtime.submit(ReserveInventory(saga_id="a", sku="x", quantity=1))  # a client retry
        await runtime.settle()
        assert sorted(ended) == ["a:completed", "b:failed"]
        nursery.cancel_scope.cancel()
    starts = [r for r in bus.trace if r.kind == "start"]
    assert [r.saga for r in starts] == ["a", "b", "a"]
    replies = [(r.saga, r.event, r.info) for r in bus.trace if r.kind == "reply"]
    assert replies == [
        ("a", "reserve_inventory_ok", "r1"),
        ("b", "error", "insufficient stock for sku x: 999 available, 2000 requested"),
        ("a", "reserve_inventory_ok", "r1"),
    ]
    assert bus.quiet
