# The stdio mode (DESIGN §5) as a Maelstrom-style harness drives it: `run.py` as a real
# subprocess from the repository root, JSON lines in, every stdout line parsed. Each test
# follows one bullet of §5; `Node.out` refuses any stdout line that is not a JSON object, so
# every test also checks that the node never writes anything else.

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stdio_node import check_line, raw_lines

REPO = Path(__file__).resolve().parent.parent
SEED_INIT = {
    "src": "c0",
    "dest": "event_bus",
    "body": {"type": "init", "msg_id": 1, "services": ["inventory", "payment", "shipping"]},
}
SEED_FIRST_LINE = (
    '{"src": "event_bus", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}}'
)
EVENTS = {
    "completed": ["InventoryReserved", "PaymentCharged", "ShipmentCreated"],
    "payment": ["InventoryReserved", "PaymentFailed", "InventoryReleased"],
    "shipping": [
        "InventoryReserved",
        "PaymentCharged",
        "ShipmentFailed",
        "PaymentRefunded",
        "InventoryReleased",
    ],
    "inventory": ["InventoryReservationFailed"],
}
NOTIFICATIONS = ("saga_completed", "saga_compensated", "saga_failed")

Json = dict[str, Any]
Line = Json | str | bytes


@attrs.frozen
class Node:
    """What one run of the node printed."""

    stdout: str
    stderr: str
    returncode: int

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def out(self) -> list[Json]:
        parsed = [json.loads(line) for line in self.lines]
        assert all(isinstance(m, dict) for m in parsed), self.stdout
        return parsed

    def of_type(self, kind: str) -> list[Json]:
        return [m for m in self.out if m["body"]["type"] == kind]

    def replies_to(self, msg_id: int) -> list[Json]:
        return [m for m in self.out if m["body"].get("in_reply_to", -1) == msg_id]

    def reply_to(self, msg_id: int) -> Json:
        found = self.replies_to(msg_id)
        assert len(found) == 1, (msg_id, self.stdout)
        return found[0]

    def notifications(self, saga_id: str | None = None) -> list[Json]:
        return [
            m
            for m in self.out
            if m["body"]["type"] in NOTIFICATIONS
            and (saga_id is None or m["body"]["saga_id"] == saga_id)
        ]


def encode(line: Line) -> bytes:
    if isinstance(line, bytes):
        return line
    return (line if isinstance(line, str) else json.dumps(line)).encode()


def run_node(
    *lines: Line, args: Sequence[str] = (), stdin: bytes | None = None, timeout: float = 30
) -> Node:
    """Feed `lines` (dicts as JSON, str and bytes as they are), close stdin, wait for exit."""
    data = stdin if stdin is not None else b"".join(encode(line) + b"\n" for line in lines)
    done = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        input=data,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    node = Node(done.stdout.decode(), done.stderr.decode(), done.returncode)
    assert node.returncode == 0, node.stderr
    assert "Traceback" not in node.stderr
    node.out  # noqa: B018 - parses every line, failing on anything but a JSON object
    return node


def init(msg_id: int = 1, src: str = "c0", **extra: Any) -> Json:
    body = {"type": "init", "msg_id": msg_id, "services": ["inventory", "payment", "shipping"]}
    return {"src": src, "dest": "event_bus", "body": body | extra}


def reserve(
    saga_id: str, msg_id: int | None, src: str = "c1", dest: str = "inventory", **extra: Any
) -> Json:
    body: Json = {"type": "reserve_inventory", "saga_id": saga_id, "sku": "abc123", "quantity": 1}
    if msg_id is not None:
        body["msg_id"] = msg_id
    return {"src": src, "dest": dest, "body": body | extra}


def status(saga_id: str, msg_id: int, src: str = "c1", dest: str = "event_bus") -> Json:
    return {
        "src": src,
        "dest": dest,
        "body": {"type": "saga_status", "msg_id": msg_id, "saga_id": saga_id},
    }


def message(dest: str, body: Json, src: str = "c1") -> Json:
    return {"src": src, "dest": dest, "body": body}


# -- the seed's sample cases and the output format ------------------------------------------


def test_seed_case_completes_and_its_first_line_is_exact() -> None:
    node = run_node(SEED_INIT, reserve("saga42", 2))
    assert node.lines[0] == SEED_FIRST_LINE
    assert node.out[1:] == [
        {
            "src": "inventory",
            "dest": "c1",
            "body": {
                "type": "reserve_inventory_ok",
                "in_reply_to": 2,
                "saga_id": "saga42",
                "reservation_id": "r1",
                "msg_id": 1,
            },
        },
        {
            "src": "event_bus",
            "dest": "c1",
            "body": {"type": "saga_completed", "saga_id": "saga42", "msg_id": 2},
        },
    ]


def test_seed_payment_failure_case_compensates() -> None:
    node = run_node(SEED_INIT, reserve("saga43", 2, fail_payment=True), status("saga43", 3))
    assert node.lines[0] == SEED_FIRST_LINE
    assert node.reply_to(2)["body"]["type"] == "reserve_inventory_ok"
    assert [m["body"] for m in node.notifications()] == [
        {
            "type": "saga_compensated",
            "saga_id": "saga43",
            "reason": "insufficient_funds",
            "msg_id": 2,
        }
    ]
    assert node.reply_to(3)["body"]["events"] == EVENTS["payment"]


