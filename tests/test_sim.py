"""The simulation's rooms (trio_saga/sim): the runtime keeps other tasks' deadlines when it does
not own the clock, a plain run imports no pytest, a network fault of the user's own applies
through its effect, and the agenda keeps no wake-up for acknowledged work."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs
import trio
from support import run_code

from faults.base import Decision, Effect, Fault, Shift, Transmission
from trio_saga.sim.agenda import Agenda, Check, Restart
from trio_saga.simulation import Simulation, orders, simulate


async def test_a_task_sleeping_beside_the_simulation_wakes_at_its_own_instant(
    autojump_clock: trio.abc.Clock,
) -> None:
    simulation = Simulation(orders=orders(6, every=0.01))
    woke: list[float] = []
    finished: list[float] = []

    async def sleeper(start: float) -> None:
        await trio.sleep(0.0123)
        woke.append(trio.current_time() - start)

    async def run_it(start: float) -> None:
        result = await simulation.run()
        finished.append(trio.current_time() - start)
        assert result.counts()["completed"] == 6

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper, start)
        nursery.start_soon(run_it, start)
    assert abs(woke[0] - 0.0123) < 1e-9
    # the sleeper woke while the run was still going (its last saga starts at 0.05 s)
    assert finished[0] >= 0.05


def test_a_plain_run_imports_no_pytest() -> None:
    code = (
        "import sys\n"
        "from trio_saga import Simulation, orders, simulate\n"
        "assert simulate(Simulation(orders=orders(3))).ok\n"
        "print('pytest' in sys.modules, '_pytest' in sys.modules)\n"
    )
    done = run_code(code, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@attrs.define(kw_only=True)
class Slow(Fault):
    """A network fault the registry does not know: it adds 7 ms to every first attempt."""

    name: ClassVar[str] = "slow"
    effects: ClassVar[dict[str, Effect]] = {"slow": Shift()}

    def on_transmit(self, t: Transmission, rng: random.Random) -> Sequence[Decision]:
        return (Decision(kind="slow", key=t.key, value=7_000),) if t.attempt == 1 else ()


def test_a_network_fault_of_ones_own_acts_through_the_effect_it_names() -> None:
    result = simulate(Simulation(orders=orders(1), faults=[Slow()]))
    slow = [r for r in result.trace if r.kind == "slow"]
    delivered = [r for r in result.trace if r.kind == "deliver"]
    assert [r.info for r in slow] == ["+0.007s"] * len(slow)
    assert len(slow) == len(delivered) == 4  # the command and the three events
    assert [r.t_us for r in delivered] == [7_000, 14_000, 21_000, 28_000]
    assert result.fault_counts == {"slow": 4}
    assert result.counts()["completed"] == 1


def test_the_agenda_drops_acknowledged_checks_before_they_cost_a_wake_up() -> None:
    agenda = Agenda()
    agenda.check(0, 250_000, Check(1, 1))
    agenda.check(0, 500_000, Check(2, 1))
    agenda.at(900_000, 0, Restart("payment"))
    acked = {1}
    assert agenda.next_due(lambda check: check.delivery_id in acked) == 500_000
    acked.add(2)
    assert agenda.next_due(lambda check: check.delivery_id in acked) == 900_000
    assert agenda.pop_due(899_999) is None
    entry = agenda.pop_due(900_000)
    assert isinstance(entry, Restart)
    assert entry.service == "payment"
    assert agenda.work == 0
    assert agenda.next_due(lambda check: True) is None
