"""The in-memory backend: real QUIC (aioquic) over an in-process datagram network.

``backend="memory"`` runs clients and servers of one process without any
socket: datagrams go from one ``MemorySocket`` to another through a
``MemoryNetwork``, which can lose, duplicate and reorder them (seeded), so
tests of the API and of lossy conditions run fast and deterministically.
Everything above the sockets is the same as with ``backend="aioquic"``:
the aioquic adapter and the anyio driver.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio
import anyio.lowlevel

from ._sansio import StackBackend
from .aioquic import STACK as AIOQUIC_STACK
from .base import (
    ActivityCallback,
    Address,
    BackendConnection,
    Driver,
    EndedCallback,
    QuicSettings,
)
from .driver import Endpoint

__all__ = ["MemoryNetwork", "MemorySocket", "MemoryBackend", "backend", "default_network"]

#: Datagrams a socket holds unread before it drops more (a kernel buffer's role).
_QUEUE_LIMIT = 8192


class MemoryNetwork:
    """Delivers datagrams between the ``MemorySocket``s bound on it.

    ``loss``, ``duplication`` and ``reordering`` are probabilities applied to
    each datagram with a ``random.Random(seed)``; counters say what happened.
    """

    def __init__(
        self,
        *,
        loss: float = 0.0,
        duplication: float = 0.0,
        reordering: float = 0.0,
        seed: int | None = None,
    ) -> None:
        for name, value in (
            ("loss", loss),
            ("duplication", duplication),
            ("reordering", reordering),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {value!r}")
        self.loss = loss
        self.duplication = duplication
        self.reordering = reordering
        self._random = random.Random(seed)
        self._sockets: dict[Address, MemorySocket] = {}
        self._next_port = 40000
        self.delivered = 0
        self.lost = 0
        self.duplicated = 0
        self.reordered = 0
        self.unreachable = 0

    def bind(self, host: str, port: int) -> MemorySocket:
        """A socket at ``host:port`` (port 0 picks a free one)."""
        if port == 0:
            while (host, self._next_port) in self._sockets:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = (host, port)
        if address in self._sockets:
            raise OSError(f"address {host}:{port} already in use on this memory network")
        sock = MemorySocket(self, address)
        self._sockets[address] = sock
        return sock

    def socket_at(self, address: Address) -> MemorySocket | None:
        """The socket bound at ``address``, if any."""
        return self._sockets.get((address[0], address[1]))

    def _unbind(self, address: Address) -> None:
        self._sockets.pop(address, None)

    def _send(self, data: bytes, source: Address, destination: Address) -> None:
        target = self._sockets.get(destination)
        if target is None:
            self.unreachable += 1  # nobody listens: lost, as UDP would be
            return
        chance = self._random.random
        if self.loss and chance() < self.loss:
            self.lost += 1
            return
        copies = 1
        if self.duplication and chance() < self.duplication:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            swap = bool(self.reordering) and chance() < self.reordering
            if swap:
                self.reordered += 1
            target._arrive(data, source, swap)
            self.delivered += 1


class MemorySocket:
    """The driver's ``DatagramSocket`` on a ``MemoryNetwork``."""

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self._network = network
        self._address = address
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._readable = anyio.Event()
        self._closed = False
        self._writable: anyio.Event | None = None
        #: Datagrams dropped because the queue was full.
        self.dropped = 0
        #: Sends refused while the send buffer was "full" (``hold_sends``).
        self.refused = 0

    @property
    def local_address(self) -> Address:
        return self._address

    async def wait_readable(self) -> None:
        if self._queue or self._closed:
            await anyio.lowlevel.checkpoint()
            return
        await self._readable.wait()

    def receive_batch(self, limit: int) -> list[tuple[bytes, Address]]:
        queue = self._queue
        count = min(limit, len(queue))
        batch = [queue.popleft() for _ in range(count)]
        if not queue and self._readable.is_set():
            self._readable = anyio.Event()
        return batch

    def send(self, data: bytes, address: Address) -> bool:
        if self._writable is not None and not self._closed:
            self.refused += 1
            return False
        if not self._closed:
            self._network._send(bytes(data), self._address, (address[0], address[1]))
        return True

    async def wait_writable(self) -> None:
        writable = self._writable
        if writable is None or self._closed:
            await anyio.lowlevel.checkpoint()
            return
        await writable.wait()

    def hold_sends(self) -> None:
        """Act as a socket whose send buffer is full: ``send`` refuses until ``release_sends``."""
        if self._writable is None:
            self._writable = anyio.Event()

    def release_sends(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None:
            writable.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._network._unbind(self._address)
            self._readable.set()
            self.release_sends()

    def _arrive(self, data: bytes, source: Address, swap: bool) -> None:
        if self._closed:
            return
        queue = self._queue
        if len(queue) >= _QUEUE_LIMIT:
            self.dropped += 1
            return
        if swap and queue:
            # Reordering: the new datagram overtakes the last one queued.
            queue.insert(len(queue) - 1, (data, source))
        else:
            queue.append((data, source))
        self._readable.set()


_default_network: list[MemoryNetwork] = []


def default_network() -> MemoryNetwork:
    """The network ``backend="memory"`` uses (one per process)."""
    if not _default_network:
        _default_network.append(MemoryNetwork())
    return _default_network[0]


class MemoryBackend(StackBackend):
    """aioquic's QUIC over a ``MemoryNetwork`` instead of UDP sockets."""

    kind: Literal["sans-io"] = "sans-io"

    def __init__(self, network: MemoryNetwork | None = None) -> None:
        super().__init__(AIOQUIC_STACK)
        self.name = "memory"
        self._network = network

    @property
    def network(self) -> MemoryNetwork:
        return self._network if self._network is not None else default_network()

    async def open_client(
        self,
        settings: QuicSettings,
        server_address: Address,
        *,
        on_activity: ActivityCallback,
        on_ended: EndedCallback,
    ) -> tuple[Driver, BackendConnection]:
        sock = self.network.bind(server_address[0], 0)
        try:
            connection = self.client_connection(settings, server_address, anyio.current_time())
        except BaseException:
            sock.close()
            raise
        endpoint = Endpoint(
            sock, on_activity=on_activity, on_ended=on_ended, max_unsent=settings.send_queue
        )
        endpoint.add_connection(connection)
        return endpoint, connection

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
        sock = self.network.bind(host, port)
        endpoint = Endpoint(
            sock, on_activity=on_activity, on_ended=on_ended, max_unsent=settings.send_queue
        )
        endpoint.set_demux(self.server_demux(settings, on_connection))
        return endpoint


def backend() -> MemoryBackend:
    """The in-memory backend on the process's default network."""
    return MemoryBackend()
