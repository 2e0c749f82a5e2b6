"""anywt against anywt across QUIC stacks: every pair of two different backends.

aioquic, qh3 and aiopquic (picoquic) share anywt's protocol core but nothing
below it, so each pair is a real QUIC interop test between two stacks with
anywt's WebTransport on top: the client's backend is the row's
``anywt_backend``, the server's its ``peer_backend`` (pairs with aiopquic
only on CPython >= 3.12).  The client's scenarios run against the recording
server (``anywt_side.py``) and every feature is checked at both ends.
"""

from __future__ import annotations

from typing import Any

import anywt_side as side
import pytest
from matrix import Checklist, Row, rows_for

from anywt.echo import SERVER_BIDI_GREETING

DRAFT = "draft-15/16"
BIG = 1024 * 1024
STREAMS = 10


class CrossBackendChecks:
    """Client scenario results confirmed by the server's record of the same session."""

    def __init__(self, client: side.AnywtClient, server: side.RecordingServer) -> None:
        self.client = client
        self.server = server
        self._aborted: dict[str, Any] | None = None

    def _last(self) -> side.SessionRecord:
        """The server's record of the session the client just finished."""
        records = self.server.wait_for(lambda rs: bool(rs) and rs[-1].close is not None)
        assert records, "anywt's server recorded no session"
        return records[-1]

    def version(self) -> None:
        draft = self.client.run(side.AnywtClient.draft)
        assert draft == DRAFT, f"the client negotiated {draft}"
        record = self._last()
        assert record.draft == DRAFT and record.flow_control, record.summary()

    def bidi(self) -> None:
        detail = self.client.run(side.AnywtClient.bidi_echo)
        streams = self._last().streams_of("bidi")
        assert [(s.finished, s.received) for s in streams] == [(True, detail["bytes"])], streams

    def uni(self) -> None:
        detail = self.client.run(side.AnywtClient.uni_echo)
        streams = self._last().streams_of("uni")
        assert [(s.finished, s.received) for s in streams] == [(True, detail["bytes"])], streams

    def server_bidi(self) -> None:
        self.client.run(side.AnywtClient.server_bidi)
        replies = [s.reply for s in self._last().streams_of("server-bidi")]
        assert replies == [SERVER_BIDI_GREETING], replies

    def datagrams(self) -> None:
        self.client.run(side.AnywtClient.datagram_echo)
        assert self._last().datagrams_echoed >= 1

    def _abort_record(self) -> side.StreamRecord:
        if self._aborted is None:
            self._aborted = self.client.run(side.AnywtClient.abort_stream)
            self._aborted["record"] = self._last()
        record: side.SessionRecord = self._aborted["record"]
        stream_id = self._aborted["stream_id"]
        found = [s for s in record.streams if s.stream_id == stream_id]
        assert found, f"the server has no record of stream {stream_id}: {record.summary()}"
        return found[0]

    def reset_code(self) -> None:
        stream = self._abort_record()
        assert stream.reset and stream.reset_code == side.ABORT_CODE, vars(stream)

    def stop_code(self) -> None:
        stream = self._abort_record()
        assert stream.stopped and stream.stop_code == side.ABORT_CODE, vars(stream)

    def client_close(self) -> None:
        code, reason = side.CLOSE_FROM_ANYWT
        self.client.run(side.AnywtClient.close_by_anywt, code, reason)
        info = self._last().close
        assert info is not None and (info.code, info.reason, info.by_peer) == (code, reason, True)

    def server_close(self) -> None:
        code, reason = side.CLOSE_FROM_PEER
        self.client.run(side.AnywtClient.close_by_peer, code, reason)
        record = self._last()
        assert record.close_command == (code, reason), record.summary()

    def subprotocol(self) -> None:
        detail = self.client.run(side.AnywtClient.protocols)
        record = self._last()
        assert detail["protocol"] == record.protocol == side.PROTOCOLS[0], record.summary()
        assert record.offered_protocols == side.PROTOCOLS

    def reject(self) -> None:
        before = self.server.sessions_rejected()
        detail = self.client.run(side.AnywtClient.rejected)
        assert detail["status"] == 404, detail
        assert self.server.sessions_rejected() == before + 1

    def data_credit(self) -> None:
        detail = self.client.run(side.AnywtClient.big_transfer, BIG)
        initial = self.client.flow_control.initial_max_data
        assert detail["flow_control"] and detail["peer_initial_max_data"] == initial, detail
        assert detail["local_max_data"] >= BIG > initial, f"client granted too little: {detail}"
        assert detail["peer_max_data"] >= BIG, f"server granted too little: {detail}"
        peak = self._last().peak
        assert peak["local_max_data"] >= BIG and peak["peer_max_data"] >= BIG, peak

    def stream_credit(self) -> None:
        detail = self.client.run(side.AnywtClient.stream_credit, STREAMS)
        assert detail["peer_max_streams_bidi"] >= STREAMS, detail
        assert detail["local_max_streams_uni"] >= STREAMS, detail
        peak = self._last().peak
        assert peak["local_max_streams_bidi"] >= STREAMS, peak
        assert peak["peer_max_streams_uni"] >= STREAMS, peak

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "bidi": self.bidi,
            "uni": self.uni,
            "server-bidi": self.server_bidi,
            "datagrams": self.datagrams,
            "reset-code": self.reset_code,
            "stop-code": self.stop_code,
            "client-close": self.client_close,
            "server-close": self.server_close,
            "subprotocol": self.subprotocol,
            "reject": self.reject,
            "data-credit": self.data_credit,
            "stream-credit": self.stream_credit,
        }


@pytest.mark.interop_timeout(90)
@pytest.mark.parametrize(
    "row", rows_for("test_anywt_backends.py::test_anywt_across_backends"), ids=lambda r: r.id
)
def test_anywt_across_backends(row: Row) -> None:
    assert row.peer_backend is not None and row.peer_backend != row.anywt_backend
    with side.recording_server(backend=row.peer_backend) as server:
        client = side.AnywtClient(server.url, row.anywt_backend, server.cert_sha256)
        checks = Checklist(row)
        checks.run(CrossBackendChecks(client, server).as_dict())
        seen = server.describe()
    checks.assert_passed(f"the {row.peer_backend} server saw:\n{seen[-8000:]}")
