"""The fault plugins and the injector, synchronously: spec parsing and its error messages, each
plugin's decisions from a seeded RNG, and recording / replaying decisions."""

from __future__ import annotations

import functools
import random
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faults import (
    FAULTS,
    Commit,
    Crash,
    Decision,
    Delay,
    Drop,
    Duplicate,
    Fault,
    FaultInjector,
    FaultSpecError,
    ForcedFailure,
    Partition,
    Reorder,
    Transmission,
    parse_fault,
)
from trio_saga.shop import SHOP
from trio_saga.trace import US

ROOT = Path(__file__).resolve().parent.parent


def tx(
    what: str = "InventoryReserved", saga: str = "saga-1", attempt: int = 1, now: int = 0
) -> Transmission:
    return Transmission(
        source="inventory", dest="payment", saga_id=saga, what=what, attempt=attempt, now=now
    )


def commit(
    service: str = "payment", produced: tuple[str, ...] = ("PaymentCharged",), saga: str = "saga-1"
) -> Commit:
    return Commit(service=service, saga_id=saga, produced=produced, now=0)


# -- the package itself ------------------------------------------------------------------------


def test_faults_package_imports_on_its_own() -> None:
    # A user script (or the README example) that imports `faults` before `trio_saga` must work.
    done = subprocess.run(
        [sys.executable, "-c", "import faults; print(sorted(faults.FAULTS))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert "drop" in done.stdout


def test_every_plugin_is_registered_under_its_name() -> None:
    assert sorted(FAULTS) == [
        "crash",
        "delay",
        "drop",
        "duplicate",
        "partition",
        "reorder",
    ]
    for name, cls in FAULTS.items():
        assert cls.name == name


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("drop", Drop()),
        ("drop:p=0.25", Drop(p=0.25)),
        ("drop:p=1,start=2,end=5.5", Drop(p=1.0, start=2.0, end=5.5)),
        ("delay:mean=0.2,dist=constant", Delay(mean=0.2, dist="constant")),
        ("delay:mean=1,dist=uniform,p=0.5", Delay(mean=1.0, dist="uniform", p=0.5)),
        ("duplicate:p=1,copies=3", Duplicate(p=1.0, copies=3)),
        ("reorder:window=2,p=0.9", Reorder(window=2.0, p=0.9)),
        (
            "partition:service=shipping,start=2,duration=3,direction=in,mode=hold",
            Partition(service="shipping", start=2.0, duration=3.0, direction="in", mode="hold"),
        ),
        ("crash:service=payment,at=2.5", Crash(service="payment", at=2.5)),
        (
            "crash:service=payment,after=PaymentCharged,downtime=0.5,times=2,p=0.5",
            Crash(service="payment", after="PaymentCharged", downtime=0.5, times=2, p=0.5),
        ),
        ("fail_inventory:saga=saga-1", ForcedFailure(step="inventory", saga="saga-1")),
        (
            "fail_payment:rate=0.5,reason=card_declined",
            ForcedFailure(step="payment", rate=0.5, reason="card_declined"),
        ),
        ("fail_shipping:saga=a+b", ForcedFailure(step="shipping", saga="a+b")),
        ("fail_car:rate=0.1", ForcedFailure(step="car", rate=0.1)),
        ("  drop:p=0.5 , start=1  ", Drop(p=0.5, start=1.0)),
    ],
)
def test_parse_fault(spec: str, expected: Fault) -> None:
    fault = parse_fault(spec)
    assert type(fault) is type(expected)
    assert fault == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "nope",
            "unknown fault 'nope' in 'nope' (known: crash, delay, drop, duplicate,"
            " partition, reorder, fail_STEP)",
        ),
        ("", "empty fault spec ''"),
        ("drop:q=1", "fault spec 'drop:q=1': unknown parameter 'q' (takes start, end, p)"),
        (
            "crash:at=1,when=2",
            "fault spec 'crash:at=1,when=2': unknown parameter 'when'"
            " (takes service, at, after, before, downtime, p, times)",
        ),
        ("drop:p", "fault spec 'drop:p': expected key=value, got 'p'"),
        ("drop:=3", "fault spec 'drop:=3': expected key=value, got '=3'"),
        ("drop:p=x", "fault spec 'drop:p=x': p='x' is not a number"),
        (
            "duplicate:copies=two",
            "fault spec 'duplicate:copies=two': copies='two' is not an integer",
        ),
        ("crash:at=x", "fault spec 'crash:at=x': at='x' is not a number"),
        ("drop:p=0.1,p=0.2", "fault spec 'drop:p=0.1,p=0.2': p is given twice"),
        (
            "drop:start=5,end=1",
            "fault spec 'drop:start=5,end=1': end must be after start, got start=5.0, end=1.0",
        ),
        (
            "crash:service=payment,at=1,times=0",
            "fault spec 'crash:service=payment,at=1,times=0': times must be at least 1, got 0",
        ),
        ("crash:at=1", "fault spec 'crash:at=1': service= is required"),
        ("partition:start=1", "fault spec 'partition:start=1': service= is required"),
        ("fail_payment", "fault spec 'fail_payment' can never act: give saga=ID[+ID...] or rate=P"),
        (
            "fail_payment:saga=",
            "fault spec 'fail_payment:saga=': saga= names no saga (give saga ids joined by +)",
        ),
        (
            "fail_:rate=1",
            "unknown fault 'fail_' in 'fail_:rate=1' (known: crash, delay, drop,"
            " duplicate, partition, reorder, fail_STEP)",
        ),
        ("drop:p=1.5", "fault spec 'drop:p=1.5': p must be between 0 and 1, got 1.5"),
        (
            "crash:service=payment,at=1,p=0",
            "fault spec 'crash:service=payment,at=1,p=0': p=0 can never act (give p in (0, 1])",
        ),
        (
            "partition:service=payment,start=inf",
            "fault spec 'partition:service=payment,start=inf': start must be between 0 and 86400"
            " seconds, got inf",
        ),
        (
            "partition:service=payment,duration=1e308",
            "fault spec 'partition:service=payment,duration=1e308': duration must be between 0"
            " and 86400 seconds, got 1e+308",
        ),
        (
            "crash:service=payment,at=1e9",
            "fault spec 'crash:service=payment,at=1e9': at must be a time in seconds, got"
            " 1000000000.0",
        ),
        ("delay:p=-0.1", "fault spec 'delay:p=-0.1': p must be between 0 and 1, got -0.1"),
        ("drop:p=nan", "fault spec 'drop:p=nan': p must be between 0 and 1, got nan"),
        (
            "fail_payment:rate=2",
            "fault spec 'fail_payment:rate=2': rate must be between 0 and 1, got 2.0",
        ),
        (
            "drop:start=-1",
            "fault spec 'drop:start=-1': start must be between 0 and 86400 seconds, got -1.0",
        ),
        (
            "delay:mean=-1",
            "fault spec 'delay:mean=-1': mean must be between 0 and 86400 seconds, got -1.0",
        ),
        # issue 10, items 7-8: every parameter of the network faults has a finite, sane range,
        # named in the error, and a value that can never act is refused
        (
            "delay:mean=inf",
            "fault spec 'delay:mean=inf': mean must be between 0 and 86400 seconds, got inf",
        ),
        (
            "delay:mean=1e308",
            "fault spec 'delay:mean=1e308': mean must be between 0 and 86400 seconds, got 1e+308",
        ),
        (
            "delay:mean=nan",
            "fault spec 'delay:mean=nan': mean must be between 0 and 86400 seconds, got nan",
        ),
        (
            "delay:mean=0",
            "fault spec 'delay:mean=0': mean=0 can never act"
            " (give mean between 1e-06 and 86400 seconds)",
        ),
        (
            "reorder:window=0",
            "fault spec 'reorder:window=0': window=0 can never act"
            " (give window between 1e-06 and 86400 seconds)",
        ),
        (
            "reorder:window=1e-9",
            "fault spec 'reorder:window=1e-9': window=1e-09 can never act"
            " (give window between 1e-06 and 86400 seconds)",
        ),
        (
            "reorder:window=-inf",
            "fault spec 'reorder:window=-inf': window must be between 0 and 86400 seconds,"
            " got -inf",
        ),
        (
            "duplicate:p=0.5,copies=1000000000",
            "fault spec 'duplicate:p=0.5,copies=1000000000': copies must be between 1 and 100,"
            " got 1000000000",
        ),
        ("drop:p=0", "fault spec 'drop:p=0': p=0 can never act (give p in (0, 1])"),
        ("delay:p=0", "fault spec 'delay:p=0': p=0 can never act (give p in (0, 1])"),
        ("duplicate:p=0", "fault spec 'duplicate:p=0': p=0 can never act (give p in (0, 1])"),
        ("reorder:p=0.0", "fault spec 'reorder:p=0.0': p=0 can never act (give p in (0, 1])"),
        (
            "drop:start=nan",
            "fault spec 'drop:start=nan': start must be between 0 and 86400 seconds, got nan",
        ),
        (
            "drop:start=inf",
            "fault spec 'drop:start=inf': start must be between 0 and 86400 seconds, got inf",
        ),
        (
            "delay:start=1e308",
            "fault spec 'delay:start=1e308': start must be between 0 and 86400 seconds, got 1e+308",
        ),
        (
            "drop:end=nan",
            "fault spec 'drop:end=nan': end must be between 0 and 86400 seconds, or inf, got nan",
        ),
        (
            "duplicate:end=1e308",
            "fault spec 'duplicate:end=1e308': end must be between 0 and 86400 seconds, or inf,"
            " got 1e+308",
        ),
        (
            "delay:dist=normal",
            "fault spec 'delay:dist=normal': dist must be one of constant, uniform, exponential,"
            " steps, got 'normal'",
        ),
        (
            "duplicate:copies=0",
            "fault spec 'duplicate:copies=0': copies must be between 1 and 100, got 0",
        ),
        (
            "partition:service=payment,direction=up",
            "fault spec 'partition:service=payment,direction=up': direction must be one of"
            " both, in, out, got 'up'",
        ),
        (
            "partition:service=payment,mode=lose",
            "fault spec 'partition:service=payment,mode=lose': mode must be one of drop, hold,"
            " got 'lose'",
        ),
        (
            "crash:service=payment",
            "fault spec 'crash:service=payment': give exactly one of at=SECONDS,"
            " after=EVENT_TYPE or before=EVENT_TYPE|any",
        ),
        (
            "crash:service=payment,at=1,after=PaymentCharged",
            "fault spec 'crash:service=payment,at=1,after=PaymentCharged': give exactly one of"
            " at=SECONDS, after=EVENT_TYPE or before=EVENT_TYPE|any",
        ),
        (
            "crash:service=payment,at=-1",
            "fault spec 'crash:service=payment,at=-1': at must be a time in seconds, got -1.0",
        ),
        (
            "crash:service=payment,at=inf",
            "fault spec 'crash:service=payment,at=inf': at must be a time in seconds, got inf",
        ),
        (
            "crash:service=payment,after=PaymentCharged,downtime=-1",
            "fault spec 'crash:service=payment,after=PaymentCharged,downtime=-1': downtime must"
            " be between 0 and 86400 seconds, got -1.0",
        ),
    ],
)
def test_bad_spec_is_a_one_line_fault_spec_error(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault(spec)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "crash:service=paymnt,at=1",
            "fault 'crash:service=paymnt,at=1': service must be one of inventory, payment,"
            " shipping, got 'paymnt'",
        ),
        (
            "partition:service=bus",
            "fault 'partition:service=bus': service must be one of inventory, payment,"
            " shipping, got 'bus'",
        ),
        (
            "crash:service=payment,after=PaymentCharge",
            "fault 'crash:service=payment,after=PaymentCharge': after (an event type of the"
            " saga) must be one of InventoryReserved, PaymentCharged, ShipmentCreated,"
            " InventoryReservationFailed, PaymentFailed, ShipmentFailed, InventoryReleased,"
            " PaymentRefunded, got 'PaymentCharge'",
        ),
        (
            "fail_car:rate=0.5",
            "fault 'fail_car:rate=0.5': the step of fail_STEP (a step that can fail) must be one"
            " of inventory, payment, shipping, got 'car'",
        ),
    ],
)
def test_names_in_a_spec_are_checked_against_the_saga(spec: str, message: str) -> None:
    fault = parse_fault(spec)  # the syntax is fine: only the saga knows its names
    with pytest.raises(FaultSpecError) as caught:
        FaultInjector(faults=[fault], saga=SHOP)
    assert str(caught.value) == message


