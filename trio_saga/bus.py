"""The event bus and its network: subscriptions, at-least-once delivery with capped exponential
backoff, the faults applied to every transmission, and the one clock-ordered agenda of
everything that is due.

This module owns the order of the simulation: every delivery, redelivery, restart and timed
fault sits in one heap keyed by (time in µs, sequence number), so a run is decided by the seed
alone and never by trio's scheduler. It is synchronous and must never import trio or await:
the runtime (`runtime.py`) asks it what is due, hands each service its batch on a trio channel,
and sleeps until the next time it names.

A real broker would implement the same four verbs the services use: `publish` (accept from an
outbox), `ack`, `reply`, and the subscriptions given at construction.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import attrs

from faults.base import Commit, Decision, FaultInjector, Transmission

from .events import Accepted, Event, Refused
from .participant import Effect, Participant, Reply, StepContext, World
from .saga import SagaDefinition
from .saga_log import SagaLog
from .trace import US, Trace

#: An event, or a client's command (any object with `type`, `saga_id` and `client`).
Payload = Any


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
        return min(self.ack_timeout_us << min(attempt - 1, 20), self.backoff_cap_us)


@attrs.define(slots=True)
class Delivery:
    """One message the bus must get acknowledged: an event to a subscriber, or a command."""

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


# Agenda entry kinds. Everything but CHECK is work that keeps the system from being quiet.
ARRIVE: Final = 0  # obj: Delivery (one copy reaching its destination)
CHECK: Final = 1  # obj: (delivery_id, attempt) - redeliver if still unacknowledged
ACK: Final = 2  # obj: delivery_id (an ack held by a partition, arriving at the heal)
CRASH: Final = 3  # obj: (service, downtime_us)
RESTART: Final = 4  # obj: service
RELAY: Final = 5  # obj: service (publish its outbox)
START: Final = 6  # obj: Delivery (a client sends its command)
MARK: Final = 7  # obj: (kind, node, info) - a trace line at its time: partition, heal

#: A batch item asking a service to publish its outbox.
RELAY_OUTBOX: Final = "relay"

Batch = list[Delivery | str]
#: (time in µs, sequence number, kind, object): ordered by time, then by when it was scheduled.
Entry = tuple[int, int, int, object]


@attrs.define(slots=True)
class _Cut:
    service: str
    direction: str
    start_us: int
    end_us: int
    mode: str

    def blocks(self, service: str, direction: str, now_us: int) -> bool:
        return (
            service == self.service
            and self.direction in ("both", direction)
            and self.start_us <= now_us < self.end_us
        )


_ATTEMPTS = [f"attempt {n}" for n in range(1, 17)]


def _attempt_info(attempt: int) -> str:
    """The trace's "attempt N", shared rather than formatted for every delivery."""
    return _ATTEMPTS[attempt - 1] if attempt <= len(_ATTEMPTS) else f"attempt {attempt}"


def _sim_timestamp(now_us: int) -> int:
    return now_us // US


class Broker(Protocol):
    """What a service's step (`serve_batch`) needs from the message bus: the interface a real
    broker, with one process per service, would implement. `EventBus` is the in-process one,
    with a simulated network between the services."""

    def context(self) -> StepContext:
        """The time and the forced failures for a step taken now."""
        ...

    def publish(self, participant: Participant) -> None:
        """Accept what the participant's outbox holds (or leave it there to retry)."""
        ...

    def ack(self, delivery: Delivery) -> None: ...

    def reply(self, delivery: Delivery, reply: Reply | None, produced: Sequence[Event]) -> None:
        """Answer a client's command: `reply` as the service gave it, or (None) derived from
        what the first step published."""
        ...

    def handled(self, service: str, event: Event, produced: Sequence[Event] | None) -> None:
        """Note that `service` committed `event` (None: it was a duplicate)."""
        ...

    def crash_after_commit(self, service: str, saga_id: str, produced: Sequence[Event]) -> bool:
        """Whether `service` crashes now, after committing and before publishing."""
        ...

    def lost(self, service: str, deliveries: Sequence[Delivery]) -> None:
        """Deliveries a crash took with it (they will be redelivered)."""
        ...

    # -- issue 11: the crash before a commit --------------------------------------------------

    def may_crash_before_commit(self, service: str, saga_id: str) -> bool:
        """Whether a crash could strike `service` between a step's effects and its commit
        (only then does the step keep a snapshot to undo)."""
        ...

    def crash_before_commit(self, service: str, saga_id: str, produced: Sequence[Event]) -> bool:
        """Whether `service` crashes now, after the step's effects and before its commit."""
        ...


