# explore: many seeds in one or several processes, swarm fault mixes, the outcome matrix, and
# `run.py explore` / `run.py replay` as a user runs them (real subprocesses from the repository
# root). The planted bug of planted_bugs.py must be found, shrunk and replayed; the correct
# system must pass the same seeds.

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import attrs
import planted_bugs
import pytest
from support import assert_usage_error
from support import run_py as run_command

from trio_saga.errors import SagaError
from trio_saga.explore import (
    ALL_RUNS,
    NO_FAULTS,
    Job,
    RunCrashed,
    RunSummary,
    explore,
    outcome_matrix,
    run_seed,
)
from trio_saga.explore_text import format_explore
from trio_saga.oracle import number_of
from trio_saga.saga import EVERY_SAGA_ENDS, HANDLERS_RETURN
from trio_saga.scenario import Scenario
from trio_saga.shop import SHOP
from trio_saga.shop.checks import MONEY
from trio_saga.shrink import ReplayFile, violation_of
from trio_saga.swarm import FEATURES, swarm_faults

REPO = Path(__file__).resolve().parent.parent
TEST_SCENARIOS = REPO / "tests" / "scenarios"
BUGGY = planted_bugs.DOUBLE_CHARGE


@pytest.fixture(autouse=True)
def test_scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_SAGA_SCENARIOS", str(TEST_SCENARIOS))


