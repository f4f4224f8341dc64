"""The pure participant: what a saga's service is (a protocol), what a handler may know (the
`StepContext`), and the durable `Participant` (inbox + outbox) that makes every handler
idempotent and every publish safe.

This module must never import trio, read a clock, draw a random number or do I/O; the time and
any forced failure arrive in the `StepContext`, so the same inputs always give the same
outputs. Runners (the simulation's bus, the stdio node) wrap it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from .events import Event

#: (step, saga_id) -> the reason to fail that step, or None to let it run.
ForcedFailure = Callable[[str, str], "str | None"]


def never_fail(step: str, saga_id: str) -> str | None:
    return None


@attrs.frozen(kw_only=True, slots=True)
class StepContext:
    """Everything a handler may know besides its own state and the event: the time, and
    whether a step is forced to fail (`ctx.forced_failure("payment", saga_id)` returns the
    reason, or None)."""

    timestamp: int
    forced_failure: ForcedFailure = never_fail


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

    def receive(self, event: Any, ctx: StepContext) -> Sequence[Event] | None:
        """Commit one delivered event; None when it was already processed."""
        key = (event.type, event.event_id)
        if key in self.inbox:
            return None
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
            produced = self.service.handle(command, ctx)
            self.inbox.add(key)
            self.outbox.extend(produced)
            return None, produced
        reply, produced = start(command, ctx)
        self.outbox.extend(produced)
        return reply, produced