ROUND_TRIP = [
    "drop",
    "drop:p=0.3,start=1,end=4",
    "delay:mean=0.125,dist=uniform,p=0.75",
    "delay:dist=constant",
    "duplicate:p=1,copies=2",
    "reorder:window=0.05",
    "partition:service=inventory,start=0.5,duration=10,direction=out,mode=hold",
    "crash:service=payment,at=3",
    "crash:service=shipping,after=ShipmentCreated,downtime=2,times=3",
    "fail_inventory:saga=s1+s2",
    "fail_payment:rate=0.1",
    "fail_shipping:rate=1,reason=lost_parcel",
    "fail_car:saga=trip-1",
]


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_describe_round_trips_through_parse_fault(spec: str) -> None:
    fault = parse_fault(spec)
    described = fault.describe()
    again = parse_fault(described)
    assert again == fault
    assert again.describe() == described


def test_describe_omits_defaults() -> None:
    assert Drop().describe() == "drop"
    assert Drop(p=0.5).describe() == "drop:p=0.5"
    assert (
        Crash(service="payment", after="PaymentCharged").describe()
        == "crash:service=payment,after=PaymentCharged"
    )
    assert Partition(service="payment", start=2.0).describe() == "partition:service=payment,start=2"


@given(
    p=st.floats(min_value=0, max_value=1, exclude_min=True),
    start=st.floats(min_value=0, max_value=86_400),
    mean=st.floats(min_value=1e-6, max_value=1e3),
    dist=st.sampled_from(["constant", "uniform", "exponential"]),
)
def test_describe_round_trips_any_float(p: float, start: float, mean: float, dist: str) -> None:
    for fault in (Drop(p=p, start=start), Delay(mean=mean, dist=dist, p=p), Reorder(window=mean)):
        assert parse_fault(fault.describe()) == fault


