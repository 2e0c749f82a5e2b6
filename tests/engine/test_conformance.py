"""The engine against reference/protocol.md section 8 (cases 2 and 4-24) and DESIGN.md section 3.

Most tests play the peer byte by byte over a ``RecordingTransport`` (see
``engine_wire``) and check both what the engine reported (events) and what it
put on the wire (stream data, resets and STOP_SENDING with their codes,
capsules, the connection close code).  Negotiation tests run two engines over
real in-memory QUIC connections (``helpers.quicpair``).
"""

from __future__ import annotations

import inspect
import tracemalloc

import pytest
from engine_wire import (
    CAPSULE_CLOSE,
    CAPSULE_DATA_BLOCKED,
    CAPSULE_DRAIN,
    CAPSULE_MAX_DATA,
    CAPSULE_MAX_STREAM_DATA,
    CAPSULE_MAX_STREAMS_BIDI,
    CAPSULE_MAX_STREAMS_UNI,
    CAPSULE_STREAM_DATA_BLOCKED,
    CAPSULE_STREAMS_BLOCKED_BIDI,
    CAPSULE_STREAMS_BLOCKED_UNI,
    CHROME_GREASE_CAPSULE_TYPE,
    FRAME_GOAWAY,
    FRAME_HEADERS,
    H3_DATAGRAM_ERROR,
    H3_FRAME_ERROR,
    H3_ID_ERROR,
    H3_MESSAGE_ERROR,
    H3_REQUEST_REJECTED,
    H3_SETTINGS_ERROR,
    PEER_D02,
    PEER_D07,
    PEER_D14,
    PEER_D14_FC,
    PEER_D16,
    PEER_D16_FC,
    SETTING_ENABLE_CONNECT_PROTOCOL,
    SETTING_ENABLE_WEBTRANSPORT,
    SETTING_H3_DATAGRAM,
    SETTING_WT_ENABLED,
    SETTING_WT_INITIAL_MAX_DATA,
    SETTING_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTING_WT_INITIAL_MAX_STREAMS_UNI,
    SETTING_WT_MAX_SESSIONS,
    STREAM_CONTROL,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
    WT_SESSION_GONE,
    RecordingTransport,
    Wire,
    app_to_h3,
    capsule,
    close_capsule,
    data_frame,
    drain_capsule,
    enc,
    enc_n,
    established_client,
    established_server,
    frame,
    is_reserved,
    settings_payload,
    varint_capsule,
)
from helpers.quicpair import make_pair

from anywt.core.config import EngineConfig
from anywt.core.errors import (
    DatagramsUnavailable,
    DatagramTooLarge,
    SessionLimitReached,
    UnknownSession,
    UnknownStream,
)
from anywt.core.events import (
    ConnectionTerminated,
    DataCreditAvailable,
    DatagramReceived,
    Dialect,
    GoawayReceived,
    SessionClosed,
    SessionDraining,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
    SettingsReceived,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamsCreditAvailable,
    StreamStopped,
)
from anywt.core.session_state import SessionState, SessionStateError
from anywt.core.transport import Transport

NO_AUTO = {"auto_grant": False}


def _types(events):
    return [type(event) for event in events]


def _closed(events, session_id):
    found = [e for e in events if isinstance(e, SessionClosed) and e.session_id == session_id]
    assert len(found) == 1, events
    return found[0]


def _assert_session_reset(wire, session_id, code):
    """The CONNECT stream was reset and stopped with ``code``; the connection lives."""
    assert code in wire.transport.reset_codes(session_id)
    assert code in wire.transport.stop_codes(session_id)
    assert wire.transport.closed is None
    closed = _closed(wire.events, session_id)
    assert closed.error_code == code
    assert wire.engine.session_state(session_id) == SessionState.CLOSED


def _stream_data(events, stream_id):
    return b"".join(
        e.data for e in events if isinstance(e, StreamDataReceived) and e.stream_id == stream_id
    )


def test_recording_transport_is_the_engine_transport():
    """The test transport has exactly the methods and parameters of core/transport.py."""
    for name, member in vars(Transport).items():
        if name.startswith("_") or not callable(member):
            continue
        ours = getattr(RecordingTransport, name)
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(member).parameters
        ), name


def test_recording_transport_hands_out_ids_like_quic():
    transport = RecordingTransport(is_client=True)
    assert transport.get_next_available_stream_id() == 0
    assert transport.get_next_available_stream_id() == 0  # taken only when written
    transport.send_stream_data(0, b"x")
    assert transport.get_next_available_stream_id() == 4
    assert transport.get_next_available_stream_id(True) == 2
    transport.send_stream_data(0, b"", True)
    with pytest.raises(RuntimeError):
        transport.send_stream_data(0, b"after FIN")
    with pytest.raises(ValueError):
        transport.send_stream_data(3, b"on the peer's uni stream")
    with pytest.raises(ValueError):
        transport.send_stream_data(8, b"skipping id 4")


# ---------------------------------------------------------------------------
# Case 2: non-minimal varints are accepted, minimal ones are sent


def test_case_02_non_minimal_encodings_accepted(engine_module):
    wire, sid = established_server(engine_module)
    bidi = wire.peer_stream(uni=False)
    wire.feed(bidi, enc_n(0x41, 4) + enc_n(sid, 8) + b"bidi")
    uni = wire.peer_stream(uni=True)
    wire.feed(uni, enc_n(0x54, 8) + enc_n(sid, 2) + b"uni")
    wire.datagram(enc_n(sid >> 2, 8) + b"dg")
    wire.feed(sid, data_frame(enc_n(CAPSULE_DRAIN, 8) + enc_n(0, 4)))
    events = wire.take()
    assert StreamOpened(sid, bidi, False) in events
    assert StreamDataReceived(bidi, b"bidi", False, sid) in events
    assert StreamOpened(sid, uni, True) in events
    assert StreamDataReceived(uni, b"uni", False, sid) in events
    assert DatagramReceived(sid, b"dg") in events
    assert SessionDraining(sid) in events
    body = (0xA0B0C0D0).to_bytes(4, "big") + b"bye"
    wire.feed(sid, data_frame(enc_n(CAPSULE_CLOSE, 8) + enc_n(len(body), 2) + body))
    assert _closed(wire.take(), sid) == SessionClosed(sid, 0xA0B0C0D0, "bye", True, None)
    assert wire.transport.closed is None


def test_case_02_non_minimal_settings_and_stream_type(engine_module):
    wire = Wire(engine_module, is_client=False).start(None)
    control = wire.peer_stream(uni=True)
    payload = (
        enc_n(SETTING_H3_DATAGRAM, 8) + enc_n(1, 4) + enc_n(SETTING_WT_ENABLED, 8) + enc_n(1, 2)
    )
    wire.feed(control, enc_n(STREAM_CONTROL, 4) + enc_n(0x04, 2) + enc_n(len(payload), 4) + payload)
    (settings,) = wire.of_type(SettingsReceived)
    assert settings.dialect == Dialect.DRAFT16
    assert wire.transport.closed is None


def test_case_02_encoder_emits_minimal_forms(engine_module):
    wire, sid = established_client(engine_module)
    bidi = wire.engine.open_stream(sid)
    uni = wire.engine.open_stream(sid, is_unidirectional=True)
    assert wire.transport.data(bidi) == b"\x40\x41\x00"
    assert wire.transport.data(uni) == b"\x40\x54\x00"
    wire.engine.send_datagram(sid, b"x")
    assert wire.transport.datagrams[-1] == b"\x00x"
    wire.engine.close_session(sid, 1, "r")
    assert wire.transport.data(sid).endswith(data_frame(b"\x68\x43\x05\x00\x00\x00\x01r"))


# ---------------------------------------------------------------------------
# Case 4: capsules and DATA frames are independent; reserved frames are skipped


def test_case_04_many_capsules_in_one_frame_and_one_capsule_across_frames(engine_module):
    wire, sid = established_server(engine_module)
    events = wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 2 << 20), drain_capsule())
    assert events == [DataCreditAvailable(sid, 2 << 20), SessionDraining(sid)]
    close = close_capsule(0x01020304, "split")
    first, second, third = close[:2], close[2:7], close[7:]
    wire.feed(sid, data_frame(first) + frame(0x21, b"reserved frame") + data_frame(second))
    assert not wire.of_type(SessionClosed)
    wire.feed(sid, frame(0x21 + 0x1F * 7, b"") + data_frame(third))
    assert _closed(wire.take(), sid) == SessionClosed(sid, 0x01020304, "split", True, None)
    assert wire.transport.closed is None


def test_case_04_capsule_stream_fed_byte_by_byte(engine_module):
    wire, sid = established_server(engine_module)
    body = data_frame(capsule(0x17, b"grease") + varint_capsule(CAPSULE_MAX_DATA, 3 << 20))
    body += frame(0x21, b"xx") + data_frame(drain_capsule() + close_capsule(9, "bytewise"))
    events = wire.feed_bytewise(sid, body)
    assert events[:2] == [DataCreditAvailable(sid, 3 << 20), SessionDraining(sid)]
    assert _closed(events, sid) == SessionClosed(sid, 9, "bytewise", True, None)


# ---------------------------------------------------------------------------
# Case 5: unknown capsules are skipped as they stream, never buffered


@pytest.mark.parametrize(
    "capsule_type",
    [0x17, 0x29 * 1000 + 0x17, CHROME_GREASE_CAPSULE_TYPE, 0x12345, 0x190B4D38],
    ids=["grease-1byte", "grease-4byte", "grease-8byte-chrome", "unknown", "h2-padding"],
)
def test_case_05_unknown_capsules_skipped(engine_module, capsule_type):
    wire, sid = established_server(engine_module)
    events = wire.send_capsules(sid, capsule(capsule_type, bytes(range(63))), drain_capsule())
    assert events == [SessionDraining(sid)]
    assert wire.transport.closed is None
    assert not wire.transport.reset_codes(sid)


