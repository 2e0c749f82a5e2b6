"""The anyio driver of *self-driven* QUIC stacks (DESIGN.md section 5).

A self-driven stack owns its UDP socket and timers on a native thread and
tells Python that something happened through one file descriptor (an
eventfd).  ``SelfDrivenDriver`` is the task that serves it, under asyncio,
uvloop or trio alike:

* it waits with ``anyio.wait_readable(fd)``, then lets the stack drain its
  events into the connections' engines (``NativeEndpoint.drain``), within a
  budget per wake-up so that a fast peer cannot starve the other tasks;
* it retries what a connection could not hand to the stack yet (a full
  send ring: ``NativeConnection.flush``), on every wake-up and, while
  something waits, at least every ``POLL_INTERVAL`` seconds;
* it reports input and progress to the owner (``on_activity``) so that API
  writers waiting on a send backlog re-check it, and a connection's end
  (``on_ended``);
* when it stops (``close`` once every connection ended, ``abort`` at once,
  or cancellation) it stops the stack's thread and lets go of it, so that no
  thread or descriptor outlives the driver.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from .base import ActivityCallback, Address, BackendConnection, EndedCallback

__all__ = ["POLL_INTERVAL", "NativeConnection", "NativeEndpoint", "SelfDrivenDriver"]

logger = logging.getLogger("anywt.backends.selfdriven")

#: How often a send backlog is retried while nothing else wakes the driver.
POLL_INTERVAL = 0.001
#: Events handled per wake-up before other tasks get a turn.
EVENT_BUDGET = 1024


class NativeConnection(BackendConnection, Protocol):
    """A connection of a self-driven stack, as the driver sees it."""

    def backlogged(self) -> bool:
        """Whether something waits to be handed to the stack."""
        ...

    def flush(self, now: float) -> bool:
        """Hand what waits to the stack; True when anything moved."""
        ...

    def wake_in(self) -> float | None:
        """Seconds until work of the connection falls due without any event (None: none)."""
        ...

    def abandon(self, now: float) -> None:
        """The stack is gone: end the connection (the engine learns it closed)."""
        ...


class NativeEndpoint(Protocol):
    """The stack's side of one endpoint: its descriptor, its connections, its thread."""

    #: Set by the driver: a connection calls it when a backlog starts waiting.
    poll_soon: Callable[[], None]

    @property
    def fileno(self) -> int: ...

    @property
    def local_address(self) -> Address: ...

    def drain(self, now: float, budget: int) -> tuple[Sequence[NativeConnection], bool]:
        """Move the stack's pending events to their connections.

        Returns the connections that got input (new ones were announced to
        the owner first) and whether the budget ran out with more pending.
        """
        ...

    def connections(self) -> Sequence[NativeConnection]:
        """The connections not forgotten yet (ended ones stay until ``forget``)."""
        ...

    def forget(self, connection: NativeConnection) -> None:
        """The owner was told this connection ended: drop it."""
        ...

    def stop(self) -> None:
        """Stop the native thread and release the stack (blocking, short)."""
        ...


