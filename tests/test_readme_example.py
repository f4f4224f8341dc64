"""The library example in the README, kept true by running it."""

from typing import Any

from faults import parse_fault
from trio_saga import PaymentService, Simulation, orders


async def test_payment_crash_after_charge_charges_once(autojump_clock: Any) -> None:
    result = await Simulation(
        orders=orders(20, every=0.1),
        faults=[
            parse_fault("crash:service=payment,after=PaymentCharged,downtime=2"),
            parse_fault("duplicate:p=0.3"),
        ],
        seed=7,
    ).run()
    assert result.violations == []
    assert result.counts()["completed"] == 20
    assert result.service("payment", PaymentService).charged_cents == 20 * 9999
    assert result.fault_counts["crash_after_commit"] == 1
