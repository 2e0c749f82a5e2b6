"""Flow-control credit of streams reset before all their bytes were sent.

QUIC stacks without RESET_STREAM_AT drop a stream's unsent bytes when it is
reset, and never retransmit what a reset stream lost.  Both ends must still
agree on what each session counted (draft-ietf-webtrans-http3 section 5.4:
a reset stream counts its final size minus its header), or a session that
resets streams often runs out of credit for good:

* the sender gives back the credit of body bytes its reset dropped, and the
  stream credit of a stream whose header was dropped;
* the receiver of a stream reset before its header arrived gives its stream
  credit, and the body bytes of its final size, back to the connection's
  only flow-controlled session.

Each rule is checked on a hand-played peer, then end to end over aioquic and
qh3 with both engines: a sender that resets most of its streams never stalls.
"""

from __future__ import annotations

import pytest
from engine_wire import (
    CAPSULE_MAX_DATA,
    CAPSULE_MAX_STREAMS_BIDI,
    CAPSULE_MAX_STREAMS_UNI,
    FC_SETTINGS,
    H3_REQUEST_CANCELLED,
    PEER_D16,
    SETTING_WT_INITIAL_MAX_DATA,
    SETTING_WT_INITIAL_MAX_STREAMS_UNI,
    Wire,
    app_to_h3,
    dec,
    enc,
    established_client,
    established_server,
)
from helpers.quicpair import make_pair

from anywt.core.config import EngineConfig
from anywt.core.events import (
    DataCreditAvailable,
    StreamDataReceived,
    StreamReset,
    StreamsCreditAvailable,
)

UNI_HEADER_LEN = 3  # 0x54 as a two-byte varint, then session id 0
BIDI_HEADER_LEN = 3  # 0x41 as a two-byte varint, then session id 0


def _grants(wire: Wire, session_id: int, capsule_type: int) -> list[int]:
    """Every value the engine granted with ``capsule_type`` on the session's CONNECT stream."""
    return [
        dec(payload)[0] for kind, payload in wire.sent_capsules(session_id) if kind == capsule_type
    ]


def _server(engine_module, **limits):
    config = EngineConfig(**{"streams_window": 2, **limits})
    return established_server(engine_module, config=config)


# ---------------------------------------------------------------------------
# Receiving: a peer stream reset before its header arrived


def test_headerless_resets_give_stream_credit_back(engine_module):
    wire, sid = _server(engine_module, initial_max_streams_uni=2)
    assert sid == 0
    wire.open_wt(sid, uni=True, fin=True)  # counted, closed: credit 3
    assert _grants(wire, sid, CAPSULE_MAX_STREAMS_UNI) == [3]
    for _ in range(2):  # the peer counted these, we never learn their session
        wire.reset(wire.peer_stream(uni=True), app_to_h3(1), final_size=0)
    assert _grants(wire, sid, CAPSULE_MAX_STREAMS_UNI) == [3, 4, 5]
    # The peer counted three streams against a limit of five: two more are fine.
    for _ in range(2):
        wire.open_wt(sid, uni=True, data=b"x")
    assert wire.transport.closed is None and not wire.transport.reset_codes(sid)
    assert wire.engine.session_snapshot(sid).peer_streams_uni_opened == 3


def test_headerless_reset_gives_its_body_bytes_back(engine_module):
    wire, sid = _server(engine_module, initial_max_data=1000)
    wire.reset(wire.peer_stream(uni=True), app_to_h3(1), final_size=UNI_HEADER_LEN + 700)
    # 700 counted by the peer and consumed at once: the window opens to 1700.
    assert _grants(wire, sid, CAPSULE_MAX_DATA) == [1700]
    assert wire.engine.session_snapshot(sid).data_received == 0


