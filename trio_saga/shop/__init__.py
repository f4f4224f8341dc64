"""The shop saga of DESIGN §1 (inventory -> payment -> shipping) as one `SagaDefinition`,
`SHOP`: the saga trio-saga runs when a scenario names no other, and the one the stdio node
hosts.

This package is the only place (with the stdio protocol, which is the seed's shop protocol)
that names the shop's steps, events and services. It must never import trio.
"""

from __future__ import annotations

from ..saga import Check, SagaDefinition, Step
from .checks import MONEY, STOCK, money_is_conserved, stock_is_conserved
from .events import ReserveInventory
from .services import shop_services

SHOP = SagaDefinition(
    name="shop",
    description="inventory -> payment -> shipping, compensated by events",
    command=ReserveInventory.type,
    order=ReserveInventory.from_order,
    steps=(
        Step(
            name="inventory",
            success="InventoryReserved",
            failure="InventoryReservationFailed",
            compensation="InventoryReleased",
            observes=("ShipmentCreated",),  # a reservation moves to shipped
            reason="inventory_unavailable",
        ),
        Step(
            name="payment",
            success="PaymentCharged",
            failure="PaymentFailed",
            compensation="PaymentRefunded",
            reason="insufficient_funds",  # the seed's PaymentFailed: a declined card
        ),
        Step(
            name="shipping",
            success="ShipmentCreated",
            failure="ShipmentFailed",
            reason="carrier_unavailable",
        ),
    ),
    services=shop_services,
    # Quantities and amounts a swarm run may order (None: the list price times the quantity).
    order_variants={"quantity": (1, 2, 3, 7), "amount": (None, 0.01, 12.5, 99.99, 1234.0)},
    checks=(Check(name=STOCK, run=stock_is_conserved), Check(name=MONEY, run=money_is_conserved)),
    ref="trio_saga.shop:SHOP",
)

__all__ = ["SHOP"]
