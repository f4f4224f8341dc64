"""Shrinking a failing run to a minimal set of fault decisions, and the replay file it saves.

This module owns delta debugging over recorded decisions (Zeller and Hildebrandt, "Simplifying
and Isolating Failure-Inducing Input", TSE 2002), the replay file format and the re-run of a
replay file. It must never draw a random number or consult a seed while shrinking: every
candidate is a replay of recorded decisions (`Simulation(decisions=...)`), so each test is
deterministic and a subset that fails once fails always. The one thing a shrink adds is a
crash moved in time (to the instant it struck at another saga's commit, or earlier, to just
after the step it undoes): a decision of the same kind a run records, so a replay file stays
a list of decisions that drives the run exactly.

A run replayed from decisions adds no plugins at all, not even the forced failures of a
scenario's `fail = [...]` groups: those are decisions like any other, and a subset without
them is a run in which those steps did not fail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from faults import Decision
from faults.base import TIMED_KINDS

from .errors import SagaError
from .saga import BUILT_IN, SagaDefinition, Violation, load_saga
from .scenario import Scenario, scenario_dir
from .simulation import Simulation, SimulationResult, simulate

T = TypeVar("T")

FORMAT = "trio-saga replay"
VERSION = 2
#: Version 1 numbered the shop's invariants; version 2 names them.
V1_INVARIANTS = {
    1: "every saga ends",
    2: "outcome matches events",
    3: "stock is conserved",
    4: "money is conserved",
    5: "no effect without its cause",
}

#: How many replays one shrink may run. ddmin needs O(n log n) tests on friendly inputs and
#: O(n^2) at worst; after the saga and kind passes n is small, so this is rarely reached.
MAX_TESTS = 400
#: How many of a run's violating sagas the focus pass starts from (each then gets its own
#: kinds pass and ddmin, within the one budget of MAX_TESTS replays).
MAX_FOCUS = 4
#: How many rounds of moving crashes (to their instant, closer to the step they undo) and
#: ddmin after it a shrink tries; each round that changes nothing ends them.
MAX_MOVES = 3
#: Crashes that strike at a commit (of a saga's step) rather than at a time.
COMMIT_CRASHES = frozenset({"crash_after_commit", "crash_before_commit"})
#: What the network does to a message: what a crash moved to the right moment may not need.
NETWORK_KINDS = frozenset({"drop", "delay", "duplicate", "reorder"})
#: How many neighbours of a violating saga the focus pass pairs it with, when the saga's own
#: decisions are not enough to break the invariant again.
MAX_PAIRS = 8
#: How many of the network's decisions `closer` leaves out one at a time.
MAX_LEFT_OUT = 8


class ReplayError(SagaError):
    """A replay file that cannot be read, or names something that cannot be rebuilt."""


# -- what counts as "still failing" ------------------------------------------------------------


def violation_of(result: SimulationResult, invariant: str) -> Violation | None:
    """The first violation of `invariant` in `result`; the saga it names may differ from the
    original run's."""
    return next((v for v in result.violations if v.invariant == invariant), None)


def decision_saga(decision: Decision) -> str | None:
    """The saga a decision applies to; None for timed ones (a partition, a crash at a time),
    which apply to a service."""
    if decision.kind in TIMED_KINDS or len(decision.key) < 2:
        return None
    return str(decision.key[1])


def neighbours(saga_id: str, order: Sequence[str], limit: int = MAX_PAIRS) -> list[str]:
    """The `limit` sagas of `order` nearest to `saga_id`, nearest first: sagas started close
    together are the ones that overlap, compete for stock or share a service's memory."""
    if saga_id not in order:
        return list(order[:limit])
    place = {s: i for i, s in enumerate(order)}
    at = place[saga_id]
    others = [s for s in order if s != saga_id]
    return sorted(others, key=lambda s: (abs(place[s] - at), place[s]))[:limit]


def trace_digest(result: SimulationResult) -> str:
    """sha256 of the JSONL trace, what `replay --trace` would write."""
    return "sha256:" + hashlib.sha256(result.trace_text().encode("utf-8")).hexdigest()


# -- delta debugging ---------------------------------------------------------------------------


