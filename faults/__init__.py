"""Fault plugins for trio-saga, one per file, all behind the `Fault` interface in `base.py`.

`parse_fault("drop:p=0.1")` builds one from the spec syntax shared by scenario files and the
command line; `FAULTS` maps every name to its plugin class.
"""

from __future__ import annotations

from trio_saga.errors import FaultSpecError

from .base import (
    Commit,
    Decision,
    Fault,
    FaultInjector,
    RateFault,
    Transmission,
    build,
)
from .crash import Crash
from .delay import Delay
from .drop import Drop
from .duplicate import Duplicate
from .forced import ForcedFailure
from .partition import Partition
from .registry import FAULTS, parse_fault
from .reorder import Reorder

__all__ = [
    "FAULTS",
    "Commit",
    "Crash",
    "Decision",
    "Delay",
    "Drop",
    "Duplicate",
    "Fault",
    "FaultInjector",
    "FaultSpecError",
    "ForcedFailure",
    "Partition",
    "RateFault",
    "Reorder",
    "Transmission",
    "build",
    "parse_fault",
]
