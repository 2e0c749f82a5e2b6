"""Robustness: random interleavings, random bytes, and pure-vs-compiled agreement.

* Scripts of peer input and application calls, drawn by hypothesis, run on
  both engines: application calls may only raise the documented caller
  errors, peer input may raise nothing, and after every step the engine's
  state and its event stream must be consistent.
* Random bytes fed as stream data on fresh streams (and behind valid
  preambles), on the control, QPACK and CONNECT streams, and as datagrams:
  the engine answers only with protocol errors carrying wire codes, never
  with an exception and never through its internal-error path (a connection
  closed with H3_INTERNAL_ERROR 0x102 is a bug).
* The same scripts on the pure and the compiled engine give the same events,
  the same transport calls and the same results.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any

import pytest
from engine_wire import (
    CAPSULE_DATA_BLOCKED,
    CAPSULE_DATAGRAM,
    CAPSULE_DRAIN,
    CAPSULE_MAX_DATA,
    CAPSULE_MAX_STREAM_DATA,
    CAPSULE_MAX_STREAMS_BIDI,
    CAPSULE_MAX_STREAMS_UNI,
    CAPSULE_STREAMS_BLOCKED_BIDI,
    CAPSULE_STREAMS_BLOCKED_UNI,
    CHROME_GREASE_CAPSULE_TYPE,
    CONNECTION_ERROR_CODES,
    ENGINE_SETTINGS,
    FRAME_GOAWAY,
    FRAME_HEADERS,
    H3_INTERNAL_ERROR,
    H3_NO_ERROR,
    PEER_D02,
    PEER_D14_FC,
    PEER_D16,
    PEER_D16_FC,
    STREAM_CONTROL,
    STREAM_QPACK_DECODER,
    STREAM_QPACK_ENCODER,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
    WT_SESSION_GONE,
    Wire,
    app_to_h3,
    capsule,
    close_capsule,
    data_frame,
    drain_capsule,
    enc,
    frame,
    varint_capsule,
)
from hypothesis import given
from hypothesis import strategies as st

from anywt.core.config import EngineConfig
from anywt.core.errors import (
    DatagramsUnavailable,
    DatagramTooLarge,
    EngineClosed,
    SessionLimitReached,
    UnknownSession,
    UnknownStream,
)
from anywt.core.events import (
    ConnectionTerminated,
    DatagramReceived,
    Event,
    SessionClosed,
    SessionDraining,
    SessionEstablished,
    SessionRejected,
    StreamDataReceived,
    StreamOpened,
)
from anywt.core.session_state import SessionState, SessionStateError

#: What an application call may raise (all documented; ValueError covers bad arguments).
CALLER_ERRORS = (
    SessionStateError,
    UnknownSession,
    UnknownStream,
    EngineClosed,
    SessionLimitReached,
    DatagramTooLarge,
    DatagramsUnavailable,
    ValueError,
)

#: Codes the engine may put in RESET_STREAM / STOP_SENDING.
STREAM_CODES = CONNECTION_ERROR_CODES | {
    H3_NO_ERROR,
    WT_SESSION_GONE,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
}

BOGUS_SESSION = 4000
BOGUS_STREAM = 4001


class InternalErrors(logging.Handler):
    """Catches the engine's internal-error log records."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class watch_internal_errors:  # noqa: N801 - used as a context manager
    def __enter__(self) -> InternalErrors:
        self.handler = InternalErrors()
        logging.getLogger("anywt").addHandler(self.handler)
        return self.handler

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("anywt").removeHandler(self.handler)


# ---------------------------------------------------------------------------
# Scripts


def _pick(items: list[int], index: int, bogus: int) -> int:
    if not items or index == 7:
        return bogus
    return items[index % len(items)]


