"""The transfer example's tests: a saga of another shape (two steps, the last cannot fail).
Its scenarios pass by path, it holds every invariant under every fault kind over 200 swarm
seeds, its planted bug is found, shrunk to one decision and replayed, and its runs are the
same bytes in another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import transfer
import transfer_bugs

from trio_saga import FaultSpecError, SagaDefinitionError, SagaOrder, Simulation, Step, simulate
from trio_saga.explore import ROWS, explore
from trio_saga.scenario import Scenario

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.toml"))


def run_py(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_each_scenario_passes_from_the_command_line_by_path(path: Path) -> None:
    done = run_py("scenario", str(path.relative_to(REPO)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("result     PASS")


def test_the_shape_follows_from_the_definition() -> None:
    saga = transfer.saga
    assert saga.terminal == {"Credited": "completed", "DebitRefused": "failed"}
    assert saga.allowed["compensated"] == ()  # the credit cannot fail: nothing is ever undone
    assert saga.subscriptions == {"Debited": ("credit",)}


def test_every_invariant_holds_under_every_fault_kind_over_200_swarm_seeds() -> None:
    result = explore(Scenario.load(str(HERE / "scenarios" / "storm.toml")), 200, 2, swarm=True)
    assert [r.seed for r in result.failing] == []
    rows = {row for row, _ in result.matrix()}
    assert {*ROWS, "fail_debit"} <= rows
    assert "fail_credit" not in rows  # a step that cannot fail is never forced to


def test_the_planted_bug_is_found_shrunk_to_one_decision_and_replayed(tmp_path: Path) -> None:
    happy = Scenario.load(str(HERE / "scenarios" / "happy.toml"))
    result = explore(happy, 40, 1, swarm=True, saga=transfer_bugs.eager_debit, out=tmp_path)
    assert result.failing
    shrunk = [r for r in result.replays.values() if r.shrunk and r.decisions is not None]
    assert shrunk
    smallest = min(shrunk, key=lambda r: len(r.decisions or ()))
    assert [d.kind for d in smallest.decisions or ()] == ["fail_debit"]
    assert smallest.invariant == transfer.MONEY_KEPT
    replayed = run_py(
        "replay",
        str(result.paths[smallest.seed]),
        "--saga-def",
        "examples/transfer/transfer_bugs.py:eager_debit",
    )
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "violated again" in replayed.stdout
    assert "trace identical to the recorded one" in replayed.stdout


def test_the_same_seed_gives_the_same_trace_in_another_process(tmp_path: Path) -> None:
    traces = []
    for hash_seed in ("3", "4"):
        out = tmp_path / f"trace-{hash_seed}.jsonl"
        done = run_py(
            "scenario",
            "examples/transfer/scenarios/storm.toml",
            "--trace",
            str(out),
            PYTHONHASHSEED=hash_seed,
        )
        assert done.returncode == 0, done.stderr
        traces.append(out.read_bytes())
    assert traces[0] == traces[1]


def test_a_step_that_cannot_fail_is_never_forced_to_and_needs_nothing_undone() -> None:
    order = SagaOrder(saga_id="saga-1", fail=frozenset({"credit"}))
    with pytest.raises(
        FaultSpecError, match=r"^order saga-1: fail names no step of saga transfer that can fail"
    ):
        simulate(Simulation(saga=transfer.saga, orders=[order]))
    # A credit that could fail would need the debit undone, so the definition says so.
    fallible = Step(name="credit", success="Credited", failure="CreditRefused")
    with pytest.raises(
        SagaDefinitionError, match=r"^saga 'transfer': step 'debit' needs a compensation event"
    ):
        attrs.evolve(transfer.saga, steps=(transfer.saga.steps[0], fallible))
