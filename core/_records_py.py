"""The engine's per-stream and per-session records.

Plain containers with the little logic that belongs to one record; the
engine owns the protocol.  This file is the source of both the pure-Python
module and, with ``_records_c.pxd``, the compiled ``anywt.core._records_c``.
"""

from __future__ import annotations

from . import _capsule_py as _capsule
from . import _constants
from . import _flow_py as _flow
from . import _varint_py as _varint
from .diagnostics import SessionSnapshot
from .events import Dialect, Headers
from .session_state import SessionState

__all__ = ["StreamRecord", "SessionRecord"]


class StreamRecord:
    """One QUIC stream as the engine sees it."""

    def __init__(self, stream_id: int, kind: int, is_local: bool, is_unidirectional: bool) -> None:
        self.stream_id = stream_id
        self.kind = kind
        self.is_local = is_local
        self.is_unidirectional = is_unidirectional
        self.session_id = -1
        self.session: SessionRecord | None = None
        #: Bytes of an incoming stream's type/preamble read so far.
        self.preamble = b""
        #: Length of the WebTransport preamble (type or signal, then session id).
        self.header_len = 0
        #: Stream body bytes received (flow control and final-size accounting).
        self.received = 0
        self.sent = 0
        self.recv_open = not (is_local and is_unidirectional)
        self.send_open = not (is_unidirectional and not is_local)
        #: HTTP/3 frame parser (request and control streams).
        self.reader: object = None
        #: Data held while buffered (KIND_BUFFERED) or while QPACK blocks the stream.
        self.held: list[bytes] = []
        self.held_size = 0
        self.held_fin = False
        #: Frames parsed while QPACK blocks this stream's headers.
        self.pending_frames: list[tuple[int, bytes]] = []
        #: Counted against the session's incoming-stream credit.
        self.counted = False
        #: QPACK could not decode this stream's headers yet.
        self.blocked = False
        #: We sent STOP_SENDING: what still arrives is counted, not delivered.
        self.stopped = False


