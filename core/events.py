"""Events the engine emits: small immutable objects, never compiled.

Each event is a ``typing.NamedTuple``: immutable, typed, cheap to build on
the data path (about a quarter of a frozen dataclass), and two events only
compare equal when they are of the same kind.  ``Event`` is the union of
them all, so ``isinstance(x, Event)`` works.

The engine queues them as it processes input; ``WebTransportEngine.next_event()``
hands them out in order.  Session ids are the stream id of the session's
CONNECT stream; application error codes are the 32-bit WebTransport codes,
already mapped back from their HTTP/3 codepoints (``None`` when the peer used
a code outside the WebTransport range, as Chromium does on teardown).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, NamedTuple, TypeAlias

__all__ = [
    "Dialect",
    "Event",
    "Headers",
    "SettingsReceived",
    "SessionRequested",
    "SessionEstablished",
    "SessionRejected",
    "SessionDraining",
    "SessionClosed",
    "StreamOpened",
    "StreamDataReceived",
    "StreamReset",
    "StreamStopped",
    "DatagramReceived",
    "DataCreditAvailable",
    "StreamsCreditAvailable",
    "GoawayReceived",
    "ConnectionTerminated",
]

#: Header fields as QPACK yields them: lower-case names, raw values.
Headers = tuple[tuple[bytes, bytes], ...]


class Dialect(IntEnum):
    """The WebTransport draft spoken on a connection, picked from the peer's SETTINGS.

    Drafts that share their wire signals are folded together: 13 and 14 both
    announce SETTINGS_WT_MAX_SESSIONS (0x14e9cd29), 15 and 16 both
    SETTINGS_WT_ENABLED (0x2c7cf000).
    """

    DRAFT02 = 2
    DRAFT07 = 7
    DRAFT14 = 14
    DRAFT16 = 16

    @property
    def label(self) -> str:
        """A readable name such as ``draft-02`` or ``draft-15/16``."""
        return {2: "draft-02", 7: "draft-07", 14: "draft-13/14", 16: "draft-15/16"}[self.value]

    @property
    def upgrade_token(self) -> bytes:
        """The ``:protocol`` value a client sends in this dialect."""
        return b"webtransport-h3" if self is Dialect.DRAFT16 else b"webtransport"

    @property
    def has_flow_control(self) -> bool:
        """Whether session flow control exists in this dialect (it may still be off)."""
        return self.value >= 14


class SettingsReceived(NamedTuple):
    """The peer's SETTINGS arrived; ``dialect`` is None when it cannot speak WebTransport."""

    settings: Mapping[int, int]
    dialect: Dialect | None
    flow_control: bool


class SessionRequested(NamedTuple):
    """Server side: a client asked for a session; answer with ``accept`` or ``reject``."""

    session_id: int
    authority: str
    path: str
    origin: str | None
    protocols: tuple[str, ...]
    headers: Headers
    dialect: Dialect


class SessionEstablished(NamedTuple):
    """The session is open: the client got a 2xx, or the server sent one."""

    session_id: int
    status: int
    protocol: str | None
    headers: Headers


class SessionRejected(NamedTuple):
    """Client side: the server answered the CONNECT with a non-2xx status."""

    session_id: int
    status: int
    headers: Headers


class SessionDraining(NamedTuple):
    """The peer asked to wrap the session up (WT_DRAIN_SESSION or GOAWAY); it stays usable."""

    session_id: int


class SessionClosed(NamedTuple):
    """The session ended.

    ``code`` and ``reason`` are the WT_CLOSE_SESSION values (0 and "" for a
    clean FIN).  ``error_code`` is the wire code when the session ended
    abruptly instead (a reset CONNECT stream, a protocol error, or the QUIC
    connection going away); ``by_peer`` says which side ended it.
    """

    session_id: int
    code: int
    reason: str
    by_peer: bool
    error_code: int | None = None


class StreamOpened(NamedTuple):
    """The peer opened a WebTransport stream in an established session."""

    session_id: int
    stream_id: int
    is_unidirectional: bool


class StreamDataReceived(NamedTuple):
    """Bytes on a WebTransport stream (the preamble already stripped)."""

    stream_id: int
    data: bytes
    end_stream: bool
    session_id: int


class StreamReset(NamedTuple):
    """The peer reset its sending side of a stream (RESET_STREAM)."""

    stream_id: int
    session_id: int
    code: int | None
    wire_code: int


class StreamStopped(NamedTuple):
    """The peer asked us to stop sending on a stream (STOP_SENDING)."""

    stream_id: int
    session_id: int
    code: int | None
    wire_code: int


class DatagramReceived(NamedTuple):
    """A datagram for a session (the quarter-stream-id prefix stripped)."""

    session_id: int
    data: bytes


class DataCreditAvailable(NamedTuple):
    """Flow control: we may send more stream bytes (the peer's WT_MAX_DATA, or a reset gave unsent
    bytes back); ``max_data`` is the peer's current limit."""

    session_id: int
    max_data: int


class StreamsCreditAvailable(NamedTuple):
    """Flow control: we may open more streams (the peer's WT_MAX_STREAMS, or a reset dropped a
    stream's header, so the peer never counted it); ``max_streams`` is the peer's current limit."""

    session_id: int
    is_unidirectional: bool
    max_streams: int


class GoawayReceived(NamedTuple):
    """The peer sent GOAWAY: no new sessions on this connection."""

    last_id: int


class ConnectionTerminated(NamedTuple):
    """The connection is over; every session has been closed before this event."""

    error_code: int
    reason: str
    by_peer: bool


#: Any engine event.
Event: TypeAlias = (
    SettingsReceived
    | SessionRequested
    | SessionEstablished
    | SessionRejected
    | SessionDraining
    | SessionClosed
    | StreamOpened
    | StreamDataReceived
    | StreamReset
    | StreamStopped
    | DatagramReceived
    | DataCreditAvailable
    | StreamsCreditAvailable
    | GoawayReceived
    | ConnectionTerminated
)


def _typed_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _typed_eq(self, other)


# Tuples compare by value alone; events also by kind.
for _kind in Event.__args__:
    _kind.__eq__ = _typed_eq
    _kind.__ne__ = _typed_ne
    _kind.__hash__ = tuple.__hash__
del _kind
