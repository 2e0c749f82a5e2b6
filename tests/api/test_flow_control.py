"""Session flow control: writers wait for WT_MAX_DATA / WT_MAX_STREAMS credit, nothing lost."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import Lab, echo_bidi, pattern, sha256, wait_until

import anywt
from anywt.session import Session

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]

WINDOW = 64 * 1024
TOTAL = 1024 * 1024


async def test_writer_waits_for_data_credit_until_granted(wt: LabFactory) -> None:
    received = bytearray()
    reader_done = anyio.Event()

    async def hook(session: Session) -> None:
        stream = await session.accept_stream()
        async for chunk in stream:
            received.extend(chunk)
        reader_done.set()
        await stream.send_eof()

    async with wt(30) as lab:
        server = await lab.server(
            hook=hook,
            echo=False,
            flow_control=anywt.FlowControl(initial_max_data=WINDOW, auto_grant=False),
        )
        session = await lab.client(server)
        assert session.connection.flow_control
        payload = pattern(TOTAL, seed=3)
        stream = await session.create_bidirectional_stream()
        writer_done = anyio.Event()
        writer_error: list[BaseException] = []

        async def writer() -> None:
            try:
                await stream.write(payload, end_stream=True)
            except Exception as exc:
                writer_error.append(exc)
            finally:
                writer_done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(writer)
            server_session = await server.session()
            # The writer fills the window and then waits, without raising.
            await wait_until(lambda: session.diagnostics_nowait().data_blocked_at is not None)
            await anyio.sleep(0.3)
            assert not writer_done.is_set()
            assert not writer_error
            diag = await session.diagnostics()
            assert diag.peer_max_data == WINDOW
            assert diag.data_blocked_at == WINDOW
            assert diag.local_data_sent == WINDOW
            assert diag.send_credit_available == 0
            assert stream.stream_id in diag.blocked_streams
            assert stream.bytes_sent == WINDOW
            # The server got the window's worth and was told we are blocked.
            await wait_until(lambda: len(received) == WINDOW)
            await wait_until(
                lambda: server_session.diagnostics_nowait().peer_data_blocked_at == WINDOW
            )
            assert server_session.diagnostics_nowait().local_max_data == WINDOW

            # Grant in steps; each step lets exactly that much through.
            granted = WINDOW
            assert not await server_session.grant_data_credit(granted - 1)  # not higher
            steps = 0
            while granted < TOTAL:
                granted = min(TOTAL, granted + 192 * 1024)
                assert await server_session.grant_data_credit(granted)
                steps += 1
                await wait_until(lambda granted=granted: len(received) == granted)
                assert session.diagnostics_nowait().local_data_sent == granted
                if granted < TOTAL:
                    await anyio.sleep(0.05)
                    assert not writer_done.is_set()
            assert steps >= 4
            with anyio.fail_after(10):
                await writer_done.wait()
                await reader_done.wait()
        assert not writer_error
        assert len(received) == TOTAL
        assert sha256(bytes(received)) == sha256(payload)
        diag = await session.diagnostics()
        assert diag.peer_max_data == TOTAL
        assert diag.blocked_streams == ()
        assert not server.errors


async def test_cancelled_wait_for_credit_keeps_what_was_sent(wt: LabFactory) -> None:
    received = bytearray()

    async def hook(session: Session) -> None:
        stream = await session.accept_stream()
        async for chunk in stream:
            received.extend(chunk)

    async with wt() as lab:
        server = await lab.server(
            hook=hook,
            echo=False,
            flow_control=anywt.FlowControl(initial_max_data=WINDOW, auto_grant=False),
        )
        session = await lab.client(server)
        stream = await session.create_bidirectional_stream()
        payload = pattern(4 * WINDOW, seed=4)
        with anyio.move_on_after(0.5) as scope:
            await stream.write(payload)
        assert scope.cancelled_caught, "the write did not wait for credit"
        assert stream.bytes_sent == WINDOW
        server_session = await server.session()
        await server_session.grant_data_credit(4 * WINDOW)
        await stream.write(payload[stream.bytes_sent :], end_stream=True)
        await wait_until(lambda: len(received) == len(payload))
        assert bytes(received) == payload


@pytest.mark.parametrize("unidirectional", [False, True], ids=["bidi", "uni"])
async def test_stream_opener_waits_for_streams_credit(wt: LabFactory, unidirectional: bool) -> None:
    flow = anywt.FlowControl(
        initial_max_streams_bidi=1, initial_max_streams_uni=1, auto_grant=False
    )
    async with wt() as lab:
        server = await lab.server(flow_control=flow)
        session = await lab.client(server)

        async def open_stream() -> anywt.BidirectionalStream | anywt.SendStream:
            if unidirectional:
                return await session.create_unidirectional_stream()
            return await session.create_bidirectional_stream()

        first = await open_stream()
        await first.write(b"first", end_stream=True)
        opened: list[anywt.BidirectionalStream | anywt.SendStream] = []

        async def opener() -> None:
            opened.append(await open_stream())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(opener)
            await anyio.sleep(0.3)
            assert not opened, "a stream opened past the peer's WT_MAX_STREAMS"
            diag = await session.diagnostics()
            limit = diag.peer_max_streams_uni if unidirectional else diag.peer_max_streams_bidi
            assert limit == 1
            server_session = await server.session()
            assert not await server_session.grant_streams_credit(1, unidirectional)
            assert await server_session.grant_streams_credit(2, unidirectional)
            await wait_until(lambda: bool(opened))
        second = opened[0]
        assert second.stream_id != first.stream_id
        await second.write(b"second", end_stream=True)
        if unidirectional:
            replies = sorted([await (await session.accept_stream()).read_all() for _ in range(2)])
            assert replies == [b"first", b"second"]
        else:
            assert isinstance(first, anywt.BidirectionalStream)
            assert isinstance(second, anywt.BidirectionalStream)
            assert await first.read_all() == b"first"
            assert await second.read_all() == b"second"
        diag = await session.diagnostics()
        limit = diag.peer_max_streams_uni if unidirectional else diag.peer_max_streams_bidi
        assert limit == 2


async def test_auto_grant_moves_more_than_the_window(wt: LabFactory) -> None:
    """With auto_grant (the default) a small window still carries any amount."""
    async with wt(30) as lab:
        server = await lab.server(flow_control=anywt.FlowControl(initial_max_data=WINDOW))
        session = await lab.client(server, flow_control=anywt.FlowControl(initial_max_data=WINDOW))
        payload = pattern(8 * WINDOW, seed=5)
        assert sha256(await echo_bidi(session, payload)) == sha256(payload)
        diag = await session.diagnostics()
        assert diag.peer_max_data is not None and diag.peer_max_data >= len(payload)