def test_reset_inside_the_header_counts_as_headerless(engine_module):
    wire, sid = _server(engine_module, initial_max_streams_bidi=2)
    records = wire.engine.connection_snapshot().stream_records
    stream = wire.peer_stream(uni=False)
    wire.feed(stream, enc(0x41)[:1])  # half of the signal value
    wire.reset(stream, app_to_h3(4), final_size=1)
    assert _grants(wire, sid, CAPSULE_MAX_STREAMS_BIDI) == [3]
    # Nobody will write on it: our side is cancelled too, and the stream forgotten.
    assert wire.transport.reset_codes(stream) == [H3_REQUEST_CANCELLED]
    assert wire.engine.connection_snapshot().stream_records == records


def test_headerless_reset_with_two_sessions_gives_nothing(engine_module):
    wire, first = _server(engine_module, initial_max_streams_uni=2)
    second = wire.request(path="/second")
    wire.engine.accept(second)
    wire.reset(wire.peer_stream(uni=True), app_to_h3(1), final_size=0)
    # Which session the stream was for is unknown: neither grants anything.
    assert _grants(wire, first, CAPSULE_MAX_STREAMS_UNI) == []
    assert _grants(wire, second, CAPSULE_MAX_STREAMS_UNI) == []
    assert wire.transport.closed is None


def test_reset_of_a_forgotten_stream_gives_nothing(engine_module):
    wire, sid = _server(engine_module, initial_max_streams_uni=2)
    stream = wire.open_wt(sid, uni=True, fin=True)
    assert _grants(wire, sid, CAPSULE_MAX_STREAMS_UNI) == [3]
    wire.reset(stream, app_to_h3(1), final_size=UNI_HEADER_LEN)  # late, and already counted
    assert _grants(wire, sid, CAPSULE_MAX_STREAMS_UNI) == [3]


def test_headerless_reset_without_flow_control(engine_module):
    wire, sid = _server(engine_module, flow_control=False)
    records = wire.engine.connection_snapshot().stream_records
    stream = wire.peer_stream(uni=False)
    wire.reset(stream, app_to_h3(2), final_size=0)
    assert wire.transport.reset_codes(stream) == [H3_REQUEST_CANCELLED]
    assert not wire.sent_capsules(sid)
    assert wire.engine.connection_snapshot().stream_records == records


# ---------------------------------------------------------------------------
# Sending: our reset dropped bytes the stack had not sent


def _limited_client(engine_module, *, max_data=1 << 20, max_streams_uni=10):
    settings = {
        **PEER_D16,
        **FC_SETTINGS,
        SETTING_WT_INITIAL_MAX_DATA: max_data,
        SETTING_WT_INITIAL_MAX_STREAMS_UNI: max_streams_uni,
    }
    return established_client(engine_module, settings=settings)


def test_reset_gives_back_the_credit_of_unsent_body_bytes(engine_module):
    wire, sid = _limited_client(engine_module, max_data=100)
    engine = wire.engine
    stream = engine.open_stream(sid, is_unidirectional=True)
    assert engine.send_stream_data(stream, b"a" * 100) == 100
    assert engine.send_stream_data(engine.open_stream(sid), b"b") == 0  # out of credit
    wire.take()
    wire.transport.unsent[stream] = 60  # the stack still held the last 60 bytes
    engine.reset_stream(stream, 1)
    assert wire.take() == [DataCreditAvailable(sid, 100)]
    assert engine.session_snapshot(sid).data_sent == 40
    assert engine.send_stream_data(engine.open_stream(sid), b"c" * 100) == 60


def test_reset_that_dropped_the_header_gives_the_stream_back(engine_module):
    wire, sid = _limited_client(engine_module, max_streams_uni=1)
    engine = wire.engine
    stream = engine.open_stream(sid, is_unidirectional=True)
    engine.send_stream_data(stream, b"a" * 10)
    assert engine.open_stream(sid, is_unidirectional=True) is None
    wire.take()
    wire.transport.unsent[stream] = UNI_HEADER_LEN + 10  # nothing had left
    engine.reset_stream(stream, 1)
    events = wire.take()
    assert StreamsCreditAvailable(sid, True, 1) in events
    assert DataCreditAvailable(sid, 1 << 20) in events
    assert engine.session_snapshot(sid).data_sent == 0
    again = engine.open_stream(sid, is_unidirectional=True)
    assert again is not None and again != stream


