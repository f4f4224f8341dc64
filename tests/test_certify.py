# Issue 11: `run.py certify`, the handler certifier. The shop and both example sagas certify
# clean; every planted bug of the suite is flagged, naming its handler and the perturbation
# that shows it; a handler that raises (in the clean run or under a perturbation) is a finding,
# never a traceback.
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import attrs
import effect_bugs
import planted_bugs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import assert_usage_error, run_py

from trio_saga.certify import (
    CLEAN,
    CRASH_AFTER,
    CRASH_BEFORE,
    DUPLICATE,
    FAILS,
    MIN_ROUNDS,
    SWAP,
    Certificate,
    certify,
    clean_orders,
    format_certificate,
    order_spread,
)
from trio_saga.saga import SagaDefinition
from trio_saga.shop import SHOP

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
for folder in ("travel", "transfer"):
    if str(EXAMPLES / folder) not in sys.path:
        sys.path.insert(0, str(EXAMPLES / folder))

import transfer  # noqa: E402
import transfer_bugs  # noqa: E402
import travel  # noqa: E402
import travel_bugs  # noqa: E402


def _flagged(cert: Certificate) -> set[tuple[str, str]]:
    return {(f.row, f.perturbation) for f in cert.changed}


@pytest.mark.parametrize(
    "saga", [SHOP, travel.saga, transfer.saga, effect_bugs.CACHING], ids=lambda s: s.name
)
def test_the_correct_sagas_certify_clean(saga: SagaDefinition) -> None:
    cert = certify(saga)
    assert cert.ok, format_certificate(cert)
    perturbations = {f.perturbation for f in cert.findings}
    assert {DUPLICATE, SWAP, CRASH_BEFORE, CRASH_AFTER, FAILS} <= perturbations
    assert "result     PASS" in format_certificate(cert)


def test_the_shop_is_certified_under_every_perturbation_of_every_handler() -> None:
    cert = certify(SHOP)
    assert set(cert.rows) == {
        "inventory.reserve_inventory",
        "inventory.ShipmentCreated",
        "inventory.PaymentFailed",
        "inventory.PaymentRefunded",
        "payment.InventoryReserved",
        "payment.ShipmentFailed",
        "shipping.PaymentCharged",
    }
    effects = [f for f in cert.findings if f.perturbation == "crash after effect"]
    assert {f.row for f in effects} == {
        "payment.InventoryReserved",
        "payment.ShipmentFailed",
        "shipping.PaymentCharged",
    }


@pytest.mark.parametrize(
    ("saga", "handler", "perturbation"),
    [
        (planted_bugs.DOUBLE_CHARGE, "inventory.reserve_inventory", DUPLICATE),
        (planted_bugs.INBOXLESS, "payment.InventoryReserved", DUPLICATE),
        (effect_bugs.KEYLESS, "payment.InventoryReserved", CRASH_BEFORE),
        (effect_bugs.KEYLESS, "payment.InventoryReserved", "crash after effect"),
        (effect_bugs.FORGETFUL, "payment.InventoryReserved", CRASH_AFTER),
        (travel_bugs.forgetful_hotel, "hotel.SeatReserved", SWAP),
        (transfer_bugs.eager_debit, "debit.transfer", FAILS),
        (planted_bugs.EXPLODING, "shipping.PaymentCharged", CLEAN),
        (planted_bugs.WRONG_REFUND, "shipping.PaymentCharged", FAILS),
        (effect_bugs.BRITTLE, "payment.ShipmentFailed", CRASH_BEFORE),
        (effect_bugs.BRITTLE, "payment.InventoryReserved", CRASH_AFTER),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "name", "?"),
)
def test_each_planted_bug_is_flagged_naming_handler_and_perturbation(
    saga: SagaDefinition, handler: str, perturbation: str
) -> None:
    cert = certify(saga)
    assert not cert.ok
    assert (handler, perturbation) in _flagged(cert)
    text = format_certificate(cert)
    assert "result     FAIL" in text
    assert f"  {handler} x {perturbation} (" in text


def test_a_service_without_its_guard_behind_a_durable_inbox_is_not_a_false_alarm() -> None:
    # planted_bugs.GUARDLESS is harmless behind an inbox (its docstring says so); it is only a
    # bug once the inbox goes (INBOXLESS, flagged above).
    assert certify(planted_bugs.GUARDLESS).ok


def test_a_missing_key_shows_as_a_second_charge_at_the_gateway() -> None:
    cert = certify(effect_bugs.KEYLESS)
    before = [f for f in cert.changed if f.perturbation == CRASH_BEFORE]
    assert before
    assert any(c.startswith("effects.saga-1: ") for c in before[0].changes), before[0].changes


def test_a_saga_can_declare_a_difference_allowed() -> None:
    import attrs

    allowing = attrs.evolve(
        effect_bugs.KEYLESS, allowed_differences=("payment.InventoryReserved:crash*",)
    )
    cert = certify(allowing)
    assert cert.ok
    assert "allowed" in format_certificate(cert)


# -- the clean scenario: a spread of sagas ---------------------------------------------------


def test_the_clean_scenario_orders_every_variant_completing_and_failing_at_every_step() -> None:
    orders = clean_orders(SHOP)
    assert orders == clean_orders(SHOP)  # deterministic
    assert [o.saga_id for o in orders] == [f"saga-{n}" for n in range(1, len(orders) + 1)]
    rounds = len(order_spread(SHOP))
    assert rounds == max(len(v) for v in SHOP.order_variants.values())  # 5 amounts
    completing = [o for o in orders if o.fail is None]
    assert orders[:rounds] == completing  # first, as in any scenario's orders(n)
    for field, values in SHOP.order_variants.items():
        for value in values:
            for fail in (None, *SHOP.fallible_steps):
                assert any(o.fail == fail and o.fields.get(field) == value for o in orders), (
                    field,
                    value,
                    fail,
                )
    assert len(orders) == rounds * (1 + len(SHOP.fallible_steps))


