"""The shop saga's names as the report and the Mermaid diagram draw them: the ONE place where
presentation knows the shop.

Until the saga is a value (issue 8), `report.run_data` and `diagram.mermaid` default to these;
once the saga definition gives its lanes (the client, then its services in step order), who
publishes each event, its compensating events and its terminal events, callers pass those and
this module goes away. It must never be imported by anything but the report and the diagram,
and must never hold behaviour: the saga's rules live in the saga log and the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Lanes of a saga's timeline, top to bottom, and participants of its sequence diagram, left to
#: right (with the event bus after the first): where sagas start, then the services in step
#: order.
LANES: tuple[str, ...] = ("client", "inventory", "payment", "shipping")

#: Who sends each message: event type (or the command that starts a saga) -> lane.
PUBLISHER: Mapping[str, str] = {
    "reserve_inventory": "client",
    "InventoryReserved": "inventory",
    "InventoryReservationFailed": "inventory",
    "InventoryReleased": "inventory",
    "PaymentCharged": "payment",
    "PaymentFailed": "payment",
    "PaymentRefunded": "payment",
    "ShipmentCreated": "shipping",
    "ShipmentFailed": "shipping",
}

#: Events that undo or refuse a step: the report draws their deliveries dashed.
COMPENSATING: frozenset[str] = frozenset(
    {
        "InventoryReservationFailed",
        "PaymentFailed",
        "ShipmentFailed",
        "PaymentRefunded",
        "InventoryReleased",
    }
)

#: The event that ends a saga -> the outcome it ends it with (as in saga_log.TERMINAL).
TERMINAL: Mapping[str, str] = {
    "ShipmentCreated": "completed",
    "InventoryReleased": "compensated",
    "InventoryReservationFailed": "failed",
}
