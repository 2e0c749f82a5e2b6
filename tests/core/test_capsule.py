"""The Capsule Protocol parser and encoders (RFC 9297; protocol.md sections 2.3, 4, 8)."""

from __future__ import annotations

import tracemalloc
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anywt.core.errors import FlowControlError, MalformedCapsule, MessageError, ProhibitedCapsule

DATAGRAM = 0x00
CLOSE = 0x2843
DRAIN = 0x78AE
MAX_DATA = 0x190B4D3D
MAX_STREAM_DATA = 0x190B4D3E  # HTTP/2 only: prohibited
MAX_STREAMS_BIDI = 0x190B4D3F
MAX_STREAMS_UNI = 0x190B4D40
DATA_BLOCKED = 0x190B4D41
STREAM_DATA_BLOCKED = 0x190B4D42  # HTTP/2 only: prohibited
STREAMS_BLOCKED_BIDI = 0x190B4D43
STREAMS_BLOCKED_UNI = 0x190B4D44
FLOW_TYPES = [
    MAX_DATA,
    MAX_STREAMS_BIDI,
    MAX_STREAMS_UNI,
    DATA_BLOCKED,
    STREAMS_BLOCKED_BIDI,
    STREAMS_BLOCKED_UNI,
]
KNOWN_TYPES = [DATAGRAM, CLOSE, DRAIN, *FLOW_TYPES]
PROHIBITED_TYPES = [MAX_STREAM_DATA, STREAM_DATA_BLOCKED]
# WT over HTTP/2 only, not defined for HTTP/3: treated as unknown.
H2_ONLY_UNKNOWN = [0x190B4D38, 0x190B4D39, 0x190B4D3A, 0x190B4D3B, 0x190B4D3C]

H3_MESSAGE_ERROR = 0x10E
WT_FLOW_CONTROL_ERROR = 0x045D4487


def grease(n: int) -> int:
    return 0x29 * n + 0x17


GREASE_SMALL = grease(0)  # 0x17, one byte
GREASE_4 = grease(1_000_000)  # a 4-byte varint
GREASE_8 = grease(2**40)  # an 8-byte varint, like Chromium's
UNKNOWN_TYPES = [0x01, 0x3F, 0x2842, 0x78AF, 0x190B4D45, GREASE_SMALL, GREASE_4, GREASE_8]


