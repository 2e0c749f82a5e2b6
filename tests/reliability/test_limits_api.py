"""The limits of the runtime over real QUIC on 127.0.0.1, each with the code or status it uses.

Admission (404, 403, 429, connections per server), header section size,
close reason, datagram queue, per-stream receive buffers, session flow
control both ways, handshake and connect timeouts.  Every test runs on
asyncio and trio; where the QUIC stack changes how a limit is enforced
(aioquic ties receive windows to reading, qh3 cannot) it runs on both.
"""

from __future__ import annotations

import contextlib
import gc
import weakref

import anyio
import pytest
from rel_harness import (
    QUIC_BACKENDS,
    LossyProxy,
    MiB,
    connect,
    live_tasks,
    serving,
    settle_tasks,
    wait_until,
)

import anywt
from anywt.backends.base import QuicSettings, get_backend
from anywt.core.engine import WebTransportEngine

pytestmark = pytest.mark.anyio
LIMIT = 20.0
H3_EXCESSIVE_LOAD = 0x107


async def hold(session: anywt.Session) -> None:
    """A handler that keeps its session open and reads nothing."""
    await session.wait_closed()


async def echo(session: anywt.Session) -> None:
    from anywt.echo import echo_handler

    await echo_handler(session)


# ---------------------------------------------------------------------------
# Admission


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_path_without_a_handler_is_404(quic_backend: str) -> None:
    with anyio.fail_after(LIMIT):
        async with serving({"/here": hold}, backend=quic_backend) as served:
            with pytest.raises(anywt.SessionRejected) as info:
                async with connect(served, "/elsewhere", backend=quic_backend):
                    pass
            assert info.value.status == 404
            async with connect(served, "/here", backend=quic_backend) as session:
                assert session.is_ready
    assert served.server.sessions_rejected == 1


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_origin_allowlist_is_403(quic_backend: str) -> None:
    good = "https://good.example"
    with anyio.fail_after(LIMIT):
        async with serving(hold, backend=quic_backend, origins=(good,)) as served:
            for origin in ("https://evil.example", None):
                with pytest.raises(anywt.SessionRejected) as info:
                    async with connect(served, backend=quic_backend, origin=origin):
                        pass
                assert info.value.status == 403
            async with connect(served, backend=quic_backend, origin=good) as session:
                assert session.is_ready
    assert served.server.sessions_rejected == 2


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_sessions_over_the_server_limit_get_429(quic_backend: str) -> None:
    with anyio.fail_after(LIMIT):
        async with serving(hold, backend=quic_backend, max_sessions=2) as served:
            async with connect(served, backend=quic_backend), connect(served, backend=quic_backend):
                with pytest.raises(anywt.SessionRejected) as info:
                    async with connect(served, backend=quic_backend):
                        pass
                assert info.value.status == 429
            # Both closed: room again.
            await wait_until(lambda: not served.server.sessions, 5)
            async with connect(served, backend=quic_backend) as session:
                assert session.is_ready


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_connections_over_the_server_limit_are_refused(quic_backend: str) -> None:
    with anyio.fail_after(LIMIT):
        async with serving(hold, backend=quic_backend, max_connections=2) as served:
            async with connect(served, backend=quic_backend), connect(served, backend=quic_backend):
                with anyio.fail_after(5):  # refused at once, not after a timeout
                    with pytest.raises(anywt.ConnectError):
                        async with connect(served, backend=quic_backend, connect_timeout=8):
                            pass
                assert served.server.connections_refused == 1
            await wait_until(lambda: not served.server.connections, 5)
            async with connect(served, backend=quic_backend) as session:
                assert session.is_ready


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_header_section_over_the_limit_closes_with_excessive_load(quic_backend: str) -> None:
    """A request larger than SETTINGS_MAX_FIELD_SECTION_SIZE: H3_EXCESSIVE_LOAD; the server
    carries on serving others."""
    limits = anywt.Limits(max_field_section_size=4096)
    with anyio.fail_after(LIMIT):
        async with serving(hold, backend=quic_backend, limits=limits) as served:
            with pytest.raises(anywt.ConnectError) as info:
                async with connect(
                    served, backend=quic_backend, headers=((b"x-big", b"b" * 8000),)
                ):
                    pass
            assert info.value.error_code == H3_EXCESSIVE_LOAD
            async with connect(served, backend=quic_backend) as session:
                assert session.is_ready
    assert served.server.sessions_accepted == 1


