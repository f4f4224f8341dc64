"""The event vocabulary: request validation, the JSON shape of every event, cents <-> amount."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_saga.errors import MalformedRequest
from trio_saga.events import (
    Event,
    amount_to_cents,
    cents_to_amount,
)
from trio_saga.shop.events import (
    EVENT_TYPES,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    ReserveInventory,
    ShipmentCreated,
    ShipmentFailed,
)

GOOD = {"saga_id": "saga42", "sku": "abc123", "quantity": 2}

SAGA_ID_TEXT = "field 'saga_id' must be a non-empty string"
SKU_TEXT = "field 'sku' must be a non-empty string"
QUANTITY_TEXT = "field 'quantity' must be a positive integer"
AMOUNT_TEXT = "field 'amount' must be a number from 0 to 1,000,000,000,000"


_MISSING: Any = object()  # a field left out of the body altogether


def body(**changes: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {**GOOD, **changes}
    return {k: v for k, v in merged.items() if v is not _MISSING}


def test_valid_request_without_amount() -> None:
    command = ReserveInventory.from_json(body(), client="c7")
    assert command == ReserveInventory(
        saga_id="saga42", sku="abc123", quantity=2, amount_cents=None, client="c7"
    )
    assert command.order_key == ("abc123", 2, None)


@pytest.mark.parametrize(
    ("amount", "cents"),
    [(99.99, 9999), (0, 0), (5, 500), (0.1, 10), (199.98, 19998), (1234567.89, 123456789)],
)
def test_valid_request_amount_becomes_exact_cents(amount: float, cents: int) -> None:
    command = ReserveInventory.from_json(body(amount=amount), client="c")
    assert command.amount_cents == cents
    assert isinstance(command.amount_cents, int)


def test_explicit_null_amount_means_default_price() -> None:
    assert ReserveInventory.from_json(body(amount=None), client="c").amount_cents is None


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"saga_id": _MISSING}, SAGA_ID_TEXT),
        ({"saga_id": ""}, SAGA_ID_TEXT),
        ({"saga_id": 42}, SAGA_ID_TEXT),
        ({"saga_id": None}, SAGA_ID_TEXT),
        ({"saga_id": ["saga42"]}, SAGA_ID_TEXT),
        ({"sku": _MISSING}, SKU_TEXT),
        ({"sku": ""}, SKU_TEXT),
        ({"sku": 123}, SKU_TEXT),
        ({"quantity": _MISSING}, QUANTITY_TEXT),
        ({"quantity": 0}, QUANTITY_TEXT),
        ({"quantity": -3}, QUANTITY_TEXT),
        ({"quantity": True}, QUANTITY_TEXT),
        ({"quantity": False}, QUANTITY_TEXT),
        ({"quantity": 1.0}, QUANTITY_TEXT),
        ({"quantity": 2.5}, QUANTITY_TEXT),
        ({"quantity": "2"}, QUANTITY_TEXT),
        ({"quantity": None}, QUANTITY_TEXT),
        ({"amount": -0.01}, AMOUNT_TEXT),
        ({"amount": "99.99"}, AMOUNT_TEXT),
        ({"amount": True}, AMOUNT_TEXT),
        ({"amount": [1]}, AMOUNT_TEXT),
        # issue 10, item 1: these overflowed on the way to cents and were answered 13
        ({"amount": 1e308}, AMOUNT_TEXT),
        ({"amount": 10**308}, AMOUNT_TEXT),
        ({"amount": 10**12 + 0.01}, AMOUNT_TEXT),
    ],
)
def test_malformed_request_names_the_field(changes: dict[str, Any], text: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        ReserveInventory.from_json(body(**changes), client="c")
    assert str(caught.value) == text


def test_the_largest_amount_is_a_trillion_in_exact_cents() -> None:
    command = ReserveInventory.from_json(body(amount=10**12), client="c")
    assert command.amount_cents == 10**14
    assert ReserveInventory.from_json(body(amount=999_999_999_999.99), client="c").amount_cents == (
        99_999_999_999_999
    )


def test_saga_id_is_checked_before_sku_and_quantity() -> None:
    with pytest.raises(MalformedRequest) as caught:
        ReserveInventory.from_json({"quantity": 0}, client="c")
    assert str(caught.value) == SAGA_ID_TEXT


@pytest.mark.parametrize(
    "amount", [math.nan, math.inf, -math.inf, 10**400], ids=["nan", "inf", "-inf", "huge-int"]
)
def test_non_finite_amount_is_malformed_not_a_crash(amount: float) -> None:
    # json.loads accepts NaN and Infinity (1e400 parses as inf, and a 400-digit integer as an
    # int no float can hold), so a client can send them; they must be refused like any other
    # ill-typed amount, not escape as ValueError or OverflowError from the cents conversion.
    with pytest.raises(MalformedRequest) as caught:
        ReserveInventory.from_json(body(amount=amount), client="c")
    assert str(caught.value) == AMOUNT_TEXT


SAMPLES: list[tuple[Event, dict[str, Any]]] = [
    (
        InventoryReserved(
            saga_id="saga42",
            event_id="inv-1",
            timestamp=1680123456,
            reservation_id="r1",
            sku="abc123",
            quantity=1,
            amount_cents=9999,
        ),
        {
            "type": "InventoryReserved",
            "saga_id": "saga42",
            "reservation_id": "r1",
            "sku": "abc123",
            "quantity": 1,
            "amount": 99.99,
            "event_id": "inv-1",
            "timestamp": 1680123456,
        },
    ),
    (
        InventoryReservationFailed(
            saga_id="saga42", event_id="inv-2", timestamp=7, reason="insufficient_stock"
        ),
        {
            "type": "InventoryReservationFailed",
            "saga_id": "saga42",
            "reason": "insufficient_stock",
            "event_id": "inv-2",
            "timestamp": 7,
        },
    ),
    (
        PaymentCharged(
            saga_id="saga42",
            event_id="pay-1",
            timestamp=1680123457,
            payment_id="p1",
            amount_cents=9999,
        ),
        {
            "type": "PaymentCharged",
            "saga_id": "saga42",
            "payment_id": "p1",
            "amount": 99.99,
            "event_id": "pay-1",
            "timestamp": 1680123457,
        },
    ),
    (
        PaymentFailed(
            saga_id="saga42", event_id="pay-2", timestamp=1680123457, reason="insufficient_funds"
        ),
        {
            "type": "PaymentFailed",
            "saga_id": "saga42",
            "reason": "insufficient_funds",
            "event_id": "pay-2",
            "timestamp": 1680123457,
        },
    ),
    (
        ShipmentCreated(saga_id="saga42", event_id="shp-1", timestamp=1680123458, shipment_id="s1"),
        {
            "type": "ShipmentCreated",
            "saga_id": "saga42",
            "shipment_id": "s1",
            "event_id": "shp-1",
            "timestamp": 1680123458,
        },
    ),
    (
        ShipmentFailed(
            saga_id="saga42", event_id="shp-2", timestamp=3, reason="carrier_unavailable"
        ),
        {
            "type": "ShipmentFailed",
            "saga_id": "saga42",
            "reason": "carrier_unavailable",
            "event_id": "shp-2",
            "timestamp": 3,
        },
    ),
    (
        PaymentRefunded(
            saga_id="saga42", event_id="pay-3", timestamp=4, payment_id="p1", amount_cents=19998
        ),
        {
            "type": "PaymentRefunded",
            "saga_id": "saga42",
            "payment_id": "p1",
            "amount": 199.98,
            "event_id": "pay-3",
            "timestamp": 4,
        },
    ),
    (
        InventoryReleased(
            saga_id="saga42", event_id="inv-3", timestamp=1680123458, reservation_id="r1"
        ),
        {
            "type": "InventoryReleased",
            "saga_id": "saga42",
            "reservation_id": "r1",
            "event_id": "inv-3",
            "timestamp": 1680123458,
        },
    ),
]


@pytest.mark.parametrize(("event", "expected"), SAMPLES, ids=lambda x: getattr(x, "type", ""))
def test_to_json_shape_and_key_order(event: Event, expected: dict[str, Any]) -> None:
    shown = event.to_json()
    assert shown == expected
    # Key order is part of the format: type, saga_id, the payload, event_id, timestamp.
    assert list(shown) == list(expected)
    assert json.dumps(shown) == json.dumps(expected)


def test_samples_cover_every_event_type() -> None:
    assert sorted(event.type for event, _ in SAMPLES) == sorted(EVENT_TYPES)
    for name, cls in EVENT_TYPES.items():
        assert cls.type == name


def test_seed_example_renders_amount_with_two_decimals() -> None:
    charged = SAMPLES[2][0]
    assert '"amount": 99.99' in json.dumps(charged.to_json())


def test_events_are_frozen() -> None:
    event = SAMPLES[0][0]
    with pytest.raises(AttributeError):
        event.saga_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cents", "amount"), [(0, 0.0), (1, 0.01), (9999, 99.99), (10, 0.1), (123456789, 1234567.89)]
)
def test_cents_to_amount(cents: int, amount: float) -> None:
    assert cents_to_amount(cents) == amount
    assert amount_to_cents(amount) == cents


@given(st.integers(min_value=0, max_value=10**13))
def test_cents_round_trip_through_the_json_amount(cents: int) -> None:
    # What a service publishes must read back as the same integer number of cents.
    amount = json.loads(json.dumps(cents_to_amount(cents)))
    assert amount_to_cents(amount) == cents
