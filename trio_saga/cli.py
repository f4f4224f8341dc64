"""The command line (`python run.py ...`): argument parsing and dispatch only.

Modes: no command -> the stdio node (DESIGN §5); `scenarios`, `scenario NAME` (DESIGN §6);
`explore` and `replay`. This module must never print tracebacks for user errors: a SagaError
becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, SagaError, program

DESCRIPTION = """\
trio-saga: choreography sagas on trio, with fault injection, an invariant oracle, and tools
for any saga you define (see the README, "Check your own saga").

With no command, run the shop saga (inventory -> payment -> shipping) as a Maelstrom-style
node: JSON messages in on stdin, one per line; replies and saga notifications out on stdout;
logs on stderr. Nodes: event_bus, inventory, payment, shipping. Requests (body.type):
  init               to event_bus (or any node); optional services, node_id, node_ids
  reserve_inventory  to inventory; saga_id, sku, quantity, optional amount and the flags
                     fail_inventory / fail_payment / fail_shipping (booleans)
  saga_status        to event_bus; saga_id -> status and events
Network faults (--fault) apply to the bus; forced failures come from the request flags.

Commands:
  scenarios [--run]         list the named scenarios (--run: run them all)
  scenario NAME|FILE        run one and print its summary (exit 1 if an invariant or an
                            expected outcome fails)
  explore                   run many seeds (optionally swarm fault mixes), shrink failures
  replay FILE               re-run a saved run exactly
  redis NAME|PATH           run one scenario for real: a process per service over Redis
                            Streams, kill -9 faults, the same oracle (needs trio-saga[redis])
  certify [--saga NAME]     every handler under duplicates, swaps and crashes, diffed
                            against a clean run (exit 1 if anything changed)

Fault specs (for --fault, and in scenario files) look like NAME:key=value,...:
  drop:p=0.1   delay:mean=0.05,dist=exponential   duplicate:p=0.2,copies=2
  reorder:window=0.5   partition:service=payment,start=1,duration=5,direction=both
  crash:service=payment,after=PaymentCharged,downtime=1   crash:service=shipping,at=2
  fail_STEP:saga=saga7 or fail_STEP:rate=0.1 (fail_payment, fail_car, ...)
"""


def say(line: str) -> None:
    """One line on stderr; none if stderr is closed (print would fall back to stdout, where
    the stdio mode must write nothing but JSON)."""
    if sys.stderr is not None:
        print(line, file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        say(f"{self.prog}: error: {message} (try --help)")
        raise SystemExit(EXIT_USAGE)


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[Parser]
else:  # not subscriptable at run time
    _SubParsers = argparse._SubParsersAction


class Commands(_SubParsers):
    """The commands, each of whose parser is built only when it is needed: when its command is
    given, or --help lists the commands. A command runs with one parser of six, and one of
    them (`redis`) lives in a module of its own, which a plain `run.py scenario NAME` should
    not import. Until then a command holds its place, so that the listing and the choices an
    error names stay in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later: dict[str, Callable[[_SubParsers], None]] = {}
        self._waiting: Parser | None = None

    def add_later(self, name: str, add: Callable[[_SubParsers], None]) -> None:
        """`name`'s place; `add(self)` adds its parser (with its help) once it is needed."""
        if self._waiting is None:  # one stand-in for them all: a parser costs a third of a ms
            self._waiting = Parser(prog=f"{self._prog_prefix} ...", add_help=False)
        self._choices_actions.append(self._ChoicesPseudoAction(name, (), ""))
        self._name_parser_map[name] = self._waiting
        self._later[name] = add

    def _build(self, name: str) -> None:
        add = self._later.pop(name)
        order = list(self._name_parser_map)
        slot = [choice.dest for choice in self._choices_actions].index(name)
        del self._name_parser_map[name], self._choices_actions[slot]
        before = len(self._choices_actions)
        add(self)
        added = self._choices_actions[before:]
        del self._choices_actions[before:]
        self._choices_actions[slot:slot] = added
        for key in order:  # back into the order of the choices (the same dict, in place)
            self._name_parser_map[key] = self._name_parser_map.pop(key)

    def _get_subactions(self) -> list[argparse.Action]:
        for name in list(self._later):  # --help lists every command with its help
            self._build(name)
        return super()._get_subactions()

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, list)
        if values and values[0] in self._later:
            self._build(values[0])
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> Parser:
    parser = Parser(
        prog=program(), description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="stdio mode: inject a fault (repeatable)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="stdio mode: seed for the fault injector (0)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stdio mode: the longest wait for quiet, after a line and at end of input (2)",
    )
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="stdio mode: read the next line without waiting for quiet",
    )
    commands = cast(
        Commands,
        parser.add_subparsers(
            dest="command", metavar="COMMAND", parser_class=Parser, action=Commands
        ),
    )

    # In the order --help lists them; each parser is built when it is needed (Commands).
    commands.add_later("scenarios", _scenarios_parser)
    commands.add_later("scenario", _scenario_parser)
    commands.add_later("explore", _explore_parser)
    # -- issue 13: `run.py redis` (trio_saga/redis/command.py) ------------------------------
    commands.add_later("redis", _add_redis_parser)
    # -- end issue 13 ---------------------------------------------------------------------
    commands.add_later("certify", _certify_parser)
    commands.add_later("replay", _replay_parser)
    return parser


