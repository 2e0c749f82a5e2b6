"""HTTP/3 framing for WebTransport (RFC 9114 section 7; protocol.md sections 2.1, 2.2, 8)."""

from __future__ import annotations

import tracemalloc
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anywt.core.errors import (
    ExcessiveLoad,
    FrameError,
    FrameUnexpected,
    H3ConnectionError,
    SettingsError,
)

DATA, HEADERS, CANCEL_PUSH, SETTINGS, PUSH_PROMISE, GOAWAY, MAX_PUSH_ID = 0, 1, 3, 4, 5, 7, 0xD
KNOWN_BUFFERED = [HEADERS, CANCEL_PUSH, SETTINGS, PUSH_PROMISE, GOAWAY, MAX_PUSH_ID]
HTTP2_FRAME_TYPES = [0x02, 0x06, 0x08, 0x09]
RESERVED = [0x21, 0x40, 0x1F * 1000 + 0x21, 0x1F * 2**40 + 0x21]
UNKNOWN = [0x0E, 0x20, 0x22, 0x42, 0x54, 0x2843, 0xF0700, 0x2B603742]
# Not assigned by RFC 9114 and not reserved either: unknown, so ignored (RFC 9114
# section 9).  0x0c is ORIGIN (RFC 9412), which an HTTP/3 server may send.
UNASSIGNED_LOW = [0x0A, 0x0B, 0x0C]

H3_FRAME_UNEXPECTED = 0x105
H3_FRAME_ERROR = 0x106
H3_EXCESSIVE_LOAD = 0x107
H3_SETTINGS_ERROR = 0x109

# Chromium 156's SETTINGS (reference/chromium.md), with a GREASE id.
CHROMIUM_SETTINGS = {
    0x01: 65536,
    0x06: 16384,
    0x07: 100,
    0x33: 1,
    0xFFD277: 1,
    0x2B603742: 1,
}
CHROMIUM_GREASE_ID = 0x1F * 0x2A6B1C3D + 0x21


def vint(value: int, length: int = 0) -> bytes:
    """A varint on ``length`` bytes (0: minimal), independent of the code under test."""
    if not length:
        length = 1 if value < 2**6 else 2 if value < 2**14 else 4 if value < 2**30 else 8
    raw = bytearray(value.to_bytes(length, "big"))
    raw[0] |= {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[length]
    return bytes(raw)


def frame(frame_type: int, payload: bytes = b"") -> bytes:
    return vint(frame_type) + vint(len(payload)) + payload


def settings_payload(pairs) -> bytes:
    return b"".join(vint(k) + vint(v) for k, v in pairs)


def feed_all(reader, chunks) -> list[tuple[int, bytes]]:
    out = []
    for chunk in chunks:
        result = reader.feed(chunk)
        assert isinstance(result, list)
        out.extend((t, bytes(p)) for t, p in result)
    return out


def merge_data(frames) -> list[tuple[int, bytes]]:
    """Join consecutive DATA pieces, checking none is empty."""
    merged: list[tuple[int, bytes]] = []
    for frame_type, payload in frames:
        if frame_type == DATA:
            assert payload, "an empty DATA piece was emitted"
            if merged and merged[-1][0] == DATA:
                merged[-1] = (DATA, merged[-1][1] + payload)
                continue
        merged.append((frame_type, payload))
    return merged


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- encoders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_type", "length", "expected"),
    [
        (DATA, 0, "0000"),
        (DATA, 5, "0005"),
        (HEADERS, 63, "013f"),
        (HEADERS, 64, "014040"),
        (SETTINGS, 70000, "0480011170"),
        (0x21, 2**30, "21c000000040000000"),
        (0x2B603742, 1, "ab60374201"),
    ],
)
def test_encode_frame_header(core, frame_type, length, expected):
    encoded = core.frames.encode_frame_header(frame_type, length)
    assert type(encoded) is bytes
    assert encoded.hex() == expected


def test_encode_frame(core):
    assert core.frames.encode_frame(HEADERS, b"abc").hex() == "0103616263"
    assert core.frames.encode_frame(DATA, b"").hex() == "0000"
    payload = bytes(300)
    assert core.frames.encode_frame(DATA, payload) == b"\x00\x41\x2c" + payload


