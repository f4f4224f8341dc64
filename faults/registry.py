"""Every fault plugin by name, and `parse_fault`, the one entry point for the spec syntax.

Kept out of `faults/__init__.py` so that `trio_saga` modules can import it without importing
the `faults` package's __init__ (which imports from `trio_saga`).
"""

from __future__ import annotations

from trio_saga.errors import FaultSpecError

from .base import Fault, build, parse_params
from .crash import Crash
from .delay import Delay
from .drop import Drop
from .duplicate import Duplicate
from .forced import FailInventory, FailPayment, FailShipping
from .partition import Partition
from .reorder import Reorder

FAULTS: dict[str, type[Fault]] = {
    cls.name: cls
    for cls in (
        Drop,
        Delay,
        Duplicate,
        Reorder,
        Partition,
        Crash,
        FailInventory,
        FailPayment,
        FailShipping,
    )
}


def parse_fault(spec: str) -> Fault:
    """Build a fault from `name:key=value,...`; raises FaultSpecError with a one-line reason."""
    name, params = parse_params(spec)
    cls = FAULTS.get(name)
    if cls is None:
        raise FaultSpecError(
            f"unknown fault {name!r} in {spec!r} (known: {', '.join(sorted(FAULTS))})"
        )
    return build(cls, spec, params)