# ---------------------------------------------------------------------------
# Close reason


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_close_reason_is_cut_to_1024_bytes(quic_backend: str) -> None:
    reason = "\u00e9" * 2000  # 4000 bytes of UTF-8
    with anyio.fail_after(LIMIT):
        async with serving(hold, backend=quic_backend) as served:
            async with connect(served, backend=quic_backend) as session:
                await wait_until(lambda: served.sessions, 5)
                await session.close(4321, reason)
            info = await served.sessions[0].wait_closed()
    assert info.code == 4321
    assert len(info.reason.encode()) <= 1024 and reason.startswith(info.reason)
    assert len(info.reason) == 512


# ---------------------------------------------------------------------------
# Datagrams: Limits.datagram_queue


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_datagram_queue_is_bounded_and_drops_are_counted(quic_backend: str) -> None:
    limits = anywt.Limits(datagram_queue=16)
    with anyio.fail_after(LIMIT):
        async with (
            serving(hold, backend=quic_backend, limits=limits) as served,
            connect(served, backend=quic_backend) as session,
        ):
            await wait_until(lambda: served.sessions, 5)
            for index in range(400):
                session.send_datagram_nowait(b"%05d" % index)
                if index % 50 == 49:
                    await anyio.sleep(0.01)
            remote = served.sessions[0]
            await wait_until(lambda: remote.statistics().datagrams_received >= 300, 5)
            await anyio.sleep(0.2)
            stats = remote.statistics()
            assert remote.datagrams.queued == 16
            assert remote.datagrams.dropped == stats.datagrams_received - 16
            assert stats.datagrams_dropped >= remote.datagrams.dropped
            # What is kept is the newest.
            newest = [remote.datagrams.receive_nowait() for _ in range(16)]
            assert newest == sorted(newest)


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_datagram_queue_is_bounded_in_bytes(quic_backend: str) -> None:
    limits = anywt.Limits(datagram_queue=1000, datagram_queue_bytes=8000)
    with anyio.fail_after(LIMIT):
        async with (
            serving(hold, backend=quic_backend, limits=limits) as served,
            connect(served, backend=quic_backend) as session,
        ):
            await wait_until(lambda: served.sessions, 5)
            for index in range(300):
                session.send_datagram_nowait(b"%05d" % index + b"." * 95)
                if index % 50 == 49:
                    await anyio.sleep(0.01)
            remote = served.sessions[0]
            await wait_until(lambda: remote.statistics().datagrams_received >= 200, 5)
            await anyio.sleep(0.2)
            received = remote.statistics().datagrams_received
            assert remote.datagrams.queued == 80
            assert remote.datagrams.queued_bytes == 8000
            assert remote.datagrams.dropped == received - 80
            newest = [remote.datagrams.receive_nowait() for _ in range(80)]
            assert newest == sorted(newest)
            assert remote.datagrams.queued_bytes == 0