def vint(value: int, length: int = 0) -> bytes:
    """A varint on ``length`` bytes (0: minimal), independent of the code under test."""
    if not length:
        length = 1 if value < 2**6 else 2 if value < 2**14 else 4 if value < 2**30 else 8
    raw = bytearray(value.to_bytes(length, "big"))
    raw[0] |= {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[length]
    return bytes(raw)


def capsule(capsule_type: int, value: bytes = b"") -> bytes:
    return vint(capsule_type) + vint(len(value)) + value


def feed_all(parser, chunks) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        result = parser.feed(chunk)
        assert isinstance(result, list)
        out.extend(result)
    return out


def counters(parser) -> tuple[int, int, int]:
    return parser.skipped_bytes, parser.skipped_capsules, parser.dropped_datagrams


def normalise(capsules) -> list[tuple[int, bytes]]:
    return [(t, bytes(v)) for t, v in capsules]


# A stream of every kind of capsule: known, unknown, GREASE, empty, non-minimal.
MIXED_STREAM = b"".join(
    [
        capsule(DATAGRAM, b"hello"),
        capsule(GREASE_8, b"\xff" * 37),
        capsule(CLOSE, (0x1234).to_bytes(4, "big") + "bye ✓".encode()),
        capsule(GREASE_SMALL),
        capsule(DRAIN),
        capsule(0x190B4D3A, b"h2 only"),
        capsule(MAX_DATA, vint(1_000_000)),
        capsule(DATAGRAM),
        vint(MAX_STREAMS_BIDI, 8) + vint(1, 4) + vint(7),  # non-minimal type and length
        vint(DRAIN, 8) + vint(0, 8),
        capsule(DATAGRAM, bytes(range(256)) * 3),
        capsule(GREASE_4, b"g" * 300),
    ]
)
MIXED_EXPECTED = [
    (DATAGRAM, b"hello"),
    (CLOSE, (0x1234).to_bytes(4, "big") + "bye ✓".encode()),
    (DRAIN, b""),
    (MAX_DATA, vint(1_000_000)),
    (DATAGRAM, b""),
    (MAX_STREAMS_BIDI, b"\x07"),
    (DRAIN, b""),
    (DATAGRAM, bytes(range(256)) * 3),
]
MIXED_SKIPPED = (37 + 0 + 7 + 300, 4)


# -- feeding ---------------------------------------------------------------------------------


def test_feed_whole(core):
    parser = core.capsule.CapsuleParser()
    assert normalise(parser.feed(MIXED_STREAM)) == MIXED_EXPECTED
    assert counters(parser)[:2] == MIXED_SKIPPED
    assert parser.dropped_datagrams == 0
    assert not parser.in_capsule
    parser.feed_eof()


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_feed_one_byte_at_a_time(core, buffer_type):
    parser = core.capsule.CapsuleParser()
    chunks = [buffer_type(MIXED_STREAM[i : i + 1]) for i in range(len(MIXED_STREAM))]
    assert normalise(feed_all(parser, chunks)) == MIXED_EXPECTED
    assert counters(parser)[:2] == MIXED_SKIPPED
    parser.feed_eof()


def test_feed_every_two_way_split(core):
    for cut in range(len(MIXED_STREAM) + 1):
        parser = core.capsule.CapsuleParser()
        out = feed_all(parser, [MIXED_STREAM[:cut], MIXED_STREAM[cut:]])
        assert normalise(out) == MIXED_EXPECTED, cut
        assert counters(parser)[:2] == MIXED_SKIPPED
        parser.feed_eof()


def test_feed_empty_slices(core):
    parser = core.capsule.CapsuleParser()
    assert parser.feed(b"") == []
    out = feed_all(parser, [b"", MIXED_STREAM[:3], b"", MIXED_STREAM[3:], b""])
    assert normalise(out) == MIXED_EXPECTED


@given(cuts=st.lists(st.integers(0, len(MIXED_STREAM)), max_size=12))
def test_feed_random_split_points(core, cuts):
    bounds = [0, *sorted(cuts), len(MIXED_STREAM)]
    chunks = [MIXED_STREAM[a:b] for a, b in pairwise(bounds)]
    parser = core.capsule.CapsuleParser()
    assert normalise(feed_all(parser, chunks)) == MIXED_EXPECTED
    assert counters(parser)[:2] == MIXED_SKIPPED
    parser.feed_eof()


def test_many_capsules_in_one_slice(core):
    payloads = [bytes([i]) * i for i in range(100)]
    data = b"".join(capsule(DATAGRAM, p) for p in payloads)
    parser = core.capsule.CapsuleParser()
    assert normalise(parser.feed(data)) == [(DATAGRAM, p) for p in payloads]


def test_one_capsule_across_many_slices(core):
    value = bytes(range(256)) * 40  # 10240 bytes
    data = capsule(DATAGRAM, value)
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    parser = core.capsule.CapsuleParser()
    for chunk in chunks[:-1]:
        assert parser.feed(chunk) == []
        assert parser.in_capsule
    out = parser.feed(chunks[-1])
    assert normalise(out) == [(DATAGRAM, value)]
    assert type(out[0][1]) is bytes
    assert not parser.in_capsule


def test_capsule_spanning_three_frames_then_more(core):
    # protocol.md case 4: one capsule over three DATA frames, the third also starts the next.
    first = capsule(CLOSE, b"\x00\x00\x00\x07" + b"r" * 50)
    second = capsule(DRAIN)
    stream = first + second
    parser = core.capsule.CapsuleParser()
    assert parser.feed(stream[:1]) == []
    assert parser.feed(stream[1:20]) == []
    out = parser.feed(stream[20:])
    assert normalise(out) == [(CLOSE, first[3:]), (DRAIN, b"")]


def test_returned_values_do_not_alias_the_input(core):
    data = bytearray(capsule(DATAGRAM, b"abc") + capsule(DATAGRAM, b"def")[:4])
    parser = core.capsule.CapsuleParser()
    out = parser.feed(data)
    data[:] = b"\x00" * len(data)
    assert normalise(out) == [(DATAGRAM, b"abc")]
    assert normalise(parser.feed(b"f")) == [(DATAGRAM, b"def")]


# -- unknown, GREASE, H2-only ----------------------------------------------------------------


@pytest.mark.parametrize("capsule_type", UNKNOWN_TYPES + H2_ONLY_UNKNOWN)
def test_unknown_types_skipped_and_counted(core, capsule_type):
    data = capsule(capsule_type, b"x" * 10) + capsule(DATAGRAM, b"after")
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        parser = core.capsule.CapsuleParser()
        assert normalise(feed_all(parser, chunks)) == [(DATAGRAM, b"after")]
        assert parser.skipped_capsules == 1
        assert parser.skipped_bytes == 10
        parser.feed_eof()


def test_grease_types(core):
    assert grease(0) == 0x17
    assert len(vint(GREASE_8)) == 8
    sizes = [0, 1, 2, 50, 1000, 70_000]
    data = b"".join(capsule(grease(n), b"?" * size) for n, size in enumerate(sizes))
    data += capsule(GREASE_4, b"4444") + capsule(GREASE_8, b"88888888")
    parser = core.capsule.CapsuleParser()
    assert parser.feed(data + capsule(DRAIN)) == [(DRAIN, b"")]
    assert parser.skipped_capsules == len(sizes) + 2
    assert parser.skipped_bytes == sum(sizes) + 12


def test_huge_unknown_capsule_skipped_in_constant_memory(core):
    declared = 1 << 30  # 1 GiB
    block = bytes(1 << 20)  # 1 MiB of zeros, allocated before tracing
    header = capsule(GREASE_8)[:-1] + vint(declared)
    follow = capsule(DATAGRAM, b"still parsing")
    last = block + follow
    parser = core.capsule.CapsuleParser()
    tracemalloc.start()
    try:
        assert parser.feed(header) == []
        for _ in range(64):  # the first 64 MiB
            assert parser.feed(block) == []
        assert parser.in_capsule
        assert parser.skipped_bytes == 64 << 20
        _, peak = tracemalloc.get_traced_memory()
        assert peak < 2 << 20, f"skipping 64 MiB peaked at {peak} traced bytes"
        for _ in range(64, 1023):  # the rest of the gigabyte but the last MiB
            assert parser.feed(block) == []
        assert parser.feed(last[:5]) == []
        out = parser.feed(last[5:])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"skipping 1 GiB peaked at {peak} traced bytes"
    assert normalise(out) == [(DATAGRAM, b"still parsing")]
    assert parser.skipped_capsules == 1
    assert parser.skipped_bytes == declared
    assert not parser.in_capsule


# -- size caps -------------------------------------------------------------------------------


def test_datagram_over_max_dropped_and_counted(core):
    parser = core.capsule.CapsuleParser(max_capsule_size=100)
    data = capsule(DATAGRAM, b"a" * 100) + capsule(DATAGRAM, b"b" * 101) + capsule(DRAIN)
    out = parser.feed(data)
    assert normalise(out) == [(DATAGRAM, b"a" * 100), (DRAIN, b"")]
    assert parser.dropped_datagrams == 1
    parser.feed_eof()


def test_datagram_over_max_dropped_across_slices(core):
    parser = core.capsule.CapsuleParser(max_capsule_size=1000)
    data = capsule(DATAGRAM, b"z" * 5000) + capsule(DATAGRAM, b"ok")
    out = feed_all(parser, [data[i : i + 333] for i in range(0, len(data), 333)])
    assert normalise(out) == [(DATAGRAM, b"ok")]
    assert parser.dropped_datagrams == 1


def test_default_max_capsule_size(core):
    default = core.capsule.DEFAULT_MAX_CAPSULE_SIZE
    assert default == 65536
    parser = core.capsule.CapsuleParser()
    data = capsule(DATAGRAM, bytes(default)) + capsule(DATAGRAM, bytes(default + 1))
    out = parser.feed(data + capsule(DRAIN))
    assert normalise(out) == [(DATAGRAM, bytes(default)), (DRAIN, b"")]
    assert parser.dropped_datagrams == 1


def test_zero_max_capsule_size(core):
    parser = core.capsule.CapsuleParser(max_capsule_size=0)
    out = parser.feed(capsule(DATAGRAM) + capsule(DATAGRAM, b"x") + capsule(DRAIN))
    assert normalise(out) == [(DATAGRAM, b""), (DRAIN, b"")]
    assert parser.dropped_datagrams == 1


def test_negative_max_capsule_size(core):
    with pytest.raises(ValueError):
        core.capsule.CapsuleParser(max_capsule_size=-1)


# -- malformed known capsules (H3_MESSAGE_ERROR) ----------------------------------------------


def assert_message_error(info) -> None:
    assert isinstance(info.value, MessageError)
    assert info.value.error_code == H3_MESSAGE_ERROR
    assert info.value.scope == "session"


@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_drain_with_length_is_malformed(core, byte_at_a_time):
    data = capsule(DRAIN, b"\x00")
    parser = core.capsule.CapsuleParser()
    with pytest.raises(MalformedCapsule) as info:
        feed_all(parser, [data[i : i + 1] for i in range(len(data))] if byte_at_a_time else [data])
    assert_message_error(info)


@pytest.mark.parametrize("capsule_type", FLOW_TYPES)
def test_flow_capsule_longer_than_a_varint_is_malformed(core, capsule_type):
    parser = core.capsule.CapsuleParser()
    with pytest.raises(MalformedCapsule) as info:
        parser.feed(capsule(capsule_type, vint(5, 8) + b"\x00"))
    assert_message_error(info)


@pytest.mark.parametrize(
    "value",
    [
        b"",  # empty
        b"\x05\x00",  # trailing byte
        vint(1000) + b"\x00",  # trailing byte after a 2-byte varint
        vint(5, 4) + b"\x00\x00\x00\x00",  # 8 bytes, a 4-byte varint and junk
        b"\x40",  # truncated 2-byte varint
        b"\x80\x00\x01",  # truncated 4-byte varint
        b"\xc0" + b"\x00" * 6,  # truncated 8-byte varint
    ],
)
def test_parse_varint_payload_malformed(core, value):
    # The parser hands these out (they fit the 8-byte cap); the payload check refuses them.
    parser = core.capsule.CapsuleParser()
    out = parser.feed(capsule(MAX_DATA, value))
    assert normalise(out) == [(MAX_DATA, value)]
    with pytest.raises(MalformedCapsule) as info:
        core.capsule.parse_varint_payload(value)
    assert_message_error(info)


@pytest.mark.parametrize(
    ("value", "number"),
    [(b"\x00", 0), (b"\x3f", 63), (vint(64), 64), (vint(7, 8), 7), (vint(2**62 - 1), 2**62 - 1)],
)
def test_parse_varint_payload_ok(core, value, number):
    assert core.capsule.parse_varint_payload(value) == number


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x00\x00\x01"])
def test_close_shorter_than_four_bytes(core, value):
    parser = core.capsule.CapsuleParser()
    assert normalise(parser.feed(capsule(CLOSE, value))) == [(CLOSE, value)]
    with pytest.raises(MalformedCapsule) as info:
        core.capsule.parse_close_session(value)
    assert_message_error(info)


def test_close_reason_1025_bytes_is_malformed(core):
    value = b"\x00\x00\x00\x01" + b"r" * 1025
    parser = core.capsule.CapsuleParser()
    with pytest.raises(MalformedCapsule) as info:
        parser.feed(capsule(CLOSE, value))
    assert_message_error(info)
    with pytest.raises(MalformedCapsule) as info:
        core.capsule.parse_close_session(value)
    assert_message_error(info)


def test_close_reason_1024_bytes_accepted(core):
    reason = "é" * 511 + "xx"  # 1024 bytes of UTF-8
    value = b"\xff\xff\xff\xff" + reason.encode()
    assert len(value) == 1028
    parser = core.capsule.CapsuleParser()
    data = capsule(CLOSE, value)
    out = feed_all(parser, [data[i : i + 100] for i in range(0, len(data), 100)])
    assert normalise(out) == [(CLOSE, value)]
    assert core.capsule.parse_close_session(out[0][1]) == (0xFFFFFFFF, reason)


@pytest.mark.parametrize(
    "reason", [b"\xff", b"abc\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"ok\x80ok", b"\xf4\x90\x80\x80"]
)
def test_close_reason_invalid_utf8_is_malformed(core, reason):
    with pytest.raises(MalformedCapsule) as info:
        core.capsule.parse_close_session(b"\x00\x00\x00\x00" + reason)
    assert_message_error(info)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"\x00\x00\x00\x00", (0, "")),
        (b"\x00\x00\x01\x00bye", (256, "bye")),
        (b"\xff\xff\xff\xff" + "ünïcødé ✓".encode(), (0xFFFFFFFF, "ünïcødé ✓")),
    ],
)
def test_parse_close_session(core, value, expected):
    assert core.capsule.parse_close_session(value) == expected


