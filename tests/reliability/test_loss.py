"""Loss: many streams through a seeded lossy UDP proxy (5% loss, reordering, duplication,
delay) arrive byte-exact (SHA-256 both ways); datagram loss is counted, nothing crashes.

CI moves a bounded amount per QUIC stack (aioquic is pure Python, ~5 MB/s
on a clean path here; qh3 is Rust); ``ANYWT_LONG=1`` moves 100 MB per stack.
"""

from __future__ import annotations

import hashlib
import logging
import time

import anyio
import pytest
from rel_harness import (
    LONG,
    QUIC_BACKENDS,
    LossyProxy,
    MiB,
    connect,
    pattern,
    record_figure,
    serving,
    sha256,
)

import anywt

pytestmark = pytest.mark.anyio

#: Bytes moved through the lossy path per stack, in CI and in the long run.
TOTAL = {"aioquic": 100 * MiB if LONG else 1 * MiB, "qh3": 100 * MiB if LONG else 2 * MiB}
STREAMS = 64 if LONG else 16
LOSS = 0.05
LIMIT = 1800 if LONG else 60


async def transfer_service(session: anywt.Session) -> None:
    """Per bidi stream: ``U`` + size + seed uploads (answered with the SHA-256 received),
    ``D`` + size + seed downloads (the server sends the pattern)."""

    async def one(stream: anywt.BidirectionalStream) -> None:
        head = await stream.readexactly(17)
        size = int.from_bytes(head[1:9], "big")
        seed = int.from_bytes(head[9:17], "big")
        if head[:1] == b"U":
            digest = hashlib.sha256()
            received = 0
            async for chunk in stream:
                digest.update(chunk)
                received += len(chunk)
            await stream.write(digest.digest() + received.to_bytes(8, "big"), end_stream=True)
        else:
            await stream.write(pattern(size, seed), end_stream=True)

    async with anyio.create_task_group() as tasks:
        async for stream in session.incoming_streams():
            if isinstance(stream, anywt.BidirectionalStream):
                tasks.start_soon(one, stream)
        tasks.cancel_scope.cancel()


async def _upload(session: anywt.Session, size: int, seed: int) -> None:
    data = pattern(size, seed)
    stream = await session.create_bidirectional_stream()
    await stream.write(b"U" + size.to_bytes(8, "big") + seed.to_bytes(8, "big"))
    await stream.write(data, end_stream=True)
    answer = await stream.read_all(max_size=40)
    assert answer == sha256(data) + size.to_bytes(8, "big"), f"upload {seed} corrupted"


async def _download(session: anywt.Session, size: int, seed: int) -> None:
    stream = await session.create_bidirectional_stream()
    await stream.write(b"D" + size.to_bytes(8, "big") + seed.to_bytes(8, "big"), end_stream=True)
    data = await stream.read_all(max_size=size + 1)
    assert len(data) == size and sha256(data) == sha256(pattern(size, seed)), (
        f"download {seed}: {len(data)} of {size} bytes, or corrupted"
    )


#: A qh3 2.1 failure seen in about one run in ten of the stream test, in two forms: its core's
#: ``poll_transmit`` raises "reserved stream is missing" while building a packet (our driver
#: then closes the connection with INTERNAL_ERROR, as for any stack failure), or its core
#: closes the connection with INTERNAL_ERROR (0x1) by itself.
QH3_RESERVED_STREAM = "reserved stream is missing"
QUIC_INTERNAL_ERROR = 0x1


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _lost_to_internal_error(exc: BaseException) -> bool:
    """Every error in ``exc`` is the QUIC connection closed with INTERNAL_ERROR."""
    leaves = _leaves(exc)
    return bool(leaves) and all(
        isinstance(leaf, anywt.WebTransportError) and leaf.error_code == QUIC_INTERNAL_ERROR
        for leaf in leaves
    )


