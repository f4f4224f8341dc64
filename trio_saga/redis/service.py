"""One saga service as its own OS process: `python -m trio_saga.redis.service --redis URL
--ns NAMESPACE --service NAME --saga REF`.

This module owns the life of one service's process: take a new epoch (which fences off any
earlier process of the same service, a zombie included), rebuild the participant from its
stored state and inbox, relay what a crash left in the outbox, drain its own pending entries,
then read, apply the faults that strike where a consumer reads (drop, delay, duplicate,
reorder, a partition's cut), run each handler against the outside world in Redis (`world.py`:
its calls are recorded before the commit), crash between those effects and the commit when a
`crash:before=` fault says so, commit each step atomically, crash right after a commit when a
`crash:after=` fault says so (each a real SIGKILL of itself), relay, and sweep with
XAUTOCLAIM for entries left unacknowledged. It must never decide a step itself (the
participant does), never write a key but through the broker's and the world's scripts, and
never import code that its command line did not name (the run plan in Redis is data: fault
specs, saga ids).

Exit statuses: 3 when fenced off (a newer process of this service exists), 4 when its stored
state disagreed with what it held (it is restarted and reloads), 5 when it lost the server (a
broker restart: it is started again when the server answers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

from faults.base import Fault, RateFault, Transmission
from faults.crash import ANY, Crash
from faults.forced import ForcedFailure
from faults.partition import Partition
from faults.registry import parse_fault

from ..participant import Participant, StepContext
from ..saga import SagaDefinition, load_saga
from ..trace import US
from .broker import COMMITTED, DUPLICATE, FENCED, Entry, Keys, RedisBroker
from .codec import Codec
from .world import RedisWorld, WorldClient

EXIT_FENCED, EXIT_RELOAD, EXIT_BROKER_LOST = 3, 4, 5
#: How long an entry sits unacknowledged before the sweep claims it, and how often it looks.
MIN_IDLE_MS = 500
SWEEP_EVERY_S = 0.25
BLOCK_MS = 50
BATCH = 100
#: What the supervisor's trace line says a `crash:after=` kill interrupted.
AFTER_COMMIT = "after a commit, before the relay"


#: Lua: whether a `crash:after=` or `crash:before=` fault is due (its count so far below
#: `times`); if so, count it and leave the downtime and what the crash interrupted for the
#: supervisor ("SECONDS|TEXT"). KEYS: crashes, downtime, faults. ARGV: field, times, downtime
#: and text, the fault count's name.
CRASH_DUE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
return 1
"""


class Fenced(Exception):
    """A newer process of this service has taken over: this one must stop at once."""


class Reload(Exception):
    """Stored state and this process's copy disagree: start again from the stored one."""


class ReadFaults:
    """The scenario's faults as they strike this service's process, decided from the plan's
    seed (forced failures from a hash of step and saga, so every process agrees)."""

    def __init__(self, plan: dict[str, Any], saga: SagaDefinition, service: str, epoch: int):
        self.saga = saga
        self.service = service
        self.seed = int(plan["seed"])
        self.t0: float | None = None  # set by the cluster once every service is up
        self.rng = random.Random(f"{self.seed}:{service}:{epoch}")
        faults: list[Fault] = [parse_fault(spec) for spec in plan["faults"]]
        for fault in faults:
            fault.bind(saga)
        self.net = [f for f in faults if isinstance(f, RateFault)]
        self.forced = [f for f in faults if isinstance(f, ForcedFailure)]
        for step, saga_ids in sorted(plan["forced"].items()):
            forced = ForcedFailure(step=step)
            forced.bind(saga)
            for saga_id in saga_ids:
                forced.force(saga_id)
            self.forced.append(forced)
        self.crashes = [
            (index, f)
            for index, f in enumerate(faults)
            if isinstance(f, Crash) and f.service == service and f.after is not None
        ]
        self.precommit = [
            (index, f)
            for index, f in enumerate(faults)
            if isinstance(f, Crash) and f.service == service and f.before is not None
        ]
        self.cuts = [f for f in faults if isinstance(f, Partition) and f.service == service]
        self.decided: list[str] = []

    def now_us(self) -> int:
        return 0 if self.t0 is None else round((time.time() - self.t0) * US)

    def cut(self, direction: str) -> bool:
        if self.t0 is None:
            return False
        now = self.now_us()
        return any(
            c.direction in ("both", direction)
            and round(c.start * US) <= now < round((c.start + c.duration) * US)
            for c in self.cuts
        )

    def on_read(self, entry: Entry) -> list[tuple[str, int]]:
        """(kind, value) of each network decision for this read."""
        t = Transmission(
            source=self.saga.publisher.get(entry.kind, ""),
            dest=self.service,
            saga_id=entry.payload.saga_id,
            what=entry.kind,
            attempt=1,
            now=self.now_us(),
        )
        return [
            (d.kind, int(d.value)) for fault in self.net for d in fault.on_transmit(t, self.rng)
        ]

    def forced_failure(self, step: str, saga_id: str) -> str | None:
        rng = random.Random(f"{self.seed}:{step}:{saga_id}")
        for fault in self.forced:
            decision = fault.on_step(step, saga_id, rng)
            if decision is not None:
                self.decided.append(f"fail_{step}")
                return str(decision.value)
        return None


