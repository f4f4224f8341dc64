"""A simulation: sagas to start, services, faults and a seed in; outcomes, trace, decisions and
invariant results out.

This is the library entry point for test authors (`await Simulation(...).run()` inside a
pytest-trio test with `autojump_clock`, or `simulate(...)` from plain code, which runs trio with
a MockClock). It owns the wiring of one run; it must never hold saga logic or scheduling.
"""

from __future__ import annotations

import functools
import gc
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, TypeVar

import attrs
import trio

# trio's MockClock from its private home: the public `trio.testing` imports pytest when it is
# installed (RaisesGroup), ~0.1 s and ~10 MB for every command, stdio node and explore worker,
# which never run a test. It is the same class (`trio.testing.MockClock is MockClock`).
from trio._core._mock_clock import MockClock

from faults.base import Decision, Fault, FaultInjector
from faults.forced import ForcedFailure

from .broker import BusConfig
from .errors import FaultSpecError, SagaError
from .errors import handler_error as handler_error  # re-exported: explore imports it from here
from .oracle import FinishedRun, Verdict, judge, raised_verdict
from .participant import Participant, World
from .saga import SagaDefinition, Violation
from .saga_log import SagaLog
from .shop import SHOP
from .sim.broker import SimBroker
from .sim.runtime import Runtime
from .trace import US, Trace

ServiceT = TypeVar("ServiceT")


def _frozen(steps: Iterable[str]) -> frozenset[str]:
    return frozenset(steps)


@attrs.frozen(kw_only=True)
class SagaOrder:
    """One saga a simulated client starts at `at` seconds, with the order's `fields` (for the
    shop: sku, quantity, amount); `fail` names steps forced to fail for it."""

    saga_id: str
    at: float = 0.0
    fail: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    fields: Mapping[str, Any] = attrs.field(factory=dict)


def orders(
    count: int, *, every: float = 0.0, prefix: str = "saga", **fields: Any
) -> list[SagaOrder]:
    """`count` identical orders with these `fields`, one every `every` seconds, named
    saga-1, saga-2, ..."""
    return [
        SagaOrder(saga_id=f"{prefix}-{n}", at=(n - 1) * every, fields=dict(fields))
        for n in range(1, count + 1)
    ]


@attrs.define(kw_only=True)
class SimulationResult:
    saga: SagaDefinition
    trace: Trace
    saga_log: SagaLog
    participants: dict[str, Participant]
    decisions: list[Decision]
    fault_counts: dict[str, int]
    violations: list[Violation]
    verdict: Verdict
    virtual_us: int
    world: World = attrs.field(factory=World)
    wall_s: float = 0.0
    stopped_early: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        return self.saga_log.counts()

    def status(self, saga_id: str) -> str:
        record = self.saga_log.get(saga_id)
        if record is None:
            raise KeyError(saga_id)
        return record.status

    def events(self, saga_id: str) -> list[str]:
        record = self.saga_log.get(saga_id)
        if record is None:
            raise KeyError(saga_id)
        return list(record.types)

    def service(self, name: str, kind: type[ServiceT]) -> ServiceT:
        """The final state of service `name`, typed: `result.service("payment", PaymentService)`."""
        service = self.participants[name].service
        if not isinstance(service, kind):
            raise TypeError(f"service {name} is a {type(service).__name__}, not a {kind.__name__}")
        return service

    def trace_text(self) -> str:
        return self.trace.dump()