class _Budget(Exception):
    """Raised inside a test when the budget is spent; ddmin keeps its best so far."""


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool]) -> list[T]:
    """Zeller's ddmin: a 1-minimal sublist of `items` (order kept) for which `fails` holds,
    given that it holds for `items`. `fails` may raise `_Budget` to stop early: the smallest
    failing list found so far is returned.
    """
    current = list(items)
    try:
        if current and fails([]):
            return []
        granularity = 2
        while len(current) >= 2:
            chunks = _split(current, granularity)
            for chunk in chunks:
                if fails(chunk):
                    current, granularity = chunk, 2
                    break
            else:
                for index in range(len(chunks)):
                    complement = [x for i, c in enumerate(chunks) if i != index for x in c]
                    if fails(complement):
                        current, granularity = complement, max(granularity - 1, 2)
                        break
                else:
                    if granularity >= len(current):
                        break
                    granularity = min(len(current), granularity * 2)
    except _Budget:
        pass
    return current


def _split(items: list[T], parts: int) -> list[list[T]]:
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return [c for c in chunks if c]


@attrs.frozen(kw_only=True)
class ShrinkResult:
    decisions: tuple[Decision, ...]
    invariant: str
    violation: Violation | None  # None: the full replay did not reproduce the violation
    recorded: int  # how many decisions the original run made
    tests: int  # how many replays the shrink ran
    passes: tuple[str, ...]  # what each pass left, for the curious

    @property
    def reproduced(self) -> bool:
        return self.violation is not None


