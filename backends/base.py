"""The QUIC backend interface: what the anyio driver and the public API need from a QUIC stack.

Two kinds of backend sit behind one interface (DESIGN.md section 5):

* *sans-IO* stacks (aioquic, qh3): a ``QuicConnection`` object that the
  driver feeds with datagrams and timer ticks, and drains for datagrams to
  send.  ``SansIOBackend`` creates them; ``ServerDemux`` routes a server's
  datagrams to them by connection id.
* *self-driven* stacks (aiopquic, later): they own their socket on a native
  thread and expose a file descriptor to wait on.

Either way, each QUIC connection drives one ``WebTransportEngine`` through a
``BackendConnection``, which also implements the engine's ``Transport``.
Backends never parse WebTransport or HTTP/3 bytes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

if TYPE_CHECKING:
    from anywt.core.engine import WebTransportEngine

__all__ = [
    "Address",
    "BACKENDS",
    "Backend",
    "BackendConnection",
    "Driver",
    "BackendError",
    "CertificateError",
    "QuicSettings",
    "SansIOBackend",
    "ServerDemux",
    "get_backend",
]

#: A UDP address as anyio and the stacks want it: always a (host, port) 2-tuple.
Address = tuple[str, int]


class BackendError(RuntimeError):
    """A QUIC stack is missing or cannot do what was asked."""


class CertificateError(BackendError):
    """The peer's certificate was refused (verification or pinning)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicSettings:
    """Backend-neutral QUIC and TLS settings of one endpoint."""

    is_client: bool
    alpn_protocols: tuple[str, ...] = ("h3",)
    #: Close the connection after this many seconds without traffic.
    idle_timeout: float = 30.0
    #: Largest DATAGRAM frame we accept (0 disables datagrams).
    max_datagram_frame_size: int = 65536
    #: QUIC-level receive windows (connection and per stream).
    max_data: int = 16 * 1024 * 1024
    max_stream_data: int = 4 * 1024 * 1024
    #: Stream limits we grant the peer at the QUIC level.
    max_streams_bidi: int = 128
    max_streams_uni: int = 128
    congestion_control: str = "reno"
    # Server: our certificate chain (PEM, leaf first) and key (PEM).
    certificate_chain_pem: bytes | None = None
    private_key_pem: bytes | None = None
    # Client: how the server is checked.
    server_name: str | None = None
    #: Verify the certificate chain and name (against ``cafile``/``cadata`` or the system store).
    verify: bool = True
    cafile: str | None = None
    cadata: bytes | None = None
    #: Accept exactly these certificates, by SHA-256 of their DER (like browsers'
    #: serverCertificateHashes); when given, chain verification is skipped.
    server_certificate_hashes: tuple[bytes, ...] = ()
    #: Outgoing UDP datagrams an endpoint holds while its socket buffer is full;
    #: more are dropped (QUIC resends them as lost).  A server's endpoint serves
    #: all its connections.
    send_queue: int = 4096
    # Observability.
    qlog_dir: str | None = None
    keylog_file: str | None = None


@runtime_checkable
class BackendConnection(Protocol):
    """One QUIC connection of any backend, driving one engine.

    It implements the engine's ``Transport`` (``send_stream_data``,
    ``reset_stream``, ``stop_stream``, ``send_datagram``,
    ``get_next_available_stream_id``, ``close``) and reports what the API
    needs about the QUIC layer.
    """

    engine: WebTransportEngine | None
    #: The handshake completed (and, on a client, the certificate was accepted).
    handshake_done: bool
    #: The connection is over: no more events, nothing to send.
    terminated: bool

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...
    def reset_stream(self, stream_id: int, error_code: int) -> int: ...
    def stop_stream(self, stream_id: int, error_code: int) -> None: ...
    def send_datagram(self, data: bytes) -> None: ...
    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int: ...
    def close(self, error_code: int, reason: str) -> None: ...

    def close_transport(self, error_code: int, reason: str, frame_type: int = 0) -> None:
        """Close with a QUIC transport error (e.g. 0x2 CONNECTION_REFUSED), not an H3 one."""
        ...

    def send_backlog(self, stream_id: int) -> int:
        """Bytes queued on a stream that have not been sent once yet (0 if unknown)."""
        ...

    def stream_consumed(self, stream_id: int, amount: int) -> None:
        """The application read ``amount`` bytes of a stream: QUIC credit may be re-granted.

        Stacks that can tie their receive windows to consumption (aioquic) do;
        the others grant on receipt and ignore this.
        """
        ...

    def datagram_backlog(self) -> int:
        """Datagrams queued and not yet sent."""
        ...

    def request_key_update(self) -> None:
        """Start a QUIC key update (raises ``BackendError`` when the stack cannot now)."""
        ...

    def key_updates(self) -> int:
        """How many key updates (either side's) this connection has completed."""
        ...

    def stats(self) -> dict[str, float | int | None]:
        """QUIC-level figures: rtt, cwnd, bytes in flight, packets... (what the stack exposes)."""
        ...


