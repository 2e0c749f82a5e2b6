"""Raw QUIC on aioquic or qh3 through their own asyncio API: what anywt is measured against.

The same bench protocol as the WebTransport stacks, on plain QUIC streams
and DATAGRAM frames (ALPN ``h3``, no HTTP/3).  The QUIC settings are the
ones anywt gives the same stack (16 MiB connection window, 4 MiB per
stream, 64 KiB datagram frames, Reno on aioquic, 4 MiB socket buffers) so
that a ratio between the two is the cost of the WebTransport layer, not of
other windows.

A client writer keeps at most 1 MiB queued in the stack, as anywt's
``stream_send_buffer`` does: aioquic has no public backlog figure, so its
sender's offsets are read; qh3 has ``get_send_buffer_size``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import socket
import ssl
from typing import Any

from common import CMD_BULK, BulkSink, Counters, emit, start_control

SEND_BUFFER = 1024 * 1024
MAX_DATA = 16 * 1024 * 1024
MAX_STREAM_DATA = 4 * 1024 * 1024
#: anywt's driver asks for 4 MiB socket buffers; without them a loaded 2-core
#: machine drops loopback datagrams (RcvbufErrors) and the stack backs off.
SOCKET_BUFFER = 4 << 20


def size_socket_buffers(transport: Any) -> None:
    """Give an asyncio datagram transport's socket the buffers anywt's driver uses."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


def _library(name: str) -> dict[str, Any]:
    return {
        "asyncio": importlib.import_module(f"{name}.asyncio"),
        "protocol": importlib.import_module(f"{name}.asyncio.protocol"),
        "configuration": importlib.import_module(f"{name}.quic.configuration"),
        "events": importlib.import_module(f"{name}.quic.events"),
        "version": getattr(importlib.import_module(name), "__version__", "?"),
    }


def _configuration(lib: dict[str, Any], *, is_client: bool) -> Any:
    return lib["configuration"].QuicConfiguration(
        is_client=is_client,
        alpn_protocols=["h3"],
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        max_datagram_frame_size=65536,
        idle_timeout=120.0,
    )


def _server_protocol(lib: dict[str, Any], counters: Counters) -> type:
    events = lib["events"]
    stream_data_received = events.StreamDataReceived
    datagram_frame_received = events.DatagramFrameReceived
    handshake_completed = events.HandshakeCompleted
    connection_terminated = events.ConnectionTerminated

    class ServerProtocol(lib["protocol"].QuicConnectionProtocol):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sinks: dict[int, BulkSink | None] = {}
            self._counted = False

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, stream_data_received):
                self._stream_data(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, datagram_frame_received):
                counters.datagram(len(event.data))
            elif isinstance(event, handshake_completed):
                self._counted = True
                counters.session_opened()
            elif isinstance(event, connection_terminated) and self._counted:
                self._counted = False
                counters.session_closed()

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
            if sink is None:  # echo
                quic.send_stream_data(stream_id, data, end_stream)
            else:
                sink.feed(data)
                if end_stream:
                    quic.send_stream_data(stream_id, sink.finish(), True)
            if end_stream:
                del self._sinks[stream_id]

    return ServerProtocol


async def serve(args: argparse.Namespace) -> None:
    lib = _library(args.lib)
    counters = Counters()
    config = _configuration(lib, is_client=False)
    config.load_cert_chain(args.certfile, args.keyfile)
    server = await lib["asyncio"].serve(
        args.host, args.port, configuration=config, create_protocol=_server_protocol(lib, counters)
    )
    size_socket_buffers(server._transport)
    port = server._transport.get_extra_info("sockname")[1]
    emit({"port": port, "version": lib["version"]})
    start_control(counters)
    await asyncio.Event().wait()


def _client_protocol(lib: dict[str, Any]) -> type:
    stream_data_received = lib["events"].StreamDataReceived

    class ClientProtocol(lib["protocol"].QuicConnectionProtocol):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.replies: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}
            self.progress = asyncio.Event()

        def datagram_received(self, data: Any, addr: Any) -> None:
            super().datagram_received(data, addr)
            self.progress.set()

        def datagrams_received(self, data: Any, addr: Any) -> None:  # qh3's GRO path
            super().datagrams_received(data, addr)
            self.progress.set()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, stream_data_received):
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

    return ClientProtocol


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.lib = _library(args.lib)
        self.host = args.host
        self.port = args.port
        self.protocol_class = _client_protocol(self.lib)
        if args.lib == "qh3":
            self.backlog = lambda quic, stream_id: quic.get_send_buffer_size(stream_id)
        else:

            def backlog(quic: Any, stream_id: int) -> int:
                stream = quic._streams.get(stream_id)
                if stream is None:
                    return 0
                sender = stream.sender
                return int(sender._buffer_stop - sender.highest_offset)

            self.backlog = backlog

    async def open(self) -> Any:
        config = _configuration(self.lib, is_client=True)
        config.verify_mode = ssl.CERT_NONE
        manager = self.lib["asyncio"].connect(
            self.host, self.port, configuration=config, create_protocol=self.protocol_class
        )
        protocol = await manager.__aenter__()
        size_socket_buffers(protocol._transport)
        return (manager, protocol)

    async def close(self, conn: Any) -> None:
        manager, _ = conn
        await manager.__aexit__(None, None, None)

    async def bulk(self, conn: Any, chunks: list[tuple[bytes, bool]]) -> bytes:
        protocol = conn[1]
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        reply = protocol.expect(stream_id)
        backlog = self.backlog
        progress = protocol.progress
        for chunk, last in chunks:
            while backlog(quic, stream_id) > SEND_BUFFER:
                progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), 0.05)
            quic.send_stream_data(stream_id, chunk, last)
            protocol.transmit()
        return await reply

    async def echo(self, conn: Any, data: bytes) -> bytes:
        protocol = conn[1]
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        reply = protocol.expect(stream_id)
        quic.send_stream_data(stream_id, data, True)
        protocol.transmit()
        return await reply

    async def blast(self, conn: Any, payload: bytes, count: int) -> int:
        protocol = conn[1]
        send = protocol._quic.send_datagram_frame
        for _ in range(count):
            send(payload)
        protocol.transmit()
        await asyncio.sleep(0)
        return count
