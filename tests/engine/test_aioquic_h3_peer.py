"""Our engine against aioquic's own HTTP/3 WebTransport (draft-02), in memory.

The peer is ``aioquic.h3.connection.H3Connection(quic, enable_webtransport=True)``
on a real aioquic ``QuicConnection``; our engine runs on another one through
the sans-IO backend adapter.  Datagrams are moved between the two by hand.
The glue below only routes aioquic's events; it never parses WebTransport
except to read our close capsule, which aioquic hands over as plain DATA.

aioquic quirk (reference/baselines.md): a bidi stream it creates with
``create_webtransport_stream`` is not registered as a WebTransport stream in
``H3Connection``, so the bytes we send back on it would be parsed as HTTP/3
frames and lost.  QUIC events of those streams bypass the H3 layer here.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from engine_wire import app_to_h3, parse_capsules
from helpers.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    backend,
    client_settings,
    dev_certificate,
    server_settings,
)

from anywt.core.events import (
    DatagramReceived,
    Dialect,
    SessionClosed,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
    SettingsReceived,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
)

h3_connection = pytest.importorskip("aioquic.h3.connection")
h3_events = pytest.importorskip("aioquic.h3.events")
quic_events = pytest.importorskip("aioquic.quic.events")
quic_connection = pytest.importorskip("aioquic.quic.connection")
quic_configuration = pytest.importorskip("aioquic.quic.configuration")

CLOSE_CAPSULE = 0x2843


class AioquicPeer:
    """aioquic's H3Connection plus the routing its WebTransport support needs."""

    def __init__(self, quic: Any) -> None:
        self.quic = quic
        # Created once ALPN is negotiated, as aioquic's own asyncio protocol does.
        self.h3: Any = None
        self.events: list[Any] = []
        #: Bidi streams we created: their QUIC data, read around the H3 layer.
        self.own_bidi: dict[int, bytearray] = {}
        self.own_bidi_ended: set[int] = set()
        self.resets: list[tuple[int, int]] = []
        self.stops: list[tuple[int, int]] = []

    def create_stream(self, session_id: int, uni: bool) -> int:
        stream_id = self.h3.create_webtransport_stream(session_id, is_unidirectional=uni)
        if not uni:
            self.own_bidi[stream_id] = bytearray()
        return stream_id

    def handle(self, event: Any) -> None:
        if isinstance(event, quic_events.ProtocolNegotiated) and self.h3 is None:
            self.h3 = h3_connection.H3Connection(self.quic, enable_webtransport=True)
        if self.h3 is None:
            return
        if isinstance(event, quic_events.StreamDataReceived) and event.stream_id in self.own_bidi:
            self.own_bidi[event.stream_id] += event.data
            if event.end_stream:
                self.own_bidi_ended.add(event.stream_id)
            return
        if isinstance(event, quic_events.StreamReset):
            self.resets.append((event.stream_id, event.error_code))
        elif isinstance(event, quic_events.StopSendingReceived):
            self.stops.append((event.stream_id, event.error_code))
        self.events.extend(self.h3.handle_event(event))

    def take(self, cls: type) -> list[Any]:
        found = [event for event in self.events if isinstance(event, cls)]
        self.events = [event for event in self.events if not isinstance(event, cls)]
        return found

    def wt_data(self, stream_id: int) -> tuple[bytes, bool]:
        """Bytes and FIN aioquic surfaced as WebTransportStreamDataReceived on a stream."""
        chunks = [
            e
            for e in self.events
            if isinstance(e, h3_events.WebTransportStreamDataReceived) and e.stream_id == stream_id
        ]
        return b"".join(e.data for e in chunks), any(e.stream_ended for e in chunks)

    def request_body(self, stream_id: int) -> tuple[bytes, bool]:
        """The DATA payloads aioquic surfaced on a request stream."""
        chunks = [
            e
            for e in self.events
            if isinstance(e, h3_events.DataReceived) and e.stream_id == stream_id
        ]
        return b"".join(e.data for e in chunks), any(e.stream_ended for e in chunks)


