"""Exploring many seeds of a scenario: parallel runs, swarm fault mixes, the outcome matrix,
shrinking every failure to a replay file. The engine only: its text is `explore_text.py`, its
commands (`run.py explore`, `run.py replay`) are in `commands.py`.

This module owns the fan-out of runs to worker processes, what a worker sends back (a small
picklable `RunSummary`) and the fault-kind x outcome matrix. It must never
decide what is correct (the oracle does) nor change a run: a worker runs exactly
`scenario.simulation(seed, faults=...)`, so any seed it reports replays the same in one process.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from faults import Decision

from .errors import SagaError
from .saga import SagaDefinition, saga_ref
from .scenario import Scenario
from .shrink import (
    MAX_TESTS,
    ReplayFile,
    scenario_text,
    shrink,
    trace_digest,
    violation_of,
)
from .simulation import handler_error, simulate
from .swarm import swarm_faults, swarm_scenario

if TYPE_CHECKING:
    from .cluster import ClusterPool

DEFAULT_SEEDS = 100

#: Failing seeds shrunk in full; the rest get a replay file with all their decisions, which
#: replays just as exactly, only without the minimisation.
MAX_SHRINKS = 20

#: Replay files written by default (each costs a shrink and a full re-run): one per distinct
#: failure signature first, then more failing seeds in seed order. All are still listed.
DEFAULT_MAX_REPLAYS = 10

#: Outcome columns of the matrix; the first four count sagas, "violated" counts runs.
OUTCOME_COLUMNS = ("completed", "compensated", "failed", "stuck", "violated")

#: Matrix rows: a fault kind as the trace counts it -> the row it belongs to.
FAMILY = {
    "drop": "drop",
    "delay": "delay",
    "duplicate": "duplicate",
    "reorder": "reorder",
    "partition": "partition",
    "partition_drop": "partition",
    "crash_after_commit": "crash after commit",
    "crash_at": "crash at a time",
    "crash_before_commit": "crash before commit",
}
ROWS = tuple(dict.fromkeys(FAMILY.values()))
ALL_RUNS, NO_FAULTS = "all runs", "no faults"


# -- what a worker sends back ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunSummary:
    """One seed's run, small enough to pickle back cheaply; decisions only when it failed."""

    seed: int
    faults: tuple[str, ...]
    counts: dict[str, int]
    fault_counts: dict[str, int]
    violations: tuple[tuple[str, str | None, str], ...]  # (invariant, saga, detail)
    decisions: tuple[Decision, ...] | None
    virtual_us: int
    trace_lines: int
    digest: str | None = None
    wall_s: float = attrs.field(default=0.0, eq=False)

    @property
    def violated(self) -> bool:
        return bool(self.violations)

    @property
    def invariants(self) -> list[str]:
        """Every invariant this run broke, in the order the oracle reported them."""
        return list(dict.fromkeys(v[0] for v in self.violations))

    @property
    def signature(self) -> tuple[str, str]:
        """What kind of failure this is: the first invariant and where it broke (its detail
        with saga names and numbers taken out), so that 190 failing seeds of one bug count
        as one signature."""
        invariant, _, detail = self.violations[0]
        return invariant, re.sub(r"\d+(\.\d+)?", "N", detail)

    @property
    def families(self) -> list[str]:
        """The matrix rows this run belongs to: the fault kinds it actually injected."""
        found = {FAMILY.get(kind, kind) for kind, n in self.fault_counts.items() if n}
        return [row for row in ROWS if row in found] + sorted(found - set(ROWS))