def test_case_05_ten_megabyte_unknown_capsule_streamed_through(engine_module):
    wire, sid = established_server(engine_module)
    size = 10 * 1024 * 1024
    head = enc(CHROME_GREASE_CAPSULE_TYPE) + enc(size)
    chunk = b"\xaa" * 65536
    wire.feed(sid, enc(0) + enc(len(head) + size) + head)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(size // len(chunk)):
            wire.engine.receive_stream_data(sid, chunk, False, wire.now)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"{peak} bytes held while skipping an unknown capsule"
    assert wire.send_capsules(sid, drain_capsule()) == [SessionDraining(sid)]


# ---------------------------------------------------------------------------
# Case 6: malformed known capsules reset the CONNECT stream with H3_MESSAGE_ERROR


@pytest.mark.parametrize(
    "bad",
    [
        capsule(CAPSULE_DRAIN, b"\x00"),
        capsule(CAPSULE_MAX_DATA, enc(5 << 20) + b"\x00"),
        capsule(CAPSULE_MAX_DATA, b"\x80\x00"),
        capsule(CAPSULE_MAX_DATA, b""),
        capsule(CAPSULE_CLOSE, b"\x00\x00\x00"),
    ],
    ids=[
        "drain-nonempty",
        "max-data-trailing",
        "max-data-truncated",
        "max-data-empty",
        "close-short",
    ],
)
def test_case_06_malformed_capsule_is_message_error(engine_module, bad):
    wire, sid = established_server(engine_module)
    stream = wire.open_wt(sid, uni=False, data=b"x")
    wire.send_capsules(sid, bad)
    _assert_session_reset(wire, sid, H3_MESSAGE_ERROR)
    assert wire.transport.reset_codes(stream) == [WT_SESSION_GONE]


# ---------------------------------------------------------------------------
# Case 7: a FIN inside a capsule is malformed; on a boundary it is close(0, "")


@pytest.mark.parametrize("cut", [1, 2, 5], ids=["in-type", "in-length", "in-value"])
def test_case_07_fin_mid_capsule_is_message_error(engine_module, cut):
    wire, sid = established_server(engine_module)
    partial = close_capsule(7, "reason")[:cut]
    wire.feed(sid, data_frame(partial), fin=True)
    assert H3_MESSAGE_ERROR in wire.transport.reset_codes(sid)
    assert _closed(wire.events, sid).error_code == H3_MESSAGE_ERROR
    assert wire.transport.closed is None


def test_case_07_fin_inside_data_frame_is_message_error(engine_module):
    wire, sid = established_server(engine_module)
    wire.feed(sid, enc(0) + enc(10) + b"\x00", fin=True)
    assert H3_MESSAGE_ERROR in wire.transport.reset_codes(sid)
    assert _closed(wire.events, sid).error_code == H3_MESSAGE_ERROR


def test_case_07_fin_on_capsule_boundary_is_clean_close(engine_module):
    wire, sid = established_server(engine_module)
    wire.send_capsules(sid, capsule(0x17, b"g"), fin=True)
    assert _closed(wire.events, sid) == SessionClosed(sid, 0, "", True, None)
    assert sid in wire.transport.fin  # answered with FIN
    assert not wire.transport.reset_codes(sid)


# ---------------------------------------------------------------------------
# Case 8: WT_CLOSE_SESSION


def test_case_08_close_round_trip(engine_module):
    wire, sid = established_server(engine_module)
    wire.engine.close_session(sid, 0xDEADBEEF, "bye")
    (close,) = wire.sent_capsules(sid)
    assert close == (CAPSULE_CLOSE, b"\xde\xad\xbe\xef" + b"bye")
    client, csid = established_client(engine_module)
    client.send_capsules(csid, close_capsule(0xDEADBEEF, "bye"))
    assert _closed(client.events, csid) == SessionClosed(csid, 0xDEADBEEF, "bye", True, None)


def test_case_08_close_message_of_1024_bytes_accepted(engine_module):
    wire, sid = established_server(engine_module)
    reason = "\u00e9" * 512  # 1024 bytes of UTF-8
    wire.send_capsules(sid, close_capsule(3, reason))
    assert _closed(wire.events, sid) == SessionClosed(sid, 3, reason, True, None)
    assert not wire.transport.reset_codes(sid)


@pytest.mark.parametrize(
    "reason", [b"a" * 1025, b"\xff\xfe", b"ok\xc3"], ids=["1025-bytes", "invalid-utf8", "cut-utf8"]
)
def test_case_08_bad_close_message_is_message_error(engine_module, reason):
    wire, sid = established_server(engine_module)
    wire.send_capsules(sid, close_capsule(3, reason))
    assert H3_MESSAGE_ERROR in wire.transport.reset_codes(sid)
    assert _closed(wire.events, sid).error_code == H3_MESSAGE_ERROR


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("\u20ac" * 400, 1023),
        ("\u00e9" * 600, 1024),
        ("a" * 2000, 1024),
        ("\U0001f600" * 300, 1024),
    ],
    ids=["3-byte", "2-byte", "ascii", "4-byte"],
)
def test_case_08_sender_truncates_on_utf8_boundary(engine_module, reason, expected):
    wire, sid = established_server(engine_module)
    wire.engine.close_session(sid, 1, reason)
    ((capsule_type, value),) = wire.sent_capsules(sid)
    assert capsule_type == CAPSULE_CLOSE
    message = value[4:]
    assert len(message) == expected
    assert reason.startswith(message.decode("utf-8"))


def test_case_08_close_code_must_fit_32_bits(engine_module):
    wire, sid = established_server(engine_module)
    with pytest.raises(ValueError):
        wire.engine.close_session(sid, 1 << 32)
    with pytest.raises(ValueError):
        wire.engine.close_session(sid, -1)
    assert wire.engine.session_state(sid) == SessionState.CONNECTED


# ---------------------------------------------------------------------------
# Case 9: close is capsule + FIN at once; data after the peer's close is an error


def test_case_09_close_sends_capsule_and_fin_immediately(engine_module):
    wire, sid = established_server(engine_module)
    mark = wire.transport.mark()
    wire.engine.close_session(sid, 5, "done")
    calls = [c for c in wire.transport.since(mark) if c[0] == "data" and c[1] == sid]
    assert calls, "nothing written on the CONNECT stream"
    assert calls[-1][3] is True  # FIN
    written = b"".join(c[2] for c in calls)
    assert written == data_frame(close_capsule(5, "done"))
    assert _closed(wire.events, sid) == SessionClosed(sid, 5, "done", False, None)


@pytest.mark.parametrize("same_frame", [False, True], ids=["later-frame", "same-frame"])
def test_case_09_data_after_peer_close_is_message_error(engine_module, same_frame):
    wire, sid = established_server(engine_module)
    if same_frame:
        wire.send_capsules(sid, close_capsule(5, "bye"), drain_capsule())
    else:
        wire.send_capsules(sid, close_capsule(5, "bye"))
        assert sid in wire.transport.fin  # the close is answered with FIN
        wire.send_capsules(sid, drain_capsule())
    codes = wire.transport.reset_codes(sid) + wire.transport.stop_codes(sid)
    assert H3_MESSAGE_ERROR in codes
    assert _closed(wire.events, sid) == SessionClosed(sid, 5, "bye", True, None)
    assert wire.transport.closed is None


def test_case_09_fin_after_peer_close_is_fine(engine_module):
    wire, sid = established_server(engine_module)
    wire.send_capsules(sid, close_capsule(5, "bye"))
    wire.feed(sid, b"", fin=True)
    assert not wire.transport.reset_codes(sid)
    assert wire.transport.closed is None


# ---------------------------------------------------------------------------
# Case 10: termination ends every data stream with WT_SESSION_GONE


def _session_with_streams(engine_module):
    wire, sid = established_server(engine_module)
    peer_bidi = wire.open_wt(sid, uni=False, data=b"a")
    peer_uni = wire.open_wt(sid, uni=True, data=b"b")
    local_bidi = wire.engine.open_stream(sid)
    local_uni = wire.engine.open_stream(sid, is_unidirectional=True)
    wire.take()
    return wire, sid, (peer_bidi, peer_uni, local_bidi, local_uni)


@pytest.mark.parametrize(
    "trigger", ["close-capsule", "fin", "reset", "stop-sending", "local-close"]
)
def test_case_10_termination_resets_and_stops_streams(engine_module, trigger):
    wire, sid, (peer_bidi, peer_uni, local_bidi, local_uni) = _session_with_streams(engine_module)
    if trigger == "close-capsule":
        wire.send_capsules(sid, close_capsule(1, "x"))
    elif trigger == "fin":
        wire.feed(sid, b"", fin=True)
    elif trigger == "reset":
        wire.reset(sid, H3_REQUEST_REJECTED)
    elif trigger == "stop-sending":
        wire.stop(sid, WT_SESSION_GONE)
    else:
        wire.engine.close_session(sid, 2, "local")
    t = wire.transport
    assert t.reset_codes(peer_bidi) == [WT_SESSION_GONE]
    assert t.stop_codes(peer_bidi) == [WT_SESSION_GONE]
    assert t.stop_codes(peer_uni) == [WT_SESSION_GONE]
    assert t.reset_codes(local_bidi) == [WT_SESSION_GONE]
    assert t.stop_codes(local_bidi) == [WT_SESSION_GONE]
    assert t.reset_codes(local_uni) == [WT_SESSION_GONE]
    assert not t.misuse
    _closed(wire.events, sid)
    with pytest.raises(SessionStateError):
        wire.engine.open_stream(sid)
    with pytest.raises(SessionStateError):
        wire.engine.send_datagram(sid, b"late")
    with pytest.raises(UnknownStream):
        wire.engine.send_stream_data(local_bidi, b"late")
    # Late data from the peer on a terminated stream raises nothing.
    wire.feed(peer_bidi, b"late")
    assert not wire.of_type(StreamDataReceived)[2:]
    assert t.closed is None


def test_case_10_connection_loss_closes_every_session(engine_module):
    wire, sid, _ = _session_with_streams(engine_module)
    events = wire.terminate(0x0A, "idle")
    assert _closed(events, sid).error_code == 0x0A
    assert isinstance(events[-1], ConnectionTerminated)
    assert wire.engine.closed
    assert wire.engine.session_state(sid) == SessionState.CLOSED


# ---------------------------------------------------------------------------
# Case 11: drain and GOAWAY keep the session usable


def _still_usable(wire, sid):
    stream = wire.engine.open_stream(sid)
    assert stream is not None
    assert wire.engine.send_stream_data(stream, b"still", True) == 5
    wire.engine.send_datagram(sid, b"dg")
    assert wire.transport.datagrams[-1] == enc(sid >> 2) + b"dg"


def test_case_11_drain_received_keeps_session_usable(engine_module):
    wire, sid = established_server(engine_module)
    assert wire.send_capsules(sid, drain_capsule()) == [SessionDraining(sid)]
    assert wire.engine.session_state(sid) == SessionState.DRAINING
    assert wire.send_capsules(sid, drain_capsule()) == []  # said once
    _still_usable(wire, sid)
    stream = wire.open_wt(sid, uni=True, data=b"in")
    assert StreamDataReceived(stream, b"in", False, sid) in wire.take()


def test_case_11_drain_sent_keeps_session_usable(engine_module):
    wire, sid = established_client(engine_module)
    wire.engine.drain_session(sid)
    assert wire.sent_capsules(sid) == [(CAPSULE_DRAIN, b"")]
    assert wire.engine.session_state(sid) == SessionState.DRAINING
    _still_usable(wire, sid)


