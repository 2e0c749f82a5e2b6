"""Diagnostics and statistics match the traffic that went through the session."""

from __future__ import annotations

import time

import anyio
import pytest
from wt_harness import LIMIT, EchoPair, echo_bidi, echo_datagram, pattern, wait_until

import anywt

pytestmark = pytest.mark.anyio

STATS_KEYS = {
    "session_id",
    "created_at",
    "ready_at",
    "closed_at",
    "streams_created",
    "streams_closed",
    "stream_errors",
    "bidirectional_streams",
    "unidirectional_streams",
    "datagrams_sent",
    "datagrams_received",
    "datagrams_dropped",
    "datagram_send_errors",
    "protocol_errors",
    "bytes_sent",
    "bytes_received",
    "packets_sent",
    "packets_received",
    "send_errors",
    "receive_errors",
    "last_active",
    "uptime",
    "active_streams",
}

BIDI_SIZES = (1000, 20_000, 70_000)
UNI_SIZES = (3000, 5000)


async def uni_echo(session: anywt.Session, payload: bytes) -> bytes:
    stream = await session.create_unidirectional_stream()
    await stream.write(payload, end_stream=True)
    reply = await session.accept_stream()
    assert isinstance(reply, anywt.ReceiveStream)
    return await reply.read_all()


async def test_session_diagnostics_match_traffic(echo: EchoPair) -> None:
    session = echo.session
    started = time.time()
    with anyio.fail_after(LIMIT):
        server_session = await echo.server_session()
        fresh = await session.diagnostics()
        assert fresh.local_data_sent == 0 and fresh.peer_data_sent == 0
        assert fresh.local_streams_bidi_opened == 0

        for index, size in enumerate(BIDI_SIZES):
            payload = pattern(size, seed=index)
            assert await echo_bidi(session, payload) == payload
        for index, size in enumerate(UNI_SIZES):
            payload = pattern(size, seed=10 + index)
            assert await uni_echo(session, payload) == payload
        echoed = 0
        for index in range(3):
            await echo_datagram(session, b"dgram %d" % index)
            echoed += 1
        stream_bytes = sum(BIDI_SIZES) + sum(UNI_SIZES)
        await wait_until(lambda: server_session.diagnostics_nowait().peer_data_sent == stream_bytes)

        client = await session.diagnostics()
        server = await server_session.diagnostics()

    # Stream bytes, each way.
    assert client.local_data_sent == client.data_sent == stream_bytes
    assert client.peer_data_sent == client.data_received == stream_bytes
    assert server.peer_data_sent == server.data_received == stream_bytes
    assert server.local_data_sent == stream_bytes
    assert client.local_data_consumed == stream_bytes
    assert server.local_data_consumed == stream_bytes

    # Streams opened by each side.
    assert client.local_streams_bidi_opened == len(BIDI_SIZES)
    assert client.local_streams_uni_opened == len(UNI_SIZES)
    assert client.peer_streams_bidi_opened == 0
    assert client.peer_streams_uni_opened == len(UNI_SIZES)  # the echo's answers
    assert server.peer_streams_bidi_opened == len(BIDI_SIZES)
    assert server.peer_streams_uni_opened == len(UNI_SIZES)
    assert server.local_streams_uni_opened == len(UNI_SIZES)
    assert server.local_streams_bidi_opened == 0

    # Datagrams.
    assert client.datagrams_sent >= echoed
    assert client.datagrams_received >= echoed
    assert server.datagrams_received >= echoed
    assert server.datagrams_sent == server.datagrams_received
    assert client.datagram_bytes_sent >= sum(len(b"dgram %d" % i) for i in range(echoed))
    assert client.datagrams_dropped == 0

    # What the session is.
    for diag, is_client in ((client, True), (server, False)):
        assert diag.session_id == session.session_id
        assert diag.is_client is is_client
        assert diag.path == "/echo"
        assert diag.state == "connected"
        assert diag.flow_control_negotiated is True
        assert diag.draft is not None and diag.draft == session.connection.draft
        assert diag.is_connection_active
        assert diag.ready_at is not None
        assert started - 5 <= diag.created_at <= diag.ready_at <= time.time()
        assert diag.closed_at is None and diag.close_code is None
        assert diag.data_blocked_at is None
        assert diag.blocked_streams == ()
        assert diag.protocol_errors == 0
        assert diag.issues == []
    assert client.local_max_data is not None and client.peer_max_data is not None
    assert client.peer_max_data == server.local_max_data
    assert client.peer_max_streams_bidi == server.local_max_streams_bidi
    assert client.max_datagram_size == session.datagrams.max_datagram_size

    # The counters agree with the diagnostics.
    stats = client.stats
    assert stats.streams_created == len(BIDI_SIZES) + 2 * len(UNI_SIZES)
    assert stats.bidirectional_streams == len(BIDI_SIZES)
    assert stats.unidirectional_streams == 2 * len(UNI_SIZES)
    assert stats.bytes_sent >= stream_bytes
    assert stats.bytes_received >= stream_bytes
    assert stats.stream_errors == 0
    assert stats.uptime >= 0