# -- each plugin's decisions -------------------------------------------------------------------


def test_drop_at_p_1() -> None:
    rng = random.Random(1)
    assert Drop(p=1.0).on_transmit(tx(), rng) == (Decision(kind="drop", key=tx().key),)


def test_drop_rate_is_roughly_p() -> None:
    rng = random.Random(7)
    drop = Drop(p=0.3)
    dropped = sum(bool(drop.on_transmit(tx(attempt=n), rng)) for n in range(1, 2001))
    assert 500 < dropped < 700


def test_rate_faults_act_only_in_their_window() -> None:
    drop = Drop(p=1.0, start=1.0, end=2.0)
    rng = random.Random(0)
    assert drop.on_transmit(tx(now=999_999), rng) == ()
    assert drop.on_transmit(tx(now=1 * US), rng) != ()
    assert drop.on_transmit(tx(now=2 * US - 1), rng) != ()
    assert drop.on_transmit(tx(now=2 * US), rng) == ()


def test_transmission_key_is_stable_and_names_the_attempt() -> None:
    assert tx(attempt=3).key == ("InventoryReserved", "saga-1", "payment", 3)


def test_duplicate_copies() -> None:
    rng = random.Random(2)
    assert Duplicate(p=1.0, copies=3).on_transmit(tx(), rng) == (
        Decision(kind="duplicate", key=tx().key, value=3),
    )


