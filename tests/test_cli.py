# `run.py scenarios` and `run.py scenario NAME ...` as a user runs them: real subprocesses from
# the repository root, checking exit codes (0 pass, 1 fail, 2 usage), stdout/stderr and the
# files written. `scenarios --run` (what `make demo` runs) is checked through list_command.

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from support import REPO, assert_usage_error
from support import run_py as run_command

from trio_saga.commands import list_command
from trio_saga.errors import ScenarioError
from trio_saga.scenario import scenario_names

GOOD = """\
description = "Three sagas, all complete."
[[sagas]]
count = 3
[expect]
completed = 3
"""

WRONG_COUNTS = """\
description = "Expects the impossible: three sagas that all fail."
[[sagas]]
count = 3
[expect]
failed = 3
"""


def run_py(*args: str, scenarios: Path | None = None) -> subprocess.CompletedProcess[str]:
    """run.py with the named scenarios of the repository, or of `scenarios`."""
    return run_command(*args, env={"TRIO_SAGA_SCENARIOS": str(scenarios) if scenarios else None})


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """One `scenario chaos` run writing a trace, a full diagram and a one-saga diagram."""
    out = tmp_path_factory.mktemp("chaos")
    trace, diagram = out / "trace.jsonl", out / "all.mmd"
    done = run_py(
        "scenario", "chaos", "--seed", "5", "--trace", str(trace), "--diagram", str(diagram)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    one = out / "one.mmd"
    single = run_py("scenario", "chaos", "--seed", "5", "--diagram", str(one), "--saga", "saga-42")
    assert single.returncode == 0, single.stderr
    return trace, diagram, one, done.stdout


def test_scenarios_lists_each_name_then_its_description_aligned() -> None:
    done = run_py("scenarios")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == scenario_names()
    width = max(len(name) for name in scenario_names())
    for line in lines:
        assert line[width : width + 2] == "  "
        assert line[width + 2] != " "
    assert any("Everything at once" in line for line in lines)


def test_a_passing_scenario_exits_0_with_its_summary() -> None:
    done = run_py("scenario", "happy-path")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("happy-path (seed 1)\n")
    assert "  completed       20  (expected 20)" in out
    assert "faults     none" in out
    assert "[  ok] 5. money is conserved" in out
    shown = [line.strip() for line in out.splitlines() if line.startswith("  [")]
    assert shown == [
        "[  ok] 1. every saga ends",
        "[  ok] 2. outcome matches events",
        "[  ok] 3. no effect without its cause",
        "[  ok] 4. stock is conserved",
        "[  ok] 5. money is conserved",
    ]
    assert "saga       " not in out  # the shop is the default saga: not named
    assert re.search(r"^time       [\d.]+s virtual, [\d.]+s wall", out, re.M)
    assert out.rstrip().endswith("result     PASS")


def test_seed_option_overrides_the_files_seed() -> None:
    done = run_py("scenario", "lossy-network", "--seed", "99")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lossy-network (seed 99)\n")


def test_unexpected_outcome_counts_exit_1(tmp_path: Path) -> None:
    (tmp_path / "wrong.toml").write_text(WRONG_COUNTS)
    done = run_py("scenario", "wrong", scenarios=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "outcome    expected 0 completed, got 3" in done.stdout
    assert "outcome    expected 3 failed, got 0" in done.stdout
    assert done.stdout.rstrip().endswith("result     FAIL")
    assert done.stderr == ""


def test_unknown_scenario_exits_2_listing_the_names() -> None:
    done = run_py("scenario", "no-such-thing")
    assert_usage_error(done, "unknown scenario 'no-such-thing'", ", ".join(scenario_names()))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["scenario"], "the following arguments are required: name"),
        (["scenario", "chaos", "--seed", "seven"], "invalid int value: 'seven'"),
        (["scenario", "chaos", "--bogus"], "unrecognized arguments: --bogus"),
        (["scenario", "happy-path", "--saga", "saga-1"], "--saga"),
        (["scenario", "happy-path", "--diagram", "d.mmd", "--saga", "saga-21"], "no saga"),
        (["scenario", "happy-path", "--trace", "/no/such/dir/t.jsonl"], "cannot write"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str], fragment: str) -> None:
    assert_usage_error(run_py(*args), fragment)
    assert not (REPO / "d.mmd").exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            'description = "x"\nfaults = ["drop:p=2"]\n[[sagas]]\ncount = 1\n'
            "[expect]\ncompleted = 1\n",
            "p must be between",
        ),
        ('description = "x"\n', "missing 'sagas'"),
        ('description = "x"\nseed = \n', "scenario broken: not valid TOML"),
        (
            'description = "x"\n[[sagas]]\ncount = 1\nfail = ["billing"]\n[expect]\nfailed = 1\n',
            "no step 'billing'",
        ),
        ('description = "x"\n[[sagas]]\ncount = 1\n', "missing [expect]"),
        (
            'description = "x"\n[[sagas]]\ncount = 2\n[expect]\ncompleted = 1\n',
            "[expect] counts add up to 1, but the scenario starts 2 sagas",
        ),
    ],
)
def test_a_broken_scenario_file_exits_2(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "broken.toml").write_text(text)
    assert_usage_error(run_py("scenario", "broken", scenarios=tmp_path), fragment)


