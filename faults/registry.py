"""Every fault plugin by name, and `parse_fault`, the one entry point for the spec syntax.

Kept out of `faults/__init__.py` so that `trio_saga` modules can import it without importing
the `faults` package's __init__ (which imports from `trio_saga`).
"""

from __future__ import annotations

from trio_saga.errors import FaultSpecError

from .base import Effect, Fault, build, parse_params
from .crash import Crash
from .delay import Delay
from .drop import Drop
from .duplicate import Duplicate
from .forced import PREFIX, ForcedFailure
from .partition import Partition
from .reorder import Reorder

#: The plugins by spec name; forced failures are `fail_STEP` for any step of the saga.
FAULTS: dict[str, type[Fault]] = {
    cls.name: cls for cls in (Drop, Delay, Duplicate, Reorder, Partition, Crash)
}


#: The effect on a transmission of every network decision kind (a replay names kinds only).
EFFECTS: dict[str, Effect] = {
    kind: effect for cls in FAULTS.values() for kind, effect in cls.effects.items()
}


def parse_fault(spec: str) -> Fault:
    """Build a fault from `name:key=value,...`; raises FaultSpecError with a one-line reason.

    Names of services, events and steps are checked when the fault is bound to the saga it
    runs on (`FaultInjector(saga=...)`, which a simulation, scenario and the stdio node do).
    """
    name, params = parse_params(spec)
    if name.startswith(PREFIX) and name != PREFIX:
        if "step" in params:
            raise FaultSpecError(f"fault spec {spec!r}: the step is in the name ({name})")
        fault = build(ForcedFailure, spec, {**params, "step": name.removeprefix(PREFIX)})
        assert isinstance(fault, ForcedFailure)
        if fault.saga is None and fault.rate == 0:
            raise FaultSpecError(
                f"fault spec {spec!r} can never act: give saga=ID[+ID...] or rate=P"
            )
        return fault
    cls = FAULTS.get(name)
    if cls is None:
        known = ", ".join([*sorted(FAULTS), f"{PREFIX}STEP"])
        raise FaultSpecError(f"unknown fault {name!r} in {spec!r} (known: {known})")
    return build(cls, spec, params)
