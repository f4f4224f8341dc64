"""The saga on Redis Streams: the keys, the Lua scripts, and the broker verbs a service uses.

This module owns the mapping (DESIGN §7): a stream per event type (and one for the client's
command), a consumer group per subscribing service named after it, one stable consumer name
per service; a step's inbox entry, the service's whole state, its outbox and the ack are one
atomic script behind an epoch fence (a process that was replaced, a zombie, is refused and
changes nothing); a relay script moves the outbox to the streams, numbering every entry from
one counter so the run's order can be read back. The verbs mirror the in-process broker's
(issue 9): `subscribe` (read new or own pending entries), `publish` (relay the outbox), `ack`
(the atomic commit), `redeliver` (XAUTOCLAIM what has sat unacknowledged too long).

It must never hold saga logic (the participant decides), never read a key outside its
namespace, and never decode stored text except through the codec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..saga import SagaDefinition
from .codec import Codec

#: Lua: commit one step atomically. KEYS: epoch, inbox, state, outbox, stream, replies,
#: faults. ARGV: epoch, inbox id, group, entry id, state text, reply saga, reply text,
#: number of produced events n, then n outbox items.
COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[7], 'fenced', 1)
  return 'fenced'
end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then
  redis.call('XACK', KEYS[5], ARGV[3], ARGV[4])
  return 'dup'
end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[2])
local n = tonumber(ARGV[8])
for i = 9, 8 + n do redis.call('RPUSH', KEYS[4], ARGV[i]) end
if ARGV[6] ~= '' then redis.call('HSETNX', KEYS[6], ARGV[6], ARGV[7]) end
redis.call('XACK', KEYS[5], ARGV[3], ARGV[4])
return 'ok'
"""

#: Lua: publish the outbox. KEYS: epoch, outbox, seq. ARGV: epoch, stream key prefix.
#: An outbox item is "EventType|text". Streams are named from the item (standalone Redis).
RELAY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = 0
while true do
  local item = redis.call('LPOP', KEYS[2])
  if not item then break end
  local bar = string.find(item, '|', 1, true)
  local seq = redis.call('INCR', KEYS[3])
  redis.call('XADD', ARGV[2] .. string.sub(item, 1, bar - 1), '*',
             'seq', seq, 'e', string.sub(item, bar + 1))
  n = n + 1