class MixedPair:
    """Our engine on one end of an in-memory aioquic connection, aioquic's H3 on the other.

    Our end is built by the aioquic backend (``helpers.quicpair``), as over UDP;
    aioquic's end is a bare ``QuicConnection`` configured here.
    """

    def __init__(self, engine_module: Any, *, engine_is_client: bool) -> None:
        self.now = 1.0
        ours_backend = backend("aioquic")
        cert = dev_certificate()
        if engine_is_client:
            self.conn = ours_backend.client_connection(client_settings(), SERVER_ADDR, self.now)
            config = quic_configuration.QuicConfiguration(
                is_client=False, alpn_protocols=["h3"], max_datagram_frame_size=65536
            )
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
            from cryptography.x509 import load_pem_x509_certificate

            config.certificate = load_pem_x509_certificate(cert.cert_pem)
            config.private_key = load_pem_private_key(cert.key_pem, password=None)
            theirs = quic_connection.QuicConnection(
                configuration=config,
                original_destination_connection_id=self.conn.quic.original_destination_connection_id,
            )
        else:
            config = quic_configuration.QuicConfiguration(
                is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536
            )
            config.verify_mode = ssl.CERT_NONE
            theirs = quic_connection.QuicConnection(configuration=config)
            theirs.connect(SERVER_ADDR, now=self.now)
            self.conn = ours_backend.server_connection(
                server_settings(cert), theirs.original_destination_connection_id
            )
        self.engine_is_client = engine_is_client
        self.engine = engine_module.WebTransportEngine(self.conn, is_client=engine_is_client)
        self.conn.engine = self.engine
        self.peer = AioquicPeer(theirs)
        self.ours: list[Any] = []
        self.engine.initialize(self.now)
        self.transfer()

    def transfer(self, rounds: int = 50) -> None:
        ours, theirs = self.conn, self.peer.quic
        # The client's datagrams go first: a server has no path before it hears from one.
        if self.engine_is_client:
            legs = ((ours, theirs, CLIENT_ADDR), (theirs, ours, SERVER_ADDR))
        else:
            legs = ((theirs, ours, CLIENT_ADDR), (ours, theirs, SERVER_ADDR))
        for _ in range(rounds):
            moved = 0
            for src, dst, addr in legs:
                for data, _addr in src.datagrams_to_send(self.now):
                    moved += 1
                    dst.receive_datagram(data, addr, self.now)
            self.now += 0.001
            for end in (ours, theirs):
                timer = end.get_timer()
                if timer is not None and timer <= self.now:
                    end.handle_timer(self.now)
            ours.process_events(self.now)
            event = theirs.next_event()
            while event is not None:
                self.peer.handle(event)
                event = theirs.next_event()
            for ours_event in self.engine.events():
                # The application reads everything at once.
                if isinstance(ours_event, StreamDataReceived) and ours_event.data:
                    ours.stream_consumed(ours_event.stream_id, len(ours_event.data))
                self.ours.append(ours_event)
            if not moved:
                break

    def take(self, cls: type | None = None) -> list[Any]:
        if cls is None:
            events, self.ours = self.ours, []
            return events
        found = [e for e in self.ours if isinstance(e, cls)]
        self.ours = [e for e in self.ours if not isinstance(e, cls)]
        return found


def _data(events, stream_id):
    return b"".join(
        e.data for e in events if isinstance(e, StreamDataReceived) and e.stream_id == stream_id
    )


def _ended(events, stream_id):
    return any(
        e.end_stream
        for e in events
        if isinstance(e, StreamDataReceived) and e.stream_id == stream_id
    )


# ---------------------------------------------------------------------------
# aioquic's H3 as the client, our engine as the server


def _aioquic_client_session(engine_module):
    pair = MixedPair(engine_module, engine_is_client=False)
    (settings,) = pair.take(SettingsReceived)
    assert settings.dialect == Dialect.DRAFT02
    assert pair.engine.dialect == Dialect.DRAFT02
    peer = pair.peer
    session_id = peer.quic.get_next_available_stream_id()
    peer.h3.send_headers(
        session_id,
        [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", b"127.0.0.1:4434"),
            (b":path", b"/aioquic"),
            (b":protocol", b"webtransport"),
            (b"sec-webtransport-http3-draft02", b"1"),
            (b"origin", b"https://127.0.0.1"),
        ],
    )
    pair.transfer()
    (requested,) = pair.take(SessionRequested)
    assert (requested.session_id, requested.path, requested.origin) == (
        session_id,
        "/aioquic",
        "https://127.0.0.1",
    )
    assert requested.dialect == Dialect.DRAFT02
    pair.engine.accept(session_id)
    pair.transfer()
    assert [type(e) for e in pair.take()] == [SessionEstablished]
    (response,) = peer.take(h3_events.HeadersReceived)
    headers = dict(response.headers)
    assert headers[b":status"] == b"200"
    assert headers[b"sec-webtransport-http3-draft"] == b"draft02"
    return pair, session_id


def test_aioquic_client_session_setup(engine_module):
    pair, _ = _aioquic_client_session(engine_module)
    assert pair.peer.quic._close_event is None
    assert not pair.engine.closed


