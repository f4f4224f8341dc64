"""The oracle: the invariants of DESIGN §4, checked once a run has gone quiet.

It owns what "correct" means for a finished run of any saga: the generic invariants follow
from the saga definition (every ordered saga ends; its outcome matches its events; no effect
without its cause), and the definition adds its own checks (the shop's stock and money). It
reads only the saga log (what was published, in order) and the services' final state; it must
never change either, and never trust a service's own bookkeeping where the event stream can
show otherwise: a double charge is found from two PaymentCharged events, not from a counter the
buggy handler kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .errors import HandlerError
from .participant import Participant, World
from .saga import (
    EVERY_SAGA_ENDS,
    HANDLERS_RETURN,
    NO_EFFECT_WITHOUT_CAUSE,
    OUTCOME_MATCHES_EVENTS,
    SagaDefinition,
    Violation,
)
from .saga_log import SagaLog, SagaRecord
from .trace import Trace

#: What the summary shows for each invariant.
OK, FAILED, NOT_APPLICABLE = "ok", "FAIL", "n/a"


@attrs.frozen(kw_only=True)
class FinishedRun:
    """What a check sees of a run that has gone quiet."""

    saga: SagaDefinition
    saga_log: SagaLog
    participants: Mapping[str, Participant]
    #: Saga ids the run was asked to start, in order.
    ordered: Sequence[str] = ()
    #: The outside world: every effect the handlers had (a gateway's charges), which the
    #: saga's own checks count (issue 11).
    world: World = attrs.field(factory=World)

    def service(self, name: str) -> Any:
        """The final state of service `name`, or None if the run has no such service."""
        participant = self.participants.get(name)
        return None if participant is None else participant.service


@attrs.frozen(kw_only=True)
class Verdict:
    """The oracle's answer: every violation, and for each invariant ok, FAIL or n/a."""

    violations: tuple[Violation, ...]
    results: tuple[tuple[str, str], ...]  # (invariant, OK | FAILED | NOT_APPLICABLE)

    @property
    def ok(self) -> bool:
        return not self.violations


def judge(run: FinishedRun) -> Verdict:
    """Every violation of DESIGN §4 in a quiet system: per saga first, then the saga's own
    checks; and which invariants could not be checked at all."""
    violations: list[Violation] = []
    started = {record.saga_id for record in run.saga_log}
    for saga_id in run.ordered:
        if saga_id not in started:
            violations.append(
                Violation(
                    invariant=EVERY_SAGA_ENDS,
                    saga_id=saga_id,
                    detail="ordered but never started (the run ended first)",
                )
            )
    for record in run.saga_log:
        violations.extend(check_saga(run.saga, record))
    skipped: set[str] = set()
    for check in run.saga.checks:
        found = check.run(run)
        if found is None:
            skipped.add(check.name)
        else:
            violations.extend(found)
    broken = {v.invariant for v in violations}
    results = tuple(
        (name, NOT_APPLICABLE if name in skipped else FAILED if name in broken else OK)
        for name in run.saga.invariants
    )
    return Verdict(violations=tuple(violations), results=results)


def check(
    saga: SagaDefinition,
    saga_log: SagaLog,
    participants: Mapping[str, Participant],
    ordered: Sequence[str] = (),
    world: World | None = None,
) -> list[Violation]:
    """Every violation in a quiet system (see `judge`)."""
    run = FinishedRun(
        saga=saga,
        saga_log=saga_log,
        participants=participants,
        ordered=ordered,
        world=world if world is not None else World(),
    )
    return list(judge(run).violations)


def check_saga(saga: SagaDefinition, record: SagaRecord) -> list[Violation]:
    """The generic invariants for one saga's events."""
    found: list[Violation] = []
    types = tuple(record.types)
    saga_id = record.saga_id
    evidence = record.evidence
    if not record.done:
        found.append(
            Violation(
                invariant=EVERY_SAGA_ENDS,
                saga_id=saga_id,
                evidence=evidence,
                detail=f"stuck in progress after {_show(types)}",
            )
        )
    elif types not in saga.allowed[record.status]:
        found.append(
            Violation(
                invariant=OUTCOME_MATCHES_EVENTS,
                saga_id=saga_id,
                evidence=evidence,
                detail=f"{record.status} but its events are {_show(types)}",
            )
        )
    for kind, count in sorted(Counter(types).items()):
        if count > 1:
            found.append(
                Violation(
                    invariant=OUTCOME_MATCHES_EVENTS,
                    saga_id=saga_id,
                    evidence=evidence,
                    detail=f"{kind} published {count} times",
                )
            )
    causes, undone_before = saga.causes, saga.undone_before
    seen: set[str] = set()
    for kind in types:
        cause = causes.get(kind)
        if cause is not None and cause not in seen:
            found.append(
                Violation(
                    invariant=NO_EFFECT_WITHOUT_CAUSE,
                    saga_id=saga_id,
                    evidence=evidence,
                    detail=f"{kind} without {cause} before it",
                )
            )
        undone = undone_before.get(kind)
        if undone is not None and undone in seen:
            found.append(
                Violation(
                    invariant=NO_EFFECT_WITHOUT_CAUSE,
                    saga_id=saga_id,
                    evidence=evidence,
                    detail=f"{kind} after {undone}",
                )
            )
        seen.add(kind)
    return found


def describe(violation: Violation, saga: SagaDefinition, trace: Trace | None = None) -> str:
    """One violation as the summary prints it, with the trace lines that show it."""
    where = f"saga {violation.saga_id}: " if violation.saga_id else ""
    number = number_of(saga, violation.invariant)
    head = f"invariant {number} ({violation.invariant}) violated: {where}{violation.detail}"
    if trace is None or not violation.evidence or not trace.records:
        return head
    shown = trace.select(violation.evidence)
    return "\n".join([head, *(f"    {record.render()}" for record in shown)])


def number_of(saga: SagaDefinition, invariant: str) -> int | str:
    """The invariant's number on screen: its place in the saga's list, 1-based (a raising
    handler's comes after them all)."""
    names = saga.reported_invariants
    return names.index(invariant) + 1 if invariant in names else "?"


def raised_verdict(saga: SagaDefinition, error: HandlerError) -> Verdict:
    """The verdict on a run a handler's exception stopped: that, and nothing else, since the
    rest of the run never happened."""
    raised = Violation(
        invariant=HANDLERS_RETURN, saga_id=error.saga_id or None, detail=error.raised
    )
    results = tuple((name, NOT_APPLICABLE) for name in saga.invariants)
    return Verdict(violations=(raised,), results=(*results, (HANDLERS_RETURN, FAILED)))


def _show(types: Iterable[str]) -> str:
    listed = ", ".join(types)
    return f"[{listed}]" if listed else "nothing"
