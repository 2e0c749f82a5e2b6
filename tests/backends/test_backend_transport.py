"""The engine's transport over both stacks: datagrams, resets, backlogs, key updates."""

from __future__ import annotations

import itertools

import pytest
from backend_harness import client_settings, make_link, server_settings
from helpers.quicpair import make_pair

from anywt.backends.base import BackendError
from anywt.core import _engine_py
from anywt.core.errors import DatagramsUnavailable, DatagramTooLarge
from anywt.core.events import DatagramReceived


def _session_pair(stack_name):
    pair = make_pair(_engine_py, stack_name=stack_name)
    sid = pair.client.connect(authority="127.0.0.1", path="/dg")
    pair.transfer()
    pair.server.accept(sid)
    pair.transfer()
    pair.take_client()
    pair.take_server()
    return pair, sid


def test_datagram_max_payload_is_exact(stack_name):
    pair, sid = _session_pair(stack_name)
    for sender, conn, take in (
        (pair.client, pair.client_conn, pair.take_server),
        (pair.server, pair.server_conn, pair.take_client),
    ):
        limit = conn.max_datagram_payload()
        size = sender.max_datagram_size(sid)
        if stack_name == "aioquic":
            # 1200-byte packets, 8-byte connection ids, 2-byte packet numbers.
            assert limit == 1200 - (1 + 8 + 2 + 16) - (1 + 2)
            assert size == limit - 1  # the quarter stream id of session 0 takes 1 byte
        else:
            # Unknown connection id and packet number lengths: 20 and 4 assumed.
            assert limit == conn.quic._core.active_path[5] - 44
            # The engine keeps the limit of the handshake; the qh3 client's path
            # MTU discovery may have raised it since.
            assert 1280 - 44 - 1 == size <= limit - 1
        sender.send_datagram(sid, b"m" * size)
        pair.transfer()
        assert DatagramReceived(sid, b"m" * size) in take()
        with pytest.raises(DatagramTooLarge):
            sender.send_datagram(sid, b"m" * (size + 1))


def test_aioquic_limit_is_the_packet_limit():
    # One byte more than the limit does not fit an aioquic packet: handed to
    # aioquic directly, it would sit at the head of its queue for ever.
    link = make_link("aioquic")
    limit = link.client.max_datagram_payload()
    link.client.quic.send_datagram_frame(b"x" * (limit + 1))
    link.run()
    assert link.server_engine.datagrams == []
    assert link.client.datagram_backlog() == 1


def test_oversized_datagram_never_reaches_the_stack(stack_name):
    link = make_link(stack_name)
    limit = link.client.max_datagram_payload()
    with pytest.raises(DatagramTooLarge) as raised:
        link.client.send_datagram(b"x" * (limit + 1))
    assert raised.value.max_size == limit
    assert link.client.datagram_backlog() == 0
    # The connection is not wedged: a datagram of the limit and stream data flow.
    link.client.send_datagram(b"y" * limit)
    link.client.send_stream_data(0, b"after", end_stream=True)
    link.run()
    assert link.server_engine.datagrams == [b"y" * limit]
    assert bytes(link.server_engine.data[0]) == b"after"
    assert link.client.stats()["datagrams_refused"] == 1
    assert link.client.transmit_errors == 0


def test_peer_without_datagrams(stack_name):
    link = make_link(stack_name, server=server_settings(max_datagram_frame_size=0))
    assert link.client.max_datagram_payload() == 0
    assert link.client_engine.handshake is not None and link.client_engine.handshake[1] == 0
    with pytest.raises(DatagramsUnavailable):
        link.client.send_datagram(b"x")


def test_reset_reports_the_final_size(stack_name):
    link = make_link(stack_name)
    link.client.send_stream_data(0, b"a" * 3000)
    link.run()
    link.client.reset_stream(0, 7)
    link.run()
    assert link.server_engine.resets == [(0, 7, 3000)]
    # Resetting again, or a stream the stack already forgot, is a no-op.
    link.client.reset_stream(0, 8)
    link.run()
    link.client.reset_stream(0, 9)
    link.client.stop_stream(0, 9)
    link.client.stop_stream(4000, 9)
    link.run()
    assert link.server_engine.resets == [(0, 7, 3000)]


def test_writes_after_the_peer_stopped_are_dropped(stack_name):
    link = make_link(stack_name)
    link.client.send_stream_data(0, b"first")
    link.run()
    link.server.stop_stream(0, 5)
    link.run()
    assert link.client_engine.stops == [(0, 5)]
    # The stack reset the stream itself: the engine's later write must not raise.
    link.client.send_stream_data(0, b"late", end_stream=True)
    link.run()
    assert link.server_engine.resets == [(0, 5, 5)]
    # Writing on a stream the stack completed and forgot does not raise either.
    link.client.send_stream_data(4, b"x", end_stream=True)
    link.run()
    link.server.send_stream_data(4, b"y", end_stream=True)
    link.run()
    link.client.send_stream_data(4, b"z")
    link.client.send_datagram(b"still fine")


def test_send_backlog_falls_as_data_is_acknowledged(stack_name):
    link = make_link(stack_name)
    total = 2 << 20
    link.client.send_stream_data(0, b"b" * total, end_stream=True)
    backlog = [link.client.send_backlog(0)]
    assert backlog[0] >= total - 64 * 1024  # at most a first flight left at once
    for _ in range(3000):
        link.step()
        backlog.append(link.client.send_backlog(0))
        if backlog[-1] == 0 and 0 in link.server_engine.fin:
            break
    assert link.server_engine.received(0) == total
    assert backlog[-1] == 0
    assert all(later <= earlier for earlier, later in itertools.pairwise(backlog))
    assert len(set(backlog)) > 5  # it fell step by step, with the congestion window
    assert link.client.send_backlog(12345) == 0


