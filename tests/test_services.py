"""The pure services, synchronously: every row of DESIGN §1, idempotency and reorderings.

No trio here: events are handed to the services (or their Participant) by hand, in the orders
the network could produce.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from trio_saga.events import Event, StartSaga
from trio_saga.participant import (
    Participant,
    SagaService,
    StepContext,
)
from trio_saga.shop import SHOP
from trio_saga.shop.events import (
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    ReservationAccepted,
    ReservationRefused,
    ReserveInventory,
    ShipmentCreated,
    ShipmentFailed,
)
from trio_saga.shop.services import (
    DEFAULT_FUNDS_CENTS,
    DEFAULT_STOCK,
    DEFAULT_UNIT_PRICE_CENTS,
    Inventory,
    PaymentService,
    ShippingService,
    default_services,
)

SAGA = "saga42"

FORCED_REASONS = {step.name: step.reason for step in SHOP.steps}


def ctx(timestamp: int = 0, **failing: str) -> StepContext:
    """A step context that fails the named steps (step=reason) for every saga."""
    return failing_ctx(failing, timestamp)


def failing_ctx(failing: dict[str, str], timestamp: int = 0) -> StepContext:
    def forced(step: str, saga_id: str) -> str | None:
        return failing.get(step)

    return StepContext(timestamp=timestamp, forced_failure=forced)


def order(
    saga_id: str = SAGA, sku: str = "abc123", quantity: int = 1, amount: int | None = None
) -> ReserveInventory:
    return ReserveInventory(saga_id=saga_id, sku=sku, quantity=quantity, amount_cents=amount)


def reserved(
    saga_id: str = SAGA, amount_cents: int = 9999, event_id: str = "inv-1"
) -> InventoryReserved:
    return InventoryReserved(
        saga_id=saga_id,
        event_id=event_id,
        timestamp=0,
        reservation_id="r1",
        sku="abc123",
        quantity=1,
        amount_cents=amount_cents,
    )


def charged(saga_id: str = SAGA, event_id: str = "pay-1") -> PaymentCharged:
    return PaymentCharged(
        saga_id=saga_id, event_id=event_id, timestamp=0, payment_id="p1", amount_cents=9999
    )


def payment_failed(saga_id: str = SAGA, event_id: str = "pay-1") -> PaymentFailed:
    return PaymentFailed(saga_id=saga_id, event_id=event_id, timestamp=0, reason="x")


def shipment_failed(saga_id: str = SAGA, event_id: str = "shp-1") -> ShipmentFailed:
    return ShipmentFailed(saga_id=saga_id, event_id=event_id, timestamp=0, reason="x")


def shipment_created(saga_id: str = SAGA, event_id: str = "shp-1") -> ShipmentCreated:
    return ShipmentCreated(saga_id=saga_id, event_id=event_id, timestamp=0, shipment_id="s1")


def refunded(saga_id: str = SAGA, event_id: str = "pay-2") -> PaymentRefunded:
    return PaymentRefunded(
        saga_id=saga_id, event_id=event_id, timestamp=0, payment_id="p1", amount_cents=9999
    )


def stock_of(inventory: Inventory, sku: str) -> tuple[int, int, int]:
    return (
        inventory.stock.get(sku, 0),
        inventory.reserved.get(sku, 0),
        inventory.shipped.get(sku, 0),
    )


# -- subscriptions and defaults -------------------------------------------------------------


def test_subscriptions_follow_the_design_table() -> None:
    assert SHOP.subscribes_to("inventory") == {
        "PaymentFailed",
        "PaymentRefunded",
        "ShipmentCreated",
    }
    assert SHOP.subscribes_to("payment") == {"InventoryReserved", "ShipmentFailed"}
    assert SHOP.subscribes_to("shipping") == {"PaymentCharged"}
    assert [Inventory.name, PaymentService.name, ShippingService.name] == [
        "inventory",
        "payment",
        "shipping",
    ]


def test_default_services_take_initial_state() -> None:
    inventory, payment, shipping = default_services(
        stock={"a": 3}, default_stock=7, unit_price_cents=250, funds_cents=1000
    )
    assert isinstance(inventory, Inventory)
    assert isinstance(payment, PaymentService)
    assert isinstance(shipping, ShippingService)
    assert inventory.available("a") == 3
    assert inventory.available("b") == 7
    assert inventory.initial == {"a": 3, "b": 7}
    assert inventory.unit_price_cents == 250
    assert payment.funds_cents == 1000
    fresh = default_services()[0]
    assert isinstance(fresh, Inventory)
    assert fresh.available("abc123") == DEFAULT_STOCK
    assert fresh.unit_price_cents == DEFAULT_UNIT_PRICE_CENTS == 9999


def test_default_services_do_not_share_the_stock_dict() -> None:
    stock = {"a": 3}
    inventory = default_services(stock=stock)[0]
    assert isinstance(inventory, Inventory)
    inventory.reserve(order(sku="a"), ctx())
    assert stock == {"a": 3}


# -- inventory: T1 ---------------------------------------------------------------------------


def test_reserve_publishes_inventory_reserved_with_counter_ids() -> None:
    inventory = Inventory(stock={"abc123": 5})
    reply, events = inventory.reserve(order(quantity=2), ctx(timestamp=17))
    assert reply == ReservationAccepted(saga_id=SAGA, reservation_id="r1")
    assert list(events) == [
        InventoryReserved(
            saga_id=SAGA,
            event_id="inv-1",
            timestamp=17,
            reservation_id="r1",
            sku="abc123",
            quantity=2,
            amount_cents=2 * 9999,
        )
    ]
    assert stock_of(inventory, "abc123") == (3, 2, 0)
    reply2, events2 = inventory.reserve(order("saga43", quantity=3), ctx())
    assert reply2 == ReservationAccepted(saga_id="saga43", reservation_id="r2")
    assert [e.event_id for e in events2] == ["inv-2"]
    assert stock_of(inventory, "abc123") == (0, 5, 0)


def test_reserve_amount_from_request_then_sku_price_then_unit_price() -> None:
    inventory = Inventory(unit_price_cents=100, prices_cents={"gold": 5000})
    _, given = inventory.reserve(order("a", sku="tin", quantity=3, amount=1234), ctx())
    _, by_sku = inventory.reserve(order("b", sku="gold", quantity=2), ctx())
    _, by_unit = inventory.reserve(order("c", sku="tin", quantity=3), ctx())
    amounts = [
        e.amount_cents for e in (*given, *by_sku, *by_unit) if isinstance(e, InventoryReserved)
    ]
    assert amounts == [1234, 10000, 300]


def test_insufficient_stock_is_refused_and_publishes_failure() -> None:
    inventory = Inventory(stock={"abc123": 1})
    reply, events = inventory.reserve(order(quantity=2), ctx(timestamp=3))
    assert reply == ReservationRefused(
        saga_id=SAGA,
        code=22,
        text="insufficient stock for sku abc123: 1 available, 2 requested",
    )
    assert list(events) == [
        InventoryReservationFailed(
            saga_id=SAGA, event_id="inv-1", timestamp=3, reason="insufficient_stock"
        )
    ]
    assert stock_of(inventory, "abc123") == (1, 0, 0)
    assert inventory.reservations_made == 0
    # The next successful reservation still gets r1: ids count reservations, not requests.
    reply2, _ = inventory.reserve(order("saga43", quantity=1), ctx())
    assert reply2 == ReservationAccepted(saga_id="saga43", reservation_id="r1")


def test_forced_inventory_failure() -> None:
    inventory = Inventory(stock={"abc123": 5})
    reply, events = inventory.reserve(order(), ctx(inventory=FORCED_REASONS["inventory"]))
    assert reply == ReservationRefused(
        saga_id=SAGA, code=22, text="inventory step forced to fail (inventory_unavailable)"
    )
    assert [(e.type, getattr(e, "reason", None)) for e in events] == [
        ("InventoryReservationFailed", "inventory_unavailable")
    ]
    assert stock_of(inventory, "abc123") == (5, 0, 0)


def test_forced_failure_is_asked_only_for_its_own_step_and_saga() -> None:
    asked: list[tuple[str, str]] = []

    def forced(step: str, saga_id: str) -> str | None:
        asked.append((step, saga_id))
        return None

    inventory = Inventory()
    inventory.reserve(order(), StepContext(timestamp=0, forced_failure=forced))
    assert asked == [("inventory", SAGA)]


def test_client_retry_gets_the_same_reply_and_publishes_nothing() -> None:
    participant = Participant(Inventory(stock={"abc123": 5}))
    first, events = participant.execute(order(quantity=2), ctx())
    assert events is not None  # a command, not a duplicate
    assert len(events) == 1
    assert len(participant.outbox) == 1
    before = copy.deepcopy(participant)
    again, events_again = participant.execute(order(quantity=2), ctx(timestamp=99))
    assert again == first
    assert events_again is not None
    assert list(events_again) == []
    assert participant == before


def test_client_retry_of_a_refused_order_is_refused_the_same_way() -> None:
    inventory = Inventory(stock={"abc123": 1})
    first, _ = inventory.reserve(order(quantity=2), ctx())
    inventory.stock["abc123"] = 10  # even if stock arrived since, the decision stands
    again, events = inventory.reserve(order(quantity=2), ctx())
    assert again == first
    assert list(events) == []


@pytest.mark.parametrize(
    "other",
    [
        order(quantity=2),
        order(sku="zzz"),
        order(amount=5),
    ],
)
def test_same_saga_id_with_a_different_order_is_refused(other: ReserveInventory) -> None:
    inventory = Inventory(stock={"abc123": 5, "zzz": 5})
    inventory.reserve(order(), ctx())
    before = copy.deepcopy(inventory)
    reply, events = inventory.reserve(other, ctx())
    assert reply == ReservationRefused(
        saga_id=SAGA, code=22, text="saga saga42 was already started with a different order"
    )
    assert list(events) == []
    assert inventory == before


def test_release_on_payment_failed() -> None:
    inventory = Inventory(stock={"abc123": 5})
    inventory.reserve(order(quantity=2), ctx())
    events = inventory.handle(payment_failed(), ctx(timestamp=8))
    assert list(events) == [
        InventoryReleased(saga_id=SAGA, event_id="inv-2", timestamp=8, reservation_id="r1")
    ]
    assert stock_of(inventory, "abc123") == (5, 0, 0)
    assert inventory.reservations[SAGA].status == "released"


def test_release_on_payment_refunded() -> None:
    inventory = Inventory(stock={"abc123": 5})
    inventory.reserve(order(quantity=2), ctx())
    events = inventory.handle(refunded(), ctx(timestamp=9))
    assert [(e.type, getattr(e, "reservation_id", None)) for e in events] == [
        ("InventoryReleased", "r1")
    ]
    assert stock_of(inventory, "abc123") == (5, 0, 0)


def test_shipment_created_moves_reserved_to_shipped() -> None:
    inventory = Inventory(stock={"abc123": 5})
    inventory.reserve(order(quantity=2), ctx())
    assert list(inventory.handle(shipment_created(), ctx())) == []
    assert stock_of(inventory, "abc123") == (3, 0, 2)
    assert inventory.reservations[SAGA].status == "shipped"


@pytest.mark.parametrize("event", [payment_failed(), refunded(), shipment_created()])
def test_no_release_or_shipment_without_a_reservation(event: Event) -> None:
    inventory = Inventory(stock={"abc123": 5})
    before = copy.deepcopy(inventory)
    assert list(inventory.handle(event, ctx())) == []
    assert inventory == before


def test_no_release_of_a_refused_reservation() -> None:
    inventory = Inventory(stock={"abc123": 1})
    inventory.reserve(order(quantity=2), ctx())
    before = copy.deepcopy(inventory)
    assert list(inventory.handle(payment_failed(), ctx())) == []
    assert inventory == before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (payment_failed(), payment_failed(event_id="pay-9")),
        (payment_failed(), refunded()),
        (refunded(), refunded(event_id="pay-9")),
        (shipment_created(), refunded()),
        (refunded(), shipment_created()),
        (shipment_created(), shipment_created(event_id="shp-9")),
    ],
    ids=[
        "failed-twice",
        "failed-then-refunded",
        "refunded-twice",
        "shipped-then-refunded",
        "refunded-then-shipped",
        "shipped-twice",
    ],
)
def test_a_reservation_is_settled_once(first: Event, second: Event) -> None:
    inventory = Inventory(stock={"abc123": 5})
    inventory.reserve(order(quantity=2), ctx())
    inventory.handle(first, ctx())
    before = copy.deepcopy(inventory)
    assert list(inventory.handle(second, ctx())) == []
    assert inventory == before
    available, held, shipped = stock_of(inventory, "abc123")
    assert held == 0
    assert available + shipped == 5


# -- payment: T2 and its compensation ---------------------------------------------------------


def test_charge_on_inventory_reserved() -> None:
    payment = PaymentService(funds_cents=20000)
    events = payment.handle(reserved(), ctx(timestamp=5))
    assert list(events) == [
        PaymentCharged(
            saga_id=SAGA, event_id="pay-1", timestamp=5, payment_id="p1", amount_cents=9999
        )
    ]
    assert (payment.funds_cents, payment.charged_cents, payment.refunded_cents) == (10001, 9999, 0)
    second = payment.handle(reserved("saga43", event_id="inv-2"), ctx())
    assert [(e.type, getattr(e, "payment_id", None)) for e in second] == [("PaymentCharged", "p2")]
    assert (payment.funds_cents, payment.charged_cents) == (2, 19998)


def test_insufficient_funds() -> None:
    payment = PaymentService(funds_cents=9998)
    events = payment.handle(reserved(), ctx(timestamp=2))
    assert list(events) == [
        PaymentFailed(saga_id=SAGA, event_id="pay-1", timestamp=2, reason="insufficient_funds")
    ]
    assert (payment.funds_cents, payment.charged_cents, payment.payments_made) == (9998, 0, 0)
    assert payment.payments[SAGA].status == "failed"


def test_exact_funds_are_enough() -> None:
    payment = PaymentService(funds_cents=9999)
    assert [e.type for e in payment.handle(reserved(), ctx())] == ["PaymentCharged"]
    assert payment.funds_cents == 0


def test_forced_payment_failure_uses_the_given_reason() -> None:
    payment = PaymentService()
    events = payment.handle(reserved(), ctx(payment="card_declined"))
    assert [(e.type, getattr(e, "reason", None)) for e in events] == [
        ("PaymentFailed", "card_declined")
    ]
    assert payment.charged_cents == 0
    assert payment.funds_cents == DEFAULT_FUNDS_CENTS


def test_refund_on_shipment_failed() -> None:
    payment = PaymentService(funds_cents=20000)
    payment.handle(reserved(), ctx())
    events = payment.handle(shipment_failed(), ctx(timestamp=6))
    assert list(events) == [
        PaymentRefunded(
            saga_id=SAGA, event_id="pay-2", timestamp=6, payment_id="p1", amount_cents=9999
        )
    ]
    assert (payment.funds_cents, payment.charged_cents, payment.refunded_cents) == (
        20000,
        9999,
        9999,
    )
    assert payment.payments[SAGA].status == "refunded"


def test_no_refund_without_a_charge() -> None:
    payment = PaymentService()
    assert list(payment.handle(shipment_failed(), ctx())) == []
    payment.handle(reserved(), ctx(payment="declined"))
    before = copy.deepcopy(payment)
    assert list(payment.handle(shipment_failed(), ctx())) == []
    assert payment == before


def test_refund_once() -> None:
    payment = PaymentService()
    payment.handle(reserved(), ctx())
    payment.handle(shipment_failed(), ctx())
    before = copy.deepcopy(payment)
    assert list(payment.handle(shipment_failed(event_id="shp-9"), ctx())) == []
    assert payment == before


@pytest.mark.parametrize("fail_first", [False, True], ids=["after-refund", "after-failure"])
def test_late_inventory_reserved_with_a_new_id_never_charges(fail_first: bool) -> None:
    # e.g. inventory re-announced the reservation, and that copy arrives after the saga was
    # compensated: the payment record already decided this saga.
    payment = PaymentService()
    if fail_first:
        payment.handle(reserved(), ctx(payment="declined"))
    else:
        payment.handle(reserved(), ctx())
        payment.handle(shipment_failed(), ctx())
    before = copy.deepcopy(payment)
    assert list(payment.handle(reserved(event_id="inv-77"), ctx())) == []
    assert payment == before


def test_payment_ignores_events_it_does_not_handle() -> None:
    payment = PaymentService()
    assert list(payment.handle(charged(), ctx())) == []
    assert payment == PaymentService()


# -- shipping: T3 ------------------------------------------------------------------------------


def test_ship_on_payment_charged() -> None:
    shipping = ShippingService()
    events = shipping.handle(charged(), ctx(timestamp=4))
    assert list(events) == [
        ShipmentCreated(saga_id=SAGA, event_id="shp-1", timestamp=4, shipment_id="s1")
    ]
    events2 = shipping.handle(charged("saga43", event_id="pay-2"), ctx())
    assert [getattr(e, "shipment_id", None) for e in events2] == ["s2"]
    assert shipping.shipments == {SAGA: "s1", "saga43": "s2"}


def test_forced_shipping_failure() -> None:
    shipping = ShippingService()
    events = shipping.handle(charged(), ctx(shipping=FORCED_REASONS["shipping"]))
    assert list(events) == [
        ShipmentFailed(saga_id=SAGA, event_id="shp-1", timestamp=0, reason="carrier_unavailable")
    ]
    assert shipping.shipments_made == 0
    assert shipping.shipments == {SAGA: None}


@pytest.mark.parametrize("failed_first", [False, True], ids=["after-shipped", "after-failed"])
def test_payment_charged_again_never_ships_twice_or_after_a_failure(failed_first: bool) -> None:
    shipping = ShippingService()
    shipping.handle(charged(), ctx(shipping="x") if failed_first else ctx())
    before = copy.deepcopy(shipping)
    assert list(shipping.handle(charged(event_id="pay-77"), ctx())) == []
    assert shipping == before


def test_shipping_ignores_events_it_does_not_handle() -> None:
    shipping = ShippingService()
    assert list(shipping.handle(reserved(), ctx())) == []
    assert shipping == ShippingService()


# -- the participant: inbox and outbox ---------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "event"),
    [
        (PaymentService(), reserved()),
        (ShippingService(), charged()),
        (PaymentService(), shipment_failed()),
    ],
    ids=["payment", "shipping", "payment-refund-path"],
)
def test_the_same_event_twice_is_answered_by_the_inbox(service: SagaService, event: Event) -> None:
    participant = Participant(service)
    first = participant.receive(event, ctx())
    assert first is not None
    assert (event.type, event.event_id) in participant.inbox
    assert list(participant.outbox) == list(first)
    before = copy.deepcopy(participant)
    assert participant.receive(event, ctx(timestamp=50)) is None
    assert participant == before


def test_inbox_dedupes_a_compensation_event_too() -> None:
    participant = Participant(Inventory(stock={"abc123": 5}))
    participant.execute(order(quantity=2), ctx())
    released = participant.receive(payment_failed(), ctx())
    assert [e.type for e in released or ()] == ["InventoryReleased"]
    before = copy.deepcopy(participant)
    assert participant.receive(payment_failed(), ctx()) is None
    assert participant == before


def test_receive_commits_an_event_that_produced_nothing() -> None:
    participant = Participant(ShippingService())
    assert participant.receive(reserved(), ctx()) == ()
    assert participant.inbox == {("InventoryReserved", "inv-1")}
    assert not participant.outbox


def test_a_service_without_start_takes_the_command_through_its_inbox() -> None:
    @attrs.define
    class Greeter:
        name: str = "greeter"
        seen: list[str] = attrs.Factory(list)

        def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
            self.seen.append(event.type)
            return ()

    participant = Participant(Greeter())
    command = StartSaga(type="greet", saga_id="g1")
    assert participant.execute(command, ctx()) == (None, ())
    assert participant.execute(command, ctx()) == (None, None)  # a redelivery: the inbox
    assert participant.inbox == {("greet", "g1")}
    greeter = participant.service
    assert isinstance(greeter, Greeter)
    assert greeter.seen == ["greet"]


# -- whole sagas, handed along by hand ---------------------------------------------------------


def saga(**failing: str) -> tuple[list[str], Inventory, PaymentService, ShippingService]:
    """One saga of 2 x abc123, every published event delivered to its subscribers in FIFO
    order; returns the published types and the three services."""
    inventory = Inventory(stock={"abc123": 5})
    payment = PaymentService(funds_cents=50000)
    shipping = ShippingService()
    participants = [Participant(inventory), Participant(payment), Participant(shipping)]
    published: list[Event] = []
    step_ctx = failing_ctx(failing)
    participants[0].execute(order(quantity=2), step_ctx)

    def deliver_all() -> None:
        queue: deque[Event] = deque()
        while True:
            for participant in participants:
                while participant.outbox:
                    event = participant.outbox.popleft()
                    published.append(event)
                    queue.append(event)
            if not queue:
                return
            event = queue.popleft()
            for participant in participants:
                if event.type in SHOP.subscribes_to(participant.name):
                    participant.receive(event, step_ctx)

    deliver_all()
    return [e.type for e in published], inventory, payment, shipping


def test_completed_saga_bookkeeping() -> None:
    types, inventory, payment, shipping = saga()
    assert types == ["InventoryReserved", "PaymentCharged", "ShipmentCreated"]
    assert stock_of(inventory, "abc123") == (3, 0, 2)
    assert (payment.funds_cents, payment.charged_cents, payment.refunded_cents) == (
        50000 - 19998,
        19998,
        0,
    )
    assert shipping.shipments == {SAGA: "s1"}


def test_payment_failure_compensates() -> None:
    types, inventory, payment, _ = saga(payment="insufficient_funds")
    assert types == ["InventoryReserved", "PaymentFailed", "InventoryReleased"]
    assert stock_of(inventory, "abc123") == (5, 0, 0)
    assert (payment.funds_cents, payment.charged_cents) == (50000, 0)


def test_shipping_failure_compensates_in_reverse_order() -> None:
    types, inventory, payment, shipping = saga(shipping="carrier_unavailable")
    assert types == [
        "InventoryReserved",
        "PaymentCharged",
        "ShipmentFailed",
        "PaymentRefunded",
        "InventoryReleased",
    ]
    assert stock_of(inventory, "abc123") == (5, 0, 0)
    assert (payment.funds_cents, payment.charged_cents, payment.refunded_cents) == (
        50000,
        19998,
        19998,
    )
    assert shipping.shipments_made == 0


def test_inventory_failure_ends_the_saga() -> None:
    types, inventory, payment, shipping = saga(inventory="inventory_unavailable")
    assert types == ["InventoryReservationFailed"]
    assert stock_of(inventory, "abc123") == (5, 0, 0)
    assert payment == PaymentService(funds_cents=50000)
    assert shipping == ShippingService()
