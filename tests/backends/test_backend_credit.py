"""QUIC receive windows that follow consumption (aioquic) or receipt (qh3)."""

from __future__ import annotations

import pytest
from backend_harness import RecordingEngine, make_link, server_settings

KIB = 1024


def _stalled(link, stream_ids, rounds=400):
    """Run until nothing moves; return the bytes the server engine got per stream."""
    link.run(rounds=rounds)
    return [link.server_engine.received(sid) for sid in stream_ids]


def test_aioquic_stream_window_bounded_until_consumed():
    link = make_link(
        "aioquic", server=server_settings(max_stream_data=256 * KIB, max_data=4096 * KIB)
    )
    link.server_reads = False  # an application that does not read yet
    total = 1024 * KIB
    link.client.send_stream_data(0, b"s" * total, end_stream=True)
    (got,) = _stalled(link, [0])
    # The sender stalls at the window: aioquic alone would have doubled it.
    assert got == 256 * KIB
    assert link.client.send_backlog(0) == total - 256 * KIB
    # 16 bytes of slack for the WebTransport stream header count as read.
    assert link.server.stats()["receive_unconsumed"] == 256 * KIB - 16
    # Reading less than a quarter of the window grants nothing yet...
    link.server.stream_consumed(0, 32 * KIB)
    assert _stalled(link, [0]) == [256 * KIB]
    # ...reading half of it lets the sender resume by that much.
    link.server.stream_consumed(0, 96 * KIB)
    assert _stalled(link, [0]) == [(128 + 256) * KIB + 16]
    # An application that reads everything gets everything.
    link.server_reads = True
    link.server.extra["test_consumed"] = {0: 128 * KIB}
    assert link.run(lambda: 0 in link.server_engine.fin, rounds=4000)
    assert link.server_engine.received(0) == total
    assert link.server.stats()["receive_unconsumed"] == 0


def test_aioquic_connection_window_bounded_until_consumed():
    link = make_link(
        "aioquic", server=server_settings(max_stream_data=1024 * KIB, max_data=256 * KIB)
    )
    link.server_reads = False
    for stream_id in (0, 4, 8):
        link.client.send_stream_data(stream_id, b"c" * (512 * KIB), end_stream=True)
    got = _stalled(link, [0, 4, 8])
    # The HTTP/3-level streams of a real engine would be credited on their own;
    # here every byte is application data.
    assert sum(got) == 256 * KIB
    for stream_id, amount in zip((0, 4, 8), got, strict=True):
        link.server.stream_consumed(stream_id, amount)
    assert sum(_stalled(link, [0, 4, 8])) == 512 * KIB
    link.server_reads = True
    link.server.extra["test_consumed"] = dict(zip((0, 4, 8), got, strict=True))
    assert link.run(lambda: len(link.server_engine.fin) == 3, rounds=4000)
    assert sum(link.server_engine.received(s) for s in (0, 4, 8)) == 3 * 512 * KIB


class _H3Engine(RecordingEngine):
    """Tells which streams are WebTransport data streams, as the engine does."""

    def __init__(self, sessions: dict[int, int]) -> None:
        super().__init__()
        self.sessions = sessions

    def stream_session(self, stream_id: int) -> int | None:
        return self.sessions.get(stream_id)


def test_aioquic_streams_the_engine_reads_itself_are_credited_on_receipt():
    # HTTP/3 control, QPACK and request streams are consumed by the engine,
    # which never reports it: they are credited as they arrive.  Application
    # streams are credited as read, or once the engine stopped them.
    link = make_link(
        "aioquic",
        server=server_settings(max_stream_data=256 * KIB, max_data=256 * KIB),
        handshake=False,
    )
    # Stream 0 is the session's request stream, 4 and 8 its data streams; the
    # unidirectional stream 2 is unknown to the engine (a control stream).
    link.server_engine = _H3Engine({0: 0, 4: 0, 8: 0})
    assert link.handshake()
    link.server_reads = False
    link.client.send_stream_data(0, b"r" * (200 * KIB))
    link.client.send_stream_data(2, b"c" * (200 * KIB))
    assert link.run(
        lambda: link.server_engine.received(0) + link.server_engine.received(2) == 400 * KIB
    )
    link.client.send_stream_data(4, b"s" * (100 * KIB))
    link.run()
    link.server.stop_stream(4, 2)
    link.client.send_stream_data(8, b"u" * (100 * KIB), end_stream=True)
    assert link.run(lambda: 8 in link.server_engine.fin)
    # Only the data stream nobody read yet still holds credit back.
    assert link.server.stats()["receive_unconsumed"] == 100 * KIB - 16
    link.server.stream_consumed(8, 100 * KIB)
    assert link.server.stats()["receive_unconsumed"] == 0


def test_aioquic_header_slack():
    # A WebTransport stream header (the engine strips it) is never reported:
    # up to 16 bytes per stream are credited anyway.
    link = make_link(
        "aioquic", server=server_settings(max_stream_data=64 * KIB, max_data=1024 * KIB)
    )
    link.server_reads = False
    link.client.send_stream_data(0, b"h" * (64 * KIB), end_stream=True)
    link.run()
    link.server.stream_consumed(0, 64 * KIB - 10)
    assert link.server.stats()["receive_unconsumed"] == 0


def test_qh3_credits_on_receipt():
    pytest.importorskip("qh3")
    link = make_link("qh3", server=server_settings(max_stream_data=256 * KIB))
    link.server_reads = False
    link.client.send_stream_data(0, b"q" * (1024 * KIB), end_stream=True)
    assert link.run(lambda: 0 in link.server_engine.fin, rounds=4000)
    link.server.stream_consumed(0, 1024 * KIB)  # accepted, changes nothing
    stats = link.server.stats()
    assert stats["receive_credit_on_consumption"] == 0
    assert "receive_unconsumed" not in stats
