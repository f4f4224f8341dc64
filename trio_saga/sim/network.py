"""The simulated network between the broker and the services: where fault decisions, partitions
and crashes apply.

This module owns what happens to a message on its way: it asks the fault injector about each
transmission and applies each decision through the effect its plugin names (`Fault.effects`),
so a new network fault is a plugin and never an edit here; it holds the partitions (cuts) and
which services are down, and says whether a copy that arrives is delivered. It must never
decide what a service does, keep subscriptions or acknowledgements (the broker's job), or
import trio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from faults.base import Decision, Effect, FaultInjector, Transmission
from faults.registry import EFFECTS

from ..broker import Delivery
from ..errors import FaultSpecError
from ..trace import US, Trace
from .agenda import Agenda, Arrive, Mark


@attrs.define(slots=True)
class Cut:
    """A partition of one service's link, in one direction or both, over [start, end)."""

    service: str
    direction: str
    start_us: int
    end_us: int
    mode: str  # drop | hold

    def blocks(self, service: str, direction: str, now_us: int) -> bool:
        return (
            service == self.service
            and self.direction in ("both", direction)
            and self.start_us <= now_us < self.end_us
        )


class SimNetwork:
    """Carries deliveries through the faults onto the agenda, and filters what arrives."""

    def __init__(
        self,
        *,
        agenda: Agenda,
        injector: FaultInjector,
        trace: Trace,
        fault_counts: dict[str, int],
        effects: Mapping[str, Effect] = EFFECTS,
    ) -> None:
        self.agenda = agenda
        self.injector = injector
        self.trace = trace
        self.fault_counts = fault_counts
        self.effects = effects
        self.cuts: list[Cut] = []
        self.down: set[str] = set()

    def count(self, kind: str) -> None:
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1

    def cut(self, service: str, direction: str, now_us: int) -> Cut | None:
        """The partition that blocks `service`'s `direction` ("in" or "out") now, if any."""
        for cut in self.cuts:
            if cut.blocks(service, direction, now_us):
                return cut
        return None

    def partition(self, cut: Cut, now_us: int) -> None:
        """Add a partition; its start and heal are trace lines at their times."""
        self.cuts.append(cut)
        info = f"{cut.direction} until {cut.end_us / US:g}s, {cut.mode}"
        self.agenda.at(cut.start_us, now_us, Mark("partition", cut.service, info))
        self.agenda.at(cut.end_us, now_us, Mark("heal", cut.service, cut.direction))

    def transmit(self, delivery: Delivery, now_us: int) -> None:
        """Send one attempt of `delivery`: each copy that survives the faults is put on the
        agenda at its arrival time (a partition is applied on arrival, in `admits`)."""
        if not self.injector.answers["net"]:
            self.agenda.at(now_us, now_us, Arrive(delivery))
            return
        decisions: Sequence[Decision] = self.injector.transmit(
            Transmission(
                source=delivery.source,
                dest=delivery.dest,
                saga_id=delivery.payload.saga_id,
                what=delivery.what,
                attempt=delivery.attempt,
                now=now_us,
            )
        )
        arrivals = [now_us]
        for decision in decisions:
            kind = decision.kind
            effect = self.effects.get(kind) or self._effect_of(kind)
            self.count(kind)
            value = int(decision.value)
            arrivals = effect.apply(arrivals, value)
            self.trace.add(
                now_us,
                kind,
                delivery.dest,
                delivery.payload.saga_id,
                delivery.what,
                delivery.ref,
                effect.note(value),
            )
            if not arrivals:
                return
        for t in arrivals:
            self.agenda.at(t, now_us, Arrive(delivery))

    def _effect_of(self, kind: str) -> Effect:
        """The effect of a kind the registry does not know: a plugin of the user's own."""
        for fault in self.injector.faults:
            effect = type(fault).effects.get(kind)
            if effect is not None:
                self.effects = {**self.effects, kind: effect}
                return effect
        raise FaultSpecError(f"a network decision of unknown kind {kind!r}")

    def admits(self, delivery: Delivery, now_us: int) -> bool:
        """Whether a copy arriving now reaches its destination: not if a partition cuts the
        destination's in-link (it is dropped, or held until the heal) or the service is down."""
        dest = delivery.dest
        if self.cuts:
            cut = self.cut(dest, "in", now_us)
            if cut is not None:  # a partition also catches what was already in flight
                saga_id = delivery.payload.saga_id
                if cut.mode == "drop":
                    self.count("partition_drop")
                    self.trace.add(
                        now_us, "drop", dest, saga_id, delivery.what, delivery.ref, "partitioned"
                    )
                else:
                    self.trace.add(
                        now_us, "hold", dest, saga_id, delivery.what, delivery.ref, "partitioned"
                    )
                    self.agenda.at(cut.end_us, now_us, Arrive(delivery))
                return False
        if dest in self.down:
            self.trace.add(
                now_us,
                "lost",
                dest,
                delivery.payload.saga_id,
                delivery.what,
                delivery.ref,
                "service down",
            )
            return False
        return True
