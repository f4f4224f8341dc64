"""The fork server of a cluster run: `python -m trio_saga.redis.launcher --saga REF`.

A service's process spends most of its start-up importing (trio, coredis, the saga); a
restart after a kill would wait for that every time, and recovery would be measured in
imports. This process imports once, then forks one child per request: each child is a real
OS process of its own (its own pid, SIGKILLed and SIGSTOPped by pid, with its own Redis
connections, made after the fork), running `service.serve`.

Protocol, one line each way: in `start SERVICE REDIS_URL NAMESPACE`; out `ready` once, `pid
SERVICE PID` per start, `exit PID STATUS` per child that ended (STATUS as subprocess gives
it: negative for a signal). It must never run trio itself (a fork inside a trio run is
unsafe), never write to stdout from a child, and never outlive its input: at end of input it
kills its children and exits.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import traceback
from collections.abc import Sequence


def _child(service: str, url: str, ns: str, saga_ref: str) -> None:
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)  # stdout is the launcher's protocol
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        import trio

        from .service import serve

        code = trio.run(serve, url, ns, service, saga_ref)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_saga.redis.launcher")
    parser.add_argument("--saga", required=True)
    args = parser.parse_args(argv)
    import coredis  # noqa: F401  (imported once, here, for every child)
    import trio  # noqa: F401

    from ..saga import load_saga
    from . import service  # noqa: F401

    load_saga(args.saga)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    children: set[int] = set()
    stdin = sys.stdin.fileno()
    buffer = b""
    open_input = True
    while open_input or children:
        if open_input:
            readable, _, _ = select.select([stdin], [], [], 0.005)
            if readable:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    open_input = False
                    for pid in children:
                        _kill(pid)
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    parts = line.decode().split()
                    if len(parts) == 4 and parts[0] == "start":
                        _, name, url, ns = parts
                        out.flush()
                        pid = os.fork()
                        if pid == 0:
                            _child(name, url, ns, args.saga)
                        children.add(pid)
                        out.write(f"pid {name} {pid}\n")
                        out.flush()
        else:
            select.select([], [], [], 0.005)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            if open_input:
                out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
                out.flush()
    return 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
