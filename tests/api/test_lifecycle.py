"""Lifecycle: no task outlives its owner, serve() in a task group, shutdown, drain, events."""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import (
    LIMIT,
    WITH_UVLOOP,
    EchoPair,
    Lab,
    echo_bidi,
    echo_datagram,
    live_task_count,
    wait_task_count,
    wait_until,
)

import anywt
from anywt.echo import SERVER_BIDI_GREETING, echo_handler
from anywt.events import SessionEvent, SessionEventType
from anywt.session import CloseInfo, SessionState

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]


# ----------------------------------------------------------------------
# No task outlives the code that owns it


@WITH_UVLOOP
async def test_await_connect_then_close_leaves_no_task(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        before = live_task_count()
        session = await lab.connect(server)
        assert isinstance(session, anywt.Session)
        assert session.is_ready
        assert live_task_count() > before  # the connection's task (and the server's handler)
        assert await echo_bidi(session, b"await form") == b"await form"
        await session.close()
        assert session.is_closed
        assert session.connection.is_closed
        assert await wait_task_count(before) == before


async def test_await_connect_closed_by_server_leaves_no_task(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        before = live_task_count()
        session = await lab.connect(server)
        closer = await session.create_bidirectional_stream()
        await closer.write(b"close:9:go away", end_stream=True)
        info = await session.wait_closed()
        assert info.code == 9
        # The connection is still ours to close (other sessions could use it): close() ends it.
        await session.close()
        assert await wait_task_count(before) == before


@WITH_UVLOOP
async def test_async_with_connect_leaves_no_task(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        before = live_task_count()
        async with lab.connect(server) as session:
            assert await echo_bidi(session, b"context form") == b"context form"
        assert session.is_closed
        assert await wait_task_count(before) == before


async def test_server_context_leaves_no_task(quic_backend: str) -> None:
    with anyio.fail_after(LIMIT):
        before = live_task_count()
        async with (
            anywt.Server(
                {"/echo": echo_handler}, host="127.0.0.1", port=0, backend=quic_backend
            ) as server,
            anywt.connect(
                server.url("/echo"),
                backend=quic_backend,
                server_certificate_hashes=(server.certificate_sha256,),
            ) as session,
        ):
            assert await echo_bidi(session, b"x") == b"x"
        assert await wait_task_count(before) == before


async def test_exception_leaving_async_with_server_is_not_wrapped(quic_backend: str) -> None:
    """An error raised in ``async with Server(...)`` comes out as itself (no ExceptionGroup)."""
    raised: BaseException | None = None
    with anyio.fail_after(LIMIT):
        try:
            async with anywt.Server(
                {"/echo": echo_handler}, host="127.0.0.1", port=0, backend=quic_backend
            ):
                raise KeyError("boom")
        except BaseException as exc:
            raised = exc
    assert type(raised) is KeyError, f"got {raised!r}"


async def test_serve_under_task_group_start(quic_backend: str) -> None:
    with anyio.fail_after(LIMIT):
        before = live_task_count()
        async with anyio.create_task_group() as tasks:
            server = await tasks.start(
                functools.partial(
                    anywt.serve,
                    echo_handler,
                    "127.0.0.1",
                    0,
                    backend=quic_backend,
                    close_timeout=1.5,
                )
            )
            assert isinstance(server, anywt.Server)
            port = server.port
            assert port > 0
            assert server.host == "127.0.0.1"
            assert server.url("/any") == f"https://127.0.0.1:{port}/any"
            assert len(server.certificate_sha256) == 32
            assert server.certificate is not None
            assert server.certificate.sha256 == server.certificate_sha256
            hashes = (server.certificate_sha256,)
            # One handler for every path.
            async with anywt.connect(
                server.url("/any/path"), backend=quic_backend, server_certificate_hashes=hashes
            ) as session:
                assert await echo_bidi(session, b"served") == b"served"
            # A client still connected when the server is cancelled.
            live = await anywt.connect(
                server.url("/echo"),
                backend=quic_backend,
                server_certificate_hashes=hashes,
                close_timeout=0.5,
            )
            tasks.cancel_scope.cancel()
            cancelled_at = anyio.current_time()
        stop_took = anyio.current_time() - cancelled_at
        # The client is told the session is over (not left to its idle timeout).
        told: CloseInfo | None = None
        with anyio.move_on_after(1.5):
            told = await live.wait_closed()
        await live.close()
        # The server's socket is gone, and so are its tasks.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))
        assert await wait_task_count(before) == before
        assert stop_took < 1.0, f"the cancelled server took {stop_took:.2f} s to stop"
        assert told is not None, "a client of the cancelled server was not told its session ended"
        assert told.by_peer


# ----------------------------------------------------------------------
# Shutting down and draining


async def test_server_aclose_closes_sessions_with_code_and_reason(quic_backend: str) -> None:
    with anyio.fail_after(LIMIT):
        before = live_task_count()
        async with anyio.create_task_group() as tasks:
            server = await tasks.start(
                functools.partial(anywt.serve, echo_handler, "127.0.0.1", 0, backend=quic_backend)
            )
            hashes = (server.certificate_sha256,)
            one = await anywt.connect(
                server.url("/echo"), backend=quic_backend, server_certificate_hashes=hashes
            )
            two = await anywt.connect(
                server.url("/echo"), backend=quic_backend, server_certificate_hashes=hashes
            )
            await wait_until(lambda: len(server.sessions) == 2)
            await server.aclose(4001, "maintenance")
            for session in (one, two):
                info = await session.wait_closed()
                assert (info.code, info.reason, info.by_peer) == (4001, "maintenance", True)
            assert server.sessions == set()
            await server.aclose()  # twice is fine
            for session in (one, two):
                await session.close()
        # aclose() also ended serve(): the task group exits without being cancelled.
        assert not tasks.cancel_scope.cancel_called
        assert await wait_task_count(before) == before


async def cancelled_now() -> bool:
    """Whether the calling task is being cancelled (by a scope it does not own)."""
    try:
        await anyio.sleep(0)
    except anyio.get_cancelled_exc_class():
        return True
    return False


async def test_server_aclose_does_not_cancel_its_caller(wt: LabFactory) -> None:
    """``await server.aclose(code, reason)`` inside ``async with Server`` returns normally.

    The code after it (here: checking what the clients saw) must still run.
    """
    async with wt() as lab:
        server = await lab.server()
        one = await lab.client(server)
        await server.session()
        await server.server.aclose(4002, "bye all")
        assert not await cancelled_now(), "Server.aclose() cancelled the task that called it"
        info = await one.wait_closed()
        assert (info.code, info.reason) == (4002, "bye all")


async def test_server_drain_is_seen_and_session_stays_usable(echo: EchoPair) -> None:
    session = echo.session
    seen: list[SessionEvent] = []
    session.events.on(SessionEventType.DRAINING, seen.append)
    with anyio.fail_after(LIMIT):
        server_session = await echo.server_session()
        await server_session.drain()
        assert server_session.state == SessionState.DRAINING
        await session.wait_draining()
        assert [event.type for event in seen] == [SessionEventType.DRAINING]
        assert seen[0].session_id == session.session_id
        assert session.state == SessionState.DRAINING
        assert session.is_ready and not session.is_closed
        # Still usable both ways.
        assert await echo_bidi(session, b"after drain") == b"after drain"
        assert await echo_datagram(session, b"dgram after drain") == b"dgram after drain"
        await session.close(0, "wrapped up")
        info = await server_session.wait_closed()
        assert (info.code, info.reason) == (0, "wrapped up")


async def test_client_drain_is_seen_by_server(wt: LabFactory) -> None:
    drained = anyio.Event()

    async def hook(session: anywt.Session) -> None:
        await session.wait_draining()
        drained.set()
        assert session.state == SessionState.DRAINING

    async with wt() as lab:
        server = await lab.server(hook=hook)
        session = await lab.client(server)
        await session.drain()
        with anyio.fail_after(5):
            await drained.wait()
        # The echo keeps running after the drain.
        assert await echo_bidi(session, b"still echoed") == b"still echoed"
        assert not server.errors


# ----------------------------------------------------------------------
# Events


async def test_events_emitter(echo: EchoPair) -> None:
    session = echo.session
    opened: list[SessionEvent] = []
    datagrams: list[SessionEvent] = []
    closed: list[SessionEvent] = []
    once: list[SessionEvent] = []
    session.events.on(SessionEventType.STREAM_OPENED, opened.append)
    session.events.on(SessionEventType.DATAGRAM_RECEIVED, datagrams.append)
    session.events.on(SessionEventType.CLOSED, closed.append)
    session.events.once(SessionEventType.DATAGRAM_RECEIVED, once.append)
    assert session.events.listener_count(SessionEventType.DATAGRAM_RECEIVED) == 2
    with anyio.fail_after(LIMIT):
        # Nothing happens: wait_for times out with TimeoutError.
        with pytest.raises(TimeoutError):
            await session.events.wait_for(SessionEventType.STREAM_OPENED, timeout=0.1)

        # STREAM_OPENED carries the stream the peer opened (the one accept_stream gives).
        trigger = await session.create_bidirectional_stream()
        await trigger.write(b"open-bidi", end_stream=True)
        event = await session.events.wait_for(SessionEventType.STREAM_OPENED, timeout=5)
        incoming = await session.accept_stream()
        assert event.data is incoming
        assert event.type == SessionEventType.STREAM_OPENED
        assert event.session_id == session.session_id
        assert await incoming.read_all() == SERVER_BIDI_GREETING
        assert opened and opened[0].data is incoming

        # DATAGRAM_RECEIVED carries the bytes.
        assert await echo_datagram(session, b"event datagram") == b"event datagram"
        assert any(event.data == b"event datagram" for event in datagrams)
        assert len(once) == 1
        assert session.events.listener_count(SessionEventType.DATAGRAM_RECEIVED) == 1
        session.events.off(SessionEventType.DATAGRAM_RECEIVED)
        count = len(datagrams)
        assert await echo_datagram(session, b"unheard") == b"unheard"
        assert len(datagrams) == count

        # wait_for several kinds; CLOSED carries the CloseInfo.
        async with anyio.create_task_group() as tasks:

            async def close_soon() -> None:
                await anyio.sleep(0.05)
                closer = await session.create_bidirectional_stream()
                await closer.write(b"close:77:events", end_stream=True)

            tasks.start_soon(close_soon)
            event = await session.events.wait_for(
                [SessionEventType.CLOSED, "session_draining"], timeout=5
            )
        assert event.type == SessionEventType.CLOSED
        assert event.data == CloseInfo(77, "events", by_peer=True)
        assert [e.data for e in closed] == [event.data]


async def test_event_handler_that_raises_does_not_break_the_session(echo: EchoPair) -> None:
    session = echo.session

    def broken(event: SessionEvent) -> None:
        raise RuntimeError("handler bug")

    session.events.on(SessionEventType.DATAGRAM_RECEIVED, broken)
    with anyio.fail_after(LIMIT):
        assert await echo_datagram(session, b"despite") == b"despite"
        assert await echo_bidi(session, b"despite") == b"despite"
    with pytest.raises(TypeError):
        session.events.on(SessionEventType.CLOSED, "not callable")  # type: ignore[arg-type]
