"""Engine benchmarks: anywt's sans-IO engine pair against aioquic's H3 layer, in memory.

No QUIC, no crypto, no sockets: each side's transport hands what it sends
to the other side's input, in order.  aioquic's side pays for building the
QUIC event its stack would emit (its H3 layer consumes those), ours for a
plain tuple: each gets the input shape its H3 layer takes.  Per round, 200 stream chunks of 1200
bytes (a QUIC packet's worth, the size stacks deliver) or 200 datagrams of
1100 bytes go from the client to the server, whose events are drained.  The
same traffic goes through two ``aioquic.h3.connection.H3Connection`` with
``enable_webtransport=True`` over fake QUIC connections.  The pure and the
compiled engine and aioquic sit in one group; ``bench/conftest.py`` prints
compiled/aioquic (below 0.5: the engine is more than 2x faster).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import (
    DatagramReceived as AqDatagramReceived,
)
from aioquic.h3.events import (
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import DatagramFrameReceived
from aioquic.quic.events import StreamDataReceived as QuicStreamData

CHUNK = b"x" * 1200
DATAGRAM = b"d" * 1100
ROUNDS = 200


# ----------------------------------------------------------------------
# anywt: two engines joined by queues


class _Pipe:
    """One side's Transport: queues what it sends for the other side."""

    def __init__(self, is_client: bool, outbox: deque[tuple[Any, ...]]) -> None:
        self._next = {False: 0 if is_client else 1, True: 2 if is_client else 3}
        self._outbox = outbox

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._outbox.append(("data", stream_id, data, end_stream))
        uni = bool(stream_id & 0x2)
        if stream_id == self._next[uni]:
            self._next[uni] = stream_id + 4

    def reset_stream(self, stream_id: int, error_code: int) -> int:
        self._outbox.append(("reset", stream_id, error_code))
        return 0

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self._outbox.append(("stop", stream_id, error_code))

    def send_datagram(self, data: bytes) -> None:
        self._outbox.append(("datagram", data))

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        return self._next[is_unidirectional]

    def close(self, error_code: int, reason: str) -> None:
        raise AssertionError(f"the benchmark connection closed: {error_code:#x} {reason}")


class EnginePair:
    def __init__(self, engine_module: Any) -> None:
        self.to_server: deque[tuple[Any, ...]] = deque()
        self.to_client: deque[tuple[Any, ...]] = deque()
        cls = engine_module.WebTransportEngine
        self.client = cls(_Pipe(True, self.to_server), is_client=True)
        self.server = cls(_Pipe(False, self.to_client), is_client=False)
        for engine in (self.client, self.server):
            engine.initialize(0.0)
            engine.handshake_completed("h3", 1200, 0.0)
        self.pump()
        self.session_id = self.client.connect(authority="127.0.0.1:4433", path="/bench")
        self.pump()
        self.server.accept(self.session_id)
        self.pump()
        self.stream_id = self.client.open_stream(self.session_id)
        self.pump()
        self.server.events()
        self.client.events()

    def pump(self) -> None:
        for inbox, engine in ((self.to_server, self.server), (self.to_client, self.client)):
            while inbox:
                item = inbox.popleft()
                kind = item[0]
                if kind == "data":
                    engine.receive_stream_data(item[1], item[2], item[3], 1.0)
                elif kind == "datagram":
                    engine.receive_datagram(item[1], 1.0)
                elif kind == "reset":
                    engine.receive_stream_reset(item[1], item[2], -1, 1.0)
                else:
                    engine.receive_stop_sending(item[1], item[2], 1.0)

    def stream_round(self) -> int:
        client, server = self.client, self.server
        send = client.send_stream_data
        receive = server.receive_stream_data
        drain = server.events
        consume = server.consume_data
        to_server = self.to_server
        stream_id = self.stream_id
        session_id = self.session_id
        received = 0
        for _ in range(ROUNDS):
            send(stream_id, CHUNK)
            while to_server:
                _kind, sid, data, fin = to_server.popleft()
                receive(sid, data, fin, 1.0)
            for event in drain():
                received += len(event.data)
            # The application read it: credit flows back (WT_MAX_DATA capsules).
            consume(session_id, len(CHUNK))
            if self.to_client:
                self.pump()
        client.events()
        return received

    def datagram_round(self) -> int:
        client, server = self.client, self.server
        send = client.send_datagram
        receive = server.receive_datagram
        drain = server.events
        to_server = self.to_server
        session_id = self.session_id
        received = 0
        for _ in range(ROUNDS):
            send(session_id, DATAGRAM)
            while to_server:
                receive(to_server.popleft()[1], 1.0)
            for event in drain():
                received += len(event.data)
        return received


