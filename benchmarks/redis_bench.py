#!/usr/bin/env python3
# The benchmark of issue 13: it owns how the Redis figures are measured and printed. It must
# never pass or fail anything on timing (it reports; the reader judges) and never touch a
# server it did not start: it starts its own on a free 127.0.0.1 port.
"""Sagas per second through the cluster (three shop service processes over Redis Streams),
beside the simulation of the same orders, and the time from a SIGKILL to the first step the
restarted process takes.

    python benchmarks/redis_bench.py              # default sizes
    python benchmarks/redis_bench.py --sagas 100 --kills 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from trio_saga import Simulation, orders, simulate
from trio_saga.redis.cluster import Cluster, ClusterResult
from trio_saga.redis.server import private_server
from trio_saga.shop import SHOP
from trio_saga.trace import US


def cluster_run(url: str, count: int, every: float, faults: list[str]) -> ClusterResult:
    cluster = Cluster(
        url=url,
        saga=SHOP,
        saga_arg="trio_saga.shop:SHOP",
        orders=orders(count, every=every),
        state={},
        faults=faults,
        seed=1,
        timeout_s=120,
    )
    return trio.run(cluster.run)


def busy_span_s(done: ClusterResult) -> float:
    """From the first order to the last saga's end, as the streams recorded them."""
    ends = [r.ended_seq for r in done.result.saga_log if r.ended_seq is not None]
    starts = [r.started_seq for r in done.result.saga_log]
    records = done.result.trace.records
    return (records[max(ends)].t_us - records[min(starts)].t_us) / US


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    with private_server() as server:
        print(f"redis-server {server.binary} on port {server.port}")
        small = cluster_run(server.url, max(1, args.sagas // 3), 0.0, [])
        print(
            f"throughput   {max(1, args.sagas // 3) / busy_span_s(small):8.1f} sagas/s over Redis"
            f" ({max(1, args.sagas // 3)} sagas at once: each commit stores the whole state,"
            " so a larger run is slower per saga)"
        )
        wall = time.perf_counter()
        burst = cluster_run(server.url, args.sagas, 0.0, [])
        if not burst.result.ok or burst.stuck:
            raise SystemExit("the throughput run failed its oracle")
        span = busy_span_s(burst)
        sim = simulate(Simulation(orders=orders(args.sagas)))
        print(
            f"throughput   {args.sagas / span:8.1f} sagas/s over Redis ({args.sagas} sagas at once,"
            f" {span:.2f}s first order to last end; {time.perf_counter() - wall:.1f}s with"
            f" start-up and quiet)"
        )
        print(
            f"             {args.sagas / sim.wall_s:8.1f} sagas/s in the simulation, same"
            f" orders, this machine, this run (ratio {sim.wall_s / span:.3f})"
        )
        faults = [
            f"crash:service={service},at={1.0 + 1.0 * i},downtime=0"
            for i, service in enumerate(
                [("inventory", "payment", "shipping")[k % 3] for k in range(args.kills)]
            )
        ]
        killed = cluster_run(server.url, 40 + 20 * args.kills, 0.05, faults)
        if not killed.result.ok or killed.stuck:
            raise SystemExit("the kill run failed its oracle")
        times = [t for _, t in killed.recoveries]
        for service, seconds in killed.recoveries:
            print(f"recovery     {seconds * 1000:8.1f} ms  SIGKILL of {service} -> its next step")
        if times:
            print(
                f"recovery     {statistics.median(times) * 1000:8.1f} ms median of"
                f" {len(times)} kills (restart through the fork server, drain of its own"
                " pending entries, the first commit)"
            )


if __name__ == "__main__":
    main()
