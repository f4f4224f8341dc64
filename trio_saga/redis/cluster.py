"""A scenario run for real: a private (or given) Redis, one OS process per service, a client
placing the scenario's orders, a nemesis carrying out timed kills, a supervisor restarting
what died, a wait for quiet, and the run read back for the same oracle as the simulation.

This module owns the life of one cluster run and what it reads back: each service's stored
state and inbox, the outside world's calls (`world.py`), and a saga log and trace rebuilt from
the streams and those calls (in the order of the run's one counter) and from the supervisor's
own marks (crash, restart, pause, resume). It must never judge a run itself (`oracle.judge`
does), never touch a key outside the run's namespace, and never run code a stored value names:
the saga comes from the scenario the user chose.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio

from faults.crash import Crash
from faults.registry import parse_fault

from ..oracle import FinishedRun, judge
from ..participant import Effect, Participant, World
from ..saga import SagaDefinition
from ..saga_log import SagaLog
from ..simulation import SagaOrder, SimulationResult
from ..trace import US, Trace
from . import RedisRunError
from .broker import ORDER, Keys, groups
from .codec import Codec
from .service import EXIT_BROKER_LOST, EXIT_FENCED, EXIT_RELOAD
from .world import read_effects

#: How long a run may take to go quiet after its last order and timed fault, in seconds.
DEFAULT_TIMEOUT_S = 60.0
POLL_S = 0.1
#: A service that dies this many times without a kill of ours is a bug: the run stops.
MAX_UNEXPECTED_EXITS = 5
#: How long the run waits for a server that went away (a broker restart) to answer again.
BROKER_GRACE_S = 15.0
BROKER_RETRY_S = 0.1

T = TypeVar("T")


async def patiently(make: Callable[[], Awaitable[T]]) -> T:
    """`make()`, retried while the server is away (a broker restart), for BROKER_GRACE_S."""
    import coredis.exceptions

    end = time.monotonic() + BROKER_GRACE_S
    while True:
        try:
            return await make()
        except (coredis.exceptions.ConnectionError, coredis.exceptions.BusyLoadingError, OSError):
            if time.monotonic() > end:
                raise
            await trio.sleep(BROKER_RETRY_S)


@attrs.define
class Mark:
    t_us: int
    kind: str
    node: str
    info: str = ""


@attrs.define(kw_only=True)
class ClusterResult:
    result: SimulationResult
    stuck: bool
    ns: str
    zombie_exits: list[int]
    fault_counts: dict[str, int]
    #: (service, seconds from a nemesis SIGKILL to the first step its next process took).
    recoveries: list[tuple[str, float]] = attrs.Factory(list)
    #: Exits nobody asked for (a handler that raised): the run does not pass with any.
    unexpected: list[str] = attrs.Factory(list)


class Child:
    """A service's process, forked by the launcher: signalled by pid, its exit reported."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = trio.Event()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def ended(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode


class Launcher:
    """The fork server (`launcher.py`) as the supervisor uses it."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.children: dict[int, Child] = {}
        self._lock = trio.Lock()
        self._started: trio.MemorySendChannel[int]
        self._started, self._pids = trio.open_memory_channel[int](1)
        self._ready = trio.Event()

    @classmethod
    async def open(cls, python: str, saga_arg: str, env: Mapping[str, str]) -> Launcher:
        process = await trio.lowlevel.open_process(
            [python, "-m", "trio_saga.redis.launcher", "--saga", saga_arg],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        return cls(process)

    async def read(self) -> None:
        """Dispatch the launcher's lines until it ends."""
        assert self.process.stdout is not None
        buffer = b""
        while True:
            chunk = await self.process.stdout.receive_some(4096)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                parts = line.decode().split()
                if parts == ["ready"]:
                    self._ready.set()
                elif len(parts) == 3 and parts[0] == "pid":
                    await self._started.send(int(parts[2]))
                elif len(parts) == 3 and parts[0] == "exit":
                    child = self.children.get(int(parts[1]))
                    if child is not None:
                        child.ended(int(parts[2]))
        for child in self.children.values():
            if child.returncode is None:
                child.ended(-signal.SIGKILL)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def start(self, service: str, url: str, ns: str) -> Child:
        assert self.process.stdin is not None
        async with self._lock:
            await self.process.stdin.send_all(f"start {service} {url} {ns}\n".encode())
            pid = await self._pids.receive()
            child = self.children[pid] = Child(pid)
            return child

    async def close(self) -> None:
        """Stop the launcher (its children are reaped already: no need to let it wind
        down an interpreter full of imports)."""
        if self.process.stdin is not None:
            await self.process.stdin.aclose()
        self.process.kill()
        await self.process.wait()