def _is_qh3_internal_failure(exc: BaseException, caplog: pytest.LogCaptureFixture) -> bool:
    """The session was lost to qh3's INTERNAL_ERROR and to nothing of ours.

    Every error the test saw is the QUIC connection closed with INTERNAL_ERROR, and every
    error anywt logged in this process is either qh3's "reserved stream is missing" or a
    handler that lost its session to that same close (or to the server's shutdown after it).
    """
    if not _lost_to_internal_error(exc):
        return False
    for record in caplog.records:
        if record.levelno >= logging.ERROR and record.name.startswith("anywt"):
            raised = record.exc_info[1] if record.exc_info else None
            if raised is None:
                return False
            if QH3_RESERVED_STREAM in str(raised):
                continue
            # A handler ends with the lost connection, or with the server's own shutdown
            # as the test gives up (a clean close by us).
            if not all(
                isinstance(leaf, anywt.SessionClosedOK)
                or (
                    isinstance(leaf, anywt.WebTransportError)
                    and leaf.error_code == QUIC_INTERNAL_ERROR
                )
                for leaf in _leaves(raised)
            ):
                return False
    return True


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_streams_arrive_byte_exact_through_a_lossy_path(
    quic_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        await _streams_through_a_lossy_path(quic_backend)
    except BaseException as exc:
        # Only that one stack failure is excused, and it is reported as such (xfail), never
        # hidden: anything else that goes wrong fails the test.
        if quic_backend == "qh3" and _is_qh3_internal_failure(exc, caplog):
            pytest.xfail("qh3 2.1 lost the connection to its own INTERNAL_ERROR under loss")
        raise


async def _streams_through_a_lossy_path(quic_backend: str) -> None:
    total = TOTAL[quic_backend]
    per_stream = total // STREAMS
    with anyio.fail_after(LIMIT):
        async with (
            serving(transfer_service, backend=quic_backend, idle_timeout=20.0) as served,
            anyio.create_task_group() as tasks,
        ):
            proxy = LossyProxy(
                ("127.0.0.1", served.port),
                loss=LOSS,
                duplicate=0.01,
                reorder=0.02,
                delay=0.001,
                jitter=0.002,
                seed=7,
            )
            await tasks.start(proxy.run)
            start = time.monotonic()
            async with connect(
                ("127.0.0.1", proxy.port, served.server.certificate_sha256),
                "/",
                backend=quic_backend,
                idle_timeout=20.0,
                connect_timeout=20.0,
            ) as session:
                limiter = anyio.CapacityLimiter(8)

                async def one(index: int) -> None:
                    async with limiter:
                        if index % 2:
                            await _download(session, per_stream, index)
                        else:
                            await _upload(session, per_stream, index)

                async with anyio.create_task_group() as streams:
                    for index in range(STREAMS):
                        streams.start_soon(one, index)
                seconds = time.monotonic() - start
            tasks.cancel_scope.cancel()
    assert not served.handler_errors, served.handler_errors
    figures = proxy.figures()
    assert figures["up"]["dropped"] > 0 and figures["down"]["dropped"] > 0
    record_figure(
        f"loss-{quic_backend}",
        {
            "bytes": per_stream * STREAMS,
            "streams": STREAMS,
            "loss": LOSS,
            "seconds": round(seconds, 1),
            "mb_per_s": round(per_stream * STREAMS / seconds / 1e6, 2),
            "proxy": figures,
        },
    )


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_datagram_loss_is_counted_and_harmless(quic_backend: str) -> None:
    """Datagrams through 5% loss each way: some are lost, the losses are counted, the session
    carries on (a stream still round-trips afterwards)."""
    count = 2000 if LONG else 300
    with anyio.fail_after(LIMIT):
        async with (
            serving(
                {"/": transfer_service, "/echo": _echo_datagrams}, backend=quic_backend
            ) as served,
            anyio.create_task_group() as tasks,
        ):
            proxy = LossyProxy(("127.0.0.1", served.port), loss=LOSS, reorder=0.02, seed=11)
            await tasks.start(proxy.run)
            target = ("127.0.0.1", proxy.port, served.server.certificate_sha256)
            async with connect(
                target, "/echo", backend=quic_backend, connect_timeout=20.0
            ) as session:
                received: set[bytes] = set()

                async def receive() -> None:
                    async for datagram in session.datagrams:
                        received.add(datagram)

                async with anyio.create_task_group() as inner:
                    inner.start_soon(receive)
                    for index in range(count):
                        session.send_datagram_nowait(b"%06d" % index + b"." * 100)
                        if index % 20 == 19:
                            await anyio.sleep(0.005)
                    await anyio.sleep(1.0)
                    inner.cancel_scope.cancel()
                stats = session.statistics()
                # The session still works after the loss.
                stream = await session.create_bidirectional_stream()
                await stream.write(b"hello", end_stream=True)
                assert await stream.read_all() == b"hello"
            tasks.cancel_scope.cancel()
    lost = count - len(received)
    assert 0 < len(received) < count, (len(received), count)
    assert received <= {b"%06d" % i + b"." * 100 for i in range(count)}
    assert stats.datagrams_sent == count
    assert not served.handler_errors
    record_figure(
        f"datagram-loss-{quic_backend}",
        {"sent": count, "echoed": len(received), "lost": lost, "proxy": proxy.figures()},
    )


async def _echo_datagrams(session: anywt.Session) -> None:
    """Echo datagrams; echo streams too (the after-loss check)."""
    from anywt.echo import echo_handler

    await echo_handler(session)
