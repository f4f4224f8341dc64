"""A planted bug in the travel saga, for the example's tests: explore must find it, shrink it
and replay it. Realistic: the hotel remembers only its most recent booking and cancels that
one, which is right as long as trips never overlap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from travel import Hotels, SeatReserved, saga, travel_services

from trio_saga import Event, StepContext


@attrs.define
class ForgetfulHotels(Hotels):
    """Cancels the last room it booked rather than the room of the saga asking."""

    last: str = ""

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        if isinstance(event, SeatReserved):
            produced = super().handle(event, ctx)
            if event.saga_id in self.rooms.held:
                self.last = event.saga_id
            return produced
        mine = self.rooms.held.pop(self.last, None)  # the bug: whose room is this?
        if mine is not None:
            self.rooms.held[event.saga_id] = mine
        return super().handle(event, ctx)


def forgetful_services(state: Mapping[str, Any]) -> list[Any]:
    services = travel_services(state)
    services[1] = ForgetfulHotels(rooms=services[1].rooms)
    return services


forgetful_hotel = attrs.evolve(saga, services=forgetful_services, ref=None)
