"""The trio shell: each service a task with its own inbox channel, and one driver that walks
the broker's agenda in time order.

This module owns tasks, channels, cancellation and time passing. It must never decide what a
service does (that is the participant's service, stepped by `step.serve_batch`) nor in what
order things happen (that is the agenda's): at an instant the driver hands the first service
its batch together with the plan of the instant, and each service, once its step is done,
hands the plan to the next; the last one wakes the driver. So exactly one task is runnable at
any time, trio's randomised scheduler cannot change a run, and an instant costs one hand-off
per service rather than a round trip to the driver each.

Time: with `clock` given (a MockClock the simulation owns, as `simulate()` and the command line
make), nothing else in the trio run waits on a deadline, so the driver jumps the clock to the
next instant instead of sleeping. Without it (inside a user's pytest-trio test with
`autojump_clock`, where the test's own tasks may sleep beside the run) it sleeps until the
instant, so their deadlines fire at their own virtual times. With `realtime` the same code
serves the stdio mode on the real clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ..broker import Batch, Payload
from ..participant import Participant
from ..step import serve_batch
from ..trace import US
from .broker import SimBroker


class _Instant:
    """The batches of one instant, in the order they are served, passed from service to
    service; `position` is the next one to serve. `left` is what the last service found due
    and could not serve without the driver (crashes to carry out, a service to start)."""

    __slots__ = ("batches", "crashed", "left", "position")

    def __init__(self, batches: list[tuple[str, Batch]]) -> None:
        self.batches = batches
        self.position = 0
        self.crashed = False
        self.left: tuple[dict[str, Batch], list[tuple[str, int]]] | None = None


class Runtime:
    """Runs a `SimBroker` and its services in a trio nursery.

    `run` returns when the system is quiet (or at `max_time_us`); with `serve=True` it instead
    waits for more work (`submit`) until cancelled.
    """

    def __init__(
        self,
        bus: SimBroker,
        *,
        realtime: bool = False,
        on_idle: Callable[[], None] | None = None,
        clock: Any = None,
    ) -> None:
        self.bus = bus
        self.realtime = realtime
        #: Called whenever the driver is about to wait: nothing more is due now (the stdio
        #: node flushes its output there, once per burst rather than once per message).
        self.on_idle = on_idle
        #: A trio MockClock this run owns (see the module docstring), or None.
        self.clock = clock
        self._inboxes: dict[str, trio.MemorySendChannel[_Instant]] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._dead: set[str] = set()
        self._done: trio.MemorySendChannel[_Instant] | None = None
        self._t0 = 0.0
        self._max_time_us: int | None = None
        self._wakeup = trio.Event()
        self._quiet = trio.Event()
        self.started = False

    # -- public ----------------------------------------------------------------------------

    def now_us(self) -> int:
        if self.realtime:
            return max(self.bus.now, int((trio.current_time() - self._t0) * US))
        return self.bus.now

    def submit(self, command: Payload) -> int:
        """Start a saga now (stdio mode); the driver picks it up at once. Returns the delivery
        id the reply will carry."""
        self.bus.now = self.now_us()
        delivery_id = self.bus.start_saga(command)
        self._poke()
        return delivery_id

    async def settle(self) -> None:
        """Wait until the system is quiet."""
        while not self.bus.quiet:
            if self._quiet.is_set():  # work reached the bus without submit(): wake the driver
                self._poke()
            await self._quiet.wait()

    async def run(
        self,
        *,
        serve: bool = False,
        max_time_us: int | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._t0 = trio.current_time()
        self._max_time_us = max_time_us
        async with trio.open_nursery() as nursery:
            done_send, done_receive = trio.open_memory_channel[_Instant](1)
            async with done_send, done_receive:
                self._done = done_send
                for name in self.bus.participants:
                    await self._start_service(nursery, name)
                self.started = True
                task_status.started()
                await self._drive(nursery, done_receive, serve, max_time_us)
                for inbox in self._inboxes.values():
                    await inbox.aclose()
                nursery.cancel_scope.cancel()

    # -- tasks -----------------------------------------------------------------------------

    async def _start_service(self, nursery: trio.Nursery, name: str) -> None:
        inbox_send, inbox_receive = trio.open_memory_channel[_Instant](1)
        self._inboxes[name] = inbox_send
        participant = self.bus.participants[name]
        self._scopes[name] = await nursery.start(self._service, participant, inbox_receive)
        self._dead.discard(name)

    async def _service(
        self,
        participant: Participant,
        inbox: trio.MemoryReceiveChannel[_Instant],
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            async with inbox:
                task_status.started(scope)
                name = participant.name
                async for instant in inbox:
                    while True:
                        batch = instant.batches[instant.position][1]
                        instant.position += 1
                        alive = serve_batch(participant, batch, self.bus)
                        if not alive:
                            instant.crashed = True
                        # The next batch may be this service's own: served here, rather than
                        # sent to its own channel (a scheduler pass for nothing).
                        if not self._hand_on(instant, name if alive else None):
                            break
                    if not alive:  # crashed: the driver kills this task before it serves again
                        return

    def _hand_on(self, instant: _Instant, me: str | None = None) -> bool:
        """Give the instant to the next service whose batch is still wanted (a service a step
        has just crashed is skipped). When none is left, what the steps made due at this same
        instant is served next, without a round trip to the driver, unless it needs the
        driver (a crash to carry out, a service task to start): then back to the driver.
        True: the next batch is `me`'s, the calling service's own, for it to serve now."""
        bus = self.bus
        down = bus.down
        while True:
            batches = instant.batches
            while instant.position < len(batches):
                name = batches[instant.position][0]
                if name not in down:
                    if name == me:
                        return True
                    self._inboxes[name].send_nowait(instant)
                    return False
                instant.position += 1
            if instant.crashed or self.realtime or (self._dead and not self._dead <= down):
                break
            more, crashes = bus.advance(bus.now)
            if not more and not crashes and self.clock is not None:
                # The run owns its clock: move on to the next instant here, as the driver
                # would, rather than wake it for that.
                due = bus.next_due()
                if due is None or (self._max_time_us is not None and due > self._max_time_us):
                    break
                if due > bus.now:
                    if self.on_idle is not None:
                        self.on_idle()
                    self._jump_to(due)
                more, crashes = bus.advance(bus.now)
            if not more and not crashes:
                break
            if crashes or any(name in self._dead for name in more):
                instant.left = (more, crashes)
                break
            instant.batches = list(more.items())
            instant.position = 0
        assert self._done is not None
        self._done.send_nowait(instant)
        return False

    def _kill(self, name: str) -> None:
        """A crash: cancel the service's task; its channel and whatever was in it are lost."""
        self._scopes.pop(name).cancel()
        self._inboxes.pop(name).close()
        self._dead.add(name)

    # -- the driver ------------------------------------------------------------------------

    async def _drive(
        self,
        nursery: trio.Nursery,
        done_receive: trio.MemoryReceiveChannel[_Instant],
        serve: bool,
        max_time_us: int | None,
    ) -> None:
        bus = self.bus
        left: tuple[dict[str, Batch], list[tuple[str, int]]] | None = None
        while True:
            batches, crashes = left if left is not None else bus.advance(self.now_us())
            left = None
            for name, _ in crashes:
                self._kill(name)
            if self._dead:
                await self._restart_dead(nursery)
            if batches:
                self._hand_on(_Instant(list(batches.items())))
                instant = await done_receive.receive()
                for crashed, _ in bus.take_crashes():
                    self._kill(crashed)
                if self._dead:
                    await self._restart_dead(nursery)
                left = instant.left
                if left is not None:
                    continue
            due = bus.next_due()
            if due is None:
                bus.clear_stale()
                self._quiet.set()
                if not serve:
                    return
                if self.on_idle is not None:
                    self.on_idle()
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            if max_time_us is not None and due > max_time_us:
                return
            if due > bus.now:
                if self.on_idle is not None:
                    self.on_idle()
                await self._wait_until(due)

    async def _restart_dead(self, nursery: trio.Nursery) -> None:
        for name in sorted(self._dead - self.bus.down):
            await self._start_service(nursery, name)

    async def _wait_until(self, due_us: int) -> None:
        deadline = self._t0 + due_us / US
        if self.realtime:
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            return
        if self.clock is not None:
            self._jump_to(due_us)
            return
        await trio.sleep_until(deadline)
        self.bus.now = max(self.bus.now, due_us)

    def _jump_to(self, due_us: int) -> None:
        """The run is ours: jump the clock, which is what autojump would do, without a sleep,
        a cancel scope, a pass of the autojump task and a Cancelled raised and caught."""
        # The clock has kept step with the broker's time (nothing else moves it), so the
        # jump is the difference, without asking trio the time.
        if due_us > self.bus.now:
            self.clock.jump((due_us - self.bus.now) / US)
            self.bus.now = due_us

    def _poke(self) -> None:
        if self.bus.quiet:
            return
        self._quiet = trio.Event()
        self._wakeup.set()
