"""Error codes of HTTP/3, QPACK and WebTransport, and the protocol errors carrying them.

Every ``ProtocolError`` knows the wire code it is sent with (``error_code``)
and what it closes (``scope``): the whole QUIC connection, one WebTransport
session, or one stream.  Errors are never compiled, so ``isinstance`` checks
work the same with the compiled and the pure-Python core.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar, Literal

__all__ = [
    "APP_ERROR_FIRST",
    "APP_ERROR_LAST",
    "H3ErrorCode",
    "QpackErrorCode",
    "WTErrorCode",
    "ProtocolError",
    "H3ConnectionError",
    "GeneralProtocolError",
    "StreamCreationError",
    "ClosedCriticalStream",
    "FrameUnexpected",
    "FrameError",
    "ExcessiveLoad",
    "IdError",
    "SettingsError",
    "MissingSettings",
    "RequestRejected",
    "MessageError",
    "DatagramError",
    "QpackDecompressionFailed",
    "FlowControlError",
    "MalformedCapsule",
    "ProhibitedCapsule",
    "TruncatedVarint",
    "EngineClosed",
    "UnknownSession",
    "UnknownStream",
    "SessionLimitReached",
    "DatagramsUnavailable",
    "DatagramTooLarge",
    "app_error_to_h3",
    "h3_error_to_app",
    "is_reserved_codepoint",
]


class H3ErrorCode(IntEnum):
    """RFC 9114 section 8.1 and RFC 9297 section 2.1."""

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
    H3_VERSION_FALLBACK = 0x110


class QpackErrorCode(IntEnum):
    """RFC 9204 section 6."""

    QPACK_DECOMPRESSION_FAILED = 0x200
    QPACK_ENCODER_STREAM_ERROR = 0x201
    QPACK_DECODER_STREAM_ERROR = 0x202


class WTErrorCode(IntEnum):
    """draft-ietf-webtrans-http3 section 9.5."""

    WT_FLOW_CONTROL_ERROR = 0x045D4487
    WT_ALPN_ERROR = 0x0817B3DD
    WT_SESSION_GONE = 0x170D7B68
    WT_REQUIREMENTS_NOT_MET = 0x212C0D48
    WT_BUFFERED_STREAM_REJECTED = 0x3994BD84


# Application stream error codes (32-bit) live in this HTTP/3 code range,
# skipping the reserved codepoints 0x1f * N + 0x21.
APP_ERROR_FIRST = 0x52E4A40FA8DB
APP_ERROR_LAST = 0x52E5AC983162
_APP_ERROR_MAX = 0xFFFFFFFF


def is_reserved_codepoint(code: int) -> bool:
    """True for the GREASE codepoints 0x1f * N + 0x21 of HTTP/3."""
    return code >= 0x21 and (code - 0x21) % 0x1F == 0


def app_error_to_h3(code: int) -> int:
    """Map a 32-bit WebTransport application error code to its HTTP/3 code."""
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"application error code must be an int, not {type(code).__name__}")
    if not 0 <= code <= _APP_ERROR_MAX:
        raise ValueError(f"application error code {code} is outside 0..0xffffffff")
    return APP_ERROR_FIRST + code + code // 0x1E


def h3_error_to_app(code: int) -> int | None:
    """Map an HTTP/3 stream error code back; None when it carries no application code."""
    if not APP_ERROR_FIRST <= code <= APP_ERROR_LAST or is_reserved_codepoint(code):
        return None
    shifted = code - APP_ERROR_FIRST
    return shifted - shifted // 0x1F


Scope = Literal["connection", "session", "stream"]


class ProtocolError(Exception):
    """A violation of HTTP/3 or WebTransport, with the code it is signalled with."""

    error_code: int = H3ErrorCode.H3_GENERAL_PROTOCOL_ERROR
    scope: ClassVar[Scope] = "connection"

    def __init__(self, message: str = "", *, error_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code

    def __str__(self) -> str:
        return f"{self.message} (error code {self.error_code:#x})"


# Connection errors: the whole QUIC connection is closed with the code.
class H3ConnectionError(ProtocolError):
    """Base of the errors that close the connection (not the built-in ConnectionError)."""


class GeneralProtocolError(H3ConnectionError):
    error_code = H3ErrorCode.H3_GENERAL_PROTOCOL_ERROR


class StreamCreationError(H3ConnectionError):
    error_code = H3ErrorCode.H3_STREAM_CREATION_ERROR


class ClosedCriticalStream(H3ConnectionError):
    error_code = H3ErrorCode.H3_CLOSED_CRITICAL_STREAM


class FrameUnexpected(H3ConnectionError):
    error_code = H3ErrorCode.H3_FRAME_UNEXPECTED


class FrameError(H3ConnectionError):
    error_code = H3ErrorCode.H3_FRAME_ERROR


class ExcessiveLoad(H3ConnectionError):
    error_code = H3ErrorCode.H3_EXCESSIVE_LOAD


class IdError(H3ConnectionError):
    error_code = H3ErrorCode.H3_ID_ERROR


class SettingsError(H3ConnectionError):
    error_code = H3ErrorCode.H3_SETTINGS_ERROR


class MissingSettings(H3ConnectionError):
    error_code = H3ErrorCode.H3_MISSING_SETTINGS


class DatagramError(H3ConnectionError):
    error_code = H3ErrorCode.H3_DATAGRAM_ERROR


class QpackDecompressionFailed(H3ConnectionError):
    error_code = QpackErrorCode.QPACK_DECOMPRESSION_FAILED


# Stream and session errors: only the request stream (and so the session) closes.
class RequestRejected(ProtocolError):
    error_code = H3ErrorCode.H3_REQUEST_REJECTED
    scope = "stream"


class MessageError(ProtocolError):
    """A malformed HTTP message: the request stream is reset with H3_MESSAGE_ERROR."""

    error_code = H3ErrorCode.H3_MESSAGE_ERROR
    scope = "session"


class MalformedCapsule(MessageError):
    """RFC 9297 section 3.3: a capsule protocol error is a malformed message."""


class FlowControlError(ProtocolError):
    """A WebTransport flow-control violation closes the session."""

    error_code = WTErrorCode.WT_FLOW_CONTROL_ERROR
    scope = "session"


class ProhibitedCapsule(FlowControlError):
    """A capsule that only exists in WebTransport over HTTP/2."""


class TruncatedVarint(ValueError):
    """The buffer ends inside a variable-length integer."""


# Mistakes of the application, raised at the call.
class EngineClosed(RuntimeError):
    """The connection is closed: nothing more can be sent."""


class UnknownSession(KeyError):
    """No session with that id on this connection."""


class UnknownStream(KeyError):
    """No open WebTransport stream with that id."""


class SessionLimitReached(RuntimeError):
    """This connection cannot carry another session (no flow control, or the peer's limit)."""


class DatagramsUnavailable(RuntimeError):
    """The peer did not enable HTTP datagrams, or the handshake has not told their size yet."""


class DatagramTooLarge(ValueError):
    """A datagram larger than the peer accepts in one QUIC packet."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"datagram of {size} bytes exceeds the maximum of {max_size} bytes")
        self.size = size
        self.max_size = max_size
