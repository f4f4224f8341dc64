"""The commands of the command line, in one room: `scenarios`, `scenario NAME|PATH` (list the
named scenarios, run one or all and say whether it passed, and write its trace, diagram and
report), `explore` and `replay`.

This module owns what those commands print, write and return as exit status. It must never
judge a run itself (the oracle and the scenario's [expect] do), never parse arguments (cli.py
does) and never let a user error escape as anything but a SagaError with a one-line message.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import TYPE_CHECKING

import attrs

from .errors import EXIT_FAILED, EXIT_OK, SagaError, ScenarioError, program
from .files import check_writable, write_text
from .oracle import number_of
from .scenario import Scenario, scenario_dir, scenario_names
from .simulation import SimulationResult, simulate
from .summary import summarize

# explore (with multiprocessing), shrink, diagram and report are imported by the commands that
# use them: `run.py scenario NAME` is run often and should pay only for a run and its summary.
if TYPE_CHECKING:
    from .shrink import ReplayFile


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
        from .diagram import mermaid

        write_text(diagram_path, mermaid(done.result.trace, saga, saga=scenario.saga))
        written.append(f"diagram {diagram_path}")
    if report_path is not None:
        from .report import write_report

        write_report(report_path, f"{scenario.name} (seed {done.seed})", done.result, scenario)
        written.append(f"report {report_path}")
    if written:
        print("wrote      " + ", ".join(written), flush=True)
    return EXIT_OK if done.passed else EXIT_FAILED


# -- explore and replay ------------------------------------------------------------------------


def explore_command(args: argparse.Namespace) -> int:
    """`run.py explore`: exit 1 if any run violated an invariant."""
    from .explore import RunCrashed, explore
    from .explore_text import ProgressBar, format_explore, replay_command_line

    if args.seeds is not None and args.seeds < 1:
        raise SagaError("--seeds must be at least 1")
    if args.jobs < 1:
        raise SagaError("--jobs must be at least 1")
    if args.jobs > 4 * (os.cpu_count() or 1):
        raise SagaError(
            f"--jobs {args.jobs} is more than 4 per core; this machine has {os.cpu_count()} cores"
        )
    scenario = Scenario.load(args.scenario)
    scenario.with_faults(args.extra_faults)  # checked now, against the scenario's saga
    if args.report is not None:
        check_writable(args.report)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        result = explore(
            scenario,
            args.seeds,
            args.jobs,
            first_seed=args.first_seed,
            time_budget=args.time,
            swarm=args.swarm,
            faults=args.extra_faults,
            out=args.out,
            max_replays=args.max_replays,
            progress=bar,
            cluster=args.cluster,
        )
    except RunCrashed as exc:
        print(f"{program()}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if bar is not None:
            bar.close()
    print(format_explore(result))
    if args.report is not None:
        from .report import write_explore_report

        title = f"explore {scenario.name}" + (" (swarm)" if result.swarm else "")
        write_explore_report(
            args.report,
            title,
            result,
            replay_command=functools.partial(replay_command_line, saga=result.saga),
        )
        print(f"wrote      report {args.report}")
    return EXIT_FAILED if result.failing else EXIT_OK


def replay_command(args: argparse.Namespace) -> int:
    """`run.py replay FILE [--trace PATH] [--diagram PATH] [--saga ID] [--report PATH]`:
    re-run a saved run from its decisions; exit 1 if it violates an invariant."""
    from .explore_text import decisions_text
    from .shrink import ReplayFile

    replay = ReplayFile.load(args.file)
    saga_def = replay.load_saga(args.saga_def)
    scenario = replay.load_scenario(saga_def)
    for path in (args.trace, args.diagram, args.report):
        if path is not None:
            check_writable(path)
    result = simulate(replay.simulation(saga_def))
    known = result.saga_log.get
    if args.saga is not None and known(args.saga) is None:
        raise SagaError(f"no saga {args.saga!r} in this run")
    if replay.decisions is None:
        print(f"replaying  seed {replay.seed} with its fault specs from {args.file}")
    else:
        origin = "shrunk from" if replay.shrunk else "of"
        print(
            f"replaying  {decisions_text(len(replay.decisions))} ({origin} {replay.recorded}"
            f" recorded) from {args.file}"
        )
    print(summarize(scenario.name, result, seed=replay.seed, description=scenario.description))
    print(_replay_verdict(replay, result), flush=True)
    written: list[str] = []
    if args.trace is not None:
        write_text(args.trace, result.trace_text())
        written.append(f"trace {args.trace} ({len(result.trace)} lines)")
    if args.diagram is not None:
        from .diagram import mermaid

        # By default the diagram follows the saga that broke the invariant: that is where the
        # minimal faults show.
        saga = args.saga
        if saga is None and replay.saga_id is not None and known(replay.saga_id) is not None:
            saga = replay.saga_id
        write_text(args.diagram, mermaid(result.trace.records, saga, saga=saga_def))
        written.append(f"diagram {args.diagram}" + (f" ({saga})" if saga else ""))
    if args.report is not None:
        from .report import write_report

        write_report(
            args.report, f"replay of {scenario.name} (seed {replay.seed})", result, scenario
        )
        written.append(f"report {args.report}")
    if written:
        print("wrote      " + ", ".join(written))
    return EXIT_FAILED if result.violations else EXIT_OK


def _replay_verdict(replay: ReplayFile, result: SimulationResult) -> str:
    from .shrink import trace_digest, violation_of

    found = violation_of(result, replay.invariant)
    number = number_of(result.saga, replay.invariant)
    if found is not None:
        where = f" ({found.saga_id})" if found.saga_id else ""
        verdict = f"replay     invariant {number} ({replay.invariant}) violated again{where}"
    else:
        verdict = f"replay     invariant {number} ({replay.invariant}) NOT violated this time"
    if replay.trace_digest:
        same = trace_digest(result) == replay.trace_digest
        verdict += (
            ", trace identical to the recorded one"
            if same
            else ", trace DIFFERS from the recorded one (the code changed since?)"
        )
    return verdict