def test_key_update_counted_on_both_sides(stack_name):
    link = make_link(stack_name)
    link.wait(0.05)  # qh3: the client is confirmed once HANDSHAKE_DONE arrived
    assert (link.client.key_updates(), link.server.key_updates()) == (0, 0)
    link.client.request_key_update()
    link.client.send_stream_data(0, b"ping", end_stream=True)
    link.run()
    assert (link.client.key_updates(), link.server.key_updates()) == (1, 1)
    # The server's turn: qh3 refuses until its packets of the new phase were
    # acknowledged, so traffic must flow both ways meanwhile.
    for attempt in range(50):
        try:
            link.server.request_key_update()
            break
        except BackendError as exc:
            assert "key update not possible now" in str(exc)
            link.client.send_stream_data(4 * (attempt + 2), b"traffic", end_stream=True)
            link.server.send_stream_data(3 + 4 * attempt, b"traffic", end_stream=True)
            link.run()
            link.wait(0.05)
    else:
        pytest.fail("the server could never update its keys")
    link.server.send_stream_data(1, b"pong", end_stream=True)
    link.run()
    assert (link.client.key_updates(), link.server.key_updates()) == (2, 2)
    assert link.client.stats()["key_updates"] == 2
    assert bytes(link.client_engine.data[1]) == b"pong"


def test_key_update_refused_before_the_handshake(stack_name):
    link = make_link(stack_name, handshake=False)
    with pytest.raises(BackendError, match="key update not possible now"):
        link.client.request_key_update()


def test_streams_over_the_peer_limit_wait_for_credit(stack_name):
    # qh3 raises when a stream would exceed the peer's MAX_STREAMS (its server
    # grants 103 unidirectional streams, aioquic 128): the adapter queues them.
    link = make_link(stack_name, server=server_settings(max_streams_uni=20))
    count = 150
    for index in range(count):
        stream_id = link.client.get_next_available_stream_id(is_unidirectional=True)
        assert stream_id == 2 + 4 * index
        link.client.send_stream_data(stream_id, b"u%d" % index, end_stream=True)
    # The last ones wait (inside aioquic, in the adapter for qh3), counted as backlog.
    assert link.client.send_backlog(2 + 4 * (count - 1)) == len(b"u%d" % (count - 1))
    assert link.run(lambda: len(link.server_engine.fin) == count, rounds=3000)
    assert all(bytes(link.server_engine.data[2 + 4 * i]) == b"u%d" % i for i in range(count))


def test_close_before_the_first_datagram(stack_name):
    # A server refusing a connection as soon as it exists (qh3 would ignore the
    # close before its first datagram: the adapter applies it afterwards).
    link = make_link(stack_name, handshake=False)
    refused = []

    def refuse(data):
        conn = link.backend.server_connection(
            link.server_settings, link.client.quic.original_destination_connection_id
        )
        conn.engine = link.server_engine
        conn.close_transport(0x2, "server busy")
        refused.append(conn)
        link.server = conn
        return conn

    link._server_for = refuse  # type: ignore[method-assign]
    assert link.terminated(rounds=2000)
    assert link.client_engine.terminated is not None
    assert link.client_engine.terminated[0] == 0x2
    assert not link.client.handshake_done


def test_idle_timeout_terminates(stack_name):
    link = make_link(
        stack_name,
        client=client_settings(idle_timeout=1.0),
        server=server_settings(idle_timeout=1.0),
    )
    start = link.now
    assert link.terminated()
    assert 0.9 < link.now - start < 5
    assert link.client_engine.terminated is not None
    assert link.client.get_timer() is None
    assert link.client.datagrams_to_send(link.now) == []


def test_reset_reports_exactly_the_bytes_it_dropped(stack_name):
    # The engine gives back the flow-control credit of what a reset dropped: the
    # count must be what the peer will not see in the final size, never more.
    link = make_link(stack_name)
    stream_id = link.client.get_next_available_stream_id(is_unidirectional=True)
    payload = bytes(range(256)) * 400  # 100 KiB: more than the first flight
    link.client.send_stream_data(stream_id, payload)
    link.step()  # some of it leaves
    backlog = link.client.send_backlog(stream_id)
    assert 0 < backlog < len(payload)
    assert link.client.reset_stream(stream_id, 9) == backlog
    assert link.run(lambda: bool(link.server_engine.resets))
    assert link.server_engine.resets == [(stream_id, 9, len(payload) - backlog)]
    assert link.client.reset_stream(stream_id, 9) == 0  # again: nothing left to drop


def test_reset_of_a_stream_waiting_for_credit_drops_all_it_holds(stack_name):
    link = make_link(stack_name, server=server_settings(max_streams_uni=2))
    waiting = []
    for index in range(130):  # past both stacks' initial limits
        stream_id = link.client.get_next_available_stream_id(is_unidirectional=True)
        link.client.send_stream_data(stream_id, b"w%03d" % index)
        waiting.append(stream_id)
    last = waiting[-1]
    assert link.client.send_backlog(last) == 4
    assert link.client.reset_stream(last, 3) == 4
    assert link.client.send_backlog(last) == 0
    for stream_id in waiting[:-1]:
        link.client.send_stream_data(stream_id, b"", end_stream=True)
    # The others arrive in full as credit comes; the reset one opens reset, with nothing in it.
    assert link.run(lambda: last in {r[0] for r in link.server_engine.resets}, rounds=4000)
    assert [r for r in link.server_engine.resets if r[0] == last] == [(last, 3, 0)]
    assert link.run(lambda: len(link.server_engine.fin) == len(waiting) - 1, rounds=4000)
