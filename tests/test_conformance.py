# The conformance harness the project is judged by (check_stdio.py), run over the shared cases
# and over ours in tests/cases, exactly as a reviewer runs it: `check_stdio.py CASES -- python
# run.py`. The harness and the shared cases are copied into tests/conformance so that the suite
# needs nothing outside the repository; where ../shared is beside the clone (as in CI), the
# original harness runs over the original cases too, and the copies must still equal them.

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
OWN_HARNESS = HERE / "conformance" / "check_stdio.py"
OWN_CASES = HERE / "cases"
COPIED_CASES = HERE / "conformance" / "shared-cases"
SHARED = REPO.parent / "shared" / "conformance"

RUNS = [
    pytest.param(OWN_HARNESS, OWN_CASES, id="our-cases"),
    pytest.param(OWN_HARNESS, COPIED_CASES, id="shared-cases-copied"),
]
if (SHARED / "check_stdio.py").is_file():  # beside the clone, as in CI: the originals too
    RUNS.append(pytest.param(SHARED / "check_stdio.py", SHARED / "cases", id="shared-original"))


@pytest.mark.parametrize(("harness", "cases"), RUNS)
def test_the_conformance_cases_pass(harness: Path, cases: Path) -> None:
    count = len(list(cases.glob("*.json")))
    assert count > 0, f"no cases in {cases}"
    done = subprocess.run(
        [sys.executable, str(harness), str(cases), "--", sys.executable, "run.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60 + 6 * count,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"{count} passed, 0 failed", done.stdout


def _originals() -> list[Path]:
    if not (SHARED / "check_stdio.py").is_file():
        return []
    return [SHARED / "check_stdio.py", *sorted((SHARED / "cases").glob("*.json"))]


@pytest.mark.parametrize("original", _originals(), ids=lambda p: p.name)
def test_the_copies_still_equal_the_shared_originals(original: Path) -> None:
    if original.suffix == ".py":
        copy = OWN_HARNESS.read_text(encoding="utf-8")
        assert copy.endswith(original.read_text(encoding="utf-8").split('"""', 1)[1]), (
            "tests/conformance/check_stdio.py differs from the shared harness: copy it again"
        )
    else:
        assert (COPIED_CASES / original.name).read_bytes() == original.read_bytes()