def test_delay_constant_is_exact() -> None:
    decisions = Delay(mean=0.25, dist="constant").on_transmit(tx(), random.Random(0))
    assert decisions == (Decision(kind="delay", key=tx().key, value=250_000),)


@pytest.mark.parametrize("dist", ["uniform", "exponential"])
def test_delay_distributions_are_non_negative_and_centred_on_the_mean(dist: str) -> None:
    rng = random.Random(3)
    delay = Delay(mean=0.1, dist=dist)
    values = [int(d.value) for n in range(1, 3001) for d in delay.on_transmit(tx(attempt=n), rng)]
    assert len(values) > 2900  # only a draw that rounds to 0 µs makes no decision
    assert min(values) > 0
    if dist == "uniform":
        assert max(values) <= 200_000
    mean = sum(values) / len(values)
    assert 90_000 < mean < 110_000


def test_network_faults_that_could_never_act_are_refused_by_their_constructors() -> None:
    # the library refuses what a spec refuses, with the same words
    refused: list[tuple[Callable[[], object], str]] = [
        (lambda: Delay(mean=0.0), "mean=0 can never act"),
        (lambda: Delay(mean=1.0, p=0.0), "p=0 can never act"),
        (lambda: Drop(p=0.0), "p=0 can never act"),
        (lambda: Duplicate(p=0.0), "p=0 can never act"),
        (lambda: Reorder(window=0.0), "window=0 can never act"),
        (lambda: Reorder(p=0.0), "p=0 can never act"),
    ]
    for make, text in refused:
        with pytest.raises(ValueError, match=rf"^{re.escape(text)} "):
            make()


