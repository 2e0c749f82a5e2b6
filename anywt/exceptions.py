"""The exceptions of anywt: one tree under ``WebTransportError``.

Each carries the wire code that goes with it where there is one
(``error_code``).  Timeouts raise the built-in ``TimeoutError``; the names
here never shadow built-ins.  Stream errors are also anyio's
``BrokenResourceError`` so anyio's stream helpers treat them as such.
"""

from __future__ import annotations

import anyio

from .core.errors import DatagramTooLarge as _CoreDatagramTooLarge

__all__ = [
    "WebTransportError",
    "InvalidURL",
    "ConfigurationError",
    "ConnectError",
    "CertificateError",
    "HandshakeTimeout",
    "ConnectionClosed",
    "ProtocolError",
    "SessionRejected",
    "SessionClosed",
    "SessionClosedOK",
    "SessionClosedError",
    "SessionLimitReached",
    "ConnectionLimitReached",
    "StreamError",
    "StreamReset",
    "StreamStopped",
    "KeyUpdateUnavailable",
    "DatagramError",
    "DatagramTooLarge",
    "DatagramsUnavailable",
    "BackendUnavailable",
]


class WebTransportError(Exception):
    """Base of every anywt error; ``error_code`` is the wire code, when one applies."""

    error_code: int | None = None

    def __init__(self, message: str = "", *, error_code: int | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code

    def __str__(self) -> str:
        text = super().__str__()
        if self.error_code is not None:
            return f"{text} (error code {self.error_code:#x})"
        return text


class InvalidURL(WebTransportError, ValueError):
    """The URL is not an https:// URL anywt can connect to."""


class ConfigurationError(WebTransportError, ValueError):
    """A configuration value is wrong; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class BackendUnavailable(WebTransportError, ImportError):
    """The chosen QUIC backend is not installed or not usable on this Python."""


class ConnectError(WebTransportError, OSError):
    """The QUIC connection could not be established (refused, unreachable, handshake failed)."""


class CertificateError(ConnectError):
    """The server's certificate was refused: chain, name, or pinned hash."""


class HandshakeTimeout(ConnectError, TimeoutError):
    """No answer within the connect timeout."""


class ConnectionClosed(WebTransportError):
    """The QUIC connection is closed; ``reason`` says why."""

    def __init__(
        self, message: str = "connection closed", *, error_code: int | None = None, reason: str = ""
    ) -> None:
        super().__init__(message, error_code=error_code)
        self.reason = reason


class ProtocolError(WebTransportError):
    """The peer broke HTTP/3 or WebTransport rules (``error_code`` is what was sent)."""


class SessionRejected(WebTransportError):
    """The server answered the CONNECT with a non-2xx status."""

    def __init__(self, status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(f"the server rejected the session with status {status}")
        self.status = status
        self.headers = headers


class SessionLimitReached(WebTransportError, RuntimeError):
    """No more sessions are allowed (a server's or manager's limit, or the connection's)."""


class ConnectionLimitReached(WebTransportError, RuntimeError):
    """A ``ConnectionManager`` is full: no more connections are allowed."""


class SessionClosed(WebTransportError):
    """The session is closed; ``code`` and ``reason`` are its WT_CLOSE_SESSION values."""

    def __init__(
        self,
        code: int = 0,
        reason: str = "",
        *,
        error_code: int | None = None,
        by_peer: bool = False,
    ) -> None:
        detail = f"session closed by {'the peer' if by_peer else 'us'} with code {code}"
        if reason:
            detail += f": {reason}"
        super().__init__(detail, error_code=error_code)
        self.code = code
        self.reason = reason
        self.by_peer = by_peer


class SessionClosedOK(SessionClosed):
    """The session ended cleanly (code 0, no protocol error)."""


class SessionClosedError(SessionClosed):
    """The session ended with an error code, abruptly, or through a protocol error."""


class StreamError(WebTransportError, anyio.BrokenResourceError):
    """A stream can no longer be used."""

    def __init__(
        self,
        message: str,
        *,
        stream_id: int,
        code: int | None = None,
        error_code: int | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code)
        self.stream_id = stream_id
        #: The application error code (32-bit), when the peer gave one.
        self.code = code


class StreamReset(StreamError):
    """The peer reset the stream (RESET_STREAM): its data ends abruptly."""


class StreamStopped(StreamError):
    """The peer asked us to stop sending (STOP_SENDING)."""


class KeyUpdateUnavailable(WebTransportError, RuntimeError):
    """The QUIC stack cannot start a key update now (handshake unconfirmed, or one in progress)."""


class DatagramError(WebTransportError):
    """A datagram could not be sent."""


class DatagramsUnavailable(DatagramError):
    """The peer did not enable datagrams (or the handshake has not finished)."""


class DatagramTooLarge(DatagramError, _CoreDatagramTooLarge):
    """A datagram larger than ``max_size`` bytes (one QUIC packet) cannot be sent."""

    def __init__(self, size: int, max_size: int) -> None:
        _CoreDatagramTooLarge.__init__(self, size, max_size)
        self.error_code = None
