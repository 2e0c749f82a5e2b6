"""Datagrams: echo, size limits (DatagramTooLarge, never a silent drop), nowait calls, the queue."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import LIMIT, WITH_UVLOOP, EchoPair, Lab, echo_datagram

import anywt
from anywt.events import SessionEvent, SessionEventType

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]


@WITH_UVLOOP
async def test_datagram_echo(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        assert await echo_datagram(echo.session, b"ping") == b"ping"
        # The channel is an anyio UnreliableObjectStream with the same calls.
        assert isinstance(echo.session.datagrams, anyio.abc.UnreliableObjectStream)
        await echo.session.datagrams.send(b"second")
        with anyio.move_on_after(2):
            while await echo.session.datagrams.receive() != b"second":
                pass
    stats = echo.session.statistics()
    assert stats.datagrams_sent >= 2
    assert stats.datagrams_received >= 1


async def test_max_datagram_size_is_sane_and_one_more_byte_raises(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        size = session.datagrams.max_datagram_size
        # One QUIC packet (>= 1200 bytes on the wire) minus the headers; no more than a UDP payload.
        assert 1000 <= size <= 65527
        session.send_datagram_nowait(b"m" * size)  # exactly the limit goes
        before = session.statistics()
        with pytest.raises(anywt.DatagramTooLarge) as caught:
            await session.send_datagram(b"m" * (size + 1))
        assert caught.value.size == size + 1
        assert caught.value.max_size == size
        assert isinstance(caught.value, anywt.DatagramError)
        with pytest.raises(anywt.DatagramTooLarge):
            session.send_datagram_nowait(b"m" * (size + 100))
        after = session.statistics()
        # Counted as send errors, not sent.
        assert after.datagram_send_errors == before.datagram_send_errors + 2
        assert after.datagrams_sent == before.datagrams_sent
        diag = await session.diagnostics()
        assert diag.max_datagram_size == size
        # The session is fine afterwards.
        assert await echo_datagram(session, b"still working") == b"still working"


async def test_send_nowait_and_receive_nowait(echo: EchoPair) -> None:
    channel = echo.session.datagrams
    with anyio.fail_after(LIMIT):
        with pytest.raises(anyio.WouldBlock):
            channel.receive_nowait()
        got = None
        for _attempt in range(20):
            channel.send_nowait(b"nowait")
            with anyio.move_on_after(0.25):
                while got is None:
                    try:
                        got = channel.receive_nowait()
                    except anyio.WouldBlock:
                        await anyio.sleep(0.005)
            if got is not None:
                break
        assert got == b"nowait"
        with pytest.raises(anyio.WouldBlock):
            channel.receive_nowait()


async def test_bounded_receive_queue_drops_oldest_and_counts(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        session = await lab.client(server, limits=anywt.Limits(datagram_queue=4))
        arrivals: list[bytes] = []

        def record(event: SessionEvent) -> None:
            arrivals.append(event.data)

        session.events.on(SessionEventType.DATAGRAM_RECEIVED, record)
        sent = [b"datagram %02d" % index for index in range(20)]
        for payload in sent:
            await session.send_datagram(payload)
            await anyio.sleep(0.002)
        # Wait until the echoes stop arriving (loss is possible, but not likely on loopback).
        with anyio.move_on_after(2):
            while len(arrivals) < 20:
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
        received = len(arrivals)
        assert received > 4, f"only {received} echoes came back"
        channel = session.datagrams
        assert channel.queued == 4
        assert channel.dropped == received - 4
        # What is kept is the newest, in arrival order.
        kept = [channel.receive_nowait() for _ in range(4)]
        assert kept == arrivals[-4:]
        stats = session.statistics()
        assert stats.datagrams_dropped >= received - 4
        diag = await session.diagnostics()
        assert diag.datagrams_dropped >= received - 4
        assert diag.datagram_receive_buffer_size == 0


async def test_peer_without_datagrams_raises_datagrams_unavailable(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server(max_datagram_frame_size=0)
        session = await lab.client(server)
        with pytest.raises(anywt.DatagramsUnavailable):
            await session.send_datagram(b"nobody listens")
        with pytest.raises(anywt.DatagramsUnavailable):
            _ = session.datagrams.max_datagram_size
        assert session.statistics().datagram_send_errors == 1
        # Streams are unaffected.
        stream = await session.create_bidirectional_stream()
        await stream.write(b"streams still work", end_stream=True)
        assert await stream.read_all() == b"streams still work"