@given(
    mean=st.floats(min_value=1e-6, max_value=86_400),
    dist=st.sampled_from(["constant", "uniform", "exponential"]),
    n=st.integers(min_value=1, max_value=10**6),
)
def test_every_delay_in_range_is_a_finite_integer_of_microseconds(
    mean: float, dist: str, n: int
) -> None:
    for decision in Delay(mean=mean, dist=dist).on_transmit(tx(attempt=n), random.Random(n)):
        assert isinstance(decision.value, int)
        assert decision.value > 0


def test_delay_uniform_with_a_range_stays_in_it() -> None:
    rng = random.Random(5)
    delay = parse_fault("delay:dist=uniform,min=0.0005,max=0.005")
    values = [int(d.value) for n in range(1, 2001) for d in delay.on_transmit(tx(attempt=n), rng)]
    assert len(values) == 2000
    assert 500 <= min(values) < 600
    assert 4_900 < max(values) <= 5_000


def test_delay_steps_draws_only_the_evenly_spaced_values() -> None:
    rng = random.Random(6)
    delay = parse_fault("delay:dist=steps,min=0.0005,max=0.005,steps=4")
    values = {int(d.value) for n in range(1, 401) for d in delay.on_transmit(tx(attempt=n), rng)}
    assert values == {500, 2_000, 3_500, 5_000}


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("delay:dist=steps", r"^fault spec 'delay:dist=steps': dist=steps needs max= and steps="),
        ("delay:min=0.1", r"^fault spec 'delay:min=0.1': min and max are for dist=uniform or"),
        (
            "delay:dist=uniform,min=0.2,max=0.1",
            r"^fault spec 'delay:dist=uniform,min=0.2,max=0.1': max must not be below min",
        ),
    ],
)
def test_delay_ranges_that_make_no_sense_are_refused(spec: str, error: str) -> None:
    with pytest.raises(FaultSpecError, match=error):
        parse_fault(spec)


def test_reorder_stays_within_its_window() -> None:
    rng = random.Random(4)
    reorder = Reorder(window=0.5, p=1.0)
    values = [int(d.value) for n in range(1, 1001) for d in reorder.on_transmit(tx(attempt=n), rng)]
    assert len(values) > 990
    assert all(0 < v <= 500_000 for v in values)
    assert len(set(values)) > 900  # spread out, so close messages swap places


def test_partition_timeline() -> None:
    partition = Partition(service="shipping", start=1.5, duration=2.0, direction="in", mode="hold")
    assert partition.timeline(random.Random(0)) == (
        Decision(kind="partition", key=("shipping", "in", 1_500_000, 3_500_000), value="hold"),
    )
    assert partition.on_transmit(tx(), random.Random(0)) == ()


def test_crash_at_a_time_is_a_timeline_decision() -> None:
    crash = Crash(service="inventory", at=2.0, downtime=0.5)
    assert crash.timeline(random.Random(0)) == (
        Decision(kind="crash_at", key=("inventory", 2_000_000), value=500_000),
    )
    assert (
        crash.on_commit(
            commit(service="inventory", produced=("InventoryReserved",)), random.Random(0)
        )
        is None
    )