@attrs.frozen(kw_only=True)
class Job:
    """What every run of one exploration shares; pickled once into each worker."""

    scenario: Scenario
    swarm: bool = False
    #: The saga the runs use: the scenario's own, or another (a planted bug) given to explore.
    saga: SagaDefinition
    digests: bool = False
    #: Fault specs added to every run (explore --fault), beside the scenario's or the swarm's.
    extra: tuple[str, ...] = ()
    scenario_toml: str | None = None  # read once here: workers may see another directory
    max_tests: int = MAX_TESTS

    def faults(self, seed: int) -> tuple[str, ...]:
        if self.swarm:
            return swarm_faults(seed, max(self.scenario.span, 1.0), self.saga) + self.extra
        return tuple(self.scenario.faults) + self.extra

    def scenario_for(self, seed: int) -> Scenario:
        """The scenario seed `seed` runs: with swarm, its orders may vary (issue 11)."""
        if self.swarm:
            return swarm_scenario(seed, self.scenario, self.saga)
        return self.scenario

    def simulation(self, seed: int, **options: Any) -> Any:
        """Seed `seed`'s run: a handler that raises is a finding like a broken invariant."""
        return self.scenario_for(seed).simulation(
            seed, saga=self.saga, raise_is_violation=True, **options
        )


def _with_ref(saga: SagaDefinition) -> SagaDefinition:
    ref = saga_ref(saga)
    return saga if ref is None or ref == saga.ref else attrs.evolve(saga, ref=ref)


class RunCrashed(SagaError):
    """A run raised outside the services' handlers (whose raise is a finding, a violation of
    `every handler returns`): a saga's own check or its services' factory is broken."""


def run_seed(job: Job, seed: int) -> RunSummary:
    """Run one seed of `job` in this process."""
    faults = job.faults(seed)
    sim = job.simulation(seed, faults=faults, keep_trace=job.digests)
    try:
        result = simulate(sim)
    except Exception as raised:  # the saga's own code around the run: name the seed
        exc = handler_error(raised).original
        raise RunCrashed(
            f"seed {seed} of {job.scenario.name}: the run raised {type(exc).__name__}: {exc}"
            f" (faults: {', '.join(faults) or 'none'})"
        ) from None
    counts = result.counts()
    counts["stuck"] = counts.pop("in_progress", 0)
    return RunSummary(
        seed=seed,
        faults=faults,
        counts=counts,
        fault_counts=dict(result.fault_counts),
        violations=tuple((v.invariant, v.saga_id, v.detail) for v in result.violations),
        decisions=tuple(result.decisions) if result.violations else None,
        virtual_us=result.virtual_us,
        trace_lines=len(result.trace),
        digest=trace_digest(result) if job.digests else None,
        wall_s=result.wall_s,
    )


def shrink_run(job: Job, run: RunSummary, *, minimise: bool = True) -> ReplayFile:
    """The replay file of a failing run: shrunk to a minimal set of decisions (or, with
    `minimise=False`, all of them), with the digest of the trace its replay gives.

    Should even the full list of decisions fail to bring the violation back (a fault key that
    matched two transmissions, which only a broken system publishing an event twice can
    cause), the file falls back to the seed and the fault specs, which re-run the original
    exactly, so every failing seed keeps a command that reproduces it.
    """
    if run.decisions is None or not run.violations:
        raise ValueError(f"seed {run.seed} did not fail: nothing to shrink")
    invariant = run.violations[0][0]
    decisions: tuple[Decision, ...] | None = run.decisions
    tests, shrunk = 0, False
    scenario = job.scenario_for(run.seed)
    if minimise:
        found_min = shrink(
            scenario, run.decisions, invariant, saga=job.saga, max_tests=job.max_tests
        )
        tests, shrunk = found_min.tests, found_min.reproduced
        decisions = found_min.decisions
    found, result = None, None
    for attempt in (decisions, None):
        result = simulate(job.simulation(run.seed, faults=run.faults, decisions=attempt))
        found = violation_of(result, invariant)
        if found is not None:
            decisions = attempt
            break
    assert result is not None
    return ReplayFile(
        scenario=job.scenario.name,
        seed=run.seed,
        faults=run.faults,
        decisions=decisions,
        invariant=invariant,
        saga=saga_ref(job.saga) or f"(unnamed saga {job.saga.name})",
        saga_id=found.saga_id if found else run.violations[0][1],
        detail=found.detail if found else run.violations[0][2],
        violated=tuple(dict.fromkeys(v[0] for v in run.violations)),
        swarm=job.swarm,
        shrunk=shrunk and found is not None and decisions is not None,
        recorded=len(run.decisions),
        tests=tests,
        trace_digest=trace_digest(result),
        scenario_toml=job.scenario_toml if scenario is job.scenario else scenario_text(scenario),
    )


