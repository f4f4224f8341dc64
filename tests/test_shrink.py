# Shrinking: Zeller's ddmin on its own (against predicates whose minimal answer is known), the
# shrink of a real failing run to a 1-minimal set of decisions, and the replay file format.

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import effect_bugs
import planted_bugs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faults import Decision
from trio_saga.errors import SagaError
from trio_saga.explore import Job, run_seed, shrink_run
from trio_saga.saga import OUTCOME_MATCHES_EVENTS, SagaDefinition, load_saga, saga_ref
from trio_saga.scenario import Scenario, scenario_dir, scenario_names
from trio_saga.shop import SHOP
from trio_saga.shrink import (
    ReplayError,
    ReplayFile,
    ddmin,
    decision_saga,
    neighbours,
    scenario_text,
    scenario_toml,
    shrink,
    trace_digest,
    violation_of,
)
from trio_saga.simulation import simulate

BUGGY = planted_bugs.DOUBLE_CHARGE

RETRIES = (Path(__file__).parent / "scenarios" / "retries.toml").read_text()

FORCED = """\
description = "Four sagas whose payment is forced to fail, four that complete."
faults = ["delay:mean=0.01"]
[[sagas]]
count = 4
fail = ["payment"]
[[sagas]]
count = 4
[expect]
compensated = 4
completed = 4
"""


# -- ddmin -------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), max_size=4))
    )
)
def test_ddmin_finds_exactly_the_items_a_failure_needs(case: tuple[int, set[int]]) -> None:
    n, needed = case
    calls: list[int] = []

    def fails(subset: list[int]) -> bool:
        calls.append(len(subset))
        return needed <= set(subset)

    assert ddmin(list(range(n)), fails) == sorted(needed)
    # Zeller and Hildebrandt's worst case is n^2 + 3n tests; one needed item is a binary
    # search: two tests per halving.
    assert len(calls) <= n * n + 3 * n
    if len(needed) == 1:
        assert len(calls) <= 2 * math.ceil(math.log2(max(n, 2))) + 3


def test_ddmin_result_is_one_minimal_for_a_monotone_count() -> None:
    # Fails with any three items of the multiples of 7: every 3-subset of them is minimal.
    def fails(subset: list[int]) -> bool:
        return sum(1 for x in subset if x % 7 == 0) >= 3

    found = ddmin(list(range(100)), fails)
    assert len(found) == 3
    assert all(x % 7 == 0 for x in found)
    assert found == sorted(found)  # order is kept


# -- shrinking real runs -----------------------------------------------------------------------


def first_failing_seed(scenario: Scenario) -> int:
    job = Job(scenario=scenario, saga=BUGGY)
    for seed in range(200):
        if run_seed(job, seed).violated:
            return seed
    raise AssertionError("the planted bug was not found in 200 seeds")


def test_shrink_leaves_a_one_minimal_set_of_decisions() -> None:
    scenario = Scenario.from_toml("retries", RETRIES)
    seed = first_failing_seed(scenario)
    original = simulate(scenario.simulation(seed, saga=BUGGY))
    invariant = original.violations[0].invariant
    shrunk = shrink(scenario, original.decisions, invariant, saga=BUGGY)
    assert shrunk.reproduced
    assert 1 <= len(shrunk.decisions) <= 3
    assert shrunk.recorded == len(original.decisions)
    assert all(d in original.decisions for d in shrunk.decisions)
    assert_one_minimal(scenario, shrunk.decisions, invariant, BUGGY)


def assert_one_minimal(
    scenario: Scenario, decisions: tuple[Decision, ...], invariant: str, saga: SagaDefinition
) -> None:
    """The decisions break `invariant` again, and without any one of them they do not."""

    def violates(subset: list[Decision]) -> bool:
        result = simulate(scenario.simulation(decisions=subset, saga=saga))
        return violation_of(result, invariant) is not None

    kept = list(decisions)
    assert violates(kept)
    for i in range(len(kept)):
        assert not violates(kept[:i] + kept[i + 1 :]), f"decision {kept[i]} is not needed"


