# The saga definition: what it derives from its steps (subscriptions, outcomes, allowed
# sequences, causes), what it refuses, how a saga is loaded by name; and, for sagas of any
# shape hypothesis can draw, that a run of well-behaved services under faults ends every saga
# with the outcome its forced failures imply and that the oracle agrees.

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults import parse_fault
from trio_saga import (
    SHOP,
    Check,
    Event,
    EventIds,
    SagaDefinition,
    SagaDefinitionError,
    SagaOrder,
    Simulation,
    StartSaga,
    Step,
    StepContext,
    load_saga,
    orders,
    simulate,
)
from trio_saga.saga import saga_argument, saga_ref

# -- what the shop's definition derives --------------------------------------------------------


def test_the_shop_definition_derives_the_design_table() -> None:
    assert SHOP.service_names == ("inventory", "payment", "shipping")
    assert SHOP.entry == "inventory"
    assert dict(SHOP.subscriptions) == {
        "InventoryReserved": ("payment",),
        "PaymentFailed": ("inventory",),
        "PaymentRefunded": ("inventory",),
        "ShipmentCreated": ("inventory",),
        "PaymentCharged": ("shipping",),
        "ShipmentFailed": ("payment",),
    }
    assert dict(SHOP.terminal) == {
        "ShipmentCreated": "completed",
        "InventoryReleased": "compensated",
        "InventoryReservationFailed": "failed",
    }
    assert dict(SHOP.allowed) == {
        "completed": (("InventoryReserved", "PaymentCharged", "ShipmentCreated"),),
        "compensated": (
            ("InventoryReserved", "PaymentFailed", "InventoryReleased"),
            (
                "InventoryReserved",
                "PaymentCharged",
                "ShipmentFailed",
                "PaymentRefunded",
                "InventoryReleased",
            ),
        ),
        "failed": (("InventoryReservationFailed",),),
    }
    assert dict(SHOP.causes) == {
        "PaymentCharged": "InventoryReserved",
        "ShipmentCreated": "PaymentCharged",
        "InventoryReleased": "InventoryReserved",
        "PaymentRefunded": "PaymentCharged",
    }
    assert dict(SHOP.undone_before) == {
        "PaymentCharged": "InventoryReleased",
        "ShipmentCreated": "PaymentRefunded",
    }
    assert SHOP.invariants == (
        "every saga ends",
        "outcome matches events",
        "no effect without its cause",
        "stock is conserved",
        "money is conserved",
    )


# -- what a definition refuses -------------------------------------------------------------------


def _services(state: Mapping[str, Any]) -> list[Any]:
    return []


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((), r"^saga 'x': a saga needs at least one step$"),
        (
            (
                Step(name="a", success="A", failure="NoA"),
                Step(name="b", success="B", failure="NoB"),
            ),
            r"^saga 'x': step 'a' needs a compensation event: a later step can fail$",
        ),
        (
            (Step(name="a", success="A", compensation="UndoA"), Step(name="b", success="B")),
            r"^saga 'x': step 'a' has a compensation, but no later step can fail to trigger it$",
        ),
        (
            (Step(name="a", success="A"), Step(name="a", success="B")),
            r"^saga 'x': step names must be unique, got a, a$",
        ),
        (
            (Step(name="a", success="A", failure="A"),),
            r"^saga 'x': every event type belongs to one step, but A is used twice$",
        ),
        (
            (Step(name="a", success="A", observes=("Z",)),),
            r"^saga 'x': step 'a' observes 'Z', not an event of it$",
        ),
    ],
)
def test_a_definition_that_is_not_a_saga_is_refused(steps: tuple[Step, ...], message: str) -> None:
    with pytest.raises(SagaDefinitionError, match=message):
        SagaDefinition(name="x", steps=steps, services=_services)


@attrs.define
class AsyncService:
    name: str = "a"

    async def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        return ()


def test_an_async_handler_gets_a_clear_error() -> None:
    saga = SagaDefinition(
        name="x", steps=(Step(name="a", success="A"),), services=lambda state: [AsyncService()]
    )
    with pytest.raises(SagaDefinitionError, match=r"^a\.handle is an async def: handlers must be"):
        saga.make_services()