# -- prohibited HTTP/2-only capsules ----------------------------------------------------------


@pytest.mark.parametrize("capsule_type", PROHIBITED_TYPES)
@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_prohibited_h2_only_capsules(core, capsule_type, byte_at_a_time):
    data = capsule(DATAGRAM, b"before") + capsule(capsule_type, vint(10))
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_at_a_time else [data]
    parser = core.capsule.CapsuleParser()
    with pytest.raises(ProhibitedCapsule) as info:
        feed_all(parser, chunks)
    assert isinstance(info.value, FlowControlError)
    assert info.value.error_code == WT_FLOW_CONTROL_ERROR
    assert info.value.scope == "session"


@pytest.mark.parametrize("capsule_type", PROHIBITED_TYPES)
def test_prohibited_even_when_empty(core, capsule_type):
    parser = core.capsule.CapsuleParser()
    with pytest.raises(ProhibitedCapsule):
        parser.feed(capsule(capsule_type))


# -- end of stream ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(vint(CLOSE)[:1], id="inside-type"),
        pytest.param(vint(CLOSE), id="after-type"),
        pytest.param(vint(DATAGRAM) + vint(300)[:1], id="inside-length"),
        pytest.param(vint(GREASE_8)[:5], id="inside-8-byte-type"),
        pytest.param(capsule(DATAGRAM, b"abc")[:-1], id="inside-body"),
        pytest.param(capsule(CLOSE, bytes(40))[:-10], id="inside-close-body"),
        pytest.param(capsule(GREASE_8, b"x" * 50)[:-1], id="inside-skipped-body"),
        pytest.param(capsule(DATAGRAM, b"y" * 200)[:-1], id="inside-dropped-datagram"),
    ],
)
def test_feed_eof_mid_capsule(core, partial):
    for chunks in ([partial], [partial[i : i + 1] for i in range(len(partial))]):
        parser = core.capsule.CapsuleParser(max_capsule_size=100)
        feed_all(parser, [capsule(DRAIN), *chunks])
        assert parser.in_capsule
        with pytest.raises(MalformedCapsule) as info:
            parser.feed_eof()
        assert_message_error(info)


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"", id="empty"),
        pytest.param(capsule(DRAIN), id="drain"),
        pytest.param(capsule(GREASE_8), id="empty-unknown"),
        pytest.param(capsule(GREASE_8, b"z" * 9), id="unknown"),
        pytest.param(capsule(DATAGRAM, b"y" * 200), id="dropped-datagram"),
        pytest.param(MIXED_STREAM, id="mixed"),
    ],
)
def test_feed_eof_at_boundary(core, stream):
    parser = core.capsule.CapsuleParser(max_capsule_size=100)
    feed_all(parser, [stream[i : i + 1] for i in range(len(stream))])
    assert not parser.in_capsule
    parser.feed_eof()


