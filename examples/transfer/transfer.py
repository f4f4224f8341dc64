"""A money transfer saga, defined outside trio-saga, of another shape than the shop: two steps,
and the second cannot fail. Debit the payer (which fails when the balance is too low), then
credit the payee (which always succeeds, so the debit never needs undoing).

This module is everything a user writes: the events, two plain services and one
`SagaDefinition` with a check of its own (no money is made or lost).
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


@attrs.frozen(kw_only=True)
class Debited(Event):
    type: ClassVar[str] = "Debited"
    account: str
    payee: str
    cents: int


@attrs.frozen(kw_only=True)
class DebitRefused(Event):
    type: ClassVar[str] = "DebitRefused"
    reason: str


@attrs.frozen(kw_only=True)
class Credited(Event):
    type: ClassVar[str] = "Credited"
    account: str
    cents: int


@attrs.define
class Ledger:
    """Balances per account, and what each transfer did to them (the per-saga guard)."""

    balances: dict[str, int]
    done: dict[str, int] = attrs.Factory(dict)  # saga -> cents moved by this service
    initial: dict[str, int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.initial = dict(self.balances)


@attrs.define
class Debits:
    """Step 1: on the client's command, take the amount from the payer's account."""

    name: ClassVar[str] = "debit"
    ledger: Ledger
    refused: set[str] = attrs.Factory(set)
    ids: EventIds = attrs.Factory(lambda: EventIds("db"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        if not isinstance(event, StartSaga):
            return ()
        saga = event.saga_id
        if saga in self.ledger.done or saga in self.refused:
            return ()
        payer, cents = event["payer"], round(event["amount"] * 100)
        reason = ctx.forced_failure("debit", saga)
        if reason is None and self.ledger.balances.get(payer, 0) < cents:
            reason = "insufficient_balance"
        if reason is not None:
            self.refused.add(saga)
            return (
                DebitRefused(
                    saga_id=saga, event_id=self.ids.next(), timestamp=ctx.timestamp, reason=reason
                ),
            )
        self.ledger.balances[payer] = self.ledger.balances.get(payer, 0) - cents
        self.ledger.done[saga] = cents
        return (
            Debited(
                saga_id=saga,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                account=payer,
                payee=event["payee"],
                cents=cents,
            ),
        )


@attrs.define
class Credits:
    """Step 2, which cannot fail: on Debited, put the amount into the payee's account."""

    name: ClassVar[str] = "credit"
    ledger: Ledger
    ids: EventIds = attrs.Factory(lambda: EventIds("cr"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        if not isinstance(event, Debited) or event.saga_id in self.ledger.done:
            return ()
        self.ledger.balances[event.payee] = self.ledger.balances.get(event.payee, 0) + event.cents
        self.ledger.done[event.saga_id] = event.cents
        return (
            Credited(
                saga_id=event.saga_id,
                event_id=self.ids.next(),
                timestamp=ctx.timestamp,
                account=event.payee,
                cents=event.cents,
            ),
        )


def transfer_services(state: Mapping[str, Any]) -> list[Any]:
    """`state.balances` is a table of account = amount (default: alice and bob, 100.00 each).
    The two services are separate processes in spirit: each keeps its own ledger."""
    unknown = sorted(set(state) - {"balances"})
    if unknown:
        raise ValueError(f"unknown state key {unknown[0]!r} (transfer takes balances)")
    balances = state.get("balances", {"alice": 100.0, "bob": 100.0})
    if not isinstance(balances, Mapping):
        raise ValueError("state.balances must be a table of account = amount")
    cents = {}
    for account, amount in balances.items():
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not 0 <= amount <= 1e9
        ):
            raise ValueError(f"state.balances.{account} must be an amount from 0 to 1e9")
        cents[str(account)] = round(amount * 100)
    return [Debits(ledger=Ledger(dict(cents))), Credits(ledger=Ledger(dict.fromkeys(cents, 0)))]


MONEY_KEPT = "no money is made or lost"


def money_kept(run: FinishedRun) -> list[Violation] | None:
    """Every completed transfer moved its amount once: debited once, credited once."""
    debits, credits = run.service("debit"), run.service("credit")
    if not isinstance(debits, Debits) or not isinstance(credits, Credits):
        return None
    found = []
    for record in run.saga_log:
        debited = debits.ledger.done.get(record.saga_id)
        credited = credits.ledger.done.get(record.saga_id)
        if record.done and debited != credited:
            found.append(
                Violation(
                    invariant=MONEY_KEPT,
                    saga_id=record.saga_id,
                    evidence=record.evidence,
                    detail=f"{record.status}: debited {debited}, credited {credited} (cents)",
                )
            )
    initial = sum(debits.ledger.initial.values()) + sum(credits.ledger.initial.values())
    total = sum(debits.ledger.balances.values()) + sum(credits.ledger.balances.values())
    if total != initial:
        found.append(
            Violation(
                invariant=MONEY_KEPT,
                saga_id=None,
                detail=f"balances add up to {total} cents, but {initial} went in",
            )
        )
    return found


saga = SagaDefinition(
    name="transfer",
    description="debit the payer, then credit the payee (which cannot fail)",
    command="transfer",
    order_fields={"payer": "alice", "payee": "bob", "amount": 10.0},
    steps=(
        Step(name="debit", success="Debited", failure="DebitRefused"),
        Step(name="credit", success="Credited"),
    ),
    services=transfer_services,
    checks=(Check(name=MONEY_KEPT, run=money_kept),),
)
