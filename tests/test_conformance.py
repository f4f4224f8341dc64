# The conformance harness the project is judged by (../shared/conformance/check_stdio.py, beside
# the clone in CI) run over its own cases and over ours in tests/cases, exactly as a reviewer
# runs it: `check_stdio.py CASES -- python run.py`. A missing harness is a failure, not a skip.

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO.parent / "shared" / "conformance"
CHECKER = CONFORMANCE / "check_stdio.py"
SHARED_CASES = CONFORMANCE / "cases"
OWN_CASES = Path(__file__).resolve().parent / "cases"


def check(cases: Path) -> None:
    if not CHECKER.is_file() or not cases.is_dir():
        pytest.fail(
            f"the conformance harness is missing: expected {CHECKER} and {cases}"
            " (../shared beside the repository, as in CI)"
        )
    count = len(list(cases.glob("*.json")))
    assert count > 0, f"no cases in {cases}"
    done = subprocess.run(
        [sys.executable, str(CHECKER), str(cases), "--", sys.executable, "run.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60 + 6 * count,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"{count} passed, 0 failed", done.stdout


def test_the_shared_conformance_cases_pass() -> None:
    check(SHARED_CASES)


def test_our_own_conformance_cases_pass() -> None:
    check(OWN_CASES)
