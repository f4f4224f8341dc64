"""The stored form of service state (trio_saga.redis.codec): every service of every shipped
saga, after a run with faults, comes back equal from its JSON; hostile stored text is refused
with a clear error and builds nothing it should not."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import attrs
import pytest

from trio_saga.participant import EventIds
from trio_saga.redis.codec import Codec, CodecError
from trio_saga.saga import SagaDefinition, load_saga
from trio_saga.scenario import Scenario
from trio_saga.simulation import simulate

REPO = Path(__file__).resolve().parent.parent
RUNS = {
    "shop": REPO / "scenarios" / "chaos.toml",
    "travel": REPO / "examples" / "travel" / "scenarios" / "storm.toml",
    "transfer": REPO / "examples" / "transfer" / "scenarios" / "storm.toml",
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_service_of_every_shipped_saga_round_trips_after_a_run(name: str) -> None:
    scenario = Scenario.load(str(RUNS[name]))
    result = simulate(scenario.simulation())
    services = [p.service for p in result.participants.values()]
    codec = Codec.for_saga(scenario.saga, services)
    assert sorted(result.participants) == sorted(scenario.saga.service_names)
    for participant in result.participants.values():
        service = participant.service
        text = codec.dumps(service)
        back = codec.loads(text)
        assert type(back) is type(service)
        assert back == service, participant.name
        assert codec.dumps(back) == text  # the stored text is stable
        assert codec.loads(codec.dumps(participant.inbox)) == participant.inbox


def test_the_shipped_sagas_load_by_name() -> None:
    for ref in ("shop", "examples/travel/travel.py:saga", "examples/transfer/transfer.py:saga"):
        saga = load_saga(ref, near=REPO)
        assert isinstance(saga, SagaDefinition)


def test_containers_keep_their_kind() -> None:
    codec = Codec([EventIds])
    value = {
        "set": {3, 1, 2},
        "frozen": frozenset({"a"}),
        "tuple": (1, "x", None),
        "list": [1.5, True],
        "deque": deque([1, 2]),
        (1, "k"): EventIds("pay", 3),
    }
    back = codec.loads(codec.dumps(value))
    assert back == value
    assert [type(v) for v in back.values()] == [set, frozenset, tuple, list, deque, EventIds]
    assert codec.dumps({3, 1, 2}) == codec.dumps({2, 3, 1}) == '{"s":[1,2,3]}'


@attrs.define
class NotOfTheSaga:
    x: int = 0


def test_a_class_outside_the_registry_is_neither_stored_nor_built() -> None:
    codec = Codec([EventIds])
    with pytest.raises(CodecError, match=r"^cannot store a .*NotOfTheSaga: not a class of"):
        codec.dumps(NotOfTheSaga())
    hostile = '{"a":"os:system","v":{"command":"true"}}'
    with pytest.raises(CodecError, match=r"^stored object of a class this saga does not know"):
        codec.loads(hostile)
    with pytest.raises(CodecError, match=r"^stored value is not JSON"):
        codec.loads("{nope")
    with pytest.raises(CodecError, match=r"^stored value of unknown kind 'z'"):
        codec.loads('{"z":[]}')
    with pytest.raises(CodecError, match=r"^stored .*EventIds has fields"):
        codec.loads('{"a":"trio_saga.participant:EventIds","v":{"prefix":"x"}}')
    with pytest.raises(CodecError, match=r"^cannot store the number nan"):
        codec.dumps(float("nan"))
