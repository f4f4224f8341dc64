"""The handler certifier (`run.py certify`): each service of a saga, driven systematically (not
randomly) through the perturbations at-least-once delivery and crashes cause, compared with a
clean run.

For every service it takes the messages the service handled in a clean run of a small scenario
(every outcome of the saga once, one saga after the other) and replays them to a fresh copy of
the service behind its participant (inbox + outbox), once as they came and once per
perturbation: each message delivered twice; each pair of messages that can reach the service
in either order swapped; a crash before and after each commit, and after each effect (a crash
wipes volatile state and calls the `restart()` hook; the delivery then comes again). It then
compares what the service ended with: its state, the events it emitted (per saga) and the
effects the outside world acted on. Counters and names a service hands out (`r1`, `pay-2`)
may come out permuted when messages are reordered; the comparison renames them consistently
from the events before it compares, so only a real difference shows.

This module owns the perturbations, the comparison and the table. It is pure: it never imports
trio, and it drives handlers synchronously exactly as `bus.serve_batch` does.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .errors import SagaError
from .events import Event
from .participant import CrashNow, Effect, Participant, StepContext, World
from .saga import SagaDefinition, load_saga

EXIT_OK, EXIT_CHANGED = 0, 1

DUPLICATE = "duplicate"
SWAP = "swap"
CRASH_BEFORE = "crash before commit"
CRASH_AFTER = "crash after commit"
CRASH_EFFECT = "crash after effect"
PERTURBATIONS = (DUPLICATE, SWAP, CRASH_BEFORE, CRASH_AFTER, CRASH_EFFECT)
FAILS = "forced failure"
COLUMNS = (FAILS, *PERTURBATIONS)


# -- a clean run, synchronously --------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Order:
    """One saga of the certifier's clean scenario; `fail` is the step forced to fail."""

    saga_id: str
    fail: str | None = None


def clean_orders(saga: SagaDefinition) -> list[Order]:
    """One saga that completes, then one per step that can fail, forced to fail there: every
    handler of the saga, and every compensation, runs at least once."""
    made = [Order(saga_id="saga-1")]
    for step in saga.fallible_steps:
        made.append(Order(saga_id=f"saga-{len(made) + 1}", fail=step))
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


@attrs.define
class CleanRun:
    """What each service handled, in order, in a clean run (one saga after the other)."""

    inputs: dict[str, list[Any]]
    participants: dict[str, Participant]
    world: World
    published: list[Event]


def clean_run(saga: SagaDefinition, state: Mapping[str, Any], orders: Sequence[Order]) -> CleanRun:
    """Run `orders` one after the other, each to quiet, delivering every event once to each
    subscriber in publish order."""
    world = World()
    ctx = _context(saga, orders, world)
    participants = {s.name: _wrap(saga, s) for s in saga.make_services(state)}
    inputs: dict[str, list[Any]] = {name: [] for name in participants}
    published: list[Event] = []
    for order in orders:
        queue: deque[tuple[str, Any]] = deque([(saga.entry, saga.make_command(order.saga_id, {}))])
        while queue:
            dest, payload = queue.popleft()
            inputs[dest].append(payload)
            participant = participants[dest]
            _step(participant, payload, ctx)
            while participant.outbox:
                event = participant.outbox.popleft()
                published.append(event)
                queue.extend((to, event) for to in saga.subscriptions.get(event.type, ()))
    return CleanRun(inputs=inputs, participants=participants, world=world, published=published)


def _step(participant: Participant, payload: Any, ctx: StepContext) -> Sequence[Event] | None:
    ctx.effects.step(participant.name, payload.saga_id)  # a participant of a test may not
    if isinstance(payload, Event):
        return participant.receive(payload, ctx)
    return participant.execute(payload, ctx)[1]


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
        _deliver(run, payload, ctx, crash, n)
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