class Runner:
    """Applies a script to one engine and checks it after every step."""

    def __init__(
        self, engine_module: Any, role: str, settings: dict[int, int], config: EngineConfig
    ) -> None:
        random.seed(1234)  # the GREASE setting
        self.wire = Wire(engine_module, is_client=role == "client", config=config).start(settings)
        self.engine = self.wire.engine
        self.config = config
        self.sessions: list[int] = []
        self.peer_streams: list[int] = []
        self.local_streams: list[int] = []
        self.results: list[Any] = []

    # Peer input never raises.
    def peer(self, op: tuple[Any, ...]) -> None:
        wire = self.wire
        name = op[0]
        if name == "request":
            if wire.is_client:
                return
            _, path, with_body = op
            body = (
                data_frame(capsule(CHROME_GREASE_CAPSULE_TYPE, b"g") + drain_capsule())
                if with_body
                else b""
            )
            protocols = [(b"wt-available-protocols", b'"chat", "echo"')]
            self.sessions.append(wire.request(path, body=body, extra=protocols))
        elif name == "respond":
            _, index, status = op
            session = _pick(self.sessions, index, BOGUS_SESSION)
            if wire.is_client and session in wire.transport.sent:
                wire.respond(session, status)
        elif name == "capsules":
            _, index, capsules, fin = op
            session = _pick(self.sessions, index, BOGUS_SESSION)
            if session != BOGUS_SESSION:
                wire.feed(session, data_frame(b"".join(_capsule_bytes(c) for c in capsules)), fin)
        elif name == "fin_connect":
            session = _pick(self.sessions, op[1], BOGUS_SESSION)
            wire.feed(session, b"", fin=True)
        elif name == "reset_connect":
            wire.reset(_pick(self.sessions, op[1], BOGUS_SESSION), op[2])
        elif name == "stop_connect":
            wire.stop(_pick(self.sessions, op[1], BOGUS_SESSION), op[2])
        elif name == "open_wt":
            _, index, uni, data, fin = op
            session = _pick(self.sessions, index, BOGUS_SESSION)
            self.peer_streams.append(wire.open_wt(session, uni=uni, data=data, fin=fin))
        elif name == "stream_data":
            _, index, data, fin = op
            wire.feed(_pick(self.peer_streams + self.local_streams, index, BOGUS_STREAM), data, fin)
        elif name == "reset_stream":
            _, index, code, extra = op
            stream = _pick(self.peer_streams + self.local_streams, index, BOGUS_STREAM)
            wire.reset(stream, code, 3 + extra)
        elif name == "stop_stream":
            _, index, code = op
            wire.stop(_pick(self.local_streams + self.peer_streams, index, BOGUS_STREAM), code)
        elif name == "datagram":
            _, index, payload = op
            wire.wt_datagram(_pick(self.sessions, index, BOGUS_SESSION), payload)
        elif name == "goaway":
            if wire.is_client:
                wire.feed(wire.peer_control_id, frame(FRAME_GOAWAY, enc(op[1] * 4)))
        elif name == "terminate":
            wire.terminate(0x0A, "idle timeout")
        else:  # pragma: no cover
            raise AssertionError(op)

    # Application calls raise only caller errors.
    def app(self, op: tuple[Any, ...]) -> Any:
        engine = self.engine
        name = op[0]
        session = (
            _pick(self.sessions, op[1], BOGUS_SESSION)
            if len(op) > 1 and isinstance(op[1], int)
            else None
        )
        if name == "connect":
            if not self.wire.is_client:
                return None
            session = engine.connect(
                authority="example.com", path=op[1], protocols=["chat", "echo"]
            )
            self.sessions.append(session)
            return session
        if name == "accept":
            return engine.accept(session, protocol=op[2])
        if name == "reject":
            return engine.reject(session, op[2])
        if name == "open_stream":
            stream = engine.open_stream(session, is_unidirectional=op[2])
            if stream is not None:
                self.local_streams.append(stream)
            return stream
        if name == "send":
            stream = _pick(self.local_streams + self.peer_streams, op[1], BOGUS_STREAM)
            return engine.send_stream_data(stream, b"s" * op[2], op[3])
        if name == "reset":
            stream = _pick(self.local_streams + self.peer_streams, op[1], BOGUS_STREAM)
            return engine.reset_stream(stream, op[2])
        if name == "stop":
            stream = _pick(self.peer_streams + self.local_streams, op[1], BOGUS_STREAM)
            return engine.stop_stream(stream, op[2])
        if name == "send_datagram":
            return engine.send_datagram(session, b"d" * op[2])
        if name == "max_datagram_size":
            return engine.max_datagram_size(session)
        if name == "close_session":
            return engine.close_session(session, op[2], op[3])
        if name == "drain":
            return engine.drain_session(session)
        if name == "consume":
            return engine.consume_data(session, op[2])
        if name == "grant_data":
            return engine.grant_data_credit(session, op[2])
        if name == "grant_streams":
            return engine.grant_streams_credit(session, op[2], op[3])
        if name == "send_goaway":
            return engine.send_goaway()
        if name == "close":
            return engine.close()
        if name == "snapshots":
            engine.connection_snapshot()
            return [engine.session_snapshot(s) for s in engine.session_ids()]
        raise AssertionError(op)  # pragma: no cover

    def step(self, op: tuple[str, tuple[Any, ...]]) -> None:
        side, body = op
        if side == "peer":
            self.peer(body)
            self.results.append(("peer", body[0]))
        else:
            try:
                result = self.app(body)
            except CALLER_ERRORS as exc:
                self.results.append(("raised", type(exc).__name__))
            else:
                self.results.append(("ok", _comparable(result)))
        self.check()

    # Invariants -------------------------------------------------------------

    def check(self) -> None:
        wire, engine, transport = self.wire, self.engine, self.wire.transport
        assert transport.close_code != H3_INTERNAL_ERROR, transport.closed
        if transport.closed is not None:
            assert transport.close_code in CONNECTION_ERROR_CODES | {H3_NO_ERROR}, transport.closed
        assert not transport.calls_after_close, transport.calls_after_close
        events = wire.events
        assert all(isinstance(event, Event) for event in events)
        terminated = [i for i, e in enumerate(events) if isinstance(e, ConnectionTerminated)]
        assert len(terminated) <= 1
        if terminated:
            assert terminated[0] == len(events) - 1 or all(
                isinstance(e, ConnectionTerminated) for e in events[terminated[0] :]
            )
            assert engine.closed
        if engine.closed:
            for session in engine.session_ids():
                assert engine.session_state(session) in (SessionState.CLOSED, SessionState.REJECTED)
        ended: set[int] = set()
        opened: set[int] = set()
        finished: set[int] = set()
        for event in events:
            if isinstance(event, SessionClosed | SessionRejected):
                assert event.session_id not in ended, f"{event} after the session ended"
                ended.add(event.session_id)
            elif isinstance(
                event, SessionEstablished | SessionDraining | DatagramReceived | StreamOpened
            ):
                assert event.session_id not in ended, event
                if isinstance(event, StreamOpened):
                    opened.add(event.stream_id)
            elif isinstance(event, StreamDataReceived):
                assert event.session_id not in ended, event
                assert event.stream_id in opened or event.stream_id in self.local_streams, event
                assert event.stream_id not in finished, event
                if event.end_stream:
                    finished.add(event.stream_id)
        snapshot = engine.connection_snapshot()
        assert 0 <= snapshot.buffered_streams <= self.config.max_buffered_streams
        assert 0 <= snapshot.buffered_datagrams <= self.config.max_buffered_datagrams
        for session in engine.session_ids():
            state = engine.session_state(session)
            assert isinstance(state, SessionState)
            info = engine.session_snapshot(session)
            assert info.data_received >= 0 and info.data_sent >= 0
            if (
                info.flow_control
                and info.local_max_data is not None
                and state != SessionState.CLOSED
            ):
                assert info.data_received <= info.local_max_data
            if state in (SessionState.CLOSED, SessionState.REJECTED):
                assert info.active_streams == ()


