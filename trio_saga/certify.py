"""The handler certifier (`run.py certify`): each service of a saga, driven systematically (not
randomly) through the perturbations at-least-once delivery and crashes cause, compared with a
clean run.

The clean run is a spread of sagas, one after the other (`clean_orders`): several that complete,
over the saga's order variants, then for each variant one saga per step that can fail, forced
to fail there, so that every handler, every compensation among them, meets several sagas and
several kinds of order. For every service it takes the messages the service handled and
replays them to a fresh copy of the service behind its participant (inbox + outbox), once as
they came and once per perturbation: each message delivered twice; each pair of messages that
can reach the service in either order swapped; a crash before and after each commit, and after
each effect (a crash wipes volatile state and calls the `restart()` hook; the delivery then
comes again). It then compares what the service ended with (`certify_diff`). A handler that
raises, in the clean run or under a perturbation, is a finding too, worded as the simulation
words it (`errors.handler_error`); the run goes on past it.

This module owns the clean scenario, the perturbations and the table. It is pure: it never
imports trio, and it drives handlers synchronously exactly as `step.serve_batch` does.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .certify_diff import Ending, diff
from .errors import HandlerError, SagaError, handler_error, program, where_note
from .events import Event
from .participant import CrashNow, Participant, StepContext, World
from .saga import SagaDefinition, load_saga

EXIT_OK, EXIT_CHANGED = 0, 1

DUPLICATE = "duplicate"
SWAP = "swap"
CRASH_BEFORE = "crash before commit"
CRASH_AFTER = "crash after commit"
CRASH_EFFECT = "crash after effect"
PERTURBATIONS = (DUPLICATE, SWAP, CRASH_BEFORE, CRASH_AFTER, CRASH_EFFECT)
FAILS = "forced failure"
#: Not a perturbation: the handler as the clean run called it ("ok", or RAISES).
CLEAN = "clean run"
COLUMNS = (CLEAN, FAILS, *PERTURBATIONS)

#: The fewest rounds of the clean scenario (a round: one order, completing, then failing at
#: each step in turn). A handler that goes wrong only from its second or third saga on (a
#: counter, a cache, a saga id it did not expect) must meet more than one.
MIN_ROUNDS = 3


# -- the clean scenario, run synchronously ---------------------------------------------------


@attrs.frozen(kw_only=True)
class Order:
    """One saga of the certifier's clean scenario; `fail` is the step forced to fail, `fields`
    the order's fields (the saga's defaults for those left out)."""

    saga_id: str
    fail: str | None = None
    fields: Mapping[str, Any] = attrs.field(factory=dict)

    def describe(self) -> str:
        outcome = f"{self.fail} forced to fail" if self.fail else "completes"
        shown = "".join(f", {k}={v!r}" for k, v in self.fields.items())
        return f"{self.saga_id}: {outcome}{shown}"


def order_spread(saga: SagaDefinition) -> list[dict[str, Any]]:
    """One order's fields per round: round k takes the k-th value of each of the saga's
    `order_variants` (cycling through the shorter lists; None leaves the field out, as swarm
    does), so every value of every variant is ordered at least once. A saga without variants
    orders its defaults, `MIN_ROUNDS` times."""
    variants = sorted((name, values) for name, values in saga.order_variants.items() if values)
    rounds = max([MIN_ROUNDS, *(len(values) for _, values in variants)])
    spread: list[dict[str, Any]] = []
    for k in range(rounds):
        fields: dict[str, Any] = {}
        for name, values in variants:
            value = values[k % len(values)]
            if value is not None:
                fields[name] = value
        spread.append(fields)
    return spread


def clean_orders(saga: SagaDefinition) -> list[Order]:
    """The clean scenario: one saga per round that completes, then, round by round, one per
    step that can fail, forced to fail there. The completing sagas come first, as in any
    scenario's `orders(n)`: the first saga ids a handler meets are the ones most runs have."""
    made: list[Order] = []

    def add(fields: Mapping[str, Any], fail: str | None = None) -> None:
        made.append(Order(saga_id=f"saga-{len(made) + 1}", fail=fail, fields=dict(fields)))

    spread = order_spread(saga)
    for fields in spread:
        add(fields)
    for fields in spread:
        for step in saga.fallible_steps:
            add(fields, step)
    return made


