"""explore on a Dask distributed cluster (`run.py explore --cluster local:N | tcp://HOST:PORT`).

This module owns the Dask backend of explore: reaching a scheduler (or starting a LocalCluster
of worker processes on 127.0.0.1), checking that every worker runs the same code and versions
as this client, installing the exploration's job on every worker through a worker plugin
(so a worker the nanny restarts gets it too), sizing chunks of seeds to about a second of work,
and an executor that explore's own loop drives exactly as it drives a local process pool.

It must never change a run or decide anything about one: like a process pool's initializer,
the plugin hands explore's own `_init_worker` its job, and the workers run explore's own task
functions, so a seed gives the same `RunSummary` and replay file here as under `--jobs`. It
knows nothing of runs (it never imports explore: no import circle). It must never hang on an
unreachable scheduler (every wait is bounded) and never be imported by the simulation:
importing it needs the optional `[cluster]` extra (distributed), so explore imports it only
for `--cluster`.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.metadata
import itertools
import logging
import os
import platform
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.config
import distributed
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.scheduler import KilledWorker

from .errors import ClusterError

#: How long to wait for a scheduler to answer, and for it to have a worker, before giving up
#: with one line. Overridden (seconds) by TRIO_SAGA_CLUSTER_TIMEOUT.
CONNECT_TIMEOUT_S = 10.0
TIMEOUT_ENV = "TRIO_SAGA_CLUSTER_TIMEOUT"

#: A chunk is sized to about this much work: Dask costs 2-3 ms a task, so this keeps it under
#: 1%, while the chunks left at the end are still small enough to keep every worker busy.
CHUNK_S = 1.0
MAX_CHUNK = 256

#: The distributions whose versions must match between the client and every worker: a
#: different trio, attrs or Python could give a different run for the same seed, a different
#: distributed/cloudpickle/msgpack could fail to move the job.
DISTRIBUTIONS = ("trio-saga", "trio", "attrs", "distributed", "dask", "cloudpickle", "msgpack")

#: Dask's statistical profiler samples every worker thread's stack every 10 ms, taking the GIL
#: from the simulation it samples: a sixth of a worker's time. Nothing here reads profiles.
#: (Remote workers: DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False, see the README.)
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}

_PACKAGES = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "faults")


# -- versions ----------------------------------------------------------------------------------

_code_digest: str | None = None


def versions() -> dict[str, str]:
    """What must be the same everywhere: Python, the distributions above, and a digest of the
    code of trio_saga and faults (an editable install keeps its version number while its code
    changes, and two checkouts of one version can differ)."""
    global _code_digest
    if _code_digest is None:
        digest = hashlib.sha256()
        for package in _PACKAGES:
            for path in sorted(package.rglob("*.py")):
                digest.update(path.relative_to(package.parent).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        _code_digest = digest.hexdigest()[:16]
    found = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "(not installed)"
    found["trio-saga code"] = _code_digest
    return found


def differences(here: Mapping[str, str], there: Mapping[str, str]) -> list[str]:
    return [
        f"{name} {there.get(name, '(unknown)')} there, {value} here"
        for name, value in here.items()
        if there.get(name) != value
    ]


def check_versions(here: Mapping[str, str], workers: Mapping[str, Mapping[str, str]]) -> None:
    """Refuse, in one line, a cluster any of whose workers differs from this client."""
    for address, there in sorted(workers.items()):
        found = differences(here, there)
        if found:
            raise ClusterError(
                f"worker {address} differs from this client: {'; '.join(found)}"
                " (run the same venv everywhere)"
            )


# -- the worker side ---------------------------------------------------------------------------

#: Each exploration's initializer and its arguments (the job), installed on this worker
#: process by the plugin, by exploration token: several explorations may share one cluster.
_JOBS: dict[str, tuple[Callable[..., None], tuple[Any, ...]]] = {}
#: Why a job could not be installed here (its versions differ), by token.
_REFUSED: dict[str, str] = {}
#: explore's task functions read the job from a module global (as in a process pool), so the
#: tasks of one worker process run one at a time. Threads of one process would share the GIL
#: anyway: a worker's parallelism is its processes (`dask worker --nworkers N --nthreads 1`).
_LOCK = threading.Lock()


class JobPlugin(WorkerPlugin):
    """Installs one exploration's job on every worker, including those that join or are
    restarted later: the scheduler keeps registered plugins and gives them to new workers."""

    def __init__(
        self,
        token: str,
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
        expected: Mapping[str, str],
    ) -> None:
        self.token = token
        self.initializer = initializer
        self.initargs = initargs
        self.expected = dict(expected)

    def setup(self, worker: distributed.Worker) -> None:
        found = differences(self.expected, versions())
        if found:  # refuse to run: its results might differ from the client's
            _REFUSED[self.token] = (
                f"worker {worker.address} differs from the client: {'; '.join(found)}"
            )
            return
        _JOBS[self.token] = (self.initializer, self.initargs)

    def teardown(self, worker: distributed.Worker) -> None:
        _JOBS.pop(self.token, None)
        _REFUSED.pop(self.token, None)


def _call(token: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one of explore's task functions on a worker with this exploration's job."""
    installed = _JOBS.get(token)
    if installed is None:
        raise ClusterError(
            _REFUSED.get(token, f"this worker has no job {token}: its plugin did not run")
        )
    initializer, initargs = installed
    with _LOCK:
        initializer(*initargs)  # cheap (it sets a global); another exploration may have run
        return fn(*args)


