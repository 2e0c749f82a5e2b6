"""Backend test harness: real QUIC connections of a backend joined in memory.

``Link`` builds a client and a server ``StackConnection`` through a backend
(``client_connection`` / ``server_connection`` or a ``StackDemux``) and moves
datagrams between them with a fake clock.  ``RecordingEngine`` stands in for
the WebTransport engine: it records every call the backend makes, so a test
sees exactly what a QUIC stack's events were translated into.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from anywt.backends._sansio import StackBackend, StackConnection
from anywt.backends.base import Address, QuicSettings, get_backend
from anywt.certs import DevCertificate, generate_dev_certificate

CLIENT_ADDR: Address = ("127.0.0.1", 40001)
SERVER_ADDR: Address = ("127.0.0.1", 40002)


@functools.cache
def dev_certificate() -> DevCertificate:
    return generate_dev_certificate()


def backend(name: str) -> StackBackend:
    found = get_backend(name)
    assert isinstance(found, StackBackend)
    return found


@dataclass(frozen=True)
class Chain:
    """A CA and a leaf it signed (qh3 cannot trust a self-signed leaf through cafile)."""

    ca_pem: bytes
    leaf_pem: bytes
    key_pem: bytes
    leaf_sha256: bytes


def make_chain(common_name: str = "anywt-test") -> Chain:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=5))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Chain(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        leaf_pem=leaf.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        leaf_sha256=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).digest(),
    )


def client_settings(**overrides: Any) -> QuicSettings:
    values: dict[str, Any] = {"is_client": True, "verify": False, "server_name": "127.0.0.1"}
    values.update(overrides)
    return QuicSettings(**values)


def server_settings(
    cert_pem: bytes | None = None, key_pem: bytes | None = None, **overrides: Any
) -> QuicSettings:
    if cert_pem is None or key_pem is None:
        cert = dev_certificate()
        cert_pem, key_pem = cert.cert_pem, cert.key_pem
    values: dict[str, Any] = {
        "is_client": False,
        "certificate_chain_pem": cert_pem,
        "private_key_pem": key_pem,
    }
    values.update(overrides)
    return QuicSettings(**values)


class RecordingEngine:
    """Records what the backend tells the engine (the engine's backend-facing methods)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.data: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.datagrams: list[bytes] = []
        self.resets: list[tuple[int, int, int]] = []
        self.stops: list[tuple[int, int]] = []
        self.discarded: list[int] = []
        self.handshake: tuple[str | None, int] | None = None
        self.terminated: tuple[int, str] | None = None

    def receive_stream_data(
        self, stream_id: int, data: bytes, end_stream: bool, now: float
    ) -> None:
        self.calls.append(("data", stream_id, len(data), end_stream))
        self.data.setdefault(stream_id, bytearray()).extend(data)
        if end_stream:
            self.fin.add(stream_id)

    def receive_stream_reset(
        self, stream_id: int, error_code: int, final_size: int, now: float
    ) -> None:
        self.calls.append(("reset", stream_id, error_code, final_size))
        self.resets.append((stream_id, error_code, final_size))

    def receive_stop_sending(self, stream_id: int, error_code: int, now: float) -> None:
        self.calls.append(("stop", stream_id, error_code))
        self.stops.append((stream_id, error_code))

    def receive_side_discarded(self, stream_id: int, now: float) -> None:
        self.calls.append(("discarded", stream_id))
        self.discarded.append(stream_id)

    def receive_datagram(self, data: bytes, now: float) -> None:
        self.calls.append(("datagram", len(data)))
        self.datagrams.append(data)

    def handshake_completed(self, alpn: str | None, max_datagram_payload: int, now: float) -> None:
        self.calls.append(("handshake", alpn, max_datagram_payload))
        self.handshake = (alpn, max_datagram_payload)

    def connection_terminated(self, error_code: int, reason: str, now: float) -> None:
        self.calls.append(("terminated", error_code, reason))
        self.terminated = (error_code, reason)

    def received(self, stream_id: int) -> int:
        return len(self.data.get(stream_id, b""))


@dataclass
class Link:
    """A client and a server connection of one backend, joined in memory."""

    backend: StackBackend
    client: StackConnection
    server: StackConnection | None = None
    server_settings: QuicSettings | None = None
    client_engine: RecordingEngine = field(default_factory=RecordingEngine)
    server_engine: RecordingEngine = field(default_factory=RecordingEngine)
    now: float = 1.0
    #: Drop a datagram when this returns True (direction "c2s" or "s2c").
    loss: Callable[[str, bytes], bool] | None = None
    #: Report every stream byte the server receives as consumed.
    server_reads: bool = True
    client_reads: bool = True

    def _server_for(self, data: bytes) -> StackConnection:
        if self.server is None:
            assert self.server_settings is not None
            self.server = self.backend.server_connection(
                self.server_settings, self.client.quic.original_destination_connection_id
            )
            self.server.engine = self.server_engine
        return self.server

    def step(self) -> int:
        """One round: move what both sides have to send, then advance the clock and timers."""
        moved = 0
        for data, _addr in self.client.datagrams_to_send(self.now):
            moved += 1
            if self.loss is not None and self.loss("c2s", data):
                continue
            self._server_for(data).receive_datagram(data, CLIENT_ADDR, self.now)
        if self.server is not None:
            for data, _addr in self.server.datagrams_to_send(self.now):
                moved += 1
                if self.loss is not None and self.loss("s2c", data):
                    continue
                self.client.receive_datagram(data, SERVER_ADDR, self.now)
        self._consume()
        self.now += 0.001
        for conn in (self.client, self.server):
            if conn is None:
                continue
            timer = conn.get_timer()
            if timer is not None and timer <= self.now:
                conn.handle_timer(self.now)
        return moved

    def _consume(self) -> None:
        for conn, engine, reads in (
            (self.server, self.server_engine, self.server_reads),
            (self.client, self.client_engine, self.client_reads),
        ):
            if conn is None or not reads:
                continue
            consumed = conn.extra.setdefault("test_consumed", {})
            for stream_id, buffer in engine.data.items():
                fresh = len(buffer) - consumed.get(stream_id, 0)
                if fresh > 0:
                    consumed[stream_id] = len(buffer)
                    conn.stream_consumed(stream_id, fresh)

    def run(self, until: Callable[[], bool] | None = None, rounds: int = 400) -> bool:
        """Step until ``until()`` holds (True) or, without ``until``, until quiet."""
        quiet = 0
        for _ in range(rounds):
            if until is not None and until():
                return True
            moved = self.step()
            if until is None:
                quiet = quiet + 1 if not moved else 0
                if quiet >= 3:
                    return True
        return until() if until is not None else False

    def wait(self, seconds: float) -> None:
        """Let fake time pass (timers fire, datagrams keep moving)."""
        end = self.now + seconds
        while self.now < end:
            self.step()
            next_timer = min(
                (
                    t
                    for t in (self.client.get_timer(), self.server and self.server.get_timer())
                    if t
                ),
                default=None,
            )
            if next_timer is not None and next_timer > self.now + 0.001:
                self.now = min(next_timer, end)

    def handshake(self) -> bool:
        return self.run(
            lambda: (
                self.client.handshake_done
                and self.server is not None
                and self.server.handshake_done
            )
        )

    def terminated(self, rounds: int = 4000) -> bool:
        """Run (with time jumps to the next timer) until both sides are over."""
        for _ in range(rounds):
            if self.client.terminated and (self.server is None or self.server.terminated):
                return True
            self.step()
            timers = [
                t for t in (self.client.get_timer(), self.server and self.server.get_timer()) if t
            ]
            if timers and min(timers) > self.now:
                self.now = min(timers)
        return False


def make_link(
    name: str,
    *,
    client: QuicSettings | None = None,
    server: QuicSettings | None = None,
    handshake: bool = True,
) -> Link:
    chosen = backend(name)
    client_conn = chosen.client_connection(client or client_settings(), SERVER_ADDR, 1.0)
    link = Link(chosen, client_conn, server_settings=server or server_settings())
    client_conn.engine = link.client_engine
    if handshake:
        assert link.handshake(), "the handshake did not complete"
    return link
