"""aioquic's own H3 WebTransport (``tests/peers/aioquic_wt.py``) against anywt, both ways.

aioquic 1.7's ``H3Connection(enable_webtransport=True)`` speaks draft-02: no
session flow control, one session per connection.  The peer program never
imports anywt; it logs what it saw as JSON lines, and anywt's side records
its own view (``anywt_side.py``), so each feature is checked at both ends.
Each row runs on every anywt backend (aiopquic on CPython >= 3.12 only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anywt_side as side
import pytest
from matrix import Checklist, Row, rows_for
from procs import JsonLines, peer_server, run, tail

from anywt.echo import SERVER_BIDI_GREETING

PEER = Path(__file__).resolve().parents[1] / "peers" / "aioquic_wt.py"
DRAFT = "draft-02"
#: What the peer client sends (see its scenarios).
PEER_BIDI_BYTES = 100_000
PEER_UNI_BYTES = 20_000
PEER_CLIENT_CLOSE = (4242, "bye from aioquic client")
PEER_SERVER_CLOSE = (4343, "bye from server")


def _results(stdout: str) -> dict[str, dict[str, Any]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            out[item["scenario"]] = item
    return out


# --------------------------------------------------------------------------
# aioquic client -> anywt server
# --------------------------------------------------------------------------


class PeerClientChecks:
    """The aioquic client's scenario results against what anywt's server recorded."""

    def __init__(
        self,
        results: dict[str, dict[str, Any]],
        records: list[side.SessionRecord],
        rejected: int,
    ) -> None:
        self.results = results
        self.records = records
        self.rejected = rejected

    def _ok(self, scenario: str) -> Any:
        item = self.results.get(scenario)
        assert item is not None, f"the aioquic client did not report {scenario}"
        assert item["ok"], f"aioquic client scenario {scenario} failed: {item['detail']}"
        return item["detail"]

    def _streams(self, kind: str) -> list[side.StreamRecord]:
        return [s for r in self.records for s in r.streams_of(kind)]

    def version(self) -> None:
        drafts = {r.draft for r in self.records}
        assert drafts == {DRAFT}, f"anywt negotiated {drafts} with aioquic"

    def bidi(self) -> None:
        self._ok("bidi_echo")
        assert any(s.finished and s.received == PEER_BIDI_BYTES for s in self._streams("bidi"))

    def uni(self) -> None:
        self._ok("uni_echo")
        assert any(s.finished and s.received == PEER_UNI_BYTES for s in self._streams("uni"))

    def server_bidi(self) -> None:
        self._ok("server_bidi")
        replies = [s.reply for s in self._streams("server-bidi")]
        assert SERVER_BIDI_GREETING in replies, f"replies on anywt's bidi streams: {replies}"

    def datagrams(self) -> None:
        self._ok("datagram_echo")
        assert sum(r.datagrams_echoed for r in self.records) >= 1

    def reset_code(self) -> None:
        self._ok("abort_stream")  # RESET_STREAM + STOP_SENDING, code 7
        aborted = [s for s in self._streams("bidi") if s.reset or s.stopped]
        assert any(s.reset_code == side.ABORT_CODE for s in aborted), (
            f"no StreamReset with code 7 in anywt: {[vars(s) for s in aborted]}"
        )

    def stop_code(self) -> None:
        self._ok("abort_stream")
        aborted = [s for s in self._streams("bidi") if s.reset or s.stopped]
        assert any(s.stop_code == side.ABORT_CODE for s in aborted), (
            f"no StreamStopped with code 7 in anywt: {[vars(s) for s in aborted]}"
        )

    def client_close(self) -> None:
        self._ok("close_from_client")
        got = [(r.close.code, r.close.reason) for r in self.records if r.close and r.close.by_peer]
        assert PEER_CLIENT_CLOSE in got, f"closes anywt saw from the peer: {got}"

    def server_close(self) -> None:
        self._ok("close_from_server")  # the peer checks code and reason itself
        commanded = [r for r in self.records if r.close_command == PEER_SERVER_CLOSE]
        assert commanded and commanded[0].close is not None, "anywt never closed as asked"
        assert (commanded[0].close.code, commanded[0].close.reason) == PEER_SERVER_CLOSE

    def subprotocol(self) -> None:
        detail = self._ok("protocols")
        assert detail["protocol"] == side.PROTOCOLS[0], detail
        assert any(
            r.offered_protocols == side.PROTOCOLS and r.protocol == side.PROTOCOLS[0]
            for r in self.records
        ), "anywt's record shows no negotiated subprotocol"

    def reject(self) -> None:
        detail = self._ok("not_found")
        assert detail["status"] == "404", detail
        assert self.rejected >= 1, "anywt's server counted no rejected session"

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
        }


@pytest.mark.interop_timeout(60)
@pytest.mark.parametrize(
    "row",
    rows_for("test_aioquic_peer.py::test_aioquic_client_to_anywt_server"),
    ids=lambda r: r.id,
)
def test_aioquic_client_to_anywt_server(row: Row, tmp_path: Path) -> None:
    stderr = tmp_path / "aioquic-client.stderr"
    with side.recording_server(backend=row.anywt_backend) as server:
        returncode, stdout = run(
            [
                *(sys.executable, str(PEER), "client", server.url),
                *("--cert-hash", server.cert_sha256.hex(), "--timeout", "10"),
            ],
            timeout=45,
            stderr_path=stderr,
        )
        records = server.wait_for(lambda rs: all(r.close is not None for r in rs), timeout=5)
        seen = server.describe(records)
        rejected = server.sessions_rejected()
    results = _results(stdout)
    checks = Checklist(row)
    checks.run(PeerClientChecks(results, records, rejected).as_dict())
    checks.assert_passed(
        f"aioquic client exit status {returncode}\n{stdout}\nits stderr:\n{tail(stderr)}\n"
        f"anywt's server saw:\n{seen[-6000:]}"
    )


# --------------------------------------------------------------------------
# anywt client -> aioquic server
# --------------------------------------------------------------------------


class AnywtClientChecks:
    """anywt's client scenarios, each confirmed by the aioquic server's log."""

    def __init__(self, client: side.AnywtClient, log: JsonLines) -> None:
        self.client = client
        self.log = log
        self._aborted: dict[str, Any] | None = None

    def version(self) -> None:
        draft = self.client.run(side.AnywtClient.draft)
        assert draft == DRAFT, f"anywt's client negotiated {draft} with aioquic"

    def bidi(self) -> None:
        detail = self.client.run(side.AnywtClient.bidi_echo)
        assert self.log.wait_for("stream_echoed", lambda r: r["nbytes"] == detail["bytes"])

    def uni(self) -> None:
        detail = self.client.run(side.AnywtClient.uni_echo)
        assert self.log.wait_for("uni_echoed", lambda r: r["nbytes"] == detail["bytes"])

    def server_bidi(self) -> None:
        self.client.run(side.AnywtClient.server_bidi)
        replies = self.log.wait_for("server_bidi_reply")
        assert replies and all(r["matches_payload"] for r in replies), (
            f"aioquic's log of the reply on its bidi stream: {replies}"
        )

    def datagrams(self) -> None:
        self.client.run(side.AnywtClient.datagram_echo)
        assert self.log.wait_for("datagram_echoed")

    def _abort(self, event: str) -> None:
        """anywt resets and stops a stream with code 7; aioquic logs both codes."""
        if self._aborted is None:
            self._aborted = self.client.run(side.AnywtClient.abort_stream)
        stream_id = self._aborted["stream_id"]
        seen = self.log.wait_for(event, lambda r: r["stream_id"] == stream_id)
        assert [r["wt_error_code"] for r in seen] == [side.ABORT_CODE], (
            f"aioquic's {event} log for stream {stream_id}: {seen}"
        )

    def reset_code(self) -> None:
        self._abort("stream_reset")

    def stop_code(self) -> None:
        self._abort("stop_sending")

    def client_close(self) -> None:
        code, reason = side.CLOSE_FROM_ANYWT
        self.client.run(side.AnywtClient.close_by_anywt, code, reason)
        got = self.log.wait_for(
            "session_close_received", lambda r: (r["code"], r["reason"]) == (code, reason)
        )
        assert got, f"aioquic saw these closes: {self.log.events('session_close_received')}"

    def server_close(self) -> None:
        code, reason = side.CLOSE_FROM_PEER
        self.client.run(side.AnywtClient.close_by_peer, code, reason)
        assert self.log.wait_for(
            "session_close_sent", lambda r: (r["code"], r["reason"]) == (code, reason)
        )

    def subprotocol(self) -> None:
        detail = self.client.run(side.AnywtClient.protocols)
        assert detail["protocol"] == side.PROTOCOLS[0], detail
        accepted = self.log.wait_for(
            "session_accepted", lambda r: r["offered_protocols"] == list(side.PROTOCOLS)
        )
        assert accepted and accepted[0]["protocol"] == side.PROTOCOLS[0], accepted

    def reject(self) -> None:
        try:
            detail = self.client.run(side.AnywtClient.rejected)
        except AssertionError as exc:
            peer = self.log.wait_for("rejected")
            raise AssertionError(f"{exc}\nthe aioquic server's log: {peer}") from None
        assert detail["status"] == 404, detail
        assert self.log.wait_for("rejected", lambda r: r["status"] == 404)

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
        }


@pytest.mark.interop_timeout(90)
@pytest.mark.parametrize(
    "row",
    rows_for("test_aioquic_peer.py::test_anywt_client_to_aioquic_server"),
    ids=lambda r: r.id,
)
def test_anywt_client_to_aioquic_server(
    row: Row, tmp_path: Path, peer_cert: tuple[Any, Path, Path]
) -> None:
    cert, certfile, keyfile = peer_cert
    log_path = tmp_path / "aioquic-server.log"
    with peer_server(
        [
            *(sys.executable, str(PEER), "server", "--host", "127.0.0.1", "--port", "0"),
            *("--certfile", str(certfile), "--keyfile", str(keyfile), "--lifetime", "120"),
        ],
        stderr_path=log_path,
    ) as (_, ready):
        client = side.AnywtClient(ready["url"], row.anywt_backend, cert.sha256)
        checks = Checklist(row)
        checks.run(AnywtClientChecks(client, JsonLines(log_path)).as_dict())
    checks.assert_passed(f"aioquic server log:\n{tail(log_path, 8000)}")
