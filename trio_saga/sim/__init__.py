"""The simulation's rooms, one job each; every import points down the list:

    agenda     what is due, in (time, seq) order, as typed entries
    network    where fault decisions, partitions and crashes apply to messages
    broker     subscriptions and at-least-once delivery over the network (the broker verbs)
    runtime    the only trio: service tasks, channels, and the driver that moves time on

The service's step is `trio_saga.step`, the broker interface `trio_saga.broker`.
"""

from __future__ import annotations

from .agenda import Agenda
from .broker import SimBroker
from .network import Cut, SimNetwork
from .runtime import Runtime

__all__ = ["Agenda", "Cut", "Runtime", "SimBroker", "SimNetwork"]
