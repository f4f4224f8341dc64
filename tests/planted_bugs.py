"""Deliberately broken variants of the services, plugged in only by the tests of explore,
shrink and replay to prove that they find, minimise and reproduce a real class of bug.

This module owns the planted bugs and nothing else; it must never be imported by the library.
The factories are module-level functions so that they pickle into explore's worker processes
and a replay file can name them (`planted_bugs:double_charge_services`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from trio_saga.events import (
    Event,
    InventoryReserved,
    ReservationAccepted,
    ReservationRefused,
    ReserveInventory,
)
from trio_saga.services import (
    Inventory,
    Participant,
    PaymentService,
    SagaService,
    ShippingService,
    StepContext,
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


def double_charge_services() -> list[SagaService]:
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


def guardless_payment_services() -> list[SagaService]:
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


def exploding_services() -> list[SagaService]:
    return [Inventory(), PaymentService(), ExplodingShipping()]
