"""The trio shell: each service a task with its own inbox channel, and one driver that walks
the bus's agenda in time order.

This module owns tasks, channels, cancellation and sleeping. It must never decide what a
service does (that is the participant's service) nor in what order things happen (that is the bus's
agenda): only one service runs at a time, handed a batch by the driver, so trio's randomised
scheduler cannot change a run. With trio's MockClock (autojump) time is virtual and a run is
as fast as the CPU; with the real clock the same code serves the stdio mode.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .bus import Batch, EventBus, Payload, serve_batch
from .participant import Participant
from .trace import US


class Runtime:
    """Runs an `EventBus` and its services in a trio nursery.

    `run` returns when the system is quiet (or at `max_time_us`); with `serve=True` it instead
    waits for more work (`submit`) until cancelled.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        realtime: bool = False,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.bus = bus
        self.realtime = realtime
        #: Called whenever the driver is about to wait: nothing more is due now (the stdio
        #: node flushes its output there, once per burst rather than once per message).
        self.on_idle = on_idle
        self._inboxes: dict[str, trio.MemorySendChannel[Batch]] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._dead: set[str] = set()
        self._t0 = 0.0
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
        async with trio.open_nursery() as nursery:
            done_send, done_receive = trio.open_memory_channel[bool](0)
            async with done_send, done_receive:
                for name in self.bus.participants:
                    await self._start_service(nursery, name, done_send)
                self.started = True
                task_status.started()
                await self._drive(nursery, done_send, done_receive, serve, max_time_us)
                for inbox in self._inboxes.values():
                    await inbox.aclose()
                nursery.cancel_scope.cancel()

    # -- tasks -----------------------------------------------------------------------------

    async def _start_service(
        self, nursery: trio.Nursery, name: str, done_send: trio.MemorySendChannel[bool]
    ) -> None:
        inbox_send, inbox_receive = trio.open_memory_channel[Batch](1)
        self._inboxes[name] = inbox_send
        participant = self.bus.participants[name]
        self._scopes[name] = await nursery.start(
            self._service, participant, inbox_receive, done_send.clone()
        )
        self._dead.discard(name)

    async def _service(
        self,
        participant: Participant,
        inbox: trio.MemoryReceiveChannel[Batch],
        done: trio.MemorySendChannel[bool],
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            async with inbox, done:
                task_status.started(scope)
                async for batch in inbox:
                    await done.send(serve_batch(participant, batch, self.bus))

    def _kill(self, name: str) -> None:
        """A crash: cancel the service's task; its channel and whatever was in it are lost."""
        self._scopes.pop(name).cancel()
        self._inboxes.pop(name).close()
        self._dead.add(name)

    # -- the driver ------------------------------------------------------------------------

    async def _drive(
        self,
        nursery: trio.Nursery,
        done_send: trio.MemorySendChannel[bool],
        done_receive: trio.MemoryReceiveChannel[bool],
        serve: bool,
        max_time_us: int | None,
    ) -> None:
        bus = self.bus
        while True:
            batches, crashes = bus.advance(self.now_us())
            for name, _ in crashes:
                self._kill(name)
            for name in sorted(self._dead - bus.down):
                await self._start_service(nursery, name, done_send)
            for name, batch in batches.items():
                if name in bus.down:
                    continue
                await self._inboxes[name].send(batch)
                await done_receive.receive()
                for crashed, _ in bus.take_crashes():
                    self._kill(crashed)
            for name in sorted(self._dead - bus.down):
                await self._start_service(nursery, name, done_send)
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
                await self._sleep_until(due)

    async def _sleep_until(self, due_us: int) -> None:
        deadline = self._t0 + due_us / US
        if self.realtime:
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
        else:
            await trio.sleep_until(deadline)
            self.bus.now = max(self.bus.now, due_us)

    def _poke(self) -> None:
        if self.bus.quiet:
            return
        self._quiet = trio.Event()
        self._wakeup.set()
