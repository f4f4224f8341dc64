"""The Maelstrom-style stdio mode (DESIGN §5): JSON lines in on stdin, JSON lines out on
stdout, logs on stderr. One process hosts the nodes event_bus, inventory, payment, shipping.

This module owns the wire protocol: parsing and validating each line at the edge, error codes,
the per-process msg_id counter, output key order, and settling after each message. It must
never hold saga logic (that is the services, run by the same runtime as the simulation) and
never write anything but one JSON object per line to stdout.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import IO, Any

import attrs
import trio

from faults import FAULTS, Fault, FaultInjector, ForcedFailure

from .bus import BusConfig, Delivery, EventBus
from .errors import MalformedRequest
from .events import STEPS, ReservationAccepted, ReservationRefused, ReserveInventory
from .runtime import Runtime
from .saga_log import SagaLog, SagaRecord
from .services import Participant, SagaService, default_services
from .trace import Trace

EVENT_BUS = "event_bus"
SERVICES = ("inventory", "payment", "shipping")
NODES = (EVENT_BUS, *SERVICES)

# Maelstrom error codes.
NODE_NOT_FOUND = 1
CRASH = 13
NOT_SUPPORTED = 10
TEMPORARILY_UNAVAILABLE = 11
MALFORMED_REQUEST = 12
KEY_DOES_NOT_EXIST = 20
PRECONDITION_FAILED = 22

#: Which node answers which request type.
HANDLED = {"inventory": ("reserve_inventory",), EVENT_BUS: ("saga_status",)}

#: Real-time redelivery for stdio: short, so the end-of-input drain sees retries finish.
STDIO_BUS_CONFIG = BusConfig(ack_timeout_us=50_000, backoff_cap_us=400_000, relay_retry_us=50_000)
DEFAULT_DRAIN_S = 2.0

OUTCOME_MESSAGES = {
    "completed": "saga_completed",
    "compensated": "saga_compensated",
    "failed": "saga_failed",
}


class Reject(Exception):
    """A request answered with a Maelstrom error (raised inside handlers, caught by dispatch)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@attrs.frozen(kw_only=True)
class Message:
    """An incoming message, validated: src, dest and a body with a string type."""

    src: str
    dest: str
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @classmethod
    def from_json(cls, data: object) -> Message:
        if not isinstance(data, dict):
            raise MalformedRequest("a message must be a JSON object with src, dest and body")
        src, dest, body = data.get("src"), data.get("dest"), data.get("body")
        if not isinstance(src, str) or not src:
            raise MalformedRequest("field 'src' must be a non-empty string")
        if not isinstance(dest, str) or not dest:
            raise MalformedRequest("field 'dest' must be a non-empty string")
        if not isinstance(body, dict):
            raise MalformedRequest("field 'body' must be an object")
        if not isinstance(body.get("type"), str):
            raise MalformedRequest("field 'body.type' must be a string")
        return cls(src=src, dest=dest, body=body)


def _reply_address(data: object) -> tuple[str, str, dict[str, Any]] | None:
    """Where to send an error for a line that is not a valid message, if anywhere."""
    if not isinstance(data, dict) or not isinstance(data.get("src"), str) or not data["src"]:
        return None
    dest = data.get("dest")
    body = data.get("body")
    return (
        data["src"],
        dest if isinstance(dest, str) and dest else EVENT_BUS,
        (body if isinstance(body, dict) else {}),
    )