def _comparable(value: Any) -> Any:
    # Snapshots compare field by field (an IntEnum equals its int).
    return value


def _capsule_bytes(spec: tuple[Any, ...]) -> bytes:
    kind = spec[0]
    if kind == "drain":
        return drain_capsule()
    if kind == "close":
        return close_capsule(spec[1], spec[2])
    if kind == "varint":
        return varint_capsule(spec[1], spec[2])
    if kind == "grease":
        return capsule(CHROME_GREASE_CAPSULE_TYPE, spec[1])
    if kind == "datagram":
        return capsule(CAPSULE_DATAGRAM, spec[1])
    if kind == "bad-drain":
        return capsule(CAPSULE_DRAIN, b"\x00")
    if kind == "prohibited":
        return varint_capsule(CAPSULE_MAX_STREAM_DATA, 1)
    return spec[1]  # raw bytes


# ---------------------------------------------------------------------------
# Strategies

INDEX = st.integers(0, 7)
SMALL = st.binary(max_size=48)
WIRE_CODES = st.sampled_from(
    [
        0,
        H3_NO_ERROR,
        0x10C,
        0x10F,
        WT_SESSION_GONE,
        app_to_h3(0),
        app_to_h3(7),
        0x52E4A40FA8F9,
        (1 << 62) - 1,
    ]
)
FLOW_TYPES = st.sampled_from(
    [
        CAPSULE_MAX_DATA,
        CAPSULE_MAX_STREAMS_BIDI,
        CAPSULE_MAX_STREAMS_UNI,
        CAPSULE_DATA_BLOCKED,
        CAPSULE_STREAMS_BLOCKED_BIDI,
        CAPSULE_STREAMS_BLOCKED_UNI,
    ]
)
FLOW_VALUES = st.one_of(
    st.integers(0, 64), st.integers(0, 1 << 21), st.sampled_from([(1 << 60) + 1, (1 << 62) - 1])
)
_BENIGN_CAPSULES = st.one_of(
    st.tuples(st.just("drain")),
    st.tuples(st.just("varint"), FLOW_TYPES, FLOW_VALUES),
    st.tuples(st.just("grease"), SMALL),
    st.tuples(st.just("datagram"), SMALL),
)
CAPSULES = st.one_of(
    _BENIGN_CAPSULES,
    _BENIGN_CAPSULES,
    _BENIGN_CAPSULES,
    st.one_of(
        st.tuples(st.just("close"), st.integers(0, 0xFFFFFFFF), st.text(max_size=8)),
        st.tuples(st.just("bad-drain")),
        st.tuples(st.just("prohibited")),
        st.tuples(st.just("raw"), SMALL),
    ),
)
# Weighted: the common operations of a live session come up three times as often
# as the ones that end sessions or the connection.
PEER_COMMON = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(["/a", "/b"]), st.booleans()),
    st.tuples(st.just("capsules"), INDEX, st.lists(CAPSULES, max_size=3), st.booleans()),
    st.tuples(st.just("open_wt"), INDEX, st.booleans(), SMALL, st.booleans()),
    st.tuples(st.just("stream_data"), INDEX, SMALL, st.booleans()),
    st.tuples(st.just("reset_stream"), INDEX, WIRE_CODES, st.integers(0, 200)),
    st.tuples(st.just("stop_stream"), INDEX, WIRE_CODES),
    st.tuples(st.just("datagram"), INDEX, SMALL),
)
PEER_RARE = st.one_of(
    st.tuples(st.just("respond"), INDEX, st.sampled_from([200, 200, 404, 103])),
    st.tuples(st.just("fin_connect"), INDEX),
    st.tuples(st.just("reset_connect"), INDEX, WIRE_CODES),
    st.tuples(st.just("stop_connect"), INDEX, WIRE_CODES),
    st.tuples(st.just("goaway"), st.integers(0, 8)),
    st.tuples(st.just("terminate")),
)
APP_COMMON = st.one_of(
    st.tuples(st.just("accept"), INDEX, st.sampled_from([None, None, "chat", "nope"])),
    st.tuples(st.just("open_stream"), INDEX, st.booleans()),
    st.tuples(st.just("send"), INDEX, st.sampled_from([0, 1, 100, 5000]), st.booleans()),
    st.tuples(st.just("reset"), INDEX, st.sampled_from([0, 7, 0xFFFFFFFF, 1 << 32, -1])),
    st.tuples(st.just("stop"), INDEX, st.sampled_from([0, 9, 1 << 32])),
    st.tuples(st.just("send_datagram"), INDEX, st.sampled_from([0, 10, 1199, 1200, 5000])),
    st.tuples(st.just("consume"), INDEX, st.sampled_from([-1, 0, 10, 100000])),
    st.tuples(st.just("grant_data"), INDEX, st.sampled_from([0, 10, 1 << 30, 1 << 63])),
    st.tuples(
        st.just("grant_streams"),
        INDEX,
        st.sampled_from([0, 5, 1 << 60, (1 << 60) + 1]),
        st.booleans(),
    ),
    st.tuples(st.just("snapshots")),
)
APP_RARE = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(["/a", "/b"])),
    st.tuples(st.just("reject"), INDEX, st.sampled_from([404, 403, 503, 200])),
    st.tuples(st.just("max_datagram_size"), INDEX),
    st.tuples(
        st.just("close_session"),
        INDEX,
        st.sampled_from([0, 5, 1 << 32]),
        st.sampled_from(["", "bye", "\u00e9" * 600]),
    ),
    st.tuples(st.just("drain"), INDEX),
    st.tuples(st.just("send_goaway")),
    st.tuples(st.just("close")),
)
PEER_STEP = st.tuples(st.just("peer"), PEER_COMMON)
APP_STEP = st.tuples(st.just("app"), APP_COMMON)
RARE_STEP = st.one_of(st.tuples(st.just("peer"), PEER_RARE), st.tuples(st.just("app"), APP_RARE))


