# What `pip install .` (not editable) installs: every package of the source tree, the named
# scenarios as package data, and every non-Python file the code reads. A package left out of
# pyproject's list (trio_saga.shop and trio_saga.stdio once were) works in the repository and
# is missing after an install; this compares the list with the tree.

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def source_dir(package: str) -> Path:
    mapped = SETUPTOOLS.get("package-dir", {}).get(package)
    return REPO / mapped if mapped else REPO / package.replace(".", "/")


def test_every_package_of_the_tree_is_installed() -> None:
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("trio_saga", "faults")
        for init in (REPO / top).rglob("__init__.py")
    }
    listed = set(SETUPTOOLS["packages"])
    assert found <= listed, f"not installed: {sorted(found - listed)}"
    for package in listed:
        assert source_dir(package).is_dir(), package


def test_every_data_file_a_package_holds_is_installed() -> None:
    data = SETUPTOOLS["package-data"]
    for package in SETUPTOOLS["packages"]:
        folder = source_dir(package)
        for path in folder.iterdir():
            if path.is_file() and path.suffix not in (".py", ".pyc"):
                globs = data.get(package, [])
                assert any(fnmatch.fnmatch(path.name, g) for g in globs), (package, path.name)


def test_the_named_scenarios_are_package_data_and_the_console_script_exists() -> None:
    assert source_dir("trio_saga.scenarios") == REPO / "scenarios"
    assert list((REPO / "scenarios").glob("*.toml"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"trio-saga": "trio_saga.cli:main"}
