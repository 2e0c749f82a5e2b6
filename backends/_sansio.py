"""The shared adapter between a sans-IO QUIC stack (aioquic, qh3) and the engine.

aioquic and qh3 share one ``QuicConnection`` surface (receive_datagram,
datagrams_to_send, get_timer, handle_timer, next_event, send_stream_data,
send_datagram_frame, ...), but their event classes are different objects and
many details differ (backends/aioquic.py and backends/qh3.py say which).

* ``QuicStack`` describes one stack: its classes, how to configure it, and
  the hooks where the stacks differ (transmit loop, reset final size, datagram
  size, backlogs, key phase, statistics, packet header parsing).
* ``StackConnection`` wraps one of its connections: it implements the engine's
  ``Transport`` (never raising for a stream the stack already closed), feeds
  the stack's events to the engine through a per-stack ``{event class: handler}``
  table, checks pinned certificates before anything reaches the engine, and
  reports what the API needs (``SansIOConnection`` in base.py).
* ``StackDemux`` routes a server socket's datagrams to connections by
  connection id (``ServerDemux`` in base.py).
* ``StackBackend`` is the ``SansIOBackend`` of a stack.

Nothing here reads a WebTransport or HTTP/3 byte; it parses QUIC packet
headers only (in the demux).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import ssl
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from anywt.core.errors import DatagramsUnavailable, DatagramTooLarge

from .base import (
    ActivityCallback,
    Address,
    BackendConnection,
    BackendError,
    Driver,
    EndedCallback,
    QuicSettings,
)
from .base import SansIOConnection as SansIOConnectionProtocol

if TYPE_CHECKING:
    from .base import SansIOBackend, ServerDemux

__all__ = [
    "CRYPTO_ERROR_BAD_CERTIFICATE",
    "PINNING_FAILED",
    "ConnectionListener",
    "QuicStack",
    "ReceiveCredit",
    "SansIOConnection",
    "StackBackend",
    "StackConnection",
    "StackDemux",
    "datagram_payload_limit",
]

logger = logging.getLogger("anywt.backends")

#: CRYPTO_ERROR carrying the TLS alert bad_certificate(42): how a refused
#: certificate closes a QUIC connection (RFC 9001 section 4.8).
CRYPTO_ERROR_BAD_CERTIFICATE = 0x100 + 42
#: The frame type a certificate error is reported against (CRYPTO).
FRAME_TYPE_CRYPTO = 0x06
#: How the termination reason of a pinning failure starts.
PINNING_FAILED = "certificate pinning failed"
# TLS alerts that mean "your certificate was refused" (RFC 8446 section 6.2):
# bad_certificate, unsupported_certificate, certificate_revoked,
# certificate_expired, certificate_unknown, unknown_ca.
_CERTIFICATE_ALERTS = frozenset(0x100 + alert for alert in (42, 43, 44, 45, 46, 48))

# QUIC packet types, identical in both stacks (QuicPacketType).
PACKET_INITIAL = 0
#: Smallest datagram that may carry a client Initial (RFC 9000 section 14.1).
MIN_INITIAL_SIZE = 1200
#: Shortest destination id of a client's first Initial (RFC 9000 section 7.2).
MIN_INITIAL_DCID = 8
#: Replies for no connection (version negotiation) kept until the driver sends them.
MAX_STATELESS_QUEUE = 256


def varint_size(value: int) -> int:
    """Bytes of a QUIC variable-length integer (RFC 9000 section 16)."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    return 8


def datagram_payload_limit(frame_budget: int) -> int:
    """The largest DATAGRAM payload whose frame (type, length, payload) fits ``frame_budget``."""
    best = 0
    for length_size in (1, 2, 4, 8):
        payload = frame_budget - 1 - length_size
        if payload > best and varint_size(payload) <= length_size:
            best = payload
    return best


class ReceiveCredit(Protocol):
    """Ties a stack's receive windows to what the application consumed (aioquic only)."""

    def on_data(self, stream_id: int, size: int, end_stream: bool) -> None: ...
    def on_reset(self, stream_id: int, final_size: int) -> None: ...
    def on_stop(self, stream_id: int) -> None: ...
    def consumed(self, stream_id: int, amount: int) -> None: ...
    def stats(self) -> dict[str, float | int | None]: ...


class ConnectionListener(Protocol):
    """Who wants to know about a connection's ids and its end (the server demux)."""

    def connection_id_issued(self, connection: StackConnection, cid: bytes) -> None: ...
    def connection_id_retired(self, connection: StackConnection, cid: bytes) -> None: ...
    def connection_terminated(self, connection: StackConnection) -> None: ...


