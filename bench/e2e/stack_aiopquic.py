"""Raw QUIC on aiopquic (picoquic on a native thread) through its asyncio API: a reference.

CPython >= 3.12 only (the bench venv).  Streams are written with
``send_stream_data_drained`` (the library's own backpressure: it waits while
the per-stream ring is full), datagrams with ``send_datagram_frame``, which
refuses (returns 0) while its ring is full; the sender then waits for the
ring's drain event.  Windows as anywt's (16 MiB connection, 4 MiB stream);
congestion control is aiopquic's default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from typing import Any

from aiopquic.asyncio import connect
from aiopquic.asyncio import serve as aiopquic_serve
from aiopquic.asyncio.protocol import QuicConnectionProtocol
from aiopquic.quic.configuration import QuicConfiguration
from aiopquic.quic.events import ConnectionTerminated, DatagramFrameReceived, StreamDataReceived
from common import CMD_BULK, BulkSink, Counters, emit, free_udp_port, start_control

MAX_DATA = 16 * 1024 * 1024
MAX_STREAM_DATA = 4 * 1024 * 1024


def _version() -> str:
    from importlib.metadata import version

    return version("aiopquic")


def _configuration(*, is_client: bool, max_connections: int = 256) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=["h3"],
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        max_datagram_frame_size=65535,
        idle_timeout=120.0,
    )
    config.max_connections = max_connections
    return config


def _server_protocol(counters: Counters) -> type:
    class ServerProtocol(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sinks: dict[int, BulkSink | None] = {}
            self._open = True
            counters.session_opened()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, StreamDataReceived):
                self._stream_data(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, DatagramFrameReceived):
                counters.datagram(len(event.data))
            elif isinstance(event, ConnectionTerminated) and self._open:
                self._open = False
                counters.session_closed()

        def _stream_data(self, stream_id: int, data: Any, end_stream: bool) -> None:
            quic = self._quic
            if stream_id not in self._sinks:
                if not len(data) and not end_stream:
                    return
                counters.streams += 1
                if bytes(data[:1]) == CMD_BULK:
                    self._sinks[stream_id] = BulkSink(counters)
                    data = data[1:]
                else:
                    self._sinks[stream_id] = None
            sink = self._sinks[stream_id]
            if sink is None:
                try:
                    quic.send_stream_data(stream_id, bytes(data), end_stream)
                except BufferError:
                    counters.stream_errors += 1
            else:
                sink.feed(data)
                if end_stream:
                    quic.send_stream_data(stream_id, sink.finish(), True)
            if end_stream:
                del self._sinks[stream_id]

    return ServerProtocol


async def serve(args: argparse.Namespace) -> None:
    counters = Counters()
    config = _configuration(is_client=False, max_connections=args.max_sessions)
    config.certificate_file = args.certfile
    config.private_key_file = args.keyfile
    port = args.port or free_udp_port(args.host)
    await aiopquic_serve(
        args.host, port, configuration=config, create_protocol=_server_protocol(counters)
    )
    emit({"port": port, "version": _version()})
    start_control(counters)
    await asyncio.Event().wait()


class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replies: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}

    def quic_event_received(self, event: Any) -> None:
        if isinstance(event, StreamDataReceived):
            entry = self.replies.get(event.stream_id)
            if entry is None:
                return
            entry[0].extend(event.data)
            if event.end_stream and not entry[1].done():
                entry[1].set_result(bytes(entry[0]))

    def expect(self, stream_id: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.replies[stream_id] = (bytearray(), future)
        return future


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host = args.host
        self.port = args.port

    async def open(self) -> Any:
        config = _configuration(is_client=True)
        config.verify_mode = ssl.CERT_NONE
        manager = connect(
            self.host, self.port, configuration=config, create_protocol=ClientProtocol
        )
        protocol = await manager.__aenter__()
        return (manager, protocol)

    async def close(self, conn: Any) -> None:
        await conn[0].__aexit__(None, None, None)

    async def bulk(self, conn: Any, chunks: list[tuple[bytes, bool]]) -> bytes:
        protocol: ClientProtocol = conn[1]
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        reply = protocol.expect(stream_id)
        for chunk, last in chunks:
            await quic.send_stream_data_drained(stream_id, chunk, last)
        return await reply

    async def echo(self, conn: Any, data: bytes) -> bytes:
        protocol: ClientProtocol = conn[1]
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        reply = protocol.expect(stream_id)
        await quic.send_stream_data_drained(stream_id, data, True)
        return await reply

    async def blast(self, conn: Any, payload: bytes, count: int) -> int:
        quic = conn[1]._quic
        sent = 0
        for _ in range(count):
            if quic.send_datagram_frame(payload):
                sent += 1
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(quic.get_datagram_tx_drain_event().wait(), 0.05)
        await asyncio.sleep(0)
        return sent
