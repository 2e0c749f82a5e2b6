"""Stateful fuzzing of the engine: rule-based state machines, pure and compiled in lock-step.

A machine plays a peer that sends whatever it likes (raw stream bytes on any
stream, new streams with any preamble, capsules well- or ill-formed, resets,
STOP_SENDING, datagrams with any prefix, requests, responses, GOAWAY) and
an application that calls the engine's API at any moment.  Every step is
applied to the pure-Python engine and to the compiled one, which must then
agree on every transport call and every event.  After every step the
invariants of issue 7 hold:

* peer input never raises, and never closes the connection through the
  internal-error path (H3_INTERNAL_ERROR 0x102): only protocol errors, each
  with its wire code;
* every RESET_STREAM / STOP_SENDING carries a protocol code, a mapped
  application code, or the code of the STOP_SENDING it answers;
* nothing is written after the connection closed, nor after FIN or reset;
* buffered streams and datagrams stay within their configured limits, and a
  session never accepts more stream data than the credit it granted;
* application calls raise only the documented caller errors.

``ANYWT_LONG=1`` runs many more examples.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import pytest
from engine_wire import (
    APP_ERROR_FIRST,
    CAPSULE_DATAGRAM,
    CHROME_GREASE_CAPSULE_TYPE,
    CONNECTION_ERROR_CODES,
    FRAME_GOAWAY,
    FRAME_HEADERS,
    H3_INTERNAL_ERROR,
    H3_NO_ERROR,
    PEER_D02,
    PEER_D07,
    PEER_D14_FC,
    PEER_D16,
    PEER_D16_FC,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
    WT_SESSION_GONE,
    Wire,
    capsule,
    close_capsule,
    data_frame,
    drain_capsule,
    enc,
    frame,
    varint_capsule,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from rel_harness import LONG

from anywt.core import _engine_py
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
    SessionClosed,
    SessionRejected,
    StreamDataReceived,
    StreamOpened,
)
from anywt.core.session_state import SessionState, SessionStateError

try:
    from anywt.core import _engine_c
except ImportError:  # pragma: no cover - the compiled core is not built
    if os.environ.get("ANYWT_REQUIRE_EXTENSIONS"):
        raise
    _engine_c = None

ENGINES = [_engine_py] if _engine_c is None else [_engine_py, _engine_c]

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
STREAM_CODES = CONNECTION_ERROR_CODES | {
    H3_NO_ERROR,
    WT_SESSION_GONE,
    WT_BUFFERED_STREAM_REJECTED,
    WT_FLOW_CONTROL_ERROR,
}
APP_ERROR_LAST = 0x52E5AC983162

SETTINGS_VARIANTS = {
    "d16-fc": PEER_D16_FC,
    "d16": PEER_D16,
    "d14-fc": PEER_D14_FC,
    "d07": PEER_D07,
    "d02": PEER_D02,
}
CONFIGS = {
    "default": EngineConfig(grease=False),
    "tight": EngineConfig(
        grease=False,
        initial_max_data=64,
        initial_max_streams_bidi=2,
        initial_max_streams_uni=2,
        max_buffered_streams=2,
        max_buffered_datagrams=2,
        max_buffered_stream_data=32,
        max_pending_capsules=2,
        max_capsule_size=16,
        closed_session_memory=1,
        max_sessions=2,
    ),
    "manual-credit": EngineConfig(grease=False, auto_grant=False, initial_max_data=100),
}

FLOW_CAPSULES = [
    0x190B4D3D,  # WT_MAX_DATA
    0x190B4D3F,  # WT_MAX_STREAMS bidi
    0x190B4D40,  # WT_MAX_STREAMS uni
    0x190B4D41,  # WT_DATA_BLOCKED
    0x190B4D43,  # WT_STREAMS_BLOCKED bidi
    0x190B4D44,  # WT_STREAMS_BLOCKED uni
]
CODES = st.one_of(
    st.sampled_from(
        [0, H3_NO_ERROR, 0x10C, 0x10F, WT_SESSION_GONE, APP_ERROR_FIRST, APP_ERROR_FIRST + 7]
    ),
    st.integers(0, (1 << 62) - 1),
)
SMALL = st.binary(max_size=40)
CAPSULE_BYTES = st.one_of(
    st.builds(drain_capsule),
    st.builds(capsule, st.just(0x78AE), st.binary(min_size=1, max_size=2)),
    st.builds(
        close_capsule,
        st.integers(0, 0xFFFFFFFF),
        st.one_of(st.binary(max_size=8), st.just(b"r" * 1025), st.just(b"\xff\xfe")),
    ),
    st.builds(
        varint_capsule,
        st.integers(0x190B4D3D, 0x190B4D44),
        st.one_of(st.integers(0, 256), st.integers(0, (1 << 62) - 1)),
    ),
    st.builds(capsule, st.just(CHROME_GREASE_CAPSULE_TYPE), SMALL),
    st.builds(capsule, st.just(CAPSULE_DATAGRAM), SMALL),
    st.builds(capsule, st.integers(0, (1 << 62) - 1), st.binary(max_size=12)),
    SMALL,  # raw bytes
)


class InternalErrors(logging.Handler):
    """Catches the engine's ERROR log records (its internal-error path logs one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _pick(items: list[int], index: int) -> int | None:
    return items[index % len(items)] if items else None


