"""The HTTP Capsule Protocol (RFC 9297) as WebTransport over HTTP/3 uses it.

``CapsuleParser`` is fed the concatenated DATA-frame payloads of a CONNECT
stream in slices of any size.  It returns each complete capsule of a known
type as ``(type, value)``; unknown and GREASE types are skipped as their bytes
arrive, never buffered, so a peer cannot make it hold a large unknown
capsule.  Known capsules are size-capped; the two HTTP/2-only WebTransport
capsules are refused.  This file is the source of both the pure-Python module
and, with ``_capsule_c.pxd``, the compiled ``anywt.core._capsule_c``.
"""

from __future__ import annotations

from . import _varint_py as _varint
from .errors import MalformedCapsule, ProhibitedCapsule

__all__ = [
    "CAPSULE_DATAGRAM",
    "CAPSULE_CLOSE_SESSION",
    "CAPSULE_DRAIN_SESSION",
    "CAPSULE_MAX_DATA",
    "CAPSULE_MAX_STREAM_DATA",
    "CAPSULE_MAX_STREAMS_BIDI",
    "CAPSULE_MAX_STREAMS_UNI",
    "CAPSULE_DATA_BLOCKED",
    "CAPSULE_STREAM_DATA_BLOCKED",
    "CAPSULE_STREAMS_BLOCKED_BIDI",
    "CAPSULE_STREAMS_BLOCKED_UNI",
    "CLOSE_REASON_MAX",
    "DEFAULT_MAX_CAPSULE_SIZE",
    "CapsuleParser",
    "encode_capsule",
    "encode_close_session",
    "encode_drain_session",
    "encode_varint_capsule",
    "parse_close_session",
    "parse_varint_payload",
    "truncate_reason",
]

CAPSULE_DATAGRAM = 0x00
CAPSULE_CLOSE_SESSION = 0x2843
CAPSULE_DRAIN_SESSION = 0x78AE
CAPSULE_MAX_DATA = 0x190B4D3D
CAPSULE_MAX_STREAM_DATA = 0x190B4D3E  # WebTransport over HTTP/2 only
CAPSULE_MAX_STREAMS_BIDI = 0x190B4D3F
CAPSULE_MAX_STREAMS_UNI = 0x190B4D40
CAPSULE_DATA_BLOCKED = 0x190B4D41
CAPSULE_STREAM_DATA_BLOCKED = 0x190B4D42  # WebTransport over HTTP/2 only
CAPSULE_STREAMS_BLOCKED_BIDI = 0x190B4D43
CAPSULE_STREAMS_BLOCKED_UNI = 0x190B4D44

#: WT_CLOSE_SESSION carries at most 1024 bytes of UTF-8 after its 32-bit code.
CLOSE_REASON_MAX = 1024
#: Default cap on a buffered known capsule (DATAGRAM capsules above it are dropped).
DEFAULT_MAX_CAPSULE_SIZE = 65536

# Parser states.
_HEADER = 0
_BODY = 1
_SKIP = 2

# What _limit_for returns besides a size cap.
_UNKNOWN = -1
_PROHIBITED = -2


def _limit_for(capsule_type: int, max_capsule_size: int) -> int:
    """The size cap of a known type, ``_UNKNOWN`` or ``_PROHIBITED``.

    Codepoints are literals so the compiled build compares C integers.
    """
    if capsule_type == 0x00:  # DATAGRAM
        return max_capsule_size
    if capsule_type == 0x2843:  # WT_CLOSE_SESSION: 32-bit code + reason
        return 4 + 1024
    if capsule_type == 0x78AE:  # WT_DRAIN_SESSION
        return 0
    if 0x190B4D3D <= capsule_type <= 0x190B4D44:  # the flow-control family
        if capsule_type == 0x190B4D3E or capsule_type == 0x190B4D42:  # HTTP/2 only
            return _PROHIBITED
        return 8
    return _UNKNOWN


