"""The HTTP/3 side of a connection, as much of it as WebTransport needs.

Control stream and SETTINGS (with the WebTransport dialect and flow-control
negotiation they carry), QPACK through pylsqpack with its encoder and
decoder streams, request-stream framing and header decoding, GOAWAY, and
the classification of every incoming stream.  ``H3Connection`` leaves
sessions to the WebTransport engine built on it (``_engine_py``), through
the hook methods at the end of the class.

This file is the source of both the pure-Python module and, with
``_h3_c.pxd``, the compiled ``anywt.core._h3_c``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

import pylsqpack

from . import _constants
from . import _frames_py as _frames
from . import _records_py as _records
from . import _varint_py as _varint
from .config import EngineConfig
from .errors import (
    ClosedCriticalStream,
    EngineClosed,
    FrameUnexpected,
    H3ErrorCode,
    IdError,
    MessageError,
    MissingSettings,
    ProtocolError,
    QpackDecompressionFailed,
    QpackErrorCode,
    SettingsError,
    StreamCreationError,
    TruncatedVarint,
)
from .events import ConnectionTerminated, Dialect, Event, GoawayReceived, SettingsReceived
from .qpack_bound import section_size_bound
from .transport import Transport

__all__ = ["H3Connection", "is_client_bidi"]

logger = logging.getLogger("anywt.core")

# SETTINGS identifiers.
SETTING_QPACK_MAX_TABLE_CAPACITY = 0x01
SETTING_MAX_FIELD_SECTION_SIZE = 0x06
SETTING_QPACK_BLOCKED_STREAMS = 0x07
SETTING_ENABLE_CONNECT_PROTOCOL = 0x08
SETTING_H3_DATAGRAM = 0x33
SETTING_H3_DATAGRAM_DRAFT04 = 0xFFD277
SETTING_ENABLE_WEBTRANSPORT = 0x2B603742  # draft-02
SETTING_WT_MAX_SESSIONS_DRAFT07 = 0xC671706A  # draft-07..12
SETTING_WT_MAX_SESSIONS = 0x14E9CD29  # draft-13/14
SETTING_WT_ENABLED = 0x2C7CF000  # draft-15/16
SETTING_WT_INITIAL_MAX_DATA = 0x2B61
SETTING_WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
SETTING_WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65

_MAX_QSID = (1 << 60) - 1


def is_client_bidi(stream_id: int) -> bool:
    """True for client-initiated bidirectional stream ids (the only valid session ids)."""
    return stream_id & 0x03 == 0


class H3Connection:
    """The HTTP/3 state of one QUIC connection (client or server role)."""

    def __init__(
        self, transport: Transport, *, is_client: bool, config: EngineConfig | None = None
    ) -> None:
        self._transport = transport
        self._is_client = is_client
        self._config = config if config is not None else EngineConfig()
        # A list read from ``_event_pos``: appending is the hot operation.
        self._events: list[Event] = []
        self._event_pos = 0
        self._streams: dict[int, _records.StreamRecord] = {}
        self._now = 0.0
        self._initialized = False
        self._closed = False
        self._close_error_code = -1
        self._close_reason: str | None = None
        self._local_settings: dict[int, int] = {}
        self._peer_settings: dict[int, int] | None = None
        self._dialect: Dialect | None = None
        self._flow_control = False
        self._datagrams_enabled = False
        self._max_datagram_payload = -1
        self._encoder = pylsqpack.Encoder()
        self._decoder = pylsqpack.Decoder(
            self._config.qpack_max_table_capacity, self._config.qpack_blocked_streams
        )
        self._control_stream_id = -1
        self._encoder_stream_id = -1
        self._decoder_stream_id = -1
        self._peer_control_id = -1
        self._peer_encoder_id = -1
        self._peer_decoder_id = -1
        # Highest remote stream id seen per kind (bidi, uni) and the ids below
        # it that were implicitly opened but have not shown up yet.
        self._max_remote_bidi = -1
        self._max_remote_uni = -1
        self._expected_remote: set[int] = set()
        # Requests waiting for the peer's SETTINGS (client: sessions to send;
        # server: request streams to process).
        self._waiting_for_settings: list[int] = []
        self._goaway_sent = -1
        self._goaway_received = -1
        self._max_request_id = -1

    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by either side)."""
        return self._closed

    @property
    def dialect(self) -> Dialect | None:
        """The negotiated dialect; None until the peer's SETTINGS arrive (or without WT)."""
        return self._dialect

    @property
    def flow_control(self) -> bool:
        """Whether session flow control is on for this connection."""
        return self._flow_control

    @property
    def peer_settings(self) -> Mapping[int, int] | None:
        return None if self._peer_settings is None else dict(self._peer_settings)

    @property
    def local_settings(self) -> Mapping[int, int]:
        return dict(self._local_settings)

    @property
    def settings_received(self) -> bool:
        return self._peer_settings is not None

    @property
    def config(self) -> EngineConfig:
        return self._config

    # Events

    def next_event(self) -> Event | None:
        """The next queued event, or None."""
        events = self._events
        pos = self._event_pos
        if pos >= len(events):
            return None
        event = events[pos]
        pos += 1
        if pos == len(events):
            events.clear()
            pos = 0
        self._event_pos = pos
        return event

    def events(self) -> list[Event]:
        """All queued events, oldest first (the queue is emptied)."""
        events = self._events
        if self._event_pos:
            events = events[self._event_pos :]
        self._events = []
        self._event_pos = 0
        return events

    def has_events(self) -> bool:
        return self._event_pos < len(self._events)

    # Input from the QUIC connection

    def initialize(self, now: float = 0.0) -> None:
        """Open our control and QPACK streams and send SETTINGS; call once, first."""
        if self._initialized:
            return
        self._initialized = True
        self._now = now
        config = self._config
        settings = self._local_settings
        settings[SETTING_QPACK_MAX_TABLE_CAPACITY] = config.qpack_max_table_capacity
        settings[SETTING_QPACK_BLOCKED_STREAMS] = config.qpack_blocked_streams
        settings[SETTING_MAX_FIELD_SECTION_SIZE] = config.max_field_section_size
        settings[SETTING_H3_DATAGRAM] = 1
        if not self._is_client:
            settings[SETTING_ENABLE_CONNECT_PROTOCOL] = 1
        flow = config.flow_control and (
            Dialect.DRAFT14 in config.dialects or Dialect.DRAFT16 in config.dialects
        )
        max_sessions = config.max_sessions if flow else 1
        if Dialect.DRAFT02 in config.dialects:
            settings[SETTING_ENABLE_WEBTRANSPORT] = 1
        if Dialect.DRAFT07 in config.dialects:
            settings[SETTING_WT_MAX_SESSIONS_DRAFT07] = 1
        if Dialect.DRAFT14 in config.dialects:
            settings[SETTING_WT_MAX_SESSIONS] = max_sessions
        if Dialect.DRAFT16 in config.dialects:
            settings[SETTING_WT_ENABLED] = 1
        if flow:
            settings[SETTING_WT_INITIAL_MAX_DATA] = config.initial_max_data
            settings[SETTING_WT_INITIAL_MAX_STREAMS_UNI] = config.initial_max_streams_uni
            settings[SETTING_WT_INITIAL_MAX_STREAMS_BIDI] = config.initial_max_streams_bidi
        if config.grease:
            settings[0x1F * random.randrange(1, 1 << 20) + 0x21] = random.randrange(1 << 30)
        settings.update(config.extra_settings)

        transport = self._transport
        self._control_stream_id = self._open_local_uni(_frames.STREAM_CONTROL)
        transport.send_stream_data(
            self._control_stream_id,
            _frames.encode_frame(_frames.FRAME_SETTINGS, _frames.encode_settings(settings)),
        )
        self._encoder_stream_id = self._open_local_uni(_frames.STREAM_QPACK_ENCODER)
        self._decoder_stream_id = self._open_local_uni(_frames.STREAM_QPACK_DECODER)

    def _open_local_uni(self, stream_type: int) -> int:
        stream_id = self._transport.get_next_available_stream_id(True)
        self._transport.send_stream_data(stream_id, _varint.varint_bytes(stream_type))
        record = _records.StreamRecord(stream_id, _constants.KIND_LOCAL, True, True)
        self._streams[stream_id] = record
        return stream_id

    def handshake_completed(self, alpn: str | None, max_datagram_payload: int, now: float) -> None:
        """The QUIC handshake finished.

        ``max_datagram_payload`` is the largest DATAGRAM frame payload the
        backend can send in one packet (0 when the peer does not accept
        datagrams).
        """
        self._now = now
        if self._closed:
            return
        self._max_datagram_payload = max_datagram_payload
        if alpn is not None and alpn != "h3":
            self._close_connection(
                H3ErrorCode.H3_GENERAL_PROTOCOL_ERROR, f"ALPN {alpn!r} is not h3", False
            )

    def send_goaway(self) -> None:
        """Server: stop accepting new sessions on this connection; existing ones drain."""
        self._check_open()
        if self._is_client or self._goaway_sent >= 0:
            return
        goaway_id = self._max_request_id + 4 if self._max_request_id >= 0 else 0
        self._goaway_sent = goaway_id
        self._transport.send_stream_data(
            self._control_stream_id,
            _frames.encode_frame(_frames.FRAME_GOAWAY, _varint.varint_bytes(goaway_id)),
        )

    def close(self, error_code: int = H3ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        """Close the whole connection; every session ends."""
        if self._closed:
            return
        self._close_connection(error_code, reason, False)

    # Introspection

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the connection is closed")

    def _send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        encoder_data, frame_data = self._encoder.encode(stream_id, headers)
        if encoder_data:
            self._transport.send_stream_data(self._encoder_stream_id, encoder_data)
        self._transport.send_stream_data(
            stream_id, _frames.encode_frame(_frames.FRAME_HEADERS, frame_data), end_stream
        )

    def _close_connection(self, error_code: int, reason: str, by_peer: bool) -> None:
        if self._closed:
            return
        self._transport.close(error_code, reason)
        self._closed = True
        self._close_error_code = error_code
        self._close_reason = reason
        self._end_all_sessions(error_code)
        self._events.append(ConnectionTerminated(error_code, reason, by_peer))

    def _internal_error(self, where: str) -> None:
        logger.exception(
            "anywt engine: internal error while handling %s; closing the connection", where
        )
        self._close_connection(H3ErrorCode.H3_INTERNAL_ERROR, f"internal error ({where})", False)

    # Incoming streams

    def _new_remote_stream(self, stream_id: int) -> _records.StreamRecord | None:
        """A record for a stream the peer opened; None for a stale id (a stream we forgot)."""
        is_uni = bool(stream_id & 0x02)
        is_local = bool(stream_id & 0x01) != self._is_client
        if is_local:
            return None
        highest = self._max_remote_uni if is_uni else self._max_remote_bidi
        if stream_id <= highest:
            if stream_id not in self._expected_remote:
                return None
            self._expected_remote.discard(stream_id)
        else:
            # Lower ids of the same kind are implicitly open (RFC 9000 section 3.2).
            start = highest + 4 if highest >= 0 else stream_id & 0x03
            for skipped in range(start, stream_id, 4):
                self._expected_remote.add(skipped)
            if is_uni:
                self._max_remote_uni = stream_id
            else:
                self._max_remote_bidi = stream_id
        record = _records.StreamRecord(stream_id, _constants.KIND_PENDING, False, is_uni)
        self._streams[stream_id] = record
        return record

    def _read_preamble(self, record: _records.StreamRecord, data: bytes, end_stream: bool) -> None:
        """Read an incoming stream's type (uni) or first frame type / signal (bidi)."""
        buf = record.preamble + data if record.preamble else data
        reader = _varint.ByteReader(buf)
        try:
            first = reader.pull_varint()
            if (record.is_unidirectional and first == _frames.STREAM_WEBTRANSPORT) or (
                not record.is_unidirectional and first == _frames.FRAME_WT_STREAM
            ):
                session_id = reader.pull_varint()
            else:
                session_id = -1
        except TruncatedVarint:
            if end_stream:
                # The stream ended before saying what it is: nothing to do.
                record.kind = _constants.KIND_IGNORED
                record.recv_open = False
                self._maybe_forget(record)
            else:
                record.preamble = bytes(buf)
            return
        record.preamble = b""
        rest = buf[reader.pos :]
        if record.is_unidirectional:
            self._classify_uni(record, first, session_id, reader.pos, rest, end_stream)
        elif first == _frames.FRAME_WT_STREAM:
            self._associate(record, session_id, reader.pos, rest, end_stream)
        elif self._is_client:
            raise StreamCreationError(
                "the server opened a bidirectional stream that is not WebTransport"
            )
        else:
            record.kind = _constants.KIND_REQUEST
            record.reader = _frames.FrameReader(self._config.max_field_section_size)
            self._on_request_data(record, bytes(buf), end_stream)

    def _classify_uni(
        self,
        record: _records.StreamRecord,
        stream_type: int,
        session_id: int,
        header_len: int,
        rest: bytes,
        end_stream: bool,
    ) -> None:
        if stream_type == _frames.STREAM_WEBTRANSPORT:
            self._associate(record, session_id, header_len, rest, end_stream)
        elif stream_type == _frames.STREAM_CONTROL:
            if self._peer_control_id >= 0:
                raise StreamCreationError("the peer opened a second control stream")
            self._peer_control_id = record.stream_id
            record.kind = _constants.KIND_CONTROL
            record.reader = _frames.FrameReader(self._config.max_field_section_size)
            self._on_control_data(record, rest, end_stream)
        elif stream_type == _frames.STREAM_QPACK_ENCODER:
            if self._peer_encoder_id >= 0:
                raise StreamCreationError("the peer opened a second QPACK encoder stream")
            self._peer_encoder_id = record.stream_id
            record.kind = _constants.KIND_QPACK_ENCODER
            self._on_qpack_data(record, rest, end_stream)
        elif stream_type == _frames.STREAM_QPACK_DECODER:
            if self._peer_decoder_id >= 0:
                raise StreamCreationError("the peer opened a second QPACK decoder stream")
            self._peer_decoder_id = record.stream_id
            record.kind = _constants.KIND_QPACK_DECODER
            self._on_qpack_data(record, rest, end_stream)
        elif stream_type == _frames.STREAM_PUSH:
            if self._is_client:
                # We never sent MAX_PUSH_ID, so no push is allowed (RFC 9114 section 4.6).
                raise IdError("push stream without MAX_PUSH_ID")
            raise StreamCreationError("a client cannot open a push stream")
        else:
            # Unknown and reserved stream types are refused politely (RFC 9114 section 6.2).
            record.kind = _constants.KIND_IGNORED
            if not end_stream:
                self._transport.stop_stream(record.stream_id, H3ErrorCode.H3_STREAM_CREATION_ERROR)
            record.recv_open = False
            self._maybe_forget(record)

    # WebTransport data streams

    def _on_control_data(
        self, record: _records.StreamRecord, data: bytes, end_stream: bool
    ) -> None:
        reader = record.reader
        assert isinstance(reader, _frames.FrameReader)
        for frame_type, payload in reader.feed(data):
            if self._peer_settings is None:
                if frame_type != _frames.FRAME_SETTINGS:
                    raise MissingSettings("the control stream must start with SETTINGS")
                self._on_settings(_frames.parse_settings(payload))
            elif frame_type == _frames.FRAME_GOAWAY:
                self._on_goaway(payload)
            elif frame_type in (_frames.FRAME_SETTINGS, _frames.FRAME_DATA, _frames.FRAME_HEADERS):
                raise FrameUnexpected(f"frame type {frame_type:#x} on the control stream")
            elif frame_type == _frames.FRAME_PUSH_PROMISE:
                raise FrameUnexpected("PUSH_PROMISE on the control stream")
            # MAX_PUSH_ID and CANCEL_PUSH are legal and meaningless to us: we never push.
        if end_stream:
            raise ClosedCriticalStream("the peer closed its control stream")

    def _on_settings(self, settings: dict[int, int]) -> None:
        for identifier in (
            SETTING_H3_DATAGRAM,
            SETTING_ENABLE_CONNECT_PROTOCOL,
            SETTING_ENABLE_WEBTRANSPORT,
        ):
            if settings.get(identifier, 0) > 1:
                raise SettingsError(f"setting {identifier:#x} must be 0 or 1")
        if self._is_client and settings.get(SETTING_WT_ENABLED, 0) > 1:
            raise SettingsError("SETTINGS_WT_ENABLED must be 0 or 1")
        self._peer_settings = settings
        self._datagrams_enabled = (
            settings.get(SETTING_H3_DATAGRAM, 0) == 1
            or settings.get(SETTING_H3_DATAGRAM_DRAFT04, 0) == 1
        )
        self._dialect = self._pick_dialect(settings)
        self._flow_control = self._negotiate_flow_control(settings)
        encoder_data = self._encoder.apply_settings(
            settings.get(SETTING_QPACK_MAX_TABLE_CAPACITY, 0),
            settings.get(SETTING_QPACK_BLOCKED_STREAMS, 0),
        )
        if encoder_data:
            self._transport.send_stream_data(self._encoder_stream_id, encoder_data)
        self._events.append(SettingsReceived(dict(settings), self._dialect, self._flow_control))
        waiting = self._waiting_for_settings
        self._waiting_for_settings = []
        if not self._is_client:
            # Requests that arrived before the client's SETTINGS.
            for stream_id in waiting:
                record = self._streams.get(stream_id)
                if record is not None and record.kind == _constants.KIND_REQUEST:
                    held = record.held
                    fin = record.held_fin
                    record.held = []
                    record.held_fin = False
                    record.held_size = 0
                    try:
                        self._on_request_data(record, b"".join(held), fin)
                    except ProtocolError as exc:
                        self._handle_protocol_error(exc, record)
            waiting = []
        self._settings_ready(waiting)

    def _pick_dialect(self, settings: Mapping[int, int]) -> Dialect | None:
        """The highest dialect both sides support (draft section 7.1)."""
        offered = self._config.dialects
        datagrams = self._datagrams_enabled
        if not datagrams:
            return None
        connect = self._is_client is False or settings.get(SETTING_ENABLE_CONNECT_PROTOCOL, 0) == 1
        if Dialect.DRAFT16 in offered and settings.get(SETTING_WT_ENABLED, 0) >= 1 and connect:
            return Dialect.DRAFT16
        if Dialect.DRAFT14 in offered and settings.get(SETTING_WT_MAX_SESSIONS, 0) >= 1 and connect:
            return Dialect.DRAFT14
        if (
            Dialect.DRAFT07 in offered
            and settings.get(SETTING_WT_MAX_SESSIONS_DRAFT07, 0) >= 1
            and connect
        ):
            return Dialect.DRAFT07
        if Dialect.DRAFT02 in offered and settings.get(SETTING_ENABLE_WEBTRANSPORT, 0) == 1:
            return Dialect.DRAFT02
        return None

    def _negotiate_flow_control(self, settings: Mapping[int, int]) -> bool:
        """Flow control is on when both sides offer it (draft section 5.1)."""
        dialect = self._dialect
        if dialect is None or not dialect.has_flow_control:
            return False
        local = self._local_settings
        ours = any(
            local.get(identifier, 0) > 0
            for identifier in (
                SETTING_WT_INITIAL_MAX_DATA,
                SETTING_WT_INITIAL_MAX_STREAMS_BIDI,
                SETTING_WT_INITIAL_MAX_STREAMS_UNI,
            )
        )
        theirs = any(
            settings.get(identifier, 0) > 0
            for identifier in (
                SETTING_WT_INITIAL_MAX_DATA,
                SETTING_WT_INITIAL_MAX_STREAMS_BIDI,
                SETTING_WT_INITIAL_MAX_STREAMS_UNI,
            )
        )
        if ours and theirs:
            return True
        # Draft-13 turned it on when both allowed more than one session.
        return (
            dialect == Dialect.DRAFT14
            and ours
            and local.get(SETTING_WT_MAX_SESSIONS, 0) > 1
            and settings.get(SETTING_WT_MAX_SESSIONS, 0) > 1
        )

    def _on_goaway(self, payload: bytes) -> None:
        reader = _varint.ByteReader(payload)
        try:
            goaway_id = reader.pull_varint()
        except TruncatedVarint:
            raise ProtocolError("truncated GOAWAY", error_code=H3ErrorCode.H3_FRAME_ERROR) from None
        if not reader.at_end():
            raise ProtocolError("GOAWAY with trailing bytes", error_code=H3ErrorCode.H3_FRAME_ERROR)
        if self._is_client and not is_client_bidi(goaway_id):
            raise IdError(f"GOAWAY id {goaway_id} is not a client bidirectional stream id")
        if self._goaway_received >= 0 and goaway_id > self._goaway_received:
            raise IdError("GOAWAY id increased")
        self._goaway_received = goaway_id
        self._events.append(GoawayReceived(goaway_id))
        self._goaway_ready(goaway_id)

    def _on_qpack_data(self, record: _records.StreamRecord, data: bytes, end_stream: bool) -> None:
        """Data on the peer's QPACK encoder or decoder stream."""
        if end_stream:
            raise ClosedCriticalStream("the peer closed a QPACK stream")
        if record.kind == _constants.KIND_QPACK_ENCODER:
            self._on_encoder_data(data)
            return
        try:
            self._encoder.feed_decoder(data)
        except pylsqpack.DecoderStreamError as exc:
            raise ProtocolError(
                f"QPACK decoder stream error: {exc}",
                error_code=QpackErrorCode.QPACK_DECODER_STREAM_ERROR,
            ) from None

    def _on_encoder_data(self, data: bytes) -> None:
        try:
            unblocked = self._decoder.feed_encoder(data)
        except pylsqpack.EncoderStreamError as exc:
            raise ProtocolError(
                f"QPACK encoder stream error: {exc}",
                error_code=QpackErrorCode.QPACK_ENCODER_STREAM_ERROR,
            ) from None
        for stream_id in unblocked:
            record = self._streams.get(stream_id)
            if record is None or not record.blocked:
                continue
            try:
                decoder_data, headers = self._decoder.resume_header(stream_id)
            except pylsqpack.DecompressionFailed as exc:
                raise QpackDecompressionFailed(str(exc)) from None
            record.blocked = False
            self._send_decoder_data(decoder_data)
            try:
                self._on_headers(record, headers)
                frames = record.pending_frames
                fin = record.held_fin
                record.pending_frames = []
                record.held_size = 0
                record.held_fin = False
                if record.kind != _constants.KIND_REQUEST:
                    continue  # answered with a bare status: what it queued is ignored
                if frames or fin:
                    self._process_request_frames(record, frames, fin)
            except ProtocolError as exc:
                self._handle_protocol_error(exc, record)

    def _send_decoder_data(self, data: bytes) -> None:
        if data:
            self._transport.send_stream_data(self._decoder_stream_id, data)

    # Request (CONNECT) streams

    def _on_request_data(
        self, record: _records.StreamRecord, data: bytes, end_stream: bool
    ) -> None:
        if not self._is_client and self._peer_settings is None:
            # Server: WebTransport requests wait for the client's SETTINGS (draft section 3.1).
            if data:
                record.held.append(data)
                record.held_size += len(data)
                if record.held_size > self._config.max_field_section_size + 65536:
                    raise ProtocolError(
                        "too much data before the client's SETTINGS",
                        error_code=H3ErrorCode.H3_EXCESSIVE_LOAD,
                    )
            if end_stream:
                record.held_fin = True
            if record.stream_id not in self._waiting_for_settings:
                self._waiting_for_settings.append(record.stream_id)
            return
        reader = record.reader
        assert isinstance(reader, _frames.FrameReader)
        frames = reader.feed(data) if data else []
        self._process_request_frames(record, frames, end_stream)

    def _process_request_frames(
        self, record: _records.StreamRecord, frames: list[tuple[int, bytes]], end_stream: bool
    ) -> None:
        if record.blocked:
            # QPACK waits for the encoder stream: keep the frames that follow, bounded.
            for frame in frames:
                record.held_size += len(frame[1])
            if record.held_size > self._config.max_field_section_size + 65536:
                raise ProtocolError(
                    "too much data behind a blocked header block",
                    error_code=H3ErrorCode.H3_EXCESSIVE_LOAD,
                )
            record.pending_frames.extend(frames)
            record.held_fin = record.held_fin or end_stream
            return
        for index, (frame_type, payload) in enumerate(frames):
            if frame_type == _frames.FRAME_DATA:
                self._on_connect_data(record, payload)
            elif frame_type == _frames.FRAME_HEADERS:
                if not self._decode_headers(record, payload):
                    record.pending_frames = frames[index + 1 :]
                    record.held_size = sum(len(frame[1]) for frame in record.pending_frames)
                    record.held_fin = end_stream
                    return
            elif frame_type in (
                _frames.FRAME_SETTINGS,
                _frames.FRAME_GOAWAY,
                _frames.FRAME_MAX_PUSH_ID,
                _frames.FRAME_CANCEL_PUSH,
                _frames.FRAME_PUSH_PROMISE,
            ):
                raise FrameUnexpected(f"frame type {frame_type:#x} on a request stream")
            if record.kind != _constants.KIND_REQUEST:
                return  # the stream was given up while handling a frame
        if end_stream:
            reader = record.reader
            assert isinstance(reader, _frames.FrameReader)
            if not reader.ended_cleanly():
                raise MessageError("the request stream ended inside a frame")
            self._on_connect_fin(record)

    def _decode_headers(self, record: _records.StreamRecord, payload: bytes) -> bool:
        """Decode and handle a header block; False when QPACK must wait (blocked)."""
        config = self._config
        capacity = config.qpack_max_table_capacity
        bound = section_size_bound(payload, capacity)
        if bound > config.max_field_section_size + 16 * capacity:
            # It could decode to far more than we accept: refused before decoding.
            # Blocks of real peers stay below this unless more than 16 of their
            # fields come from the dynamic table.
            self._section_too_large(record, bound)
            return True
        try:
            decoder_data, headers = self._decoder.feed_header(record.stream_id, payload)
        except pylsqpack.StreamBlocked:
            record.blocked = True
            return False
        except pylsqpack.DecompressionFailed as exc:
            raise QpackDecompressionFailed(str(exc)) from None
        self._send_decoder_data(decoder_data)
        self._on_headers(record, headers)
        return True

    def _on_headers(
        self, record: _records.StreamRecord, headers: list[tuple[bytes, bytes]]
    ) -> None:
        # SETTINGS_MAX_FIELD_SECTION_SIZE bounds the *decoded* section (RFC 9114
        # section 4.2.2): a small QPACK block naming a large dynamic-table entry
        # many times must not reach the application or the session record.
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32
        if size > self._config.max_field_section_size:
            self._section_too_large(record, size)
            return
        if self._is_client:
            self._on_response(record, headers)
            return
        if record.session is not None:
            # Trailers after a CONNECT: ignored.
            return
        self._on_request(record, headers)

    def _section_too_large(self, record: _records.StreamRecord, size: int) -> None:
        """A header section past SETTINGS_MAX_FIELD_SECTION_SIZE: 431, or a malformed response."""
        if self._is_client:
            raise MessageError(
                f"response header section of {size} bytes exceeds "
                f"{self._config.max_field_section_size}"
            )
        if record.session is None:
            self._answer_and_forget(record, 431)

    def _answer_and_forget(self, record: _records.StreamRecord, status: int) -> None:
        """Answer a request that is not for us with a bare status and stop reading it."""
        self._send_headers(record.stream_id, [(b":status", str(status).encode())], True)
        record.send_open = False
        if record.recv_open:
            self._transport.stop_stream(record.stream_id, H3ErrorCode.H3_NO_ERROR)
            record.recv_open = False
        record.kind = _constants.KIND_IGNORED
        self._maybe_forget(record)

    # ------------------------------------------------------------------
    # What the WebTransport layer above provides

    def _associate(
        self,
        record: _records.StreamRecord,
        session_id: int,
        header_len: int,
        rest: bytes,
        end_stream: bool,
    ) -> None:
        """Tie an incoming WebTransport stream to its session."""
        raise NotImplementedError

    def _on_request(
        self, record: _records.StreamRecord, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Server: a request header section arrived."""
        raise NotImplementedError

    def _on_response(
        self, record: _records.StreamRecord, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Client: a response header section arrived."""
        raise NotImplementedError

    def _on_connect_data(self, record: _records.StreamRecord, payload: bytes) -> None:
        """DATA frame payload on a request stream."""
        raise NotImplementedError

    def _on_connect_fin(self, record: _records.StreamRecord) -> None:
        """A request stream ended cleanly."""
        raise NotImplementedError

    def _settings_ready(self, waiting: list[int]) -> None:
        """The peer's SETTINGS are in; ``waiting`` lists what waited for them."""
        raise NotImplementedError

    def _goaway_ready(self, goaway_id: int) -> None:
        """The peer sent GOAWAY."""
        raise NotImplementedError

    def _end_all_sessions(self, error_code: int) -> None:
        """The connection is gone."""
        raise NotImplementedError

    def _handle_protocol_error(
        self, exc: ProtocolError, record: _records.StreamRecord | None
    ) -> None:
        """Apply a protocol error at its scope."""
        raise NotImplementedError

    def _maybe_forget(self, record: _records.StreamRecord) -> None:
        """Drop a stream's record once both directions are finished."""
        raise NotImplementedError
