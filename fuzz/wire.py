"""A minimal peer for fuzzing the engine: a recording transport and hand-made HTTP/3 bytes.

Self-contained on purpose (only pylsqpack and anywt are imported), so the
fuzz harnesses do not depend on the test suite.  Varints, frames and
capsules are encoded here from the RFCs, not with anywt's own codecs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import pylsqpack

__all__ = [
    "ALLOWED_CONNECTION_CODES",
    "ALLOWED_STREAM_CODES",
    "APP_ERROR_FIRST",
    "APP_ERROR_LAST",
    "FuzzTransport",
    "Misuse",
    "H3_INTERNAL_ERROR",
    "Peer",
    "capsule",
    "enc",
    "frame",
]

# Codepoints (reference/protocol.md section 2).
FRAME_DATA = 0x00
FRAME_HEADERS = 0x01
FRAME_SETTINGS = 0x04
FRAME_GOAWAY = 0x07
STREAM_CONTROL = 0x00
STREAM_QPACK_ENCODER = 0x02
STREAM_QPACK_DECODER = 0x03
STREAM_WT_UNI = 0x54
SIGNAL_WT_BIDI = 0x41

H3_DATAGRAM_ERROR = 0x33
H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
WT_FLOW_CONTROL_ERROR = 0x045D4487
WT_SESSION_GONE = 0x170D7B68
WT_REQUIREMENTS_NOT_MET = 0x212C0D48
WT_BUFFERED_STREAM_REJECTED = 0x3994BD84
APP_ERROR_FIRST = 0x52E4A40FA8DB
APP_ERROR_LAST = 0x52E5AC983162

#: What a connection may be closed with after peer input: H3 and QPACK codes,
#: never H3_INTERNAL_ERROR (that is the engine's "I have a bug" path).
ALLOWED_CONNECTION_CODES = frozenset(
    {H3_DATAGRAM_ERROR, *range(0x100, 0x111), 0x200, 0x201, 0x202, WT_REQUIREMENTS_NOT_MET}
) - {H3_INTERNAL_ERROR}
#: What RESET_STREAM / STOP_SENDING may carry (application codes are checked by range).
ALLOWED_STREAM_CODES = ALLOWED_CONNECTION_CODES | {
    WT_SESSION_GONE,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
}

SETTINGS_D02 = {0x33: 1, 0x08: 1, 0x2B603742: 1}
SETTINGS_D07 = {0x33: 1, 0x08: 1, 0xC671706A: 16}
SETTINGS_D14 = {0x33: 1, 0x08: 1, 0x14E9CD29: 4}
SETTINGS_D16 = {0x33: 1, 0x08: 1, 0x2C7CF000: 1}
FLOW = {0x2B61: 1 << 16, 0x2B64: 4, 0x2B65: 4}
PEER_SETTINGS: tuple[Mapping[int, int], ...] = (
    {**SETTINGS_D16, **FLOW},
    SETTINGS_D16,
    {**SETTINGS_D14, **FLOW},
    SETTINGS_D02,
    SETTINGS_D07,
)


def enc(value: int) -> bytes:
    """The minimal varint encoding of ``value``."""
    for length, prefix in ((1, 0x00), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if value < 1 << (8 * length - 2):
            return (value | prefix << (8 * length - 8)).to_bytes(length, "big")
    raise ValueError(f"{value} does not fit a varint")


def dec(buf: bytes, pos: int = 0) -> tuple[int, int] | None:
    """Decode a varint; None when the buffer ends inside it."""
    if pos >= len(buf):
        return None
    length = 1 << (buf[pos] >> 6)
    if pos + length > len(buf):
        return None
    value = int.from_bytes(buf[pos : pos + length], "big") & ((1 << (8 * length - 2)) - 1)
    return value, pos + length


def frame(frame_type: int, payload: bytes) -> bytes:
    return enc(frame_type) + enc(len(payload)) + payload


def capsule(capsule_type: int, value: bytes = b"") -> bytes:
    return enc(capsule_type) + enc(len(value)) + value


class Misuse(Exception):
    """The engine asked the transport for something a QUIC stack refuses."""


def _is_uni(stream_id: int) -> bool:
    return bool(stream_id & 2)


class FuzzTransport:
    """The engine's transport, recorded, refusing what a QUIC stack refuses.

    Writing after FIN or reset, or on the peer's unidirectional stream,
    raises (as aioquic does): the engine must never try.  A reset of the
    peer's unidirectional stream or STOP_SENDING on our own one is noted in
    ``misuse``.  ``unsent`` plays the stack's unsent backlog: the next reset
    reports that many bytes dropped (never more than the stream was given).
    """

    def __init__(self, is_client: bool) -> None:
        self.is_client = is_client
        self.unsent = 0
        self.written: dict[int, int] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fin: set[int] = set()
        self.reset: set[int] = set()
        self.opened: set[int] = set()
        self.closed: tuple[int, str] | None = None
        self.after_close: list[tuple[Any, ...]] = []
        self.misuse: list[str] = []
        base = 0 if is_client else 1
        self._next = {False: base, True: base + 2}

    def _local(self, stream_id: int) -> bool:
        return (stream_id & 1 == 0) == self.is_client

    def _note(self, call: tuple[Any, ...]) -> None:
        if self.closed is not None:
            self.after_close.append(call)
        self.calls.append(call)

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._note(("data", stream_id, bytes(data), bool(end_stream)))
        if _is_uni(stream_id) and not self._local(stream_id):
            self.misuse.append(f"write on the peer's unidirectional stream {stream_id}")
            raise Misuse("cannot send on the peer's unidirectional stream")
        if stream_id in self.fin or stream_id in self.reset:
            self.misuse.append(f"write on stream {stream_id} after FIN or reset")
            raise Misuse(f"write on stream {stream_id} after FIN or reset")
        if self._local(stream_id) and stream_id not in self.opened:
            kind = _is_uni(stream_id)
            if stream_id != self._next[kind]:
                self.misuse.append(f"stream {stream_id} opened out of order")
                raise Misuse(f"stream {stream_id} opened out of order")
            self._next[kind] = stream_id + 4
        self.opened.add(stream_id)
        self.written[stream_id] = self.written.get(stream_id, 0) + len(data)
        if end_stream:
            self.fin.add(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> int:
        self._note(("reset", stream_id, error_code))
        if _is_uni(stream_id) and not self._local(stream_id):
            self.misuse.append(f"reset of the peer's unidirectional stream {stream_id}")
        self.reset.add(stream_id)
        dropped = min(self.unsent, self.written.get(stream_id, 0))
        self.unsent = 0
        return dropped

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self._note(("stop", stream_id, error_code))
        if _is_uni(stream_id) and self._local(stream_id):
            self.misuse.append(f"STOP_SENDING on our own unidirectional stream {stream_id}")

    def send_datagram(self, data: bytes) -> None:
        self._note(("datagram", bytes(data)))

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        return self._next[bool(is_unidirectional)]

    def close(self, error_code: int, reason: str) -> None:
        self._note(("close", error_code, reason))
        if self.closed is None:
            self.closed = (error_code, reason)

    def problems(self, echoed: set[tuple[int, int]] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Everything the engine did wrong on this transport (empty when fine).

        ``echoed`` holds (stream, code) pairs of the peer's STOP_SENDING: a
        RESET_STREAM answering one copies its code (RFC 9000 section 3.5).
        """
        out = list(self.misuse)
        if self.closed is not None and self.closed[0] not in ALLOWED_CONNECTION_CODES | {
            H3_NO_ERROR
        }:
            out.append(f"connection closed with {self.closed[0]:#x} ({self.closed[1]})")
        if self.after_close:
            out.append(f"calls after close: {self.after_close[:3]}")
        for call in self.calls:
            if call[0] in ("reset", "stop"):
                code = call[2]
                if (
                    code not in ALLOWED_STREAM_CODES
                    and not APP_ERROR_FIRST <= code <= APP_ERROR_LAST
                    and (call[1], code) not in echoed
                ):
                    out.append(f"{call[0]} of stream {call[1]} with code {code:#x}")
        return out


