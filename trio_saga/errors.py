"""The one exception hierarchy of trio-saga.

Every error a user can cause (a bad request line, a bad fault spec, an unknown scenario) is a
`SagaError` with a message fit to print on one line. Anything else escaping is a bug.
"""

from __future__ import annotations


class SagaError(Exception):
    """Base class: a user-facing error with a one-line message."""


class MalformedRequest(SagaError):
    """A stdio request with missing or ill-typed fields (Maelstrom code 12)."""


class FaultSpecError(SagaError):
    """A fault spec that does not parse or names an unknown fault or parameter."""


class ScenarioError(SagaError):
    """An unknown scenario or a scenario file that does not validate."""


class ClusterError(SagaError):
    """explore --cluster: a scheduler that cannot be reached, a worker that runs other code or
    versions than the client, or a cluster that gave up on a task."""