class StdioNode:
    """The protocol state of the process: init, the msg_id counter, request bookkeeping."""

    def __init__(
        self,
        *,
        out: IO[str],
        log: IO[str],
        services: Sequence[SagaService] | None = None,
        faults: Sequence[Fault] = (),
        seed: int = 0,
        settle: bool = True,
        config: BusConfig = STDIO_BUS_CONFIG,
    ) -> None:
        self._out = out
        self._log = log
        self._settle = settle
        self.next_msg_id = 0
        self.initialized = False
        self.aliases: set[str] = set()
        injector = FaultInjector(faults=list(faults), seed=seed)
        self.forced: dict[str, ForcedFailure] = {}
        for step in STEPS:
            found = [f for f in injector.faults if isinstance(f, FAULTS[f"fail_{step}"])]
            if found:
                assert isinstance(found[0], ForcedFailure)
                self.forced[step] = found[0]
            else:
                plugin = FAULTS[f"fail_{step}"]()
                assert isinstance(plugin, ForcedFailure)
                injector.add(plugin)
                self.forced[step] = plugin
        self.saga_log = SagaLog(on_end=self._saga_ended)
        # delivery id -> (src, dest, msg_id, whether the request had a msg_id)
        self._requests: dict[int, tuple[str, str, object, bool]] = {}
        self.bus = EventBus(
            [Participant(s) for s in (services or default_services())],
            injector=injector,
            trace=Trace(keep=False),
            saga_log=self.saga_log,
            config=config,
            timestamp=lambda _us: int(time.time()),
            on_reply=self._reserve_answered,
        )
        self.runtime = Runtime(self.bus, realtime=True)

    # -- output ----------------------------------------------------------------------------

    def send(
        self,
        src: str,
        dest: str,
        kind: str,
        payload: dict[str, Any],
        in_reply_to: object = None,
        *,
        replying: bool = False,
    ) -> None:
        body: dict[str, Any] = {"type": kind}
        if replying:
            body["in_reply_to"] = in_reply_to
        body.update(payload)
        body["msg_id"] = self.next_msg_id
        self.next_msg_id += 1
        self._out.write(json.dumps({"src": src, "dest": dest, "body": body}) + "\n")
        self._out.flush()

    def reply(self, message: Message, kind: str, payload: dict[str, Any]) -> None:
        self.send(
            message.dest,
            message.src,
            kind,
            payload,
            message.body.get("msg_id"),
            replying="msg_id" in message.body,
        )

    def error(self, src: str, dest: str, body: dict[str, Any], code: int, text: str) -> None:
        self.send(
            src,
            dest,
            "error",
            {"code": code, "text": text},
            body.get("msg_id"),
            replying="msg_id" in body,
        )

    def warn(self, text: str) -> None:
        print(f"trio-saga: {text}", file=self._log, flush=True)

    # -- input -----------------------------------------------------------------------------

    async def handle_line(self, line: str) -> None:
        """Process one input line until the system is quiet; never raises on bad input."""
        if not line.strip():
            return
        try:
            data = json.loads(line)
        except ValueError:
            self.warn(f"ignoring a line that is not JSON: {line[:120]!r}")
            return
        try:
            message = Message.from_json(data)
        except MalformedRequest as exc:
            address = _reply_address(data)
            self.warn(f"ignoring a line that is not a message ({exc}): {line[:120]!r}")
            if address is not None:
                src, dest, body = address
                self.error(dest, src, body, MALFORMED_REQUEST, str(exc))
            return
        try:
            await self.dispatch(message)
        except Reject as exc:
            self.reply(message, "error", {"code": exc.code, "text": exc.text})
        except MalformedRequest as exc:
            self.reply(message, "error", {"code": MALFORMED_REQUEST, "text": str(exc)})
        except Exception as exc:  # a bug must not take the node down with the client's work
            self.warn(f"internal error on {message.type}: {exc!r}")
            self.reply(message, "error", {"code": CRASH, "text": f"internal error: {exc}"})

    async def dispatch(self, message: Message) -> None:
        kind = message.type
        if kind == "init":
            self.init(message)
            return
        if not self.initialized:
            raise Reject(TEMPORARILY_UNAVAILABLE, "not initialized yet: send init first")
        node = EVENT_BUS if message.dest in self.aliases else message.dest
        if node not in NODES:
            raise Reject(
                NODE_NOT_FOUND,
                f"node {message.dest} does not exist; this process hosts {', '.join(NODES)}",
            )
        if kind not in HANDLED.get(node, ()):
            raise Reject(NOT_SUPPORTED, f"{node} does not support message type {kind!r}")
        if kind == "reserve_inventory":
            await self.reserve_inventory(message)
        else:
            self.saga_status(message)

    def init(self, message: Message) -> None:
        body = message.body
        services = body.get("services")
        if services is not None:
            if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
                raise MalformedRequest("field 'services' must be a list of strings")
            unknown = sorted(set(services) - set(NODES))
            if unknown:
                raise MalformedRequest(
                    f"unknown service {unknown[0]!r}; this process hosts {', '.join(SERVICES)}"
                )
        node_id = body.get("node_id")
        if node_id is not None:
            if not isinstance(node_id, str) or not node_id:
                raise MalformedRequest("field 'node_id' must be a non-empty string")
            node_ids = body.get("node_ids", [])
            if not isinstance(node_ids, list) or not all(isinstance(n, str) for n in node_ids):
                raise MalformedRequest("field 'node_ids' must be a list of strings")
            if node_id not in NODES:
                self.aliases.add(node_id)  # the standard Maelstrom form names the bus
        self.initialized = True
        self.reply(message, "init_ok", {})

    async def reserve_inventory(self, message: Message) -> None:
        body = message.body
        command = ReserveInventory.from_json(body, client=message.src)
        flags = []
        for step in STEPS:
            value = body.get(f"fail_{step}", False)
            if not isinstance(value, bool):
                raise MalformedRequest(f"field 'fail_{step}' must be a boolean")
            if value:
                flags.append(step)
        if self.saga_log.get(command.saga_id) is None:
            for step in flags:  # a retry must not change how a running saga goes
                self.forced[step].force(command.saga_id)
        delivery_id = self.runtime.submit(command)
        self._requests[delivery_id] = (
            message.src,
            message.dest,
            body.get("msg_id"),
            "msg_id" in body,
        )
        if self._settle:
            await self.runtime.settle()

    def saga_status(self, message: Message) -> None:
        saga_id = message.body.get("saga_id")
        if not isinstance(saga_id, str) or not saga_id:
            raise MalformedRequest("field 'saga_id' must be a non-empty string")
        record = self.saga_log.get(saga_id)
        if record is None:
            raise Reject(KEY_DOES_NOT_EXIST, f"saga {saga_id} does not exist")
        self.reply(
            message,
            "saga_status_ok",
            {"saga_id": saga_id, "status": record.status, "events": list(record.types)},
        )

    # -- from the runtime ------------------------------------------------------------------

    def _reserve_answered(
        self, delivery: Delivery, answer: ReservationAccepted | ReservationRefused
    ) -> None:
        request = self._requests.pop(delivery.delivery_id, None)
        if request is None:
            return
        src, dest, msg_id, replying = request
        if isinstance(answer, ReservationAccepted):
            self.send(
                dest,
                src,
                "reserve_inventory_ok",
                {"saga_id": answer.saga_id, "reservation_id": answer.reservation_id},
                msg_id,
                replying=replying,
            )
        else:
            self.send(
                dest,
                src,
                "error",
                {"code": answer.code, "text": answer.text},
                msg_id,
                replying=replying,
            )

    def _saga_ended(self, record: SagaRecord) -> None:
        if not record.client:
            return
        payload: dict[str, Any] = {"saga_id": record.saga_id}
        if record.reason is not None and record.status != "completed":
            payload["reason"] = record.reason
        self.send(EVENT_BUS, record.client, OUTCOME_MESSAGES[record.status], payload)