def _context(saga: SagaDefinition, orders: Sequence[Order], world: World) -> StepContext:
    reasons = {(o.fail, o.saga_id): saga.step(o.fail).reason for o in orders if o.fail}

    def forced(step: str, saga_id: str) -> str | None:
        return reasons.get((step, saga_id))

    return StepContext(timestamp=0, forced_failure=forced, effects=world)


def _wrap(saga: SagaDefinition, service: Any) -> Participant:
    wrap = saga.participant or Participant
    made: Participant = wrap(service)
    return made


@attrs.frozen(kw_only=True)
class Raised:
    """A delivery whose handler raised, and what it raised, on one line."""

    service: str
    payload: Any
    text: str


@attrs.define
class CleanRun:
    """What each service handled, in order, in a clean run (one saga after the other)."""

    inputs: dict[str, list[Any]]
    participants: dict[str, Participant]
    world: World
    published: list[Event]
    raised: list[Raised]


def clean_run(saga: SagaDefinition, state: Mapping[str, Any], orders: Sequence[Order]) -> CleanRun:
    """Run `orders` one after the other, each to quiet, delivering every event once to each
    subscriber in publish order. A handler that raises publishes nothing, so its saga goes no
    further that way; the run goes on (the simulation would stop: certify reports it)."""
    world = World()
    ctx = _context(saga, orders, world)
    participants = {s.name: _wrap(saga, s) for s in saga.make_services(state)}
    inputs: dict[str, list[Any]] = {name: [] for name in participants}
    published: list[Event] = []
    raised: list[Raised] = []
    for order in orders:
        command = saga.make_command(order.saga_id, order.fields)
        queue: deque[tuple[str, Any]] = deque([(saga.entry, command)])
        while queue:
            dest, payload = queue.popleft()
            inputs[dest].append(payload)
            participant = participants[dest]
            try:
                _step(participant, payload, ctx)
            except HandlerError as exc:
                raised.append(Raised(service=dest, payload=payload, text=exc.raised))
                continue
            while participant.outbox:
                event = participant.outbox.popleft()
                published.append(event)
                queue.extend((to, event) for to in saga.subscriptions.get(event.type, ()))
    return CleanRun(
        inputs=inputs, participants=participants, world=world, published=published, raised=raised
    )


def _step(participant: Participant, payload: Any, ctx: StepContext) -> Sequence[Event] | None:
    """One delivery committed, as `step.serve_batch` commits it; a handler's exception comes
    out as a `HandlerError` that says where it struck, in the simulation's words."""
    ctx.effects.step(participant.name, payload.saga_id)  # a participant of a test may not
    try:
        if isinstance(payload, Event):
            return participant.receive(payload, ctx)
        return participant.execute(payload, ctx)[1]
    except CrashNow:
        raise
    except Exception as exc:
        exc.add_note(where_note(participant.name, payload.type, payload.saga_id))
        raise handler_error(exc) from exc


# -- one service under a perturbation --------------------------------------------------------


@attrs.define
class Driven:
    """One service driven through a script: what it ended with."""

    participant: Participant
    world: World
    emitted: list[Event] = attrs.Factory(list)
    applicable: bool = True
    #: How many effects each step of the script had.
    effect_counts: list[int] = attrs.Factory(list)
    #: What the handlers raised, one line each (the script went on past each).
    raised: list[str] = attrs.Factory(list)