@st.composite
def _steps(draw: Any) -> list[Any]:
    """Up to 30 common steps, with up to 3 rare (mostly ending) ones put in anywhere."""
    steps = draw(st.lists(st.one_of(PEER_STEP, APP_STEP), min_size=1, max_size=30))
    for position, step in draw(st.lists(st.tuples(st.integers(0, 30), RARE_STEP), max_size=3)):
        steps.insert(position, step)
    return steps


STEPS = _steps()
#: Whether the first session is established before the script runs (mostly yes).
ESTABLISH = st.sampled_from([True, True, True, False])
SETTINGS_VARIANTS = st.sampled_from(["d16-fc", "d16", "d14-fc", "d02"])
SETTINGS = {"d16-fc": PEER_D16_FC, "d16": PEER_D16, "d14-fc": PEER_D14_FC, "d02": PEER_D02}
CONFIGS = st.sampled_from(
    [
        EngineConfig(grease=False),
        EngineConfig(
            grease=False,
            initial_max_data=64,
            initial_max_streams_bidi=2,
            initial_max_streams_uni=2,
            max_buffered_streams=2,
            max_buffered_datagrams=2,
            max_buffered_stream_data=32,
            closed_session_memory=2,
        ),
        EngineConfig(grease=False, auto_grant=False, initial_max_data=100, max_sessions=2),
    ]
)


