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
from collections.abc import Sequence
from typing import NoReturn

import trio

from .errors import SagaError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
trio-saga: a choreography saga (inventory -> payment -> shipping) on trio, with fault injection.

With no command, run as a Maelstrom-style node: JSON messages in on stdin, one per line;
replies and saga notifications out on stdout; logs on stderr. Nodes: event_bus, inventory,
payment, shipping. Network faults (--fault) apply to the bus; forced failures come from the
request flags fail_inventory / fail_payment / fail_shipping.

Commands:
  scenarios [--run]         list the named scenarios (--run: run them all)
  scenario NAME             run one and print its summary (exit 1 if an invariant or an
                            expected outcome fails)
  explore                   run many seeds (optionally swarm fault mixes), shrink failures
  replay FILE               re-run a saved run exactly

Fault specs (for --fault, and in scenario files) look like NAME:key=value,...:
  drop:p=0.1   delay:mean=0.05,dist=exponential   duplicate:p=0.2,copies=2
  reorder:window=0.5   partition:service=payment,start=1,duration=5,direction=both
  crash:service=payment,after=PaymentCharged,downtime=1   crash:service=shipping,at=2
  fail_payment:saga=saga7   fail_shipping:rate=0.1
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (try --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> Parser:
    parser = Parser(
        prog="run.py", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    scenarios = commands.add_parser("scenarios", help="list the named scenarios")
    scenarios.add_argument(
        "--run",
        action="store_true",
        help="run every scenario with its default seed and print summaries",
    )

    scenario = commands.add_parser("scenario", help="run one named scenario")
    scenario.add_argument("name")
    scenario.add_argument("--seed", type=int, default=None, dest="scenario_seed")
    scenario.add_argument("--trace", metavar="PATH", help="write the JSONL trace here")
    scenario.add_argument("--diagram", metavar="PATH", help="write a Mermaid sequence diagram")
    scenario.add_argument("--saga", metavar="ID", help="the diagram shows only this saga")
    scenario.add_argument("--report", metavar="PATH", help="write a self-contained HTML report")

    explore = commands.add_parser("explore", help="run many seeds and shrink failures")
    explore.add_argument("--scenario", default="chaos")
    budget = explore.add_mutually_exclusive_group()
    budget.add_argument("--seeds", type=int, default=None)
    budget.add_argument("--time", type=float, default=None, metavar="SECONDS")
    explore.add_argument("--jobs", type=int, default=1)
    explore.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=None,
        help="run on Dask workers instead of --jobs processes (same results): local:N starts"
        " N worker processes here, tcp://HOST:PORT uses a running `dask scheduler`;"
        " needs the [cluster] extra",
    )
    explore.add_argument("--swarm", action="store_true")
    explore.add_argument("--first-seed", type=int, default=0)
    explore.add_argument(
        "--out", metavar="DIR", default="replays", help="where replay files of failing runs go"
    )
    explore.add_argument("--report", metavar="PATH")

    replay = commands.add_parser("replay", help="re-run a saved run exactly")
    replay.add_argument("file")
    replay.add_argument("--trace", metavar="PATH")
    replay.add_argument("--diagram", metavar="PATH")
    replay.add_argument("--saga", metavar="ID")
    replay.add_argument("--report", metavar="PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SagaError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


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
        from .explore import explore_command

        if args.cluster is not None and args.jobs != 1:
            raise SagaError("--cluster and --jobs cannot be combined: the workers are the jobs")
        return explore_command(args)
    from .explore import replay_command

    return replay_command(args)


def _stdio(args: argparse.Namespace) -> int:
    import math

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