class EventBus:
    """The broker and the network between the services, driven by the runtime."""

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
        self.now = 0
        self.subscribers: dict[str, tuple[str, ...]] = dict(saga.subscriptions)
        self._command_ok = f"{saga.command}_ok"
        self._first_failure = saga.steps[0].failure
        self.down: set[str] = set()
        self.pending: dict[int, Delivery] = {}
        self.fault_counts: dict[str, int] = {}
        self._agenda: list[Entry] = []
        # Ack checks live outside the heap, one FIFO lane per backoff: `now` never goes back
        # and a lane's delay is fixed, so each lane is already in (time, seq) order. The heap
        # keeps only the entries that are work, and a stale check costs a popleft, not an
        # O(log n) heappop over four times as many entries.
        self._lanes: dict[int, deque[Entry]] = {}
        self._next_check: Entry | None = None
        self._next_lane: deque[Entry] | None = None
        self._order = 0
        self._work = 0  # agenda entries other than CHECK
        self._deliveries = 0
        self._cuts: list[_Cut] = []
        self._relay_due: set[str] = set()
        self._crashes: list[tuple[str, int]] = []
        self._batches: dict[str, Batch] = {}
        self._context_at = -1
        self._backoffs = [self.config.backoff(attempt) for attempt in range(1, 33)]
        self._context = StepContext(timestamp=0)
        #: The outside world the handlers' effects reach (issue 11): it survives every crash.
        self.world = World(listener=self._effect)

    # -- agenda ----------------------------------------------------------------------------

    def _at(self, t_us: int, kind: int, obj: object) -> None:
        self._order += 1
        self._work += 1
        if t_us == self.now:
            self._queue(0, (t_us, self._order, kind, obj))
        else:
            heapq.heappush(self._agenda, (t_us, self._order, kind, obj))

    def _arm_check(self, delay_us: int, delivery_id: int, attempt: int) -> None:
        self._order += 1
        self._queue(delay_us, (self.now + delay_us, self._order, CHECK, (delivery_id, attempt)))

    def _queue(self, delay_us: int, entry: Entry) -> None:
        lane = self._lanes.get(delay_us)
        if lane is None:
            lane = self._lanes[delay_us] = deque()
        lane.append(entry)
        if self._next_check is None or entry < self._next_check:
            self._next_check = entry
            self._next_lane = lane

    def _pop_check(self) -> Entry:
        """Take the earliest lane entry (the caller knows there is one)."""
        lane = self._next_lane
        assert lane is not None
        entry = lane.popleft()
        following: Entry | None = None
        for other in self._lanes.values():
            if other and (following is None or other[0] < following):
                following = other[0]
                self._next_lane = other
        self._next_check = following
        return entry

    @property
    def quiet(self) -> bool:
        """Nothing in flight, nothing scheduled but stale ack checks, every service up."""
        return self._work == 0 and not self.pending and not self.down

    def next_due(self) -> int | None:
        """When the next agenda entry is due; None when there is nothing left but stale checks."""
        if self.quiet:
            return None
        check = self._next_check
        if self._agenda and (check is None or self._agenda[0] < check):
            return self._agenda[0][0]
        return None if check is None else check[0]

    def clear_stale(self) -> None:
        """Forget ack checks left for deliveries already acknowledged (only when quiet)."""
        if self.quiet:
            self._agenda.clear()
            self._lanes.clear()
            self._next_check = None

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
        self._at(self.now if at_us is None else at_us, START, delivery)
        return delivery.delivery_id

    def schedule_faults(self) -> None:
        """Put the injector's timed decisions (partitions, crashes at a time) on the agenda."""
        for decision in self.injector.timeline():
            self._count(decision.kind)
            if decision.kind == "partition":
                service, direction, start, end = decision.key
                start_us, end_us = int(start), int(end)
                cut = _Cut(str(service), str(direction), start_us, end_us, str(decision.value))
                self._cuts.append(cut)
                info = f"{direction} until {end_us / US:g}s, {cut.mode}"
                self._at(start_us, MARK, ("partition", cut.service, info))
                self._at(end_us, MARK, ("heal", cut.service, cut.direction))
            elif decision.kind == "crash_at":
                service, at_us = decision.key
                self._at(int(at_us), CRASH, (str(service), int(decision.value)))

    # -- one step of the agenda ------------------------------------------------------------

    def advance(self, now_us: int) -> tuple[dict[str, Batch], list[tuple[str, int]]]:
        """Run everything due at or before `now_us`: returns the batch for each service (in
        first-seen order) and the crashes to carry out, as (service, downtime)."""
        self.now = max(self.now, now_us)
        agenda = self._agenda
        now = self.now
        wait = self.config.checks_wait_for_batches
        while True:
            check = self._next_check
            if check is not None and (not agenda or check < agenda[0]):
                if check[0] > now or (wait and check[2] == CHECK and self._batches):
                    break
                _, _, kind, obj = self._pop_check()
                if kind != CHECK:
                    self._work -= 1
            elif agenda and agenda[0][0] <= now:
                _, _, kind, obj = heapq.heappop(agenda)
                self._work -= 1
            else:
                break
            if kind == ARRIVE:
                assert isinstance(obj, Delivery)
                self._arrive(obj)
            elif kind == CHECK:
                assert isinstance(obj, tuple)
                self._check(*obj)
            elif kind == START:
                assert isinstance(obj, Delivery)
                seq = self.trace.add(
                    self.now,
                    "start",
                    obj.source,
                    obj.payload.saga_id,
                    obj.what,
                    obj.ref,
                )
                self.saga_log.started(obj.payload.saga_id, obj.source, seq)
                self.pending[obj.delivery_id] = obj
                self._transmit(obj)
            elif kind == ACK:
                assert isinstance(obj, int)
                self._acked(obj)
            elif kind == CRASH:
                assert isinstance(obj, tuple)
                self.crash(*obj)
            elif kind == RESTART:
                assert isinstance(obj, str)
                self.down.discard(obj)
                self.trace.add(self.now, "restart", obj)
                self.participants[obj].restarted()  # issue 11: its restart() hook
                self._want_relay(obj, self.now)
            elif kind == RELAY:
                assert isinstance(obj, str)
                self._relay_due.discard(obj)
                if obj not in self.down:
                    self._batches.setdefault(obj, []).append(RELAY_OUTBOX)
            elif kind == MARK:
                assert isinstance(obj, tuple)
                mark, node, info = obj
                self.trace.add(self.now, mark, node, info=info)
        batches, self._batches = self._batches, {}
        crashes, self._crashes = self._crashes, []
        return batches, crashes

    def _arrive(self, delivery: Delivery) -> None:
        payload = delivery.payload
        cut = self._cut(delivery.dest, "in") if self._cuts else None
        if cut is not None:  # a partition also catches what was already in flight
            ref = delivery.ref
            if cut.mode == "drop":
                self._count("partition_drop")
                self.trace.add(
                    self.now,
                    "drop",
                    delivery.dest,
                    payload.saga_id,
                    delivery.what,
                    ref,
                    "partitioned",
                )
            else:
                self.trace.add(
                    self.now,
                    "hold",
                    delivery.dest,
                    payload.saga_id,
                    delivery.what,
                    ref,
                    "partitioned",
                )
                self._at(cut.end_us, ARRIVE, delivery)
            return
        if delivery.dest in self.down:
            self.trace.add(
                self.now,
                "lost",
                delivery.dest,
                payload.saga_id,
                delivery.what,
                delivery.ref,
                "service down",
            )
            return
        self.trace.add(
            self.now,
            "deliver",
            delivery.dest,
            payload.saga_id,
            delivery.what,
            delivery.ref,
            _attempt_info(delivery.attempt),
        )
        self._batches.setdefault(delivery.dest, []).append(delivery)

    def _check(self, delivery_id: int, attempt: int) -> None:
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

    # -- the network -----------------------------------------------------------------------

    def _cut(self, service: str, direction: str) -> _Cut | None:
        for cut in self._cuts:
            if cut.blocks(service, direction, self.now):
                return cut
        return None

    def _backoff(self, attempt: int) -> int:
        backoffs = self._backoffs
        return backoffs[attempt - 1] if attempt <= len(backoffs) else backoffs[-1]

    def _count(self, kind: str) -> None:
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1

    def _transmit(self, delivery: Delivery) -> None:
        """Send one attempt of `delivery` through the faults, and arm its redelivery."""
        now = self.now
        saga_id = delivery.payload.saga_id
        ref = delivery.ref
        what = delivery.what
        self._arm_check(self._backoff(delivery.attempt), delivery.delivery_id, delivery.attempt)
        decisions: Sequence[Decision] = ()
        if self.injector.answers["net"]:
            decisions = self.injector.transmit(
                Transmission(
                    source=delivery.source,
                    dest=delivery.dest,
                    saga_id=saga_id,
                    what=what,
                    attempt=delivery.attempt,
                    now=now,
                )
            )
        arrivals = [now]
        for decision in decisions:
            self._count(decision.kind)
            value = int(decision.value)
            if decision.kind == "drop":
                self.trace.add(now, "drop", delivery.dest, saga_id, what, ref)
                return
            if decision.kind == "duplicate":
                arrivals += [arrivals[0]] * value
                self.trace.add(
                    now, "duplicate", delivery.dest, saga_id, what, ref, f"{value} extra"
                )
            else:  # delay, reorder
                arrivals = [t + value for t in arrivals]
                self.trace.add(
                    now, decision.kind, delivery.dest, saga_id, what, ref, f"+{value / US:g}s"
                )
        for t in arrivals:  # a partition is applied on arrival (`_arrive`)
            self._at(t, ARRIVE, delivery)

    # -- verbs the services use (called from inside a service's step) -----------------------

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
            self._count(f"fail_{step}")
            self.trace.add(self.now, "fail", step, saga_id, info=reason)
        return reason

    def publish(self, participant: Participant) -> None:
        """Accept what `participant` has in its outbox, unless its out-link is cut."""
        name = participant.name
        outbox = participant.outbox
        if outbox and self._cut(name, "out") is not None:
            self.trace.add(
                self.now,
                "hold",
                name,
                outbox[0].saga_id,
                outbox[0].type,
                outbox[0].event_id,
                f"{len(outbox)} in outbox, partitioned",
            )
            self._want_relay(name, self.now + self.config.relay_retry_us)
            return
        while outbox:
            self.accept(name, outbox.popleft())

    def accept(self, source: str, event: Event) -> None:
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
        cut = self._cut(delivery.dest, "out")
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
                self._at(cut.end_us, ACK, delivery.delivery_id)
            return
        self._acked(delivery.delivery_id)

    def _acked(self, delivery_id: int) -> None:
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

    def handled(self, service: str, event: Event, produced: Sequence[Event] | None) -> None:
        if produced is None:
            self.trace.add(
                self.now,
                "ignore",
                service,
                event.saga_id,
                event.type,
                getattr(event, "event_id", ""),
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
        self._count("crash_after_commit")
        self.crash(
            service,
            downtime,
            f"after committing {produced[0].type}, before publishing",
            saga=saga_id,
        )
        return True

    # -- issue 11: effects and the crash before a commit --------------------------------------

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
        self._count("crash_before_commit")
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

    # -- crashes ---------------------------------------------------------------------------

    def crash(self, service: str, downtime_us: int, info: str = "", saga: str = "") -> None:
        """Take `service` down now and bring it back after `downtime_us`; `saga` names the
        saga whose step the crash interrupted, if any."""
        if service in self.down or service not in self.participants:
            return
        self.down.add(service)
        self.participants[service].crashed()  # issue 11: its volatile state is gone
        self._batches.pop(service, None)
        self.trace.add(self.now, "crash", service, saga, info=info or f"down {downtime_us / US:g}s")
        self._crashes.append((service, downtime_us))
        self._at(self.now + downtime_us, RESTART, service)

    def _want_relay(self, service: str, at_us: int) -> None:
        participant = self.participants[service]
        if participant.outbox and service not in self._relay_due:
            self._relay_due.add(service)
            self._at(at_us, RELAY, service)

    def take_crashes(self) -> list[tuple[str, int]]:
        crashes, self._crashes = self._crashes, []
        return crashes


def serve_batch(participant: Participant, batch: Batch, bus: Broker) -> bool:
    """One service's step over a batch: commit each message, maybe crash, publish, ack.

    Returns False if the service crashed part-way: what is left of the batch is lost with its
    volatile state, and the bus redelivers it. Called by the service's own trio task.
    """
    name = participant.name
    for position, item in enumerate(batch):
        if isinstance(item, str):  # RELAY_OUTBOX
            bus.publish(participant)
            continue
        payload = item.payload
        ctx = bus.context()
        ctx.effects.step(name, payload.saga_id)  # issue 11: whose effects these are
        # issue 11: a snapshot only when a crash could strike before this step's commit
        snapshot = (
            participant.snapshot() if bus.may_crash_before_commit(name, payload.saga_id) else None
        )
        try:
            if isinstance(payload, Event):
                outcome = participant.receive(payload, ctx)
            else:  # the client's command
                reply, outcome = participant.execute(payload, ctx)
        except Exception as exc:  # a bug in the handler under test: say where it struck
            exc.add_note(f"while {name} handled {item.what} of saga {payload.saga_id}")
            raise
        if (
            snapshot is not None
            and outcome is not None
            and bus.crash_before_commit(name, payload.saga_id, outcome)
        ):
            participant.undo(snapshot, payload, outcome)
            bus.lost(name, [d for d in batch[position:] if not isinstance(d, str)])
            return False
        if isinstance(payload, Event):
            bus.handled(name, payload, outcome)
        elif outcome is not None:
            bus.reply(item, reply, outcome)
        elif reply is None:
            bus.handled(name, payload, None)
        if outcome is None:
            bus.ack(item)
            continue
        produced = outcome
        if produced and bus.crash_after_commit(name, payload.saga_id, produced):
            bus.lost(name, [d for d in batch[position + 1 :] if not isinstance(d, str)])
            return False
        bus.publish(participant)
        bus.ack(item)
    return True
