"""Echo service round trips over real loopback UDP: streams of both kinds, both directions."""

from __future__ import annotations

import anyio
import pytest
from wt_harness import LARGE, LIMIT, WITH_UVLOOP, EchoPair, echo_bidi, pattern, sha256

import anywt
from anywt.echo import SERVER_BIDI_GREETING

pytestmark = pytest.mark.anyio


@WITH_UVLOOP
async def test_one_bidi_stream(echo: EchoPair, anyio_backend: object) -> None:
    if anyio_backend == ("asyncio", {"use_uvloop": True}):
        import asyncio

        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    with anyio.fail_after(LIMIT):
        assert await echo_bidi(echo.session, b"hello over a bidi stream") == (
            b"hello over a bidi stream"
        )


async def test_fifty_concurrent_bidi_streams(echo: EchoPair) -> None:
    session = echo.session
    results: dict[int, bytes] = {}
    payloads = {index: pattern(1000 + 37 * index, seed=index) for index in range(50)}

    async def one(index: int) -> None:
        results[index] = await echo_bidi(session, payloads[index])

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tasks:
            for index in payloads:
                tasks.start_soon(one, index)
    assert results == payloads
    stats = session.statistics()
    assert stats.bidirectional_streams == 50


@WITH_UVLOOP
async def test_uni_stream_answered_by_server_uni_stream(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        stream = await session.create_unidirectional_stream()
        assert isinstance(stream, anywt.SendStream)
        await stream.write(b"one way", end_stream=True)
        reply = await session.accept_stream()
        assert isinstance(reply, anywt.ReceiveStream)
        assert reply.stream_id != stream.stream_id
        # A server-initiated unidirectional stream: stream id % 4 == 3.
        assert reply.stream_id % 4 == 3
        assert await reply.read_all() == b"one way"


async def test_server_initiated_bidi_stream(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        trigger = await session.create_bidirectional_stream()
        await trigger.write(b"open-bidi and some more", end_stream=True)
        incoming = await session.accept_stream()
        assert isinstance(incoming, anywt.BidirectionalStream)
        # Server-initiated bidirectional: stream id % 4 == 1.
        assert incoming.stream_id % 4 == 1
        assert await incoming.read_all() == SERVER_BIDI_GREETING
        # We may answer on it (the server reads what we write, then we end our side).
        await incoming.write(b"thanks", end_stream=True)
        assert await trigger.read_all() == b"open-bidi and some more"


async def test_large_transfer_checksummed_both_ways(echo: EchoPair) -> None:
    size = LARGE[echo.backend]
    payload = pattern(size, seed=7)
    with anyio.fail_after(60):
        echoed = await echo_bidi(echo.session, payload)
    assert len(echoed) == size
    assert sha256(echoed) == sha256(payload)
    server_session = await echo.server_session()
    server_diag = await server_session.diagnostics()
    client_diag = await echo.session.diagnostics()
    # Every byte went out and came back through the session.
    assert client_diag.data_sent >= size
    assert client_diag.data_received >= size
    assert server_diag.data_received >= size


async def test_large_uni_transfer_checksummed(echo: EchoPair) -> None:
    size = LARGE[echo.backend] // 2
    payload = pattern(size, seed=8)
    session = echo.session
    with anyio.fail_after(60):
        stream = await session.create_unidirectional_stream()
        await stream.write(payload, end_stream=True)
        reply = await session.accept_stream()
        assert isinstance(reply, anywt.ReceiveStream)
        echoed = await reply.read_all()
    assert sha256(echoed) == sha256(payload)