def test_lines_use_default_json_spacing_and_key_order() -> None:
    node = run_node(
        SEED_INIT,
        reserve("ok", 2),
        reserve("bad", 3, fail_shipping=True),
        status("ok", 4),
        status("nope", 5),
    )
    for line, parsed in zip(node.lines, node.out, strict=True):
        assert line == json.dumps(parsed)  # json.loads keeps the order, so this pins it too
        assert list(parsed) == ["src", "dest", "body"]
    keys = {m["body"]["type"] + str(m["body"].get("code", "")): list(m["body"]) for m in node.out}
    assert keys == {
        "init_ok": ["type", "in_reply_to", "msg_id"],
        "reserve_inventory_ok": ["type", "in_reply_to", "saga_id", "reservation_id", "msg_id"],
        "saga_completed": ["type", "saga_id", "msg_id"],
        "saga_compensated": ["type", "saga_id", "reason", "msg_id"],
        "saga_status_ok": ["type", "in_reply_to", "saga_id", "status", "events", "msg_id"],
        "error20": ["type", "in_reply_to", "code", "text", "msg_id"],
    }


def test_msg_id_is_one_counter_from_zero_across_every_message() -> None:
    node = run_node(
        status("x", 7),  # an error before init counts too
        SEED_INIT,
        reserve("a", 2),
        reserve("b", 3, fail_payment=True),
        "not json",  # no reply, so no msg_id used
        "",
        message("nowhere", {"type": "saga_status", "msg_id": 4}),
        status("a", 5),
    )
    assert [m["body"]["msg_id"] for m in node.out] == list(range(len(node.out)))
    assert len(node.out) == 8


def test_in_reply_to_is_the_request_msg_id_by_presence() -> None:
    node = run_node(
        init(msg_id=0),
        reserve("zero", 0),
        reserve("none", None),
        {"src": "c1", "dest": "event_bus", "body": {"type": "saga_status", "saga_id": "zero"}},
        {"src": "c1", "dest": "event_bus", "body": {"type": "saga_status", "saga_id": "nope"}},
        reserve("big", 2**40),
    )
    assert [m["body"]["type"] for m in node.replies_to(0)] == ["init_ok", "reserve_inventory_ok"]
    no_reply_to = [m["body"] for m in node.out if "in_reply_to" not in m["body"]]
    assert [(b["type"], b.get("saga_id"), b.get("code")) for b in no_reply_to] == [
        ("saga_completed", "zero", None),
        ("reserve_inventory_ok", "none", None),
        ("saga_completed", "none", None),
        ("saga_status_ok", "zero", None),
        ("error", None, 20),
        ("saga_completed", "big", None),
    ]
    assert node.reply_to(2**40)["body"]["saga_id"] == "big"


def test_a_reply_comes_from_the_request_dest() -> None:
    node = run_node(
        SEED_INIT,
        reserve("s", 2),
        status("s", 3),
        message("nowhere", {"type": "saga_status", "msg_id": 4, "saga_id": "s"}),
        message("payment", {"type": "saga_status", "msg_id": 5, "saga_id": "s"}),
    )
    assert [(node.reply_to(i)["src"], node.reply_to(i)["dest"]) for i in (2, 3, 4, 5)] == [
        ("inventory", "c1"),
        ("event_bus", "c1"),
        ("nowhere", "c1"),
        ("payment", "c1"),
    ]


# -- init ------------------------------------------------------------------------------------


def test_maelstrom_init_names_the_node_that_answers() -> None:
    node = run_node(
        {
            "src": "c0",
            "dest": "n1",
            "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]},
        },
        reserve("m", 2, dest="n1"),
        status("m", 3, dest="n1"),
        reserve("i", 4),
        status("i", 5),
    )
    assert node.lines[0] == SEED_FIRST_LINE.replace('"src": "event_bus"', '"src": "n1"')
    assert [node.reply_to(i)["src"] for i in (2, 3, 4, 5)] == ["n1", "n1", "inventory", "event_bus"]
    assert node.reply_to(2)["body"]["reservation_id"] == "r1"
    assert node.reply_to(3)["body"]["status"] == "completed"
    assert [m["body"]["saga_id"] for m in node.of_type("saga_completed")] == ["m", "i"]
    assert all(m["src"] == "event_bus" for m in node.notifications())


def test_maelstrom_init_to_event_bus_and_init_to_a_stranger() -> None:
    node = run_node(
        message("nowhere", {"type": "init", "msg_id": 1}, src="c0"),
        message("event_bus", {"type": "init", "msg_id": 2, "node_id": "n3", "node_ids": ["n3"]}),
        status("x", 3, dest="n3"),
    )
    assert node.reply_to(1)["body"]["code"] == 1
    assert node.reply_to(2) == {
        "src": "event_bus",
        "dest": "c1",
        "body": {"type": "init_ok", "in_reply_to": 2, "msg_id": 1},
    }
    assert node.reply_to(3)["src"] == "n3"
    assert node.reply_to(3)["body"]["code"] == 20


