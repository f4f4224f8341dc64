# The named scenarios in scenarios/: each one over 50 seeds ends with every saga finished, every
# invariant holding, the expected outcome counts (where the file gives them) and the faults it
# names actually injected. Never a test of the core's internals: scenario files are data, and
# these tests only run them.

from __future__ import annotations

import pytest

from trio_saga.commands import ScenarioRun, run_scenario
from trio_saga.oracle import describe
from trio_saga.saga import OUTCOMES
from trio_saga.scenario import Scenario, scenario_names
from trio_saga.shop.services import Inventory, PaymentService, shop_services

SEEDS = range(50)

REQUIRED = {
    "happy-path",
    "payment-failure",
    "shipping-failure",
    "inventory-failure",
    "insufficient-stock",
    "duplicate-storm",
    "lossy-network",
    "reordering",
    "crash-after-charge",
    "partition-heals",
    "contention",
    "chaos",
}

#: The trace/fault-count kinds a fault spec's name shows up as once it has acted.
FIRED_AS = {
    "crash": {"crash_at", "crash_after_commit"},
    "partition": {"partition"},
}


def test_every_required_scenario_exists() -> None:
    assert set(scenario_names()) >= REQUIRED


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_file_is_well_formed(name: str) -> None:
    scenario = Scenario.load(name)
    assert scenario.description.strip()
    assert "\n" not in scenario.description
    if scenario.expect is not None:
        assert sum(scenario.expect[o] for o in OUTCOMES) == scenario.saga_count


def test_chaos_is_everything_at_once_over_at_least_100_sagas() -> None:
    chaos = Scenario.load("chaos")
    assert chaos.saga_count >= 100
    kinds = {spec.partition(":")[0] for spec in chaos.faults}
    assert {"drop", "delay", "duplicate", "reorder", "partition", "crash"} <= kinds
    assert kinds & {"fail_inventory", "fail_payment", "fail_shipping"}


def test_counts_are_exact_where_the_seed_cannot_change_them() -> None:
    # Only rate-driven forced failures (and stock freed by compensations racing other sagas)
    # make counts depend on the seed; chaos has them, the others must say exactly what happens.
    invariants_only = {n for n in scenario_names() if Scenario.load(n).expect is None}
    assert invariants_only == {"chaos"}


def _forced_outcome(scenario: Scenario) -> dict[str, str]:
    """The outcome a saga forced to fail must have: failed if its first step was forced."""
    outcome: dict[str, str] = {}
    orders = iter(scenario.orders())
    for group in scenario.groups:
        for _ in range(group.count):
            order = next(orders)
            if group.fail:
                outcome[order.saga_id] = "failed" if "inventory" in group.fail else "compensated"
    return outcome


def _check(run: ScenarioRun) -> None:
    where = f"{run.scenario.name} seed {run.seed}"
    result = run.result
    assert not result.stopped_early, f"{where}: never went quiet"
    assert result.violations == [], f"{where}: " + "; ".join(
        describe(v, result.saga) for v in result.violations
    )
    assert result.counts()["in_progress"] == 0, where
    assert run.mismatches == (), f"{where}: {run.mismatches}"
    for saga_id, status in _forced_outcome(run.scenario).items():
        assert result.status(saga_id) == status, f"{where}: {saga_id}"
    for spec in run.scenario.faults:
        name = spec.partition(":")[0]
        assert FIRED_AS.get(name, {name}) & set(result.fault_counts), f"{where}: {spec} idle"


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_over_50_seeds(name: str) -> None:
    scenario = Scenario.load(name)
    traces = set()
    for seed in SEEDS:
        run = run_scenario(scenario, seed)
        _check(run)
        traces.add(hash(tuple(run.result.trace.records)))
    # A scenario with random faults explores something new with each seed; one without any
    # is the same run every time.
    random_faults = [s for s in scenario.faults if not s.startswith(("partition", "crash"))]
    if random_faults:
        assert len(traces) > len(SEEDS) // 2
    else:
        assert len(traces) == 1


def test_default_seed_is_the_files() -> None:
    scenario = Scenario.load("chaos")
    assert run_scenario(scenario).seed == scenario.seed


def test_a_crash_between_charge_and_publish_loses_nothing_and_charges_once() -> None:
    scenario = Scenario.load("crash-after-charge")
    # the unit price the scenario's [state] sets up (the shop's default if it names none)
    inventory = next(s for s in shop_services(scenario.state) if isinstance(s, Inventory))
    unit_price_cents = inventory.unit_price_cents
    for seed in range(20):
        result = run_scenario(scenario, seed).result
        records = result.trace.records
        crashes = [r for r in records if r.kind == "crash"]
        assert len(crashes) == 3, seed
        for crash in crashes:
            committed = records[crash.seq - 1]  # the step whose outbox the crash caught
            assert (committed.kind, committed.node) == ("handle", "payment"), seed
            assert committed.info == "PaymentCharged", seed
            saga = committed.saga
            charges = [r for r in result.trace.for_saga(saga) if r.event == "PaymentCharged"]
            published = [r for r in charges if r.kind == "publish"]
            assert len(published) == 1, (seed, saga)
            restart = next(r for r in records[crash.seq :] if r.kind == "restart")
            assert published[0].seq > restart.seq, (seed, saga)
            assert result.status(saga) in ("completed", "compensated")
        payment = result.participants["payment"].service
        assert isinstance(payment, PaymentService)
        assert payment.charged_cents == scenario.saga_count * unit_price_cents
