# The stdio protocol's sans-I/O core in-process: StdioNode takes one line (or one JSON value)
# and returns the lines to write, with no subprocess, no trio and no clock but its own. The
# property tests throw arbitrary byte lines, arbitrary JSON values and message-shaped values
# with arbitrary fields at it: it must never raise, and every line it returns must be a
# well-formed Maelstrom message in DESIGN §5's format, an error always with one of §5's codes
# (never 13, which means a bug). The runtime-driven replies are checked under autojump_clock.

from __future__ import annotations

import functools
import json
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_saga.runtime import Runtime
from trio_saga.stdio import (
    HANDLED,
    INPUT_CODES,
    MAX_INT_DIGITS,
    HugeInt,
    StdioNode,
    parse_line,
)

SEED_INIT = (
    b'{"src": "c0", "dest": "event_bus", "body": {"type": "init", "msg_id": 1,'
    b' "services": ["inventory", "payment", "shipping"]}}'
)
SEED_FIRST_LINE = (
    '{"src": "event_bus", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}}'
)
SEED_RESERVE = (
    b'{"src": "c1", "dest": "inventory", "body": {"type": "reserve_inventory", "msg_id": 2,'
    b' "saga_id": "saga42", "sku": "abc123", "quantity": 1}}'
)

Json = dict[str, Any]


def _strict(name: str) -> object:
    raise AssertionError(f"{name} in output")


def check_line(line: str, msg_id: int) -> Json:
    """One output line is one Maelstrom message in §5's exact format, with this msg_id."""
    assert "\n" not in line
    message = json.loads(line, parse_constant=_strict)
    assert json.dumps(message) == line  # default spacing, and nothing json.dumps would change
    assert isinstance(message, dict)
    assert list(message) == ["src", "dest", "body"]
    assert all(isinstance(message[k], str) and message[k] for k in ("src", "dest"))
    body = message["body"]
    assert isinstance(body, dict)
    keys = list(body)
    assert keys[0] == "type"
    assert keys[-1] == "msg_id"
    assert body["msg_id"] == msg_id
    assert isinstance(body["type"], str)
    if "in_reply_to" in body:
        assert keys[1] == "in_reply_to"
        assert type(body["in_reply_to"]) is int
    if body["type"] == "error":
        assert keys[-3:] == ["code", "text", "msg_id"]
        assert body["code"] in INPUT_CODES, body
        assert isinstance(body["text"], str)
        assert body["text"]
    else:
        assert body["type"] in {
            "init_ok",
            "reserve_inventory_ok",
            "saga_status_ok",
            "saga_completed",
            "saga_compensated",
            "saga_failed",
        }, body
    return message


def check_all(node: StdioNode, lines: list[str], start: int) -> int:
    for offset, line in enumerate(lines):
        check_line(line, start + offset)
    assert node.next_msg_id == start + len(lines)
    return node.next_msg_id


# -- strategies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from([*HANDLED, "n1", "c1", "", "nowhere"])
TYPES = st.sampled_from(["init", "reserve_inventory", "saga_status", "init_ok", "error", ""])
#: Every field some handler reads, and a few it does not; each with any JSON value or a
#: plausible one, so that the deep paths (a nearly valid request) are reached too.
FIELDS = [
    "msg_id",
    "saga_id",
    "sku",
    "quantity",
    "amount",
    "fail_payment",
    "fail_shipping",
    "fail_inventory",
    "fail_shiping",
    "services",
    "node_id",
    "node_ids",
    "in_reply_to",
]
plausible = st.one_of(
    json_values,
    st.integers(min_value=-2, max_value=1002),
    st.sampled_from(["s1", "s2", "abc123", "n1", True, False, 1e308, -0.0, 10**308, 10**12]),
    st.lists(st.sampled_from(["inventory", "payment", "shipping", "n1", "warehouse"])),
    st.builds(HugeInt, st.integers(min_value=MAX_INT_DIGITS + 1, max_value=10**6)),
)
bodies = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    TYPES | json_values,
    st.dictionaries(st.sampled_from(FIELDS), plausible, max_size=7),
)
messages = st.builds(
    lambda src, dest, body, drop: {
        k: v for k, v in {"src": src, "dest": dest, "body": body}.items() if k not in drop
    },
    NAMES | json_values,
    NAMES | json_values,
    bodies | json_values,
    st.sets(st.sampled_from(["src", "dest", "body"]), max_size=1),
)
#: Requests a client would send, valid or one field off, so that sagas start, retries and
#: conflicting orders meet (22), statuses find sagas or not (20) and flags are combined.
requests = st.builds(
    lambda dest, saga, sku, quantity, extra, msg_id: {
        "src": "c1",
        "dest": dest,
        "body": {
            "type": "reserve_inventory",
            "saga_id": saga,
            "sku": sku,
            "quantity": quantity,
            **extra,
        }
        | ({} if msg_id is None else {"msg_id": msg_id}),
    },
    st.sampled_from(["inventory", "inventory", "n1", "event_bus"]),
    st.sampled_from(["s1", "s2", "s3"]),
    st.sampled_from(["abc123", "other"]),
    st.integers(min_value=0, max_value=1200) | plausible,
    st.dictionaries(
        st.sampled_from(["amount", "fail_payment", "fail_shipping", "fail_inventory"]),
        st.booleans() | st.floats(min_value=0, max_value=10**13) | plausible,
        max_size=3,
    ),
    st.none() | st.integers(min_value=0, max_value=2**63),
) | st.builds(
    lambda saga, msg_id: {
        "src": "c2",
        "dest": "event_bus",
        "body": {"type": "saga_status", "saga_id": saga, "msg_id": msg_id},
    },
    st.sampled_from(["s1", "s2", "s3", "nope"]) | plausible,
    st.integers(min_value=0, max_value=99),
)
messages = messages | requests
INIT_VALUE = json.loads(SEED_INIT)


