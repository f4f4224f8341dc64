#!/usr/bin/env python3
# A load measurement of the stdio mode (DESIGN §5): it owns the input it generates and how time,
# memory and completion are counted. It must never pass or fail on timing (machines are noisy:
# it reports, the reader judges) and never count a saga as done without its notification.
"""Feed N reserve_inventory lines (distinct saga ids) through `run.py` and report sagas per
second and the node's peak memory, in settle and --no-settle modes.

    python benchmarks/stdio_load.py                  # 1,000 sagas, the standard modes
    python benchmarks/stdio_load.py --sagas 500 --fault drop:p=0.1 --seed 1

Every saga must complete (one saga_completed per saga, counted on stdout; "ended" counts
every end-of-saga notification); if one does not, the script says so and exits 1. Peak memory
is the child's own maximum RSS (wait4), and "net" time subtracts the wall time of a node fed
only the init line (interpreter start-up, imports, shutdown).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parent.parent
INIT = {
    "src": "c0",
    "dest": "event_bus",
    "body": {"type": "init", "msg_id": 1, "services": ["inventory", "payment", "shipping"]},
}


@attrs.frozen(kw_only=True)
class Measured:
    label: str
    sagas: int
    ended: int
    completed: int
    lines_out: int
    wall_s: float
    peak_rss_mib: float
    returncode: int


def load_input(sagas: int) -> bytes:
    """The init line, then one reserve_inventory per saga: quantity 1, a new sku every 1,000
    sagas (the default stock is 1,000 per sku), so that every saga can complete."""
    lines = [json.dumps(INIT)]
    for i in range(sagas):
        body = {
            "type": "reserve_inventory",
            "msg_id": i + 2,
            "saga_id": f"saga{i}",
            "sku": f"sku{i // 1000}",
            "quantity": 1,
        }
        lines.append(json.dumps({"src": "c1", "dest": "inventory", "body": body}))
    return "".join(line + "\n" for line in lines).encode()


def run_node(label: str, data: bytes, args: list[str], sagas: int) -> Measured:
    """One run of `run.py ARGS` on `data`, its own rusage taken with wait4."""
    with tempfile.TemporaryDirectory() as tmp:
        stdin, stdout = Path(tmp, "in"), Path(tmp, "out")
        stdin.write_bytes(data)
        with stdin.open("rb") as fin, stdout.open("wb") as fout:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "run.py", *args],
                cwd=REPO,
                stdin=fin,
                stdout=fout,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        out = [json.loads(line) for line in stdout.read_text().splitlines()]
    ended = sum(
        1 for m in out if m["body"]["type"] in ("saga_completed", "saga_compensated", "saga_failed")
    )
    completed = sum(1 for m in out if m["body"]["type"] == "saga_completed")
    return Measured(
        label=label,
        sagas=sagas,
        ended=ended,
        completed=completed,
        lines_out=len(out),
        wall_s=wall,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports KiB
        returncode=proc.returncode,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the best counts")
    args = parser.parse_args(argv)
    faults = [a for spec in args.fault for a in ("--fault", spec)]
    if faults:
        faults += ["--seed", str(args.seed)]
    baseline = min(run_node("init only", load_input(0), [], 0).wall_s for _ in range(args.repeat))
    data = load_input(args.sagas)
    modes = {"settle": faults, "--no-settle": ["--no-settle", *faults]}
    print(f"{args.sagas} sagas through run.py {' '.join(faults)}".rstrip())
    print(f"start-up and shutdown alone (init only): {baseline:.2f} s")
    head = ("mode", "ended", "wall s", "net s", "sagas/s", "net/s", "RSS MiB")
    print("{:<12} {:>11} {:>7} {:>6} {:>8} {:>8} {:>8}".format(*head))
    failed = False
    for label, mode_args in modes.items():
        runs = [run_node(label, data, mode_args, args.sagas) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r.wall_s)
        net = max(best.wall_s - baseline, 1e-9)
        print(
            f"{label:<12} {best.ended:>5}/{best.sagas:<5} {best.wall_s:>7.2f} {net:>6.2f}"
            f" {best.sagas / best.wall_s:>8.0f} {best.sagas / net:>8.0f}"
            f" {max(r.peak_rss_mib for r in runs):>8.1f}"
        )
        for run in runs:
            if run.completed != run.sagas or run.returncode != 0:
                failed = True
                print(
                    f"  NOT ALL SAGAS COMPLETED: {run.completed} completed, {run.ended} ended"
                    f" of {run.sagas}, exit {run.returncode}",
                    file=sys.stderr,
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
