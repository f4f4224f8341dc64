"""The travel example's tests: its scenarios pass from the command line by path, it holds every
invariant under every fault kind over 200 swarm seeds, its planted bug is found, shrunk and
replayed, its runs are the same bytes in another process, and it runs in a pytest-trio test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import travel
import travel_bugs

from faults import parse_fault
from trio_saga import Simulation, orders
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
    assert "saga       travel" in done.stdout
    assert done.stdout.rstrip().endswith("result     PASS")


def test_every_invariant_holds_under_every_fault_kind_over_200_swarm_seeds() -> None:
    result = explore(Scenario.load(str(HERE / "scenarios" / "storm.toml")), 200, 2, swarm=True)
    assert [r.seed for r in result.failing] == []
    rows = {row for row, _ in result.matrix()}
    assert set(ROWS) <= rows  # every fault kind struck in some run
    assert {f"fail_{step}" for step in travel.saga.step_names} <= rows


def test_the_planted_bug_is_found_shrunk_and_replayed(tmp_path: Path) -> None:
    storm = Scenario.load(str(HERE / "scenarios" / "storm.toml"))
    result = explore(storm, 40, 1, swarm=True, saga=travel_bugs.forgetful_hotel, out=tmp_path)
    assert result.failing, "explore did not find the planted bug"
    shrunk = [r for r in result.replays.values() if r.shrunk and r.decisions is not None]
    assert shrunk, "no failing run was shrunk"
    smallest = min(shrunk, key=lambda r: len(r.decisions or ()))
    assert len(smallest.decisions or ()) <= 10 < smallest.recorded
    path = result.paths[smallest.seed]
    # A replay file never imports code by itself: without --saga-def it refuses, with it it
    # replays the same trace.
    refused = run_py("replay", str(path))
    assert refused.returncode == 2
    assert "--saga-def" in refused.stderr
    assert "Traceback" not in refused.stderr
    replayed = run_py(
        "replay", str(path), "--saga-def", "examples/travel/travel_bugs.py:forgetful_hotel"
    )
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "violated again" in replayed.stdout
    assert "trace identical to the recorded one" in replayed.stdout


def test_the_same_seed_gives_the_same_trace_in_another_process(tmp_path: Path) -> None:
    storm = "examples/travel/scenarios/storm.toml"
    traces = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"trace-{hash_seed}.jsonl"
        done = run_py(
            "scenario", storm, "--seed", "7", "--trace", str(out), PYTHONHASHSEED=hash_seed
        )
        assert done.returncode == 0, done.stderr
        traces.append(out.read_bytes())
    assert traces[0] == traces[1]
    assert len(traces[0].splitlines()) > 500


async def test_a_trip_under_faults_in_a_pytest_trio_test(autojump_clock: Any) -> None:
    result = await Simulation(
        saga=travel.saga,
        state={"rooms": 5},
        orders=orders(8, every=0.2, amount=300.0),
        faults=[parse_fault("duplicate:p=0.3"), parse_fault("crash:service=car,after=CarRented")],
        seed=3,
    ).run()
    assert result.violations == []
    assert result.counts() == {"in_progress": 0, "completed": 5, "compensated": 3, "failed": 0}
    card = result.service("card", travel.Card)
    assert sorted(card.charged.values()) == [30000] * 5
