"""`run.py redis NAME|PATH [--seed N] [--redis URL] [--trace P] [--report P] [--timeout S]`:
a scenario run for real over Redis, with the same summary and exit statuses as `scenario`.

This module owns what that command prints, writes and returns. It must never judge a run
itself (the oracle and the scenario's [expect] do) and never let a user error escape as
anything but a SagaError with a one-line message. Without --redis it starts and stops a
server of its own; with it, the run keeps to a fresh namespace of keys on that server.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import trio

from ..errors import EXIT_FAILED, EXIT_OK, SagaError
from ..files import check_writable, write_text
from ..saga import saga_argument
from ..scenario import Scenario
from ..summary import summarize
from . import RedisRunError, require

if TYPE_CHECKING:
    from .cluster import Cluster, ClusterResult


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "redis", help="run one scenario for real: a process per service over Redis Streams"
    )
    parser.add_argument("name", help="a named scenario or a scenario file")
    parser.add_argument(
        "--seed", type=int, default=None, dest="scenario_seed", help="the seed (the file's)"
    )
    parser.add_argument(
        "--redis", metavar="URL", default=None, help="use this server (default: start one)"
    )
    parser.add_argument("--trace", metavar="PATH", help="write the rebuilt JSONL trace here")
    parser.add_argument("--report", metavar="PATH", help="write a self-contained HTML report")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="longest wait for quiet after the last order and fault (60)",
    )


def check_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.scheme != "redis" or not parsed.hostname:
        raise RedisRunError(f"--redis must be a redis://HOST:PORT URL, got {url!r}")
    try:
        port = parsed.port or 6379
    except ValueError:
        raise RedisRunError(f"--redis has a bad port: {url!r}") from None
    return parsed.hostname, port


def _run(cluster: Cluster) -> ClusterResult:
    """The run; its errors out of trio's and coredis's exception groups, as one line."""
    import coredis.exceptions

    try:
        return trio.run(cluster.run)
    except Exception as raised:
        exc: BaseException = raised
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if isinstance(exc, SagaError):
            raise exc from None
        if isinstance(exc, coredis.exceptions.RedisError | OSError):
            raise RedisRunError(
                f"the run lost its Redis server: {type(exc).__name__}: {exc}"
            ) from None
        raise


def redis_command(args: argparse.Namespace) -> int:
    require()
    from .cluster import DEFAULT_TIMEOUT_S, Cluster
    from .server import ping, private_server

    scenario = Scenario.load(args.name)
    timeout = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise SagaError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    for path in (args.trace, args.report):
        if path is not None:
            check_writable(path)
    saga_arg = saga_argument(scenario.saga)
    if saga_arg is None:
        raise SagaError(f"saga {scenario.saga.name} cannot be found again by its service processes")
    seed = scenario.seed if args.scenario_seed is None else args.scenario_seed

    def cluster(url: str) -> Cluster:
        return Cluster(
            url=url,
            saga=scenario.saga,
            saga_arg=saga_arg,
            orders=scenario.orders(),
            state=scenario.state,
            faults=scenario.faults,
            seed=seed,
            timeout_s=timeout,
        )

    if args.redis is not None:
        host, port = check_url(args.redis)
        if not ping(host, port, timeout=1.0):
            raise RedisRunError(f"no Redis server answers at {args.redis}")
        done = _run(cluster(args.redis))
    else:
        with private_server() as server:
            done = _run(cluster(server.url))
    result = done.result
    mismatches = scenario.outcome_mismatches(result)
    mismatches += done.unexpected
    if done.stuck:
        mismatches.insert(0, f"stuck: not quiet within {timeout:g}s after the last order")
    print(
        summarize(
            f"{scenario.name} (redis)",
            result,
            seed=seed,
            description=scenario.description,
            expected=None if scenario.expect is None else dict(scenario.expect),
            mismatches=mismatches,
        ),
        flush=True,
    )
    written = []
    if args.trace is not None:
        write_text(args.trace, result.trace.dump())
        written.append(f"trace {args.trace} ({len(result.trace)} lines)")
    if args.report is not None:
        from ..report import write_report

        write_report(args.report, f"{scenario.name} over Redis (seed {seed})", result, scenario)
        written.append(f"report {args.report}")
    if written:
        print("wrote      " + ", ".join(written), flush=True)
    return EXIT_OK if result.ok and not mismatches else EXIT_FAILED