class SelfDrivenDriver:
    """One task serving a self-driven endpoint (implements base.Driver)."""

    def __init__(
        self,
        endpoint: NativeEndpoint,
        *,
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
    ) -> None:
        self.endpoint = endpoint
        self.closed = anyio.Event()
        self._on_activity = on_activity
        self._on_ended = on_ended
        self._scope: anyio.CancelScope | None = None
        self._closing = False
        self._aborted = False
        self._running = False
        self._ran = False
        self.wakeups = 0
        self.polls = 0
        endpoint.poll_soon = self.poll_soon

    @property
    def local_address(self) -> Address:
        return self.endpoint.local_address

    def io_counters(self) -> dict[str, int]:
        return {"wakeups": self.wakeups, "polls": self.polls}

    def request_transmit(self, connection: BackendConnection) -> None:
        """A connection queued work: make sure a backlog is retried soon.

        Stacks of this kind send on their own thread as soon as they are
        given data, so only what they refused (a full ring) waits here, and
        the connection says so itself (``poll_soon``).
        """
        backlogged = getattr(connection, "backlogged", None)
        if backlogged is not None and backlogged():
            self.poll_soon()

    def poll_soon(self) -> None:
        """Something waits for room in the stack: retry within ``POLL_INTERVAL``."""
        scope = self._scope
        if scope is None:
            return  # the loop is running; it looks at the backlogs before it sleeps
        if scope.deadline != math.inf:
            return  # it already wakes up soon
        deadline = anyio.current_time() + POLL_INTERVAL
        if scope.deadline > deadline:
            scope.deadline = deadline

    def _wake(self) -> None:
        scope = self._scope
        if scope is not None:
            scope.deadline = -math.inf

    def close(self) -> None:
        """Stop once every connection has ended (close them first)."""
        self._closing = True
        self._wake()
        self._stop_if_never_ran()

    def abort(self) -> None:
        """Stop now, whatever the connections are doing."""
        self._closing = True
        self._aborted = True
        self._wake()
        self._stop_if_never_ran()

    def _stop_if_never_ran(self) -> None:
        # An owner that gives up before running the driver (an error while
        # setting up) must not leave the stack's thread behind.
        if not self._running and not self._ran:
            self._ran = True
            self._shutdown()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the endpoint until closed (and its connections ended) or aborted."""
        if self._running:
            raise RuntimeError("this driver is already running")
        if self._ran:
            task_status.started()  # stopped before it ran: nothing to serve
            return
        self._running = True
        task_status.started()
        try:
            await self._loop()
        finally:
            self._running = False
            self._ran = True
            self._scope = None
            self._shutdown()

    async def _loop(self) -> None:
        endpoint = self.endpoint
        fd = endpoint.fileno
        while True:
            if self._aborted:
                return
            now = anyio.current_time()
            touched: dict[int, NativeConnection] = {}
            try:
                arrived, more = endpoint.drain(now, EVENT_BUDGET)
            except Exception:
                logger.exception("anywt: draining the QUIC stack failed")
                arrived, more = (), False
            for connection in arrived:
                touched[id(connection)] = connection
            backlog = False
            for connection in endpoint.connections():
                if connection.backlogged():
                    try:
                        moved = connection.flush(now)
                    except Exception:
                        logger.exception("anywt: sending a backlog failed")
                        moved = False
                    if moved:
                        touched[id(connection)] = connection
                    backlog = backlog or connection.backlogged()
            for connection in touched.values():
                try:
                    self._on_activity(connection, now)
                except Exception:
                    logger.exception("anywt: the owner failed to handle new input")
            self._report_ended()
            if self._closing and not endpoint.connections():
                return
            if more:
                await anyio.lowlevel.checkpoint()
                continue
            deadline = now + (POLL_INTERVAL if backlog else self._wake_in())
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                await anyio.wait_readable(fd)
            self._scope = None
            self.wakeups += 1
            if scope.cancel_called:
                self.polls += 1

    def _wake_in(self) -> float:
        """Seconds until the first connection's timed work falls due (after this turn's
        flushes and event handling, either of which may have started some)."""
        wake = math.inf
        for connection in self.endpoint.connections():
            delay = connection.wake_in()
            if delay is not None and delay < wake:
                wake = delay
        return wake

    def _report_ended(self) -> None:
        endpoint = self.endpoint
        for connection in list(endpoint.connections()):
            if connection.terminated:
                endpoint.forget(connection)
                self._ended(connection)

    def _ended(self, connection: NativeConnection) -> None:
        try:
            self._on_ended(connection)
        except Exception:
            logger.exception("anywt: the owner failed to handle a connection's end")

    def _shutdown(self) -> None:
        endpoint = self.endpoint
        survivors = list(endpoint.connections())
        try:
            endpoint.stop()
        except Exception:
            logger.exception("anywt: stopping the QUIC stack failed")
        now = anyio.current_time()
        for connection in survivors:
            if not connection.terminated:
                try:
                    connection.abandon(now)
                except Exception:
                    logger.exception("anywt: ending a connection failed")
            endpoint.forget(connection)
            self._ended(connection)
        self.closed.set()