async def _lines(fd: int) -> AsyncIterator[str]:
    """Lines from `fd`, read in large chunks on a worker thread (no O_NONBLOCK games with a
    descriptor the parent shares); the last line may lack its newline."""
    pending = b""
    while True:
        chunk = await trio.to_thread.run_sync(os.read, fd, 1 << 16, abandon_on_cancel=True)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


async def serve(
    *,
    faults: Sequence[Fault] = (),
    seed: int = 0,
    drain_s: float = DEFAULT_DRAIN_S,
    settle: bool = True,
    stdin_fd: int = 0,
    out: IO[str] | None = None,
    log: IO[str] | None = None,
    services: Callable[[], Sequence[SagaService]] = default_services,
) -> int:
    """Run the stdio node until end of input and a bounded drain; returns the exit status."""
    node = StdioNode(
        out=out or sys.stdout,
        log=log or sys.stderr,
        services=services(),
        faults=faults,
        seed=seed,
        settle=settle,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(node.runtime.run, serve=True))
        async for line in _lines(stdin_fd):
            await node.handle_line(line)
        with trio.move_on_after(drain_s):
            await node.runtime.settle()
        open_sagas = [r.saga_id for r in node.saga_log if not r.done]
        if open_sagas:
            node.warn(
                f"{len(open_sagas)} saga(s) still in progress after the {drain_s:g}s drain:"
                f" {', '.join(open_sagas[:10])}"
            )
        nursery.cancel_scope.cancel()
    return 0