class Peer:
    """One engine on a ``FuzzTransport`` and the peer that feeds it."""

    def __init__(self, engine_module: ModuleType, *, is_client: bool, config: Any) -> None:
        self.transport = FuzzTransport(is_client)
        self.engine = engine_module.WebTransportEngine(
            self.transport, is_client=is_client, config=config
        )
        self.is_client = is_client
        base = 1 if is_client else 0
        self._peer_next = {False: base, True: base + 2}
        self.encoder = pylsqpack.Encoder()
        self.events: list[Any] = []
        self.now = 1.0
        self.control = -1
        self.sessions: list[int] = []
        self.peer_streams: list[int] = []
        #: (stream, code) of every STOP_SENDING the peer sent.
        self.stops: set[tuple[int, int]] = set()

    def start(self, settings: Mapping[int, int] | None) -> Peer:
        engine = self.engine
        engine.initialize(self.now)
        engine.handshake_completed("h3", 1200, self.now)
        if settings is not None:
            self.control = self.new_stream(uni=True)
            self.feed(
                self.control,
                enc(STREAM_CONTROL)
                + frame(FRAME_SETTINGS, b"".join(enc(k) + enc(v) for k, v in settings.items())),
            )
            self.feed(self.new_stream(uni=True), enc(STREAM_QPACK_ENCODER))
            self.feed(self.new_stream(uni=True), enc(STREAM_QPACK_DECODER))
        return self

    def new_stream(self, uni: bool) -> int:
        stream_id = self._peer_next[uni]
        self._peer_next[uni] = stream_id + 4
        return stream_id

    def collect(self) -> list[Any]:
        out = []
        event = self.engine.next_event()
        while event is not None:
            out.append(event)
            event = self.engine.next_event()
        self.events.extend(out)
        return out

    def feed(self, stream_id: int, data: bytes, fin: bool = False) -> list[Any]:
        self.engine.receive_stream_data(stream_id, data, fin, self.now)
        return self.collect()

    def stop(self, stream_id: int, code: int) -> list[Any]:
        self.stops.add((stream_id, code))
        self.engine.receive_stop_sending(stream_id, code, self.now)
        return self.collect()

    def headers(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        _, block = self.encoder.encode(stream_id, list(headers))
        return frame(FRAME_HEADERS, block)

    def request(
        self, path: bytes = b"/wt", extra: Iterable[tuple[bytes, bytes]] = (), body: bytes = b""
    ) -> int:
        """The peer (a client) asks for a session."""
        stream_id = self.new_stream(uni=False)
        headers = [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", path),
            (b":protocol", b"webtransport-h3"),
            *extra,
        ]
        self.feed(stream_id, self.headers(stream_id, headers) + body)
        self.sessions.append(stream_id)
        return stream_id

    def respond(self, stream_id: int, status: int = 200) -> list[Any]:
        """The peer (a server) answers our CONNECT."""
        return self.feed(stream_id, self.headers(stream_id, [(b":status", str(status).encode())]))

    def session(self, established: bool) -> int:
        """A session with this peer, established or not."""
        if self.is_client:
            session_id = int(self.engine.connect(authority="example.com", path="/wt"))
            self.sessions.append(session_id)
            if established:
                self.respond(session_id)
        else:
            session_id = self.request()
            if established:
                self.engine.accept(session_id)
                self.collect()
        return session_id
