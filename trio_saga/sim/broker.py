"""The simulated broker: subscriptions and at-least-once delivery (ack timeouts, capped
exponential backoff) over the simulated network, driven by the agenda.

This module owns the broker's side of a simulated run: what is pending, the batches due for
each service at an instant, crashes and restarts of services, and the broker verbs of
`trio_saga.broker` (subscribe, publish, ack, redeliver, reply) plus the step's observation
points. It is synchronous and must never import trio or await: the runtime (`sim/runtime.py`)
asks it what is due, hands each service its batch, and moves time on to the instant it names.
The faults live in the network (`sim/network.py`); the trace and the saga log only observe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from faults.base import Commit, FaultInjector

from ..broker import RELAY_OUTBOX, Batch, BusConfig, Delivery, Payload, publish_outbox
from ..events import Accepted, Event, Refused
from ..participant import Effect, Participant, Reply, StepContext, World
from ..saga import SagaDefinition
from ..saga_log import SagaLog
from ..trace import US, Trace
from .agenda import AckArrives, Agenda, Check, CrashAt, Relay, Restart, Start
from .network import Cut, SimNetwork

_ATTEMPTS = [f"attempt {n}" for n in range(1, 17)]


def _attempt_info(attempt: int) -> str:
    """The trace's "attempt N", shared rather than formatted for every delivery."""
    return _ATTEMPTS[attempt - 1] if attempt <= len(_ATTEMPTS) else f"attempt {attempt}"


def _sim_timestamp(now_us: int) -> int:
    return now_us // US


