"""fail_inventory / fail_payment / fail_shipping: force a saga step to fail, for named sagas
(`saga=saga7`, several joined by `+`) or for a `rate` of sagas. The stdio mode adds sagas at
run time from the request flags, through `force`."""

from __future__ import annotations

import random
from typing import ClassVar

import attrs

from trio_saga.services import FORCED_REASONS

from .base import Decision, Fault, probability


@attrs.define(kw_only=True)
class ForcedFailure(Fault):
    step: ClassVar[str] = "payment"
    saga: str | None = None
    rate: float = attrs.field(default=0.0, validator=probability)
    reason: str | None = None
    _sagas: set[str] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        if self.saga:
            self._sagas.update(filter(None, self.saga.split("+")))

    def force(self, saga_id: str) -> None:
        self._sagas.add(saga_id)

    def on_step(self, step: str, saga_id: str, rng: random.Random) -> Decision | None:
        if step != self.step:
            return None
        if saga_id not in self._sagas and not (self.rate > 0 and rng.random() < self.rate):
            return None
        reason = self.reason or FORCED_REASONS[step]
        return Decision(kind=self.name, key=(step, saga_id), value=reason)


@attrs.define(kw_only=True)
class FailInventory(ForcedFailure):
    name: ClassVar[str] = "fail_inventory"
    step: ClassVar[str] = "inventory"


@attrs.define(kw_only=True)
class FailPayment(ForcedFailure):
    name: ClassVar[str] = "fail_payment"
    step: ClassVar[str] = "payment"


@attrs.define(kw_only=True)
class FailShipping(ForcedFailure):
    name: ClassVar[str] = "fail_shipping"
    step: ClassVar[str] = "shipping"
