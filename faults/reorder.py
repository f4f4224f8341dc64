"""reorder: give transmissions a random extra delay within `window` seconds, so that messages
sent close together arrive in another order (window from a microsecond to a day; p in (0, 1])."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs

from trio_saga.trace import US

from .base import Decision, RateFault, Transmission, acting_probability, span


@attrs.define(kw_only=True)
class Reorder(RateFault):
    name: ClassVar[str] = "reorder"
    window: float = attrs.field(default=0.5, validator=span)
    p: float = attrs.field(default=0.5, validator=acting_probability)

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        if not self.active(t.now) or rng.random() >= self.p:
            return ()
        shift_us = round(rng.uniform(0.0, self.window) * US)
        return (Decision(kind="reorder", key=t.key, value=shift_us),) if shift_us > 0 else ()