def test_trace_file_is_jsonl_of_the_whole_run(chaos_run: tuple[Path, Path, Path, str]) -> None:
    trace, _, _, stdout = chaos_run
    lines = trace.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert all(isinstance(r["t"], int | float) and r["kind"] for r in records)
    times = [r["t"] for r in records]
    assert times == sorted(times)
    assert {"start", "publish", "deliver", "drop", "crash", "restart", "heal"} <= {
        r["kind"] for r in records
    }
    assert f"{len(lines)} trace lines" in stdout
    assert f"trace {trace} ({len(lines)} lines)" in stdout


def test_diagram_file_is_a_mermaid_sequence_diagram(
    chaos_run: tuple[Path, Path, Path, str],
) -> None:
    _, diagram, _, stdout = chaos_run
    text = diagram.read_text()
    assert text.startswith("sequenceDiagram\n")
    overview = r"\n    Note over client,shipping: 120 sagas \(.*\) took \d+ distinct paths"
    assert re.search(overview, text)
    assert "CRASH" in text
    assert f"diagram {diagram}" in stdout


def test_saga_option_draws_only_that_saga(chaos_run: tuple[Path, Path, Path, str]) -> None:
    _, _, one, _ = chaos_run
    text = one.read_text()
    assert text.startswith("sequenceDiagram\n")
    assert set(re.findall(r"saga-\d+", text)) == {"saga-42"}
    assert "client->>bus: reserve_inventory" in text


def test_list_command_runs_every_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.toml").write_text(GOOD)
    monkeypatch.setenv("TRIO_SAGA_SCENARIOS", str(tmp_path))
    assert list_command(run=True) == 0
    out = capsys.readouterr().out
    assert out.startswith("good (seed 1)\n")
    assert out.rstrip().endswith("scenarios  1 passed, 0 failed")


def test_list_command_run_fails_if_any_scenario_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.toml").write_text(GOOD)
    (tmp_path / "wrong.toml").write_text(WRONG_COUNTS)
    monkeypatch.setenv("TRIO_SAGA_SCENARIOS", str(tmp_path))
    assert list_command(run=True) == 1
    out = capsys.readouterr().out
    assert out.count("result     PASS") == 1
    assert out.count("result     FAIL") == 1
    assert out.rstrip().endswith("scenarios  1 passed, 1 failed (wrong)")


def test_an_empty_scenario_directory_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_SAGA_SCENARIOS", str(tmp_path))
    with pytest.raises(ScenarioError, match="no scenarios"):
        list_command()


def test_report_option_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    done = run_py("scenario", "payment-failure", "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert f"wrote      report {report}" in done.stdout
    assert report.read_text().lstrip().lower().startswith("<!doctype html")


def test_scenarios_run_is_make_demo(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(GOOD)
    (tmp_path / "wrong.toml").write_text(WRONG_COUNTS)
    done = run_py("scenarios", "--run", scenarios=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stdout.rstrip().endswith("scenarios  1 passed, 1 failed (wrong)")


def test_stdio_options_before_a_command_are_a_usage_error() -> None:
    done = run_py("--fault", "drop:p=1", "scenarios")
    assert_usage_error(done, "--fault before the command is a stdio-mode option")


#: What a plain `run.py scenario NAME` must never load: the test tools, and the modules of the
#: other commands (each imported by its own command only), with their dependencies.
NOT_FOR_A_PLAIN_RUN = (
    "pytest",
    "_pytest",
    "hypothesis",
    "trio.testing",
    "multiprocessing",
    "trio_saga.explore",
    "trio_saga.explore_text",
    "trio_saga.shrink",
    "trio_saga.swarm",
    "trio_saga.redis",
    "trio_saga.cluster",
    "trio_saga.certify",
    "trio_saga.report",
    "trio_saga.diagram",
    "trio_saga.stdio",
)

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$")


def test_a_plain_scenario_run_imports_only_what_it_needs() -> None:
    # -X importtime's report (on stderr) names every module the process imported.
    done = run_command("scenario", "happy-path", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    imported = {
        found.group(2)
        for found in map(IMPORT_LINE.match, done.stderr.splitlines())
        if found is not None
    }
    assert {"trio", "trio_saga.cli", "trio_saga.simulation", "trio_saga.summary"} <= imported
    loaded = sorted(
        name
        for name in imported
        if any(name == banned or name.startswith(banned + ".") for banned in NOT_FOR_A_PLAIN_RUN)
    )
    assert loaded == []


COMMANDS = ["scenarios", "scenario", "explore", "redis", "certify", "replay"]


def test_help_lists_every_command_in_order_each_with_its_help() -> None:
    # redis's parser lives in its own module and is built only when needed: --help needs it.
    done = run_py("--help")
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^    ([a-z]+) {2,}(\S.*)$", done.stdout, flags=re.MULTILINE)
    assert [name for name, _ in listed] == COMMANDS
    assert dict(listed)["redis"].startswith("run one scenario for real")


def test_an_unknown_command_is_a_usage_error_naming_the_commands_in_order() -> None:
    done = run_py("nope")
    assert_usage_error(done)
    choices = ", ".join(f"'{name}'" for name in COMMANDS)
    assert re.fullmatch(
        rf"run\.py: error: argument COMMAND: invalid choice: 'nope' \(choose from {choices}\)"
        r" \(try --help\)\n",
        done.stderr,
    ), done.stderr


def test_the_redis_commands_own_options_are_parsed_and_shown() -> None:
    done = run_py("redis", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: run.py redis [-h]")
    for option in ("--seed", "--redis URL", "--trace PATH", "--report PATH", "--timeout SECONDS"):
        assert option in done.stdout, option
    assert_usage_error(
        run_py("redis", "happy-path", "--timeout", "soon"), "argument --timeout: invalid float"
    )