def test_repeated_init_is_answered_and_resets_nothing() -> None:
    node = run_node(
        SEED_INIT,
        reserve("first", 2, quantity=600),
        init(msg_id=3),
        {
            "src": "c0",
            "dest": "n1",
            "body": {"type": "init", "msg_id": 4, "node_id": "n1", "node_ids": ["n1"]},
        },
        status("first", 5),
        reserve("second", 6, quantity=600),  # 400 left: the stock was not reset
        reserve("third", 7),
    )
    assert node.reply_to(3)["body"] == {"type": "init_ok", "in_reply_to": 3, "msg_id": 3}
    assert node.reply_to(4)["body"]["type"] == "init_ok"
    assert node.reply_to(5)["body"]["status"] == "completed"
    assert node.reply_to(5)["body"]["events"] == EVENTS["completed"]
    assert node.reply_to(6)["body"]["code"] == 22
    assert node.reply_to(7)["body"]["reservation_id"] == "r2"  # counters carry on too


# -- reserve_inventory, notifications, status --------------------------------------------------


def test_reserve_inventory_ok_carries_saga_id_and_reservation_id() -> None:
    node = run_node(SEED_INIT, reserve("a", 2), reserve("b", 3, src="c2", sku="other", quantity=5))
    assert node.reply_to(2)["body"] == {
        "type": "reserve_inventory_ok",
        "in_reply_to": 2,
        "saga_id": "a",
        "reservation_id": "r1",
        "msg_id": 1,
    }
    assert node.reply_to(3)["dest"] == "c2"
    assert node.reply_to(3)["body"]["reservation_id"] == "r2"


@pytest.mark.parametrize(
    ("flags", "kind", "reason", "events"),
    [
        ({}, "saga_completed", None, EVENTS["completed"]),
        ({"fail_payment": True}, "saga_compensated", "insufficient_funds", EVENTS["payment"]),
        ({"fail_shipping": True}, "saga_compensated", "carrier_unavailable", EVENTS["shipping"]),
        ({"fail_inventory": True}, "saga_failed", "inventory_unavailable", EVENTS["inventory"]),
    ],
)
def test_the_starting_client_is_told_how_its_saga_ended(
    flags: Json, kind: str, reason: str | None, events: list[str]
) -> None:
    flags_off: Json = {k: False for k in ("fail_payment", "fail_shipping", "fail_inventory")}
    node = run_node(
        SEED_INIT,
        reserve("mine", 2, src="c7", **flags),
        reserve("other", 3, src="c8", **flags_off),
        status("mine", 4, src="c9"),
    )
    body = {"type": kind, "saga_id": "mine"} | ({"reason": reason} if reason else {})
    mine = node.notifications("mine")
    assert [(m["src"], m["dest"]) for m in mine] == [("event_bus", "c7")]
    assert {k: v for k, v in mine[0]["body"].items() if k != "msg_id"} == body
    assert [(m["dest"], m["body"]["type"]) for m in node.notifications("other")] == [
        ("c8", "saga_completed")
    ]
    answer = node.reply_to(4)
    assert (answer["dest"], answer["body"]["status"]) == ("c9", kind.removeprefix("saga_"))
    assert answer["body"]["events"] == events
    if kind == "saga_failed":  # the request itself is refused, then the saga is reported
        assert node.reply_to(2)["body"]["code"] == 22
        assert node.out.index(node.reply_to(2)) < node.out.index(mine[0])


def test_not_enough_stock_is_refused_with_22_and_the_saga_fails() -> None:
    node = run_node(SEED_INIT, reserve("big", 2, quantity=1001), reserve("fits", 3, quantity=1000))
    refusal = node.reply_to(2)["body"]
    assert (refusal["code"], "insufficient stock" in refusal["text"]) == (22, True)
    assert [m["body"].get("reason") for m in node.notifications("big")] == ["insufficient_stock"]
    assert node.reply_to(3)["body"]["type"] == "reserve_inventory_ok"


def test_a_client_retry_gets_the_same_answer_and_starts_nothing() -> None:
    node = run_node(
        SEED_INIT,
        reserve("s", 2, amount=12.5),
        status("s", 3),
        reserve("s", 4, amount=12.5),
        reserve("s", 5, src="c2", amount=12.5),  # a retry through another client
        reserve("poor", 6, quantity=5000),
        reserve("poor", 7, quantity=5000),
        reserve("flagged", 8, fail_payment=True),
        reserve("flagged", 9, fail_payment=True, fail_shipping=False),
        status("s", 10),
        status("flagged", 11),
        reserve("next", 12),
    )
    first, again, other = node.reply_to(2), node.reply_to(4), node.reply_to(5)
    same = {k: v for k, v in first["body"].items() if k not in ("msg_id", "in_reply_to")}
    for retry in (again, other):
        assert {
            k: v for k, v in retry["body"].items() if k not in ("msg_id", "in_reply_to")
        } == same
    assert (again["src"], again["dest"], other["dest"]) == ("inventory", "c1", "c2")
    assert node.reply_to(7)["body"]["text"] == node.reply_to(6)["body"]["text"]
    assert node.reply_to(9)["body"]["reservation_id"] == node.reply_to(8)["body"]["reservation_id"]
    assert node.reply_to(3)["body"] == node.reply_to(10)["body"] | {
        "in_reply_to": 3,
        "msg_id": node.reply_to(3)["body"]["msg_id"],
    }
    assert node.reply_to(11)["body"]["events"] == EVENTS["payment"]
    assert [len(node.notifications(s)) for s in ("s", "poor", "flagged")] == [1, 1, 1]
    assert node.reply_to(12)["body"]["reservation_id"] == "r3"  # no reservation was made twice