def _worker_pid() -> int:
    return os.getpid()


# -- the client side ---------------------------------------------------------------------------


def connect_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return CONNECT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ClusterError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


def parse_address(address: str) -> tuple[int | None, str | None]:
    """`local:N` -> (N, None); `tcp://HOST:PORT` -> (None, the address)."""
    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster local:N needs a number of workers >= 1, got {address!r}")
        workers = int(count)
        if workers > 4 * (os.cpu_count() or 1):
            raise ClusterError(
                f"--cluster {address} is more than 4 workers per core;"
                f" this machine has {os.cpu_count()} cores"
            )
        return workers, None
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not address.startswith("tcp://") or not host or not port.isdigit():
        raise ClusterError(
            f"--cluster must be local:N or tcp://HOST:PORT (a Dask scheduler), got {address!r}"
        )
    return None, address


def seeds_per_chunk(seed_s: Sequence[float]) -> int:
    """About CHUNK_S of work, from the wall times of the seeds run so far; one seed until one
    came back (the first answers come back quickly and set the size)."""
    if not seed_s:
        return 1
    mean = sum(seed_s) / len(seed_s)
    return max(1, min(MAX_CHUNK, round(CHUNK_S / mean) if mean > 0 else MAX_CHUNK))


def chunks(
    seed_list: list[int] | None, first_seed: int, workers: int, size: Callable[[], int]
) -> Iterator[list[int]]:
    """The seeds (a list, or consecutive from `first_seed` for ever) in chunks of `size()`
    seeds, asked afresh for each chunk; near the end of a list smaller, so that the last
    chunks spread over every worker instead of one finishing alone."""
    seeds: Iterator[int] = itertools.count(first_seed) if seed_list is None else iter(seed_list)
    left = None if seed_list is None else len(seed_list)
    while True:
        count = size()
        if left is not None:
            count = max(1, min(count, left // (2 * workers)))
        chunk = list(itertools.islice(seeds, count))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


class ClusterPool(cf.Executor):
    """What explore's loop submits to instead of a process pool: the same task functions,
    run on the cluster's workers after `initializer(*initargs)`, as in a process pool."""

    def __init__(
        self, address: str, *, initializer: Callable[..., None], initargs: tuple[Any, ...]
    ) -> None:
        local_workers, remote = parse_address(address)
        timeout = connect_timeout()
        self.address = address
        # Dask's client logs each failed reconnect with a traceback; a lost scheduler is one
        # line of ours instead (ClusterError). Restored on shutdown.
        self._client_log = logging.getLogger("distributed.client")
        self._client_log_level = self._client_log.level
        self._client_log.setLevel(logging.CRITICAL)
        self._cluster: distributed.LocalCluster | None = None
        if local_workers is not None:
            with dask.config.set(WORKER_CONFIG):  # the nannies keep it for restarts too
                self._cluster = self._local_cluster(local_workers)
        try:
            self._client = self._connect(self._cluster or remote, timeout)
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            self._client_log.setLevel(self._client_log_level)
            raise
        self._token = f"trio-saga-explore-{uuid.uuid4().hex}"
        self._seed_s: list[float] = []  # wall time per seed, as the workers measured it
        self._stats = threading.Lock()
        try:
            here = versions()
            check_versions(here, self._client.run(versions))
            self._client.register_plugin(
                JobPlugin(self._token, initializer, initargs, here), name=self._token
            )
            self.workers = max(1, sum(self._client.nthreads().values()))
            self._executor = self._client.get_executor(pure=False)
        except BaseException:
            self._close()
            raise

    @staticmethod
    def _local_cluster(workers: int) -> distributed.LocalCluster:
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            # Without a dashboard the scheduler still serves /health, by default on 8787 of
            # all interfaces (a warning if taken): a free port of the loopback instead.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )

    @staticmethod
    def _connect(target: Any, timeout: float) -> distributed.Client:
        try:
            client = distributed.Client(target, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {target} within {timeout:g}s"
                f" ({type(exc).__name__})"
            ) from None
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            client.close()
            raise ClusterError(
                f"the Dask scheduler at {target} has no worker (waited {timeout:g}s)"
            ) from None
        return client

    # -- chunks --------------------------------------------------------------------------------

    def seeds_per_chunk(self) -> int:
        with self._stats:
            return seeds_per_chunk(self._seed_s)

    def chunks(self, seed_list: list[int] | None, first_seed: int) -> Iterator[list[int]]:
        return chunks(seed_list, first_seed, self.workers, self.seeds_per_chunk)

    def _observe(self, result: Any) -> None:
        # A chunk's answer is a list of RunSummary, each with the wall time of its run.
        if isinstance(result, list):
            walls = [w for w in (getattr(run, "wall_s", None) for run in result) if w is not None]
            with self._stats:
                self._seed_s.extend(walls)
                del self._seed_s[:-200]  # the recent seeds: a scenario's cost drifts little

    # -- the executor --------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if kwargs:
            raise TypeError("ClusterPool.submit takes positional arguments only")
        inner = self._executor.submit(_call, self._token, fn, *args)
        outer: cf.Future[Any] = cf.Future()

        def transfer(done: cf.Future[Any]) -> None:
            lost = ClusterError(f"lost the Dask scheduler at {self.address} mid-run")
            if done.cancelled():  # Dask cancels every future of a client that lost it
                outer.set_exception(lost)
                return
            exc = done.exception()
            if exc is None:
                result = done.result()
                self._observe(result)
                outer.set_result(result)
            elif isinstance(exc, KilledWorker):
                outer.set_exception(
                    ClusterError(
                        f"a task killed every worker that ran it, so the cluster gave up: {exc}"
                    )
                )
            elif isinstance(exc, cf.CancelledError | distributed.client.FutureCancelledError):
                outer.set_exception(lost)
            else:
                outer.set_exception(exc)

        inner.add_done_callback(transfer)
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._close()

    def _close(self) -> None:
        # In order: the job leaves the workers (a standing cluster keeps no stale plugin),
        # then this client, then the cluster this client started.
        try:
            try:
                if self._client.status == "running":
                    self._client.unregister_worker_plugin(self._token)
            except (OSError, TimeoutError, ValueError, KeyError):
                pass
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
            self._client_log.setLevel(self._client_log_level)

    def worker_pids(self) -> dict[str, int]:
        result: dict[str, int] = self._client.run(_worker_pid)
        return result


__all__ = [
    "ClusterPool",
    "JobPlugin",
    "check_versions",
    "chunks",
    "parse_address",
    "seeds_per_chunk",
    "versions",
]
