"""The shop saga's services (DESIGN §1): what inventory, payment and shipping do with each
event. Each is a plain class, event in -> state change and events out.

This module must never import trio, read a clock, draw a random number or do I/O; the time and
any forced failure arrive in the `StepContext`, and the outside world (the card gateway, the
carrier) is reached only through `ctx.effects`, with an idempotency key per saga, so a step that
a crash makes run twice charges and ships once. Each service keeps one small record per saga,
and that record is the guard against events that arrive twice or out of order: a step already
decided is never decided again, so there is no charge after a release, no shipment after a
refund and no second charge for a redelivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ..events import MAX_AMOUNT, Event, amount_to_cents, valid_amount
from ..participant import EventIds, StepContext
from .events import (
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    ReservationAccepted,
    ReservationRefused,
    ReserveInventory,
    ShipmentCreated,
    ShipmentFailed,
)

DEFAULT_UNIT_PRICE_CENTS = 9999
DEFAULT_STOCK = 1000
DEFAULT_FUNDS_CENTS = 100_000_000


# -- inventory ---------------------------------------------------------------------------------


@attrs.define(slots=True)
class Reservation:
    order_key: tuple[str, int, int | None]
    sku: str
    quantity: int
    reply: ReservationAccepted | ReservationRefused
    status: str  # "held" | "released" | "shipped" | "refused"


@attrs.define
class Inventory:
    """T1: reserve stock. Compensates on PaymentFailed / PaymentRefunded by releasing; moves the
    reservation to shipped on ShipmentCreated (so stock is conserved: available + reserved +
    shipped = initial)."""

    name: ClassVar[str] = "inventory"
    stock: dict[str, int] = attrs.field(factory=dict)
    default_stock: int = DEFAULT_STOCK
    unit_price_cents: int = DEFAULT_UNIT_PRICE_CENTS
    prices_cents: dict[str, int] = attrs.field(factory=dict)
    initial: dict[str, int] = attrs.field(factory=dict)
    reserved: dict[str, int] = attrs.field(factory=dict)
    shipped: dict[str, int] = attrs.field(factory=dict)
    reservations: dict[str, Reservation] = attrs.field(factory=dict)
    reservations_made: int = 0
    ids: EventIds = attrs.field(factory=lambda: EventIds("inv"))

    def __attrs_post_init__(self) -> None:
        for sku, count in self.stock.items():
            self.initial.setdefault(sku, count)

    def available(self, sku: str) -> int:
        if sku not in self.stock:
            self.stock[sku] = self.initial[sku] = self.default_stock
        return self.stock[sku]

    def start(
        self, command: ReserveInventory, ctx: StepContext
    ) -> tuple[ReservationAccepted | ReservationRefused, Sequence[Event]]:
        """The client's command: the saga's first step (idempotent by saga id)."""
        return self.reserve(command, ctx)

    def reserve(
        self, command: ReserveInventory, ctx: StepContext
    ) -> tuple[ReservationAccepted | ReservationRefused, Sequence[Event]]:
        saga_id = command.saga_id
        known = self.reservations.get(saga_id)
        if known is not None:
            if known.order_key == command.order_key:
                return known.reply, ()
            return ReservationRefused(
                saga_id=saga_id,
                code=22,
                text=f"saga {saga_id} was already started with a different order",
            ), ()
        sku, quantity = command.sku, command.quantity
        forced = ctx.forced_failure("inventory", saga_id)
        available = self.available(sku)
        if forced is not None:
            return self._refuse(command, ctx, forced, f"inventory step forced to fail ({forced})")
        if available < quantity:
            return self._refuse(
                command,
                ctx,
                "insufficient_stock",
                f"insufficient stock for sku {sku}: {available} available, {quantity} requested",
            )
        self.stock[sku] = available - quantity
        self.reserved[sku] = self.reserved.get(sku, 0) + quantity
        self.reservations_made += 1
        reservation_id = f"r{self.reservations_made}"
        accepted = ReservationAccepted(saga_id=saga_id, reservation_id=reservation_id)
        self.reservations[saga_id] = Reservation(
            order_key=command.order_key, sku=sku, quantity=quantity, reply=accepted, status="held"
        )
        amount = command.amount_cents
        if amount is None:
            amount = self.prices_cents.get(sku, self.unit_price_cents) * quantity
        event = InventoryReserved(
            saga_id=saga_id,
            event_id=self.ids.next(),
            timestamp=ctx.timestamp,
            reservation_id=reservation_id,
            sku=sku,
            quantity=quantity,
            amount_cents=amount,
        )
        return accepted, (event,)

    def _refuse(
        self, command: ReserveInventory, ctx: StepContext, reason: str, text: str
    ) -> tuple[ReservationRefused, Sequence[Event]]:
        refused = ReservationRefused(saga_id=command.saga_id, code=22, text=text)
        self.reservations[command.saga_id] = Reservation(
            order_key=command.order_key,
            sku=command.sku,
            quantity=command.quantity,
            reply=refused,
            status="refused",
        )
        event = InventoryReservationFailed(
            saga_id=command.saga_id,
            event_id=self.ids.next(),
            timestamp=ctx.timestamp,
            reason=reason,
        )
        return refused, (event,)

    def handle(self, event: Event, ctx: StepContext) -> Sequence[Event]:
        reservation = self.reservations.get(event.saga_id)
        if reservation is None or reservation.status != "held":
            return ()  # nothing held: no release without a reservation, never twice
        sku, quantity = reservation.sku, reservation.quantity
        self.reserved[sku] -= quantity
        if isinstance(event, ShipmentCreated):
            reservation.status = "shipped"
            self.shipped[sku] = self.shipped.get(sku, 0) + quantity
            return ()
        reservation.status = "released"
        self.stock[sku] += quantity
        assert isinstance(reservation.reply, ReservationAccepted)
        return (
            InventoryReleased(
                saga_id=event.saga_id,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                reservation_id=reservation.reply.reservation_id,
            ),
        )


# -- payment -----------------------------------------------------------------------------------


@attrs.define(slots=True)
class Payment:
    payment_id: str | None
    amount_cents: int
    status: str  # "charged" | "failed" | "refunded"
    charge_id: str | None = None  # the gateway's answer to the charge


#: The outside systems the shop reaches (through `ctx.effects`).
GATEWAY, CARRIER = "gateway", "carrier"


@attrs.define
class PaymentService:
    """T2: charge on InventoryReserved. Compensates on ShipmentFailed by refunding."""

    name: ClassVar[str] = "payment"
    funds_cents: int = DEFAULT_FUNDS_CENTS
    charged_cents: int = 0
    refunded_cents: int = 0
    payments: dict[str, Payment] = attrs.field(factory=dict)
    payments_made: int = 0
    ids: EventIds = attrs.field(factory=lambda: EventIds("pay"))

    def handle(self, event: Event, ctx: StepContext) -> Sequence[Event]:
        if isinstance(event, InventoryReserved):
            return self.charge(event, ctx)
        if isinstance(event, ShipmentFailed):
            return self.refund(event, ctx)
        return ()

    def charge_key(self, saga_id: str) -> str | None:
        """The idempotency key of a saga's charge: the gateway charges a key once, however
        often a crash makes this step run."""
        return f"charge-{saga_id}"

    def refund_key(self, saga_id: str) -> str | None:
        return f"refund-{saga_id}"

    def charge(self, event: InventoryReserved, ctx: StepContext) -> Sequence[Event]:
        saga_id = event.saga_id
        if saga_id in self.payments:
            return ()  # decided once: a redelivery never charges again
        amount = event.amount_cents
        reason = ctx.forced_failure("payment", saga_id)
        if reason is None and self.funds_cents < amount:
            reason = "insufficient_funds"
        if reason is not None:
            self.payments[saga_id] = Payment(payment_id=None, amount_cents=amount, status="failed")
            return (
                PaymentFailed(
                    saga_id=saga_id,
                    event_id=self.ids.next(),
                    timestamp=ctx.timestamp,
                    reason=reason,
                ),
            )
        charge_id = ctx.effects.call(
            GATEWAY, "charge", key=self.charge_key(saga_id), amount_cents=amount
        )
        self.funds_cents -= amount
        self.charged_cents += amount
        self.payments_made += 1
        payment_id = f"p{self.payments_made}"
        self.payments[saga_id] = Payment(
            payment_id=payment_id, amount_cents=amount, status="charged", charge_id=charge_id
        )
        return (
            PaymentCharged(
                saga_id=saga_id,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                payment_id=payment_id,
                amount_cents=amount,
            ),
        )

    def refund(self, event: ShipmentFailed, ctx: StepContext) -> Sequence[Event]:
        payment = self.payments.get(event.saga_id)
        if payment is None or payment.status != "charged" or payment.payment_id is None:
            return ()  # no refund without a charge, never twice
        ctx.effects.call(
            GATEWAY,
            "refund",
            key=self.refund_key(event.saga_id),
            amount_cents=payment.amount_cents,
            charge=payment.charge_id,
        )
        payment.status = "refunded"
        self.funds_cents += payment.amount_cents
        self.refunded_cents += payment.amount_cents
        return (
            PaymentRefunded(
                saga_id=event.saga_id,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                payment_id=payment.payment_id,
                amount_cents=payment.amount_cents,
            ),
        )


# -- shipping ----------------------------------------------------------------------------------


@attrs.define
class ShippingService:
    """T3: ship on PaymentCharged. The last step, so it has nothing to compensate."""

    name: ClassVar[str] = "shipping"
    shipments: dict[str, str | None] = attrs.field(factory=dict)  # saga -> shipment id or None
    labels: dict[str, str] = attrs.field(factory=dict)  # saga -> the carrier's label
    shipments_made: int = 0
    ids: EventIds = attrs.field(factory=lambda: EventIds("shp"))

    def handle(self, event: Event, ctx: StepContext) -> Sequence[Event]:
        saga_id = event.saga_id
        if not isinstance(event, PaymentCharged) or saga_id in self.shipments:
            return ()
        reason = ctx.forced_failure("shipping", saga_id)
        if reason is not None:
            self.shipments[saga_id] = None
            return (
                ShipmentFailed(
                    saga_id=saga_id,
                    event_id=self.ids.next(),
                    timestamp=ctx.timestamp,
                    reason=reason,
                ),
            )
        self.labels[saga_id] = ctx.effects.call(CARRIER, "ship", key=f"ship-{saga_id}")
        self.shipments_made += 1
        shipment_id = f"s{self.shipments_made}"
        self.shipments[saga_id] = shipment_id
        return (
            ShipmentCreated(
                saga_id=saga_id,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                shipment_id=shipment_id,
            ),
        )


def default_services(
    *,
    stock: Mapping[str, int] | None = None,
    default_stock: int = DEFAULT_STOCK,
    unit_price_cents: int = DEFAULT_UNIT_PRICE_CENTS,
    funds_cents: int = DEFAULT_FUNDS_CENTS,
) -> list[Inventory | PaymentService | ShippingService]:
    """The three services of DESIGN §1 with the given initial state."""
    return [
        Inventory(
            stock=dict(stock or {}), default_stock=default_stock, unit_price_cents=unit_price_cents
        ),
        PaymentService(funds_cents=funds_cents),
        ShippingService(),
    ]


#: The shop's initial state, as a scenario's [state] table names it, with the defaults.
STATE_KEYS = ("stock", "default_stock", "unit_price", "funds")


def shop_services(state: Mapping[str, Any]) -> list[Inventory | PaymentService | ShippingService]:
    """The services factory of the shop saga: `state` is a scenario's [state] table
    (`stock` per sku, `default_stock`, `unit_price` and `funds` in money units), validated."""
    unknown = sorted(set(state) - set(STATE_KEYS))
    if unknown:
        raise ValueError(
            f"unknown state key {unknown[0]!r} (the shop takes {', '.join(STATE_KEYS)})"
        )
    stock = state.get("stock", {})
    if not isinstance(stock, Mapping):
        raise ValueError("state.stock must be a table of sku = count")
    for sku, count in stock.items():
        if not sku:
            raise ValueError("state.stock: a sku must be a non-empty string")
        _count(f"state.stock.{sku}", count)
    return default_services(
        stock={str(k): int(v) for k, v in stock.items()},
        default_stock=_count("state.default_stock", state.get("default_stock", DEFAULT_STOCK)),
        unit_price_cents=_money(
            "state.unit_price", state.get("unit_price"), DEFAULT_UNIT_PRICE_CENTS
        ),
        funds_cents=_money("state.funds", state.get("funds"), DEFAULT_FUNDS_CENTS),
    )


def _count(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{key} must be an integer from 0 to {MAX_COUNT:,}, got {value!r}")
    return value


def _money(key: str, value: object, default_cents: int) -> int:
    if value is None:
        return default_cents
    if not valid_amount(value):
        raise ValueError(f"{key} must be a number from 0 to {MAX_AMOUNT:,}, got {value!r}")
    assert isinstance(value, int | float)
    return amount_to_cents(float(value))


#: The most stock of one sku: a billion units, far beyond a simulation, exact everywhere.
MAX_COUNT = 1_000_000_000