class EngineMachine(RuleBasedStateMachine):
    """A peer and an application, driving one engine per implementation in lock-step."""

    is_client = False

    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.wires: list[Wire] = []
        self.config = CONFIGS["default"]
        self.peer_streams: list[int] = []
        self.local_streams: list[int] = []
        self.echoed: set[tuple[int, int]] = set()
        self.results: list[list[Any]] = []
        self.internal = InternalErrors()
        logging.getLogger("anywt").addHandler(self.internal)

    def teardown(self) -> None:
        logging.getLogger("anywt").removeHandler(self.internal)

    # Setup -------------------------------------------------------------------

    @initialize(
        target=sessions,
        variant=st.sampled_from(sorted(SETTINGS_VARIANTS)),
        config=st.sampled_from(sorted(CONFIGS)),
        establish=st.booleans(),
    )
    def setup(self, variant: str, config: str, establish: bool) -> Any:
        random.seed(7)
        self.config = CONFIGS[config]
        self.wires = [
            Wire(module, is_client=self.is_client, config=self.config).start(
                SETTINGS_VARIANTS[variant]
            )
            for module in ENGINES
        ]
        self.results = [[] for _ in self.wires]
        if self.is_client:
            ids = self._app(lambda e: e.connect(authority="example.com", path="/first"))
            session = ids if isinstance(ids, int) else 0
            if establish and isinstance(ids, int):
                self._each(lambda w: w.respond(session, 200))
        else:
            session = self._each(lambda w: w.request("/first"))
            if establish:
                self._app(lambda e: e.accept(session))
        return session

    # Helpers -----------------------------------------------------------------

    def _each(self, step: Any) -> Any:
        """Apply a peer step to every engine; peer input must never raise."""
        out = None
        for wire in self.wires:
            out = step(wire)
        return out

    def _app(self, call: Any) -> Any:
        """An application call on every engine: same result or same caller error."""
        outcomes = []
        for index, wire in enumerate(self.wires):
            try:
                result = call(wire.engine)
            except CALLER_ERRORS as exc:
                outcomes.append(("raised", type(exc).__name__))
            else:
                outcomes.append(("ok", result))
            self.results[index].append(outcomes[-1])
            wire.take()
        assert all(o == outcomes[0] for o in outcomes), outcomes
        kind, value = outcomes[0]
        return value if kind == "ok" else None

    def _streams(self) -> list[int]:
        return self.peer_streams + self.local_streams

    # Peer: streams -------------------------------------------------------------

    @rule(index=st.integers(0, 15), data=SMALL, fin=st.booleans())
    def raw_bytes_on_a_stream(self, index: int, data: bytes, fin: bool) -> None:
        streams = self._streams()
        wire = self.wires[0]
        targets = [*streams, wire.peer_control_id, wire.peer_encoder_id, wire.peer_decoder_id]
        stream = targets[index % len(targets)]
        self._each(lambda w: w.feed(stream, data, fin))

    @rule(
        uni=st.booleans(),
        prefix=st.sampled_from([b"", b"\x40\x54", b"\x40\x41", b"\x01", b"\x21", b"\x00", b"\x02"]),
        data=SMALL,
        fin=st.booleans(),
    )
    def new_stream_of_raw_bytes(self, uni: bool, prefix: bytes, data: bytes, fin: bool) -> None:
        stream = self.wires[0].peer_stream(uni)
        for wire in self.wires[1:]:
            assert wire.peer_stream(uni) == stream
        self.peer_streams.append(stream)
        self._each(lambda w: w.feed(stream, prefix + data, fin))

    @rule(
        session=sessions, uni=st.booleans(), data=SMALL, fin=st.booleans(), split=st.integers(0, 6)
    )
    def open_wt_stream(self, session: int, uni: bool, data: bytes, fin: bool, split: int) -> None:
        stream = self.wires[0].peer_stream(uni)
        for wire in self.wires[1:]:
            assert wire.peer_stream(uni) == stream
        self.peer_streams.append(stream)
        payload = enc(0x54 if uni else 0x41) + enc(session) + data
        self._each(
            lambda w: (w.feed(stream, payload[:split]), w.feed(stream, payload[split:], fin))
        )

    @rule(session=st.integers(0, 1 << 20).map(lambda n: n * 4 + 1), uni=st.booleans())
    def wt_stream_for_a_bad_session_id(self, session: int, uni: bool) -> None:
        stream = self.wires[0].peer_stream(uni)
        for wire in self.wires[1:]:
            wire.peer_stream(uni)
        self.peer_streams.append(stream)
        self._each(lambda w: w.feed(stream, enc(0x54 if uni else 0x41) + enc(session)))

    @rule(index=st.integers(0, 15), code=CODES, final=st.integers(-1, 300))
    def reset_a_stream(self, index: int, code: int, final: int) -> None:
        stream = _pick(self._streams(), index)
        if stream is not None:
            self._each(lambda w: w.reset(stream, code, final))

    @rule(uni=st.booleans(), code=CODES, final=st.integers(-1, 300))
    def reset_before_the_header(self, uni: bool, code: int, final: int) -> None:
        stream = self.wires[0].peer_stream(uni)
        for wire in self.wires[1:]:
            assert wire.peer_stream(uni) == stream
        self.peer_streams.append(stream)
        self._each(lambda w: w.reset(stream, code, final))

    @rule(index=st.integers(0, 15))
    def stack_discards_after_our_stop(self, index: int) -> None:
        stream = _pick(self._streams(), index)
        if stream is not None:
            self._each(lambda w: (w.engine.receive_side_discarded(stream, w.now), w.take()))

    @rule(index=st.integers(0, 15), code=CODES)
    def stop_a_stream(self, index: int, code: int) -> None:
        stream = _pick(self.local_streams + self.peer_streams, index)
        if stream is not None:
            self.echoed.add((stream, code))
            self._each(lambda w: w.stop(stream, code))

    # Peer: sessions ------------------------------------------------------------

    @precondition(lambda self: not self.is_client)
    @rule(
        target=sessions,
        path=st.sampled_from(["/a", "/b"]),
        body=st.lists(CAPSULE_BYTES, max_size=3),
        origin=st.booleans(),
    )
    def request(self, path: str, body: list[bytes], origin: bool) -> int:
        extra = [(b"origin", b"https://example.com")] if origin else []
        payload = data_frame(b"".join(body)) if body else b""
        return self._each(lambda w: w.request(path, body=payload, extra=extra))

    @precondition(lambda self: not self.is_client)
    @rule(
        headers=st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        b":method",
                        b":path",
                        b":protocol",
                        b":scheme",
                        b":authority",
                        b"origin",
                        b"x",
                        b"Bad",
                    ]
                ),
                st.binary(max_size=12),
            ),
            max_size=6,
        )
    )
    def malformed_request(self, headers: list[tuple[bytes, bytes]]) -> None:
        stream = self.wires[0].peer_stream(False)
        for wire in self.wires[1:]:
            wire.peer_stream(False)
        self.peer_streams.append(stream)
        self._each(lambda w: w.feed(stream, w.headers_block(stream, headers)))

    @precondition(lambda self: self.is_client)
    @rule(session=sessions, status=st.sampled_from([200, 200, 204, 103, 404, 429, 500]))
    def respond(self, session: int, status: int) -> None:
        if session in self.wires[0].transport.sent:
            self._each(lambda w: w.respond(session, status))

    @rule(
        session=sessions,
        capsules=st.lists(CAPSULE_BYTES, max_size=4),
        fin=st.booleans(),
        split=st.integers(0, 8),
    )
    def capsules(self, session: int, capsules: list[bytes], fin: bool, split: int) -> None:
        body = data_frame(b"".join(capsules))
        self._each(lambda w: (w.feed(session, body[:split]), w.feed(session, body[split:], fin)))

    @rule(
        session=sessions,
        capsules=st.lists(
            st.one_of(
                st.builds(drain_capsule),
                st.builds(
                    varint_capsule,
                    st.sampled_from(FLOW_CAPSULES),
                    st.one_of(st.integers(0, 300), st.integers(1 << 20, 1 << 24)),
                ),
                st.builds(capsule, st.just(CHROME_GREASE_CAPSULE_TYPE), SMALL),
                st.builds(capsule, st.just(CAPSULE_DATAGRAM), SMALL),
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def well_formed_capsules(self, session: int, capsules: list[bytes]) -> None:
        """What a well-behaved peer sends during a session (weighted up: deep states)."""
        body = data_frame(b"".join(capsules))
        self._each(lambda w: w.feed(session, body))

    @rule(session=sessions, uni=st.booleans(), data=SMALL, fin=st.booleans())
    def well_formed_stream(self, session: int, uni: bool, data: bytes, fin: bool) -> None:
        stream = self.wires[0].peer_stream(uni)
        for wire in self.wires[1:]:
            wire.peer_stream(uni)
        self.peer_streams.append(stream)
        self._each(lambda w: w.feed(stream, enc(0x54 if uni else 0x41) + enc(session) + data, fin))

    @rule(session=sessions, block=st.binary(max_size=24))
    def random_header_block_on_connect_stream(self, session: int, block: bytes) -> None:
        self._each(lambda w: w.feed(session, frame(FRAME_HEADERS, block)))

    @rule(session=sessions, code=CODES)
    def reset_connect_stream(self, session: int, code: int) -> None:
        self._each(lambda w: w.reset(session, code))

    @rule(session=sessions, code=CODES)
    def stop_connect_stream(self, session: int, code: int) -> None:
        self.echoed.add((session, code))
        self._each(lambda w: w.stop(session, code))

    @rule(session=sessions, payload=SMALL)
    def datagram(self, session: int, payload: bytes) -> None:
        self._each(lambda w: w.wt_datagram(session, payload))

    @rule(raw=st.binary(max_size=12))
    def raw_datagram(self, raw: bytes) -> None:
        self._each(lambda w: w.datagram(raw))

    @precondition(lambda self: self.is_client)
    @rule(goaway=st.integers(0, 12))
    def goaway(self, goaway: int) -> None:
        self._each(lambda w: w.feed(w.peer_control_id, frame(FRAME_GOAWAY, enc(goaway * 4))))

    @rule(data=SMALL)
    def control_stream_bytes(self, data: bytes) -> None:
        self._each(lambda w: w.feed(w.peer_control_id, data))

    # Application ---------------------------------------------------------------

    @precondition(lambda self: not self.is_client)
    @rule(session=sessions, protocol=st.sampled_from([None, "chat"]))
    def accept(self, session: int, protocol: str | None) -> None:
        self._app(lambda e: e.accept(session, protocol=protocol))

    @precondition(lambda self: not self.is_client)
    @rule(session=sessions, status=st.sampled_from([403, 404, 429, 503, 200]))
    def reject(self, session: int, status: int) -> None:
        self._app(lambda e: e.reject(session, status))

    @precondition(lambda self: self.is_client)
    @rule(target=sessions)
    def connect(self) -> Any:
        session = self._app(lambda e: e.connect(authority="example.com", path="/more"))
        return session if isinstance(session, int) else 0

    @rule(session=sessions, uni=st.booleans())
    def open_stream(self, session: int, uni: bool) -> None:
        stream = self._app(lambda e: e.open_stream(session, is_unidirectional=uni))
        if isinstance(stream, int):
            self.local_streams.append(stream)

    @rule(index=st.integers(0, 15), size=st.sampled_from([0, 1, 100, 5000]), fin=st.booleans())
    def send(self, index: int, size: int, fin: bool) -> None:
        stream = _pick(self._streams(), index)
        if stream is not None:
            self._app(lambda e: e.send_stream_data(stream, b"s" * size, fin))

    @rule(
        index=st.integers(0, 15),
        code=st.sampled_from([0, 7, 0xFFFFFFFF, 1 << 32]),
        unsent=st.sampled_from([0, 0, 2, 50, 10_000]),
    )
    def app_reset(self, index: int, code: int, unsent: int) -> None:
        stream = _pick(self._streams(), index)
        if stream is not None:
            for wire in self.wires:  # what the stack had not sent of it yet
                sent = len(wire.transport.data(stream))
                wire.transport.unsent[stream] = min(unsent, sent)
            self._app(lambda e: e.reset_stream(stream, code))

    @rule(index=st.integers(0, 15), code=st.sampled_from([0, 9]))
    def app_stop(self, index: int, code: int) -> None:
        stream = _pick(self._streams(), index)
        if stream is not None:
            self._app(lambda e: e.stop_stream(stream, code))

    @rule(session=sessions, size=st.sampled_from([0, 10, 1180, 5000]))
    def send_datagram(self, session: int, size: int) -> None:
        self._app(lambda e: e.send_datagram(session, b"d" * size))

    @rule(
        session=sessions,
        code=st.sampled_from([0, 5, 1 << 32]),
        reason=st.sampled_from(["", "bye", "\u00e9" * 600]),
    )
    def close_session(self, session: int, code: int, reason: str) -> None:
        self._app(lambda e: e.close_session(session, code, reason))

    @rule(session=sessions)
    def drain(self, session: int) -> None:
        self._app(lambda e: e.drain_session(session))

    @rule(session=sessions, amount=st.sampled_from([-1, 0, 10, 100000]))
    def consume(self, session: int, amount: int) -> None:
        self._app(lambda e: e.consume_data(session, amount))

    @rule(session=sessions, value=st.sampled_from([0, 10, 1 << 30, 1 << 63]))
    def grant_data(self, session: int, value: int) -> None:
        self._app(lambda e: e.grant_data_credit(session, value))

    @rule(
        session=sessions, value=st.sampled_from([0, 5, 1 << 60, (1 << 60) + 1]), uni=st.booleans()
    )
    def grant_streams(self, session: int, value: int, uni: bool) -> None:
        self._app(lambda e: e.grant_streams_credit(session, value, uni))

    @rule()
    def snapshots(self) -> None:
        self._app(lambda e: [e.session_snapshot(s) for s in e.session_ids()])

    @precondition(lambda self: not self.is_client)
    @rule()
    def send_goaway(self) -> None:
        self._app(lambda e: e.send_goaway())

    @rule()
    def connection_lost(self) -> None:
        self._each(lambda w: w.terminate(0x0A, "idle timeout"))

    # Invariants ----------------------------------------------------------------

    @invariant()
    def only_protocol_errors(self) -> None:
        assert not self.internal.records, [r.getMessage() for r in self.internal.records]
        for wire in self.wires:
            transport = wire.transport
            assert transport.close_code != H3_INTERNAL_ERROR, transport.closed
            if transport.closed is not None:
                assert transport.close_code in CONNECTION_ERROR_CODES | {H3_NO_ERROR}, (
                    transport.closed
                )
            assert not transport.calls_after_close, transport.calls_after_close
            assert not transport.misuse, transport.misuse
            for stream, codes in [*transport.resets.items(), *transport.stops.items()]:
                for code in codes:
                    assert (
                        code in STREAM_CODES
                        or APP_ERROR_FIRST <= code <= APP_ERROR_LAST
                        or (stream, code) in self.echoed
                    ), (stream, hex(code))

    @invariant()
    def bounded_and_consistent(self) -> None:
        for wire in self.wires:
            engine = wire.engine
            snapshot = engine.connection_snapshot()
            assert 0 <= snapshot.buffered_streams <= self.config.max_buffered_streams
            assert 0 <= snapshot.buffered_datagrams <= self.config.max_buffered_datagrams
            terminated = [e for e in wire.events if isinstance(e, ConnectionTerminated)]
            assert len(terminated) <= 1
            if engine.closed:
                for session in engine.session_ids():
                    assert engine.session_state(session) in (
                        SessionState.CLOSED,
                        SessionState.REJECTED,
                    )
            ended: set[int] = set()
            for event in wire.events:
                if isinstance(event, SessionClosed | SessionRejected):
                    assert event.session_id not in ended, event
                    ended.add(event.session_id)
                elif isinstance(event, StreamDataReceived | DatagramReceived | StreamOpened):
                    assert event.session_id not in ended, event
            for session in engine.session_ids():
                info = engine.session_snapshot(session)
                if info.flow_control and info.local_max_data is not None:
                    assert info.data_received <= info.local_max_data, info
                if engine.session_state(session) in (SessionState.CLOSED, SessionState.REJECTED):
                    assert info.active_streams == ()

    @invariant()
    def twins_agree(self) -> None:
        first = self.wires[0]
        for wire in self.wires[1:]:
            assert wire.transport.calls == first.transport.calls
            assert wire.events == first.events


class ClientMachine(EngineMachine):
    is_client = True


MACHINE_SETTINGS = settings(
    max_examples=400 if LONG else 25,
    stateful_step_count=60 if LONG else 30,
    deadline=None,
    derandomize=not LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestServerEngineMachine = EngineMachine.TestCase
TestServerEngineMachine.settings = MACHINE_SETTINGS
TestClientEngineMachine = ClientMachine.TestCase
TestClientEngineMachine.settings = MACHINE_SETTINGS


def test_both_engines_are_under_test() -> None:
    """The machines drive the compiled engine too, unless it is not built (then say so)."""
    if _engine_c is None:
        pytest.skip("compiled core not built: only the pure engine was fuzzed")
    assert len(ENGINES) == 2
