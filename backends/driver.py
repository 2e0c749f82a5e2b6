"""The anyio I/O driver: runs sans-IO QUIC connections over a UDP socket.

One task per endpoint.  It waits until the socket is readable or the
earliest QUIC timer is due (``anyio.wait_readable`` inside a cancel scope
whose deadline is that timer), then drains *every* pending datagram, feeds
them to their connections (a server demultiplexes by connection id), fires
due timers, lets each touched connection hand its events to the engine and
to the owner's ``on_activity`` callback, and transmits.

Local writes do not transmit themselves: ``Endpoint.request_transmit``
marks the connection and pulls the driver's deadline to *now*, so the
driver wakes once the writer yields and sends everything queued in that
loop iteration together.  The same code runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from .base import (
    ActivityCallback,
    Address,
    BackendConnection,
    EndedCallback,
    QuicSettings,
    SansIOBackend,
    SansIOConnection,
    ServerDemux,
)

__all__ = [
    "open_sansio_client",
    "open_sansio_server",
    "DatagramSocket",
    "UDPSocket",
    "Endpoint",
    "EndpointStats",
    "open_udp_socket",
]

logger = logging.getLogger("anywt.backends.driver")

#: Datagrams read per turn of the endpoint's loop (the rest on the next turn).
RECEIVE_BATCH = 256
#: Datagrams held while the socket refuses to send, unless the endpoint is given
#: another ``max_unsent`` (``QuicSettings.send_queue``); more are dropped (and counted).
MAX_UNSENT = 4096


class DatagramSocket(Protocol):
    """What the driver sends and receives on: a UDP socket or an in-memory stand-in."""

    @property
    def local_address(self) -> Address: ...

    async def wait_readable(self) -> None:
        """Return when a datagram may be waiting."""
        ...

    def receive_batch(self, limit: int) -> list[tuple[bytes, Address]]:
        """Up to ``limit`` pending datagrams, without blocking."""
        ...

    def send(self, data: bytes, address: Address) -> bool:
        """Send one datagram without blocking; False if the socket buffer is full."""
        ...

    async def wait_writable(self) -> None:
        """Return when ``send`` may succeed again."""
        ...

    def close(self) -> None: ...


class UDPSocket:
    """A non-blocking UDP socket read with ``anyio.wait_readable``.

    anyio's own UDP socket queues at most 100 datagrams on asyncio and drops
    the rest silently, so the data path uses a plain socket drained in full.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._family = sock.family
        host, port = sock.getsockname()[:2]
        self._local: Address = (host, port)

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def raw_socket(self) -> socket.socket:
        return self._sock

    async def wait_readable(self) -> None:
        await anyio.wait_readable(self._sock)

    async def wait_writable(self) -> None:
        await anyio.wait_writable(self._sock)

    def receive_batch(self, limit: int) -> list[tuple[bytes, Address]]:
        out: list[tuple[bytes, Address]] = []
        recvfrom = self._sock.recvfrom
        for _ in range(limit):
            try:
                data, address = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP errors (e.g. port unreachable after a peer left) surface here.
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue
                raise
            out.append((data, (address[0], address[1])))
        return out

    def send(self, data: bytes, address: Address) -> bool:
        try:
            self._sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                return True  # the datagram is lost, as UDP may lose it
            if exc.errno == errno.ENOBUFS:
                return False
            raise
        return True

    def close(self) -> None:
        self._sock.close()


async def open_udp_socket(host: str, port: int, *, receive_buffer: int = 4 << 20) -> UDPSocket:
    """Bind a UDP socket (``host`` must be an IP address or resolvable name)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _type, _proto, _name, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # the kernel's default then
                sock.setsockopt(socket.SOL_SOCKET, option, receive_buffer)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr[:2] if family == socket.AF_INET else sockaddr)
    except BaseException:
        sock.close()
        raise
    return UDPSocket(sock)


@dataclass
class EndpointStats:
    """Counters of one endpoint's I/O."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    #: Datagrams no connection took (unknown connection id, junk).
    datagrams_dropped: int = 0
    #: Datagrams the socket refused to send (buffer full) and that were retried.
    send_blocked: int = 0
    #: Datagrams dropped because too many were waiting for the socket.
    send_dropped: int = 0
    wakeups: int = 0
    connections_created: int = 0
    connections_ended: int = 0


