# Files someone else wrote: scenario files and replay files. Whatever they hold, loading one is a
# one-line error (ScenarioError / ReplayError) or a run that goes through; never a traceback,
# never code the user did not name. Hypothesis throws TOML values of every type at every key of
# a scenario, and mangles every field of a real replay file.

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_saga.errors import SagaError
from trio_saga.explore import explore
from trio_saga.scenario import Scenario
from trio_saga.shop import SHOP
from trio_saga.shrink import ReplayError, ReplayFile
from trio_saga.simulation import simulate

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# -- scenario files ------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML rendering of a JSON-like value (hypothesis builds the values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


SCALARS = (
    st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)

GOOD = {
    "top": {"description": '"ok"', "seed": "1", "max_time": "60", "faults": '["drop:p=0.1"]'},
    "state": {"funds": "1000.0", "default_stock": "10", "unit_price": "5.0", "stock": "{a = 3}"},
    "group": {"count": "3", "start": "0.0", "every": "0.1", "sku": '"a"', "quantity": "1"},
    "expect": {"completed": "3"},
}
KEYS = [(table, key) for table, keys in GOOD.items() for key in keys] + [
    ("top", "saga"),
    ("group", "fail"),
    ("group", "amount"),
    ("expect", "invariants_only"),
]


def scenario_text(table: str, key: str, value: str) -> str:
    parts = {name: dict(keys) for name, keys in GOOD.items()}
    parts[table][key] = value
    lines = [f"{k} = {v}" for k, v in parts["top"].items()]
    lines += ["[state]"] + [f"{k} = {v}" for k, v in parts["state"].items()]
    lines += ["[[sagas]]"] + [f"{k} = {v}" for k, v in parts["group"].items()]
    lines += ["[expect]"] + [f"{k} = {v}" for k, v in parts["expect"].items()]
    return "\n".join(lines) + "\n"


def _refusal(attempt: Callable[[], T]) -> tuple[str, T | None]:
    """What `attempt` returned, or the one-line SagaError text it refused with."""
    try:
        return "", attempt()
    except SagaError as exc:
        return str(exc), None


def test_the_good_scenario_runs() -> None:
    scenario = Scenario.from_toml("good", scenario_text("top", "seed", "1"))
    assert simulate(scenario.simulation()).counts()["completed"] == 3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(KEYS), value=VALUES)
def test_any_value_at_any_scenario_key_is_a_one_line_error_or_a_run(
    where: tuple[str, str], value: Any
) -> None:
    text = scenario_text(*where, toml_value(value))
    refused, scenario = _refusal(lambda: Scenario.from_toml("fuzzed", text))
    if scenario is None:
        assert "\n" not in refused
        return
    try:
        simulation = scenario.simulation()
        assert simulation.commands()  # every order builds its command
        simulation.build()
    except SagaError as exc:  # pragma: no cover - a refusal the loader should have made
        pytest.fail(f"accepted at load, refused at run: {exc}")


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("top", "max_time"), "nan", r"max_time must be a number of seconds"),
        (("group", "every"), "inf", r"every must be a number of seconds from 0"),
        (("group", "start"), "-1", r"start must be a number of seconds from 0"),
        (("group", "count"), str(2**63 - 1), r"count must be from 1 to 1,000,000"),
        (("group", "sku"), '""', r"field 'sku' must be a non-empty string"),
        (("group", "amount"), "inf", r"field 'amount' must be a number from 0 to"),
        (("group", "amount"), "-2.5", r"field 'amount' must be a number from 0 to"),
        (("group", "quantity"), "-2", r"field 'quantity' must be a positive integer"),
        (("state", "funds"), "-1.0", r"state\.funds must be a number from 0 to"),
        (("state", "unit_price"), "inf", r"state\.unit_price must be a number from 0 to"),
        (("state", "default_stock"), "-3", r"state\.default_stock must be an integer from 0"),
        (("state", "stock"), "{a = true}", r"state\.stock\.a must be an integer from 0"),
        (("expect", "completed"), "3.7", r"\[expect\] completed must be a non-negative integer"),
        (("expect", "completed"), "-1", r"\[expect\] completed must be a non-negative integer"),
        (("expect", "invariants_only"), "true", r"\[expect\] gives counts and invariants_only"),
        (("expect", "completed"), "2", r"\[expect\] counts add up to 2, but the scenario starts 3"),
    ],
)
def test_what_a_scenario_file_must_not_say(
    where: tuple[str, str], value: str, message: str
) -> None:
    with pytest.raises(SagaError, match=rf"^scenario bad: .*{message}"):
        Scenario.from_toml("bad", scenario_text(*where, value))


def test_a_scenario_without_expect_and_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    text = scenario_text("top", "seed", "1").split("[expect]")[0]
    with pytest.raises(SagaError, match=r"^scenario bad: missing \[expect\]"):
        Scenario.from_toml("bad", text)
    binary = tmp_path / "latin.toml"
    binary.write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(SagaError, match=r"^scenario latin: not UTF-8 text"):
        Scenario.load(str(binary))


# -- replay files --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replay_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("replays")
    cut_short = Scenario.load(str(REPO / "tests" / "scenarios" / "cut-short.toml"))
    result = explore(cut_short, 1, out=out)
    assert result.paths, "cut-short always fails: its partition outlasts max_time"
    data: dict[str, Any] = json.loads(next(iter(result.paths.values())).read_text())
    return data


def mangle(data: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    copy: Any = json.loads(json.dumps(data))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return dict(copy)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), value=JSON)
def test_a_mangled_replay_file_is_a_one_line_error_or_a_run(
    replay_json: dict[str, Any], data: st.DataObject, value: Any, tmp_path: Path
) -> None:
    paths: list[list[str | int]] = [
        [key] for key in replay_json if key not in ("format", "version")
    ]
    for index, decision in enumerate(replay_json["decisions"] or ()):
        paths += [["decisions", index, field] for field in decision]
    path = data.draw(st.sampled_from(paths))
    mangled = tmp_path / "mangled.json"
    mangled.write_text(json.dumps(mangle(replay_json, path, value)))

    def replay() -> object:
        loaded = ReplayFile.load(mangled)
        return loaded.run(loaded.load_saga())

    refused, _ = _refusal(replay)
    assert "\n" not in refused, refused


def test_a_replay_file_never_imports_a_module_it_names(
    replay_json: dict[str, Any], tmp_path: Path
) -> None:
    named = tmp_path / "named.json"
    named.write_text(json.dumps({**replay_json, "saga": "this:s"}))  # `import this` prints
    replay = ReplayFile.load(named)
    with pytest.raises(ReplayError, match=r"^this replay ran on saga this:s; a replay file never"):
        replay.load_saga()
    assert replay.load_saga("shop") == SHOP  # the user may name one
