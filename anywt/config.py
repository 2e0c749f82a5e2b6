"""Configuration of clients and servers: frozen dataclasses validated at construction."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .core.config import EngineConfig
from .exceptions import ConfigurationError

__all__ = ["ClientConfig", "ServerConfig", "FlowControl", "Limits"]


def _check_positive(key: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ConfigurationError(key, "must be set")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(key, f"must be a positive number, not {value!r}")


def _check_count(key: str, value: int, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(key, f"must be an int >= {minimum}, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowControl:
    """WebTransport session flow control (drafts 13+), as offered to the peer."""

    #: Offer session flow control (needed for several sessions per connection).
    enabled: bool = True
    #: Stream body bytes the peer may send per session before more credit is granted.
    initial_max_data: int = 4 * 1024 * 1024
    initial_max_streams_bidi: int = 100
    initial_max_streams_uni: int = 100
    #: Grant more credit automatically as data is read and streams close.
    auto_grant: bool = True

    def __post_init__(self) -> None:
        for key in ("initial_max_data", "initial_max_streams_bidi", "initial_max_streams_uni"):
            _check_count(f"flow_control.{key}", getattr(self, key))


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a peer can make us hold, per connection or session."""

    #: Received bytes a stream keeps while the application does not read: the QUIC
    #: stream window we grant.  A peer that sends more (a stack that cannot tie
    #: credit to reading, with no session flow control) gets the stream stopped.
    stream_receive_buffer: int = 4 * 1024 * 1024
    #: Received bytes all streams of a session keep together while the application
    #: does not read (at least ``stream_receive_buffer``).  The stream whose data
    #: goes past it is stopped, as for ``stream_receive_buffer``.
    session_receive_buffer: int = 16 * 1024 * 1024
    #: Bytes a stream may have queued in QUIC before a writer waits.
    stream_send_buffer: int = 1024 * 1024
    #: Received datagrams kept per session; older ones are dropped (and counted).
    datagram_queue: int = 1024
    #: ... and at most this many bytes of them (DATAGRAM capsules may be 64 KiB each).
    datagram_queue_bytes: int = 2 * 1024 * 1024
    #: Incoming streams waiting to be accepted by the application, per session.
    incoming_streams: int = 256
    #: Largest HTTP header section accepted.
    max_field_section_size: int = 65536
    #: WebTransport streams held while their session is not yet established.
    max_buffered_streams: int = 24
    max_buffered_datagrams: int = 64
    #: Outgoing UDP datagrams held while the socket buffer is full (aioquic, qh3
    #: and the memory backend; per client, or per server for all its connections).
    #: More are dropped and counted; QUIC resends them as lost.
    send_queue: int = 4096

    def __post_init__(self) -> None:
        for item in fields(self):
            _check_count(f"limits.{item.name}", getattr(self, item.name), 1)