class Endpoint:
    """One UDP socket and the sans-IO connections it carries.

    ``on_activity(connection, now)`` is called after new input reached a
    connection's engine; ``on_ended(connection)`` once a connection is over.
    A client endpoint has one connection (``add_connection``); a server
    endpoint gets them from its ``ServerDemux``.
    """

    def __init__(
        self,
        sock: DatagramSocket,
        *,
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
        max_unsent: int = MAX_UNSENT,
    ) -> None:
        if max_unsent < 1:
            raise ValueError(f"max_unsent must be at least 1, not {max_unsent}")
        self.socket = sock
        self.max_unsent = max_unsent
        self.stats = EndpointStats()
        self._on_activity = on_activity
        self._on_ended = on_ended
        self._demux: ServerDemux | None = None
        self._connections: dict[int, SansIOConnection] = {}
        self._to_transmit: set[int] = set()
        self._scope: anyio.CancelScope | None = None
        self._closing = False
        self._running = False
        self._unsent: list[tuple[bytes, Address]] = []
        self.closed = anyio.Event()

    @property
    def connections(self) -> list[SansIOConnection]:
        return list(self._connections.values())

    @property
    def local_address(self) -> Address:
        return self.socket.local_address

    def io_counters(self) -> dict[str, int]:
        return dataclasses.asdict(self.stats)

    def set_demux(self, demux: ServerDemux) -> None:
        self._demux = demux

    def add_connection(self, connection: SansIOConnection) -> None:
        """Start driving a connection (a client's, or one the demux created)."""
        self._connections[id(connection)] = connection
        self.stats.connections_created += 1
        self.request_transmit(connection)

    def request_transmit(self, connection: BackendConnection) -> None:
        """Send what ``connection`` has queued, as soon as the current task yields."""
        self._to_transmit.add(id(connection))
        self._wake()

    def _wake(self) -> None:
        scope = self._scope
        if scope is not None and scope.deadline > -math.inf:
            scope.deadline = -math.inf

    def close(self) -> None:
        """Stop once every connection has ended (close them first)."""
        self._closing = True
        self._wake()

    def abort(self) -> None:
        """Stop now, whatever the connections are doing."""
        self._closing = True
        self._connections.clear()
        self._wake()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Drive the socket and connections until closed and no connection is left."""
        if self._running:
            raise RuntimeError("this endpoint is already running")
        self._running = True
        task_status.started()
        try:
            await self._loop()
        finally:
            self._running = False
            self._scope = None
            self.socket.close()
            self.closed.set()

    async def _loop(self) -> None:
        sock = self.socket
        while True:
            if self._closing and not self._connections:
                return
            deadline = self._next_deadline()
            if self._unsent:
                await self._wait_writable_or(deadline)
            else:
                with anyio.CancelScope(deadline=deadline) as scope:
                    self._scope = scope
                    await sock.wait_readable()
                self._scope = None
            self._turn()

    def _next_deadline(self) -> float:
        """When the loop must wake up at the latest: the earliest timer, or now."""
        if self._to_transmit:
            return -math.inf
        deadline = math.inf
        for connection in self._connections.values():
            timer = connection.get_timer()
            if timer is not None and timer < deadline:
                deadline = timer
        return deadline

    def _turn(self) -> None:
        """One turn of the loop: read, fire timers, transmit, retire ended connections.

        A method of its own so that nothing of a turn (an ended connection
        above all) stays referenced by the loop's locals until the next wake-up.
        """
        sock = self.socket
        stats = self.stats
        stats.wakeups += 1
        now = anyio.current_time()
        touched: dict[int, SansIOConnection] = {}
        # One batch per turn: under a sustained inbound flood, reading on
        # until the socket is empty would starve our own ACKs, timers and
        # closes.  What is left is read on the next turn, which does not wait.
        for data, address in sock.receive_batch(RECEIVE_BATCH):
            stats.datagrams_received += 1
            stats.bytes_received += len(data)
            try:
                target = self._route(data, address, now)
            except Exception:
                # A datagram the stack chokes on is dropped, never fatal.
                logger.debug("dropping a datagram from %s", address, exc_info=True)
                target = None
            if target is None:
                stats.datagrams_dropped += 1
            else:
                touched[id(target)] = target
        for key, connection in list(self._connections.items()):
            timer = connection.get_timer()
            if timer is not None and timer <= now:
                try:
                    if connection.closing and key in self._to_transmit:
                        # Send a queued close before the timer fires: a closing qh3
                        # connection ends on its next timer, and its CONNECTION_CLOSE
                        # would never leave.  (Only then: qh3 wants its loss timer
                        # handled before it builds packets.)
                        self._transmit(connection, now)
                    connection.handle_timer(now)
                except Exception:
                    self._fail(connection, "handling a timer")
                touched[key] = connection
        for key in self._to_transmit:
            wanted = self._connections.get(key)
            if wanted is not None:
                touched[key] = wanted
        self._to_transmit.clear()
        for connection in touched.values():
            try:
                connection.process_events(now)
                self._on_activity(connection, now)
            except Exception:
                self._fail(connection, "processing input")
        if self._demux is not None:
            for data, address in self._demux.stateless_datagrams():
                self._send(data, address)
        for connection in touched.values():
            try:
                self._transmit(connection, now)
            except Exception:
                self._fail(connection, "transmitting")
        for key, connection in list(self._connections.items()):
            if connection.terminated:
                del self._connections[key]
                self.stats.connections_ended += 1
                if self._demux is not None:
                    self._demux.connection_ended(connection)
                self._on_ended(connection)

    def _fail(self, connection: SansIOConnection, where: str) -> None:
        """A bug while handling one connection closes that connection, not the endpoint."""
        logger.exception("anywt driver: error while %s; closing the connection", where)
        try:
            connection.close(0x01, f"internal error while {where}")  # QUIC INTERNAL_ERROR
        except Exception:
            logger.debug("closing after an error failed too", exc_info=True)
            connection.terminated = True

    async def _wait_writable_or(self, deadline: float) -> None:
        with anyio.CancelScope(deadline=deadline) as scope:
            self._scope = scope
            await self.socket.wait_writable()
        self._scope = None
        unsent, self._unsent = self._unsent, []
        for index, (data, address) in enumerate(unsent):
            if not self.socket.send(data, address):
                self._unsent = unsent[index:]
                return
            self.stats.datagrams_sent += 1
            self.stats.bytes_sent += len(data)

    def _route(self, data: bytes, address: Address, now: float) -> SansIOConnection | None:
        if self._demux is not None:
            connection = self._demux.datagram_received(data, address, now)
            if connection is not None and id(connection) not in self._connections:
                self.add_connection(connection)
            return connection
        for connection in self._connections.values():
            connection.receive_datagram(data, address, now)
            return connection
        return None

    def _transmit(self, connection: SansIOConnection, now: float) -> None:
        datagrams = connection.datagrams_to_send(now)
        if not datagrams:
            return
        # Sending can produce events (connection ids issued while writing).
        connection.process_events(now)
        for data, address in datagrams:
            self._send(data, address)

    def _send(self, data: bytes, address: Address) -> None:
        if self._unsent or not self.socket.send(data, address):
            # The kernel buffer is full: keep the datagram and wait until writable.
            self.stats.send_blocked += 1
            if len(self._unsent) >= self.max_unsent:
                self.stats.send_dropped += 1  # QUIC recovers it like any lost packet
                return
            self._unsent.append((data, address))
            self._wake()
            return
        self.stats.datagrams_sent += 1
        self.stats.bytes_sent += len(data)


def _local_host_for(remote: str) -> str:
    """Bind a client where it can reach ``remote``: loopback stays on loopback."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return "0.0.0.0"
    if address.is_loopback:
        return str(address)
    return "::" if address.version == 6 else "0.0.0.0"


