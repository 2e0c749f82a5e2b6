"""The HTTP Capsule Protocol (RFC 9297): the live implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accel import load_twin

if TYPE_CHECKING:
    from . import _capsule_py as _impl
else:
    _impl = load_twin("capsule")

__all__ = [
    "CAPSULE_CLOSE_SESSION",
    "CAPSULE_DATAGRAM",
    "CAPSULE_DATA_BLOCKED",
    "CAPSULE_DRAIN_SESSION",
    "CAPSULE_MAX_DATA",
    "CAPSULE_MAX_STREAMS_BIDI",
    "CAPSULE_MAX_STREAMS_UNI",
    "CAPSULE_MAX_STREAM_DATA",
    "CAPSULE_STREAMS_BLOCKED_BIDI",
    "CAPSULE_STREAMS_BLOCKED_UNI",
    "CAPSULE_STREAM_DATA_BLOCKED",
    "CLOSE_REASON_MAX",
    "DEFAULT_MAX_CAPSULE_SIZE",
    "CapsuleParser",
    "encode_capsule",
    "encode_close_session",
    "encode_drain_session",
    "encode_varint_capsule",
    "parse_close_session",
    "parse_varint_payload",
    "truncate_reason",
]

CAPSULE_DATAGRAM = _impl.CAPSULE_DATAGRAM
CAPSULE_CLOSE_SESSION = _impl.CAPSULE_CLOSE_SESSION
CAPSULE_DRAIN_SESSION = _impl.CAPSULE_DRAIN_SESSION
CAPSULE_MAX_DATA = _impl.CAPSULE_MAX_DATA
CAPSULE_MAX_STREAM_DATA = _impl.CAPSULE_MAX_STREAM_DATA
CAPSULE_MAX_STREAMS_BIDI = _impl.CAPSULE_MAX_STREAMS_BIDI
CAPSULE_MAX_STREAMS_UNI = _impl.CAPSULE_MAX_STREAMS_UNI
CAPSULE_DATA_BLOCKED = _impl.CAPSULE_DATA_BLOCKED
CAPSULE_STREAM_DATA_BLOCKED = _impl.CAPSULE_STREAM_DATA_BLOCKED
CAPSULE_STREAMS_BLOCKED_BIDI = _impl.CAPSULE_STREAMS_BLOCKED_BIDI
CAPSULE_STREAMS_BLOCKED_UNI = _impl.CAPSULE_STREAMS_BLOCKED_UNI
CLOSE_REASON_MAX = _impl.CLOSE_REASON_MAX
DEFAULT_MAX_CAPSULE_SIZE = _impl.DEFAULT_MAX_CAPSULE_SIZE
CapsuleParser = _impl.CapsuleParser
encode_capsule = _impl.encode_capsule
encode_close_session = _impl.encode_close_session
encode_drain_session = _impl.encode_drain_session
encode_varint_capsule = _impl.encode_varint_capsule
parse_close_session = _impl.parse_close_session
parse_varint_payload = _impl.parse_varint_payload
truncate_reason = _impl.truncate_reason
