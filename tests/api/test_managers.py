"""SessionManager and ConnectionManager over real loopback sessions, under asyncio and trio."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
import sniffio

import anywt
from anywt.echo import echo_handler
from anywt.managers import ConnectionLimitReached, ConnectionManager, SessionManager
from anywt.session import CloseInfo, Session, SessionState

pytestmark = pytest.mark.anyio

#: Every test is bounded by this (seconds).
LIMIT = 15

STATS_KEYS = {
    "total_created",
    "total_closed",
    "current_count",
    "max_concurrent",
    "active",
    "by_state",
    "states",
    "idle_closed",
    "rejected_at_limit",
}


@dataclass
class Harness:
    """An echo server on 127.0.0.1 and what its handler saw."""

    server: anywt.Server
    stack: AsyncExitStack
    #: How each server-side session ended, in the order they ended.
    closes: list[CloseInfo | None] = field(default_factory=list)
    #: Every server-side session, in the order they arrived.
    server_sessions: list[Session] = field(default_factory=list)

    async def open(self) -> Session:
        """A client session, closed when the harness ends."""
        server = self.server
        return await self.stack.enter_async_context(
            anywt.connect(
                server.url("/echo"), server_certificate_hashes=(server.certificate_sha256,)
            )
        )


@asynccontextmanager
async def echo_server(
    on_session: Callable[[Session], Awaitable[object]] | None = None,
) -> AsyncIterator[Harness]:
    harness: Harness

    async def handler(session: Session) -> None:
        harness.server_sessions.append(session)
        try:
            if on_session is not None:
                await on_session(session)
            await echo_handler(session)
        finally:
            harness.closes.append(session.close_info)

    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            anywt.Server({"/echo": handler}, host="127.0.0.1", port=0)
        )
        harness = Harness(server, stack)
        yield harness


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def chatter(session: Session, every: float = 0.05) -> None:
    """Keep a session busy: a datagram every ``every`` seconds (the echo answers it)."""
    while True:
        await session.send_datagram(b"ping")
        await anyio.sleep(every)


def manager_task_names() -> list[str]:
    """Names of the live tasks that belong to a manager (either backend)."""
    names: list[str] = []
    if sniffio.current_async_library() == "trio":
        import trio

        def walk(task: trio.lowlevel.Task) -> None:
            names.append(task.name)
            for nursery in task.child_nurseries:
                for child in nursery.child_tasks:
                    walk(child)

        root = trio.lowlevel.current_root_task()
        assert root is not None
        walk(root)
    else:
        import asyncio

        names.extend(task.get_name() for task in asyncio.all_tasks())
    return [name for name in names if "managers" in name or "Manager" in name]


# ----------------------------------------------------------------------
# SessionManager


async def test_session_manager_both_name_sets() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            a = await harness.open()
            b = await harness.open()
            # Each client connection's first session is 0: ids repeat across connections.
            assert a.session_id == b.session_id == 0
            async with SessionManager(max_sessions=10) as manager:
                assert manager.is_active
                assert await manager.add_session(a) == a.session_id
                assert await manager.add_session(session=b) == b.session_id
                assert await manager.add_session(a) == 0  # already managed: nothing happens
                assert len(manager) == manager.get_session_count() == 2

                # Newer names, then older names; positional and keyword.
                assert await manager.get_resource(0) is a  # the earliest added with that id
                assert await manager.get_resource(resource_id=b) is b
                assert await manager.get_session(0) is a
                assert await manager.get_session(session_id=b) is b
                assert await manager.get_session(99) is None
                assert await manager.get_all_resources() == [a, b]
                assert await manager.get_all_sessions() == [a, b]
                assert manager.has_session(0) and manager.has_session(b)
                assert not manager.has_session(99)
                assert a in manager and 0 in manager
                assert 99 not in manager and [] not in manager
                assert await manager.get_sessions_by_state(SessionState.CONNECTED) == [a, b]
                assert await manager.get_sessions_by_state(state="connected") == [a, b]
                assert await manager.get_sessions_by_state(SessionState.CLOSED) == []
                assert await manager.get_active_sessions() == [a, b]
                assert await manager.cleanup_closed() == 0
                assert await manager.cleanup_closed_resources() == 0
                assert await manager.cleanup_closed_sessions() == 0

                # Removing forgets a session without closing it.
                assert await manager.remove_session(a) is a
                assert not a.is_closed and a.is_ready
                assert await manager.remove_session(session_id=a) is None
                assert await manager.get_session(0) is b
                assert await manager.remove_resource(0) is b
                assert len(manager) == 0
                stats = await manager.get_stats()
                assert stats["total_created"] == 2
                assert stats["total_closed"] == 2
            # Sessions removed before the end are left open.
            assert not a.is_closed and not b.is_closed


async def test_session_manager_constructor_and_factory() -> None:
    with anyio.fail_after(LIMIT):
        manager = SessionManager.create(max_sessions=5, session_cleanup_interval=2.0)
        assert manager.max_sessions == 5
        assert manager.cleanup_interval == 2.0
        assert manager.idle_timeout is None
        default = SessionManager()
        assert default.max_sessions == 10000 and default.cleanup_interval == 60.0
        # Without cleanup_interval the checks run at least 4 times per idle timeout.
        assert SessionManager(idle_timeout=2.0).cleanup_interval == 0.5
        assert SessionManager(idle_timeout=0).idle_timeout is None
        assert SessionManager(max_sessions=None).max_sessions == 0
        with pytest.raises(ValueError):
            SessionManager(cleanup_interval=0)
        with pytest.raises(TypeError):
            SessionManager(cleanup_interval=1.0, session_cleanup_interval=2.0)
        with pytest.raises(TypeError):
            SessionManager(max_sessions="10")  # type: ignore[arg-type]
        # Not entered: the getters answer, adding refuses.
        assert await manager.get_all_sessions() == []
        assert await manager.get_session(0) is None
        assert len(manager) == 0
        async with echo_server() as harness:
            session = await harness.open()
            with pytest.raises(RuntimeError, match="async with"):
                await manager.add_session(session)
            with pytest.raises(TypeError):
                await manager.add_session(session.connection)  # type: ignore[arg-type]
            async with manager:
                with pytest.raises(RuntimeError):
                    async with manager:
                        pass
                await session.close(5, "done")
                await session.wait_closed()
                with pytest.raises(anywt.SessionClosed):
                    await manager.add_session(session)
                assert len(manager) == 0


async def test_session_limit_raises_and_closes_the_extra_session() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            # Opened before the manager: a client's task group must not straddle its block.
            a, b, c, d = [await harness.open() for _ in range(4)]
            async with SessionManager(max_sessions=2) as manager:
                await manager.add_session(a)
                await manager.add_session(b)
                with pytest.raises(anywt.SessionLimitReached, match=r"\(2\)"):
                    await manager.add_session(c)
                info = await c.wait_closed()
                assert (info.code, info.reason) == (429, "session limit reached")
                assert c not in manager and len(manager) == 2
                stats = await manager.get_stats()
                assert stats["rejected_at_limit"] == 1
                assert stats["total_created"] == 2
                # The server saw the documented code and reason.
                await wait_until(lambda: bool(harness.closes))
                first = harness.closes[0]
                assert first is not None
                assert (first.code, first.reason) == (429, "session limit reached")
                # Room again once one leaves.
                await a.close()
                await wait_until(lambda: len(manager) == 1)
                await manager.add_session(d)
                assert len(manager) == 2
                assert (await manager.get_stats())["max_concurrent"] == 2


async def test_closed_sessions_leave_the_manager() -> None:
    """A server-side manager: the sessions a client closes leave it at once."""
    with anyio.fail_after(LIMIT):
        manager = SessionManager(max_sessions=10)
        async with manager, echo_server(on_session=manager.add_session) as harness:
            a = await harness.open()
            b = await harness.open()
            await wait_until(lambda: len(manager) == 2)
            server_a, server_b = harness.server_sessions
            # Both server-side sessions have id 0 (one per connection); both are managed.
            assert server_a.session_id == server_b.session_id == 0
            assert server_a in manager and server_b in manager
            await a.close(3, "client leaves")
            await wait_until(lambda: len(manager) == 1)
            assert server_a not in manager and server_b in manager
            assert await manager.get_session(0) is server_b
            stats = await manager.get_stats()
            assert stats["total_closed"] == 1
            assert stats["current_count"] == 1
            assert stats["by_state"]["connected"] == 1
            # The peer vanishing with its connection counts the same.
            await b.connection.close()
            await wait_until(lambda: len(manager) == 0)
            assert (await manager.get_stats())["total_closed"] == 2


async def test_idle_cleanup_closes_a_silent_session_not_an_active_one() -> None:
    idle = 0.5
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            busy = await harness.open()
            silent = await harness.open()
            async with (
                SessionManager(idle_timeout=idle, cleanup_interval=0.05) as manager,
                anyio.create_task_group() as tasks,
            ):
                tasks.start_soon(chatter, busy)
                started = time.monotonic()
                await manager.add_session(busy)
                await manager.add_session(silent)
                info = await silent.wait_closed()
                elapsed = time.monotonic() - started
                assert (info.code, info.reason) == (0, "idle timeout")
                # Not before the timeout, and soon after it.
                silent_stats = silent.statistics()
                assert silent_stats.closed_at is not None
                assert silent_stats.closed_at - silent_stats.last_active >= idle
                assert elapsed < idle + 2.0
                assert silent not in manager
                # The busy one outlives several timeouts.
                await anyio.sleep(idle * 2)
                assert busy in manager and busy.is_ready
                stats = await manager.get_stats()
                assert stats["idle_closed"] == 1
                assert stats["total_closed"] == 1
                assert stats["current_count"] == 1
                tasks.cancel_scope.cancel()
            await wait_until(lambda: any(c and c.reason == "idle timeout" for c in harness.closes))


async def test_stats_keys_and_numbers() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            sessions = [await harness.open() for _ in range(4)]
            async with SessionManager(max_sessions=3) as manager:
                stats = await manager.get_stats()
                assert stats.keys() >= STATS_KEYS
                assert stats["current_count"] == stats["total_created"] == 0
                assert set(stats["by_state"]) == {state.value for state in SessionState}
                for session in sessions[:3]:
                    await manager.add_session(session)
                with pytest.raises(anywt.SessionLimitReached):
                    await manager.add_session(sessions[3])
                stats = await manager.get_stats()
                assert stats["total_created"] == 3
                assert stats["current_count"] == stats["max_concurrent"] == 3
                assert stats["active"] == stats["active_sessions"] == 3
                assert stats["by_state"]["connected"] == 3
                assert stats["by_state"][SessionState.CONNECTED] == 3  # StrEnum keys work too
                assert stats["states"] == stats["by_state"]
                assert stats["rejected_at_limit"] == 1
                assert stats["max_sessions"] == 3

                # close_session: the code and reason reach the peer; the session leaves.
                assert await manager.close_session(sessions[0], 4000, "bye")
                assert not await manager.close_session(sessions[0])
                with pytest.raises(ValueError):
                    await manager.close_session(sessions[1], code=-1)
                info = await sessions[0].wait_closed()
                assert (info.code, info.reason) == (4000, "bye")
                await manager.remove_session(sessions[1])
                stats = await manager.get_stats()
                assert stats["total_created"] == 3
                assert stats["total_closed"] == 2
                assert stats["current_count"] == 1
                assert stats["max_concurrent"] == 3
                assert stats["idle_closed"] == 0
            await wait_until(
                lambda: any(c and (c.code, c.reason) == (4000, "bye") for c in harness.closes)
            )


async def test_close_all_and_shutdown_close_everything() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            a, b, c, d = [await harness.open() for _ in range(4)]
            manager = SessionManager()
            async with manager:
                await manager.add_session(a)
                await manager.add_session(b)
                assert await manager.close_all_sessions(code=7, reason="all of you") == 2
                assert len(manager) == 0
                for session in (a, b):
                    info = await session.wait_closed()
                    assert (info.code, info.reason) == (7, "all of you")
                await manager.add_session(c)
                await manager.add_session(d)
                await anyio.sleep(0)
                assert manager_task_names()  # the cleanup loop and the watchers run
            # Leaving the block shut it down: everything closed, no task left.
            for session in (c, d):
                info = await session.wait_closed()
                assert (info.code, info.reason) == (0, "session manager shutting down")
            assert not manager.is_active
            assert manager._running_tasks == 0
            assert manager._task_group is None
            assert manager_task_names() == []
            stats = await manager.get_stats()
            assert stats["total_created"] == 4 and stats["total_closed"] == 4
            assert stats["current_count"] == 0
            await manager.shutdown()  # idempotent
            # A shut-down manager refuses (and closes) what it is given.
            e = await harness.open()
            with pytest.raises(RuntimeError, match="shut down"):
                await manager.add_session(e)
            assert (await e.wait_closed()).reason == "session manager shutting down"


async def test_explicit_shutdown_inside_the_block() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            a = await harness.open()
            async with SessionManager(idle_timeout=30) as manager:
                await manager.add_session(a)
                await manager.shutdown()
                assert a.state in (SessionState.CLOSING, SessionState.CLOSED)
                assert not manager.is_active and len(manager) == 0
                await manager.shutdown()
            assert manager._running_tasks == 0


# ----------------------------------------------------------------------
# ConnectionManager


async def test_connection_manager_names_and_limit() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            a = await harness.open()
            b = await harness.open()
            conn_a, conn_b = a.connection, b.connection
            async with ConnectionManager(max_connections=1) as manager:
                key = await manager.add_connection(conn_a)
                assert await manager.add_connection(connection=conn_a) == key
                assert await manager.get_connection(key) is conn_a
                assert await manager.get_connection(connection_id=conn_a) is conn_a
                assert await manager.get_resource(key) is conn_a
                assert await manager.get_all_connections() == [conn_a]
                assert await manager.get_all_resources() == [conn_a]
                assert await manager.get_connections_by_state("connected") == [conn_a]
                assert await manager.get_active_connections() == [conn_a]
                assert manager.has_connection(key) and conn_a in manager
                assert manager.get_connection_count() == len(manager) == 1
                assert await manager.cleanup_closed_connections() == 0

                with pytest.raises(ConnectionLimitReached, match=r"\(1\)"):
                    await manager.add_connection(conn_b)
                assert isinstance(ConnectionLimitReached(), anywt.WebTransportError)
                await conn_b.wait_closed()
                assert conn_b not in manager
                stats = await manager.get_stats()
                assert stats.keys() >= STATS_KEYS
                assert stats["rejected_at_limit"] == 1
                assert stats["max_connections"] == 1
                assert stats["by_state"] == {"connected": 1, "draining": 0, "closed": 0}

                assert await manager.remove_connection(connection_handle=key) is conn_a
                assert await manager.remove_connection(key) is None
                assert not conn_a.is_closed
                with pytest.raises(anywt.ConnectionClosed):
                    await manager.add_connection(conn_b)


async def test_closed_connections_leave_and_shutdown_closes_the_rest() -> None:
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            a, b, c = [await harness.open() for _ in range(3)]
            manager = ConnectionManager(connection_cleanup_interval=10)
            assert manager.cleanup_interval == 10 and manager.idle_timeout == 60
            async with manager:
                for session in (a, b, c):
                    await manager.add_connection(session.connection)
                await a.close(close_connection=True)
                await wait_until(lambda: len(manager) == 2)
                assert a.connection not in manager
                assert await manager.close_connection(b.connection, reason="go")
                assert b.connection.is_closed and b.connection not in manager
                assert not await manager.close_connection(b.connection)
                assert manager_task_names()
            assert c.connection.is_closed
            assert manager._running_tasks == 0 and manager_task_names() == []
            stats = await manager.get_stats()
            assert stats["total_created"] == 3 and stats["total_closed"] == 3


async def test_connection_idle_cleanup() -> None:
    idle = 0.5
    with anyio.fail_after(LIMIT):
        async with echo_server() as harness:
            busy = await harness.open()
            silent = await harness.open()
            async with (
                ConnectionManager(idle_timeout=idle, cleanup_interval=0.05) as manager,
                anyio.create_task_group() as tasks,
            ):
                tasks.start_soon(chatter, busy)
                await manager.add_connection(busy.connection)
                await manager.add_connection(silent.connection)
                await silent.connection.wait_closed()
                assert silent.connection not in manager
                await anyio.sleep(idle * 2)
                assert busy.connection in manager and not busy.connection.is_closed
                stats = await manager.get_stats()
                assert stats["idle_closed"] == 1 and stats["current_count"] == 1
                tasks.cancel_scope.cancel()
