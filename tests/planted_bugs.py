"""Deliberately broken variants of the services, plugged in only by the tests of explore,
shrink, replay and certify to prove that they find, minimise, reproduce or flag a real class
of bug.

This module owns the planted bugs and nothing else; it must never be imported by the library.
Each planted bug is a saga definition: the shop with broken services (or a broken participant).
The factories are module-level functions so that the definitions pickle into explore's worker
processes, and a replay names a definition with `--saga-def planted_bugs:DOUBLE_CHARGE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from trio_saga.events import Event
from trio_saga.participant import (
    Participant,
    SagaService,
    StepContext,
)
from trio_saga.saga import Check
from trio_saga.shop import SHOP
from trio_saga.shop.events import (
    InventoryReserved,
    ReservationAccepted,
    ReservationRefused,
    ReserveInventory,
    ShipmentFailed,
)
from trio_saga.shop.services import (
    DEFAULT_UNIT_PRICE_CENTS,
    Inventory,
    PaymentService,
    ShippingService,
)


@attrs.define
class RetryForgettingInventory(Inventory):
    """Bug 1 of 2: a client's retried command (a duplicate or a redelivery of
    reserve_inventory) is taken for a new order, so the saga is announced again with a NEW
    event id; the participant's inbox, which dedupes by event id, cannot catch it."""

    def reserve(
        self, command: ReserveInventory, ctx: StepContext
    ) -> tuple[ReservationAccepted | ReservationRefused, Sequence[Event]]:
        self.reservations.pop(command.saga_id, None)
        return super().reserve(command, ctx)


@attrs.define
class EventIdPayment(PaymentService):
    """Bug 2 of 2: payment trusts the inbox alone for idempotency (by event id) and forgets
    its per-saga guard, so a second InventoryReserved of the same saga charges again."""

    def charge(self, event: InventoryReserved, ctx: StepContext) -> Sequence[Event]:
        self.payments.pop(event.saga_id, None)
        return super().charge(event, ctx)


def double_charge_services(state: Mapping[str, Any]) -> list[SagaService]:
    """The planted variant: with no fault it behaves; one duplicated or late client command
    charges a customer twice (invariant 4, seen first as invariant 2's wrong event list)."""
    return [RetryForgettingInventory(), EventIdPayment(), ShippingService()]


@attrs.define
class InboxlessParticipant(Participant):
    """A participant that forgot its inbox: every delivery is handled, duplicates included."""

    def receive(self, event: Event, ctx: StepContext) -> Sequence[Event] | None:
        produced = self.service.handle(event, ctx)
        self.outbox.extend(produced)
        return produced


def guardless_payment_services(state: Mapping[str, Any]) -> list[SagaService]:
    """Correct services but for payment's per-saga guard: harmless behind an inbox, a double
    charge behind `InboxlessParticipant` as soon as one InventoryReserved arrives twice."""
    return [Inventory(), EventIdPayment(), ShippingService()]


@attrs.define
class ExplodingShipping(ShippingService):
    """Not a saga bug but a crashing handler: shipping raises on the third saga it sees."""

    def handle(self, event: Event, ctx: StepContext) -> Sequence[Event]:
        if event.saga_id == "saga-3":
            raise KeyError("no carrier for saga-3")
        return super().handle(event, ctx)


def exploding_services(state: Mapping[str, Any]) -> list[SagaService]:
    return [Inventory(), PaymentService(), ExplodingShipping()]


@attrs.define
class ListPriceRefundPayment(PaymentService):
    """Refunds the list price of one unit, not what it charged: right for the default order
    (quantity 1 at list price), wrong for any other. Only varied orders can show it."""

    def refund(self, event: ShipmentFailed, ctx: StepContext) -> Sequence[Event]:
        payment = self.payments.get(event.saga_id)
        if payment is not None:
            payment.amount_cents = DEFAULT_UNIT_PRICE_CENTS  # the bug
        return super().refund(event, ctx)


def list_price_refund_services(state: Mapping[str, Any]) -> list[SagaService]:
    return [Inventory(), ListPriceRefundPayment(), ShippingService()]


def broken_check(run: Any) -> None:
    """Not a bug of the system under test but of the saga's own code around it: an invariant
    check that raises, which explore cannot count as a finding of any run."""
    raise ZeroDivisionError("the check divided by the number of refunds")


DOUBLE_CHARGE = attrs.evolve(SHOP, services=double_charge_services, ref=None)
GUARDLESS = attrs.evolve(SHOP, services=guardless_payment_services, ref=None)
INBOXLESS = attrs.evolve(
    SHOP, services=guardless_payment_services, participant=InboxlessParticipant, ref=None
)
EXPLODING = attrs.evolve(SHOP, services=exploding_services, ref=None)
WRONG_REFUND = attrs.evolve(SHOP, services=list_price_refund_services, ref=None)
BROKEN_CHECK = attrs.evolve(
    SHOP, checks=(*SHOP.checks, Check(name="refunds add up", run=broken_check)), ref=None
)
