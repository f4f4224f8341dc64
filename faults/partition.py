"""partition: cut one service's traffic, both ways or one direction (`in`: bus -> service,
`out`: service -> bus, which holds its publishes and acks), from `start` for `duration`
seconds, then heal. With mode=drop what crosses the cut is lost (and redelivered after the
heal); with mode=hold it waits and arrives at the heal."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs

from trio_saga.trace import US

from .base import Decision, Fault, SagaShape, one_of, seconds, span

DIRECTIONS = ("both", "in", "out")
MODES = ("drop", "hold")


def _one_of(choices: tuple[str, ...]) -> Callable[[object, attrs.Attribute[str], str], None]:
    def check(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}, got {value!r}")

    return check


@attrs.define(kw_only=True)
class Partition(Fault):
    name: ClassVar[str] = "partition"
    service: str
    start: float = attrs.field(default=1.0, validator=seconds)
    duration: float = attrs.field(default=5.0, validator=span)
    direction: str = attrs.field(default="both", validator=_one_of(DIRECTIONS))
    mode: str = attrs.field(default="drop", validator=_one_of(MODES))

    def bind(self, saga: SagaShape) -> None:
        one_of("service", self.service, saga.service_names)

    def timeline(self, rng: random.Random) -> Sequence[Decision]:
        start_us = round(self.start * US)
        end_us = start_us + round(self.duration * US)
        key = (self.service, self.direction, start_us, end_us)
        return (Decision(kind="partition", key=key, value=self.mode),)