def _env_path(
    explicit: str | os.PathLike[str] | None, variable: str, trust_env: bool
) -> str | None:
    if explicit is not None:
        return os.fspath(explicit)
    if trust_env:
        value = os.environ.get(variable)
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _CommonConfig:
    #: QUIC stack: "aioquic" or "qh3".
    backend: str = "aioquic"
    #: Seconds without traffic before the QUIC connection closes.
    idle_timeout: float = 30.0
    #: Seconds a graceful close may take before it turns abrupt.
    close_timeout: float = 5.0
    flow_control: FlowControl = field(default_factory=FlowControl)
    limits: Limits = field(default_factory=Limits)
    #: Write a qlog trace per connection here (defaults to $QLOGDIR when trust_env).
    qlog_dir: str | None = None
    #: Append TLS secrets here for Wireshark (defaults to $SSLKEYLOGFILE when trust_env).
    keylog_file: str | None = None
    #: Read QLOGDIR, SSLKEYLOGFILE, SSL_CERT_FILE and SSL_CERT_DIR from the environment.
    trust_env: bool = True
    #: Largest QUIC DATAGRAM frame accepted (0 disables datagrams).
    max_datagram_frame_size: int = 65536
    congestion_control: str = "reno"

    def _validate_common(self) -> None:
        if not isinstance(self.backend, str) or not self.backend:
            raise ConfigurationError("backend", f"must be a backend name, not {self.backend!r}")
        _check_positive("idle_timeout", self.idle_timeout, allow_none=False)
        _check_positive("close_timeout", self.close_timeout, allow_none=False)
        _check_count("max_datagram_frame_size", self.max_datagram_frame_size)
        if not isinstance(self.flow_control, FlowControl):
            raise ConfigurationError("flow_control", "must be a FlowControl")
        if not isinstance(self.limits, Limits):
            raise ConfigurationError("limits", "must be a Limits")

    def resolved_qlog_dir(self) -> str | None:
        return _env_path(self.qlog_dir, "QLOGDIR", self.trust_env)

    def resolved_keylog_file(self) -> str | None:
        return _env_path(self.keylog_file, "SSLKEYLOGFILE", self.trust_env)

    def engine_config(self, max_sessions: int) -> EngineConfig:
        flow = self.flow_control
        limits = self.limits
        return EngineConfig(
            flow_control=flow.enabled,
            max_sessions=max_sessions,
            initial_max_data=flow.initial_max_data,
            initial_max_streams_bidi=flow.initial_max_streams_bidi,
            initial_max_streams_uni=flow.initial_max_streams_uni,
            auto_grant=flow.auto_grant,
            max_buffered_streams=limits.max_buffered_streams,
            max_buffered_datagrams=limits.max_buffered_datagrams,
            max_field_section_size=limits.max_field_section_size,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig(_CommonConfig):
    """How ``anywt.connect`` connects."""

    #: Seconds from the first packet until the session is ready (the CONNECT 200).
    connect_timeout: float = 10.0
    #: Verify the server's certificate chain and name.
    verify: bool = True
    cafile: str | None = None
    cadata: bytes | None = None
    #: Accept exactly these server certificates, by SHA-256 of their DER encoding
    #: (``bytes`` or hex ``str``), as browsers' serverCertificateHashes; this replaces
    #: chain verification.
    server_certificate_hashes: tuple[bytes | str, ...] = ()
    #: TLS server name (SNI and the name checked); defaults to the URL's host.
    server_name: str | None = None
    #: Sent as the Origin header.
    origin: str | None = None
    #: Offered as WT-Available-Protocols; the server's choice is ``session.protocol``.
    protocols: tuple[str, ...] = ()
    #: Extra request headers (lower-case names).
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: Sessions an ``anywt.Client`` puts on one connection (when flow control allows).
    max_sessions_per_connection: int = 100

    def __post_init__(self) -> None:
        self._validate_common()
        _check_positive("connect_timeout", self.connect_timeout, allow_none=False)
        _check_count("max_sessions_per_connection", self.max_sessions_per_connection, 1)
        hashes = []
        for entry in self.server_certificate_hashes:
            value: object = entry
            if isinstance(entry, str):
                try:
                    value = bytes.fromhex(entry.replace(":", ""))
                except ValueError:
                    raise ConfigurationError(
                        "server_certificate_hashes", f"{entry!r} is not a hex SHA-256"
                    ) from None
            if not isinstance(value, bytes) or len(value) != 32:
                raise ConfigurationError(
                    "server_certificate_hashes", "each entry must be a 32-byte SHA-256 digest"
                )
            hashes.append(value)
        object.__setattr__(self, "server_certificate_hashes", tuple(hashes))
        object.__setattr__(self, "protocols", tuple(self.protocols))
        object.__setattr__(self, "headers", _normalize_headers(self.headers))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ClientConfig:
        """Build from keyword arguments, naming any that is unknown."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown client option(s): {', '.join(unknown)}")
        return cls(**kwargs)

    def pinned_hashes(self) -> tuple[bytes, ...]:
        """``server_certificate_hashes`` as digests (validated and converted at construction)."""
        return tuple(value for value in self.server_certificate_hashes if isinstance(value, bytes))

    def resolved_cafile(self) -> str | None:
        return _env_path(self.cafile, "SSL_CERT_FILE", self.trust_env)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig(_CommonConfig):
    """How a server listens and what it admits."""

    host: str = "127.0.0.1"
    port: int = 4433
    #: Certificate chain (PEM, leaf first) and key: paths, or PEM bytes.
    certfile: str | None = None
    keyfile: str | None = None
    certificate_pem: bytes | None = None
    private_key_pem: bytes | None = None
    #: Sessions open at once across the server; more are refused with 429.
    max_sessions: int = 1000
    #: Sessions one connection may carry (when flow control is negotiated).
    max_sessions_per_connection: int = 100
    #: QUIC connections at once; more are refused at the handshake.
    max_connections: int = 1000
    #: Allowed Origin values (None: any; a browser always sends one).
    origins: tuple[str, ...] | None = None
    #: Subprotocols we speak, in order of preference.
    protocols: tuple[str, ...] = ()
    #: Seconds a new connection may take to request its first session.
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        self._validate_common()
        _check_count("port", self.port)
        if self.port > 65535:
            raise ConfigurationError("port", f"must be 0..65535, not {self.port}")
        _check_count("max_sessions", self.max_sessions, 1)
        _check_count("max_sessions_per_connection", self.max_sessions_per_connection, 1)
        _check_count("max_connections", self.max_connections, 1)
        _check_positive("handshake_timeout", self.handshake_timeout, allow_none=False)
        has_files = self.certfile is not None or self.keyfile is not None
        has_pem = self.certificate_pem is not None or self.private_key_pem is not None
        if has_files and has_pem:
            raise ConfigurationError("certfile", "give certificate files or PEM bytes, not both")
        if has_files and (self.certfile is None or self.keyfile is None):
            raise ConfigurationError("keyfile", "certfile and keyfile go together")
        if has_pem and (self.certificate_pem is None or self.private_key_pem is None):
            raise ConfigurationError(
                "private_key_pem", "certificate_pem and private_key_pem go together"
            )
        if self.origins is not None:
            object.__setattr__(self, "origins", tuple(self.origins))
        object.__setattr__(self, "protocols", tuple(self.protocols))

    def certificate(self) -> tuple[bytes, bytes] | None:
        """The chain and key as PEM bytes, read from the files if needed."""
        if self.certificate_pem is not None and self.private_key_pem is not None:
            return self.certificate_pem, self.private_key_pem
        if self.certfile is not None and self.keyfile is not None:
            try:
                return Path(self.certfile).read_bytes(), Path(self.keyfile).read_bytes()
            except OSError as exc:
                raise ConfigurationError("certfile", f"cannot read the certificate: {exc}") from exc
        return None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ServerConfig:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(unknown)}")
        return cls(**kwargs)


def _normalize_headers(
    headers: Iterable[tuple[bytes | str, bytes | str]] | Mapping[bytes | str, bytes | str],
) -> tuple[tuple[bytes, bytes], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for name, value in items:
        raw_name = name.encode("ascii") if isinstance(name, str) else name
        raw_value = value.encode("utf-8") if isinstance(value, str) else value
        if not isinstance(raw_name, bytes) or not isinstance(raw_value, bytes):
            raise ConfigurationError("headers", "names and values must be str or bytes")
        out.append((raw_name.lower(), raw_value))
    return tuple(out)