def drive(
    saga: SagaDefinition,
    state: Mapping[str, Any],
    orders: Sequence[Order],
    service: str,
    script: Sequence[tuple[Any, str | None, int]],
) -> Driven:
    """Deliver `script` to a fresh `service`: (message, crash, n), where crash is None, or
    CRASH_BEFORE / CRASH_AFTER / CRASH_EFFECT (after the n-th effect of that step)."""
    fresh = {s.name: s for s in saga.make_services(state)}[service]
    world = World()
    ctx = _context(saga, orders, world)
    run = Driven(participant=_wrap(saga, fresh), world=world)
    for payload, crash, n in script:
        before = len(world.effects)
        try:
            _deliver(run, payload, ctx, crash, n)
        except HandlerError as exc:  # the delivery is lost with its step; the script goes on
            run.raised.append(exc.raised)
            world.crash_after = None
        run.effect_counts.append(len(world.effects) - before)
    return run


def _publish(run: Driven) -> None:
    while run.participant.outbox:
        run.emitted.append(run.participant.outbox.popleft())


def _deliver(run: Driven, payload: Any, ctx: StepContext, crash: str | None, n: int) -> None:
    participant = run.participant
    if crash is None:
        _step(participant, payload, ctx)
        _publish(run)
        return
    if crash == CRASH_AFTER:
        outcome = _step(participant, payload, ctx)
        run.applicable = run.applicable and outcome is not None
        participant.crashed()  # committed, not yet published: the outbox survives
        participant.restarted()
        _publish(run)  # published on restart
        _step(participant, payload, ctx)  # and the unacknowledged delivery comes again
        _publish(run)
        return
    snapshot = participant.snapshot()
    if crash == CRASH_EFFECT:
        run.world.crash_after = n
        try:
            _step(participant, payload, ctx)
            run.applicable = False  # fewer than n effects: nothing to crash after
        except CrashNow:
            participant.undo(snapshot, payload, None)
        run.world.crash_after = None
    else:  # CRASH_BEFORE: the whole step ran, then the commit was lost
        outcome = _step(participant, payload, ctx)
        run.applicable = run.applicable and outcome is not None
        participant.undo(snapshot, payload, outcome)
    participant.restarted()
    _step(participant, payload, ctx)
    _publish(run)


# -- the perturbations -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Finding:
    """One perturbation of one handler (or the handler in the clean run), how the service's
    ending differed (empty: unchanged) and what its handlers raised that the clean run did
    not (a raise is never allowed: the simulation stops on it)."""

    service: str
    handler: str  # the message type the handler took
    perturbation: str
    instance: str  # which message, e.g. "InventoryReserved of saga-1"
    changes: tuple[str, ...]
    allowed: bool = False
    raised: tuple[str, ...] = ()

    @property
    def row(self) -> str:
        return f"{self.service}.{self.handler}"

    @property
    def failed(self) -> bool:
        return bool(self.raised) or (bool(self.changes) and not self.allowed)


def _what(payload: Any) -> str:
    return f"{payload.type} of {payload.saga_id}"


def ancestors(saga: SagaDefinition) -> dict[str, frozenset[str]]:
    """Message type -> the types that must come before it in the same saga (its causes)."""
    triggers: dict[str, set[str]] = {}
    steps = saga.steps
    for index, step in enumerate(steps):
        before = saga.command if index == 0 else steps[index - 1].success
        for event in (step.success, step.failure):
            if event is not None:
                triggers.setdefault(event, set()).add(before)
        if step.compensation is not None:
            later = steps[index + 1]
            for trigger in (later.failure, later.compensation):
                if trigger is not None:
                    triggers.setdefault(step.compensation, set()).add(trigger)

    def up(kind: str, seen: set[str]) -> set[str]:
        for parent in triggers.get(kind, ()):
            if parent not in seen:
                seen.add(parent)
                up(parent, seen)
        return seen

    return {kind: frozenset(up(kind, set())) for kind in (saga.command, *saga.event_types)}


