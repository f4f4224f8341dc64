"""duplicate: deliver `copies` extra copies of a transmission with probability `p`."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs

from .base import Copy, Decision, Effect, RateFault, Transmission, probability


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"copies must be at least 1, got {value}")


@attrs.define(kw_only=True)
class Duplicate(RateFault):
    name: ClassVar[str] = "duplicate"
    effects: ClassVar[Mapping[str, Effect]] = {"duplicate": Copy()}
    p: float = attrs.field(default=0.1, validator=probability)
    copies: int = attrs.field(default=1, validator=_positive)

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        if self.active(t.now) and rng.random() < self.p:
            return (Decision(kind="duplicate", key=t.key, value=self.copies),)
        return ()
