"""What a service ended with after the certifier drove it (`Ending`: its state, the events it
emitted and the effects the outside world acted on, as plain data), and how two endings differ
(`diff`), with names a service hands out in another order mapped back first.

This module owns the comparison only. It must never drive a handler, import trio or know which
perturbation made the endings it compares: `certify.py` does that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .events import Event
from .participant import VOLATILE, Effect, Participant, World

#: Values `plain` keeps as they are: most of what it walks (it is called per perturbation).
_LEAVES = (str, int, float, bool, type(None))


def plain(value: Any) -> Any:
    """A value as plain data to compare: attrs classes by field (volatile fields left out: a
    crash may wipe them), sets sorted, sequences as lists."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    names = _kept(kind)
    if names is not None:
        made = {"": kind.__name__}
        for name in names:
            made[name] = plain(getattr(value, name))
        return made
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple | deque):
        return [plain(v) for v in value]
    return value


_KEPT: dict[type, tuple[str, ...] | None] = {}


def _kept(kind: type) -> tuple[str, ...] | None:
    """The fields of an attrs class that a crash keeps (None: not an attrs class), cached:
    `attrs.fields` is looked up for every value of every perturbation's state."""
    if kind not in _KEPT:
        names = None
        if attrs.has(kind):
            names = tuple(f.name for f in attrs.fields(kind) if not f.metadata.get(VOLATILE))
        _KEPT[kind] = names
    return _KEPT[kind]


def _event(event: Event) -> dict[str, Any]:
    made = plain(event)
    made.pop("timestamp", None)
    # An event id only says in which order the service made its events, which a swap changes
    # and an event too many shifts; it can also look like a name a service hands out (the
    # travel saga's car-1). The events themselves, and the service's counter, still compare.
    made.pop("event_id", None)
    made["type"] = event.type
    return dict(made)


def _effect(effect: Effect) -> dict[str, Any]:
    return {
        "system": effect.system,
        "action": effect.action,
        "key": effect.key,
        "params": dict(effect.params),
        "result": effect.result,
    }


@attrs.frozen(kw_only=True)
class Ending:
    """What a service ended with: its state, its events per saga, its applied effects per
    saga (all plain data)."""

    state: Any
    events: dict[str, list[dict[str, Any]]]
    effects: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, participant: Participant, emitted: Iterable[Event], world: World) -> Ending:
        events: dict[str, list[dict[str, Any]]] = {}
        for event in emitted:
            events.setdefault(event.saga_id, []).append(_event(event))
        effects: dict[str, list[dict[str, Any]]] = {}
        for effect in world.effects:
            if effect.applied and effect.service == participant.name:
                effects.setdefault(effect.saga_id, []).append(_effect(effect))
        return cls(state=plain(participant.service), events=events, effects=effects)


def _learn(clean: Any, other: Any, names: dict[str, str], conflicts: list[str]) -> None:
    """Learn the renaming other -> clean from two aligned values (strings that differ)."""
    if clean == other:  # most of it, compared in C: nothing to learn there
        return
    if isinstance(clean, str) and isinstance(other, str):
        known = names.get(other)
        if known is None:
            names[other] = clean
        elif known != clean:
            conflicts.append(f"{other!r} stands for both {known!r} and {clean!r}")
    elif isinstance(clean, dict) and isinstance(other, dict):
        for key in clean.keys() & other.keys():
            _learn(clean[key], other[key], names, conflicts)
    elif isinstance(clean, list) and isinstance(other, list):
        for a, b in zip(clean, other, strict=False):
            _learn(a, b, names, conflicts)


def _rename(value: Any, names: Mapping[str, str]) -> Any:
    kind = type(value)  # exact types: plain data has no subclasses, and this runs per swap
    if kind is str:
        return names.get(value, value)
    if kind is dict:
        return {_rename(k, names): _rename(v, names) for k, v in value.items()}
    if kind is list:
        return [_rename(v, names) for v in value]
    return value