# ----------------------------------------------------------------------
# aioquic: two H3Connection over fake QUIC connections


class _FakeQuic:
    """What aioquic's H3Connection calls on a QuicConnection, delivering to the peer's queue."""

    def __init__(self, is_client: bool, outbox: deque[Any]) -> None:
        self.configuration = QuicConfiguration(is_client=is_client)
        self._quic_logger = None
        self._remote_max_datagram_frame_size = 65536
        self._outbox = outbox
        self._next = {False: 0 if is_client else 1, True: 2 if is_client else 3}

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        # The QUIC event the peer's stack would emit for these bytes.
        self._outbox.append(QuicStreamData(data=data, end_stream=end_stream, stream_id=stream_id))
        uni = bool(stream_id & 0x2)
        if stream_id == self._next[uni]:
            self._next[uni] = stream_id + 4

    def send_datagram_frame(self, data: bytes) -> None:
        self._outbox.append(DatagramFrameReceived(data=data))

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        return self._next[is_unidirectional]

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        pass

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        pass

    def close(self, error_code: int = 0, frame_type: Any = None, reason_phrase: str = "") -> None:
        raise AssertionError(f"the benchmark connection closed: {error_code} {reason_phrase}")


class AioquicPair:
    def __init__(self) -> None:
        self.to_server: deque[Any] = deque()
        self.to_client: deque[Any] = deque()
        self.client_quic = _FakeQuic(True, self.to_server)
        self.server_quic = _FakeQuic(False, self.to_client)
        self.client = H3Connection(self.client_quic, enable_webtransport=True)
        self.server = H3Connection(self.server_quic, enable_webtransport=True)
        self.pump()
        self.session_id = self.client_quic.get_next_available_stream_id()
        self.client.send_headers(
            self.session_id,
            [
                (b":method", b"CONNECT"),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1:4433"),
                (b":path", b"/bench"),
                (b":protocol", b"webtransport"),
            ],
        )
        events = self.pump()
        assert any(isinstance(e, HeadersReceived) for e in events)
        self.server.send_headers(self.session_id, [(b":status", b"200")])
        self.pump()
        self.stream_id = self.client.create_webtransport_stream(self.session_id)
        self.pump()

    def pump(self) -> list[Any]:
        out: list[Any] = []
        for inbox, h3 in ((self.to_server, self.server), (self.to_client, self.client)):
            while inbox:
                out.extend(h3.handle_event(inbox.popleft()))
        return out

    def stream_round(self) -> int:
        send = self.client_quic.send_stream_data
        handle = self.server.handle_event
        inbox = self.to_server
        stream_id = self.stream_id
        received = 0
        for _ in range(ROUNDS):
            send(stream_id, CHUNK)
            while inbox:
                for event in handle(inbox.popleft()):
                    if isinstance(event, WebTransportStreamDataReceived):
                        received += len(event.data)
        return received

    def datagram_round(self) -> int:
        send = self.client.send_datagram
        handle = self.server.handle_event
        inbox = self.to_server
        session_id = self.session_id
        received = 0
        for _ in range(ROUNDS):
            send(session_id, DATAGRAM)
            while inbox:
                for event in handle(inbox.popleft()):
                    if isinstance(event, AqDatagramReceived):
                        received += len(event.data)
        return received


@pytest.fixture(params=["pure", "compiled", "aioquic"])
def stack(request: pytest.FixtureRequest, impl_modules: dict[str, Any]) -> tuple[str, Any]:
    name = request.param
    if name == "aioquic":
        return name, AioquicPair()
    return name, EnginePair(impl_modules[name])


def test_engine_stream_bytes(benchmark: Any, stack: tuple[str, Any]) -> None:
    name, pair = stack
    assert pair.stream_round() == ROUNDS * len(CHUNK)
    benchmark.group = "engine: 200 x 1200 B stream chunks"
    benchmark.extra_info["impl"] = name
    assert benchmark(pair.stream_round) == ROUNDS * len(CHUNK)


def test_engine_datagrams(benchmark: Any, stack: tuple[str, Any]) -> None:
    name, pair = stack
    assert pair.datagram_round() == ROUNDS * len(DATAGRAM)
    benchmark.group = "engine: 200 x 1100 B datagrams"
    benchmark.extra_info["impl"] = name
    assert benchmark(pair.datagram_round) == ROUNDS * len(DATAGRAM)