class QuicStack:
    """What differs between sans-IO QUIC stacks: classes, configuration, hooks.

    Subclassed once per stack (``AioquicStack``, ``Qh3Stack``); the hooks get
    the ``StackConnection`` so they can keep per-connection state there.
    """

    name: ClassVar[str]
    #: Whether QUIC receive windows follow ``stream_consumed`` (else: credit on receipt).
    credit_on_consumption: ClassVar[bool] = False
    #: The stack's ``quic.events`` module (aioquic's event names).
    events: Any
    connection_class: Any
    configuration_class: Any
    #: Messages of exceptions meaning "the stream or connection is already gone".
    gone_messages: ClassVar[tuple[str, ...]] = ()

    # -- configuration -----------------------------------------------------

    def configuration(self, settings: QuicSettings) -> Any:
        """The stack's ``QuicConfiguration`` for ``settings`` (the key log is per connection)."""
        config = self.configuration_class(
            is_client=settings.is_client,
            alpn_protocols=list(settings.alpn_protocols),
            idle_timeout=settings.idle_timeout,
            max_data=settings.max_data,
            max_stream_data=settings.max_stream_data,
            max_datagram_frame_size=self.datagram_frame_size_setting(settings),
        )
        self.set_congestion_control(config, settings.congestion_control)
        if settings.is_client:
            if not settings.server_name:
                raise BackendError("a client needs the server's name (the URL host)")
            # Always set: without it, both stacks skip (aioquic) or guess (qh3)
            # the name check.
            config.server_name = settings.server_name
            if settings.server_certificate_hashes or not settings.verify:
                # Pinning replaces chain verification; the signature of the
                # handshake is still verified by both stacks.
                config.verify_mode = ssl.CERT_NONE
            else:
                config.verify_mode = ssl.CERT_REQUIRED
                config.cafile = settings.cafile
                config.cadata = settings.cadata
        else:
            if settings.certificate_chain_pem is None or settings.private_key_pem is None:
                raise BackendError("a server needs a certificate chain and a private key (PEM)")
            try:
                self.load_certificate(
                    config, settings.certificate_chain_pem, settings.private_key_pem
                )
            except BackendError:
                raise
            except Exception as exc:
                raise BackendError(f"cannot load the server certificate or key: {exc}") from exc
        if settings.qlog_dir:
            os.makedirs(settings.qlog_dir, exist_ok=True)
            config.quic_logger = self.qlog_logger(settings.qlog_dir)
        return config

    def datagram_frame_size_setting(self, settings: QuicSettings) -> int | None:
        return settings.max_datagram_frame_size or None

    def set_congestion_control(self, config: Any, name: str) -> None:
        raise NotImplementedError

    def load_certificate(self, config: Any, chain_pem: bytes, key_pem: bytes) -> None:
        raise NotImplementedError

    def qlog_logger(self, directory: str) -> Any:
        """A qlog file logger writing ``<ODCID>_<client|server>.qlog`` into ``directory``."""
        raise NotImplementedError

    # -- connections ---------------------------------------------------------

    def attach(self, connection: StackConnection, settings: QuicSettings | None) -> None:
        """Per-connection setup, right after the stack's connection was created."""

    def transmit(self, connection: StackConnection, now: float) -> list[tuple[bytes, Address]]:
        datagrams: list[tuple[bytes, Address]] = connection.quic.datagrams_to_send(now)
        return datagrams

    def final_size(self, connection: StackConnection, stream_id: int) -> int:
        """The final size of a stream the peer reset (-1 when the stack hides it)."""
        return -1

    def peer_max_datagram_frame_size(self, quic: Any) -> int:
        # The same private name in both stacks; None before the handshake or
        # when the peer does not accept datagrams.
        size = getattr(quic, "_remote_max_datagram_frame_size", None)
        return int(size) if size else 0

    def packet_frame_budget(self, quic: Any) -> int:
        """Bytes one 1-RTT packet has for frames (what is left after header and AEAD tag)."""
        raise NotImplementedError

    def send_backlog(self, quic: Any, stream_id: int) -> int:
        """Bytes queued on the stream and not yet sent (what a reset would drop)."""
        raise NotImplementedError

    def waits_for_stream_credit(self, quic: Any, stream_id: int) -> bool:
        """The stack holds this local stream until the peer's MAX_STREAMS allows it."""
        return False

    def datagram_backlog(self, quic: Any) -> int:
        return 0

    def key_phase(self, quic: Any) -> int | None:
        """The 1-RTT key phase we send with (None before 1-RTT keys)."""
        return None

    def request_key_update(self, quic: Any) -> None:
        quic.request_key_update()

    def peer_certificate_der(self, quic: Any) -> bytes | None:
        raise NotImplementedError

    def close(self, quic: Any, error_code: int, frame_type: int | None, reason: str) -> bool:
        """Queue a CONNECTION_CLOSE; False when the stack cannot close yet (retry later)."""
        quic.close(error_code=error_code, frame_type=frame_type, reason_phrase=reason)
        return True

    def is_stream_limit_error(self, exc: Exception) -> bool:
        """The stack refused to open a stream over the peer's MAX_STREAMS (qh3 raises)."""
        return False

    def stats(self, connection: StackConnection) -> dict[str, float | int | None]:
        return {}

    # -- server side -----------------------------------------------------------

    def parse_header(self, data: bytes, cid_length: int) -> tuple[int | None, int, bytes, bytes]:
        """(version or None, packet type, destination cid, source cid); ValueError if malformed."""
        raise NotImplementedError

    def encode_version_negotiation(
        self, source_cid: bytes, destination_cid: bytes, versions: list[int]
    ) -> bytes:
        raise NotImplementedError

    def server_quic(self, config: Any, original_destination_connection_id: bytes) -> Any:
        return self.connection_class(
            configuration=config,
            original_destination_connection_id=original_destination_connection_id,
        )


