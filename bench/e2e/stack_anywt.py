"""anywt on any backend and any event loop: the bench server and client adapter.

Written the way the README tells users to: ``anywt.Server`` with a handler,
``anywt.connect`` with the server's certificate hash, streams read with
``async for`` and written with ``write``, datagrams through
``session.datagrams``.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
from common import CMD_BULK, CMD_ECHO, BulkSink, Counters, emit, start_control

import anywt

#: Stream and datagram errors that end one stream's work, not the server.
_ENDED = (anywt.WebTransportError, anyio.ClosedResourceError, anyio.BrokenResourceError)


async def _serve_stream(stream: anywt.BidirectionalStream, counters: Counters) -> None:
    counters.streams += 1
    try:
        first = await stream.receive(1)
        if first == CMD_BULK:
            sink = BulkSink(counters)
            async for chunk in stream:
                sink.feed(chunk)
            await stream.write(sink.finish(), end_stream=True)
        elif first == CMD_ECHO:
            await stream.write(first)
            async for chunk in stream:
                await stream.write(chunk)
            await stream.send_eof()
        else:
            counters.stream_errors += 1
            await stream.reset(1)
    except anyio.EndOfStream:
        await stream.send_eof()
    except _ENDED:
        counters.stream_errors += 1


async def _count_datagrams(session: anywt.Session, counters: Counters) -> None:
    async for datagram in session.datagrams:
        counters.datagram(len(datagram))


def _handler(counters: Counters) -> Any:
    async def handle(session: anywt.Session) -> None:
        counters.session_opened()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_count_datagrams, session, counters)
                async for stream in session.incoming_streams():
                    if isinstance(stream, anywt.BidirectionalStream):
                        tasks.start_soon(_serve_stream, stream, counters)
                tasks.cancel_scope.cancel()
        except _ENDED:
            pass
        finally:
            counters.session_closed()

    return handle


async def serve(args: argparse.Namespace) -> None:
    counters = Counters()
    server = anywt.Server(
        _handler(counters),
        host=args.host,
        port=args.port,
        backend=args.backend,
        certfile=args.certfile,
        keyfile=args.keyfile,
        max_sessions=args.max_sessions,
        max_connections=args.max_sessions,
        idle_timeout=120.0,
    )
    async with server:
        emit({"port": server.port, "anywt": anywt.__version__, "compiled": _compiled()})
        start_control(counters)
        await server.serve_forever()


def _compiled() -> bool:
    from anywt import core

    return bool(core.COMPILED)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = f"https://{args.host}:{args.port}{args.path}"
        self.options: dict[str, Any] = {
            "backend": args.backend,
            "server_certificate_hashes": (bytes.fromhex(args.cert_sha256),),
            "connect_timeout": args.op_timeout,
            "idle_timeout": 120.0,
        }

    async def open(self) -> anywt.Session:
        return await anywt.connect(self.url, **self.options)

    async def close(self, conn: anywt.Session) -> None:
        await conn.close()

    async def bulk(self, conn: anywt.Session, chunks: list[tuple[bytes, bool]]) -> bytes:
        stream = await conn.create_bidirectional_stream()
        for chunk, last in chunks:
            await stream.write(chunk, end_stream=last)
        return await stream.read_all()

    async def echo(self, conn: anywt.Session, data: bytes) -> bytes:
        stream = await conn.create_bidirectional_stream()
        await stream.write(data, end_stream=True)
        return await stream.read_all()

    async def blast(self, conn: anywt.Session, payload: bytes, count: int) -> int:
        send = conn.send_datagram_nowait
        for _ in range(count):
            send(payload)
        await anyio.sleep(0)
        return count
