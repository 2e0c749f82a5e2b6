"""The stream API: anyio byte streams plus read/readexactly/readuntil, FIN, resets, STOP_SENDING."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.text import TextStream
from wt_harness import LIMIT, EchoPair, Lab, wait_until

import anywt
from anywt import WebTransportAttribute
from anywt.echo import SERVER_BIDI_GREETING
from anywt.session import Session

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]


async def sent_and_ended(session: Session, *parts: bytes) -> anywt.BidirectionalStream:
    """A bidi stream to the echo on which ``parts`` were written, then FIN."""
    stream = await session.create_bidirectional_stream()
    for part in parts:
        await stream.write(part)
    await stream.send_eof()
    return stream


# ----------------------------------------------------------------------
# Reading


async def test_read_n_returns_at_most_n_then_empty(echo: EchoPair) -> None:
    payload = bytes(range(100))
    with anyio.fail_after(LIMIT):
        stream = await sent_and_ended(echo.session, payload)
        assert await stream.read(0) == b""
        pieces = []
        while True:
            piece = await stream.read(7)
            if not piece:
                break
            assert 1 <= len(piece) <= 7
            pieces.append(piece)
        assert b"".join(pieces) == payload
        # At the end read() keeps answering b"" (asyncio's convention), receive() EndOfStream.
        assert await stream.read(7) == b""
        assert await stream.read() == b""
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()


async def test_read_minus_one_and_read_all(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await sent_and_ended(echo.session, b"abc", b"def")
        assert await stream.read() == b"abcdef"
        stream = await sent_and_ended(echo.session, b"x" * 50)
        assert await stream.read_all(max_size=50) == b"x" * 50
        stream = await sent_and_ended(echo.session, b"y" * 100)
        with pytest.raises(ValueError, match="more than 10 bytes"):
            await stream.read_all(max_size=10)


async def test_readexactly_and_incomplete_read_at_fin(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await sent_and_ended(echo.session, b"0123", b"456789")
        assert await stream.readexactly(3) == b"012"
        assert await stream.readexactly(5) == b"34567"
        with pytest.raises(anyio.IncompleteRead):
            await stream.readexactly(10)


async def test_readuntil_and_readline_keep_what_follows(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await sent_and_ended(echo.session, b"alpha\r\nbe", b"ta\r\ngamma")
        assert await stream.readuntil(b"\r\n") == b"alpha\r\n"
        assert await stream.readuntil(b"\r\n") == b"beta\r\n"
        assert await stream.read_all() == b"gamma"

        stream = await sent_and_ended(echo.session, b"one\ntwo\nthree")
        assert await stream.readline() == b"one\n"
        # What was read past the separator is handed back to the next read.
        assert await stream.read_all() == b"two\nthree"

        stream = await sent_and_ended(echo.session, b"one\nno newline at the end")
        assert await stream.readline() == b"one\n"
        with pytest.raises(anyio.IncompleteRead):
            await stream.readline()


async def test_readuntil_delimiter_not_found(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await echo.session.create_bidirectional_stream()
        await stream.write(b"z" * 200)  # no separator, no FIN
        with pytest.raises(anyio.DelimiterNotFound):
            await stream.readline(limit=50)
        with pytest.raises(ValueError):
            await stream.readuntil(b"")


async def test_receive_raises_end_of_stream_and_never_returns_empty(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        stream = await session.create_bidirectional_stream()
        for index in range(5):
            await stream.write(bytes([index]) * 1000)
            await anyio.sleep(0.01)
        await stream.send_eof()
        chunks = []
        while True:
            try:
                chunk = await stream.receive()
            except anyio.EndOfStream:
                break
            assert chunk != b""
            chunks.append(chunk)
        assert b"".join(chunks) == b"".join(bytes([i]) * 1000 for i in range(5))
        for _ in range(3):  # and keeps raising it
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()

        # anyio's iteration protocol ends at the FIN.
        stream = await sent_and_ended(session, b"iter", b"ated")
        collected = [chunk async for chunk in stream]
        assert all(collected) and b"".join(collected) == b"iterated"


async def test_receive_max_bytes(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await sent_and_ended(echo.session, b"q" * 1000)
        first = await stream.receive(10)
        assert 1 <= len(first) <= 10
        with pytest.raises(ValueError):
            await stream.receive(0)


# ----------------------------------------------------------------------
# anyio's helpers over our streams


async def test_buffered_byte_receive_stream(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await sent_and_ended(echo.session, b"HELLO\nwor", b"ld\n", b"12345")
        buffered = BufferedByteReceiveStream(stream)
        assert await buffered.receive_until(b"\n", 100) == b"HELLO"
        assert await buffered.receive_until(b"\n", 100) == b"world"
        assert await buffered.receive_exactly(3) == b"123"
        with pytest.raises(anyio.IncompleteRead):
            await buffered.receive_exactly(5)


async def test_text_stream(echo: EchoPair) -> None:
    text = "héllo → wörld ✓ 🚀 " * 50
    with anyio.fail_after(LIMIT):
        stream = await echo.session.create_bidirectional_stream()
        wrapped = TextStream(stream)
        await wrapped.send(text)
        await stream.send_eof()
        received = []
        while True:
            try:
                received.append(await wrapped.receive())
            except anyio.EndOfStream:
                break
        assert "".join(received) == text
        # Typed attributes pass through the wrapper.
        assert wrapped.extra(WebTransportAttribute.stream_id) == stream.stream_id


# ----------------------------------------------------------------------
# Ending a stream


async def test_send_eof(echo: EchoPair) -> None:
    with anyio.fail_after(LIMIT):
        stream = await echo.session.create_bidirectional_stream()
        await stream.write(b"before eof")
        await stream.send_eof()
        await stream.send_eof()  # twice is fine
        assert await stream.read_all() == b"before eof"
        with pytest.raises(anyio.ClosedResourceError):
            await stream.write(b"after eof")
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"after eof")

        # write(..., end_stream=True) is the same FIN.
        stream = await echo.session.create_bidirectional_stream()
        await stream.write(b"with fin", end_stream=True)
        assert await stream.read_all() == b"with fin"


async def test_client_reset_seen_by_server(wt: LabFactory) -> None:
    streams: list[anywt.BidirectionalStream] = []
    seen: list[BaseException] = []

    async def hook(session: Session) -> None:
        async for stream in session.incoming_bidirectional_streams():
            streams.append(stream)
            try:
                while True:
                    await stream.receive()
            except Exception as exc:
                seen.append(exc)

    async with wt() as lab:
        server = await lab.server(hook=hook, echo=False)
        session = await lab.client(server)
        for index, code in enumerate((0x1234, 0, 0xFFFFFFFF)):
            stream = await session.create_bidirectional_stream()
            await stream.write(b"partial")
            await wait_until(lambda index=index: len(streams) > index)
            await stream.reset(code)
            await wait_until(lambda index=index: len(seen) > index)
            error = seen[index]
            assert isinstance(error, anywt.StreamReset), repr(error)
            assert error.code == code
            assert error.stream_id == stream.stream_id
            assert isinstance(error, anyio.BrokenResourceError)
            # Our side is gone: writing again is an error, resetting again is not.
            with pytest.raises(anyio.ClosedResourceError):
                await stream.write(b"more")
            await stream.reset(code)


async def test_server_reset_seen_by_client(wt: LabFactory) -> None:
    async def hook(session: Session) -> None:
        stream = await session.accept_stream()
        assert isinstance(stream, anywt.BidirectionalStream)
        await stream.readexactly(5)
        await stream.write(b"some data")
        await anyio.sleep(0.05)
        await stream.reset(77)
        await session.wait_closed()

    async with wt() as lab:
        server = await lab.server(hook=hook, echo=False)
        session = await lab.client(server)
        stream = await session.create_bidirectional_stream()
        await stream.write(b"hello")
        received = b""
        with pytest.raises(anywt.StreamReset) as caught:
            while True:
                received += await stream.receive()
        assert caught.value.code == 77
        assert received in (b"", b"some data")
        assert not server.errors


async def test_client_stop_receiving_stops_server_writer(wt: LabFactory) -> None:
    outcome: list[BaseException] = []
    written: list[int] = []

    async def hook(session: Session) -> None:
        stream = await session.accept_stream()
        assert isinstance(stream, anywt.BidirectionalStream)
        await stream.readexactly(5)
        try:
            for _ in range(10_000):
                await stream.write(b"w" * 4096)
                written.append(4096)
                await anyio.sleep(0)
        except Exception as exc:
            outcome.append(exc)

    async with wt() as lab:
        server = await lab.server(hook=hook, echo=False)
        session = await lab.client(server)
        stream = await session.create_bidirectional_stream()
        await stream.write(b"hello")
        await wait_until(lambda: len(written) > 0)
        await stream.stop_receiving(0x4242)
        await wait_until(lambda: bool(outcome))
        assert isinstance(outcome[0], anywt.StreamStopped), repr(outcome[0])
        assert outcome[0].code == 0x4242
        # We stopped reading: our reads fail locally.
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()


async def test_server_stop_receiving_stops_client_writer(wt: LabFactory) -> None:
    async def hook(session: Session) -> None:
        stream = await session.accept_stream()
        assert isinstance(stream, anywt.BidirectionalStream)
        await stream.readexactly(5)
        await stream.stop_receiving(99)
        await session.wait_closed()

    async with wt() as lab:
        server = await lab.server(hook=hook, echo=False)
        session = await lab.client(server)
        stream = await session.create_bidirectional_stream()
        await stream.write(b"hello")
        with pytest.raises(anywt.StreamStopped) as caught:
            for _ in range(10_000):
                await stream.write(b"w" * 4096)
                await anyio.sleep(0)
        assert caught.value.code == 99
        assert caught.value.stream_id == stream.stream_id
        assert not server.errors


# ----------------------------------------------------------------------
# Typed attributes


async def test_extra_attributes(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        stream = await session.create_bidirectional_stream()
        await stream.write(b"attrs", end_stream=True)
        assert await stream.read_all() == b"attrs"
        assert stream.extra(WebTransportAttribute.session_id) == session.session_id
        assert stream.extra(WebTransportAttribute.stream_id) == stream.stream_id
        assert stream.extra(WebTransportAttribute.path) == "/echo"
        assert stream.extra(WebTransportAttribute.backend) == echo.backend
        draft = stream.extra(WebTransportAttribute.draft)
        assert draft == session.connection.draft and draft.startswith("draft-")
        assert stream.extra(WebTransportAttribute.alpn) == "h3"
        remote = stream.extra(SocketAttribute.remote_address)
        assert remote == ("127.0.0.1", echo.server.port)
        local = stream.extra(SocketAttribute.local_address)
        assert local[0] == "127.0.0.1" and local[1] not in (0, echo.server.port)
        assert session.extra(WebTransportAttribute.path) == "/echo"
        with pytest.raises(anyio.TypedAttributeLookupError):
            stream.extra(SocketAttribute.family)
        assert stream.extra(SocketAttribute.family, "nope") == "nope"

        # The server side sees the client's address as remote.
        server_session = await echo.server_session()
        assert server_session.extra(SocketAttribute.remote_address) == local
        assert server_session.extra(WebTransportAttribute.backend) == echo.backend
        assert server_session.extra(WebTransportAttribute.draft) == draft


# ----------------------------------------------------------------------
# More of the stream contract


async def test_half_close_and_concurrent_receive(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        stream = await session.create_bidirectional_stream()
        await stream.send_eof()  # our side ends at once; the peer's side still answers
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()

        stream = await session.create_bidirectional_stream()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stream.receive)
            await anyio.sleep(0.05)
            # One reader at a time, as anyio's streams require.
            with pytest.raises(anyio.BusyResourceError):
                await stream.receive()
            await stream.write(b"unblock")
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.write(b"after aclose")


async def test_incoming_streams_by_kind(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        uni = await session.create_unidirectional_stream()
        await uni.write(b"uni", end_stream=True)
        trigger = await session.create_bidirectional_stream()
        await trigger.write(b"open-bidi", end_stream=True)
        async for incoming in session.incoming_bidirectional_streams():
            assert isinstance(incoming, anywt.BidirectionalStream)
            assert await incoming.read_all() == SERVER_BIDI_GREETING
            break
        # The uni answer waited for its own iterator.
        async for reply in session.incoming_unidirectional_streams():
            assert isinstance(reply, anywt.ReceiveStream)
            assert await reply.read_all() == b"uni"
            break
        assert await trigger.read_all() == b"open-bidi"
