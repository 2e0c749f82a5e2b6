"""Wire-level helpers for the engine tests: a recording transport and a hand-driven peer.

``RecordingTransport`` implements ``anywt.core.transport.Transport`` the way a
sans-IO QUIC connection does (stream ids handed out in order and taken when a
stream is first written, no writes after FIN or reset) and records every
call.  ``Wire`` puts one engine on such a transport and plays the peer by
hand: it encodes SETTINGS, QPACK header blocks, capsules, WebTransport stream
preambles and datagrams byte by byte, so a test controls exactly what the
engine reads and checks exactly what it wrote.

Nothing here uses anywt's own codecs: varints, frames and capsules are
encoded and decoded again from the RFCs, so a codec bug cannot hide itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pylsqpack
from hypothesis import HealthCheck, settings

#: Hypothesis settings of every property test of the engine: modest and deterministic.
ENGINE_SETTINGS = settings(
    max_examples=int(os.environ.get("ANYWT_ENGINE_EXAMPLES", "40")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------
# Codepoints (reference/protocol.md section 2)

FRAME_DATA = 0x00
FRAME_HEADERS = 0x01
FRAME_SETTINGS = 0x04
FRAME_GOAWAY = 0x07
FRAME_WT_STREAM = 0x41
STREAM_CONTROL = 0x00
STREAM_QPACK_ENCODER = 0x02
STREAM_QPACK_DECODER = 0x03
STREAM_WT = 0x54

CAPSULE_DATAGRAM = 0x00
CAPSULE_CLOSE = 0x2843
CAPSULE_DRAIN = 0x78AE
CAPSULE_MAX_DATA = 0x190B4D3D
CAPSULE_MAX_STREAM_DATA = 0x190B4D3E
CAPSULE_MAX_STREAMS_BIDI = 0x190B4D3F
CAPSULE_MAX_STREAMS_UNI = 0x190B4D40
CAPSULE_DATA_BLOCKED = 0x190B4D41
CAPSULE_STREAM_DATA_BLOCKED = 0x190B4D42
CAPSULE_STREAMS_BLOCKED_BIDI = 0x190B4D43
CAPSULE_STREAMS_BLOCKED_UNI = 0x190B4D44
#: What Chromium sends straight after its CONNECT: a GREASE capsule with an 8-byte type.
CHROME_GREASE_CAPSULE_TYPE = 0x29 * 0x1234567890 + 0x17

SETTING_QPACK_MAX_TABLE_CAPACITY = 0x01
SETTING_ENABLE_CONNECT_PROTOCOL = 0x08
SETTING_H3_DATAGRAM = 0x33
SETTING_ENABLE_WEBTRANSPORT = 0x2B603742
SETTING_WT_MAX_SESSIONS_DRAFT07 = 0xC671706A
SETTING_WT_MAX_SESSIONS = 0x14E9CD29
SETTING_WT_ENABLED = 0x2C7CF000
SETTING_WT_INITIAL_MAX_DATA = 0x2B61
SETTING_WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
SETTING_WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65

H3_DATAGRAM_ERROR = 0x33
H3_NO_ERROR = 0x100
H3_GENERAL_PROTOCOL_ERROR = 0x101
H3_INTERNAL_ERROR = 0x102
H3_STREAM_CREATION_ERROR = 0x103
H3_CLOSED_CRITICAL_STREAM = 0x104
H3_FRAME_UNEXPECTED = 0x105
H3_FRAME_ERROR = 0x106
H3_EXCESSIVE_LOAD = 0x107
H3_ID_ERROR = 0x108
H3_SETTINGS_ERROR = 0x109
H3_MISSING_SETTINGS = 0x10A
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_REQUEST_INCOMPLETE = 0x10D
H3_MESSAGE_ERROR = 0x10E
H3_CONNECT_ERROR = 0x10F
WT_FLOW_CONTROL_ERROR = 0x045D4487
WT_ALPN_ERROR = 0x0817B3DD
WT_SESSION_GONE = 0x170D7B68
WT_REQUIREMENTS_NOT_MET = 0x212C0D48
WT_BUFFERED_STREAM_REJECTED = 0x3994BD84
APP_ERROR_FIRST = 0x52E4A40FA8DB

#: Every code the engine may close a connection with after a protocol error.
CONNECTION_ERROR_CODES = frozenset(
    {H3_DATAGRAM_ERROR, *range(0x100, 0x111), 0x200, 0x201, 0x202, WT_REQUIREMENTS_NOT_MET}
) - {H3_INTERNAL_ERROR}

#: SETTINGS a peer sends, per dialect (flow control on where the dialect has it).
PEER_D02 = {
    SETTING_H3_DATAGRAM: 1,
    SETTING_ENABLE_CONNECT_PROTOCOL: 1,
    SETTING_ENABLE_WEBTRANSPORT: 1,
}
PEER_D07 = {
    SETTING_H3_DATAGRAM: 1,
    SETTING_ENABLE_CONNECT_PROTOCOL: 1,
    SETTING_WT_MAX_SESSIONS_DRAFT07: 16,
}
PEER_D14 = {SETTING_H3_DATAGRAM: 1, SETTING_ENABLE_CONNECT_PROTOCOL: 1, SETTING_WT_MAX_SESSIONS: 1}
PEER_D16 = {SETTING_H3_DATAGRAM: 1, SETTING_ENABLE_CONNECT_PROTOCOL: 1, SETTING_WT_ENABLED: 1}
FC_SETTINGS = {
    SETTING_WT_INITIAL_MAX_DATA: 1 << 20,
    SETTING_WT_INITIAL_MAX_STREAMS_BIDI: 10,
    SETTING_WT_INITIAL_MAX_STREAMS_UNI: 10,
}
PEER_D14_FC = {**PEER_D14, **FC_SETTINGS}
PEER_D16_FC = {**PEER_D16, **FC_SETTINGS}


# ---------------------------------------------------------------------------
# Varints, frames, capsules (RFC 9000 section 16, RFC 9114 section 7, RFC 9297 section 3)


def enc(value: int) -> bytes:
    """Minimal varint."""
    for length, prefix in ((1, 0x00), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if value < 1 << (8 * length - 2):
            return (value | prefix << (8 * length - 8)).to_bytes(length, "big")
    raise ValueError(f"{value} is too large for a varint")


def enc_n(value: int, length: int) -> bytes:
    """Varint on exactly ``length`` bytes (non-minimal encodings)."""
    prefix = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[length]
    assert value < 1 << (8 * length - 2)
    return (value | prefix << (8 * length - 8)).to_bytes(length, "big")


class Truncated(Exception):
    pass


def dec(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode a varint at ``pos``; return (value, new position)."""
    if pos >= len(buf):
        raise Truncated
    length = 1 << (buf[pos] >> 6)
    if pos + length > len(buf):
        raise Truncated
    value = int.from_bytes(buf[pos : pos + length], "big") & ((1 << (8 * length - 2)) - 1)
    return value, pos + length