end
return n
"""

#: Lua: the client's command. KEYS: stream, seq. ARGV: text.
ORDER = """
local seq = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], '*', 'seq', seq, 'e', ARGV[1])
"""

COMMITTED, DUPLICATE, FENCED = "ok", "dup", "fenced"


@attrs.frozen
class Keys:
    """Every key of one run, under its namespace."""

    ns: str

    @property
    def stream_prefix(self) -> str:
        return f"{self.ns}:s:"

    def stream(self, kind: str) -> str:
        return f"{self.ns}:s:{kind}"

    def state(self, service: str) -> str:
        return f"{self.ns}:state:{service}"

    def inbox(self, service: str) -> str:
        return f"{self.ns}:inbox:{service}"

    def outbox(self, service: str) -> str:
        return f"{self.ns}:outbox:{service}"

    def epoch(self, service: str) -> str:
        return f"{self.ns}:epoch:{service}"

    def downtime(self, service: str) -> str:
        return f"{self.ns}:down:{service}"

    def first_step(self, service: str, epoch: int) -> str:
        return f"{self.ns}:first:{service}:{epoch}"

    def ready(self, service: str) -> str:
        return f"{self.ns}:ready:{service}"

    @property
    def t0(self) -> str:
        return f"{self.ns}:t0"

    @property
    def plan(self) -> str:
        return f"{self.ns}:plan"

    @property
    def seq(self) -> str:
        return f"{self.ns}:seq"

    @property
    def replies(self) -> str:
        return f"{self.ns}:replies"

    @property
    def faults(self) -> str:
        return f"{self.ns}:faults"

    @property
    def crashes(self) -> str:
        return f"{self.ns}:crashes"

    # The outside world (`world.py`): kept apart from every service's keys, since no commit
    # and no fence ever touches it.

    @property
    def effects(self) -> str:
        return f"{self.ns}:world:effects"

    @property
    def answers(self) -> str:
        return f"{self.ns}:world:answers"

    @property
    def actions(self) -> str:
        return f"{self.ns}:world:actions"


def groups(saga: SagaDefinition) -> dict[str, tuple[str, ...]]:
    """Stream kind (event type or the command) -> the consumer groups reading it."""
    made = {kind: tuple(services) for kind, services in saga.subscriptions.items()}
    made[saga.command] = (saga.entry,)
    return made


def streams_of(saga: SagaDefinition, service: str) -> tuple[str, ...]:
    """The stream kinds `service` reads, in a fixed order."""
    return tuple(sorted(kind for kind, readers in groups(saga).items() if service in readers))


def inbox_id(saga: SagaDefinition, payload: Any) -> str:
    """What the inbox remembers a message by: its event id, or the command and saga id."""
    event_id = getattr(payload, "event_id", None)
    return str(event_id) if event_id else f"{saga.command}:{payload.saga_id}"


@attrs.frozen(kw_only=True)
class Entry:
    """One stream entry as a consumer reads it."""

    kind: str  # the stream's event type or command
    entry_id: str
    seq: int
    payload: Any


class RedisBroker:
    """The verbs of one service's process, over two clients: `reader` for blocking reads
    (each blocking read holds a connection of its own) and `client` for everything else."""

    def __init__(
        self,
        *,
        client: Any,
        reader: Any,
        keys: Keys,
        saga: SagaDefinition,
        service: str,
        codec: Codec,
        epoch: int,
    ) -> None:
        self.client = client
        self.reader = reader
        self.keys = keys
        self.saga = saga
        self.service = service
        self.codec = codec
        self.epoch = epoch
        self.kinds = streams_of(saga, service)
        self._commit = client.register_script(COMMIT)
        self._relay = client.register_script(RELAY)

    def _entries(self, kind: str, found: Sequence[Any]) -> list[Entry]:
        made = []
        for item in found:
            fields = item.field_values
            made.append(
                Entry(
                    kind=kind,
                    entry_id=str(item.identifier),
                    seq=int(fields["seq"]),
                    payload=self.codec.loads(fields["e"]),
                )
            )
        return made

    async def subscribe(self, *, own_pending: bool, block_ms: int, count: int) -> list[Entry]:
        """New entries for this service (or, with `own_pending`, the ones it was given and
        never acknowledged: what a restarted process drains first), in publish order."""
        start = "0" if own_pending else ">"
        found: Mapping[str, Any] | None = await self.reader.xreadgroup(
            self.service,
            self.service,
            {self.keys.stream(kind): start for kind in self.kinds},
            count=count,
            block=None if own_pending else block_ms,
        )
        made: list[Entry] = []
        for stream, items in (found or {}).items():
            made += self._entries(str(stream).removeprefix(self.keys.stream_prefix), items)
        return sorted(made, key=lambda e: e.seq)

    async def redeliver(self, *, min_idle_ms: int, count: int) -> list[Entry]:
        """Claim what sat unacknowledged in this service's groups longer than `min_idle_ms`,
        whoever it was given to (a dropped read, a consumer that never came back)."""
        made: list[Entry] = []
        for kind in self.kinds:
            answer = await self.client.xautoclaim(
                self.keys.stream(kind), self.service, self.service, min_idle_ms, "0-0", count=count
            )
            made += self._entries(kind, answer[1])
        return sorted(made, key=lambda e: e.seq)

    async def ack(
        self,
        entry: Entry,
        *,
        state: Any,
        produced: Sequence[Any],
        reply: Any | None = None,
    ) -> str:
        """Commit one step: inbox, state, outbox, reply and the ack, atomically, fenced by
        this process's epoch. COMMITTED, DUPLICATE (the inbox had it; acked) or FENCED."""
        keys = self.keys
        items = [f"{event.type}|{self.codec.dumps(event)}" for event in produced]
        reply_text = "" if reply is None else self.codec.dumps(reply)
        answer = await self._commit(
            keys=[
                keys.epoch(self.service),
                keys.inbox(self.service),
                keys.state(self.service),
                keys.outbox(self.service),
                keys.stream(entry.kind),
                keys.replies,
                keys.faults,
            ],
            args=[
                str(self.epoch),
                inbox_id(self.saga, entry.payload),
                self.service,
                entry.entry_id,
                self.codec.dumps(state),
                "" if reply is None else entry.payload.saga_id,
                reply_text,
                str(len(items)),
                *items,
            ],
        )
        return str(answer)

    async def publish(self) -> int:
        """Relay the outbox to the streams; -1 when this process has been fenced off."""
        keys = self.keys
        answer = await self._relay(
            keys=[keys.epoch(self.service), keys.outbox(self.service), keys.seq],
            args=[str(self.epoch), keys.stream_prefix],
        )
        return int(answer)

    async def count(self, kind: str, n: int = 1) -> None:
        await self.client.hincrby(self.keys.faults, kind, n)