def as_line(value: object) -> bytes:
    return json.dumps(value, default=lambda huge: int("9" * 20)).encode()


mangled_lines = st.builds(
    lambda text, cut, junk: text[:cut] + junk + text[cut:],
    messages.map(as_line),
    st.integers(min_value=0, max_value=200),
    st.binary(max_size=4),
)
raw_lines = st.one_of(
    st.binary(max_size=200), messages.map(as_line), mangled_lines, st.just(SEED_INIT)
)


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(lines=st.lists(raw_lines, max_size=12), init_first=st.booleans())
def test_any_byte_lines_get_only_well_formed_answers(lines: list[bytes], init_first: bool) -> None:
    node = StdioNode()
    msg_id = 0
    for raw in [SEED_INIT] * init_first + lines:
        msg_id = check_all(node, node.receive_line(raw), msg_id)
    msg_id = check_all(node, node.finish(), msg_id)
    assert all(line.startswith("trio-saga: ") for line in node.take_logs())


@settings(max_examples=250, deadline=None)
@given(values=st.lists(st.one_of(json_values, messages), max_size=12), init_first=st.booleans())
def test_any_json_values_get_only_well_formed_answers(
    values: list[object], init_first: bool
) -> None:
    node = StdioNode()
    msg_id = 0
    for value in [INIT_VALUE] * init_first + values:
        msg_id = check_all(node, node.receive(value), msg_id)
    msg_id = check_all(node, node.finish(), msg_id)


@settings(max_examples=100, deadline=None)
@given(value=messages)
def test_a_message_with_a_readable_src_is_answered_at_most_once(value: Json) -> None:
    node = StdioNode()
    node.receive(INIT_VALUE)
    out = node.receive(value) + node.finish()
    answers = [json.loads(line) for line in out]
    assert len(answers) <= 1
    if answers:
        assert answers[0]["dest"] == value["src"]


@given(digits=st.integers(min_value=MAX_INT_DIGITS + 1, max_value=20_000))
def test_a_json_integer_too_long_to_convert_is_read_as_a_huge_int(digits: int) -> None:
    assert parse_line(b'{"n": -' + b"7" * digits + b"}") == {"n": HugeInt(digits)}
    assert parse_line(b"[" + b"7" * MAX_INT_DIGITS + b"]") == [int("7" * MAX_INT_DIGITS)]


# -- the exact lines -------------------------------------------------------------------------


def test_the_seed_lines_exactly_and_the_saga_waits_for_the_runtime() -> None:
    node = StdioNode()
    assert node.receive_line(SEED_INIT) == [SEED_FIRST_LINE]
    assert node.receive_line(SEED_RESERVE) == []  # answered when inventory gets it
    assert node.started == 1
    assert node.unanswered == 1
    assert node.receive_line(b"") == []
    assert node.lines == 3


def hostile(field: str) -> bytes:
    return (
        b'{"src": "h", "dest": "inventory", "body": {"type": "reserve_inventory", "msg_id": 2,'
        b' "saga_id": "x", "sku": "a", "quantity": 1, ' + field.encode() + b"}}"
    )


def test_item_1_to_3_are_malformed_requests_with_a_reply() -> None:
    for field, text in [
        ('"amount": 1e308', "field 'amount' must be a number from 0 to 1,000,000,000,000"),
        ('"amount": 1' + "0" * 308, "field 'amount' must be a number from 0 to 1,000,000,000,000"),
        (
            '"fail_shiping": true',
            "unknown flag 'fail_shiping' (known: fail_inventory, fail_payment, fail_shipping)",
        ),
        ('"quantity": 1' + "0" * 4400, "field 'quantity' must be a positive integer"),
    ]:
        node = StdioNode()
        node.receive_line(SEED_INIT)
        (line,) = node.receive_line(hostile(field))
        assert json.loads(line) == {
            "src": "inventory",
            "dest": "h",
            "body": {"type": "error", "in_reply_to": 2, "code": 12, "text": text, "msg_id": 1},
        }
        assert node.started == 0


def test_finish_answers_what_never_reached_inventory_with_11() -> None:
    node = StdioNode()
    node.receive_line(SEED_INIT)
    node.receive_line(SEED_RESERVE)
    assert [json.loads(line)["body"] for line in node.finish()] == [
        {
            "type": "error",
            "in_reply_to": 2,
            "code": 11,
            "text": "not carried to inventory before the node stopped; nothing was reserved",
            "msg_id": 1,
        }
    ]
    assert node.finish() == []


async def test_replies_from_the_runtime_are_lines_the_core_queues(autojump_clock: Any) -> None:
    node = StdioNode()
    runtime = Runtime(node.bus)
    node.submit = runtime.submit
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(runtime.run, serve=True))
        assert node.receive_line(SEED_INIT) == [SEED_FIRST_LINE]
        assert node.receive_line(SEED_RESERVE) == []
        await runtime.settle()
        assert node.take_output() == [
            '{"src": "inventory", "dest": "c1", "body": {"type": "reserve_inventory_ok",'
            ' "in_reply_to": 2, "saga_id": "saga42", "reservation_id": "r1", "msg_id": 1}}',
            '{"src": "event_bus", "dest": "c1", "body": {"type": "saga_completed",'
            ' "saga_id": "saga42", "msg_id": 2}}',
        ]
        assert node.finish() == []
        assert node.unfinished() == []
        nursery.cancel_scope.cancel()