async def test_diagnostics_after_close(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        server_session = await echo.server_session()
        await session.close(4100, "done")
        await server_session.wait_closed()
        client = await session.diagnostics()
        server = await server_session.diagnostics()
    assert client.state == "closed"
    assert server.state == "closed"
    assert client.closed_at is not None and client.ready_at is not None
    assert client.closed_at >= client.ready_at
    assert (server.close_code, server.close_reason) == (4100, "done")
    assert (client.close_code, client.close_reason) == (4100, "done")
    stats = session.statistics()
    assert stats.closed_at is not None
    uptime = stats.uptime
    await anyio.sleep(0.05)
    assert session.statistics().uptime == uptime  # frozen at the close


async def test_session_stats_dict_and_statistics(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        before = time.time()
        assert await echo_bidi(session, b"counted") == b"counted"
        await echo_datagram(session, b"counted")
        stats = await session.get_session_stats()
    assert set(stats) >= STATS_KEYS, STATS_KEYS - set(stats)
    assert stats["session_id"] == session.session_id
    assert stats["streams_created"] == 1
    assert stats["bidirectional_streams"] == 1
    assert stats["datagrams_sent"] >= 1
    assert stats["datagrams_received"] >= 1
    assert stats["bytes_sent"] >= len(b"counted") * 2
    assert stats["bytes_received"] >= len(b"counted") * 2
    assert stats["last_active"] >= before - 1
    assert stats["uptime"] > 0
    assert stats["send_errors"] == 0 and stats["receive_errors"] == 0
    snapshot = session.statistics()
    assert isinstance(snapshot, anywt.SessionStats)
    assert snapshot.streams_created == stats["streams_created"]
    assert snapshot.active_streams == snapshot.streams_created - snapshot.streams_closed


async def test_session_stats_count_packets_both_ways(echo: EchoPair) -> None:
    """DESIGN section 4: SessionStats has packets sent *and* received (the connection's)."""
    with anyio.fail_after(LIMIT):
        assert await echo_bidi(echo.session, b"packets") == b"packets"
    stats = echo.session.statistics()
    assert stats.packets_sent is not None and stats.packets_sent > 0
    if echo.backend == "aiopquic":
        # picoquic counts the packets it sends, not those it receives.
        assert stats.packets_received is None
        return
    assert stats.packets_received is not None and stats.packets_received > 0


async def test_connection_diagnostics(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        assert await echo_bidi(session, b"conn") == b"conn"
        server_session = await echo.server_session()
    client = session.connection.diagnostics()
    server = server_session.connection.diagnostics()
    assert isinstance(client, anywt.ConnectionDiagnostics)
    assert client.is_client and not server.is_client
    assert client.backend == server.backend == echo.backend
    assert client.remote_address == ("127.0.0.1", echo.server.port)
    assert server.remote_address == client.local_address
    assert client.draft == server.draft == session.connection.draft
    assert client.flow_control_negotiated is True
    assert client.sessions == server.sessions == 1
    assert client.key_updates == 0
    assert not client.closed and client.close_error_code is None
    assert client.peer_settings is not None and client.local_settings
    # What the server announced reached the client (GREASE settings are not kept).
    assert client.peer_settings.items() <= server.local_settings.items()
    assert len(client.peer_settings) >= len(server.local_settings) - 1
    assert client.max_datagram_size is not None and client.max_datagram_size > 0
    assert client.streams_rejected == 0
    assert isinstance(client.quic, dict) and client.quic
    # The endpoint's counters: the sans-IO driver's datagram counts, aiopquic's wake-ups.
    if echo.backend == "aiopquic":
        assert client.io["wakeups"] > 0
    else:
        assert client.io["datagrams_sent"] > 0 and client.io["datagrams_received"] > 0
        assert client.io["send_dropped"] == 0
    with anyio.fail_after(LIMIT):
        await session.close()
    closed = session.connection.diagnostics()
    assert closed.closed