def swappable(
    saga_causes: Mapping[str, frozenset[str]], order: Sequence[Any], i: int, j: int
) -> bool:
    """Whether messages `i` < `j` of `order` (an order they can come in) can also come
    swapped: nothing of a saga may come before one of its causes. Only pairs with a moved
    message can break that, so this is linear, not quadratic, in the messages between."""
    early, late = order[i], order[j]
    between = order[i + 1 : j]
    for other in (*between, early):  # `late` moves ahead of these
        if other.saga_id == late.saga_id and other.type in saga_causes.get(late.type, ()):
            return False
    for other in between:  # and `early` behind these
        if other.saga_id == early.saga_id and early.type in saga_causes.get(other.type, ()):
            return False
    return True


@attrs.frozen(kw_only=True)
class Certificate:
    saga: SagaDefinition
    findings: tuple[Finding, ...]
    rows: tuple[str, ...]
    orders: tuple[Order, ...] = ()
    #: How many messages the services handled in the clean run.
    deliveries: int = 0

    @property
    def changed(self) -> list[Finding]:
        """What fails the certificate: a difference the saga does not allow, or a raise."""
        return [f for f in self.findings if f.failed]

    @property
    def perturbations(self) -> list[Finding]:
        return [f for f in self.findings if f.perturbation != CLEAN]

    @property
    def ok(self) -> bool:
        return not self.changed


def certify(saga: SagaDefinition, state: Mapping[str, Any] | None = None) -> Certificate:
    """Every service of `saga` under every perturbation (see the module comment)."""
    state = dict(state or {})
    orders = clean_orders(saga)
    clean = clean_run(saga, state, orders)
    findings = _clean_findings(saga, clean)
    rows = list(dict.fromkeys(f.row for f in findings))
    for service in saga.service_names:
        findings += _perturb(saga, state, orders, service, clean.inputs[service])
    findings += _forced_failures(saga, state, orders, {r.text for r in clean.raised})
    return Certificate(
        saga=saga,
        findings=tuple(findings),
        rows=tuple(rows),
        orders=tuple(orders),
        deliveries=sum(len(inputs) for inputs in clean.inputs.values()),
    )


def _clean_findings(saga: SagaDefinition, clean: CleanRun) -> list[Finding]:
    """One finding per handler of the clean run: what it raised, if anything."""
    found: list[Finding] = []
    for service in saga.service_names:
        handled: dict[str, int] = {}
        for payload in clean.inputs[service]:
            handled[payload.type] = handled.get(payload.type, 0) + 1
        for handler, count in handled.items():
            raised = [r for r in clean.raised if (r.service, r.payload.type) == (service, handler)]
            found.append(
                Finding(
                    service=service,
                    handler=handler,
                    perturbation=CLEAN,
                    instance=_what(raised[0].payload) if raised else f"{count} deliveries",
                    changes=(),
                    raised=tuple(dict.fromkeys(r.text for r in raised)),
                )
            )
    return found


