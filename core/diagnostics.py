"""Snapshots of what the engine knows about a session and a connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .events import Dialect, Headers
from .session_state import SessionState

__all__ = ["SessionSnapshot", "ConnectionSnapshot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSnapshot:
    """Everything the engine tracks for one session, at one moment.

    "local" limits are the ones we grant the peer, "peer" limits the ones it
    grants us; with flow control off every limit is None.
    """

    session_id: int
    is_client: bool
    state: SessionState
    dialect: Dialect | None
    path: str
    authority: str
    origin: str | None
    headers: Headers
    protocols: tuple[str, ...]
    protocol: str | None
    status: int | None
    flow_control: bool
    # Data flow control (stream body bytes).
    local_max_data: int | None
    peer_max_data: int | None
    data_sent: int
    data_received: int
    data_consumed: int
    data_blocked_at: int | None
    peer_data_blocked_at: int | None
    # Stream flow control (cumulative counts).
    local_max_streams_bidi: int | None
    local_max_streams_uni: int | None
    peer_max_streams_bidi: int | None
    peer_max_streams_uni: int | None
    local_streams_bidi_opened: int
    local_streams_uni_opened: int
    peer_streams_bidi_opened: int
    peer_streams_uni_opened: int
    peer_streams_bidi_closed: int
    peer_streams_uni_closed: int
    streams_closed: int
    streams_reset_sent: int
    streams_reset_received: int
    active_streams: tuple[int, ...]
    buffered_streams: int
    # Datagrams.
    datagrams_sent: int
    datagram_bytes_sent: int
    datagrams_received: int
    datagram_bytes_received: int
    datagrams_dropped: int
    # Errors and life.
    protocol_errors: int
    created_at: float
    established_at: float | None
    closed_at: float | None
    last_activity: float
    close_code: int | None
    close_reason: str | None
    close_error_code: int | None
    closed_by_peer: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSnapshot:
    """The HTTP/3 side of a connection."""

    is_client: bool
    dialect: Dialect | None
    flow_control: bool | None
    local_settings: Mapping[int, int]
    peer_settings: Mapping[int, int] | None
    max_datagram_size: int | None
    sessions: int
    goaway_sent: int | None
    goaway_received: int | None
    buffered_streams: int
    buffered_datagrams: int
    datagrams_dropped: int
    streams_rejected: int
    closed: bool
    close_error_code: int | None
    close_reason: str | None
    #: QUIC streams the engine keeps a record of (open ones, and request streams of live sessions).
    stream_records: int
