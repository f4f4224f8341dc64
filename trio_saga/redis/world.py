"""The outside world of a Redis run: the systems a saga's handlers call through `ctx.effects`
(the shop's card gateway and carrier), kept in the run's Redis beside the services but outside
every service's commit.

This module owns that world: the Lua script that answers one call, `RedisWorld` (the `World`
a handler holds in a service's process: each call asks Redis and waits for the answer, over a
synchronous client of its own, since a handler is a plain function that cannot await), and
`read_effects` (every call of the run read back, for the trace and the oracle). The answer
follows the simulator's `participant.World` exactly (a key the system has seen gets the first
call's answer and does nothing; any other call acts and answers `<system>-<n>`), and the
script records the call in the same atomic step that answers it. So a call is in the world
before its step's commit script runs, a SIGKILL between the two loses the commit and never
the charge, and no epoch fences it: a zombie's call reaches the gateway as a real zombie's
would, and only an idempotency key keeps it from acting twice.

It must never be part of a commit, never decide a step (the participant does), never keep
effects in the process (Redis holds the only record), and never decode stored text except
through the codec.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..participant import Effect, World
from .broker import Keys
from .codec import Codec, CodecError

#: Lua: one call to an outside system, answered and recorded at once. KEYS: answers (hash
#: of [system, key] -> first answer), actions (hash of system -> how many calls it acted on),
#: effects (the stream of every call), seq (the run's one counter, so a call takes its place
#: among the events). ARGV: system, '1' if the call has a key, the answers field, the call
#: as stored (an Effect with no answer yet). Returns {answer, '1' if it acted else '0'}.
CALL = """
local answer = false
if ARGV[2] == '1' then answer = redis.call('HGET', KEYS[1], ARGV[3]) end
local applied = '0'
if not answer then
  answer = ARGV[1] .. '-' .. redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  applied = '1'
  if ARGV[2] == '1' then redis.call('HSET', KEYS[1], ARGV[3], answer) end
end
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], '*', 'seq', seq, 'e', ARGV[4], 'result', answer, 'applied', applied)
return {answer, applied}
"""

#: Asks the outside world about one call (an Effect whose answer is still blank): its answer
#: and whether the system acted. Blocks until the world has recorded it.
Remote = Callable[[Effect], tuple[str, bool]]


@attrs.define
class RedisWorld(World):
    """The world as a handler in a service's process sees it: the simulator's `World`, whose
    answers `remote` asks Redis for (which decides and records each call at once). Its
    `effects` stays empty: the run's record is the Redis stream."""

    remote: Remote = attrs.field(kw_only=True)

    keeps_record: ClassVar[bool] = False

    def answer(
        self, system: str, action: str, key: str | None, params: tuple[tuple[str, Any], ...]
    ) -> tuple[str, bool]:
        return self.remote(
            Effect(
                service=self._service,
                saga_id=self._saga_id,
                system=system,
                action=action,
                key=key,
                params=params,
                result="",
                applied=False,
            )
        )


class WorldClient:
    """The service process's side of the world: the script, over a blocking connection that
    only handlers use (a call holds up the process's loop for one round trip, as a handler's
    call to a real gateway holds up its step)."""

    def __init__(self, url: str, keys: Keys, codec: Codec) -> None:
        self.keys = keys
        self.codec = codec
        # No retry: a call whose answer was lost must not be made twice behind the handler's
        # back (a keyless charge would act twice); the process stops, and the step runs again.
        self.client = redis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0))
        self._call = self.client.register_script(CALL)

    def close(self) -> None:
        self.client.close()

    def ask(self, draft: Effect) -> tuple[str, bool]:
        keys = self.keys
        answer = self._call(
            keys=[keys.answers, keys.actions, keys.effects, keys.seq],
            args=[
                draft.system,
                "0" if draft.key is None else "1",
                json.dumps([draft.system, draft.key]),
                self.codec.dumps(draft),
            ],
        )
        result, applied = answer
        return str(result), str(applied) == "1"

    def world(self) -> RedisWorld:
        return RedisWorld(remote=self.ask)


async def read_effects(client: Any, keys: Keys, codec: Codec) -> list[tuple[int, int, Effect]]:
    """Every call of the run, in order: (stream time in ms, the run's counter, the effect)."""
    made = []
    for item in await client.xrange(keys.effects):
        fields = item.field_values
        draft = codec.loads(fields["e"])
        if not isinstance(draft, Effect):
            raise CodecError(f"the world's stream holds a {type(draft).__name__}, not an effect")
        effect = attrs.evolve(draft, result=str(fields["result"]), applied=fields["applied"] == "1")
        made.append((int(str(item.identifier).split("-")[0]), int(fields["seq"]), effect))
    return made


__all__ = ["CALL", "RedisWorld", "WorldClient", "read_effects"]
