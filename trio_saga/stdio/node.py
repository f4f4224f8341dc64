"""The stdio protocol's sans-I/O core (DESIGN §5): a synchronous `StdioNode` that takes one
raw input line (or one parsed JSON value) and returns the stdout lines to write.

This module owns the wire protocol: parsing and validating each line at the edge, once; error
codes; the per-process msg_id counter; output key order; request bookkeeping; and the lines
that come later from the runtime (a reserve_inventory answered when the bus delivers it, the
end-of-saga notifications), which the bus's callbacks queue here for the shell to take. It
must never import trio, read or write a file descriptor, sleep or look at a clock other than
the one it is given, hold saga logic (that is the services, run by the same runtime as the
simulation), or let an input escape as an exception: every line gets zero or more well-formed
Maelstrom messages, an error always with one of §5's codes.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from faults import Fault, FaultInjector, ForcedFailure

from ..bus import BusConfig, Delivery, EventBus
from ..errors import MalformedRequest
from ..saga_log import SagaLog, SagaRecord
from ..trace import Trace
from .shop import (
    SHOP,
    STEPS,
    Participant,
    ReservationAccepted,
    ReservationRefused,
    ReserveInventory,
    SagaService,
    default_services,
)

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
#: The codes an answer to input may carry. CRASH is not among them: it means a bug here.
INPUT_CODES = frozenset(
    {
        NODE_NOT_FOUND,
        NOT_SUPPORTED,
        TEMPORARILY_UNAVAILABLE,
        MALFORMED_REQUEST,
        KEY_DOES_NOT_EXIST,
        PRECONDITION_FAILED,
    }
)

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
#: The forced-failure flags a reserve_inventory may carry; any other `fail_*` is a typo that
#: would silently run another saga than the one asked for.
FLAGS = {f"fail_{step}": step for step in STEPS}

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
#: CPython refuses to convert longer digit strings to int (a quadratic-time guard); a JSON
#: integer this long is read as `HugeInt`, which no field accepts, so the request is answered
#: 12 naming the field rather than dropped as "not JSON".
MAX_INT_DIGITS = 4300

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


@attrs.frozen
class HugeInt:
    """A JSON integer too long to convert (more than MAX_INT_DIGITS digits): its digit count
    only. It is neither an int nor a number to any field check, so it is ill-typed everywhere."""

    digits: int


def _int(text: str) -> int | HugeInt:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return HugeInt(len(text.lstrip("-")))
    return int(text)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Made once: json.loads with an argument builds a new decoder per line, and json.dumps
# re-checks its defaults per message (both showed in a 20k-line profile). Same output as
# json.dumps with its defaults, which DESIGN §5 asks for.
_STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_int=_int)
_LENIENT_JSON = json.JSONDecoder(parse_int=_int)
_ENCODE = json.JSONEncoder().encode


def _lenient(text: str) -> object:
    try:
        return _LENIENT_JSON.decode(text)
    except (ValueError, RecursionError):
        return None


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


def _flags(body: dict[str, Any]) -> frozenset[str]:
    """The steps a reserve_inventory forces to fail; an unknown `fail_*` key is refused."""
    steps: set[str] = set()
    for key, value in body.items():
        if not key.startswith("fail_"):
            continue
        step = FLAGS.get(key)
        if step is None:
            raise MalformedRequest(f"unknown flag {key!r} (known: {', '.join(sorted(FLAGS))})")
        if not isinstance(value, bool):
            raise MalformedRequest(f"field {key!r} must be a boolean")
        if value:
            steps.add(step)
    return frozenset(steps)


@attrs.frozen(kw_only=True)
class _Request:
    """Who is waiting for the answer to a reserve_inventory the runtime is carrying."""

    src: str
    dest: str
    msg_id: int | None


class StdioNode:
    """The protocol state of the process: init, the msg_id counter, request bookkeeping, and
    the bus the shell's runtime drives.

    `receive_line` (or `receive`) handles one input and returns the lines to write, without
    newlines; lines the bus produces later are queued and come out of `take_output`. Log lines
    for stderr come out of `take_logs`. `submit` puts a started saga on the bus: the shell
    points it at `Runtime.submit`, which also wakes the runtime's driver.
    """

    def __init__(
        self,
        *,
        services: Sequence[SagaService] | None = None,
        faults: Sequence[Fault] = (),
        seed: int = 0,
        config: BusConfig = STDIO_BUS_CONFIG,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.next_msg_id = 0
        self.lines = 0
        #: Sagas put on the bus so far; the shell settles after a line that started one.
        self.started = 0
        self.initialized = False
        self.aliases: set[str] = set()
        self._out: list[str] = []
        self._log: list[str] = []
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
        self.bus = EventBus(
            [Participant(s) for s in (services or default_services())],
            saga=SHOP,
            injector=injector,
            trace=Trace(keep=False),
            saga_log=self.saga_log,
            config=config,
            timestamp=lambda _us: int(clock()),
            on_reply=self._reserve_answered,
        )
        # Partitions and crashes at a time count from the start of the process; they must be
        # on the agenda before the runtime first looks at it.
        self.bus.schedule_faults()
        self.submit: Callable[[ReserveInventory], int] = self.bus.start_saga

    def _forced(self, step: str) -> ForcedFailure:
        plugin = self.forced.get(step)
        if plugin is None:
            made = ForcedFailure(step=step)
            self.bus.injector.add(made)
            plugin = self.forced[step] = made
        return plugin

    # -- output ----------------------------------------------------------------------------

    def take_output(self) -> list[str]:
        """The stdout lines produced since the last call, in msg_id order."""
        out, self._out = self._out, []
        return out

    def take_logs(self) -> list[str]:
        """The stderr lines produced since the last call."""
        logs, self._log = self._log, []
        return logs

    def send(
        self, src: str, dest: str, kind: str, payload: dict[str, Any], in_reply_to: int | None
    ) -> None:
        """Queue one message; `in_reply_to` None means the request had no msg_id."""
        body: dict[str, Any] = {"type": kind}
        if in_reply_to is not None:
            body["in_reply_to"] = in_reply_to
        body.update(payload)
        body["msg_id"] = self.next_msg_id
        self.next_msg_id += 1
        self._out.append(_ENCODE({"src": src, "dest": dest, "body": body}))

    def reply(self, message: Message, kind: str, payload: dict[str, Any]) -> None:
        self.send(message.dest, message.src, kind, payload, message.msg_id)

    def error(self, message: Message, code: int, text: str) -> None:
        self.reply(message, "error", {"code": code, "text": text})

    def warn(self, text: str) -> None:
        self._log.append(f"trio-saga: {text}")

    # -- input -----------------------------------------------------------------------------

    def receive_line(self, raw: bytes) -> list[str]:
        """Handle one input line (without its newline); returns the lines to write. Never
        raises on any input."""
        self.lines += 1
        if raw.strip():
            try:
                data = parse_line(raw)
            except BadLine as exc:
                self._bad_line(repr(raw[:QUOTE]), exc.reason, exc.readable)
            else:
                self._handle(data, lambda: repr(raw[:QUOTE]))
        return self.take_output()

    def receive(self, data: object) -> list[str]:
        """Handle one input already parsed as JSON (what `parse_line` returns); returns the
        lines to write. Never raises on any input."""
        self.lines += 1
        self._handle(data, lambda: repr(data)[:QUOTE])
        return self.take_output()

    def _handle(self, data: object, quote: Callable[[], str]) -> None:
        try:
            message = Message.from_json(data)
        except MalformedRequest as exc:
            self._bad_line(quote(), f"not a message: {exc}", data)
            return
        try:
            self.dispatch(message)
        except Reject as exc:
            self.error(message, exc.code, exc.text)
        except MalformedRequest as exc:
            self.error(message, MALFORMED_REQUEST, str(exc))
        except Exception as exc:  # a bug must not take the node down with the client's work
            self.warn(f"line {self.lines}: internal error on {message.type}: {exc!r}")
            self.error(message, CRASH, f"internal error: {exc}")

    def _bad_line(self, quoted: str, reason: str, readable: object) -> None:
        address = _reply_address(readable)
        answered = " (answered with code 12)" if address is not None else ""
        self.warn(f"line {self.lines}: ignoring it, {reason}{answered}: {quoted}")
        if address is not None:
            src, dest, in_reply_to = address
            self.send(src, dest, "error", {"code": MALFORMED_REQUEST, "text": reason}, in_reply_to)

    def dispatch(self, message: Message) -> None:
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
            self.reserve_inventory(message)
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

    def reserve_inventory(self, message: Message) -> None:
        body = message.body
        command = ReserveInventory.from_json(body, client=message.src)
        flags = _flags(body)
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
        delivery_id = self.submit(command)
        self.started += 1
        self._requests[delivery_id] = _Request(
            src=message.src, dest=message.dest, msg_id=message.msg_id
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

    # -- the end ---------------------------------------------------------------------------

    @property
    def unanswered(self) -> int:
        """Accepted reserve_inventory requests the bus has not yet carried to inventory."""
        return len(self._requests)

    def unfinished(self) -> list[str]:
        """The sagas still in progress, in the order they started."""
        return [r.saga_id for r in self.saga_log if not r.done]

    def finish(self) -> list[str]:
        """The node stops: every request not yet carried to inventory (a fault held it past the
        drain) is answered 11, which is definite: inventory never saw it, nothing was reserved.
        No request with a reply address goes unanswered. Returns the lines to write."""
        for request in self._requests.values():
            self.send(
                request.dest,
                request.src,
                "error",
                {
                    "code": TEMPORARILY_UNAVAILABLE,
                    "text": "not carried to inventory before the node stopped; nothing was"
                    " reserved",
                },
                request.msg_id,
            )
        self._requests.clear()
        return self.take_output()

    def summary(self) -> str:
        counts = self.saga_log.counts()
        shown = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
        return f"{self.lines} line(s), {len(self.saga_log)} saga(s): {shown}"