async def serve(url: str, ns: str, service: str, saga_ref: str) -> int:
    """Run `service` until killed; the exit status says why it stopped on its own."""
    try:
        await _serve(url, ns, service, saga_ref)
    except BaseException as raised:  # coredis's `async with` wraps what escapes in a group
        exc = _unwrap(raised)
        if isinstance(exc, Fenced):
            print(f"{service}: fenced off by a newer process of it ({exc})", file=sys.stderr)
            return EXIT_FENCED
        if isinstance(exc, Reload):
            return EXIT_RELOAD
        if _broker_lost(exc):
            print(f"{service}: lost the Redis server ({exc})", file=sys.stderr)
            return EXIT_BROKER_LOST
        raise
    return 0


def _broker_lost(exc: BaseException) -> bool:
    """Whether `exc` says the server went away (a broker restart): the process stops, and is
    started again when the server is back. Everything it committed is in the server."""
    import coredis.exceptions
    import redis.exceptions  # the world's client (`world.py`)

    return isinstance(
        exc,
        coredis.exceptions.ConnectionError
        | coredis.exceptions.BusyLoadingError
        | redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.BusyLoadingError
        | OSError,
    )


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _serve(url: str, ns: str, service: str, saga_ref: str) -> None:
    import coredis

    saga = load_saga(saga_ref, near=None)
    keys = Keys(ns)
    client = coredis.Redis.from_url(url, decode_responses=True)
    reader = coredis.Redis.from_url(url, decode_responses=True)
    async with client, reader:
        plan = json.loads(str(await client.get(keys.plan)))
        epoch = int(await client.incr(keys.epoch(service)))
        codec = Codec.for_saga(saga, saga.make_services(plan["state"]))
        state = codec.loads(str(await client.get(keys.state(service))))
        wrap = saga.participant or Participant
        participant = wrap(state)
        participant.inbox = set(await client.smembers(keys.inbox(service)))
        broker = RedisBroker(
            client=client,
            reader=reader,
            keys=keys,
            saga=saga,
            service=service,
            codec=codec,
            epoch=epoch,
        )
        faults = ReadFaults(plan, saga, service, epoch)
        world = WorldClient(url, keys, codec)
        try:
            await Worker(saga, participant, broker, faults, world.world()).run()
        finally:
            world.close()


