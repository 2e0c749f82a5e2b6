"""An upper bound of what a QPACK header block decodes to, found without decoding it.

pylsqpack hands back the whole decoded field list at once, and a field line
of one or two bytes may name a dynamic-table entry of several kilobytes: a
64 KiB block could decode to hundreds of megabytes before
SETTINGS_MAX_FIELD_SECTION_SIZE is checked on the result.  The engine walks
the block's field lines first (RFC 9204 section 4.5) and adds up, per line,
the most it can decode to, counted the way RFC 9114 section 4.2.2 counts a
section: name + value + 32 bytes per field.  A dynamic-table entry counts as
the whole table capacity we allowed (an entry never exceeds it), a static
entry as :data:`STATIC_FIELD_MAX`, and a Huffman-coded string as 8/5 of its
length (the shortest Huffman code is 5 bits).

The walk checks only what it needs: on a malformed or truncated block it
returns what it has counted so far, and the QPACK decoder then refuses the
block with its own error.
"""

from __future__ import annotations

__all__ = ["STATIC_FIELD_MAX", "section_size_bound"]

#: name + value + 32 of the largest field of the QPACK static table
#: (content-security-policy, 76 bytes of name and value), rounded up.
STATIC_FIELD_MAX = 128
#: Longest prefix integer accepted (a 62-bit value fits in 10 bytes after the prefix).
_MAX_INTEGER_BYTES = 10


class _Truncated(Exception):
    """The block ends (or an integer overflows) inside a field line."""


def _integer(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """The prefix integer (RFC 7541 section 5.1) at ``pos`` and the position after it."""
    if pos >= len(block):
        raise _Truncated
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    for _ in range(_MAX_INTEGER_BYTES):
        if pos >= len(block):
            raise _Truncated
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    raise _Truncated


def _string(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """The most bytes a string literal decodes to, and the position after it."""
    huffman = block[pos] & (1 << prefix_bits) if pos < len(block) else 0
    length, pos = _integer(block, pos, prefix_bits)
    if pos + length > len(block):
        raise _Truncated
    return (length * 8 // 5 if huffman else length), pos + length


def section_size_bound(block: bytes, table_capacity: int) -> int:
    """The largest section size (name + value + 32 per field) ``block`` can decode to.

    ``table_capacity`` is the dynamic table capacity we announced
    (SETTINGS_QPACK_MAX_TABLE_CAPACITY): no entry of the peer's table is larger.
    """
    bound = 0
    end = len(block)
    try:
        # Encoded Required Insert Count, then the sign bit and Delta Base.
        _, pos = _integer(block, 0, 8)
        _, pos = _integer(block, pos, 7)
        while pos < end:
            first = block[pos]
            if first & 0x80:
                # Indexed field line (static when T is set).
                _, pos = _integer(block, pos, 6)
                bound += STATIC_FIELD_MAX if first & 0x40 else table_capacity
            elif first & 0x40:
                # Literal field line with a name reference, then the value.
                _, pos = _integer(block, pos, 4)
                name = STATIC_FIELD_MAX if first & 0x10 else table_capacity
                value, pos = _string(block, pos, 7)
                bound += name + value
            elif first & 0x20:
                # Literal field line with a literal name (3-bit prefix, H at 0x08).
                name, pos = _string(block, pos, 3)
                value, pos = _string(block, pos, 7)
                bound += name + value + 32
            elif first & 0x10:
                # Indexed field line with a post-base index.
                _, pos = _integer(block, pos, 4)
                bound += table_capacity
            else:
                # Literal field line with a post-base name reference.
                _, pos = _integer(block, pos, 3)
                value, pos = _string(block, pos, 7)
                bound += table_capacity + value
    except _Truncated:
        pass
    return bound
