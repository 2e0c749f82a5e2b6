"""The sans-IO WebTransport engine: one per QUIC connection, client or server.

It speaks HTTP/3 (control stream, SETTINGS, QPACK, extended CONNECT, GOAWAY)
and WebTransport (sessions, their streams and datagrams, capsules, flow
control) in every dialect from draft-02 to draft-16, picked per connection
from the peer's SETTINGS.  It never does I/O: a backend feeds it QUIC events
(stream data, resets, STOP_SENDING, datagrams, handshake, termination) with
the current time, and it answers by calling the backend's ``Transport``
(send stream data, reset, stop, send a datagram, close) and by queueing
events for the application, which ``next_event()`` hands out.

Protocol errors never escape: a connection error closes the QUIC connection
with its wire code, a session error resets the CONNECT stream, a stream
error resets the stream; each is reported through the events.  Mistakes of
the application (a closed session, a too-large datagram) raise at the call.

The HTTP/3 parts live in ``H3Connection`` (``_h3_py``), which this class
extends.  This file is the source of both the pure-Python module and, with
``_engine_c.pxd``, the compiled ``anywt.core._engine_c``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence

from . import _capsule_py as _capsule
from . import _constants
from . import _flow_py as _flow
from . import _frames_py as _frames
from . import _h3_py as _h3
from . import _records_py as _records
from . import _varint_py as _varint
from .config import EngineConfig
from .diagnostics import ConnectionSnapshot, SessionSnapshot
from .errors import (
    ClosedCriticalStream,
    DatagramError,
    DatagramsUnavailable,
    DatagramTooLarge,
    FrameUnexpected,
    H3ErrorCode,
    IdError,
    MessageError,
    ProtocolError,
    SessionLimitReached,
    UnknownSession,
    UnknownStream,
    WTErrorCode,
    app_error_to_h3,
    h3_error_to_app,
)
from .events import (
    ConnectionTerminated,
    DataCreditAvailable,
    DatagramReceived,
    Dialect,
    SessionClosed,
    SessionDraining,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamsCreditAvailable,
    StreamStopped,
)
from .headers import (
    UPGRADE_TOKENS,
    check_header_fields,
    parse_request_untrusted,
    parse_sf_string,
    parse_status_untrusted,
    serialize_sf_string,
    serialize_sf_string_list,
)
from .session_state import (
    SessionAction,
    SessionInput,
    SessionState,
    SessionStateError,
    transition,
)
from .transport import Transport

__all__ = ["WebTransportEngine"]

logger = logging.getLogger("anywt.core")

_MAX_QSID = (1 << 60) - 1
_new_event = tuple.__new__


class WebTransportEngine(_h3.H3Connection):
    """The WebTransport and HTTP/3 state of one QUIC connection."""

    def __init__(
        self, transport: Transport, *, is_client: bool, config: EngineConfig | None = None
    ) -> None:
        super().__init__(transport, is_client=is_client, config=config)
        self._sessions: dict[int, _records.SessionRecord] = {}
        self._buffered_count = 0
        self._buffered_datagrams: deque[tuple[int, bytes]] = deque()
        self._closed_sessions: deque[int] = deque()
        self._datagrams_dropped = 0
        self._streams_rejected = 0

    def receive_stream_data(
        self, stream_id: int, data: bytes, end_stream: bool, now: float
    ) -> None:
        """Bytes (and maybe FIN) arrived on a stream."""
        self._now = now
        if self._closed:
            return
        record = self._streams.get(stream_id)
        if record is not None and record.kind == _constants.KIND_WT:
            # The hot path: data on an open WebTransport stream.
            self._deliver(record, data, end_stream)
            return
        try:
            if record is None:
                record = self._new_remote_stream(stream_id)
                if record is None:
                    return
            self._dispatch_stream_data(record, data, end_stream)
        except ProtocolError as exc:
            self._handle_protocol_error(exc, record)
        except Exception:
            self._internal_error("stream data")

    def receive_stream_reset(
        self, stream_id: int, error_code: int, final_size: int, now: float
    ) -> None:
        """The peer reset a stream; ``final_size`` is -1 when the backend cannot tell."""
        self._now = now
        if self._closed:
            return
        record = self._streams.get(stream_id)
        try:
            if record is None:
                # A stream whose first frame is its reset (None: ours, or one we forgot).
                record = self._new_remote_stream(stream_id)
                if record is None:
                    return
            self._on_stream_reset(record, error_code, final_size)
        except ProtocolError as exc:
            self._handle_protocol_error(exc, record)
        except Exception:
            self._internal_error("stream reset")

    def receive_stop_sending(self, stream_id: int, error_code: int, now: float) -> None:
        """The peer asked us to stop sending on a stream."""
        self._now = now
        if self._closed:
            return
        record = self._streams.get(stream_id)
        if record is None:
            return
        try:
            self._on_stop_sending(record, error_code)
        except ProtocolError as exc:
            self._handle_protocol_error(exc, record)
        except Exception:
            self._internal_error("stop sending")

    def receive_side_discarded(self, stream_id: int, now: float) -> None:
        """The stack drops whatever still arrives on a stream we stopped, FIN included.

        picoquic reports nothing of a stream's receive side after STOP_SENDING
        but a reset, so a peer that ends the stream with FIN instead would
        leave its record here until the session ends.  The backend says so
        once the stop has taken effect; the stream's receive side is then over.
        """
        self._now = now
        if self._closed:
            return
        record = self._streams.get(stream_id)
        if record is None or record.kind != _constants.KIND_WT:
            return
        if not record.stopped or not record.recv_open:
            return
        record.recv_open = False
        self._maybe_forget(record)

    def receive_datagram(self, data: bytes, now: float) -> None:
        """A QUIC DATAGRAM frame arrived."""
        self._now = now
        if self._closed:
            return
        try:
            self._on_datagram(data)
        except ProtocolError as exc:
            self._handle_protocol_error(exc, None)
        except Exception:
            self._internal_error("datagram")

    def connection_terminated(self, error_code: int, reason: str, now: float) -> None:
        """The QUIC connection is gone (closed by the peer, idle timeout, or by us)."""
        self._now = now
        if self._closed:
            return
        self._closed = True
        self._close_error_code = error_code
        self._close_reason = reason
        self._end_all_sessions(error_code)
        self._events.append(ConnectionTerminated(error_code, reason, True))

    # Calls from the application

    def connect(
        self,
        *,
        authority: str,
        path: str,
        origin: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
        protocols: Sequence[str] = (),
    ) -> int:
        """Client: ask for a session; return its id. The request waits for the server's SETTINGS."""
        self._check_open()
        if not self._is_client:
            raise RuntimeError("only a client opens sessions")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        if not authority:
            raise ValueError("authority must not be empty")
        if self._goaway_received >= 0:
            raise SessionLimitReached("the server sent GOAWAY: open a new connection")
        if self._peer_settings is not None:
            if self._dialect is None:
                raise SessionLimitReached("the server does not support WebTransport")
            if self._live_sessions() >= self._session_limit():
                raise SessionLimitReached(
                    "this connection carries its maximum number of sessions"
                    + ("" if self._flow_control else " (no session flow control)")
                )
        extra = check_header_fields(headers)
        for protocol in protocols:
            serialize_sf_string(protocol)  # validates
        session_id = self._transport.get_next_available_stream_id(False)
        # Writing nothing creates the stream, so the id is ours even while the
        # request waits for SETTINGS (the stack would hand it out again).
        self._transport.send_stream_data(session_id, b"")
        session = _records.SessionRecord(
            session_id, True, self._dialect, self._config.max_capsule_size, self._now
        )
        session.authority = authority
        session.path = path
        session.origin = origin
        session.protocols = tuple(protocols)
        session.request_headers = tuple(extra)
        self._sessions[session_id] = session
        record = _records.StreamRecord(session_id, _constants.KIND_REQUEST, True, False)
        record.session_id = session_id
        record.session = session
        record.reader = _frames.FrameReader(self._config.max_field_section_size)
        self._streams[session_id] = record
        if self._peer_settings is None:
            self._waiting_for_settings.append(session_id)
        else:
            self._send_request(session)
        return session_id

    def accept(
        self,
        session_id: int,
        *,
        protocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Server: accept a requested session (a 200 response)."""
        self._check_open()
        session = self._get_session(session_id)
        if protocol is not None and protocol not in session.protocols:
            raise ValueError(
                f"protocol {protocol!r} was not offered by the client {session.protocols}"
            )
        extra = check_header_fields(headers)
        action = self._local_transition(session, SessionInput.ACCEPT)
        if action != SessionAction.ESTABLISH:  # pragma: no cover - the table says ESTABLISH
            return
        response = [(b":status", b"200")]
        if session.dialect == Dialect.DRAFT02 or session.draft02_header:
            response.append((b"sec-webtransport-http3-draft", b"draft02"))
        if protocol is not None:
            response.append((b"wt-protocol", serialize_sf_string(protocol)))
        response.extend(extra)
        self._send_headers(session_id, response, False)
        session.protocol = protocol
        session.status = 200
        session.response_headers = tuple(response)
        self._establish(session)

    def reject(
        self, session_id: int, status: int = 404, *, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """Server: refuse a requested session with a non-2xx status."""
        self._check_open()
        if not 300 <= status <= 599:
            raise ValueError(f"rejection status must be 3xx, 4xx or 5xx, not {status}")
        session = self._get_session(session_id)
        extra = check_header_fields(headers)
        self._local_transition(session, SessionInput.REJECT)
        self._reject_session(session, status, extra)

    def open_stream(self, session_id: int, *, is_unidirectional: bool = False) -> int | None:
        """Open a WebTransport stream; None when session flow control does not allow one now.

        When None comes back a WT_STREAMS_BLOCKED capsule has gone out; wait
        for ``StreamsCreditAvailable`` and try again.
        """
        self._check_open()
        session = self._get_session(session_id)
        if not (
            session.is_open()
            or (session.is_client and session.state == _constants.STATE_CONNECTING)
        ):
            raise SessionStateError(f"session {session_id} is {SessionState(session.state).name}")
        if session.flow:
            credit = session.send_uni if is_unidirectional else session.send_bidi
            assert credit is not None
            if credit.available() <= 0:
                blocked = credit.blocked_limit()
                if blocked >= 0:
                    capsule_type = (
                        _capsule.CAPSULE_STREAMS_BLOCKED_UNI
                        if is_unidirectional
                        else _capsule.CAPSULE_STREAMS_BLOCKED_BIDI
                    )
                    self._send_capsule(
                        session, _capsule.encode_varint_capsule(capsule_type, blocked)
                    )
                return None
            credit.consume(1)
        transport = self._transport
        stream_id = transport.get_next_available_stream_id(is_unidirectional)
        header = _frames.encode_wt_stream_header(session_id, is_unidirectional)
        transport.send_stream_data(stream_id, header)
        record = _records.StreamRecord(stream_id, _constants.KIND_WT, True, is_unidirectional)
        record.session_id = session_id
        record.session = session
        record.header_len = len(header)
        self._streams[stream_id] = record
        session.streams.add(stream_id)
        if is_unidirectional:
            session.local_uni_opened += 1
        else:
            session.local_bidi_opened += 1
        session.last_activity = self._now
        return stream_id

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Send on a WebTransport stream; return how many bytes were taken.

        Fewer than ``len(data)`` (and no FIN) means session flow control ran
        out: a WT_DATA_BLOCKED capsule has gone out; wait for
        ``DataCreditAvailable`` and send the rest.
        """
        self._check_open()
        record = self._streams.get(stream_id)
        if record is None or record.kind != _constants.KIND_WT or not record.send_open:
            raise UnknownStream(
                f"stream {stream_id} is not an open WebTransport stream we can send on"
            )
        session = record.session
        assert session is not None
        size = len(data)
        taken = size
        if session.flow and size:
            credit = session.send_data
            assert credit is not None
            available = credit.available()
            if available < size:
                taken = available if available > 0 else 0
                if taken:
                    credit.consume(taken)
                    data = data[:taken]
                blocked = credit.blocked_limit()
                if blocked >= 0:
                    self._send_capsule(
                        session,
                        _capsule.encode_varint_capsule(_capsule.CAPSULE_DATA_BLOCKED, blocked),
                    )
                if not taken:
                    return 0
            else:
                credit.consume(size)
        fin = end_stream and taken == size
        self._transport.send_stream_data(stream_id, data, fin)
        record.sent += taken
        session.data_sent += taken
        session.last_activity = self._now
        if fin:
            record.send_open = False
            self._maybe_forget(record)
        return taken

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Abort our sending side of a WebTransport stream with an application code."""
        self._check_open()
        wire = app_error_to_h3(code)
        record = self._streams.get(stream_id)
        if record is None or record.kind != _constants.KIND_WT:
            raise UnknownStream(f"stream {stream_id} is not an open WebTransport stream")
        if not record.send_open:
            return
        dropped = self._transport.reset_stream(stream_id, wire)
        record.send_open = False
        session = record.session
        assert session is not None
        session.resets_sent += 1
        self._return_unsent_credit(record, session, dropped)
        self._maybe_forget(record)

    def _return_unsent_credit(
        self, record: _records.StreamRecord, session: _records.SessionRecord, dropped: int
    ) -> None:
        """Give back the flow-control credit of what our reset dropped before it was sent.

        The QUIC stacks send plain RESET_STREAM (none has RESET_STREAM_AT), and
        a reset drops what was still queued: the peer counts the final size
        minus the header, so unsent body bytes must not stay counted here.  A
        stream whose header was dropped never reaches its session on the peer,
        which therefore cannot give its stream credit back: we take it back.
        """
        if dropped <= 0 or not session.flow or not session.is_open():
            return
        body = dropped if dropped < record.sent else record.sent
        if body > 0:
            data_credit = session.send_data
            assert data_credit is not None
            data_credit.release(body)
            record.sent -= body
            session.data_sent -= body
            self._events.append(DataCreditAvailable(session.session_id, data_credit.limit))
        if record.is_local and dropped > body:
            uni = record.is_unidirectional
            stream_credit = session.send_uni if uni else session.send_bidi
            assert stream_credit is not None
            stream_credit.release(1)
            self._events.append(
                StreamsCreditAvailable(session.session_id, uni, stream_credit.limit)
            )

    def stop_stream(self, stream_id: int, code: int = 0) -> None:
        """Ask the peer to stop sending on a WebTransport stream (STOP_SENDING)."""
        self._check_open()
        wire = app_error_to_h3(code)
        record = self._streams.get(stream_id)
        if record is None or record.kind != _constants.KIND_WT:
            raise UnknownStream(f"stream {stream_id} is not an open WebTransport stream")
        if not record.recv_open:
            return
        if record.stopped:
            return
        self._transport.stop_stream(stream_id, wire)
        # Data may still arrive until the peer's reset: it is dropped, but it
        # still counts for flow control (both sides must agree on it).
        record.stopped = True

    def send_datagram(self, session_id: int, data: bytes) -> None:
        """Send a datagram on a session; ``DatagramTooLarge`` if it cannot fit in a packet."""
        self._check_open()
        session = self._get_session(session_id)
        if not (
            session.is_open()
            or (session.is_client and session.state == _constants.STATE_CONNECTING)
        ):
            raise SessionStateError(f"session {session_id} is {SessionState(session.state).name}")
        prefix = session.datagram_prefix
        size = len(data)
        limit = self._datagram_limit()
        if len(prefix) + size > limit:
            raise DatagramTooLarge(size, limit - len(prefix))
        self._transport.send_datagram(prefix + data)
        session.datagrams_sent += 1
        session.datagram_bytes_sent += size
        session.last_activity = self._now

    def max_datagram_size(self, session_id: int) -> int:
        """The largest datagram payload a session can send now."""
        limit = self._datagram_limit()
        return limit - _varint.varint_size(session_id >> 2)

    def _datagram_limit(self) -> int:
        if self._peer_settings is None or not self._datagrams_enabled:
            raise DatagramsUnavailable("the peer has not enabled HTTP datagrams")
        if self._max_datagram_payload < 0:
            raise DatagramsUnavailable("the QUIC handshake has not finished")
        if self._max_datagram_payload == 0:
            raise DatagramsUnavailable("the peer does not accept QUIC datagrams")
        return self._max_datagram_payload

    def close_session(self, session_id: int, code: int = 0, reason: str = "") -> None:
        """Close a session: WT_CLOSE_SESSION and FIN (closing twice does nothing)."""
        self._check_open()
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError(f"session close code {code} is outside 0..0xffffffff")
        session = self._get_session(session_id)
        action = self._local_transition(session, SessionInput.CLOSE_SENT)
        if action == SessionAction.CLOSE:
            capsule = _capsule.encode_close_session(code, reason)
            self._send_capsule(session, capsule, True)
            session.close_code = code
            session.close_reason = _capsule.truncate_reason(reason).decode("utf-8")
            self._finish_session(session, False, -1)
        elif action == SessionAction.CANCEL:
            self._reset_connect_stream(session, H3ErrorCode.H3_REQUEST_CANCELLED)
            session.close_code = code
            session.close_reason = reason
            self._finish_session(session, False, H3ErrorCode.H3_REQUEST_CANCELLED)
        elif action == SessionAction.REJECT:
            self._reject_session(session, 403, [])

    def drain_session(self, session_id: int) -> None:
        """Ask the peer to wrap the session up (WT_DRAIN_SESSION)."""
        self._check_open()
        session = self._get_session(session_id)
        action = self._local_transition(session, SessionInput.DRAIN_SENT)
        if action == SessionAction.DRAIN:
            self._send_capsule(session, _capsule.encode_drain_session())

    def consume_data(self, session_id: int, amount: int) -> None:
        """The application read ``amount`` stream bytes of a session: credit may be re-granted."""
        if amount <= 0:
            return
        if amount > _flow.MAX_DATA_LIMIT:
            raise ValueError(f"amount {amount} exceeds 2**62 - 1")
        session = self._sessions.get(session_id)
        if session is None or not session.is_open():
            return
        session.data_consumed += amount
        if session.flow:
            credit = session.recv_data
            assert credit is not None
            new_limit = credit.on_consume(amount)
            if new_limit >= 0:
                self._send_capsule(
                    session, _capsule.encode_varint_capsule(_capsule.CAPSULE_MAX_DATA, new_limit)
                )

    def grant_data_credit(self, session_id: int, max_data: int) -> bool:
        """Raise the peer's WT_MAX_DATA to ``max_data`` by hand; False if it would not raise it."""
        if not 0 <= max_data <= _flow.MAX_DATA_LIMIT:
            raise ValueError(f"max_data {max_data} is outside 0..2**62-1")
        self._check_open()
        session = self._get_session(session_id)
        if not session.flow:
            return False
        credit = session.recv_data
        assert credit is not None
        if not credit.grant(max_data):
            return False
        if session.is_open():
            self._send_capsule(
                session, _capsule.encode_varint_capsule(_capsule.CAPSULE_MAX_DATA, max_data)
            )
        return True

    def grant_streams_credit(
        self, session_id: int, max_streams: int, is_unidirectional: bool
    ) -> bool:
        """Raise the peer's WT_MAX_STREAMS to ``max_streams`` by hand.

        Returns False when that would not raise the limit.
        """
        if not 0 <= max_streams <= _flow.MAX_STREAMS_LIMIT:
            raise ValueError(f"max_streams {max_streams} is outside 0..2**60")
        self._check_open()
        session = self._get_session(session_id)
        if not session.flow:
            return False
        credit = session.recv_uni if is_unidirectional else session.recv_bidi
        assert credit is not None
        if not credit.grant(max_streams):
            return False
        if session.is_open():
            capsule_type = (
                _capsule.CAPSULE_MAX_STREAMS_UNI
                if is_unidirectional
                else _capsule.CAPSULE_MAX_STREAMS_BIDI
            )
            self._send_capsule(session, _capsule.encode_varint_capsule(capsule_type, max_streams))
        return True

    def session_ids(self) -> list[int]:
        return list(self._sessions)

    def session_state(self, session_id: int) -> SessionState:
        return SessionState(self._get_session(session_id).state)

    def session_snapshot(self, session_id: int) -> SessionSnapshot:
        session = self._get_session(session_id)
        buffered = 0
        for record in self._streams.values():
            if record.kind == _constants.KIND_BUFFERED and record.session_id == session_id:
                buffered += 1
        return session.snapshot(buffered)

    def stream_session(self, stream_id: int) -> int | None:
        """The session a WebTransport stream belongs to."""
        record = self._streams.get(stream_id)
        if record is None or record.session_id < 0:
            return None
        return record.session_id

    def connection_snapshot(self) -> ConnectionSnapshot:
        return ConnectionSnapshot(
            is_client=self._is_client,
            dialect=self._dialect,
            flow_control=None if self._peer_settings is None else self._flow_control,
            local_settings=dict(self._local_settings),
            peer_settings=None if self._peer_settings is None else dict(self._peer_settings),
            max_datagram_size=None
            if self._max_datagram_payload < 0
            else self._max_datagram_payload,
            sessions=self._live_sessions(),
            goaway_sent=None if self._goaway_sent < 0 else self._goaway_sent,
            goaway_received=None if self._goaway_received < 0 else self._goaway_received,
            buffered_streams=self._buffered_count,
            buffered_datagrams=len(self._buffered_datagrams),
            datagrams_dropped=self._datagrams_dropped,
            streams_rejected=self._streams_rejected,
            closed=self._closed,
            close_error_code=None if self._close_error_code < 0 else self._close_error_code,
            close_reason=self._close_reason,
            stream_records=len(self._streams),
        )

    def peer_finished_session(self, session_id: int) -> bool:
        """True once the peer ended its side of a session's CONNECT stream (or forgot it)."""
        session = self._sessions.get(session_id)
        return session is None or not session.connect_recv_open

    def forget_session(self, session_id: int) -> None:
        """Drop the record of an ended session (its snapshot is no longer needed)."""
        session = self._sessions.get(session_id)
        if session is not None and not session.is_live():
            del self._sessions[session_id]

    # Helpers: sessions

    def _get_session(self, session_id: int) -> _records.SessionRecord:
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(session_id)
        return session

    def _live_sessions(self) -> int:
        count = 0
        for session in self._sessions.values():
            if session.is_live():
                count += 1
        return count

    def _session_limit(self) -> int:
        return self._config.max_sessions if self._flow_control else 1

    def _local_transition(
        self, session: _records.SessionRecord, event: SessionInput
    ) -> SessionAction:
        action, next_state = transition(SessionState(session.state), event)
        session.state = next_state
        return action

    def _remote_transition(
        self, session: _records.SessionRecord, event: SessionInput
    ) -> SessionAction:
        """A peer-caused transition; one the table lacks is a protocol error on the session."""
        try:
            action, next_state = transition(SessionState(session.state), event)
        except SessionStateError as exc:
            raise MessageError(str(exc)) from None
        session.state = next_state
        return action

    def _send_request(self, session: _records.SessionRecord) -> None:
        dialect = self._dialect
        assert dialect is not None
        session.dialect = dialect
        headers = [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", session.authority.encode("ascii")),
            (b":path", session.path.encode("ascii")),
            (b":protocol", dialect.upgrade_token),
        ]
        if dialect == Dialect.DRAFT02:
            headers.append((b"sec-webtransport-http3-draft02", b"1"))
        if session.origin is not None:
            headers.append((b"origin", session.origin.encode("ascii")))
        if session.protocols:
            headers.append((b"wt-available-protocols", serialize_sf_string_list(session.protocols)))
        headers.extend(session.request_headers)
        session.request_headers = tuple(headers)
        self._send_headers(session.session_id, headers, False)
        session.request_sent = True
        self._init_session_flow(session)

    def _init_session_flow(self, session: _records.SessionRecord) -> None:
        if not self._flow_control:
            return
        peer = self._peer_settings
        assert peer is not None
        config = self._config
        session.enable_flow_control(
            peer.get(_h3.SETTING_WT_INITIAL_MAX_DATA, 0),
            peer.get(_h3.SETTING_WT_INITIAL_MAX_STREAMS_BIDI, 0),
            peer.get(_h3.SETTING_WT_INITIAL_MAX_STREAMS_UNI, 0),
            config.initial_max_data,
            config.initial_max_streams_bidi,
            config.initial_max_streams_uni,
            config.data_window
            if config.data_window is not None
            else max(config.initial_max_data, 1),
            config.streams_window
            if config.streams_window is not None
            else max(config.initial_max_streams_bidi, config.initial_max_streams_uni, 1),
            config.auto_grant,
            self._dialect == Dialect.DRAFT16,
        )

    def _establish(self, session: _records.SessionRecord) -> None:
        session.established_at = self._now
        session.last_activity = self._now
        self._events.append(
            SessionEstablished(
                session.session_id, session.status, session.protocol, session.response_headers
            )
        )
        # Capsules the client sent before our answer are processed now (draft-16 section 3).
        pending = session.pending_capsules
        session.pending_capsules = []
        for capsule_type, value in pending:
            if not session.is_open():
                break
            self._on_capsule(session, capsule_type, value)
        if session.is_open():
            self._flush_buffered(session)

    def _reject_session(
        self, session: _records.SessionRecord, status: int, extra: list[tuple[bytes, bytes]]
    ) -> None:
        response = [(b":status", str(status).encode())]
        response.extend(extra)
        self._send_headers(session.session_id, response, True)
        session.connect_send_open = False
        if session.connect_recv_open:
            # The answer is complete; the rest of the request is not needed.
            self._transport.stop_stream(session.session_id, H3ErrorCode.H3_NO_ERROR)
            session.connect_recv_open = False
        record = self._streams.get(session.session_id)
        if record is not None:
            record.send_open = False
            record.recv_open = False
            self._streams.pop(session.session_id, None)
        session.status = status
        session.response_headers = tuple(response)
        session.pending_capsules = []
        session.closed_at = self._now
        self._reject_buffered(session.session_id, WTErrorCode.WT_BUFFERED_STREAM_REJECTED)
        self._drop_buffered_datagrams(session.session_id)
        self._remember_closed(session.session_id)

    def _finish_session(
        self, session: _records.SessionRecord, by_peer: bool, error_code: int
    ) -> None:
        """The session ended: end its streams, report it once."""
        session.closed_at = self._now
        session.closed_by_peer = by_peer
        session.close_error_code = error_code
        self._terminate_streams(session)
        self._reject_buffered(session.session_id, WTErrorCode.WT_SESSION_GONE)
        self._drop_buffered_datagrams(session.session_id)
        self._remember_closed(session.session_id)
        self._events.append(
            SessionClosed(
                session.session_id,
                session.close_code if session.close_code >= 0 else 0,
                session.close_reason or "",
                by_peer,
                None if error_code < 0 else error_code,
            )
        )

    def _terminate_streams(self, session: _records.SessionRecord) -> None:
        """Reset and stop every data stream of an ended session with WT_SESSION_GONE."""
        transport = self._transport
        gone = WTErrorCode.WT_SESSION_GONE
        for stream_id in sorted(session.streams):
            record = self._streams.get(stream_id)
            if record is None:
                continue
            if record.send_open:
                transport.reset_stream(stream_id, gone)
                record.send_open = False
            if record.recv_open:
                if not record.stopped:
                    transport.stop_stream(stream_id, gone)
                record.recv_open = False
            record.kind = _constants.KIND_IGNORED
            record.session = None
            self._maybe_forget(record)
        session.streams.clear()

    def _reset_connect_stream(self, session: _records.SessionRecord, error_code: int) -> None:
        stream_id = session.session_id
        if session.connect_send_open:
            self._transport.reset_stream(stream_id, error_code)
            session.connect_send_open = False
        if session.connect_recv_open:
            self._transport.stop_stream(stream_id, error_code)
            session.connect_recv_open = False
        record = self._streams.get(stream_id)
        if record is not None:
            record.send_open = False
            record.recv_open = False
            record.kind = _constants.KIND_IGNORED
            self._maybe_forget(record)

    def _abort_session(
        self, session: _records.SessionRecord, error_code: int, by_peer: bool
    ) -> None:
        """End a session abruptly: reset its CONNECT stream (unless the peer did), its streams."""
        try:
            action = self._remote_transition(session, SessionInput.ABORT)
        except MessageError:
            return
        if action == SessionAction.IGNORE:
            return
        if not by_peer:
            session.protocol_errors += 1
            self._reset_connect_stream(session, error_code)
        self._finish_session(session, by_peer, error_code)

    def _remember_closed(self, session_id: int) -> None:
        memory = self._closed_sessions
        if self._config.closed_session_memory == 0:
            return
        memory.append(session_id)
        while len(memory) > self._config.closed_session_memory:
            old = memory.popleft()
            session = self._sessions.get(old)
            if session is not None and not session.is_live():
                del self._sessions[old]

    def _end_all_sessions(self, error_code: int) -> None:
        for session in list(self._sessions.values()):
            if not session.is_live():
                continue
            session.state = _constants.STATE_CLOSED
            session.closed_at = self._now
            session.closed_by_peer = True
            session.close_error_code = error_code
            session.streams.clear()
            self._events.append(SessionClosed(session.session_id, 0, "", True, error_code))

    def _send_capsule(
        self, session: _records.SessionRecord, capsule: bytes, end_stream: bool = False
    ) -> None:
        if not session.connect_send_open:
            return
        self._transport.send_stream_data(
            session.session_id,
            _frames.encode_frame_header(_frames.FRAME_DATA, len(capsule)) + capsule,
            end_stream,
        )
        if end_stream:
            session.connect_send_open = False

    # Helpers: errors

    def _handle_protocol_error(
        self, exc: ProtocolError, record: _records.StreamRecord | None
    ) -> None:
        scope = exc.scope
        if scope == "connection" or record is None:
            self._close_connection(exc.error_code, exc.message, False)
            return
        session = record.session
        if session is None and record.session_id >= 0:
            session = self._sessions.get(record.session_id)
        if scope == "session" and session is not None and session.is_live():
            if (
                session.state == _constants.STATE_REQUESTED
                or session.state == _constants.STATE_CONNECTING
            ):
                session.protocol_errors += 1
                self._reset_connect_stream(session, exc.error_code)
                session.state = _constants.STATE_CLOSED
                self._finish_session(session, False, exc.error_code)
            else:
                self._abort_session(session, exc.error_code, False)
            return
        # A stream error: reset just this stream.
        if record.send_open:
            self._transport.reset_stream(record.stream_id, exc.error_code)
            record.send_open = False
        if record.recv_open:
            self._transport.stop_stream(record.stream_id, exc.error_code)
            record.recv_open = False
        record.kind = _constants.KIND_IGNORED
        self._maybe_forget(record)

    def _dispatch_stream_data(
        self, record: _records.StreamRecord, data: bytes, end_stream: bool
    ) -> None:
        kind = record.kind
        if kind == _constants.KIND_PENDING:
            self._read_preamble(record, data, end_stream)
        elif kind == _constants.KIND_REQUEST:
            self._on_request_data(record, data, end_stream)
        elif kind == _constants.KIND_BUFFERED:
            self._hold(record, data, end_stream)
        elif kind == _constants.KIND_CONTROL:
            self._on_control_data(record, data, end_stream)
        elif kind == _constants.KIND_QPACK_ENCODER or kind == _constants.KIND_QPACK_DECODER:
            self._on_qpack_data(record, data, end_stream)
        elif kind == _constants.KIND_WT:
            self._deliver(record, data, end_stream)
        elif end_stream:  # KIND_IGNORED and our own streams: dropped
            record.recv_open = False
            self._maybe_forget(record)

    def _associate(
        self,
        record: _records.StreamRecord,
        session_id: int,
        header_len: int,
        rest: bytes,
        end_stream: bool,
    ) -> None:
        """Tie an incoming WebTransport stream to its session, or hold it until that exists."""
        if not _h3.is_client_bidi(session_id):
            raise IdError(
                f"WebTransport stream names session {session_id}, not a client bidi stream"
            )
        record.session_id = session_id
        record.header_len = header_len
        session = self._sessions.get(session_id)
        if session is not None and session.is_open():
            self._attach(record, session)
            if rest or end_stream:
                self._deliver(record, rest, end_stream)
            return
        if session is not None and session.is_live():
            self._buffer_stream(record, rest, end_stream)
            return
        if session is not None or session_id in self._closed_sessions:
            self._reject_stream(record, WTErrorCode.WT_SESSION_GONE)
            return
        if self._is_client:
            # The server cannot open streams for sessions we never asked for.
            self._reject_stream(record, WTErrorCode.WT_BUFFERED_STREAM_REJECTED)
            return
        # Server: the CONNECT may still be on its way.
        self._buffer_stream(record, rest, end_stream)

    def _attach(self, record: _records.StreamRecord, session: _records.SessionRecord) -> None:
        """Make a remote stream part of an open session (stream credit is checked here)."""
        if session.flow:
            credit = session.recv_uni if record.is_unidirectional else session.recv_bidi
            assert credit is not None
            try:
                credit.on_receive(1)
            except ProtocolError:
                self._reject_stream(record, WTErrorCode.WT_FLOW_CONTROL_ERROR)
                raise
            record.counted = True
        record.kind = _constants.KIND_WT
        record.session = session
        session.streams.add(record.stream_id)
        if record.is_unidirectional:
            session.peer_uni_opened += 1
        else:
            session.peer_bidi_opened += 1
        session.last_activity = self._now
        self._events.append(
            StreamOpened(session.session_id, record.stream_id, record.is_unidirectional)
        )

    def _deliver(self, record: _records.StreamRecord, data: bytes, end_stream: bool) -> None:
        """Hand stream bytes to the application, after flow-control accounting."""
        if not record.recv_open:
            return
        session = record.session
        assert session is not None
        if record.stopped:
            self._discard(record, session, data, end_stream)
            return
        size = len(data)
        if size:
            if not self._account_received(record, session, size):
                return
            session.last_activity = self._now
        # tuple.__new__ builds the event without the Python-level __new__ (hot path).
        self._events.append(
            _new_event(StreamDataReceived, (record.stream_id, data, end_stream, session.session_id))
        )
        if end_stream:
            record.recv_open = False
            self._maybe_forget(record)

    def _account_received(
        self, record: _records.StreamRecord, session: _records.SessionRecord, size: int
    ) -> bool:
        """Count stream body bytes against session credit; False when the peer overran it."""
        if session.flow:
            credit = session.recv_data
            assert credit is not None
            try:
                credit.on_receive(size)
            except ProtocolError:
                self._abort_session(session, WTErrorCode.WT_FLOW_CONTROL_ERROR, False)
                return False
        record.received += size
        session.data_received += size
        return True

    def _discard(
        self,
        record: _records.StreamRecord,
        session: _records.SessionRecord,
        data: bytes,
        end_stream: bool,
    ) -> None:
        """Data on a stream we stopped: counted and consumed at once, never delivered."""
        size = len(data)
        if size:
            if not self._account_received(record, session, size):
                return
            if session.flow:
                self.consume_data(session.session_id, size)
        if end_stream:
            record.recv_open = False
            self._maybe_forget(record)

    def _buffer_stream(self, record: _records.StreamRecord, rest: bytes, end_stream: bool) -> None:
        if self._buffered_count >= self._config.max_buffered_streams:
            self._reject_stream(record, WTErrorCode.WT_BUFFERED_STREAM_REJECTED)
            return
        self._buffered_count += 1
        record.kind = _constants.KIND_BUFFERED
        self._hold(record, rest, end_stream)

    def _hold(self, record: _records.StreamRecord, data: bytes, end_stream: bool) -> None:
        if data:
            record.held_size += len(data)
            if record.held_size > self._config.max_buffered_stream_data:
                self._buffered_count -= 1
                self._reject_stream(record, WTErrorCode.WT_BUFFERED_STREAM_REJECTED)
                return
            record.held.append(data)
        if end_stream:
            record.held_fin = True

    def _flush_buffered(self, session: _records.SessionRecord) -> None:
        """Deliver the streams and datagrams that waited for this session."""
        waiting = [
            record
            for record in self._streams.values()
            if record.kind == _constants.KIND_BUFFERED and record.session_id == session.session_id
        ]
        waiting.sort(key=lambda record: record.stream_id)
        for record in waiting:
            if not session.is_open():
                return
            self._buffered_count -= 1
            held = record.held
            fin = record.held_fin
            record.held = []
            record.held_size = 0
            try:
                self._attach(record, session)
            except ProtocolError:
                self._abort_session(session, WTErrorCode.WT_FLOW_CONTROL_ERROR, False)
                return
            if not held and fin:
                self._deliver(record, b"", True)
            for index, chunk in enumerate(held):
                self._deliver(record, chunk, fin and index == len(held) - 1)
        if self._buffered_datagrams:
            keep: deque[tuple[int, bytes]] = deque()
            for session_id, payload in self._buffered_datagrams:
                if session_id == session.session_id:
                    self._deliver_datagram(session, payload)
                else:
                    keep.append((session_id, payload))
            self._buffered_datagrams = keep

    def _reject_buffered(self, session_id: int, error_code: int) -> None:
        for record in list(self._streams.values()):
            if record.kind == _constants.KIND_BUFFERED and record.session_id == session_id:
                self._buffered_count -= 1
                self._reject_stream(record, error_code)

    def _reject_stream(self, record: _records.StreamRecord, error_code: int) -> None:
        """Refuse an incoming WebTransport stream: reset and stop it."""
        self._streams_rejected += 1
        if record.send_open:
            self._transport.reset_stream(record.stream_id, error_code)
            record.send_open = False
        if record.recv_open:
            self._transport.stop_stream(record.stream_id, error_code)
            record.recv_open = False
        record.kind = _constants.KIND_IGNORED
        record.held = []
        record.held_size = 0
        record.session = None
        self._maybe_forget(record)

    def _maybe_forget(self, record: _records.StreamRecord) -> None:
        """Drop a stream's record once both directions are finished."""
        if record.send_open or record.recv_open or record.kind == _constants.KIND_BUFFERED:
            return
        if record.kind == _constants.KIND_REQUEST:
            return  # kept while its session record lives
        self._streams.pop(record.stream_id, None)
        session = record.session
        if session is None:
            return
        session.streams.discard(record.stream_id)
        session.streams_closed += 1
        if record.is_local:
            return
        if record.is_unidirectional:
            session.peer_uni_closed += 1
        else:
            session.peer_bidi_closed += 1
        if record.counted and session.flow and session.is_open():
            self._give_stream_credit(session, record.is_unidirectional)

    def _give_stream_credit(self, session: _records.SessionRecord, uni: bool) -> None:
        """A peer stream of the session closed: its credit may be granted again."""
        credit = session.recv_uni if uni else session.recv_bidi
        assert credit is not None
        new_limit = credit.on_consume(1)
        if new_limit >= 0:
            capsule_type = (
                _capsule.CAPSULE_MAX_STREAMS_UNI if uni else _capsule.CAPSULE_MAX_STREAMS_BIDI
            )
            self._send_capsule(session, _capsule.encode_varint_capsule(capsule_type, new_limit))

    def _on_stream_reset(
        self, record: _records.StreamRecord, error_code: int, final_size: int
    ) -> None:
        kind = record.kind
        if kind in (
            _constants.KIND_CONTROL,
            _constants.KIND_QPACK_ENCODER,
            _constants.KIND_QPACK_DECODER,
        ):
            raise ClosedCriticalStream("the peer reset a critical stream")
        if kind == _constants.KIND_REQUEST:
            self._on_connect_stream_ended(record, error_code)
            return
        if kind == _constants.KIND_WT and record.recv_open:
            session = record.session
            assert session is not None
            if session.flow and final_size >= 0:
                # Flow control counts the final size minus the preamble (draft section 5.4).
                extra = final_size - record.header_len - record.received
                if extra > 0:
                    credit = session.recv_data
                    assert credit is not None
                    try:
                        credit.on_receive(extra)
                    except ProtocolError:
                        self._abort_session(session, WTErrorCode.WT_FLOW_CONTROL_ERROR, False)
                        return
                    record.received += extra
                    session.data_received += extra
                    # The bytes were never delivered: they count as consumed at once.
                    self.consume_data(session.session_id, extra)
            session.resets_received += 1
            record.recv_open = False
            if not record.stopped:
                self._events.append(
                    StreamReset(
                        record.stream_id,
                        session.session_id,
                        h3_error_to_app(error_code),
                        error_code,
                    )
                )
            self._maybe_forget(record)
            return
        if kind == _constants.KIND_PENDING:
            self._on_headerless_reset(record, final_size)
            return
        if kind == _constants.KIND_BUFFERED:
            self._buffered_count -= 1
            record.held = []
            record.held_size = 0
            record.kind = _constants.KIND_IGNORED
        record.recv_open = False
        self._maybe_forget(record)

    def _on_headerless_reset(self, record: _records.StreamRecord, final_size: int) -> None:
        """A peer stream reset before it said what it is.

        A plain RESET_STREAM drops what the peer had not sent yet, and reset
        data is never retransmitted, so a WebTransport stream's header can be
        lost with the rest: its session never learns of it, while the peer
        counted it.  With exactly one flow-controlled session on the
        connection, that session gives back the stream's credit and the body
        bytes of its final size (at worst the peer gets that much more).
        """
        record.kind = _constants.KIND_IGNORED
        record.recv_open = False
        record.preamble = b""
        if record.send_open:
            # Nothing will ever be written on it: close our side too.
            self._transport.reset_stream(record.stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
            record.send_open = False
        session = self._sole_session()
        if session is not None and session.flow and session.is_open():
            self._give_stream_credit(session, record.is_unidirectional)
            header_len = len(
                _frames.encode_wt_stream_header(session.session_id, record.is_unidirectional)
            )
            body = final_size - header_len
            data_credit = session.recv_data
            assert data_credit is not None
            if body > 0 and body <= _flow.MAX_DATA_LIMIT:
                new_limit = data_credit.on_consume(body)
                if new_limit >= 0:
                    self._send_capsule(
                        session,
                        _capsule.encode_varint_capsule(_capsule.CAPSULE_MAX_DATA, new_limit),
                    )
        self._maybe_forget(record)

    def _sole_session(self) -> _records.SessionRecord | None:
        """The connection's only live session, or None when there are none or several."""
        found = None
        for session in self._sessions.values():
            if session.is_live():
                if found is not None:
                    return None
                found = session
        return found

    def _on_stop_sending(self, record: _records.StreamRecord, error_code: int) -> None:
        kind = record.kind
        if kind == _constants.KIND_LOCAL:
            raise ClosedCriticalStream("the peer stopped one of our critical streams")
        if kind == _constants.KIND_REQUEST:
            session = record.session
            if (
                self._is_client
                and error_code == H3ErrorCode.H3_NO_ERROR
                and session is not None
                and session.state == _constants.STATE_CONNECTING
            ):
                # The server answered in full and needs no more of the request
                # (RFC 9114 section 4.1): its response is on its way.
                session.connect_send_open = False
                record.send_open = False
                return
            self._on_connect_stream_ended(record, error_code)
            return
        if not record.send_open:
            return
        # RFC 9000 section 3.5: answer STOP_SENDING with RESET_STREAM.
        dropped = self._transport.reset_stream(record.stream_id, error_code)
        record.send_open = False
        if kind == _constants.KIND_WT:
            session = record.session
            assert session is not None
            self._return_unsent_credit(record, session, dropped)
            self._events.append(
                StreamStopped(
                    record.stream_id, session.session_id, h3_error_to_app(error_code), error_code
                )
            )
        self._maybe_forget(record)

    # Datagrams

    def _on_datagram(self, data: bytes) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        if size == 0:
            raise DatagramError("datagram without a quarter stream id")
        length = _varint.varint_length(data[0])
        if length > size:
            raise DatagramError("datagram with a truncated quarter stream id")
        quarter = _varint.read_varint(data, 0, length)
        if quarter > _MAX_QSID:
            raise DatagramError(f"quarter stream id {quarter} is out of range")
        session_id = quarter << 2
        session = self._sessions.get(session_id)
        payload = data[length:]
        if session is not None and session.is_open():
            self._deliver_datagram(session, payload)
        elif (session is not None and session.is_live()) or (
            session is None and not self._is_client and session_id not in self._closed_sessions
        ):
            if len(self._buffered_datagrams) >= self._config.max_buffered_datagrams:
                self._datagrams_dropped += 1
                if session is not None:
                    session.datagrams_dropped += 1
            else:
                self._buffered_datagrams.append((session_id, payload))
        else:
            self._datagrams_dropped += 1
            if session is not None:
                session.datagrams_dropped += 1

    def _deliver_datagram(self, session: _records.SessionRecord, payload: bytes) -> None:
        session.datagrams_received += 1
        session.datagram_bytes_received += len(payload)
        session.last_activity = self._now
        self._events.append(_new_event(DatagramReceived, (session.session_id, payload)))

    def _drop_buffered_datagrams(self, session_id: int) -> None:
        if self._buffered_datagrams:
            before = len(self._buffered_datagrams)
            self._buffered_datagrams = deque(
                item for item in self._buffered_datagrams if item[0] != session_id
            )
            self._datagrams_dropped += before - len(self._buffered_datagrams)

    # Control and QPACK streams

    def _on_request(
        self, record: _records.StreamRecord, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Server: a request arrived; if it is a WebTransport CONNECT, a session is requested."""
        stream_id = record.stream_id
        request = parse_request_untrusted(headers, allow_tokens=self._dialect == Dialect.DRAFT07)
        if stream_id > self._max_request_id:
            self._max_request_id = stream_id
        if request.method != "CONNECT" or request.protocol is None:
            self._answer_and_forget(record, 405)
            return
        if request.protocol not in UPGRADE_TOKENS:
            self._answer_and_forget(record, 501)
            return
        if request.scheme not in ("https", "http"):
            raise MessageError(f"extended CONNECT with scheme {request.scheme!r}")
        if self._goaway_sent >= 0 and stream_id >= self._goaway_sent:
            self._refuse_request(record, H3ErrorCode.H3_REQUEST_REJECTED)
            return
        dialect = self._dialect
        if (
            dialect is None
            and request.protocol == b"webtransport-h3"
            and Dialect.DRAFT16 in self._config.dialects
            and self._datagrams_enabled
        ):
            # A final-version client need not announce WT_ENABLED (draft section 3.1).
            dialect = Dialect.DRAFT16
        if dialect is None:
            raise MessageError("WebTransport CONNECT without the SETTINGS WebTransport requires")
        if self._live_sessions() >= self._session_limit():
            self._refuse_request(record, H3ErrorCode.H3_REQUEST_REJECTED)
            return
        session = _records.SessionRecord(
            stream_id, False, dialect, self._config.max_capsule_size, self._now
        )
        session.authority = request.authority
        session.path = request.path
        session.origin = request.origin
        session.protocols = request.protocols
        session.request_headers = request.headers
        session.draft02_header = request.draft02
        self._sessions[stream_id] = session
        record.session_id = stream_id
        record.session = session
        self._init_session_flow(session)
        self._events.append(
            SessionRequested(
                stream_id,
                request.authority,
                request.path,
                request.origin,
                request.protocols,
                request.headers,
                dialect,
            )
        )

    def _refuse_request(self, record: _records.StreamRecord, error_code: int) -> None:
        self._streams_rejected += 1
        self._transport.reset_stream(record.stream_id, error_code)
        self._transport.stop_stream(record.stream_id, error_code)
        record.send_open = False
        record.recv_open = False
        record.kind = _constants.KIND_IGNORED
        self._maybe_forget(record)
        self._reject_buffered(record.stream_id, WTErrorCode.WT_BUFFERED_STREAM_REJECTED)
        self._remember_closed(record.stream_id)

    def _on_response(
        self, record: _records.StreamRecord, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Client: the response to our CONNECT."""
        session = record.session
        assert session is not None
        status = parse_status_untrusted(headers)
        if 100 <= status <= 199:
            return  # informational
        if session.state != _constants.STATE_CONNECTING:
            if session.is_live():
                raise FrameUnexpected("a second response on a CONNECT stream")
            return
        session.status = status
        session.response_headers = tuple(headers)
        if 200 <= status <= 299:
            for name, value in headers:
                if name == b"wt-protocol":
                    chosen = parse_sf_string(value, allow_tokens=session.dialect == Dialect.DRAFT07)
                    # A value the client did not offer is ignored, as Chromium does.
                    if chosen is not None and chosen in session.protocols:
                        session.protocol = chosen
            self._remote_transition(session, SessionInput.RESPONSE_OK)
            self._establish(session)
            return
        self._remote_transition(session, SessionInput.RESPONSE_REJECT)
        session.closed_at = self._now
        session.closed_by_peer = True
        self._events.append(SessionRejected(session.session_id, status, tuple(headers)))
        # Streams we opened optimistically are of no use now.
        self._terminate_streams(session)
        self._reject_buffered(session.session_id, WTErrorCode.WT_BUFFERED_STREAM_REJECTED)
        self._drop_buffered_datagrams(session.session_id)
        if session.connect_send_open:
            self._transport.send_stream_data(session.session_id, b"", True)
            session.connect_send_open = False
        self._remember_closed(session.session_id)

    def _on_connect_data(self, record: _records.StreamRecord, payload: bytes) -> None:
        """DATA on a CONNECT stream: the capsules of its session."""
        session = record.session
        if session is None:
            raise FrameUnexpected("DATA before HEADERS on a request stream")
        if not session.is_live():
            if session.close_received:
                raise MessageError("data after WT_CLOSE_SESSION")
            return
        if session.state == _constants.STATE_CONNECTING and session.status < 0:
            raise FrameUnexpected("DATA before the response HEADERS")
        try:
            capsules = session.parser.feed(payload)
        except ProtocolError as exc:
            self._abort_session(session, exc.error_code, False)
            return
        for capsule_type, value in capsules:
            if session.state == _constants.STATE_REQUESTED:
                # Not processed before we answer (draft-16 section 3.1); bounded.
                if len(session.pending_capsules) >= self._config.max_pending_capsules:
                    raise ProtocolError(
                        "too many capsules before the session was accepted",
                        error_code=H3ErrorCode.H3_EXCESSIVE_LOAD,
                    )
                session.pending_capsules.append((capsule_type, value))
                continue
            if not session.is_live():
                if session.close_received:
                    raise MessageError("capsule after WT_CLOSE_SESSION")
                return
            self._on_capsule(session, capsule_type, value)

    def _on_capsule(self, session: _records.SessionRecord, capsule_type: int, value: bytes) -> None:
        try:
            if capsule_type == _capsule.CAPSULE_DATAGRAM:
                if session.is_open():
                    self._deliver_datagram(session, value)
            elif capsule_type == _capsule.CAPSULE_CLOSE_SESSION:
                code, reason = _capsule.parse_close_session(value)
                action = self._remote_transition(session, SessionInput.CLOSE_RECEIVED)
                if action == SessionAction.CLOSE:
                    session.close_received = True
                    session.close_code = code
                    session.close_reason = reason
                    if session.connect_send_open:
                        # Answer with FIN (draft section 6).
                        self._transport.send_stream_data(session.session_id, b"", True)
                        session.connect_send_open = False
                    self._finish_session(session, True, -1)
            elif capsule_type == _capsule.CAPSULE_DRAIN_SESSION:
                action = self._remote_transition(session, SessionInput.DRAIN_RECEIVED)
                if action == SessionAction.DRAIN:
                    self._events.append(SessionDraining(session.session_id))
            elif session.flow:
                self._on_flow_capsule(session, capsule_type, _capsule.parse_varint_payload(value))
            # Without flow control its capsules are ignored (draft section 5.1).
        except ProtocolError as exc:
            self._abort_session(session, exc.error_code, False)

    def _on_flow_capsule(
        self, session: _records.SessionRecord, capsule_type: int, value: int
    ) -> None:
        strict = session.strict_flow
        if capsule_type == _capsule.CAPSULE_MAX_DATA:
            credit = session.send_data
            assert credit is not None
            if credit.update_limit(value, strict):
                self._events.append(DataCreditAvailable(session.session_id, value))
        elif capsule_type in (_capsule.CAPSULE_MAX_STREAMS_BIDI, _capsule.CAPSULE_MAX_STREAMS_UNI):
            uni = capsule_type == _capsule.CAPSULE_MAX_STREAMS_UNI
            credit = session.send_uni if uni else session.send_bidi
            assert credit is not None
            if credit.update_limit(value, strict):
                self._events.append(StreamsCreditAvailable(session.session_id, uni, value))
        elif capsule_type == _capsule.CAPSULE_DATA_BLOCKED:
            receive = session.recv_data
            assert receive is not None
            receive.on_peer_blocked(value)
        elif capsule_type in (
            _capsule.CAPSULE_STREAMS_BLOCKED_BIDI,
            _capsule.CAPSULE_STREAMS_BLOCKED_UNI,
        ):
            uni = capsule_type == _capsule.CAPSULE_STREAMS_BLOCKED_UNI
            receive = session.recv_uni if uni else session.recv_bidi
            assert receive is not None
            receive.on_peer_blocked(value)

    def _on_connect_fin(self, record: _records.StreamRecord) -> None:
        """The peer ended its side of a CONNECT stream."""
        record.recv_open = False
        session = record.session
        if session is None:
            # A request that ended before its HEADERS: nothing to answer.
            record.kind = _constants.KIND_IGNORED
            record.send_open = False
            self._transport.reset_stream(record.stream_id, H3ErrorCode.H3_REQUEST_INCOMPLETE)
            self._maybe_forget(record)
            return
        session.connect_recv_open = False
        if not session.is_live():
            self._forget_connect_stream(record, session)
            return
        try:
            session.parser.feed_eof()
        except ProtocolError as exc:
            self._abort_session(session, exc.error_code, False)
            return
        action = self._remote_transition(session, SessionInput.FIN_RECEIVED)
        if action == SessionAction.CLOSE:
            session.close_code = 0
            session.close_reason = ""
            if session.connect_send_open:
                self._transport.send_stream_data(session.session_id, b"", True)
                session.connect_send_open = False
            self._finish_session(session, True, -1)
        elif action == SessionAction.ABORT:
            if session.connect_send_open:
                self._transport.reset_stream(session.session_id, H3ErrorCode.H3_REQUEST_CANCELLED)
                session.connect_send_open = False
            self._finish_session(session, True, H3ErrorCode.H3_REQUEST_INCOMPLETE)
        self._forget_connect_stream(record, session)

    def _on_connect_stream_ended(self, record: _records.StreamRecord, error_code: int) -> None:
        """The peer reset (or stopped) a CONNECT stream: the session ends abruptly."""
        session = record.session
        record.recv_open = False
        if session is None:
            if record.send_open:
                self._transport.reset_stream(record.stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
                record.send_open = False
            record.kind = _constants.KIND_IGNORED
            self._maybe_forget(record)
            return
        session.connect_recv_open = False
        if session.is_live():
            self._remote_transition(session, SessionInput.RESET_RECEIVED)
            if session.connect_send_open:
                self._transport.reset_stream(session.session_id, WTErrorCode.WT_SESSION_GONE)
                session.connect_send_open = False
            self._finish_session(session, True, error_code)
        elif session.connect_send_open:
            self._transport.reset_stream(session.session_id, WTErrorCode.WT_SESSION_GONE)
            session.connect_send_open = False
        self._forget_connect_stream(record, session)

    def _forget_connect_stream(
        self, record: _records.StreamRecord, session: _records.SessionRecord
    ) -> None:
        if not session.connect_send_open and not session.connect_recv_open:
            self._streams.pop(record.stream_id, None)

    def _settings_ready(self, waiting: list[int]) -> None:
        """Client: send the CONNECT requests that waited for the server's SETTINGS."""
        if waiting and self._dialect is None:
            self._close_connection(
                WTErrorCode.WT_REQUIREMENTS_NOT_MET,
                "the server does not support WebTransport",
                False,
            )
            return
        sent = 0
        limit = self._session_limit()
        for session_id in waiting:
            session = self._sessions.get(session_id)
            if session is None or not session.is_live():
                continue
            if sent >= limit:
                # More sessions were asked for than this connection may carry.
                session.state = _constants.STATE_CLOSED
                session.connect_send_open = False
                session.connect_recv_open = False
                self._streams.pop(session_id, None)
                self._finish_session(session, False, H3ErrorCode.H3_REQUEST_REJECTED)
                continue
            sent += 1
            self._send_request(session)

    def _goaway_ready(self, goaway_id: int) -> None:
        """Client: unprocessed requests fail; established sessions drain."""
        if not self._is_client:
            return
        for session in list(self._sessions.values()):
            if not session.is_live():
                continue
            if session.session_id >= goaway_id and session.state == _constants.STATE_CONNECTING:
                # The server will not process this request: it failed, retry elsewhere.
                session.state = _constants.STATE_CLOSED
                self._reset_connect_stream(session, H3ErrorCode.H3_REQUEST_CANCELLED)
                self._finish_session(session, True, H3ErrorCode.H3_REQUEST_REJECTED)
                continue
            action = self._remote_transition(session, SessionInput.GOAWAY_RECEIVED)
            if action == SessionAction.DRAIN:
                self._events.append(SessionDraining(session.session_id))
