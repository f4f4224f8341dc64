"""The vocabulary every saga shares: the event base, the generic command that starts a saga,
and the replies to a command. A saga's own events subclass `Event` in the saga's module (the
shop's are in `trio_saga/shop/events.py`).

This module owns the shape of these messages and their JSON form. It must never hold behaviour
(what a service does with an event lives in the service) and never import trio.

Money is kept in integer cents so that conservation checks are exact; JSON shows it as a
number with two decimals, like the seed (`"amount": 99.99`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

#: The largest amount of money an order may name (a hundred billion): far beyond any real
#: order, and small enough that cents stay exact in a float and never overflow.
MAX_AMOUNT = 100_000_000_000


def cents_to_amount(cents: int) -> float:
    return cents / 100


def amount_to_cents(amount: float) -> int:
    return round(amount * 100)


def valid_amount(amount: object) -> bool:
    """A JSON or TOML number that is a sane amount of money: finite, 0 .. MAX_AMOUNT."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return False
    try:
        return math.isfinite(amount) and 0 <= amount <= MAX_AMOUNT
    except OverflowError:  # an integer too large for a float
        return False


@attrs.frozen(kw_only=True, slots=True)
class Event:
    """Something that happened in one saga, published by exactly one service."""

    type: ClassVar[str] = "Event"

    saga_id: str
    event_id: str
    timestamp: int

    def payload(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "saga_id": self.saga_id,
            **self.payload(),
            "event_id": self.event_id,
            "timestamp": self.timestamp,
        }


@attrs.frozen(kw_only=True, slots=True)
class StartSaga:
    """The client's command that starts a saga, for sagas that take no command class of their
    own: the saga's command name as `type`, and the order's fields (`command["amount"]`).
    The first service's inbox answers a redelivery of it as it answers a redelivered event."""

    type: str
    saga_id: str
    client: str = "client"
    fields: Mapping[str, Any] = attrs.field(factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


@attrs.frozen(kw_only=True, slots=True)
class Accepted:
    """The first step took the command; `info` is what the trace shows (an id, or nothing)."""

    saga_id: str
    info: str = ""

    accepted: ClassVar[bool] = True


@attrs.frozen(kw_only=True, slots=True)
class Refused:
    """The first step refused the command; `code` is the Maelstrom error code the stdio mode
    answers with (22, precondition failed)."""

    saga_id: str
    text: str
    code: int = 22

    accepted: ClassVar[bool] = False

    @property
    def info(self) -> str:
        return self.text