class Worker:
    def __init__(
        self,
        saga: SagaDefinition,
        participant: Participant,
        broker: RedisBroker,
        faults: ReadFaults,
        world: RedisWorld,
    ) -> None:
        self.saga = saga
        self.participant = participant
        self.broker = broker
        self.faults = faults
        self.world = world
        self.name = broker.service
        self.committed = False

    async def run(self) -> None:
        await self.relay()
        await self.handle_all(await self.broker.subscribe(own_pending=True, block_ms=0, count=0))
        await self.broker.client.set(self.broker.keys.ready(self.name), str(self.broker.epoch))
        swept = time.monotonic()
        while True:
            if self.faults.t0 is None:
                t0 = await self.broker.client.get(self.broker.keys.t0)
                self.faults.t0 = None if t0 is None else float(t0)
            if self.faults.cut("in"):
                await self.relay()
                await trio.sleep(BLOCK_MS / 1000)
                continue
            batch = await self.broker.subscribe(own_pending=False, block_ms=BLOCK_MS, count=BATCH)
            if time.monotonic() - swept >= SWEEP_EVERY_S:
                swept = time.monotonic()
                batch += await self.broker.redeliver(min_idle_ms=MIN_IDLE_MS, count=BATCH)
            await self.handle_all(batch)
            await self.relay()

    async def relay(self) -> None:
        if self.faults.cut("out"):
            return
        if await self.broker.publish() < 0:
            raise Fenced(f"relay refused to epoch {self.broker.epoch}")

    async def handle_all(self, batch: Sequence[Entry]) -> None:
        later: list[Entry] = []
        for entry in batch:
            copies = 1
            dropped = False
            for kind, value in self.faults.on_read(entry):
                await self.broker.count(kind)
                if kind == "drop":
                    dropped = True  # neither handled nor acked: the sweep reclaims it
                elif kind == "delay":
                    await trio.sleep(value / US)
                elif kind == "duplicate":
                    copies += value
                elif kind == "reorder":
                    later.append(entry)
                    dropped = True
            if not dropped:
                for _ in range(copies):
                    await self.step(entry)
        for entry in later:
            await self.step(entry)

    async def step(self, entry: Entry) -> None:
        payload = entry.payload
        ctx = StepContext(
            timestamp=self.faults.now_us() // US,
            forced_failure=self.faults.forced_failure,
            effects=self.world,
        )
        self.faults.decided = []
        reply: Any = None
        if payload.type == self.saga.command:
            reply, produced = self.participant.execute(payload, ctx)
        else:
            produced = self.participant.receive(payload, ctx)
        new = produced is not None
        if new:
            await self.maybe_crash_before_commit(entry, [e.type for e in produced or ()])
        outbox = list(self.participant.outbox)
        self.participant.outbox.clear()  # the stored outbox is the real one
        answer = await self.broker.ack(
            entry, state=self.participant.service, produced=outbox, reply=reply
        )
        if answer == FENCED:
            raise Fenced(f"commit refused to epoch {self.broker.epoch}")
        if answer == DUPLICATE and new and outbox:
            raise Reload  # our copy took a step the stored state had already taken
        if answer != COMMITTED:
            return
        if not self.committed:  # when this process first took a step: recovery, measured
            self.committed = True
            keys = self.broker.keys
            await self.broker.client.set(
                keys.first_step(self.name, self.broker.epoch), repr(time.time())
            )
        for kind in self.faults.decided:
            await self.broker.count(kind)
        if outbox:
            await self.maybe_crash(payload.saga_id, [e.type for e in outbox])

    async def maybe_crash(self, saga_id: str, produced: list[str]) -> None:
        for index, crash in self.faults.crashes:
            if crash.after not in produced:
                continue
            rng = random.Random(f"{self.faults.seed}:{self.name}:{saga_id}:{index}")
            if rng.random() >= crash.p:
                continue
            if await self.crash_due(index, crash, AFTER_COMMIT, "crash_after_commit"):
                os.kill(os.getpid(), signal.SIGKILL)  # right after the commit, before the relay

    async def maybe_crash_before_commit(self, entry: Entry, produced: list[str]) -> None:
        """A `crash:before=` fault: the step's effects are in the world, its commit is not
        made; the entry stays pending and the next process runs the step again."""
        for index, crash in self.faults.precommit:
            if not (crash.before == ANY or crash.before in produced):
                continue
            # The epoch in the draw: a step run again after this crash draws afresh.
            where = f"{self.name}:{entry.payload.saga_id}:{entry.kind}:{index}"
            rng = random.Random(f"{self.faults.seed}:{where}:{self.broker.epoch}")
            if rng.random() >= crash.p:
                continue
            what = produced[0] if produced else "nothing"
            info = f"after its effects, before committing {what}"  # the simulation's words
            if await self.crash_due(index, crash, info, "crash_before_commit"):
                os.kill(os.getpid(), signal.SIGKILL)

    async def crash_due(self, index: int, crash: Crash, info: str, count: str) -> bool:
        # One script: the crash is used up, its downtime left for the supervisor and counted,
        # together or not at all (a kill from outside may strike any time).
        keys = self.broker.keys
        due = await self.broker.client.eval(
            CRASH_DUE,
            [keys.crashes, keys.downtime(self.name), keys.faults],
            [f"{self.name}:{index}", str(crash.times), f"{crash.downtime}|{info}", count],
        )
        return bool(int(due))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_saga.redis.service")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--ns", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--saga", required=True)
    args = parser.parse_args(argv)
    return trio.run(serve, args.redis, args.ns, args.service, args.saga)


if __name__ == "__main__":
    sys.exit(main())