# ---------------------------------------------------------------------------
# Stream receive buffers: Limits.stream_receive_buffer, bounded by what is unread


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_unread_stream_data_is_bounded(quic_backend: str) -> None:
    """A server that never reads a stream holds at most ``stream_receive_buffer`` of it.

    aioquic grants QUIC credit only as the application reads, so the writer
    waits; qh3 grants on receipt, so anywt stops the stream (STOP_SENDING)
    once the buffer is full and the writer sees ``StreamStopped``.
    """
    buffer = 256 * 1024
    limits = anywt.Limits(stream_receive_buffer=buffer)
    flow = anywt.FlowControl(enabled=False)  # as with browsers: only the stream limit holds
    server_streams: list[anywt.BidirectionalStream] = []

    async def never_read(session: anywt.Session) -> None:
        async for stream in session.incoming_streams():
            server_streams.append(stream)  # type: ignore[arg-type]

    most = 0
    outcome = "blocked"
    with anyio.fail_after(LIMIT):
        async with (
            serving(never_read, backend=quic_backend, limits=limits, flow_control=flow) as served,
            connect(served, backend=quic_backend) as session,
        ):
            stream = await session.create_bidirectional_stream()

            async def watch() -> None:
                nonlocal most
                while True:
                    for remote in server_streams:
                        most = max(most, remote._recv.size)
                    await anyio.sleep(0.005)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                with anyio.move_on_after(3):
                    try:
                        await stream.write(b"w" * (16 * MiB))
                        outcome = "completed"
                    except anywt.StreamStopped:
                        outcome = "stopped"
                tasks.cancel_scope.cancel()
            sent = stream.bytes_sent
    assert outcome in ("blocked", "stopped"), f"{outcome}: a 16 MiB write went through"
    assert most <= buffer + 64 * 1024, f"the server held {most} unread bytes (limit {buffer})"
    assert sent < 16 * MiB


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_unread_data_of_a_session_is_bounded(quic_backend: str) -> None:
    """All streams of a session together hold at most ``session_receive_buffer`` unread.

    Eight streams of 192 KiB each stay within their own 256 KiB buffer, but
    not within the session's 512 KiB: the streams that go past it are stopped
    and the others keep their data.
    """
    stream_buffer = 256 * 1024
    session_buffer = 512 * 1024
    limits = anywt.Limits(
        stream_receive_buffer=stream_buffer, session_receive_buffer=session_buffer
    )
    flow = anywt.FlowControl(enabled=False)
    server_sessions: list[anywt.Session] = []

    async def never_read(session: anywt.Session) -> None:
        server_sessions.append(session)
        async for _ in session.incoming_streams():
            pass

    most = 0
    with anyio.fail_after(LIMIT):
        async with (
            serving(never_read, backend=quic_backend, limits=limits, flow_control=flow) as served,
            connect(served, backend=quic_backend) as session,
        ):

            async def watch() -> None:
                nonlocal most
                while True:
                    for remote in server_sessions:
                        most = max(most, remote._unread.total)
                    await anyio.sleep(0.005)

            async def upload() -> None:
                stream = await session.create_unidirectional_stream()
                with contextlib.suppress(anywt.StreamStopped):
                    await stream.write(b"u" * (192 * 1024))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                async with anyio.create_task_group() as uploads:
                    for _ in range(8):
                        uploads.start_soon(upload)
                # The writes end in the send buffers; wait for the data to arrive.
                await wait_until(lambda: server_sessions, 5)
                remote = server_sessions[0]
                await wait_until(lambda: remote.statistics().receive_errors >= 1, 5)
                await anyio.sleep(0.5)
                tasks.cancel_scope.cancel()
            unread = remote._unread.total
            buffered = sum(s._recv.size for s in remote._streams.values() if hasattr(s, "_recv"))
            errors = remote.statistics().receive_errors
    assert most <= session_buffer + 64 * 1024, f"the session held {most} unread bytes"
    assert unread == buffered, (unread, buffered)
    assert errors >= 1, f"no stream was stopped ({most}, {unread})"
    assert unread >= 192 * 1024, "the streams within the bound lost their data"


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_finished_streams_are_forgotten(quic_backend: str) -> None:
    """A long-lived session keeps nothing of the streams that ended, whichever way they
    ended (FIN both ways, reset, STOP_SENDING, unidirectional), on either side; and once
    closed it is not kept alive by the streams it left unread."""

    async def scenario() -> tuple[int, int, weakref.ref[anywt.Session]]:
        async with (
            serving(echo, backend=quic_backend) as served,
            connect(served, backend=quic_backend) as session,
        ):
            for round_ in range(4):
                async with anyio.create_task_group() as tasks:
                    for n in range(50):

                        async def one(n: int = n) -> None:
                            stream = await session.create_bidirectional_stream()
                            await stream.write(b"%d" % n, end_stream=True)
                            assert await stream.read_all() == b"%d" % n

                        tasks.start_soon(one)
                # Streams that end otherwise: reset, stopped, unidirectional.
                stream = await session.create_bidirectional_stream()
                await stream.write(b"x")
                await stream.reset(7)
                await stream.stop_receiving(8)
                uni = await session.create_unidirectional_stream()
                await uni.write(b"u" * round_, end_stream=True)
            remote = served.sessions[0]
            await wait_until(lambda: len(remote._streams) <= 2, 5)
            await wait_until(lambda: len(session._streams) <= 2, 5)
            assert remote.statistics().streams_created >= 200
            # The echoed unidirectional streams wait unread in the client's queue.
            return len(session._streams), len(remote._streams), weakref.ref(session)

    with anyio.fail_after(LIMIT):
        local, far, alive = await scenario()
    assert local <= 2 and far <= 2, (local, far)
    gc.collect()
    assert alive() is None, "a closed session with unread streams is kept alive"


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_streams_dropped_unread_give_their_bytes_and_credit_back(quic_backend: str) -> None:
    """A handler that drops ended streams without reading them: their bytes leave the
    session's unread total and their session credit comes back, so the peer, limited to
    64 KiB of credit, still sends 200 KiB."""
    flow = anywt.FlowControl(initial_max_data=64 * 1024)
    server_sessions: list[anywt.Session] = []

    async def read_one_byte(session: anywt.Session) -> None:
        server_sessions.append(session)
        async for stream in session.incoming_bidirectional_streams():
            await stream.readexactly(1)
            while not stream._recv.eof:  # the FIN is in: the rest stays unread
                await anyio.sleep(0.005)
            await stream.send_eof()
            del stream  # dropped with 10 KiB unread

    with anyio.fail_after(LIMIT):
        async with (
            serving(read_one_byte, backend=quic_backend, flow_control=flow) as served,
            connect(served, backend=quic_backend, flow_control=flow) as session,
        ):
            assert session.connection.flow_control
            for _ in range(20):
                stream = await session.create_bidirectional_stream()
                await stream.write(b"d" * 10240, end_stream=True)
                assert await stream.read_all() == b""
            remote = server_sessions[0]
            await wait_until(lambda: remote._unread.total <= 10240, 5)
            assert not remote._streams


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_session_credit_is_granted_and_obeyed_both_ways(quic_backend: str) -> None:
    """Session flow control between two anywt endpoints: a writer stops at the peer's
    WT_MAX_DATA while nothing is read, and resumes as the reader consumes."""
    window = 64 * 1024
    flow = anywt.FlowControl(initial_max_data=window)
    server_streams: list[anywt.BidirectionalStream] = []
    release = anyio.Event()

    async def late_reader(session: anywt.Session) -> None:
        async with anyio.create_task_group() as tasks:
            async for stream in session.incoming_streams():
                server_streams.append(stream)  # type: ignore[arg-type]

                async def read(s: anywt.BidirectionalStream = stream) -> None:  # type: ignore[assignment]
                    await release.wait()
                    data = await s.read_all()
                    await s.write(len(data).to_bytes(8, "big"), end_stream=True)

                tasks.start_soon(read)

    with anyio.fail_after(LIMIT):
        async with (
            serving(late_reader, backend=quic_backend, flow_control=flow) as served,
            connect(served, backend=quic_backend, flow_control=flow) as session,
        ):
            assert session.connection.flow_control
            stream = await session.create_bidirectional_stream()
            total = 1 * MiB
            with anyio.move_on_after(1.0):
                await stream.write(b"c" * total, end_stream=True)
            blocked = session.diagnostics_nowait()
            assert stream.bytes_sent == window, stream.bytes_sent
            remote = served.sessions[0].diagnostics_nowait()
            assert remote.data_received == window
            release.set()
            await stream.write(b"c" * (total - stream.bytes_sent), end_stream=True)
            answer = await stream.read_all()
            assert int.from_bytes(answer, "big") == total
    assert blocked.data_blocked_at == window or blocked.data_sent == window