class CapsuleParser:
    """Incremental parser of a capsule stream.

    ``feed(data)`` returns the capsules completed by ``data`` as a list of
    ``(type, value)``; ``feed_eof()`` checks that the stream did not end
    inside a capsule.  Errors are ``MalformedCapsule`` (H3_MESSAGE_ERROR) and
    ``ProhibitedCapsule`` (WT_FLOW_CONTROL_ERROR); after one, the parser is
    unusable.
    """

    def __init__(self, max_capsule_size: int = DEFAULT_MAX_CAPSULE_SIZE) -> None:
        if max_capsule_size < 0:
            raise ValueError("max_capsule_size must not be negative")
        self.max_capsule_size = max_capsule_size
        self._state = _HEADER
        self._header = b""
        self._type = 0
        self._remaining = 0
        self._chunks: list[bytes] = []
        #: Bytes skipped so far: unknown capsules and dropped DATAGRAM capsules.
        self.skipped_bytes = 0
        #: Unknown capsules skipped so far.
        self.skipped_capsules = 0
        #: DATAGRAM capsules dropped for exceeding ``max_capsule_size``.
        self.dropped_datagrams = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Consume ``data``; return the completed known capsules."""
        if type(data) is not bytes:
            data = bytes(data)
        return self._feed(data)

    def _feed(self, data: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pos = 0
        size = len(data)
        while pos < size:
            state = self._state
            if state == _SKIP:
                take = size - pos
                if take > self._remaining:
                    take = self._remaining
                pos += take
                self._remaining -= take
                self.skipped_bytes += take
                if self._remaining == 0:
                    self._state = _HEADER
            elif state == _BODY:
                take = size - pos
                if take > self._remaining:
                    take = self._remaining
                # Keep references to the slices; join once when the value is complete.
                if pos == 0 and take == size:
                    self._chunks.append(data)
                else:
                    self._chunks.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    out.append((self._type, b"".join(self._chunks)))
                    self._chunks.clear()
                    self._state = _HEADER
            else:
                pos = self._read_header(data, pos, size, out)
        return out

    def _read_header(self, data: bytes, pos: int, size: int, out: list[tuple[int, bytes]]) -> int:
        """Parse a type and a length at ``pos``; return the new position."""
        held = len(self._header)
        if held:
            # The header began in an earlier slice: join at most 16 more bytes.
            buf = self._header + data[pos : pos + 16]
            start = 0
        else:
            buf = data
            start = pos
        end = len(buf)
        type_len = _varint.varint_length(buf[start])
        if start + type_len >= end:
            return self._hold_header(buf, start, pos, size)
        length_len = _varint.varint_length(buf[start + type_len])
        header_end = start + type_len + length_len
        if header_end > end:
            return self._hold_header(buf, start, pos, size)
        capsule_type = _varint.read_varint(buf, start, type_len)
        length = _varint.read_varint(buf, start + type_len, length_len)
        if held:
            pos += header_end - held
            self._header = b""
        else:
            pos = header_end
        limit = _limit_for(capsule_type, self.max_capsule_size)
        if limit == _UNKNOWN:
            self.skipped_capsules += 1
            if length:
                self._remaining = length
                self._state = _SKIP
            return pos
        if limit == _PROHIBITED:
            raise ProhibitedCapsule(
                f"capsule type {capsule_type:#x} is only defined for WebTransport over HTTP/2"
            )
        if length > limit:
            if capsule_type == CAPSULE_DATAGRAM:
                # RFC 9297 section 3.5: discard unusable datagrams without buffering.
                self.dropped_datagrams += 1
                self._remaining = length
                self._state = _SKIP
                return pos
            raise MalformedCapsule(
                f"capsule type {capsule_type:#x} declares {length} bytes, "
                f"more than its limit {limit}"
            )
        if size - pos >= length:
            # Fast path: the whole value is in this slice.
            out.append((capsule_type, data[pos : pos + length]))
            return pos + length
        self._type = capsule_type
        self._remaining = length
        self._state = _BODY
        return pos

    def _hold_header(self, buf: bytes, start: int, pos: int, size: int) -> int:
        """Keep an incomplete header for the next slice; it is at most 16 bytes."""
        if len(self._header):
            self._header = bytes(buf)
        else:
            self._header = buf[start:]
        return size

    def feed_eof(self) -> None:
        """The stream ended (FIN): that must fall on a capsule boundary."""
        if self._state != _HEADER or len(self._header):
            raise MalformedCapsule("the stream ended in the middle of a capsule")

    @property
    def in_capsule(self) -> bool:
        """True while a capsule has begun but not ended."""
        return self._state != _HEADER or len(self._header) > 0


def encode_capsule(capsule_type: int, value: bytes | bytearray | memoryview = b"") -> bytes:
    """A whole capsule: type, length, value."""
    if type(value) is not bytes:
        value = bytes(value)
    out = bytearray()
    _varint.encode_varint(capsule_type, out)
    _varint.encode_varint(len(value), out)
    out += value
    return bytes(out)


def encode_varint_capsule(capsule_type: int, number: int) -> bytes:
    """A capsule whose value is one varint (WT_MAX_DATA and friends)."""
    value = bytearray()
    _varint.encode_varint(number, value)
    return encode_capsule(capsule_type, bytes(value))


def parse_varint_payload(value: bytes) -> int:
    """The single varint of a flow-control capsule; anything else is malformed."""
    if not len(value):
        raise MalformedCapsule("empty flow-control capsule")
    reader = _varint.ByteReader(value)
    length = _varint.varint_length(value[0])
    if length != len(value):
        raise MalformedCapsule(
            f"flow-control capsule of {len(value)} bytes holds a {length}-byte varint"
        )
    return reader.pull_varint()


def truncate_reason(reason: str, limit: int = CLOSE_REASON_MAX) -> bytes:
    """UTF-8 encode ``reason``, cut to at most ``limit`` bytes on a character boundary."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    return encoded[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def encode_close_session(code: int, reason: str = "") -> bytes:
    """WT_CLOSE_SESSION: a 32-bit application code and a UTF-8 reason (truncated to 1024 bytes)."""
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"session close code {code} is outside 0..0xffffffff")
    return encode_capsule(CAPSULE_CLOSE_SESSION, code.to_bytes(4, "big") + truncate_reason(reason))


def parse_close_session(value: bytes) -> tuple[int, str]:
    """Decode a WT_CLOSE_SESSION value into ``(code, reason)``."""
    if len(value) < 4:
        raise MalformedCapsule(f"WT_CLOSE_SESSION of {len(value)} bytes has no 32-bit code")
    if len(value) > 4 + CLOSE_REASON_MAX:
        raise MalformedCapsule("WT_CLOSE_SESSION reason longer than 1024 bytes")
    try:
        reason = value[4:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedCapsule(f"WT_CLOSE_SESSION reason is not UTF-8: {exc}") from None
    return int.from_bytes(value[:4], "big"), reason


def encode_drain_session() -> bytes:
    """WT_DRAIN_SESSION (always empty)."""
    return encode_capsule(CAPSULE_DRAIN_SESSION)
