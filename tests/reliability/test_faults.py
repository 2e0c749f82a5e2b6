"""Faults: a peer process killed mid-transfer, a server restarted under connected clients, a
client that never reads, a peer that stops responding.

After each: the side that survived noticed within its timeouts, its tasks are back to the
baseline (no leaked task), no session, connection or stream object is left, and the memory
tracemalloc sees is back within a bound (no leaked buffer).  Peers in other processes are
killed in ``finally``.
"""

from __future__ import annotations

import socket

import anyio
import pytest
from rel_harness import (
    LossyProxy,
    MiB,
    PeerProcess,
    Traced,
    connect,
    holders,
    live_objects,
    live_tasks,
    serving,
    settle_tasks,
    wait_until,
    warm_up,
)

import anywt
from anywt.echo import echo_handler

pytestmark = pytest.mark.anyio
LIMIT = 40.0
IDLE = 1.0
#: Memory that may stay allocated after a fault was cleaned up.
RESIDUE = 1 * MiB
#: What a failed transfer may raise on the side that survives.
ENDED = (anywt.WebTransportError, anyio.BrokenResourceError, anyio.ClosedResourceError)


def _received(served: object) -> int:
    return int(served.sessions[0].statistics().bytes_received)  # type: ignore[attr-defined]


def _left(objects: dict[str, int]) -> str:
    return "\n".join(holders(name) for name, count in objects.items() if count)


def _after_server(traced: Traced) -> tuple[dict[str, int], str, int]:
    """Objects left, who holds them, and the memory left, once the server is closed too."""
    final = live_objects()
    residue = traced.now()
    left = _left(final) + ("\n" + traced.top() if residue >= RESIDUE else "")
    return final, left, residue


def _check_cleanup(running: dict[str, int], final: dict[str, int], left: str, residue: int) -> None:
    """While the server runs, at most the last ended connection may still be referenced (the
    stale loop locals that test_load's failure reports); once it is closed, nothing at all."""
    assert all(count <= 1 for count in running.values()), f"left while serving: {running}"
    assert final == dict.fromkeys(final, 0), f"left after the server closed: {final}\n{left}"
    assert residue < RESIDUE, f"{residue} bytes still allocated:\n{left}"


async def sink(session: anywt.Session) -> None:
    """Read every stream to its end (or its failure); hold the session until it closes."""

    async def drain(stream: anywt.BidirectionalStream) -> None:
        try:
            async for _ in stream:
                pass
        except ENDED:
            return

    async with anyio.create_task_group() as tasks:
        async for stream in session.incoming_streams():
            tasks.start_soon(drain, stream)
        tasks.cancel_scope.cancel()


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_client_process_killed_mid_transfer(quic_backend: str) -> None:
    """SIGKILL of a client while it uploads: the server's idle timeout ends the session,
    the handler returns, and nothing of the connection stays."""
    await warm_up(quic_backend)
    with anyio.fail_after(LIMIT), Traced() as traced:
        async with serving(sink, backend=quic_backend, idle_timeout=IDLE) as served:
            tasks_before = live_tasks()
            digest = served.server.certificate_sha256.hex()
            with PeerProcess("upload", served.url("/"), digest, quic_backend) as peer:
                assert await peer.line() == "CONNECTED"
                await wait_until(lambda: served.sessions, 10)
                remote = served.sessions[0]
                await wait_until(lambda: _received(served) >= 256 * 1024, 15)
                peer.kill()
                start = anyio.current_time()
                info = await remote.wait_closed()
                took = anyio.current_time() - start
            await wait_until(lambda: not served.server.connections, 10)
            await wait_until(lambda: served.handlers_done == 1, 5)
            tasks_after = await settle_tasks(tasks_before)
            served.forget()
            remote = None
            running = live_objects()
        final, left, residue = _after_server(traced)
    assert info.error_code is not None, info  # ended abruptly, not cleanly
    assert took <= IDLE + 3, took
    assert tasks_after <= tasks_before
    assert not served.handler_errors, served.handler_errors
    _check_cleanup(running, final, left, residue)


@pytest.mark.parametrize("quic_backend", ["aioquic"])
async def test_server_restarted_under_connected_clients(quic_backend: str, tmp_path) -> None:
    """The server process dies (SIGKILL) and comes back on the same port: the connected
    clients fail within their idle timeout instead of hanging, new clients get the new server,
    and the clients leave no task or object behind."""
    cert = anywt.generate_dev_certificate()
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.cert_pem)
    keyfile.write_bytes(cert.key_pem)
    port = _free_udp_port()
    target = ("127.0.0.1", port, cert.sha256)
    clients = 3
    await warm_up(quic_backend)
    with anyio.fail_after(LIMIT), Traced() as traced:
        tasks_before = live_tasks()
        failures: list[str] = []
        with PeerProcess("server", str(port), quic_backend, str(certfile), str(keyfile)) as first:
            assert (await first.line()).startswith("READY")
            connected = 0

            async def client(index: int) -> None:
                nonlocal connected
                try:
                    async with connect(
                        target, "/echo", backend=quic_backend, idle_timeout=IDLE, close_timeout=2
                    ) as session:
                        connected += 1
                        stream = await session.create_bidirectional_stream()
                        while True:
                            await stream.write(b"x" * 1000)
                            assert await stream.receive() is not None
                            await anyio.sleep(0.01)
                except ENDED as exc:
                    failures.append(type(exc).__name__)  # not the exception: it holds frames

            async with anyio.create_task_group() as tasks:
                for index in range(clients):
                    tasks.start_soon(client, index)
                await wait_until(lambda: connected == clients, 15)
                await anyio.sleep(0.3)
                first.kill()
                killed_at = anyio.current_time()
                with PeerProcess(
                    "server", str(port), quic_backend, str(certfile), str(keyfile)
                ) as second:
                    assert (await second.line()).startswith("READY")
                    # The old clients end by themselves (idle timeout), not by cancellation.
                    await wait_until(lambda: len(failures) == clients, IDLE + 6)
                    ended_after = anyio.current_time() - killed_at
                    async with connect(target, "/echo", backend=quic_backend) as fresh:
                        stream = await fresh.create_bidirectional_stream()
                        await stream.write(b"hello again", end_stream=True)
                        assert await stream.read_all() == b"hello again"
                    fresh = stream = None  # type: ignore[assignment]
        tasks_after = await settle_tasks(tasks_before)
        objects = live_objects()
        left = _left(objects)
        residue = traced.now()
    assert ended_after <= IDLE + 5, ended_after
    assert tasks_after <= tasks_before, (tasks_before, tasks_after)
    assert objects == dict.fromkeys(objects, 0), f"{objects}\n{left}"
    assert residue < RESIDUE, residue