# -- the worker processes ----------------------------------------------------------------------

_JOB: Job | None = None


def _init_worker(job: bytes, path: list[str]) -> None:
    """Unpickle the job after putting the parent's extra import folders on sys.path: a user's
    saga module found beside its scenario file is not on a fresh interpreter's path."""
    global _JOB
    for folder in reversed(path):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    _JOB = pickle.loads(job)


def _run_chunk(seeds: Sequence[int]) -> list[RunSummary]:
    assert _JOB is not None
    return [run_seed(_JOB, seed) for seed in seeds]


def _shrink_task(run: RunSummary, minimise: bool) -> ReplayFile:
    assert _JOB is not None
    return shrink_run(_JOB, run, minimise=minimise)


def _cluster_pool(address: str, job: Job) -> ClusterPool:
    """The Dask backend (trio_saga/cluster.py), imported only here: it needs the optional
    [cluster] extra, which the simulation does without."""
    try:
        from .cluster import ClusterPool
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("distributed", "dask"):
            raise  # the extra is there but broken: not a missing extra
        raise SagaError(
            "--cluster needs Dask distributed: pip install 'trio-saga[cluster]'"
        ) from None
    return ClusterPool(
        address, initializer=_init_worker, initargs=(pickle.dumps(job), list(sys.path))
    )


def _pool(jobs: int, job: Job) -> cf.Executor:
    # spawn: a worker starts from a clean interpreter, so nothing the parent did (trio's
    # state, an open nursery, a pytest plugin) leaks into a run; the job is pickled once.
    context = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_init_worker,
        initargs=(pickle.dumps(job), list(sys.path)),
    )


# -- exploring ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Progress:
    done: int
    total: int | None
    violated: int
    elapsed: float
    budget_s: float | None


@attrs.define(kw_only=True)
class ExploreResult:
    scenario: str
    saga: SagaDefinition
    swarm: bool
    jobs: int
    runs: list[RunSummary]
    wall_s: float
    shrink_s: float = 0.0
    replays: dict[int, ReplayFile] = attrs.field(factory=dict)
    paths: dict[int, Path] = attrs.field(factory=dict)

    @property
    def failing(self) -> list[RunSummary]:
        return [r for r in self.runs if r.violated]

    @property
    def runs_per_s(self) -> float:
        return len(self.runs) / self.wall_s if self.wall_s > 0 else 0.0

    def matrix(self) -> list[tuple[str, dict[str, int]]]:
        return outcome_matrix(self.runs)