def _scenarios_parser(commands: _SubParsers) -> None:
    scenarios = commands.add_parser("scenarios", help="list the named scenarios")
    scenarios.add_argument(
        "--run",
        action="store_true",
        help="run every scenario with its default seed and print summaries",
    )


def _scenario_parser(commands: _SubParsers) -> None:
    scenario = commands.add_parser("scenario", help="run one scenario, by name or path")
    scenario.add_argument("name", help="a named scenario (see `scenarios`), or a .toml file's path")
    scenario.add_argument(
        "--seed",
        type=int,
        default=None,
        dest="scenario_seed",
        help="the fault injector's seed (default: the scenario's own `seed`)",
    )
    scenario.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        dest="extra_faults",
        help="add a fault to the scenario's own (repeatable)",
    )
    _outputs(scenario)


def _explore_parser(commands: _SubParsers) -> None:
    explore = commands.add_parser("explore", help="run many seeds and shrink failures")
    explore.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=None,
        help="run on Dask workers instead of --jobs processes (same results): local:N starts"
        " N worker processes here, tcp://HOST:PORT uses a running `dask scheduler`;"
        " needs the [cluster] extra",
    )
    explore.add_argument(
        "--scenario",
        default="chaos",
        help="a named scenario or a .toml file's path (default: chaos)",
    )
    explore.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        dest="extra_faults",
        help="add a fault to every run, beside the scenario's own or the swarm's (repeatable)",
    )
    budget = explore.add_mutually_exclusive_group()
    budget.add_argument(
        "--seeds", type=int, default=None, help="how many seeds to run (default: 100)"
    )
    budget.add_argument(
        "--time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run seeds for this long instead of a number of them",
    )
    explore.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes (default: 1; at most 4 per core)",
    )
    explore.add_argument(
        "--swarm",
        action="store_true",
        help="each seed draws its own fault mix from the saga instead of the scenario's faults",
    )
    explore.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first seed; the others follow it (default: 0)",
    )
    explore.add_argument(
        "--out",
        metavar="DIR",
        default="replays",
        help="where replay files of failing runs go (default: replays)",
    )
    explore.add_argument(
        "--report", metavar="PATH", help="write the matrix and failing seeds as an HTML page"
    )

    explore.add_argument(
        "--max-replays",
        type=int,
        default=10,
        metavar="N",
        help="write at most N replay files, one per distinct failure first (default: 10)",
    )


def _certify_parser(commands: _SubParsers) -> None:
    certify = commands.add_parser(
        "certify", help="check every handler under duplicates, swaps and crashes"
    )
    certify.add_argument(
        "--saga",
        metavar="NAME|MODULE:ATTR",
        default="shop",
        help="the saga to certify (default: the shop)",
    )