class SimBroker:
    """The broker of a simulated run (and of the stdio node, on a real clock): the services'
    `StepHost`, the agenda's `Handlers`."""

    def __init__(
        self,
        participants: Sequence[Participant],
        *,
        saga: SagaDefinition,
        injector: FaultInjector | None = None,
        trace: Trace | None = None,
        saga_log: SagaLog | None = None,
        config: BusConfig | None = None,
        timestamp: Callable[[int], int] = _sim_timestamp,
        on_reply: Callable[[Delivery, Any], None] | None = None,
    ) -> None:
        self.saga = saga
        self.participants = {p.name: p for p in participants}
        self.injector = injector if injector is not None else FaultInjector(saga=saga)
        self.trace = trace if trace is not None else Trace()
        self.saga_log = saga_log if saga_log is not None else SagaLog(saga)
        self.config = config or BusConfig()
        self.timestamp = timestamp
        self.on_reply = on_reply
        #: The broker's time in µs: the runtime moves it on (`advance`, `move_to`).
        self.now = 0
        self.subscribers: dict[str, tuple[str, ...]] = dict(saga.subscriptions)
        self._command_ok = f"{saga.command}_ok"
        self._first_failure = saga.steps[0].failure
        self.pending: dict[int, Delivery] = {}
        self.fault_counts: dict[str, int] = {}
        self.agenda = Agenda()
        self.network = SimNetwork(
            agenda=self.agenda,
            injector=self.injector,
            trace=self.trace,
            fault_counts=self.fault_counts,
        )
        self._deliveries = 0
        self._relay_due: set[str] = set()
        self._crashes: list[tuple[str, int]] = []
        self._batches: dict[str, Batch] = {}
        self._context_at = -1
        self._backoffs = [self.config.backoff(attempt) for attempt in range(1, 33)]
        self._context = StepContext(timestamp=0)
        #: The outside world the handlers' effects reach: it survives every crash.
        self.world = World(listener=self._effect)

    @property
    def down(self) -> set[str]:
        """The services that are down (crashed, not yet restarted)."""
        return self.network.down

    @property
    def quiet(self) -> bool:
        """Nothing in flight, nothing scheduled but stale ack checks, every service up."""
        return self.agenda.work == 0 and not self.pending and not self.network.down

    def _stale(self, check: Check) -> bool:
        delivery = self.pending.get(check.delivery_id)
        return delivery is None or delivery.attempt != check.attempt

    def next_due(self) -> int | None:
        """When the next entry that can do something is due; None when quiet. Ack checks of
        deliveries already acknowledged are dropped here, so they cost no wake-up."""
        if self.quiet:
            return None
        return self.agenda.next_due(self._stale)

    def clear_stale(self) -> None:
        """Forget ack checks left for deliveries already acknowledged (only when quiet)."""
        if self.quiet:
            self.agenda.clear()

    # -- inputs from the shell -------------------------------------------------------------

    def start_saga(self, command: Payload, at_us: int | None = None) -> int:
        """A client sends `command` to the saga's first service at `at_us` (default: now);
        returns the delivery id its reply will carry."""
        self._deliveries += 1
        delivery = Delivery(
            delivery_id=self._deliveries,
            source=command.client,
            dest=self.saga.entry,
            payload=command,
        )
        self.agenda.at(self.now if at_us is None else at_us, self.now, Start(delivery))
        return delivery.delivery_id

    def schedule_faults(self) -> None:
        """Put the injector's timed decisions (partitions, crashes at a time) on the agenda."""
        for decision in self.injector.timeline():
            self.network.count(decision.kind)
            if decision.kind == "partition":
                service, direction, start, end = decision.key
                cut = Cut(str(service), str(direction), int(start), int(end), str(decision.value))
                self.network.partition(cut, self.now)
            elif decision.kind == "crash_at":
                service, at_us = decision.key
                self.agenda.at(int(at_us), self.now, CrashAt(str(service), int(decision.value)))

    # -- one instant -----------------------------------------------------------------------

    def advance(self, now_us: int) -> tuple[dict[str, Batch], list[tuple[str, int]]]:
        """Run everything due at or before `now_us`: returns the batch for each service (in
        first-seen order) and the crashes to carry out, as (service, downtime)."""
        self.now = now = max(self.now, now_us)
        pop_due = self.agenda.pop_due
        if self.config.checks_wait_for_batches:
            while (entry := pop_due(now, bool(self._batches))) is not None:
                entry.fire(self)
        else:
            while (entry := pop_due(now)) is not None:
                entry.fire(self)
        batches, self._batches = self._batches, {}
        crashes, self._crashes = self._crashes, []
        return batches, crashes

    def take_crashes(self) -> list[tuple[str, int]]:
        crashes, self._crashes = self._crashes, []
        return crashes

    # -- the agenda's handlers -------------------------------------------------------------

    def start(self, delivery: Delivery) -> None:
        seq = self.trace.add(
            self.now,
            "start",
            delivery.source,
            delivery.payload.saga_id,
            delivery.what,
            delivery.ref,
        )
        self.saga_log.started(delivery.payload.saga_id, delivery.source, seq)
        self.pending[delivery.delivery_id] = delivery
        self._transmit(delivery)

    def arrive(self, delivery: Delivery) -> None:
        network = self.network
        # No partition and the service up (nearly always): no call into the network.
        if (network.cuts or delivery.dest in network.down) and not network.admits(
            delivery, self.now
        ):
            return
        self.trace.add(
            self.now,
            "deliver",
            delivery.dest,
            delivery.payload.saga_id,
            delivery.what,
            delivery.ref,
            _attempt_info(delivery.attempt),
        )
        batch = self._batches.get(delivery.dest)
        if batch is None:
            self._batches[delivery.dest] = [delivery]
        else:
            batch.append(delivery)

    def ack_arrives(self, delivery_id: int) -> None:
        delivery = self.pending.pop(delivery_id, None)
        if delivery is not None:
            self.trace.add(
                self.now,
                "ack",
                delivery.dest,
                delivery.payload.saga_id,
                delivery.what,
                delivery.ref,
            )

    def restart(self, service: str) -> None:
        self.network.down.discard(service)
        self.trace.add(self.now, "restart", service)
        self.participants[service].restarted()  # its restart() hook rebuilds volatile state
        self._want_relay(service, self.now)

    def relay(self, service: str) -> None:
        self._relay_due.discard(service)
        if service not in self.network.down:
            self._batches.setdefault(service, []).append(RELAY_OUTBOX)

    def mark(self, kind: str, node: str, info: str) -> None:
        self.trace.add(self.now, kind, node, info=info)

    def crash(self, service: str, downtime_us: int, info: str = "", saga: str = "") -> None:
        """Take `service` down now and bring it back after `downtime_us`; `saga` names the
        saga whose step the crash interrupted, if any."""
        down = self.network.down
        if service in down or service not in self.participants:
            return
        down.add(service)
        self.participants[service].crashed()  # its volatile state is gone
        self._batches.pop(service, None)
        self.trace.add(self.now, "crash", service, saga, info=info or f"down {downtime_us / US:g}s")
        self._crashes.append((service, downtime_us))
        self.agenda.at(self.now + downtime_us, self.now, Restart(service))

    def _want_relay(self, service: str, at_us: int) -> None:
        participant = self.participants[service]
        if participant.outbox and service not in self._relay_due:
            self._relay_due.add(service)
            self.agenda.at(at_us, self.now, Relay(service))

    # -- the broker's verbs ----------------------------------------------------------------

    def subscribe(self, service: str, event_types: Iterable[str]) -> None:
        for event_type in event_types:
            known = self.subscribers.get(event_type, ())
            if service not in known:
                self.subscribers[event_type] = (*known, service)

    def _backoff(self, attempt: int) -> int:
        backoffs = self._backoffs
        return backoffs[attempt - 1] if attempt <= len(backoffs) else backoffs[-1]

    def _transmit(self, delivery: Delivery) -> None:
        """Arm the redelivery of this attempt, then send it through the network."""
        now = self.now
        self.agenda.check(
            now, self._backoff(delivery.attempt), Check(delivery.delivery_id, delivery.attempt)
        )
        self.network.transmit(delivery, now)

    def publish(self, source: str, events: Sequence[Event]) -> int:
        """Accept `events` from `source`'s outbox, unless its out-link is cut: then none, and
        a relay is scheduled for when the link may be up."""
        if not events:
            return 0
        if self.network.cuts and self.network.cut(source, "out", self.now) is not None:
            first = events[0]
            self.trace.add(
                self.now,
                "hold",
                source,
                first.saga_id,
                first.type,
                first.event_id,
                f"{len(events)} in outbox, partitioned",
            )
            self._want_relay(source, self.now + self.config.relay_retry_us)
            return 0
        for event in events:
            self.accept(source, event)
        return len(events)

    def accept(self, source: str, event: Event) -> None:
        """One event published: a delivery to every subscriber."""
        seq = self.trace.add(self.now, "publish", source, event.saga_id, event.type, event.event_id)
        self.saga_log.observe(event, seq)
        for dest in self.subscribers.get(event.type, ()):
            self._deliveries += 1
            delivery = Delivery(
                delivery_id=self._deliveries, source=source, dest=dest, payload=event
            )
            self.pending[delivery.delivery_id] = delivery
            self._transmit(delivery)

    def ack(self, delivery: Delivery) -> None:
        cut = self.network.cut(delivery.dest, "out", self.now) if self.network.cuts else None
        if cut is not None:
            self.trace.add(
                self.now,
                "drop" if cut.mode == "drop" else "hold",
                delivery.dest,
                delivery.payload.saga_id,
                "ack",
                delivery.ref,
                "partitioned",
            )
            if cut.mode == "hold":
                self.agenda.at(cut.end_us, self.now, AckArrives(delivery.delivery_id))
            return
        self.ack_arrives(delivery.delivery_id)

    def redeliver(self, delivery_id: int, attempt: int) -> None:
        delivery = self.pending.get(delivery_id)
        if delivery is None or delivery.attempt != attempt:
            return
        delivery.attempt += 1
        self.trace.add(
            self.now,
            "redeliver",
            delivery.dest,
            delivery.payload.saga_id,
            delivery.what,
            delivery.ref,
            _attempt_info(delivery.attempt),
        )
        self._transmit(delivery)

    def reply(self, delivery: Delivery, reply: Reply | None, produced: Sequence[Event]) -> None:
        """Answer a client's command once, however often the command arrives."""
        live = self.pending.get(delivery.delivery_id)
        if live is None or live.replied:
            return
        live.replied = True
        if reply is None:
            reply = self._derived_reply(delivery.payload.saga_id, produced)
        self.trace.add(
            self.now,
            "reply",
            delivery.source,
            reply.saga_id,
            self._command_ok if reply.accepted else "error",
            delivery.ref,
            reply.info,
        )
        if self.on_reply is not None:
            self.on_reply(delivery, reply)

    def _derived_reply(self, saga_id: str, produced: Sequence[Event]) -> Reply:
        """A service without `start` answers with what it published: refused if the first
        step failed (its reason as the text), else accepted."""
        for event in produced:
            if event.type == self._first_failure:
                return Refused(saga_id=saga_id, text=str(getattr(event, "reason", event.type)))
        return Accepted(saga_id=saga_id)

    # -- the step's observation points (StepHost) ------------------------------------------

    def context(self) -> StepContext:
        # One context per instant: building it per message showed in profiles.
        if self._context_at != self.now:
            self._context_at = self.now
            self._context = StepContext(
                timestamp=self.timestamp(self.now),
                forced_failure=self.forced_failure,
                effects=self.world,
            )
        return self._context

    def forced_failure(self, step: str, saga_id: str) -> str | None:
        reason = self.injector.forced_failure(step, saga_id)
        if reason is not None:
            self.network.count(f"fail_{step}")
            self.trace.add(self.now, "fail", step, saga_id, info=reason)
        return reason

    def handled(self, service: str, event: Event, produced: Sequence[Event] | None) -> None:
        if produced is None:
            self.trace.add(
                self.now,
                "ignore",
                service,
                event.saga_id,
                event.type,
                getattr(event, "event_id", ""),  # a client's repeated command has none
                "duplicate",
            )
        else:
            self.trace.add(
                self.now,
                "handle",
                service,
                event.saga_id,
                event.type,
                event.event_id,
                " ".join(e.type for e in produced),
            )

    def crash_after_commit(self, service: str, saga_id: str, produced: Sequence[Event]) -> bool:
        if not self.injector.answers["commit"]:
            return False
        commit = Commit(
            service=service, saga_id=saga_id, produced=tuple(e.type for e in produced), now=self.now
        )
        downtime = self.injector.crash_after_commit(commit)
        if downtime is None:
            return False
        self.network.count("crash_after_commit")
        self.crash(
            service,
            downtime,
            f"after committing {produced[0].type}, before publishing",
            saga=saga_id,
        )
        return True

    # -- effects and the crash before a commit ----------------------------------------------

    def _effect(self, effect: Effect) -> None:
        self.trace.add(
            self.now,
            "effect",
            effect.service,
            effect.saga_id,
            f"{effect.system}.{effect.action}",
            effect.key or "",
            effect.describe(),
        )

    def may_crash_before_commit(self, service: str, saga_id: str) -> bool:
        return self.injector.answers.get("precommit", False) and (
            self.injector.may_crash_before_commit(service, saga_id)
        )

    def crash_before_commit(self, service: str, saga_id: str, produced: Sequence[Event]) -> bool:
        commit = Commit(
            service=service, saga_id=saga_id, produced=tuple(e.type for e in produced), now=self.now
        )
        downtime = self.injector.crash_before_commit(commit)
        if downtime is None:
            return False
        self.network.count("crash_before_commit")
        what = produced[0].type if produced else "nothing"
        self.crash(service, downtime, f"after its effects, before committing {what}", saga=saga_id)
        return True

    def lost(self, service: str, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self.trace.add(
                self.now,
                "lost",
                service,
                delivery.payload.saga_id,
                delivery.what,
                delivery.ref,
                "crashed",
            )

    def publish_outbox(self, participant: Participant) -> None:
        """Publish what `participant`'s outbox holds (the step's `publish_outbox`)."""
        publish_outbox(participant, self)