def _differences(path: str, clean: Any, other: Any, out: list[str]) -> None:
    if isinstance(clean, dict) and isinstance(other, dict):
        for key in sorted(clean.keys() | other.keys(), key=repr):
            where = f"{path}.{key}" if path else str(key)
            if key not in other:
                out.append(f"{where}: {_short(clean[key])} -> (missing)")
            elif key not in clean:
                out.append(f"{where}: (missing) -> {_short(other[key])}")
            else:
                _differences(where, clean[key], other[key], out)
    elif isinstance(clean, list) and isinstance(other, list) and len(clean) == len(other):
        for index, (a, b) in enumerate(zip(clean, other, strict=True)):
            _differences(f"{path}[{index}]", a, b, out)
    elif isinstance(clean, list) and isinstance(other, list):
        # An event or effect too many (or too few) is most of what goes wrong: say which.
        n, m = len(clean), len(other)
        if other[:n] == clean:
            out.append(f"{path}: {n} -> {_count(m)}, added {_items(other[n:])}")
        elif clean[:m] == other:
            out.append(f"{path}: {n} -> {_count(m)}, lost {_items(clean[m:])}")
        else:
            out.append(f"{path}: {n} -> {_count(m)}: {_items(clean)} -> {_items(other)}")
    elif clean != other:
        out.append(f"{path}: {_short(clean)} -> {_short(other)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _count(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _items(values: list[Any]) -> str:
    """Events as `Type(field=value, ...)`, effects as `system.action(...) -> result`, other
    values as they print; shortened."""
    shown = []
    for value in values:
        if isinstance(value, dict) and "system" in value and "action" in value:
            params = ", ".join(f"{k}={v!r}" for k, v in value.get("params", {}).items())
            text = f"{value['system']}.{value['action']}({params}) -> {value.get('result')}"
            key = value.get("key")
            text += " (no key)" if key is None else f" key {key}"
        elif isinstance(value, dict) and "" in value:
            fields = [f"{k}={v!r}" for k, v in value.items() if k not in ("", "type", "saga_id")]
            text = f"{value.get('type', value[''])}({', '.join(fields)})"
        else:
            text = repr(value)
        shown.append(text)
    text = "[" + ", ".join(shown) + "]"
    return text if len(text) <= 110 else text[:107] + "..."


def _unordered(value: Any) -> Any:
    """Lists of names (a set's sorted members) sorted again after renaming."""
    if isinstance(value, dict):
        return {k: _unordered(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted(value)
    if isinstance(value, list):
        return [_unordered(v) for v in value]
    return value


def diff(clean: Ending, other: Ending, *, unordered: bool = False) -> list[str]:
    """How `other` differs from `clean`, as lines (empty: unchanged).

    Names handed out in another order (`r2` for `r1`, a gateway's `gateway-8` for
    `gateway-7`) are first mapped back, one to one, through the events and effects, so an
    event too many shows as itself, not as every later name shifted by one. With `unordered`
    (swaps), lists of names compare as sets."""
    if clean == other:  # most perturbations of a correct handler: nothing to walk
        return []
    names: dict[str, str] = {}
    conflicts: list[str] = []
    for saga_id in clean.events.keys() & other.events.keys():
        _learn(clean.events[saga_id], other.events[saga_id], names, conflicts)
    for saga_id in clean.effects.keys() & other.effects.keys():
        _learn(clean.effects[saga_id], other.effects[saga_id], names, conflicts)
    if len(set(names.values())) != len(names):
        conflicts.append("two names map to one")
    found = [f"renaming: {c}" for c in conflicts[:2]]
    for what, a, b in (
        ("events", clean.events, other.events),
        ("effects", clean.effects, other.effects),
        ("state", clean.state, other.state),
    ):
        renamed = _rename(b, names) if names else b
        if a == renamed:  # compared in C: nothing to walk
            continue
        if unordered:
            a, renamed = _unordered(a), _unordered(renamed)
        _differences(what, a, renamed, found)
    return found
