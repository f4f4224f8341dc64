"""trio-saga: a choreography saga (inventory -> payment -> shipping) on trio, with a
deterministic fault-injecting simulation and an invariant oracle.

The public API is re-exported here; see the README for the three ways to use it.
"""

from __future__ import annotations

from .bus import Broker, BusConfig, Delivery, EventBus
from .errors import ClusterError, FaultSpecError, MalformedRequest, SagaError, ScenarioError
from .events import (
    EVENT_TYPES,
    Event,
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
from .oracle import INVARIANTS, Violation, check
from .runtime import Runtime
from .saga_log import SagaLog, SagaRecord
from .services import (
    Inventory,
    Participant,
    PaymentService,
    SagaService,
    ShippingService,
    StepContext,
    default_services,
)
from .simulation import SagaOrder, Simulation, SimulationResult, orders, simulate
from .trace import Record, Trace

__all__ = [
    "EVENT_TYPES",
    "INVARIANTS",
    "Broker",
    "BusConfig",
    "ClusterError",
    "Delivery",
    "Event",
    "EventBus",
    "FaultSpecError",
    "Inventory",
    "InventoryReleased",
    "InventoryReservationFailed",
    "InventoryReserved",
    "MalformedRequest",
    "Participant",
    "PaymentCharged",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentService",
    "Record",
    "ReservationAccepted",
    "ReservationRefused",
    "ReserveInventory",
    "Runtime",
    "SagaError",
    "SagaLog",
    "SagaOrder",
    "SagaRecord",
    "SagaService",
    "ScenarioError",
    "ShipmentCreated",
    "ShipmentFailed",
    "ShippingService",
    "Simulation",
    "SimulationResult",
    "StepContext",
    "Trace",
    "Violation",
    "check",
    "default_services",
    "orders",
    "simulate",
]