def test_reset_that_sent_the_header_keeps_the_stream_counted(engine_module):
    wire, sid = _limited_client(engine_module, max_streams_uni=1)
    engine = wire.engine
    stream = engine.open_stream(sid, is_unidirectional=True)
    engine.send_stream_data(stream, b"a" * 10)
    wire.transport.unsent[stream] = 10  # the header went out, the body did not
    engine.reset_stream(stream, 1)
    assert not [e for e in wire.take() if isinstance(e, StreamsCreditAvailable)]
    assert engine.open_stream(sid, is_unidirectional=True) is None


def test_reset_answering_stop_sending_gives_credit_back(engine_module):
    wire, sid = _limited_client(engine_module, max_data=100)
    engine = wire.engine
    stream = engine.open_stream(sid)
    engine.send_stream_data(stream, b"a" * 100)
    wire.take()
    wire.transport.unsent[stream] = 30
    wire.stop(stream, app_to_h3(9))
    assert DataCreditAvailable(sid, 100) in wire.take()
    assert wire.transport.reset_codes(stream) == [app_to_h3(9)]
    assert engine.session_snapshot(sid).data_sent == 70


# ---------------------------------------------------------------------------
# End to end over a QUIC stack: resets never starve a session


@pytest.mark.parametrize("uni", [True, False], ids=["uni", "bidi"])
@pytest.mark.parametrize("header", ["dropped", "sent", "lost"])
def test_resetting_sender_never_stalls(engine_module, stack_name, header, uni):
    """40 streams reset with 2 KB each against a window of 4 streams and 4 KB.

    The server's application ends its side of a bidirectional stream when the
    client's side ended, as a bidirectional stream counts until both have.

    The reset drops the header with the body ("dropped"), or only the body
    ("sent"), or comes after packets holding both were lost ("lost": a reset
    stream's data is never retransmitted, so only the receiver can settle it).
    """
    pair = make_pair(
        engine_module,
        stack_name=stack_name,
        server_config=EngineConfig(
            initial_max_data=4000, initial_max_streams_uni=4, initial_max_streams_bidi=4
        ),
    )
    sid = pair.client.connect(authority="example.com", path="/resets")
    pair.transfer()
    pair.server.accept(sid)
    pair.transfer()
    kept = received = b""

    def deliver() -> None:
        nonlocal received
        for event in pair.take_server():
            if isinstance(event, StreamDataReceived):
                received += event.data
                pair.server.consume_data(sid, len(event.data))  # read at once
                if event.end_stream and not uni:
                    pair.server.send_stream_data(event.stream_id, b"", end_stream=True)
            elif isinstance(event, StreamReset) and not uni:
                # The application ends its side too: a bidi stream counts until both have.
                pair.server.send_stream_data(event.stream_id, b"", end_stream=True)

    for round_ in range(40):
        stream = pair.client.open_stream(sid, is_unidirectional=uni)
        assert stream is not None, f"no stream credit in round {round_}"
        if header == "sent":
            pair.transfer()
        assert pair.client.send_stream_data(stream, b"r" * 2000) == 2000, round_
        if header == "lost":
            pair.loss = lambda _datagram: True
            pair.transfer(rounds=1)
            pair.loss = None
        pair.client.reset_stream(stream, 5)
        if round_ % 8 == 0:  # now and then a stream that completes
            last = pair.client.open_stream(sid, is_unidirectional=uni)
            assert last is not None
            body = bytes([round_]) * 100
            assert pair.client.send_stream_data(last, body, end_stream=True) == 100
            kept += body
        for _ in range(3):  # time for paced packets and retransmissions after loss
            pair.transfer()
            deliver()
            pair.now += 0.05
    for _ in range(20):  # lost packets other than the reset streams' are sent again
        pair.now += 0.05
        pair.transfer()
        deliver()
    assert received == kept
    if header != "lost":  # lost bodies count on both sides, but were never received
        client_view = pair.client.session_snapshot(sid)
        server_view = pair.server.session_snapshot(sid)
        assert client_view.data_sent == server_view.data_received == len(kept)
    assert pair.server.connection_snapshot().closed is False