def _perturb(
    saga: SagaDefinition,
    state: Mapping[str, Any],
    orders: Sequence[Order],
    service: str,
    inputs: Sequence[Any],
) -> list[Finding]:
    """One service's messages under each perturbation, each compared with the plain run."""
    causes = ancestors(saga)
    plainly: list[tuple[Any, str | None, int]] = [(p, None, 0) for p in inputs]
    base = drive(saga, state, orders, service, plainly)
    ending = Ending.of(base.participant, base.emitted, base.world)
    known = set(base.raised)  # the clean run's raises, already its own findings
    found: list[Finding] = []

    def note(index: int, perturbation: str, run: Driven, instance: str, swap: bool) -> None:
        handler = inputs[index].type
        changes = diff(ending, Ending.of(run.participant, run.emitted, run.world), unordered=swap)
        found.append(
            Finding(
                service=service,
                handler=handler,
                perturbation=perturbation,
                instance=instance,
                changes=tuple(changes),
                allowed=_allowed(saga, service, handler, perturbation),
                raised=tuple(t for t in dict.fromkeys(run.raised) if t not in known),
            )
        )

    def run(script: list[tuple[Any, str | None, int]]) -> Driven:
        return drive(saga, state, orders, service, script)

    for i, payload in enumerate(inputs):
        what = _what(payload)
        note(
            i,
            DUPLICATE,
            run([*plainly[: i + 1], (payload, None, 0), *plainly[i + 1 :]]),
            what,
            False,
        )
        for crash in (CRASH_BEFORE, CRASH_AFTER):
            driven = run([*plainly[:i], (payload, crash, 0), *plainly[i + 1 :]])
            if driven.applicable:
                note(i, crash, driven, what, False)
        for n in range(1, 1 + base.effect_counts[i]):
            driven = run([*plainly[:i], (payload, CRASH_EFFECT, n), *plainly[i + 1 :]])
            if driven.applicable:
                note(i, CRASH_EFFECT, driven, f"{what}, effect {n}", False)
        for j in range(i + 1, len(inputs)):
            if swappable(causes, inputs, i, j):
                swapped = list(plainly)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                note(i, SWAP, run(swapped), f"{what} <-> {_what(inputs[j])}", True)
    return found


def _forced_failures(
    saga: SagaDefinition, state: Mapping[str, Any], orders: Sequence[Order], known: set[str]
) -> list[Finding]:
    """Each saga of the clean scenario alone, judged by the saga's oracle: a step forced to
    fail must leave every invariant holding (what a compensation is for). A saga whose
    handler raised has no verdict; what it raised is a finding unless the clean run (`known`)
    already raised it."""
    from .oracle import FinishedRun, judge
    from .saga_log import SagaLog

    found: list[Finding] = []
    for order in orders:
        alone = clean_run(saga, state, [order])
        new = [r for r in alone.raised if r.text not in known]
        if new:
            found.append(
                Finding(
                    service=new[0].service,
                    handler=new[0].payload.type,
                    perturbation=FAILS,
                    instance=order.describe(),
                    changes=(),
                    raised=tuple(dict.fromkeys(r.text for r in new)),
                )
            )
        if alone.raised:
            continue
        log = SagaLog(saga)
        log.started(order.saga_id, "client", 0)
        for seq, event in enumerate(alone.published, start=1):
            log.observe(event, seq)
        verdict = judge(
            FinishedRun(
                saga=saga,
                saga_log=log,
                participants=alone.participants,
                ordered=[order.saga_id],
                world=alone.world,
            )
        )
        step = saga.step(order.fail) if order.fail else saga.steps[0]
        index = saga.steps.index(step)
        trigger = saga.command if index == 0 else saga.steps[index - 1].success
        found.append(
            Finding(
                service=step.service,
                handler=trigger,
                perturbation=FAILS,
                instance=order.describe(),
                changes=tuple(
                    f"invariant {v.invariant!r} violated: {v.detail}" for v in verdict.violations
                ),
                allowed=_allowed(saga, step.service, trigger, FAILS),
            )
        )
    return found


def _allowed(saga: SagaDefinition, service: str, handler: str, perturbation: str) -> bool:
    """Whether the saga declares this difference allowed (`SagaDefinition.allowed_differences`:
    patterns `service.Handler:perturbation`, fnmatch-style)."""
    import fnmatch

    name = f"{service}.{handler}:{perturbation}"
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in saga.allowed_differences)


# -- the table ---------------------------------------------------------------------------------

#: A cell's verdict: the worst of its findings, in this order.
RAISES, CHANGED, ALLOWED, UNCHANGED, OK, NOT_APPLICABLE = (
    "RAISES",
    "CHANGED",
    "allowed",
    "unchanged",
    "ok",
    "-",
)


def _verdict(found: Sequence[Finding]) -> str:
    if not found:
        return NOT_APPLICABLE
    if any(f.raised for f in found):
        return RAISES
    if any(f.failed for f in found):
        return CHANGED
    if any(f.changes for f in found):
        return ALLOWED
    return OK if found[0].perturbation == CLEAN else UNCHANGED