@runtime_checkable
class SansIOConnection(BackendConnection, Protocol):
    """A backend connection the anyio driver feeds (aioquic, qh3)."""

    #: A CONNECTION_CLOSE was queued (it may not have been sent yet).
    closing: bool

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...

    def process_events(self, now: float) -> None:
        """Feed every pending QUIC event to the engine (call after every other call)."""
        ...


class ServerDemux(Protocol):
    """Routes a server socket's datagrams to connections by connection id."""

    def datagram_received(self, data: bytes, addr: Address, now: float) -> SansIOConnection | None:
        """Feed one datagram; return the connection that took it (new or known), else None.

        New connections are reported through ``on_connection`` first.
        """
        ...

    def stateless_datagrams(self) -> list[tuple[bytes, Address]]:
        """Replies that belong to no connection (version negotiation, retry), to send now."""
        ...

    def connection_ended(self, connection: SansIOConnection) -> None:
        """Forget a terminated connection and all its connection ids."""
        ...


#: Called after new input reached a connection's engine (with the current time).
ActivityCallback = Callable[[BackendConnection, float], None]
#: Called once a connection is over.
EndedCallback = Callable[[BackendConnection], None]


class Driver(Protocol):
    """What runs a backend's connections: one task per endpoint, whatever the backend kind.

    The anyio driver (``driver.Endpoint``) runs sans-IO stacks over a UDP
    socket; a self-driven stack brings its own.  ``run`` is started in the
    owner's task group (or a detached task for ``await connect()``).
    """

    closed: anyio.Event

    @property
    def local_address(self) -> Address: ...

    def request_transmit(self, connection: BackendConnection) -> None:
        """Send what ``connection`` has queued, as soon as the current task yields."""
        ...

    def io_counters(self) -> dict[str, int]:
        """Counters of the endpoint's I/O, as far as the backend can tell (for diagnostics)."""
        ...

    def close(self) -> None:
        """Stop once every connection has ended."""
        ...

    def abort(self) -> None:
        """Stop now."""
        ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...


class Backend(Protocol):
    """A QUIC stack behind anywt: it opens client and server endpoints."""

    name: str

    @property
    def kind(self) -> Literal["sans-io", "self-driven"]:
        """Who owns the socket: the anyio driver ("sans-io") or the stack ("self-driven")."""
        ...

    async def open_client(
        self,
        settings: QuicSettings,
        server_address: Address,
        *,
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
    ) -> tuple[Driver, BackendConnection]:
        """A client endpoint and its connection, handshake under way.

        Set ``connection.engine`` (and initialize it) before running the driver.
        """
        ...

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
        """A server endpoint; ``on_connection`` gets each new connection (set its engine there)."""
        ...


class SansIOBackend(Backend, Protocol):
    """A sans-IO QUIC stack."""

    def client_connection(
        self, settings: QuicSettings, server_address: Address, now: float
    ) -> SansIOConnection:
        """A client connection, its handshake started."""
        ...

    def server_demux(
        self, settings: QuicSettings, on_connection: Callable[[SansIOConnection], None]
    ) -> ServerDemux:
        """The demultiplexer of one server socket."""
        ...


#: Backend names and the modules that provide them (imported only when chosen).
BACKENDS: dict[str, str] = {
    "aioquic": "anywt.backends.aioquic",
    "qh3": "anywt.backends.qh3",
    "memory": "anywt.backends.memory",
    "aiopquic": "anywt.backends.aiopquic",
}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; its QUIC stack is imported only now."""
    module_name = BACKENDS.get(name)
    if module_name is None:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} needs a package that is not installed ({exc}); "
            f"install it with: pip install 'anywt[{name}]'"
        ) from exc
    backend: Backend = module.backend()
    return backend
