"""duplicate: deliver `copies` extra copies (1 to 100) of a transmission with probability `p`
(in (0, 1])."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs

from .base import Decision, RateFault, Transmission, acting_probability

#: More extra copies than this test nothing more than a few do, and each copy is a delivery the
#: bus holds in memory (copies=1000000000 once grew a process to 4.7 GB in 30 s).
MAX_COPIES = 100


def _copies(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_COPIES:
        raise ValueError(f"copies must be between 1 and {MAX_COPIES}, got {value}")


@attrs.define(kw_only=True)
class Duplicate(RateFault):
    name: ClassVar[str] = "duplicate"
    p: float = attrs.field(default=0.1, validator=acting_probability)
    copies: int = attrs.field(default=1, validator=_copies)

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        if self.active(t.now) and rng.random() < self.p:
            return (Decision(kind="duplicate", key=t.key, value=self.copies),)
        return ()