# ---------------------------------------------------------------------------
# Timeouts: ServerConfig.handshake_timeout, ClientConfig.connect_timeout


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_connection_that_never_asks_for_a_session_is_closed(quic_backend: str) -> None:
    """handshake_timeout: a QUIC+HTTP/3 connection that opens no session is closed by the server."""
    with anyio.fail_after(LIMIT):
        async with serving(hold, backend=quic_backend, handshake_timeout=1.0) as served:
            ended = anyio.Event()
            backend = get_backend(quic_backend)
            settings = QuicSettings(
                is_client=True,
                server_name="127.0.0.1",
                server_certificate_hashes=served.hashes,
                idle_timeout=30.0,
            )
            driver, quic = await backend.open_client(
                settings,
                ("127.0.0.1", served.port),
                on_activity=lambda conn, now: None,
                on_ended=lambda conn: (ended.set(), driver.close()),
            )
            engine = WebTransportEngine(quic, is_client=True)
            quic.engine = engine
            engine.initialize(anyio.current_time())
            start = anyio.current_time()
            async with anyio.create_task_group() as tasks:
                await tasks.start(driver.run)
                await wait_until(lambda: served.server.connections, 5)
                with anyio.fail_after(6):
                    await ended.wait()
                tasks.cancel_scope.cancel()
            took = anyio.current_time() - start
            await wait_until(lambda: not served.server.connections, 5)
    assert 0.9 <= took <= 6, took


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_connect_to_a_silent_server_times_out(quic_backend: str) -> None:
    """connect_timeout: a server that never answers gives HandshakeTimeout, and no task is left."""
    with anyio.fail_after(LIMIT):
        async with (
            serving(hold, backend=quic_backend) as served,
            anyio.create_task_group() as tasks,
        ):
            proxy = LossyProxy(("127.0.0.1", served.port))
            proxy.blackhole = True
            await tasks.start(proxy.run)
            before = live_tasks()
            start = anyio.current_time()
            with pytest.raises(anywt.HandshakeTimeout):
                async with connect(
                    ("127.0.0.1", proxy.port, served.server.certificate_sha256),
                    backend=quic_backend,
                    connect_timeout=1.0,
                ):
                    pass
            took = anyio.current_time() - start
            # The proxy started one reader task for the client's address; nothing else may live on.
            expected = before + proxy.upstream_tasks
            assert await settle_tasks(expected) <= expected
            tasks.cancel_scope.cancel()
    assert took < 4, took
