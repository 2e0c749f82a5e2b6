"""QUIC variable-length integers (RFC 9000 section 16).

The two most significant bits of the first byte give the length (1, 2, 4 or
8 bytes); the value is the remaining bits, big-endian, up to 2**62 - 1.
Decoders accept non-minimal encodings (HTTP/3 and WebTransport never require
the minimal form); the encoder always writes the minimal one.

This file is the source of both the pure-Python module and, with
``_varint_c.pxd``, the compiled ``anywt.core._varint_c``.
"""

from __future__ import annotations

from .errors import TruncatedVarint

__all__ = [
    "VARINT_MAX",
    "decode_varint",
    "encode_varint",
    "varint_bytes",
    "varint_size",
    "varint_length",
    "read_varint",
    "ByteReader",
]

VARINT_MAX = 0x3FFFFFFFFFFFFFFF


def varint_length(first: int) -> int:
    """The encoded length of the varint whose first byte is ``first``."""
    return 1 << (first >> 6)


def read_varint(buf: bytes, pos: int, length: int) -> int:
    """Decode a varint of a known ``length`` from ``bytes`` (bounds checked by the caller)."""
    value = buf[pos] & 0x3F
    for i in range(pos + 1, pos + length):
        value = (value << 8) | buf[i]
    return value


def decode_varint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode the varint at ``pos``; return ``(value, position after it)``.

    Raises ``TruncatedVarint`` (a ``ValueError``) when the buffer ends early.
    """
    if pos < 0:
        raise TruncatedVarint(f"no varint at negative offset {pos}")
    if type(buf) is not bytes:
        buf = bytes(buf[pos : pos + 8])
        value, end = decode_varint(buf, 0)
        return value, pos + end
    return _decode_bytes(buf, pos)


def _decode_bytes(buf: bytes, pos: int) -> tuple[int, int]:
    size = len(buf)
    if pos < 0 or pos >= size:
        raise TruncatedVarint(f"no varint at offset {pos} of a {size}-byte buffer")
    first = buf[pos]
    length = 1 << (first >> 6)
    if pos + length > size:
        raise TruncatedVarint(
            f"truncated varint at offset {pos}: needs {length} bytes, {size - pos} available"
        )
    value = first & 0x3F
    for i in range(pos + 1, pos + length):
        value = (value << 8) | buf[i]
    return value, pos + length


def varint_size(value: int) -> int:
    """How many bytes the minimal encoding of ``value`` takes."""
    _check_range(value)
    if value <= 0x3F:
        return 1
    if value <= 0x3FFF:
        return 2
    if value <= 0x3FFFFFFF:
        return 4
    return 8


def _check_range(value: int) -> None:
    if value < 0:
        raise ValueError(f"varint value {value} is negative")
    if value > VARINT_MAX:
        raise ValueError(f"varint value {value} exceeds 2**62 - 1")


def encode_varint(value: int, out: bytearray) -> None:
    """Append the minimal encoding of ``value`` to ``out``."""
    _check_range(value)
    _encode_unchecked(value, out)


def _encode_unchecked(value: int, out: bytearray) -> None:
    if value <= 0x3F:
        out.append(value)
    elif value <= 0x3FFF:
        out.append(0x40 | (value >> 8))
        out.append(value & 0xFF)
    elif value <= 0x3FFFFFFF:
        out.append(0x80 | (value >> 24))
        out.append((value >> 16) & 0xFF)
        out.append((value >> 8) & 0xFF)
        out.append(value & 0xFF)
    else:
        out.append(0xC0 | (value >> 56))
        for shift in (48, 40, 32, 24, 16, 8, 0):
            out.append((value >> shift) & 0xFF)


def varint_bytes(value: int) -> bytes:
    """The minimal encoding of ``value`` as ``bytes``."""
    out = bytearray()
    encode_varint(value, out)
    return bytes(out)


class ByteReader:
    """Reads varints and byte strings from ``bytes``, front to back.

    The shape of aioquic's ``Buffer.pull_*`` for parsing complete frame and
    capsule payloads; running past ``end`` raises ``TruncatedVarint`` or
    ``ValueError`` instead of returning partial data.
    """

    def __init__(self, data: bytes, pos: int = 0, end: int = -1) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        if end < 0 or end > size:
            end = size
        if pos < 0 or pos > end:
            raise ValueError(f"start offset {pos} outside 0..{end}")
        self.data = data
        self.pos = pos
        self.end = end

    def pull_varint(self) -> int:
        """Decode the next varint."""
        data = self.data
        pos = self.pos
        if pos >= self.end:
            raise TruncatedVarint(f"no varint at offset {pos}: the buffer ends at {self.end}")
        first = data[pos]
        length = 1 << (first >> 6)
        if pos + length > self.end:
            raise TruncatedVarint(
                f"truncated varint at offset {pos}: needs {length} bytes, "
                f"{self.end - pos} available"
            )
        value = first & 0x3F
        for i in range(pos + 1, pos + length):
            value = (value << 8) | data[i]
        self.pos = pos + length
        return value

    def pull_bytes(self, length: int) -> bytes:
        """The next ``length`` bytes."""
        pos = self.pos
        if length < 0 or length > self.end - pos:
            raise ValueError(
                f"cannot read {length} bytes at offset {pos}: the buffer ends at {self.end}"
            )
        self.pos = pos + length
        return self.data[pos : pos + length]

    def pull_rest(self) -> bytes:
        """Everything up to the end."""
        pos = self.pos
        self.pos = self.end
        return self.data[pos : self.end]

    def remaining(self) -> int:
        """How many bytes are left."""
        return self.end - self.pos

    def at_end(self) -> bool:
        """True when everything has been read."""
        return self.pos >= self.end
