"""fail_STEP: force the saga step named STEP to fail, for named sagas (`saga=saga7`, several
joined by `+`) or for a `rate` of sagas: `fail_payment:rate=0.1`, `fail_car:saga=trip-3`. Any
step of any saga; the step must exist in the saga the fault runs on. The stdio mode and a
scenario's `fail = [...]` add sagas at run time through `force`."""

from __future__ import annotations

import random
from typing import ClassVar

import attrs

from .base import Decision, Fault, SagaShape, one_of, probability

PREFIX = "fail_"


@attrs.define(kw_only=True)
class ForcedFailure(Fault):
    name: ClassVar[str] = "fail"
    implied: ClassVar[frozenset[str]] = frozenset({"step"})
    step: str
    saga: str | None = None
    rate: float = attrs.field(default=0.0, validator=probability)
    reason: str | None = None
    _sagas: set[str] = attrs.field(factory=set, init=False)
    #: saga -> whether the rate struck it: a step that runs again for the same saga (a crash
    #: before its commit made it) gets the same answer, as a declined card stays declined.
    _drawn: dict[str, bool] = attrs.field(factory=dict, init=False)
    _default_reason: str = attrs.field(default="", init=False)

    def __attrs_post_init__(self) -> None:
        if not self.step:
            raise ValueError("a forced failure names its step: fail_STEP")
        if self.saga is not None:
            self._sagas.update(filter(None, self.saga.split("+")))
            if not self._sagas:
                raise ValueError("saga= names no saga (give saga ids joined by +)")
        if self.reason is not None and not self.reason:
            raise ValueError("reason= must not be empty")

    @property
    def spec_name(self) -> str:
        return f"{PREFIX}{self.step}"

    def bind(self, saga: SagaShape) -> None:
        one_of("the step of fail_STEP (a step that can fail)", self.step, saga.fallible_steps)
        self._default_reason = str(saga.step(self.step).reason)

    def force(self, saga_id: str) -> None:
        self._sagas.add(saga_id)

    def on_step(self, step: str, saga_id: str, rng: random.Random) -> Decision | None:
        if step != self.step:
            return None
        if saga_id not in self._sagas and not self._struck(saga_id, rng):
            return None
        reason = self.reason or self._default_reason or f"{step}_failed"
        return Decision(kind=self.spec_name, key=(step, saga_id), value=reason)

    def _struck(self, saga_id: str, rng: random.Random) -> bool:
        if self.rate <= 0:
            return False
        struck = self._drawn.get(saga_id)
        if struck is None:
            struck = self._drawn[saga_id] = rng.random() < self.rate
        return struck
