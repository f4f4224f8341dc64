"""A hypothesis state machine that plays the network against the three Participants directly.

No trio and no bus: the machine holds the deliveries itself and lets hypothesis choose which
pending delivery arrives next, duplicate one, or redeliver an old one, so every interleaving a
lossy, duplicating, reordering network could produce is fair game. Stock and money must be
conserved after every step, and once everything is delivered the oracle must find nothing.
"""

from __future__ import annotations

import copy

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from trio_saga.events import Event
from trio_saga.oracle import check, check_saga, describe
from trio_saga.participant import Participant, StepContext
from trio_saga.saga import EVERY_SAGA_ENDS
from trio_saga.saga_log import SagaLog
from trio_saga.shop import SHOP
from trio_saga.shop.events import PaymentCharged, ReserveInventory
from trio_saga.shop.services import (
    Inventory,
    PaymentService,
    ShippingService,
)

SKUS = ("A", "B")
INITIAL_STOCK = {"A": 6, "B": 3}
INITIAL_FUNDS = 5 * 9999  # enough for a few sagas, so some fail for lack of money
STEPS = ("inventory", "payment", "shipping")

FORCED_REASONS = {step.name: step.reason for step in SHOP.steps}


@attrs.frozen
class Pending:
    """One event on its way to one subscriber."""

    event: Event
    dest: str


