"""The `scenarios` and `scenario NAME` commands (DESIGN §6): list the named scenarios, run one
(or all) and say whether it passed, and write its trace, diagram and report.

This module owns what those commands print, write and return as exit status. It must never
judge a run itself (the oracle and the scenario's [expect] do), never parse arguments (cli.py
does) and never let a user error escape as anything but a SagaError with a one-line message.
"""

from __future__ import annotations

import argparse

import attrs

from .diagram import mermaid
from .errors import SagaError, ScenarioError
from .files import check_writable, write_text
from .scenario import Scenario, scenario_dir, scenario_names
from .simulation import SimulationResult, simulate
from .summary import summarize

EXIT_OK, EXIT_FAILED = 0, 1


@attrs.frozen(kw_only=True)
class ScenarioRun:
    """One run of a named scenario and its verdict."""

    scenario: Scenario
    seed: int
    result: SimulationResult
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.result.ok and not self.mismatches

    def summary(self) -> str:
        return summarize(
            self.scenario.name,
            self.result,
            seed=self.seed,
            description=self.scenario.description,
            expected=None if self.scenario.expect is None else dict(self.scenario.expect),
            mismatches=self.mismatches,
        )


def run_scenario(scenario: Scenario, seed: int | None = None) -> ScenarioRun:
    """Run `scenario` with `seed` (default: the file's) to quiet, on a mock clock."""
    chosen = scenario.seed if seed is None else seed
    result = simulate(scenario.simulation(chosen))
    return ScenarioRun(
        scenario=scenario,
        seed=chosen,
        result=result,
        mismatches=tuple(scenario.outcome_mismatches(result)),
    )


def load_all() -> list[Scenario]:
    """Every named scenario, in name order; a directory without any is a user error."""
    names = scenario_names()
    if not names:
        raise ScenarioError(f"no scenarios (*.toml) in {scenario_dir()}")
    return [Scenario.load(name) for name in names]


def list_command(run: bool = False) -> int:
    """One line per scenario, name first; with `run`, run each with its own seed instead and
    print its summary, failing if any fails."""
    scenarios = load_all()
    if not run:
        width = max(len(s.name) for s in scenarios)
        for scenario in scenarios:
            print(f"{scenario.name:<{width}}  {scenario.description}", flush=True)
        return EXIT_OK
    failed: list[str] = []
    for scenario in scenarios:
        done = run_scenario(scenario)
        print(done.summary() + "\n", flush=True)
        if not done.passed:
            failed.append(scenario.name)
    passed = len(scenarios) - len(failed)
    tail = f" ({', '.join(failed)})" if failed else ""
    print(f"scenarios  {passed} passed, {len(failed)} failed{tail}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def scenario_command(args: argparse.Namespace) -> int:
    """`run.py scenario NAME [--seed N] [--trace PATH] [--diagram PATH] [--saga ID]
    [--report PATH]`: exit 0 when the invariants hold and the outcomes match, else 1."""
    scenario = Scenario.load(args.name).with_faults(getattr(args, "extra_faults", ()))
    saga: str | None = getattr(args, "saga", None)
    diagram_path: str | None = getattr(args, "diagram", None)
    trace_path: str | None = getattr(args, "trace", None)
    report_path: str | None = getattr(args, "report", None)
    if saga is not None:
        if diagram_path is None and report_path is None:
            raise SagaError("--saga chooses the saga drawn by --diagram; give --diagram PATH too")
        known = [order.saga_id for order in scenario.orders()]
        if saga not in known:
            raise ScenarioError(
                f"scenario {scenario.name} has no saga {saga!r} (it has {known[0]} .. {known[-1]})"
            )
    # Checked before the run, so that a path that cannot be written is a usage error rather
    # than a run thrown away.
    for path in (trace_path, diagram_path, report_path):
        if path is not None:
            check_writable(path)
    done = run_scenario(scenario, getattr(args, "scenario_seed", None))
    print(done.summary(), flush=True)
    written: list[str] = []
    if trace_path is not None:
        write_text(trace_path, done.result.trace.dump())
        written.append(f"trace {trace_path} ({len(done.result.trace)} lines)")
    if diagram_path is not None:
        write_text(diagram_path, mermaid(done.result.trace, saga, saga=scenario.saga))
        written.append(f"diagram {diagram_path}")
    if report_path is not None:
        from .report import write_report

        write_report(report_path, f"{scenario.name} (seed {done.seed})", done.result, scenario)
        written.append(f"report {report_path}")
    if written:
        print("wrote      " + ", ".join(written), flush=True)
    return EXIT_OK if done.passed else EXIT_FAILED