def test_a_saga_without_variants_still_meets_several_sagas_per_outcome() -> None:
    orders = clean_orders(travel.saga)
    assert all(o.fields == {} for o in orders)
    for fail in (None, *travel.saga.fallible_steps):
        assert sum(o.fail == fail for o in orders) == MIN_ROUNDS


@given(
    st.dictionaries(
        st.sampled_from(["quantity", "amount", "sku"]),
        st.lists(st.one_of(st.none(), st.integers(1, 9)), max_size=8).map(tuple),
    )
)
def test_the_spread_orders_each_value_of_each_variant(variants: dict[str, tuple[object]]) -> None:
    saga = attrs.evolve(SHOP, order_variants=variants)
    spread = order_spread(saga)
    assert len(spread) == max([MIN_ROUNDS, *(len(v) for v in variants.values())])
    for field, values in variants.items():
        for value in values:
            if value is None:  # left out: the saga's default
                assert any(field not in fields for fields in spread)
            else:
                assert any(fields.get(field) == value for fields in spread)


def test_a_handler_that_raises_in_the_clean_run_is_named_with_the_exception() -> None:
    cert = certify(planted_bugs.EXPLODING)
    assert not cert.ok
    text = format_certificate(cert)
    assert re.search(r"^shipping\.PaymentCharged +RAISES +unchanged ", text, re.M), text
    assert re.search(
        r"^result     FAIL: 1 handler raised in the clean run\n"
        r"  shipping\.PaymentCharged x clean run \(PaymentCharged of saga-3\):\n"
        r"      raises KeyError: 'no carrier for saga-3'"
        r" \(while shipping handled PaymentCharged of saga saga-3\)\n"
        r"  where saga-3: completes, amount=12\.5, quantity=3$",
        text,
        re.M,
    ), text
    # the other handlers are still certified: every other cell is ok or unchanged
    assert [f.row for f in cert.changed] == ["shipping.PaymentCharged"]
    # and a raise is never a difference a saga may allow
    assert not certify(attrs.evolve(planted_bugs.EXPLODING, allowed_differences=("*",))).ok


def test_a_handler_that_raises_only_under_a_perturbation_is_named_with_it() -> None:
    cert = certify(effect_bugs.BRITTLE)
    assert all(not f.raised for f in cert.findings if f.perturbation == CLEAN)
    text = format_certificate(cert)
    assert re.search(
        r"^result     FAIL: \d+ of \d+ perturbations made a handler raise$", text, re.M
    )
    assert re.search(
        r"^  payment\.ShipmentFailed x crash before commit \(ShipmentFailed of saga-8\):\n"
        r"      raises KeyError: 'saga-8' \(while payment handled ShipmentFailed of saga saga-8\)$",
        text,
        re.M,
    ), text


def test_a_refund_of_the_wrong_amount_shows_only_on_varied_orders() -> None:
    unvaried = attrs.evolve(planted_bugs.WRONG_REFUND, order_variants={})
    assert certify(unvaried).ok  # quantity 1 at list price: the wrong refund is the right one
    cert = certify(planted_bugs.WRONG_REFUND)
    failing = [f for f in cert.changed if f.perturbation == FAILS]
    assert {f.row for f in failing} == {"shipping.PaymentCharged"}
    assert re.fullmatch(
        r"invariant 'money is conserved' violated: the gateway charged 0\.01 - refunded 99\.99"
        r" = -99\.98, but completed sagas account for 0\.00",
        failing[0].changes[0],
    ), failing[0].changes


def test_run_py_certify_prints_the_table_and_exits_by_the_verdict() -> None:
    done = run_py("certify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("certify shop: every handler x perturbation\n")
    assert re.search(r"^payment\.InventoryReserved +ok +unchanged +unchanged ", done.stdout, re.M)
    assert re.search(
        r"^result     PASS: \d+ perturbations of \d+ deliveries \(20 sagas\), nothing changed,"
        r" nothing raised$",
        done.stdout,
        re.M,
    ), done.stdout
    failing = _certify_a_test_saga("effect_bugs:KEYLESS")
    assert failing.returncode == 1, failing.stderr
    assert "payment.InventoryReserved x crash before commit" in failing.stdout
    travel_done = run_py("certify", "--saga", "examples/travel/travel.py:saga")
    assert travel_done.returncode == 0, travel_done.stderr


def test_run_py_certify_names_a_raising_handler_without_a_traceback() -> None:
    done = _certify_a_test_saga("planted_bugs:EXPLODING")
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    assert "Traceback" not in done.stdout
    assert re.search(r"^shipping\.PaymentCharged +RAISES ", done.stdout, re.M), done.stdout
    assert re.search(
        r"^      raises KeyError: 'no carrier for saga-3'"
        r" \(while shipping handled PaymentCharged of saga saga-3\)$",
        done.stdout,
        re.M,
    ), done.stdout


def _certify_a_test_saga(ref: str) -> subprocess.CompletedProcess[str]:
    return run_py("certify", "--saga", ref, env={"PYTHONPATH": str(EXAMPLES.parent / "tests")})


def test_run_py_certify_refuses_an_unknown_saga_in_one_line() -> None:
    assert_usage_error(run_py("certify", "--saga", "no_such_module:saga"), "no_such_module")
