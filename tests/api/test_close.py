"""Session close codes and reasons, both ways; what streams do after the close."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import LIMIT, WITH_UVLOOP, EchoPair, Lab, wait_until

import anywt
from anywt.session import CloseInfo, SessionState

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]


@WITH_UVLOOP
async def test_client_close_code_reaches_server_handler(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        server_session = await echo.server_session()
        await session.close(4242, "bye")
        assert session.is_closed
        assert session.state == SessionState.CLOSED
        info = await server_session.wait_closed()
        assert info.code == 4242
        assert info.reason == "bye"
        assert info.by_peer is True
        assert info.error_code is None
        # The handler returned with that close recorded.
        await wait_until(lambda: bool(echo.harness.closes))
        assert echo.harness.closes[0] == info
        # Our side: closed by us, with our code.
        ours = await session.wait_closed()
        assert (ours.code, ours.reason, ours.by_peer) == (4242, "bye", False)


@WITH_UVLOOP
async def test_server_close_command_reaches_client(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        idle = await session.create_bidirectional_stream()
        await idle.write(b"x")
        assert await idle.readexactly(1) == b"x"
        closer = await session.create_bidirectional_stream()
        await closer.write(b"close:4343:server says bye", end_stream=True)
        info = await session.wait_closed()
        assert info == CloseInfo(4343, "server says bye", by_peer=True)
        assert session.close_code == 4343
        assert session.close_reason == "server says bye"
        assert session.is_closed and not session.is_ready

        # Everything on the session now says how it ended.
        with pytest.raises(anywt.SessionClosedError) as caught:
            await idle.write(b"after close")
        assert caught.value.code == 4343
        assert caught.value.reason == "server says bye"
        assert caught.value.by_peer
        with pytest.raises(anywt.SessionClosed):
            await idle.receive()
        with pytest.raises(anywt.SessionClosed):
            await idle.read(10)
        with pytest.raises(anywt.SessionClosed):
            await session.create_bidirectional_stream()
        with pytest.raises(anywt.SessionClosed):
            await session.create_unidirectional_stream()
        with pytest.raises(anywt.SessionClosed):
            await session.send_datagram(b"late")
        with pytest.raises(anywt.SessionClosed):
            await session.receive_datagram()
        # Iterators end instead of raising.
        assert [stream async for stream in session.incoming_streams()] == []


async def test_clean_close_raises_session_closed_ok(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        idle = await session.create_bidirectional_stream()
        await idle.write(b"y")
        assert await idle.readexactly(1) == b"y"
        closer = await session.create_bidirectional_stream()
        await closer.write(b"close:0:", end_stream=True)
        info = await session.wait_closed()
        assert (info.code, info.reason, info.by_peer, info.clean) == (0, "", True, True)
        with pytest.raises(anywt.SessionClosedOK):
            await idle.write(b"after close")
        with pytest.raises(anywt.SessionClosedOK):
            await idle.receive()


async def test_local_close_makes_streams_raise(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        stream = await session.create_bidirectional_stream()
        await stream.write(b"z")
        assert await stream.readexactly(1) == b"z"
        await session.close(7, "local")
        with pytest.raises(anywt.SessionClosedError) as caught:
            await stream.write(b"after close")
        assert caught.value.code == 7 and not caught.value.by_peer
        with pytest.raises(anywt.SessionClosed):
            await stream.receive()


async def test_reader_blocked_at_close_is_woken(echo: EchoPair) -> None:
    session = echo.session
    outcome: list[BaseException] = []

    async def reader(stream: anywt.BidirectionalStream) -> None:
        try:
            await stream.receive()
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(LIMIT):
        stream = await session.create_bidirectional_stream()
        await stream.write(b"w")
        assert await stream.readexactly(1) == b"w"
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader, stream)
            await anyio.sleep(0.05)
            closer = await session.create_bidirectional_stream()
            await closer.write(b"close:12:wake up", end_stream=True)
            await wait_until(lambda: bool(outcome))
        assert isinstance(outcome[0], anywt.SessionClosedError)
        assert outcome[0].code == 12


async def test_close_twice_and_close_code_range(echo: EchoPair) -> None:
    session = echo.session
    with anyio.fail_after(LIMIT):
        with pytest.raises(ValueError):
            await session.close(-1)
        with pytest.raises(ValueError):
            await session.close(1 << 32)
        assert not session.is_closed
        await session.close(5, "first")
        await session.close(6, "second")  # nothing happens
        info = await session.wait_closed()
        assert (info.code, info.reason) == (5, "first")
        server_info = await (await echo.server_session()).wait_closed()
        assert (server_info.code, server_info.reason) == (5, "first")


async def test_close_error_code_keyword(echo: EchoPair) -> None:
    # The newer session API's name for the code.
    with anyio.fail_after(LIMIT):
        await echo.session.close(error_code=31, reason="kw")
        server_info = await (await echo.server_session()).wait_closed()
        assert (server_info.code, server_info.reason) == (31, "kw")


async def test_async_with_exit_closes(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        async with lab.connect(server) as session:
            assert session.is_ready
            assert session.state == SessionState.CONNECTED
        assert session.is_closed
        assert session.connection.is_closed
        info = await (await server.session()).wait_closed()
        assert info.code == 0 and info.by_peer


async def test_exception_leaving_async_with_connect_is_not_wrapped(wt: LabFactory) -> None:
    """An error raised in the block comes out as itself (websockets/httpx convention).

    The task group hidden in ``connect()`` must not turn it into an ExceptionGroup.
    """
    async with wt() as lab:
        server = await lab.server()
        raised: BaseException | None = None
        try:
            async with lab.connect(server) as session:
                raise KeyError("boom")
        except BaseException as exc:
            raised = exc
        assert session.is_closed
        info = await (await server.session()).wait_closed()
        assert info.by_peer
        assert type(raised) is KeyError, f"got {raised!r}"


async def test_session_async_with_closes(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        session = await lab.client(server)
        async with session as entered:
            assert entered is session
        assert session.is_closed
        info = await (await server.session()).wait_closed()
        assert info.code == 0 and info.by_peer


async def test_close_reason_utf8_and_truncated_to_1024_bytes(wt: LabFactory) -> None:
    seen: list[CloseInfo] = []

    async def hook(session: anywt.Session) -> None:
        seen.append(await session.wait_closed())

    async with wt() as lab:
        server = await lab.server(hook=hook, echo=False)
        for index, reason in enumerate(("bye ✓ ünïcode", "é" * 600)):
            async with lab.connect(server) as session:
                await session.close(3, reason)
            await wait_until(lambda index=index: len(seen) > index)
            got = seen[index]
            assert got.code == 3
            encoded = got.reason.encode("utf-8")
            # At most 1024 bytes of UTF-8 (draft section 5), cut on a character boundary.
            assert len(encoded) <= 1024
            assert reason.startswith(got.reason)
            assert got.reason == reason or len(encoded) > 1020
            assert session.close_reason == got.reason
