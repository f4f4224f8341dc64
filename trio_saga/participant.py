"""The pure participant: what a saga's service is (a protocol), what a handler may know (the
`StepContext`), and the durable `Participant` (inbox + outbox) that makes every handler
idempotent and every publish safe.

It also owns the outside world a handler may touch (`World`: a card gateway, a carrier's API,
reached only through `ctx.effects.call(...)`), which survives every crash; the volatile state a
service may declare beside its durable state (`volatile(...)`), which a crash wipes; and the
snapshot that lets a crash strike after a step's effects and before its commit.

This module must never import trio, read a clock, draw a random number or do I/O; the time,
any forced failure and the outside world arrive in the `StepContext`, so the same inputs always
give the same outputs. Runners (the simulation's bus, the stdio node) wrap it.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import attrs

from .events import Event

#: (step, saga_id) -> the reason to fail that step, or None to let it run.
ForcedFailure = Callable[[str, str], "str | None"]


def never_fail(step: str, saga_id: str) -> str | None:
    return None


# -- the outside world -------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=True)
class Effect:
    """One call a handler made to an outside system. `applied` is False when the system
    recognised the idempotency key and answered with its first result instead of acting."""

    service: str
    saga_id: str
    system: str
    action: str
    key: str | None
    params: tuple[tuple[str, Any], ...]
    result: str
    applied: bool

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def describe(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.params)
        done = "" if self.applied else f" (key {self.key} seen: first result)"
        return f"{self.action}({shown}) -> {self.result}{done}"


class CrashNow(Exception):  # noqa: N818 - a signal to the runner, not an error
    """Raised by the world inside a handler when a crash is asked to strike right after an
    effect (the certifier's "crash after effect N"); the runner restores the step."""


#: Called with each effect as it happens (the bus writes it to the trace).
EffectListener = Callable[[Effect], None]


@attrs.define
class World:
    """The outside world: every system a saga's handlers call (a card gateway, a carrier).

    It lives outside every participant, so no crash undoes what it did. A system honours
    idempotency keys: a call with a key it has seen does nothing and returns the first
    call's result (what real payment gateways and carriers do). Results are deterministic:
    `<system>-<n>` for the n-th call the system acted on.
    """

    effects: list[Effect] = attrs.field(factory=list)
    listener: EffectListener | None = None
    _results: dict[tuple[str, str], str] = attrs.field(factory=dict)
    _counts: dict[str, int] = attrs.field(factory=dict)
    #: Who is calling now (set by the participant around each handler).
    _service: str = ""
    _saga_id: str = ""
    #: The certifier's "crash after effect N": raise CrashNow after this many more calls.
    crash_after: int | None = None

    def step(self, service: str, saga_id: str) -> None:
        self._service, self._saga_id = service, saga_id

    #: Whether this world keeps the record of its calls in `effects` (the Redis runtime's
    #: world does not: the run's record is kept in Redis).
    keeps_record: ClassVar[bool] = True

    def call(self, system: str, action: str, *, key: str | None = None, **params: Any) -> str:
        """Ask `system` to do `action` (keyword parameters); returns its answer. With `key`,
        a repeated call returns the first answer and does nothing."""
        shown = tuple(sorted(params.items()))
        result, applied = self.answer(system, action, key, shown)
        effect = Effect(
            service=self._service,
            saga_id=self._saga_id,
            system=system,
            action=action,
            key=key,
            params=shown,
            result=result,
            applied=applied,
        )
        if self.keeps_record:
            self.effects.append(effect)
        if self.listener is not None:
            self.listener(effect)
        if self.crash_after is not None:
            self.crash_after -= 1
            if self.crash_after <= 0:
                self.crash_after = None
                raise CrashNow(effect.describe())
        return result

    def answer(
        self, system: str, action: str, key: str | None, params: tuple[tuple[str, Any], ...]
    ) -> tuple[str, bool]:
        """What `system` answers a call, and whether it acted: a key it has seen gets the
        first call's answer and nothing is done; any other call acts, answering
        `<system>-<n>`."""
        known = None if key is None else self._results.get((system, key))
        if known is not None:
            return known, False
        n = self._counts.get(system, 0) + 1
        self._counts[system] = n
        result = f"{system}-{n}"
        if key is not None:
            self._results[(system, key)] = result
        return result, True

    def applied(self, system: str, action: str) -> list[Effect]:
        """The calls of `action` that `system` acted on, in order."""
        return [e for e in self.effects if e.applied and e.system == system and e.action == action]


@attrs.frozen(kw_only=True, slots=True)
class StepContext:
    """Everything a handler may know besides its own state and the event: the time, whether
    a step is forced to fail (`ctx.forced_failure("payment", saga_id)` returns the reason, or
    None), and the outside world (`ctx.effects.call("gateway", "charge", key=..., ...)`)."""

    timestamp: int
    forced_failure: ForcedFailure = never_fail
    effects: World = attrs.field(factory=World)


# -- volatile state ----------------------------------------------------------------------------

#: The attrs metadata key that marks a field volatile.
VOLATILE = "trio_saga.volatile"

T = TypeVar("T")


def volatile(factory: Callable[[], T]) -> T:
    """An attrs field that a crash wipes (back to `factory()`): a cache, an in-memory guard.
    A service rebuilds what it needs of it in `restart()`, which runs after a crash."""
    made: T = attrs.field(factory=factory, metadata={VOLATILE: True})
    return made


def volatile_fields(service: object) -> list[Any]:
    kind: Any = type(service)
    if not attrs.has(kind):
        return []
    return [f for f in attrs.fields(kind) if f.metadata.get(VOLATILE)]


def wipe_volatile(service: object) -> None:
    """What a crash does to a service's memory: every volatile field back to its default."""
    for field in volatile_fields(service):
        default = field.default
        value = default.factory() if isinstance(default, attrs.Factory) else copy.copy(default)  # type: ignore[arg-type]
        setattr(service, field.name, value)


class SagaService(Protocol):
    """A saga participant: `handle` reacts to the events the saga definition subscribes it to
    (and, for the first step's service, to the client's command). It is a plain synchronous
    function: event in, state change and events out."""

    @property
    def name(self) -> str: ...

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]: ...