def test_crash_after_commit_only_for_its_service_and_event_at_most_times() -> None:
    rng = random.Random(0)
    crash = Crash(service="payment", after="PaymentCharged", downtime=2.0, times=2)
    assert crash.timeline(rng) == ()
    assert crash.on_commit(commit(service="shipping"), rng) is None
    assert crash.on_commit(commit(produced=("PaymentRefunded",)), rng) is None
    first = crash.on_commit(commit(), rng)
    assert first == Decision(
        kind="crash_after_commit", key=("payment", "saga-1", "PaymentCharged"), value=2_000_000
    )
    assert crash.on_commit(commit(), rng) == first
    assert crash.on_commit(commit(), rng) is None  # times=2 used up


def test_a_crash_with_p_0_could_never_act_and_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^p=0 can never act "):
        Crash(service="payment", after="PaymentCharged", p=0.0, times=100)
    rare = Crash(service="payment", after="PaymentCharged", p=1e-9, times=100)
    assert all(rare.on_commit(commit(), random.Random(n)) is None for n in range(50))


def test_forced_failure_for_named_sagas() -> None:
    rng = random.Random(0)
    fail = ForcedFailure(step="payment", saga="a+b")
    fail.bind(SHOP)
    assert fail.on_step("payment", "a", rng) == Decision(
        kind="fail_payment", key=("payment", "a"), value="insufficient_funds"
    )
    assert fail.on_step("payment", "b", rng) is not None
    assert fail.on_step("payment", "c", rng) is None
    assert fail.on_step("shipping", "a", rng) is None
    fail.force("c")
    assert fail.on_step("payment", "c", rng) is not None


def fail(step: str, **params: Any) -> ForcedFailure:
    made = ForcedFailure(step=step, **params)
    made.bind(SHOP)
    return made


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("inventory", "inventory_unavailable"),
        ("payment", "insufficient_funds"),
        ("shipping", "carrier_unavailable"),
    ],
)
def test_forced_failure_rate_and_reason(step: str, reason: str) -> None:
    rng = random.Random(5)
    cls = functools.partial(fail, step)
    always = cls(rate=1.0)
    assert always.on_step(step, "x", rng) == Decision(
        kind=f"fail_{step}", key=(step, "x"), value=reason
    )
    assert cls(rate=1.0, reason="custom").on_step(step, "x", rng) == Decision(
        kind=f"fail_{step}", key=(step, "x"), value="custom"
    )
    assert all(cls(rate=0.0).on_step(step, f"s{n}", rng) is None for n in range(100))
    half = cls(rate=0.5)
    hits = sum(half.on_step(step, f"s{n}", rng) is not None for n in range(1000))
    assert 400 < hits < 600


# -- the injector ------------------------------------------------------------------------------


def exercise(injector: FaultInjector) -> list[object]:
    """Ask an injector a fixed series of questions; return every answer."""
    answers: list[object] = [injector.timeline()]
    for n in range(1, 40):
        answers.append(injector.transmit(tx(saga=f"saga-{n}")))
        answers.append(injector.forced_failure("shipping", f"saga-{n}"))
        answers.append(injector.crash_after_commit(commit(saga=f"saga-{n}")))
    return answers


def mixed_faults() -> list[Fault]:
    return [
        parse_fault(spec)
        for spec in (
            "drop:p=0.2",
            "delay:mean=0.1",
            "duplicate:p=0.3,copies=2",
            "reorder:window=0.3",
            "partition:service=payment,start=1,duration=2",
            "crash:at=4,service=shipping",
            "crash:service=payment,after=PaymentCharged,times=2,p=0.5",
            "fail_shipping:rate=0.3",
        )
    ]


def test_injector_records_every_decision_it_makes() -> None:
    injector = FaultInjector(faults=mixed_faults(), seed=11)
    answers = exercise(injector)
    made: list[Decision] = []
    for answer in answers:
        if isinstance(answer, list | tuple):
            made.extend(d for d in answer if isinstance(d, Decision))
    kinds = {d.kind for d in injector.decisions}
    assert {"partition", "crash_at", "drop", "crash_after_commit", "fail_shipping"} <= kinds
    assert [
        d for d in injector.decisions if d.kind not in ("crash_after_commit", "fail_shipping")
    ] == made
    assert sum(d.kind == "crash_after_commit" for d in injector.decisions) == 2


