"""The stored form of a service's state and of events: JSON, generic over attrs classes.

This module owns how anything a saga's services hold (dicts, lists, tuples, sets, deques,
ints, strs, floats, None and nested attrs instances: the shop's Reservation and Payment, the
travel saga's Pool, EventIds, ...) becomes text and comes back equal. It is pure (no Redis, no
trio). It must never pickle, never import a module and never build a class that it was not
given: what it decodes comes from a shared server, so it only constructs the attrs classes in
its own registry (built from the saga's modules, `Codec.for_saga`) and refuses anything else.

The format tags every container so that a round trip keeps its kind: `{"d": [[k, v], ...]}`
(a dict, keys of any kind), `{"l": [...]}`, `{"t": [...]}`, `{"s": [...]}` (a set, sorted by
its encoded form so the text is stable), `{"f": [...]}`, `{"q": [...]}` (a deque) and
`{"a": "module:QualName", "v": {field: value}}` (an attrs instance, every field by name).
"""

from __future__ import annotations

import json
import math
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import attrs

from ..errors import SagaError


class CodecError(SagaError):
    """A value that cannot be stored, or stored text that is not a value of this saga."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Codec:
    """Encodes and decodes values whose attrs classes are in `classes`."""

    def __init__(self, classes: Iterable[type]) -> None:
        self._classes: dict[str, type] = {}
        for cls in classes:
            if attrs.has(cls):
                self._classes[_name(cls)] = cls

    @classmethod
    def for_saga(cls, saga: Any, services: Iterable[Any] = ()) -> Codec:
        """The codec for a saga: every attrs class named at the top level of the modules that
        define its services, its services factory, its order function and the shared
        vocabulary (events, participant). Only modules already imported are read."""
        modules = {"trio_saga.events", "trio_saga.participant"}
        for thing in (saga.services, saga.order, *(type(s) for s in services)):
            module = getattr(thing, "__module__", None)
            if module:
                modules.add(module)
        found: list[type] = []
        for module_name in sorted(modules):
            module = sys.modules.get(module_name)
            for value in vars(module or object()).values():
                if isinstance(value, type) and attrs.has(value):
                    found.append(value)
        return cls(found)

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self._classes)

    # -- encoding --------------------------------------------------------------------------

    def dumps(self, value: Any) -> str:
        return json.dumps(self.encode(value), separators=(",", ":"), allow_nan=False)

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CodecError(f"cannot store the number {value!r}")
            return value
        if isinstance(value, dict):
            return {"d": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, list):
            return {"l": [self.encode(v) for v in value]}
        if isinstance(value, tuple) and not attrs.has(type(value)):
            return {"t": [self.encode(v) for v in value]}
        if isinstance(value, set | frozenset):
            items = sorted((self.encode(v) for v in value), key=_sort_key)
            return {"s" if isinstance(value, set) else "f": items}
        if isinstance(value, deque):
            return {"q": [self.encode(v) for v in value]}
        cls = type(value)
        if attrs.has(cls):
            name = _name(cls)
            if self._classes.get(name) is not cls:
                raise CodecError(f"cannot store a {name}: not a class of this saga's modules")
            fields = attrs.fields(cast(Any, cls))
            return {"a": name, "v": {f.name: self.encode(getattr(value, f.name)) for f in fields}}
        from collections.abc import Mapping

        if isinstance(value, Mapping):  # a read-only mapping (StartSaga.fields): as a dict
            return {"d": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        raise CodecError(f"cannot store a {cls.__module__}.{cls.__qualname__}")

    # -- decoding --------------------------------------------------------------------------

    def loads(self, text: str | bytes) -> Any:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"stored value is not JSON: {exc}") from None
        return self.decode(data)

    def decode(self, data: Any) -> Any:
        if data is None or isinstance(data, bool | str | int | float):
            return data
        if not isinstance(data, dict) or len(data) not in (1, 2):
            raise CodecError(f"stored value of unknown form: {_short(data)}")
        if "a" in data:
            return self._instance(data)
        ((tag, items),) = data.items()
        if not isinstance(items, list):
            raise CodecError(f"stored {tag!r} is not a list: {_short(data)}")
        if tag == "d":
            made: dict[Any, Any] = {}
            for pair in items:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise CodecError(f"stored dict item is not a pair: {_short(pair)}")
                made[_hashable(self.decode(pair[0]))] = self.decode(pair[1])
            return made
        values = [self.decode(v) for v in items]
        if tag == "l":
            return values
        if tag == "t":
            return tuple(values)
        if tag == "s":
            return {_hashable(v) for v in values}
        if tag == "f":
            return frozenset(_hashable(v) for v in values)
        if tag == "q":
            return deque(values)
        raise CodecError(f"stored value of unknown kind {tag!r}")

    def _instance(self, data: dict[str, Any]) -> Any:
        name, values = data.get("a"), data.get("v")
        cls = self._classes.get(name) if isinstance(name, str) else None
        if cls is None or not isinstance(values, dict) or set(data) != {"a", "v"}:
            raise CodecError(f"stored object of a class this saga does not know: {_short(name)}")
        fields = attrs.fields(cast(Any, cls))
        if set(values) != {f.name for f in fields}:
            raise CodecError(f"stored {name} has fields {sorted(values)}, expected others")
        decoded = {f.name: self.decode(values[f.name]) for f in fields}
        try:
            made = cls(**{f.alias: decoded[f.name] for f in fields if f.init})
        except (TypeError, ValueError) as exc:
            raise CodecError(f"stored {name} does not build: {exc}") from None
        for field in fields:  # restore exactly, whatever __attrs_post_init__ derived
            object.__setattr__(made, field.name, decoded[field.name])
        return made


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise CodecError(f"stored set item or key is not hashable: {_short(value)}") from None
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