@attrs.define(kw_only=True)
class Simulation:
    """One deterministic run of `saga` (the shop by default) from `state` (its services'
    initial state, as a scenario's [state] table gives it). Faults are plugin instances (see
    `faults.parse_fault`); with `decisions` the run replays exactly those decisions instead of
    drawing from `seed`."""

    orders: Sequence[SagaOrder]
    saga: SagaDefinition = SHOP
    state: Mapping[str, Any] = attrs.field(factory=dict)
    faults: Sequence[Fault] = ()
    seed: int = 0
    config: BusConfig = attrs.field(factory=BusConfig)
    max_time: float = 3600.0
    decisions: Sequence[Decision] | None = None
    trace_stream: IO[str] | None = None
    keep_trace: bool = True
    #: A handler that raises ends the run as a violation of `HANDLERS_RETURN` (what explore,
    #: its shrinks and replays want: a bug found like any other) instead of raising
    #: `HandlerError` (what a test or the scenario command wants: the error itself).
    raise_is_violation: bool = False

    def _injector(self) -> FaultInjector:
        if self.decisions is not None:
            return FaultInjector.replaying(self.decisions, saga=self.saga)
        injector = FaultInjector(faults=list(self.faults), seed=self.seed, saga=self.saga)
        forced: dict[str, ForcedFailure] = {}
        for order in self.orders:
            for step in sorted(order.fail):
                if step not in forced:
                    if step not in self.saga.fallible_steps:
                        raise FaultSpecError(
                            f"order {order.saga_id}: fail names no step of saga"
                            f" {self.saga.name} that can fail: {step!r}"
                            f" (steps that can: {', '.join(self.saga.fallible_steps)})"
                        )
                    forced[step] = ForcedFailure(step=step)
                    injector.add(forced[step])
                forced[step].force(order.saga_id)
        return injector

    def build(self) -> SimBroker:
        wrap = self.saga.participant or Participant
        participants = [wrap(service) for service in self.saga.make_services(self.state)]
        return SimBroker(
            participants,
            saga=self.saga,
            injector=self._injector(),
            trace=Trace(self.trace_stream, keep=self.keep_trace),
            saga_log=SagaLog(self.saga),
            config=self.config,
        )

    def commands(self) -> list[tuple[int, Any]]:
        """(start time in µs, command) of every order, in start order, validated."""
        made = []
        for order in sorted(self.orders, key=lambda o: o.at):
            if not (math.isfinite(order.at) and order.at >= 0):
                raise ValueError(f"order {order.saga_id}: at must be a time in seconds >= 0")
            made.append((round(order.at * US), self.saga.make_command(order.saga_id, order.fields)))
        return made

    async def run(self, *, clock: Any = None) -> SimulationResult:
        """Run to quiet (or `max_time`) in the current trio run; use a MockClock for speed.

        `clock`: the trio MockClock of a run this simulation owns (nothing else in it waits
        on a deadline), which the runtime then jumps instead of sleeping; `simulate` passes
        it. Inside a test with other tasks, leave it out: the run sleeps, and their deadlines
        fire at their own virtual times."""
        wall = time.perf_counter()
        # The simulation makes no reference cycles of its own, so the cyclic collector only
        # costs time here: it is off from the first saga queued to the oracle's verdict.
        collecting = gc.isenabled()
        gc.disable()
        try:
            commands = self.commands()
            bus = self.build()
            for at_us, command in commands:
                bus.start_saga(command, at_us)
            bus.schedule_faults()
            stopped = False
            try:
                await Runtime(bus, clock=clock).run(max_time_us=round(self.max_time * US))
            except Exception as raised:
                if not self.raise_is_violation or isinstance(raised, SagaError):
                    raise
                error = handler_error(raised)
                original = error.original
                bus.trace.add(
                    bus.now,
                    "raise",
                    error.service,
                    error.saga_id,
                    error.handled,
                    info=f"{type(original).__name__}: {original}",
                )
                verdict, stopped = raised_verdict(self.saga, error), True
            else:
                verdict = judge(
                    FinishedRun(
                        saga=self.saga,
                        saga_log=bus.saga_log,
                        participants=bus.participants,
                        ordered=[order.saga_id for order in self.orders],
                        world=bus.world,
                    )
                )
            return SimulationResult(
                saga=self.saga,
                trace=bus.trace,
                saga_log=bus.saga_log,
                participants=bus.participants,
                decisions=list(bus.injector.decisions),
                fault_counts=dict(sorted(bus.fault_counts.items())),
                violations=list(verdict.violations),
                verdict=verdict,
                virtual_us=bus.now,
                world=bus.world,
                wall_s=time.perf_counter() - wall,
                stopped_early=stopped or not bus.quiet,
            )
        finally:
            if collecting:
                # All the run made is young now, and the collector's next pass would walk every
                # object of it (a tenth of a run). freeze + unfreeze moves it all to the oldest
                # generation in O(1), where only a full collection looks at it. (Not if the
                # caller froze objects itself: unfreezing them is not ours to do.)
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


def simulate(simulation: Simulation) -> SimulationResult:
    """Run `simulation` in a fresh trio run on a MockClock that jumps ahead when idle."""
    clock = MockClock(autojump_threshold=0)
    try:
        return trio.run(functools.partial(simulation.run, clock=clock), clock=clock)
    except SagaError:  # the run's own set-up refused something: already one line
        raise
    except Exception as raised:
        raise handler_error(raised) from None
