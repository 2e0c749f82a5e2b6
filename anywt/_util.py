"""Small runtime helpers shared by the API modules."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import sniffio
from anyio.abc import TaskStatus

__all__ = ["Signal", "run_shielded", "spawn_detached"]

logger = logging.getLogger("anywt")


class Signal:
    """Wakes every task waiting for "something changed"; waiters re-check their condition.

    Unlike ``anyio.Event`` it can fire many times: ``fire()`` releases the
    current waiters; the next waiter arms a fresh event.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        # Created by the first waiter: an idle session keeps no event per signal,
        # and a chunk or datagram that arrives while its reader is busy costs nothing.
        self._event: anyio.Event | None = None

    def fire(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        await event.wait()


class Latch:
    """A one-shot event, like ``anyio.Event``, whose event object exists only while waited on.

    A server holds a few of these per idle session and connection; most are
    never awaited.
    """

    __slots__ = ("_done", "_event")

    def __init__(self) -> None:
        self._done = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        if not self._done:
            self._done = True
            event = self._event
            if event is not None:
                self._event = None
                event.set()

    def is_set(self) -> bool:
        return self._done

    async def wait(self) -> None:
        if self._done:
            await anyio.lowlevel.checkpoint()
            return
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        await event.wait()


class _Runnable(Protocol):
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...


async def run_shielded(
    driver: _Runnable, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run a driver that cancellation cannot stop: its owner stops it (close or abort).

    A graceful shutdown after cancellation still needs the driver to send the
    close capsules and see the connections end.
    """
    with anyio.CancelScope(shield=True):
        await driver.run(task_status=task_status)


_detached: set[Any] = set()


def spawn_detached(func: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``func`` as a task that belongs to no task group.

    Only for ``session = await anywt.connect(url)``, where no task group
    exists: the task drives the connection and ends when the connection
    does (the session's ``close()``).  On trio it is a system task.
    """

    async def guarded() -> None:
        try:
            await func()
        except BaseException as exc:
            # A system task must not raise; the connection reports its own end.
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                logger.exception("anywt: background task %s failed", name)

    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        trio.lowlevel.spawn_system_task(guarded, name=name)
    elif library == "asyncio":
        import asyncio

        task = asyncio.get_running_loop().create_task(guarded(), name=name)
        _detached.add(task)
        task.add_done_callback(_detached.discard)
    else:  # pragma: no cover - anyio supports only these two
        raise RuntimeError(f"unsupported async library {library!r}")