def frame(frame_type: int, payload: bytes) -> bytes:
    return enc(frame_type) + enc(len(payload)) + payload


def data_frame(payload: bytes) -> bytes:
    return frame(FRAME_DATA, payload)


def settings_payload(settings: Mapping[int, int]) -> bytes:
    return b"".join(enc(key) + enc(value) for key, value in settings.items())


def capsule(capsule_type: int, value: bytes = b"") -> bytes:
    return enc(capsule_type) + enc(len(value)) + value


def varint_capsule(capsule_type: int, number: int) -> bytes:
    return capsule(capsule_type, enc(number))


def close_capsule(code: int, reason: bytes | str = b"") -> bytes:
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return capsule(CAPSULE_CLOSE, code.to_bytes(4, "big") + reason)


def drain_capsule() -> bytes:
    return capsule(CAPSULE_DRAIN)


def parse_frames(buf: bytes) -> list[tuple[int, bytes]]:
    """Every complete frame of a request or control stream body."""
    out = []
    pos = 0
    while pos < len(buf):
        frame_type, pos = dec(buf, pos)
        length, pos = dec(buf, pos)
        assert pos + length <= len(buf), "truncated frame"
        out.append((frame_type, bytes(buf[pos : pos + length])))
        pos += length
    return out


def parse_capsules(buf: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(buf):
        capsule_type, pos = dec(buf, pos)
        length, pos = dec(buf, pos)
        assert pos + length <= len(buf), "truncated capsule"
        out.append((capsule_type, bytes(buf[pos : pos + length])))
        pos += length
    return out


def parse_settings(payload: bytes) -> dict[int, int]:
    out = {}
    pos = 0
    while pos < len(payload):
        key, pos = dec(payload, pos)
        value, pos = dec(payload, pos)
        out[key] = value
    return out


def is_reserved(value: int) -> bool:
    return value >= 0x21 and (value - 0x21) % 0x1F == 0


def app_to_h3(code: int) -> int:
    return APP_ERROR_FIRST + code + code // 0x1E


# ---------------------------------------------------------------------------
# The transport


def _is_client_initiated(stream_id: int) -> bool:
    return stream_id & 1 == 0


def _is_uni(stream_id: int) -> bool:
    return bool(stream_id & 2)


class RecordingTransport:
    """The engine's ``Transport``, recorded, with the rules a QUIC stack enforces.

    Calls are kept in ``calls`` as tuples: ``("data", id, bytes, fin)``,
    ``("reset", id, code)``, ``("stop", id, code)``, ``("datagram", bytes)``,
    ``("close", code, reason)``.  Writing after FIN or reset, or on a
    peer's unidirectional stream, raises as aioquic does; a reset or
    STOP_SENDING a QUIC stack would refuse (the backend adapter swallows those)
    is noted in ``misuse``.
    """

    def __init__(self, is_client: bool) -> None:
        self.is_client = is_client
        self.calls: list[tuple[Any, ...]] = []
        self.sent: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.resets: dict[int, list[int]] = {}
        self.stops: dict[int, list[int]] = {}
        self.datagrams: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.misuse: list[str] = []
        #: Bytes of a stream the stack "has not sent yet": its reset reports them dropped.
        self.unsent: dict[int, int] = {}
        base = 0 if is_client else 1
        self._next = {False: base, True: base + 2}
        self._after_close: list[tuple[Any, ...]] = []

    # Transport -----------------------------------------------------------

    def _local(self, stream_id: int) -> bool:
        return _is_client_initiated(stream_id) == self.is_client

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        assert isinstance(data, bytes | bytearray | memoryview), type(data)
        call = ("data", stream_id, bytes(data), bool(end_stream))
        self._note(call)
        if _is_uni(stream_id) and not self._local(stream_id):
            raise ValueError("Cannot send data on peer-initiated unidirectional stream")
        if stream_id in self.fin:
            raise RuntimeError(f"Cannot send data after FIN (stream {stream_id})")
        if stream_id in self.resets:
            raise RuntimeError(f"Cannot send data after the stream was reset (stream {stream_id})")
        if self._local(stream_id):
            kind = _is_uni(stream_id)
            if stream_id not in self.sent:
                if stream_id != self._next[kind]:
                    raise ValueError(
                        f"stream {stream_id} opened out of order (next is {self._next[kind]})"
                    )
                self._next[kind] = stream_id + 4
        self.sent.setdefault(stream_id, bytearray()).extend(data)
        if end_stream:
            self.fin.add(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> int:
        self._note(("reset", stream_id, error_code))
        if _is_uni(stream_id) and not self._local(stream_id):
            self.misuse.append(f"reset of the peer's unidirectional stream {stream_id}")
        self.resets.setdefault(stream_id, []).append(error_code)
        # What a QUIC stack had not sent yet is dropped by its reset.
        return self.unsent.pop(stream_id, 0)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self._note(("stop", stream_id, error_code))
        if _is_uni(stream_id) and self._local(stream_id):
            self.misuse.append(f"STOP_SENDING on our own unidirectional stream {stream_id}")
        self.stops.setdefault(stream_id, []).append(error_code)

    def send_datagram(self, data: bytes) -> None:
        self._note(("datagram", bytes(data)))
        self.datagrams.append(bytes(data))

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        return self._next[bool(is_unidirectional)]

    def close(self, error_code: int, reason: str) -> None:
        self._note(("close", error_code, reason))
        if self.closed is None:
            self.closed = (error_code, reason)

    def _note(self, call: tuple[Any, ...]) -> None:
        if self.closed is not None:
            self._after_close.append(call)
        self.calls.append(call)

    # Queries ---------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        return None if self.closed is None else self.closed[0]

    @property
    def calls_after_close(self) -> list[tuple[Any, ...]]:
        return list(self._after_close)

    def reset_codes(self, stream_id: int) -> list[int]:
        return list(self.resets.get(stream_id, []))

    def stop_codes(self, stream_id: int) -> list[int]:
        return list(self.stops.get(stream_id, []))

    def data(self, stream_id: int) -> bytes:
        return bytes(self.sent.get(stream_id, b""))

    def mark(self) -> int:
        """A position in ``calls`` to look at what came after."""
        return len(self.calls)

    def since(self, mark: int) -> list[tuple[Any, ...]]:
        return self.calls[mark:]


# ---------------------------------------------------------------------------
# The hand-driven peer


@dataclass
class Wire:
    """One engine on a ``RecordingTransport``, and its peer played by hand."""

    engine_module: ModuleType
    is_client: bool
    config: Any = None
    now: float = 1.0
    max_datagram: int = 1200
    transport: RecordingTransport = field(init=False)
    engine: Any = field(init=False)
    peer_control_id: int = -1
    peer_encoder_id: int = -1
    peer_decoder_id: int = -1

    def __post_init__(self) -> None:
        self.transport = RecordingTransport(self.is_client)
        self.engine = self.engine_module.WebTransportEngine(
            self.transport, is_client=self.is_client, config=self.config
        )
        peer_base = 1 if self.is_client else 0
        self._peer_next = {False: peer_base, True: peer_base + 2}
        self.encoder = pylsqpack.Encoder()
        self.decoder = pylsqpack.Decoder(4096, 16)
        self._events: list[Any] = []
        self._taken = 0

    @property
    def events(self) -> list[Any]:
        """Every event the engine emitted so far."""
        self._collect()
        return self._events

    # Setup -----------------------------------------------------------------

    def start(
        self, settings: Mapping[int, int] | None = PEER_D16_FC, *, handshake: bool = True
    ) -> Wire:
        """Initialize the engine, finish the handshake and send the peer's SETTINGS."""
        self.engine.initialize(self.now)
        if handshake:
            self.engine.handshake_completed("h3", self.max_datagram, self.now)
        if settings is not None:
            self.send_settings(settings)
            # The peer's QPACK streams, as every HTTP/3 stack opens them (static table only).
            self.peer_encoder_id = self.peer_stream(uni=True)
            self.feed(self.peer_encoder_id, enc(STREAM_QPACK_ENCODER))
            self.peer_decoder_id = self.peer_stream(uni=True)
            self.feed(self.peer_decoder_id, enc(STREAM_QPACK_DECODER))
        return self

    def send_settings(self, settings: Mapping[int, int], extra: bytes = b"") -> int:
        self.peer_control_id = self.peer_stream(uni=True)
        self.feed(
            self.peer_control_id,
            enc(STREAM_CONTROL) + frame(FRAME_SETTINGS, settings_payload(settings)) + extra,
        )
        return self.peer_control_id

    def peer_stream(self, uni: bool) -> int:
        stream_id = self._peer_next[uni]
        self._peer_next[uni] = stream_id + 4
        return stream_id

    # Input -----------------------------------------------------------------

    def feed(self, stream_id: int, data: bytes, fin: bool = False) -> list[Any]:
        mark = len(self.events)
        self.engine.receive_stream_data(stream_id, data, fin, self.now)
        self._collect()
        return self.events[mark:]

    def feed_bytewise(self, stream_id: int, data: bytes, fin: bool = False) -> list[Any]:
        mark = len(self.events)
        for index in range(len(data)):
            last = index == len(data) - 1
            self.engine.receive_stream_data(
                stream_id, data[index : index + 1], fin and last, self.now
            )
        if not data and fin:
            self.engine.receive_stream_data(stream_id, b"", True, self.now)
        self._collect()
        return self.events[mark:]

    def reset(self, stream_id: int, code: int, final_size: int = -1) -> list[Any]:
        mark = len(self.events)
        self.engine.receive_stream_reset(stream_id, code, final_size, self.now)
        self._collect()
        return self.events[mark:]

    def stop(self, stream_id: int, code: int) -> list[Any]:
        mark = len(self.events)
        self.engine.receive_stop_sending(stream_id, code, self.now)
        self._collect()
        return self.events[mark:]

    def datagram(self, raw: bytes) -> list[Any]:
        mark = len(self.events)
        self.engine.receive_datagram(raw, self.now)
        self._collect()
        return self.events[mark:]

    def wt_datagram(self, session_id: int, payload: bytes) -> list[Any]:
        return self.datagram(enc(session_id >> 2) + payload)

    def terminate(self, code: int = 0, reason: str = "") -> list[Any]:
        mark = len(self.events)
        self.engine.connection_terminated(code, reason, self.now)
        self._collect()
        return self.events[mark:]

    def headers_block(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        encoder_data, block = self.encoder.encode(stream_id, list(headers))
        assert not encoder_data, "the peer's encoder must stay static-only"
        return frame(FRAME_HEADERS, block)

    def request(
        self,
        path: str = "/wt",
        *,
        protocol: bytes | None = b"webtransport-h3",
        authority: str = "example.com",
        method: bytes = b"CONNECT",
        extra: Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        fin: bool = False,
        stream_id: int | None = None,
    ) -> int:
        """The peer (a client) sends a CONNECT request; returns its stream id.

        ``stream_id`` is one taken earlier with ``peer_stream(uni=False)``, for
        streams and datagrams sent before the request.
        """
        assert not self.is_client
        if stream_id is None:
            stream_id = self.peer_stream(uni=False)
        headers = [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
        ]
        headers.append((b":path", path.encode()))
        if protocol is not None:
            headers.append((b":protocol", protocol))
        headers.extend(extra)
        self.feed(stream_id, self.headers_block(stream_id, headers) + body, fin)
        return stream_id

    def respond(
        self,
        stream_id: int,
        status: int = 200,
        extra: Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
    ) -> list[Any]:
        """The peer (a server) answers our CONNECT."""
        assert self.is_client
        headers = [(b":status", str(status).encode()), *extra]
        return self.feed(stream_id, self.headers_block(stream_id, headers) + body)

    def send_capsules(self, stream_id: int, *capsules: bytes, fin: bool = False) -> list[Any]:
        payload = b"".join(capsules)
        return self.feed(stream_id, data_frame(payload) if payload else b"", fin)

    def open_wt(self, session_id: int, *, uni: bool, data: bytes = b"", fin: bool = False) -> int:
        """The peer opens a WebTransport stream (minimal preamble) and sends ``data``."""
        stream_id = self.peer_stream(uni=uni)
        preamble = enc(STREAM_WT if uni else FRAME_WT_STREAM) + enc(session_id)
        self.feed(stream_id, preamble + data, fin)
        return stream_id

    # Output ----------------------------------------------------------------

    def _collect(self) -> None:
        event = self.engine.next_event()
        while event is not None:
            self._events.append(event)
            event = self.engine.next_event()

    def take(self) -> list[Any]:
        """Events not yet taken."""
        self._collect()
        new = self._events[self._taken :]
        self._taken = len(self._events)
        return new

    def of_type(self, cls: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, cls)]

    def sent_frames(self, stream_id: int) -> list[tuple[int, bytes]]:
        """The HTTP/3 frames the engine wrote on a request stream."""
        return parse_frames(self.transport.data(stream_id))

    def sent_headers(self, stream_id: int) -> list[list[tuple[bytes, bytes]]]:
        """Every header section the engine wrote on a request stream, decoded."""
        self._feed_decoder()
        out = []
        for frame_type, payload in self.sent_frames(stream_id):
            if frame_type == FRAME_HEADERS:
                _, headers = self.decoder.feed_header(stream_id, payload)
                out.append(list(headers))
        return out

    def sent_status(self, stream_id: int) -> int:
        headers = self.sent_headers(stream_id)
        assert headers, f"no HEADERS on stream {stream_id}"
        return int(dict(headers[0])[b":status"])

    def _feed_decoder(self) -> None:
        stream_id = self.local_uni_of_type(STREAM_QPACK_ENCODER)
        if stream_id is None:
            return
        data = self.transport.data(stream_id)
        _, pos = dec(data)
        consumed = getattr(self, "_encoder_fed", pos)
        if len(data) > consumed:
            self.decoder.feed_encoder(data[consumed:])
        self._encoder_fed = len(data)

    def sent_capsules(self, stream_id: int) -> list[tuple[int, bytes]]:
        """The capsules the engine wrote on a CONNECT stream (DATA payloads joined)."""
        body = b"".join(p for t, p in self.sent_frames(stream_id) if t == FRAME_DATA)
        return parse_capsules(body)

    def local_uni_of_type(self, stream_type: int) -> int | None:
        for stream_id, data in self.transport.sent.items():
            if _is_uni(stream_id) and self.transport._local(stream_id) and data:
                try:
                    value, _ = dec(bytes(data))
                except Truncated:
                    continue
                if value == stream_type:
                    return stream_id
        return None

    def sent_settings(self) -> dict[int, int]:
        """The SETTINGS the engine sent on its control stream."""
        stream_id = self.local_uni_of_type(STREAM_CONTROL)
        assert stream_id is not None, "no control stream"
        data = self.transport.data(stream_id)
        _, pos = dec(data)
        frames = parse_frames(data[pos:])
        assert frames[0][0] == FRAME_SETTINGS
        return parse_settings(frames[0][1])

    def control_frames(self) -> list[tuple[int, bytes]]:
        stream_id = self.local_uni_of_type(STREAM_CONTROL)
        assert stream_id is not None
        data = self.transport.data(stream_id)
        _, pos = dec(data)
        return parse_frames(data[pos:])


def established_server(
    engine_module: ModuleType,
    settings: Mapping[int, int] | None = PEER_D16_FC,
    config: Any = None,
    **request: Any,
) -> tuple[Wire, int]:
    """A server engine with one accepted session of a hand-played client."""
    wire = Wire(engine_module, is_client=False, config=config).start(settings)
    session_id = wire.request(**request)
    wire.engine.accept(session_id)
    wire.take()
    return wire, session_id


def established_client(
    engine_module: ModuleType,
    settings: Mapping[int, int] | None = PEER_D16_FC,
    config: Any = None,
    status: int = 200,
) -> tuple[Wire, int]:
    """A client engine with one session answered by a hand-played server."""
    wire = Wire(engine_module, is_client=True, config=config).start(settings)
    session_id = wire.engine.connect(authority="example.com", path="/wt")
    wire.respond(session_id, status)
    wire.take()
    return wire, session_id
