"""aioquic's own HTTP/3 WebTransport (``H3Connection(enable_webtransport=True)``): a reference.

What a user of aioquic writes to serve and open WebTransport sessions:
extended CONNECT answered 200, streams and datagrams through the H3 layer,
stream bytes written with the QUIC connection's ``send_stream_data``.
QUIC settings and socket buffers as in ``stack_quic`` (anywt's, for aioquic).

aioquic's client does not mark the bidirectional WebTransport streams it
opens as WebTransport streams, so the server's answer on them would be
parsed as HTTP/3 frames; the client therefore reads its own streams'
QUIC events directly and gives the H3 layer only the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from typing import Any

from aioquic import __version__ as aioquic_version
from aioquic.asyncio import connect
from aioquic.asyncio import serve as aioquic_serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DatagramReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, StreamDataReceived
from common import CMD_BULK, BulkSink, Counters, emit, start_control
from stack_quic import MAX_DATA, MAX_STREAM_DATA, SEND_BUFFER, size_socket_buffers


def _configuration(*, is_client: bool) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=["h3"],
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        max_datagram_frame_size=65536,
        idle_timeout=120.0,
    )


def _server_protocol(counters: Counters) -> type:
    class ServerProtocol(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._h3: H3Connection | None = None
            self._sessions: set[int] = set()
            self._sinks: dict[int, BulkSink | None] = {}

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, ProtocolNegotiated):
                self._h3 = H3Connection(self._quic, enable_webtransport=True)
            elif isinstance(event, ConnectionTerminated):
                for _ in self._sessions:
                    counters.session_closed()
                self._sessions.clear()
            if self._h3 is None:
                return
            for h3_event in self._h3.handle_event(event):
                self._h3_event(h3_event)

        def _h3_event(self, event: Any) -> None:
            if isinstance(event, WebTransportStreamDataReceived):
                self._stream_data(event.stream_id, event.data, event.stream_ended)
            elif isinstance(event, DatagramReceived):
                counters.datagram(len(event.data))
            elif isinstance(event, HeadersReceived):
                headers = dict(event.headers)
                assert self._h3 is not None
                if headers.get(b":method") == b"CONNECT" and headers.get(b":protocol") in (
                    b"webtransport",
                    b"webtransport-h3",
                ):
                    self._h3.send_headers(
                        event.stream_id,
                        [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")],
                    )
                    self._sessions.add(event.stream_id)
                    counters.session_opened()
                else:
                    self._h3.send_headers(event.stream_id, [(b":status", b"404")], end_stream=True)

        def _stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
            quic = self._quic
            if stream_id not in self._sinks:
                if not data and not end_stream:
                    return
                counters.streams += 1
                if data[:1] == CMD_BULK:
                    self._sinks[stream_id] = BulkSink(counters)
                    data = data[1:]
                else:
                    self._sinks[stream_id] = None
            sink = self._sinks[stream_id]
            if sink is None:
                quic.send_stream_data(stream_id, data, end_stream)
            else:
                sink.feed(data)
                if end_stream:
                    quic.send_stream_data(stream_id, sink.finish(), True)
            if end_stream:
                del self._sinks[stream_id]

    return ServerProtocol


async def serve(args: argparse.Namespace) -> None:
    counters = Counters()
    config = _configuration(is_client=False)
    config.load_cert_chain(args.certfile, args.keyfile)
    server = await aioquic_serve(
        args.host, args.port, configuration=config, create_protocol=_server_protocol(counters)
    )
    size_socket_buffers(server._transport)
    port = server._transport.get_extra_info("sockname")[1]
    emit({"port": port, "version": aioquic_version})
    start_control(counters)
    await asyncio.Event().wait()


class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.replies: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}
        self.progress = asyncio.Event()

    def datagram_received(self, data: Any, addr: Any) -> None:
        super().datagram_received(data, addr)
        self.progress.set()

    def quic_event_received(self, event: Any) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id in self.replies:
            buffer, future = self.replies[event.stream_id]
            buffer.extend(event.data)
            if event.end_stream and not future.done():
                future.set_result(bytes(buffer))
            return
        for h3_event in self.h3.handle_event(event):
            if (
                isinstance(h3_event, HeadersReceived)
                and h3_event.stream_id == self.session_id
                and not self.ready.done()
            ):
                status = dict(h3_event.headers).get(b":status")
                if status == b"200":
                    self.ready.set_result(h3_event.stream_id)
                else:
                    self.ready.set_exception(ConnectionError(f"CONNECT answered {status!r}"))
        if isinstance(event, ConnectionTerminated) and not self.ready.done():
            self.ready.set_exception(ConnectionError("connection closed"))

    def open_session(self, authority: str, path: str) -> None:
        stream_id = self._quic.get_next_available_stream_id()
        self.session_id = stream_id
        self.h3.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b":protocol", b"webtransport"),
                (b"sec-webtransport-http3-draft02", b"1"),
            ],
        )
        self.transmit()

    def open_stream(self) -> tuple[int, asyncio.Future[bytes]]:
        assert self.session_id is not None
        stream_id = self.h3.create_webtransport_stream(self.session_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.replies[stream_id] = (bytearray(), future)
        return stream_id, future


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host = args.host
        self.port = args.port
        self.path = args.path

    async def open(self) -> Any:
        config = _configuration(is_client=True)
        config.verify_mode = ssl.CERT_NONE
        manager = connect(
            self.host, self.port, configuration=config, create_protocol=ClientProtocol
        )
        protocol = await manager.__aenter__()
        try:
            size_socket_buffers(protocol._transport)
            protocol.open_session(f"{self.host}:{self.port}", self.path)
            await protocol.ready
        except BaseException:
            await manager.__aexit__(None, None, None)
            raise
        return (manager, protocol)

    async def close(self, conn: Any) -> None:
        await conn[0].__aexit__(None, None, None)

    async def bulk(self, conn: Any, chunks: list[tuple[bytes, bool]]) -> bytes:
        protocol: ClientProtocol = conn[1]
        quic = protocol._quic
        stream_id, reply = protocol.open_stream()
        progress = protocol.progress
        for chunk, last in chunks:
            while True:
                stream = quic._streams.get(stream_id)
                sender = stream.sender if stream is not None else None
                if sender is None or sender._buffer_stop - sender.highest_offset <= SEND_BUFFER:
                    break
                progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), 0.05)
            quic.send_stream_data(stream_id, chunk, last)
            protocol.transmit()
        return await reply

    async def echo(self, conn: Any, data: bytes) -> bytes:
        protocol: ClientProtocol = conn[1]
        stream_id, reply = protocol.open_stream()
        protocol._quic.send_stream_data(stream_id, data, True)
        protocol.transmit()
        return await reply

    async def blast(self, conn: Any, payload: bytes, count: int) -> int:
        protocol: ClientProtocol = conn[1]
        send = protocol.h3.send_datagram
        session_id = protocol.session_id
        assert session_id is not None
        for _ in range(count):
            send(session_id, payload)
        protocol.transmit()
        await asyncio.sleep(0)
        return count
