"""The shop saga's vocabulary (DESIGN §2): the events inventory, payment and shipping publish,
the client's `reserve_inventory` command that starts a saga, and the replies to it.

This module owns the shape of every shop message and its JSON form, and what a valid order is:
the command's constructor refuses a bad field with the same words whether the order comes
from a stdio request, a scenario file or the library. It must never hold behaviour (that is
`services.py` beside it) and never import trio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..errors import MalformedRequest
from ..events import (
    MAX_AMOUNT,
    Event,
    Refused,
    amount_to_cents,
    cents_to_amount,
    valid_amount,
)


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

#: The order fields of a shop saga, with their defaults (a scenario's [[sagas]] keys).
ORDER_FIELDS: Mapping[str, Any] = {"sku": "abc123", "quantity": 1, "amount": None}


def _sku(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise MalformedRequest("field 'sku' must be a non-empty string")


def _quantity(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise MalformedRequest("field 'quantity' must be a positive integer")


def _amount_cents(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_AMOUNT * 100
    ):
        raise MalformedRequest(_AMOUNT_TEXT)


_AMOUNT_TEXT = f"field 'amount' must be a number from 0 to {MAX_AMOUNT:,}"


@attrs.frozen(kw_only=True, slots=True)
class ReserveInventory:
    """The client's request that starts a saga. Retrying it is safe: the same order gets the
    same answer; `order_key` is what "the same order" means."""

    type: ClassVar[str] = "reserve_inventory"

    saga_id: str
    sku: str = attrs.field(validator=_sku)
    quantity: int = attrs.field(validator=_quantity)
    amount_cents: int | None = attrs.field(default=None, validator=_amount_cents)
    client: str = "client"

    @property
    def order_key(self) -> tuple[str, int, int | None]:
        return (self.sku, self.quantity, self.amount_cents)

    @classmethod
    def from_json(cls, body: dict[str, Any], *, client: str) -> ReserveInventory:
        """Validate a `reserve_inventory` body; raise MalformedRequest naming the bad field."""
        saga_id = _required_str(body, "saga_id")
        return cls.from_order(
            saga_id,
            {
                "sku": body.get("sku"),
                "quantity": body.get("quantity"),
                "amount": body.get("amount"),
            },
            client,
        )

    @classmethod
    def from_order(
        cls, saga_id: str, fields: Mapping[str, Any], client: str = "client"
    ) -> ReserveInventory:
        """The command for an order's fields (sku, quantity, amount in money units, all
        optional but sku and quantity in a stdio request); MalformedRequest names a bad one."""
        unknown = sorted(set(fields) - set(ORDER_FIELDS))
        if unknown:
            raise MalformedRequest(
                f"unknown order field {unknown[0]!r} (a shop order takes sku, quantity, amount)"
            )
        command = cls(
            saga_id=saga_id,
            sku=fields.get("sku", ORDER_FIELDS["sku"]),
            quantity=fields.get("quantity", ORDER_FIELDS["quantity"]),
            client=client,
        )
        amount = fields.get("amount")
        if amount is None:
            return command
        if not valid_amount(amount):
            raise MalformedRequest(_AMOUNT_TEXT)
        return attrs.evolve(command, amount_cents=amount_to_cents(float(amount)))


@attrs.frozen(kw_only=True, slots=True)
class ReservationAccepted:
    saga_id: str
    reservation_id: str

    accepted: ClassVar[bool] = True

    @property
    def info(self) -> str:
        return self.reservation_id


#: A refusal: the generic one, whose `code` is the Maelstrom code the stdio mode answers with.
ReservationRefused = Refused


def _required_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"field {field!r} must be a non-empty string")
    return value