def test_a_crash_at_another_sagas_commit_is_moved_to_its_instant() -> None:
    # The payment that forgets its records in a crash: in chaos's swarm the crash strikes
    # after another saga's refund, so that saga's own decisions (its failed shipment, its
    # delays) were what made the crash happen at all. As a crash at a time it needs none.
    job = Job(scenario=Scenario.load("chaos"), swarm=True, saga=effect_bugs.FORGETFUL)
    run = next(r for seed in range(40) if (r := run_seed(job, seed)).violated)
    assert run.decisions is not None
    invariant = run.violations[0][0]
    scenario = job.scenario_for(run.seed)
    shrunk = shrink(scenario, run.decisions, invariant, saga=job.saga)
    assert shrunk.reproduced
    assert len(shrunk.decisions) <= 3 < len(run.decisions)
    added = [d for d in shrunk.decisions if d not in run.decisions]
    assert [d.kind for d in added] == ["crash_at"]
    assert any(p.startswith("in_time: ") for p in shrunk.passes)
    assert_one_minimal(scenario, shrunk.decisions, invariant, job.saga)


def test_a_crash_at_a_time_moves_to_just_after_the_step_it_undoes() -> None:
    # Chaos swarm seed 189: the crash that wipes the payment records strikes at 2.5 s, after
    # saga-76's delayed charge; ddmin alone keeps both delays that line the saga up with it.
    # Moved to just after the charge of the run without one delay, it needs only the other.
    job = Job(scenario=Scenario.load("chaos"), swarm=True, saga=effect_bugs.FORGETFUL)
    run = run_seed(job, 189)
    assert run.decisions is not None
    assert run.violated
    invariant = run.violations[0][0]
    scenario = job.scenario_for(run.seed)
    shrunk = shrink(scenario, run.decisions, invariant, saga=job.saga)
    assert sorted(d.kind for d in shrunk.decisions) == ["crash_at", "delay", "fail_shipping"]
    (crash,) = (d for d in shrunk.decisions if d.kind == "crash_at")
    assert crash not in run.decisions
    assert any(p.startswith("closer: ") for p in shrunk.passes)
    assert_one_minimal(scenario, shrunk.decisions, invariant, job.saga)


def test_neighbours_are_the_sagas_started_nearest_first() -> None:
    order = [f"saga-{n}" for n in range(1, 8)]
    assert neighbours("saga-4", order, 4) == ["saga-3", "saga-5", "saga-2", "saga-6"]
    assert neighbours("saga-1", order, 2) == ["saga-2", "saga-3"]
    assert neighbours("saga-9", order, 2) == ["saga-1", "saga-2"]  # no decision of its own


def test_shrink_keeps_the_best_it_found_when_the_budget_runs_out() -> None:
    scenario = Scenario.from_toml("retries", RETRIES)
    seed = first_failing_seed(scenario)
    original = simulate(scenario.simulation(seed, saga=BUGGY))
    invariant = original.violations[0].invariant
    shrunk = shrink(scenario, original.decisions, invariant, saga=BUGGY, max_tests=2)
    assert shrunk.tests == 2
    assert shrunk.reproduced  # still a failing set, just not minimal
    assert len(shrunk.decisions) < len(original.decisions)


def test_a_run_that_does_not_fail_again_is_reported_not_shrunk() -> None:
    scenario = Scenario.from_toml("retries", RETRIES)
    result = simulate(scenario.simulation(0))  # the correct system: nothing to reproduce
    shrunk = shrink(scenario, result.decisions, "money is conserved")
    assert not shrunk.reproduced
    assert shrunk.decisions == tuple(result.decisions)
    assert shrunk.tests == 1


