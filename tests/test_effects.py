# Issue 11: effects in the outside world, the crash before a commit, volatile state and the
# restart hook; and that explore finds, shrinks and replays the planted bugs of effect_bugs.py
# while the correct shop passes the same seeds.
from __future__ import annotations

import re
from pathlib import Path

import attrs
import effect_bugs
import pytest

from faults import Fault, parse_fault
from trio_saga.errors import FaultSpecError, SagaError
from trio_saga.events import Event
from trio_saga.explore import ExploreResult, RunSummary, explore, replay_choice
from trio_saga.explore_text import format_explore
from trio_saga.participant import Participant, StepContext, World, volatile
from trio_saga.saga import HANDLERS_RETURN
from trio_saga.scenario import Scenario
from trio_saga.shop import SHOP
from trio_saga.shop.checks import MONEY
from trio_saga.shop.services import PaymentService
from trio_saga.shrink import ReplayFile, trace_digest
from trio_saga.simulation import Simulation, orders, simulate

# -- the outside world ---------------------------------------------------------------------


def test_a_repeated_idempotency_key_gets_the_first_result_and_does_nothing() -> None:
    world = World()
    world.step("payment", "saga-1")
    first = world.call("gateway", "charge", key="k1", amount_cents=5)
    again = world.call("gateway", "charge", key="k1", amount_cents=5)
    other = world.call("gateway", "charge", key="k2", amount_cents=7)
    assert (first, again, other) == ("gateway-1", "gateway-1", "gateway-2")
    assert [e.applied for e in world.effects] == [True, False, True]
    assert [e.param("amount_cents") for e in world.applied("gateway", "charge")] == [5, 7]
    assert world.effects[0].service == "payment"
    assert world.effects[0].saga_id == "saga-1"


def test_without_a_key_every_call_acts() -> None:
    world = World()
    results = [world.call("gateway", "charge", amount_cents=5) for _ in range(3)]
    assert results == ["gateway-1", "gateway-2", "gateway-3"]
    assert len(world.applied("gateway", "charge")) == 3


def test_the_shop_charges_and_ships_through_effects_shown_in_the_trace() -> None:
    result = simulate(Simulation(orders=orders(2)))
    assert result.ok
    effects = [r for r in result.trace.records if r.kind == "effect"]
    assert [(r.node, r.saga, r.event, r.ref) for r in effects] == [
        ("payment", "saga-1", "gateway.charge", "charge-saga-1"),
        ("payment", "saga-2", "gateway.charge", "charge-saga-2"),
        ("shipping", "saga-1", "carrier.ship", "ship-saga-1"),
        ("shipping", "saga-2", "carrier.ship", "ship-saga-2"),
    ]
    assert effects[0].info == "charge(amount_cents=9999) -> gateway-1"


# -- the crash before a commit ---------------------------------------------------------------

BEFORE_CHARGE = "crash:service=payment,before=PaymentCharged,times=2"


def test_a_crash_before_the_commit_runs_the_step_again_and_the_key_charges_once() -> None:
    result = simulate(Simulation(orders=orders(3), faults=[parse_fault(BEFORE_CHARGE)]))
    assert result.ok, result.violations
    assert result.fault_counts["crash_before_commit"] == 2
    charges = [e for e in result.world.effects if e.action == "charge"]
    assert len(charges) == 5  # three sagas, two of them asked the gateway again
    assert len(result.world.applied("gateway", "charge")) == 3
    crashes = [r for r in result.trace.records if r.kind == "crash"]
    assert crashes[0].info == "after its effects, before committing PaymentCharged"
    payment = result.service("payment", PaymentService)
    assert payment.payments_made == 3  # the lost steps left no trace in its state
    assert result.events("saga-1") == ["InventoryReserved", "PaymentCharged", "ShipmentCreated"]


