"""The saga's vocabulary: events the services publish, the command that starts a saga, and
the replies to it.

This module owns the shape of every message and its JSON form. It must never hold behaviour
(what a service does with an event lives in `services.py`) and never import trio.

Money is kept in integer cents so that conservation checks are exact; JSON shows it as a
number with two decimals, like the seed (`"amount": 99.99`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs

from .errors import MalformedRequest


def cents_to_amount(cents: int) -> float:
    return cents / 100


def amount_to_cents(amount: float) -> int:
    return round(amount * 100)


@attrs.frozen(kw_only=True, slots=True)
class Event:
    """Something that happened in one saga, published by exactly one service."""

    type: ClassVar[str] = "Event"

    saga_id: str
    event_id: str
    timestamp: int

    def payload(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "saga_id": self.saga_id,
            **self.payload(),
            "event_id": self.event_id,
            "timestamp": self.timestamp,
        }


@attrs.frozen(kw_only=True, slots=True)
class InventoryReserved(Event):
    type: ClassVar[str] = "InventoryReserved"
    reservation_id: str
    sku: str
    quantity: int
    amount_cents: int

    def payload(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "sku": self.sku,
            "quantity": self.quantity,
            "amount": cents_to_amount(self.amount_cents),
        }


@attrs.frozen(kw_only=True, slots=True)
class InventoryReservationFailed(Event):
    type: ClassVar[str] = "InventoryReservationFailed"
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason}


@attrs.frozen(kw_only=True, slots=True)
class PaymentCharged(Event):
    type: ClassVar[str] = "PaymentCharged"
    payment_id: str
    amount_cents: int

    def payload(self) -> dict[str, Any]:
        return {"payment_id": self.payment_id, "amount": cents_to_amount(self.amount_cents)}


@attrs.frozen(kw_only=True, slots=True)
class PaymentFailed(Event):
    type: ClassVar[str] = "PaymentFailed"
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason}


@attrs.frozen(kw_only=True, slots=True)
class ShipmentCreated(Event):
    type: ClassVar[str] = "ShipmentCreated"
    shipment_id: str

    def payload(self) -> dict[str, Any]:
        return {"shipment_id": self.shipment_id}


@attrs.frozen(kw_only=True, slots=True)
class ShipmentFailed(Event):
    type: ClassVar[str] = "ShipmentFailed"
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason}


@attrs.frozen(kw_only=True, slots=True)
class PaymentRefunded(Event):
    type: ClassVar[str] = "PaymentRefunded"
    payment_id: str
    amount_cents: int

    def payload(self) -> dict[str, Any]:
        return {"payment_id": self.payment_id, "amount": cents_to_amount(self.amount_cents)}


@attrs.frozen(kw_only=True, slots=True)
class InventoryReleased(Event):
    type: ClassVar[str] = "InventoryReleased"
    reservation_id: str

    def payload(self) -> dict[str, Any]:
        return {"reservation_id": self.reservation_id}


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        InventoryReserved,
        InventoryReservationFailed,
        PaymentCharged,
        PaymentFailed,
        ShipmentCreated,
        ShipmentFailed,
        PaymentRefunded,
        InventoryReleased,
    )
}

#: The largest amount an order may name: a trillion, so that every amount in cents is an exact
#: integer in a float (below 2**53) and sums of them stay exact.
MAX_AMOUNT = 10**12

#: The steps a forced failure can target, by the name used in flags and fault specs.
STEPS = ("inventory", "payment", "shipping")


@attrs.frozen(kw_only=True, slots=True)
class ReserveInventory:
    """The client's request that starts a saga. Retrying it is safe: the same order gets the
    same answer; `order_key` is what "the same order" means."""

    saga_id: str
    sku: str
    quantity: int
    amount_cents: int | None = None
    client: str = "client"

    @property
    def order_key(self) -> tuple[str, int, int | None]:
        return (self.sku, self.quantity, self.amount_cents)

    @classmethod
    def from_json(cls, body: dict[str, Any], *, client: str) -> ReserveInventory:
        """Validate a `reserve_inventory` body; raise MalformedRequest naming the bad field."""
        saga_id = _required_str(body, "saga_id")
        sku = _required_str(body, "sku")
        quantity = body.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise MalformedRequest("field 'quantity' must be a positive integer")
        amount = body.get("amount")
        amount_cents: int | None = None
        if amount is not None:
            try:
                valid = (
                    isinstance(amount, int | float)
                    and not isinstance(amount, bool)
                    and math.isfinite(amount)  # NaN and Infinity parse as JSON in Python
                    and 0 <= amount <= MAX_AMOUNT  # issue 10: 1e308 overflowed on the way to cents
                )
            except OverflowError:  # an integer too large for a float
                valid = False
            if not valid:
                raise MalformedRequest(f"field 'amount' must be a number from 0 to {MAX_AMOUNT:,}")
            amount_cents = amount_to_cents(float(amount))
        return cls(
            saga_id=saga_id, sku=sku, quantity=quantity, amount_cents=amount_cents, client=client
        )


@attrs.frozen(kw_only=True, slots=True)
class ReservationAccepted:
    saga_id: str
    reservation_id: str


@attrs.frozen(kw_only=True, slots=True)
class ReservationRefused:
    """`code` is the Maelstrom error code the stdio mode answers with."""

    saga_id: str
    code: int
    text: str


Reply = ReservationAccepted | ReservationRefused
Command = ReserveInventory


def _required_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"field {field!r} must be a non-empty string")
    return value