def test_forced_failures_are_decisions_a_replay_can_leave_out() -> None:
    scenario = Scenario.from_toml("forced", FORCED)
    result = simulate(scenario.simulation(3))
    assert result.counts()["compensated"] == 4
    forced = [d for d in result.decisions if d.kind == "fail_payment"]
    assert sorted(decision_saga(d) or "" for d in forced) == [f"saga-{n}" for n in range(1, 5)]
    replayed = simulate(scenario.simulation(decisions=result.decisions))
    assert replayed.trace_text() == result.trace_text()
    # A replay adds no plugin of its own: without those decisions the payments go through.
    without = [d for d in result.decisions if d.kind != "fail_payment"]
    assert simulate(scenario.simulation(decisions=without)).counts()["completed"] == 8


def test_decision_saga_names_the_saga_or_none_for_timed_faults() -> None:
    assert decision_saga(Decision(kind="drop", key=("PaymentCharged", "saga-3", "x", 1))) == (
        "saga-3"
    )
    assert decision_saga(Decision(kind="fail_payment", key=("payment", "saga-2"))) == "saga-2"
    commit = Decision(kind="crash_after_commit", key=("payment", "saga-9", "PaymentCharged"))
    assert decision_saga(commit) == "saga-9"
    assert decision_saga(Decision(kind="partition", key=("payment", "both", 1, 2))) is None
    assert decision_saga(Decision(kind="crash_at", key=("shipping", 5))) is None


# -- replay files ------------------------------------------------------------------------------


def replay_file() -> ReplayFile:
    return ReplayFile(
        scenario="retries",
        seed=7,
        faults=("duplicate:p=0.02",),
        decisions=(
            Decision(
                kind="duplicate", key=("reserve_inventory", "saga-2", "inventory", 1), value=1
            ),
        ),
        invariant="outcome matches events",
        saga="planted_bugs:DOUBLE_CHARGE",
        saga_id="saga-2",
        detail="InventoryReserved published 2 times",
        recorded=40,
        tests=5,
        trace_digest="sha256:abc",
        scenario_toml=RETRIES,
        violated=("outcome matches events", "money is conserved"),
    )


def test_a_replay_file_round_trips_and_replays(tmp_path: Path) -> None:
    saved = replay_file().save(tmp_path / "sub" / "r.json")
    loaded = ReplayFile.load(saved)
    assert loaded == replay_file()
    data = json.loads(saved.read_text())
    assert data["format"] == "trio-saga replay"
    assert data["version"] == 2
    assert data["invariant"] == "outcome matches events"
    assert data["violated"] == ["outcome matches events", "money is conserved"]
    assert (data["saga"], data["saga_id"]) == ("planted_bugs:DOUBLE_CHARGE", "saga-2")
    assert data["decisions"] == [
        {"kind": "duplicate", "key": ["reserve_inventory", "saga-2", "inventory", 1], "value": 1}
    ]
    # The file names a saga that does not ship with trio-saga: it is loaded only when named.
    saga = loaded.load_saga("planted_bugs:DOUBLE_CHARGE")
    assert saga == BUGGY
    result = loaded.run(saga)
    assert violation_of(result, OUTCOME_MATCHES_EVENTS) is not None
    assert result.fault_counts == {"duplicate": 1}
    # On the correct shop the same decisions break nothing.
    assert simulate(loaded.simulation(SHOP)).violations == []


def test_a_replay_file_never_imports_the_saga_it_names_by_itself() -> None:
    with pytest.raises(
        ReplayError,
        match=r"^this replay ran on saga planted_bugs:DOUBLE_CHARGE; a replay file never"
        r" imports code by itself: name it with --saga-def planted_bugs:DOUBLE_CHARGE ",
    ):
        replay_file().load_saga()
    shop = attrs.evolve(replay_file(), saga="shop")
    assert shop.load_saga() == SHOP


