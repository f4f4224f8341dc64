"""The names the simulated bus had before it was split into rooms, kept importable.

The broker interface is `trio_saga.broker`, the service's step `trio_saga.step`, and the
simulated broker, network and agenda live in `trio_saga.sim`. This module owns nothing and must
never grow code: new code imports from those modules.
"""

from __future__ import annotations

from .broker import RELAY_OUTBOX, Batch, Broker, BusConfig, Delivery, Payload, StepHost
from .sim.broker import SimBroker
from .step import serve_batch

#: The simulated broker's former name.
EventBus = SimBroker

__all__ = [
    "RELAY_OUTBOX",
    "Batch",
    "Broker",
    "BusConfig",
    "Delivery",
    "EventBus",
    "Payload",
    "SimBroker",
    "StepHost",
    "serve_batch",
]
