"""Two real QUIC connections (aioquic or qh3) joined in memory, each driving an engine.

No sockets: datagrams are moved from one connection to the other by
``transfer()``, the way aioquic's own tests do, with a fake clock.  Both ends
are built by the backends (``anywt.backends.aioquic`` / ``.qh3``), so what runs
here is what runs over UDP.  ``pair.client_conn.quic`` / ``pair.server_conn.quic``
are the stacks' own ``QuicConnection`` objects.

The pair plays an application that reads every stream byte at once: each
``StreamDataReceived`` the engines emit is reported back as consumed, so
receive windows that follow consumption (aioquic) keep opening.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from anywt.backends._sansio import QuicStack, StackBackend, StackConnection
from anywt.backends.base import QuicSettings, get_backend
from anywt.certs import DevCertificate, generate_dev_certificate
from anywt.core.config import EngineConfig
from anywt.core.events import Event, StreamDataReceived

CLIENT_ADDR = ("127.0.0.1", 4433)
SERVER_ADDR = ("127.0.0.1", 4434)


@functools.cache
def dev_certificate() -> DevCertificate:
    return generate_dev_certificate()


def backend(name: str) -> StackBackend:
    found = get_backend(name)
    assert isinstance(found, StackBackend)
    return found


def stack(name: str) -> QuicStack:
    """The backend's description of a stack (what ``StackConnection(quic, stack)`` takes)."""
    return backend(name).stack


def client_settings(**overrides: Any) -> QuicSettings:
    values: dict[str, Any] = {"is_client": True, "verify": False, "server_name": "127.0.0.1"}
    values.update(overrides)
    return QuicSettings(**values)


def server_settings(cert: DevCertificate | None = None, **overrides: Any) -> QuicSettings:
    cert = cert or dev_certificate()
    values: dict[str, Any] = {
        "is_client": False,
        "certificate_chain_pem": cert.cert_pem,
        "private_key_pem": cert.key_pem,
    }
    values.update(overrides)
    return QuicSettings(**values)


@dataclass
class EnginePair:
    """A client and a server engine over one in-memory QUIC connection."""

    client: Any
    server: Any
    client_conn: StackConnection
    server_conn: StackConnection
    now: float = 1.0
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    loss: Callable[[bytes], bool] | None = None
    #: Report stream bytes as consumed as soon as the engines hand them over.
    auto_consume: bool = True

    def transfer(self, rounds: int = 50) -> None:
        """Move datagrams both ways until both sides are quiet."""
        for _ in range(rounds):
            moved = 0
            for src, dst, addr in (
                (self.client_conn, self.server_conn, CLIENT_ADDR),
                (self.server_conn, self.client_conn, SERVER_ADDR),
            ):
                for data, _addr in src.datagrams_to_send(self.now):
                    moved += 1
                    if self.loss is not None and self.loss(data):
                        continue
                    dst.receive_datagram(data, addr, self.now)
            self.now += 0.001
            for conn in (self.client_conn, self.server_conn):
                timer = conn.get_timer()
                if timer is not None and timer <= self.now:
                    conn.handle_timer(self.now)
                conn.process_events(self.now)
            self._collect(self.client, self.client_conn, self.client_events)
            self._collect(self.server, self.server_conn, self.server_events)
            if not moved:
                break

    def _collect(self, engine: Any, conn: StackConnection, into: list[Event]) -> None:
        events = engine.events()
        if self.auto_consume:
            for event in events:
                if isinstance(event, StreamDataReceived) and event.data:
                    conn.stream_consumed(event.stream_id, len(event.data))
        into.extend(events)

    def take_client(self) -> list[Event]:
        events, self.client_events = self.client_events, []
        return events

    def take_server(self) -> list[Event]:
        events, self.server_events = self.server_events, []
        return events


def make_pair(
    engine_module: ModuleType,
    *,
    stack_name: str = "aioquic",
    client_config: EngineConfig | None = None,
    server_config: EngineConfig | None = None,
    handshake: bool = True,
    client_quic: QuicSettings | None = None,
    server_quic: QuicSettings | None = None,
) -> EnginePair:
    """Engines over a fresh in-memory connection; ``client_quic``/``server_quic``: QUIC settings."""
    chosen = backend(stack_name)
    now = 1.0
    client_conn = chosen.client_connection(client_quic or client_settings(), SERVER_ADDR, now)
    server_conn = chosen.server_connection(
        server_quic or server_settings(), client_conn.quic.original_destination_connection_id
    )
    client = engine_module.WebTransportEngine(client_conn, is_client=True, config=client_config)
    server = engine_module.WebTransportEngine(server_conn, is_client=False, config=server_config)
    client_conn.engine = client
    server_conn.engine = server
    pair = EnginePair(client, server, client_conn, server_conn, now=now)
    client.initialize(pair.now)
    server.initialize(pair.now)
    if handshake:
        pair.transfer()
    return pair
