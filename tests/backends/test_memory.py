"""The in-memory backend: the whole API over an in-process (optionally lossy) network."""

from __future__ import annotations

import hashlib

import anyio
import pytest

import anywt
from anywt.backends.memory import MemoryBackend, MemoryNetwork
from anywt.echo import echo_handler

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_echo_over_memory_backend() -> None:
    with anyio.fail_after(20):
        async with (
            anywt.Server(
                {"/echo": echo_handler}, host="127.0.0.1", port=0, backend="memory"
            ) as server,
            anywt.connect(
                server.url("/echo"),
                backend="memory",
                server_certificate_hashes=[server.certificate_sha256],
            ) as session,
        ):
            assert session.connection.backend == "memory"
            stream = await session.create_bidirectional_stream()
            await stream.write(b"over memory", end_stream=True)
            assert await stream.read_all() == b"over memory"
            for _ in range(20):
                session.send_datagram_nowait(b"dgram")
                with anyio.move_on_after(0.2):
                    assert await session.receive_datagram() == b"dgram"
                    break
            else:
                pytest.fail("no datagram came back")


def test_network_rejects_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="loss"):
        MemoryNetwork(loss=1.0)


async def test_bulk_transfer_survives_a_lossy_reordering_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network = MemoryNetwork(loss=0.05, duplication=0.02, reordering=0.05, seed=7)
    backend = MemoryBackend(network)
    monkeypatch.setattr(anywt.backends.memory, "backend", lambda: backend)
    payload = bytes(range(256)) * 2048  # 512 KiB
    with anyio.fail_after(60):
        async with (
            anywt.Server(
                {"/echo": echo_handler}, host="127.0.0.1", port=0, backend="memory"
            ) as server,
            anywt.connect(
                server.url("/echo"),
                backend="memory",
                server_certificate_hashes=[server.certificate_sha256],
            ) as session,
        ):
            stream = await session.create_bidirectional_stream()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(stream.write, payload, True)
                echoed = await stream.read_all()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert network.lost > 0 and network.duplicated > 0 and network.reordered > 0


async def test_nobody_listening_is_a_handshake_timeout() -> None:
    with anyio.fail_after(10), pytest.raises(anywt.HandshakeTimeout):
        await anywt.connect(
            "https://127.0.0.1:9/nobody", backend="memory", connect_timeout=0.5, verify=False
        )


async def test_full_socket_holds_at_most_send_queue_datagrams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the socket refuses to send, ``Limits.send_queue`` datagrams wait and the rest are
    dropped and counted; once it sends again, QUIC resends what was dropped as lost."""
    network = MemoryNetwork(seed=11)
    backend = MemoryBackend(network)
    monkeypatch.setattr(anywt.backends.memory, "backend", lambda: backend)
    payload = bytes(range(256)) * 256  # 64 KiB: more than the first flight
    with anyio.fail_after(30):
        async with (
            anywt.Server(
                {"/echo": echo_handler}, host="127.0.0.1", port=0, backend="memory"
            ) as server,
            anywt.connect(
                server.url("/echo"),
                backend="memory",
                server_certificate_hashes=[server.certificate_sha256],
                limits=anywt.Limits(send_queue=4),
            ) as session,
        ):
            endpoint = session.connection._endpoint
            sock = network.socket_at(session.connection.local_address)
            assert sock is not None
            stream = await session.create_bidirectional_stream()
            sock.hold_sends()
            await stream.write(payload, end_stream=True)
            while session.connection.diagnostics().io["send_dropped"] == 0:
                await anyio.sleep(0.01)
            assert len(endpoint._unsent) == 4
            assert sock.refused >= 1
            sock.release_sends()
            assert await stream.read_all() == payload
    with pytest.raises(ValueError, match="send_queue"):
        anywt.Limits(send_queue=0)