def test_aioquic_client_streams_both_directions(engine_module):
    pair, session_id = _aioquic_client_session(engine_module)
    peer, engine = pair.peer, pair.engine
    # aioquic opens a bidi and a uni stream; we read them and answer on the bidi.
    bidi = peer.create_stream(session_id, uni=False)
    peer.quic.send_stream_data(bidi, b"ping from aioquic", end_stream=True)
    uni = peer.create_stream(session_id, uni=True)
    peer.quic.send_stream_data(uni, b"uni from aioquic", end_stream=True)
    pair.transfer()
    events = pair.take()
    assert StreamOpened(session_id, bidi, False) in events
    assert StreamOpened(session_id, uni, True) in events
    assert _data(events, bidi) == b"ping from aioquic" and _ended(events, bidi)
    assert _data(events, uni) == b"uni from aioquic" and _ended(events, uni)
    engine.send_stream_data(bidi, b"pong from anywt", True)
    # We open a bidi and a uni stream; aioquic reads them and answers on the bidi.
    ours_bidi = engine.open_stream(session_id)
    engine.send_stream_data(ours_bidi, b"bidi from anywt")
    ours_uni = engine.open_stream(session_id, is_unidirectional=True)
    engine.send_stream_data(ours_uni, b"uni from anywt", True)
    pair.transfer()
    assert bytes(peer.own_bidi[bidi]) == b"pong from anywt"
    assert bidi in peer.own_bidi_ended
    assert peer.wt_data(ours_bidi) == (b"bidi from anywt", False)
    assert peer.wt_data(ours_uni) == (b"uni from anywt", True)
    peer.quic.send_stream_data(ours_bidi, b"reply from aioquic", end_stream=True)
    pair.transfer()
    events = pair.take()
    assert _data(events, ours_bidi) == b"reply from aioquic" and _ended(events, ours_bidi)


def test_aioquic_client_datagrams_both_directions(engine_module):
    pair, session_id = _aioquic_client_session(engine_module)
    pair.peer.h3.send_datagram(session_id, b"dgram from aioquic")
    pair.peer.h3.send_datagram(session_id, b"")
    pair.engine.send_datagram(session_id, b"dgram from anywt")
    pair.transfer()
    assert pair.take(DatagramReceived) == [
        DatagramReceived(session_id, b"dgram from aioquic"),
        DatagramReceived(session_id, b""),
    ]
    (received,) = pair.peer.take(h3_events.DatagramReceived)
    assert (received.stream_id, received.data) == (session_id, b"dgram from anywt")


def test_aioquic_client_sees_our_close_capsule_as_data(engine_module):
    pair, session_id = _aioquic_client_session(engine_module)
    stream = pair.peer.create_stream(session_id, uni=False)
    pair.peer.quic.send_stream_data(stream, b"open")
    pair.transfer()
    pair.engine.close_session(session_id, 42, "bye from anywt")
    pair.transfer()
    body, ended = pair.peer.request_body(session_id)
    assert ended
    assert parse_capsules(body) == [(CLOSE_CAPSULE, (42).to_bytes(4, "big") + b"bye from anywt")]
    assert (stream, 0x170D7B68) in pair.peer.resets
    assert (stream, 0x170D7B68) in pair.peer.stops
    assert pair.take(SessionClosed) == [
        SessionClosed(session_id, 42, "bye from anywt", False, None)
    ]


def test_aioquic_client_bare_fin_is_clean_close(engine_module):
    pair, session_id = _aioquic_client_session(engine_module)
    pair.peer.h3.send_data(session_id, b"", end_stream=True)
    pair.transfer()
    assert pair.take(SessionClosed) == [SessionClosed(session_id, 0, "", True, None)]
    _, ended = pair.peer.request_body(session_id)
    assert ended  # we answer the FIN with ours


def test_aioquic_client_stream_reset_codes(engine_module):
    pair, session_id = _aioquic_client_session(engine_module)
    stream = pair.peer.create_stream(session_id, uni=False)
    pair.peer.quic.send_stream_data(stream, b"x")
    pair.transfer()
    pair.peer.quic.reset_stream(stream, app_to_h3(9))
    pair.engine.reset_stream(stream, 7)
    pair.transfer()
    assert StreamReset(stream, session_id, 9, app_to_h3(9)) in pair.take(StreamReset)
    assert (stream, 0x52E4A40FA8E2) in pair.peer.resets


# ---------------------------------------------------------------------------
# Our engine as the client, aioquic's H3 as the server