async def open_sansio_client(
    backend: SansIOBackend,
    settings: QuicSettings,
    server_address: Address,
    *,
    on_activity: ActivityCallback,
    on_ended: EndedCallback,
) -> tuple[Endpoint, SansIOConnection]:
    """A UDP socket, an endpoint and a client connection of a sans-IO stack."""
    sock = await open_udp_socket(_local_host_for(server_address[0]), 0)
    try:
        connection = backend.client_connection(settings, server_address, anyio.current_time())
    except BaseException:
        sock.close()
        raise
    endpoint = Endpoint(
        sock, on_activity=on_activity, on_ended=on_ended, max_unsent=settings.send_queue
    )
    endpoint.add_connection(connection)
    return endpoint, connection


async def open_sansio_server(
    backend: SansIOBackend,
    settings: QuicSettings,
    host: str,
    port: int,
    *,
    on_connection: Callable[[BackendConnection], None],
    on_activity: ActivityCallback,
    on_ended: EndedCallback,
) -> Endpoint:
    """A UDP socket bound to ``host:port`` and an endpoint that demultiplexes its connections."""
    sock = await open_udp_socket(host, port)
    endpoint = Endpoint(
        sock, on_activity=on_activity, on_ended=on_ended, max_unsent=settings.send_queue
    )
    endpoint.set_demux(backend.server_demux(settings, on_connection))
    return endpoint