def test_in_capsule_tracks_every_byte(core):
    data = capsule(DATAGRAM, b"abcdef") + capsule(GREASE_4, b"zz") + capsule(DRAIN)
    boundaries = {0, len(capsule(DATAGRAM, b"abcdef")), len(data) - len(capsule(DRAIN)), len(data)}
    parser = core.capsule.CapsuleParser()
    assert not parser.in_capsule
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        assert parser.in_capsule == (i + 1 not in boundaries), i


# -- encoders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (lambda c: c.encode_drain_session(), "800078ae00"),
        (lambda c: c.encode_capsule(0x78AE), "800078ae00"),
        (lambda c: c.encode_capsule(0, b"hi"), "00026869"),
        (lambda c: c.encode_capsule(0, b""), "0000"),
        (lambda c: c.encode_close_session(0), "684304" + "00000000"),
        (lambda c: c.encode_close_session(0x1234, "bye"), "684307" + "00001234" + "627965"),
        (lambda c: c.encode_close_session(0xFFFFFFFF, ""), "684304ffffffff"),
        (lambda c: c.encode_varint_capsule(0x190B4D3D, 1000), "990b4d3d" + "02" + "43e8"),
        (lambda c: c.encode_varint_capsule(0x190B4D3F, 0), "990b4d3f" + "01" + "00"),
        (lambda c: c.encode_varint_capsule(0x190B4D40, 100), "990b4d40" + "02" + "4064"),
        (lambda c: c.encode_varint_capsule(0x190B4D41, 2**62 - 1), "990b4d41" + "08" + "ff" * 8),
        (lambda c: c.encode_capsule(0x17, b"\x00" * 64), "174040" + "00" * 64),
    ],
)
def test_encoders_exact_bytes(core, encoded, expected):
    result = encoded(core.capsule)
    assert type(result) is bytes
    assert result.hex() == expected


