"""pywebtransport 0.21 (Rust state machine on a reactor thread): a reference WebTransport stack.

CPython >= 3.12 only (the bench venv).  Its documented server and client:
``WebTransportServer.listen``, ``incoming_connections``/``incoming_sessions``,
``session.accept()``; ``WebTransportClient.connect(url=...)``.  Defaults
except where the workload needs more: 200 streams per session (its default
is 10 WebTransport and 100 QUIC streams; the echo workload opens 100 at
once) and as many connections as the sessions workload holds (default 100).
Every ``client.connect`` opens its own QUIC connection, as in anywt.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from typing import Any

import pywebtransport as pwt
from common import CMD_BULK, CMD_ECHO, BulkSink, Counters, emit, free_udp_port, start_control

STREAMS = 200


def _limits(max_connections: int) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "initial_max_streams_bidi": STREAMS,
        "max_streams_bidi": STREAMS + 10,
        "max_idle_timeout": 120.0,
    }


async def _serve_stream(stream: Any, counters: Counters) -> None:
    counters.streams += 1
    try:
        sink: BulkSink | None = None
        first = True
        async for received in stream:
            chunk = received
            if first:
                first = False
                if chunk[:1] == CMD_BULK:
                    sink = BulkSink(counters)
                    chunk = chunk[1:]
                elif chunk[:1] != CMD_ECHO:
                    counters.stream_errors += 1
                    return
            if sink is not None:
                sink.feed(chunk)
            else:
                await stream.write(data=chunk)
        if sink is not None:
            await stream.write(data=sink.finish(), end_stream=True)
        else:
            await stream.write(data=b"", end_stream=True)
    except Exception:
        counters.stream_errors += 1


async def _count_datagrams(session: Any, counters: Counters) -> None:
    while not session.is_closed:
        try:
            data = await session.read_datagram()
        except Exception:
            return
        counters.datagram(len(data))


async def _serve_session(session: Any, counters: Counters) -> None:
    counters.session_opened()
    tasks: set[asyncio.Task[Any]] = set()
    datagrams = asyncio.ensure_future(_count_datagrams(session, counters))
    try:
        async for stream in session.incoming_bidirectional_streams():
            task = asyncio.ensure_future(_serve_stream(stream, counters))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except Exception:
        pass
    finally:
        datagrams.cancel()
        counters.session_closed()


async def _serve_connection(connection: Any, counters: Counters, tasks: set[Any]) -> None:
    async for session in connection.incoming_sessions():
        try:
            await session.accept()
        except Exception:
            continue
        task = asyncio.ensure_future(_serve_session(session, counters))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def serve(args: argparse.Namespace) -> None:
    counters = Counters()
    port = args.port or free_udp_port(args.host)
    config = pwt.ServerConfig(
        bind_host=args.host,
        bind_port=port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        **_limits(args.max_sessions),
    )
    server = pwt.WebTransportServer(config=config)
    await server.listen()
    emit({"port": port, "version": pwt.__version__})
    start_control(counters)
    tasks: set[Any] = set()
    async for connection in server.incoming_connections():
        task = asyncio.ensure_future(_serve_connection(connection, counters, tasks))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = f"https://{args.host}:{args.port}{args.path}"
        self.config = pwt.ClientConfig(
            verify_mode=ssl.CERT_NONE,
            connect_timeout=args.op_timeout,
            **_limits(max(100, args.count + 10)),
        )
        self.client: Any = None

    async def open(self) -> Any:
        if self.client is None:
            self.client = pwt.WebTransportClient(config=self.config)
        return await self.client.connect(url=self.url)

    async def close(self, conn: Any) -> None:
        await conn.close()
        await conn.connection.close()

    async def bulk(self, conn: Any, chunks: list[tuple[bytes, bool]]) -> bytes:
        stream = await conn.create_bidirectional_stream()
        for chunk, last in chunks:
            await stream.write(data=chunk, end_stream=last)
        return bytes(await stream.read_all())

    async def echo(self, conn: Any, data: bytes) -> bytes:
        stream = await conn.create_bidirectional_stream()
        await stream.write(data=data, end_stream=True)
        return bytes(await stream.read_all())

    async def blast(self, conn: Any, payload: bytes, count: int) -> int:
        sent = 0
        for _ in range(count):
            try:
                await conn.send_datagram(data=payload)
                sent += 1
            except Exception:
                pass
        return sent