def _run(
    engine_module: Any,
    role: str,
    variant: str,
    config: EngineConfig,
    steps: list[Any],
    establish: bool = False,
) -> Runner:
    runner = Runner(engine_module, role, SETTINGS[variant], config)
    # Start with a session so that the script has something to act on.
    if role == "client":
        runner.step(("app", ("connect", "/first")))
        if establish:
            runner.step(("peer", ("respond", 0, 200)))
    else:
        runner.step(("peer", ("request", "/first", False)))
        if establish:
            runner.step(("app", ("accept", 0, None)))
    for step in steps:
        runner.step(step)
    return runner


@pytest.mark.parametrize("role", ["server", "client"])
@ENGINE_SETTINGS
@given(variant=SETTINGS_VARIANTS, config=CONFIGS, steps=STEPS, establish=ESTABLISH)
def test_random_interleavings_stay_consistent(
    engine_module, role, variant, config, steps, establish
):
    with watch_internal_errors() as internal:
        runner = _run(engine_module, role, variant, config, steps, establish)
    assert not internal.records, [r.getMessage() for r in internal.records]
    assert not runner.wire.transport.misuse, runner.wire.transport.misuse


# ---------------------------------------------------------------------------
# Random bytes


def _check_protocol_outcome(wire: Wire, internal: InternalErrors) -> None:
    transport = wire.transport
    assert not internal.records, [r.getMessage() for r in internal.records]
    assert transport.close_code != H3_INTERNAL_ERROR
    if transport.closed is not None:
        assert transport.close_code in CONNECTION_ERROR_CODES, transport.closed
    for codes in list(transport.resets.values()) + list(transport.stops.values()):
        assert set(codes) <= STREAM_CODES, codes
    assert not transport.calls_after_close
    wire.engine.connection_snapshot()


def _fresh(engine_module: Any, is_client: bool, established: bool) -> tuple[Wire, int]:
    wire = Wire(engine_module, is_client=is_client, config=EngineConfig(grease=False)).start(
        PEER_D16_FC
    )
    if is_client:
        session = wire.engine.connect(authority="example.com", path="/")
        if established:
            wire.respond(session, 200)
    else:
        session = wire.request()
        if established:
            wire.engine.accept(session)
    return wire, session