def explore(
    scenario: Scenario | str,
    seeds: int | Iterable[int] | None = None,
    jobs: int = 1,
    *,
    first_seed: int = 0,
    time_budget: float | None = None,
    swarm: bool = False,
    saga: SagaDefinition | None = None,
    faults: Sequence[str] = (),
    digests: bool = False,
    shrink_failures: bool = True,
    max_shrinks: int = MAX_SHRINKS,
    max_replays: int = DEFAULT_MAX_REPLAYS,
    out: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    cluster: str | None = None,
) -> ExploreResult:
    """Run many seeds of `scenario` (`seeds` of them from `first_seed`, an explicit list, or
    as many as fit in `time_budget` seconds) in `jobs` processes, then shrink each failure and,
    with `out`, save its replay file there.

    With `cluster` (`local:N` or `tcp://HOST:PORT`, a Dask scheduler) the runs go to Dask
    workers instead of `jobs` processes, with the same results.

    `saga` runs another saga than the scenario's own (tests plant bugs this way); it must
    pickle (module-level functions). With `digests` every run carries its trace digest.
    """
    if isinstance(scenario, str):
        scenario = Scenario.load(scenario)
    if jobs < 1:
        raise SagaError("--jobs must be at least 1")
    if max_replays < 0:
        raise SagaError("--max-replays must not be negative")
    job = Job(
        scenario=scenario,
        swarm=swarm,
        # Its ref is worked out here: a worker's unpickled copy cannot be found by identity.
        saga=_with_ref(scenario.saga if saga is None else saga),
        extra=tuple(faults),
        digests=digests,
        scenario_toml=scenario_text(scenario),
    )
    if time_budget is not None:
        if time_budget <= 0:
            raise SagaError("--time must be positive")
        seed_list: list[int] | None = None
    else:
        if seeds is None:
            seeds = DEFAULT_SEEDS
        if isinstance(seeds, int):
            if seeds < 1:
                raise SagaError("--seeds must be at least 1")
            seed_list = list(range(first_seed, first_seed + seeds))
        else:
            seed_list = list(seeds)
    pool: cf.Executor | None = None
    if cluster is not None:  # -- issue 14: a Dask cluster instead of local processes --
        if jobs != 1:
            raise SagaError("--cluster and --jobs cannot be combined: the workers are the jobs")
        pool = _cluster_pool(cluster, job)
        jobs = pool.workers
    elif jobs > 1:
        pool = _pool(jobs, job)
    try:
        result = _explore(job, pool, jobs, seed_list, first_seed, time_budget, progress)
        if shrink_failures and result.failing:
            started = time.perf_counter()
            chosen = replay_choice(result.failing, max_replays)
            result.replays = _shrink_all(job, pool, chosen, max_shrinks)
            result.shrink_s = time.perf_counter() - started
            if out is not None:
                result.paths = save_replays(result.replays, Path(out), scenario.name, swarm)
    except BrokenProcessPool:
        raise SagaError(
            "explore's worker processes died as they started. From a script, call explore with"
            ' jobs > 1 only under `if __name__ == "__main__":` (each worker imports the'
            " script again, as multiprocessing's spawn does)"
        ) from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return result


def _explore(
    job: Job,
    pool: cf.Executor | None,
    jobs: int,
    seed_list: list[int] | None,
    first_seed: int,
    budget: float | None,
    progress: Callable[[Progress], None] | None,
) -> ExploreResult:
    started = time.perf_counter()
    total = None if seed_list is None else len(seed_list)
    runs: list[RunSummary] = []
    violated = 0

    def report() -> None:
        if progress is not None:
            progress(
                Progress(
                    done=len(runs),
                    total=total,
                    violated=violated,
                    elapsed=time.perf_counter() - started,
                    budget_s=budget,
                )
            )

    def out_of_time() -> bool:
        return budget is not None and time.perf_counter() - started >= budget

    # issue 14: a cluster pool sizes its own chunks (about a second of work each).
    own_chunks = getattr(pool, "chunks", None)
    chunks: Iterator[list[int]] = (
        _chunks(seed_list, first_seed, jobs)
        if own_chunks is None
        else own_chunks(seed_list, first_seed)
    )
    if pool is None:
        for chunk in chunks:
            if out_of_time():
                break
            for seed in chunk:
                runs.append(run_seed(job, seed))
                violated += runs[-1].violated
                report()
    else:
        # -- issue 10, item 13: what is reported must not depend on which worker finishes
        # first. Each future knows its chunk's place in seed order; after a crash no new chunk
        # is started, the ones in flight (every earlier chunk among them, since chunks go out
        # in order) are finished, and the crash of the earliest chunk is raised: the same seed
        # a single process would have named.
        in_flight: dict[cf.Future[list[RunSummary]], int] = {}
        crashes: dict[int, RunCrashed] = {}
        submitted = 0
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < 2 * jobs and not out_of_time():
                batch = next(chunks, None)
                if batch is None:
                    exhausted = True
                    break
                in_flight[pool.submit(_run_chunk, batch)] = submitted
                submitted += 1
            if not in_flight:
                break
            finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index = in_flight.pop(future)
                try:
                    done = future.result()
                except RunCrashed as crash:
                    crashes[index] = crash
                    exhausted = True
                    continue
                for run in done:
                    runs.append(run)
                    violated += run.violated
            report()
        if crashes:
            raise crashes[min(crashes)]
        # -- end of item 13
    report()
    runs.sort(key=lambda r: r.seed)
    return ExploreResult(
        scenario=job.scenario.name,
        saga=job.saga,
        swarm=job.swarm,
        jobs=jobs,
        runs=runs,
        wall_s=time.perf_counter() - started,
    )


