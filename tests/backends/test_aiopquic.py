"""The aiopquic backend over real loopback UDP, under asyncio and trio.

aiopquic runs picoquic on its own thread with its own socket, so these tests
open real endpoints on 127.0.0.1 (``open_client`` / ``open_server`` and the
self-driven driver) and put a ``RecordingEngine`` where the WebTransport
engine goes: every call the backend makes into the engine is recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

SKIP_REASON = "needs CPython >= 3.12 and `pip install anywt[aiopquic]`"
pytest.importorskip("aiopquic", reason=SKIP_REASON)

from backend_harness import (  # noqa: E402
    RecordingEngine,
    client_settings,
    dev_certificate,
    make_chain,
    server_settings,
)

from anywt.backends.aiopquic import (  # noqa: E402
    DATAGRAM_MAX_PAYLOAD,
    STOP_SETTLE,
    STREAM_RING_CAP,
    PquicConnection,
    backend,
)
from anywt.backends.base import BackendError, QuicSettings, get_backend  # noqa: E402
from anywt.core.errors import DatagramsUnavailable, DatagramTooLarge  # noqa: E402

pytestmark = pytest.mark.anyio

LIMIT = 20.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def descriptors() -> set[str]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor
            found.add(f"{name}:{os.readlink(f'/proc/self/fd/{name}')}")
    return found


@dataclass
class Pair:
    client: PquicConnection
    client_engine: RecordingEngine
    server_engines: list[RecordingEngine] = field(default_factory=list)
    servers: list[PquicConnection] = field(default_factory=list)
    ended: list[Any] = field(default_factory=list)
    activity: int = 0
    port: int = 0
    client_driver: Any = None
    server_driver: Any = None

    @property
    def server(self) -> PquicConnection:
        return self.servers[0]

    @property
    def server_engine(self) -> RecordingEngine:
        return self.server_engines[0]


@asynccontextmanager
async def pair(
    client: QuicSettings | None = None,
    server: QuicSettings | None = None,
    *,
    handshake: bool = True,
    before_run: Callable[[PquicConnection], None] | None = None,
) -> AsyncIterator[Pair]:
    """A server and a client connected to it on 127.0.0.1, drivers running."""
    chosen = backend()
    holder: dict[str, Pair] = {}
    server_engines: list[RecordingEngine] = []
    servers: list[PquicConnection] = []

    def on_connection(connection: Any) -> None:
        engine = RecordingEngine()
        connection.engine = engine
        server_engines.append(engine)
        servers.append(connection)

    def on_activity(connection: Any, now: float) -> None:
        if "pair" in holder:
            holder["pair"].activity += 1

    def on_ended(connection: Any) -> None:
        if "pair" in holder:
            holder["pair"].ended.append(connection)

    server_driver = await chosen.open_server(
        server or server_settings(),
        "127.0.0.1",
        0,
        on_connection=on_connection,
        on_activity=on_activity,
        on_ended=on_ended,
    )
    port = server_driver.local_address[1]
    try:
        client_driver, connection = await chosen.open_client(
            client or client_settings(),
            ("127.0.0.1", port),
            on_activity=on_activity,
            on_ended=on_ended,
        )
    except BaseException:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server_driver.run)
            server_driver.abort()
        raise
    assert isinstance(connection, PquicConnection)
    engine = RecordingEngine()
    connection.engine = engine
    result = Pair(connection, engine, server_engines, servers, port=port)
    result.client_driver = client_driver
    result.server_driver = server_driver
    holder["pair"] = result
    if before_run is not None:
        before_run(connection)
    async with anyio.create_task_group() as tasks:
        await tasks.start(server_driver.run)
        await tasks.start(client_driver.run)
        try:
            if handshake:
                await wait_until(
                    lambda: (
                        connection.handshake_done and bool(servers) and servers[0].handshake_done
                    )
                )
            yield result
        finally:
            if not connection.terminated:
                connection.close(0, "test over")
            with anyio.move_on_after(2):
                await wait_until(lambda: connection.terminated)
            client_driver.close()
            for server_connection in servers:
                if not server_connection.terminated:
                    server_connection.close(0, "test over")
            server_driver.close()
            with anyio.move_on_after(3):
                await client_driver.closed.wait()
                await server_driver.closed.wait()
            client_driver.abort()
            server_driver.abort()


def test_registered_as_self_driven() -> None:
    found = get_backend("aiopquic")
    assert found.name == "aiopquic"
    assert found.kind == "self-driven"


async def test_handshake_alpn_and_datagram_limit() -> None:
    async with pair() as link:
        assert link.client_engine.handshake == ("h3", DATAGRAM_MAX_PAYLOAD)
        assert link.server_engine.handshake == ("h3", DATAGRAM_MAX_PAYLOAD)
        assert link.client.alpn == "h3"
        assert link.server.remote_address is not None
        assert link.server.remote_address[0] == "127.0.0.1"


async def test_datagram_limit_follows_the_peer_frame_size() -> None:
    # A DATAGRAM frame of 1000 bytes has a 1-byte type and a 2-byte length.
    server = server_settings(max_datagram_frame_size=1000)
    async with pair(server=server) as link:
        assert link.client_engine.handshake == ("h3", 997)
        assert link.client.max_datagram_payload() == 997
        with anyio.fail_after(LIMIT):
            link.client.send_datagram(b"d" * 997)
            await wait_until(lambda: bool(link.server_engine.datagrams))
        assert link.server_engine.datagrams == [b"d" * 997]
        with pytest.raises(DatagramTooLarge):
            link.client.send_datagram(b"d" * 998)


async def test_no_datagrams_when_the_peer_accepts_none() -> None:
    async with pair(server=server_settings(max_datagram_frame_size=0)) as link:
        assert link.client_engine.handshake == ("h3", 0)
        with pytest.raises(DatagramsUnavailable):
            link.client.send_datagram(b"nobody listens")


async def test_datagrams_both_ways_at_the_exact_limit() -> None:
    async with pair() as link:
        payload = bytes(range(256)) * 4 + b"x" * (DATAGRAM_MAX_PAYLOAD - 1024)
        assert len(payload) == DATAGRAM_MAX_PAYLOAD
        with anyio.fail_after(LIMIT):
            link.client.send_datagram(payload)
            await wait_until(lambda: bool(link.server_engine.datagrams))
            link.server.send_datagram(b"back")
            await wait_until(lambda: bool(link.client_engine.datagrams))
        assert link.server_engine.datagrams == [payload]
        assert link.client_engine.datagrams == [b"back"]
        with pytest.raises(DatagramTooLarge):
            link.client.send_datagram(payload + b"!")


async def test_streams_both_ways() -> None:
    async with pair() as link:
        client, server = link.client, link.server
        up = os.urandom(300_000)
        with anyio.fail_after(LIMIT):
            bidi = client.get_next_available_stream_id(False)
            client.send_stream_data(bidi, up, end_stream=True)
            await wait_until(lambda: bidi in link.server_engine.fin)
            assert bytes(link.server_engine.data[bidi]) == up
            server.send_stream_data(bidi, b"echo:" + up[:1000], end_stream=True)
            mine = server.get_next_available_stream_id(False)
            uni = server.get_next_available_stream_id(True)
            assert (mine & 3, uni & 3) == (1, 3)
            server.send_stream_data(mine, b"server bidi", end_stream=True)
            server.send_stream_data(uni, b"server uni", end_stream=True)
            await wait_until(
                lambda: {bidi, mine, uni} <= link.client_engine.fin,
            )
        assert bytes(link.client_engine.data[bidi]) == b"echo:" + up[:1000]
        assert bytes(link.client_engine.data[mine]) == b"server bidi"
        assert bytes(link.client_engine.data[uni]) == b"server uni"


async def test_reset_and_stop_sending_carry_their_codes() -> None:
    async with pair() as link:
        client, server = link.client, link.server
        with anyio.fail_after(LIMIT):
            doomed = client.get_next_available_stream_id(False)
            client.send_stream_data(doomed, b"partial")
            await wait_until(lambda: link.server_engine.received(doomed) == 7)
            client.reset_stream(doomed, 77)
            await wait_until(lambda: bool(link.server_engine.resets))
            # picoquic does not tell the final size: the engine gets -1.
            assert link.server_engine.resets == [(doomed, 77, -1)]

            stopped = client.get_next_available_stream_id(False)
            client.send_stream_data(stopped, b"hello")
            await wait_until(lambda: link.server_engine.received(stopped) == 5)
            server.stop_stream(stopped, 83)
            await wait_until(lambda: bool(link.client_engine.stops))
            assert link.client_engine.stops == [(stopped, 83)]


async def test_a_stopped_stream_is_reported_over_once_the_stop_settled() -> None:
    """picoquic reports nothing of a stream after STOP_SENDING but a reset, not even its
    FIN: once the stop has settled the adapter tells the engine the receive side is over."""
    async with pair() as link:
        client, server = link.client, link.server
        with anyio.fail_after(LIMIT):
            stream = client.get_next_available_stream_id(True)
            client.send_stream_data(stream, b"hello")
            await wait_until(lambda: link.server_engine.received(stream) == 5)
            server.stop_stream(stream, 83)
            delay = server.wake_in()  # the driver sleeps until the stop settles
            assert delay is not None and 0 < delay <= STOP_SETTLE
            assert not server.backlogged()
            await wait_until(lambda: bool(link.server_engine.discarded))
            assert link.server_engine.discarded == [stream]
            assert server.wake_in() is None


async def test_writes_before_the_connection_exists_are_kept_in_order() -> None:
    early: list[int] = []

    def write_early(connection: PquicConnection) -> None:
        # What the engine does right after open_client: SETTINGS and CONNECT
        # go out before picoquic created its connection.
        uni = connection.get_next_available_stream_id(True)
        bidi = connection.get_next_available_stream_id(False)
        connection.send_stream_data(uni, b"first")
        connection.send_stream_data(uni, b" second")
        connection.send_stream_data(bidi, b"request", end_stream=True)
        early.extend((uni, bidi))

    async with pair(before_run=write_early) as link:
        uni, bidi = early
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: bidi in link.server_engine.fin)
            await wait_until(lambda: link.server_engine.received(uni) == 12)
        assert bytes(link.server_engine.data[uni]) == b"first second"
        assert bytes(link.server_engine.data[bidi]) == b"request"


async def test_requests_wait_for_the_http3_control_and_qpack_streams() -> None:
    """A client's CONNECT leaves after its SETTINGS, never in the same packet ahead of them.

    picoquic holds 1-RTT stream data until the handshake is confirmed, and
    among streams of equal priority writes the lowest id first: the CONNECT
    (bidi stream 0) would go ahead of the SETTINGS (uni stream 2) in one
    packet, and a server that decides the session's flow control on the
    CONNECT without waiting for the SETTINGS (pywebtransport 0.21) then
    disagrees with anywt.  Bidirectional streams' bytes wait until the
    streams that start with an HTTP/3 critical stream type (control 0x00,
    QPACK encoder 0x02 and decoder 0x03) are in packets; WebTransport streams
    (type 0x54) are not among those.  (Without the wait the server gets the
    request first, on asyncio and trio alike.)
    """
    opened: list[int] = []

    def write_early(connection: PquicConnection) -> None:
        control = connection.get_next_available_stream_id(True)
        encoder = connection.get_next_available_stream_id(True)
        webtransport = connection.get_next_available_stream_id(True)
        request = connection.get_next_available_stream_id(False)
        connection.send_stream_data(control, b"\x00\x04\x00")  # type, empty SETTINGS
        connection.send_stream_data(encoder, b"\x02")
        connection.send_stream_data(webtransport, b"\x40\x54\x00wt", end_stream=True)
        connection.send_stream_data(request, b"request", end_stream=True)
        opened.extend((control, encoder, webtransport, request))

    async with pair(before_run=write_early) as link:
        control, encoder, webtransport, request = opened
        assert request < control < encoder < webtransport
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: {webtransport, request} <= link.server_engine.fin)
            await wait_until(lambda: link.server_engine.received(encoder) == 1)
        order = [call[1] for call in link.server_engine.calls if call[0] == "data"]
        first = {stream_id: order.index(stream_id) for stream_id in opened}
        assert max(first[control], first[encoder]) < min(first[request], first[webtransport]), order
        assert bytes(link.server_engine.data[control]) == b"\x00\x04\x00"
        assert link.client._critical == {control, encoder}  # not the WebTransport stream


async def test_a_write_larger_than_the_ring_waits_and_is_never_dropped() -> None:
    async with pair() as link:
        client = link.client
        size = 4 * STREAM_RING_CAP + 12345
        payload = os.urandom(size)
        stream_id = client.get_next_available_stream_id(False)
        with anyio.fail_after(LIMIT):
            client.send_stream_data(stream_id, payload[:1000])
            client.send_stream_data(stream_id, payload[1000:], end_stream=True)
            # The ring took what fits; the rest waits in the adapter and is reported.
            assert 0 < client.send_backlog(stream_id) <= size - STREAM_RING_CAP + 1000
            assert client.backlogged()
            activity = link.activity
            await wait_until(lambda: stream_id in link.server_engine.fin)
        received = bytes(link.server_engine.data[stream_id])
        assert len(received) == size
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
        assert client.send_backlog(stream_id) == 0
        assert not client.backlogged()
        # Writers waiting on the backlog were woken as it drained.
        assert link.activity > activity


async def test_a_reset_drops_the_waiting_bytes() -> None:
    async with pair() as link:
        client = link.client
        stream_id = client.get_next_available_stream_id(False)
        client.send_stream_data(stream_id, b"z" * (3 * STREAM_RING_CAP))
        assert client.send_backlog(stream_id) > 0
        client.reset_stream(stream_id, 5)
        assert client.send_backlog(stream_id) == 0
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: bool(link.server_engine.resets))
        assert link.server_engine.resets[0][:2] == (stream_id, 5)


async def test_close_carries_the_code_to_the_peer() -> None:
    async with pair() as link:
        with anyio.fail_after(LIMIT):
            link.server.close_transport(0x2, "busy")
            await wait_until(lambda: link.client.terminated and link.server.terminated)
        assert link.client_engine.terminated is not None
        assert link.client_engine.terminated[0] == 0x2
        assert link.server.close_info is not None
        assert link.server.close_info[0] == 0x2


# -- certificates ------------------------------------------------------------------


async def test_the_pinned_certificate_is_accepted() -> None:
    pin = dev_certificate().sha256
    settings = client_settings(verify=True, server_certificate_hashes=(b"\0" * 32, pin))
    async with pair(client=settings) as link:
        assert link.client.handshake_done
        assert link.client.certificate_error is None


async def test_a_wrong_pin_is_refused_inside_the_handshake() -> None:
    settings = client_settings(verify=True, server_certificate_hashes=(b"\1" * 32,))
    async with pair(client=settings, handshake=False) as link:
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: link.client.terminated)
        assert not link.client.handshake_done
        assert link.client.certificate_error is not None
        assert "pinning failed" in link.client.certificate_error
        assert dev_certificate().sha256.hex() in link.client.certificate_error
        assert link.client_engine.terminated is not None
        code, reason = link.client_engine.terminated
        assert code == 0x100 + 42
        assert "pinning failed" in reason
        # The server was told (a TLS alert), it did not wait for its idle timeout.
        with anyio.fail_after(5):
            await wait_until(lambda: all(s.terminated for s in link.servers))


async def test_ca_verification_with_cadata_and_cafile(tmp_path: Path) -> None:
    chain = make_chain()
    server = server_settings(chain.leaf_pem + chain.ca_pem, chain.key_pem)
    async with pair(
        client=client_settings(verify=True, cadata=chain.ca_pem), server=server
    ) as link:
        assert link.client.handshake_done
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(chain.ca_pem)
    settings = client_settings(verify=True, cafile=str(cafile), server_name="localhost")
    async with pair(client=settings, server=server) as link:
        assert link.client.handshake_done


async def test_an_unknown_ca_is_refused_with_a_readable_reason() -> None:
    chain, other = make_chain(), make_chain("someone-else")
    server = server_settings(chain.leaf_pem, chain.key_pem)
    settings = client_settings(verify=True, cadata=other.ca_pem)
    async with pair(client=settings, server=server, handshake=False) as link:
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: link.client.terminated)
        assert link.client.certificate_error is not None
        assert "certificate verification failed" in link.client.certificate_error
        assert link.client_engine.terminated is not None
        assert link.client_engine.terminated[0] == 0x100 + 48  # unknown_ca


async def test_a_wrong_name_is_refused() -> None:
    chain = make_chain()
    server = server_settings(chain.leaf_pem, chain.key_pem)
    settings = client_settings(verify=True, cadata=chain.ca_pem, server_name="example.org")
    async with pair(client=settings, server=server, handshake=False) as link:
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: link.client.terminated)
        assert link.client.certificate_error is not None
        assert not link.client.handshake_done


async def test_verify_false_accepts_any_certificate() -> None:
    async with pair(client=client_settings(verify=False)) as link:
        assert link.client.handshake_done


# -- life ---------------------------------------------------------------------------


async def _one_exchange(threads_before: int) -> None:
    async with pair() as link:
        link.client.send_stream_data(0, b"ping", end_stream=True)
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: 0 in link.server_engine.fin)
        assert threads() >= threads_before + 2  # picoquic: one thread per endpoint
    assert link.client_driver.closed.is_set()
    assert link.server_driver.closed.is_set()


async def test_no_thread_or_descriptor_outlives_the_drivers() -> None:
    gc.collect()
    threads_before, fds_before = threads(), descriptors()
    for _ in range(2):
        await _one_exchange(threads_before)
    assert threads() == threads_before
    assert descriptors() == fds_before


async def test_cancellation_stops_the_threads_too() -> None:
    gc.collect()
    threads_before, fds_before = threads(), descriptors()
    with anyio.move_on_after(0.5):
        async with pair():
            await anyio.sleep(10)
    assert threads() == threads_before
    assert descriptors() == fds_before


async def test_a_driver_stopped_before_it_ran_leaves_nothing_behind() -> None:
    gc.collect()
    threads_before, fds_before = threads(), descriptors()

    def ignore(*args: Any) -> None:
        pass

    server_driver = await backend().open_server(
        server_settings(), "127.0.0.1", 0, on_connection=ignore, on_activity=ignore, on_ended=ignore
    )
    client_driver, connection = await backend().open_client(
        client_settings(),
        ("127.0.0.1", server_driver.local_address[1]),
        on_activity=ignore,
        on_ended=ignore,
    )
    assert threads() == threads_before + 2
    # An owner that fails while setting up gives up before running the drivers.
    client_driver.close()
    server_driver.abort()
    assert client_driver.closed.is_set() and server_driver.closed.is_set()
    assert connection.terminated
    await client_driver.run()  # stopped already: returns at once
    assert threads() == threads_before
    assert descriptors() == fds_before


async def test_the_driver_ends_the_connections_it_stops() -> None:
    async with pair() as link:
        link.server_driver.abort()
        with anyio.fail_after(LIMIT):
            await link.server_driver.closed.wait()
        assert link.server.terminated
        assert link.server_engine.terminated is not None
        assert link.server in link.ended


async def test_a_busy_port_is_an_os_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]

        def ignore(*args: Any) -> None:
            pass

        with pytest.raises(OSError):
            await backend().open_server(
                server_settings(),
                "127.0.0.1",
                port,
                on_connection=ignore,
                on_activity=ignore,
                on_ended=ignore,
            )


async def test_qlog_and_key_log_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys.log"
    qlogs = tmp_path / "qlog"
    client = client_settings(keylog_file=str(keys), qlog_dir=str(qlogs))
    async with pair(client=client) as link:
        link.client.send_stream_data(0, b"logged", end_stream=True)
        with anyio.fail_after(LIMIT):
            await wait_until(lambda: 0 in link.server_engine.fin)
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text()
    assert any(qlogs.iterdir())


async def test_settings_it_cannot_honour_are_refused() -> None:
    settings = dataclasses.replace(client_settings(), congestion_control="vegas")

    def ignore(*args: Any) -> None:
        pass

    with pytest.raises(BackendError, match="congestion control"):
        await backend().open_client(settings, ("127.0.0.1", 9), on_activity=ignore, on_ended=ignore)


async def test_key_updates_on_request_are_refused() -> None:
    async with pair() as link:
        with pytest.raises(BackendError, match="key update"):
            link.client.request_key_update()
        assert link.client.key_updates() == 0
        stats = link.client.stats()
        assert stats["max_datagram_payload"] == DATAGRAM_MAX_PAYLOAD
        assert stats["receive_credit_on_consumption"] == 0
