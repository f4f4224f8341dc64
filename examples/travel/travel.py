"""A travel saga, defined outside trio-saga: book a flight seat, then a hotel room, then a
rental car, then charge the card. When a step fails, the steps before it are undone in reverse
(the car returned, the room cancelled, the seat released).

This module is everything a user writes: the events, four plain services (event in -> state
change and events out, no trio, no clock, no randomness) and one `SagaDefinition`. Every tool
of trio-saga works on it: `run.py scenario examples/travel/scenarios/happy.toml`,
`run.py explore --scenario ... --swarm`, `run.py replay ... --saga-def travel:saga`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from trio_saga import (
    Check,
    Event,
    EventIds,
    FinishedRun,
    SagaDefinition,
    StartSaga,
    Step,
    StepContext,
    Violation,
)

# -- events ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SeatReserved(Event):
    type: ClassVar[str] = "SeatReserved"
    seat: str
    amount_cents: int  # the trip's price travels with the saga to the card


@attrs.frozen(kw_only=True)
class NoSeat(Event):
    type: ClassVar[str] = "NoSeat"
    reason: str


@attrs.frozen(kw_only=True)
class SeatReleased(Event):
    type: ClassVar[str] = "SeatReleased"
    seat: str


@attrs.frozen(kw_only=True)
class RoomBooked(Event):
    type: ClassVar[str] = "RoomBooked"
    room: str
    amount_cents: int


@attrs.frozen(kw_only=True)
class NoRoom(Event):
    type: ClassVar[str] = "NoRoom"
    reason: str


@attrs.frozen(kw_only=True)
class RoomCancelled(Event):
    type: ClassVar[str] = "RoomCancelled"
    room: str


@attrs.frozen(kw_only=True)
class CarRented(Event):
    type: ClassVar[str] = "CarRented"
    car: str
    amount_cents: int


@attrs.frozen(kw_only=True)
class NoCar(Event):
    type: ClassVar[str] = "NoCar"
    reason: str


@attrs.frozen(kw_only=True)
class CarReturned(Event):
    type: ClassVar[str] = "CarReturned"
    car: str


@attrs.frozen(kw_only=True)
class CardCharged(Event):
    type: ClassVar[str] = "CardCharged"
    amount_cents: int


@attrs.frozen(kw_only=True)
class CardDeclined(Event):
    type: ClassVar[str] = "CardDeclined"
    reason: str


# -- services ----------------------------------------------------------------------------------


@attrs.define
class Pool:
    """A pool of numbered things (seats, rooms, cars) that a saga takes one of and gives back:
    the record per saga is the guard against a second booking or a second release."""

    prefix: str
    free: int
    held: dict[str, str] = attrs.Factory(dict)  # saga -> the thing it holds
    released: set[str] = attrs.Factory(set)  # sagas that gave theirs back
    refused: set[str] = attrs.Factory(set)
    issued: int = 0

    def take(self, saga_id: str) -> str:
        self.issued += 1
        self.free -= 1
        thing = f"{self.prefix}{self.issued}"
        self.held[saga_id] = thing
        return thing

    def give_back(self, saga_id: str) -> str | None:
        thing = self.held.pop(saga_id, None)
        if thing is not None:
            self.free += 1
            self.released.add(saga_id)
        return thing

    def decided(self, saga_id: str) -> bool:
        return saga_id in self.held or saga_id in self.released or saga_id in self.refused


@attrs.define
class Flights:
    """Step 1: on the client's command, reserve a seat. Releases it when the hotel fails or is
    cancelled."""

    name: ClassVar[str] = "flight"
    seats: Pool
    ids: EventIds = attrs.Factory(lambda: EventIds("fl"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        saga = event.saga_id
        if isinstance(event, StartSaga):
            if self.seats.decided(saga):
                return ()
            reason = ctx.forced_failure("flight", saga)
            if reason is None and self.seats.free <= 0:
                reason = "fully_booked"
            if reason is not None:
                self.seats.refused.add(saga)
                return (
                    NoSeat(
                        saga_id=saga,
                        event_id=self.ids.next(),
                        timestamp=ctx.timestamp,
                        reason=reason,
                    ),
                )
            seat = self.seats.take(saga)
            return (
                SeatReserved(
                    saga_id=saga,
                    event_id=self.ids.next(),
                    timestamp=ctx.timestamp,
                    seat=seat,
                    amount_cents=round(event["amount"] * 100),
                ),
            )
        released = self.seats.give_back(saga)  # NoRoom or RoomCancelled: undo the seat
        if released is None:
            return ()
        return (
            SeatReleased(
                saga_id=saga, event_id=self.ids.next(), timestamp=ctx.timestamp, seat=released
            ),
        )


@attrs.define
class Hotels:
    """Step 2: on SeatReserved, book a room. Cancels it when the car fails or is returned."""

    name: ClassVar[str] = "hotel"
    rooms: Pool
    ids: EventIds = attrs.Factory(lambda: EventIds("ht"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        saga = event.saga_id
        if isinstance(event, SeatReserved):
            if self.rooms.decided(saga):
                return ()
            reason = ctx.forced_failure("hotel", saga)
            if reason is None and self.rooms.free <= 0:
                reason = "no_vacancy"
            if reason is not None:
                self.rooms.refused.add(saga)
                return (
                    NoRoom(
                        saga_id=saga,
                        event_id=self.ids.next(),
                        timestamp=ctx.timestamp,
                        reason=reason,
                    ),
                )
            room = self.rooms.take(saga)
            return (
                RoomBooked(
                    saga_id=saga,
                    event_id=self.ids.next(),
                    timestamp=ctx.timestamp,
                    room=room,
                    amount_cents=event.amount_cents,
                ),
            )
        cancelled = self.rooms.give_back(saga)  # NoCar or CarReturned
        if cancelled is None:
            return ()
        return (
            RoomCancelled(
                saga_id=saga, event_id=self.ids.next(), timestamp=ctx.timestamp, room=cancelled
            ),
        )


@attrs.define
class CarRental:
    """Step 3: on RoomBooked, rent a car. Returns the car when the card is declined."""

    name: ClassVar[str] = "car"
    cars: Pool
    ids: EventIds = attrs.Factory(lambda: EventIds("car"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        saga = event.saga_id
        if isinstance(event, RoomBooked):
            if self.cars.decided(saga):
                return ()
            reason = ctx.forced_failure("car", saga)
            if reason is None and self.cars.free <= 0:
                reason = "no_cars_left"
            if reason is not None:
                self.cars.refused.add(saga)
                return (
                    NoCar(
                        saga_id=saga,
                        event_id=self.ids.next(),
                        timestamp=ctx.timestamp,
                        reason=reason,
                    ),
                )
            car = self.cars.take(saga)
            return (
                CarRented(
                    saga_id=saga,
                    event_id=self.ids.next(),
                    timestamp=ctx.timestamp,
                    car=car,
                    amount_cents=event.amount_cents,
                ),
            )
        returned = self.cars.give_back(saga)  # CardDeclined
        if returned is None:
            return ()
        return (
            CarReturned(
                saga_id=saga, event_id=self.ids.next(), timestamp=ctx.timestamp, car=returned
            ),
        )


@attrs.define
class Card:
    """Step 4, the last: on CarRented, charge the card. Nothing after it can fail, so it has
    nothing to undo."""

    name: ClassVar[str] = "card"
    limit_cents: int
    charged: dict[str, int] = attrs.Factory(dict)  # saga -> cents
    declined: set[str] = attrs.Factory(set)
    ids: EventIds = attrs.Factory(lambda: EventIds("cc"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        saga = event.saga_id
        if not isinstance(event, CarRented) or saga in self.charged or saga in self.declined:
            return ()
        reason = ctx.forced_failure("card", saga)
        if reason is None and event.amount_cents > self.limit_cents:
            reason = "over_limit"
        if reason is not None:
            self.declined.add(saga)
            return (
                CardDeclined(
                    saga_id=saga, event_id=self.ids.next(), timestamp=ctx.timestamp, reason=reason
                ),
            )
        self.charged[saga] = event.amount_cents
        return (
            CardCharged(
                saga_id=saga,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                amount_cents=event.amount_cents,
            ),
        )


def travel_services(state: Mapping[str, Any]) -> list[Any]:
    """The services factory: `state` is a scenario's [state] table."""
    unknown = sorted(set(state) - {"seats", "rooms", "cars", "limit"})
    if unknown:
        raise ValueError(f"unknown state key {unknown[0]!r}")
    counts = {key: state.get(key, 100) for key in ("seats", "rooms", "cars")}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"state.{key} must be a non-negative integer, got {value!r}")
    limit = state.get("limit", 10_000.0)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit <= 1e9:
        raise ValueError(f"state.limit must be an amount from 0 to 1e9, got {limit!r}")
    return [
        Flights(seats=Pool("seat-", counts["seats"])),
        Hotels(rooms=Pool("room-", counts["rooms"])),
        CarRental(cars=Pool("car-", counts["cars"])),
        Card(limit_cents=round(limit * 100)),
    ]


