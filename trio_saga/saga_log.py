"""The saga log: an observer of the event stream that knows each saga's events and status.

It applies the saga definition's rule from events to a saga's status (DESIGN §1: completed,
compensated, failed) and tells a listener once when a saga ends. It must never decide anything
for the services or publish events: the choreography has no coordinator, and this is not one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import attrs

from .events import Event
from .saga import SagaDefinition

STATUSES = ("in_progress", "completed", "compensated", "failed")


@attrs.define(slots=True)
class SagaRecord:
    saga_id: str
    client: str
    started_seq: int
    types: list[str] = attrs.field(factory=list)
    event_ids: list[str] = attrs.field(factory=list)
    seqs: list[int] = attrs.field(factory=list)  # trace seq of each event's publish
    status: str = "in_progress"
    reason: str | None = None
    ended_seq: int | None = None

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    @property
    def evidence(self) -> tuple[int, ...]:
        """The trace lines that show this saga: its start and every event it published."""
        return (self.started_seq, *self.seqs)


@attrs.define
class SagaLog:
    saga: SagaDefinition
    sagas: dict[str, SagaRecord] = attrs.field(factory=dict)
    on_end: Callable[[SagaRecord], None] | None = None
    _terminal: Mapping[str, str] = attrs.field(init=False)
    _failures: frozenset[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._terminal = self.saga.terminal
        self._failures = self.saga.failures

    def __len__(self) -> int:
        return len(self.sagas)

    def __iter__(self) -> Iterator[SagaRecord]:
        return iter(self.sagas.values())

    def get(self, saga_id: str) -> SagaRecord | None:
        return self.sagas.get(saga_id)

    def started(self, saga_id: str, client: str, seq: int) -> SagaRecord:
        record = self.sagas.get(saga_id)
        if record is None:
            record = self.sagas[saga_id] = SagaRecord(saga_id, client, seq)
        return record

    def observe(self, event: Event, seq: int) -> SagaRecord:
        record = self.sagas.get(event.saga_id) or self.started(event.saga_id, "", seq)
        # An event published again (an outbox relayed twice) is the same event; ids need only
        # be unique per event type, as the participant's inbox sees them.
        if event.event_id in record.event_ids and _seen(record, event):
            return record
        kind = event.type
        record.types.append(kind)
        record.event_ids.append(event.event_id)
        record.seqs.append(seq)
        if kind in self._failures and record.reason is None:
            record.reason = getattr(event, "reason", None)
        status = self._terminal.get(kind)
        if status is not None and not record.done:
            record.status = status
            record.ended_seq = seq
            if self.on_end is not None:
                self.on_end(record)
        return record

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for record in self.sagas.values():
            counts[record.status] += 1
        return counts


def _seen(record: SagaRecord, event: Event) -> bool:
    return any(
        kind == event.type and event_id == event.event_id
        for kind, event_id in zip(record.types, record.event_ids, strict=True)
    )