PREFIXES = st.sampled_from(
    [
        b"",
        b"\x40\x54\x00",  # uni WebTransport stream of session 0
        b"\x40\x41\x00",  # bidi WebTransport stream of session 0
        b"\x40\x54",
        b"\x40\x41",
        bytes([STREAM_CONTROL]),  # a second control stream
        bytes([STREAM_QPACK_ENCODER]),  # a second QPACK stream
        bytes([STREAM_QPACK_DECODER]),
        enc(FRAME_HEADERS),  # a request stream
        b"\x21",  # a reserved stream type
    ]
)


@pytest.mark.parametrize("is_client", [False, True], ids=["server", "client"])
@pytest.mark.parametrize("uni", [True, False], ids=["uni", "bidi"])
@ENGINE_SETTINGS
@given(
    prefix=PREFIXES,
    data=st.binary(max_size=200),
    fin=st.booleans(),
    established=st.booleans(),
    split=st.integers(0, 200),
)
def test_random_bytes_on_fresh_streams(
    engine_module, is_client, uni, prefix, data, fin, established, split
):
    with watch_internal_errors() as internal:
        wire, _ = _fresh(engine_module, is_client, established)
        stream = wire.peer_stream(uni=uni)
        payload = prefix + data
        wire.feed(stream, payload[:split])
        wire.feed(stream, payload[split:], fin)
        wire.datagram(data)
    _check_protocol_outcome(wire, internal)


@pytest.mark.parametrize(
    "target", ["connect-raw", "connect-capsules", "control", "qpack-encoder", "qpack-decoder"]
)
@pytest.mark.parametrize("is_client", [False, True], ids=["server", "client"])
@ENGINE_SETTINGS
@given(data=st.binary(max_size=200), fin=st.booleans(), established=st.booleans())
def test_random_bytes_on_existing_streams(engine_module, target, is_client, data, fin, established):
    with watch_internal_errors() as internal:
        wire, session = _fresh(engine_module, is_client, established)
        if target == "connect-raw":
            if is_client and not established:
                wire.respond(session, 200, body=data)
            else:
                wire.feed(session, data, fin)
        elif target == "connect-capsules":
            if is_client and not established:
                wire.respond(session, 200)
            wire.feed(session, data_frame(data), fin)
        elif target == "control":
            wire.feed(wire.peer_control_id, data, fin)
        else:
            stream = wire.peer_encoder_id if target == "qpack-encoder" else wire.peer_decoder_id
            wire.feed(stream, data, fin)
    _check_protocol_outcome(wire, internal)


@pytest.mark.parametrize("is_client", [False, True], ids=["server", "client"])
@ENGINE_SETTINGS
@given(datagrams=st.lists(st.binary(max_size=24), max_size=8), established=st.booleans())
def test_random_datagrams(engine_module, is_client, datagrams, established):
    with watch_internal_errors() as internal:
        wire, _ = _fresh(engine_module, is_client, established)
        for datagram in datagrams:
            wire.datagram(datagram)
    _check_protocol_outcome(wire, internal)


@ENGINE_SETTINGS
@given(data=st.binary(max_size=300))
def test_random_settings_payload(engine_module, data):
    with watch_internal_errors() as internal:
        wire = Wire(engine_module, is_client=False).start(None)
        control = wire.peer_stream(uni=True)
        wire.feed(control, enc(STREAM_CONTROL) + frame(0x04, data))
    _check_protocol_outcome(wire, internal)


@ENGINE_SETTINGS
@given(data=st.binary(max_size=120))
def test_random_header_block(engine_module, data):
    with watch_internal_errors() as internal:
        wire = Wire(engine_module, is_client=False).start()
        stream = wire.peer_stream(uni=False)
        wire.feed(stream, frame(FRAME_HEADERS, data))
        client, session = _fresh(engine_module, True, False)
        client.feed(session, frame(FRAME_HEADERS, data))
    _check_protocol_outcome(wire, internal)
    _check_protocol_outcome(client, internal)


# ---------------------------------------------------------------------------
# Pure versus compiled