# -- the saga's own invariants ------------------------------------------------------------------

NOTHING_LEAKS = "nothing is left held"
CHARGED_ONCE = "each completed trip is charged once"


def nothing_leaks(run: FinishedRun) -> list[Violation] | None:
    """A trip that ended holds a seat, a room and a car only if it completed."""
    found = []
    for service in ("flight", "hotel", "car"):
        pool = getattr(
            run.service(service),
            {"flight": "seats", "hotel": "rooms", "car": "cars"}[service],
            None,
        )
        if not isinstance(pool, Pool):
            return None
        for saga_id, thing in sorted(pool.held.items()):
            record = run.saga_log.get(saga_id)
            if record is not None and record.done and record.status != "completed":
                found.append(
                    Violation(
                        invariant=NOTHING_LEAKS,
                        saga_id=saga_id,
                        evidence=record.evidence,
                        detail=f"{record.status} but still holds {thing}",
                    )
                )
        owners: dict[str, list[str]] = {}
        for saga_id, thing in pool.held.items():
            owners.setdefault(thing, []).append(saga_id)
        for thing, sagas in sorted(owners.items()):
            if len(sagas) > 1:
                found.append(
                    Violation(
                        invariant=NOTHING_LEAKS,
                        saga_id=None,
                        detail=f"{thing} is held by {', '.join(sagas)}",
                    )
                )
    return found


