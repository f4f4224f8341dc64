"""The Maelstrom-style stdio mode (DESIGN §5): JSON lines in on stdin, JSON lines out on
stdout, logs on stderr. One process hosts the nodes event_bus, inventory, payment, shipping.

General layout: `node.py` is the protocol as a sans-I/O core (a synchronous node: one line in,
the lines to write out, tested in-process); `shell.py` is the short trio shell that reads
stdin, drives the runtime and writes; `shop.py` is the one place the saga's names come from.
This package re-exports what `trio_saga.stdio` exported as a single module.
"""

from __future__ import annotations

from .node import (
    ALIAS_HANDLES,
    CRASH,
    DEFAULT_DRAIN_S,
    EVENT_BUS,
    FLAGS,
    HANDLED,
    INPUT_CODES,
    KEY_DOES_NOT_EXIST,
    MALFORMED_REQUEST,
    MAX_INT_DIGITS,
    NODE_NOT_FOUND,
    NODES,
    NOT_SUPPORTED,
    OUTCOME_MESSAGES,
    PRECONDITION_FAILED,
    QUOTE,
    SERVICES,
    STDIO_BUS_CONFIG,
    TEMPORARILY_UNAVAILABLE,
    BadLine,
    HugeInt,
    Message,
    Reject,
    StdioNode,
    parse_line,
)
from .shell import serve

__all__ = [
    "ALIAS_HANDLES",
    "CRASH",
    "DEFAULT_DRAIN_S",
    "EVENT_BUS",
    "FLAGS",
    "HANDLED",
    "INPUT_CODES",
    "KEY_DOES_NOT_EXIST",
    "MALFORMED_REQUEST",
    "MAX_INT_DIGITS",
    "NODES",
    "NODE_NOT_FOUND",
    "NOT_SUPPORTED",
    "OUTCOME_MESSAGES",
    "PRECONDITION_FAILED",
    "QUOTE",
    "SERVICES",
    "STDIO_BUS_CONFIG",
    "TEMPORARILY_UNAVAILABLE",
    "BadLine",
    "HugeInt",
    "Message",
    "Reject",
    "StdioNode",
    "parse_line",
    "serve",
]
