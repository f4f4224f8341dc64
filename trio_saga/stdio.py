"""The Maelstrom-style stdio mode (DESIGN §5): JSON lines in on stdin, JSON lines out on
stdout, logs on stderr. One process hosts the nodes event_bus, inventory, payment, shipping.

This module owns the wire protocol: parsing and validating each line at the edge, error codes,
the per-process msg_id counter, output key order, and settling after each message. It must
never hold saga logic (that is the services, run by the same runtime as the simulation) and
never write anything but one JSON object per line to stdout.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import IO, Any

import attrs
import trio

from faults import Fault, FaultInjector, ForcedFailure

from .broker import BusConfig, Delivery
from .errors import MalformedRequest
from .participant import Participant, SagaService
from .saga_log import SagaLog, SagaRecord
from .shop import SHOP
from .shop.events import ReservationAccepted, ReservationRefused, ReserveInventory
from .shop.services import default_services
from .sim.broker import SimBroker
from .sim.runtime import Runtime
from .trace import Trace

#: The steps a request flag (`fail_<step>`) can force to fail.
STEPS = SHOP.step_names

EVENT_BUS = "event_bus"
SERVICES = ("inventory", "payment", "shipping")
NODES = (EVENT_BUS, *SERVICES)

# Maelstrom error codes.
NODE_NOT_FOUND = 1
NOT_SUPPORTED = 10
TEMPORARILY_UNAVAILABLE = 11
MALFORMED_REQUEST = 12
CRASH = 13
KEY_DOES_NOT_EXIST = 20
PRECONDITION_FAILED = 22

#: Which request types each hosted node answers.
HANDLED: dict[str, frozenset[str]] = {
    EVENT_BUS: frozenset({"init", "saga_status"}),
    "inventory": frozenset({"init", "reserve_inventory"}),
    "payment": frozenset({"init"}),
    "shipping": frozenset({"init"}),
}
#: A Maelstrom node id (from the standard init) names this whole process, and a Maelstrom
#: client only ever writes to node ids, so the alias answers every client request.
ALIAS_HANDLES = frozenset({"init", "reserve_inventory", "saga_status"})

#: Real-time redelivery for stdio: short, so that a lost delivery is retried many times within
#: the end-of-input drain (a 200 ms cap gives about ten attempts in 2 s).
STDIO_BUS_CONFIG = BusConfig(
    ack_timeout_us=50_000,
    backoff_cap_us=200_000,
    relay_retry_us=50_000,
    checks_wait_for_batches=True,
)
#: Bounds both the end-of-input drain and the wait for quiet after one line (a fault that never
#: lets the system go quiet, such as drop:p=1, must not keep the process from reading on).
DEFAULT_DRAIN_S = 2.0
#: How much of an offending line a log message quotes.
QUOTE = 120

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


class BadLine(Exception):
    """A line that is not strict UTF-8 JSON. `readable` is what a lenient reading made of it
    (None if nothing), only to find an address for the code-12 answer."""

    def __init__(self, reason: str, readable: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.readable = readable


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _lenient(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# Made once: json.loads with an argument builds a new decoder per line, and json.dumps
# re-checks its defaults per message (both showed in a 20k-line profile). Same output as
# json.dumps with its defaults, which DESIGN §5 asks for.
_STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant)
_ENCODE = json.JSONEncoder().encode


def parse_line(raw: bytes) -> object:
    """The JSON value of one line. JSON text is UTF-8 and has no NaN or Infinity (RFC 8259);
    anything else raises BadLine rather than being half-understood."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        readable = _lenient(raw.decode("utf-8", errors="replace"))
        raise BadLine(f"not valid UTF-8 (byte {exc.start}: {exc.reason})", readable) from None
    try:
        return _STRICT_JSON.decode(text)
    except RecursionError:
        raise BadLine("not JSON (nested too deeply)", None) from None
    except ValueError as exc:
        raise BadLine(f"not JSON ({exc})", _lenient(text)) from None


