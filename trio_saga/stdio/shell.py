"""The trio shell around the stdio node (DESIGN §5): reads stdin lines, hands each to the
sans-I/O `StdioNode`, writes the lines it returns, drives the Runtime, settles, drains.

This module owns file descriptors, waiting and signals. It must never parse or answer a
message itself (node.py does), and never write to stdout anything but whole lines the node
produced: a signal is taken as an event between writes, never as an exception inside one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import IO

import trio

from faults import Fault

from ..runtime import Runtime
from .node import DEFAULT_DRAIN_S, StdioNode
from .shop import SagaService, default_services

#: Exit status after a signal: the shell convention, 128 + the signal number.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _chunks(fd: int, on_error: Callable[[str], None]) -> AsyncGenerator[list[bytes], None]:
    """The lines of `fd` without their newline, one list per read: read in large chunks on a
    worker thread (no O_NONBLOCK games with a descriptor the parent shares); the last line may
    lack its newline. A read error ends the input like end of file."""
    pending: list[bytes] = []  # the start of a line longer than one read, in pieces
    if fd == 0 and sys.stdin is None:  # started with stdin closed: fd 0 may be anything now
        on_error("stdin is closed; treating it as empty input")
        return
    while True:
        try:
            chunk = await trio.to_thread.run_sync(os.read, fd, 1 << 16, abandon_on_cancel=True)
        except OSError as exc:
            on_error(f"cannot read stdin ({exc}); treating it as end of input")
            break
        if not chunk:
            break
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if pending:
            lines[0] = b"".join([*pending, lines[0]])
            pending.clear()
        last = lines.pop()
        if last:
            pending.append(last)
        yield lines
    if pending:
        yield [b"".join(pending)]


class _Shell:
    def __init__(
        self, node: StdioNode, out: IO[str], log: IO[str] | None, settle: bool, drain_s: float
    ) -> None:
        self.node = node
        self._out = out
        self._log = log
        self._settle = settle
        self._drain_s = drain_s
        self.closed = False
        self.signal: int | None = None
        self.runtime = Runtime(node.bus, realtime=True, on_idle=self._idle)
        node.submit = self.runtime.submit
        self._caught_up = trio.Event()

    # -- output ----------------------------------------------------------------------------

    def write(self, lines: list[str]) -> None:
        """Write whole lines and push them out (a burst costs one write); then the node's logs."""
        if lines and not self.closed:
            try:
                self._out.write("\n".join(lines) + "\n")
                self._out.flush()
            except (OSError, ValueError) as exc:  # the reader went away: nobody is listening
                self.closed = True
                self.node.warn(f"cannot write to stdout ({exc}); stopping")
        self.log(self.node.take_logs())

    def log(self, lines: list[str]) -> None:
        if self._log is None or not lines:  # print(file=None) would write to stdout
            return
        with contextlib.suppress(OSError, ValueError):  # logging must never stop the node
            self._log.write("".join(line + "\n" for line in lines))
            self._log.flush()

    def _idle(self) -> None:
        """The runtime has nothing due now: write what it produced, wake `catch_up`."""
        self.write(self.node.take_output())
        self._caught_up.set()

    async def catch_up(self) -> None:
        """Wait until the runtime has done everything due now (what is delayed may wait)."""
        self._caught_up = trio.Event()
        due = self.node.bus.next_due()
        if due is not None and due <= self.runtime.now_us():
            await self._caught_up.wait()

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stdin_fd: int) -> int:
        # The receiver stays open until the last line is written: a second signal during the
        # final writes waits in its queue instead of interrupting one.
        with trio.open_signal_receiver(*SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, signals, nursery.cancel_scope)
                await nursery.start(functools.partial(self.runtime.run, serve=True))
                await self._serve(stdin_fd)
                nursery.cancel_scope.cancel()
            return self._finish()

    def _finish(self) -> int:
        node = self.node
        self.write(node.take_output())
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            self.log([f"trio-saga: stopped by {name}; {node.summary()}"])
            return 128 + self.signal
        self.write(node.finish())
        open_sagas = node.unfinished()
        if open_sagas:
            node.warn(
                f"{len(open_sagas)} saga(s) still in progress after the {self._drain_s:g}s"
                f" drain: {', '.join(open_sagas[:10])}"
            )
        node.warn(node.summary())
        self.log(node.take_logs())
        return 0

    async def _watch_signals(self, signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
        async for signum in signals:
            self.signal = signum
            scope.cancel()
            return

    async def _serve(self, stdin_fd: int) -> None:
        node, runtime = self.node, self.runtime
        async with contextlib.aclosing(_chunks(stdin_fd, node.warn)) as chunks:
            async for lines in chunks:
                for raw in lines:
                    started = node.started
                    self.write(node.receive_line(raw))
                    if self._settle and node.started != started:
                        await self._settle_line()
                    if self.closed:
                        return
                if not self._settle:
                    # Back-pressure: what was read is processed before more is read, so the
                    # drain at the end bounds only what is in flight, not a backlog.
                    await self.catch_up()
        await self.catch_up()  # every line read is processed before the drain begins
        with trio.move_on_after(self._drain_s):
            await runtime.settle()

    async def _settle_line(self) -> None:
        with trio.move_on_after(self._drain_s) as scope:
            await self.runtime.settle()
        if scope.cancelled_caught:
            self.node.warn(
                f"line {self.node.lines}: not quiet after {self._drain_s:g}s;"
                " reading on while sagas are in flight"
            )


def _silence_stdout() -> None:
    """After the reader closed stdout, point fd 1 at /dev/null so that the interpreter's last
    flush does not fail (which would print a traceback and exit 120)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def serve(
    *,
    faults: Sequence[Fault] = (),
    seed: int = 0,
    drain_s: float = DEFAULT_DRAIN_S,
    settle: bool = True,
    stdin_fd: int = 0,
    out: IO[str] | None = None,
    log: IO[str] | None = None,
    services: Callable[[], Sequence[SagaService]] = default_services,
) -> int:
    """Run the stdio node until end of input and a bounded drain; returns the exit status
    (0, or 128 + the signal that stopped it)."""
    log = log or sys.stderr
    if out is None and sys.stdout is None:  # started with stdout closed (`1>&-`)
        if log is not None:
            with contextlib.suppress(OSError, ValueError):
                print("trio-saga: stdout is closed; nothing can be answered, stopping", file=log)
        return 0
    shell = _Shell(
        StdioNode(services=services(), faults=faults, seed=seed),
        out or sys.stdout,
        log,
        settle,
        drain_s,
    )
    status = await shell.run(stdin_fd)
    if shell.closed and out is None:
        _silence_stdout()
    return status