def test_case_11_goaway_received_drains_but_keeps_session(engine_module):
    wire, sid = established_client(engine_module)
    events = wire.feed(wire.peer_control_id, frame(FRAME_GOAWAY, enc(sid + 4)))
    assert events == [GoawayReceived(sid + 4), SessionDraining(sid)]
    assert wire.engine.session_state(sid) == SessionState.DRAINING
    _still_usable(wire, sid)
    with pytest.raises(SessionLimitReached):
        wire.engine.connect(authority="example.com", path="/again")


def test_case_11_goaway_sent_refuses_new_sessions(engine_module):
    config = EngineConfig(max_sessions=4)
    wire, sid = established_server(engine_module, config=config)
    wire.engine.send_goaway()
    goaways = [p for t, p in wire.control_frames() if t == FRAME_GOAWAY]
    assert goaways == [enc(sid + 4)]
    late = wire.request(path="/late")
    assert wire.transport.reset_codes(late) == [H3_REQUEST_REJECTED]
    assert not [e for e in wire.take() if isinstance(e, SessionRequested)]
    _still_usable(wire, sid)


# ---------------------------------------------------------------------------
# Case 12: capsules before the 2xx wait for accept, and are discarded on reject


def test_case_12_chrome_grease_capsule_before_and_after_the_200(engine_module):
    wire = Wire(engine_module, is_client=False).start(PEER_D02)
    grease = capsule(CHROME_GREASE_CAPSULE_TYPE, b"\x01" * 17)
    sid = wire.request(
        protocol=b"webtransport",
        extra=[(b"sec-webtransport-http3-draft02", b"1")],
        body=data_frame(grease),
    )
    wire.send_capsules(sid, drain_capsule())
    events = wire.take()
    assert _types(events) == [SettingsReceived, SessionRequested]
    wire.engine.accept(sid)
    events = wire.take()
    assert events == [SessionEstablished(sid, 200, None, events[0].headers), SessionDraining(sid)]
    assert wire.send_capsules(sid, grease) == []
    assert wire.engine.session_state(sid) == SessionState.DRAINING
    assert wire.transport.closed is None


