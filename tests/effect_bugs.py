"""Planted bugs of issue 11 (effects, the crash before a commit, volatile state), plugged in
only by the tests to prove that explore finds and shrinks them and that certify flags them.

This module owns these planted bugs and nothing else; the library never imports it. Each is
the shop with one service changed; the factories are module-level functions so that the
definitions pickle into explore's worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from trio_saga.participant import Participant, volatile
from trio_saga.shop import SHOP
from trio_saga.shop.services import Inventory, Payment, PaymentService, ShippingService


@attrs.define
class KeylessPayment(PaymentService):
    """Charges the card without an idempotency key: idempotent as a saga (its inbox and its
    per-saga record are fine), not as an effect. A crash after the charge and before the
    commit makes the step run again, and the gateway charges the customer twice."""

    def charge_key(self, saga_id: str) -> str | None:
        return None


def keyless_services(state: Mapping[str, Any]) -> list[Any]:
    return [Inventory(), KeylessPayment(), ShippingService()]


@attrs.define
class ForgetfulPayment(PaymentService):
    """Keeps its per-saga record (the guard, and what a refund needs) only in memory: a crash
    wipes it, and its restart hook rebuilds nothing. A ShipmentFailed after a crash finds no
    charge to refund, so the customer pays for a compensated saga."""

    payments: dict[str, Payment] = volatile(dict)

    def restart(self) -> None:
        pass  # the bug: nothing to rebuild from


def forgetful_services(state: Mapping[str, Any]) -> list[Any]:
    return [Inventory(), ForgetfulPayment(), ShippingService()]


@attrs.define
class CachingPayment(PaymentService):
    """Correct: a volatile cache of refundable charges, rebuilt from durable state by the
    restart hook. Proves the hook runs (without it refunds would be lost after a crash)."""

    refundable: dict[str, int] = volatile(dict)

    def __attrs_post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.refundable = {
            saga: p.amount_cents for saga, p in self.payments.items() if p.status == "charged"
        }

    def charge(self, event: Any, ctx: Any) -> Any:
        produced = super().charge(event, ctx)
        payment = self.payments[event.saga_id]
        if payment.status == "charged":
            self.refundable[event.saga_id] = payment.amount_cents
        return produced

    def refund(self, event: Any, ctx: Any) -> Any:
        if event.saga_id not in self.refundable:
            return ()  # relies on the cache: wrong unless restart() rebuilt it
        del self.refundable[event.saga_id]
        return super().refund(event, ctx)


def caching_services(state: Mapping[str, Any]) -> list[Any]:
    return [Inventory(), CachingPayment(), ShippingService()]


@attrs.define
class BrittlePayment(CachingPayment):
    """The cache of CachingPayment without its rebuild, read without a guard: after a crash,
    the refund of a charge made before it raises KeyError. Clean runs never crash, so only a
    perturbation shows it."""

    def restart(self) -> None:
        pass  # the bug: the cache stays empty

    def refund(self, event: Any, ctx: Any) -> Any:
        payment = self.payments.get(event.saga_id)
        if payment is None or payment.status != "charged":
            return ()
        del self.refundable[event.saga_id]  # KeyError once a crash wiped the cache
        return PaymentService.refund(self, event, ctx)


def brittle_services(state: Mapping[str, Any]) -> list[Any]:
    return [Inventory(), BrittlePayment(), ShippingService()]


@attrs.define
class VolatileInboxParticipant(Participant):
    """A participant whose inbox lives in memory: a crash forgets which deliveries it took."""

    def crashed(self) -> None:
        super().crashed()
        self.inbox = set()


KEYLESS = attrs.evolve(SHOP, services=keyless_services, ref=None)
FORGETFUL = attrs.evolve(SHOP, services=forgetful_services, ref=None)
CACHING = attrs.evolve(SHOP, services=caching_services, ref=None)
BRITTLE = attrs.evolve(SHOP, services=brittle_services, ref=None)