def _chunks(seed_list: list[int] | None, first_seed: int, jobs: int) -> Iterator[list[int]]:
    """Seeds in chunks: big enough that a worker's answer is not mostly pickling overhead,
    small enough that the last chunks keep every worker busy and the progress bar moving."""
    if seed_list is None:
        seed = first_seed
        while True:
            yield list(range(seed, seed + jobs))
            seed += jobs
    else:
        size = max(1, min(8, len(seed_list) // (8 * jobs)))
        for start in range(0, len(seed_list), size):
            yield seed_list[start : start + size]


def replay_choice(failing: Sequence[RunSummary], limit: int) -> list[RunSummary]:
    """The failing runs that get a replay file: the first of each distinct signature, then
    the rest in seed order, `limit` in all."""
    firsts: list[RunSummary] = []
    seen: set[tuple[str, str]] = set()
    for run in failing:
        if run.signature not in seen:
            seen.add(run.signature)
            firsts.append(run)
    rest = [r for r in failing if r not in firsts]
    return sorted((firsts + rest)[:limit], key=lambda r: r.seed)


def _shrink_all(
    job: Job, pool: cf.Executor | None, failing: list[RunSummary], max_shrinks: int
) -> dict[int, ReplayFile]:
    # The first failure of each invariant is shrunk before any second one of the same.
    order: list[RunSummary] = []
    seen: set[str] = set()
    for run in failing:
        if run.violations[0][0] not in seen:
            seen.add(run.violations[0][0])
            order.append(run)
    order += [r for r in failing if r not in order]
    plan = [(run, index < max_shrinks) for index, run in enumerate(order)]
    if pool is None:
        return {run.seed: shrink_run(job, run, minimise=m) for run, m in plan}
    futures = {run.seed: pool.submit(_shrink_task, run, m) for run, m in plan}
    return {seed: futures[seed].result() for seed in sorted(futures)}


def save_replays(
    replays: dict[int, ReplayFile], out: Path, scenario: str, swarm: bool
) -> dict[int, Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SagaError(f"cannot create --out directory {out}: {exc.strerror or exc}") from None
    tag = "-swarm" if swarm else ""
    return {
        seed: replay.save(out / f"{scenario}{tag}-seed{seed}.json")
        for seed, replay in sorted(replays.items())
    }


# -- the matrix --------------------------------------------------------------------------------


def outcome_matrix(runs: Sequence[RunSummary]) -> list[tuple[str, dict[str, int]]]:
    """Rows: all runs, then each fault kind that some run injected, then runs without any
    fault. Cells: runs, sagas per outcome, and runs that violated an invariant."""
    rows: dict[str, dict[str, int]] = {}

    def add(row: str, run: RunSummary) -> None:
        cells = rows.setdefault(row, dict.fromkeys(("runs", *OUTCOME_COLUMNS), 0))
        cells["runs"] += 1
        for outcome in OUTCOME_COLUMNS[:4]:
            cells[outcome] += run.counts.get(outcome, 0)
        cells["violated"] += run.violated

    for run in runs:
        add(ALL_RUNS, run)
        families = run.families
        for family in families:
            add(family, run)
        if not families:
            add(NO_FAULTS, run)
    order = [ALL_RUNS, *ROWS, NO_FAULTS]
    return [(row, rows[row]) for row in order + sorted(set(rows) - set(order)) if row in rows]