#: Changes that make a request with a known saga_id another order, not a retry.
OTHER_ORDERS: list[Json] = [
    {"quantity": 2},
    {"sku": "other"},
    {"amount": 1.0},
    {"fail_payment": True},
    {"quantity": 2, "fail_shipping": True},
]


def test_the_same_saga_id_with_another_order_is_refused() -> None:
    changed = [reserve("s", 10 + i, **change) for i, change in enumerate(OTHER_ORDERS)]
    node = run_node(SEED_INIT, reserve("s", 2), *changed, status("s", 3))
    assert node.reply_to(2)["body"]["type"] == "reserve_inventory_ok"
    for i, change in enumerate(OTHER_ORDERS):
        refusal = node.reply_to(10 + i)["body"]
        assert (refusal["type"], refusal["code"]) == ("error", 22), change
        assert "already started" in refusal["text"]
    assert node.reply_to(3)["body"]["events"] == EVENTS["completed"]
    assert [m["body"]["type"] for m in node.notifications()] == ["saga_completed"]


def test_saga_status_is_in_progress_until_the_saga_ends() -> None:
    # Without settling, and with every hop 0.3 s late, the status request is answered while the
    # saga has only just been accepted; the saga then ends in the drain.
    node = run_node(
        SEED_INIT,
        reserve("slow", 2),
        status("slow", 3),
        args=["--no-settle", "--drain", "4", "--fault", "delay:mean=0.3,dist=constant"],
    )
    answer = node.reply_to(3)["body"]
    assert (answer["status"], answer["events"]) == ("in_progress", [])
    assert node.out.index(node.reply_to(3)) < node.out.index(node.notifications("slow")[0])
    assert node.notifications("slow")[0]["body"]["type"] == "saga_completed"


# -- errors ----------------------------------------------------------------------------------


def test_requests_before_init_are_temporarily_unavailable() -> None:
    node = run_node(
        reserve("early", 1),
        status("early", 2),
        message("payment", {"type": "x", "msg_id": 3}),
        init(msg_id=4),
        reserve("early", 5),
    )
    for msg_id, src in ((1, "inventory"), (2, "event_bus"), (3, "payment")):
        assert node.reply_to(msg_id)["src"] == src
        assert node.reply_to(msg_id)["body"]["code"] == 11
    assert node.reply_to(5)["body"]["reservation_id"] == "r1"  # nothing was started early


def test_unknown_dest_is_node_not_found() -> None:
    node = run_node(SEED_INIT, reserve("s", 2, dest="warehouse"), status("s", 3, dest="c0"))
    for msg_id in (2, 3):
        assert node.reply_to(msg_id)["body"]["code"] == 1
    assert node.notifications() == []


#: (dest, type) answered with code 10: unknown types, and types sent to a node that does not
#: handle them.
UNSUPPORTED = [
    ("event_bus", "frobnicate"),
    ("event_bus", "reserve_inventory"),
    ("inventory", "saga_status"),
    ("payment", "reserve_inventory"),
    ("shipping", "saga_status"),
    ("event_bus", ""),
    ("inventory", "init_ok"),
]


def test_an_unknown_type_or_one_sent_to_the_wrong_node_is_not_supported() -> None:
    requests = [
        message(dest, {"type": kind, "msg_id": 10 + i, "saga_id": "s", "sku": "a", "quantity": 1})
        for i, (dest, kind) in enumerate(UNSUPPORTED)
    ]
    node = run_node(SEED_INIT, *requests, status("s", 2))
    for i, (dest, kind) in enumerate(UNSUPPORTED):
        answer = node.reply_to(10 + i)
        assert (answer["src"], answer["body"]["code"]) == (dest, 10), kind
    assert node.reply_to(2)["body"]["code"] == 20  # nothing was started


