"""The aiopquic backend (aiopquic 0.6+, CPython 3.12+): ``pip install 'anywt[aiopquic]'``.

aiopquic wraps picoquic (C) on its own network thread: the UDP socket,
packet protection, congestion control and timers live there, and Python is
told through an eventfd.  It is the first *self-driven* backend
(DESIGN.md section 5): ``_selfdriven.SelfDrivenDriver`` waits on that
descriptor with ``anyio.wait_readable`` and drains the events, so the same
code runs under asyncio, uvloop and trio.  aiopquic's own asyncio objects
(its protocol, ``send_stream_data_drained``, the drain ``asyncio.Event``\\ s)
are never awaited.

What the adapter adds, or cannot do (README's backend table says the same):

* **Send backpressure.**  Each stream has a send ring in C
  (``STREAM_RING_CAP``); a write the ring cannot take whole is split to fit
  and the rest waits in the adapter, never dropped.  ``send_backlog``
  reports the waiting bytes, so API writers block on them; the driver
  refills the rings on every wake-up and at least every millisecond while
  something waits.  Datagrams that find their ring full wait the same way
  (up to ``MAX_QUEUED_DATAGRAMS``, then the newest are dropped and counted).
* **Writes before the connection exists** (a client's first SETTINGS and
  CONNECT go out before picoquic created its connection) wait in order
  until it does; aiopquic would silently drop them.
* **Certificates.**  picoquic loads PEM files, so a server's chain and key
  (PEM in memory) are written to a private temporary directory, loaded and
  removed at once; a client's ``cadata`` likewise.  Pinning by SHA-256
  (``server_certificate_hashes``) and readable verification failures come
  from a hook on picotls' certificate verifier (``_pquic_tls``), checked
  inside the handshake.
* **The exact DATAGRAM payload limit** is the smaller of aiopquic's
  producer cap (1200 bytes, which fits the first packet of any path) and
  what the peer's ``max_datagram_frame_size`` leaves after the frame
  header (aiopquic's own ceiling compares the frame limit with the
  payload).
* **Not available:** the final size of a stream the peer reset (the engine
  gets -1, as with the other stacks' hidden sizes); the reason phrase and
  frame type of a CONNECTION_CLOSE (ours carry the code only, always as an
  application close, so ``close_transport`` sends an application close with
  that code); key updates on request (picoquic rotates keys by itself after
  a number of packets; ``request_key_update`` raises ``BackendError`` and
  ``key_updates()`` stays 0); receive windows tied to consumption (credit is
  re-granted on receipt, like qh3); binding a server to one address
  (picoquic binds the wildcard address of the family: a server asked for
  127.0.0.1 listens on every IPv4 address); congestion control names other
  than picoquic's ("reno" means picoquic's newreno).
* **SETTINGS before requests.**  picoquic holds 1-RTT stream data until
  the handshake is confirmed and writes the lowest stream id first, so a
  client's first CONNECT would share a packet with its SETTINGS, ahead of
  them (pywebtransport 0.21's server then leaves flow control off for that
  session); bidirectional streams' bytes wait until the first bytes of the
  HTTP/3 control and QPACK streams are in packets (``_requests_wait``), as
  the other backends send them.
* **Order of resets.**  picoquic writes RESET_STREAM and STOP_SENDING
  ahead of stream data in a packet, so a session's close capsule would
  arrive after the resets of its streams that follow it; a reset or
  STOP_SENDING therefore waits (at most ``ORDER_WAIT``) until the bytes
  written before it on other streams are in packets.
* A server that accepts no datagrams (``max_datagram_frame_size=0``)
  advertises a limit of 1 byte: picoquic cannot leave the transport
  parameter out (0 keeps its default), and no payload fits 1 byte.
* qlog files are picoquic's own (one JSON file per connection in
  ``qlog_dir``); the key log is written exactly when ``keylog_file`` is set.

Private aiopquic API this module relies on (there is no public way), each
for one reason:

* ``TransportContext`` (``aiopquic._binding._transport``) is started here
  (``_start_context``) and set as ``QuicConnection._transport`` (client) or
  ``QuicEngine._transport`` (server), instead of calling aiopquic's private
  ``_start_transport``: that one writes a key log whenever ``SSLKEYLOGFILE``
  is set (anywt lets ``trust_env`` decide), and the certificate hook must
  wrap exactly the start.
* ``QuicConnection._handle_raw_event(...)`` (client) and
  ``QuicConnection._enqueue_raw(...)`` (server) convert the events the
  driver drains with ``TransportContext.drain_rx_callback``: aiopquic's own
  conversion keeps its stream-context bookkeeping (reference counts of the C
  rings) right.  ``QuicConnection._events`` (the converted events) is read
  directly, since ``next_event()`` would drain the ring again on its own.
  Datagram events skip the conversion (nothing to keep there).
* ``QuicConnection._cnx_ptr`` (read): whether picoquic created the client
  connection yet; writes before that are queued here.
* ``QuicConnection._release_dgram_ring()`` when a server stops with
  connections whose close was never drained (aiopquic's ``QuicEngine.close``
  does the same for the connections it tracks itself).
* C symbols of the wheel, for the certificate hook (``_pquic_tls``).

aiopquic's ``QuicConnection`` creates ``asyncio.Event`` objects and sets
them as events arrive; creating or setting one needs no event loop (an
``asyncio.Event`` binds to a loop only when awaited), so this is inert under
trio.  Nothing here awaits them.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import anyio

if sys.version_info < (3, 12):  # pragma: no cover - aiopquic ships no wheel for older Pythons
    raise ImportError(
        "the aiopquic backend needs CPython >= 3.12 and `pip install anywt[aiopquic]`"
    )

from aiopquic._binding._transport import TransportContext  # type: ignore[import-not-found,import-untyped,unused-ignore]
from aiopquic.quic import events as _events  # type: ignore[import-not-found,import-untyped,unused-ignore]
from aiopquic.quic.configuration import QuicConfiguration  # type: ignore[import-not-found,import-untyped,unused-ignore]
from aiopquic.quic.connection import QuicConnection, QuicEngine  # type: ignore[import-not-found,import-untyped,unused-ignore]

from anywt.core.errors import DatagramsUnavailable, DatagramTooLarge

from ._pquic_tls import CertificateCheck, TlsHookUnavailable, verifier_hook
from ._sansio import datagram_payload_limit
from ._selfdriven import NativeConnection, SelfDrivenDriver
from .base import (
    ActivityCallback,
    Address,
    BackendConnection,
    BackendError,
    Driver,
    EndedCallback,
    QuicSettings,
)

__all__ = [
    "DATAGRAM_MAX_PAYLOAD",
    "STREAM_RING_CAP",
    "PquicBackend",
    "PquicConnection",
    "backend",
]

logger = logging.getLogger("anywt.backends.aiopquic")

#: Bytes one stream may hold in its C send ring (a power of two).
STREAM_RING_CAP = 1 << 22
#: The largest DATAGRAM payload aiopquic accepts (fits a fresh packet on any path).
DATAGRAM_MAX_PAYLOAD = 1200
#: Bytes of the per-connection datagram send ring.
DATAGRAM_RING_BYTES = 1 << 20
#: Datagrams waiting in the adapter for room in the ring; beyond, new ones are dropped.
MAX_QUEUED_DATAGRAMS = 4096
#: Connections one server context holds (anywt's own limits apply first).
MAX_CONNECTIONS = 4096
#: How long a server waits for picoquic's thread to bind its socket.
START_TIMEOUT = 2.0
#: How long a RESET_STREAM / STOP_SENDING may wait for earlier writes to leave.
ORDER_WAIT = 0.005
#: After a STOP_SENDING is handed to picoquic, how long what it reported before
#: applying it may still be on its way in the event ring; then the stream's
#: receive side is over (picoquic reports nothing after STOP_SENDING but a
#: reset, not even a FIN).
STOP_SETTLE = 0.05
#: CRYPTO_ERROR base: a TLS alert ``n`` closes a QUIC connection with 0x100 + n.
CRYPTO_ERROR = 0x100
#: First byte of HTTP/3's control (0x00), QPACK encoder (0x02) and decoder
#: (0x03) streams (a WebTransport stream starts 0x40 0x54): their first bytes
#: go out before any bidirectional stream's (see ``_requests_wait``).
_CRITICAL_STREAM_TYPES = (b"\x00", b"\x02", b"\x03")
#: The engine opens those three as its first unidirectional streams.
_CRITICAL_STREAMS = 3

#: anywt's congestion control names -> picoquic's.
_CONGESTION_CONTROL = {
    "reno": "newreno",
    "newreno": "newreno",
    "cubic": "cubic",
    "dcubic": "dcubic",
    "bbr": "bbr",
    "bbr1": "bbr1",
    "prague": "prague",
    "fast": "fast",
    "c4": "c4",
}

_STREAM_DATA = _events.StreamDataReceived
_STREAM_RESET = _events.StreamReset
_STOP_SENDING = _events.StopSendingReceived
_DATAGRAM = _events.DatagramFrameReceived
_HANDSHAKE = _events.HandshakeCompleted
_TERMINATED = _events.ConnectionTerminated
_NEGOTIATED = _events.ProtocolNegotiated

# Raw event types (aiopquic's spsc_ring.h).
_EVT_CLOSE = 4
_EVT_APP_CLOSE = 5
_EVT_DATAGRAM = 8
#: Events drained from picoquic's ring per call.
_DRAIN_BATCH = 256


class _RoutineAtDebug(logging.Filter):
    """aiopquic logs every stream the peer resets, and every close with an error
    code, at WARNING; in WebTransport both are routine (a closing session resets
    its streams, H3 closes carry codes), so they are demoted to DEBUG."""

    ROUTINE = frozenset(("stream %d reset by peer: error=%d", "connection closed (%s): error=%d"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.ROUTINE and record.levelno > logging.DEBUG:
            record.levelno = logging.DEBUG
            record.levelname = "DEBUG"
        return True


_aiopquic_logger = logging.getLogger("aiopquic.quic.connection")
if not any(isinstance(f, _RoutineAtDebug) for f in _aiopquic_logger.filters):
    _aiopquic_logger.addFilter(_RoutineAtDebug())


def _family(host: str) -> int:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return socket.AF_INET
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _congestion_control(name: str) -> str:
    chosen = _CONGESTION_CONTROL.get(name)
    if chosen is None:
        raise BackendError(
            f"aiopquic has no congestion control {name!r} "
            f"(choose one of {', '.join(sorted(_CONGESTION_CONTROL))})"
        )
    return chosen


def _configuration(
    settings: QuicSettings, *, family: int, verify: bool = True, cafile: str | None = None
) -> QuicConfiguration:
    if settings.qlog_dir:
        os.makedirs(settings.qlog_dir, exist_ok=True)
    try:
        return QuicConfiguration(
            alpn_protocols=list(settings.alpn_protocols),
            idle_timeout=settings.idle_timeout,
            is_client=settings.is_client,
            max_data=settings.max_data,
            max_stream_data=settings.max_stream_data,
            # picoquic cannot leave the parameter out (0 keeps its default,
            # 1536): 1 advertises a limit no datagram payload fits.
            max_datagram_frame_size=settings.max_datagram_frame_size or 1,
            datagram_ring_bytes=DATAGRAM_RING_BYTES,
            datagram_max_payload=DATAGRAM_MAX_PAYLOAD,
            server_name=settings.server_name,
            verify_mode=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
            cafile=cafile,
            secrets_log_file=settings.keylog_file,
            qlog_dir=settings.qlog_dir,
            congestion_control_algorithm=_congestion_control(settings.congestion_control),
            stream_ring_cap=STREAM_RING_CAP,
            max_streams_uni=settings.max_streams_uni,
            max_streams_bidi=settings.max_streams_bidi,
            max_connections=MAX_CONNECTIONS,
            ip_family=family,
        )
    except ValueError as exc:
        raise BackendError(f"aiopquic refused the settings: {exc}") from exc


def _start_context(config: QuicConfiguration, port: int) -> Any:
    """A started picoquic context (thread and socket) for ``config``.

    Like aiopquic's ``_start_transport`` but without its environment
    fallbacks: the key log is exactly ``secrets_log_file`` (anywt decides
    about ``SSLKEYLOGFILE`` itself, honouring ``trust_env``).
    """
    alpns = list(config.alpn_protocols or ())
    context = TransportContext()
    context.start(
        port=port,
        cert_file=config.certificate_file,
        key_file=config.private_key_file,
        alpn=alpns[0] if len(alpns) == 1 else None,
        alpn_list=alpns if len(alpns) > 1 else None,
        is_client=config.is_client,
        verify_peer=config.verify_peer,
        ca_file=config.cafile,
        idle_timeout_ms=int(config.idle_timeout * 1000),
        max_datagram_frame_size=config.max_datagram_frame_size or 0,
        keylog_filename=config.secrets_log_file,
        rx_data_ring_cap=config.max_stream_data,
        congestion_control_algorithm=config.congestion_control_algorithm,
        initial_max_data=config.max_data,
        initial_max_streams_uni=config.max_streams_uni,
        initial_max_streams_bidi=config.max_streams_bidi,
        qlog_dir=config.qlog_dir,
        max_connections=config.max_connections,
        ip_family=-1 if config.ip_family is None else config.ip_family,
        pmtud_policy=config.pmtud,
    )
    return context


@contextlib.contextmanager
def _private_directory() -> Iterator[str]:
    """A directory only we can read, removed (with what it holds) afterwards."""
    path = tempfile.mkdtemp(prefix="anywt-aiopquic-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    return path


def _pem_roots(cadata: bytes | str) -> bytes:
    """``cadata`` (PEM text or DER bytes, like ``ssl.SSLContext.load_verify_locations``) as PEM."""
    if isinstance(cadata, str):
        return cadata.encode("ascii")
    if b"-----BEGIN" in cadata:
        return cadata
    return ssl.DER_cert_to_PEM_cert(cadata).encode("ascii")


_PLACEHOLDER_FILE: str | None = None


def _placeholder_root_file() -> str:
    """A root file for pinning clients: a throw-away self-signed certificate.

    picoquic verifies only against a root file; with pins, the certificate
    hook replaces its verdict, so any certificate will do.  Made once per
    process (in a private directory removed at exit): connection setup
    should not pay for it.
    """
    global _PLACEHOLDER_FILE  # noqa: PLW0603 - made once per process
    if _PLACEHOLDER_FILE is None or not os.path.exists(_PLACEHOLDER_FILE):
        from anywt.certs import generate_dev_certificate  # noqa: PLC0415

        directory = tempfile.mkdtemp(prefix="anywt-aiopquic-")
        atexit.register(shutil.rmtree, directory, True)
        placeholder = generate_dev_certificate(("anywt-pinning.invalid",)).cert_pem
        _PLACEHOLDER_FILE = _write(directory, "placeholder-root.pem", placeholder)
    return _PLACEHOLDER_FILE


def _nothing() -> None:
    pass


class PquicConnection:
    """One aiopquic connection driving one ``WebTransportEngine`` (base.BackendConnection)."""

    def __init__(
        self,
        quic: QuicConnection,
        *,
        is_client: bool,
        check: CertificateCheck | None = None,
        remote_address: Address | None = None,
    ) -> None:
        self.quic: QuicConnection | None = quic
        self.engine: Any = None
        self.is_client = is_client
        self.handshake_done = False
        self.terminated = False
        self.alpn: str | None = None
        self.remote_address = remote_address
        #: Why the peer's certificate was refused (client), else None.
        self.certificate_error: str | None = None
        #: (error code, frame type, reason) once the connection is over.
        self.close_info: tuple[int, int | None, str] | None = None
        self._check = check
        self._created = not is_client  # a server connection exists when we hear of it
        self._engine_told = False
        self._closing: tuple[int, str] | None = None
        self._max_payload = 0
        # Work queued before picoquic created the connection, in order.
        self._early: list[tuple[str, int, bytes, bool, int]] = []
        # Stream bytes the send rings refused: stream id -> chunks, FIN wanted.
        self._queues: dict[int, deque[memoryview]] = {}
        self._queued: dict[int, int] = {}
        self._fins: set[int] = set()
        # RESET_STREAM / STOP_SENDING the command ring refused.
        # RESET_STREAM / STOP_SENDING not handed over yet: (kind, stream id,
        # code, {other stream: bytes it must have sent first}, deadline).
        self._commands: deque[tuple[str, int, int, dict[int, int], float]] = deque()
        # Per stream: bytes handed to its ring in total, when last, and whether
        # the FIN went with them (nothing more will come: ``_forget_pushed``).
        self._pushed: dict[int, tuple[int, float, bool]] = {}
        # Streams we stopped, and when: ``_report_discarded`` ends their receive side.
        self._stopped: dict[int, float] = {}
        # HTTP/3 control and QPACK streams seen, and the bytes of their first
        # writes until picoquic has put them in packets (``_requests_wait``).
        self._critical: set[int] = set()
        self._critical_unsent: dict[int, int] = {}
        self._datagrams: deque[bytes] = deque()
        self._held: list[Any] = []
        # Events converted by aiopquic and not yet handed to the engine.
        self._pending = False
        #: Called when something starts waiting for room (the driver polls then).
        self.poll_soon: Callable[[], None] = _nothing
        # QUIC DATAGRAM frames (not UDP datagrams: picoquic counts those).
        self.datagram_frames_received = 0
        self.datagram_frames_sent = 0
        self.datagrams_refused = 0
        self.datagrams_dropped = 0
        self.stream_bytes_received = 0
        self.ring_refusals = 0
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            _STREAM_DATA: self._hold,
            _STREAM_RESET: self._hold,
            _STOP_SENDING: self._hold,
            _DATAGRAM: self._hold,
            _HANDSHAKE: self._on_handshake_completed,
            _TERMINATED: self._on_terminated,
            _NEGOTIATED: self._on_protocol_negotiated,
        }
        self._live_handlers: dict[type, Callable[[Any, float], None]] = {
            _STREAM_DATA: self._on_stream_data,
            _STREAM_RESET: self._on_stream_reset,
            _STOP_SENDING: self._on_stop_sending,
            _DATAGRAM: self._on_datagram,
            _HANDSHAKE: self._on_handshake_completed,
            _TERMINATED: self._on_terminated,
            _NEGOTIATED: self._on_protocol_negotiated,
        }

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<PquicConnection {role} at {id(self):#x}>"

    # -- Transport (called by the engine) ------------------------------------

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if self.terminated or self._closing is not None:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if not self._created:
            self._early.append(("data", stream_id, data, end_stream, 0))
            return
        if stream_id & 2:
            if stream_id >> 2 < _CRITICAL_STREAMS:
                self._note_critical(stream_id, data)
        elif self._critical_unsent and self._requests_wait():
            self._enqueue(stream_id, memoryview(data), end_stream)
            return
        if stream_id in self._queues:
            self._enqueue(stream_id, memoryview(data), end_stream)
            return
        taken, complete = self._push(stream_id, data, end_stream)
        if not complete:
            self._enqueue(stream_id, memoryview(data)[taken:], end_stream)

    def _note_critical(self, stream_id: int, data: bytes) -> None:
        """Note the first write of HTTP/3's control and QPACK streams (``_requests_wait``)."""
        local = (stream_id & 1) == (0 if self.is_client else 1)
        if local and stream_id not in self._critical and data[:1] in _CRITICAL_STREAM_TYPES:
            self._critical.add(stream_id)
            self._critical_unsent[stream_id] = len(data)

    def _requests_wait(self) -> bool:
        """Whether bidirectional streams' bytes wait for the control and QPACK streams' first.

        picoquic holds 1-RTT stream data until the handshake is confirmed,
        so a client's SETTINGS (written at once) and its first CONNECT
        (written when the server's SETTINGS come, with HANDSHAKE_DONE) would
        leave in one packet, the CONNECT first (picoquic writes the lowest
        stream id first).  The draft asks a server to wait for the client's
        SETTINGS, but pywebtransport 0.21 decides the session's flow control
        on a CONNECT that comes with them, even after them in one packet,
        and then never grants credit.  The other backends send the SETTINGS
        in a packet of their own, at the handshake's end; here the request
        waits (about a millisecond, for the driver's next flush) until
        picoquic has put the SETTINGS in a packet.  Once they are, nothing
        waits again on this connection.
        """
        quic = self.quic
        assert quic is not None
        for stream_id, size in self._critical_unsent.items():
            if quic.tx_sent_bytes(stream_id) < size:
                return True
        self._critical_unsent.clear()
        return False

    def _push(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> tuple[int, bool]:
        """Hand what the stream's ring takes now: (bytes taken, whether all and the FIN were)."""
        quic = self.quic
        assert quic is not None
        size = len(data)
        room = STREAM_RING_CAP - quic.tx_data_ring_used(stream_id)
        try:
            if size <= room:
                quic.send_stream_data(stream_id, bytes(data), end_stream)
                taken = size
            elif room <= 0:
                return 0, False
            else:
                quic.send_stream_data(stream_id, bytes(data[:room]), False)
                taken = room
        except BufferError:
            # The command ring is full (or the room estimate was off): retry later.
            self.ring_refusals += 1
            return 0, False
        complete = taken == size
        if taken or (end_stream and complete and stream_id in self._pushed):
            total = self._pushed.get(stream_id, (0, 0.0, False))[0] + taken
            self._pushed[stream_id] = (total, time.monotonic(), end_stream and complete)
        return taken, complete

    def _enqueue(self, stream_id: int, data: memoryview, end_stream: bool) -> None:
        if not self._queues:
            self.poll_soon()
        queue = self._queues.get(stream_id)
        if queue is None:
            queue = self._queues[stream_id] = deque()
            self._queued[stream_id] = 0
        if data:
            queue.append(data)
            self._queued[stream_id] += len(data)
        if end_stream:
            self._fins.add(stream_id)

    def _drop_queue(self, stream_id: int) -> None:
        self._queues.pop(stream_id, None)
        self._queued.pop(stream_id, None)
        self._fins.discard(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> int:
        if self.terminated:
            return 0
        if not self._created:
            self._early.append(("reset", stream_id, b"", False, error_code))
            return 0
        # The bytes still waiting here never reach picoquic.  What picoquic
        # holds unsent is not counted: whether its reset drops them is not
        # known, and the engine must never be told of more than was dropped.
        dropped = self._queued.get(stream_id, 0)
        self._drop_queue(stream_id)
        self._pushed.pop(stream_id, None)
        self._command("reset", stream_id, error_code)
        return dropped

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        if self.terminated:
            return
        if not self._created:
            self._early.append(("stop", stream_id, b"", False, error_code))
            return
        self._command("stop", stream_id, error_code)

    def _command(self, kind: str, stream_id: int, error_code: int) -> None:
        now = time.monotonic()
        before = self._unsent_before(stream_id, now)
        if not self._commands and not before and self._try_command(kind, stream_id, error_code):
            return
        if not self._commands:
            self.poll_soon()
        self._commands.append((kind, stream_id, error_code, before, now + ORDER_WAIT))

    def _unsent_before(self, stream_id: int, now: float) -> dict[int, int]:
        """Other streams' bytes, handed over lately, that picoquic has not put in a packet yet.

        picoquic writes RESET_STREAM and STOP_SENDING ahead of stream data in
        a packet, so a reset issued right after a write on another stream
        (a session's close capsule, then its streams' resets) would overtake
        it; commands wait (at most ``ORDER_WAIT``) until those bytes left.
        """
        quic = self.quic
        assert quic is not None
        waits: dict[int, int] = {}
        for other, (total, when, _fin) in self._pushed.items():
            # Older entries no longer hold anything back (``_forget_pushed`` drops them).
            recent = now - when <= ORDER_WAIT
            if recent and other != stream_id and quic.tx_sent_bytes(other) < total:
                waits[other] = total
        return waits

    def _forget_pushed(self) -> None:
        """Forget the streams whose FIN is older than ``ORDER_WAIT``: ``_unsent_before``
        no longer looks at them, and nothing more will be written on them."""
        now = time.monotonic()
        done = [
            stream_id
            for stream_id, (_total, when, fin) in self._pushed.items()
            if now - when > (ORDER_WAIT if fin else 1.0)
        ]
        for stream_id in done:
            del self._pushed[stream_id]

    def _command_ready(self, waits: dict[int, int], deadline: float) -> bool:
        if not waits or time.monotonic() >= deadline:
            return True
        quic = self.quic
        assert quic is not None
        for other, total in list(waits.items()):
            if quic.tx_sent_bytes(other) >= total:
                del waits[other]
        return not waits

    def _try_command(self, kind: str, stream_id: int, error_code: int) -> bool:
        quic = self.quic
        assert quic is not None
        try:
            if kind == "reset":
                quic.reset_stream(stream_id, error_code)
            else:
                quic.stop_stream(stream_id, error_code)
        except BufferError:
            self.ring_refusals += 1
            return False
        if kind == "stop":
            if not self._stopped:
                self.poll_soon()  # the driver looks at ``wake_in`` again
            self._stopped[stream_id] = time.monotonic()
        return True

    def _report_discarded(self, now: float) -> bool:
        """Tell the engine which stopped streams picoquic will report nothing more of."""
        settled = time.monotonic() - STOP_SETTLE
        done = [stream_id for stream_id, when in self._stopped.items() if when <= settled]
        engine = self.engine
        for stream_id in done:
            del self._stopped[stream_id]
            if engine is not None:
                engine.receive_side_discarded(stream_id, now)
        return bool(done)

    def send_datagram(self, data: bytes) -> None:
        limit = self._max_payload
        if limit <= 0:
            self.datagrams_refused += 1
            raise DatagramsUnavailable(
                "the peer does not accept QUIC datagrams"
                if self.handshake_done
                else "the QUIC handshake has not finished"
            )
        if len(data) > limit:
            self.datagrams_refused += 1
            raise DatagramTooLarge(len(data), limit)
        if self.terminated or self._closing is not None:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._datagrams or not self._send_datagram(data):
            if len(self._datagrams) >= MAX_QUEUED_DATAGRAMS:
                self.datagrams_dropped += 1
                return
            if not self._datagrams:
                self.poll_soon()
            self._datagrams.append(data)

    def _send_datagram(self, data: bytes) -> bool:
        quic = self.quic
        assert quic is not None
        try:
            taken = quic.send_datagram_frame(data)
        except ConnectionError:
            self.datagrams_dropped += 1  # closing: nowhere to go
            return True
        except ValueError as exc:
            raise DatagramTooLarge(len(data), self._max_payload) from exc
        if taken:
            self.datagram_frames_sent += 1
            return True
        return False

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        quic = self.quic
        if quic is None:
            raise BackendError("the connection is closed")
        stream_id: int = quic.get_next_available_stream_id(is_unidirectional)
        return stream_id

    def close(self, error_code: int, reason: str) -> None:
        """Close with an application error (picoquic sends no reason phrase)."""
        if self.terminated or self._closing is not None:
            return
        self._closing = (error_code, reason)
        # Nothing queued will be sent any more.
        self._early.clear()
        self._queues.clear()
        self._queued.clear()
        self._fins.clear()
        self._commands.clear()
        self._datagrams.clear()
        if self._created and self.quic is not None:
            self.quic.close(error_code)

    def close_transport(self, error_code: int, reason: str, frame_type: int = 0) -> None:
        """picoquic closes only with application errors: this sends one with ``error_code``."""
        self.close(error_code, reason)

    # -- what the API asks ----------------------------------------------------

    def send_backlog(self, stream_id: int) -> int:
        queued = self._queued.get(stream_id, 0)
        if self._early:
            queued += sum(len(op[2]) for op in self._early if op[1] == stream_id)
        return queued

    def stream_consumed(self, stream_id: int, amount: int) -> None:
        """aiopquic re-grants credit as data is taken from its rings, not on consumption."""

    def datagram_backlog(self) -> int:
        return len(self._datagrams)

    def request_key_update(self) -> None:
        raise BackendError(
            "aiopquic cannot start a QUIC key update on request "
            "(picoquic updates keys by itself after a number of packets)"
        )

    def key_updates(self) -> int:
        return 0

    def max_datagram_payload(self) -> int:
        return self._max_payload

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
        quic = self.quic
        quality: dict[str, Any] = {}
        if quic is not None and self._created and not self.terminated:
            try:
                quality = quic.path_quality()
            except Exception as exc:  # pragma: no cover - defensive
                logger.debug("path_quality failed: %r", exc)
        if quality:
            # picoquic's path figures (as of its last snapshot; each call asks
            # for a fresh one).  It counts the packets it sends, not those
            # it receives: packets_received stays None.
            figures.update(
                {
                    "rtt": quality["rtt"] / 1e6,
                    "min_rtt": quality["rtt_min"] / 1e6,
                    "latest_rtt": quality["rtt_sample"] / 1e6,
                    "cwnd": quality["cwin"],
                    "bytes_in_flight": quality["bytes_in_transit"],
                    "packets_sent": quality["sent"],
                    "packets_lost": quality["lost"],
                    "pacing_rate": quality["pacing_rate"],
                    "bytes_sent": quality["bytes_sent"],
                    "bytes_received": quality["bytes_received"],
                }
            )
        figures.update(
            {
                "datagram_frames_sent": self.datagram_frames_sent,
                "datagram_frames_received": self.datagram_frames_received,
                "stream_bytes_received": self.stream_bytes_received,
                "datagrams_refused": self.datagrams_refused,
                "datagrams_dropped": self.datagrams_dropped,
                "ring_refusals": self.ring_refusals,
                "key_updates": 0,
                "max_datagram_payload": self._max_payload,
                "datagram_backlog": len(self._datagrams),
                "receive_credit_on_consumption": 0,
            }
        )
        return figures

    # -- what the driver calls -------------------------------------------------

    def raw_event(
        self,
        evt_type: int,
        stream_id: int,
        data: Any,
        is_fin: int,
        error_code: int,
        cnx_ptr: int,
        sc_ptr: int,
        sc: int,
        now: float,
    ) -> None:
        """One event drained from picoquic's ring (called by the endpoint's drain)."""
        if evt_type == _EVT_DATAGRAM and self.handshake_done and not self.terminated:
            # The hot path: straight to the engine, without aiopquic's event object.
            self.datagram_frames_received += 1
            engine = self.engine
            if engine is not None and data is not None:
                engine.receive_datagram(bytes(data), now)
            return
        quic = self.quic
        if quic is None:
            return
        if self.is_client:
            quic._handle_raw_event(
                evt_type, stream_id, data, is_fin, error_code, cnx_ptr, sc_ptr, sc
            )
        else:
            quic._enqueue_raw(evt_type, stream_id, data, is_fin, error_code, sc_ptr)
        self._pending = True

    def process_events(self, now: float) -> int:
        """Feed the aiopquic events converted so far to the engine; return how many."""
        quic = self.quic
        count = 0
        if quic is not None and self._pending:
            self._pending = False
            events = quic._events
            popleft = events.popleft
            while events:
                event = popleft()
                count += 1
                handler = self._handlers.get(type(event))
                if handler is not None:
                    handler(event, now)
            if not self._created and quic._cnx_ptr:
                self._on_created()
        if self._pushed:
            self._forget_pushed()
        return count

    def backlogged(self) -> bool:
        return bool(
            self._queues
            or self._commands
            or self._datagrams
            or self._early
            or (self._stopped and self.wake_in() == 0.0)
        )

    def wake_in(self) -> float | None:
        """Seconds until the first stopped stream settles (the driver wakes up for it)."""
        if not self._stopped:
            return None
        first = next(iter(self._stopped.values()))  # stops are recorded in time order
        return max(0.0, first + STOP_SETTLE - time.monotonic())

    def flush(self, now: float) -> bool:
        """Hand the rings what they refused before; True when anything moved."""
        if self.terminated or self.quic is None or not self._created:
            return False
        moved = False
        while self._commands:
            kind, stream_id, code, waits, deadline = self._commands[0]
            if not self._command_ready(waits, deadline):
                break
            if not self._try_command(kind, stream_id, code):
                break
            self._commands.popleft()
            moved = True
        requests_wait = bool(self._critical_unsent) and self._requests_wait()
        for stream_id in list(self._queues):
            if requests_wait and not stream_id & 2:
                continue
            if self._flush_stream(stream_id):
                moved = True
        while self._datagrams:
            if not self._send_datagram(self._datagrams[0]):
                break
            self._datagrams.popleft()
            moved = True
        if self._stopped and self._report_discarded(now):
            moved = True  # the owner looks at the engine again
        return moved

    def _flush_stream(self, stream_id: int) -> bool:
        queue = self._queues[stream_id]
        moved = False
        while queue:
            chunk = queue[0]
            taken, complete = self._push(stream_id, chunk, False)
            if taken:
                moved = True
                self._queued[stream_id] -= taken
            if not complete:
                if taken:
                    queue[0] = chunk[taken:]
                return moved
            queue.popleft()
        if stream_id in self._fins:
            _taken, complete = self._push(stream_id, b"", True)
            if not complete:
                return moved
            moved = True
        self._drop_queue(stream_id)
        return moved

    def abandon(self, now: float) -> None:
        """The transport stopped before picoquic reported this connection's end."""
        if not self.terminated:
            self._terminate(0, "the QUIC transport stopped", now)
        self.quic = None

    def _on_created(self) -> None:
        self._created = True
        early, self._early = self._early, []
        closing = self._closing
        if closing is not None:
            assert self.quic is not None
            self.quic.close(closing[0])
            return
        for op, stream_id, data, end_stream, code in early:
            if op == "data":
                self.send_stream_data(stream_id, data, end_stream)
            elif op == "reset":
                self.reset_stream(stream_id, code)
            else:
                self.stop_stream(stream_id, code)

    # -- event handlers ----------------------------------------------------------

    def _hold(self, event: Any, now: float) -> None:
        self._held.append(event)

    def _on_stream_data(self, event: Any, now: float) -> None:
        data = bytes(event.data)
        self.stream_bytes_received += len(data)
        engine = self.engine
        if engine is not None:
            engine.receive_stream_data(event.stream_id, data, event.end_stream, now)

    def _on_stream_reset(self, event: Any, now: float) -> None:
        engine = self.engine
        if engine is not None:
            # picoquic does not tell the final size.
            engine.receive_stream_reset(event.stream_id, event.error_code, -1, now)

    def _on_stop_sending(self, event: Any, now: float) -> None:
        # The peer will not read what is still queued for this stream.
        self._drop_queue(event.stream_id)
        engine = self.engine
        if engine is not None:
            engine.receive_stop_sending(event.stream_id, event.error_code, now)

    def _on_datagram(self, event: Any, now: float) -> None:
        self.datagram_frames_received += 1
        engine = self.engine
        if engine is not None:
            engine.receive_datagram(bytes(event.data), now)

    def _on_protocol_negotiated(self, event: Any, now: float) -> None:
        self.alpn = event.alpn_protocol

    def _on_handshake_completed(self, event: Any, now: float) -> None:
        if self.handshake_done or self.terminated:
            return
        if not self._created:
            self._on_created()
        self.alpn = event.alpn_protocol
        self.handshake_done = True
        self._max_payload = self._payload_limit()
        self._handlers = self._live_handlers
        engine = self.engine
        if engine is not None:
            engine.handshake_completed(event.alpn_protocol, self._max_payload, now)
        held, self._held = self._held, []
        for early in held:
            self._live_handlers[type(early)](early, now)

    def _payload_limit(self) -> int:
        quic = self.quic
        if quic is None:
            return 0
        try:
            peer = quic.peer_transport_parameters
        except Exception:  # pragma: no cover - defensive
            peer = None
        if not peer:
            return 0
        frame_size = int(peer.get("max_datagram_frame_size") or 0)
        if frame_size <= 0:
            return 0
        return min(DATAGRAM_MAX_PAYLOAD, datagram_payload_limit(frame_size))

    def _on_terminated(self, event: Any, now: float) -> None:
        if self.terminated:
            return
        error_code = int(event.error_code)
        reason = ""
        check = self._check
        if check is not None and check.failure is not None and not self.handshake_done:
            self.certificate_error = check.failure
            error_code = CRYPTO_ERROR + (check.alert or 42)
            reason = check.failure
        elif self._closing is not None:
            error_code = self._closing[0]
            reason = self._closing[1]
        elif not self.handshake_done:
            reason = f"the QUIC handshake failed (error {error_code:#x})"
        self._terminate(error_code, reason, now)

    def _terminate(self, error_code: int, reason: str, now: float) -> None:
        self.terminated = True
        self.close_info = (error_code, None, reason)
        self._held = []
        self._early.clear()
        self._queues.clear()
        self._queued.clear()
        self._fins.clear()
        self._commands.clear()
        self._datagrams.clear()
        self._stopped.clear()
        if not self._engine_told:
            self._engine_told = True
            if self.engine is not None:
                self.engine.connection_terminated(error_code, reason, now)


class _ClientEndpoint:
    """A client's own picoquic context: one connection, one thread, one eventfd."""

    def __init__(self, quic: QuicConnection, connection: PquicConnection, family: int) -> None:
        self._quic: QuicConnection | None = quic
        self._fd = int(quic.eventfd)
        self._connection = connection
        self._connections: list[PquicConnection] = [connection]
        self._local: Address | None = None
        self._family = family
        self._now = 0.0
        # The verifier hook's callbacks live as long as the context.
        self.keep: list[Any] = []

    @property
    def poll_soon(self) -> Callable[[], None]:
        return self._connection.poll_soon

    @poll_soon.setter
    def poll_soon(self, callback: Callable[[], None]) -> None:
        self._connection.poll_soon = callback

    @property
    def fileno(self) -> int:
        return self._fd

    @property
    def local_address(self) -> Address:
        if self._local is None:
            quic = self._quic
            found = None
            if quic is not None and self._connection.handshake_done:
                with contextlib.suppress(Exception):
                    found = quic.local_address()
            if found:
                self._local = (str(found[0]), int(found[1]))
            else:
                return ("::" if self._family == socket.AF_INET6 else "0.0.0.0", 0)
        return self._local

    def drain(self, now: float, budget: int) -> tuple[Sequence[NativeConnection], bool]:
        quic = self._quic
        transport = None if quic is None else quic._transport
        if transport is None:
            return (), False
        connection = self._connection
        self._now = now
        drained = 0
        more = False
        while True:
            batch = int(transport.drain_rx_callback(self._on_raw, _DRAIN_BATCH))
            drained += batch
            if batch < _DRAIN_BATCH:
                break
            if drained >= budget:
                more = True
                break
        handled = connection.process_events(now)
        return ((connection,) if drained or handled else ()), more

    def _on_raw(
        self,
        evt_type: int,
        stream_id: int,
        data: Any,
        is_fin: int,
        error_code: int,
        cnx_ptr: int,
        sc_ptr: int,
        sc: int,
    ) -> None:
        # Called by aiopquic for each drained event; it must not raise (the
        # event would stay at the head of the ring).
        try:
            self._connection.raw_event(
                evt_type, stream_id, data, is_fin, error_code, cnx_ptr, sc_ptr, sc, self._now
            )
        except Exception:
            logger.exception("anywt: handling an aiopquic event failed")

    def connections(self) -> Sequence[NativeConnection]:
        return self._connections

    def forget(self, connection: NativeConnection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)  # type: ignore[arg-type,unused-ignore]

    def stop(self) -> None:
        quic, self._quic = self._quic, None
        if quic is not None:
            # Gives a close still in the command ring 50 ms to reach picoquic,
            # then joins the thread; the eventfd closes with the last reference.
            quic.stop()
        self._connection.quic = None
        self.keep.clear()


class _ServerEndpoint:
    """A server's picoquic context: many connections on one thread and one eventfd."""

    def __init__(
        self,
        configuration: QuicConfiguration,
        local_address: Address,
        on_connection: Callable[[BackendConnection], None],
    ) -> None:
        self._configuration = configuration
        self._local = local_address
        self._on_connection = on_connection
        # aiopquic's server engine holds the shared transport its connections
        # use; its own router (asyncio protocols) is not used.
        self._engine: QuicEngine | None = QuicEngine(
            configuration=configuration, create_protocol=None
        )
        self._now = 0.0
        self._by_cnx: dict[int, PquicConnection] = {}
        self._connections: list[PquicConnection] = []
        self._touched: dict[int, PquicConnection] = {}
        self._fd = -1
        self.connections_created = 0
        self.poll_soon: Callable[[], None] = _nothing

    def start(self, port: int) -> None:
        engine = self._engine
        assert engine is not None
        engine._transport = _start_context(self._configuration, port)
        self._fd = int(engine.eventfd)

    @property
    def ready(self) -> bool:
        engine = self._engine
        return bool(
            engine is not None and engine._transport is not None and engine._transport.thread_ready
        )

    @property
    def fileno(self) -> int:
        return self._fd

    @property
    def local_address(self) -> Address:
        return self._local

    def _on_raw(
        self,
        evt_type: int,
        stream_id: int,
        data: Any,
        is_fin: int,
        error_code: int,
        cnx_ptr: int,
        sc_ptr: int,
        sc: int,
    ) -> None:
        # Called by aiopquic for each drained event; it must not raise (the
        # event would stay at the head of the ring).
        if not cnx_ptr:
            return  # the context's own events
        try:
            connection = self._by_cnx.get(cnx_ptr)
            if connection is None:
                if evt_type in (_EVT_CLOSE, _EVT_APP_CLOSE):
                    return  # the end of a connection we already forgot
                connection = self._create(cnx_ptr)
            connection.raw_event(
                evt_type, stream_id, data, is_fin, error_code, cnx_ptr, sc_ptr, sc, self._now
            )
            self._touched[id(connection)] = connection
            if evt_type in (_EVT_CLOSE, _EVT_APP_CLOSE):
                # picoquic may reuse the address for a new connection.
                self._by_cnx.pop(cnx_ptr, None)
        except Exception:
            logger.exception("anywt: handling an aiopquic event failed")

    def _create(self, cnx_ptr: int) -> PquicConnection:
        quic = QuicConnection(
            configuration=self._configuration, engine=self._engine, cnx_ptr=cnx_ptr
        )
        remote: Address | None = None
        with contextlib.suppress(Exception):
            found = quic.peer_address()
            if found:
                remote = (str(found[0]), int(found[1]))
        connection = PquicConnection(quic, is_client=False, remote_address=remote)
        connection.poll_soon = self.poll_soon
        self._by_cnx[cnx_ptr] = connection
        self._connections.append(connection)
        self.connections_created += 1
        self._on_connection(connection)
        return connection

    def drain(self, now: float, budget: int) -> tuple[Sequence[NativeConnection], bool]:
        engine = self._engine
        transport = None if engine is None else engine._transport
        if transport is None:
            return (), False
        self._now = now
        self._touched = {}
        drained = 0
        more = False
        while True:
            batch = int(transport.drain_rx_callback(self._on_raw, _DRAIN_BATCH))
            drained += batch
            if batch < _DRAIN_BATCH:
                break
            if drained >= budget:
                more = True
                break
        touched = list(self._touched.values())
        self._touched = {}
        for connection in touched:
            try:
                connection.process_events(now)
            except Exception:
                logger.exception("anywt: handling an event of %r failed", connection)
                with contextlib.suppress(Exception):
                    connection.close(0x01, "internal error")
        return touched, more

    def connections(self) -> Sequence[NativeConnection]:
        return self._connections

    def forget(self, connection: NativeConnection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)  # type: ignore[arg-type,unused-ignore]
        for cnx_ptr, known in list(self._by_cnx.items()):
            if known is connection:
                del self._by_cnx[cnx_ptr]
        if isinstance(connection, PquicConnection):
            connection.quic = None  # its QuicConnection holds the shared transport

    def stop(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        survivors = [c.quic for c in self._connections if c.quic is not None]
        # Joins the thread; picoquic frees every connection.
        engine.close()
        for quic in survivors:
            # Their close was never routed: free their datagram rings as
            # aiopquic's own engine does for the connections it tracks.
            with contextlib.suppress(Exception):
                quic._release_dgram_ring()
        for connection in self._connections:
            if connection.terminated:
                connection.quic = None
        self._by_cnx.clear()


def _check_port(family: int, port: int) -> int:
    """The port picoquic will bind (an ephemeral one for 0), checked free now.

    picoquic binds the wildcard address in its own thread and cannot report
    a failure or the port it chose, so both are settled here.
    """
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        chosen = int(probe.getsockname()[1])
    finally:
        probe.close()
    return chosen


class PquicBackend:
    """The aiopquic backend (name "aiopquic", kind "self-driven")."""

    name = "aiopquic"
    credit_on_consumption = False

    @property
    def kind(self) -> Literal["self-driven"]:
        return "self-driven"

    def __repr__(self) -> str:
        return "<aiopquic backend>"

    async def open_client(
        self,
        settings: QuicSettings,
        server_address: Address,
        *,
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
    ) -> tuple[Driver, BackendConnection]:
        """A picoquic context of its own (thread, socket, eventfd) and its connection."""
        if not settings.is_client:
            raise BackendError("open_client needs client settings (is_client=True)")
        if not settings.server_name:
            settings = dataclasses.replace(settings, server_name=server_address[0])
        family = _family(server_address[0])
        pins = frozenset(settings.server_certificate_hashes)
        verify = settings.verify or bool(pins)
        check: CertificateCheck | None = CertificateCheck(pins=pins) if verify else None
        with contextlib.ExitStack() as cleanup:
            cafile = settings.cafile
            if pins:
                cafile = _placeholder_root_file()
            elif settings.cadata is not None:
                directory = cleanup.enter_context(_private_directory())
                cafile = _write(directory, "roots.pem", _pem_roots(settings.cadata))
            elif verify and cafile is None:
                import certifi  # noqa: PLC0415 - aiopquic's own default roots

                cafile = certifi.where()
            config = _configuration(settings, family=family, verify=verify, cafile=cafile)
            quic = QuicConnection(configuration=config)
            hook = None
            if check is not None:
                try:
                    hook = verifier_hook()
                except TlsHookUnavailable as exc:
                    if pins:
                        raise BackendError(
                            f"certificate pinning is not available with this aiopquic build "
                            f"({exc}); verify with cafile= instead"
                        ) from exc
                    logger.debug("no certificate hook: %s", exc)
                    check = None
            try:
                if hook is not None and check is not None and cafile is not None:
                    with hook.installed(cafile, check):
                        quic._transport = _start_context(config, 0)
                else:
                    quic._transport = _start_context(config, 0)
            except (OSError, RuntimeError, ssl.SSLError, ValueError) as exc:
                with contextlib.suppress(Exception):
                    quic.stop()
                raise BackendError(f"aiopquic cannot start a client: {exc}") from exc
        if check is not None and not check.armed:
            if pins:
                quic.stop()
                raise BackendError(
                    "certificate pinning is not available with this aiopquic build "
                    "(its certificate verifier could not be hooked); verify with cafile= instead"
                )
            check = None
        connection = PquicConnection(
            quic, is_client=True, check=check, remote_address=server_address
        )
        endpoint = _ClientEndpoint(quic, connection, family)
        if check is not None:
            endpoint.keep.append(check)
        try:
            quic.connect(server_address)
        except Exception as exc:
            endpoint.stop()
            raise BackendError(f"aiopquic cannot connect to {server_address}: {exc}") from exc
        driver = SelfDrivenDriver(endpoint, on_activity=on_activity, on_ended=on_ended)
        return driver, connection

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
        """A picoquic context listening on ``port`` (every address of ``host``'s family)."""
        if settings.is_client:
            raise BackendError("open_server needs server settings (is_client=False)")
        if settings.certificate_chain_pem is None or settings.private_key_pem is None:
            raise BackendError("a server needs a certificate chain and a private key (PEM)")
        try:
            family = _family(host) if host else socket.AF_INET
            ipaddress.ip_address(host or "0.0.0.0")
        except ValueError:
            # A name: its first address decides the family (picoquic binds
            # the wildcard address of that family anyway).
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            if not infos:
                raise OSError(f"cannot resolve {host!r}") from None
            family = int(infos[0][0])
        port = _check_port(family, port)
        endpoint: _ServerEndpoint | None = None
        with _private_directory() as directory:
            certfile = _write(directory, "chain.pem", settings.certificate_chain_pem)
            keyfile = _write(directory, "key.pem", settings.private_key_pem)
            config = _configuration(settings, family=family)
            config.certificate_file = certfile
            config.private_key_file = keyfile
            endpoint = _ServerEndpoint(config, (host or "0.0.0.0", port), on_connection)
            try:
                endpoint.start(port)
            except (OSError, RuntimeError, ValueError) as exc:
                endpoint.stop()
                raise BackendError(f"aiopquic cannot start a server: {exc}") from exc
        # picoquic binds in its thread; it only says whether that worked by
        # becoming ready.
        with anyio.move_on_after(START_TIMEOUT):
            while not endpoint.ready:
                await anyio.sleep(0.001)
        if not endpoint.ready:
            endpoint.stop()
            raise OSError(errno.EADDRINUSE, f"aiopquic could not listen on UDP port {port}")
        return SelfDrivenDriver(endpoint, on_activity=on_activity, on_ended=on_ended)


def backend() -> PquicBackend:
    """The aiopquic backend (name "aiopquic", kind "self-driven")."""
    return PquicBackend()
