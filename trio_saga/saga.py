"""The saga definition: a saga's whole shape as one value (DESIGN §1, "A saga is a value").

This module owns the rules that follow from a saga's steps, in one place, the way h11's
`_state.py` owns its state machine: who subscribes to what, where a saga starts and with which
command, which event ends it with which outcome, the event sequences each outcome allows, what
must come before what, and the names a fault spec may use. Everything else (the bus, the saga
log, the oracle, fault validation, swarm, diagrams, reports, the command line) reads them from
a `SagaDefinition`; nothing else names a step.

It must never import trio, run anything or know a particular saga: the shop is one definition
among any number (`trio_saga.shop`), and a user's saga is another, written in their own module.

The shape, after Garcia-Molina and Salem (1987): a saga is T1..Tn, or T1..Tj then Cj..C1.
Step 1 is triggered by the client's command; step i+1 by step i's success event. When step k
fails (or its compensation is reported), step k-1 compensates; compensations therefore run in
reverse order, each triggered by the report of the one after it.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .errors import SagaError

#: The outcomes of a saga that has ended.
OUTCOMES = ("completed", "compensated", "failed")

#: The invariants every saga has, by stable name (DESIGN §4); a definition adds its own checks.
EVERY_SAGA_ENDS = "every saga ends"
OUTCOME_MATCHES_EVENTS = "outcome matches events"
NO_EFFECT_WITHOUT_CAUSE = "no effect without its cause"
GENERIC_INVARIANTS = (EVERY_SAGA_ENDS, OUTCOME_MATCHES_EVENTS, NO_EFFECT_WITHOUT_CAUSE)
#: Broken by a handler that raises, in the runs that count a raise as a finding (explore's):
#: the run stops there, so it is the one invariant such a run reports. Numbered after the
#: saga's own, since a run that ends at all has kept it.
HANDLERS_RETURN = "every handler returns"


class SagaDefinitionError(SagaError):
    """A saga definition that is not a valid saga, or a saga name that cannot be loaded."""


@attrs.frozen(kw_only=True)
class Violation:
    """One broken invariant: which one (by its stable name), for which saga (None for a
    total, such as stock), what is wrong, and the trace lines that show it."""

    invariant: str
    saga_id: str | None
    detail: str
    evidence: tuple[int, ...] = ()  # trace seq numbers


@attrs.frozen(kw_only=True)
class Check:
    """An invariant a definition adds to the generic ones (the shop's: stock, money).

    `run` is called once per finished run with an `oracle.FinishedRun` (the saga log, the
    services' final state, the outside world's effects) and returns the violations it found, or
    None when it could not run for this system (shown as not applicable, never as passed). It
    must be a module-level function, so that a definition pickles into worker processes.
    """

    name: str
    run: Callable[[Any], Iterable[Violation] | None]


def _checks(value: Iterable[Check]) -> tuple[Check, ...]:
    return tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _name_default(step: Step) -> str:
    return step.name


def _reason_default(step: Step) -> str:
    return f"{step.name}_failed"


@attrs.frozen(kw_only=True)
class Step:
    """One step of a saga.

    `name` is what forced failures call it (`fail_<name>`, `fail = ["<name>"]`); `service` the
    participant that performs it (the name by default). `success` and `failure` are the event
    types it publishes (no failure: the step cannot fail); `compensation` the event type that
    reports its undoing, for every step but the last. `observes` lists events the service also
    subscribes to without being triggered (the shop's inventory moves a reservation to shipped
    on ShipmentCreated). `reason` is what a forced failure of this step says.
    """

    name: str
    success: str
    failure: str | None = None
    compensation: str | None = None
    service: str = attrs.field(default=attrs.Factory(_name_default, takes_self=True))
    observes: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    reason: str = attrs.field(default=attrs.Factory(_reason_default, takes_self=True))


ServicesFactory = Callable[[Mapping[str, Any]], Sequence[Any]]
#: (saga_id, the order's fields, client) -> the command the first step's service receives.
CommandFactory = Callable[[str, Mapping[str, Any], str], Any]


def _steps(value: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class SagaDefinition:
    """A saga: its name, ordered steps, the factory of its services (given the scenario's
    initial state, a mapping from the `[state]` table), the client's command that starts it,
    the fields an order may carry, and its own checks.

    `order` builds the first service's command from an order's fields and validates them (it
    raises ValueError or a SagaError with a one-line reason); by default a `StartSaga` carrying
    the fields, checked against `order_fields` (name -> default value, whose type is the
    field's type). `participant` wraps each service in its durable inbox and outbox (tests
    plant broken variants there).
    """

    name: str
    steps: tuple[Step, ...] = attrs.field(converter=_steps)
    services: ServicesFactory
    command: str = "start_saga"
    order: CommandFactory | None = None
    order_fields: Mapping[str, Any] = attrs.field(factory=dict)
    checks: tuple[Check, ...] = attrs.field(default=(), converter=_checks)
    participant: Callable[[Any], Any] | None = None
    description: str = ""
    #: Order field -> values a swarm run may give it instead of the scenario's (issue 11: a
    #: refund of the wrong amount only shows when amounts differ). Empty: orders never vary.
    order_variants: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)
    #: Differences `run.py certify` accepts: patterns `service.Handler:perturbation`
    #: (fnmatch-style, e.g. "payment.*:swap").
    allowed_differences: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    #: How this definition is found again (`module:attribute`), recorded in replay files.
    ref: str | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise SagaDefinitionError(f"saga {self.name!r}: {problems[0]}")

    # -- the shape -------------------------------------------------------------------------

    @functools.cached_property
    def service_names(self) -> tuple[str, ...]:
        """The participants, in the order their first step comes."""
        return tuple(dict.fromkeys(step.service for step in self.steps))

    @property
    def entry(self) -> str:
        """The service the client's command goes to."""
        return self.steps[0].service

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    @property
    def fallible_steps(self) -> tuple[str, ...]:
        """The steps that can fail (have a failure event): the ones a fault may force to."""
        return tuple(step.name for step in self.steps if step.failure is not None)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @functools.cached_property
    def event_types(self) -> tuple[str, ...]:
        """Every event type of the saga: successes, then failures, then compensations."""
        found: list[str] = [s.success for s in self.steps]
        found += [s.failure for s in self.steps if s.failure is not None]
        found += [s.compensation for s in self.steps if s.compensation is not None]
        return tuple(found)

    @functools.cached_property
    def publisher(self) -> Mapping[str, str]:
        """Event type (or the command) -> who publishes it: a service, or "client"."""
        made = {self.command: "client"}
        for step in self.steps:
            for event in (step.success, step.failure, step.compensation):
                if event is not None:
                    made[event] = step.service
        return made

    @functools.cached_property
    def subscriptions(self) -> Mapping[str, tuple[str, ...]]:
        """Event type -> the services it is delivered to, in step order."""
        pairs: list[tuple[str, str]] = []
        for index, step in enumerate(self.steps):
            if index > 0:
                pairs.append((self.steps[index - 1].success, step.service))
            if step.compensation is not None:
                later = self.steps[index + 1]
                for trigger in (later.failure, later.compensation):
                    if trigger is not None:
                        pairs.append((trigger, step.service))
            pairs += [(event, step.service) for event in step.observes]
        made: dict[str, list[str]] = {}
        for event, service in pairs:
            subscribers = made.setdefault(event, [])
            if service not in subscribers:
                subscribers.append(service)
        return {event: tuple(services) for event, services in made.items()}

    def subscribes_to(self, service: str) -> frozenset[str]:
        return frozenset(e for e, services in self.subscriptions.items() if service in services)

    @functools.cached_property
    def terminal(self) -> Mapping[str, str]:
        """The event that ends a saga -> the outcome it ends it with."""
        first, last = self.steps[0], self.steps[-1]
        made = {last.success: "completed"}
        if first.compensation is not None:
            made[first.compensation] = "compensated"
        if first.failure is not None:
            made[first.failure] = "failed"
        return made

    @functools.cached_property
    def failures(self) -> frozenset[str]:
        return frozenset(s.failure for s in self.steps if s.failure is not None)

    @functools.cached_property
    def compensating(self) -> frozenset[str]:
        """The events that refuse or undo a step: failures and compensations."""
        undo = {s.compensation for s in self.steps if s.compensation is not None}
        return self.failures | undo

    @property
    def lanes(self) -> tuple[str, ...]:
        """Where a saga's messages come from, in order: the client, then the services."""
        return ("client", *self.service_names)

    @functools.cached_property
    def allowed(self) -> Mapping[str, tuple[tuple[str, ...], ...]]:
        """Outcome -> the event sequences it allows: T1..Tn; T1..Tk-1, Fk, Ck-1..C1; F1."""
        steps = self.steps
        compensated: list[tuple[str, ...]] = []
        for k in range(1, len(steps)):
            failure = steps[k].failure
            if failure is None:
                continue
            done = [s.success for s in steps[:k]]
            undone = [str(s.compensation) for s in reversed(steps[:k])]
            compensated.append((*done, failure, *undone))
        first = steps[0].failure
        return {
            "completed": (tuple(s.success for s in steps),),
            "compensated": tuple(compensated),
            "failed": ((first,),) if first is not None else (),
        }

    @functools.cached_property
    def causes(self) -> Mapping[str, str]:
        """Event -> the event that must come before it in the same saga: a step needs the
        previous step's success, a compensation the step it undoes."""
        made: dict[str, str] = {}
        for index, step in enumerate(self.steps):
            if index > 0:
                made[step.success] = self.steps[index - 1].success
            if step.compensation is not None:
                made[step.compensation] = step.success
        return made

    @functools.cached_property
    def undone_before(self) -> Mapping[str, str]:
        """Event -> an event after which it must never come: a step's success never follows
        the compensation of the step before it (no charge after the release)."""
        made: dict[str, str] = {}
        for index, step in enumerate(self.steps[1:], start=1):
            before = self.steps[index - 1].compensation
            if before is not None:
                made[step.success] = before
        return made

    @property
    def invariants(self) -> tuple[str, ...]:
        """Every invariant of this saga by name: the generic ones, then its own checks."""
        return (*GENERIC_INVARIANTS, *(check.name for check in self.checks))

    @property
    def reported_invariants(self) -> tuple[str, ...]:
        """Every invariant a run's verdict can name: the saga's, then `HANDLERS_RETURN`."""
        return (*self.invariants, HANDLERS_RETURN)

    # -- building --------------------------------------------------------------------------

    def make_services(self, state: Mapping[str, Any] | None = None) -> list[Any]:
        """The saga's services, given the scenario's initial state; checked against the
        definition (names, handlers that are plain functions)."""
        made = list(self.services(dict(state or {})))
        _check_services(self, made)
        return made

    def make_command(self, saga_id: str, fields: Mapping[str, Any], client: str = "client") -> Any:
        """The client's command for one order, validated (ValueError or SagaError)."""
        if not isinstance(saga_id, str) or not saga_id:
            raise ValueError("saga_id must be a non-empty string")
        if self.order is not None:
            return self.order(saga_id, fields, client)
        from .events import StartSaga

        return StartSaga(
            type=self.command,
            saga_id=saga_id,
            client=client,
            fields=_checked_fields(self.order_fields, fields),
        )

    def check_order(self, fields: Mapping[str, Any]) -> None:
        """Validate an order's fields now (a scenario file, at load)."""
        self.make_command("check", fields)


def _checked_fields(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none"
        raise ValueError(f"unknown order field {unknown[0]!r} (this saga takes {known})")
    made = dict(defaults)
    for key, value in given.items():
        default = defaults[key]
        if default is not None and not _same_kind(default, value):
            raise ValueError(f"order field {key!r} must be {_kind_name(default)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"order field {key!r} must be a finite number, got {value!r}")
        made[key] = value
    return made


def _same_kind(default: object, value: object) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _kind_name(default: object) -> str:
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return f"a {type(default).__name__}"


def _problems(saga: SagaDefinition) -> list[str]:
    """What makes a definition not a saga, each as one line."""
    steps = saga.steps
    if not saga.name:
        return ["a saga needs a name"]
    if not steps:
        return ["a saga needs at least one step"]
    problems: list[str] = []
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        problems.append(f"step names must be unique, got {', '.join(names)}")
    events: list[str] = []
    for index, step in enumerate(steps):
        later_can_fail = any(s.failure is not None for s in steps[index + 1 :])
        if not step.name or not step.service or not step.success:
            problems.append(f"step {index + 1} needs a name, a service and a success event")
        if step.compensation is None and later_can_fail:
            problems.append(f"step {step.name!r} needs a compensation event: a later step can fail")
        if step.compensation is not None and not later_can_fail:
            problems.append(
                f"step {step.name!r} has a compensation, but no later step can fail to trigger it"
            )
        events += [e for e in (step.success, step.failure, step.compensation) if e is not None]
    if len(set(events)) != len(events):
        twice = sorted({e for e in events if events.count(e) > 1})
        problems.append(f"every event type belongs to one step, but {twice[0]} is used twice")
    for step in steps:
        for observed in step.observes:
            if observed not in events:
                problems.append(f"step {step.name!r} observes {observed!r}, not an event of it")
    if saga.command in events:
        problems.append(f"the command {saga.command!r} must not be an event type too")
    for check in saga.checks:
        if check.name in GENERIC_INVARIANTS:
            problems.append(f"check {check.name!r} has the name of a generic invariant")
    return problems


def _check_services(saga: SagaDefinition, services: Sequence[Any]) -> None:
    import inspect

    given = [getattr(s, "name", None) for s in services]
    if sorted(map(str, given)) != sorted(saga.service_names):
        raise SagaDefinitionError(
            f"saga {saga.name!r}: its services factory made {', '.join(map(str, given))}"
            f" but the steps need {', '.join(saga.service_names)}"
        )
    for service in services:
        for method in ("handle", "start"):
            handler = getattr(service, method, None)
            if handler is not None and inspect.iscoroutinefunction(handler):
                raise SagaDefinitionError(
                    f"{service.name}.{method} is an async def: handlers must be plain"
                    " synchronous functions (event in, state change and events out); the"
                    " simulation owns time and awaits nothing inside a step"
                )
        if not callable(getattr(service, "handle", None)):
            raise SagaDefinitionError(f"service {service.name!r} has no handle(event, ctx)")


# -- finding a saga by name ----------------------------------------------------------------


def load_saga(name: str, *, near: Path | None = None) -> SagaDefinition:
    """The definition `module:attribute` (or `shop`, the built-in one), imported from
    sys.path or, failing that, beside `near` (a scenario file's folder, then its parent)."""
    if name in BUILT_IN:
        name = BUILT_IN[name]
    module_name, colon, attribute = name.rpartition(":")
    if not colon or not module_name or not attribute:
        raise SagaDefinitionError(
            f"a saga is named module:attribute, PATH.py:attribute or shop, got {name!r}"
        )
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name) if near is None else near / module_name)
    else:
        module = _import(module_name, near)
    found: Any = module
    try:
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise SagaDefinitionError(
            f"saga {name}: module {module_name} has no attribute {attribute!r}"
        ) from None
    if not isinstance(found, SagaDefinition):
        raise SagaDefinitionError(f"saga {name} is a {type(found).__name__}, not a SagaDefinition")
    return found if found.ref == name else attrs.evolve(found, ref=name)


#: Sagas that ship with trio-saga, by short name.
BUILT_IN = {"shop": "trio_saga.shop:SHOP"}


def _import(module_name: str, near: Path | None) -> Any:
    try:
        return _import_now(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise SagaDefinitionError(f"saga module {module_name}: {exc}") from None
    top = module_name.split(".")[0]
    for folder in [] if near is None else [near, near.parent]:
        if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            try:
                return _import_now(module_name)
            except ModuleNotFoundError as exc:
                raise SagaDefinitionError(f"saga module {module_name}: {exc}") from None
    where = " or beside the scenario file" if near is not None else ""
    raise SagaDefinitionError(f"cannot find saga module {module_name!r} on PYTHONPATH{where}")


def _import_file(path: Path) -> Any:
    """A saga module named by its file: imported under its own name, its folder put first on
    sys.path (so that its neighbours import, and worker processes find it again)."""
    if not path.is_file():
        raise SagaDefinitionError(f"no saga module file {path}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = _import_now(path.stem)
    except ModuleNotFoundError as exc:
        raise SagaDefinitionError(f"saga module {path}: {exc}") from None
    if Path(getattr(module, "__file__", "") or "").resolve() != path.resolve():
        raise SagaDefinitionError(
            f"{path}: a different module named {path.stem!r} is already imported"
            f" ({getattr(module, '__file__', '?')})"
        )
    return module


def _import_now(module_name: str) -> Any:
    """Import the module the user named; its own errors become one line, not a traceback."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise
    except Exception as exc:
        raise SagaDefinitionError(
            f"importing saga module {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None


def saga_ref(saga: SagaDefinition) -> str | None:
    """How `saga` can be found again: its `ref`, or the attribute of its services factory's
    module that holds it."""
    if saga.ref is not None:
        return saga.ref
    module = sys.modules.get(getattr(saga.services, "__module__", ""))
    for attribute, value in vars(module or object()).items():
        if value is saga:
            return f"{module.__name__}:{attribute}" if module else None
    return None


def saga_argument(saga: SagaDefinition) -> str | None:
    """What to pass on a command line (`--saga-def`) to find `saga` again from the current
    folder: its module's file when the module is not importable by name from here."""
    ref = saga_ref(saga)
    if ref is None or ref in BUILT_IN.values():
        return ref
    module_name, _, attribute = ref.rpartition(":")
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None)
    if source is None or "." in module_name:
        return ref
    path = Path(source).resolve()
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    return f"{shown}:{attribute}"