# -- comparing what two runs ended with ------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as plain data to compare: attrs classes by field (volatile fields left out: a
    crash may wipe them), sets sorted, sequences as lists."""
    from .participant import VOLATILE

    if attrs.has(type(value)):
        made = {"": type(value).__name__}
        for field in attrs.fields(type(value)):
            if not field.metadata.get(VOLATILE):
                made[field.name] = plain(getattr(value, field.name))
        return made
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple | deque):
        return [plain(v) for v in value]
    return value


def _event(event: Event) -> dict[str, Any]:
    made = plain(event)
    made.pop("timestamp", None)
    made["type"] = event.type
    return dict(made)


def _effect(effect: Effect) -> dict[str, Any]:
    return {
        "system": effect.system,
        "action": effect.action,
        "key": effect.key,
        "params": dict(effect.params),
        "result": effect.result,
    }


@attrs.frozen(kw_only=True)
class Ending:
    """What a service ended with: its state, its events per saga, its applied effects per
    saga (all plain data)."""

    state: Any
    events: dict[str, list[dict[str, Any]]]
    effects: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, participant: Participant, emitted: Iterable[Event], world: World) -> Ending:
        events: dict[str, list[dict[str, Any]]] = {}
        for event in emitted:
            events.setdefault(event.saga_id, []).append(_event(event))
        effects: dict[str, list[dict[str, Any]]] = {}
        for effect in world.effects:
            if effect.applied and effect.service == participant.name:
                effects.setdefault(effect.saga_id, []).append(_effect(effect))
        return cls(state=plain(participant.service), events=events, effects=effects)


def _learn(clean: Any, other: Any, names: dict[str, str], conflicts: list[str]) -> None:
    """Learn the renaming other -> clean from two aligned values (strings that differ)."""
    if isinstance(clean, str) and isinstance(other, str):
        if clean == other:
            return
        known = names.get(other)
        if known is None:
            names[other] = clean
        elif known != clean:
            conflicts.append(f"{other!r} stands for both {known!r} and {clean!r}")
    elif isinstance(clean, dict) and isinstance(other, dict):
        for key in clean.keys() & other.keys():
            _learn(clean[key], other[key], names, conflicts)
    elif isinstance(clean, list) and isinstance(other, list):
        for a, b in zip(clean, other, strict=False):
            _learn(a, b, names, conflicts)


def _rename(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, dict):
        return {_rename(k, names): _rename(v, names) for k, v in value.items()}
    if isinstance(value, list):
        renamed = [_rename(v, names) for v in value]
        return renamed
    return value


def _differences(path: str, clean: Any, other: Any, out: list[str]) -> None:
    if isinstance(clean, dict) and isinstance(other, dict):
        for key in sorted(clean.keys() | other.keys(), key=repr):
            where = f"{path}.{key}" if path else str(key)
            if key not in other:
                out.append(f"{where}: {_short(clean[key])} -> (missing)")
            elif key not in clean:
                out.append(f"{where}: (missing) -> {_short(other[key])}")
            else:
                _differences(where, clean[key], other[key], out)
    elif isinstance(clean, list) and isinstance(other, list) and len(clean) == len(other):
        for index, (a, b) in enumerate(zip(clean, other, strict=True)):
            _differences(f"{path}[{index}]", a, b, out)
    elif clean != other:
        out.append(f"{path}: {_short(clean)} -> {_short(other)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _unordered(value: Any) -> Any:
    """Lists of names (a set's sorted members) sorted again after renaming."""
    if isinstance(value, dict):
        return {k: _unordered(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted(value)
    if isinstance(value, list):
        return [_unordered(v) for v in value]
    return value


def _without_event_ids(ending: Ending) -> Ending:
    events = {
        saga_id: [{k: v for k, v in e.items() if k != "event_id"} for e in listed]
        for saga_id, listed in ending.events.items()
    }
    return attrs.evolve(ending, events=events)


def diff(clean: Ending, other: Ending, *, renaming: bool = False) -> list[str]:
    """How `other` differs from `clean`, as lines (empty: unchanged). With `renaming`, names
    handed out in another order are first mapped back through the events and effects."""
    names: dict[str, str] = {}
    conflicts: list[str] = []
    if renaming:
        # Event ids only say in which order events were made, which a swap changes; they
        # can also look like the names a service hands out (the travel saga's car-1).
        clean, other = _without_event_ids(clean), _without_event_ids(other)
        for saga_id in clean.events.keys() & other.events.keys():
            _learn(clean.events[saga_id], other.events[saga_id], names, conflicts)
        for saga_id in clean.effects.keys() & other.effects.keys():
            _learn(clean.effects[saga_id], other.effects[saga_id], names, conflicts)
        if len(set(names.values())) != len(names):
            conflicts.append("two names map to one")
    found = [f"renaming: {c}" for c in conflicts[:2]]
    for what, a, b in (
        ("events", clean.events, other.events),
        ("effects", clean.effects, other.effects),
        ("state", clean.state, other.state),
    ):
        renamed = _rename(b, names)
        if renaming:
            a, renamed = _unordered(a), _unordered(renamed)
        _differences(what, a, renamed, found)
    return found


# -- the perturbations -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Finding:
    """One perturbation of one handler, and how the service's ending differed (empty:
    unchanged)."""

    service: str
    handler: str  # the message type the handler took
    perturbation: str
    instance: str  # which message, e.g. "InventoryReserved of saga-1"
    changes: tuple[str, ...]
    allowed: bool = False

    @property
    def row(self) -> str:
        return f"{self.service}.{self.handler}"


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


def possible(saga_causes: Mapping[str, frozenset[str]], order: Sequence[Any]) -> bool:
    """Whether messages can reach a service in this order: nothing of a saga comes before
    one of its causes."""
    for k, early in enumerate(order):
        for late in order[k + 1 :]:
            if early.saga_id == late.saga_id and late.type in saga_causes.get(
                early.type, frozenset()
            ):
                return False
    return True


@attrs.frozen(kw_only=True)
class Certificate:
    saga: SagaDefinition
    findings: tuple[Finding, ...]
    rows: tuple[str, ...]

    @property
    def changed(self) -> list[Finding]:
        return [f for f in self.findings if f.changes and not f.allowed]

    @property
    def ok(self) -> bool:
        return not self.changed


def certify(saga: SagaDefinition, state: Mapping[str, Any] | None = None) -> Certificate:
    """Every service of `saga` under every perturbation (see the module comment)."""
    state = dict(state or {})
    orders = clean_orders(saga)
    clean = clean_run(saga, state, orders)
    findings: list[Finding] = []
    rows: list[str] = []
    for service in saga.service_names:
        for payload in clean.inputs[service]:
            row = f"{service}.{payload.type}"
            if row not in rows:
                rows.append(row)
        findings += _perturb(saga, state, orders, service, clean.inputs[service])
    findings += _forced_failures(saga, state, orders)
    return Certificate(saga=saga, findings=tuple(findings), rows=tuple(rows))


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
    found: list[Finding] = []

    def note(index: int, perturbation: str, run: Driven, instance: str, rename: bool) -> None:
        handler = inputs[index].type
        changes = diff(ending, Ending.of(run.participant, run.emitted, run.world), renaming=rename)
        found.append(
            Finding(
                service=service,
                handler=handler,
                perturbation=perturbation,
                instance=instance,
                changes=tuple(changes),
                allowed=_allowed(saga, service, handler, perturbation),
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
            swapped = list(plainly)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            if possible(causes, [p for p, _, _ in swapped]):
                note(i, SWAP, run(swapped), f"{what} <-> {_what(inputs[j])}", True)
    return found


def _forced_failures(
    saga: SagaDefinition, state: Mapping[str, Any], orders: Sequence[Order]
) -> list[Finding]:
    """Each saga of the clean scenario alone, judged by the saga's oracle: a step forced to
    fail must leave every invariant holding (what a compensation is for)."""
    from .oracle import FinishedRun, judge
    from .saga_log import SagaLog

    found: list[Finding] = []
    for order in orders:
        alone = clean_run(saga, state, [order])
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
        what = (
            f"{order.fail} fails for {order.saga_id}"
            if order.fail
            else f"{order.saga_id} completes"
        )
        found.append(
            Finding(
                service=step.service,
                handler=trigger,
                perturbation=FAILS,
                instance=what,
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


def format_certificate(cert: Certificate, *, details: int = 3) -> str:
    cells: dict[tuple[str, str], list[Finding]] = {}
    rows = list(cert.rows)
    for f in cert.findings:
        cells.setdefault((f.row, f.perturbation), []).append(f)
        if f.row not in rows:
            rows.append(f.row)
    width = max([len(r) for r in rows] + [len("handler")])
    cols = [max(len(c), len("unchanged")) for c in COLUMNS]
    head = f"{'handler':<{width}}  " + "  ".join(
        f"{c:<{w}}" for c, w in zip(COLUMNS, cols, strict=True)
    )
    lines = [f"certify {cert.saga.name}: every handler x perturbation", "", head, "-" * len(head)]
    for row in rows:
        shown = []
        for c in COLUMNS:
            found = cells.get((row, c), [])
            if not found:
                shown.append("-")
            elif any(f.changes and not f.allowed for f in found):
                shown.append("CHANGED")
            elif any(f.changes for f in found):
                shown.append("allowed")
            else:
                shown.append("unchanged")
        lines.append(
            f"{row:<{width}}  " + "  ".join(f"{s:<{w}}" for s, w in zip(shown, cols, strict=True))
        )
    lines.append("(-: does not apply; unchanged: same state, events and effects as the clean run)")
    changed = cert.changed
    if not changed:
        lines += ["", f"result     PASS: {len(cert.findings)} perturbations, nothing changed"]
        return "\n".join(lines)
    lines += [
        "",
        f"result     FAIL: {len(changed)} of {len(cert.findings)} perturbations changed something",
    ]
    for f in changed:
        lines.append(f"  {f.row} x {f.perturbation} ({f.instance}):")
        lines += [f"      {c}" for c in f.changes[:details]]
        if len(f.changes) > details:
            lines.append(f"      ... {len(f.changes) - details} more")
    return "\n".join(lines)


def certify_command(args: argparse.Namespace) -> int:
    """`run.py certify [--saga NAME|module:attr]`: exit 1 if anything changed."""
    saga = load_saga(args.saga)
    try:
        cert = certify(saga)
    except SagaError:
        raise
    except Exception as exc:  # a handler under test raised: one line, not a traceback
        print(
            f"run.py: error: certify {saga.name}: a handler raised {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_CHANGED
    print(format_certificate(cert))
    return EXIT_OK if cert.ok else EXIT_CHANGED