def shrink(
    scenario: Scenario,
    decisions: Sequence[Decision],
    invariant: str,
    *,
    saga: SagaDefinition | None = None,
    max_tests: int = MAX_TESTS,
) -> ShrinkResult:
    """The smallest subset of `decisions` (in their order) whose replay still violates
    `invariant`: for each saga that broke it, keep only that saga's decisions (and the timed
    ones; with its nearest neighbour's if it needs another saga), drop whole kinds of decision
    and ddmin what is left, the smallest result winning; then move crashes to where they need
    fewer decisions to strike (`in_time`, `closer`) and ddmin again."""
    recorded = tuple(decisions)
    cache: dict[tuple[int, ...], bool] = {}
    #: Every decision a candidate may hold, recorded or made by the shrink (a crash moved to
    #: its instant): a decision's place here is its identity in the cache and its order.
    known = list(recorded)
    position = {id(d): i for i, d in enumerate(known)}
    found: dict[tuple[int, ...], list[Violation]] = {}

    def key_of(subset: list[Decision]) -> tuple[int, ...]:
        return tuple(position[id(d)] for d in subset)

    def violators(subset: list[Decision]) -> set[str | None]:
        """The sagas that broke the invariant in the replay of `subset` (one that failed)."""
        return {v.saga_id for v in found.get(key_of(subset), ())}

    def fails(subset: list[Decision]) -> bool:
        key = key_of(subset)
        if key in cache:
            return cache[key]
        if len(cache) >= max_tests:
            raise _Budget
        sim = scenario.simulation(
            decisions=subset, saga=saga, keep_trace=False, raise_is_violation=True
        )
        violations = [v for v in simulate(sim).violations if v.invariant == invariant]
        cache[key] = bool(violations)
        if violations:
            found[key] = violations
        return bool(violations)

    def kinds(current: list[Decision]) -> list[Decision]:
        """Drop whole kinds of decision, the most frequent first."""
        by_count: dict[str, int] = {}
        for d in current:
            by_count[d.kind] = by_count.get(d.kind, 0) + 1
        try:
            for kind in sorted(by_count, key=lambda k: (-by_count[k], k)):
                without = [d for d in current if d.kind != kind]
                if len(without) < len(current) and fails(without):
                    current = without
        except _Budget:
            pass
        return current

    def as_crash_at(
        current: list[Decision],
        crash: Decision,
        instants: Iterable[int],
        without: Sequence[Decision] = (),
    ) -> list[Decision]:
        """`current` less `without`, with `crash` made a crash of its service at the first of
        `instants` at which the replay still fails; `current` itself if it fails at none."""
        service = str(crash.key[0])
        left_out = {id(d) for d in without}
        for instant in instants:
            timed = Decision(kind="crash_at", key=(service, instant), value=crash.value)
            position[id(timed)] = len(known)
            known.append(timed)
            candidate = [timed if d is crash else d for d in current if id(d) not in left_out]
            if fails(candidate):
                return candidate
        return current

    def in_time(current: list[Decision]) -> list[Decision]:
        """Each crash that struck at the commit of a saga that did not break the invariant, as
        a crash at that instant (just after it, else at it): it then needs none of that saga's
        decisions to happen, and ddmin can drop them. A crash at a violating saga's own commit
        stays: it says more than a time does."""
        broke = violators(current)
        anchored = [d for d in current if d.kind in COMMIT_CRASHES and str(d.key[1]) not in broke]
        if not anchored:
            return current
        traced = simulate(
            scenario.simulation(decisions=current, saga=saga, raise_is_violation=True)
        )
        struck = {
            (r.node, r.saga, r.info.startswith("after its effects")): r.t_us
            for r in reversed(traced.trace.records)
            if r.kind == "crash" and r.saga
        }
        try:
            for crash in anchored:
                where = (str(crash.key[0]), str(crash.key[1]), crash.kind == "crash_before_commit")
                if (at := struck.get(where)) is not None:
                    current = as_crash_at(current, crash, (at + 1, at))
        except _Budget:
            pass
        return current

    def closer(current: list[Decision]) -> list[Decision]:
        """Each crash at a time, moved to just after a moment the crashed service worked on a
        saga that broke the invariant: a crash right after the step it undoes needs no delays
        to line that saga up with it. First without any of the network's decisions, then
        without each one of them (at any such moment), else with them all (at an earlier
        one): the first that still fails."""
        broke = violators(current)
        try:
            for crash in [d for d in current if d.kind == "crash_at"]:
                service, at = str(crash.key[0]), int(crash.key[1])
                network = [d for d in current if d.kind in NETWORK_KINDS]
                tries: list[tuple[Sequence[Decision], int | None]] = (
                    [(network, None)] if network else []
                )
                if len(network) > 1:
                    tries += [([d], None) for d in network[:MAX_LEFT_OUT]]
                for without, before in (*tries, ((), at)):
                    left_out = {id(d) for d in without}
                    rest = [d for d in current if d is not crash and id(d) not in left_out]
                    traced = simulate(
                        scenario.simulation(decisions=rest, saga=saga, raise_is_violation=True)
                    )
                    instants = {
                        r.t_us + 1
                        for r in traced.trace.records
                        if r.node == service
                        and r.saga in broke
                        and (before is None or r.t_us + 1 < before)
                    }
                    moved = as_crash_at(current, crash, sorted(instants), without)
                    if moved is not current:
                        current = moved
                        break
        except _Budget:
            pass
        return current

    passes: list[str] = []
    full = list(recorded)
    try:
        reproduced = fails(full)
    except _Budget:
        reproduced = False
    if not reproduced:
        return ShrinkResult(
            decisions=recorded,
            invariant=invariant,
            violation=None,
            recorded=len(recorded),
            tests=len(cache),
            passes=("the full replay does not reproduce the violation",),
        )
    # Every saga that broke the invariant is a place to start (issue 11): one saga's failure
    # may need other sagas' decisions (they compete for stock) while another's needs none.
    # The focus on each, smallest first, then kinds and ddmin; the smallest result wins.
    sagas = list(dict.fromkeys(v.saga_id for v in found[tuple(range(len(recorded)))]))
    focused_on = {
        s: [d for d in full if decision_saga(d) in (s, None)] for s in sagas if s is not None
    }
    starts = sorted(focused_on, key=lambda s: (len(focused_on[s]), s))[:MAX_FOCUS]
    order = list(dict.fromkeys(s for d in full if (s := decision_saga(d)) is not None))

    def with_neighbour(saga_id: str) -> list[Decision]:
        """A failure that needs another saga too (two trips overlapping at one hotel): the
        saga's decisions with those of each of its nearest neighbours in turn, the first pair
        that fails again; [] if none does."""
        for other in neighbours(saga_id, order):
            pair = [d for d in full if decision_saga(d) in (saga_id, other, None)]
            if fails(pair):
                return pair
        return []

    best: list[Decision] | None = None
    for saga_id in starts:
        focused = focused_on[saga_id]
        try:
            if not (len(focused) < len(full) and fails(focused)):
                focused = with_neighbour(saga_id)
                if not focused:
                    continue
        except _Budget:
            break
        reduced = ddmin(kinds(focused), fails)
        passes.append(f"saga {saga_id}: {len(focused)} -> {len(reduced)}")
        if best is None or len(reduced) < len(best):
            best = reduced
        if len(best) <= 1:
            break
    if best is None:
        best = ddmin(kinds(full), fails)
        passes.append(f"all sagas: {len(best)}")
    # Moving a crash may free other decisions, and a smaller set may let a crash move again.
    for _ in range(MAX_MOVES):
        before = best
        for move in (in_time, closer):
            moved = move(best)
            if moved is not best:
                best = ddmin(moved, fails)
                passes.append(f"{move.__name__}: {len(best)}")
        if best is before:
            break
    passes.append(f"ddmin: {len(best)}")
    violations = found.get(key_of(best))
    return ShrinkResult(
        decisions=tuple(best),
        invariant=invariant,
        violation=violations[0] if violations else None,
        recorded=len(recorded),
        tests=len(cache),
        passes=tuple(passes),
    )