def test_case_12_close_capsule_before_accept_processed_on_accept(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request(body=data_frame(close_capsule(11, "early")))
    assert not wire.of_type(SessionClosed)
    wire.engine.accept(sid)
    events = wire.take()
    assert isinstance(events[-2], SessionEstablished)
    assert events[-1] == SessionClosed(sid, 11, "early", True, None)


def test_case_12_capsules_before_reject_discarded(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request(body=data_frame(drain_capsule() + close_capsule(1, "x")))
    wire.take()
    wire.engine.reject(sid, 404)
    assert wire.sent_status(sid) == 404
    assert sid in wire.transport.fin
    assert wire.take() == []
    assert wire.engine.session_state(sid) == SessionState.REJECTED


def test_case_12_client_ignores_grease_capsule_after_the_200(engine_module):
    wire = Wire(engine_module, is_client=True).start(PEER_D02)
    sid = wire.engine.connect(authority="example.com", path="/wt")
    events = wire.respond(
        sid,
        200,
        extra=[(b"sec-webtransport-http3-draft", b"draft02")],
        body=data_frame(capsule(CHROME_GREASE_CAPSULE_TYPE, b"\x02" * 40)),
    )
    assert _types(events) == [SessionEstablished]
    assert wire.engine.session_state(sid) == SessionState.CONNECTED


# ---------------------------------------------------------------------------
# Case 13: stream preambles, session ids, and 0x41 in the wrong place


@pytest.mark.parametrize("uni", [True, False], ids=["uni", "bidi"])
def test_case_13_preamble_split_across_reads(engine_module, uni):
    wire, sid = established_server(engine_module)
    stream = wire.peer_stream(uni=uni)
    preamble = (b"\x40\x54" if uni else b"\x40\x41") + enc_n(sid, 4)
    events = wire.feed_bytewise(stream, preamble + b"payload", fin=True)
    assert events[0] == StreamOpened(sid, stream, uni)
    assert _stream_data(events, stream) == b"payload"
    assert events[-1].end_stream


@pytest.mark.parametrize("bad_session", [1, 2, 3, 6])
@pytest.mark.parametrize("uni", [True, False], ids=["uni", "bidi"])
def test_case_13_session_id_not_client_bidi_is_id_error(engine_module, uni, bad_session):
    wire, _ = established_server(engine_module)
    wire.open_wt(bad_session, uni=uni, data=b"x")
    assert wire.transport.close_code == H3_ID_ERROR
    assert isinstance(wire.events[-1], ConnectionTerminated)


def test_case_13_wt_signal_after_headers_is_frame_error(engine_module):
    wire, sid = established_server(engine_module)
    wire.feed(sid, enc(0x41) + enc(sid))
    assert wire.transport.close_code == H3_FRAME_ERROR


def test_case_13_wt_signal_in_response_stream_is_frame_error(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/wt")
    wire.respond(sid, 200, body=enc(0x41) + enc(sid))
    assert wire.transport.close_code == H3_FRAME_ERROR


def test_case_13_wt_signal_on_control_stream_is_frame_error(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    wire.feed(wire.peer_control_id, enc(0x41) + enc(0))
    assert wire.transport.close_code == H3_FRAME_ERROR


def test_case_13_signal_bytes_inside_stream_body_are_data(engine_module):
    wire, sid = established_server(engine_module)
    stream = wire.open_wt(sid, uni=False, data=b"")
    wire.feed(stream, b"\x40\x41\x00")
    assert _stream_data(wire.events, stream) == b"\x40\x41\x00"
    assert wire.transport.closed is None


# ---------------------------------------------------------------------------
# Case 14: early streams are buffered, bounded, delivered in order


def test_case_14_server_buffers_streams_until_accept(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.peer_stream(uni=False)
    uni = wire.open_wt(sid, uni=True, data=b"one,")
    bidi = wire.open_wt(sid, uni=False, data=b"x", fin=True)
    wire.feed(uni, b"two,")
    wire.feed(uni, b"three", fin=True)
    wire.request(stream_id=sid)
    assert not wire.of_type(StreamOpened)
    assert not wire.transport.reset_codes(uni) and not wire.transport.stop_codes(uni)
    wire.engine.accept(sid)
    events = wire.take()
    index = _types(events).index(SessionEstablished)
    assert {e.stream_id for e in events[index:] if isinstance(e, StreamOpened)} == {uni, bidi}
    assert _stream_data(events, uni) == b"one,two,three"
    assert _stream_data(events, bidi) == b"x"
    for stream in (uni, bidi):
        mine = [e for e in events if getattr(e, "stream_id", None) == stream]
        assert isinstance(mine[0], StreamOpened)
        assert mine[-1].end_stream
        assert events.index(mine[0]) > index


def test_case_14_client_buffers_streams_until_the_200(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/wt")
    stream = wire.open_wt(sid, uni=True, data=b"early")
    wire.wt_datagram(sid, b"early-dg")
    assert not wire.of_type(StreamOpened)
    assert not wire.of_type(DatagramReceived)
    events = wire.respond(sid, 200)
    assert isinstance(events[0], SessionEstablished)
    assert StreamOpened(sid, stream, True) in events
    assert _stream_data(events, stream) == b"early"
    assert DatagramReceived(sid, b"early-dg") in events


def test_case_14_buffered_stream_count_overflow(engine_module):
    wire = Wire(engine_module, is_client=False, config=EngineConfig(max_buffered_streams=2)).start()
    sid = wire.peer_stream(uni=False)
    first = wire.open_wt(sid, uni=True, data=b"1")
    second = wire.open_wt(sid, uni=False, data=b"2")
    third = wire.open_wt(sid, uni=True, data=b"3")
    fourth = wire.open_wt(sid, uni=False, data=b"4")
    t = wire.transport
    assert t.stop_codes(third) == [WT_BUFFERED_STREAM_REJECTED]
    assert t.stop_codes(fourth) == [WT_BUFFERED_STREAM_REJECTED]
    assert t.reset_codes(fourth) == [WT_BUFFERED_STREAM_REJECTED]
    assert not t.stop_codes(first) and not t.stop_codes(second)
    wire.request(stream_id=sid)
    wire.engine.accept(sid)
    opened = {e.stream_id for e in wire.of_type(StreamOpened)}
    assert opened == {first, second}
    assert t.closed is None
    assert wire.engine.connection_snapshot().buffered_streams == 0


def test_case_14_buffered_stream_byte_overflow(engine_module):
    config = EngineConfig(max_buffered_stream_data=8)
    wire = Wire(engine_module, is_client=False, config=config).start()
    sid = wire.peer_stream(uni=False)
    small = wire.open_wt(sid, uni=True, data=b"12345678")
    big = wire.open_wt(sid, uni=False, data=b"12345")
    wire.feed(big, b"6789")
    assert wire.transport.stop_codes(big) == [WT_BUFFERED_STREAM_REJECTED]
    assert wire.transport.reset_codes(big) == [WT_BUFFERED_STREAM_REJECTED]
    assert not wire.transport.stop_codes(small)
    wire.request(stream_id=sid)
    wire.engine.accept(sid)
    assert [e.stream_id for e in wire.of_type(StreamOpened)] == [small]


def test_case_14_buffered_streams_of_rejected_session_rejected(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.peer_stream(uni=False)
    uni = wire.open_wt(sid, uni=True, data=b"u")
    bidi = wire.open_wt(sid, uni=False, data=b"b")
    wire.request(stream_id=sid)
    wire.engine.reject(sid, 403)
    assert wire.transport.stop_codes(uni) == [WT_BUFFERED_STREAM_REJECTED]
    assert wire.transport.stop_codes(bidi) == [WT_BUFFERED_STREAM_REJECTED]
    assert wire.transport.reset_codes(bidi) == [WT_BUFFERED_STREAM_REJECTED]
    assert not wire.of_type(StreamOpened)
    late = wire.open_wt(sid, uni=True, data=b"late")
    assert wire.transport.stop_codes(late)[0] in (WT_BUFFERED_STREAM_REJECTED, WT_SESSION_GONE)
    assert wire.engine.connection_snapshot().buffered_streams == 0


def test_case_14_client_buffered_streams_of_rejected_session(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/wt")
    stream = wire.open_wt(sid, uni=False, data=b"early")
    events = wire.respond(sid, 404)
    assert _types(events) == [SessionRejected]
    assert wire.transport.stop_codes(stream) == [WT_BUFFERED_STREAM_REJECTED]


# ---------------------------------------------------------------------------
# Case 15: datagrams


def test_case_15_early_datagrams_buffered_then_delivered(engine_module):
    wire = Wire(
        engine_module, is_client=False, config=EngineConfig(max_buffered_datagrams=2)
    ).start()
    sid = wire.peer_stream(uni=False)
    for payload in (b"a", b"b", b"c"):
        wire.wt_datagram(sid, payload)
    assert not wire.of_type(DatagramReceived)
    wire.request(stream_id=sid)
    wire.engine.accept(sid)
    assert [e.data for e in wire.of_type(DatagramReceived)] == [b"a", b"b"]
    assert wire.engine.connection_snapshot().datagrams_dropped == 1
    assert wire.transport.closed is None


def test_case_15_datagrams_for_closed_or_unknown_session_dropped(engine_module):
    wire, sid = established_client(engine_module)
    wire.wt_datagram(sid + 400, b"unknown session")
    wire.engine.close_session(sid)
    wire.wt_datagram(sid, b"closed session")
    assert not wire.of_type(DatagramReceived)
    assert wire.transport.closed is None


def test_case_15_datagrams_for_rejected_session_dropped(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.peer_stream(uni=False)
    wire.wt_datagram(sid, b"early")
    wire.request(stream_id=sid)
    wire.engine.reject(sid, 404)
    wire.wt_datagram(sid, b"late")
    assert not wire.of_type(DatagramReceived)
    assert wire.engine.connection_snapshot().buffered_datagrams == 0


def test_case_15_empty_datagram_delivered(engine_module):
    wire, sid = established_server(engine_module)
    assert wire.wt_datagram(sid, b"") == [DatagramReceived(sid, b"")]


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x40", b"\xc0\x00\x00", enc_n(1 << 60, 8) + b"x", b"\xff" * 8],
    ids=["empty", "truncated-2", "truncated-8", "qsid-2^60", "qsid-max"],
)
def test_case_15_bad_quarter_stream_id_is_datagram_error(engine_module, raw):
    wire, _ = established_server(engine_module)
    wire.datagram(raw)
    assert wire.transport.close_code == H3_DATAGRAM_ERROR


def test_case_15_largest_quarter_stream_id_is_fine(engine_module):
    wire, _ = established_server(engine_module)
    wire.datagram(enc_n((1 << 60) - 1, 8) + b"x")
    assert wire.transport.closed is None


def test_case_15_datagram_round_trip_over_quic(engine_module, stack_name):
    pair = make_pair(engine_module, stack_name=stack_name)
    sid = pair.client.connect(authority="example.com", path="/dg")
    pair.transfer()
    pair.server.accept(sid)
    pair.transfer()
    pair.take_client()
    pair.take_server()
    pair.client.send_datagram(sid, b"to server")
    pair.client.send_datagram(sid, b"")
    pair.server.send_datagram(sid, b"to client")
    pair.transfer()
    assert [e for e in pair.take_server() if isinstance(e, DatagramReceived)] == [
        DatagramReceived(sid, b"to server"),
        DatagramReceived(sid, b""),
    ]
    assert [e for e in pair.take_client() if isinstance(e, DatagramReceived)] == [
        DatagramReceived(sid, b"to client")
    ]
    size = pair.client.max_datagram_size(sid)
    assert 1000 < size < 1500
    pair.client.send_datagram(sid, b"m" * size)
    pair.transfer()
    assert DatagramReceived(sid, b"m" * size) in pair.take_server()
    with pytest.raises(DatagramTooLarge):
        pair.client.send_datagram(sid, b"m" * (size + 1))


# ---------------------------------------------------------------------------
# Case 16: error codes on resets and STOP_SENDING, both ways


@pytest.mark.parametrize(
    ("code", "wire_code"),
    [
        (0, 0x52E4A40FA8DB),
        (7, 0x52E4A40FA8E2),
        (0x1D, 0x52E4A40FA8F8),
        (0x1E, 0x52E4A40FA8FA),
        (0xFF, 0x52E4A40FA9E2),
        (0xFFFFFFFF, 0x52E5AC983162),
    ],
)
def test_case_16_app_codes_mapped_both_ways(engine_module, code, wire_code):
    wire, sid = established_server(engine_module)
    local = wire.engine.open_stream(sid)
    wire.engine.reset_stream(local, code)
    wire.engine.stop_stream(local, code)
    assert wire.transport.reset_codes(local) == [wire_code]
    assert wire.transport.stop_codes(local) == [wire_code]
    peer = wire.open_wt(sid, uni=False, data=b"x")
    assert wire.reset(peer, wire_code, 4) == [StreamReset(peer, sid, code, wire_code)]
    assert wire.stop(peer, wire_code) == [StreamStopped(peer, sid, code, wire_code)]
    assert wire.transport.reset_codes(peer)  # STOP_SENDING is answered with a reset


@pytest.mark.parametrize(
    "wire_code",
    [0x10F, 0x52E4A40FA8F9, 0x52E4A40FA8DA, 0x52E5AC983163, WT_SESSION_GONE, 0],
    ids=["chrome-connect-error", "reserved", "below", "above", "session-gone", "zero"],
)
def test_case_16_non_wt_codes_give_no_app_code(engine_module, wire_code):
    wire, sid = established_server(engine_module)
    peer = wire.open_wt(sid, uni=False, data=b"x")
    assert wire.stop(peer, wire_code) == [StreamStopped(peer, sid, None, wire_code)]
    assert wire.reset(peer, wire_code, 4) == [StreamReset(peer, sid, None, wire_code)]


@pytest.mark.parametrize("code", [-1, 1 << 32])
def test_case_16_out_of_range_app_code_rejected(engine_module, code):
    wire, sid = established_server(engine_module)
    stream = wire.engine.open_stream(sid)
    with pytest.raises(ValueError):
        wire.engine.reset_stream(stream, code)
    with pytest.raises(ValueError):
        wire.engine.stop_stream(stream, code)
    assert not wire.transport.reset_codes(stream)


def test_case_16_reset_over_quic(engine_module, stack_name):
    pair = make_pair(engine_module, stack_name=stack_name)
    sid = pair.client.connect(authority="example.com", path="/r")
    pair.transfer()
    pair.server.accept(sid)
    pair.transfer()
    stream = pair.client.open_stream(sid)
    pair.client.send_stream_data(stream, b"data")
    pair.transfer()
    pair.client.reset_stream(stream, 7)
    pair.transfer()
    assert StreamReset(stream, sid, 7, 0x52E4A40FA8E2) in pair.take_server()
    other = pair.client.open_stream(sid)
    pair.client.send_stream_data(other, b"data")
    pair.transfer()
    pair.server.stop_stream(other, 0xFFFFFFFF)
    pair.transfer()
    assert StreamStopped(other, sid, 0xFFFFFFFF, 0x52E5AC983162) in pair.take_client()


# ---------------------------------------------------------------------------
# Case 17: flow-control negotiation


@pytest.mark.parametrize(
    ("client_fc", "server_fc"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_case_17_flow_control_on_only_when_both_offer(engine_module, client_fc, server_fc):
    pair = make_pair(
        engine_module,
        client_config=EngineConfig(flow_control=client_fc),
        server_config=EngineConfig(flow_control=server_fc),
    )
    expected = client_fc and server_fc
    assert pair.client.flow_control is expected
    assert pair.server.flow_control is expected
    assert pair.client.dialect == pair.server.dialect == Dialect.DRAFT16
    sid = pair.client.connect(authority="example.com", path="/fc")
    pair.transfer()
    pair.server.accept(sid)
    pair.transfer()
    assert pair.client.session_snapshot(sid).flow_control is expected
    assert pair.server.session_snapshot(sid).flow_control is expected


@pytest.mark.parametrize(
    "settings",
    [
        PEER_D16,
        {**PEER_D16, SETTING_WT_INITIAL_MAX_DATA: 0, SETTING_WT_INITIAL_MAX_STREAMS_BIDI: 0},
    ],
    ids=["absent", "zero"],
)
def test_case_17_flow_control_off_when_peer_sends_no_initial_values(engine_module, settings):
    wire = Wire(engine_module, is_client=False).start(settings)
    (received,) = wire.of_type(SettingsReceived)
    assert received.flow_control is False
    assert wire.engine.flow_control is False


def test_case_17_flow_control_capsules_ignored_when_off(engine_module):
    wire, sid = established_server(engine_module, settings=PEER_D16)
    events = wire.send_capsules(
        sid,
        varint_capsule(CAPSULE_MAX_DATA, 0),
        varint_capsule(CAPSULE_MAX_STREAMS_BIDI, 0),
        varint_capsule(CAPSULE_MAX_STREAMS_UNI, (1 << 60) + 1),
        varint_capsule(CAPSULE_DATA_BLOCKED, 5),
        varint_capsule(CAPSULE_STREAMS_BLOCKED_UNI, (1 << 60) + 1),
        drain_capsule(),
    )
    assert events == [SessionDraining(sid)]
    assert not wire.transport.reset_codes(sid)
    stream = wire.engine.open_stream(sid)
    assert wire.engine.send_stream_data(stream, b"x" * 100000) == 100000


def test_case_17_second_session_without_flow_control_rejected(engine_module):
    wire, sid = established_server(engine_module, settings=PEER_D16)
    second = wire.request(path="/second")
    assert wire.transport.reset_codes(second) == [H3_REQUEST_REJECTED]
    assert wire.transport.stop_codes(second) == [H3_REQUEST_REJECTED]
    assert not [e for e in wire.take() if isinstance(e, SessionRequested)]
    assert wire.engine.session_state(sid) == SessionState.CONNECTED
    assert wire.transport.closed is None


def test_case_17_second_session_with_flow_control_allowed(engine_module):
    wire, _ = established_server(engine_module, settings=PEER_D16_FC)
    second = wire.request(path="/second")
    assert [e.session_id for e in wire.take() if isinstance(e, SessionRequested)] == [second]


def test_case_17_client_limits_sessions_without_flow_control(engine_module):
    pair = make_pair(engine_module, server_config=EngineConfig(flow_control=False))
    pair.client.connect(authority="example.com", path="/one")
    with pytest.raises(SessionLimitReached):
        pair.client.connect(authority="example.com", path="/two")
    pair = make_pair(engine_module)
    first = pair.client.connect(authority="example.com", path="/one")
    second = pair.client.connect(authority="example.com", path="/two")
    pair.transfer()
    requested = [e.session_id for e in pair.take_server() if isinstance(e, SessionRequested)]
    assert requested == [first, second]


# ---------------------------------------------------------------------------
# Case 18: WT_MAX_DATA accounting


def _limited_server(engine_module, **limits):
    config = EngineConfig(**{**NO_AUTO, **limits})
    return established_server(engine_module, config=config)


def test_case_18_only_stream_bodies_count_and_exact_limit_is_ok(engine_module):
    wire, sid = _limited_server(engine_module, initial_max_data=100)
    uni = wire.open_wt(sid, uni=True, data=b"u" * 60)
    wire.send_capsules(sid, capsule(0x17, b"c" * 500), drain_capsule())
    wire.wt_datagram(sid, b"d" * 500)
    bidi = wire.peer_stream(uni=False)
    wire.feed(bidi, enc_n(0x41, 8) + enc_n(sid, 8) + b"b" * 40)  # a 16-byte preamble
    assert wire.transport.closed is None
    assert wire.engine.session_state(sid) == SessionState.DRAINING
    assert wire.engine.session_snapshot(sid).data_received == 100
    assert _stream_data(wire.events, uni) == b"u" * 60
    assert not wire.transport.reset_codes(sid)
    wire.feed(bidi, b"!")
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)
    assert wire.transport.reset_codes(bidi) == [WT_SESSION_GONE]
    assert wire.transport.stop_codes(bidi) == [WT_SESSION_GONE]
    assert wire.transport.stop_codes(uni) == [WT_SESSION_GONE]
    assert b"!" not in _stream_data(wire.events, bidi)


def test_case_18_reset_stream_counts_final_size_minus_header(engine_module):
    wire, sid = _limited_server(engine_module, initial_max_data=100)
    header = enc_n(0x54, 8) + enc_n(sid, 8)
    stream = wire.peer_stream(uni=True)
    wire.feed(stream, header + b"x" * 10)
    wire.reset(stream, app_to_h3(3), final_size=len(header) + 50)
    assert wire.engine.session_snapshot(sid).data_received == 50
    wire.open_wt(sid, uni=True, data=b"y" * 50)
    assert wire.transport.closed is None and not wire.transport.reset_codes(sid)
    wire.open_wt(sid, uni=False, data=b"z")
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


def test_case_18_reset_final_size_beyond_limit_is_error(engine_module):
    wire, sid = _limited_server(engine_module, initial_max_data=100)
    stream = wire.open_wt(sid, uni=True, data=b"x")
    wire.reset(stream, 0, final_size=3 + 101)
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


def test_case_18_buffered_stream_data_counts_after_accept(engine_module):
    config = EngineConfig(initial_max_data=10, **NO_AUTO)
    wire = Wire(engine_module, is_client=False, config=config).start()
    sid = wire.peer_stream(uni=False)
    wire.open_wt(sid, uni=True, data=b"x" * 11)
    wire.request(stream_id=sid)
    wire.engine.accept(sid)
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------------------
# Case 19: WT_MAX_STREAMS


def test_case_19_stream_limit_plus_one_is_error_and_closed_streams_count(engine_module):
    wire, sid = _limited_server(
        engine_module, initial_max_streams_uni=2, initial_max_streams_bidi=2
    )
    for _ in range(2):
        wire.open_wt(sid, uni=True, fin=True)  # opened and closed: still counted
    bidis = [wire.open_wt(sid, uni=False, data=b"b") for _ in range(2)]  # independent of uni
    assert len(wire.of_type(StreamOpened)) == 4
    assert wire.transport.closed is None and not wire.transport.reset_codes(sid)
    third = wire.open_wt(sid, uni=True, data=b"over")
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)
    assert wire.transport.stop_codes(third)
    assert not [e for e in wire.of_type(StreamOpened) if e.stream_id == third]
    for bidi in bidis:
        assert wire.transport.reset_codes(bidi) == [WT_SESSION_GONE]


def test_case_19_bidi_limit_plus_one_is_error(engine_module):
    wire, sid = _limited_server(engine_module, initial_max_streams_bidi=1)
    wire.open_wt(sid, uni=False, data=b"1")
    wire.open_wt(sid, uni=False, data=b"2")
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


@pytest.mark.parametrize(
    "capsule_type",
    [
        CAPSULE_MAX_STREAMS_BIDI,
        CAPSULE_MAX_STREAMS_UNI,
        CAPSULE_STREAMS_BLOCKED_BIDI,
        CAPSULE_STREAMS_BLOCKED_UNI,
    ],
    ids=["max-bidi", "max-uni", "blocked-bidi", "blocked-uni"],
)
def test_case_19_stream_count_above_2_60_is_error(engine_module, capsule_type):
    wire, sid = established_client(engine_module)
    wire.send_capsules(sid, varint_capsule(capsule_type, (1 << 60) + 1))
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


def test_case_19_stream_count_of_2_60_is_fine(engine_module):
    wire, sid = established_client(engine_module)
    events = wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_STREAMS_UNI, 1 << 60))
    assert events == [StreamsCreditAvailable(sid, True, 1 << 60)]


# ---------------------------------------------------------------------------
# Case 20: limits must increase (draft-16); draft-14 only forbids a decrease


@pytest.mark.parametrize(
    ("capsule_type", "value"),
    [
        (CAPSULE_MAX_DATA, 1 << 20),  # equal to the SETTINGS initial value
        (CAPSULE_MAX_DATA, 1000),  # lower
        (CAPSULE_MAX_STREAMS_BIDI, 10),
        (CAPSULE_MAX_STREAMS_UNI, 3),
    ],
    ids=["data-equal", "data-lower", "bidi-equal", "uni-lower"],
)
def test_case_20_non_increasing_limit_is_error_draft16(engine_module, capsule_type, value):
    wire, sid = established_client(engine_module, settings=PEER_D16_FC)
    assert wire.engine.dialect == Dialect.DRAFT16
    wire.send_capsules(sid, varint_capsule(capsule_type, value))
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


def test_case_20_repeated_limit_is_error_draft16(engine_module):
    wire, sid = established_client(engine_module, settings=PEER_D16_FC)
    assert wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 2 << 20))
    wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 2 << 20))
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


def test_case_20_draft14_tolerates_equal_but_not_lower(engine_module):
    wire, sid = established_client(engine_module, settings=PEER_D14_FC)
    assert wire.engine.dialect == Dialect.DRAFT14
    assert wire.engine.flow_control
    assert wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 1 << 20)) == []
    assert wire.engine.session_state(sid) == SessionState.CONNECTED
    wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 1000))
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------------------
# Case 21: the blocked sender and the re-granting receiver