class Cluster:
    """One run of `orders` on `saga` over the Redis at `url`, in a fresh namespace."""

    def __init__(
        self,
        *,
        url: str,
        saga: SagaDefinition,
        saga_arg: str,
        orders: Sequence[SagaOrder],
        state: Mapping[str, Any],
        faults: Sequence[str] = (),
        seed: int = 0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        python: str = sys.executable,
    ) -> None:
        self.url = url
        self.saga = saga
        self.saga_arg = saga_arg
        self.orders = list(orders)
        self.state = dict(state)
        self.fault_specs = list(faults)
        self.seed = seed
        self.timeout_s = timeout_s
        self.python = python
        self.keys = Keys(f"ts:{secrets.token_hex(4)}")
        self.services = list(saga.service_names)
        self.current: dict[str, Child | None] = dict.fromkeys(self.services)
        self.zombies: list[Child] = []
        self.zombie_exits: list[int] = []
        self.downtime: dict[str, float] = {}
        self.restarting: set[str] = set()
        self.marks: list[Mark] = []
        #: (service, wall time) of each SIGKILL by the nemesis, for recovery times.
        self.kills: list[tuple[str, float]] = []
        self.unexpected: list[str] = []
        self.counts: dict[str, int] = {}
        self.t0 = 0.0
        self.closing = False
        self.placed = False
        self.nemesis_done = False
        self.services_built = saga.make_services(self.state)
        self.codec = Codec.for_saga(saga, self.services_built)
        self._nursery: trio.Nursery | None = None
        self.launcher: Launcher | None = None

    # -- marks -----------------------------------------------------------------------------

    def mark(self, kind: str, node: str, info: str = "") -> None:
        t_us = round((time.time() - self.t0) * US) if self.t0 else 0
        self.marks.append(Mark(t_us, kind, node, info))
        self.counts[kind] = self.counts.get(kind, 0) + 1

    # -- set-up ----------------------------------------------------------------------------

    async def setup(self, client: Any) -> None:
        forced: dict[str, list[str]] = {}
        for order in self.orders:
            for step in sorted(order.fail):
                forced.setdefault(step, []).append(order.saga_id)
        plan = {
            "seed": self.seed,
            "faults": self.fault_specs,
            "forced": forced,
            "state": self.state,
        }
        await client.set(self.keys.plan, json.dumps(plan))
        for service in self.services_built:
            await client.set(self.keys.state(service.name), self.codec.dumps(service))
        for kind, readers in groups(self.saga).items():
            for reader in readers:
                await client.xgroup_create(
                    self.keys.stream(kind), reader, identifier="0", mkstream=True
                )

    def _env(self) -> dict[str, str]:
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    async def _spawn(self, service: str) -> Child:
        assert self.launcher is not None
        return await self.launcher.start(service, self.url, self.keys.ns)

    # -- the supervisor --------------------------------------------------------------------

    async def supervise(self, service: str, client: Any, *, delay: float = 0.0) -> None:
        """Start `service` (after `delay`), wait for it, and start it again if it died."""
        if delay > 0:
            await trio.sleep(delay)
        process = await self._spawn(service)
        self.current[service] = process
        self.restarting.discard(service)
        code = await process.wait()
        if process in self.zombies:
            self.zombie_exits.append(code)
            self.mark("zombie_exit", service, f"status {code}")
            return
        self.current[service] = None
        if self.closing:
            return
        downtime = self.downtime.pop(service, None)
        stored = await patiently(lambda: client.get(self.keys.downtime(service)))
        if stored is not None:  # the service's own kill: "SECONDS|what it interrupted"
            await patiently(lambda: client.delete([self.keys.downtime(service)]))
            seconds, _, interrupted = str(stored).partition("|")
            downtime = float(seconds) if downtime is None else downtime
            self.mark("crash", service, interrupted)
        if code == EXIT_BROKER_LOST:
            self.mark("broker_lost", service)
            downtime = BROKER_RETRY_S
        elif code not in (-signal.SIGKILL, EXIT_RELOAD):
            self.unexpected.append(f"service {service} exited with status {code}")
            self.mark("exit", service, f"status {code}")
            if len(self.unexpected) >= MAX_UNEXPECTED_EXITS:
                raise RedisRunError(
                    f"service {service} keeps failing (status {code}); see its stderr above"
                )
        self.restarting.add(service)
        assert self._nursery is not None
        self._nursery.start_soon(self._restart, service, client, downtime or 0.0)

    async def _restart(self, service: str, client: Any, downtime: float) -> None:
        await trio.sleep(downtime)
        self.mark("restart", service)
        await self.supervise(service, client)

    def kill(self, service: str, downtime: float) -> bool:
        """SIGKILL the live process of `service`; it is restarted after `downtime`."""
        process = self.current.get(service)
        if process is None or process.returncode is not None:
            return False
        self.downtime[service] = downtime
        self.kills.append((service, time.time()))
        self.mark("crash", service, f"SIGKILL, down {downtime:g}s")
        process.send_signal(signal.SIGKILL)
        return True

    async def pause(self, service: str, client: Any) -> None:
        """SIGSTOP the live process of `service` and start a replacement beside it: the
        stopped one becomes a zombie that the epoch fence must keep from changing anything."""
        process = self.current.get(service)
        if process is None:
            raise RedisRunError(f"service {service} is not running")
        process.send_signal(signal.SIGSTOP)
        self.zombies.append(process)
        self.mark("pause", service, f"SIGSTOP pid {process.pid}")
        assert self._nursery is not None
        self._nursery.start_soon(self.supervise, service, client)

    def resume_zombies(self) -> None:
        for process in self.zombies:
            if process.returncode is None:
                self.mark("resume", "", f"SIGCONT pid {process.pid}")
                process.send_signal(signal.SIGCONT)

    async def stop_all(self) -> None:
        """SIGKILL every process of the run and reap it (an unreaped child is a warning)."""
        processes = [p for p in [*self.current.values(), *self.zombies] if p is not None]
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGKILL)
        with trio.CancelScope(shield=True):
            for process in processes:
                await process.wait()

    # -- client and nemesis ----------------------------------------------------------------

    async def place_orders(self, client: Any) -> None:
        script = client.register_script(ORDER)
        for order in sorted(self.orders, key=lambda o: o.at):
            wait = self.t0 + order.at - time.time()
            if wait > 0:
                await trio.sleep(wait)
            command = self.saga.make_command(order.saga_id, order.fields)
            text = self.codec.dumps(command)
            # A retry after a lost reply may place an order twice: the entry service's inbox
            # (or its idempotent start) answers the second.
            keys = [self.keys.stream(self.saga.command), self.keys.seq]
            await patiently(functools.partial(script, keys=keys, args=[text]))
        self.placed = True

    async def nemesis(self) -> None:
        timed = []
        for spec in self.fault_specs:
            fault = parse_fault(spec)
            if isinstance(fault, Crash) and fault.at is not None:
                timed.append(fault)
        for crash in sorted(timed, key=lambda c: c.at or 0.0):
            assert crash.at is not None
            wait = self.t0 + crash.at - time.time()
            if wait > 0:
                await trio.sleep(wait)
            # A service that is down (another crash) is killed once it is back: every kill
            # the scenario asks for happens.
            while True:
                if self.kill(crash.service, crash.downtime):
                    break
                await trio.sleep(0.01)
        self.nemesis_done = True

    # -- quiet -----------------------------------------------------------------------------

    async def is_quiet(self, client: Any) -> bool:
        return await patiently(lambda: self._is_quiet(client))

    async def _is_quiet(self, client: Any) -> bool:
        if not (self.placed and self.nemesis_done) or self.restarting:
            return False
        if any(p is None for p in self.current.values()):
            return False
        if any(p.returncode is None for p in self.zombies):
            return False  # a resumed zombie has yet to find itself fenced off
        for kind in groups(self.saga):
            stream = self.keys.stream(kind)
            info = await client.xinfo_stream(stream)
            last = str(info["last-generated-id"])
            for group in await client.xinfo_groups(stream):
                if int(group["pending"]) or str(group["last-delivered-id"]) != last:
                    return False
        for service in self.services:
            if int(await client.llen(self.keys.outbox(service))):
                return False
        return True

    async def wait_quiet(self, client: Any, end: float) -> bool:
        calm = 0
        while time.monotonic() < end:
            calm = calm + 1 if await self.is_quiet(client) else 0
            if calm >= 3:
                return True
            await trio.sleep(POLL_S)
        return False

    @staticmethod
    async def _get_all(client: Any, keys: Sequence[str]) -> list[Any]:
        return [await client.get(key) for key in keys]

    async def wait_ready(self, client: Any, end: float) -> None:
        while True:
            keys = [self.keys.ready(s) for s in self.services]
            found = await patiently(functools.partial(self._get_all, client, keys))
            if all(v is not None for v in found):
                return
            if time.monotonic() > end:
                raise RedisRunError("the services did not start (see their stderr above)")
            await trio.sleep(0.02)

    # -- the run ---------------------------------------------------------------------------

    def span(self) -> float:
        ends = [o.at for o in self.orders]
        for spec in self.fault_specs:
            fault = parse_fault(spec)
            for name in ("at", "end", "start"):
                value = getattr(fault, name, None)
                if isinstance(value, int | float) and math.isfinite(value):
                    ends.append(float(value) + float(getattr(fault, "duration", 0.0)))
            ends.append(float(getattr(fault, "downtime", 0.0)))
        return max(ends, default=0.0)

    async def run(self, during: Any = None) -> ClusterResult:
        """Run to quiet (or the timeout); `during(cluster, client)`, if given, runs beside the
        client and the nemesis (a test's own schedule of pauses)."""
        import coredis

        wall = time.perf_counter()
        client = coredis.Redis.from_url(self.url, decode_responses=True)
        async with client:
            await self.setup(client)
            stuck = True
            launcher = self.launcher = await Launcher.open(self.python, self.saga_arg, self._env())
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(launcher.read)
                with trio.fail_after(60):
                    await launcher.wait_ready()
                for service in self.services:
                    nursery.start_soon(self.supervise, service, client)
                await self.wait_ready(client, time.monotonic() + 30)
                self.t0 = time.time()
                await client.set(self.keys.t0, repr(self.t0))
                nursery.start_soon(self.place_orders, client)
                nursery.start_soon(self.nemesis)
                if during is not None:
                    await during(self, client)
                end = time.monotonic() + self.span() + self.timeout_s
                stuck = not await self.wait_quiet(client, end)
                self.closing = True
                await self.stop_all()
                with trio.CancelScope(shield=True):
                    await launcher.close()
                nursery.cancel_scope.cancel()
            return await self.read_back(client, stuck, time.perf_counter() - wall)

    async def read_back(self, client: Any, stuck: bool, wall_s: float) -> ClusterResult:
        """The run as the oracle sees it: states, inboxes, and the streams in relay order."""
        participants: dict[str, Participant] = {}
        wrap = self.saga.participant or Participant
        for name in self.services:
            participant = wrap(self.codec.loads(str(await client.get(self.keys.state(name)))))
            participant.inbox = set(await client.smembers(self.keys.inbox(name)))
            participants[name] = participant
        rows: list[tuple[int, int, Any, Any]] = []  # (t_us, order, kind, what)
        t0_ms = self.t0 * 1000
        # Every event type, not only those someone subscribes to: the last compensation and
        # the last success end sagas and are read by no service.
        for kind in (self.saga.command, *self.saga.event_types):
            for item in await client.xrange(self.keys.stream(kind)):
                ms = int(str(item.identifier).split("-")[0])
                seq = int(item.field_values["seq"])
                payload = self.codec.loads(item.field_values["e"])
                rows.append((max(0, round((ms - t0_ms) * 1000)), seq, kind, payload))
        # The outside world's calls, in their place: each took its number from the same
        # counter before its step committed, so it comes before the events that step published.
        calls = await read_effects(client, self.keys, self.codec)
        for ms, seq, effect in calls:
            rows.append((max(0, round((ms - t0_ms) * 1000)), seq, "", effect))
        world = World(effects=[effect for _, _, effect in calls])
        rows.sort(key=lambda r: r[1])
        # Relay order (the counter) is the truth; times only place the supervisor's marks.
        entries: list[tuple[int, int, Any, Any]] = []
        floor = 0
        for t_us, seq, kind, payload in rows:
            floor = max(floor, t_us)
            entries.append((floor, seq, kind, payload))
        marks = sorted(self.marks, key=lambda m: m.t_us)
        trace = Trace()
        saga_log = SagaLog(self.saga)
        publisher = self.saga.publisher
        i = 0
        for t_us, _, kind, payload in entries:
            while i < len(marks) and marks[i].t_us <= t_us:
                m = marks[i]
                trace.add(m.t_us, m.kind, m.node, info=m.info)
                i += 1
            if isinstance(payload, Effect):
                trace.add(
                    t_us,
                    "effect",
                    payload.service,
                    payload.saga_id,
                    f"{payload.system}.{payload.action}",
                    payload.key or "",
                    payload.describe(),
                )
            elif kind == self.saga.command:
                seq = trace.add(
                    t_us,
                    "start",
                    payload.client,
                    payload.saga_id,
                    kind,
                    getattr(payload, "event_id", ""),
                )
                saga_log.started(payload.saga_id, payload.client, seq)
            else:
                seq = trace.add(
                    t_us,
                    "publish",
                    publisher.get(kind, ""),
                    payload.saga_id,
                    kind,
                    payload.event_id,
                )
                saga_log.observe(payload, seq)
        for m in marks[i:]:
            trace.add(m.t_us, m.kind, m.node, info=m.info)
        counts = {k: int(v) for k, v in (await client.hgetall(self.keys.faults)).items()}
        for kind, n in self.counts.items():
            if kind in ("crash", "pause", "restart", "broker_lost", "broker_restart"):
                counts[kind] = counts.get(kind, 0) + n
        verdict = judge(
            FinishedRun(
                saga=self.saga,
                saga_log=saga_log,
                participants=participants,
                ordered=[o.saga_id for o in self.orders],
                world=world,
            )
        )
        last_us = max([r[0] for r in entries] + [m.t_us for m in marks], default=0)
        result = SimulationResult(
            saga=self.saga,
            trace=trace,
            saga_log=saga_log,
            participants=participants,
            decisions=[],
            fault_counts=dict(sorted(counts.items())),
            violations=list(verdict.violations),
            verdict=verdict,
            virtual_us=last_us,
            world=world,
            wall_s=wall_s,
            stopped_early=stuck,
        )
        recoveries = []
        for service, killed_at in self.kills:
            epochs = int(await client.get(self.keys.epoch(service)) or 0)
            firsts = [
                await client.get(self.keys.first_step(service, e)) for e in range(1, epochs + 1)
            ]
            after = [float(t) for t in firsts if t is not None and float(t) > killed_at]
            if after:
                recoveries.append((service, min(after) - killed_at))
        return ClusterResult(
            unexpected=list(self.unexpected),
            recoveries=recoveries,
            result=result,
            stuck=stuck,
            ns=self.keys.ns,
            zombie_exits=list(self.zombie_exits),
            fault_counts=result.fault_counts,
        )


__all__ = ["EXIT_FENCED", "Cluster", "ClusterResult"]
