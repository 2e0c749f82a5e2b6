"""Fuzz targets: one function per parser of anywt's core, and the engine fed raw bytes.

Each target takes the fuzzer's bytes and returns nothing; it raises (an
``AssertionError`` or the exception that escaped) only when anywt
misbehaves:

* a parser raises anything but the protocol error it documents (with a wire
  code), or returns something its reference does not;
* the pure-Python and the compiled twin disagree (every parser target runs
  both when the compiled core is built: differential fuzzing);
* feeding the same bytes in other slices changes the result;
* the engine lets an exception escape, closes the connection with
  H3_INTERNAL_ERROR (0x102, its "I have a bug" path), uses a wire code that
  is not a protocol code, writes after closing, or holds more than its
  configured limits.

The same functions are driven by atheris (``fuzz/harness.py``, coverage
guided), by ``fuzz/run.py`` for long runs, and by random bytes when atheris
is not installed.  ``TARGETS`` maps their names to them.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pylsqpack
from wire import (
    APP_ERROR_FIRST,
    PEER_SETTINGS,
    SIGNAL_WT_BIDI,
    STREAM_WT_UNI,
    Peer,
    capsule,
    dec,
    enc,
    frame,
)

from anywt.core import errors, events, headers
from anywt.core.config import EngineConfig
from anywt.core.qpack_bound import section_size_bound

__all__ = ["TARGETS", "Data", "implementations"]


def _load(name: str) -> list[ModuleType]:
    """The pure module and, when it is built, the compiled one."""
    out = [importlib.import_module(f"anywt.core._{name}_py")]
    with contextlib.suppress(ImportError):
        out.append(importlib.import_module(f"anywt.core._{name}_c"))
    return out


def implementations() -> dict[str, int]:
    """How many implementations (pure, compiled) each target exercises."""
    return {name: len(_load(name)) for name in ("varint", "capsule", "frames", "engine")}


VARINT = _load("varint")
CAPSULE = _load("capsule")
FRAMES = _load("frames")
ENGINE = _load("engine")
VARINT_MAX = (1 << 62) - 1


class Data:
    """Reads structure out of the fuzzer's bytes; past the end everything is zero/empty."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        value = self.data[self.pos]
        self.pos += 1
        return value

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size).ljust(size, b"\x00"), "big")

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self.data))

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def pick(self, items: tuple[Any, ...] | list[Any]) -> Any:
        return items[self.byte() % len(items)]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _outcome(call: Callable[[], Any], allowed: tuple[type[BaseException], ...]) -> Any:
    """The result of ``call``, or ``("raised", type name)`` for an allowed exception."""
    try:
        return ("ok", call())
    except allowed as exc:
        return ("raised", type(exc).__name__)


def _same(results: list[Any], what: str) -> None:
    assert all(result == results[0] for result in results), f"{what}: twins disagree {results}"


