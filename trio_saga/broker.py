"""The broker interface: the verbs a real message broker has, and the work items it hands a
service. The simulated broker (`sim/broker.py`, over a simulated network) implements it, and so
will the Redis Streams runtime; the service's step (`step.py`) is written against it alone.

This module owns that contract (`Broker`, `StepHost`, `Delivery`, `BusConfig`). It must never
hold an implementation, import trio, or know about faults: fault injection and tracing wrap a
broker or observe it, they do not widen it.

The at-least-once contract every implementation keeps:
  - `subscribe(service, event_types)`: from now on every event of those types that is published
    reaches `service` (each subscriber gets its own `Delivery`, with its own id).
  - `publish(source, events)`: accept the events of a service's outbox, in order; returns how
    many were accepted (the caller removes exactly those from its outbox). Fewer than given means
    the broker cannot take them now (the link is down): it must arrange to hand the service a
    `RELAY_OUTBOX` item later, so the rest is published then.
  - `ack(delivery)`: the service has committed this delivery; it must not come again (an ack can
    itself be lost or delayed: then the delivery is redelivered and the participant's inbox
    answers the duplicate).
  - `redeliver(delivery_id, attempt)`: the ack timeout of attempt `attempt` has passed; if the
    delivery is still unacknowledged and no later attempt was made, send it again as attempt
    `attempt + 1` and arm the next timeout (`BusConfig.backoff`). A Redis runtime does this with
    XAUTOCLAIM of entries idle longer than the timeout.
  - `reply(delivery, reply, produced)`: answer a client's command once, however often it comes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import attrs

from .events import Event
from .participant import Participant, Reply, StepContext

#: An event, or a client's command (any object with `type`, `saga_id` and `client`).
Payload = Any

#: A batch item asking a service to publish its outbox (after a restart, or once a link that
#: held the outbox back is up again).
RELAY_OUTBOX: Final = "relay"


@attrs.frozen(kw_only=True)
class BusConfig:
    """Timing of the at-least-once machinery, in µs of (virtual or real) time."""

    ack_timeout_us: int = 250_000  # first redelivery after this long without an ack
    backoff_cap_us: int = 4_000_000  # the doubling stops here
    relay_retry_us: int = 250_000  # an outbox blocked by a partition is retried this often
    #: Real time only: a due ack check waits until the batches already handed out are served.
    #: With a real clock, time passes during one sweep of the agenda, so otherwise a delivery
    #: that has arrived and waits in a batch is redelivered (a third of all deliveries in a
    #: stdio load test). Off in the simulation, where a sweep takes no time.
    checks_wait_for_batches: bool = False

    def backoff(self, attempt: int) -> int:
        """How long attempt `attempt` waits for its ack before `redeliver`."""
        return min(self.ack_timeout_us << min(attempt - 1, 20), self.backoff_cap_us)


@attrs.define(slots=True)
class Delivery:
    """One message the broker must get acknowledged: an event to a subscriber, or a command."""

    delivery_id: int
    source: str
    dest: str
    payload: Payload
    attempt: int = 1
    replied: bool = False
    #: The event type or command name, for the trace and fault keys, and the delivery id as
    #: the trace shows it: computed once, as every trace line of the delivery shares them.
    what: str = attrs.field(init=False)
    ref: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.what = self.payload.type
        self.ref = str(self.delivery_id)


#: What a service is handed at once: deliveries to commit, and RELAY_OUTBOX requests.
Batch = list[Delivery | str]


class Broker(Protocol):
    """The verbs of a message broker (see the module docstring for the contract of each)."""

    def subscribe(self, service: str, event_types: Iterable[str]) -> None: ...

    def publish(self, source: str, events: Sequence[Event]) -> int: ...

    def ack(self, delivery: Delivery) -> None: ...

    def redeliver(self, delivery_id: int, attempt: int) -> None: ...

    def reply(self, delivery: Delivery, reply: Reply | None, produced: Sequence[Event]) -> None:
        """Answer a client's command: `reply` as the service gave it, or (None) derived from
        what the first step published (refused if the first step failed)."""
        ...


class StepHost(Broker, Protocol):
    """What a service's step needs besides the broker's verbs: its context, and the places
    where the runner observes the step (for the trace) or injects a crash. A Redis runtime
    implements these with the real clock, no crashes of its own and its own log."""

    def context(self) -> StepContext:
        """The time and the forced failures for a step taken now."""
        ...

    def handled(self, service: str, event: Event, produced: Sequence[Event] | None) -> None:
        """`service` committed `event` (produced None: it was a duplicate, answered by the
        inbox)."""
        ...

    def crash_after_commit(self, service: str, saga_id: str, produced: Sequence[Event]) -> bool:
        """Whether `service` crashes now, after committing and before publishing."""
        ...

    def lost(self, service: str, deliveries: Sequence[Delivery]) -> None:
        """Deliveries a crash took with it (unacknowledged: they will be redelivered)."""
        ...

    def may_crash_before_commit(self, service: str, saga_id: str) -> bool:
        """Whether a crash could strike `service` between a step's effects and its commit
        (only then does the step keep a snapshot to undo)."""
        ...

    def crash_before_commit(self, service: str, saga_id: str, produced: Sequence[Event]) -> bool:
        """Whether `service` crashes now, after the step's effects and before its commit."""
        ...


def publish_outbox(participant: Participant, broker: Broker) -> None:
    """Hand the broker what the participant's outbox holds; keep what it did not accept."""
    outbox = participant.outbox
    if not outbox:
        return
    for _ in range(broker.publish(participant.name, outbox)):
        outbox.popleft()