def test_same_seed_same_decisions_other_seed_other_decisions() -> None:
    first = FaultInjector(faults=mixed_faults(), seed=11)
    second = FaultInjector(faults=mixed_faults(), seed=11)
    third = FaultInjector(faults=mixed_faults(), seed=12)
    assert exercise(first) == exercise(second)
    assert first.decisions == second.decisions
    exercise(third)
    assert third.decisions != first.decisions


def test_replaying_answers_the_same_and_records_the_same() -> None:
    original = FaultInjector(faults=mixed_faults(), seed=3)
    answers = exercise(original)
    replay = FaultInjector.replaying(original.decisions)
    assert replay.active
    assert exercise(replay) == answers
    assert replay.decisions == original.decisions


class DropEverySecondAsk(Fault):
    """Drops the 2nd, 4th, ... transmission it is asked about, whatever its key."""

    name = "drop_every_second_ask"

    def __init__(self) -> None:
        self.asked = 0

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        self.asked += 1
        return (Decision(kind="drop", key=t.key),) if self.asked % 2 == 0 else ()


def test_replaying_tells_apart_two_transmissions_with_the_same_key() -> None:
    # Two transmissions can share a key: a client retrying reserve_inventory for the same saga
    # (attempt 1 both times), or a buggy service publishing one event type twice in a saga.
    # A decision made for the second must not be replayed on the first.
    original = FaultInjector(faults=[DropEverySecondAsk()])
    answers = [list(original.transmit(tx())) for _ in range(2)]
    assert [len(a) for a in answers] == [0, 1]
    replay = FaultInjector.replaying(original.decisions)
    assert [list(replay.transmit(tx())) for _ in range(2)] == answers


def test_replaying_uses_each_decision_once() -> None:
    drop = Decision(kind="drop", key=tx().key)
    replay = FaultInjector.replaying([drop])
    assert replay.transmit(tx()) == [drop]
    assert replay.transmit(tx()) == ()
    assert replay.forced_failure("payment", "saga-1") is None
    assert replay.crash_after_commit(commit()) is None
    assert replay.decisions == [drop]


def test_replaying_an_empty_list_decides_nothing_but_is_active() -> None:
    replay = FaultInjector.replaying([])
    assert replay.active
    assert exercise(replay) == [[]] + [(), None, None] * 39
    assert replay.decisions == []


def test_an_injector_without_faults_is_inactive() -> None:
    assert not FaultInjector().active
    assert FaultInjector(faults=[Drop()]).active


def test_decision_json_round_trip() -> None:
    for decision in FaultInjector(faults=mixed_faults(), seed=5).timeline() + [
        Decision(kind="drop", key=("PaymentCharged", "s", "shipping", 2)),
        Decision(kind="fail_payment", key=("payment", "s"), value="insufficient_funds"),
    ]:
        assert Decision.from_json(decision.to_json()) == decision


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": []}, "bad recorded decision {'key': []}: 'kind'"),
        ({"kind": "drop"}, "bad recorded decision {'kind': 'drop'}: 'key'"),
        (
            {"kind": "drop", "key": [1.5]},
            "bad recorded decision {'kind': 'drop', 'key': [1.5]}: key parts must be strings or"
            " integers",
        ),
    ],
)
def test_bad_recorded_decision(data: dict[str, object], message: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        Decision.from_json(data)
    assert str(caught.value) == message


def test_spaces_around_the_name_and_parameters_are_ignored() -> None:
    assert parse_fault(" drop : p = 0.2 ") == Drop(p=0.2)


def test_a_timed_crash_happens_with_probability_p() -> None:
    rare = Crash(service="shipping", at=1.0, p=0.001)
    always = Crash(service="shipping", at=1.0)
    assert rare.timeline(random.Random(1)) == ()
    assert [d.kind for d in always.timeline(random.Random(1))] == ["crash_at"]
