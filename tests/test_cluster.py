# explore on a Dask cluster (trio_saga/cluster.py): a real LocalCluster of two worker
# processes on 127.0.0.1 must give the same runs, matrix, shrunk replay files and printed
# results as `--jobs 2`, lose nothing when a worker is SIGKILLed mid-run, and refuse an
# unreachable scheduler, a worker with other versions and a missing extra in one line.

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import planted_bugs
import pytest
from support import assert_usage_error
from support import run_py as run_command

from trio_saga.cluster import (
    WORKER_CONFIG,
    JobPlugin,
    _call,
    check_versions,
    chunks,
    seeds_per_chunk,
    versions,
)
from trio_saga.errors import ClusterError
from trio_saga.explore import (
    Job,
    Progress,
    RunCrashed,
    _init_worker,
    _run_chunk,
    explore,
    run_seed,
)
from trio_saga.explore_text import format_explore
from trio_saga.scenario import Scenario

REPO = Path(__file__).resolve().parent.parent
TEST_SCENARIOS = REPO / "tests" / "scenarios"
BUGGY = planted_bugs.DOUBLE_CHARGE
CHAOS = Scenario.from_toml("chaos", (REPO / "scenarios" / "chaos.toml").read_text())


@pytest.fixture(autouse=True)
def test_scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_SAGA_SCENARIOS", str(TEST_SCENARIOS))


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """Two worker processes with one thread each, as `--cluster local:2` starts them; the
    workers inherit sys.path, so they import planted_bugs from tests/ like the test does."""
    import dask.config

    with dask.config.set(WORKER_CONFIG):
        local = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def client(cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as connected:
        connected.wait_for_workers(2, timeout=60)
        yield connected


def run_py(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return run_command(*args, env={"TRIO_SAGA_SCENARIOS": str(TEST_SCENARIOS), **env}, timeout=240)


def without_timing(text: str) -> str:
    return re.sub(r"^speed .*$", "speed (timing)", text, flags=re.M)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


# -- the same results --------------------------------------------------------------------------


def test_the_cluster_gives_the_runs_and_output_of_two_jobs_over_200_chaos_swarm_seeds(
    cluster: distributed.LocalCluster,
) -> None:
    jobs = explore(CHAOS, 200, 2, swarm=True, digests=True)
    dask = explore(CHAOS, 200, swarm=True, digests=True, cluster=cluster.scheduler_address)
    assert [run.seed for run in dask.runs] == list(range(200))
    # Counts, fault mixes, violations, decisions and the digest of every run's whole trace.
    assert dask.runs == jobs.runs
    assert dask.replays == jobs.replays
    assert dask.jobs == 2
    assert without_timing(format_explore(dask)) == without_timing(format_explore(jobs))
    assert len({run.faults for run in dask.runs}) > 150  # swarm: each seed its own mix


def test_run_py_cluster_local2_prints_what_jobs_2_prints(tmp_path: Path) -> None:
    common = ("explore", "--scenario", "retries", "--seeds", "40", "--swarm")
    jobs = run_py(*common, "--jobs", "2", "--out", str(tmp_path / "jobs"))
    dask = run_py(*common, "--cluster", "local:2", "--out", str(tmp_path / "dask"))
    assert jobs.returncode == 0, jobs.stderr
    assert dask.returncode == 0, dask.stderr
    assert "explore retries: 40 runs (400 sagas) with swarm fault mixes, 2 jobs" in dask.stdout
    assert without_timing(dask.stdout) == without_timing(jobs.stdout)
    assert dask.stderr == ""  # no Dask log lines or warnings on the user's terminal


def test_a_planted_bug_is_found_and_shrunk_to_the_same_replay_files(
    cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    kwargs = {"saga": BUGGY, "digests": True, "max_shrinks": 2}
    jobs = explore("retries", 30, 2, out=tmp_path / "jobs", **kwargs)  # type: ignore[arg-type]
    dask = explore(
        "retries",
        30,
        cluster=cluster.scheduler_address,
        out=tmp_path / "dask",
        **kwargs,  # type: ignore[arg-type]
    )
    assert jobs.failing, "the planted double charge should fail some of 30 seeds"
    assert dask.runs == jobs.runs  # counts, faults, violations, decisions, trace digests
    assert dask.replays == jobs.replays
    assert any(replay.shrunk for replay in dask.replays.values())
    assert sorted(p.name for p in dask.paths.values()) == sorted(
        p.name for p in jobs.paths.values()
    )
    for seed, path in dask.paths.items():
        assert path.read_bytes() == jobs.paths[seed].read_bytes()


def test_a_time_budget_and_the_progress_reports_work_on_the_cluster(
    cluster: distributed.LocalCluster,
) -> None:
    seen: list[Progress] = []
    timed = explore(
        "retries",
        time_budget=1.0,
        first_seed=500,
        cluster=cluster.scheduler_address,
        progress=seen.append,
    )
    seeds = [run.seed for run in timed.runs]
    assert seeds == list(range(500, 500 + len(seeds)))
    assert len(seeds) > 2
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1].done == len(seeds)
    assert all(p.total is None and p.budget_s == 1.0 for p in seen)


def test_a_check_that_raises_names_the_seed_as_with_jobs(
    cluster: distributed.LocalCluster,
) -> None:
    # Every seed raises; which one is reported first depends on which worker answers first.
    with pytest.raises(
        RunCrashed,
        match=r"^seed [0-3] of retries: the run raised ZeroDivisionError: the check divided",
    ):
        explore(
            "retries",
            4,
            saga=planted_bugs.BROKEN_CHECK,
            cluster=cluster.scheduler_address,
        )


# -- faults of the cluster itself --------------------------------------------------------------


def test_a_worker_killed_mid_run_loses_nothing(
    cluster: distributed.LocalCluster, client: distributed.Client
) -> None:
    # A job registered before the kill, to be found on the worker the nanny starts after it.
    token = "test-job-before-the-kill"
    retries = Scenario.load("retries")
    job = Job(scenario=retries, saga=retries.saga, digests=True)
    job_args = (pickle.dumps(job), list(sys.path))
    client.register_plugin(JobPlugin(token, _init_worker, job_args, versions()), name=token)
    before = client.run(os.getpid)
    victim = sorted(before.values())[0]
    killed: list[int] = []

    def kill_once(progress: Progress) -> None:
        # Once the first chunks are back, every worker holds a chunk of seeds it is running.
        if not killed and progress.done >= 4:
            os.kill(victim, signal.SIGKILL)
            killed.append(progress.done)

    reference = explore("retries", 160, swarm=True, digests=True, shrink_failures=False)
    result = explore(
        "retries",
        160,
        swarm=True,
        digests=True,
        shrink_failures=False,
        cluster=cluster.scheduler_address,
        progress=kill_once,
    )
    assert killed, "the worker was never killed"
    assert killed[0] < 160
    assert [run.seed for run in result.runs] == list(range(160))
    assert result.runs == reference.runs
    # The nanny restarted the worker, and the restarted worker got the plugin registered
    # before it was born: it runs that job's seeds as any other worker would.
    client.wait_for_workers(2, timeout=60)
    after = client.run(os.getpid)
    assert victim not in after.values()
    (reborn,) = [address for address, pid in after.items() if pid not in before.values()]
    try:
        there = client.submit(_call, token, _run_chunk, [3, 4], workers=[reborn], pure=False)
        assert there.result(timeout=60) == [run_seed(job, 3), run_seed(job, 4)]
    finally:
        client.unregister_worker_plugin(token)


def test_an_unreachable_scheduler_is_one_line_within_the_timeout() -> None:
    started = time.monotonic()
    done = run_py(
        "explore", "--scenario", "retries", "--seeds", "2",
        "--cluster", f"tcp://127.0.0.1:{free_port()}",
        TRIO_SAGA_CLUSTER_TIMEOUT="2",
    )  # fmt: skip
    assert_usage_error(done, "cannot reach the Dask scheduler at tcp://127.0.0.1:", "within 2s")
    assert time.monotonic() - started < 60


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A `dask scheduler` and a `dask worker` as separate processes, as on several machines;
    each in a process group of its own, killed whole at the end."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = Path(sys.executable).parent / "dask"
    started: list[subprocess.Popen[bytes]] = []
    logs = (tmp_path / "scheduler.log").open("wb"), (tmp_path / "worker.log").open("wb")
    try:
        for command, log in (
            ([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", str(port),
              "--dashboard-address", "127.0.0.1:0"], logs[0]),
            ([str(dask_cli), "worker", address, "--nthreads", "1", "--no-nanny",
              "--host", "127.0.0.1"], logs[1]),
        ):  # fmt: skip
            started.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=dict(os.environ, DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="False"),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        with distributed.Client(address, timeout=60, set_as_default=False) as probe:
            probe.wait_for_workers(1, timeout=60)
        yield address, started[0]
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for log in logs:
            log.close()


def test_a_scheduler_lost_mid_run_is_one_error_not_a_hang(
    standalone: tuple[str, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, scheduler = standalone
    monkeypatch.setenv("TRIO_SAGA_CLUSTER_TIMEOUT", "2")
    killed: list[int] = []

    def kill_scheduler(progress: Progress) -> None:
        if not killed and progress.done >= 2:
            os.kill(scheduler.pid, signal.SIGKILL)
            killed.append(progress.done)

    started = time.monotonic()
    with pytest.raises(ClusterError, match=rf"^lost the Dask scheduler at {address} mid-run$"):
        explore("retries", 100_000, cluster=address, progress=kill_scheduler)
    assert killed
    assert time.monotonic() - started < 120


def test_a_worker_with_other_versions_is_refused() -> None:
    here = versions()
    assert {"python", "trio-saga", "trio", "attrs", "distributed", "trio-saga code"} <= set(here)
    check_versions(here, {"tcp://10.0.0.1:1": dict(here)})  # the same: accepted
    other = dict(here, trio="0.1.0")
    with pytest.raises(
        ClusterError,
        match=rf"^worker tcp://10\.0\.0\.1:1 differs from this client: trio 0\.1\.0 there,"
        rf" {re.escape(here['trio'])} here \(run the same venv everywhere\)$",
    ):
        check_versions(here, {"tcp://10.0.0.1:1": other})


def test_a_worker_refuses_the_job_of_a_client_with_other_versions(
    client: distributed.Client,
) -> None:
    retries = Scenario.load("retries")
    job = Job(scenario=retries, saga=retries.saga)
    expected = dict(versions(), attrs="0.0.1")
    token = "test-refused-job"
    job_args = (pickle.dumps(job), list(sys.path))
    client.register_plugin(JobPlugin(token, _init_worker, job_args, expected), name=token)
    try:
        future = client.submit(_call, token, _run_chunk, [0], pure=False)
        with pytest.raises(ClusterError, match=r"^worker tcp://127\.0\.0\.1:\d+ differs from"):
            future.result(timeout=60)
    finally:
        client.unregister_worker_plugin(token)


def test_cluster_and_jobs_together_or_a_bad_address_are_usage_errors() -> None:
    base = ("explore", "--scenario", "retries", "--seeds", "2")
    assert_usage_error(run_py(*base, "--jobs", "2", "--cluster", "local:2"), "--cluster", "--jobs")
    assert_usage_error(run_py(*base, "--cluster", "nowhere"), "local:N or tcp://HOST:PORT")
    assert_usage_error(run_py(*base, "--cluster", "local:0"), "local:N")


def test_without_the_extra_the_simulation_runs_and_cluster_is_one_line(tmp_path: Path) -> None:
    # A `distributed` that cannot be imported, as when the [cluster] extra is not installed.
    hidden = tmp_path / "hidden" / "distributed"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'distributed'\", name='distributed')\n"
    )
    env = {"PYTHONPATH": str(hidden.parent)}
    plain = run_py("explore", "--scenario", "retries", "--seeds", "3", "--jobs", "2", **env)
    assert plain.returncode == 0, plain.stderr
    assert "PASS" in plain.stdout
    assert_usage_error(
        run_py("explore", "--scenario", "retries", "--seeds", "3", "--cluster", "local:2", **env),
        "--cluster needs Dask distributed: pip install 'trio-saga[cluster]'",
    )
    code = (
        "import sys, trio_saga, trio_saga.cli, trio_saga.explore;"
        " from trio_saga.explore import explore; explore('retries', 2);"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=dict(os.environ, TRIO_SAGA_SCENARIOS=str(TEST_SCENARIOS)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


# -- chunks ------------------------------------------------------------------------------------


def test_chunks_are_about_a_second_of_work_and_cover_every_seed_once() -> None:
    assert seeds_per_chunk([]) == 1
    assert seeds_per_chunk([0.1] * 5) == 10
    assert seeds_per_chunk([0.004, 0.006]) == 200
    assert seeds_per_chunk([0.0]) == 256
    assert seeds_per_chunk([3.0]) == 1
    sizes = itertools.chain([1, 1], itertools.repeat(10))
    got = list(chunks(list(range(100)), 0, 2, lambda: next(sizes)))
    assert [seed for chunk in got for seed in chunk] == list(range(100))
    assert [len(c) for c in got][:4] == [1, 1, 10, 10]
    assert len(got[-1]) == 1  # the tail shrinks, so the last seeds spread over the workers
    endless = chunks(None, 7, 2, lambda: 3)
    assert [next(endless) for _ in range(2)] == [[7, 8, 9], [10, 11, 12]]
