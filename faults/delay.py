"""delay: hold a transmission back by a constant, uniform or exponential time (mean in s, from
a microsecond to a day; p in (0, 1]); `min`/`max` give uniform a range of its own, and
`dist=steps` draws one of `steps` evenly spaced values from min to max (as detangle's network
does: 0.5/2/3.5/5 ms for 0.0005-0.005)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs

from trio_saga.trace import US

from .base import (
    MAX_SECONDS,
    Decision,
    Effect,
    RateFault,
    Shift,
    Transmission,
    acting_probability,
    seconds,
    span,
)

DISTRIBUTIONS = ("constant", "uniform", "exponential", "steps")


def _known_distribution(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {', '.join(DISTRIBUTIONS)}, got {value!r}")


@attrs.define(kw_only=True)
class Delay(RateFault):
    name: ClassVar[str] = "delay"
    effects: ClassVar[Mapping[str, Effect]] = {"delay": Shift()}
    mean: float = attrs.field(default=0.05, validator=span)
    dist: str = attrs.field(default="exponential", validator=_known_distribution)
    p: float = attrs.field(default=1.0, validator=acting_probability)
    #: uniform and steps: the range in s (uniform without `max`: 0 to 2 x mean).
    min: float = attrs.field(default=0.0, validator=seconds)
    max: float | None = attrs.field(default=None)
    steps: int = attrs.field(default=4)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        ranged = self.dist in ("uniform", "steps")
        if (self.max is not None or self.min) and not ranged:
            raise ValueError(f"min and max are for dist=uniform or dist=steps, not {self.dist}")
        if self.dist == "steps" and (self.max is None or not 2 <= self.steps <= 1_000_000):
            raise ValueError("dist=steps needs max= and steps= from 2 to 1,000,000")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max must not be below min, got min={self.min}, max={self.max}")
        if self.max is not None and not self.max <= MAX_SECONDS:
            raise ValueError(f"max must be at most {MAX_SECONDS:g} s, got {self.max}")

    def sample(self, rng: random.Random) -> float:
        if self.dist == "constant":
            return self.mean
        if self.dist == "steps":
            assert self.max is not None
            return self.min + (self.max - self.min) * rng.randrange(self.steps) / (self.steps - 1)
        if self.dist == "uniform":
            if self.max is not None:
                return rng.uniform(self.min, self.max)
            return rng.uniform(0.0, 2 * self.mean)
        return rng.expovariate(1 / self.mean)

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        if not self.active(t.now) or (self.p < 1.0 and rng.random() >= self.p):
            return ()
        delay_us = round(self.sample(rng) * US)
        return (Decision(kind="delay", key=t.key, value=delay_us),) if delay_us > 0 else ()