SCENARIO = [
    ("peer", ("open_wt", 0, True, b"early", False)),
    ("app", ("accept", 0, "chat")),
    ("peer", ("datagram", 0, b"dg")),
    ("app", ("open_stream", 0, False)),
    ("app", ("send", 0, 100, False)),
    (
        "peer",
        (
            "capsules",
            0,
            [("varint", CAPSULE_MAX_DATA, 1 << 21), ("drain",), ("grease", b"x")],
            False,
        ),
    ),
    ("peer", ("stream_data", 0, b"more", True)),
    ("app", ("consume", 0, 100000)),
    ("peer", ("reset_stream", 1, app_to_h3(7), 10)),
    ("peer", ("stop_stream", 0, app_to_h3(3))),
    ("app", ("send_datagram", 0, 10)),
    ("peer", ("request", "/b", True)),
    ("app", ("reject", 1, 404)),
    ("app", ("snapshots",)),
    ("peer", ("capsules", 0, [("close", 77, "bye")], True)),
    ("app", ("send_goaway",)),
    ("app", ("close",)),
]


def _trace(runner: Runner) -> tuple[Any, ...]:
    return (runner.wire.events, runner.wire.transport.calls, runner.results)


def test_compiled_matches_pure_on_scenario(engine_modules):
    pure, compiled = engine_modules
    for role in ("server", "client"):
        config = EngineConfig(grease=False)
        scenario = SCENARIO if role == "server" else [("peer", ("respond", 0, 200)), *SCENARIO]
        a = _run(pure, role, "d16-fc", config, scenario)
        b = _run(compiled, role, "d16-fc", config, scenario)
        assert _trace(a) == _trace(b)
        assert a.wire.transport.closed == (H3_NO_ERROR, "")  # the scenario ends with close()


def test_compiled_matches_pure_with_grease(engine_modules):
    pure, compiled = engine_modules
    a = _run(pure, "server", "d16-fc", EngineConfig(), SCENARIO)
    b = _run(compiled, "server", "d16-fc", EngineConfig(), SCENARIO)
    assert _trace(a) == _trace(b)


@pytest.mark.parametrize("role", ["server", "client"])
@ENGINE_SETTINGS
@given(variant=SETTINGS_VARIANTS, config=CONFIGS, steps=STEPS, establish=ESTABLISH)
def test_compiled_matches_pure_on_random_scripts(
    engine_modules, role, variant, config, steps, establish
):
    pure, compiled = engine_modules
    a = _run(pure, role, variant, config, steps, establish)
    b = _run(compiled, role, variant, config, steps, establish)
    assert _trace(a) == _trace(b)


# ---------------------------------------------------------------------------
# Application arguments out of any range

HUGE = [-1, 1 << 62, 1 << 64]
CALLS = {
    "open_stream": lambda e, sid, stream, n: e.open_stream(n),
    "send_stream_data": lambda e, sid, stream, n: e.send_stream_data(n, b"x"),
    "reset_stream": lambda e, sid, stream, n: e.reset_stream(stream, n),
    "stop_stream": lambda e, sid, stream, n: e.stop_stream(stream, n),
    "send_datagram": lambda e, sid, stream, n: e.send_datagram(n, b"x"),
    "max_datagram_size": lambda e, sid, stream, n: e.max_datagram_size(n),
    "close_session-code": lambda e, sid, stream, n: e.close_session(sid, n),
    "drain_session": lambda e, sid, stream, n: e.drain_session(n),
    "consume_data": lambda e, sid, stream, n: e.consume_data(sid, n),
    "grant_data_credit": lambda e, sid, stream, n: e.grant_data_credit(sid, n),
    "grant_streams_credit": lambda e, sid, stream, n: e.grant_streams_credit(sid, n, True),
    "session_state": lambda e, sid, stream, n: e.session_state(n),
    "session_snapshot": lambda e, sid, stream, n: e.session_snapshot(n),
}


@pytest.mark.parametrize("value", HUGE, ids=["-1", "2^62", "2^64"])
@pytest.mark.parametrize("call", list(CALLS))
def test_out_of_range_integers_are_caller_errors(engine_module, call, value):
    """Any int the application passes gives a result or a documented error, never OverflowError."""
    wire, session = _fresh(engine_module, False, True)
    stream = wire.engine.open_stream(session)
    with contextlib.suppress(*CALLER_ERRORS):
        CALLS[call](wire.engine, session, stream, value)
    assert wire.transport.closed is None
