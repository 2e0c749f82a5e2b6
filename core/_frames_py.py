"""HTTP/3 framing that WebTransport needs (RFC 9114 section 7, RFC 9220).

Frame header codec, SETTINGS encode/decode, the WebTransport stream
preambles (uni stream type 0x54 / bidi signal 0x41, each followed by the
session id), and ``FrameReader``: an incremental frame parser for request and
control streams that passes DATA payloads through as they arrive and skips
unknown frames without buffering them.  This file is the source of both the
pure-Python module and, with ``_frames_c.pxd``, the compiled
``anywt.core._frames_c``.
"""

from __future__ import annotations

from . import _varint_py as _varint
from .errors import ExcessiveLoad, FrameError, FrameUnexpected, SettingsError, TruncatedVarint

__all__ = [
    "FRAME_DATA",
    "FRAME_HEADERS",
    "FRAME_CANCEL_PUSH",
    "FRAME_SETTINGS",
    "FRAME_PUSH_PROMISE",
    "FRAME_GOAWAY",
    "FRAME_MAX_PUSH_ID",
    "FRAME_WT_STREAM",
    "STREAM_CONTROL",
    "STREAM_PUSH",
    "STREAM_QPACK_ENCODER",
    "STREAM_QPACK_DECODER",
    "STREAM_WEBTRANSPORT",
    "DEFAULT_MAX_FRAME_SIZE",
    "FrameReader",
    "encode_frame",
    "encode_frame_header",
    "encode_settings",
    "parse_settings",
    "encode_wt_stream_header",
    "is_reserved_type",
]

FRAME_DATA = 0x00
FRAME_HEADERS = 0x01
FRAME_CANCEL_PUSH = 0x03
FRAME_SETTINGS = 0x04
FRAME_PUSH_PROMISE = 0x05
FRAME_GOAWAY = 0x07
FRAME_MAX_PUSH_ID = 0x0D
#: The bidi-stream signal: a frame type with no length, only ever first on a stream.
FRAME_WT_STREAM = 0x41

STREAM_CONTROL = 0x00
STREAM_PUSH = 0x01
STREAM_QPACK_ENCODER = 0x02
STREAM_QPACK_DECODER = 0x03
STREAM_WEBTRANSPORT = 0x54

#: Default cap on a buffered (non-DATA) frame such as HEADERS or SETTINGS.
DEFAULT_MAX_FRAME_SIZE = 65536

# Frame types of HTTP/2 that HTTP/3 reserves: receiving one is H3_FRAME_UNEXPECTED.
_HTTP2_FRAME_TYPES = (0x02, 0x06, 0x08, 0x09)

# FrameReader states.
_HEADER = 0
_DATA = 1
_BUFFER = 2
_SKIP = 3


def _is_known_frame(frame_type: int) -> bool:
    """HEADERS, CANCEL_PUSH, SETTINGS, PUSH_PROMISE, GOAWAY, MAX_PUSH_ID: buffered whole.

    Every other type (ORIGIN 0x0c, unassigned, extensions) is skipped.
    """
    return (
        frame_type == 0x01
        or frame_type == 0x03
        or frame_type == 0x04
        or frame_type == 0x05
        or frame_type == 0x07
        or frame_type == 0x0D
    )


def is_reserved_type(value: int) -> bool:
    """The GREASE codepoints 0x1f * N + 0x21 (frame, stream, setting and error types)."""
    return value >= 0x21 and (value - 0x21) % 0x1F == 0


def encode_frame_header(frame_type: int, length: int) -> bytes:
    """Type and length of a frame whose payload follows separately."""
    out = bytearray()
    _varint.encode_varint(frame_type, out)
    _varint.encode_varint(length, out)
    return bytes(out)


