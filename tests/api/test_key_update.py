"""QUIC key updates in the middle of a transfer: nothing lost, counted on both sides."""

from __future__ import annotations

import anyio
import pytest
from wt_harness import LARGE, EchoPair, pattern, sha256, wait_until

import anywt
from anywt.backends.base import BackendError
from anywt.connection import Connection

pytestmark = pytest.mark.anyio


async def request_key_update(connection: Connection, timeout: float = 5.0) -> None:
    """Ask for a key update; a stack may refuse while the previous one settles: retry."""
    with anyio.fail_after(timeout):
        while True:
            try:
                connection.request_key_update()
                return
            except BackendError:
                await anyio.sleep(0.02)


async def test_key_update_mid_transfer(echo: EchoPair) -> None:
    if echo.backend == "aiopquic":
        await _key_update_refused(echo)
        return
    session = echo.session
    size = LARGE[echo.backend] // 2
    payload = pattern(size, seed=11)
    parts = 8
    step = size // parts
    received = bytearray()
    with anyio.fail_after(60):
        server_session = await echo.server_session()
        client_conn = session.connection
        server_conn = server_session.connection
        assert client_conn.key_updates == 0
        assert server_conn.key_updates == 0
        stream = await session.create_bidirectional_stream()

        async def reader() -> None:
            received.extend(await stream.read_all())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            for index in range(parts):
                end = size if index == parts - 1 else (index + 1) * step
                await stream.write(payload[index * step : end])
                if index == 1:
                    await request_key_update(client_conn)
                elif index == 4:
                    # Both sides use the client's new keys; now the server rotates again.
                    await wait_until(
                        lambda: client_conn.key_updates >= 1 and server_conn.key_updates >= 1
                    )
                    await request_key_update(server_conn)
            await stream.send_eof()
        assert len(received) == size
        assert sha256(bytes(received)) == sha256(payload)
        await wait_until(lambda: client_conn.key_updates >= 2 and server_conn.key_updates >= 2)
        assert client_conn.diagnostics().key_updates == client_conn.key_updates
        assert server_conn.diagnostics().key_updates == server_conn.key_updates
        # The session is fine afterwards.
        tail = await session.create_bidirectional_stream()
        await tail.write(b"after the key updates", end_stream=True)
        assert await tail.read_all() == b"after the key updates"


async def _key_update_refused(echo: EchoPair) -> None:
    """aiopquic cannot start a key update on request (picoquic rotates keys by itself): the
    call says so with KeyUpdateUnavailable, and the connection goes on unharmed."""
    connection = echo.session.connection
    with pytest.raises(anywt.KeyUpdateUnavailable, match="picoquic"):
        connection.request_key_update()
    assert connection.key_updates == 0
    with anyio.fail_after(20):
        stream = await echo.session.create_bidirectional_stream()
        await stream.write(b"still fine", end_stream=True)
        assert await stream.read_all() == b"still fine"