SMALL_CREDIT = {
    **PEER_D16,
    SETTING_WT_INITIAL_MAX_DATA: 10,
    SETTING_WT_INITIAL_MAX_STREAMS_BIDI: 1,
    SETTING_WT_INITIAL_MAX_STREAMS_UNI: 1,
}


def test_case_21_blocked_sender_partial_writes_and_one_blocked_per_limit(engine_module):
    wire, sid = established_client(engine_module, settings=SMALL_CREDIT)
    stream = wire.engine.open_stream(sid)
    engine = wire.engine
    assert engine.send_stream_data(stream, b"a" * 6) == 6
    assert engine.send_stream_data(stream, b"b" * 6, True) == 4  # partial, and no FIN
    assert engine.send_stream_data(stream, b"c" * 6) == 0
    assert engine.send_stream_data(stream, b"c" * 6, True) == 0
    assert stream not in wire.transport.fin
    assert wire.transport.data(stream) == b"\x40\x41\x00" + b"a" * 6 + b"b" * 4
    assert wire.sent_capsules(sid) == [(CAPSULE_DATA_BLOCKED, enc(10))]
    assert engine.session_snapshot(sid).data_blocked_at == 10
    events = wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 20))
    assert events == [DataCreditAvailable(sid, 20)]
    assert engine.send_stream_data(stream, b"d" * 6) == 6
    assert engine.send_stream_data(stream, b"e" * 6) == 4
    assert engine.send_stream_data(stream, b"e" * 6) == 0
    assert wire.sent_capsules(sid) == [
        (CAPSULE_DATA_BLOCKED, enc(10)),
        (CAPSULE_DATA_BLOCKED, enc(20)),
    ]
    wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 100))
    assert engine.send_stream_data(stream, b"f" * 6, True) == 6
    assert stream in wire.transport.fin


def test_case_21_empty_write_and_fin_do_not_need_credit(engine_module):
    wire, sid = established_client(engine_module, settings=SMALL_CREDIT)
    stream = wire.engine.open_stream(sid)
    assert wire.engine.send_stream_data(stream, b"x" * 10) == 10
    assert wire.engine.send_stream_data(stream, b"", True) == 0
    assert stream in wire.transport.fin
    assert wire.sent_capsules(sid) == []


def test_case_21_blocked_stream_opener_and_one_blocked_per_limit(engine_module):
    wire, sid = established_client(engine_module, settings=SMALL_CREDIT)
    engine = wire.engine
    assert engine.open_stream(sid) is not None
    assert engine.open_stream(sid) is None
    assert engine.open_stream(sid) is None
    assert engine.open_stream(sid, is_unidirectional=True) is not None
    assert engine.open_stream(sid, is_unidirectional=True) is None
    assert wire.sent_capsules(sid) == [
        (CAPSULE_STREAMS_BLOCKED_BIDI, enc(1)),
        (CAPSULE_STREAMS_BLOCKED_UNI, enc(1)),
    ]
    events = wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_STREAMS_BIDI, 2))
    assert events == [StreamsCreditAvailable(sid, False, 2)]
    assert engine.open_stream(sid) is not None
    assert engine.open_stream(sid, is_unidirectional=True) is None  # uni still blocked, said once
    assert len(wire.sent_capsules(sid)) == 2


def test_case_21_receiver_regrants_data_as_it_is_consumed(engine_module):
    config = EngineConfig(initial_max_data=100)
    wire, sid = established_server(engine_module, config=config)
    stream = wire.open_wt(sid, uni=True, data=b"x" * 100)
    assert wire.sent_capsules(sid) == []  # nothing consumed yet: no grant, no waiting for BLOCKED
    wire.engine.consume_data(sid, 40)
    assert wire.sent_capsules(sid) == []
    wire.engine.consume_data(sid, 20)
    ((capsule_type, value),) = wire.sent_capsules(sid)
    assert capsule_type == CAPSULE_MAX_DATA
    new_limit = int.from_bytes(value, "big") & 0x3FFF
    assert new_limit > 100
    wire.feed(stream, b"y" * (new_limit - 100))
    assert wire.transport.closed is None and not wire.transport.reset_codes(sid)
    snapshot = wire.engine.session_snapshot(sid)
    assert snapshot.local_max_data == new_limit
    assert snapshot.data_received == new_limit


def test_case_21_receiver_regrants_streams_as_they_close(engine_module):
    config = EngineConfig(initial_max_streams_uni=4, initial_max_streams_bidi=4)
    wire, sid = established_server(engine_module, config=config)
    for _ in range(3):
        wire.open_wt(sid, uni=True, fin=True)
    capsules = wire.sent_capsules(sid)
    assert capsules and capsules[-1][0] == CAPSULE_MAX_STREAMS_UNI
    granted = wire.engine.session_snapshot(sid).local_max_streams_uni
    assert granted > 4
    for _ in range(granted - 3):
        wire.open_wt(sid, uni=True, data=b"open")  # left open
    assert wire.transport.closed is None and not wire.transport.reset_codes(sid)
    assert wire.engine.session_snapshot(sid).local_max_streams_bidi == 4  # bidi untouched


