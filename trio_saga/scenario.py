"""Scenarios: TOML files (named ones in `scenarios/`, or any file by path), parsed and
validated at the edge into a `Scenario` that builds a `Simulation` for any seed.

This module owns the scenario file format (documented in the README) and the comparison of a
run's outcome counts with what the file expects. It must never run anything itself; loading a
file imports only the saga module the file names (the user chose the file, and with it the
saga), never anything else.

    description = "One line shown by `run.py scenarios`."
    saga = "travel:saga"          # module:attribute, or "shop" (the default); the module is
                                  # found on PYTHONPATH, or beside this file (or its parent)
    seed = 1                      # default seed
    max_time = 600                # virtual seconds before giving up on quiet (optional)
    faults = ["drop:p=0.1"]       # fault specs, the same syntax as --fault

    [state]                       # the saga's initial state, given to its services factory
    funds = 1000000.0             # (the shop's: stock, default_stock, unit_price, funds)
    [state.stock]
    abc123 = 5

    [[sagas]]                     # one or more groups of sagas, named saga-1, saga-2, ...
    count = 10
    start = 0.0                   # when the first starts, virtual seconds
    every = 0.1                   # then one every ... seconds
    fail = ["payment"]            # force these steps to fail for this group (optional)
    sku = "abc123"                # any other key is an order field of the saga
    quantity = 1                  # (the shop's: sku, quantity, amount)

    [expect]                      # expected outcome counts (missing ones are 0),
    completed = 10                # or invariants_only = true
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from faults.base import Decision, Fault, FaultInjector
from faults.registry import parse_fault

from .errors import SagaError, ScenarioError
from .saga import OUTCOMES, SagaDefinition, load_saga
from .shop import SHOP
from .simulation import SagaOrder, Simulation, SimulationResult

#: The most sagas one scenario may start (a typo of a few zeros must not hang the machine).
MAX_SAGAS = 1_000_000
#: The longest virtual time a scenario may run or schedule anything at: a year.
MAX_SECONDS = 365 * 24 * 3600.0

GROUP_KEYS = ("count", "start", "every", "fail")
TOP_KEYS = ("description", "saga", "seed", "max_time", "faults", "state", "sagas", "expect")


def scenario_dir() -> Path:
    """Where the named scenarios live: $TRIO_SAGA_SCENARIOS, else the repository's
    `scenarios/` beside the package."""
    override = os.environ.get("TRIO_SAGA_SCENARIOS")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "scenarios"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in scenario_dir().glob("*.toml"))


def is_path(name: str) -> bool:
    """Whether a scenario argument is a file path rather than a name."""
    return name.endswith(".toml") or os.sep in name or "/" in name


@attrs.frozen(kw_only=True)
class SagaGroup:
    count: int
    start: float = 0.0
    every: float = 0.0
    fail: frozenset[str] = frozenset()
    fields: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    description: str
    saga: SagaDefinition = SHOP
    #: How the file named its saga ("shop" when it named none).
    saga_name: str = "shop"
    seed: int = 1
    max_time: float = 600.0
    faults: tuple[str, ...] = ()
    groups: tuple[SagaGroup, ...] = ()
    state: Mapping[str, Any] = attrs.field(factory=dict)
    expect: Mapping[str, int] | None = None  # None: invariants only
    #: The file it came from, if any (eq=False: the same text is the same scenario).
    path: Path | None = attrs.field(default=None, eq=False)

    @classmethod
    def load(cls, name: str) -> Scenario:
        """A named scenario, or a scenario file by path."""
        if is_path(name):
            return cls.from_path(Path(name))
        path = scenario_dir() / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(scenario_names()) or "none"
            raise ScenarioError(
                f"unknown scenario {name!r} (known: {known}; or give a path to a .toml file)"
            )
        return cls.from_path(path, name=name)

    @classmethod
    def from_path(cls, path: Path, *, name: str | None = None) -> Scenario:
        label = name or path.stem
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ScenarioError(f"scenario {label}: not UTF-8 text ({exc.reason})") from None
        return cls.from_toml(label, text, near=path.resolve().parent, path=path)

    @classmethod
    def from_toml(
        cls,
        name: str,
        text: str,
        *,
        near: Path | None = None,
        path: Path | None = None,
        saga: SagaDefinition | None = None,
    ) -> Scenario:
        """Parse and validate a scenario file's text. With `saga`, the file runs on that saga
        and the one it names is not imported (a replay file's embedded scenario)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"scenario {name}: not valid TOML: {exc}") from None
        try:
            return cls._from_data(name, data, near, path, saga)
        except (TypeError, ValueError, SagaError) as exc:
            raise ScenarioError(f"scenario {name}: {exc}") from None

    @classmethod
    def _from_data(
        cls,
        name: str,
        data: dict[str, Any],
        near: Path | None,
        path: Path | None,
        saga: SagaDefinition | None,
    ) -> Scenario:
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(TOP_KEYS)})")
        saga_name = _get(data, "saga", str, "shop")
        if saga is None:
            saga = load_saga(saga_name, near=near)
        faults = tuple(_get(data, "faults", list, []))
        for spec in faults:
            if not isinstance(spec, str):
                raise TypeError(f"faults must be strings, got {spec!r}")
        state = dict(_get(data, "state", dict, {}))
        groups = tuple(_group(saga, g, i + 1) for i, g in enumerate(_get(data, "sagas", list)))
        if not groups:
            raise ValueError("needs at least one [[sagas]] group")
        total = sum(g.count for g in groups)
        if total > MAX_SAGAS:
            raise ValueError(f"starts {total:,} sagas; at most {MAX_SAGAS:,}")
        seed = _get(data, "seed", int, 1)
        max_time = float(_get(data, "max_time", (int, float), 600.0))
        if not (math.isfinite(max_time) and 0 < max_time <= MAX_SECONDS):
            raise ValueError(
                f"max_time must be a number of seconds, 0 < max_time <= {MAX_SECONDS:g}"
            )
        scenario = cls(
            name=name,
            description=_get(data, "description", str),
            saga=saga,
            saga_name=saga_name,
            seed=seed,
            max_time=max_time,
            faults=faults,
            groups=groups,
            state=state,
            expect=_expect(data),
            path=path,
        )
        if scenario.expect is not None and sum(scenario.expect.values()) != total:
            raise ValueError(
                f"[expect] counts add up to {sum(scenario.expect.values())}, but the scenario"
                f" starts {total} sagas"
            )
        scenario.check()
        return scenario

    def check(self) -> None:
        """Validate what only the saga can judge: its state, its fault names (raises)."""
        self.saga.make_services(self.state)
        FaultInjector(faults=self.fault_plugins(), saga=self.saga)

    def with_faults(self, specs: Sequence[str]) -> Scenario:
        """This scenario with more faults (the command line's --fault), checked."""
        if not specs:
            return self
        more = attrs.evolve(self, faults=(*self.faults, *specs))
        try:
            more.check()
        except SagaError as exc:
            raise ScenarioError(f"--fault: {exc}") from None
        return more

    @property
    def saga_count(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def span(self) -> float:
        """How long the scenario keeps starting sagas (virtual s): where timed faults go."""
        return max((g.start + (g.count - 1) * g.every for g in self.groups), default=0.0)

    def orders(self) -> list[SagaOrder]:
        made: list[SagaOrder] = []
        for group in self.groups:
            for i in range(group.count):
                made.append(
                    SagaOrder(
                        saga_id=f"saga-{len(made) + 1}",
                        at=group.start + i * group.every,
                        fail=group.fail,
                        fields=group.fields,
                    )
                )
        return made

    def fault_plugins(self, specs: Sequence[str] | None = None) -> list[Fault]:
        return [parse_fault(spec) for spec in (self.faults if specs is None else specs)]

    def simulation(
        self,
        seed: int | None = None,
        *,
        faults: Sequence[str] | None = None,
        decisions: Sequence[Decision] | None = None,
        saga: SagaDefinition | None = None,
        **options: Any,
    ) -> Simulation:
        """The run of this scenario with `seed` (default: the file's), optionally with other
        fault specs, replaying recorded `decisions`, or on another `saga` (a planted bug)."""
        return Simulation(
            orders=self.orders(),
            saga=self.saga if saga is None else saga,
            state=self.state,
            faults=self.fault_plugins(faults),
            seed=self.seed if seed is None else seed,
            max_time=self.max_time,
            decisions=decisions,
            **options,
        )

    def outcome_mismatches(self, result: SimulationResult) -> list[str]:
        """How the outcome counts differ from [expect]; empty when they match (or when the
        scenario checks invariants only). A stuck saga is always a mismatch."""
        counts = result.counts()
        problems = []
        if counts.get("in_progress", 0):
            problems.append(f"{counts['in_progress']} saga(s) still in progress")
        unstarted = self.saga_count - len(result.saga_log)
        if unstarted > 0:
            problems.append(f"{unstarted} saga(s) never started")
        if self.expect is not None:
            for outcome in OUTCOMES:
                if counts.get(outcome, 0) != self.expect[outcome]:
                    problems.append(
                        f"expected {self.expect[outcome]} {outcome}, got {counts.get(outcome, 0)}"
                    )
        return problems


def _get(data: Mapping[str, Any], key: str, kind: Any, default: Any = attrs.NOTHING) -> Any:
    if key not in data:
        if default is attrs.NOTHING:
            raise ValueError(f"missing {key!r}")
        return default
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TypeError(f"{key!r} has the wrong type: {value!r}")
    return value


def _seconds(where: str, value: float) -> float:
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise ValueError(f"{where} must be a number of seconds from 0 to {MAX_SECONDS:g}")
    return float(value)


def _group(saga: SagaDefinition, data: object, number: int) -> SagaGroup:
    where = f"[[sagas]] group {number}"
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be a table")
    try:
        count = _get(data, "count", int)
        if not 1 <= count <= MAX_SAGAS:
            raise ValueError(f"count must be from 1 to {MAX_SAGAS:,}")
        fail = _get(data, "fail", list, [])
        bad = sorted({str(step) for step in fail} - set(saga.fallible_steps))
        if bad or not all(isinstance(step, str) for step in fail):
            raise ValueError(
                f"fail: no step {bad[0] if bad else fail!r} that can fail"
                f" (steps of saga {saga.name} that can: {', '.join(saga.fallible_steps)})"
            )
        fields = {k: v for k, v in data.items() if k not in GROUP_KEYS}
        saga.check_order(fields)
        return SagaGroup(
            count=count,
            start=_seconds("start", _get(data, "start", (int, float), 0.0)),
            every=_seconds("every", _get(data, "every", (int, float), 0.0)),
            fail=frozenset(fail),
            fields=fields,
        )
    except (TypeError, ValueError, SagaError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _expect(data: Mapping[str, Any]) -> dict[str, int] | None:
    if "expect" not in data:
        raise ValueError("missing [expect]: give outcome counts, or invariants_only = true")
    expect_data = _get(data, "expect", dict)
    extra = sorted(set(expect_data) - set(OUTCOMES) - {"invariants_only"})
    if extra:
        raise ValueError(f"unknown outcome {extra[0]!r} in [expect]")
    invariants_only = expect_data.get("invariants_only", False)
    if not isinstance(invariants_only, bool):
        raise ValueError("[expect] invariants_only must be true or false")
    if invariants_only:
        if set(expect_data) & set(OUTCOMES):
            raise ValueError("[expect] gives counts and invariants_only = true: choose one")
        return None
    expect: dict[str, int] = {}
    for outcome in OUTCOMES:
        value = expect_data.get(outcome, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"[expect] {outcome} must be a non-negative integer, got {value!r}")
        expect[outcome] = value
    return expect
