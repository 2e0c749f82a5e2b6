"""Engine configuration, validated once at construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .events import Dialect

__all__ = ["EngineConfig"]

_VARINT_MAX = (1 << 62) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """How a ``WebTransportEngine`` behaves; every limit here bounds what a peer can make it hold.

    Flow control (drafts 13+) is offered when ``flow_control`` is on and is used
    when the peer offers it too; otherwise one session per connection.
    """

    #: Offer session flow control (sends the WT_INITIAL_* SETTINGS).
    flow_control: bool = True
    #: Sessions a peer may have open at once on this connection (when flow control is on).
    max_sessions: int = 100
    #: Stream body bytes the peer may send per session before we grant more.
    initial_max_data: int = 4 * 1024 * 1024
    #: Bidirectional / unidirectional streams the peer may open per session at first.
    initial_max_streams_bidi: int = 100
    initial_max_streams_uni: int = 100
    #: Re-grant credit automatically as data is consumed and streams close.
    auto_grant: bool = True
    #: Windows of the automatic re-grant (default: the initial values).
    data_window: int | None = None
    streams_window: int | None = None
    #: WebTransport streams held while their session is not yet established.
    max_buffered_streams: int = 24
    #: Bytes held per such stream; beyond it the stream is rejected.
    max_buffered_stream_data: int = 64 * 1024
    #: Datagrams held while their session is not yet established.
    max_buffered_datagrams: int = 64
    #: Capsules received before the server accepts a session (processed on accept).
    max_pending_capsules: int = 64
    #: Largest known capsule buffered; larger DATAGRAM capsules are dropped.
    max_capsule_size: int = 65536
    #: Our SETTINGS_MAX_FIELD_SECTION_SIZE; larger header blocks are refused.
    max_field_section_size: int = 65536
    #: QPACK dynamic table our decoder allows the peer's encoder to use.
    qpack_max_table_capacity: int = 4096
    qpack_blocked_streams: int = 16
    #: Closed session ids remembered, so late streams for them are rejected at once.
    closed_session_memory: int = 16
    #: Which dialects we announce (all by default).
    dialects: frozenset[Dialect] = field(default_factory=lambda: frozenset(Dialect))
    #: Announce a reserved (GREASE) setting, as RFC 9114 recommends.
    grease: bool = True
    #: Extra SETTINGS to send, for experiments and interop tests.
    extra_settings: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "max_sessions",
            "initial_max_data",
            "initial_max_streams_bidi",
            "initial_max_streams_uni",
            "max_buffered_streams",
            "max_buffered_stream_data",
            "max_buffered_datagrams",
            "max_pending_capsules",
            "max_capsule_size",
            "max_field_section_size",
            "qpack_max_table_capacity",
            "qpack_blocked_streams",
            "closed_session_memory",
        ):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= _VARINT_MAX
            ):
                raise ValueError(f"EngineConfig.{name} must be an int in 0..2**62-1, not {value!r}")
        if self.max_sessions < 1:
            raise ValueError("EngineConfig.max_sessions must be at least 1")
        for name in ("data_window", "streams_window"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"EngineConfig.{name} must be a positive int or None, not {value!r}"
                )
        if self.initial_max_streams_bidi > 1 << 60 or self.initial_max_streams_uni > 1 << 60:
            raise ValueError("initial stream limits must not exceed 2**60")
        if not self.dialects:
            raise ValueError("EngineConfig.dialects must name at least one dialect")
        for key, value in self.extra_settings.items():
            if not 0 <= key <= _VARINT_MAX or not 0 <= value <= _VARINT_MAX:
                raise ValueError(f"extra setting {key!r}={value!r} is not a pair of varints")