def _chunks(data: bytes, cuts: bytes) -> list[bytes]:
    """``data`` in slices at the cut points ``cuts`` names (one per byte)."""
    points = sorted({c * len(data) // 256 for c in cuts})
    out = []
    last = 0
    for point in points:
        out.append(data[last:point])
        last = point
    out.append(data[last:])
    return out


# ---------------------------------------------------------------------------
# varint


def _ref_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    return dec(buf, pos)


def fuzz_varint(data: bytes) -> None:
    """decode_varint at every offset, ByteReader, encode: against a reference and each other."""
    other = data[0] % (len(data) + 1) if data else 0
    for pos in range(min(len(data), 9) + 1):
        buffers: tuple[bytes | bytearray | memoryview, ...] = (data,)
        if pos == other:
            buffers = (data, bytearray(data), memoryview(data))
        results = []
        for module in VARINT:
            for buf in buffers:
                results.append(
                    _outcome(lambda m=module, b=buf, p=pos: m.decode_varint(b, p), (ValueError,))
                )
        _same(results, f"decode_varint at {pos}")
        expected = _ref_varint(data, pos)
        if expected is None:
            assert results[0] == ("raised", "TruncatedVarint"), results[0]
        else:
            assert results[0] == ("ok", expected), (results[0], expected)
            if pos != other and pos:
                continue
            value, end = expected
            for module in VARINT:
                encoded = module.varint_bytes(value)
                assert len(encoded) == module.varint_size(value) <= end - pos
                assert encoded == enc(value)
                assert module.decode_varint(encoded, 0) == (value, len(encoded))
    # A reader over the whole buffer: the same values, then TruncatedVarint.
    outs = []
    for module in VARINT:
        reader = module.ByteReader(data[:64])
        values: list[Any] = []
        try:
            while not reader.at_end():
                values.append(reader.pull_varint())
        except errors.TruncatedVarint:
            values.append("truncated")
        outs.append(values)
    _same(outs, "ByteReader")
    # Encoding a number from the input: refused exactly above 2**62 - 1.
    number = int.from_bytes(data[:9], "big") >> (data[0] % 64 if data else 0)
    encoded = [
        _outcome(lambda m=m: m.varint_bytes(number), (ValueError, OverflowError)) for m in VARINT
    ]
    _same(encoded, "varint_bytes")
    assert (encoded[0][0] == "ok") == (number <= VARINT_MAX), (number, encoded[0])


# ---------------------------------------------------------------------------
# capsules

_KNOWN_LIMITS = {0x2843: 1028, 0x78AE: 0}
_FLOW_TYPES = range(0x190B4D3D, 0x190B4D45)
_PROHIBITED = (0x190B4D3E, 0x190B4D42)


def _ref_capsules(stream: bytes, max_size: int) -> tuple[list[tuple[int, bytes]], str | None]:
    """An independent capsule parser: (capsules, error name or None, eof error)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(stream):
        head = dec(stream, pos)
        if head is None:
            return out, "eof"
        capsule_type, after = head
        length_head = dec(stream, after)
        if length_head is None:
            return out, "eof"
        length, pos = length_head
        if capsule_type in _PROHIBITED:
            return out, "ProhibitedCapsule"
        if capsule_type == 0:
            limit = max_size
        elif capsule_type in _KNOWN_LIMITS:
            limit = _KNOWN_LIMITS[capsule_type]
        elif capsule_type in _FLOW_TYPES:
            limit = 8
        else:
            limit = -1
        if limit >= 0 and length > limit and capsule_type != 0:
            return out, "MalformedCapsule"
        if pos + length > len(stream):
            return out, "eof"
        if limit >= 0 and length <= limit:
            out.append((capsule_type, stream[pos : pos + length]))
        pos += length
    return out, None


def fuzz_capsule(data: bytes) -> None:
    """CapsuleParser in any slices, and the value decoders, against a reference parser."""
    d = Data(data)
    max_size = d.pick((0, 8, 1028, 65536, d.number(2)))
    cuts = d.take(d.byte() % 8)
    stream = d.rest()
    expected, expected_error = _ref_capsules(stream, max_size)
    results = []
    for module in CAPSULE:
        slicings = [[stream], _chunks(stream, cuts)]
        if len(stream) <= 48:
            slicings.append([stream[i : i + 1] for i in range(len(stream))])
        if module is not CAPSULE[0]:
            slicings = slicings[:2]
        for pieces in slicings:
            parser = module.CapsuleParser(max_size)
            got: list[tuple[int, bytes]] = []
            error = None
            try:
                for piece in pieces:
                    got.extend(parser.feed(piece))
                    if module is CAPSULE[0]:
                        # Memory: never more than one capsule's capped value, and a short header.
                        held = sum(len(chunk) for chunk in parser._chunks)
                        assert held <= max(max_size, 1028), held
                        assert len(parser._header) <= 16
            except errors.ProtocolError as exc:
                assert exc.error_code in (0x10E, 0x045D4487), exc
                error = type(exc).__name__
            if error is None:
                try:
                    parser.feed_eof()
                except errors.MalformedCapsule:
                    error = "eof"
            got = [(t, bytes(v)) for t, v in got]
            if error is None or error == "eof":
                assert got == expected, (got, expected)
            else:
                assert got == expected[: len(got)], (got, expected)
            results.append(error)
            assert error == expected_error, (error, expected_error)
    _same(results, "CapsuleParser")
    for capsule_type, value in expected:
        if capsule_type == 0x2843:
            outs = [
                _outcome(lambda m=m, v=value: m.parse_close_session(v), (errors.MalformedCapsule,))
                for m in CAPSULE
            ]
            _same(outs, "parse_close_session")
            if outs[0][0] == "ok":
                code, reason = outs[0][1]
                assert 0 <= code <= 0xFFFFFFFF and len(reason.encode()) <= 1024
                again = CAPSULE[0].encode_close_session(code, reason)
                assert again == capsule(0x2843, value), (again, value)
        elif capsule_type in _FLOW_TYPES:
            outs = [
                _outcome(lambda m=m, v=value: m.parse_varint_payload(v), (errors.MalformedCapsule,))
                for m in CAPSULE
            ]
            _same(outs, "parse_varint_payload")
            ref = dec(value)
            assert (outs[0][0] == "ok") == (ref is not None and ref[1] == len(value)), outs
    # Encoding the reason of a close from the input's text: at most 1024 bytes, on a boundary.
    text = stream.decode("utf-8", "replace") * (1 + d.byte() % 4)
    for module in CAPSULE:
        reason = module.truncate_reason(text)
        assert len(reason) <= 1024
        assert text.encode().startswith(reason)
        reason.decode("utf-8")


# ---------------------------------------------------------------------------
# HTTP/3 frames and SETTINGS

_HTTP2_FRAMES = (0x02, 0x06, 0x08, 0x09)
_KNOWN_FRAMES = (0x01, 0x03, 0x04, 0x05, 0x07, 0x0D)


def _ref_frames(stream: bytes, max_size: int) -> tuple[list[tuple[int, bytes]], str | None, bool]:
    """Frames (DATA merged), the error, and whether the stream ended on a frame boundary."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(stream):
        head = dec(stream, pos)
        if head is None:
            return _merge(out), None, False
        frame_type, after = head
        length_head = dec(stream, after)
        if length_head is None:
            return _merge(out), None, False
        length, pos = length_head
        if frame_type == 0x41:
            return _merge(out), "FrameError", False
        if frame_type in _HTTP2_FRAMES:
            return _merge(out), "FrameUnexpected", False
        if frame_type in _KNOWN_FRAMES and length > max_size:
            return _merge(out), "ExcessiveLoad", False
        payload = stream[pos : pos + length]
        if frame_type == 0:
            if payload:
                out.append((0, payload))
        elif frame_type in _KNOWN_FRAMES and len(payload) == length:
            out.append((frame_type, payload))
        if pos + length > len(stream):
            return _merge(out), None, False
        pos += length
    return _merge(out), None, True


def _merge(frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Adjacent DATA pieces joined (their boundaries carry no meaning)."""
    out: list[tuple[int, bytes]] = []
    for frame_type, payload in frames:
        if frame_type == 0 and out and out[-1][0] == 0:
            out[-1] = (0, out[-1][1] + payload)
        elif frame_type != 0 or payload:
            out.append((frame_type, bytes(payload)))
    return out


def fuzz_frames(data: bytes) -> None:
    """FrameReader in any slices against a reference; DATA passes through unbuffered."""
    d = Data(data)
    max_size = d.pick((0, 16, 65536, d.number(2)))
    cuts = d.take(d.byte() % 8)
    stream = d.rest()
    expected, expected_error, clean = _ref_frames(stream, max_size)
    results = []
    for module in FRAMES:
        for pieces in ([stream], _chunks(stream, cuts)):
            reader = module.FrameReader(max_size)
            got: list[tuple[int, bytes]] = []
            error = None
            try:
                for piece in pieces:
                    for frame_type, payload in reader.feed(piece):
                        assert frame_type != 0 or payload, "an empty DATA piece"
                        got.append((frame_type, bytes(payload)))
                    if module is FRAMES[0]:
                        held = sum(len(chunk) for chunk in reader._chunks)
                        assert held <= max_size, held
                        assert len(reader._header) <= 16
            except errors.ProtocolError as exc:
                assert exc.scope == "connection" and exc.error_code in (0x105, 0x106, 0x107), exc
                error = type(exc).__name__
            got = _merge(got)
            assert error == expected_error, (error, expected_error)
            if error is None:
                assert got == expected, (got, expected)
                assert reader.ended_cleanly() == clean
            else:
                assert _merge(got) == expected[: len(got)] or _prefix_ok(got, expected)
            results.append((error, got if error is None else None))
    _same(results, "FrameReader")


def _prefix_ok(got: list[tuple[int, bytes]], expected: list[tuple[int, bytes]]) -> bool:
    """After an error the slices seen so far may end inside a DATA frame of the reference."""
    if not got:
        return True
    if got[:-1] != expected[: len(got) - 1] or len(expected) < len(got):
        return False
    last, ref = got[-1], expected[len(got) - 1]
    return last[0] == ref[0] and ref[1].startswith(last[1])


def fuzz_settings(data: bytes) -> None:
    """parse_settings: a dict or H3_SETTINGS_ERROR / H3_FRAME_ERROR; encode round-trips."""
    outs = [
        _outcome(lambda m=m: m.parse_settings(data), (errors.SettingsError, errors.FrameError))
        for m in FRAMES
    ]
    _same(outs, "parse_settings")
    # Reference.
    pos = 0
    seen: dict[int, int] = {}
    error = None
    while pos < len(data):
        key = dec(data, pos)
        value = dec(data, key[1]) if key is not None else None
        if key is None or value is None:
            error = "FrameError"
            break
        pos = value[1]
        if key[0] in seen or key[0] == 0 or 2 <= key[0] <= 5:
            error = "SettingsError"
            break
        seen[key[0]] = value[0]
    if error is None:
        expected = {k: v for k, v in seen.items() if not (k >= 0x21 and (k - 0x21) % 0x1F == 0)}
        assert outs[0] == ("ok", expected), (outs[0], expected)
        for module in FRAMES:
            assert module.parse_settings(module.encode_settings(expected)) == expected
    else:
        assert outs[0] == ("raised", error), (outs[0], error)


# ---------------------------------------------------------------------------
# Header sections (what QPACK decoded, validated by core/headers.py)

_NAMES = (
    b":method",
    b":scheme",
    b":authority",
    b":path",
    b":protocol",
    b":status",
    b":bogus",
    b"origin",
    b"wt-available-protocols",
    b"wt-protocol",
    b"sec-webtransport-http3-draft02",
    b"Origin",
    b"x-other",
)
_VALUES = (
    b"CONNECT",
    b"GET",
    b"https",
    b"http",
    b"webtransport",
    b"webtransport-h3",
    b"/wt",
    b"200",
    b'"a", "b";q=1',
)


def _header_list(d: Data) -> list[tuple[bytes, bytes]]:
    out = []
    for _ in range(d.byte() % 12):
        kind = d.byte()
        name = _NAMES[kind % len(_NAMES)] if kind < 200 else d.take(d.byte() % 16)
        choice = d.byte()
        value = _VALUES[choice % len(_VALUES)] if choice < 100 else d.take(d.byte() % 40)
        out.append((name, value))
    return out


def fuzz_headers(data: bytes) -> None:
    """Request/response validation, sf-string lists, and pylsqpack-decoded blocks."""
    d = Data(data)
    allow_tokens = d.flag()
    header_list = _header_list(d)
    for parse in (
        lambda: headers.parse_request_untrusted(header_list, allow_tokens=allow_tokens),
        lambda: headers.parse_status_untrusted(header_list),
    ):
        try:
            result = parse()
        except errors.MessageError as exc:
            assert exc.error_code == 0x10E
            continue
        if isinstance(result, headers.ConnectRequest):
            assert result.method and isinstance(result.path, str)
            assert all(isinstance(p, str) for p in result.protocols)
        else:
            assert 0 <= result <= 999
    for _, value in header_list:
        items = headers.parse_sf_string_list(value, allow_tokens=allow_tokens)
        assert items is None or all(isinstance(item, str) for item in items)
        if items and not allow_tokens:
            # Strings round-trip through the serializer.
            again = headers.parse_sf_string_list(headers.serialize_sf_string_list(items))
            assert again == items, (value, items, again)
        one = headers.parse_sf_string(value, allow_tokens=allow_tokens)
        assert one is None or (items is not None and (one,) == items)
    # Raw bytes through pylsqpack, then the validators (what the engine does).
    block = d.rest()
    decoder = pylsqpack.Decoder(4096, 16)
    try:
        _, decoded = decoder.feed_header(0, block)
    except (pylsqpack.DecompressionFailed, pylsqpack.StreamBlocked):
        return
    for parse in (headers.parse_request_untrusted, headers.parse_status_untrusted):
        with contextlib.suppress(errors.MessageError):
            parse(decoded)


def fuzz_qpack(data: bytes) -> None:
    """The pre-scan bound of a header block is never below what pylsqpack decodes it to.

    The block is raw bytes after a raw encoder stream, or a real encoding of a
    header list (the second time it is sent, so that it names dynamic-table
    entries), maybe with bytes changed.
    """
    d = Data(data)
    capacity = d.pick((0, 256, 4096))
    decoder = pylsqpack.Decoder(capacity, 16)
    mode = d.byte() % 3
    if mode == 0:
        with contextlib.suppress(pylsqpack.EncoderStreamError):
            decoder.feed_encoder(d.take(d.byte() % 160))
        block = d.rest()
    else:
        header_list = _header_list(d) or [(b":status", b"200")]
        encoder = pylsqpack.Encoder()
        encoder.apply_settings(max_table_capacity=capacity, blocked_streams=16)
        try:
            first, _ = encoder.encode(0, header_list)
            second, encoded = encoder.encode(4, header_list)
        except Exception:  # the encoder refused the list: not ours to test
            return
        with contextlib.suppress(pylsqpack.EncoderStreamError):
            decoder.feed_encoder(first + second)
        changed = bytearray(encoded)
        while mode == 2 and d.left >= 2 and changed:
            changed[d.byte() % len(changed)] = d.byte()
        block = bytes(changed)
    bound = section_size_bound(block, capacity)
    assert 0 <= bound <= len(block) * max(capacity, 128), (bound, len(block))
    try:
        _, decoded = decoder.feed_header(4, block)
    except (pylsqpack.DecompressionFailed, pylsqpack.StreamBlocked):
        return
    size = sum(len(name) + len(value) + 32 for name, value in decoded)
    assert size <= bound, (size, bound, block)


# ---------------------------------------------------------------------------
# The engine

_CONFIGS = (
    EngineConfig(grease=False),
    EngineConfig(
        grease=False,
        initial_max_data=64,
        initial_max_streams_bidi=2,
        initial_max_streams_uni=2,
        max_buffered_streams=2,
        max_buffered_datagrams=2,
        max_buffered_stream_data=32,
        max_pending_capsules=2,
        max_capsule_size=16,
        max_field_section_size=320,  # a plain CONNECT (~240 bytes decoded) fits
        closed_session_memory=1,
    ),
    EngineConfig(grease=False, auto_grant=False, initial_max_data=100, max_sessions=2),
)

_CALLER_ERRORS = (
    errors.EngineClosed,
    errors.UnknownSession,
    errors.UnknownStream,
    errors.SessionLimitReached,
    errors.DatagramsUnavailable,
    errors.DatagramTooLarge,
    ValueError,  # bad arguments, and SessionStateError
)


def _check_engine(peer: Peer, config: EngineConfig) -> None:
    problems = peer.transport.problems(peer.stops)
    assert not problems, problems
    snapshot = peer.engine.connection_snapshot()
    assert 0 <= snapshot.buffered_streams <= config.max_buffered_streams, snapshot
    assert 0 <= snapshot.buffered_datagrams <= config.max_buffered_datagrams, snapshot
    terminated = [e for e in peer.events if isinstance(e, events.ConnectionTerminated)]
    assert len(terminated) <= 1, terminated


def _trace(peer: Peer) -> tuple[Any, ...]:
    return (peer.transport.calls, peer.events)


def _run_engine_script(module: ModuleType, data: bytes) -> Peer:
    """Decode ``data`` into a setup and a script of peer input and application calls; run it."""
    d = Data(data)
    is_client = d.flag()
    config = d.pick(_CONFIGS)
    settings = d.pick(PEER_SETTINGS)
    peer = Peer(module, is_client=is_client, config=config).start(settings)
    engine = peer.engine
    established = d.byte() % 4 != 0
    with contextlib.suppress(_CALLER_ERRORS):
        peer.session(established)
    local: list[int] = []
    steps = 0
    while d.left and steps < 64:
        steps += 1
        op = d.byte() % 16
        streams = peer.peer_streams + local + peer.sessions + [peer.control]
        if op <= 3:
            # Raw bytes on an existing stream (WT, CONNECT, control, QPACK).
            stream = d.pick(streams) if streams else 0
            peer.feed(stream, d.take(d.byte() % 64), d.byte() < 32)
        elif op == 4:
            # A new stream of raw bytes (a preamble of any kind).
            stream = peer.new_stream(uni=d.flag())
            peer.peer_streams.append(stream)
            peer.feed(stream, d.take(d.byte() % 64), d.byte() < 32)
        elif op == 5:
            # A WebTransport stream for a session (maybe not a real one), with data.
            uni = d.flag()
            session = d.pick(peer.sessions) if peer.sessions and d.byte() < 200 else d.byte() * 4
            stream = peer.new_stream(uni=uni)
            peer.peer_streams.append(stream)
            preamble = enc(STREAM_WT_UNI if uni else SIGNAL_WT_BIDI) + enc(session)
            peer.feed(stream, preamble + d.take(d.byte() % 64), d.byte() < 32)
        elif op == 6:
            # A DATA frame of random capsule bytes on a CONNECT stream.
            if peer.sessions:
                payload = d.take(d.byte() % 64)
                peer.feed(d.pick(peer.sessions), frame(0, payload), d.byte() < 16)
        elif op == 7:
            # A well-formed capsule with a chosen type and random value.
            if peer.sessions:
                kind = d.pick((0x00, 0x2843, 0x78AE, *_FLOW_TYPES, 0x17, 0x29 * 77 + 0x17))
                value = d.take(d.byte() % 16)
                peer.feed(d.pick(peer.sessions), frame(0, capsule(kind, value)), d.byte() < 16)
        elif op == 8:
            if d.byte() < 64 or not streams:
                # A stream whose first frame is its reset (its header never came).
                stream = peer.new_stream(uni=d.flag())
                peer.peer_streams.append(stream)
            else:
                stream = d.pick(streams)
            code = d.pick(
                (0, 0x100, 0x10C, 0x170D7B68, APP_ERROR_FIRST + d.byte(), d.number(8) >> 2)
            )
            engine.receive_stream_reset(stream, code, d.number(2) - 1, peer.now)
            peer.collect()
        elif op == 9:
            stream = d.pick(streams) if streams else 0
            code = d.pick((0, 0x100, 0x170D7B68, APP_ERROR_FIRST + d.byte(), d.number(8) >> 2))
            peer.transport.unsent = d.number(2)  # what our answering reset drops
            peer.stop(stream, code)
            if d.flag():
                # A stack that reports nothing more of a stream we stopped (picoquic).
                engine.receive_side_discarded(d.pick(streams) if streams else 0, peer.now)
                peer.collect()
        elif op == 10:
            raw = d.take(d.byte() % 24)
            if d.flag() and peer.sessions:
                raw = enc(d.pick(peer.sessions) >> 2) + raw
            engine.receive_datagram(raw, peer.now)
            peer.collect()
        elif op == 11:
            # A request (server) or a response (client), well-formed or with random headers.
            if is_client:
                if peer.sessions:
                    peer.respond(d.pick(peer.sessions), d.pick((200, 200, 404, 103, 299)))
            else:
                extra = _header_list(d) if d.flag() else []
                stream = peer.new_stream(uni=False)
                request = [
                    (b":method", b"CONNECT"),
                    (b":scheme", b"https"),
                    (b":authority", b"example.com"),
                    (b":path", d.pick((b"/a", b"/b"))),
                    (b":protocol", b"webtransport-h3"),
                    *extra,
                ]
                try:
                    block = peer.headers(stream, request)
                except Exception:  # the peer's QPACK encoder refused it: not the engine's fault
                    block = frame(1, b"")
                peer.sessions.append(stream)
                peer.feed(stream, block)
        elif op == 12:
            # A random header block on a new request stream / an existing CONNECT stream.
            block = d.take(d.byte() % 48)
            target = d.pick(peer.sessions) if peer.sessions and d.flag() else None
            if target is None and not is_client:
                target = peer.new_stream(uni=False)
            if target is not None:
                peer.feed(target, frame(1, block), d.byte() < 32)
        else:
            _app_call(peer, d, local)
        peer.now += 0.001
    engine.connection_snapshot()
    for session_id in engine.session_ids():
        engine.session_snapshot(session_id)
    if d.byte() & 1:
        engine.connection_terminated(0, "done", peer.now)
        peer.collect()
    return peer


def _app_call(peer: Peer, d: Data, local: list[int]) -> None:
    engine = peer.engine
    session = d.pick(peer.sessions) if peer.sessions else 0
    streams = local + peer.peer_streams
    stream = d.pick(streams) if streams else 1
    which = d.byte() % 12
    try:
        if which == 0:
            engine.accept(session)
        elif which == 1:
            engine.reject(session, d.pick((404, 403, 429)))
        elif which == 2:
            new = engine.open_stream(session, is_unidirectional=d.flag())
            if new is not None:
                local.append(new)
        elif which == 3:
            engine.send_stream_data(stream, b"x" * (d.byte() * 4), d.flag())
        elif which == 4:
            peer.transport.unsent = d.number(2)
            engine.reset_stream(stream, d.byte())
        elif which == 5:
            engine.stop_stream(stream, d.byte())
        elif which == 6:
            engine.send_datagram(session, b"d" * d.number(2))
        elif which == 7:
            engine.close_session(session, d.byte(), "r" * d.number(2))
        elif which == 8:
            engine.consume_data(session, d.number(3))
        elif which == 9:
            engine.grant_data_credit(session, d.number(3))
        elif which == 10:
            engine.drain_session(session)
        elif peer.is_client:
            new_session = engine.connect(authority="example.com", path="/x")
            peer.sessions.append(new_session)
        else:
            engine.send_goaway()
    except _CALLER_ERRORS:
        pass
    peer.collect()


def fuzz_engine(data: bytes) -> None:
    """The engine fed a decoded script of raw stream bytes, resets, datagrams and app calls."""
    traces = []
    for module in ENGINE:
        peer = _run_engine_script(module, data)
        _check_engine(peer, peer.engine.config)
        traces.append(_trace(peer))
    _same(traces, "engine trace")


def fuzz_preamble(data: bytes) -> None:
    """A new stream of raw bytes: classified, associated and delivered byte-exact, or refused."""
    d = Data(data)
    is_client = d.flag()
    uni = d.flag()
    established = d.byte() % 4 != 0
    fin = d.flag()
    cuts = d.take(d.byte() % 4)
    payload = d.rest()
    traces = []
    for module in ENGINE:
        config = EngineConfig(grease=False)
        peer = Peer(module, is_client=is_client, config=config).start(PEER_SETTINGS[0])
        session = peer.session(established)
        peer.collect()
        stream = peer.new_stream(uni=uni)
        pieces = _chunks(payload, cuts)
        for index, piece in enumerate(pieces):
            peer.feed(stream, piece, fin and index == len(pieces) - 1)
        _check_engine(peer, config)
        # A WebTransport preamble for the open session: the rest arrives byte-exact.
        first = dec(payload)
        if first is not None and first[0] == (STREAM_WT_UNI if uni else SIGNAL_WT_BIDI):
            sid = dec(payload, first[1])
            if sid is not None and sid[0] == session and established:
                delivered = b"".join(
                    e.data
                    for e in peer.events
                    if isinstance(e, events.StreamDataReceived) and e.stream_id == stream
                )
                assert delivered == payload[sid[1] :], (delivered, payload[sid[1] :])
        traces.append(_trace(peer))
    _same(traces, "preamble trace")


def fuzz_datagram(data: bytes) -> None:
    """Raw QUIC DATAGRAM payloads: delivered exactly to the session their QSID names, or dropped;
    an unparsable or out-of-range QSID closes the connection with H3_DATAGRAM_ERROR."""
    d = Data(data)
    is_client = d.flag()
    config = d.pick(_CONFIGS)
    raw_datagrams = []
    while d.left:
        raw_datagrams.append(d.take(d.byte() % 24))
    traces = []
    for module in ENGINE:
        peer = Peer(module, is_client=is_client, config=config).start(PEER_SETTINGS[0])
        session = peer.session(True)
        if not is_client:
            peer.request(b"/pending")  # a session not yet accepted: its datagrams wait
        peer.collect()
        for raw in raw_datagrams:
            before = len(peer.events)
            closed = peer.transport.closed
            peer.engine.receive_datagram(raw, peer.now)
            new = peer.collect()
            _check_engine(peer, config)
            if closed is not None:
                assert not new
                continue
            head = dec(raw)
            if head is None or head[0] > (1 << 60) - 1:
                assert peer.transport.closed is not None and peer.transport.closed[0] == 0x33
                continue
            delivered = [e for e in peer.events[before:] if isinstance(e, events.DatagramReceived)]
            if head[0] * 4 == session:
                assert delivered == [events.DatagramReceived(session, raw[head[1] :])], delivered
            else:
                assert not delivered, delivered
        traces.append(_trace(peer))
    _same(traces, "datagram trace")


#: Every target, by name.
TARGETS: dict[str, Callable[[bytes], None]] = {
    "varint": fuzz_varint,
    "capsule": fuzz_capsule,
    "settings": fuzz_settings,
    "frames": fuzz_frames,
    "headers": fuzz_headers,
    "qpack": fuzz_qpack,
    "preamble": fuzz_preamble,
    "datagram": fuzz_datagram,
    "engine": fuzz_engine,
}
