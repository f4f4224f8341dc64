# The package's public API: every name of `trio_saga.__all__` is importable from the package and
# is the very object of the module it lives in, while `import trio_saga` alone loads none of
# them (each is imported on first use, so that one module of the package comes without trio
# and the whole simulation).

from __future__ import annotations

import importlib
import re

import pytest
from support import run_code

import trio_saga
from trio_saga.sim import SimBroker


def test_every_public_name_is_the_object_of_its_module() -> None:
    assert len(trio_saga.__all__) == len(set(trio_saga.__all__))
    for name in trio_saga.__all__:
        value = getattr(trio_saga, name)
        if name == "SHOP":  # the one value that is neither a class nor a function
            continue
        home = importlib.import_module(value.__module__)
        assert value is getattr(home, value.__name__), name
    assert trio_saga.EventBus is SimBroker
    assert set(trio_saga.__all__) <= set(dir(trio_saga))


def test_the_shop_saga_is_the_one_its_package_defines() -> None:
    from trio_saga.shop import SHOP

    assert trio_saga.SHOP is SHOP


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"^module 'trio_saga' has no attribute 'Nope'$"):
        _ = trio_saga.Nope  # type: ignore[attr-defined]


def test_a_star_import_gives_every_public_name() -> None:
    names: dict[str, object] = {}
    exec("from trio_saga import *", names)
    assert set(trio_saga.__all__) <= set(names)


def test_importing_the_package_or_its_errors_loads_no_trio() -> None:
    code = (
        "import sys\n"
        "import trio_saga, trio_saga.errors, faults.base\n"
        "print(sorted(m for m in ('trio', 'trio_saga.sim', 'trio_saga.simulation')"
        " if m in sys.modules))\n"
    )
    done = run_code(code, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\[\]\n", done.stdout), done.stdout
