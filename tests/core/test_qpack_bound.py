"""The pre-scan bound of a QPACK header block (core/qpack_bound.py) against pylsqpack.

Whatever a peer's encoder produces, with or without a dynamic table and
Huffman coding, the bound is never below the size the block really decodes
to; and it is tight enough that ordinary requests stay far below the
engine's refusal threshold.
"""

from __future__ import annotations

import pylsqpack
from hypothesis import given, settings
from hypothesis import strategies as st

from anywt.core.qpack_bound import STATIC_FIELD_MAX, section_size_bound

CAPACITY = 4096

_names = st.sampled_from(
    [b":method", b":path", b":authority", b"origin", b"user-agent", b"x-custom", b"accept"]
) | st.binary(min_size=1, max_size=40).map(lambda raw: raw.lower())
_values = st.sampled_from([b"CONNECT", b"/", b"GET", b"example.com", b""]) | st.binary(max_size=300)
_header_lists = st.lists(st.tuples(_names, _values), min_size=1, max_size=24)


def _size(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 32 for name, value in headers)


def _pair(capacity: int) -> tuple[pylsqpack.Encoder, pylsqpack.Decoder]:
    encoder = pylsqpack.Encoder()
    decoder = pylsqpack.Decoder(capacity, 16)
    encoder.apply_settings(max_table_capacity=capacity, blocked_streams=16)
    return encoder, decoder


@settings(max_examples=200, deadline=None)
@given(st.lists(_header_lists, min_size=1, max_size=6), st.sampled_from([0, 256, CAPACITY]))
def test_bound_is_never_below_the_decoded_size(
    sections: list[list[tuple[bytes, bytes]]], capacity: int
) -> None:
    encoder, decoder = _pair(capacity)
    for index, headers in enumerate(sections):
        stream_id = index * 4
        encoder_data, block = encoder.encode(stream_id, headers)
        decoder.feed_encoder(encoder_data)
        _, decoded = decoder.feed_header(stream_id, block)
        assert decoded == headers
        assert section_size_bound(block, capacity) >= _size(headers)


def test_static_and_literal_fields_are_bounded_closely() -> None:
    encoder = pylsqpack.Encoder()  # no dynamic table
    request = [
        (b":method", b"CONNECT"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/chat?room=1"),
        (b":protocol", b"webtransport-h3"),
        (b"origin", b"https://example.com"),
    ]
    _, block = encoder.encode(0, request)
    bound = section_size_bound(block, CAPACITY)
    assert _size(request) <= bound <= len(request) * STATIC_FIELD_MAX + 2 * len(block)


def test_dynamic_references_count_at_the_table_capacity() -> None:
    # Required Insert Count 1, Base 1, then three indexed lines naming relative index 0
    # and one post-base indexed line.
    block = b"\x02\x00" + b"\x80" * 3 + b"\x10"
    assert section_size_bound(block, CAPACITY) == 4 * CAPACITY


def test_huffman_strings_count_at_eight_fifths() -> None:
    # A literal name of 5 Huffman bytes and a literal value of 10 Huffman bytes.
    block = b"\x00\x00" + bytes([0x20 | 0x08 | 5]) + b"n" * 5 + bytes([0x80 | 10]) + b"v" * 10
    assert section_size_bound(block, CAPACITY) == 8 + 16 + 32


def test_truncated_or_malformed_blocks_stop_the_count() -> None:
    assert section_size_bound(b"", CAPACITY) == 0
    assert section_size_bound(b"\x00", CAPACITY) == 0
    # A string that claims more bytes than the block has.
    assert section_size_bound(b"\x00\x00\x27\xff", CAPACITY) == 0
    # An integer that never ends.
    assert section_size_bound(b"\x00\x00\xff" + b"\xff" * 20, CAPACITY) == 0
    # Counted up to the first bad line.
    assert section_size_bound(b"\x00\x00\xd9\x27", CAPACITY) == STATIC_FIELD_MAX
