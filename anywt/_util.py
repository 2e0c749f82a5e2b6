"""Small runtime helpers shared by the API modules."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import sniffio
from anyio.abc import TaskStatus

__all__ = ["Signal", "run_shielded", "spawn_detached"]

logger = logging.getLogger("anywt")


class Signal:
    """Wakes every task waiting for "something changed"; waiters re-check their condition.

    Unlike ``anyio.Event`` it can fire many times: ``fire()`` releases the
    current waiters and arms a fresh event for the next ones.
    """

    __slots__ = ("_event", "_awaited")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._awaited = False

    def fire(self) -> None:
        # A fresh event only when someone waited on this one: a datagram or a
        # chunk that arrives while its reader is busy costs no allocation.
        if self._awaited:
            self._awaited = False
            self._event.set()
            self._event = anyio.Event()

    async def wait(self) -> None:
        self._awaited = True
        await self._event.wait()


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
