"""The fault-injection interface: one small protocol between the trio runtime and the plugins.

This module owns the `Fault` protocol, the `Decision` record, the spec syntax
(`name:key=value,...`) and the `FaultInjector` that composes plugins, draws every choice from
one seeded RNG and records each decision so a run can be replayed (and shrunk) from its
decisions alone. It must never import trio or know about services' internals: the runtime asks
it questions at three points (a transmission, a step, a commit) and at start-up (the timeline).

Times are integer microseconds of virtual time, so decisions replay exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, cast

import attrs

from trio_saga.errors import FaultSpecError
from trio_saga.trace import US

#: A stable name for the thing a decision applies to; only str and int so it prints and
#: compares the same in every process.
Key = tuple[str | int, ...]


@attrs.frozen(kw_only=True, slots=True)
class Decision:
    """One choice a fault made that changed the run."""

    kind: str
    key: Key
    value: int | str = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": list(self.key), "value": self.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        """A recorded decision, checked: a kind some fault makes, a key of strings and
        integers, and a value of the type that kind records (a replay file is someone else's
        file: nothing in it may reach the run unchecked)."""
        shown = repr(data)[:120]
        try:
            kind, key = data["kind"], tuple(data["key"])
            value: Any = data.get("value", 0)
            if not all(isinstance(k, str | int) and not isinstance(k, bool) for k in key):
                raise TypeError("key parts must be strings or integers")
            if not isinstance(kind, str):
                raise TypeError("kind must be a string")
            expected = _value_type(kind)
            if expected is None:
                known = ", ".join([*DECISION_VALUES, "fail_STEP"])
                raise ValueError(f"no fault makes decisions of kind {kind!r} (known: {known})")
            if isinstance(value, bool) or not isinstance(value, expected):
                raise TypeError(f"a {kind} decision's value must be {_type_word(expected)}")
            most = MAX_RECORDED.get(kind, MAX_RECORDED["delay"])
            if isinstance(value, int) and not 0 <= value <= most:
                raise ValueError(f"a {kind} decision's value must be from 0 to {most:,}")
            if kind == "partition" and value not in ("drop", "hold"):
                raise ValueError("a partition decision's value is drop or hold")
            if kind in TIMED_KEYS and [type(k) for k in key] != list(TIMED_KEYS[kind]):
                names = ", ".join(t.__name__ for t in TIMED_KEYS[kind])
                raise ValueError(f"a {kind} decision's key is ({names})")
            return cls(kind=kind, key=key, value=cast(int | str, value))
        except (KeyError, TypeError, ValueError) as exc:
            raise FaultSpecError(f"bad recorded decision {shown}: {exc}") from None


#: The type of the value each kind of decision records (fail_STEP: the reason, a string).
DECISION_VALUES: dict[str, type] = {
    "drop": int,
    "delay": int,
    "duplicate": int,
    "reorder": int,
    "partition": str,
    "crash_at": int,
    "crash_after_commit": int,
    "crash_before_commit": int,
}
#: The parts of a timed decision's key, which the bus unpacks: (service, direction, start µs,
#: end µs) and (service, at µs).
TIMED_KEYS: dict[str, tuple[type, ...]] = {
    "partition": (str, str, int, int),
    "crash_at": (str, int),
}
#: The largest integer a decision may record: a day of µs for times, as many copies as the
#: duplicate plugin makes at most.
MAX_RECORDED = {"delay": 86_400 * 1_000_000, "duplicate": 100}


def _value_type(kind: str) -> type | None:
    if kind.startswith("fail_") and len(kind) > len("fail_"):
        return str
    return DECISION_VALUES.get(kind)


def _type_word(kind: type) -> str:
    return "an integer" if kind is int else "a string"


@attrs.frozen(kw_only=True, slots=True)
class Transmission:
    """One attempt to carry a message from `source` to `dest`."""

    source: str
    dest: str
    saga_id: str
    what: str  # the event type, or the command name
    attempt: int
    now: int

    @property
    def key(self) -> Key:
        # Stable across replays with fewer faults: no delivery ids or sequence numbers.
        return (self.what, self.saga_id, self.dest, self.attempt)


@attrs.frozen(kw_only=True, slots=True)
class Commit:
    """A service has just committed a step (state + outbox) and not yet published it."""

    service: str
    saga_id: str
    produced: tuple[str, ...]  # the event types now in the outbox
    now: int

    @property
    def key(self) -> Key:
        return (self.service, self.saga_id, *self.produced)


class Effect(Protocol):
    """What a network decision does to one transmission, applied by the simulated network:
    the arrival times of its copies in, the arrival times out (empty: it is lost), and the
    text the trace shows for it. A plugin names the effect of each decision kind it makes
    (`Fault.effects`), so a new kind of network fault needs no edit of the delivery code."""

    def apply(self, arrivals: list[int], value: int) -> list[int]: ...

    def note(self, value: int) -> str: ...


class Lose:
    """The transmission never arrives (drop)."""

    def apply(self, arrivals: list[int], value: int) -> list[int]:
        return []

    def note(self, value: int) -> str:
        return ""


class Copy:
    """`value` extra copies arrive with the first (duplicate)."""

    def apply(self, arrivals: list[int], value: int) -> list[int]:
        return arrivals + [arrivals[0]] * value

    def note(self, value: int) -> str:
        return f"{value} extra"


class Shift:
    """Every copy arrives `value` µs later (delay, reorder)."""

    def apply(self, arrivals: list[int], value: int) -> list[int]:
        return [t + value for t in arrivals]

    def note(self, value: int) -> str:
        return f"+{value / US:g}s"


class Fault:
    """Base class of the plugins; each overrides only the questions it answers.

    A plugin returns `Decision`s and never acts itself: the injector records and applies them,
    which is what makes a run replayable from its decisions.
    """

    name: ClassVar[str] = "fault"
    #: The effect on a transmission of each decision kind `on_transmit` makes.
    effects: ClassVar[Mapping[str, Effect]] = {}

    def timeline(self, rng: random.Random) -> Sequence[Decision]:
        """Timed decisions made up front (partitions, crashes at a time)."""
        return ()

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        """Network decisions for one transmission: drop, delay, duplicate, reorder."""
        return ()

    def on_step(self, step: str, saga_id: str, rng: random.Random) -> Decision | None:
        """A forced failure of `step` for `saga_id`; value is the reason."""
        return None

    def on_commit(self, commit: Commit, rng: random.Random) -> Decision | None:
        """A crash right after a commit, before publishing; value is the downtime."""
        return None

    def on_before_commit(self, commit: Commit, rng: random.Random) -> Decision | None:
        """A crash after a step's effects and before its commit (`commit.produced` is what
        the step would have committed); value is the downtime. The step is lost."""
        return None

    def may_strike_before_commit(self, service: str) -> bool:
        """Whether `on_before_commit` could still answer yes for `service` (the runner then
        keeps a snapshot of the service's state for the step; otherwise it takes none)."""
        return False

    def bind(self, saga: SagaShape) -> None:
        """Check the fault against the saga it will run on (a service, event or step it names
        must exist there: a typo must not make a fault that never acts); raise ValueError with
        the reason. A plugin may also learn what it needs of the saga here."""

    @property
    def spec_name(self) -> str:
        """The name the spec syntax knows this fault by."""
        return self.name

    def describe(self) -> str:
        """The spec that builds this fault again (parameters left at their default omitted)."""
        if not attrs.has(type(self)):
            return self.spec_name
        params = ",".join(
            f"{f.name}={_show(getattr(self, f.name))}"
            for f in attrs.fields(cast(Any, type(self)))
            if f.init and f.name not in self.implied and getattr(self, f.name) != f.default
        )
        return f"{self.spec_name}:{params}" if params else self.spec_name

    #: Parameters the spec name already says (a forced failure's step), left out of `describe`.
    implied: ClassVar[frozenset[str]] = frozenset()


class SagaShape(Protocol):
    """What a fault may ask of the saga it runs on (a `trio_saga.saga.SagaDefinition`)."""

    @property
    def service_names(self) -> tuple[str, ...]: ...

    @property
    def event_types(self) -> tuple[str, ...]: ...

    @property
    def fallible_steps(self) -> tuple[str, ...]: ...

    def step(self, name: str) -> Any: ...


def one_of(what: str, value: str, known: Sequence[str]) -> None:
    """Refuse `value` unless it is one of `known`, naming them."""
    if value not in known:
        raise ValueError(f"{what} must be one of {', '.join(known)}, got {value!r}")


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- spec syntax -------------------------------------------------------------------------------


def parse_params(spec: str) -> tuple[str, dict[str, str]]:
    """`drop:p=0.1,start=2` -> ("drop", {"p": "0.1", "start": "2"})."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise FaultSpecError(f"empty fault spec {spec!r}")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise FaultSpecError(f"fault spec {spec!r}: expected key=value, got {item!r}")
        if key in params:
            raise FaultSpecError(f"fault spec {spec!r}: {key} is given twice")
        params[key] = value.strip()
    return name, params


def build(cls: type[Fault], spec: str, params: dict[str, str]) -> Fault:
    """Construct plugin `cls` from string params, checking names and types against its fields."""
    fields = {f.name: f for f in attrs.fields(cast(Any, cls)) if f.init}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        allowed = ", ".join(f for f in fields if f not in cls.implied) or "none"
        raise FaultSpecError(
            f"fault spec {spec!r}: unknown parameter {unknown[0]!r} (takes {allowed})"
        )
    kwargs: dict[str, object] = {}
    for key, raw in params.items():
        kind = fields[key].type
        try:
            kwargs[key] = _convert(raw, kind)
        except ValueError:
            raise FaultSpecError(
                f"fault spec {spec!r}: {key}={raw!r} is not {_type_name(kind)}"
            ) from None
    missing = [
        name for name, f in fields.items() if f.default is attrs.NOTHING and name not in kwargs
    ]
    if missing:
        raise FaultSpecError(f"fault spec {spec!r}: {missing[0]}= is required")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise FaultSpecError(f"fault spec {spec!r}: {exc}") from None


def _type_name(kind: object) -> str:
    text = str(kind)
    if text.startswith("float"):
        return "a number"
    return "an integer" if text.startswith("int") else "a string"


def _convert(raw: str, kind: object) -> object:
    text = str(kind)
    if text.startswith("float"):
        return float(raw)
    if text.startswith("int"):
        return int(raw)
    return raw


def probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value}")


def non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


# -- finite, sane ranges for the network plugins (drop, delay, duplicate, reorder) -------------

#: The longest time a network fault's parameter may name: a day, far beyond any run (stdio
#: drains in seconds, scenarios run minutes of virtual time), and small enough that a time in
#: microseconds stays an exact integer and a sampled delay can never overflow.
MAX_SECONDS = 86_400.0
#: The shortest delay or reorder window that can act: one microsecond, the unit of time;
#: anything shorter rounds to no delay at all.
MIN_SPAN_S = 1e-6


def acting_probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """A probability above 0 (at 0 the fault can never act) and at most 1."""
    probability(instance, attribute, value)
    if value == 0:
        raise ValueError(f"{attribute.name}=0 can never act (give {attribute.name} in (0, 1])")


def seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """A time in seconds from 0 to a day; NaN and infinity are refused."""
    if not 0 <= value <= MAX_SECONDS:
        raise ValueError(
            f"{attribute.name} must be between 0 and {MAX_SECONDS:g} seconds, got {value}"
        )


def span(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """A delay or window: at least a microsecond (less can never act), at most a day."""
    seconds(instance, attribute, value)
    if value < MIN_SPAN_S:
        raise ValueError(
            f"{attribute.name}={value:g} can never act (give {attribute.name} between"
            f" {MIN_SPAN_S:g} and {MAX_SECONDS:g} seconds)"
        )


def end_time(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """Like `seconds`, but `inf` (the default: the fault never stops) is allowed too."""
    if value != float("inf") and not 0 <= value <= MAX_SECONDS:
        raise ValueError(
            f"{attribute.name} must be between 0 and {MAX_SECONDS:g} seconds, or inf, got {value}"
        )


@attrs.define(kw_only=True)
class RateFault(Fault):
    """A fault that acts on each transmission while active: [start, end) in virtual seconds."""

    start: float = attrs.field(default=0.0, validator=seconds)
    end: float = attrs.field(default=float("inf"), validator=end_time)

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"end must be after start, got start={self.start}, end={self.end}")

    def active(self, now_us: int) -> bool:
        return self.start * US <= now_us < self.end * US


# -- the injector ------------------------------------------------------------------------------


@attrs.define
class FaultInjector:
    """Composes plugins over one seeded RNG and records every decision they make.

    Made with `replaying(decisions)` it draws nothing and applies exactly the given decisions,
    matched by key, each key used once (the first transmission, step or commit it names): the
    base of replay files and of shrinking.
    """

    faults: list[Fault] = attrs.field(factory=list)
    seed: int = 0
    decisions: list[Decision] = attrs.field(factory=list)
    #: The saga the faults run on: each is bound to it (checked, and told what it needs).
    saga: SagaShape | None = None
    _rng: random.Random = attrs.field(init=False)
    _replay: dict[tuple[str, Key], list[Decision]] | None = attrs.field(default=None, init=False)
    _replay_timeline: list[Decision] = attrs.field(factory=list, init=False)
    _asked: dict[tuple[str, Key], int] = attrs.field(factory=dict, init=False)
    # The plugins that answer each family of question ("net", "step", "commit"), rebuilt when
    # `faults` has grown: a question no plugin answers (a run without faults asks about every
    # step; the stdio node always carries the three forced-failure plugins, which answer no
    # transmission) then costs one lookup, makes no Transmission and remembers nothing.
    _answering: dict[str, list[Fault]] = attrs.field(factory=dict, init=False)
    _indexed: int = attrs.field(default=-1, init=False)
    #: family -> whether `asks(family)`, kept current by `add` and `replaying` for the bus's
    #: hot path (a dict lookup where a method call showed in profiles). Add faults with `add`.
    answers: dict[str, bool] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for fault in self.faults:
            self._bind(fault)
        self._plugins("net")

    def _bind(self, fault: Fault) -> None:
        if self.saga is None:
            return
        try:
            fault.bind(self.saga)
        except ValueError as exc:
            raise FaultSpecError(f"fault {fault.describe()!r}: {exc}") from None

    @classmethod
    def replaying(
        cls, decisions: Iterable[Decision], saga: SagaShape | None = None
    ) -> FaultInjector:
        injector = cls(saga=saga)
        index: dict[tuple[str, Key], list[Decision]] = {}
        for decision in decisions:
            if decision.kind in TIMED_KINDS:
                injector._replay_timeline.append(decision)
            else:
                index.setdefault((_family(decision.kind), decision.key), []).append(decision)
        injector._replay = index
        injector._indexed = -1
        injector._plugins("net")
        return injector

    @property
    def active(self) -> bool:
        """Whether any question is worth asking (no faults and no replay: all answers are no)."""
        return bool(self.faults) or self._replay is not None

    def add(self, fault: Fault) -> None:
        self._bind(fault)
        self.faults.append(fault)
        self._plugins("net")  # re-index now, so `answers` is current for the hot path

    def _plugins(self, family: str) -> list[Fault]:
        if self._indexed != len(self.faults):
            self._answering = {
                "net": [f for f in self.faults if type(f).on_transmit is not Fault.on_transmit],
                "step": [f for f in self.faults if type(f).on_step is not Fault.on_step],
                "commit": [f for f in self.faults if type(f).on_commit is not Fault.on_commit],
                "precommit": [
                    f for f in self.faults if type(f).on_before_commit is not Fault.on_before_commit
                ],
            }
            replaying = self._replay is not None
            for family_, plugins in self._answering.items():
                self.answers[family_] = replaying or bool(plugins)
            self._indexed = len(self.faults)
        return self._answering[family]

    def asks(self, family: str) -> bool:
        """Whether a question of `family` ("net", "step", "commit") can be answered at all."""
        return self._replay is not None or bool(self._plugins(family))

    def find(self, cls: type[Fault]) -> list[Fault]:
        return [f for f in self.faults if isinstance(f, cls)]

    def timeline(self) -> list[Decision]:
        if self._replay is not None:
            made = list(self._replay_timeline)
        else:
            made = [d for fault in self.faults for d in fault.timeline(self._rng)]
        self.decisions.extend(made)
        return made

    def _occurrence(self, family: str, key: Key) -> Key:
        """The key of this question, made unique: the n-th time the same key is asked (a
        client retry, or a buggy service publishing one event type twice) it gets `#n`."""
        n = self._asked.get((family, key), 0) + 1
        self._asked[(family, key)] = n
        return key if n == 1 else (*key, f"#{n}")

    @staticmethod
    def _rekey(decision: Decision | None, key: Key) -> Decision | None:
        if decision is None or decision.key == key:
            return decision
        return attrs.evolve(decision, key=key)

    def transmit(self, t: Transmission) -> Sequence[Decision]:
        # The hottest question of a fault run (one per transmission): asked inline, without
        # `asks` and `_occurrence`, which it would otherwise call for every message.
        plugins = self._plugins("net")
        replay = self._replay
        if replay is None and not plugins:
            return ()
        first = t.key
        asked = self._asked
        n = asked.get(("net", first), 0) + 1
        asked[("net", first)] = n
        key = first if n == 1 else (*first, f"#{n}")
        if replay is not None:
            made: Sequence[Decision] = replay.pop(("net", key), ())
        else:
            rng = self._rng
            made = []
            for fault in plugins:
                decided = fault.on_transmit(t, rng)
                if decided:
                    made.extend(d if n == 1 else attrs.evolve(d, key=key) for d in decided)
        if made:
            self.decisions.extend(made)
        return made

    def forced_failure(self, step: str, saga_id: str) -> str | None:
        """The reason `step` must fail for `saga_id`, or None."""
        decision = self._first(
            "step", (step, saga_id), lambda fault: fault.on_step(step, saga_id, self._rng)
        )
        return None if decision is None else str(decision.value)

    def crash_after_commit(self, commit: Commit) -> int | None:
        """Downtime in µs if the service crashes right after this commit."""
        decision = self._first(
            "commit", commit.key, lambda fault: fault.on_commit(commit, self._rng)
        )
        return None if decision is None else int(decision.value)

    def may_crash_before_commit(self, service: str, saga_id: str) -> bool:
        """Whether a crash before a commit of `service` for `saga_id` could strike now."""
        if self._replay is not None:
            return any(
                family == "precommit" and key[:2] == (service, saga_id)
                for family, key in self._replay
            )
        return any(f.may_strike_before_commit(service) for f in self._plugins("precommit"))

    def crash_before_commit(self, commit: Commit) -> int | None:
        """Downtime in µs if the service crashes after this step's effects, before its
        commit (`commit.produced`: what it would have committed)."""
        decision = self._first(
            "precommit", commit.key, lambda fault: fault.on_before_commit(commit, self._rng)
        )
        return None if decision is None else int(decision.value)

    def _first(
        self, family: str, key: Key, ask: Callable[[Fault], Decision | None]
    ) -> Decision | None:
        """The one decision for a question: replayed, or the first plugin that makes one."""
        if not self.asks(family):
            return None
        key = self._occurrence(family, key)
        decision: Decision | None = None
        if self._replay is not None:
            found = self._replay.pop((family, key), None)
            decision = found[0] if found else None
        else:
            for fault in self._plugins(family):
                decision = self._rekey(ask(fault), key)
                if decision is not None:
                    break
        if decision is not None:
            self.decisions.append(decision)
        return decision


#: Decision kinds made up front by `timeline` rather than in answer to a question.
TIMED_KINDS = frozenset({"partition", "crash_at"})


def _family(kind: str) -> str:
    if kind.startswith("fail_"):
        return "step"
    if kind == "crash_after_commit":
        return "commit"
    if kind == "crash_before_commit":
        return "precommit"
    return "net"
