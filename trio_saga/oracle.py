"""The oracle: the invariants of DESIGN §4, checked once a run has gone quiet.

It owns what "correct" means for a finished run and reads only the saga log (what was
published, in order) and the services' final state. It must never change either, and never
trust a service's own bookkeeping where the event stream can show otherwise: a double charge is
found from two PaymentCharged events, not from a counter the buggy handler kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

from .saga_log import SagaLog, SagaRecord
from .services import Inventory, Participant, PaymentService
from .trace import Trace

INVARIANTS = {
    1: "every saga ends",
    2: "outcome matches events",
    3: "stock is conserved",
    4: "money is conserved",
    5: "no effect without its cause",
}

#: The event sequences each outcome allows (Garcia-Molina & Salem: T1..Tn, or T1..Tj Cj..C1).
ALLOWED = {
    "completed": (("InventoryReserved", "PaymentCharged", "ShipmentCreated"),),
    "compensated": (
        ("InventoryReserved", "PaymentFailed", "InventoryReleased"),
        (
            "InventoryReserved",
            "PaymentCharged",
            "ShipmentFailed",
            "PaymentRefunded",
            "InventoryReleased",
        ),
    ),
    "failed": (("InventoryReservationFailed",),),
}

#: effect -> the event that must come before it in the same saga.
CAUSES = {
    "ShipmentCreated": "PaymentCharged",
    "PaymentRefunded": "PaymentCharged",
    "InventoryReleased": "InventoryReserved",
    "PaymentCharged": "InventoryReserved",
}


@attrs.frozen(kw_only=True)
class Violation:
    invariant: int
    saga_id: str | None
    detail: str
    evidence: tuple[int, ...] = ()  # trace seq numbers that show it

    @property
    def name(self) -> str:
        return INVARIANTS[self.invariant]

    def describe(self, trace: Trace | None = None) -> str:
        where = f"saga {self.saga_id}: " if self.saga_id else ""
        head = f"invariant {self.invariant} ({self.name}) violated: {where}{self.detail}"
        if trace is None or not self.evidence or not trace.records:
            return head
        shown = trace.select(self.evidence)
        return "\n".join([head, *(f"    {record.render()}" for record in shown)])


def check(saga_log: SagaLog, participants: Mapping[str, Participant]) -> list[Violation]:
    """Every violation of DESIGN §4 in a quiet system, per saga first, then the totals."""
    violations: list[Violation] = []
    for record in saga_log:
        violations.extend(check_saga(record))
    inventory = participants.get("inventory")
    if inventory is not None and isinstance(inventory.service, Inventory):
        violations.extend(check_stock(inventory.service, saga_log))
    payment = participants.get("payment")
    if payment is not None and isinstance(payment.service, PaymentService):
        violations.extend(check_money(payment.service, saga_log))
    return violations


def _evidence(record: SagaRecord) -> tuple[int, ...]:
    return (record.started_seq, *record.seqs)


def check_saga(record: SagaRecord) -> list[Violation]:
    found: list[Violation] = []
    types = tuple(record.types)
    saga = record.saga_id
    evidence = _evidence(record)
    if not record.done:
        found.append(
            Violation(
                invariant=1,
                saga_id=saga,
                evidence=evidence,
                detail=f"stuck in progress after {_show(types)}",
            )
        )
    elif types not in ALLOWED[record.status]:
        found.append(
            Violation(
                invariant=2,
                saga_id=saga,
                evidence=evidence,
                detail=f"{record.status} but its events are {_show(types)}",
            )
        )
    counts = Counter(types)
    for kind, count in sorted(counts.items()):
        if count > 1:
            invariant = 4 if kind in ("PaymentCharged", "PaymentRefunded") else 2
            what = "charged" if kind == "PaymentCharged" else f"{kind} published"
            found.append(
                Violation(
                    invariant=invariant,
                    saga_id=saga,
                    evidence=evidence,
                    detail=f"{what} {count} times",
                )
            )
    seen: set[str] = set()
    for kind in types:
        cause = CAUSES.get(kind)
        if cause is not None and cause not in seen:
            found.append(
                Violation(
                    invariant=5,
                    saga_id=saga,
                    evidence=evidence,
                    detail=f"{kind} without {cause} before it",
                )
            )
        if kind == "ShipmentCreated" and "PaymentRefunded" in seen:
            found.append(
                Violation(
                    invariant=5,
                    saga_id=saga,
                    evidence=evidence,
                    detail="ShipmentCreated after PaymentRefunded",
                )
            )
        if kind == "PaymentCharged" and "InventoryReleased" in seen:
            found.append(
                Violation(
                    invariant=5,
                    saga_id=saga,
                    evidence=evidence,
                    detail="PaymentCharged after InventoryReleased",
                )
            )
        seen.add(kind)
    return found


def check_stock(inventory: Inventory, saga_log: SagaLog) -> list[Violation]:
    found: list[Violation] = []
    for sku in sorted(inventory.initial):
        available = inventory.stock.get(sku, 0)
        reserved = inventory.reserved.get(sku, 0)
        shipped = inventory.shipped.get(sku, 0)
        initial = inventory.initial[sku]
        if available + reserved + shipped != initial or min(available, reserved, shipped) < 0:
            found.append(
                Violation(
                    invariant=3,
                    saga_id=None,
                    detail=(
                        f"sku {sku}: available {available} + reserved {reserved}"
                        f" + shipped {shipped} != initial {initial}"
                    ),
                )
            )
    for saga_id, reservation in inventory.reservations.items():
        record = saga_log.get(saga_id)
        if reservation.status == "held" and record is not None and record.done:
            found.append(
                Violation(
                    invariant=3,
                    saga_id=saga_id,
                    evidence=_evidence(record),
                    detail=f"{record.status} but {reservation.quantity} x {reservation.sku} still"
                    " reserved (a reservation leak)",
                )
            )
    return found


def check_money(payment: PaymentService, saga_log: SagaLog) -> list[Violation]:
    completed_cents = 0
    for record in saga_log:
        charge = payment.payments.get(record.saga_id)
        if record.status == "completed" and charge is not None:
            completed_cents += charge.amount_cents
    net = payment.charged_cents - payment.refunded_cents
    if net == completed_cents:
        return []
    return [
        Violation(
            invariant=4,
            saga_id=None,
            detail=(
                f"charged {_money(payment.charged_cents)}"
                f" - refunded {_money(payment.refunded_cents)} = {_money(net)},"
                f" but completed sagas account for {_money(completed_cents)}"
            ),
        )
    ]


def _show(types: Iterable[str]) -> str:
    listed = ", ".join(types)
    return f"[{listed}]" if listed else "nothing"


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"