def test_a_version_1_replay_file_numbered_the_invariants(tmp_path: Path) -> None:
    data = attrs.evolve(replay_file(), saga="shop").to_json()
    data.update(version=1, invariant=4, saga="saga-2")
    del data["saga_id"], data["violated"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    loaded = ReplayFile.load(path)
    assert (loaded.invariant, loaded.saga, loaded.saga_id) == (
        "money is conserved",
        "shop",
        "saga-2",
    )


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_can_be_embedded_in_a_replay_file(name: str) -> None:
    scenario = Scenario.load(name)
    assert Scenario.from_toml(name, scenario_toml(scenario)) == scenario
    assert scenario_text(scenario) == (scenario_dir() / f"{name}.toml").read_text()


def test_a_scenario_built_in_code_is_written_out_for_the_replay_file() -> None:
    scenario = attrs.evolve(
        Scenario.from_toml("forced", FORCED),
        max_time=1e7 + 0.5,
        state={"stock": {"x y": 3}, "unit_price": 1.25},
    )
    text = scenario_text(scenario)
    assert text is not None
    assert Scenario.from_toml("forced", text) == scenario
    # One no scenario file could say (max_time is at most a year now) is not embedded.
    assert scenario_text(attrs.evolve(scenario, max_time=float("inf"))) is None


def test_saga_refs_round_trip() -> None:
    # A planted bug is a saga definition, found again by the module attribute that holds it.
    assert saga_ref(BUGGY) == "planted_bugs:DOUBLE_CHARGE"
    assert load_saga("planted_bugs:DOUBLE_CHARGE") == BUGGY
    assert saga_ref(SHOP) == "trio_saga.shop:SHOP"
    assert load_saga("shop") == SHOP
    assert load_saga("trio_saga.shop:SHOP") == SHOP


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[1, 2]", "not a trio-saga replay file"),
        ('{"format": "trio-saga replay", "version": 99}', "unsupported replay file version"),
        ('{"format": "trio-saga replay", "version": 1, "seed": 1}', "malformed"),
    ],
)
def test_a_bad_replay_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ReplayError, match=message) as caught:
        ReplayFile.load(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decisions": [{"kind": "drop", "key": [[1]]}]}, "bad recorded decision"),
        ({"decisions": "drop"}, "decisions must be a list"),
        ({"faults": [1]}, "faults must be a list of strings"),
        ({"seed": "one"}, "seed must be an integer"),
        ({"invariant": 2}, "invariant must be the name of an invariant"),
        ({"saga": 5}, "saga must be a string"),
        ({"violated": "money"}, "violated must be a list of invariant names"),
        ({"scenario_toml": "not toml ["}, "not valid TOML"),
    ],
)
def test_a_replay_file_with_a_bad_field_is_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    data = replay_file().to_json()
    data.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))

    def replay() -> None:
        loaded = ReplayFile.load(path)
        loaded.run(loaded.load_saga("planted_bugs:DOUBLE_CHARGE"))

    with pytest.raises(SagaError, match=message) as caught:
        replay()
    assert "\n" not in str(caught.value)


def test_a_replay_naming_a_saga_that_cannot_be_found_is_refused() -> None:
    with pytest.raises(
        SagaError, match=r"^cannot find saga module 'no_such_module' on PYTHONPATH$"
    ):
        replay_file().load_saga("no_such_module:thing")


def test_a_run_its_decisions_cannot_replay_gets_a_file_that_reruns_its_seed(
    tmp_path: Path,
) -> None:
    scenario = Scenario.from_toml("retries", RETRIES)
    job = Job(scenario=scenario, saga=BUGGY, scenario_toml=RETRIES)
    seed = first_failing_seed(scenario)
    run = run_seed(job, seed)
    # As if the recorded decisions had lost what caused the failure.
    broken = attrs.evolve(run, decisions=())
    replay = shrink_run(job, broken)
    assert replay.decisions is None
    assert not replay.shrunk
    loaded = ReplayFile.load(replay.save(tmp_path / "r.json"))
    assert loaded == replay
    assert loaded.saga == "planted_bugs:DOUBLE_CHARGE"
    result = loaded.run(BUGGY)
    assert violation_of(result, replay.invariant) is not None
    assert trace_digest(result) == replay.trace_digest
