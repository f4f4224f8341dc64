"""trio-saga: choreography sagas on trio, with a deterministic fault-injecting simulation and
an invariant oracle. A saga is a value (`SagaDefinition`); the shop saga (inventory -> payment
-> shipping) is one, `SHOP`, and a user's saga is another, in their own module.

The layout, ground floor first (every import points down):
    errors, events, trace      the exception hierarchy, the event base, the trace record
    saga                       the saga definition: steps and everything derived from them
    participant, saga_log      the pure participant (inbox + outbox); the saga log observer
    oracle                     generic invariants from a definition, plus its own checks
    shop/                      the shop saga: its events, services, checks and definition
    broker, step               the broker interface (its verbs); the service's step
    sim/                       agenda, network, simulated broker, runtime (the only trio)
    simulation                 one run (bus, runtime: former names, re-exported)
    scenario, swarm, shrink    scenario files, swarm fault mixes, delta debugging, replays
    explore, report, diagram   many seeds; what a person reads
    stdio, cli, commands       the Maelstrom node and the command line

The public API is re-exported here; see the README. Each name is imported from its module on
first use (PEP 562), so that importing one module of the package (the command line, `faults`
needing only `errors`) does not import trio and the whole simulation with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker and an editor see; at run time, __getattr__ below
    from .broker import Broker, BusConfig, Delivery, StepHost
    from .errors import (
        ClusterError,
        FaultSpecError,
        MalformedRequest,
        SagaError,
        ScenarioError,
    )
    from .events import Accepted, Event, Refused, StartSaga
    from .oracle import FinishedRun, Verdict, check, judge
    from .participant import EventIds, Participant, SagaService, StepContext
    from .saga import (
        Check,
        SagaDefinition,
        SagaDefinitionError,
        Step,
        Violation,
        load_saga,
    )
    from .saga_log import SagaLog, SagaRecord
    from .shop import SHOP
    from .shop.events import (
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
    from .shop.services import Inventory, PaymentService, ShippingService, default_services
    from .sim import Runtime, SimBroker
    from .sim import SimBroker as EventBus
    from .simulation import SagaOrder, Simulation, SimulationResult, orders, simulate
    from .step import serve_batch
    from .trace import Record, Trace

#: Where each public name lives: its module, and `:NAME` when the module calls it otherwise.
_HOMES: dict[str, str] = {
    "Broker": ".broker",
    "BusConfig": ".broker",
    "Delivery": ".broker",
    "StepHost": ".broker",
    "ClusterError": ".errors",
    "FaultSpecError": ".errors",
    "MalformedRequest": ".errors",
    "SagaError": ".errors",
    "ScenarioError": ".errors",
    "Accepted": ".events",
    "Event": ".events",
    "Refused": ".events",
    "StartSaga": ".events",
    "FinishedRun": ".oracle",
    "Verdict": ".oracle",
    "check": ".oracle",
    "judge": ".oracle",
    "EventIds": ".participant",
    "Participant": ".participant",
    "SagaService": ".participant",
    "StepContext": ".participant",
    "Check": ".saga",
    "SagaDefinition": ".saga",
    "SagaDefinitionError": ".saga",
    "Step": ".saga",
    "Violation": ".saga",
    "load_saga": ".saga",
    "SagaLog": ".saga_log",
    "SagaRecord": ".saga_log",
    "SHOP": ".shop",
    "InventoryReleased": ".shop.events",
    "InventoryReservationFailed": ".shop.events",
    "InventoryReserved": ".shop.events",
    "PaymentCharged": ".shop.events",
    "PaymentFailed": ".shop.events",
    "PaymentRefunded": ".shop.events",
    "ReservationAccepted": ".shop.events",
    "ReservationRefused": ".shop.events",
    "ReserveInventory": ".shop.events",
    "ShipmentCreated": ".shop.events",
    "ShipmentFailed": ".shop.events",
    "Inventory": ".shop.services",
    "PaymentService": ".shop.services",
    "ShippingService": ".shop.services",
    "default_services": ".shop.services",
    "Runtime": ".sim",
    "SimBroker": ".sim",
    "EventBus": ".sim:SimBroker",
    "SagaOrder": ".simulation",
    "Simulation": ".simulation",
    "SimulationResult": ".simulation",
    "orders": ".simulation",
    "simulate": ".simulation",
    "serve_batch": ".step",
    "Record": ".trace",
    "Trace": ".trace",
}

__all__ = [
    "SHOP",
    "Accepted",
    "Broker",
    "BusConfig",
    "Check",
    "ClusterError",
    "Delivery",
    "Event",
    "EventBus",
    "EventIds",
    "FaultSpecError",
    "FinishedRun",
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
    "Refused",
    "ReservationAccepted",
    "ReservationRefused",
    "ReserveInventory",
    "Runtime",
    "SagaDefinition",
    "SagaDefinitionError",
    "SagaError",
    "SagaLog",
    "SagaOrder",
    "SagaRecord",
    "SagaService",
    "ScenarioError",
    "ShipmentCreated",
    "ShipmentFailed",
    "ShippingService",
    "SimBroker",
    "Simulation",
    "SimulationResult",
    "StartSaga",
    "StepHost",
    "Step",
    "StepContext",
    "Trace",
    "Verdict",
    "Violation",
    "check",
    "default_services",
    "judge",
    "load_saga",
    "orders",
    "serve_batch",
    "simulate",
]


if not TYPE_CHECKING:  # hidden from type checkers, which would let any name through it

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, _, attribute = home.partition(":")
        value = getattr(importlib.import_module(module, __name__), attribute or name)
        globals()[name] = value  # from now on a plain lookup
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