#: (dest, body without msg_id) -> one code-12 answer each.
MALFORMED: list[tuple[str, Json]] = [
    ("inventory", {"type": "reserve_inventory", "sku": "a", "quantity": 1}),
    ("inventory", {"type": "reserve_inventory", "saga_id": 5, "sku": "a", "quantity": 1}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "", "sku": "a", "quantity": 1}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "quantity": 1}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": ["a"], "quantity": 1}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": "a"}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": "1"}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 0}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": -3}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 1.5}),
    ("inventory", {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": True}),
    (
        "inventory",
        {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 1, "amount": "9"},
    ),
    (
        "inventory",
        {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 1, "amount": -1},
    ),
    (
        "inventory",
        {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 1, "amount": True},
    ),
    (
        "inventory",
        {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 1, "amount": 1e400},
    ),
    (
        "inventory",
        {"type": "reserve_inventory", "saga_id": "m", "sku": "a", "quantity": 1, "amount": 10**400},
    ),
    (
        "inventory",
        {
            "type": "reserve_inventory",
            "saga_id": "m",
            "sku": "a",
            "quantity": 1,
            "fail_payment": "yes",
        },
    ),
    (
        "inventory",
        {
            "type": "reserve_inventory",
            "saga_id": "m",
            "sku": "a",
            "quantity": 1,
            "fail_shipping": 1,
        },
    ),
    (
        "inventory",
        {
            "type": "reserve_inventory",
            "saga_id": "m",
            "sku": "a",
            "quantity": 1,
            "fail_inventory": None,
        },
    ),
    ("event_bus", {"type": "saga_status"}),
    ("event_bus", {"type": "saga_status", "saga_id": ["m"]}),
    ("event_bus", {"type": "init", "services": "inventory"}),
    ("event_bus", {"type": "init", "services": [1]}),
    ("event_bus", {"type": "init", "services": ["warehouse"]}),
    ("event_bus", {"type": "init", "node_id": 5}),
    ("event_bus", {"type": "init", "node_id": "n1", "node_ids": "n1"}),
]


def test_each_missing_or_ill_typed_field_is_malformed() -> None:
    requests = [
        message(dest, body | {"msg_id": 100 + i}) for i, (dest, body) in enumerate(MALFORMED)
    ]
    node = run_node(SEED_INIT, *requests, status("m", 2))
    for i, (dest, body) in enumerate(MALFORMED):
        answer = node.reply_to(100 + i)
        assert (answer["src"], answer["body"]["type"], answer["body"]["code"]) == (
            dest,
            "error",
            12,
        ), body
        assert answer["body"]["text"]
    assert node.reply_to(2)["body"]["code"] == 20  # none of them started a saga
    assert node.notifications() == []


def test_an_ill_typed_msg_id_is_malformed_and_not_echoed() -> None:
    node = run_node(
        SEED_INIT,
        {
            "src": "c1",
            "dest": "event_bus",
            "body": {"type": "saga_status", "saga_id": "s", "msg_id": "7"},
        },
    )
    assert [m["body"] for m in node.out[1:]] == [
        {
            "type": "error",
            "code": 12,
            "text": "not a message: field 'msg_id' must be an integer",
            "msg_id": 1,
        }
    ]


def test_an_unknown_saga_is_key_does_not_exist() -> None:
    node = run_node(SEED_INIT, reserve("known", 2), status("unknown", 3), status("KNOWN", 4))
    for msg_id in (3, 4):
        assert node.reply_to(msg_id)["body"]["code"] == 20
        assert node.reply_to(msg_id)["src"] == "event_bus"


# -- lines that are not messages -------------------------------------------------------------


def test_garbage_lines_are_logged_answered_where_possible_and_survived() -> None:
    node = run_node(
        SEED_INIT,
        "this is not json",
        '{"src": "c1", "dest": "event_bus", "body": {"type": "saga_status", "msg_id": 2',
        "[1, 2, 3]",
        "42",
        '"a string"',
        "null",
        {"dest": "event_bus", "body": {"type": "saga_status", "msg_id": 3, "saga_id": "x"}},
        {"src": 7, "dest": "event_bus", "body": {"type": "saga_status", "msg_id": 4}},
        {"src": "c1", "dest": "event_bus", "body": [1]},
        {"src": "c1", "dest": "inventory", "body": {"msg_id": 5, "saga_id": "x"}},
        {"src": "c1", "dest": "inventory", "body": {"type": 7, "msg_id": 6}},
        {"src": "c1", "body": {"type": "saga_status", "msg_id": 8, "saga_id": "x"}},
        json.dumps(status("x", 9)).replace('"x"', "NaN"),
        "[" * 100_000,
        reserve("after", 10),
    )
    codes = [(m["src"], m["body"].get("in_reply_to"), m["body"].get("code")) for m in node.out]
    assert codes == [
        ("event_bus", 1, None),
        ("event_bus", None, 12),  # body is not an object: nothing to reply to
        ("inventory", 5, 12),
        ("inventory", 6, 12),
        ("event_bus", 8, 12),  # no dest: answered from event_bus
        ("event_bus", 9, 12),
        ("inventory", 10, None),
        ("event_bus", None, None),  # the saga after the garbage still completes
    ]
    logged = [line for line in node.stderr.splitlines() if "ignoring" in line]
    assert len(logged) == 14, node.stderr


def test_empty_lines_are_ignored() -> None:
    node = run_node(
        stdin=b"\n\n   \n\t\r\n"
        + encode(SEED_INIT)
        + b"\n\n\r\n"
        + encode(reserve("s", 2))
        + b"\r\n\n"
    )
    assert node.lines[0] == SEED_FIRST_LINE
    assert [m["body"]["type"] for m in node.out] == [
        "init_ok",
        "reserve_inventory_ok",
        "saga_completed",
    ]
    assert "ignoring" not in node.stderr


def test_the_last_line_is_processed_without_a_newline() -> None:
    node = run_node(stdin=encode(SEED_INIT) + b"\n" + encode(status("none", 2)))
    assert node.reply_to(2)["body"]["code"] == 20


def test_invalid_utf8_is_malformed_and_never_half_understood() -> None:
    bad_saga = encode(reserve("s\xff", 2)).replace(b"\\u00ff", b"\xff")
    node = run_node(
        SEED_INIT,
        bad_saga,
        b"\xfe\xff garbage",
        b"\x80",
        reserve("fine\u00e9", 3),
        status("s\ufffd", 4),
    )
    assert node.reply_to(2)["body"]["code"] == 12
    assert "UTF-8" in node.reply_to(2)["body"]["text"]
    assert node.reply_to(3)["body"]["saga_id"] == "fine\u00e9"
    assert node.reply_to(4)["body"]["code"] == 20  # the bad line started no saga
    assert len(node.out) == 5
    assert sum("UTF-8" in line for line in node.stderr.splitlines()) == 3


# -- end of input, faults, the command line --------------------------------------------------


def test_end_of_input_exits_0_well_within_the_harness_timeout() -> None:
    # the harness allows 5 s per case; a quiet node must be gone long before that
    node = run_node(SEED_INIT, reserve("s", 2), timeout=5)
    assert len(node.out) == 3
    assert run_node(stdin=b"", timeout=5).stdout == ""


def test_the_drain_is_bounded_when_sagas_cannot_finish() -> None:
    # every hop takes 10 s, so the saga cannot end; the node still exits 0 after --drain
    node = run_node(
        SEED_INIT,
        reserve("stuck", 2),
        args=["--no-settle", "--drain", "0.5", "--fault", "delay:mean=10,dist=constant"],
        timeout=5,
    )
    assert node.notifications() == []
    assert "1 saga(s) still in progress" in node.stderr
    assert "stuck" in node.stderr


def test_a_timed_fault_from_the_command_line_is_applied() -> None:
    # payment is cut off for a minute from the start: the saga is accepted and then stuck
    node = run_node(
        SEED_INIT,
        reserve("cut", 2),
        args=["--drain", "0.3", "--fault", "partition:service=payment,start=0,duration=60"],
        timeout=10,
    )
    assert node.reply_to(2)["body"]["type"] == "reserve_inventory_ok"
    assert node.notifications() == []
    assert "still in progress" in node.stderr


SAGAS = 20


def lossy_input() -> list[Json]:
    flags: list[Json] = [
        {},
        {"fail_payment": True},
        {"fail_shipping": True},
        {"fail_inventory": True},
    ]
    return [SEED_INIT] + [reserve(f"saga{i}", 2 + i, **flags[i % 4]) for i in range(SAGAS)]


@pytest.mark.parametrize(
    "args",
    [
        ["--fault", "drop:p=0.3", "--seed", "1"],
        ["--fault", "drop:p=0.3", "--seed", "2", "--no-settle"],
        ["--fault", "duplicate:p=0.5,copies=2", "--fault", "reorder:window=0.05", "--seed", "3"],
        ["--fault", "drop:p=0.2", "--fault", "duplicate:p=0.3", "--seed", "4", "--no-settle"],
    ],
    ids=["drop", "drop-no-settle", "duplicate-reorder", "drop-duplicate-no-settle"],
)
def test_every_saga_ends_once_over_a_faulty_network(args: list[str]) -> None:
    # --drain 4: without settling all sagas share the drain; 4 s is ~20 redelivery attempts
    node = run_node(*lossy_input(), args=[*args, "--drain", "4"])
    want = {0: "saga_completed", 1: "saga_compensated", 2: "saga_compensated", 3: "saga_failed"}
    ended = {m["body"]["saga_id"]: m["body"]["type"] for m in node.notifications()}
    assert len(node.notifications()) == SAGAS  # each saga reported exactly once
    assert ended == {f"saga{i}": want[i % 4] for i in range(SAGAS)}
    for i in range(SAGAS):
        answer = node.reply_to(2 + i)["body"]
        assert answer["type"] == ("error" if i % 4 == 3 else "reserve_inventory_ok")
    assert [m["body"]["msg_id"] for m in node.out] == list(range(len(node.out)))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("nope", "unknown fault 'nope'"),
        ("drop:p=2", "p must be between 0 and 1"),
        ("drop:q=1", "unknown parameter 'q'"),
        ("delay:mean=abc", "mean"),
        ("crash:service=warehouse,at=1", "'warehouse'"),
        ("partition:service=nowhere", "'nowhere'"),
        ("delay:mean=inf", "mean must be between 0 and 86400 seconds, got inf"),
        ("delay:mean=1e308", "mean must be between 0 and 86400 seconds, got 1e+308"),
        ("duplicate:p=0.5,copies=1000000000", "copies must be between 1 and 100"),
        ("reorder:window=0", "window=0 can never act"),
    ],
)
def test_a_bad_fault_spec_is_one_line_and_exit_2(spec: str, fragment: str) -> None:
    done = subprocess.run(
        [sys.executable, "run.py", "--fault", spec],
        cwd=REPO,
        input=encode(SEED_INIT) + b"\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (2, b"")
    assert len(stderr.splitlines()) == 1, stderr
    assert fragment in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "args", [["--drain", "-1"], ["--drain", "nan"], ["--drain", "soon"], ["--seed", "x"]]
)
def test_bad_stdio_options_are_one_line_and_exit_2(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, b"")
    assert len(done.stderr.decode().splitlines()) == 1
    assert "Traceback" not in done.stderr.decode()


