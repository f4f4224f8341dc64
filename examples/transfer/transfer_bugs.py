"""A planted bug in the transfer saga, for the example's tests: the debit service takes the
money before it checks the balance, and forgets to put it back when it refuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from transfer import Debits, saga, transfer_services

from trio_saga import Event, StartSaga, StepContext


@attrs.define
class EagerDebits(Debits):
    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        fresh = isinstance(event, StartSaga) and event.saga_id not in self.ledger.done
        fresh = fresh and event.saga_id not in self.refused
        payer = event["payer"] if fresh else ""
        produced = super().handle(event, ctx)
        if fresh and event.saga_id in self.refused:
            self.ledger.balances[payer] -= round(event["amount"] * 100)  # the bug
        return produced


def eager_services(state: Mapping[str, Any]) -> list[Any]:
    services = transfer_services(state)
    services[0] = EagerDebits(ledger=services[0].ledger)
    return services


eager_debit = attrs.evolve(saga, services=eager_services, ref=None)