def encode_frame(frame_type: int, payload: bytes | bytearray | memoryview) -> bytes:
    """A whole frame."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    out = bytearray()
    _varint.encode_varint(frame_type, out)
    _varint.encode_varint(len(payload), out)
    out += payload
    return bytes(out)


def encode_settings(settings: dict[int, int]) -> bytes:
    """The payload of a SETTINGS frame."""
    out = bytearray()
    for identifier, value in settings.items():
        _varint.encode_varint(identifier, out)
        _varint.encode_varint(value, out)
    return bytes(out)


def parse_settings(payload: bytes) -> dict[int, int]:
    """Decode a SETTINGS payload.

    Duplicates and the HTTP/2 setting ids are H3_SETTINGS_ERROR; a truncated
    payload is H3_FRAME_ERROR; GREASE ids are dropped.
    """
    reader = _varint.ByteReader(payload)
    settings: dict[int, int] = {}
    seen: set[int] = set()
    try:
        while not reader.at_end():
            identifier = reader.pull_varint()
            value = reader.pull_varint()
            if identifier in seen:
                raise SettingsError(f"setting {identifier:#x} appears twice")
            seen.add(identifier)
            if identifier == 0x00 or 0x02 <= identifier <= 0x05:
                raise SettingsError(f"setting {identifier:#x} is reserved for HTTP/2")
            if not is_reserved_type(identifier):
                settings[identifier] = value
    except TruncatedVarint:
        raise FrameError("truncated SETTINGS frame") from None
    return settings


def encode_wt_stream_header(session_id: int, unidirectional: bool) -> bytes:
    """The preamble of a WebTransport stream: 0x54 (uni) or 0x41 (bidi), then the session id."""
    out = bytearray()
    _varint.encode_varint(STREAM_WEBTRANSPORT if unidirectional else FRAME_WT_STREAM, out)
    _varint.encode_varint(session_id, out)
    return bytes(out)


class FrameReader:
    """Incremental parser of the frames on an HTTP/3 stream.

    ``feed(data)`` returns a list of ``(frame_type, payload)``.  DATA payloads
    are passed through in pieces as they arrive (one DATA frame may come out
    as several entries, never an empty one); other known frames are buffered
    whole up to ``max_frame_size`` (larger is ``ExcessiveLoad``); reserved and
    unknown frame types are skipped without buffering.  ``ended_cleanly()``
    says whether the stream may end here.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._state = _HEADER
        self._header = b""
        self._type = 0
        self._remaining = 0
        self._chunks: list[bytes] = []
        #: Bytes of unknown frames skipped so far.
        self.skipped_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Consume ``data``; return the frames (and DATA pieces) it completes."""
        if type(data) is not bytes:
            data = bytes(data)
        return self._feed(data)

    def _feed(self, data: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pos = 0
        size = len(data)
        while pos < size:
            state = self._state
            if state == _HEADER:
                pos = self._read_header(data, pos, size, out)
                continue
            take = size - pos
            if take > self._remaining:
                take = self._remaining
            if state == _DATA:
                if pos == 0 and take == size:
                    out.append((0, data))
                else:
                    out.append((0, data[pos : pos + take]))
            elif state == _BUFFER:
                self._chunks.append(data[pos : pos + take])
            else:
                self.skipped_bytes += take
            pos += take
            self._remaining -= take
            if self._remaining == 0:
                if state == _BUFFER:
                    out.append((self._type, b"".join(self._chunks)))
                    self._chunks.clear()
                self._state = _HEADER
        return out

    def _read_header(self, data: bytes, pos: int, size: int, out: list[tuple[int, bytes]]) -> int:
        """Parse a frame header at ``pos``; return the new position."""
        held = len(self._header)
        if held:
            buf = self._header + data[pos : pos + 16]
            start = 0
        else:
            buf = data
            start = pos
        end = len(buf)
        type_len = _varint.varint_length(buf[start])
        if start + type_len >= end:
            self._hold(buf, start, held)
            return size
        length_len = _varint.varint_length(buf[start + type_len])
        header_end = start + type_len + length_len
        if header_end > end:
            self._hold(buf, start, held)
            return size
        frame_type = _varint.read_varint(buf, start, type_len)
        length = _varint.read_varint(buf, start + type_len, length_len)
        if held:
            pos += header_end - held
            self._header = b""
        else:
            pos = header_end
        self._type = frame_type
        if frame_type == 0x00:  # DATA: passed through as it arrives
            if length:
                self._remaining = length
                self._state = _DATA
            return pos
        if frame_type == 0x41:  # WT_STREAM signal: only valid as a stream's first bytes
            raise FrameError("WT_STREAM signal (0x41) in the middle of a stream")
        if frame_type in _HTTP2_FRAME_TYPES:
            raise FrameUnexpected(f"HTTP/2 frame type {frame_type:#x} on an HTTP/3 stream")
        if _is_known_frame(frame_type):
            if length > self.max_frame_size:
                raise ExcessiveLoad(
                    f"frame type {frame_type:#x} of {length} bytes exceeds {self.max_frame_size}"
                )
            if size - pos >= length:
                # Fast path: the whole payload is in this slice.
                out.append((frame_type, data[pos : pos + length]))
                return pos + length
            self._remaining = length
            self._state = _BUFFER
            return pos
        # Unknown or reserved extension frame: skipped (RFC 9114 section 9).
        if length:
            self._remaining = length
            self._state = _SKIP
        return pos

    def _hold(self, buf: bytes, start: int, held: int) -> None:
        self._header = bytes(buf) if held else buf[start:]

    def ended_cleanly(self) -> bool:
        """True when the stream may end here: not inside a frame."""
        return self._state == _HEADER and not len(self._header)