def test_a_factory_that_makes_other_services_is_refused() -> None:
    saga = attrs.evolve(SHOP, services=lambda state: [AsyncService()])
    with pytest.raises(
        SagaDefinitionError,
        match=r"^saga 'shop': its services factory made a but the steps need inventory,",
    ):
        saga.make_services()


def test_order_fields_are_typed_by_their_defaults() -> None:
    saga = SagaDefinition(
        name="x",
        steps=(Step(name="a", success="A"),),
        services=_services,
        order_fields={"n": 1, "amount": 1.5, "who": "ada"},
    )
    command = saga.make_command("s1", {"n": 3, "amount": 2})
    assert isinstance(command, StartSaga)
    assert (command.type, command["n"], command["amount"], command["who"]) == (
        "start_saga",
        3,
        2,
        "ada",
    )
    with pytest.raises(ValueError, match=r"^unknown order field 'm' \(this saga takes n,"):
        saga.make_command("s1", {"m": 1})
    with pytest.raises(ValueError, match=r"^order field 'n' must be an integer, got 1\.5$"):
        saga.make_command("s1", {"n": 1.5})
    with pytest.raises(ValueError, match=r"^order field 'amount' must be a finite number"):
        saga.make_command("s1", {"amount": float("inf")})


# -- loading a saga by name ----------------------------------------------------------------------


def test_load_saga_by_short_name_module_and_file(tmp_path: Path) -> None:
    assert load_saga("shop") == SHOP
    assert load_saga("trio_saga.shop:SHOP").ref == "trio_saga.shop:SHOP"
    (tmp_path / "mine_for_load_test.py").write_text(
        "import attrs\nfrom trio_saga import SHOP\nsaga = attrs.evolve(SHOP, name='mine')\n"
    )
    found = load_saga("mine_for_load_test.py:saga", near=tmp_path)
    assert found.name == "mine"
    assert saga_ref(found) == "mine_for_load_test.py:saga"
    assert load_saga("mine_for_load_test:saga").name == "mine"  # its folder is on sys.path now
    sys.modules.pop("mine_for_load_test", None)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nothing", r"^a saga is named module:attribute, PATH\.py:attribute or shop, got"),
        (
            "no_such_module_xyz:saga",
            r"^cannot find saga module 'no_such_module_xyz' on PYTHONPATH$",
        ),
        ("trio_saga.shop:NOPE", r"^saga trio_saga\.shop:NOPE: module trio_saga\.shop has no"),
        ("os:getcwd", r"^saga os:getcwd is a builtin_function_or_method, not a SagaDefinition$"),
        ("/no/such/file.py:saga", r"^no saga module file /no/such/file\.py$"),
    ],
)
def test_a_saga_that_cannot_be_loaded_is_one_line(name: str, message: str) -> None:
    with pytest.raises(SagaDefinitionError, match=message):
        load_saga(name)


def test_saga_argument_names_a_file_when_the_module_is_not_a_package() -> None:
    assert saga_argument(SHOP) == "trio_saga.shop:SHOP"


# -- any shape: a generic, well-behaved service per step ------------------------------------------


@attrs.frozen(kw_only=True)
class Happened(Event):
    """One event class for every event of a drawn saga: its type is an instance field."""

    type: str  # type: ignore[misc]


@attrs.define
class StepService:
    """Performs one step of any saga correctly: once per saga, compensating only what it did."""

    name: str
    saga: SagaDefinition
    done: dict[str, str] = attrs.Factory(dict)
    ids: EventIds = attrs.Factory(lambda: EventIds("e"))

    def handle(self, event: Any, ctx: StepContext) -> Sequence[Event]:
        step = next(s for s in self.saga.steps if s.service == self.name)
        index = self.saga.steps.index(step)
        trigger = self.saga.command if index == 0 else self.saga.steps[index - 1].success
        saga_id = event.saga_id
        if event.type == trigger:
            if saga_id in self.done:
                return ()
            reason = ctx.forced_failure(step.name, saga_id) if step.failure else None
            self.done[saga_id] = "failed" if reason else "done"
            return (self._event(step.failure if reason else step.success, saga_id, ctx),)
        if self.done.get(saga_id) == "done" and step.compensation is not None:
            self.done[saga_id] = "undone"
            return (self._event(step.compensation, saga_id, ctx),)
        return ()

    def _event(self, kind: str | None, saga_id: str, ctx: StepContext) -> Event:
        assert kind is not None
        return Happened(
            type=kind, saga_id=saga_id, event_id=self.ids.next(), timestamp=ctx.timestamp
        )