@pytest.mark.parametrize("quic_backend", ["aioquic", "qh3"])
async def test_client_that_never_reads(quic_backend: str) -> None:
    """A server writes 64 MiB to a client that reads nothing (no session flow control, as with
    browsers): the write waits or is stopped; the bytes in flight and the memory stay bounded;
    closing the session frees everything."""
    window = 512 * 1024
    limits = anywt.Limits(stream_receive_buffer=window)
    no_fc = anywt.FlowControl(enabled=False)
    outcome: list[str] = []

    async def flood(session: anywt.Session) -> None:
        stream = await session.accept_stream()
        assert isinstance(stream, anywt.BidirectionalStream)
        await stream.readexactly(2)
        chunk = b"f" * (64 * 1024)
        try:
            for _ in range(1024):  # 64 MiB, a chunk at a time (not one 64 MiB object)
                await stream.write(chunk)
            outcome.append("completed")
        except ENDED as exc:
            outcome.append(type(exc).__name__)

    await warm_up(quic_backend)
    with anyio.fail_after(LIMIT), Traced() as traced:
        async with serving(flood, backend=quic_backend, flow_control=no_fc) as served:
            tasks_before = live_tasks()
            async with connect(
                served, backend=quic_backend, flow_control=no_fc, limits=limits
            ) as session:
                stream = await session.create_bidirectional_stream()
                await stream.write(b"go")
                await wait_until(lambda: served.sessions, 5)
                await anyio.sleep(1.0)  # the server writes as fast as it is let
                in_flight = served.sessions[0].statistics().bytes_sent
                peak = traced.now()
            left_at = anyio.current_time()
            await wait_until(lambda: served.handlers_done == 1, 10)
            # The client closed its connection: the server must learn it at once, not at its
            # janitor's handshake timeout (10 s) or its idle timeout (30 s).
            with anyio.move_on_after(10):
                await wait_until(lambda: not served.server.connections, 10)
            gone_after = anyio.current_time() - left_at
            tasks_after = await settle_tasks(tasks_before)
            served.forget()
            session = stream = None  # type: ignore[assignment]
            running = live_objects()
        final, left, residue = _after_server(traced)
    assert outcome != ["completed"], "64 MiB went to a client that read nothing"
    assert in_flight <= window + 2 * MiB, in_flight  # the client's window + our send buffer
    assert peak < 16 * MiB, peak
    assert gone_after < 3, f"the server kept the closed client's connection {gone_after:.1f} s"
    assert tasks_after <= tasks_before
    _check_cleanup(running, final, left, residue)


@pytest.mark.parametrize("quic_backend", ["qh3"])
async def test_peer_that_stops_responding(quic_backend: str) -> None:
    """Mid-session the path swallows every packet: both idle timeouts fire, the client's
    pending read fails, the server's handler returns, nothing is left on either side."""
    await warm_up(quic_backend)
    with anyio.fail_after(LIMIT), Traced() as traced:
        async with (
            serving({"/echo": echo_handler}, backend=quic_backend, idle_timeout=IDLE) as served,
            anyio.create_task_group() as proxy_tasks,
        ):
            proxy = LossyProxy(("127.0.0.1", served.port), seed=3)
            await proxy_tasks.start(proxy.run)
            tasks_before = live_tasks()
            target = ("127.0.0.1", proxy.port, served.server.certificate_sha256)
            error: BaseException | None = None
            async with connect(
                target, "/echo", backend=quic_backend, idle_timeout=IDLE, close_timeout=2
            ) as session:
                stream = await session.create_bidirectional_stream()
                await stream.write(b"ping")
                assert await stream.receive() == b"ping"
                proxy.blackhole = True
                start = anyio.current_time()
                try:
                    await stream.write(b"anyone?")
                    await stream.receive()
                except ENDED as exc:
                    error = exc
                client_took = anyio.current_time() - start
                remote = served.sessions[0]
                await remote.wait_closed()
                server_took = anyio.current_time() - start
            await wait_until(lambda: not served.server.connections, 10)
            await wait_until(lambda: served.handlers_done == 1, 5)
            tasks_after = await settle_tasks(tasks_before + proxy.upstream_tasks)
            served.forget()
            error_name = type(error).__name__ if error is not None else None
            remote = stream = session = error = None  # type: ignore[assignment]
            running = live_objects()
            proxy_tasks.cancel_scope.cancel()
        final, left, residue = _after_server(traced)
    assert error_name is not None
    assert client_took <= IDLE + 3 and server_took <= IDLE + 3, (client_took, server_took)
    assert tasks_after <= tasks_before + proxy.upstream_tasks
    _check_cleanup(running, final, left, residue)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
