"""The shop saga's own invariants (DESIGN §4, 4 and 5): stock and money are conserved.

This module owns what conservation means for the shop. It reads only the finished run (the
saga log and the services' final state) and must never change either. A check returns None
when the system under test has no such service (a user replaced inventory with a class of
their own): the summary then shows it as not applicable, never as passed.
"""

from __future__ import annotations

from collections import Counter

from ..oracle import FinishedRun
from ..saga import Violation
from .services import Inventory, PaymentService

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
    completed_cents = 0
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
        charge = payment.payments.get(record.saga_id)
        if record.status == "completed" and charge is not None:
            completed_cents += charge.amount_cents
    net = payment.charged_cents - payment.refunded_cents
    if net != completed_cents:
        found.append(
            Violation(
                invariant=MONEY,
                saga_id=None,
                detail=(
                    f"charged {_money(payment.charged_cents)}"
                    f" - refunded {_money(payment.refunded_cents)} = {_money(net)},"
                    f" but completed sagas account for {_money(completed_cents)}"
                ),
            )
        )
    return found


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"