def _open_keylog(path: str | None) -> IO[str] | None:
    if not path:
        return None
    try:
        # Closed when the connection ends (StackConnection._on_terminated).
        return open(path, "a", encoding="ascii", buffering=1)
    except OSError as exc:
        raise BackendError(f"cannot open the key log file {path!r}: {exc}") from exc


class StackConnection:
    """One QUIC connection of a sans-IO stack, driving one ``WebTransportEngine``.

    Implements base.SansIOConnection.  ``quic`` is the stack's own
    ``QuicConnection``; ``stack`` the ``QuicStack`` describing it.
    """

    def __init__(
        self,
        quic: Any,
        stack: QuicStack,
        engine: Any = None,
        *,
        settings: QuicSettings | None = None,
        keylog: IO[str] | None = None,
    ) -> None:
        self.quic = quic
        self.stack = stack
        self.engine = engine
        self.is_client: bool = bool(quic.configuration.is_client)
        self.handshake_done = False
        self.terminated = False
        self.alpn: str | None = None
        #: Why the peer's certificate was refused (pinning or verification), else None.
        self.certificate_error: str | None = None
        #: The peer's address (a server connection: where its first datagram came from).
        self.remote_address: Address | None = None
        #: (error code, frame type, reason) once the connection is over.
        self.close_info: tuple[int, int | None, str] | None = None
        #: Who wants connection-id and termination callbacks (the server demux).
        self.listener: ConnectionListener | None = None
        #: Set by the stack's ``attach`` when receive windows follow consumption.
        self.credit: ReceiveCredit | None = None
        self._pins = settings.server_certificate_hashes if settings is not None else ()
        self._keylog = keylog
        self._engine_told = False
        self._pending_close: tuple[int, int | None, str] | None = None
        #: A CONNECTION_CLOSE was queued in the stack (the driver sends it before timers).
        self.closing = False
        # Writes on streams the stack refused to open yet (over the peer's MAX_STREAMS).
        self._blocked: dict[int, list[tuple[str, bytes, bool, int]]] = {}
        self._key_phase: int | None = None
        self._key_updates = 0
        # Events that reached us before the handshake was accepted.
        self._held: list[tuple[Callable[[Any, float], None], Any]] = []
        self.datagrams_received = 0
        self.datagrams_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.datagrams_refused = 0
        self.transmit_errors = 0
        self.receive_errors = 0
        # Which stack state we hold on to (per-stack hooks may add more).
        self.extra: dict[str, Any] = {}
        events = stack.events
        self._live_handlers: dict[type, Callable[[Any, float], None]] = {
            events.StreamDataReceived: self._on_stream_data,
            events.StreamReset: self._on_stream_reset,
            events.StopSendingReceived: self._on_stop_sending,
            events.DatagramFrameReceived: self._on_datagram,
            events.HandshakeCompleted: self._on_handshake_completed,
            events.ConnectionTerminated: self._on_terminated,
            events.ProtocolNegotiated: self._on_protocol_negotiated,
            events.ConnectionIdIssued: self._on_cid_issued,
            events.ConnectionIdRetired: self._on_cid_retired,
        }
        hold = self._hold
        # Until the handshake is accepted, data events wait; this table goes then.
        early = dict(self._live_handlers)
        for cls in (
            events.StreamDataReceived,
            events.StreamReset,
            events.StopSendingReceived,
            events.DatagramFrameReceived,
        ):
            early[cls] = hold
        self._handlers = early
        stack.attach(self, settings)

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<StackConnection {self.stack.name} {role} at {id(self):#x}>"

    # -- Transport (called by the engine) ----------------------------------

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        blocked = self._blocked
        if blocked and stream_id in blocked:
            blocked[stream_id].append(("data", bytes(data), end_stream, 0))
            return
        try:
            self.quic.send_stream_data(stream_id, data, end_stream)
        except Exception as exc:
            if self.stack.is_stream_limit_error(exc):
                blocked[stream_id] = [("data", bytes(data), end_stream, 0)]
                return
            if self._is_gone(exc):
                # The peer stopped the stream (the stack reset it) or the
                # connection is closing: the bytes have nowhere to go, and
                # the engine learns why from the event that follows.
                logger.debug("send on stream %d dropped: %s", stream_id, exc)
                return
            raise

    def reset_stream(self, stream_id: int, error_code: int) -> int:
        ops = self._blocked.get(stream_id) if self._blocked else None
        if ops is not None:
            # Not yet open in QUIC: what waits is dropped, the stream opens reset.
            dropped = sum(len(op[1]) for op in ops)
            ops[:] = [op for op in ops if op[0] != "data"]
            ops.append(("reset", b"", False, error_code))
            return dropped
        try:
            unsent = self.stack.send_backlog(self.quic, stream_id)
        except Exception:
            unsent = 0
        if self.stack.waits_for_stream_credit(self.quic, stream_id):
            # aioquic would send RESET_STREAM for a stream the peer has not
            # allowed yet, which the peer answers with STREAM_LIMIT_ERROR: the
            # reset waits here for the credit (and drops all the stream holds).
            self._blocked[stream_id] = [("reset", b"", False, error_code)]
            return unsent
        try:
            self.quic.reset_stream(stream_id, error_code)
        except Exception as exc:
            if self.stack.is_stream_limit_error(exc):
                self._blocked[stream_id] = [("reset", b"", False, error_code)]
                return 0
            # Already reset, finished or discarded: nothing is left to abort.
            logger.debug("reset_stream(%d) ignored: %s", stream_id, exc)
            return 0
        return unsent

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        if self.credit is not None:
            self.credit.on_stop(stream_id)
        if self._blocked and stream_id in self._blocked:
            self._blocked[stream_id].append(("stop", b"", False, error_code))
            return
        if self.stack.waits_for_stream_credit(self.quic, stream_id):
            self._blocked[stream_id] = [("stop", b"", False, error_code)]
            return
        try:
            self.quic.stop_stream(stream_id, error_code)
        except Exception as exc:
            # The stream is complete or gone: nothing more will arrive on it.
            logger.debug("stop_stream(%d) ignored: %s", stream_id, exc)

    def send_datagram(self, data: bytes) -> None:
        limit = self.max_datagram_payload()
        if limit <= 0:
            self.datagrams_refused += 1
            raise DatagramsUnavailable("the peer does not accept QUIC datagrams")
        if len(data) > limit:
            # Never hand the stack a frame it cannot put in a packet: aioquic
            # would keep it at the head of its queue forever, qh3 would wedge.
            self.datagrams_refused += 1
            raise DatagramTooLarge(len(data), limit)
        try:
            self.quic.send_datagram_frame(data)
        except ValueError as exc:
            self.datagrams_refused += 1
            if "too large" in str(exc):
                raise DatagramTooLarge(len(data), limit) from exc
            raise DatagramsUnavailable(str(exc)) from exc
        except Exception as exc:
            if self._is_gone(exc):
                logger.debug("datagram dropped: %s", exc)
                return
            raise

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        stream_id: int = self.quic.get_next_available_stream_id(is_unidirectional)
        return stream_id

    def close(self, error_code: int, reason: str) -> None:
        """Close the connection with an application error (CONNECTION_CLOSE 0x1d)."""
        self._close_quic(error_code, None, reason)

    def close_transport(self, error_code: int, reason: str, frame_type: int = 0) -> None:
        """Close the connection with a transport error (e.g. 0x2 CONNECTION_REFUSED)."""
        self._close_quic(error_code, frame_type, reason)

    def _close_quic(self, error_code: int, frame_type: int | None, reason: str) -> None:
        if self.terminated:
            return
        try:
            applied = self.stack.close(self.quic, error_code, frame_type, reason)
        except Exception as exc:
            logger.debug("close ignored: %s", exc)
            return
        self.closing = self.closing or applied
        if not applied and self._pending_close is None:
            # The stack has not started yet (a qh3 server before its first
            # datagram): close as soon as it has.
            self._pending_close = (error_code, frame_type, reason)

    def _is_gone(self, exc: Exception) -> bool:
        message = str(exc)
        return any(fragment in message for fragment in self.stack.gone_messages)

    # -- what the driver calls ------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.remote_address is None:
            self.remote_address = addr
        self.datagrams_received += 1
        self.bytes_received += len(data)
        try:
            self.quic.receive_datagram(data, addr, now)
        except Exception as exc:
            # A stack must not take the driver down for one bad datagram.
            self.receive_errors += 1
            logger.debug("datagram from %s refused by %s: %r", addr, self.stack.name, exc)
        if self._pending_close is not None:
            code, frame_type, reason = self._pending_close
            if self.stack.close(self.quic, code, frame_type, reason):
                self._pending_close = None
                self.closing = True
        self.process_events(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        if self._blocked:
            self._flush_blocked()
        datagrams = self.stack.transmit(self, now)
        if datagrams:
            self.datagrams_sent += len(datagrams)
            for data, _addr in datagrams:
                self.bytes_sent += len(data)
        # aioquic issues connection ids while writing packets.
        self.process_events(now)
        return datagrams

    def get_timer(self) -> float | None:
        timer: float | None = self.quic.get_timer()
        return timer

    def handle_timer(self, now: float) -> None:
        self.quic.handle_timer(now)
        self.process_events(now)

    def process_events(self, now: float) -> None:
        """Feed every pending QUIC event to the engine (and to the listener)."""
        quic = self.quic
        event = quic.next_event()
        while event is not None:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(event, now)
            event = quic.next_event()
        if self._blocked:
            self._flush_blocked()
        if self.handshake_done and not self.terminated:
            phase = self.stack.key_phase(quic)
            if phase is not None and phase != self._key_phase:
                if self._key_phase is not None:
                    self._key_updates += 1
                self._key_phase = phase

    # -- what the API asks -------------------------------------------------------

    def send_backlog(self, stream_id: int) -> int:
        ops = self._blocked.get(stream_id) if self._blocked else None
        if ops:
            return sum(len(op[1]) for op in ops)
        try:
            return self.stack.send_backlog(self.quic, stream_id)
        except Exception:
            return 0

    def stream_consumed(self, stream_id: int, amount: int) -> None:
        if self.credit is not None and amount > 0:
            self.credit.consumed(stream_id, amount)

    def datagram_backlog(self) -> int:
        return self.stack.datagram_backlog(self.quic)

    def stream_kind(self, stream_id: int) -> bool | None:
        """Whether the application reads a stream (True), the engine itself (False), or unknown.

        Asked of the engine: a WebTransport data stream belongs to a session
        other than itself; a request stream is its own session; HTTP/3
        control and QPACK streams (and streams it does not track) have none.
        An engine that cannot tell is assumed to hand everything over.
        """
        lookup = getattr(self.engine, "stream_session", None)
        if lookup is None:
            return True
        session_id = lookup(stream_id)
        if session_id is None:
            return None
        return bool(session_id != stream_id)

    def request_key_update(self) -> None:
        if self.terminated or self.close_info is not None:
            raise BackendError("key update not possible now: the connection is closed")
        if not self.handshake_done:
            raise BackendError("key update not possible now: the handshake has not completed")
        try:
            self.stack.request_key_update(self.quic)
        except (AssertionError, ValueError) as exc:
            raise BackendError(
                f"key update not possible now (a previous update is still settling or the "
                f"handshake is not confirmed; retry later): {exc}"
            ) from exc
        except Exception as exc:
            raise BackendError(f"key update not possible now: {exc}") from exc
        phase = self.stack.key_phase(self.quic)
        if phase is not None and phase != self._key_phase:
            if self._key_phase is not None:
                self._key_updates += 1
            self._key_phase = phase

    def key_updates(self) -> int:
        return self._key_updates

    def max_datagram_payload(self) -> int:
        """The largest DATAGRAM frame payload that fits one packet and the peer's limit."""
        stack = self.stack
        quic = self.quic
        peer = stack.peer_max_datagram_frame_size(quic)
        if peer <= 0:
            return 0
        return datagram_payload_limit(min(peer, stack.packet_frame_budget(quic)))

    def stats(self) -> dict[str, float | int | None]:
        figures: dict[str, float | int | None] = {
            "rtt": None,
            "min_rtt": None,
            "latest_rtt": None,
            "cwnd": None,
            "bytes_in_flight": None,
            "packets_sent": None,
            "packets_received": None,
            "packets_lost": None,
            "pto_count": None,
        }
        try:
            figures.update(self.stack.stats(self))
        except Exception as exc:  # a stack changed its internals: report what we have
            logger.debug("stats of %s failed: %r", self.stack.name, exc)
        figures.update(
            {
                "datagrams_sent": self.datagrams_sent,
                "datagrams_received": self.datagrams_received,
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "datagrams_refused": self.datagrams_refused,
                "transmit_errors": self.transmit_errors,
                "receive_errors": self.receive_errors,
                "key_updates": self._key_updates,
                "max_datagram_payload": self.max_datagram_payload(),
                "datagram_backlog": self.datagram_backlog(),
                # 1 when QUIC receive windows follow consumption, 0 when they
                # are re-granted on receipt (the peer is bounded in flight only).
                "receive_credit_on_consumption": int(self.credit is not None),
            }
        )
        if self.credit is not None:
            figures.update(self.credit.stats())
        return figures

    # -- event handlers ------------------------------------------------------------

    def _hold(self, event: Any, now: float) -> None:
        handler = self._live_handlers[type(event)]
        self._held.append((handler, event))

    def _on_stream_data(self, event: Any, now: float) -> None:
        engine = self.engine
        if engine is not None:
            engine.receive_stream_data(event.stream_id, event.data, event.end_stream, now)
        credit = self.credit
        if credit is not None:
            # After the engine: it knows the stream's kind once it read its header.
            credit.on_data(event.stream_id, len(event.data), event.end_stream)

    def _on_stream_reset(self, event: Any, now: float) -> None:
        final_size = self.stack.final_size(self, event.stream_id)
        if self.credit is not None:
            self.credit.on_reset(event.stream_id, final_size)
        if self.engine is not None:
            self.engine.receive_stream_reset(event.stream_id, event.error_code, final_size, now)

    def _on_stop_sending(self, event: Any, now: float) -> None:
        if self.engine is not None:
            self.engine.receive_stop_sending(event.stream_id, event.error_code, now)

    def _on_datagram(self, event: Any, now: float) -> None:
        if self.engine is not None:
            self.engine.receive_datagram(event.data, now)

    def _on_protocol_negotiated(self, event: Any, now: float) -> None:
        self.alpn = event.alpn_protocol

    def _on_handshake_completed(self, event: Any, now: float) -> None:
        if self.handshake_done or self.certificate_error is not None:
            return
        self.alpn = event.alpn_protocol
        if self.is_client and self._pins and not self._check_pins(now):
            return
        self.handshake_done = True
        self._handlers = self._live_handlers
        engine = self.engine
        if engine is not None:
            engine.handshake_completed(event.alpn_protocol, self.max_datagram_payload(), now)
        held, self._held = self._held, []
        for handler, early in held:
            handler(early, now)
        self._key_phase = self.stack.key_phase(self.quic)

    def _check_pins(self, now: float) -> bool:
        """Client: the server's certificate must be one of the pinned ones."""
        try:
            der = self.stack.peer_certificate_der(self.quic)
        except Exception as exc:  # pragma: no cover - a stack changed its internals
            logger.debug("cannot read the peer certificate: %r", exc)
            der = None
        if der is not None and hashlib.sha256(der).digest() in self._pins:
            return True
        digest = "none" if der is None else hashlib.sha256(der).hexdigest()
        reason = (
            f"{PINNING_FAILED}: the server certificate (SHA-256 {digest}) is not one of "
            f"the {len(self._pins)} pinned certificate hashes"
        )
        self._refuse_certificate(reason, now)
        return False

    def _refuse_certificate(self, reason: str, now: float) -> None:
        self.certificate_error = reason
        # The client Finished has not left yet: a transport close in the
        # handshake packet space tells the server why.
        self._close_quic(CRYPTO_ERROR_BAD_CERTIFICATE, FRAME_TYPE_CRYPTO, reason)
        self._held = []
        # From now on only the end of the connection and its ids matter.
        keep = (
            self.stack.events.ConnectionTerminated,
            self.stack.events.ConnectionIdIssued,
            self.stack.events.ConnectionIdRetired,
        )
        self._handlers = {cls: self._live_handlers[cls] for cls in keep}
        self._tell_engine_terminated(CRYPTO_ERROR_BAD_CERTIFICATE, reason, now)

    def _tell_engine_terminated(self, error_code: int, reason: str, now: float) -> None:
        if self._engine_told:
            return
        self._engine_told = True
        if self.engine is not None:
            self.engine.connection_terminated(error_code, reason, now)

    def _on_terminated(self, event: Any, now: float) -> None:
        if self.terminated:
            return
        self.terminated = True
        error_code = int(event.error_code)
        reason = str(event.reason_phrase)
        frame_type = event.frame_type
        self.close_info = (error_code, None if frame_type is None else int(frame_type), reason)
        if (
            self.is_client
            and not self.handshake_done
            and self.certificate_error is None
            and error_code in _CERTIFICATE_ALERTS
        ):
            self.certificate_error = self._certificate_reason(reason)
            reason = self.certificate_error
        self._held = []
        self._blocked.clear()
        keylog, self._keylog = self._keylog, None
        if keylog is not None:
            with contextlib.suppress(OSError):
                keylog.close()
        self._tell_engine_terminated(error_code, reason, now)
        if self.listener is not None:
            self.listener.connection_terminated(self)

    def _certificate_reason(self, reason: str) -> str:
        """The reason of a refused certificate (pinning failures keep their name)."""
        if self._pins and "ingerprint" in reason:
            return f"{PINNING_FAILED}: {reason}"
        return f"certificate verification failed: {reason}"

    def _on_cid_issued(self, event: Any, now: float) -> None:
        if self.listener is not None:
            self.listener.connection_id_issued(self, event.connection_id)

    def _on_cid_retired(self, event: Any, now: float) -> None:
        if self.listener is not None:
            self.listener.connection_id_retired(self, event.connection_id)

    # -- streams over the peer's MAX_STREAMS (qh3 refuses them) --------------------

    def _flush_blocked(self) -> None:
        blocked = self._blocked
        quic = self.quic
        stuck: set[int] = set()  # stream kinds (id & 3) still over the limit
        for stream_id in sorted(blocked):
            kind = stream_id & 3
            if kind in stuck:
                continue
            ops = blocked[stream_id]
            if self.stack.waits_for_stream_credit(quic, stream_id):
                stuck.add(kind)
                continue
            try:
                while ops:
                    op, data, end_stream, code = ops[0]
                    if op == "data":
                        quic.send_stream_data(stream_id, data, end_stream)
                    elif op == "reset":
                        quic.reset_stream(stream_id, code)
                    else:
                        quic.stop_stream(stream_id, code)
                    ops.pop(0)
            except Exception as exc:
                if self.stack.is_stream_limit_error(exc):
                    stuck.add(kind)
                    continue
                logger.debug("queued operation on stream %d dropped: %s", stream_id, exc)
                ops.clear()
            del blocked[stream_id]


def _long_header_invariants(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(version, destination cid, source cid) of a long header packet, None if truncated."""
    if len(data) < 7:
        return None
    version = int.from_bytes(data[1:5], "big")
    dcid_end = 6 + data[5]
    if len(data) <= dcid_end:
        return None
    scid_end = dcid_end + 1 + data[dcid_end]
    if len(data) < scid_end:
        return None
    return version, data[6:dcid_end], data[dcid_end + 1 : scid_end]


class StackDemux:
    """Routes a server socket's datagrams to ``StackConnection``s by connection id.

    RFC 9000 section 5.2 with the two stacks' rules (notes section 1): parse
    the header; answer an unsupported version with Version Negotiation (never
    a Version Negotiation packet, never a datagram too small to be an
    Initial); create a connection only for an Initial of at least 1200 bytes;
    keep the map exact through issued and retired ids, and forget every id of
    a connection once it ended.  No Retry, no stateless reset.
    """

    def __init__(
        self,
        backend: StackBackend,
        settings: QuicSettings,
        on_connection: Callable[[SansIOConnectionProtocol], None],
    ) -> None:
        if settings.is_client:
            raise BackendError("a server demultiplexer needs server settings")
        self._backend = backend
        self._stack = backend.stack
        self._settings = settings
        self._config = backend.stack.configuration(settings)
        self._cid_length: int = int(self._config.connection_id_length)
        self._versions: list[int] = [int(v) for v in self._config.supported_versions]
        self._on_connection = on_connection
        self._by_cid: dict[bytes, StackConnection] = {}
        self._cids: dict[int, set[bytes]] = {}
        self._connections: dict[int, StackConnection] = {}
        self._stateless: list[tuple[bytes, Address]] = []
        self.datagrams_dropped = 0
        self.version_negotiations = 0
        self.connections_created = 0

    # ServerDemux -------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address, now: float) -> StackConnection | None:
        if data and data[0] & 0x80:
            # A long header: read its version-independent part (RFC 8999) first,
            # since the stacks cannot parse the rest of an unknown version.
            invariant = _long_header_invariants(data)
            if invariant is None:
                self.datagrams_dropped += 1
                return None
            version, dcid, scid = invariant
            if version == 0:
                # Version Negotiation is for clients; never answered (no reflection loop).
                self.datagrams_dropped += 1
                return None
            if version not in self._versions:
                # A reply only to what could be a client's first datagram (RFC 9000
                # section 6.1), so that small spoofed packets are not amplified.
                if len(data) >= MIN_INITIAL_SIZE and len(self._stateless) < MAX_STATELESS_QUEUE:
                    # Our source id is the one the client chose as destination.
                    packet = self._stack.encode_version_negotiation(dcid, scid, self._versions)
                    self._stateless.append((packet, addr))
                    self.version_negotiations += 1
                else:
                    self.datagrams_dropped += 1
                return None
        try:
            packet_version, packet_type, dcid, _scid = self._stack.parse_header(
                data, self._cid_length
            )
        except ValueError:
            self.datagrams_dropped += 1
            return None
        connection = self._by_cid.get(dcid)
        if connection is None:
            if (
                packet_type != PACKET_INITIAL
                or packet_version is None
                or len(data) < MIN_INITIAL_SIZE
                or len(dcid) < MIN_INITIAL_DCID
            ):
                self.datagrams_dropped += 1
                return None
            connection = self._create(dcid, addr)
        connection.receive_datagram(data, addr, now)
        return connection

    def stateless_datagrams(self) -> list[tuple[bytes, Address]]:
        out, self._stateless = self._stateless, []
        return out

    def connection_ended(self, connection: SansIOConnectionProtocol) -> None:
        key = id(connection)
        self._connections.pop(key, None)
        for cid in self._cids.pop(key, ()):
            if self._by_cid.get(cid) is connection:
                del self._by_cid[cid]

    # ConnectionListener ------------------------------------------------------

    def connection_id_issued(self, connection: StackConnection, cid: bytes) -> None:
        cids = self._cids.get(id(connection))
        if cids is None:  # already ended
            return
        cids.add(cid)
        self._by_cid[cid] = connection

    def connection_id_retired(self, connection: StackConnection, cid: bytes) -> None:
        cids = self._cids.get(id(connection))
        if cids is not None:
            cids.discard(cid)
        if self._by_cid.get(cid) is connection:
            del self._by_cid[cid]

    def connection_terminated(self, connection: StackConnection) -> None:
        self.connection_ended(connection)

    # -------------------------------------------------------------------------

    @property
    def connections(self) -> list[StackConnection]:
        return list(self._connections.values())

    def connection_ids(self) -> dict[bytes, StackConnection]:
        """A copy of the routing table (for tests and diagnostics)."""
        return dict(self._by_cid)

    def _create(self, dcid: bytes, addr: Address) -> StackConnection:
        connection = self._backend.server_connection(
            self._settings, dcid, configuration=self._config
        )
        connection.remote_address = addr
        key = id(connection)
        self._connections[key] = connection
        cids = {dcid, bytes(connection.quic.host_cid)}
        self._cids[key] = cids
        for cid in cids:
            self._by_cid[cid] = connection
        connection.listener = self
        self.connections_created += 1
        self._on_connection(connection)
        return connection


class StackBackend:
    """The ``SansIOBackend`` of one stack."""

    kind: Literal["sans-io"] = "sans-io"

    def __init__(self, stack: QuicStack) -> None:
        self.stack = stack
        self.name = stack.name

    def __repr__(self) -> str:
        return f"<{self.name} backend>"

    @property
    def credit_on_consumption(self) -> bool:
        """Whether QUIC receive windows follow what the application consumed."""
        return self.stack.credit_on_consumption

    def configuration(self, settings: QuicSettings) -> Any:
        """The stack's QuicConfiguration for ``settings``."""
        return self.stack.configuration(settings)

    async def open_client(
        self,
        settings: QuicSettings,
        server_address: Address,
        *,
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
    ) -> tuple[Driver, BackendConnection]:
        """A UDP socket, the anyio driver and a client connection."""
        from .driver import open_sansio_client  # noqa: PLC0415 - the driver imports this module

        return await open_sansio_client(
            self, settings, server_address, on_activity=on_activity, on_ended=on_ended
        )

    async def open_server(
        self,
        settings: QuicSettings,
        host: str,
        port: int,
        *,
        on_connection: Callable[[BackendConnection], None],
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
    ) -> Driver:
        """A UDP socket and the anyio driver, demultiplexing server connections."""
        from .driver import open_sansio_server  # noqa: PLC0415 - the driver imports this module

        return await open_sansio_server(
            self,
            settings,
            host,
            port,
            on_connection=on_connection,
            on_activity=on_activity,
            on_ended=on_ended,
        )

    def client_connection(
        self, settings: QuicSettings, server_address: Address, now: float
    ) -> StackConnection:
        if not settings.is_client:
            raise BackendError("client_connection needs client settings (is_client=True)")
        if not settings.server_name:
            settings = dataclasses.replace(settings, server_name=server_address[0])
        config = self.stack.configuration(settings)
        keylog = _open_keylog(settings.keylog_file)
        if keylog is not None:
            config.secrets_log_file = keylog
        try:
            quic = self.stack.connection_class(configuration=config)
            connection = StackConnection(quic, self.stack, settings=settings, keylog=keylog)
            connection.remote_address = server_address
            quic.connect(server_address, now)
        except BaseException:
            if keylog is not None:
                keylog.close()
            raise
        return connection

    def server_connection(
        self,
        settings: QuicSettings,
        original_destination_connection_id: bytes,
        *,
        configuration: Any = None,
    ) -> StackConnection:
        """A server connection for a client's first Initial (the demux calls this)."""
        config = configuration if configuration is not None else self.stack.configuration(settings)
        keylog = _open_keylog(settings.keylog_file)
        if keylog is not None:
            # One file object per connection: it is closed when the connection ends.
            config = dataclasses.replace(config, secrets_log_file=keylog)
        try:
            quic = self.stack.server_quic(config, original_destination_connection_id)
            return StackConnection(quic, self.stack, settings=settings, keylog=keylog)
        except BaseException:
            if keylog is not None:
                keylog.close()
            raise

    def server_demux(
        self, settings: QuicSettings, on_connection: Callable[[SansIOConnectionProtocol], None]
    ) -> StackDemux:
        return StackDemux(self, settings, on_connection)


#: Deprecated name of ``StackConnection``: tests/engine/test_aioquic_h3_peer.py
#: still imports it.  base.SansIOConnection is the protocol; use StackConnection.
SansIOConnection = StackConnection


if TYPE_CHECKING:
    # mypy checks that these classes implement base.py's protocols.
    def _conforms(
        backend: StackBackend, connection: StackConnection, demux: StackDemux
    ) -> tuple[SansIOBackend, SansIOConnectionProtocol, ServerDemux]:
        return backend, connection, demux