def charged_once(run: FinishedRun) -> list[Violation] | None:
    card = run.service("card")
    if not isinstance(card, Card):
        return None
    found = []
    for record in run.saga_log:
        charged = record.saga_id in card.charged
        if (record.status == "completed") != charged and record.done:
            found.append(
                Violation(
                    invariant=CHARGED_ONCE,
                    saga_id=record.saga_id,
                    evidence=record.evidence,
                    detail=f"{record.status} but {'charged' if charged else 'not charged'}",
                )
            )
        if record.types.count("CardCharged") > 1:
            found.append(
                Violation(
                    invariant=CHARGED_ONCE,
                    saga_id=record.saga_id,
                    evidence=record.evidence,
                    detail="charged twice",
                )
            )
    return found


# -- the saga ---------------------------------------------------------------------------------

saga = SagaDefinition(
    name="travel",
    description="flight seat -> hotel room -> rental car -> card, undone in reverse",
    command="book_trip",
    order_fields={"traveller": "ada", "amount": 450.0},
    steps=(
        Step(name="flight", success="SeatReserved", failure="NoSeat", compensation="SeatReleased"),
        Step(name="hotel", success="RoomBooked", failure="NoRoom", compensation="RoomCancelled"),
        Step(name="car", success="CarRented", failure="NoCar", compensation="CarReturned"),
        Step(name="card", success="CardCharged", failure="CardDeclined", reason="card_declined"),
    ),
    services=travel_services,
    checks=(
        Check(name=NOTHING_LEAKS, run=nothing_leaks),
        Check(name=CHARGED_ONCE, run=charged_once),
    ),
)