def test_constants(core):
    c = core.capsule
    assert (c.CAPSULE_DATAGRAM, c.CAPSULE_CLOSE_SESSION, c.CAPSULE_DRAIN_SESSION) == (
        DATAGRAM,
        CLOSE,
        DRAIN,
    )
    assert [
        c.CAPSULE_MAX_DATA,
        c.CAPSULE_MAX_STREAMS_BIDI,
        c.CAPSULE_MAX_STREAMS_UNI,
        c.CAPSULE_DATA_BLOCKED,
        c.CAPSULE_STREAMS_BLOCKED_BIDI,
        c.CAPSULE_STREAMS_BLOCKED_UNI,
    ] == FLOW_TYPES
    assert [c.CAPSULE_MAX_STREAM_DATA, c.CAPSULE_STREAM_DATA_BLOCKED] == PROHIBITED_TYPES
    assert c.CLOSE_REASON_MAX == 1024


@pytest.mark.parametrize("code", [-1, 2**32])
def test_encode_close_session_code_range(core, code):
    with pytest.raises(ValueError):
        core.capsule.encode_close_session(code)


@pytest.mark.parametrize(
    ("reason", "expected_bytes"),
    [
        ("a" * 1024, 1024),
        ("a" * 1025, 1024),
        ("é" * 600, 1024),  # 2-byte characters: 512 fit exactly
        ("a" + "é" * 600, 1023),  # 2-byte characters straddling the limit
        ("€" * 400, 1023),  # 3-byte characters: 341 fit
        ("😀" * 300, 1024),  # 4-byte characters: 256 fit
        ("ab" + "😀" * 300, 1022),
        ("x" * 1022 + "€", 1022),
    ],
)
def test_encode_close_session_truncates_on_utf8_boundary(core, reason, expected_bytes):
    encoded = core.capsule.encode_close_session(7, reason)
    parser = core.capsule.CapsuleParser()
    ((capsule_type, value),) = parser.feed(encoded)
    assert capsule_type == CLOSE
    code, decoded = core.capsule.parse_close_session(value)
    assert code == 7
    assert len(decoded.encode()) == expected_bytes <= 1024
    assert reason.startswith(decoded)
    assert core.capsule.truncate_reason(reason) == decoded.encode()


