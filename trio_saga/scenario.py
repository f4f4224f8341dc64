"""Named scenarios: TOML files in `scenarios/`, parsed and validated at the edge into a
`Scenario` that builds a `Simulation` for any seed.

This module owns the scenario file format (documented in the README) and the comparison of a
run's outcome counts with what the file expects. It must never run anything itself.

    description = "One line shown by `run.py scenarios`."
    seed = 1                      # default seed
    max_time = 600                # virtual seconds before giving up on quiet (optional)
    faults = ["drop:p=0.1"]       # fault specs, the same syntax as --fault
    default_stock = 1000          # stock of any sku not listed in [stock] (optional)
    unit_price = 99.99            # (optional)
    funds = 1000000.0             # payment's funds (optional)

    [stock]                       # initial stock per sku (optional)
    abc123 = 5

    [[sagas]]                     # one or more groups of sagas, named saga-1, saga-2, ...
    count = 10
    sku = "abc123"
    quantity = 1
    amount = 10.0                 # charge this instead of price x quantity (optional)
    start = 0.0                   # when the first starts, virtual seconds
    every = 0.1                   # then one every ... seconds
    fail = ["payment"]            # force these steps to fail for this group (optional)

    [expect]                      # expected outcome counts; or invariants_only = true
    completed = 10
    compensated = 0
    failed = 0
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from faults.base import Decision, Fault
from faults.registry import parse_fault

from .errors import FaultSpecError, ScenarioError
from .events import STEPS, amount_to_cents
from .services import (
    DEFAULT_FUNDS_CENTS,
    DEFAULT_STOCK,
    DEFAULT_UNIT_PRICE_CENTS,
    SagaService,
    default_services,
)
from .simulation import SagaOrder, Simulation, SimulationResult

OUTCOMES = ("completed", "compensated", "failed")


def scenario_dir() -> Path:
    """Where the named scenarios live: $TRIO_SAGA_SCENARIOS, else the repository's
    `scenarios/` beside the package."""
    override = os.environ.get("TRIO_SAGA_SCENARIOS")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "scenarios"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in scenario_dir().glob("*.toml"))


@attrs.frozen(kw_only=True)
class SagaGroup:
    count: int
    sku: str = "abc123"
    quantity: int = 1
    amount_cents: int | None = None
    start: float = 0.0
    every: float = 0.0
    fail: frozenset[str] = frozenset()


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    description: str
    seed: int = 1
    max_time: float = 600.0
    faults: tuple[str, ...] = ()
    groups: tuple[SagaGroup, ...] = ()
    stock: Mapping[str, int] = attrs.field(factory=dict)
    default_stock: int = DEFAULT_STOCK
    unit_price_cents: int = DEFAULT_UNIT_PRICE_CENTS
    funds_cents: int = DEFAULT_FUNDS_CENTS
    expect: Mapping[str, int] | None = None  # None: invariants only

    @classmethod
    def load(cls, name: str) -> Scenario:
        path = scenario_dir() / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(scenario_names()) or "none"
            raise ScenarioError(f"unknown scenario {name!r} (known: {known})")
        return cls.from_toml(name, path.read_text(encoding="utf-8"))

    @classmethod
    def from_toml(cls, name: str, text: str) -> Scenario:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"scenario {name}: not valid TOML: {exc}") from None
        try:
            return cls._from_data(name, data)
        except (TypeError, ValueError, FaultSpecError) as exc:
            raise ScenarioError(f"scenario {name}: {exc}") from None

    @classmethod
    def _from_data(cls, name: str, data: dict[str, Any]) -> Scenario:
        known = {
            "description",
            "seed",
            "max_time",
            "faults",
            "default_stock",
            "unit_price",
            "funds",
            "stock",
            "sagas",
            "expect",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        description = _get(data, "description", str)
        faults = tuple(_get(data, "faults", list, []))
        for spec in faults:
            if not isinstance(spec, str):
                raise TypeError(f"faults must be strings, got {spec!r}")
            parse_fault(spec)  # validate now, with the scenario's name in the message
        groups = tuple(_group(g) for g in _get(data, "sagas", list))
        if not groups:
            raise ValueError("needs at least one [[sagas]] group")
        stock = _get(data, "stock", dict, {})
        for sku, count in stock.items():
            if not isinstance(count, int) or count < 0:
                raise ValueError(f"stock.{sku} must be a non-negative integer")
        expect_data = _get(data, "expect", dict, {})
        expect: dict[str, int] | None
        if expect_data.get("invariants_only", False):
            expect = None
        else:
            expect = {k: int(expect_data.get(k, 0)) for k in OUTCOMES}
            extra = sorted(set(expect_data) - set(OUTCOMES) - {"invariants_only"})
            if extra:
                raise ValueError(f"unknown outcome {extra[0]!r} in [expect]")
        return cls(
            name=name,
            description=description,
            seed=_get(data, "seed", int, 1),
            max_time=float(_get(data, "max_time", (int, float), 600.0)),
            faults=faults,
            groups=groups,
            stock=dict(stock),
            default_stock=_get(data, "default_stock", int, DEFAULT_STOCK),
            unit_price_cents=amount_to_cents(
                _get(data, "unit_price", (int, float), DEFAULT_UNIT_PRICE_CENTS / 100)
            ),
            funds_cents=amount_to_cents(
                _get(data, "funds", (int, float), DEFAULT_FUNDS_CENTS / 100)
            ),
            expect=expect,
        )

    @property
    def saga_count(self) -> int:
        return sum(g.count for g in self.groups)

    def orders(self) -> list[SagaOrder]:
        made: list[SagaOrder] = []
        for group in self.groups:
            for i in range(group.count):
                made.append(
                    SagaOrder(
                        saga_id=f"saga-{len(made) + 1}",
                        sku=group.sku,
                        quantity=group.quantity,
                        amount_cents=group.amount_cents,
                        at=group.start + i * group.every,
                        fail=group.fail,
                    )
                )
        return made

    def services(self) -> Sequence[SagaService]:
        return default_services(
            stock=dict(self.stock),
            default_stock=self.default_stock,
            unit_price_cents=self.unit_price_cents,
            funds_cents=self.funds_cents,
        )

    def fault_plugins(self, specs: Sequence[str] | None = None) -> list[Fault]:
        return [parse_fault(spec) for spec in (self.faults if specs is None else specs)]

    def simulation(
        self,
        seed: int | None = None,
        *,
        faults: Sequence[str] | None = None,
        decisions: Sequence[Decision] | None = None,
        **options: Any,
    ) -> Simulation:
        """The run of this scenario with `seed` (default: the file's), optionally with other
        fault specs, or replaying recorded `decisions`."""
        return Simulation(
            orders=self.orders(),
            faults=self.fault_plugins(faults),
            seed=self.seed if seed is None else seed,
            services=self.services,
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


def _group(data: object) -> SagaGroup:
    if not isinstance(data, dict):
        raise TypeError("each [[sagas]] entry must be a table")
    known = {"count", "sku", "quantity", "amount", "start", "every", "fail"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in [[sagas]]")
    fail = _get(data, "fail", list, [])
    bad = sorted(set(fail) - set(STEPS))
    if bad:
        raise ValueError(f"[[sagas]] fail: unknown step {bad[0]!r} (steps: {', '.join(STEPS)})")
    amount = _get(data, "amount", (int, float), None)
    group = SagaGroup(
        count=_get(data, "count", int),
        sku=_get(data, "sku", str, "abc123"),
        quantity=_get(data, "quantity", int, 1),
        amount_cents=None if amount is None else amount_to_cents(amount),
        start=float(_get(data, "start", (int, float), 0.0)),
        every=float(_get(data, "every", (int, float), 0.0)),
        fail=frozenset(fail),
    )
    if group.count < 1 or group.quantity < 1:
        raise ValueError("[[sagas]] count and quantity must be at least 1")
    return group