def test_help_exits_0_and_explains_the_modes() -> None:
    done = subprocess.run(
        [sys.executable, "run.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    for word in (
        "Maelstrom",
        "stdin",
        "scenarios",
        "scenario NAME",
        "explore",
        "replay",
        "--fault",
        "--seed",
        "--drain",
        "--no-settle",
    ):
        assert word in done.stdout, word


def test_a_reader_that_goes_away_does_not_crash_the_node() -> None:
    proc = subprocess.Popen(
        [sys.executable, "run.py"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdin.write(encode(SEED_INIT) + b"\n")
    proc.stdin.flush()
    assert proc.stdout.readline().decode().rstrip("\n") == SEED_FIRST_LINE
    proc.stdout.close()
    proc.stdin.write(b"".join(encode(reserve(f"s{i}", 2 + i)) + b"\n" for i in range(50)))
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in stderr
    assert "cannot write to stdout" in stderr


# -- issue 10: hardening -----------------------------------------------------------------------

#: (body change of a valid reserve_inventory, text fragment) -> one code-12 answer each, where
#: 1e308 and 10**308 were answered 13 (an overflow), a misspelled flag ran another saga than
#: asked, and a 5,000-digit integer was dropped unanswered as "not JSON".
HOSTILE_FIELDS: list[tuple[str, str]] = [
    ('"amount": 1e308', "'amount' must be a number from 0 to 1,000,000,000,000"),
    ('"amount": 1' + "0" * 308, "'amount' must be a number from 0 to 1,000,000,000,000"),
    ('"amount": 1000000000000.01', "'amount' must be a number from 0 to 1,000,000,000,000"),
    ('"fail_shiping": true', "unknown flag 'fail_shiping' (known: fail_inventory,"),
    ('"fail_": false', "unknown flag 'fail_'"),
    ('"quantity": 1' + "0" * 5000, "'quantity' must be a positive integer"),
    ('"amount": -1' + "0" * 5000, "'amount' must be a number from 0"),
]


def test_overflowing_amounts_unknown_flags_and_huge_integers_are_answered_12() -> None:
    lines: list[Line] = [SEED_INIT]
    for i, (field, _) in enumerate(HOSTILE_FIELDS):
        body = (
            f'{{"type": "reserve_inventory", "msg_id": {10 + i}, "saga_id": "h{i}",'
            f' "sku": "a", "quantity": 1, {field}}}'
        )
        lines.append(f'{{"src": "h", "dest": "inventory", "body": {body}}}')
    huge_msg_id = '{"src": "h", "dest": "event_bus", "body": {"type": "saga_status", "msg_id": 9'
    lines.append(huge_msg_id + "9" * 5000 + ', "saga_id": "h0"}}')
    lines.append(reserve("edge", 3, amount=10**12))  # the bound itself is an amount
    node = run_node(*lines, status("h0", 2))
    for i, (field, text) in enumerate(HOSTILE_FIELDS):
        answer = node.reply_to(10 + i)["body"]
        assert (answer["type"], answer["code"]) == ("error", 12), field[:40]
        assert text in answer["text"], (field[:40], answer["text"])
    no_reply_to = [m["body"] for m in node.out if "in_reply_to" not in m["body"]]
    assert [(b["code"], b["text"]) for b in no_reply_to if b["type"] == "error"] == [
        (12, "not a message: field 'msg_id' must be an integer")
    ]
    assert node.reply_to(3)["body"]["type"] == "reserve_inventory_ok"
    assert node.reply_to(2)["body"]["code"] == 20  # none of the hostile ones started a saga
    assert [m["body"]["saga_id"] for m in node.notifications()] == ["edge"]


def test_no_settle_with_a_fast_producer_answers_every_line_it_read() -> None:
    # 20,000 requests written as fast as the pipe takes them, and a drain far too short to
    # work off a backlog: the node must not read far ahead of what it has processed, so every
    # request is answered and every saga ends before the drain even begins.
    sagas = 20_000
    data = encode(SEED_INIT) + b"\n"
    data += b"".join(
        b'{"src": "c1", "dest": "inventory", "body": {"type": "reserve_inventory", "msg_id": %d,'
        b' "saga_id": "s%d", "sku": "sku%d", "quantity": 1, "amount": 1}}\n' % (i, i, i)
        for i in range(2, sagas + 2)
    )
    node = run_node(stdin=data, args=["--no-settle", "--drain", "0.05"], timeout=120)
    kinds: dict[str, int] = {}
    for m in node.out:
        kinds[m["body"]["type"]] = kinds.get(m["body"]["type"], 0) + 1
    assert kinds == {"init_ok": 1, "reserve_inventory_ok": sagas, "saga_completed": sagas}
    assert "still in progress" not in node.stderr
    assert f"{sagas + 1} line(s), {sagas} saga(s): 0 in progress" in node.stderr


def test_requests_a_fault_holds_past_the_drain_are_answered_11_and_counted() -> None:
    node = run_node(
        SEED_INIT,
        *(reserve(f"late{i}", 2 + i) for i in range(5)),
        args=["--no-settle", "--drain", "0.2", "--fault", "delay:mean=30,dist=constant"],
        timeout=10,
    )
    for i in range(5):
        answer = node.reply_to(2 + i)["body"]
        assert (answer["type"], answer["code"]) == ("error", 11)
        assert answer["text"].startswith("not carried to inventory before the node stopped")
    assert "5 saga(s) still in progress after the 0.2s drain" in node.stderr
    assert [m["body"]["msg_id"] for m in node.out] == list(range(6))


#: (state, extra args, requests fed after init, whether stdin is then closed): where a signal
#: can find the node. Idle: waiting on stdin. Busy: a stream of requests still being written
#: and worked through. Draining: input ended, sagas held 30 s by a delay, the drain 60 s.
SIGNAL_STATES: list[tuple[str, list[str], int, bool]] = [
    ("idle", [], 0, False),
    ("idle-faults", ["--fault", "drop:p=0.3", "--fault", "duplicate:p=0.3"], 0, False),
    ("busy", ["--fault", "delay:mean=0.001"], 3000, False),
    ("busy-no-settle", ["--no-settle", "--fault", "reorder:window=0.01"], 20000, False),
    ("draining", ["--drain", "60", "--fault", "delay:mean=30,dist=constant"], 20, True),
]


@pytest.mark.parametrize("signum", [2, 15], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    ("state", "args", "requests", "close"), SIGNAL_STATES, ids=[s[0] for s in SIGNAL_STATES]
)
def test_a_signal_in_any_state_exits_128_plus_it_with_one_line_and_whole_lines(
    state: str, args: list[str], requests: int, close: bool, signum: int
) -> None:
    import os
    import signal
    import threading
    import time

    proc = subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = bytearray()
    feed = encode(SEED_INIT) + b"\n"
    feed += b"".join(encode(reserve(f"s{i}", 2 + i, sku=f"k{i}")) + b"\n" for i in range(requests))

    def read_all(fd: int) -> None:  # every byte the node writes, however it is split
        while chunk := os.read(fd, 1 << 16):
            out.extend(chunk)

    def write_all() -> None:  # from a thread: a full pipe must not block the test
        assert proc.stdin is not None
        try:
            proc.stdin.write(feed)
            if close:
                proc.stdin.close()
        except OSError:  # the node stopped reading: it was told to stop
            pass

    threads = [
        threading.Thread(target=read_all, args=(proc.stdout.fileno(),), daemon=True),
        threading.Thread(target=write_all, daemon=True),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    busy = requests > 0 and not close
    while out.count(b"\n") < 1 + busy and time.monotonic() < deadline:
        time.sleep(0.01)  # until the node is up (and visibly working, when busy)
    assert out.startswith(SEED_FIRST_LINE.encode() + b"\n"), out[:200]
    if close:
        threads[1].join(timeout=30)
        time.sleep(0.2)  # input has ended; let it get on with the drain
    proc.send_signal(signum)
    try:
        returncode = proc.wait(timeout=30)
    finally:
        proc.kill()  # only if it is still running: the test must not leave it behind
        proc.wait()
        for thread in threads:
            thread.join(timeout=30)
        stderr = proc.stderr.read().decode()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
    assert returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    lines = [line for line in stderr.splitlines() if not line.startswith("trio-saga: line ")]
    assert len(lines) == 1, stderr  # besides the per-line notes a busy node may log
    assert lines[0].startswith(f"trio-saga: stopped by {name}; "), stderr
    assert "Traceback" not in stderr
    assert out.endswith(b"\n"), out[-200:]  # never cut mid-line
    for line in out.splitlines():
        assert isinstance(json.loads(line), dict)


def test_started_with_stdout_closed_exits_0_without_a_traceback() -> None:
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" run.py 1>&-'],
        cwd=REPO,
        input=encode(SEED_INIT) + b"\n" + encode(reserve("s", 2)) + b"\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines() == ["trio-saga: stdout is closed; nothing can be answered, stopping"]


@settings(max_examples=3, deadline=None)
@given(lines=st.lists(raw_lines, min_size=50, max_size=150))
def test_hostile_lines_through_the_real_process_get_only_well_formed_answers(
    lines: list[bytes],
) -> None:
    # the in-process property of test_stdio_node.py, once more through run.py's shell
    node = run_node(SEED_INIT, *lines, args=["--drain", "0.5"])
    for msg_id, line in enumerate(node.lines):
        check_line(line, msg_id)
    assert "internal error" not in node.stderr


def test_started_with_stdin_closed_is_empty_input_and_exit_0() -> None:
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" run.py 0<&-'],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (0, b""), stderr
    assert stderr.splitlines()[0] == "trio-saga: stdin is closed; treating it as empty input"
    assert "Traceback" not in stderr