def _replay_parser(commands: _SubParsers) -> None:
    replay = commands.add_parser("replay", help="re-run a saved run exactly")
    replay.add_argument("file", help="a replay file explore wrote")
    replay.add_argument(
        "--saga-def",
        metavar="MODULE:ATTR",
        default=None,
        help="the saga definition to replay on (needed for a saga that does not ship with"
        " trio-saga: a replay file never imports code by itself)",
    )
    _outputs(replay)


def _outputs(command: argparse.ArgumentParser) -> None:
    """The files a run can write, the same for `scenario` and `replay`."""
    command.add_argument("--trace", metavar="PATH", help="write the JSONL trace here")
    command.add_argument(
        "--diagram",
        metavar="PATH",
        help="write a Mermaid diagram: one saga with --saga, else an overview by path",
    )
    command.add_argument(
        "--saga",
        metavar="ID",
        help="the saga the diagram draws (replay: default the one that broke the invariant)",
    )
    command.add_argument("--report", metavar="PATH", help="write a self-contained HTML report")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SagaError as exc:
        say(f"{program()}: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _interrupted()
    except BaseExceptionGroup as group:  # trio's nurseries wrap a KeyboardInterrupt
        if group.split(KeyboardInterrupt)[1] is None:
            return _interrupted()
        raise
    except BrokenPipeError:
        return EXIT_OK


def _interrupted() -> int:
    """Ctrl-C: one line, the shell's status for SIGINT, never a traceback."""
    say(f"{program()}: interrupted")
    return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command is None:
        return _stdio(args)
    stdio_only = [
        flag
        for flag, given in (
            ("--fault", args.fault),
            ("--seed", args.seed is not None),
            ("--drain", args.drain is not None),
            ("--no-settle", args.no_settle),
        )
        if given
    ]
    if stdio_only:  # silently ignoring them would run something other than what was asked
        raise SagaError(
            f"{stdio_only[0]} before the command is a stdio-mode option; "
            f"give the command's own options after '{args.command}'"
        )
    if args.command == "scenarios":
        from .commands import list_command

        return list_command(run=args.run)
    if args.command == "scenario":
        from .commands import scenario_command

        return scenario_command(args)
    if args.command == "explore":
        from .commands import explore_command

        if args.cluster is not None and args.jobs != 1:
            raise SagaError("--cluster and --jobs cannot be combined: the workers are the jobs")
        return explore_command(args)
    if args.command == "redis":  # issue 13; imported here: coredis is an optional extra
        from .redis.command import redis_command

        return redis_command(args)
    if args.command == "certify":
        from .certify import certify_command

        return certify_command(args)
    from .commands import replay_command

    return replay_command(args)


def _add_redis_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`run.py redis ...` (issue 13): its parser lives with the command, which imports no
    optional dependency at import time."""
    from .redis.command import add_parser

    add_parser(commands)


def _stdio(args: argparse.Namespace) -> int:
    import math

    import trio

    from faults import parse_fault

    from .stdio import DEFAULT_DRAIN_S, serve

    faults = [parse_fault(spec) for spec in args.fault]
    drain = DEFAULT_DRAIN_S if args.drain is None else args.drain
    if not (math.isfinite(drain) and drain >= 0):
        raise SagaError(f"--drain must be a non-negative number of seconds, got {args.drain}")
    # Output is flushed when the node goes idle; PYTHONUNBUFFERED (or -u) would otherwise make
    # every message its own write(2), whatever the node does.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(write_through=False)
    # The node's state (saga log, services, deliveries) is long-lived and makes no cycles; with
    # the default thresholds the collector walks it again and again (an eighth of the CPU
    # under load). Start-up objects are frozen out of its way, young ones collected in
    # larger steps.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return trio.run(
        lambda: serve(faults=faults, seed=args.seed or 0, drain_s=drain, settle=not args.no_settle)
    )