@given(reason=st.text(max_size=1500))
def test_close_session_round_trip(core, reason):
    encoded = core.capsule.encode_close_session(0xDEADBEEF, reason)
    parser = core.capsule.CapsuleParser()
    ((capsule_type, value),) = parser.feed(encoded)
    assert capsule_type == CLOSE
    code, decoded = core.capsule.parse_close_session(value)
    assert code == 0xDEADBEEF
    assert reason.startswith(decoded)
    size = len(decoded.encode())
    if len(reason.encode()) <= 1024:
        assert decoded == reason
    else:
        # Cut on a character boundary: at most one (4-byte) character lost past the limit.
        assert 1024 - 3 <= size <= 1024


@given(number=st.integers(0, 2**62 - 1), capsule_type=st.sampled_from(FLOW_TYPES))
def test_varint_capsule_round_trip(core, number, capsule_type):
    parser = core.capsule.CapsuleParser()
    ((parsed_type, value),) = parser.feed(core.capsule.encode_varint_capsule(capsule_type, number))
    assert parsed_type == capsule_type
    assert core.capsule.parse_varint_payload(value) == number


# -- hypothesis: streams, splits, differential ------------------------------------------------


@st.composite
def varint_encodings(draw, value: int) -> bytes:
    minimal = len(vint(value))
    return vint(value, draw(st.sampled_from([n for n in (1, 2, 4, 8) if n >= minimal])))


