"""QUIC varints (RFC 9000 section 16): vectors, boundaries, truncation, differential."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anywt.core.errors import TruncatedVarint

VARINT_MAX = 2**62 - 1

# RFC 9000 Appendix A.1 (protocol.md section 5).
A1_VECTORS = [
    ("c2197c5eff14e88c", 151288809941952652),
    ("9d7f3e7d", 494878333),
    ("7bbd", 15293),
    ("25", 37),
    ("4025", 37),  # non-minimal
]

# Minimal encodings at the length boundaries (protocol.md section 5).
BOUNDARIES = [
    (0, "00"),
    (63, "3f"),
    (64, "4040"),
    (16383, "7fff"),
    (16384, "80004000"),
    (2**30 - 1, "bfffffff"),
    (2**30, "c000000040000000"),
    (VARINT_MAX, "ffffffffffffffff"),
]

# Protocol constants as minimal varints (protocol.md section 5).
CONSTANTS = [
    (0x41, "4041"),
    (0x54, "4054"),
    (0x2843, "6843"),
    (0x78AE, "800078ae"),
    (0x190B4D3D, "990b4d3d"),
    (0x2B603742, "ab603742"),
    (0xC671706A, "c0000000c671706a"),
    (0x14E9CD29, "94e9cd29"),
    (0x2C7CF000, "ac7cf000"),
    (0x2B61, "6b61"),
    (0x33, "33"),
    (0x52E4A40FA8DB, "c00052e4a40fa8db"),
]

BAD_VALUES = [-1, -(2**62), 2**62, 2**63, 2**64]

varints = st.integers(min_value=0, max_value=VARINT_MAX)


def mixed_varints() -> st.SearchStrategy[int]:
    """Values spread over all four encoded lengths."""
    return st.one_of(
        st.integers(0, 63),
        st.integers(64, 16383),
        st.integers(16384, 2**30 - 1),
        st.integers(2**30, VARINT_MAX),
    )


def non_minimal(value: int, length: int) -> bytes:
    """``value`` encoded on ``length`` bytes (1, 2, 4 or 8)."""
    prefix = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[length]
    raw = bytearray(value.to_bytes(length, "big"))
    assert raw[0] & 0xC0 == 0
    raw[0] |= prefix
    return bytes(raw)


# -- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(("hexbytes", "value"), A1_VECTORS)
def test_rfc9000_a1_vectors(core, hexbytes, value):
    data = bytes.fromhex(hexbytes)
    assert core.varint.decode_varint(data) == (value, len(data))
    reader = core.varint.ByteReader(data)
    assert reader.pull_varint() == value
    assert reader.at_end()


@pytest.mark.parametrize(("value", "hexbytes"), BOUNDARIES + CONSTANTS)
def test_decode_known_encodings(core, value, hexbytes):
    data = bytes.fromhex(hexbytes)
    assert core.varint.decode_varint(data) == (value, len(data))


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
@pytest.mark.parametrize(("hexbytes", "value"), A1_VECTORS)
def test_decode_at_offset_from_any_buffer(core, buffer_type, hexbytes, value):
    encoded = bytes.fromhex(hexbytes)
    data = b"\xaa\xbb\xcc" + encoded + b"\x3f\xff"
    buf = buffer_type(data)
    assert core.varint.decode_varint(buf, 3) == (value, 3 + len(encoded))
    # Followed by another varint that is read from where the first ended.
    assert core.varint.decode_varint(buf, 3 + len(encoded)) == (0x3F, 4 + len(encoded))


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_decode_sequence_from_any_buffer(core, buffer_type):
    values = [0, 63, 64, 16383, 16384, 2**30 - 1, 2**30, VARINT_MAX]
    out = bytearray()
    for value in values:
        core.varint.encode_varint(value, out)
    buf = buffer_type(bytes(out))
    pos = 0
    decoded = []
    while pos < len(out):
        value, pos = core.varint.decode_varint(buf, pos)
        decoded.append(value)
    assert decoded == values
    assert pos == len(out)


@pytest.mark.parametrize("length", [1, 2, 4, 8])
@pytest.mark.parametrize("value", [0, 0x25, 0x3F])
def test_non_minimal_encodings_accepted(core, value, length):
    data = non_minimal(value, length)
    assert core.varint.decode_varint(data) == (value, length)
    assert core.varint.ByteReader(data).pull_varint() == value


def test_signal_0x41_non_minimal(core):
    # protocol.md case 2: 0x41 as 80 00 00 41 (and on 8 bytes).
    assert core.varint.decode_varint(bytes.fromhex("80000041")) == (0x41, 4)
    assert core.varint.decode_varint(bytes.fromhex("c000000000000041")) == (0x41, 8)
    assert core.varint.decode_varint(bytes.fromhex("4054")) == (0x54, 2)
    # The encoder always writes the minimal form.
    assert core.varint.varint_bytes(0x41) == bytes.fromhex("4041")


def _all_encodings() -> list[bytes]:
    encodings = [bytes.fromhex(h) for h, _ in A1_VECTORS]
    encodings += [bytes.fromhex(h) for _, h in BOUNDARIES + CONSTANTS]
    encodings.append(non_minimal(0x41, 4))
    encodings.append(non_minimal(0x41, 8))
    return encodings


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_every_truncated_prefix_raises_truncated_varint(core, buffer_type):
    for encoded in _all_encodings():
        for cut in range(len(encoded)):
            prefix = buffer_type(encoded[:cut])
            with pytest.raises(TruncatedVarint):
                core.varint.decode_varint(prefix)
            # At an offset, too.
            padded = buffer_type(b"\x00\x00" + encoded[:cut])
            with pytest.raises(TruncatedVarint):
                core.varint.decode_varint(padded, 2)


def test_truncated_prefix_in_byte_reader(core):
    for encoded in _all_encodings():
        for cut in range(len(encoded)):
            reader = core.varint.ByteReader(encoded[:cut])
            with pytest.raises(TruncatedVarint):
                reader.pull_varint()
            # Bounded by ``end`` inside a longer buffer.
            reader = core.varint.ByteReader(encoded + b"\x00" * 8, 0, cut)
            with pytest.raises(TruncatedVarint):
                reader.pull_varint()


def test_truncated_varint_is_a_value_error_not_index_error(core):
    assert issubclass(TruncatedVarint, ValueError)
    try:
        core.varint.decode_varint(b"\xc0\x00")
    except IndexError:  # pragma: no cover - the bug this guards against
        pytest.fail("decode_varint raised IndexError on a truncated varint")
    except TruncatedVarint:
        pass


@pytest.mark.parametrize("pos", [0, 3, 4, 100])
def test_decode_past_the_end(core, pos):
    data = b"\x01\x02\x03"
    if pos < len(data):
        assert core.varint.decode_varint(data, pos) == (data[pos], pos + 1)
    else:
        with pytest.raises(TruncatedVarint):
            core.varint.decode_varint(data, pos)
        with pytest.raises(TruncatedVarint):
            core.varint.decode_varint(bytearray(data), pos)
        with pytest.raises(TruncatedVarint):
            core.varint.decode_varint(memoryview(data), pos)


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("pos", [-1, -2, -9])
def test_decode_negative_offset(core, buffer_type, pos):
    # A negative offset is outside the buffer, whatever the buffer type (no Python-style
    # indexing from the end).
    with pytest.raises(TruncatedVarint):
        core.varint.decode_varint(buffer_type(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"), pos)


def test_decode_empty(core):
    for empty in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(TruncatedVarint):
            core.varint.decode_varint(empty)


# -- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "hexbytes"), BOUNDARIES + CONSTANTS)
def test_encode_exact_bytes(core, value, hexbytes):
    expected = bytes.fromhex(hexbytes)
    out = bytearray(b"prefix")
    core.varint.encode_varint(value, out)
    assert out == b"prefix" + expected
    assert core.varint.varint_bytes(value) == expected
    assert type(core.varint.varint_bytes(value)) is bytes
    assert core.varint.varint_size(value) == len(expected)


@pytest.mark.parametrize("value", BAD_VALUES)
def test_encode_rejects_out_of_range(core, value):
    out = bytearray(b"keep")
    with pytest.raises(ValueError):
        core.varint.encode_varint(value, out)
    assert out == b"keep"
    with pytest.raises(ValueError):
        core.varint.varint_size(value)
    with pytest.raises(ValueError):
        core.varint.varint_bytes(value)


def test_varint_max_constant(core):
    assert core.varint.VARINT_MAX == VARINT_MAX


@pytest.mark.parametrize(
    ("first", "length"),
    [(0x00, 1), (0x3F, 1), (0x40, 2), (0x7F, 2), (0x80, 4), (0xBF, 4), (0xC0, 8), (0xFF, 8)],
)
def test_varint_length(core, first, length):
    assert core.varint.varint_length(first) == length


# -- ByteReader ----------------------------------------------------------------------------


def test_byte_reader_pulls(core):
    data = bytes.fromhex("25 4025 7bbd") + b"hello" + bytes.fromhex("9d7f3e7d") + b"tail"
    reader = core.varint.ByteReader(data)
    assert reader.remaining() == len(data)
    assert not reader.at_end()
    assert reader.pull_varint() == 37
    assert reader.pull_varint() == 37
    assert reader.pull_varint() == 15293
    assert reader.pos == 5
    assert reader.pull_bytes(5) == b"hello"
    assert reader.pull_varint() == 494878333
    assert reader.remaining() == 4
    assert reader.pull_rest() == b"tail"
    assert reader.at_end()
    assert reader.remaining() == 0
    assert reader.pull_rest() == b""
    assert reader.pull_bytes(0) == b""
    with pytest.raises(TruncatedVarint):
        reader.pull_varint()


def test_byte_reader_window(core):
    data = b"\x00\x01\x02\x03\x04\x05"
    reader = core.varint.ByteReader(data, 1, 4)
    assert reader.remaining() == 3
    assert reader.pull_varint() == 1
    assert reader.pull_rest() == b"\x02\x03"
    assert reader.at_end()
    # end < 0 or past the buffer means "to the end".
    assert core.varint.ByteReader(data, 2).pull_rest() == b"\x02\x03\x04\x05"
    assert core.varint.ByteReader(data, 2, 100).remaining() == 4


@pytest.mark.parametrize("buffer_type", [bytearray, memoryview])
def test_byte_reader_accepts_buffers(core, buffer_type):
    reader = core.varint.ByteReader(buffer_type(b"\x40\x41xyz"))
    assert reader.pull_varint() == 0x41
    rest = reader.pull_rest()
    assert rest == b"xyz"
    assert type(rest) is bytes


def test_byte_reader_pull_bytes_past_end(core):
    reader = core.varint.ByteReader(b"abc")
    with pytest.raises(ValueError):
        reader.pull_bytes(4)
    assert reader.pos == 0
    with pytest.raises(ValueError):
        reader.pull_bytes(-1)
    # A length from a maximal varint does not wrap around.
    with pytest.raises(ValueError):
        reader.pull_bytes(VARINT_MAX)
    assert reader.pull_bytes(3) == b"abc"


@pytest.mark.parametrize("length", [2**62, 2**63 - 1])
def test_byte_reader_pull_bytes_huge_length(core, length):
    # pos + length must not wrap around in the compiled twin.
    reader = core.varint.ByteReader(b"abcdef", 2)
    with pytest.raises((ValueError, OverflowError)):
        reader.pull_bytes(length)
    assert reader.pos == 2
    assert reader.pull_rest() == b"cdef"


@pytest.mark.parametrize(("pos", "end"), [(-1, -1), (4, -1), (3, 2)])
def test_byte_reader_bad_start(core, pos, end):
    with pytest.raises(ValueError):
        core.varint.ByteReader(b"abc", pos, end)


# -- properties ----------------------------------------------------------------------------


@given(value=varints)
def test_round_trip(core, value):
    encoded = core.varint.varint_bytes(value)
    assert len(encoded) == core.varint.varint_size(value)
    assert core.varint.decode_varint(encoded) == (value, len(encoded))
    assert core.varint.ByteReader(encoded).pull_varint() == value


@given(values=st.lists(mixed_varints(), max_size=20), junk=st.binary(max_size=8))
def test_round_trip_sequence(core, values, junk):
    out = bytearray(junk)
    for value in values:
        core.varint.encode_varint(value, out)
    reader = core.varint.ByteReader(bytes(out), len(junk))
    assert [reader.pull_varint() for _ in values] == values
    assert reader.at_end()


@given(value=varints, data=st.data())
def test_non_minimal_round_trip(core, value, data):
    minimal = core.varint.varint_size(value)
    length = data.draw(st.sampled_from([n for n in (1, 2, 4, 8) if n >= minimal]))
    encoded = non_minimal(value, length)
    assert core.varint.decode_varint(encoded) == (value, length)
    assert core.varint.decode_varint(memoryview(b"xx" + encoded), 2) == (value, length + 2)


@given(data=st.binary(max_size=12), pos=st.integers(0, 14))
def test_decode_arbitrary_bytes_never_crashes(core, data, pos):
    try:
        value, end = core.varint.decode_varint(data, pos)
    except TruncatedVarint:
        assert pos >= len(data) or pos + (1 << (data[pos] >> 6)) > len(data)
    else:
        assert 0 <= value <= VARINT_MAX
        assert end == pos + (1 << (data[pos] >> 6))


# -- differential: pure vs compiled --------------------------------------------------------


@given(values=st.lists(mixed_varints(), max_size=20))
def test_differential_encode_decode(core_pair, values):
    for writer, reader in (core_pair, core_pair[::-1]):
        out = bytearray()
        for value in values:
            writer.varint.encode_varint(value, out)
        data = bytes(out)
        pos = 0
        decoded = []
        while pos < len(data):
            value, pos = reader.varint.decode_varint(data, pos)
            decoded.append(value)
        assert decoded == values
        byte_reader = reader.varint.ByteReader(data)
        assert [byte_reader.pull_varint() for _ in values] == values


@given(value=st.integers(min_value=-(2**64), max_value=2**64))
def test_differential_encode_agrees(core_pair, value):
    pure, compiled = core_pair
    results = []
    for impl in (pure, compiled):
        try:
            results.append(("ok", impl.varint.varint_bytes(value), impl.varint.varint_size(value)))
        except ValueError:
            results.append(("error",))
    assert results[0] == results[1]
    assert (results[0][0] == "ok") == (0 <= value <= VARINT_MAX)


@given(data=st.binary(max_size=12), pos=st.integers(0, 14))
def test_differential_decode_agrees(core_pair, data, pos):
    results = []
    for impl in core_pair:
        try:
            results.append(impl.varint.decode_varint(data, pos))
        except TruncatedVarint:
            results.append("truncated")
    assert results[0] == results[1]