class SagaNetwork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.inventory = Inventory(stock=dict(INITIAL_STOCK))
        self.payment = PaymentService(funds_cents=INITIAL_FUNDS)
        self.shipping = ShippingService()
        self.participants = {
            p.name: p
            for p in (
                Participant(self.inventory),
                Participant(self.payment),
                Participant(self.shipping),
            )
        }
        self.log = SagaLog(SHOP)
        self.seq = 0
        self.clock = 0
        self.failing: dict[str, frozenset[str]] = {}
        self.commands: dict[str, ReserveInventory] = {}
        self.replies: dict[str, object] = {}
        self.pending: list[Pending] = []
        self.delivered: list[Pending] = []
        self.published: list[Event] = []
        self.renamed = 0

    # -- plumbing --------------------------------------------------------------------------

    def ctx(self) -> StepContext:
        self.clock += 1

        def forced(step: str, saga_id: str) -> str | None:
            return FORCED_REASONS[step] if step in self.failing.get(saga_id, ()) else None

        return StepContext(timestamp=self.clock, forced_failure=forced)

    def publish_outboxes(self) -> None:
        for participant in self.participants.values():
            while participant.outbox:
                event = participant.outbox.popleft()
                self.published.append(event)
                self.log.observe(event, self.next_seq())
                for name, other in self.participants.items():
                    if event.type in SHOP.subscribes_to(other.name):
                        self.pending.append(Pending(event, name))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def deliver(self, item: Pending) -> None:
        participant = self.participants[item.dest]
        already = (item.event.type, item.event.event_id) in participant.inbox
        before = copy.deepcopy(participant) if already else None
        produced = participant.receive(item.event, self.ctx())
        if already:
            # A duplicate is answered by the inbox: nothing changes, nothing is published.
            assert produced is None
            assert participant == before
        else:
            assert produced is not None
        # committed with the state change
        assert (item.event.type, item.event.event_id) in participant.inbox
        self.delivered.append(item)
        self.publish_outboxes()

    # -- rules -----------------------------------------------------------------------------

    @rule(
        sku=st.sampled_from(SKUS),
        quantity=st.integers(min_value=1, max_value=3),
        failing=st.frozensets(st.sampled_from(STEPS), max_size=2),
    )
    def start_saga(self, sku: str, quantity: int, failing: frozenset[str]) -> None:
        saga_id = f"saga-{len(self.commands) + 1}"
        command = ReserveInventory(saga_id=saga_id, sku=sku, quantity=quantity)
        self.commands[saga_id] = command
        self.failing[saga_id] = failing
        self.log.started(saga_id, "client", self.next_seq())
        reply, produced = self.participants["inventory"].execute(command, self.ctx())
        assert produced is not None
        assert len(produced) == 1
        self.replies[saga_id] = reply
        self.publish_outboxes()

    @precondition(lambda self: bool(self.commands))
    @rule(data=st.data())
    def client_retries(self, data: st.DataObject) -> None:
        saga_id = data.draw(st.sampled_from(sorted(self.commands)))
        inventory = self.participants["inventory"]
        before = copy.deepcopy(inventory)
        reply, produced = inventory.execute(self.commands[saga_id], self.ctx())
        assert reply == self.replies[saga_id]
        assert produced is not None
        assert list(produced) == []
        assert inventory == before

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending) - 1))
        self.deliver(self.pending.pop(index))

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def deliver_a_copy(self, data: st.DataObject) -> None:
        # The original stays pending, so the same event arrives (at least) twice.
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending) - 1))
        self.deliver(self.pending[index])

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def redeliver_old(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.delivered) - 1))
        self.deliver(self.delivered[index])

    @precondition(lambda self: bool(self.delivered or self.pending))
    @rule(data=st.data())
    def deliver_under_a_new_id(self, data: st.DataObject) -> None:
        # The same fact announced again under a fresh event id (a publisher that re-sends) gets
        # past the inbox: only the service's own per-saga record can stop it.
        known = self.delivered + self.pending
        item = known[data.draw(st.integers(min_value=0, max_value=len(known) - 1))]
        self.renamed += 1
        copy_ = attrs.evolve(item.event, event_id=f"{item.event.event_id}~{self.renamed}")
        participant = self.participants[item.dest]
        if (item.event.type, item.event.event_id) not in participant.inbox:
            self.deliver(Pending(copy_, item.dest))
            return
        before = copy.deepcopy(participant.service)
        assert participant.receive(copy_, self.ctx()) == ()
        assert participant.service == before
        assert not participant.outbox

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def stock_is_conserved(self) -> None:
        inventory = self.inventory
        for sku, initial in inventory.initial.items():
            available = inventory.stock[sku]
            held = inventory.reserved.get(sku, 0)
            shipped = inventory.shipped.get(sku, 0)
            assert min(available, held, shipped) >= 0
            assert available + held + shipped == initial
        held_by_saga = sum(
            r.quantity for r in inventory.reservations.values() if r.status == "held"
        )
        assert held_by_saga == sum(inventory.reserved.values())

    @invariant()
    def money_is_conserved(self) -> None:
        payment = self.payment
        assert payment.funds_cents >= 0
        assert payment.funds_cents + payment.charged_cents - payment.refunded_cents == (
            INITIAL_FUNDS
        )
        assert payment.charged_cents == sum(
            e.amount_cents for e in self.published if isinstance(e, PaymentCharged)
        )

    @invariant()
    def no_saga_goes_wrong_midway(self) -> None:
        # Mid-flight only "not finished yet" is allowed; every other finding is already wrong.
        for record in self.log:
            found = [v for v in check_saga(SHOP, record) if v.invariant != EVERY_SAGA_ENDS]
            assert found == [], [describe(v, SHOP) for v in found]

    def teardown(self) -> None:
        # Let the network finish: everything still pending arrives, in order.
        while self.pending:
            self.deliver(self.pending.pop(0))
        for participant in self.participants.values():
            assert not participant.outbox
        violations = check(SHOP, self.log, self.participants)
        assert violations == [], [describe(v, SHOP) for v in violations]
        assert all(record.done for record in self.log)
        for saga_id, record in self.log.sagas.items():
            failing = self.failing[saga_id]
            if "inventory" in failing:
                assert record.status == "failed"
            elif record.status == "completed":
                assert not failing & {"payment", "shipping"}


def test_participants_survive_any_delivery_order() -> None:
    run_state_machine_as_test(
        SagaNetwork,
        settings=settings(
            max_examples=150,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
