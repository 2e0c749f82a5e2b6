"""Every limit of the sans-IO engine, enforced with its wire code, and what it lets a peer allocate.

The engine is driven byte by byte by a hand-played peer (``engine_wire``),
on the pure and on the compiled engine.  Each test names the limit, the
``EngineConfig`` field that sets it, the wire code that enforces it, and
(where memory is the point) measures with ``tracemalloc`` that what the
peer sent is not held.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pylsqpack
import pytest
from engine_wire import (
    CAPSULE_CLOSE,
    CAPSULE_DATA_BLOCKED,
    CAPSULE_DATAGRAM,
    CAPSULE_DRAIN,
    CAPSULE_MAX_DATA,
    CAPSULE_STREAMS_BLOCKED_BIDI,
    CHROME_GREASE_CAPSULE_TYPE,
    FRAME_HEADERS,
    H3_EXCESSIVE_LOAD,
    H3_MESSAGE_ERROR,
    H3_REQUEST_REJECTED,
    PEER_D02,
    PEER_D16_FC,
    STREAM_CONTROL,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
    WT_SESSION_GONE,
    Wire,
    capsule,
    close_capsule,
    data_frame,
    drain_capsule,
    enc,
    established_client,
    established_server,
    frame,
    settings_payload,
    varint_capsule,
)
from rel_harness import LONG

from anywt.core.config import EngineConfig
from anywt.core.events import (
    DatagramReceived,
    SessionClosed,
    SessionDraining,
    SessionRequested,
    StreamDataReceived,
    StreamOpened,
)
from anywt.core.session_state import SessionState

MiB = 1024 * 1024


def measure(work: Callable[[], object]) -> tuple[int, int]:
    """(bytes still allocated after ``work``, peak during it), as tracemalloc sees them."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current - base, peak - base


def server(engine_module, config: EngineConfig | None = None, settings=PEER_D16_FC) -> Wire:
    return Wire(engine_module, is_client=False, config=config or EngineConfig(grease=False)).start(
        settings
    )


def assert_session_reset(wire: Wire, session_id: int, code: int) -> None:
    """The CONNECT stream was reset and stopped with ``code``; the session reported closed."""
    assert wire.transport.reset_codes(session_id) == [code]
    assert wire.transport.stop_codes(session_id) == [code]
    closed = wire.of_type(SessionClosed)
    assert closed and closed[-1].session_id == session_id and closed[-1].error_code == code


# ---------------------------------------------------------------------------
# Capsules: EngineConfig.max_capsule_size, WT_CLOSE_SESSION 4 + 1024, varints 8


@pytest.mark.parametrize(
    ("capsule_type", "declared"),
    [(CAPSULE_CLOSE, 4 + 1024 + 1), (CAPSULE_MAX_DATA, 9), (CAPSULE_DRAIN, 1)],
    ids=["close-1029", "max-data-9", "drain-1"],
)
def test_known_capsule_over_its_cap_is_refused_on_its_header(engine_module, capsule_type, declared):
    """The declared length alone is refused (H3_MESSAGE_ERROR): nothing of the value is awaited."""
    wire, sid = established_server(engine_module)
    header = enc(capsule_type) + enc(declared)
    wire.feed(sid, enc(0) + enc(len(header) + declared) + header)
    assert_session_reset(wire, sid, H3_MESSAGE_ERROR)


