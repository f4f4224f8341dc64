"""delay: hold a transmission back by a constant, uniform or exponential time (mean in s, from
a microsecond to a day; p in (0, 1])."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs

from trio_saga.trace import US

from .base import Decision, RateFault, Transmission, acting_probability, span

DISTRIBUTIONS = ("constant", "uniform", "exponential")


def _known_distribution(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {', '.join(DISTRIBUTIONS)}, got {value!r}")


@attrs.define(kw_only=True)
class Delay(RateFault):
    name: ClassVar[str] = "delay"
    mean: float = attrs.field(default=0.05, validator=span)
    dist: str = attrs.field(default="exponential", validator=_known_distribution)
    p: float = attrs.field(default=1.0, validator=acting_probability)

    def sample(self, rng: random.Random) -> float:
        if self.dist == "constant":
            return self.mean
        if self.dist == "uniform":
            return rng.uniform(0.0, 2 * self.mean)
        return rng.expovariate(1 / self.mean)

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        if not self.active(t.now) or (self.p < 1.0 and rng.random() >= self.p):
            return ()
        delay_us = round(self.sample(rng) * US)
        return (Decision(kind="delay", key=t.key, value=delay_us),) if delay_us > 0 else ()
