"""A simulation: sagas to start, services, faults and a seed in; outcomes, trace, decisions and
invariant results out.

This is the library entry point for test authors (`await Simulation(...).run()` inside a
pytest-trio test with `autojump_clock`, or `simulate(...)` from plain code, which runs trio with
a MockClock). It owns the wiring of one run; it must never hold saga logic or scheduling.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import IO, TypeVar

import attrs
import trio

from faults.base import Decision, Fault, FaultInjector
from faults.forced import ForcedFailure
from faults.registry import FAULTS

from .bus import BusConfig, EventBus
from .events import ReserveInventory
from .oracle import Violation, check
from .runtime import Runtime
from .saga_log import SagaLog
from .services import Participant, SagaService, default_services
from .trace import US, Trace

ServiceT = TypeVar("ServiceT")


@attrs.frozen(kw_only=True)
class SagaOrder:
    """One saga a simulated client starts at `at` seconds; `fail` forces steps to fail."""

    saga_id: str
    sku: str = "abc123"
    quantity: int = 1
    amount_cents: int | None = None
    at: float = 0.0
    fail: frozenset[str] = frozenset()

    def command(self) -> ReserveInventory:
        return ReserveInventory(
            saga_id=self.saga_id,
            sku=self.sku,
            quantity=self.quantity,
            amount_cents=self.amount_cents,
            client="client",
        )


def orders(
    count: int, *, sku: str = "abc123", quantity: int = 1, every: float = 0.0, prefix: str = "saga"
) -> list[SagaOrder]:
    """`count` identical orders, one every `every` seconds, named saga-1, saga-2, ..."""
    return [
        SagaOrder(saga_id=f"{prefix}-{n}", sku=sku, quantity=quantity, at=(n - 1) * every)
        for n in range(1, count + 1)
    ]


@attrs.define(kw_only=True)
class SimulationResult:
    trace: Trace
    saga_log: SagaLog
    participants: dict[str, Participant]
    decisions: list[Decision]
    fault_counts: dict[str, int]
    violations: list[Violation]
    virtual_us: int
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


ServiceFactory = Callable[[], Sequence[SagaService]]


@attrs.define(kw_only=True)
class Simulation:
    """One deterministic run. Faults are plugin instances (see `faults.parse_fault`); with
    `decisions` the run replays exactly those decisions instead of drawing from `seed`."""

    orders: Sequence[SagaOrder]
    faults: Sequence[Fault] = ()
    seed: int = 0
    services: ServiceFactory = default_services
    #: How each service is wrapped: a test can plug in a Participant subclass without an
    #: inbox (or another broken variant) to prove the oracle catches what follows.
    participant: Callable[[SagaService], Participant] = Participant
    config: BusConfig = attrs.field(factory=BusConfig)
    max_time: float = 3600.0
    decisions: Sequence[Decision] | None = None
    trace_stream: IO[str] | None = None
    keep_trace: bool = True

    def _injector(self) -> FaultInjector:
        if self.decisions is not None:
            return FaultInjector.replaying(self.decisions)
        injector = FaultInjector(faults=list(self.faults), seed=self.seed)
        forced: dict[str, ForcedFailure] = {}
        for order in self.orders:
            for step in sorted(order.fail):
                name = f"fail_{step}"
                if name not in forced:
                    plugin = FAULTS[name]()
                    assert isinstance(plugin, ForcedFailure)
                    forced[name] = plugin
                    injector.add(plugin)
                forced[name].force(order.saga_id)
        return injector

    def build(self) -> EventBus:
        participants = [self.participant(service) for service in self.services()]
        return EventBus(
            participants,
            injector=self._injector(),
            trace=Trace(self.trace_stream, keep=self.keep_trace),
            saga_log=SagaLog(),
            config=self.config,
        )

    async def run(self) -> SimulationResult:
        """Run to quiet (or `max_time`) in the current trio run; use a MockClock for speed."""
        wall = time.perf_counter()
        # The simulation makes no reference cycles of its own, so the cyclic collector only
        # costs time here: it is off from the first saga queued to the oracle's verdict.
        collecting = gc.isenabled()
        gc.disable()
        try:
            bus = self.build()
            for order in sorted(self.orders, key=lambda o: o.at):
                bus.start_saga(order.command(), round(order.at * US))
            bus.schedule_faults()
            await Runtime(bus).run(max_time_us=round(self.max_time * US))
            return SimulationResult(
                trace=bus.trace,
                saga_log=bus.saga_log,
                participants=bus.participants,
                decisions=list(bus.injector.decisions),
                fault_counts=dict(sorted(bus.fault_counts.items())),
                violations=check(bus.saga_log, bus.participants),
                virtual_us=bus.now,
                wall_s=time.perf_counter() - wall,
                stopped_early=not bus.quiet,
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
    # Imported here: trio.testing pulls in pytest when it is installed, a third of the stdio
    # mode's start-up time, and only simulations need it.
    from trio.testing import MockClock

    return trio.run(simulation.run, clock=MockClock(autojump_threshold=0))
