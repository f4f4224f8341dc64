"""Swarm testing (Groce, Zhang, Eide, Chen and Regehr, ISSTA 2012) for the fault injector.

This module owns swarm fault mixes: which fault kinds a seed turns on and how strongly, as
fault specs. It must never run anything, and never draw from a shared or unseeded RNG: the mix
is a pure function of the seed, so a run is reproducible from (scenario, seed, specs).

Running every seed with every fault at once tends to hide bugs: one fault masks another (a
partition that drops everything leaves no duplicate to mishandle). Swarm testing instead gives
each run its own random subset of the features, each at its own strength. Here a feature is a
fault kind; `swarm_faults(seed, span)` draws the subset and the parameters and returns them as
ordinary fault specs, which the explore report and the replay file record.

Orders are a feature too (`swarm_scenario`): a saga that declares `order_variants` (the shop:
quantities and amounts) gets, on half the seeds, each saga's fields drawn from them, so that a
refund of the wrong amount differs from the right one. The varied scenario is an ordinary
scenario (one group per saga), which the replay file embeds.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from faults import FaultInjector, parse_fault

from .saga import SagaDefinition
from .scenario import SagaGroup, Scenario
from .shop import SHOP

#: The chance that a seed turns a kind on. One half is the paper's choice: it maximises the
#: variety of subsets.
P_ON = 0.5


def _num(value: float) -> str:
    # Few digits keep the specs short to read; parse_fault reads back exactly what is written.
    return f"{value:.3g}"


def crash_points(saga: SagaDefinition) -> list[tuple[str, str]]:
    """Where a crash after a commit can strike: each step's service, after committing each
    event that step publishes (success, failure, compensation)."""
    return [
        (step.service, event)
        for step in saga.steps
        for event in (step.success, step.failure, step.compensation)
        if event is not None
    ]


def _drop(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    return f"drop:p={_num(rng.uniform(0.01, 0.3))}"


def _delay(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    dist = rng.choice(("constant", "uniform", "exponential"))
    mean = rng.uniform(0.005, 0.6)
    return f"delay:mean={_num(mean)},dist={dist},p={_num(rng.uniform(0.1, 1.0))}"


def _duplicate(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    return f"duplicate:p={_num(rng.uniform(0.01, 0.4))},copies={rng.randint(1, 3)}"


def _reorder(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    window, p = rng.uniform(0.05, 1.0), rng.uniform(0.1, 0.9)
    return f"reorder:window={_num(window)},p={_num(p)}"


def _partition(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    service = rng.choice(saga.service_names)
    start, duration = rng.uniform(0.0, span), rng.uniform(0.2, 6.0)
    direction = rng.choice(("both", "in", "out"))
    mode = rng.choice(("drop", "hold"))
    return (
        f"partition:service={service},start={_num(start)},duration={_num(duration)},"
        f"direction={direction},mode={mode}"
    )


def _crash_after(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    service, after = rng.choice(crash_points(saga))
    return (
        f"crash:service={service},after={after},downtime={_num(rng.uniform(0.1, 3.0))},"
        f"p={_num(rng.uniform(0.05, 1.0))},times={rng.randint(1, 3)}"
    )


def _crash_before(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    # A crash after a step's effects and before its commit: the step runs again.
    service, before = rng.choice(crash_points(saga))
    if rng.random() < 0.25:
        before = "any"
    return (
        f"crash:service={service},before={before},downtime={_num(rng.uniform(0.1, 3.0))},"
        f"p={_num(rng.uniform(0.05, 1.0))},times={rng.randint(1, 3)}"
    )


def _crash_at(rng: random.Random, span: float, saga: SagaDefinition) -> str:
    service = rng.choice(saga.service_names)
    at, downtime = rng.uniform(0.0, span), rng.uniform(0.1, 3.0)
    return f"crash:service={service},at={_num(at)},downtime={_num(downtime)}"


def _forced(rng: random.Random, span: float, saga: SagaDefinition) -> list[str]:
    # Every step draws its rate, on or off, so that a saga's steps share no draws with the
    # other features.
    steps = [step for step in saga.steps if step.failure is not None]
    drawn = [(step.name, rng.random() < P_ON, rng.uniform(0.02, 0.3)) for step in steps]
    return [f"fail_{name}:rate={_num(rate)}" for name, on, rate in drawn if on]


Draw = Callable[[random.Random, float, SagaDefinition], str]

#: Every feature in a fixed order: the order of draws is part of what the seed determines.
FEATURES: tuple[tuple[str, Draw], ...] = (
    ("drop", _drop),
    ("delay", _delay),
    ("duplicate", _duplicate),
    ("reorder", _reorder),
    ("partition", _partition),
    ("crash_after_commit", _crash_after),
    ("crash_at", _crash_at),
    ("crash_before_commit", _crash_before),
)


def swarm_faults(seed: int, span: float = 5.0, saga: SagaDefinition = SHOP) -> tuple[str, ...]:
    """The fault mix of `seed`: a subset of the fault kinds, each with drawn parameters.

    `span` is how long (virtual seconds) the scenario keeps starting sagas: timed faults
    (partitions, crashes at a time) start within it, where they can hit something.
    """
    # A string seed goes through SHA-512 in `random.seed`, so the mix is the same in every
    # process and under every PYTHONHASHSEED, and swarm seed n shares nothing with the
    # injector's own RNG for seed n.
    rng = random.Random(f"trio-saga swarm {seed}")
    span = max(span, 0.1)
    # Every feature draws its parameters whether on or off, so turning one kind on or off in a
    # future version does not reshuffle the others.
    drawn = [(rng.random() < P_ON, draw(rng, span, saga)) for _, draw in FEATURES]
    specs = tuple(spec for on, spec in drawn if on) + tuple(_forced(rng, span, saga))
    FaultInjector(faults=[parse_fault(spec) for spec in specs], saga=saga)  # a bad draw is a
    # bug here, not in the run it would spoil
    return specs


def swarm_scenario(seed: int, scenario: Scenario, saga: SagaDefinition) -> Scenario:
    """`scenario` with its orders varied for swarm seed `seed` (on half the seeds, when the
    saga declares `order_variants`): one group per saga, each field drawn from its variants.
    Otherwise the scenario itself."""
    variants = {k: v for k, v in saga.order_variants.items() if v}
    if not variants:
        return scenario
    rng = random.Random(f"trio-saga swarm orders {seed}")
    if rng.random() >= P_ON:
        return scenario
    groups: list[SagaGroup] = []
    for group in scenario.groups:
        for i in range(group.count):
            fields = dict(group.fields)
            for name, values in sorted(variants.items()):
                value = rng.choice(values)
                if value is None:
                    fields.pop(name, None)
                else:
                    fields[name] = value
            saga.check_order(fields)  # a bad variant is a bug of the definition
            groups.append(
                SagaGroup(
                    count=1, start=group.start + i * group.every, fail=group.fail, fields=fields
                )
            )
    return attrs.evolve(scenario, groups=tuple(groups), expect=None)