class Reply(Protocol):
    """The answer to a client's command (`events.Accepted`, `events.Refused`, or a saga's own
    kind): whether it was accepted, and the text the trace shows."""

    @property
    def saga_id(self) -> str: ...

    @property
    def accepted(self) -> bool: ...

    @property
    def info(self) -> str: ...


@attrs.define(slots=True)
class EventIds:
    """A per-service counter behind event ids (`pay-1`, `pay-2`, ...), so runs reproduce."""

    prefix: str
    issued: int = 0

    def next(self) -> str:
        self.issued += 1
        return f"{self.prefix}-{self.issued}"


@attrs.define
class Participant:
    """A service with its durable inbox and outbox: what survives a crash.

    `receive` commits the state change, the event id into the inbox and the produced events into
    the outbox as one step, so a crash after it loses nothing (the outbox is published on
    restart) and a redelivery changes nothing (the inbox answers it).
    """

    service: SagaService
    #: (event type, event id) of every event committed: ids need only be unique per event
    #: type, so two services that number their events alike (`d-1`, `d-2`, ...) never collide.
    inbox: set[tuple[str, str]] = attrs.field(factory=set)
    outbox: deque[Event] = attrs.field(factory=deque)

    @property
    def name(self) -> str:
        return self.service.name

    # -- crashes -----------------------------------------------------------------------------

    def snapshot(self) -> Any:
        """The service's state as of its last commit, taken before a step that a crash may
        interrupt between its effects and its commit (only then: it costs a deep copy)."""
        return copy.deepcopy(self.service)

    def undo(self, snapshot: Any, payload: Any, produced: Sequence[Event] | None) -> None:
        """Lose the step just taken, as a crash before its commit does: the service's state
        back to `snapshot`, the delivery out of the inbox, its events out of the outbox, its
        volatile state wiped. What its effects did in the outside world stays done."""
        self.service = snapshot
        # the inbox key the step added (see `receive` and `execute`)
        event_id = getattr(payload, "event_id", None)
        self.inbox.discard((payload.type, event_id))
        self.inbox.discard((payload.type, payload.saga_id))
        for _ in produced or ():
            self.outbox.pop()
        self.crashed()

    def crashed(self) -> None:
        """A crash took the service's memory: its volatile state is gone."""
        wipe_volatile(self.service)

    def restarted(self) -> None:
        """The service is back from its durable state: its `restart()` hook, if any, rebuilds
        what it needs."""
        hook = getattr(self.service, "restart", None)
        if callable(hook):
            hook()

    # -- steps -------------------------------------------------------------------------------

    def receive(self, event: Any, ctx: StepContext) -> Sequence[Event] | None:
        """Commit one delivered event; None when it was already processed."""
        key = (event.type, event.event_id)
        if key in self.inbox:
            return None
        ctx.effects.step(self.name, event.saga_id)
        produced = self.service.handle(event, ctx)
        self.inbox.add(key)
        self.outbox.extend(produced)
        return produced

    def execute(
        self, command: Any, ctx: StepContext
    ) -> tuple[Reply | None, Sequence[Event] | None]:
        """Commit one client command. A service with a `start(command, ctx)` method answers
        it itself (and is idempotent by saga id, as the shop's inventory is, so a client's retry
        gets the same answer); any other takes it through `handle`, behind the inbox, and the
        runner derives the answer from what it published. None as events: a duplicate."""
        start = getattr(self.service, "start", None)
        if start is None:
            key = (command.type, command.saga_id)  # one command per saga
            if key in self.inbox:
                return None, None
            ctx.effects.step(self.name, command.saga_id)
            produced = self.service.handle(command, ctx)
            self.inbox.add(key)
            self.outbox.extend(produced)
            return None, produced
        ctx.effects.step(self.name, command.saga_id)
        reply, produced = start(command, ctx)
        self.outbox.extend(produced)
        return reply, produced