class SessionRecord:
    """One WebTransport session."""

    def __init__(
        self,
        session_id: int,
        is_client: bool,
        dialect: Dialect | None,
        max_capsule_size: int,
        now: float,
    ) -> None:
        self.session_id = session_id
        self.is_client = is_client
        self.dialect = dialect
        #: The quarter stream id that starts each of its datagrams.
        self.datagram_prefix = _varint.varint_bytes(session_id >> 2)
        self.state = _constants.STATE_CONNECTING if is_client else _constants.STATE_REQUESTED
        self.parser = _capsule.CapsuleParser(max_capsule_size)
        self.authority = ""
        self.path = ""
        self.origin: str | None = None
        self.request_headers: Headers = ()
        self.protocols: tuple[str, ...] = ()
        self.protocol: str | None = None
        self.status = -1
        self.response_headers: Headers = ()
        self.draft02_header = False
        #: The request is sent (client) or answered (server).
        self.request_sent = False
        #: Capsules that arrived before the server accepted (processed on accept).
        self.pending_capsules: list[tuple[int, bytes]] = []
        #: WebTransport data streams of this session.
        self.streams: set[int] = set()
        # Flow control, when negotiated.
        self.flow = False
        self.strict_flow = True
        self.send_data: _flow.SendCredit | None = None
        self.recv_data: _flow.ReceiveCredit | None = None
        self.send_bidi: _flow.SendCredit | None = None
        self.send_uni: _flow.SendCredit | None = None
        self.recv_bidi: _flow.ReceiveCredit | None = None
        self.recv_uni: _flow.ReceiveCredit | None = None
        # The CONNECT stream.
        self.connect_send_open = True
        self.connect_recv_open = True
        self.close_received = False
        # Statistics.
        self.data_sent = 0
        self.data_received = 0
        self.data_consumed = 0
        self.local_bidi_opened = 0
        self.local_uni_opened = 0
        self.peer_bidi_opened = 0
        self.peer_uni_opened = 0
        self.peer_bidi_closed = 0
        self.peer_uni_closed = 0
        self.streams_closed = 0
        self.resets_sent = 0
        self.resets_received = 0
        self.datagrams_sent = 0
        self.datagram_bytes_sent = 0
        self.datagrams_received = 0
        self.datagram_bytes_received = 0
        self.datagrams_dropped = 0
        self.protocol_errors = 0
        self.created_at = now
        self.established_at = -1.0
        self.closed_at = -1.0
        self.last_activity = now
        self.close_code = -1
        self.close_reason: str | None = None
        self.close_error_code = -1
        self.closed_by_peer = False

    def is_open(self) -> bool:
        """Established and not yet closed: streams and datagrams flow."""
        state = self.state
        return state == _constants.STATE_CONNECTED or state == _constants.STATE_DRAINING

    def is_live(self) -> bool:
        """Not yet closed or rejected."""
        state = self.state
        return state != _constants.STATE_CLOSED and state != _constants.STATE_REJECTED

    def enable_flow_control(
        self,
        peer_max_data: int,
        peer_max_bidi: int,
        peer_max_uni: int,
        local_max_data: int,
        local_max_bidi: int,
        local_max_uni: int,
        data_window: int,
        streams_window: int,
        auto: bool,
        strict: bool,
    ) -> None:
        """Start session flow control with the SETTINGS values of both sides."""
        self.flow = True
        self.strict_flow = strict
        self.send_data = _flow.SendCredit(peer_max_data, _flow.MAX_DATA_LIMIT)
        self.send_bidi = _flow.SendCredit(peer_max_bidi, _flow.MAX_STREAMS_LIMIT)
        self.send_uni = _flow.SendCredit(peer_max_uni, _flow.MAX_STREAMS_LIMIT)
        self.recv_data = _flow.ReceiveCredit(
            local_max_data, data_window, auto, _flow.MAX_DATA_LIMIT
        )
        self.recv_bidi = _flow.ReceiveCredit(
            local_max_bidi, streams_window, auto, _flow.MAX_STREAMS_LIMIT
        )
        self.recv_uni = _flow.ReceiveCredit(
            local_max_uni, streams_window, auto, _flow.MAX_STREAMS_LIMIT
        )

    def snapshot(self, buffered_streams: int) -> SessionSnapshot:
        """A frozen copy of the session's state and counters."""
        send_data = self.send_data
        recv_data = self.recv_data
        send_bidi = self.send_bidi
        send_uni = self.send_uni
        recv_bidi = self.recv_bidi
        recv_uni = self.recv_uni
        blocked_at = None
        peer_blocked_at = None
        if send_data is not None and send_data.available() <= 0:
            blocked_at = send_data.limit
        if recv_data is not None and recv_data.peer_blocked_at >= 0:
            peer_blocked_at = recv_data.peer_blocked_at
        return SessionSnapshot(
            session_id=self.session_id,
            is_client=self.is_client,
            state=SessionState(self.state),
            dialect=self.dialect,
            path=self.path,
            authority=self.authority,
            origin=self.origin,
            headers=self.request_headers,
            protocols=self.protocols,
            protocol=self.protocol,
            status=None if self.status < 0 else self.status,
            flow_control=self.flow,
            local_max_data=None if recv_data is None else recv_data.limit,
            peer_max_data=None if send_data is None else send_data.limit,
            data_sent=self.data_sent,
            data_received=self.data_received,
            data_consumed=self.data_consumed,
            data_blocked_at=blocked_at,
            peer_data_blocked_at=peer_blocked_at,
            local_max_streams_bidi=None if recv_bidi is None else recv_bidi.limit,
            local_max_streams_uni=None if recv_uni is None else recv_uni.limit,
            peer_max_streams_bidi=None if send_bidi is None else send_bidi.limit,
            peer_max_streams_uni=None if send_uni is None else send_uni.limit,
            local_streams_bidi_opened=self.local_bidi_opened,
            local_streams_uni_opened=self.local_uni_opened,
            peer_streams_bidi_opened=self.peer_bidi_opened,
            peer_streams_uni_opened=self.peer_uni_opened,
            peer_streams_bidi_closed=self.peer_bidi_closed,
            peer_streams_uni_closed=self.peer_uni_closed,
            streams_closed=self.streams_closed,
            streams_reset_sent=self.resets_sent,
            streams_reset_received=self.resets_received,
            active_streams=tuple(sorted(self.streams)),
            buffered_streams=buffered_streams,
            datagrams_sent=self.datagrams_sent,
            datagram_bytes_sent=self.datagram_bytes_sent,
            datagrams_received=self.datagrams_received,
            datagram_bytes_received=self.datagram_bytes_received,
            datagrams_dropped=self.datagrams_dropped,
            protocol_errors=self.protocol_errors,
            created_at=self.created_at,
            established_at=None if self.established_at < 0 else self.established_at,
            closed_at=None if self.closed_at < 0 else self.closed_at,
            last_activity=self.last_activity,
            close_code=None if self.close_code < 0 else self.close_code,
            close_reason=self.close_reason,
            close_error_code=None if self.close_error_code < 0 else self.close_error_code,
            closed_by_peer=None if self.closed_at < 0 else self.closed_by_peer,
        )