def test_case_21_manual_grants(engine_module):
    config = EngineConfig(initial_max_data=100, initial_max_streams_uni=2, **NO_AUTO)
    wire, sid = established_server(engine_module, config=config)
    engine = wire.engine
    assert engine.grant_data_credit(sid, 100) is False
    assert engine.grant_data_credit(sid, 500) is True
    assert engine.grant_streams_credit(sid, 2, True) is False
    assert engine.grant_streams_credit(sid, 5, True) is True
    assert wire.sent_capsules(sid) == [
        (CAPSULE_MAX_DATA, enc(500)),
        (CAPSULE_MAX_STREAMS_UNI, enc(5)),
    ]
    wire.engine.consume_data(sid, 1000)
    assert len(wire.sent_capsules(sid)) == 2  # auto grant is off


# ---------------------------------------------------------------------------
# Case 22: capsules of WebTransport over HTTP/2 only


@pytest.mark.parametrize(
    "capsule_type",
    [CAPSULE_MAX_STREAM_DATA, CAPSULE_STREAM_DATA_BLOCKED],
    ids=["max-stream-data", "blocked"],
)
def test_case_22_h2_only_capsules_close_session(engine_module, capsule_type):
    wire, sid = established_server(engine_module)
    stream = wire.open_wt(sid, uni=False, data=b"x")
    wire.send_capsules(sid, varint_capsule(capsule_type, 100))
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)
    assert wire.transport.reset_codes(stream) == [WT_SESSION_GONE]


# ---------------------------------------------------------------------------
# Case 23: SETTINGS and the handshake


def test_case_23_server_settings(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    settings = wire.sent_settings()
    assert settings[SETTING_ENABLE_CONNECT_PROTOCOL] == 1
    assert settings[SETTING_H3_DATAGRAM] == 1
    assert settings[SETTING_ENABLE_WEBTRANSPORT] == 1
    assert settings[SETTING_WT_MAX_SESSIONS] >= 1
    assert settings[SETTING_WT_ENABLED] == 1
    assert any(is_reserved(key) for key in settings)
    assert settings[SETTING_WT_INITIAL_MAX_DATA] > 0


def test_case_23_server_without_flow_control_announces_one_session(engine_module):
    wire = Wire(engine_module, is_client=False, config=EngineConfig(flow_control=False)).start()
    settings = wire.sent_settings()
    assert settings[SETTING_WT_MAX_SESSIONS] == 1
    for key in (
        SETTING_WT_INITIAL_MAX_DATA,
        SETTING_WT_INITIAL_MAX_STREAMS_BIDI,
        SETTING_WT_INITIAL_MAX_STREAMS_UNI,
    ):
        assert settings.get(key, 0) == 0


@pytest.mark.parametrize(
    ("is_client", "setting"),
    [
        (True, SETTING_WT_ENABLED),
        (True, SETTING_H3_DATAGRAM),
        (False, SETTING_H3_DATAGRAM),
        (True, SETTING_ENABLE_CONNECT_PROTOCOL),
        (True, SETTING_ENABLE_WEBTRANSPORT),
    ],
    ids=[
        "client-wt-enabled",
        "client-h3-datagram",
        "server-h3-datagram",
        "client-connect",
        "client-enable-wt",
    ],
)
def test_case_23_setting_value_2_is_settings_error(engine_module, is_client, setting):
    wire = Wire(engine_module, is_client=is_client).start({**PEER_D16_FC, setting: 2})
    assert wire.transport.close_code == H3_SETTINGS_ERROR


@pytest.mark.parametrize("duplicate", [False, True], ids=["http2-id", "duplicate"])
def test_case_23_bad_settings_frame_is_settings_error(engine_module, duplicate):
    wire = Wire(engine_module, is_client=False).start(None)
    payload = settings_payload(PEER_D16)
    payload += enc(SETTING_H3_DATAGRAM) + enc(1) if duplicate else enc(0x02) + enc(1)
    control = wire.peer_stream(uni=True)
    wire.feed(control, enc(STREAM_CONTROL) + frame(0x04, payload))
    assert wire.transport.close_code == H3_SETTINGS_ERROR


def test_case_23_unknown_settings_ignored(engine_module):
    settings = {0x21: 7, 0x1234: 5, 0x21 + 0x1F * 99: 0, 0x3FFFFFFF: 1 << 40, **PEER_D16_FC}
    wire = Wire(engine_module, is_client=True).start(settings)
    (received,) = wire.of_type(SettingsReceived)
    assert received.dialect == Dialect.DRAFT16
    assert wire.transport.closed is None


def test_case_23_client_waits_for_server_settings(engine_module):
    wire = Wire(engine_module, is_client=True).start(None)
    sid = wire.engine.connect(authority="example.com", path="/wait")
    assert wire.transport.data(sid) == b""
    wire.send_settings(PEER_D16_FC)
    (headers,) = wire.sent_headers(sid)
    fields = dict(headers)
    assert fields[b":method"] == b"CONNECT"
    assert fields[b":protocol"] == b"webtransport-h3"
    assert fields[b":path"] == b"/wait"
    assert fields[b":scheme"] == b"https"
    assert fields[b":authority"] == b"example.com"


def test_case_23_client_opens_streams_before_settings(engine_module):
    """Streams opened while the CONNECT waits for SETTINGS must not take the CONNECT's id."""
    wire = Wire(engine_module, is_client=True).start(None)
    sid = wire.engine.connect(authority="example.com", path="/early")
    stream = wire.engine.open_stream(sid)
    assert stream != sid
    wire.send_settings(PEER_D16_FC)
    frames = wire.sent_frames(sid)
    assert frames and frames[0][0] == FRAME_HEADERS
    assert wire.transport.data(stream).startswith(b"\x40\x41" + enc(sid))


def test_case_23_two_sessions_requested_before_settings_get_distinct_ids(engine_module):
    wire = Wire(engine_module, is_client=True).start(None)
    first = wire.engine.connect(authority="example.com", path="/1")
    second = wire.engine.connect(authority="example.com", path="/2")
    assert first != second


@pytest.mark.parametrize(
    ("settings", "token", "dialect"),
    [
        (PEER_D02, b"webtransport", Dialect.DRAFT02),
        (PEER_D07, b"webtransport", Dialect.DRAFT07),
        (PEER_D14, b"webtransport", Dialect.DRAFT14),
        (PEER_D16, b"webtransport-h3", Dialect.DRAFT16),
        (PEER_D16, b"webtransport", Dialect.DRAFT16),
    ],
    ids=["d02", "d07", "d14", "d16-h3", "d16-legacy-token"],
)
def test_case_23_both_protocol_tokens_accepted(engine_module, settings, token, dialect):
    wire = Wire(engine_module, is_client=False).start(settings)
    sid = wire.request(protocol=token)
    (requested,) = wire.of_type(SessionRequested)
    assert requested.dialect == dialect
    wire.engine.accept(sid)
    assert wire.sent_status(sid) == 200


@pytest.mark.parametrize("protocol", [b"connect-udp", b"websocket"])
def test_case_23_other_protocol_not_a_session(engine_module, protocol):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request(protocol=protocol)
    assert not wire.of_type(SessionRequested)
    assert wire.sent_status(sid) >= 400
    assert wire.transport.closed is None


def test_case_23_draft02_header_echoed(engine_module):
    wire = Wire(engine_module, is_client=False).start(PEER_D02)
    sid = wire.request(protocol=b"webtransport", extra=[(b"sec-webtransport-http3-draft02", b"1")])
    wire.engine.accept(sid)
    (headers,) = wire.sent_headers(sid)
    assert (b"sec-webtransport-http3-draft", b"draft02") in headers


def test_case_23_no_draft02_header_for_later_drafts(engine_module):
    wire = Wire(engine_module, is_client=False).start(PEER_D16)
    sid = wire.request()
    wire.engine.accept(sid)
    (headers,) = wire.sent_headers(sid)
    assert b"sec-webtransport-http3-draft" not in dict(headers)


def test_case_23_draft02_client_request(engine_module):
    wire = Wire(engine_module, is_client=True).start(PEER_D02)
    sid = wire.engine.connect(authority="example.com", path="/d2", origin="https://example.com")
    fields = dict(wire.sent_headers(sid)[0])
    assert fields[b":protocol"] == b"webtransport"
    assert fields[b"sec-webtransport-http3-draft02"] == b"1"
    assert fields[b"origin"] == b"https://example.com"


ALL = frozenset(Dialect)
D02 = frozenset({Dialect.DRAFT02})
D07 = frozenset({Dialect.DRAFT07})
D14 = frozenset({Dialect.DRAFT14})
D16 = frozenset({Dialect.DRAFT16})


@pytest.mark.parametrize(
    ("client_dialects", "server_dialects", "expected"),
    [
        (ALL, ALL, Dialect.DRAFT16),
        (ALL, D02, Dialect.DRAFT02),
        (D02, ALL, Dialect.DRAFT02),
        (D07, ALL, Dialect.DRAFT07),
        (ALL, D07, Dialect.DRAFT07),
        (D14, ALL, Dialect.DRAFT14),
        (ALL, D14 | D07, Dialect.DRAFT14),
        (D02 | D07, D02 | D14, Dialect.DRAFT02),
        (D16, D16, Dialect.DRAFT16),
    ],
    ids=[
        "all-all",
        "all-d02",
        "d02-all",
        "d07-all",
        "all-d07",
        "d14-all",
        "all-d07d14",
        "mixed",
        "d16-d16",
    ],
)
def test_case_23_dialect_is_highest_common(
    engine_module, client_dialects, server_dialects, expected
):
    pair = make_pair(
        engine_module,
        client_config=EngineConfig(dialects=client_dialects),
        server_config=EngineConfig(dialects=server_dialects),
    )
    assert pair.client.dialect == expected
    assert pair.server.dialect == expected
    sid = pair.client.connect(authority="example.com", path="/d")
    pair.transfer()
    (requested,) = [e for e in pair.take_server() if isinstance(e, SessionRequested)]
    assert requested.dialect == expected
    assert dict(requested.headers)[b":protocol"] == expected.upgrade_token
    pair.server.accept(sid)
    pair.transfer()
    assert any(isinstance(e, SessionEstablished) for e in pair.take_client())
    assert pair.client.flow_control is expected.has_flow_control


def test_case_23_no_common_dialect(engine_module):
    pair = make_pair(
        engine_module,
        client_config=EngineConfig(dialects=D02),
        server_config=EngineConfig(dialects=D16),
    )
    assert pair.client.dialect is None
    with pytest.raises(SessionLimitReached):
        pair.client.connect(authority="example.com", path="/none")


def test_case_23_requests_before_settings_fail_without_common_dialect(engine_module):
    wire = Wire(engine_module, is_client=True, config=EngineConfig(dialects=D02)).start(None)
    sid = wire.engine.connect(authority="example.com", path="/x")
    wire.send_settings(PEER_D16_FC)
    assert wire.transport.closed is not None
    assert _closed(wire.events, sid)


# ---------------------------------------------------------------------------
# Case 24: WT-Available-Protocols / WT-Protocol


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'"chat", "echo"', ("chat", "echo")),
        (b'"chat";q=1;r="x", "echo"', ("chat", "echo")),
        (b'"a\\"b"', ('a"b',)),
        (b"", ()),
        (b"chat, echo", ()),
        (b"1, 2", ()),
        (b'"chat", 1', ()),
        (b'"unterminated', ()),
        (b'"chat",', ()),
    ],
    ids=[
        "strings",
        "parameters",
        "escape",
        "empty",
        "tokens",
        "integers",
        "mixed",
        "unterminated",
        "trailing-comma",
    ],
)
def test_case_24_available_protocols_parsing(engine_module, value, expected):
    wire = Wire(engine_module, is_client=False).start()
    wire.request(extra=[(b"wt-available-protocols", value)])
    (requested,) = wire.of_type(SessionRequested)
    assert requested.protocols == expected
    assert wire.transport.closed is None


