"""The one exception hierarchy of trio-saga.

Every error a user can cause (a bad request line, a bad fault spec, an unknown scenario) is a
`SagaError` with a message fit to print on one line. Anything else escaping is a bug.
"""

from __future__ import annotations

import os
import re
import sys

#: Exit statuses of every command, defined once: success; a run that failed (a violated
#: invariant, an unexpected outcome); bad usage or a bad file (one line on stderr); stopped by
#: SIGINT (128 + 2, as shells report it).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def program() -> str:
    """The command's name in messages: `run.py`, or `trio-saga` as the console script."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "run.py" if name in ("", "run.py", "-c", "__main__.py") else "trio-saga"


class SagaError(Exception):
    """Base class: a user-facing error with a one-line message."""


class MalformedRequest(SagaError):
    """A stdio request with missing or ill-typed fields (Maelstrom code 12)."""


class FaultSpecError(SagaError):
    """A fault spec that does not parse or names an unknown fault or parameter."""


class ScenarioError(SagaError):
    """An unknown scenario or a scenario file that does not validate."""


class HandlerError(SagaError):
    """A service's handler raised during a run: a bug in the system under test, reported on
    one line with where it happened. `original` is the handler's own exception; `raised` is
    what it raised, on one line without the run around it (`KeyError: 'x' (while ...)`), for
    reports that name the run themselves (certify's table)."""

    def __init__(
        self,
        message: str,
        original: BaseException,
        raised: str = "",
        where: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        super().__init__(message)
        self.original = original
        self.raised = raised or message
        #: (service, what it handled, saga id), when the runner said so (`where_note`).
        self.service, self.handled, self.saga_id = where


def where_note(service: str, handled: str, saga_id: str) -> str:
    """The note a runner adds to a handler's exception, saying where it struck."""
    return f"while {service} handled {handled} of saga {saga_id}"


_WHERE = re.compile(r"^while (\S+) handled (\S+) of saga (\S+)$")


def handler_error(raised: BaseException) -> HandlerError:
    """The handler's own exception, out of the groups trio's nurseries wrap it in, as one
    line: its type, its text and where it struck (the notes the runner added). Here, beside
    `HandlerError`, so that a runner without trio (the certifier) words it the same way."""
    exc = raised
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, HandlerError):
        return exc
    notes = getattr(exc, "__notes__", ())
    where = "; ".join(notes)
    struck = next(((m[1], m[2], m[3]) for note in notes if (m := _WHERE.match(note))), ("", "", ""))
    text = f"{type(exc).__name__}: {exc}" + (f" ({where})" if where else "")
    return HandlerError(f"the run raised {text}", exc, raised=text, where=struck)


class ClusterError(SagaError):
    """explore --cluster: a scheduler that cannot be reached, a worker that runs other code or
    versions than the client, or a cluster that gave up on a task."""