@st.composite
def sagas(draw: st.DrawFn) -> SagaDefinition:
    count = draw(st.integers(1, 5))
    fallible = [draw(st.booleans()) for _ in range(count)]
    steps = []
    for n in range(count):
        later = any(fallible[n + 1 :])
        steps.append(
            Step(
                name=f"s{n}",
                success=f"S{n}",
                failure=f"F{n}" if fallible[n] else None,
                compensation=f"C{n}" if later else None,
            )
        )
    return SagaDefinition(name="drawn", steps=tuple(steps), services=_step_services)


def _step_services(state: Mapping[str, Any]) -> list[Any]:
    saga = state["saga"]
    return [StepService(name=name, saga=saga) for name in saga.service_names]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saga=sagas(), data=st.data())
def test_any_shape_ends_every_saga_as_its_forced_failures_say(
    saga: SagaDefinition, data: st.DataObject
) -> None:
    drawn: st.SearchStrategy[set[str]] = (
        st.sets(st.sampled_from(saga.fallible_steps)) if saga.fallible_steps else st.just(set())
    )
    fails: dict[str, set[str]] = {f"t{n}": data.draw(drawn) for n in range(6)}
    order_list = [
        SagaOrder(saga_id=saga_id, at=0.05 * n, fail=frozenset(steps))
        for n, (saga_id, steps) in enumerate(fails.items())
    ]
    seed = data.draw(st.integers(0, 1000))
    result = simulate(
        Simulation(
            saga=saga,
            state={"saga": saga},
            orders=order_list,
            faults=[
                parse_fault("drop:p=0.2"),
                parse_fault("duplicate:p=0.2"),
                parse_fault("delay:mean=0.02"),
            ],
            seed=seed,
        )
    )
    assert result.violations == []
    for saga_id, failing in fails.items():
        first = min((saga.step_names.index(s) for s in failing), default=None)
        expected = "completed" if first is None else "failed" if first == 0 else "compensated"
        assert result.status(saga_id) == expected, (saga_id, failing, result.events(saga_id))


# -- the oracle over a definition ----------------------------------------------------------------


def test_a_saga_ordered_but_never_started_is_a_violation() -> None:
    result = simulate(Simulation(orders=orders(3, every=1.0), max_time=0.5))
    never = [(v.invariant, v.saga_id, v.detail) for v in result.violations]
    assert never == [
        ("every saga ends", "saga-2", "ordered but never started (the run ended first)"),
        ("every saga ends", "saga-3", "ordered but never started (the run ended first)"),
    ]
    assert dict(result.verdict.results)["every saga ends"] == "FAIL"


def _not_applicable(run: Any) -> None:
    return None


def test_a_check_that_cannot_run_is_not_applicable_never_ok() -> None:
    saga = attrs.evolve(SHOP, checks=(*SHOP.checks, Check(name="tea is hot", run=_not_applicable)))
    result = simulate(Simulation(saga=saga, orders=orders(2)))
    assert result.verdict.results == (
        ("every saga ends", "ok"),
        ("outcome matches events", "ok"),
        ("no effect without its cause", "ok"),
        ("stock is conserved", "ok"),
        ("money is conserved", "ok"),
        ("tea is hot", "n/a"),
    )
    # The shop's own checks need the shop's services: on other services they cannot run.
    other = attrs.evolve(SHOP, services=_generic_shop)
    assert (
        dict(simulate(Simulation(saga=other, orders=orders(2))).verdict.results)[
            "money is conserved"
        ]
        == "n/a"
    )


def _generic_shop(state: Mapping[str, Any]) -> list[Any]:
    return [StepService(name=name, saga=_SHOP_AS_STEPS) for name in SHOP.service_names]


_SHOP_AS_STEPS = SHOP
