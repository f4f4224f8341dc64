"""The simulation's agenda: everything that is due, in (time in µs, sequence number) order.

This module owns the order of a simulated run and the typed entries on it. Each entry is a
small object that knows which handler it calls (`fire`), so nothing dispatches on a kind
number. It must never decide what an entry does (that is the broker's and the network's job),
import trio or read a clock: time is the integer the caller passes.

Ack checks (`Check`) are most entries and most of them are stale by the time they are due (the
delivery was acknowledged long before). They live outside the heap, one FIFO lane per delay:
time never goes back and a lane's delay is fixed, so each lane is already in (time, seq) order,
a due check costs a popleft rather than an O(log n) heappop, and `next_due` can drop the stale
ones at the head so no wake-up is scheduled for work already done.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Protocol

from ..broker import Delivery


class Handlers(Protocol):
    """What the entries call when they are due (the simulated broker implements it)."""

    def arrive(self, delivery: Delivery) -> None: ...
    def redeliver(self, delivery_id: int, attempt: int) -> None: ...
    def start(self, delivery: Delivery) -> None: ...
    def ack_arrives(self, delivery_id: int) -> None: ...
    def crash(self, service: str, downtime_us: int, info: str = "", saga: str = "") -> None: ...
    def restart(self, service: str) -> None: ...
    def relay(self, service: str) -> None: ...
    def mark(self, kind: str, node: str, info: str) -> None: ...


class Entry:
    """One thing due at a time. `is_work`: it keeps the system from being quiet."""

    __slots__ = ()
    is_work: ClassVar[bool] = True

    def fire(self, on: Handlers) -> None:
        raise NotImplementedError


class Arrive(Entry):
    """One copy of a delivery reaches its destination."""

    __slots__ = ("delivery",)

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def fire(self, on: Handlers) -> None:
        on.arrive(self.delivery)


class Check(Entry):
    """The ack timeout of one attempt: redeliver if still unacknowledged."""

    __slots__ = ("attempt", "delivery_id")
    is_work: ClassVar[bool] = False

    def __init__(self, delivery_id: int, attempt: int) -> None:
        self.delivery_id = delivery_id
        self.attempt = attempt

    def fire(self, on: Handlers) -> None:
        on.redeliver(self.delivery_id, self.attempt)


class Start(Entry):
    """A client sends its command."""

    __slots__ = ("delivery",)

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def fire(self, on: Handlers) -> None:
        on.start(self.delivery)


class AckArrives(Entry):
    """An ack a partition held back reaches the broker at the heal."""

    __slots__ = ("delivery_id",)

    def __init__(self, delivery_id: int) -> None:
        self.delivery_id = delivery_id

    def fire(self, on: Handlers) -> None:
        on.ack_arrives(self.delivery_id)


class CrashAt(Entry):
    """A service crashes at a time, for `downtime_us`."""

    __slots__ = ("downtime_us", "service")

    def __init__(self, service: str, downtime_us: int) -> None:
        self.service = service
        self.downtime_us = downtime_us

    def fire(self, on: Handlers) -> None:
        on.crash(self.service, self.downtime_us)


class Restart(Entry):
    __slots__ = ("service",)

    def __init__(self, service: str) -> None:
        self.service = service

    def fire(self, on: Handlers) -> None:
        on.restart(self.service)


class Relay(Entry):
    """Ask a service to publish its outbox."""

    __slots__ = ("service",)

    def __init__(self, service: str) -> None:
        self.service = service

    def fire(self, on: Handlers) -> None:
        on.relay(self.service)


class Mark(Entry):
    """A trace line at its time: a partition starts or heals."""

    __slots__ = ("info", "kind", "node")

    def __init__(self, kind: str, node: str, info: str) -> None:
        self.kind = kind
        self.node = node
        self.info = info

    def fire(self, on: Handlers) -> None:
        on.mark(self.kind, self.node, self.info)


#: (time in µs, sequence number, entry): ordered by time, then by when it was scheduled. The
#: sequence number is unique, so entries themselves are never compared.
Slot = tuple[int, int, Entry]


class Agenda:
    """A heap of work plus FIFO lanes of ack checks, read in one (time, seq) order."""

    def __init__(self) -> None:
        self._heap: list[Slot] = []
        self._lanes: dict[int, deque[Slot]] = {}
        self._next_check: Slot | None = None
        self._next_lane: deque[Slot] | None = None
        self._order = 0
        #: Entries that are work (not `Check`) still on the agenda.
        self.work = 0

    def at(self, t_us: int, now_us: int, entry: Entry) -> None:
        """Put work on the agenda at `t_us`. Work due now goes to lane 0: it is after
        everything already there, in order, and needs no heap push."""
        self._order += 1
        self.work += 1
        if t_us == now_us:
            self._queue(0, (t_us, self._order, entry))
        else:
            heapq.heappush(self._heap, (t_us, self._order, entry))

    def check(self, now_us: int, delay_us: int, entry: Check) -> None:
        """Put an ack check `delay_us` from now in the lane of that delay."""
        self._order += 1
        self._queue(delay_us, (now_us + delay_us, self._order, entry))

    def _queue(self, delay_us: int, slot: Slot) -> None:
        lane = self._lanes.get(delay_us)
        if lane is None:
            lane = self._lanes[delay_us] = deque()
        lane.append(slot)
        if self._next_check is None or slot < self._next_check:
            self._next_check = slot
            self._next_lane = lane

    def _pop_lane(self) -> Slot:
        """Take the earliest lane entry (the caller knows there is one)."""
        lane = self._next_lane
        assert lane is not None
        slot = lane.popleft()
        following: Slot | None = None
        for other in self._lanes.values():
            if other and (following is None or other[0] < following):
                following = other[0]
                self._next_lane = other
        self._next_check = following
        return slot

    def pop_due(self, now_us: int, hold_checks: bool = False) -> Entry | None:
        """The next entry due at or before `now_us`, taken off the agenda; None if none is.
        `hold_checks`: a due `Check` waits (and so does everything after it)."""
        check = self._next_check
        heap = self._heap
        if check is not None and (not heap or check < heap[0]):
            entry = check[2]
            if check[0] > now_us or (hold_checks and not entry.is_work):
                return None
            self._pop_lane()
            if entry.is_work:
                self.work -= 1
            return entry
        if heap and heap[0][0] <= now_us:
            self.work -= 1
            return heapq.heappop(heap)[2]
        return None

    def next_due(self, stale: Callable[[Check], bool]) -> int | None:
        """When the next entry is due, dropping the ack checks at the head that `stale` says
        are for work already done; None when the agenda is empty."""
        heap = self._heap
        while True:
            check = self._next_check
            if check is not None and (not heap or check < heap[0]):
                entry = check[2]
                if isinstance(entry, Check) and stale(entry):
                    self._pop_lane()
                    continue
                return check[0]
            return heap[0][0] if heap else None

    def clear(self) -> None:
        """Forget everything (the caller knows only stale checks are left)."""
        self._heap.clear()
        self._lanes.clear()
        self._next_check = None
        self._next_lane = None