def test_case_24_server_selects_only_offered_protocol(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request(extra=[(b"wt-available-protocols", b'"chat", "echo"')])
    with pytest.raises(ValueError):
        wire.engine.accept(sid, protocol="other")
    assert wire.engine.session_state(sid) == SessionState.REQUESTED
    wire.engine.accept(sid, protocol="echo")
    (headers,) = wire.sent_headers(sid)
    assert (b"wt-protocol", b'"echo"') in headers
    assert wire.of_type(SessionEstablished)[0].protocol == "echo"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'"echo"', "echo"),
        (b'"nope"', None),
        (b"echo", None),
        (b'"echo", "chat"', None),
        (b"?1", None),
    ],
    ids=["offered", "not-offered", "token", "list", "boolean"],
)
def test_case_24_client_takes_only_an_offered_protocol(engine_module, value, expected):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/p", protocols=["chat", "echo"])
    fields = dict(wire.sent_headers(sid)[0])
    assert fields[b"wt-available-protocols"] == b'"chat", "echo"'
    events = wire.respond(sid, 200, extra=[(b"wt-protocol", value)])
    assert events[0].protocol == expected
    assert wire.engine.session_state(sid) == SessionState.CONNECTED


def test_case_24_bad_protocol_names_refused_locally(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    with pytest.raises(ValueError):
        wire.engine.connect(authority="example.com", path="/p", protocols=["caf\u00e9"])


# ---------------------------------------------------------------------------
# Session answers, state errors, datagram sizes


def test_rejected_session_reported_to_client(engine_module):
    wire, sid = established_client(engine_module, status=404)
    (rejected,) = wire.of_type(SessionRejected)
    assert rejected.session_id == sid and rejected.status == 404
    assert wire.engine.session_state(sid) == SessionState.REJECTED
    assert not wire.of_type(SessionEstablished)
    with pytest.raises(SessionStateError):
        wire.engine.open_stream(sid)


def test_rejected_session_over_quic(engine_module, stack_name):
    pair = make_pair(engine_module, stack_name=stack_name)
    sid = pair.client.connect(authority="example.com", path="/nope")
    pair.transfer()
    pair.server.reject(sid, 404)
    pair.transfer()
    # Our server's reject() sends 404 + FIN and STOP_SENDING(H3_NO_ERROR) (RFC 9114 section
    # 4.1); the client must report the 404, not an abrupt end.
    ended = [e for e in pair.take_client() if isinstance(e, SessionRejected | SessionClosed)]
    assert [type(e) for e in ended] == [SessionRejected], ended
    assert ended[0].status == 404
    assert pair.client.session_state(sid) == SessionState.REJECTED
    assert pair.server.session_state(sid) == SessionState.REJECTED


def test_informational_response_then_200(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/wt")
    assert wire.respond(sid, 103) == []
    assert _types(wire.respond(sid, 200)) == [SessionEstablished]


@pytest.mark.parametrize("status", [0, 200, 299, 600])
def test_reject_status_must_be_an_error_status(engine_module, status):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request()
    with pytest.raises(ValueError):
        wire.engine.reject(sid, status)
    assert wire.engine.session_state(sid) == SessionState.REQUESTED


def test_state_errors_are_session_state_errors(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request()
    engine = wire.engine
    with pytest.raises(SessionStateError):
        engine.drain_session(sid)
    with pytest.raises(SessionStateError):
        engine.open_stream(sid)
    with pytest.raises(SessionStateError):
        engine.send_datagram(sid, b"x")
    engine.accept(sid)
    for call in (lambda: engine.accept(sid), lambda: engine.reject(sid, 404)):
        with pytest.raises(SessionStateError) as info:
            call()
        assert isinstance(info.value, ValueError)
    engine.close_session(sid)
    engine.close_session(sid)  # closing twice does nothing
    for call in (
        lambda: engine.accept(sid),
        lambda: engine.drain_session(sid),
        lambda: engine.reject(sid),
    ):
        with pytest.raises(SessionStateError):
            call()
    second = wire.request(path="/second")
    engine.reject(second, 404)
    with pytest.raises(SessionStateError):
        engine.accept(second)
    with pytest.raises(UnknownSession):
        engine.accept(404)
    assert isinstance(UnknownSession(1), KeyError)


def test_close_before_accept_rejects(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    sid = wire.request()
    wire.engine.close_session(sid)
    assert wire.engine.session_state(sid) == SessionState.REJECTED
    assert wire.sent_status(sid) >= 400


def test_client_cancel_before_response(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/wt")
    wire.engine.close_session(sid)
    assert wire.transport.reset_codes(sid) == [0x10C]
    assert _closed(wire.events, sid).error_code == 0x10C
    assert wire.respond(sid, 200) == []  # a late answer changes nothing
    assert wire.engine.session_state(sid) == SessionState.CLOSED
    assert wire.transport.closed is None


def test_client_session_cannot_be_accepted(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    sid = wire.engine.connect(authority="example.com", path="/wt")
    with pytest.raises(SessionStateError):
        wire.engine.accept(sid)


def test_connect_argument_errors(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    with pytest.raises(ValueError):
        wire.engine.connect(authority="example.com", path="no-slash")
    with pytest.raises(ValueError):
        wire.engine.connect(authority="", path="/")
    with pytest.raises(ValueError):
        wire.engine.connect(authority="example.com", path="/", headers=[(b":path", b"/x")])
    server = Wire(engine_module, is_client=False).start()
    with pytest.raises(RuntimeError):
        server.engine.connect(authority="example.com", path="/")


def test_datagram_size_limits(engine_module):
    wire, sid = established_server(engine_module, config=EngineConfig(max_sessions=100))
    engine = wire.engine
    assert engine.max_datagram_size(sid) == wire.max_datagram - 1
    engine.send_datagram(sid, b"x" * (wire.max_datagram - 1))
    with pytest.raises(DatagramTooLarge) as info:
        engine.send_datagram(sid, b"x" * wire.max_datagram)
    assert isinstance(info.value, ValueError)
    assert info.value.size == wire.max_datagram
    assert info.value.max_size == wire.max_datagram - 1
    # A session id whose quarter needs a 2-byte varint leaves one byte less.
    for _ in range(64):
        wire.peer_stream(uni=False)
    far = wire.request(path="/far")
    assert far >= 64 * 4
    engine.accept(far)
    assert engine.max_datagram_size(far) == wire.max_datagram - 2
    engine.send_datagram(far, b"y" * (wire.max_datagram - 2))
    assert wire.transport.datagrams[-1][:2] == enc(far >> 2)


def test_datagrams_unavailable(engine_module):
    wire = Wire(engine_module, is_client=False).start(None, handshake=False)
    wire.send_settings(PEER_D16_FC)
    sid = wire.request()
    wire.engine.accept(sid)
    with pytest.raises(DatagramsUnavailable):
        wire.engine.send_datagram(sid, b"before handshake")
    no_datagrams = Wire(engine_module, is_client=False, max_datagram=0).start()
    sid = no_datagrams.request()
    no_datagrams.engine.accept(sid)
    with pytest.raises(DatagramsUnavailable):
        no_datagrams.engine.max_datagram_size(sid)


def test_happy_path_over_quic(engine_module, stack_name):
    pair = make_pair(engine_module, stack_name=stack_name)
    assert [type(e) for e in pair.take_client()] == [SettingsReceived]
    assert [type(e) for e in pair.take_server()] == [SettingsReceived]
    sid = pair.client.connect(authority="example.com", path="/echo", origin="https://example.com")
    pair.transfer()
    (requested,) = [e for e in pair.take_server() if isinstance(e, SessionRequested)]
    assert (requested.path, requested.origin, requested.dialect) == (
        "/echo",
        "https://example.com",
        Dialect.DRAFT16,
    )
    pair.server.accept(sid)
    pair.transfer()
    assert [type(e) for e in pair.take_client()] == [SessionEstablished]
    bidi = pair.client.open_stream(sid)
    uni = pair.client.open_stream(sid, is_unidirectional=True)
    assert pair.client.send_stream_data(bidi, b"ping", True) == 4
    assert pair.client.send_stream_data(uni, b"uni", True) == 3
    pair.transfer()
    events = pair.take_server()
    assert StreamOpened(sid, bidi, False) in events and StreamOpened(sid, uni, True) in events
    assert _stream_data(events, bidi) == b"ping"
    assert _stream_data(events, uni) == b"uni"
    pair.server.send_stream_data(bidi, b"pong", True)
    back = pair.server.open_stream(sid, is_unidirectional=True)
    pair.server.send_stream_data(back, b"from server", True)
    pair.transfer()
    events = pair.take_client()
    assert _stream_data(events, bidi) == b"pong"
    assert StreamOpened(sid, back, True) in events
    assert _stream_data(events, back) == b"from server"
    pair.client.close_session(sid, 42, "bye")
    pair.transfer()
    assert _closed(pair.take_server(), sid) == SessionClosed(sid, 42, "bye", True, None)
    assert _closed(pair.take_client(), sid) == SessionClosed(sid, 42, "bye", False, None)
    pair.client.close()
    pair.transfer()
    pair.now += 5  # past the draining period
    pair.transfer()
    assert any(isinstance(e, ConnectionTerminated) for e in pair.take_server())
    assert pair.server.closed and pair.client.closed


def test_flow_control_end_to_end_over_quic(engine_module, stack_name):
    """A sender blocked by WT_MAX_DATA resumes when the receiver consumes and re-grants."""
    pair = make_pair(
        engine_module,
        stack_name=stack_name,
        server_config=EngineConfig(initial_max_data=1000, initial_max_streams_bidi=1),
    )
    assert pair.client.flow_control and pair.server.flow_control
    sid = pair.client.connect(authority="example.com", path="/fc")
    pair.transfer()
    pair.server.accept(sid)
    pair.transfer()
    pair.take_client()
    pair.take_server()
    stream = pair.client.open_stream(sid)
    assert pair.client.open_stream(sid) is None  # one bidi stream allowed
    payload = bytes(range(256)) * 20
    sent = pair.client.send_stream_data(stream, payload)
    assert sent == 1000
    received = b""
    for _ in range(20):
        pair.transfer()
        chunks = [e for e in pair.take_server() if isinstance(e, StreamDataReceived)]
        for chunk in chunks:
            received += chunk.data
            pair.server.consume_data(sid, len(chunk.data))
        pair.transfer()
        credit = [e for e in pair.take_client() if isinstance(e, DataCreditAvailable)]
        if sent < len(payload) and credit:
            sent += pair.client.send_stream_data(stream, payload[sent:])
        if len(received) == len(payload):
            break
    assert received == payload
    snapshot = pair.server.session_snapshot(sid)
    assert snapshot.data_received == len(payload)
    assert snapshot.peer_data_blocked_at is not None  # the client said it was blocked
    assert 1000 <= snapshot.peer_data_blocked_at < len(payload)
    assert pair.server.connection_snapshot().closed is False


# ---------------------------------------------------------------------------
# HTTP/3 underneath: critical streams, QPACK, request handling, session limits


def test_server_waits_for_client_settings(engine_module):
    """Draft section 3.1: WebTransport requests are not processed before the client's SETTINGS."""
    wire = Wire(engine_module, is_client=False).start(None)
    sid = wire.request(body=data_frame(drain_capsule()))
    assert not wire.of_type(SessionRequested)
    wire.send_settings(PEER_D16_FC)
    (requested,) = wire.of_type(SessionRequested)
    assert requested.session_id == sid
    wire.engine.accept(sid)
    assert SessionDraining(sid) in wire.take()


def test_qpack_blocked_headers_resume(engine_module):
    """HEADERS that refer to dynamic-table entries not yet received wait for the encoder stream."""
    wire = Wire(engine_module, is_client=False).start()
    encoder_stream = wire.peer_encoder_id
    wire.feed(encoder_stream, wire.encoder.apply_settings(4096, 16))
    headers = [
        (b":method", b"CONNECT"),
        (b":scheme", b"https"),
        (b":authority", b"dynamic.example"),
        (b":path", b"/dynamic-table"),
        (b":protocol", b"webtransport-h3"),
        (b"x-custom", b"value " * 10),
    ]
    first = wire.peer_stream(uni=False)
    encoder_data, block = wire.encoder.encode(first, headers)
    wire.feed(encoder_stream, encoder_data)
    wire.feed(first, frame(FRAME_HEADERS, block))
    sid = wire.peer_stream(uni=False)
    encoder_data, block = wire.encoder.encode(sid, headers)
    assert encoder_data, "the peer's encoder should now use its dynamic table"
    wire.feed(sid, frame(FRAME_HEADERS, block) + data_frame(drain_capsule()))
    assert [e.session_id for e in wire.of_type(SessionRequested)] == [first]
    wire.feed(encoder_stream, encoder_data)
    requested = wire.of_type(SessionRequested)
    assert [e.session_id for e in requested] == [first, sid]
    assert (requested[1].path, requested[1].authority) == ("/dynamic-table", "dynamic.example")
    wire.engine.accept(sid)
    assert SessionDraining(sid) in wire.take()
    assert wire.transport.closed is None
    # Our decoder acknowledged the blocked section on its decoder stream.
    assert wire.local_uni_of_type(0x03) is not None


@pytest.mark.parametrize(
    ("new_stream", "data", "fin", "code"),
    [
        (True, enc(STREAM_CONTROL) + frame(0x04, b""), False, 0x103),  # a second control stream
        (False, b"", True, 0x104),  # the control stream closed
        (False, frame(0x04, b""), False, 0x105),  # SETTINGS twice
        (False, frame(0x00, b"x"), False, 0x105),  # DATA on the control stream
        (False, frame(0x07, b""), False, 0x106),  # truncated GOAWAY
    ],
    ids=["second-control", "control-fin", "settings-twice", "data-on-control", "bad-goaway"],
)
def test_control_stream_errors(engine_module, new_stream, data, fin, code):
    wire = Wire(engine_module, is_client=False).start()
    stream = wire.peer_stream(uni=True) if new_stream else wire.peer_control_id
    wire.feed(stream, data, fin)
    assert wire.transport.close_code == code


def test_first_control_frame_must_be_settings(engine_module):
    wire = Wire(engine_module, is_client=False).start(None)
    wire.feed(wire.peer_stream(uni=True), enc(STREAM_CONTROL) + frame(FRAME_GOAWAY, enc(0)))
    assert wire.transport.close_code == 0x10A


def test_unknown_uni_stream_type_ignored(engine_module):
    wire, sid = established_server(engine_module)
    stream = wire.peer_stream(uni=True)
    wire.feed(stream, enc(0x21 + 0x1F * 3) + b"whatever")
    assert wire.transport.closed is None
    assert wire.transport.stop_codes(stream) == [0x103]
    assert wire.engine.session_state(sid) == SessionState.CONNECTED


def test_push_streams_refused(engine_module):
    client = Wire(engine_module, is_client=True).start()
    client.feed(client.peer_stream(uni=True), enc(0x01) + enc(0))
    assert client.transport.close_code == H3_ID_ERROR
    server = Wire(engine_module, is_client=False).start()
    server.feed(server.peer_stream(uni=True), enc(0x01) + enc(0))
    assert server.transport.close_code == 0x103


def test_plain_requests_answered_not_sessions(engine_module):
    wire = Wire(engine_module, is_client=False).start()
    get = wire.request(method=b"GET", protocol=None, path="/index.html")
    assert wire.sent_status(get) == 405
    assert not wire.of_type(SessionRequested)
    assert wire.transport.closed is None


@pytest.mark.parametrize(
    ("method", "path"),
    [(b"", "/wt"), (b"CONNECT", ""), (b"GET", "")],
    ids=["method", "path", "get"],
)
def test_empty_method_or_path_is_a_malformed_request(engine_module, method, path):
    """An empty :method (not a token) or an empty :path (RFC 9114 section 4.3.1) is malformed:
    that request stream is reset with H3_MESSAGE_ERROR; the connection lives on."""
    wire = Wire(engine_module, is_client=False).start()
    bad = wire.request(method=method, path=path)
    assert H3_MESSAGE_ERROR in wire.transport.reset_codes(bad)
    assert not wire.of_type(SessionRequested)
    assert wire.transport.closed is None
    good = wire.request()
    assert [e.session_id for e in wire.of_type(SessionRequested)] == [good]


def test_session_limit_with_flow_control(engine_module):
    wire = Wire(engine_module, is_client=False, config=EngineConfig(max_sessions=2)).start()
    first = wire.request(path="/1")
    second = wire.request(path="/2")
    third = wire.request(path="/3")
    assert [e.session_id for e in wire.of_type(SessionRequested)] == [first, second]
    assert wire.transport.reset_codes(third) == [H3_REQUEST_REJECTED]
    wire.engine.reject(first, 404)
    fourth = wire.request(path="/4")
    assert wire.of_type(SessionRequested)[-1].session_id == fourth


def test_goaway_cancels_requests_the_server_will_not_process(engine_module):
    wire = Wire(engine_module, is_client=True).start()
    first = wire.engine.connect(authority="example.com", path="/1")
    second = wire.engine.connect(authority="example.com", path="/2")
    wire.respond(first, 200)
    events = wire.feed(wire.peer_control_id, frame(FRAME_GOAWAY, enc(second)))
    assert GoawayReceived(second) in events
    assert SessionDraining(first) in events
    assert _closed(events, second).error_code == H3_REQUEST_REJECTED
    assert wire.engine.session_state(first) == SessionState.DRAINING
    assert wire.engine.session_state(second) == SessionState.CLOSED
    wire.feed(wire.peer_control_id, frame(FRAME_GOAWAY, enc(second + 4)))
    assert wire.transport.close_code == H3_ID_ERROR  # GOAWAY ids may only go down


def test_case_18_stopped_stream_still_counts_its_final_size(engine_module):
    """Bytes the peer sent after our STOP_SENDING count too: both sides must agree on the total."""
    wire, sid = _limited_server(engine_module, initial_max_data=100)
    stream = wire.open_wt(sid, uni=True, data=b"x" * 10)
    wire.engine.stop_stream(stream, 1)
    wire.feed(stream, b"y" * 30)  # already in flight: dropped, but sent under flow control
    wire.reset(stream, app_to_h3(1), final_size=3 + 50)
    assert wire.engine.session_snapshot(sid).data_received == 50
    wire.open_wt(sid, uni=True, data=b"z" * 50)
    assert not wire.transport.reset_codes(sid)
    wire.open_wt(sid, uni=True, data=b"!")
    _assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


CHROME_SETTINGS = {
    0x06: 16384,
    0x07: 100,
    SETTING_H3_DATAGRAM: 1,
    0xFFD277: 1,
    SETTING_ENABLE_WEBTRANSPORT: 1,
}


@pytest.mark.parametrize(
    ("settings", "dialect"),
    [
        (CHROME_SETTINGS, Dialect.DRAFT02),
        ({**CHROME_SETTINGS, 0xC671706A: 16}, Dialect.DRAFT07),
        ({0xFFD277: 1, SETTING_ENABLE_WEBTRANSPORT: 1}, Dialect.DRAFT02),
    ],
    ids=["chrome", "chrome-draft07-flag", "legacy-datagram-setting-only"],
)
def test_case_23_chromium_settings_and_request(engine_module, settings, dialect):
    """What Chromium sends (reference/chromium.md): no 0x08, a draft02 header, a GREASE capsule."""
    wire = Wire(engine_module, is_client=False).start(settings)
    sid = wire.request(
        protocol=b"webtransport",
        extra=[(b"sec-webtransport-http3-draft02", b"1"), (b"origin", b"http://127.0.0.1:8000")],
        body=data_frame(capsule(CHROME_GREASE_CAPSULE_TYPE, b"\x07" * 9)),
    )
    (requested,) = wire.of_type(SessionRequested)
    assert requested.dialect == dialect
    assert requested.origin == "http://127.0.0.1:8000"
    wire.engine.accept(sid)
    (headers,) = wire.sent_headers(sid)
    assert (b"sec-webtransport-http3-draft", b"draft02") in headers
    assert wire.engine.max_datagram_size(sid) > 0
    assert wire.engine.flow_control is False
    assert wire.engine.session_state(sid) == SessionState.CONNECTED