@given(frame_type=st.integers(0, 2**62 - 1), payload=st.binary(max_size=200))
def test_frame_header_round_trip(core, frame_type, payload):
    encoded = core.frames.encode_frame(frame_type, payload)
    header = core.frames.encode_frame_header(frame_type, len(payload))
    assert encoded == header + payload
    reader = core.varint.ByteReader(encoded)
    assert reader.pull_varint() == frame_type
    assert reader.pull_varint() == len(payload)
    assert reader.pull_rest() == payload


@pytest.mark.parametrize("bad", [-1, 2**62])
def test_encode_frame_header_rejects_bad_values(core, bad):
    with pytest.raises((ValueError, OverflowError)):
        core.frames.encode_frame_header(bad, 0)
    with pytest.raises((ValueError, OverflowError)):
        core.frames.encode_frame_header(0, bad)


@pytest.mark.parametrize(
    ("session_id", "unidirectional", "expected"),
    [
        (0, True, "405400"),
        (0, False, "404100"),
        (4, True, "405404"),
        (4, False, "404104"),
        (64, False, "40414040"),
        (2**62 - 4, True, "4054fffffffffffffffc"),
    ],
)
def test_encode_wt_stream_header(core, session_id, unidirectional, expected):
    encoded = core.frames.encode_wt_stream_header(session_id, unidirectional)
    assert type(encoded) is bytes
    assert encoded.hex() == expected


@pytest.mark.parametrize(
    ("value", "reserved"),
    [
        (0x00, False),
        (0x20, False),
        (0x21, True),
        (0x22, False),
        (0x40, True),
        (0x5F, True),
        (0x41, False),
        (0x1F * 2**40 + 0x21, True),
        (0x1F * 2**40 + 0x22, False),
        (2**62 - 1, (2**62 - 1 - 0x21) % 0x1F == 0),
    ],
)
def test_is_reserved_type(core, value, reserved):
    assert core.frames.is_reserved_type(value) is reserved


def test_constants(core):
    f = core.frames
    assert (f.FRAME_DATA, f.FRAME_HEADERS, f.FRAME_SETTINGS, f.FRAME_GOAWAY) == (0, 1, 4, 7)
    assert (f.FRAME_CANCEL_PUSH, f.FRAME_PUSH_PROMISE, f.FRAME_MAX_PUSH_ID) == (3, 5, 0xD)
    assert f.FRAME_WT_STREAM == 0x41
    assert f.STREAM_WEBTRANSPORT == 0x54
    assert (f.STREAM_CONTROL, f.STREAM_PUSH, f.STREAM_QPACK_ENCODER) == (0, 1, 2)
    assert f.STREAM_QPACK_DECODER == 3


# -- SETTINGS --------------------------------------------------------------------------------


def test_encode_settings_bytes(core):
    encoded = core.frames.encode_settings({0x08: 1, 0x33: 1, 0x2B603742: 1})
    assert encoded.hex() == "0801" + "3301" + "ab603742" + "01"
    assert core.frames.encode_settings({}) == b""


def test_parse_chromium_settings(core):
    pairs = [*CHROMIUM_SETTINGS.items(), (CHROMIUM_GREASE_ID, 0x1234)]
    assert core.frames.parse_settings(settings_payload(pairs)) == CHROMIUM_SETTINGS


settings_ids = st.integers(0, 2**62 - 1).filter(
    lambda i: not (i == 0 or 2 <= i <= 5 or (i >= 0x21 and (i - 0x21) % 0x1F == 0))
)


@given(settings=st.dictionaries(settings_ids, st.integers(0, 2**62 - 1), max_size=8))
def test_settings_round_trip(core, settings):
    encoded = core.frames.encode_settings(settings)
    assert encoded == settings_payload(settings.items())
    assert core.frames.parse_settings(encoded) == settings


def test_parse_settings_empty(core):
    assert core.frames.parse_settings(b"") == {}


def test_parse_settings_non_minimal(core):
    payload = vint(0x33, 8) + vint(1, 4) + vint(0x2B603742, 8) + vint(1, 2)
    assert core.frames.parse_settings(payload) == {0x33: 1, 0x2B603742: 1}