@st.composite
def capsule_streams(draw, allow_errors: bool = False) -> bytes:
    types = st.sampled_from([*KNOWN_TYPES, *UNKNOWN_TYPES, *H2_ONLY_UNKNOWN, DATAGRAM, DATAGRAM])
    if allow_errors:
        types = st.one_of(types, st.sampled_from(PROHIBITED_TYPES))
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        capsule_type = draw(types)
        if capsule_type == DRAIN and not allow_errors:
            value = b""
        elif capsule_type in FLOW_TYPES and not allow_errors:
            value = draw(varint_encodings(draw(st.integers(0, 2**62 - 1))))
        elif capsule_type == CLOSE and not allow_errors:
            value = draw(st.binary(min_size=4, max_size=40))
        else:
            value = draw(st.binary(max_size=250))
        parts.append(draw(varint_encodings(capsule_type)))
        parts.append(draw(varint_encodings(len(value))))
        parts.append(value)
    return b"".join(parts)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def run_parser(impl, chunks, max_capsule_size=200):
    """Feed until an error: (capsules, error type, counters, in_capsule)."""
    parser = impl.capsule.CapsuleParser(max_capsule_size=max_capsule_size)
    out: list[tuple[int, bytes]] = []
    try:
        for chunk in chunks:
            out.extend(normalise(parser.feed(chunk)))
        parser.feed_eof()
    except (MalformedCapsule, ProhibitedCapsule) as exc:
        return out, type(exc), None, None
    return out, None, counters(parser), parser.in_capsule


@given(stream=capsule_streams(), cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_split_points_give_identical_results(core, stream, cuts):
    whole = run_parser(core, [stream])
    assert whole[1] is None
    assert run_parser(core, split(stream, cuts)) == whole


@given(
    stream=capsule_streams(allow_errors=True),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
    max_capsule_size=st.sampled_from([0, 10, 200, 65536]),
)
def test_differential_pure_vs_compiled(core_pair, stream, cuts, max_capsule_size):
    pure, compiled = core_pair
    chunks = split(stream, cuts)
    expected = run_parser(pure, chunks, max_capsule_size)
    assert run_parser(compiled, chunks, max_capsule_size) == expected
    if expected[1] is None:
        assert run_parser(compiled, [stream], max_capsule_size) == expected


@given(stream=capsule_streams(allow_errors=True), cut=st.integers(0, 10_000))
def test_differential_truncated_streams(core_pair, stream, cut):
    # A stream cut anywhere: both refuse or accept the FIN the same way.
    pure, compiled = core_pair
    truncated = stream[: cut % (len(stream) + 1)]
    assert run_parser(compiled, [truncated]) == run_parser(pure, [truncated])


@pytest.mark.parametrize("buffer_type", [bytearray, memoryview])
def test_encode_capsule_buffer_types_agree(core_pair, buffer_type):
    # The twins must accept the same arguments: code tested against the pure core must not
    # fail only when compiled (or the other way round).
    results = []
    for impl in core_pair:
        try:
            results.append(impl.capsule.encode_capsule(DATAGRAM, buffer_type(b"xy")))
        except TypeError:
            results.append(TypeError)
    assert results[0] == results[1]


@given(
    code=st.integers(0, 2**32 - 1),
    reason=st.text(max_size=1100),
    number=st.integers(0, 2**62 - 1),
    value=st.binary(max_size=100),
)
def test_differential_encoders(core_pair, code, reason, number, value):
    pure, compiled = core_pair
    assert compiled.capsule.encode_close_session(code, reason) == pure.capsule.encode_close_session(
        code, reason
    )
    assert compiled.capsule.encode_varint_capsule(
        MAX_DATA, number
    ) == pure.capsule.encode_varint_capsule(MAX_DATA, number)
    assert compiled.capsule.encode_capsule(GREASE_8, value) == pure.capsule.encode_capsule(
        GREASE_8, value
    )
    assert compiled.capsule.encode_drain_session() == pure.capsule.encode_drain_session()