def format_certificate(cert: Certificate, *, details: int = 3) -> str:
    """The table handler x perturbation, then the result, and for each failing cell its first
    finding with up to `details` lines of what raised or changed."""
    cells: dict[tuple[str, str], list[Finding]] = {}
    rows = list(cert.rows)
    for f in cert.findings:
        cells.setdefault((f.row, f.perturbation), []).append(f)
        if f.row not in rows:
            rows.append(f.row)
    width = max([len(r) for r in rows] + [len("handler")])
    cols = [max(len(c), len(UNCHANGED)) for c in COLUMNS]
    head = f"{'handler':<{width}}  " + "  ".join(
        f"{c:<{w}}" for c, w in zip(COLUMNS, cols, strict=True)
    )
    lines = [f"certify {cert.saga.name}: every handler x perturbation", "", head, "-" * len(head)]
    for row in rows:
        shown = [_verdict(cells.get((row, c), [])) for c in COLUMNS]
        cells_text = "  ".join(f"{s:<{w}}" for s, w in zip(shown, cols, strict=True))
        lines.append(f"{row:<{width}}  {cells_text}".rstrip())
    lines.append(
        "(-: does not apply; ok: the handler did not raise; unchanged: same state, events and"
        " effects as the clean run)"
    )
    perturbations = cert.perturbations
    if cert.ok:
        lines += [
            "",
            f"result     PASS: {len(perturbations)} perturbations of {cert.deliveries} deliveries"
            f" ({len(cert.orders)} sagas), nothing changed, nothing raised",
        ]
        return "\n".join(lines)
    clean_raised = [f for f in cert.findings if f.perturbation == CLEAN and f.raised]
    raising = [f for f in perturbations if f.raised]
    changed = [f for f in perturbations if f.failed and not f.raised]
    parts = []
    if clean_raised:
        handlers = "handler" if len(clean_raised) == 1 else "handlers"
        parts.append(f"{len(clean_raised)} {handlers} raised in the clean run")
    if raising:
        parts.append(f"{len(raising)} of {len(perturbations)} perturbations made a handler raise")
    if changed:
        parts.append(f"{len(changed)} of {len(perturbations)} perturbations changed something")
    lines += ["", "result     FAIL: " + "; ".join(parts)]
    named: list[str] = []
    for row in rows:
        for c in COLUMNS:
            failing = [f for f in cells.get((row, c), []) if f.failed]
            if not failing:
                continue
            first = failing[0]
            named += re.findall(r"saga-\d+", first.instance)
            lines.append(f"  {first.row} x {first.perturbation} ({first.instance}):")
            said = [f"raises {r}" for r in first.raised] + list(first.changes)
            lines += [f"      {line}" for line in said[:details]]
            if len(said) > details:
                lines.append(f"      ... {len(said) - details} more")
            if len(failing) > 1:
                lines.append(f"      (and {len(failing) - 1} more {c} of {row})")
    orders = {o.saga_id: o for o in cert.orders}
    for saga_id in dict.fromkeys(named):
        if saga_id in orders:
            lines.append(f"  where {orders[saga_id].describe()}")
    return "\n".join(lines)


def certify_command(args: argparse.Namespace) -> int:
    """`run.py certify [--saga NAME|module:attr]`: exit 1 if anything changed or raised."""
    saga = load_saga(args.saga)
    try:
        cert = certify(saga)
    except SagaError:
        raise
    except Exception as exc:  # the saga's own code failed outside a handler (its services
        # factory, an order it declares): one line, not a traceback
        print(f"{program()}: error: certify {saga.name}: {handler_error(exc)}", file=sys.stderr)
        return EXIT_CHANGED
    print(format_certificate(cert))
    return EXIT_OK if cert.ok else EXIT_CHANGED