@pytest.mark.parametrize(
    "grease_id", [0x21, 0x40, 0x1F * 100 + 0x21, CHROMIUM_GREASE_ID, 0x1F * 2**40 + 0x21]
)
def test_parse_settings_drops_grease(core, grease_id):
    payload = settings_payload([(0x33, 1), (grease_id, 77), (0x08, 1)])
    assert core.frames.parse_settings(payload) == {0x33: 1, 0x08: 1}


@pytest.mark.parametrize("setting_id", [0x00, 0x02, 0x03, 0x04, 0x05])
def test_parse_settings_rejects_http2_ids(core, setting_id):
    payload = settings_payload([(0x33, 1), (setting_id, 0)])
    with pytest.raises(SettingsError) as info:
        core.frames.parse_settings(payload)
    assert info.value.error_code == H3_SETTINGS_ERROR
    assert info.value.scope == "connection"


@pytest.mark.parametrize("setting_id", [0x01, 0x06, 0x07, 0x08, 0x33])
def test_parse_settings_accepts_neighbours_of_http2_ids(core, setting_id):
    assert core.frames.parse_settings(settings_payload([(setting_id, 9)])) == {setting_id: 9}


@pytest.mark.parametrize(
    "pairs",
    [
        [(0x33, 1), (0x33, 1)],
        [(0x33, 1), (0x08, 1), (0x33, 0)],
        [(0x2B603742, 1), (0x06, 1), (0x2B603742, 1)],
    ],
)
def test_parse_settings_rejects_duplicates(core, pairs):
    with pytest.raises(SettingsError) as info:
        core.frames.parse_settings(settings_payload(pairs))
    assert info.value.error_code == H3_SETTINGS_ERROR


def test_parse_settings_duplicate_non_minimal(core):
    payload = vint(0x33) + vint(1) + vint(0x33, 8) + vint(1)
    with pytest.raises(SettingsError):
        core.frames.parse_settings(payload)


def test_parse_settings_truncated(core):
    pairs = [(0x01, 65536), (0x33, 1), (0x2B603742, 1), (0xC671706A, 16)]
    payload = settings_payload(pairs)
    boundaries = {0}
    pos = 0
    for k, v in pairs:
        pos += len(vint(k)) + len(vint(v))
        boundaries.add(pos)
    for cut in range(len(payload)):
        if cut in boundaries:
            assert len(core.frames.parse_settings(payload[:cut])) == sorted(boundaries).index(cut)
            continue
        with pytest.raises(FrameError) as info:
            core.frames.parse_settings(payload[:cut])
        assert info.value.error_code == H3_FRAME_ERROR


@given(payload=st.binary(max_size=40))
def test_parse_settings_arbitrary_bytes(core, payload):
    try:
        settings = core.frames.parse_settings(payload)
    except (SettingsError, FrameError):
        return
    assert all(not core.frames.is_reserved_type(k) for k in settings)


@given(payload=st.binary(max_size=40))
def test_parse_settings_differential(core_pair, payload):
    results = []
    for impl in core_pair:
        try:
            results.append(impl.frames.parse_settings(payload))
        except (SettingsError, FrameError) as exc:
            results.append(type(exc))
    assert results[0] == results[1]


# -- FrameReader: pass-through, buffering, skipping -------------------------------------------


STREAM = b"".join(
    [
        frame(HEADERS, b"\x00\x00header block"),
        frame(DATA, b"first data"),
        frame(0x21, b"reserved"),
        frame(DATA),
        frame(DATA, bytes(range(256)) * 4),
        vint(0x1F * 2**40 + 0x21) + vint(3, 8) + b"xyz",
        frame(0x2B603742, b"unknown extension"),
        vint(DATA, 8) + vint(2, 4) + b"hi",  # non-minimal DATA header
        frame(HEADERS, b"trailers"),
    ]
)
STREAM_EXPECTED = [
    (HEADERS, b"\x00\x00header block"),
    # DATA pieces are merged: skipped and empty frames in between leave no trace.
    (DATA, b"first data" + bytes(range(256)) * 4 + b"hi"),
    (HEADERS, b"trailers"),
]
STREAM_SKIPPED = len(b"reserved") + 3 + len(b"unknown extension")


