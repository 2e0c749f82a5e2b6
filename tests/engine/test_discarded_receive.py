"""``receive_side_discarded``: a stack that reports nothing of a stream after STOP_SENDING.

picoquic drops what arrives on a stream we stopped, FIN included, and reports
only a reset.  Its backend calls ``receive_side_discarded`` once the stop has
taken effect; the stream's receive side is then over, its record goes once
both directions ended, and its stream credit comes back.
"""

from __future__ import annotations

from engine_wire import CAPSULE_MAX_STREAMS_UNI, dec, established_server

from anywt.core.config import EngineConfig
from anywt.core.events import StreamDataReceived, StreamReset


def _server(engine_module):
    config = EngineConfig(initial_max_streams_uni=2, initial_max_streams_bidi=2, streams_window=2)
    return established_server(engine_module, config=config)


def _uni_grants(wire, session_id):
    return [
        dec(payload)[0]
        for kind, payload in wire.sent_capsules(session_id)
        if kind == CAPSULE_MAX_STREAMS_UNI
    ]


def test_stopped_stream_ends_when_the_stack_discards_it(engine_module):
    wire, sid = _server(engine_module)
    before = wire.engine.connection_snapshot().stream_records
    stream = wire.open_wt(sid, uni=True, data=b"first")
    wire.engine.stop_stream(stream, 3)
    assert wire.engine.connection_snapshot().stream_records == before + 1
    wire.engine.receive_side_discarded(stream, wire.now)
    assert wire.engine.connection_snapshot().stream_records == before
    assert wire.engine.session_snapshot(sid).active_streams == ()
    assert _uni_grants(wire, sid) == [3]  # its credit came back
    # Nothing is reported for it: the application stopped it.
    assert not [e for e in wire.take() if isinstance(e, StreamReset)]
    # What the stack might still let through is ignored.
    wire.feed(stream, b"late", fin=True)
    assert not [e for e in wire.take() if isinstance(e, StreamDataReceived)]
    assert wire.transport.closed is None


def test_discard_of_a_stream_not_stopped_changes_nothing(engine_module):
    wire, sid = _server(engine_module)
    stream = wire.open_wt(sid, uni=True, data=b"a")
    wire.take()
    wire.engine.receive_side_discarded(stream, wire.now)
    wire.engine.receive_side_discarded(sid, wire.now)  # the CONNECT stream
    wire.engine.receive_side_discarded(999_999, wire.now)  # unknown
    assert wire.engine.session_snapshot(sid).active_streams == (stream,)
    assert wire.feed(stream, b"b") == [StreamDataReceived(stream, b"b", False, sid)]
    assert _uni_grants(wire, sid) == []


def test_discarded_bidi_stream_keeps_its_sending_side(engine_module):
    wire, sid = _server(engine_module)
    stream = wire.open_wt(sid, uni=False, data=b"x")
    wire.engine.stop_stream(stream, 0)
    wire.engine.receive_side_discarded(stream, wire.now)
    assert wire.engine.session_snapshot(sid).active_streams == (stream,)
    wire.engine.send_stream_data(stream, b"reply", end_stream=True)
    assert wire.transport.data(stream).endswith(b"reply")
    assert wire.engine.session_snapshot(sid).active_streams == ()