def run_py(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    """run.py with the test scenarios, and `pythonpath` (for replays of planted bugs)."""
    return run_command(
        *args,
        env={
            "TRIO_SAGA_SCENARIOS": str(TEST_SCENARIOS),
            "PYTHONPATH": None if pythonpath is None else str(pythonpath),
        },
        timeout=300,
    )


# -- swarm mixes -------------------------------------------------------------------------------


def test_a_swarm_mix_is_a_function_of_the_seed_alone() -> None:
    mixes = [swarm_faults(seed, 3.0) for seed in range(200)]
    assert mixes == [swarm_faults(seed, 3.0) for seed in range(200)]
    assert len(set(mixes)) > 190  # each seed its own mix
    names = [spec.partition(":")[0] for mix in mixes for spec in mix]
    # Forced failures are drawn per step of the saga, not among the fixed features.
    forced = [f"fail_{step}" for step in SHOP.step_names]
    assert forced == ["fail_inventory", "fail_payment", "fail_shipping"]
    for feature in [*(feature for feature, _ in FEATURES), *forced]:
        name = "crash" if feature.startswith("crash") else feature
        runs_with = sum(1 for mix in mixes if any(s.startswith(name + ":") for s in mix))
        # Swarm testing needs every feature both on and off in a fair share of runs.
        assert 40 < runs_with < 200, (feature, runs_with)
    assert names.count("crash") > 0


def test_a_swarm_mix_is_the_same_in_another_process_and_hash_seed() -> None:
    code = (
        "from trio_saga.swarm import swarm_faults;"
        " print(repr([swarm_faults(s) for s in range(20)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=dict(os.environ, PYTHONHASHSEED="12345"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == repr([swarm_faults(s) for s in range(20)])


def test_swarm_runs_record_their_mix_and_rerun_identically() -> None:
    result = explore("retries", 6, swarm=True, digests=True)
    scenario = Scenario.load("retries")
    job = Job(scenario=scenario, saga=scenario.saga, swarm=True, digests=True)
    for run in result.runs:
        assert run.faults == job.faults(run.seed) == swarm_faults(run.seed, 1.0)
        assert run_seed(job, run.seed) == run
        # The recorded specs and the seed's orders (swarm varies them, issue 11) are all it
        # takes: the plain scenario API re-runs the same run.
        ordered = job.scenario_for(run.seed)
        plain = run_seed(Job(scenario=attrs.evolve(ordered, faults=run.faults),
                             saga=scenario.saga, digests=True), run.seed)  # fmt: skip
        assert plain == run
    assert {run.faults for run in result.runs} != {scenario.faults}


# -- the planted bug ---------------------------------------------------------------------------


def test_the_planted_bug_is_found_shrunk_and_its_replay_file_reproduces_it(
    tmp_path: Path,
) -> None:
    result = explore("retries", 200, saga=BUGGY, max_shrinks=2, out=tmp_path)
    assert result.failing, "explore missed the planted double charge in 200 seeds"
    first = result.failing[0]
    replay = result.replays[first.seed]
    assert replay.shrunk
    assert replay.decisions is not None
    assert 1 <= len(replay.decisions) <= 3
    assert replay.invariant == first.violations[0][0]
    assert replay.recorded == len(first.decisions or ()) > len(replay.decisions)

    path = result.paths[first.seed]
    loaded = ReplayFile.load(path)
    assert loaded == replay
    assert loaded.saga == "planted_bugs:DOUBLE_CHARGE"
    again = loaded.run(BUGGY)
    assert violation_of(again, loaded.invariant) is not None
    assert any(v.invariant == MONEY and "charged 2 times" in v.detail for v in again.violations)
    # The same decisions on the correct system break nothing: the bug, not the fault, is it.
    assert loaded.run(SHOP).violations == []

    # And from the command line, naming the planted saga, with its module importable.
    named = ("--saga-def", "planted_bugs:DOUBLE_CHARGE")
    done = run_py("replay", str(path), *named, pythonpath=REPO / "tests")
    assert done.returncode == 1, done.stderr
    number = number_of(BUGGY, loaded.invariant)
    assert f"[FAIL] {number}. {loaded.invariant}" in done.stdout
    assert f"invariant {number} ({loaded.invariant}) violated again" in done.stdout
    assert "trace identical to the recorded one" in done.stdout
    # A replay file never imports the code it names by itself: a usage error, not a crash.
    assert_usage_error(
        run_py("replay", str(path), pythonpath=REPO / "tests"), "planted_bugs", "--saga-def"
    )
    # Named, but not importable: a usage error too.
    assert_usage_error(run_py("replay", str(path), *named), "planted_bugs")

    text = format_explore(result)
    assert "shrunk" in text
    # The replay command explore prints names the saga by its file, so that it runs as
    # printed, from the repository root, with nothing on PYTHONPATH.
    printed = re.search(
        rf"^    python run.py replay {re.escape(str(path))} --saga-def (\S+)$", text, re.M
    )
    assert printed is not None, text
    assert printed.group(1) == "tests/planted_bugs.py:DOUBLE_CHARGE"
    as_printed = run_py("replay", str(path), "--saga-def", printed.group(1))
    assert as_printed.returncode == 1, as_printed.stderr
    assert f"invariant {number} ({loaded.invariant}) violated again" in as_printed.stdout
    assert "trace identical to the recorded one" in as_printed.stdout


def test_a_planted_participant_without_its_inbox_is_found_too(tmp_path: Path) -> None:
    result = explore("retries", 200, saga=planted_bugs.INBOXLESS, max_shrinks=1, out=tmp_path)
    assert result.failing
    replay = ReplayFile.load(result.paths[result.failing[0].seed])
    assert replay.shrunk
    assert replay.decisions is not None
    assert 1 <= len(replay.decisions) <= 3
    assert replay.saga == "planted_bugs:INBOXLESS"
    assert violation_of(replay.run(planted_bugs.INBOXLESS), replay.invariant) is not None
    # Behind a real inbox the same payment service is safe over the same seeds.
    assert not explore("retries", 200, saga=planted_bugs.GUARDLESS).failing


def test_the_correct_system_passes_the_same_seeds() -> None:
    result = explore("retries", 200)
    assert result.failing == []
    assert sum(run.counts["completed"] for run in result.runs) == 200 * 10
    # The seeds were not trivially fault-free: duplicates hit most of them.
    assert sum(1 for run in result.runs if run.fault_counts.get("duplicate")) > 50


def test_two_jobs_give_the_same_runs_as_one() -> None:
    one = explore("retries", 40, 1, saga=BUGGY, digests=True, shrink_failures=False)
    two = explore("retries", 40, 2, saga=BUGGY, digests=True, shrink_failures=False)
    assert [r.seed for r in two.runs] == list(range(40))
    assert two.runs == one.runs  # counts, faults, violations, decisions and trace digests
    assert one.failing, "the comparison should cover failing runs and their decisions"


def test_two_jobs_shrink_to_the_same_replay_files(tmp_path: Path) -> None:
    one = explore("retries", 30, 1, saga=BUGGY, out=tmp_path / "one", max_shrinks=2)
    two = explore("retries", 30, 2, saga=BUGGY, out=tmp_path / "two", max_shrinks=2)
    assert one.replays
    assert one.replays == two.replays


def test_a_time_budget_runs_consecutive_seeds() -> None:
    result = explore("retries", time_budget=0.3, first_seed=1000)
    seeds = [r.seed for r in result.runs]
    assert seeds
    assert seeds == list(range(1000, 1000 + len(seeds)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": 0}, "--seeds"),
        ({"jobs": 0}, "--jobs"),
        ({"time_budget": 0.0}, "--time"),
    ],
)
def test_explore_refuses_a_bad_budget(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SagaError, match=message):
        explore("retries", **kwargs)  # type: ignore[arg-type]


# -- the matrix --------------------------------------------------------------------------------


def summary(seed: int, faults: dict[str, int], violated: bool = False, **counts: int) -> RunSummary:
    return RunSummary(
        seed=seed,
        faults=(),
        counts={"completed": 0, "compensated": 0, "failed": 0, "stuck": 0, **counts},
        fault_counts=faults,
        violations=((EVERY_SAGA_ENDS, "saga-1", "stuck"),) if violated else (),
        decisions=() if violated else None,
        virtual_us=0,
        trace_lines=0,
    )


def test_the_matrix_puts_a_run_in_the_row_of_every_fault_kind_it_injected() -> None:
    runs = [
        summary(0, {"drop": 3, "partition_drop": 2, "partition": 1}, completed=4, compensated=1),
        summary(1, {"drop": 1, "crash_after_commit": 1}, True, completed=2, stuck=1),
        summary(2, {}, failed=5),
        summary(3, {"delay": 0}, completed=1),  # configured but never injected: no row
    ]
    rows = dict(outcome_matrix(runs))
    assert list(rows) == [ALL_RUNS, "drop", "partition", "crash after commit", NO_FAULTS]
    assert rows[ALL_RUNS] == {
        "runs": 4,
        "completed": 7,
        "compensated": 1,
        "failed": 5,
        "stuck": 1,
        "violated": 1,
    }
    assert rows["drop"]["runs"] == 2
    assert rows["drop"]["completed"] == 6
    assert rows["drop"]["violated"] == 1
    assert rows["partition"]["runs"] == 1  # partition and partition_drop are one kind
    assert rows["crash after commit"]["stuck"] == 1
    assert rows[NO_FAULTS] == {
        "runs": 2,
        "completed": 1,
        "compensated": 0,
        "failed": 5,
        "stuck": 0,
        "violated": 0,
    }


# -- the command line --------------------------------------------------------------------------


def test_run_py_explore_reports_the_matrix_and_the_failing_seeds(tmp_path: Path) -> None:
    out, report = tmp_path / "replays", tmp_path / "explore.html"
    done = run_py(
        "explore", "--scenario", "cut-short", "--seeds", "3", "--out", str(out),
        "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
    text = done.stdout
    assert re.search(r"^fault kind +runs +completed +compensated +failed +stuck +violated$",
                     text, re.M)  # fmt: skip
    assert re.search(r"^all runs +3 +9 +0 +0 +3 +3$", text, re.M), text
    assert re.search(r"^partition +3 ", text, re.M)
    assert re.search(r"[0-9.]+ runs/s", text)
    assert "FAIL: 3 of 3 runs violated an invariant" in text
    for seed in range(3):
        # the shop ships with trio-saga: its replay needs no --saga-def
        command = f"python run.py replay {out / f'cut-short-seed{seed}.json'}"
        assert re.search(rf"^    {re.escape(command)}$", text, re.M), text
    # Shrunk to the one decision that matters: the partition that outlasts max_time.
    saved = json.loads((out / "cut-short-seed0.json").read_text())
    assert saved["invariant"] == "every saga ends"
    assert saved["saga"] == "trio_saga.shop:SHOP"
    assert [d["kind"] for d in saved["decisions"]] == ["partition"]
    assert report.read_text().startswith("<!doctype html>")

    files = {name: tmp_path / name for name in ("t.jsonl", "d.mmd", "r.html")}
    replayed = run_py(
        "replay", str(out / "cut-short-seed0.json"), "--trace", str(files["t.jsonl"]),
        "--diagram", str(files["d.mmd"]), "--report", str(files["r.html"]),
    )  # fmt: skip
    assert replayed.returncode == 1, replayed.stderr
    assert "[FAIL] 1. every saga ends" in replayed.stdout
    assert "invariant 1 (every saga ends) violated again" in replayed.stdout
    assert "trace identical to the recorded one" in replayed.stdout
    lines = files["t.jsonl"].read_text().splitlines()
    assert json.loads(lines[0])["seq"] == 0
    assert any('"kind":"partition"' in line for line in lines)
    diagram = files["d.mmd"].read_text()
    assert diagram.startswith("sequenceDiagram")
    assert saved["saga_id"] in diagram  # it follows the saga that broke the invariant
    assert "partition" in diagram.lower()
    assert files["r.html"].read_text().startswith("<!doctype html>")


def test_run_py_explore_passes_on_the_correct_system_with_swarm_and_two_jobs() -> None:
    done = run_py("explore", "--scenario", "retries", "--seeds", "24", "--jobs", "2", "--swarm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "explore retries: 24 runs (240 sagas) with swarm fault mixes, 2 jobs" in done.stdout
    assert "PASS: no invariant violated" in done.stdout


def test_run_py_explore_draws_a_progress_bar_on_a_terminal() -> None:
    main, child = pty.openpty()
    screen = bytearray()

    def read_screen() -> None:
        # Read while the child runs, so a full pty buffer can never block it.
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO once the child's end is closed
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()
    env = dict(os.environ, TRIO_SAGA_SCENARIOS=str(TEST_SCENARIOS))
    with subprocess.Popen(
        [sys.executable, "run.py", "explore", "--scenario", "retries", "--seeds", "30"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=child,
        text=True,
    ) as process:
        os.close(child)
        stdout, _ = process.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(main)
    assert process.returncode == 0, stdout
    drawn = screen.decode()
    assert re.search(r"\[#*\.*\] \d+/30 runs", drawn), drawn
    assert "[" + "#" * 30 + "] 30/30 runs" in drawn
    assert "PASS" in stdout


def test_run_py_explore_and_replay_usage_errors(tmp_path: Path) -> None:
    assert_usage_error(run_py("explore", "--scenario", "retries", "--seeds", "0"), "--seeds")
    assert_usage_error(run_py("explore", "--scenario", "no-such"), "unknown scenario")
    assert_usage_error(run_py("replay", str(tmp_path / "missing.json")), "cannot read")
    not_json = tmp_path / "bad.json"
    not_json.write_text("{ nope")
    assert_usage_error(run_py("replay", str(not_json)), "not JSON")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    assert_usage_error(run_py("replay", str(other)), "not a trio-saga replay file")

    result = explore("cut-short", 1, out=tmp_path)
    good = result.paths[0]
    assert_usage_error(run_py("replay", str(good), "--saga", "saga-99"), "saga-99")
    assert_usage_error(
        run_py("replay", str(good), "--trace", str(tmp_path / "no" / "dir" / "t.jsonl")),
        "cannot write",
    )


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_handler_that_raises_is_a_finding_shrunk_and_replayed(jobs: int, tmp_path: Path) -> None:
    result = explore("retries", 4, jobs, saga=planted_bugs.EXPLODING, out=tmp_path)
    assert [run.seed for run in result.failing] == [0, 1, 2, 3]
    for run in result.failing:
        assert run.violations == (
            (
                HANDLERS_RETURN,
                "saga-3",
                "KeyError: 'no carrier for saga-3'"
                " (while shipping handled PaymentCharged of saga saga-3)",
            ),
        )
    replay = result.replays[0]
    assert replay.invariant == HANDLERS_RETURN
    assert replay.decisions == ()  # it raises with no fault at all
    trace, diagram = tmp_path / "raised.jsonl", tmp_path / "raised.mmd"
    done = run_py(
        "replay", str(result.paths[0]), "--saga-def", "planted_bugs:EXPLODING",
        "--trace", str(trace), "--diagram", str(diagram), pythonpath=REPO / "tests",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    last = json.loads(trace.read_text().splitlines()[-1])  # the run stops at the raise
    assert {k: last.get(k) for k in ("kind", "node", "saga", "event", "info")} == {
        "kind": "raise",
        "node": "shipping",
        "saga": "saga-3",
        "event": "PaymentCharged",
        "info": "KeyError: 'no carrier for saga-3'",
    }
    assert (
        "Note over shipping: RAISED KeyError: 'no carrier for saga-3' handling PaymentCharged"
        in (diagram.read_text())
    )
    number = number_of(SHOP, HANDLERS_RETURN)
    assert number == len(SHOP.invariants) + 1
    assert re.search(
        rf"^replay     invariant {number} \(every handler returns\) violated again \(saga-3\),"
        " trace identical to the recorded one$",
        done.stdout,
        re.MULTILINE,
    ), done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_check_that_raises_names_the_seed_instead_of_a_traceback(jobs: int) -> None:
    # Not a finding of any run: the saga's own code around the run is broken.
    with pytest.raises(RunCrashed) as raised:
        explore("retries", 4, jobs, saga=planted_bugs.BROKEN_CHECK)
    assert str(raised.value).startswith(
        "seed 0 of retries: the run raised ZeroDivisionError: the check divided by the number"
    )


def test_which_crash_is_reported_does_not_depend_on_which_worker_finishes_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seed 0's chunk is the slowest to finish, so every other crash is in before it; explore
    # must still name seed 0, as one process running the seeds in order would.
    import concurrent.futures as cf
    import time

    from trio_saga import explore as explore_module

    def crash_late_for_seed_0(seeds: list[int]) -> list[RunSummary]:
        if seeds[0] == 0:
            time.sleep(0.3)
        raise RunCrashed(f"seed {seeds[0]} of retries: the run raised KeyError")

    def thread_pool(jobs: int, job: Job) -> cf.Executor:
        return cf.ThreadPoolExecutor(max_workers=jobs)

    monkeypatch.setattr(explore_module, "_run_chunk", crash_late_for_seed_0)
    monkeypatch.setattr(explore_module, "_pool", thread_pool)
    with pytest.raises(RunCrashed, match=r"^seed 0 of retries: "):
        explore("retries", 4, 2)


def test_a_script_without_the_main_guard_is_told_what_to_do(tmp_path: Path) -> None:
    script = tmp_path / "no_guard.py"
    script.write_text(
        "from trio_saga.explore import explore\n"
        "explore('happy-path', 4, 2, shrink_failures=False)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "TRIO_SAGA_SCENARIOS": str(REPO / "scenarios")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "trio_saga.errors.SagaError: explore's worker processes died as they started. From a"
        ' script, call explore with jobs > 1 only under `if __name__ == "__main__":` (each'
        " worker imports the script again, as multiprocessing's spawn does)"
    )