def test_without_the_key_the_same_crash_charges_twice_and_money_says_so() -> None:
    result = simulate(
        Simulation(orders=orders(3), saga=effect_bugs.KEYLESS, faults=[parse_fault(BEFORE_CHARGE)])
    )
    details = [v.detail for v in result.violations if v.invariant == MONEY]
    assert "charged 3 times at the gateway" in details  # both crashes struck saga-1
    assert any(d.startswith("the gateway charged 499.95 - refunded 0.00") for d in details)
    # The saga itself looks perfect: one PaymentCharged each, all completed.
    assert result.counts()["completed"] == 3


def test_a_crash_before_a_commit_replays_exactly_from_its_decisions() -> None:
    sim = Simulation(
        orders=orders(4), saga=effect_bugs.KEYLESS, faults=[parse_fault(BEFORE_CHARGE)]
    )
    first = simulate(sim)
    kinds = {d.kind for d in first.decisions}
    assert kinds == {"crash_before_commit"}
    again = simulate(attrs.evolve(sim, faults=(), decisions=first.decisions))
    assert trace_digest(again) == trace_digest(first)


def test_no_snapshot_is_taken_unless_a_crash_before_commit_could_strike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: Participant) -> None:
        raise AssertionError("snapshot taken")

    monkeypatch.setattr(Participant, "snapshot", refuse)
    faults = [parse_fault("crash:service=payment,after=PaymentCharged"), parse_fault("drop:p=0.1")]
    assert simulate(Simulation(orders=orders(5), faults=faults)).ok
    crash_shipping = [parse_fault("crash:service=shipping,before=any")]
    with pytest.raises(Exception, match="snapshot taken"):
        simulate(Simulation(orders=orders(1), faults=crash_shipping))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("crash:service=payment,before=Nope", r"before \(an event type of the saga, or any\)"),
        ("crash:service=payment,at=1,before=any", r"give exactly one of at=SECONDS"),
    ],
)
def test_a_crash_before_commit_spec_is_checked(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        Simulation(orders=orders(1), faults=[parse_fault(spec)])._injector()


# -- volatile state and the restart hook ---------------------------------------------------------


@attrs.define
class Cached:
    name = "cached"
    durable: dict[str, int] = attrs.Factory(dict)
    cache: dict[str, int] = volatile(dict)
    restarted: int = 0

    def handle(self, event: Event, ctx: StepContext) -> tuple[Event, ...]:
        self.durable[event.saga_id] = self.cache[event.saga_id] = 1
        return ()

    def restart(self) -> None:
        self.restarted += 1
        self.cache = dict(self.durable)


def test_a_crash_wipes_volatile_state_and_the_restart_hook_rebuilds_it() -> None:
    participant = Participant(Cached())
    participant.receive(Event(saga_id="s1", event_id="e1", timestamp=0), StepContext(timestamp=0))
    service = participant.service
    assert isinstance(service, Cached)
    participant.crashed()
    assert service.cache == {}
    assert service.durable == {"s1": 1}
    participant.restarted()
    assert (service.cache, service.restarted) == ({"s1": 1}, 1)


def test_undo_loses_the_step_but_not_its_effects() -> None:
    participant = Participant(Cached())
    ctx = StepContext(timestamp=0)
    snapshot = participant.snapshot()
    event = Event(saga_id="s1", event_id="e1", timestamp=0)
    ctx.effects.call("gateway", "charge", key="k")
    participant.receive(event, ctx)
    participant.undo(snapshot, event, ())
    service = participant.service
    assert isinstance(service, Cached)
    assert (service.durable, participant.inbox) == ({}, set())
    assert len(ctx.effects.applied("gateway", "charge")) == 1


def test_a_correct_volatile_cache_survives_crashes_through_its_restart_hook() -> None:
    def faults() -> list[Fault]:  # fresh plugins each run: a crash counts its times
        return [
            parse_fault("crash:service=payment,after=PaymentCharged,times=3"),
            parse_fault("fail_shipping:saga=saga-1+saga-2"),
        ]

    result = simulate(Simulation(orders=orders(3), saga=effect_bugs.CACHING, faults=faults()))
    assert result.ok, result.violations
    assert result.counts()["compensated"] == 2
    forgetful = simulate(Simulation(orders=orders(3), saga=effect_bugs.FORGETFUL, faults=faults()))
    assert {v.invariant for v in forgetful.violations} >= {MONEY, "every saga ends"}


# -- explore finds and shrinks them ----------------------------------------------------------

SCENARIO = """\
description = "Ten orders; payment crashes after its effects, or a shipment fails."
seed = 1
faults = [{faults}]

[[sagas]]
count = 10
every = 0.1

[expect]
invariants_only = true
"""


def _scenario(*faults: str) -> Scenario:
    text = SCENARIO.format(faults=", ".join(f'"{f}"' for f in faults))
    return Scenario.from_toml("effects", text)


KEYLESS_FAULTS = ("crash:service=payment,before=any,p=0.2,times=2", "duplicate:p=0.05")
FORGETFUL_FAULTS = (
    "crash:service=payment,after=PaymentCharged,p=0.3,times=2",
    "fail_shipping:rate=0.3",
)


def test_explore_finds_the_missing_idempotency_key_and_shrinks_it_to_one_crash(
    tmp_path: Path,
) -> None:
    scenario = _scenario(*KEYLESS_FAULTS)
    result = explore(
        scenario, 20, saga=effect_bugs.KEYLESS, out=tmp_path, max_shrinks=1, max_replays=1
    )
    assert len(result.failing) >= 3
    assert len(result.replays) == 1
    ((seed, replay),) = result.replays.items()
    assert replay.invariant == MONEY
    assert replay.decisions is not None
    assert [d.kind for d in replay.decisions] == ["crash_before_commit"]
    loaded = ReplayFile.load(result.paths[seed])
    again = loaded.run(effect_bugs.KEYLESS)
    assert any(v.invariant == MONEY for v in again.violations)
    assert trace_digest(again) == loaded.trace_digest
    text = format_explore(result)
    for run in result.failing:
        assert f"seed {run.seed}:" in text  # every failing seed listed, with or without a file
    assert "no replay file (over --max-replays" in text
    assert not explore(scenario, 20, shrink_failures=False).failing  # the shop keeps its keys


def test_explore_finds_the_volatile_guard_under_crashes(tmp_path: Path) -> None:
    scenario = _scenario(*FORGETFUL_FAULTS)
    result = explore(scenario, 20, saga=effect_bugs.FORGETFUL, max_shrinks=1, max_replays=1)
    assert result.failing
    replay = next(iter(result.replays.values()))
    assert replay.decisions is not None
    assert len(replay.decisions) <= 3
    assert {d.kind for d in replay.decisions} == {"crash_after_commit", "fail_shipping"}
    assert not explore(scenario, 20, saga=effect_bugs.CACHING, shrink_failures=False).failing
    assert not explore(scenario, 20, shrink_failures=False).failing


def test_explore_finds_the_cache_no_restart_rebuilds_as_a_handler_that_raises(
    tmp_path: Path,
) -> None:
    scenario = _scenario(*FORGETFUL_FAULTS)
    result = explore(
        scenario, 20, saga=effect_bugs.BRITTLE, max_shrinks=1, max_replays=1, out=tmp_path
    )
    assert result.failing
    ((seed, replay),) = result.replays.items()
    assert replay.invariant == HANDLERS_RETURN
    assert re.match(r"^KeyError: 'saga-\d+' \(while payment handled ShipmentFailed ", replay.detail)
    assert replay.decisions is not None
    assert {d.kind for d in replay.decisions} == {"crash_after_commit", "fail_shipping"}
    loaded = ReplayFile.load(result.paths[seed])
    again = loaded.run(effect_bugs.BRITTLE)
    assert [v.invariant for v in again.violations] == [HANDLERS_RETURN]
    assert trace_digest(again) == loaded.trace_digest


# -- swarm covers the new faults and varies orders -------------------------------------------


def test_swarm_crashes_before_commits_and_after_every_event_type() -> None:
    from trio_saga.swarm import FEATURES, crash_points, swarm_faults

    assert "crash_before_commit" in dict(FEATURES)
    assert {event for _, event in crash_points(SHOP)} == set(SHOP.event_types)
    specs = [spec for seed in range(60) for spec in swarm_faults(seed)]
    befores = {s.split("before=")[1].split(",")[0] for s in specs if "before=" in s}
    assert "any" in befores
    assert len(befores) >= 4
    fails = {s.split(":")[0] for s in specs if s.startswith("fail_")}
    assert fails == {f"fail_{step}" for step in SHOP.fallible_steps}


def test_swarm_varies_the_quantities_and_amounts_of_orders_by_seed() -> None:
    from trio_saga.swarm import swarm_scenario

    scenario = _scenario("drop:p=0.1")
    varied = [swarm_scenario(seed, scenario, SHOP) for seed in range(12)]
    assert any(v is scenario for v in varied)  # half the seeds keep the scenario's orders
    changed = [v for v in varied if v is not scenario]
    assert changed
    fields = [g.fields for v in changed for g in v.groups]
    assert len({f.get("quantity", 1) for f in fields}) > 1
    assert len({f.get("amount") for f in fields}) > 1
    assert all(v.saga_count == scenario.saga_count for v in changed)
    assert swarm_scenario(3, scenario, SHOP) == swarm_scenario(3, scenario, SHOP)
    no_variants = attrs.evolve(SHOP, order_variants={})
    assert swarm_scenario(3, scenario, no_variants) is scenario


def test_a_swarm_replay_file_carries_the_varied_orders(tmp_path: Path) -> None:
    scenario = _scenario("drop:p=0.01")
    result = explore(
        scenario, 30, swarm=True, saga=effect_bugs.KEYLESS, max_shrinks=1, max_replays=2
    )
    varied = [
        replay
        for replay in result.replays.values()
        if replay.scenario_toml is not None and "quantity" in replay.scenario_toml
    ]
    for replay in result.replays.values():
        again = replay.run(effect_bugs.KEYLESS)
        assert trace_digest(again) == replay.trace_digest
    assert varied  # some failing seeds ran with varied orders, and their files carry them


# -- explore's cost and its report -------------------------------------------------------------


def _run(seed: int, *violations: tuple[str, str | None, str]) -> RunSummary:
    return RunSummary(
        seed=seed,
        faults=(),
        counts={"completed": 1},
        fault_counts={},
        violations=violations,
        decisions=(),
        virtual_us=0,
        trace_lines=0,
    )


def test_replay_files_go_to_distinct_signatures_first() -> None:
    money = (MONEY, "saga-3", "charged 2 times at the gateway")
    runs = [
        _run(1, money),
        _run(2, (MONEY, "saga-7", "charged 2 times at the gateway")),
        _run(3, money),
        _run(4, ("every saga ends", "saga-1", "stuck in progress after [InventoryReserved]")),
        _run(5, ("stock is conserved", None, "sku abc123: available 1 + reserved 0")),
    ]
    assert runs[0].signature == runs[1].signature
    assert [r.seed for r in replay_choice(runs, 3)] == [1, 4, 5]
    assert [r.seed for r in replay_choice(runs, 4)] == [1, 2, 4, 5]
    assert replay_choice(runs, 0) == []


def test_explore_names_every_invariant_a_failing_run_broke() -> None:
    run = _run(
        7,
        ("outcome matches events", "saga-2", "PaymentRefunded published 2 times"),
        (MONEY, "saga-2", "refunded 2 times"),
        ("outcome matches events", "saga-2", "compensated but ..."),
    )
    assert run.invariants == ["outcome matches events", MONEY]
    result = ExploreResult(scenario="x", saga=SHOP, swarm=False, jobs=1, runs=[run], wall_s=1.0)
    text = format_explore(result)
    assert "seed 7: invariant 2 (outcome matches events) saga-2" in text
    assert "    also violated: 5 (money is conserved)" in text


def test_explore_refuses_a_negative_replay_cap() -> None:
    with pytest.raises(SagaError, match="^--max-replays must not be negative$"):
        explore(_scenario("drop:p=0.1"), 1, max_replays=-1)
