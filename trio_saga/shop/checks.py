"""The shop saga's own invariants (DESIGN §4, 4 and 5): stock and money are conserved.

This module owns what conservation means for the shop. It reads only the finished run (the
saga log, the services' final state and the outside world's effects) and must never change
any. Money is counted where it really moves: at the card gateway (DESIGN §4, 5). A check
returns None when the system under test has no such service (a user replaced inventory with a
class of their own): the summary then shows it as not applicable, never as passed.
"""

from __future__ import annotations

from collections import Counter

from ..oracle import FinishedRun
from ..saga import Violation
from .services import GATEWAY, Inventory, PaymentService

STOCK = "stock is conserved"
MONEY = "money is conserved"


def stock_is_conserved(run: FinishedRun) -> list[Violation] | None:
    inventory = run.service("inventory")
    if not isinstance(inventory, Inventory):
        return None
    found: list[Violation] = []
    for sku in sorted(inventory.initial):
        available = inventory.stock.get(sku, 0)
        reserved = inventory.reserved.get(sku, 0)
        shipped = inventory.shipped.get(sku, 0)
        initial = inventory.initial[sku]
        if available + reserved + shipped != initial or min(available, reserved, shipped) < 0:
            found.append(
                Violation(
                    invariant=STOCK,
                    saga_id=None,
                    detail=(
                        f"sku {sku}: available {available} + reserved {reserved}"
                        f" + shipped {shipped} != initial {initial}"
                    ),
                )
            )
    for saga_id, reservation in inventory.reservations.items():
        record = run.saga_log.get(saga_id)
        if reservation.status == "held" and record is not None and record.done:
            found.append(
                Violation(
                    invariant=STOCK,
                    saga_id=saga_id,
                    evidence=record.evidence,
                    detail=f"{record.status} but {reservation.quantity} x {reservation.sku} still"
                    " reserved (a reservation leak)",
                )
            )
    return found


def money_is_conserved(run: FinishedRun) -> list[Violation] | None:
    payment = run.service("payment")
    if not isinstance(payment, PaymentService):
        return None
    found: list[Violation] = []
    for record in run.saga_log:
        counts = Counter(record.types)
        for kind, what in (("PaymentCharged", "charged"), ("PaymentRefunded", "refunded")):
            if counts[kind] > 1:
                found.append(
                    Violation(
                        invariant=MONEY,
                        saga_id=record.saga_id,
                        evidence=record.evidence,
                        detail=f"{what} {counts[kind]} times",
                    )
                )
    # What the gateway did, not what the payment service believes it did (a crash may have
    # wiped what it believed). Every runner keeps the outside world (the simulation in memory,
    # the Redis runtime in Redis), so there is no second source to fall back on.
    charges = run.world.applied(GATEWAY, "charge")
    refunds = run.world.applied(GATEWAY, "refund")
    for kind, effects in (("charged", charges), ("refunded", refunds)):
        per_saga = Counter(e.saga_id for e in effects)
        for saga_id, times in sorted(per_saga.items()):
            if times > 1:
                known = run.saga_log.get(saga_id)
                found.append(
                    Violation(
                        invariant=MONEY,
                        saga_id=saga_id,
                        evidence=() if known is None else known.evidence,
                        detail=f"{kind} {times} times at the gateway",
                    )
                )
    first_charge: dict[str, int] = {}
    for effect in charges:
        first_charge.setdefault(effect.saga_id, int(effect.param("amount_cents", 0)))
    completed_cents = sum(
        first_charge.get(r.saga_id, 0) for r in run.saga_log if r.status == "completed"
    )
    charged = sum(int(e.param("amount_cents", 0)) for e in charges)
    refunded = sum(int(e.param("amount_cents", 0)) for e in refunds)
    net = charged - refunded
    if net != completed_cents:
        found.append(
            Violation(
                invariant=MONEY,
                saga_id=None,
                detail=(
                    f"the gateway charged {_money(charged)} - refunded {_money(refunded)}"
                    f" = {_money(net)}, but completed sagas account for {_money(completed_cents)}"
                ),
            )
        )
    return found


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"
