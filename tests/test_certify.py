# Issue 11: `run.py certify`, the handler certifier. The shop and both example sagas certify
# clean; every planted bug of the suite is flagged, naming its handler and the perturbation
# that shows it.
from __future__ import annotations

import sys
from pathlib import Path

import effect_bugs
import planted_bugs
import pytest
from support import assert_usage_error, run_py

from trio_saga.certify import (
    CRASH_AFTER,
    CRASH_BEFORE,
    DUPLICATE,
    FAILS,
    SWAP,
    Certificate,
    certify,
    format_certificate,
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


def test_run_py_certify_prints_the_table_and_exits_by_the_verdict() -> None:
    done = run_py("certify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("certify shop: every handler x perturbation\n")
    assert "payment.InventoryReserved    unchanged" in done.stdout
    failing = run_py(
        "certify",
        "--saga",
        "effect_bugs:KEYLESS",
        env={"PYTHONPATH": str(EXAMPLES.parent / "tests")},
    )
    assert failing.returncode == 1, failing.stderr
    assert "payment.InventoryReserved x crash before commit" in failing.stdout
    travel_done = run_py("certify", "--saga", "examples/travel/travel.py:saga")
    assert travel_done.returncode == 0, travel_done.stderr


def test_run_py_certify_refuses_an_unknown_saga_in_one_line() -> None:
    assert_usage_error(run_py("certify", "--saga", "no_such_module:saga"), "no_such_module")
