"""Helpers the tests share for running `run.py` as a real subprocess.

Owns how a test starts the command line (interpreter, working directory, environment) and what
a usage error must look like. It must never hold assertions about a particular command's
output: those belong to the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_py(
    *args: str, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python run.py ARGS` from the repository root; `env` sets variables, or removes those
    mapped to None."""
    return _python(["run.py", *args], env, timeout)


def run_code(
    code: str, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` in a fresh interpreter from the repository root, as `run_py`."""
    return _python(["-c", code], env, timeout)


def _python(
    argv: list[str], env: Mapping[str, str | None] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_usage_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2, nothing on stdout, one line on stderr naming every fragment."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr
