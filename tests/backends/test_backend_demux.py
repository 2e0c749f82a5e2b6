"""The server demultiplexer of both stacks: routing by connection id, VN, junk."""

from __future__ import annotations

import os

import pytest
from backend_harness import RecordingEngine, backend, client_settings, server_settings

from anywt.backends._sansio import StackConnection, StackDemux

SERVER = ("127.0.0.1", 4433)
UNKNOWN_VERSION = 0x0A1A2A3A


class Net:
    """Clients and one server demux, joined in memory, with a fake clock."""

    def __init__(self, stack_name: str) -> None:
        self.backend = backend(stack_name)
        self.accepted: list[StackConnection] = []
        self.engines: dict[int, RecordingEngine] = {}
        self.demux = self.backend.server_demux(server_settings(), self._on_connection)
        assert isinstance(self.demux, StackDemux)
        self.clients: dict[tuple[str, int], StackConnection] = {}
        self.now = 1.0
        self.ended: list[StackConnection] = []

    def _on_connection(self, connection) -> None:
        engine = RecordingEngine()
        connection.engine = engine
        self.engines[id(connection)] = engine
        self.accepted.append(connection)

    def client(self, port: int) -> StackConnection:
        address = ("127.0.0.1", port)
        conn = self.backend.client_connection(client_settings(), SERVER, self.now)
        conn.engine = RecordingEngine()
        self.clients[address] = conn
        return conn

    def step(self) -> int:
        moved = 0
        for address, conn in self.clients.items():
            for data, _to in conn.datagrams_to_send(self.now):
                moved += 1
                self.demux.datagram_received(data, address, self.now)
        for server in self.demux.connections:
            for data, to in server.datagrams_to_send(self.now):
                moved += 1
                self.clients[to].receive_datagram(data, SERVER, self.now)
        self.now += 0.001
        for conn in [*self.clients.values(), *self.demux.connections]:
            timer = conn.get_timer()
            if timer is not None and timer <= self.now:
                conn.handle_timer(self.now)
        for server in self.demux.connections:
            if server.terminated:
                self.demux.connection_ended(server)
                self.ended.append(server)
        return moved

    def run(self, until, rounds: int = 3000, *, jump: bool = False) -> bool:
        """Step until ``until()``; with ``jump``, skip idle time to the next timer."""
        for _ in range(rounds):
            if until():
                return True
            self.step()
            if not jump:
                continue
            timers = [
                t
                for t in (c.get_timer() for c in [*self.clients.values(), *self.demux.connections])
                if t is not None
            ]
            if timers and min(timers) > self.now + 0.001:
                self.now = min(timers)
        return until()


def _long_header(version: int, dcid: bytes, scid: bytes, size: int, first: int = 0xC0) -> bytes:
    packet = bytes([first]) + version.to_bytes(4, "big")
    packet += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    return packet + os.urandom(max(0, size - len(packet)))


def test_two_clients_at_once(stack_name):
    net = Net(stack_name)
    first, second = net.client(50001), net.client(50002)
    assert net.run(
        lambda: (
            first.handshake_done
            and second.handshake_done
            and all(s.handshake_done for s in net.accepted)
        )
    )
    assert len(net.accepted) == 2 and net.demux.connections_created == 2
    assert {s.remote_address for s in net.accepted} == set(net.clients)
    first.send_stream_data(0, b"from first", end_stream=True)
    second.send_stream_data(0, b"from second", end_stream=True)
    assert net.run(lambda: all(0 in net.engines[id(s)].fin for s in net.accepted))
    by_address = {s.remote_address: bytes(net.engines[id(s)].data[0]) for s in net.accepted}
    assert by_address == {("127.0.0.1", 50001): b"from first", ("127.0.0.1", 50002): b"from second"}
    assert net.demux.datagrams_dropped == 0


def test_version_negotiation(stack_name):
    net = Net(stack_name)
    stack = net.backend.stack
    dcid, scid = os.urandom(8), os.urandom(8)
    assert (
        net.demux.datagram_received(
            _long_header(UNKNOWN_VERSION, dcid, scid, 1200), ("127.0.0.1", 9), 1.0
        )
        is None
    )
    ((reply, to),) = net.demux.stateless_datagrams()
    assert to == ("127.0.0.1", 9)
    version, packet_type, reply_dcid, reply_scid = stack.parse_header(reply, 8)
    assert (version, packet_type, reply_dcid, reply_scid) == (0, 4, scid, dcid)
    header = 1 + 4 + 1 + len(scid) + 1 + len(dcid)
    supported = [int.from_bytes(reply[i : i + 4], "big") for i in range(header, len(reply), 4)]
    assert 1 in supported and UNKNOWN_VERSION not in supported
    assert net.demux.stateless_datagrams() == []
    # Never a reply to a Version Negotiation packet (no reflection loop)...
    net.demux.datagram_received(_long_header(0, dcid, scid, 1200), ("127.0.0.1", 9), 1.0)
    # ...nor to a datagram too small to be a client's first (no amplification).
    net.demux.datagram_received(
        _long_header(UNKNOWN_VERSION, dcid, scid, 100), ("127.0.0.1", 9), 1.0
    )
    assert net.demux.stateless_datagrams() == []
    assert net.demux.version_negotiations == 1
    assert net.accepted == []


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x40",
        b"\x40abc",
        b"\x40" + os.urandom(40),  # a short header for no connection
        _long_header(1, os.urandom(8), os.urandom(8), 600),  # an Initial under 1200 bytes
        _long_header(1, os.urandom(4), os.urandom(8), 1200),  # an Initial with a short id
        _long_header(1, os.urandom(8), os.urandom(8), 1200, first=0xE0),  # a Handshake packet
        _long_header(1, os.urandom(8), os.urandom(8), 1200, first=0x80),  # fixed bit zero
    ],
    ids=[
        "empty",
        "one-byte",
        "short",
        "unknown-cid",
        "small-initial",
        "short-initial-id",
        "handshake",
        "no-fixed-bit",
    ],
)
def test_junk_is_dropped(stack_name, datagram):
    net = Net(stack_name)
    assert net.demux.datagram_received(datagram, ("127.0.0.1", 9), 1.0) is None
    assert net.demux.datagrams_dropped == 1
    assert net.demux.stateless_datagrams() == []
    assert net.accepted == [] and net.demux.connection_ids() == {}


def test_connection_ids_exact_and_removed_after_termination(stack_name):
    net = Net(stack_name)
    client = net.client(50001)
    assert net.run(lambda: client.handshake_done and net.accepted[0].handshake_done)
    for _ in range(20):
        net.step()
    (server,) = net.accepted
    odcid = client.quic.original_destination_connection_id
    cids = net.demux.connection_ids()
    assert odcid in cids and server.quic.host_cid in cids
    assert set(cids.values()) == {server}
    issued = len(cids) - 2
    # aioquic issues up to the client's limit (8) - 1; a qh3 client allows 2.
    assert issued >= 1
    # The client moves to a new id: the server retires the old one.
    before = set(cids)
    client.quic.change_connection_id()
    client.send_stream_data(0, b"moved", end_stream=True)
    assert net.run(lambda: 0 in net.engines[id(server)].fin)
    for _ in range(20):
        net.step()
    after = set(net.demux.connection_ids())
    assert before - after, "a retired connection id is still routed"
    assert set(net.demux.connection_ids().values()) == {server}
    # Close: once the server connection is over, none of its ids is left.
    client.close(0, "done")
    assert net.run(lambda: server.terminated and client.terminated, jump=True)
    net.step()
    assert net.demux.connection_ids() == {}
    assert net.demux.connections == []
    net.demux.connection_ended(server)  # twice is fine
    # A late datagram for the old connection goes nowhere.
    late = b"\x40" + next(iter(after)) + os.urandom(30)
    assert net.demux.datagram_received(late, ("127.0.0.1", 50001), net.now) is None