def test_reader_whole(core):
    reader = core.frames.FrameReader()
    out = feed_all(reader, [STREAM])
    assert merge_data(out) == STREAM_EXPECTED
    assert reader.skipped_bytes == STREAM_SKIPPED
    assert reader.ended_cleanly()


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_reader_one_byte_at_a_time(core, buffer_type):
    reader = core.frames.FrameReader()
    out = feed_all(reader, [buffer_type(c) for c in bytewise(STREAM)])
    assert merge_data(out) == STREAM_EXPECTED
    assert reader.skipped_bytes == STREAM_SKIPPED
    assert reader.ended_cleanly()


def test_reader_every_two_way_split(core):
    for cut in range(len(STREAM) + 1):
        reader = core.frames.FrameReader()
        out = feed_all(reader, [STREAM[:cut], STREAM[cut:]])
        assert merge_data(out) == STREAM_EXPECTED, cut
        assert reader.skipped_bytes == STREAM_SKIPPED


@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=15))
def test_reader_random_split_points(core, cuts):
    bounds = [0, *sorted(cuts), len(STREAM)]
    reader = core.frames.FrameReader()
    out = feed_all(reader, [STREAM[a:b] for a, b in pairwise(bounds)])
    assert merge_data(out) == STREAM_EXPECTED
    assert reader.ended_cleanly()


@given(
    payload=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(0, 3100), max_size=20)
)
def test_data_passed_through_in_pieces(core, payload, cuts):
    data = frame(DATA, payload)
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    reader = core.frames.FrameReader()
    pieces = []
    for a, b in pairwise(bounds):
        out = reader.feed(data[a:b])
        # DATA is never held back: every payload byte of this slice comes out now.
        assert all(t == DATA and p for t, p in out)
        pieces.extend(p for _, p in out)
        header = len(data) - len(payload)
        assert sum(map(len, pieces)) == max(0, b - header)
    assert b"".join(pieces) == payload
    assert reader.ended_cleanly()


def test_data_piece_per_slice(core):
    payload = bytes(range(200))
    data = frame(DATA, payload)
    header = len(data) - len(payload)
    reader = core.frames.FrameReader()
    assert reader.feed(data[:header]) == []  # the header only
    assert not reader.ended_cleanly()
    pieces = [reader.feed(data[i : i + 50]) for i in range(header, len(data), 50)]
    assert [[(t, bytes(p)) for t, p in out] for out in pieces] == [
        [(DATA, payload[i : i + 50])] for i in range(0, 200, 50)
    ]
    assert reader.ended_cleanly()


@pytest.mark.parametrize("frame_type", KNOWN_BUFFERED, ids=hex)
def test_known_frames_buffered_whole(core, frame_type):
    payload = bytes(range(100)) * 3
    data = frame(frame_type, payload) + frame(DATA, b"after")
    for chunks in ([data], bytewise(data), [data[:1], data[1:150], data[150:]]):
        reader = core.frames.FrameReader()
        out = feed_all(reader, chunks)
        assert merge_data(out) == [(frame_type, payload), (DATA, b"after")]
        assert reader.ended_cleanly()


def test_headers_not_returned_before_complete(core):
    data = frame(HEADERS, b"h" * 100)
    reader = core.frames.FrameReader()
    for i in range(len(data) - 1):
        assert reader.feed(data[i : i + 1]) == []
    assert feed_all(reader, [data[-1:]]) == [(HEADERS, b"h" * 100)]


def test_empty_frames(core):
    data = frame(HEADERS) + frame(DATA) + frame(SETTINGS) + frame(0x21)
    reader = core.frames.FrameReader()
    assert feed_all(reader, [data]) == [(HEADERS, b""), (SETTINGS, b"")]
    assert reader.ended_cleanly()


@pytest.mark.parametrize("frame_type", RESERVED + UNKNOWN, ids=hex)
def test_unknown_and_reserved_frames_skipped(core, frame_type):
    data = frame(frame_type, b"u" * 40) + frame(HEADERS, b"h")
    for chunks in ([data], bytewise(data)):
        reader = core.frames.FrameReader()
        assert feed_all(reader, chunks) == [(HEADERS, b"h")]
        assert reader.skipped_bytes == 40
        assert reader.ended_cleanly()


