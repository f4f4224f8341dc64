"""drop: lose a transmission with probability `p` (in (0, 1]). The bus redelivers what was not
acked."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs

from .base import Decision, RateFault, Transmission, acting_probability


@attrs.define(kw_only=True)
class Drop(RateFault):
    name: ClassVar[str] = "drop"
    p: float = attrs.field(default=0.1, validator=acting_probability)

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        if self.active(t.now) and rng.random() < self.p:
            return (Decision(kind="drop", key=t.key),)
        return ()