def test_oversized_datagram_capsule_dropped_without_buffering(engine_module):
    """A DATAGRAM capsule over max_capsule_size is skipped as it streams by, never held."""
    config = EngineConfig(grease=False, max_capsule_size=1024)
    wire, sid = established_server(engine_module, config=config)
    size = 8 * MiB
    head = capsule(CAPSULE_DATAGRAM, b"")[:1] + enc(size)
    chunk = b"\x5a" * 65536

    def stream_it() -> None:
        wire.feed(sid, enc(0) + enc(len(head) + size) + head)
        for _ in range(size // len(chunk)):
            wire.engine.receive_stream_data(sid, chunk, False, wire.now)

    _, peak = measure(stream_it)
    assert peak < 512 * 1024, f"{peak} bytes held while dropping an oversized DATAGRAM capsule"
    assert not wire.of_type(DatagramReceived)
    assert wire.send_capsules(sid, drain_capsule()) == [SessionDraining(sid)]
    assert wire.transport.closed is None


@pytest.mark.parametrize("shape", ["one-huge", "many-small"])
def test_unknown_capsules_skipped_in_constant_memory(engine_module, shape):
    """Unknown (GREASE) capsules are skipped while streaming: memory does not grow with them."""
    wire, sid = established_server(engine_module)
    total = (1024 if LONG else 64) * MiB
    chunk = 65536
    if shape == "one-huge":
        head = enc(CHROME_GREASE_CAPSULE_TYPE) + enc(total)
        frames = [enc(0) + enc(len(head) + total) + head] + [b"\x00" * chunk] * (total // chunk)
    else:
        tiny = capsule(0x17, b"g" * 10)  # 0x29 * 0 + 0x17: a GREASE type
        body = tiny * (chunk // len(tiny))
        frames = [data_frame(body)] * (total // chunk // 256)  # 256 KiB of 12-byte capsules

    def stream_it() -> None:
        for piece in frames:
            wire.engine.receive_stream_data(sid, piece, False, wire.now)

    _, peak = measure(stream_it)
    # One 64 KiB slice of the input in flight, nothing that grows with the capsules.
    assert peak < 256 * 1024, f"{peak} bytes held while skipping unknown capsules"
    assert wire.send_capsules(sid, drain_capsule()) == [SessionDraining(sid)]
    assert not wire.transport.reset_codes(sid)


def test_capsules_before_accept_are_bounded(engine_module):
    """max_pending_capsules: more capsules before the server answers is H3_EXCESSIVE_LOAD."""
    config = EngineConfig(grease=False, max_pending_capsules=4)
    wire = server(engine_module, config)
    sid = wire.request(body=data_frame(capsule(CAPSULE_DATAGRAM, b"x") * 4))
    assert wire.transport.closed is None
    wire.send_capsules(sid, capsule(CAPSULE_DATAGRAM, b"y"))
    assert wire.transport.close_code == H3_EXCESSIVE_LOAD


# ---------------------------------------------------------------------------
# Streams and datagrams before their session: max_buffered_streams,
# max_buffered_stream_data, max_buffered_datagrams


def test_early_streams_beyond_the_budget_are_rejected(engine_module):
    """WT_BUFFERED_STREAM_REJECTED on the streams over max_buffered_streams; counted."""
    config = EngineConfig(grease=False, max_buffered_streams=3)
    wire = server(engine_module, config)
    sid = wire.peer_stream(uni=False)  # the CONNECT comes later
    streams = [wire.open_wt(sid, uni=True, data=b"early%d" % i) for i in range(5)]
    for stream in streams[:3]:
        assert not wire.transport.stop_codes(stream)
    for stream in streams[3:]:
        assert wire.transport.stop_codes(stream) == [WT_BUFFERED_STREAM_REJECTED]
    snapshot = wire.engine.connection_snapshot()
    assert snapshot.buffered_streams == 3 and snapshot.streams_rejected == 2
    wire.request(stream_id=sid)
    wire.engine.accept(sid)
    delivered = [e.stream_id for e in wire.of_type(StreamOpened)]
    assert delivered == streams[:3]
    assert wire.engine.connection_snapshot().buffered_streams == 0


def test_early_streams_for_many_session_ids_share_one_budget(engine_module):
    """Streams naming a thousand future sessions are held up to the one per-connection budget."""
    config = EngineConfig(grease=False, max_buffered_streams=8)
    wire = server(engine_module, config)

    def flood() -> None:
        for index in range(100 if not LONG else 1000):
            wire.open_wt(4 * (index + 10), uni=True, data=b"z" * 1000)

    retained, _ = measure(flood)
    snapshot = wire.engine.connection_snapshot()
    assert snapshot.buffered_streams == 8
    assert retained < 8 * 1000 + 512 * 1024


def test_early_stream_bytes_beyond_the_budget_are_rejected(engine_module):
    config = EngineConfig(grease=False, max_buffered_stream_data=100)
    wire = server(engine_module, config)
    sid = wire.peer_stream(uni=False)
    stream = wire.open_wt(sid, uni=False, data=b"a" * 100)
    assert not wire.transport.stop_codes(stream)
    wire.feed(stream, b"!")
    assert wire.transport.stop_codes(stream) == [WT_BUFFERED_STREAM_REJECTED]
    assert wire.transport.reset_codes(stream) == [WT_BUFFERED_STREAM_REJECTED]
    assert wire.engine.connection_snapshot().buffered_streams == 0


def test_early_datagrams_beyond_the_budget_are_dropped_and_counted(engine_module):
    config = EngineConfig(grease=False, max_buffered_datagrams=4)
    wire = server(engine_module, config)
    sid = wire.peer_stream(uni=False)
    for index in range(10):
        wire.wt_datagram(sid, b"d%d" % index)
    snapshot = wire.engine.connection_snapshot()
    assert snapshot.buffered_datagrams == 4 and snapshot.datagrams_dropped == 6
    wire.request(stream_id=sid)
    wire.engine.accept(sid)
    assert [e.data for e in wire.of_type(DatagramReceived)] == [b"d0", b"d1", b"d2", b"d3"]


# ---------------------------------------------------------------------------
# Sessions per connection: EngineConfig.max_sessions (with flow control), else one


def test_second_session_without_flow_control_is_request_rejected(engine_module):
    wire = server(engine_module, settings=PEER_D02)
    first = wire.request()
    second = wire.request()
    assert [e.session_id for e in wire.of_type(SessionRequested)] == [first]
    assert wire.transport.reset_codes(second) == [H3_REQUEST_REJECTED]
    assert wire.transport.stop_codes(second) == [H3_REQUEST_REJECTED]


def test_sessions_over_max_sessions_are_request_rejected_even_unanswered(engine_module):
    """Requests the application never answers count: the peer cannot pile them up."""
    config = EngineConfig(grease=False, max_sessions=3)
    wire = server(engine_module, config)
    sessions = [wire.request() for _ in range(6)]
    assert len(wire.of_type(SessionRequested)) == 3
    for sid in sessions[3:]:
        assert wire.transport.reset_codes(sid) == [H3_REQUEST_REJECTED]
    # One ends: a new one fits again.
    wire.engine.reject(sessions[0], 429)
    later = wire.request()
    assert wire.of_type(SessionRequested)[-1].session_id == later


def test_closed_sessions_are_forgotten(engine_module):
    """closed_session_memory: a connection that carried hundreds of sessions keeps a few."""
    config = EngineConfig(grease=False, closed_session_memory=16)
    wire = server(engine_module, config)
    for _ in range(300):
        sid = wire.request(extra=[(b"x-pad", b"p" * 4000)])
        wire.engine.reject(sid, 404)
    assert len(wire.engine.session_ids()) <= 16
    assert wire.engine.connection_snapshot().sessions == 0


# ---------------------------------------------------------------------------
# Header sections: EngineConfig.max_field_section_size (SETTINGS_MAX_FIELD_SECTION_SIZE)


def test_header_frame_over_the_field_section_size_is_excessive_load(engine_module):
    """A HEADERS frame longer than our SETTINGS_MAX_FIELD_SECTION_SIZE: refused on its header."""
    config = EngineConfig(grease=False, max_field_section_size=1024)
    wire = server(engine_module, config)
    assert wire.sent_settings()[0x06] == 1024
    stream = wire.peer_stream(uni=False)
    wire.feed(stream, enc(FRAME_HEADERS) + enc(1025))
    assert wire.transport.close_code == H3_EXCESSIVE_LOAD


def test_request_bytes_before_the_clients_settings_are_bounded(engine_module):
    """Requests wait for the client's SETTINGS, holding at most field section size + 64 KiB."""
    config = EngineConfig(grease=False, max_field_section_size=1024)
    wire = Wire(engine_module, is_client=False, config=config).start(None)
    stream = wire.peer_stream(uni=False)
    wire.feed(stream, b"\x01" * (1024 + 65536))
    assert wire.transport.closed is None
    wire.feed(stream, b"\x01")
    assert wire.transport.close_code == H3_EXCESSIVE_LOAD


def _qint(prefix_bits: int, flags: int, value: int) -> bytes:
    """A QPACK prefixed integer (RFC 9204 section 4.1.1)."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([flags | value])
    out = [flags | top]
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def qpack_large_entry() -> bytes:
    """Encoder-stream instructions inserting one 4 KB entry (capacity 4096, which our SETTINGS
    allow)."""
    value = b"v" * (4096 - 32 - len(b"x-pad"))
    return (
        _qint(5, 0x20, 4096)  # Set Dynamic Table Capacity
        + _qint(5, 0x40, len(b"x-pad"))  # Insert With Literal Name
        + b"x-pad"
        + _qint(7, 0x00, len(value))
        + value
    )


def qpack_amplified_request(
    wire: Wire, stream_id: int, references: int, *, insert: bool = True
) -> bytes:
    """A CONNECT whose header block is ~``references`` bytes but decodes to ~4 KB per byte.

    The peer's encoder stream inserts one 4 KB entry into the dynamic table (unless
    ``insert`` is false: then the block waits for it); the header block then names it
    ``references`` times with one-byte Indexed Field Lines.
    """
    if insert:
        wire.feed(wire.peer_encoder_id, qpack_large_entry())
    static = pylsqpack.Encoder()  # no dynamic table: a plain static-table block
    _, plain = static.encode(
        stream_id,
        [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", b"/wt"),
            (b":protocol", b"webtransport-h3"),
        ],
    )
    assert plain[:2] == b"\x00\x00"
    # Required Insert Count 1 (encoded as 2), Base = 1; then relative index 0, many times.
    block = b"\x02\x00" + plain[2:] + b"\x80" * references
    return frame(FRAME_HEADERS, block)


def test_decoded_header_section_over_the_field_section_size_is_refused(engine_module):
    """SETTINGS_MAX_FIELD_SECTION_SIZE bounds the *decoded* section (RFC 9114 section 4.2.2).

    A 2 KB QPACK block that decodes to 8 MB of header fields must be refused
    (431, or a reset with a protocol code), not handed to the application nor
    kept in the session record.
    """
    config = EngineConfig(grease=False, max_field_section_size=65536)
    wire = server(engine_module, config)
    stream = wire.peer_stream(uni=False)
    request = qpack_amplified_request(wire, stream, 2000)
    assert len(request) < 65536 // 8

    retained, peak = measure(lambda: wire.feed(stream, request))
    requested = wire.of_type(SessionRequested)
    decoded = sum(len(n) + len(v) + 32 for e in requested for n, v in e.headers)
    assert not requested, (
        f"a {len(request)}-byte header block decoded to {decoded} bytes of fields was accepted "
        f"(limit {config.max_field_section_size}); {retained} bytes retained, peak {peak}"
    )


@pytest.mark.parametrize(
    "references",
    [
        20,  # ~80 KB decoded: within the pre-scan's margin, refused once decoded
        40,  # ~160 KB: refused by the pre-scan, before decoding
    ],
)
def test_oversized_decoded_request_gets_431_and_the_connection_lives(engine_module, references):
    """The refusal is a 431 on that request stream alone; the connection keeps working."""
    config = EngineConfig(grease=False, max_field_section_size=65536)
    wire = server(engine_module, config)
    stream = wire.peer_stream(uni=False)
    wire.feed(stream, qpack_amplified_request(wire, stream, references))
    assert wire.sent_status(stream) == 431
    assert wire.transport.close_code is None
    assert not wire.of_type(SessionRequested)
    other = wire.request()
    assert [event.session_id for event in wire.of_type(SessionRequested)] == [other]


def test_blocked_request_answered_with_a_status_ignores_what_it_queued(engine_module):
    """A header block waiting for the QPACK encoder stream, with DATA queued behind it, that
    decodes to a refused request (431): the queued frames are dropped, not a connection error."""
    config = EngineConfig(grease=False, max_field_section_size=65536)
    wire = server(engine_module, config)
    stream = wire.peer_stream(uni=False)
    # The block references an entry the encoder stream has not inserted yet: QPACK blocks.
    # 20 references (~80 KB decoded) pass the pre-scan: the limit applies after decoding.
    request = qpack_amplified_request(wire, stream, 20, insert=False)
    wire.feed(stream, request + data_frame(b"queued behind a blocked header block"))
    assert wire.transport.close_code is None
    wire.feed(wire.peer_encoder_id, qpack_large_entry())
    assert wire.sent_status(stream) == 431
    assert wire.transport.close_code is None


@pytest.mark.parametrize("client", [False, True])
def test_amplified_header_block_is_refused_before_decoding(engine_module, client):
    """A 60 KB block naming a 4 KB table entry with every byte (240 MB if decoded) is
    refused on its pre-scanned bound: nothing near that size is ever allocated."""
    config = EngineConfig(grease=False, max_field_section_size=65536)
    if client:
        wire = Wire(engine_module, is_client=True, config=config).start(PEER_D16_FC)
        session = wire.engine.connect(authority="example.com", path="/wt")
        wire.feed(wire.peer_encoder_id, qpack_large_entry())
        block = b"\x02\x00" + b"\xd9" + b"\x80" * 60000  # :status 200, then the entry
        retained, peak = measure(lambda: wire.feed(session, frame(FRAME_HEADERS, block)))
        assert_session_reset(wire, session, H3_MESSAGE_ERROR)
    else:
        wire = server(engine_module, config)
        stream = wire.peer_stream(uni=False)
        request = qpack_amplified_request(wire, stream, 60000)
        retained, peak = measure(lambda: wire.feed(stream, request))
        assert wire.sent_status(stream) == 431
        assert not wire.of_type(SessionRequested)
    assert wire.transport.close_code is None
    assert peak < 1024 * 1024, f"peak {peak} bytes while refusing a 60 KB header block"
    assert retained < 256 * 1024, f"{retained} bytes kept after refusing it"


# ---------------------------------------------------------------------------
# WT_CLOSE_SESSION reason: 1024 bytes of UTF-8


def test_close_reason_limits(engine_module):
    wire, sid = established_server(engine_module)
    wire.send_capsules(sid, close_capsule(1, b"r" * 1024))
    assert wire.of_type(SessionClosed)[-1].reason == "r" * 1024
    wire2, sid2 = established_server(engine_module)
    wire2.send_capsules(sid2, close_capsule(1, b"r" * 1025))
    assert_session_reset(wire2, sid2, H3_MESSAGE_ERROR)
    wire3, sid3 = established_server(engine_module)
    wire3.engine.close_session(sid3, 7, "\u00e9" * 5000)
    ((capsule_type, value),) = wire3.sent_capsules(sid3)
    assert capsule_type == CAPSULE_CLOSE and len(value) - 4 <= 1024
    value[4:].decode("utf-8")


# ---------------------------------------------------------------------------
# Session flow control, both ways


def test_flow_control_receive_side_is_enforced(engine_module):
    """The peer may send exactly initial_max_data, not a byte more (WT_FLOW_CONTROL_ERROR),
    and gets no more credit until the application consumed what it sent."""
    config = EngineConfig(grease=False, initial_max_data=1000)
    wire, sid = established_server(engine_module, config=config)
    stream = wire.open_wt(sid, uni=True, data=b"a" * 1000)
    assert wire.sent_capsules(sid) == []  # unread data earns no new credit
    assert not wire.transport.reset_codes(sid)
    wire.feed(stream, b"b")
    assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)
    assert wire.transport.stop_codes(stream) == [WT_SESSION_GONE]
    delivered = b"".join(e.data for e in wire.of_type(StreamDataReceived))
    assert delivered == b"a" * 1000


def test_flow_control_stream_count_is_enforced(engine_module):
    config = EngineConfig(grease=False, initial_max_streams_bidi=2)
    wire, sid = established_server(engine_module, config=config)
    wire.open_wt(sid, uni=False, data=b"1")
    wire.open_wt(sid, uni=False, data=b"2")
    assert not wire.transport.reset_codes(sid)
    wire.open_wt(sid, uni=False, data=b"3")
    assert_session_reset(wire, sid, WT_FLOW_CONTROL_ERROR)


def test_flow_control_send_side_is_obeyed(engine_module):
    """We never send more than the peer granted; WT_DATA_BLOCKED / WT_STREAMS_BLOCKED say so."""
    peer_settings = {**PEER_D16_FC, 0x2B61: 100, 0x2B65: 1}
    wire, sid = established_client(engine_module, settings=peer_settings)
    engine = wire.engine
    stream = engine.open_stream(sid)
    assert engine.send_stream_data(stream, b"x" * 150) == 100
    assert engine.send_stream_data(stream, b"x" * 50) == 0
    assert engine.open_stream(sid) is None
    assert wire.sent_capsules(sid) == [
        (CAPSULE_DATA_BLOCKED, enc(100)),
        (CAPSULE_STREAMS_BLOCKED_BIDI, enc(1)),
    ]
    assert len(wire.transport.data(stream)) == 3 + 100  # preamble + credit
    wire.send_capsules(sid, varint_capsule(CAPSULE_MAX_DATA, 300))
    assert engine.send_stream_data(stream, b"y" * 50) == 50


def test_settings_frame_size_is_bounded(engine_module):
    """The control stream's SETTINGS is a buffered frame: over max_field_section_size it is
    H3_EXCESSIVE_LOAD on its header."""
    config = EngineConfig(grease=False, max_field_section_size=1024)
    wire = Wire(engine_module, is_client=False, config=config).start(None)
    control = wire.peer_stream(uni=True)
    wire.feed(control, enc(STREAM_CONTROL) + enc(0x04) + enc(1025))
    assert wire.transport.close_code == H3_EXCESSIVE_LOAD
    wire2 = Wire(engine_module, is_client=False, config=config).start(None)
    control2 = wire2.peer_stream(uni=True)
    payload = settings_payload({0x21 + 0x1F * n: n for n in range(60)})
    wire2.feed(control2, enc(STREAM_CONTROL) + frame(0x04, payload))
    assert wire2.transport.closed is None
    assert wire2.engine.session_state  # still alive


def test_session_state_after_limits(engine_module):
    """A limit hit on one session leaves the connection and its other sessions alone."""
    config = EngineConfig(grease=False, initial_max_data=10)
    wire = server(engine_module, config)
    first = wire.request()
    second = wire.request()
    wire.engine.accept(first)
    wire.engine.accept(second)
    wire.open_wt(first, uni=True, data=b"x" * 11)
    assert wire.engine.session_state(first) == SessionState.CLOSED
    assert wire.engine.session_state(second) == SessionState.CONNECTED
    assert wire.transport.closed is None
