"""The trace: what happened, in order, as JSON lines.

This module owns the trace record and its one JSON rendering. It must never decide anything:
the runtime writes records, readers (oracle, summary, diagrams, reports) only read them. Times
are integer microseconds of virtual time and render with fixed keys in a fixed order, so the
same run prints the same bytes in any process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

US = 1_000_000


class Record(NamedTuple):
    """One trace line. `seq` is its index in the trace."""

    seq: int
    t_us: int
    kind: str  # start publish send drop duplicate delay reorder hold deliver lost handle ignore
    # ack redeliver reply crash restart relay partition heal fail outcome effect raise
    node: str
    saga: str
    event: str  # an event type or command name, or ""
    ref: str  # an event id or delivery id, or ""
    info: str

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"t": round(self.t_us / US, 6), "seq": self.seq, "kind": self.kind}
        for key in ("node", "saga", "event", "ref", "info"):
            value = getattr(self, key)
            if value:
                line[key] = value
        return line

    def render(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            seq=int(data["seq"]),
            t_us=round(float(data["t"]) * US),
            kind=str(data["kind"]),
            node=str(data.get("node", "")),
            saga=str(data.get("saga", "")),
            event=str(data.get("event", "")),
            ref=str(data.get("ref", "")),
            info=str(data.get("info", "")),
        )


_new_record = tuple.__new__


class Trace:
    """An append-only list of records; optionally also streamed to a file as it grows."""

    def __init__(self, stream: IO[str] | None = None, *, keep: bool = True) -> None:
        self.records: list[Record] = []
        self._stream = stream
        self._keep = keep
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def add(
        self,
        t_us: int,
        kind: str,
        node: str = "",
        saga: str = "",
        event: str = "",
        ref: str = "",
        info: str = "",
    ) -> int:
        seq = self._count
        self._count = seq + 1
        # tuple.__new__ skips NamedTuple's Python-level __new__: this is the hottest call.
        record = _new_record(Record, (seq, t_us, kind, node, saga, event, ref, info))
        if self._keep:
            self.records.append(record)
        if self._stream is not None:
            self._stream.write(record.render() + "\n")
        return seq

    def lines(self) -> Iterator[str]:
        return (r.render() for r in self.records)

    def dump(self) -> str:
        return "".join(line + "\n" for line in self.lines())

    def for_saga(self, saga_id: str) -> list[Record]:
        return [r for r in self.records if r.saga == saga_id]

    def select(self, seqs: Iterable[int]) -> list[Record]:
        return [self.records[s] for s in sorted(set(seqs)) if s < len(self.records)]