# -- the replay file ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ReplayFile:
    """Everything needed to re-run a failing run exactly, as one JSON file.

    The scenario's TOML text travels with it, so the replay does not depend on the scenario
    directory it was found with; `seed` and `faults` say where the decisions came from (and let
    a person re-run the unshrunk search), the `decisions` alone drive the replay. A file whose
    `decisions` is None (null) re-runs the seed with its fault specs instead. `saga` names the
    saga it ran (`module:attribute`), which `replay` loads only if it ships with trio-saga or
    the user names it with `--saga`: opening a file never imports code on its own.
    """

    scenario: str
    seed: int
    faults: tuple[str, ...]
    decisions: tuple[Decision, ...] | None
    invariant: str
    saga: str = "shop"
    saga_id: str | None = None
    detail: str = ""
    swarm: bool = False
    shrunk: bool = True
    recorded: int = 0
    tests: int = 0
    trace_digest: str = ""
    scenario_toml: str | None = None
    #: Every invariant the failing run broke, by name (the first is `invariant`).
    violated: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "scenario": self.scenario,
            "saga": self.saga,
            "seed": self.seed,
            "swarm": self.swarm,
            "faults": list(self.faults),
            "invariant": self.invariant,
            "violated": list(self.violated or (self.invariant,)),
            "saga_id": self.saga_id,
            "violation": self.detail,
            "shrunk": self.shrunk,
            "recorded_decisions": self.recorded,
            "shrink_tests": self.tests,
            "decisions": None if self.decisions is None else [d.to_json() for d in self.decisions],
            "trace_digest": self.trace_digest,
            "scenario_toml": self.scenario_toml,
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReplayFile:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ReplayError(f"cannot read replay file {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise ReplayError(f"replay file {path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ReplayError(f"{path} is not a trio-saga replay file")
        if data.get("version") not in (1, VERSION):
            raise ReplayError(f"{path}: unsupported replay file version {data.get('version')!r}")
        try:
            return cls._from_data(data)
        except (KeyError, TypeError, ValueError, SagaError) as exc:
            raise ReplayError(f"replay file {path} is malformed: {exc}") from None

    @classmethod
    def _from_data(cls, data: dict[str, Any]) -> ReplayFile:
        decisions = data["decisions"]
        faults = data.get("faults", [])
        if decisions is not None and (
            not isinstance(decisions, list) or not all(isinstance(d, dict) for d in decisions)
        ):
            raise TypeError("decisions must be a list of objects (or null: re-run the seed)")
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise TypeError("faults must be a list of strings")
        toml = data.get("scenario_toml")
        if not (toml is None or isinstance(toml, str)):
            raise TypeError("scenario_toml must be a string")
        seed, invariant = data["seed"], data["invariant"]
        if data["version"] == 1:
            if data.get("variant"):
                raise ValueError("it names a planted variant (version 1); re-create it")
            invariant = V1_INVARIANTS.get(invariant, invariant)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError("seed must be an integer")
        if not isinstance(invariant, str) or not invariant:
            raise TypeError("invariant must be the name of an invariant")
        saga = data.get("saga", "shop")
        if not isinstance(saga, str) or not saga:
            raise TypeError("saga must be a string (module:attribute)")
        saga_id = data.get("saga_id", data.get("saga") if data["version"] == 1 else None)
        violated = data.get("violated", [invariant])
        if not isinstance(violated, list) or not all(isinstance(v, str) for v in violated):
            raise TypeError("violated must be a list of invariant names")
        return cls(
            scenario=str(data["scenario"]),
            saga="shop" if data["version"] == 1 else saga,
            seed=seed,
            faults=tuple(faults),
            decisions=None
            if decisions is None
            else tuple(Decision.from_json(d) for d in decisions),
            invariant=invariant,
            saga_id=None if saga_id is None else str(saga_id),
            detail=str(data.get("violation", "")),
            swarm=bool(data.get("swarm", False)),
            shrunk=bool(data.get("shrunk", True)),
            recorded=_count(data.get("recorded_decisions", 0)),
            tests=_count(data.get("shrink_tests", 0)),
            trace_digest=str(data.get("trace_digest", "")),
            scenario_toml=toml,
            violated=tuple(violated),
        )

    def load_saga(self, named: str | None = None) -> SagaDefinition:
        """The saga to replay on: `named` (the user's `--saga`), else the recorded one if it
        ships with trio-saga. A file never makes us import a module on its own."""
        if named is not None:
            return load_saga(named)
        if self.saga in BUILT_IN or self.saga in BUILT_IN.values():
            return load_saga(self.saga)
        raise ReplayError(
            f"this replay ran on saga {self.saga}; a replay file never imports code by itself:"
            f" name it with --saga-def {self.saga} (its module on PYTHONPATH, or PATH.py:attribute)"
        )

    def load_scenario(self, saga: SagaDefinition) -> Scenario:
        """The embedded scenario (or the named one), on `saga` whatever the TOML names; the
        invariants the file names must be the saga's."""
        names = saga.reported_invariants
        unknown = [name for name in (self.invariant, *self.violated) if name not in names]
        if unknown:
            raise ReplayError(
                f"this replay names invariant {unknown[0]!r}, which saga {saga.name} does not"
                f" have ({', '.join(saga.invariants)})"
            )
        if self.scenario_toml is not None:
            return Scenario.from_toml(self.scenario, self.scenario_toml, saga=saga)
        return Scenario.load(self.scenario)

    def simulation(self, saga: SagaDefinition, **options: Any) -> Simulation:
        """The exact run: the recorded decisions, on `saga`."""
        options.setdefault("raise_is_violation", True)  # a raise may be what it recorded
        return self.load_scenario(saga).simulation(
            self.seed, faults=self.faults, decisions=self.decisions, saga=saga, **options
        )

    def run(self, saga: SagaDefinition) -> SimulationResult:
        return simulate(self.simulation(saga))


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a count, got {value!r}")
    return value


def scenario_text(scenario: Scenario) -> str | None:
    """TOML that loads back as `scenario`, to embed in a replay file: its file's own text when
    that still says the same, else the scenario written out afresh (one built in code, or a
    file edited since). None only if neither round-trips."""
    path = scenario.path or scenario_dir() / f"{scenario.name}.toml"
    try:
        text = path.read_text(encoding="utf-8")
        if Scenario.from_toml(scenario.name, text, saga=scenario.saga) == scenario:
            return text
    except (OSError, UnicodeDecodeError, SagaError):
        pass
    text = scenario_toml(scenario)
    try:
        loaded = Scenario.from_toml(scenario.name, text, saga=scenario.saga)
        return text if loaded == scenario else None
    except SagaError:
        return None


def scenario_toml(scenario: Scenario) -> str:
    """`scenario` in the scenario file format (see `scenario.py`)."""

    def value(v: object) -> str:
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return repr(v)  # TOML reads inf and nan as Python writes them
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{value(k)} = {value(x)}" for k, x in v.items()) + "}"
        return str(v)

    lines = [
        f"description = {value(scenario.description)}",
        f"saga = {value(scenario.saga_name)}",
        f"seed = {scenario.seed}",
        f"max_time = {value(float(scenario.max_time))}",
        f"faults = {value(list(scenario.faults))}",
    ]
    if scenario.state:
        lines += ["", "[state]"] + [f"{value(k)} = {value(v)}" for k, v in scenario.state.items()]
    for group in scenario.groups:
        lines += [
            "",
            "[[sagas]]",
            f"count = {group.count}",
            f"start = {value(float(group.start))}",
            f"every = {value(float(group.every))}",
            f"fail = {value(sorted(group.fail))}",
        ]
        lines += [f"{value(k)} = {value(v)}" for k, v in group.fields.items()]
    lines += ["", "[expect]"]
    if scenario.expect is None:
        lines.append("invariants_only = true")
    else:
        lines += [f"{k} = {v}" for k, v in scenario.expect.items()]
    return "\n".join(lines) + "\n"


def count_kinds(decisions: Iterable[Decision]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return dict(sorted(counts.items()))
