"""Diagnostics and statistics of sessions and connections: frozen snapshots."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from .core.diagnostics import SessionSnapshot

__all__ = ["SessionDiagnostics", "SessionStats", "ConnectionDiagnostics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStats:
    """Counters of one session (the fields of the older ``get_session_stats()``).

    Timestamps are wall-clock seconds (``time.time()``).
    """

    session_id: int
    created_at: float
    ready_at: float | None
    closed_at: float | None
    streams_created: int
    streams_closed: int
    stream_errors: int
    bidirectional_streams: int
    unidirectional_streams: int
    datagrams_sent: int
    datagrams_received: int
    datagrams_dropped: int
    datagram_send_errors: int
    protocol_errors: int
    bytes_sent: int
    bytes_received: int
    #: QUIC packets of the whole connection (shared by its sessions), when the stack counts them.
    packets_sent: int | None
    packets_received: int | None
    send_errors: int
    receive_errors: int
    last_active: float

    @property
    def active_streams(self) -> int:
        return self.streams_created - self.streams_closed

    @property
    def uptime(self) -> float:
        """Seconds since the session became ready (until it closed)."""
        if self.ready_at is None:
            return 0.0
        end = self.closed_at if self.closed_at is not None else time.time()
        return max(0.0, end - self.ready_at)

    @property
    def last_activity(self) -> float:
        return self.last_active

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["uptime"] = self.uptime
        data["active_streams"] = self.active_streams
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDiagnostics:
    """Everything known about one session's protocol state.

    "local" limits are those we grant the peer, "peer" limits those it grants
    us; they are None when flow control is not negotiated.
    """

    session_id: int
    control_stream_id: int
    state: str
    is_client: bool
    path: str
    headers: dict[str, str]
    wt_available_protocols: tuple[str, ...]
    wt_protocol: str | None
    draft: str | None
    flow_control_negotiated: bool
    created_at: float
    ready_at: float | None
    closed_at: float | None
    close_code: int | None
    close_reason: str | None
    local_max_data: int | None
    local_data_sent: int
    peer_max_data: int | None
    peer_data_sent: int
    local_data_consumed: int
    local_max_streams_bidi: int | None
    local_max_streams_uni: int | None
    local_streams_bidi_opened: int
    local_streams_uni_opened: int
    peer_max_streams_bidi: int | None
    peer_max_streams_uni: int | None
    peer_streams_bidi_opened: int
    peer_streams_uni_opened: int
    peer_streams_bidi_closed: int
    peer_streams_uni_closed: int
    datagrams_sent: int
    datagram_bytes_sent: int
    datagrams_received: int
    datagram_bytes_received: int
    datagrams_dropped: int
    datagram_receive_buffer_size: int
    max_datagram_size: int | None
    active_streams: tuple[int, ...]
    blocked_streams: tuple[int, ...]
    data_blocked_at: int | None
    peer_data_blocked_at: int | None
    protocol_errors: int
    is_connection_active: bool
    stats: SessionStats

    @property
    def send_credit_available(self) -> int | None:
        """Stream bytes we may still send before WT_MAX_DATA (None without flow control)."""
        if self.peer_max_data is None:
            return None
        return self.peer_max_data - self.local_data_sent

    @property
    def receive_credit_available(self) -> int | None:
        """Stream bytes the peer may still send us."""
        if self.local_max_data is None:
            return None
        return self.local_max_data - self.peer_data_sent

    # Names of the newer session documents.
    @property
    def data_sent(self) -> int:
        return self.local_data_sent

    @property
    def data_received(self) -> int:
        return self.peer_data_sent

    @property
    def local_data_received(self) -> int:
        return self.peer_data_sent

    @property
    def data_consumed(self) -> int:
        return self.local_data_consumed

    @property
    def issues(self) -> list[str]:
        """Readable hints of what may be wrong."""
        found = []
        if self.state not in ("connected", "closed"):
            found.append(f"session stuck in state {self.state}")
        if not self.is_connection_active and self.state != "closed":
            found.append("connection not available")
        if self.data_blocked_at is not None:
            found.append(f"sending is blocked by the peer's WT_MAX_DATA ({self.data_blocked_at})")
        if self.datagram_receive_buffer_size > 100:
            found.append("large datagram receive buffer: the application reads slowly")
        if self.datagrams_dropped:
            found.append(f"{self.datagrams_dropped} datagrams dropped")
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionDiagnostics:
    """The QUIC and HTTP/3 state of one connection."""

    is_client: bool
    backend: str
    local_address: tuple[str, int] | None
    remote_address: tuple[str, int] | None
    draft: str | None
    flow_control_negotiated: bool | None
    local_settings: dict[int, int]
    peer_settings: dict[int, int] | None
    sessions: int
    max_datagram_size: int | None
    key_updates: int
    goaway_sent: int | None
    goaway_received: int | None
    streams_rejected: int
    datagrams_dropped: int
    closed: bool
    close_error_code: int | None
    close_reason: str | None
    quic: dict[str, float | int | None]
    #: The endpoint's I/O counters (shared by a server's connections): datagrams and
    #: bytes each way, ``send_blocked`` / ``send_dropped`` while the socket was full...
    io: dict[str, int]


def headers_as_text(headers: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    """Header pairs as a str dict (later duplicates joined with ", ")."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def snapshot_to_diagnostics(
    snapshot: SessionSnapshot,
    *,
    state: str,
    wall_offset: float,
    datagram_queue: int,
    max_datagram_size: int | None,
    blocked_streams: tuple[int, ...],
    connection_active: bool,
    stats: SessionStats,
) -> SessionDiagnostics:
    """Turn the engine's snapshot into the public diagnostics (clock turned into wall time)."""

    def wall(value: float | None) -> float | None:
        return None if value is None else value + wall_offset

    return SessionDiagnostics(
        session_id=snapshot.session_id,
        control_stream_id=snapshot.session_id,
        state=state,
        is_client=snapshot.is_client,
        path=snapshot.path,
        headers=headers_as_text(snapshot.headers),
        wt_available_protocols=snapshot.protocols,
        wt_protocol=snapshot.protocol,
        draft=None if snapshot.dialect is None else snapshot.dialect.label,
        flow_control_negotiated=snapshot.flow_control,
        created_at=snapshot.created_at + wall_offset,
        ready_at=wall(snapshot.established_at),
        closed_at=wall(snapshot.closed_at),
        close_code=snapshot.close_code,
        close_reason=snapshot.close_reason,
        local_max_data=snapshot.local_max_data,
        local_data_sent=snapshot.data_sent,
        peer_max_data=snapshot.peer_max_data,
        peer_data_sent=snapshot.data_received,
        local_data_consumed=snapshot.data_consumed,
        local_max_streams_bidi=snapshot.local_max_streams_bidi,
        local_max_streams_uni=snapshot.local_max_streams_uni,
        local_streams_bidi_opened=snapshot.local_streams_bidi_opened,
        local_streams_uni_opened=snapshot.local_streams_uni_opened,
        peer_max_streams_bidi=snapshot.peer_max_streams_bidi,
        peer_max_streams_uni=snapshot.peer_max_streams_uni,
        peer_streams_bidi_opened=snapshot.peer_streams_bidi_opened,
        peer_streams_uni_opened=snapshot.peer_streams_uni_opened,
        peer_streams_bidi_closed=snapshot.peer_streams_bidi_closed,
        peer_streams_uni_closed=snapshot.peer_streams_uni_closed,
        datagrams_sent=snapshot.datagrams_sent,
        datagram_bytes_sent=snapshot.datagram_bytes_sent,
        datagrams_received=snapshot.datagrams_received,
        datagram_bytes_received=snapshot.datagram_bytes_received,
        datagrams_dropped=snapshot.datagrams_dropped + stats.datagrams_dropped,
        datagram_receive_buffer_size=datagram_queue,
        max_datagram_size=max_datagram_size,
        active_streams=snapshot.active_streams,
        blocked_streams=blocked_streams,
        data_blocked_at=snapshot.data_blocked_at,
        peer_data_blocked_at=snapshot.peer_data_blocked_at,
        protocol_errors=snapshot.protocol_errors,
        is_connection_active=connection_active,
        stats=stats,
    )
