"""anywt: WebTransport for Python on any async framework and any QUIC stack.

``anywt.connect(url)`` opens a session; ``anywt.serve`` / ``anywt.Server``
accept them.  Sessions carry streams (anyio byte streams) and datagrams; the
QUIC stack is chosen with ``backend=`` ("aioquic", "qh3").
"""

from __future__ import annotations

from pkgutil import extend_path

# core/ and backends/ install as anywt.core and anywt.backends.  When this file
# is imported from a source checkout (e.g. ``python -m anywt`` in the
# repository root), let the installed copy supply those subpackages.
__path__ = extend_path(__path__, __name__)

from .attributes import WebTransportAttribute
from .certs import DevCertificate, certificate_sha256, generate_dev_certificate
from .client import Client, Connect, connect
from .config import ClientConfig, FlowControl, Limits, ServerConfig
from .connection import Connection
from .diagnostics import ConnectionDiagnostics, SessionDiagnostics, SessionStats
from .events import EventEmitter, SessionEvent, SessionEventType
from .exceptions import (
    BackendUnavailable,
    CertificateError,
    ConfigurationError,
    ConnectError,
    ConnectionClosed,
    ConnectionLimitReached,
    DatagramError,
    DatagramsUnavailable,
    DatagramTooLarge,
    HandshakeTimeout,
    InvalidURL,
    KeyUpdateUnavailable,
    ProtocolError,
    SessionClosed,
    SessionClosedError,
    SessionClosedOK,
    SessionLimitReached,
    SessionRejected,
    StreamError,
    StreamReset,
    StreamStopped,
    WebTransportError,
)
from .managers import ConnectionManager, SessionManager
from .server import Server, SessionRequest, serve
from .session import CloseInfo, DatagramChannel, Session, SessionState
from .streams import BidirectionalStream, ReceiveStream, SendStream, Stream

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "BidirectionalStream",
    "CertificateError",
    "Client",
    "ClientConfig",
    "CloseInfo",
    "ConfigurationError",
    "Connect",
    "ConnectError",
    "Connection",
    "ConnectionClosed",
    "ConnectionDiagnostics",
    "ConnectionLimitReached",
    "ConnectionManager",
    "DatagramChannel",
    "DatagramError",
    "DatagramTooLarge",
    "DatagramsUnavailable",
    "DevCertificate",
    "EventEmitter",
    "FlowControl",
    "HandshakeTimeout",
    "InvalidURL",
    "KeyUpdateUnavailable",
    "Limits",
    "ProtocolError",
    "ReceiveStream",
    "SendStream",
    "Server",
    "ServerConfig",
    "Session",
    "SessionClosed",
    "SessionClosedError",
    "SessionClosedOK",
    "SessionDiagnostics",
    "SessionEvent",
    "SessionEventType",
    "SessionLimitReached",
    "SessionManager",
    "SessionRejected",
    "SessionRequest",
    "SessionState",
    "SessionStats",
    "Stream",
    "StreamError",
    "StreamReset",
    "StreamStopped",
    "WebTransportAttribute",
    "WebTransportError",
    "__version__",
    "certificate_sha256",
    "connect",
    "generate_dev_certificate",
    "serve",
]