def _aioquic_server_session(engine_module):
    pair = MixedPair(engine_module, engine_is_client=True)
    (settings,) = pair.take(SettingsReceived)
    assert settings.dialect == Dialect.DRAFT02
    assert settings.flow_control is False
    session_id = pair.engine.connect(
        authority="127.0.0.1:4434", path="/echo", origin="https://127.0.0.1"
    )
    pair.transfer()
    (request,) = pair.peer.take(h3_events.HeadersReceived)
    assert request.stream_id == session_id
    headers = dict(request.headers)
    assert headers[b":method"] == b"CONNECT"
    assert headers[b":protocol"] == b"webtransport"
    assert headers[b":path"] == b"/echo"
    assert headers[b"sec-webtransport-http3-draft02"] == b"1"
    pair.peer.h3.send_headers(
        session_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
    )
    pair.transfer()
    (established,) = pair.take(SessionEstablished)
    assert established.session_id == session_id and established.status == 200
    return pair, session_id


def test_aioquic_server_session_setup(engine_module):
    pair, session_id = _aioquic_server_session(engine_module)
    assert pair.engine.session_snapshot(session_id).dialect == Dialect.DRAFT02
    assert not pair.engine.closed


def test_aioquic_server_streams_both_directions(engine_module):
    pair, session_id = _aioquic_server_session(engine_module)
    peer, engine = pair.peer, pair.engine
    bidi = engine.open_stream(session_id)
    engine.send_stream_data(bidi, b"ping from anywt", True)
    uni = engine.open_stream(session_id, is_unidirectional=True)
    engine.send_stream_data(uni, b"uni from anywt", True)
    pair.transfer()
    assert peer.wt_data(bidi) == (b"ping from anywt", True)
    assert peer.wt_data(uni) == (b"uni from anywt", True)
    peer.quic.send_stream_data(bidi, b"pong from aioquic", end_stream=True)
    their_bidi = peer.create_stream(session_id, uni=False)
    peer.quic.send_stream_data(their_bidi, b"bidi from aioquic")
    their_uni = peer.create_stream(session_id, uni=True)
    peer.quic.send_stream_data(their_uni, b"uni from aioquic", end_stream=True)
    pair.transfer()
    events = pair.take()
    assert _data(events, bidi) == b"pong from aioquic" and _ended(events, bidi)
    assert StreamOpened(session_id, their_bidi, False) in events
    assert StreamOpened(session_id, their_uni, True) in events
    assert _data(events, their_bidi) == b"bidi from aioquic"
    assert _data(events, their_uni) == b"uni from aioquic" and _ended(events, their_uni)
    engine.send_stream_data(their_bidi, b"reply from anywt", True)
    pair.transfer()
    assert bytes(peer.own_bidi[their_bidi]) == b"reply from anywt"
    assert their_bidi in peer.own_bidi_ended


def test_aioquic_server_datagrams_both_directions(engine_module):
    pair, session_id = _aioquic_server_session(engine_module)
    pair.engine.send_datagram(session_id, b"dgram from anywt")
    pair.peer.h3.send_datagram(session_id, b"dgram from aioquic")
    pair.transfer()
    (received,) = pair.peer.take(h3_events.DatagramReceived)
    assert (received.stream_id, received.data) == (session_id, b"dgram from anywt")
    assert pair.take(DatagramReceived) == [DatagramReceived(session_id, b"dgram from aioquic")]


def test_aioquic_server_bare_fin_is_clean_close(engine_module):
    pair, session_id = _aioquic_server_session(engine_module)
    stream = pair.engine.open_stream(session_id)
    pair.engine.send_stream_data(stream, b"open")
    pair.transfer()
    pair.peer.h3.send_data(session_id, b"", end_stream=True)
    pair.transfer()
    assert pair.take(SessionClosed) == [SessionClosed(session_id, 0, "", True, None)]
    assert (stream, 0x170D7B68) in pair.peer.resets
    _, ended = pair.peer.request_body(session_id)
    assert ended


def test_aioquic_server_sees_our_close_capsule_as_data(engine_module):
    pair, session_id = _aioquic_server_session(engine_module)
    pair.engine.close_session(session_id, 0xFFFFFFFF, "caf\u00e9")
    pair.transfer()
    body, ended = pair.peer.request_body(session_id)
    assert ended
    assert parse_capsules(body) == [(CLOSE_CAPSULE, b"\xff\xff\xff\xff" + "caf\u00e9".encode())]


def test_aioquic_server_rejects(engine_module):
    pair = MixedPair(engine_module, engine_is_client=True)
    session_id = pair.engine.connect(authority="127.0.0.1:4434", path="/missing")
    pair.transfer()
    pair.peer.h3.send_headers(session_id, [(b":status", b"404")], end_stream=True)
    pair.transfer()
    assert [(e.session_id, e.status) for e in pair.take(SessionRejected)] == [(session_id, 404)]
    assert not pair.take(SessionClosed)