def _msg_id(body: dict[str, Any]) -> int | None:
    """The request's msg_id if it has a well-typed one; presence decides, so 0 counts."""
    value = body.get("msg_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


@attrs.frozen(kw_only=True)
class Message:
    """An incoming message, validated: src, dest, a body with a string type, and msg_id (None
    when the request has none, so replies carry no in_reply_to)."""

    src: str
    dest: str
    body: dict[str, Any]
    msg_id: int | None = None

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
        msg_id = _msg_id(body)
        if "msg_id" in body and msg_id is None:
            raise MalformedRequest("field 'msg_id' must be an integer")
        return cls(src=src, dest=dest, body=body, msg_id=msg_id)


def _reply_address(data: object) -> tuple[str, str, int | None] | None:
    """(our src, their dest, in_reply_to) for an error about a line that is not a valid
    message, if a reply address can be read from it at all."""
    if not isinstance(data, dict):
        return None
    src, dest, body = data.get("src"), data.get("dest"), data.get("body")
    if not isinstance(src, str) or not src:
        return None
    return (
        dest if isinstance(dest, str) and dest else EVENT_BUS,
        src,
        _msg_id(body) if isinstance(body, dict) else None,
    )


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise MalformedRequest(f"field {name!r} must be a boolean")
    return value


@attrs.frozen(kw_only=True)
class _Request:
    """Who is waiting for the answer to a reserve_inventory the runtime is carrying."""

    src: str
    dest: str
    msg_id: int | None


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
        settle_limit_s: float = DEFAULT_DRAIN_S,
        config: BusConfig = STDIO_BUS_CONFIG,
    ) -> None:
        self._out = out
        self._log = log
        self._settle = settle
        self._settle_limit_s = settle_limit_s
        self.next_msg_id = 0
        self._unflushed = False
        self.lines = 0
        self.initialized = False
        self.output_closed = False
        self.aliases: set[str] = set()
        injector = FaultInjector(faults=list(faults), seed=seed, saga=SHOP)
        # The forced-failure plugin of a step is added when a request first asks for it: until
        # then no step question has an answer and costs nothing (a seventh of the CPU of a
        # load without fail_* flags went to asking three idle plugins).
        self.forced: dict[str, ForcedFailure] = {}
        for found in injector.find(ForcedFailure):
            assert isinstance(found, ForcedFailure)
            self.forced.setdefault(found.step, found)
        self.saga_log = SagaLog(SHOP, on_end=self._saga_ended)
        # saga id -> the fail_* flags of the request that started it: a retry must repeat them
        self._flags: dict[str, frozenset[str]] = {}
        self._requests: dict[int, _Request] = {}
        self.bus = SimBroker(
            [Participant(s) for s in (services or default_services())],
            saga=SHOP,
            injector=injector,
            trace=Trace(keep=False),
            saga_log=self.saga_log,
            config=config,
            timestamp=lambda _us: int(time.time()),
            on_reply=self._reserve_answered,
        )
        # Partitions and crashes at a time count from the start of the process; they must be
        # on the agenda before the runtime first looks at it.
        self.bus.schedule_faults()
        self.runtime = Runtime(self.bus, realtime=True, on_idle=self.flush)

    def _forced(self, step: str) -> ForcedFailure:
        plugin = self.forced.get(step)
        if plugin is None:
            made = ForcedFailure(step=step)
            self.bus.injector.add(made)
            plugin = self.forced[step] = made
        return plugin

    # -- output ----------------------------------------------------------------------------

    def send(
        self, src: str, dest: str, kind: str, payload: dict[str, Any], in_reply_to: int | None
    ) -> None:
        """Write one message; `in_reply_to` None means the request had no msg_id."""
        body: dict[str, Any] = {"type": kind}
        if in_reply_to is not None:
            body["in_reply_to"] = in_reply_to
        body.update(payload)
        body["msg_id"] = self.next_msg_id
        self.next_msg_id += 1
        if self.output_closed:
            return
        try:
            self._out.write(_ENCODE({"src": src, "dest": dest, "body": body}) + "\n")
        except (OSError, ValueError) as exc:  # the reader went away: nobody is listening
            self.output_closed = True
            self.warn(f"cannot write to stdout ({exc}); stopping")
            return
        self._unflushed = True

    def flush(self) -> None:
        """Push out what `send` wrote: when a request has been answered and whenever the
        runtime goes idle, so a burst of messages costs one write, not one per message."""
        if not self._unflushed or self.output_closed:
            return
        self._unflushed = False
        try:
            self._out.flush()
        except (OSError, ValueError) as exc:
            self.output_closed = True
            self.warn(f"cannot write to stdout ({exc}); stopping")

    def reply(self, message: Message, kind: str, payload: dict[str, Any]) -> None:
        self.send(message.dest, message.src, kind, payload, message.msg_id)

    def error(self, message: Message, code: int, text: str) -> None:
        self.reply(message, "error", {"code": code, "text": text})

    def warn(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # logging must never stop the node
            print(f"trio-saga: {text}", file=self._log, flush=True)

    # -- input -----------------------------------------------------------------------------

    async def handle_line(self, raw: bytes) -> None:
        """Process one input line until the system is quiet; never raises on bad input."""
        self.lines += 1
        if not raw.strip():
            return
        try:
            data = parse_line(raw)
        except BadLine as exc:
            self._bad_line(raw, exc.reason, exc.readable)
            return
        try:
            message = Message.from_json(data)
        except MalformedRequest as exc:
            self._bad_line(raw, f"not a message: {exc}", data)
            return
        try:
            await self.dispatch(message)
        except Reject as exc:
            self.error(message, exc.code, exc.text)
        except MalformedRequest as exc:
            self.error(message, MALFORMED_REQUEST, str(exc))
        except Exception as exc:  # a bug must not take the node down with the client's work
            self.warn(f"line {self.lines}: internal error on {message.type}: {exc!r}")
            self.error(message, CRASH, f"internal error: {exc}")

    def _bad_line(self, raw: bytes, reason: str, readable: object) -> None:
        address = _reply_address(readable)
        answered = " (answered with code 12)" if address is not None else ""
        self.warn(f"line {self.lines}: ignoring it, {reason}{answered}: {raw[:QUOTE]!r}")
        if address is not None:
            src, dest, in_reply_to = address
            self.send(src, dest, "error", {"code": MALFORMED_REQUEST, "text": reason}, in_reply_to)

    async def dispatch(self, message: Message) -> None:
        kind, dest = message.type, message.dest
        if kind == "init":
            self.init(message)
            return
        if not self.initialized:
            raise Reject(TEMPORARILY_UNAVAILABLE, "not initialized yet: send init first")
        handles = ALIAS_HANDLES if dest in self.aliases else HANDLED.get(dest)
        if handles is None:
            raise Reject(NODE_NOT_FOUND, self._no_such_node(dest))
        if kind not in handles:
            raise Reject(NOT_SUPPORTED, f"{dest} does not support message type {kind!r}")
        if kind == "reserve_inventory":
            await self.reserve_inventory(message)
        else:
            self.saga_status(message)

    def _no_such_node(self, dest: str) -> str:
        return f"node {dest} does not exist; this process hosts {', '.join(NODES)}"

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
        if node_id is not None and (not isinstance(node_id, str) or not node_id):
            raise MalformedRequest("field 'node_id' must be a non-empty string")
        node_ids = body.get("node_ids")
        if node_ids is not None and (
            not isinstance(node_ids, list) or not all(isinstance(n, str) for n in node_ids)
        ):
            raise MalformedRequest("field 'node_ids' must be a list of strings")
        dest = message.dest
        if dest not in HANDLED and dest not in self.aliases and dest != node_id:
            raise Reject(NODE_NOT_FOUND, self._no_such_node(dest))
        if node_id is not None and node_id not in HANDLED:
            self.aliases.add(node_id)
        # A repeated init is answered and changes nothing else: sagas, stock and the msg_id
        # counter carry on.
        self.initialized = True
        self.reply(message, "init_ok", {})

    async def reserve_inventory(self, message: Message) -> None:
        body = message.body
        command = ReserveInventory.from_json(body, client=message.src)
        flags = frozenset(step for step in STEPS if _flag(body, f"fail_{step}"))
        saga_id = command.saga_id
        known = self._flags.get(saga_id)
        if known is None:
            self._flags[saga_id] = flags
            for step in sorted(flags):
                self._forced(step).force(saga_id)
        elif known != flags:
            # A retry repeats its request; other flags would ask for another saga.
            raise Reject(
                PRECONDITION_FAILED,
                f"saga {saga_id} was already started with other fail_* flags",
            )
        delivery_id = self.runtime.submit(command)
        self._requests[delivery_id] = _Request(
            src=message.src, dest=message.dest, msg_id=message.msg_id
        )
        if self._settle:
            with trio.move_on_after(self._settle_limit_s) as scope:
                await self.runtime.settle()
            if scope.cancelled_caught:
                self.warn(
                    f"line {self.lines}: not quiet after {self._settle_limit_s:g}s;"
                    " reading on while sagas are in flight"
                )

    def saga_status(self, message: Message) -> None:
        saga_id = message.body.get("saga_id")
        if not isinstance(saga_id, str) or not saga_id:
            raise MalformedRequest("field 'saga_id' must be a non-empty string")
        record = self.saga_log.get(saga_id)
        if record is None:
            if saga_id not in self._flags:
                raise Reject(KEY_DOES_NOT_EXIST, f"saga {saga_id} does not exist")
            # accepted, but the bus has not carried the request to inventory yet (--no-settle)
            status, events = "in_progress", []
        else:
            status, events = record.status, list(record.types)
        self.reply(
            message, "saga_status_ok", {"saga_id": saga_id, "status": status, "events": events}
        )

    # -- from the runtime ------------------------------------------------------------------

    def _reserve_answered(
        self, delivery: Delivery, answer: ReservationAccepted | ReservationRefused
    ) -> None:
        request = self._requests.pop(delivery.delivery_id, None)
        if request is None:
            return
        payload: dict[str, Any]
        if isinstance(answer, ReservationAccepted):
            kind = "reserve_inventory_ok"
            payload = {"saga_id": answer.saga_id, "reservation_id": answer.reservation_id}
        else:
            kind, payload = "error", {"code": answer.code, "text": answer.text}
        self.send(request.dest, request.src, kind, payload, request.msg_id)

    def _saga_ended(self, record: SagaRecord) -> None:
        if not record.client:
            return
        payload: dict[str, Any] = {"saga_id": record.saga_id}
        if record.reason is not None and record.status != "completed":
            payload["reason"] = record.reason
        self.send(EVENT_BUS, record.client, OUTCOME_MESSAGES[record.status], payload, None)

    def summary(self) -> str:
        counts = self.saga_log.counts()
        shown = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
        return f"{self.lines} line(s), {len(self.saga_log)} saga(s): {shown}"


async def _lines(fd: int, on_error: Callable[[str], None]) -> AsyncGenerator[bytes, None]:
    """Lines from `fd` without their newline, read in large chunks on a worker thread (no
    O_NONBLOCK games with a descriptor the parent shares); the last line may lack its newline.
    A read error ends the input like end of file."""
    pending = bytearray()
    while True:
        try:
            chunk = await trio.to_thread.run_sync(os.read, fd, 1 << 16, abandon_on_cancel=True)
        except OSError as exc:
            on_error(f"cannot read stdin ({exc}); treating it as end of input")
            break
        if not chunk:
            break
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending += chunk[start:end]
            yield bytes(pending)
            pending.clear()
            start = end + 1
        pending += chunk[start:]
    if pending:
        yield bytes(pending)


def _silence_stdout() -> None:
    """After the reader closed stdout, point fd 1 at /dev/null so that the interpreter's last
    flush does not fail (which would print a traceback and exit 120)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


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
        settle_limit_s=drain_s,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(node.runtime.run, serve=True))
        async with contextlib.aclosing(_lines(stdin_fd, node.warn)) as lines:
            async for line in lines:
                await node.handle_line(line)
                node.flush()  # a request answered on the spot (init, status, an error)
                if node.output_closed:
                    break
        if not node.output_closed:
            with trio.move_on_after(drain_s):
                await node.runtime.settle()
        node.flush()
        open_sagas = [r.saga_id for r in node.saga_log if not r.done]
        if open_sagas:
            node.warn(
                f"{len(open_sagas)} saga(s) still in progress after the {drain_s:g}s drain:"
                f" {', '.join(open_sagas[:10])}"
            )
        node.warn(node.summary())
        nursery.cancel_scope.cancel()
    if node.output_closed and out is None:
        _silence_stdout()
    return 0