@pytest.mark.parametrize("frame_type", UNASSIGNED_LOW, ids=hex)
def test_unassigned_low_frame_types_skipped(core, frame_type):
    # 0x0a-0x0c are neither HTTP/3 frames nor reserved HTTP/2 ones: unknown, so ignored
    # (RFC 9114 section 9), even when longer than max_frame_size.
    data = frame(frame_type, b"u" * 40) + frame(HEADERS, b"h")
    reader = core.frames.FrameReader()
    assert feed_all(reader, [data]) == [(HEADERS, b"h")]
    assert reader.skipped_bytes == 40
    reader = core.frames.FrameReader(max_frame_size=16)
    assert feed_all(reader, [data]) == [(HEADERS, b"h")]


def test_large_unknown_frame_streamed_with_bounded_memory(core):
    declared = 16 << 20
    block = bytes(64 << 10)
    reader = core.frames.FrameReader()
    tracemalloc.start()
    try:
        assert reader.feed(vint(0x21 + 0x1F * 7) + vint(declared)) == []
        for _ in range(declared // len(block)):
            assert reader.feed(block) == []
        out = reader.feed(frame(DATA, b"next"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"skipping 16 MiB peaked at {peak} traced bytes"
    assert feed_all(reader, []) == []
    assert [(t, bytes(p)) for t, p in out] == [(DATA, b"next")]
    assert reader.skipped_bytes == declared
    assert reader.ended_cleanly()


def test_large_data_frame_not_buffered(core):
    declared = 4 << 20
    block = bytes(64 << 10)
    reader = core.frames.FrameReader()
    assert reader.feed(vint(DATA) + vint(declared)) == []
    total = 0
    for _ in range(declared // len(block)):
        out = reader.feed(block)
        assert len(out) == 1
        total += len(out[0][1])
    assert total == declared
    assert reader.ended_cleanly()


def test_returned_payloads_do_not_alias_the_input(core):
    data = bytearray(frame(DATA, b"abc") + frame(HEADERS, b"hdr"))
    reader = core.frames.FrameReader()
    out = reader.feed(data)
    data[:] = bytes(len(data))
    assert [(t, bytes(p)) for t, p in out] == [(DATA, b"abc"), (HEADERS, b"hdr")]


# -- FrameReader: errors ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [vint(0x41), vint(0x41, 4), vint(0x41, 8)])
@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_wt_stream_signal_mid_stream(core, encoding, byte_at_a_time):
    data = frame(HEADERS, b"h") + encoding + vint(4)
    reader = core.frames.FrameReader()
    with pytest.raises(FrameError) as info:
        feed_all(reader, bytewise(data) if byte_at_a_time else [data])
    assert info.value.error_code == H3_FRAME_ERROR
    assert isinstance(info.value, H3ConnectionError)


@pytest.mark.parametrize("frame_type", HTTP2_FRAME_TYPES, ids=hex)
@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_http2_frame_types_unexpected(core, frame_type, byte_at_a_time):
    data = frame(DATA, b"d") + frame(frame_type, b"\x00" * 4)
    reader = core.frames.FrameReader()
    with pytest.raises(FrameUnexpected) as info:
        feed_all(reader, bytewise(data) if byte_at_a_time else [data])
    assert info.value.error_code == H3_FRAME_UNEXPECTED
    assert info.value.scope == "connection"


@pytest.mark.parametrize("frame_type", KNOWN_BUFFERED, ids=hex)
def test_oversize_known_frame_excessive_load(core, frame_type):
    reader = core.frames.FrameReader(max_frame_size=100)
    assert feed_all(reader, [frame(frame_type, b"x" * 100)]) == [(frame_type, b"x" * 100)]
    with pytest.raises(ExcessiveLoad) as info:
        # Refused from the header alone, before any payload is buffered.
        reader.feed(vint(frame_type) + vint(101))
    assert info.value.error_code == H3_EXCESSIVE_LOAD


def test_default_max_frame_size(core):
    default = core.frames.DEFAULT_MAX_FRAME_SIZE
    reader = core.frames.FrameReader()
    assert reader.max_frame_size == default
    with pytest.raises(ExcessiveLoad):
        reader.feed(vint(HEADERS) + vint(default + 1))
    # DATA and unknown frames have no cap.
    reader = core.frames.FrameReader()
    assert reader.feed(vint(DATA) + vint(default * 4)) == []
    reader = core.frames.FrameReader()
    assert reader.feed(vint(0x21) + vint(default * 4)) == []


# -- ended_cleanly ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "clean"),
    [
        (b"", True),
        (frame(HEADERS, b"abc"), True),
        (frame(DATA, b"abc"), True),
        (frame(0x21, b"abc"), True),
        (frame(DATA), True),
        (vint(HEADERS), False),  # inside the header
        (vint(0x2B603742)[:2], False),  # inside the type
        (vint(DATA) + vint(300)[:1], False),  # inside the length
        (frame(DATA, b"abc")[:-1], False),  # inside DATA
        (frame(HEADERS, b"abc")[:-1], False),  # inside a buffered frame
        (frame(0x21, b"abc")[:-1], False),  # inside a skipped frame
    ],
)
def test_ended_cleanly(core, data, clean):
    for chunks in ([data], bytewise(data)):
        reader = core.frames.FrameReader()
        feed_all(reader, chunks)
        assert reader.ended_cleanly() is clean


def test_ended_cleanly_tracks_every_byte(core):
    first = frame(HEADERS, b"hh")
    second = frame(DATA, b"dd")
    third = frame(0x21, b"ss")
    data = first + second + third
    boundaries = {len(first), len(first + second), len(data)}
    reader = core.frames.FrameReader()
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        assert reader.ended_cleanly() == (i + 1 in boundaries), i


# -- hypothesis: streams, differential --------------------------------------------------------


@st.composite
def frame_streams(draw, allow_errors: bool = False):
    types = [DATA, DATA, HEADERS, SETTINGS, GOAWAY, *RESERVED, *UNKNOWN]
    if allow_errors:
        types += [0x41, *HTTP2_FRAME_TYPES, *UNASSIGNED_LOW]
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        frame_type = draw(st.sampled_from(types))
        payload = draw(st.binary(max_size=300))
        for value in (frame_type, len(payload)):
            minimal = len(vint(value))
            parts.append(
                vint(value, draw(st.sampled_from([n for n in (1, 2, 4, 8) if n >= minimal])))
            )
        parts.append(payload)
    return b"".join(parts)


def run_reader(impl, chunks, max_frame_size=200):
    reader = impl.frames.FrameReader(max_frame_size=max_frame_size)
    out = []
    try:
        for chunk in chunks:
            out.extend((t, bytes(p)) for t, p in reader.feed(chunk))
    except (FrameError, FrameUnexpected, ExcessiveLoad) as exc:
        return merge_data(out), type(exc), None, None
    return merge_data(out), None, reader.skipped_bytes, reader.ended_cleanly()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@given(stream=frame_streams(), cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_reader_split_points_identical(core, stream, cuts):
    whole = run_reader(core, [stream])
    assert run_reader(core, split(stream, cuts)) == whole


@given(
    stream=frame_streams(allow_errors=True),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
    max_frame_size=st.sampled_from([0, 50, 200, 65536]),
)
def test_reader_differential(core_pair, stream, cuts, max_frame_size):
    pure, compiled = core_pair
    chunks = split(stream, cuts)
    assert run_reader(compiled, chunks, max_frame_size) == run_reader(pure, chunks, max_frame_size)


@pytest.mark.parametrize("buffer_type", [bytearray, memoryview])
def test_encode_frame_buffer_types_agree(core_pair, buffer_type):
    # The twins must accept the same arguments: code tested against the pure core must not
    # fail only when compiled (or the other way round).
    results = []
    for impl in core_pair:
        try:
            results.append(impl.frames.encode_frame(DATA, buffer_type(b"xy")))
        except TypeError:
            results.append(TypeError)
    assert results[0] == results[1]


@given(
    settings=st.dictionaries(settings_ids, st.integers(0, 2**62 - 1), max_size=10),
    session_id=st.integers(0, 2**62 - 1),
    unidirectional=st.booleans(),
)
def test_encoders_differential(core_pair, settings, session_id, unidirectional):
    pure, compiled = core_pair
    assert compiled.frames.encode_settings(settings) == pure.frames.encode_settings(settings)
    assert compiled.frames.encode_wt_stream_header(
        session_id, unidirectional
    ) == pure.frames.encode_wt_stream_header(session_id, unidirectional)
