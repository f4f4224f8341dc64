"""crash: stop a service (its task is cancelled, its volatile state lost) and restart it from
durable state after `downtime` seconds. Either at a time (`at=2`); or right after the service
commits a step that produced event type `after` and before it publishes (`after=PaymentCharged`);
or after a step's effects and before its commit (`before=PaymentCharged`, or `before=any` for
every step of the service): that step is lost (its state, inbox entry and outbox never happen,
its effects in the outside world stay done) and the delivery comes again. Each with
probability `p`, at most `times` times."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs

from trio_saga.trace import US

from .base import (
    MAX_SECONDS,
    Commit,
    Decision,
    Fault,
    SagaShape,
    acting_probability,
    one_of,
    seconds,
)


def _at_least_once(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"times must be at least 1, got {value}")
    if value > 1_000_000:
        raise ValueError(f"times must be at most 1,000,000, got {value}")


@attrs.define(kw_only=True)
class Crash(Fault):
    name: ClassVar[str] = "crash"
    service: str
    at: float | None = None
    after: str | None = None
    before: str | None = None
    downtime: float = attrs.field(default=1.0, validator=seconds)
    p: float = attrs.field(default=1.0, validator=acting_probability)
    times: int = attrs.field(default=1, validator=_at_least_once)
    _done: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if sum(x is not None for x in (self.at, self.after, self.before)) != 1:
            raise ValueError(
                "give exactly one of at=SECONDS, after=EVENT_TYPE or before=EVENT_TYPE|any"
            )
        if self.at is not None and not 0 <= self.at <= MAX_SECONDS:  # nan and inf too
            raise ValueError(f"at must be a time in seconds, got {self.at}")

    def bind(self, saga: SagaShape) -> None:
        one_of("service", self.service, saga.service_names)
        if self.after is not None:
            one_of("after (an event type of the saga)", self.after, saga.event_types)
        if self.before is not None and self.before != ANY:
            one_of("before (an event type of the saga, or any)", self.before, saga.event_types)

    def timeline(self, rng: random.Random) -> Sequence[Decision]:
        if self.at is None or rng.random() >= self.p:
            return ()
        key = (self.service, round(self.at * US))
        return (Decision(kind="crash_at", key=key, value=round(self.downtime * US)),)

    def on_commit(self, commit: Commit, rng: random.Random) -> Decision | None:
        if (
            self.after is None
            or commit.service != self.service
            or self.after not in commit.produced
            or self._done >= self.times
            or rng.random() >= self.p
        ):
            return None
        self._done += 1
        return Decision(kind="crash_after_commit", key=commit.key, value=round(self.downtime * US))

    def may_strike_before_commit(self, service: str) -> bool:
        return self.before is not None and service == self.service and self._done < self.times

    def on_before_commit(self, commit: Commit, rng: random.Random) -> Decision | None:
        if (
            self.before is None
            or commit.service != self.service
            or not (self.before == ANY or self.before in commit.produced)
            or self._done >= self.times
            or rng.random() >= self.p
        ):
            return None
        self._done += 1
        return Decision(kind="crash_before_commit", key=commit.key, value=round(self.downtime * US))


#: `before=any`: any step of the service, whatever it would publish.
ANY = "any"
