#!/usr/bin/env python3
"""(A copy of ../shared/conformance/check_stdio.py, the harness the project is judged by, so
that the suite runs in a clone without ../shared; tests/test_conformance.py checks that the
copy still equals the original whenever the original is there.)

Feed line-based JSON test cases to a stdio program and check what it prints.

Usage: check_stdio.py [--quiet] CASE_OR_DIR [...] -- COMMAND [ARG ...]

A case is a JSON file:
  {"name": "...", "timeout_ms": 5000,
   "input": [<message>, ...]                 # written one per line, then stdin is closed
   "expect": [<pattern>, ...],               # must appear in stdout, in this order
   "expect_absent": [<pattern>, ...],        # must not appear anywhere
   "exit_code": 0}                           # optional, default 0
A pattern is {"match": <object>, "exact": false}. With exact, the parsed output line must
equal the object; otherwise every key given must be present with an equal value (objects are
compared the same way, recursively), and other keys may be there too.
An input entry that is a string is written as it is (to send malformed lines).

Every stdout line must be a JSON object. The process must exit within the timeout.
Prints one line per case and a closing 'N passed, N failed' line; exits 1 if any failed.
Standard library only.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any


def matches(pattern: Any, actual: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in pattern.items()
        )
    if isinstance(pattern, bool) or isinstance(actual, bool):
        return pattern is actual
    return pattern == actual


def hit(pattern: dict[str, Any], actual: Any) -> bool:
    want = pattern["match"]
    return actual == want if pattern.get("exact") else matches(want, actual)


def run_case(path: pathlib.Path, command: list[str]) -> list[str]:
    case = json.loads(path.read_text())
    lines = [m if isinstance(m, str) else json.dumps(m) for m in case["input"]]
    stdin = "".join(line + "\n" for line in lines)
    timeout = case.get("timeout_ms", 5000) / 1000
    try:
        proc = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return [f"did not exit within {timeout:g} s"]
    problems: list[str] = []
    out: list[Any] = []
    for n, line in enumerate(proc.stdout.splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"stdout line {n} is not JSON: {line[:120]!r}")
            continue
        if not isinstance(obj, dict):
            problems.append(f"stdout line {n} is not an object: {line[:120]!r}")
        out.append(obj)
    want_code = case.get("exit_code", 0)
    if proc.returncode != want_code:
        tail = proc.stderr.strip().splitlines()[-3:]
        problems.append(f"exit code {proc.returncode}, wanted {want_code}; stderr: {tail}")
    pos = 0
    for pattern in case.get("expect", []):
        while pos < len(out) and not hit(pattern, out[pos]):
            pos += 1
        if pos == len(out):
            problems.append(f"missing (in order): {json.dumps(pattern['match'])}")
            break
        pos += 1
    for pattern in case.get("expect_absent", []):
        if any(hit(pattern, o) for o in out):
            problems.append(f"present but must not be: {json.dumps(pattern['match'])}")
    return problems


def main(argv: list[str]) -> int:
    quiet = "--quiet" in argv
    argv = [a for a in argv if a != "--quiet"]
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    targets, command = argv[:split], argv[split + 1 :]
    cases: list[pathlib.Path] = []
    for t in targets:
        p = pathlib.Path(t)
        cases += sorted(p.glob("*.json")) if p.is_dir() else [p]
    passed = failed = 0
    for case in cases:
        problems = run_case(case, command)
        if problems:
            failed += 1
            print(f"FAIL {case.stem}")
            for problem in problems:
                print(f"     {problem}")
        else:
            passed += 1
            if not quiet:
                print(f"ok   {case.stem}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
