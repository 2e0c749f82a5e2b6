"""pywebtransport 0.21.1 (``tests/peers/pywebtransport_peer.py``) against anywt, both ways.

pywebtransport speaks draft-15 with session flow control; it needs CPython
>= 3.12, so it runs from its own venv (``tests/peers/venvs.py``, built once
under ``~/.cache/anywt-peers``) as a separate process.  Both sides start with
small initial credit (256 KiB of WT_MAX_DATA, 4 streams each way), so a
1 MiB transfer and 10 streams each way only pass if WT_MAX_DATA and
WT_MAX_STREAMS capsules flow; anywt's diagnostics and the peer's report both
show the credit growing.  Each row runs on every anywt backend (aiopquic
on CPython >= 3.12 only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anywt_side as side
import pytest
from matrix import Checklist, Row, rows_for
from procs import JsonLines, peer_server, run, tail

PEER = Path(__file__).resolve().parents[1] / "peers" / "pywebtransport_peer.py"
DRAFT = "draft-15/16"
BIG = 1024 * 1024
STREAMS = 10
SESSIONS = 3
#: The peer's own small credit (matches SMALL_FLOW on anywt's side).
PEER_FLOW_ARGS = (
    *("--initial-max-data", str(side.SMALL_FLOW.initial_max_data)),
    *("--session-receive-window", str(side.SMALL_FLOW.initial_max_data)),
    *("--initial-max-streams-bidi", str(side.SMALL_FLOW.initial_max_streams_bidi)),
    *("--initial-max-streams-uni", str(side.SMALL_FLOW.initial_max_streams_uni)),
)
#: Bytes of the largest stream of the peer's bidi_echo / uni_echo scenarios.
PEER_BIDI_BYTES = len(b"anywt bidi ") + 70_000
PEER_UNI_BYTES = len(b"anywt uni ") + 3000


# --------------------------------------------------------------------------
# pywebtransport client -> anywt server
# --------------------------------------------------------------------------


class PeerClientChecks:
    """pywebtransport's scenario results against what anywt's server recorded."""

    def __init__(
        self,
        results: dict[str, dict[str, Any]],
        records: list[side.SessionRecord],
        flow: Any,
    ) -> None:
        self.results = results
        self.records = records
        self.flow = flow

    def _ok(self, scenario: str) -> Any:
        item = self.results.get(scenario)
        assert item is not None, f"the pywebtransport client did not report {scenario}"
        assert item["ok"], f"pywebtransport scenario {scenario} failed: {item['detail']}"
        return item["detail"]

    def _streams(self, kind: str) -> list[side.StreamRecord]:
        return [s for r in self.records for s in r.streams_of(kind)]

    def version(self) -> None:
        drafts = {r.draft for r in self.records}
        assert drafts == {DRAFT}, f"anywt negotiated {drafts} with pywebtransport"
        assert all(r.flow_control for r in self.records), "flow control not negotiated"

    def bidi(self) -> None:
        self._ok("bidi_echo")
        assert any(
            s.finished and s.received == s.sent == PEER_BIDI_BYTES for s in self._streams("bidi")
        ), "anywt's server saw no complete 70 KB bidi echo"

    def uni(self) -> None:
        self._ok("uni_echo")
        assert any(s.finished and s.received == PEER_UNI_BYTES for s in self._streams("uni")), (
            "anywt's server saw no complete uni stream"
        )

    def datagrams(self) -> None:
        self._ok("datagram_echo")
        assert sum(r.datagrams_echoed for r in self.records) >= 2

    def _aborted(self) -> list[side.StreamRecord]:
        self._ok("abort_stream")
        return [s for s in self._streams("bidi") if s.reset or s.stopped]

    def reset_code(self) -> None:
        aborted = self._aborted()
        assert any(s.reset_code == side.ABORT_CODE for s in aborted), (
            f"no StreamReset with code 7 in anywt: {[vars(s) for s in aborted]}"
        )

    def stop_code(self) -> None:
        aborted = self._aborted()
        assert any(s.stop_code == side.ABORT_CODE for s in aborted), (
            f"no StreamStopped with code 7 in anywt: {[vars(s) for s in aborted]}"
        )

    def client_close(self) -> None:
        detail = self.results.get("close_code", {}).get("detail", {})
        assert detail.get("client_close", {}).get("closed_locally"), detail
        got = [(r.close.code, r.close.reason) for r in self.records if r.close and r.close.by_peer]
        assert side.CLOSE_FROM_PEER in got, f"closes anywt saw from pywebtransport: {got}"

    def server_close(self) -> None:
        detail = self.results.get("close_code", {}).get("detail", {})
        seen = detail.get("server_close", {})
        code, reason = side.CLOSE_FROM_ANYWT
        assert (seen.get("code"), seen.get("reason")) == (code, reason), (
            f"pywebtransport saw {seen}"
        )
        assert any(r.close_command == side.CLOSE_FROM_ANYWT for r in self.records)

    def subprotocol(self) -> None:
        detail = self._ok("protocols")
        assert detail["protocol"] == side.PROTOCOLS[0], detail
        assert any(
            r.offered_protocols == side.PROTOCOLS and r.protocol == side.PROTOCOLS[0]
            for r in self.records
        ), "anywt's record shows no negotiated subprotocol"

    def data_credit(self) -> None:
        detail = self._ok("big_transfer")
        assert detail["flow_control_negotiated"] and detail["credit_exercised"], detail
        assert detail["send_credit_grew"] and detail["recv_credit_grew"], detail
        big = [r for r in self.records if any(s.received == BIG for s in r.streams_of("bidi"))]
        assert big, "anywt's server saw no 1 MiB stream"
        record = big[0]
        initial = self.flow.initial_max_data
        peer_initial = (record.peer_settings or {}).get(side.WT_INITIAL_MAX_DATA)
        assert peer_initial == initial, f"pywebtransport's WT_INITIAL_MAX_DATA {peer_initial}"
        assert record.peak["local_max_data"] >= BIG > initial, (
            f"anywt did not grant WT_MAX_DATA past {initial}: {record.peak}"
        )
        assert record.peak["peer_max_data"] >= BIG > peer_initial, (
            f"pywebtransport's WT_MAX_DATA never reached anywt: {record.peak}"
        )

    def stream_credit(self) -> None:
        detail = self._ok("stream_credit")
        assert detail["flow_control_negotiated"], detail
        many = [r for r in self.records if len(r.streams_of("bidi")) >= STREAMS]
        assert many, "anywt saw no session with 10 bidi streams"
        peak = many[0].peak
        assert peak["local_max_streams_bidi"] >= STREAMS, f"anywt granted {peak}"
        assert peak["local_max_streams_uni"] >= STREAMS, f"anywt granted {peak}"
        assert peak["peer_max_streams_uni"] >= STREAMS, f"pywebtransport granted {peak}"

    def multi_session(self) -> None:
        detail = self._ok("multi_session")
        assert detail["same_connection"] and detail["sessions_opened"] == SESSIONS, detail
        by_connection: dict[int, int] = {}
        for r in self.records:
            by_connection[r.connection] = by_connection.get(r.connection, 0) + 1
        assert max(by_connection.values()) >= SESSIONS, (
            f"anywt saw sessions per connection {sorted(by_connection.values())}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "bidi": self.bidi,
            "uni": self.uni,
            "datagrams": self.datagrams,
            "reset-code": self.reset_code,
            "stop-code": self.stop_code,
            "client-close": self.client_close,
            "server-close": self.server_close,
            "subprotocol": self.subprotocol,
            "data-credit": self.data_credit,
            "stream-credit": self.stream_credit,
            "multi-session": self.multi_session,
        }


@pytest.mark.interop_timeout(90)
@pytest.mark.parametrize(
    "row",
    rows_for("test_pywebtransport_peer.py::test_pywebtransport_client_to_anywt_server"),
    ids=lambda r: r.id,
)
def test_pywebtransport_client_to_anywt_server(
    row: Row, tmp_path: Path, pywebtransport_python: Path
) -> None:
    stderr = tmp_path / "pywebtransport-client.stderr"
    peer_code, peer_reason = side.CLOSE_FROM_PEER
    anywt_code, anywt_reason = side.CLOSE_FROM_ANYWT
    with side.recording_server(backend=row.anywt_backend) as server:
        assert server.server.certificate is not None
        cafile, _ = server.server.certificate.write(tmp_path)
        returncode, stdout = run(
            [
                *(str(pywebtransport_python), str(PEER), "client", server.url),
                *("--ca", str(cafile), "--total-timeout", "60", "--scenario-timeout", "20"),
                *PEER_FLOW_ARGS,
                *("--big-bytes", str(BIG), "--stream-count", str(STREAMS)),
                *("--sessions", str(SESSIONS), "--require-flow-control"),
                *("--client-close-code", str(peer_code), "--client-close-reason", peer_reason),
                *("--server-close-code", str(anywt_code), "--server-close-reason", anywt_reason),
                *("--abort-code", str(side.ABORT_CODE), "--protocols", *side.PROTOCOLS),
            ],
            timeout=70,
            stderr_path=stderr,
        )
        records = server.wait_for(lambda rs: all(r.close is not None for r in rs), timeout=5)
        seen = server.describe(records)
    results = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            results[item["scenario"]] = item
    checks = Checklist(row)
    checks.run(PeerClientChecks(results, records, server.flow_control).as_dict())
    checks.assert_passed(
        f"pywebtransport client exit status {returncode}\n{stdout}\n"
        f"its stderr:\n{tail(stderr)}\nanywt's server saw:\n{seen[-8000:]}"
    )


# --------------------------------------------------------------------------
# anywt client -> pywebtransport server
# --------------------------------------------------------------------------


class AnywtClientChecks:
    """anywt's client scenarios, each confirmed by the pywebtransport server's report."""

    def __init__(self, client: side.AnywtClient, report: JsonLines) -> None:
        self.client = client
        self.report = report

    def _counters(self) -> list[Any]:
        return [r["counters"] for r in self.report.events("session_closed")]

    def _closed(self, predicate: Any) -> list[dict[str, Any]]:
        return self.report.wait_for("session_closed", predicate)

    def version(self) -> None:
        draft = self.client.run(side.AnywtClient.draft)
        assert draft == DRAFT, f"anywt's client negotiated {draft} with pywebtransport"

    def bidi(self) -> None:
        detail = self.client.run(side.AnywtClient.bidi_echo)
        closed = self._closed(lambda r: r["counters"]["bytes_echoed"] == detail["bytes"])
        assert closed, f"pywebtransport's sessions: {self._counters()}"

    def uni(self) -> None:
        detail = self.client.run(side.AnywtClient.uni_echo)
        assert self._closed(
            lambda r: (
                r["counters"]["uni_streams"] == 1
                and r["counters"]["bytes_echoed"] == detail["bytes"]
            )
        )

    def datagrams(self) -> None:
        self.client.run(side.AnywtClient.datagram_echo)
        assert self._closed(lambda r: r["counters"]["datagrams_echoed"] >= 1)

    def reset_code(self) -> None:
        detail = self.client.run(side.AnywtClient.abort_stream)
        errors = self.report.wait_for(
            "stream_error", lambda r: r["stream_id"] == detail["stream_id"]
        )
        assert [e["error_code"] for e in errors] == [side.ABORT_CODE], (
            f"pywebtransport's stream errors: {errors}"
        )

    def client_close(self) -> None:
        code, reason = side.CLOSE_FROM_ANYWT
        self.client.run(side.AnywtClient.close_by_anywt, code, reason)
        got = self._closed(lambda r: (r["close_code"], r["close_reason"]) == (code, reason))
        seen = [(r["close_code"], r["close_reason"]) for r in self.report.events("session_closed")]
        assert got, f"pywebtransport saw these closes: {seen}"

    def server_close(self) -> None:
        code, reason = side.CLOSE_FROM_PEER
        self.client.run(side.AnywtClient.close_by_peer, code, reason)
        assert self.report.wait_for(
            "close_requested", lambda r: (r["code"], r["reason"]) == (code, reason)
        )

    def subprotocol(self) -> None:
        detail = self.client.run(side.AnywtClient.protocols)
        assert detail["protocol"] == side.PROTOCOLS[0], detail
        ready = self.report.wait_for(
            "session_ready", lambda r: r["wt_available_protocols"] == list(side.PROTOCOLS)
        )
        assert ready and ready[0]["wt_protocol"] == side.PROTOCOLS[0], ready

    def reject(self) -> None:
        try:
            detail = self.client.run(side.AnywtClient.rejected, "/reject")
        except AssertionError as exc:
            peer = self.report.wait_for("session_rejected")
            raise AssertionError(f"{exc}\npywebtransport's report: {peer}") from None
        assert detail["status"] == 404, detail
        assert self.report.wait_for("session_rejected")

    def data_credit(self) -> None:
        detail = self.client.run(side.AnywtClient.big_transfer, BIG)
        initial = self.client.flow_control.initial_max_data
        assert detail["flow_control"], detail
        assert detail["peer_initial_max_data"] == initial, detail
        assert detail["local_max_data"] >= BIG > initial, f"anywt granted too little: {detail}"
        assert detail["peer_max_data"] >= BIG, f"pywebtransport granted too little: {detail}"
        closed = self._closed(lambda r: r["counters"]["bytes_echoed"] == BIG)
        assert closed, "pywebtransport reported no 1 MiB echo"
        diag = closed[0]["diagnostics"]
        assert diag["flow_control_negotiated"], diag
        assert diag["peer_max_data"] >= BIG and diag["local_max_data"] >= BIG, (
            f"pywebtransport's view of the credit: {diag}"
        )

    def stream_credit(self) -> None:
        detail = self.client.run(side.AnywtClient.stream_credit, STREAMS)
        assert detail["flow_control"], detail
        assert (
            detail["peer_max_streams_bidi"] >= STREAMS > detail["peer_initial_max_streams_bidi"]
        ), f"pywebtransport granted too few bidi streams: {detail}"
        assert (
            detail["local_max_streams_uni"] >= STREAMS > detail["local_initial_max_streams_uni"]
        ), f"anywt granted too few uni streams: {detail}"
        assert self._closed(lambda r: r["counters"]["bidi_streams"] == STREAMS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "bidi": self.bidi,
            "uni": self.uni,
            "datagrams": self.datagrams,
            "reset-code": self.reset_code,
            "client-close": self.client_close,
            "server-close": self.server_close,
            "subprotocol": self.subprotocol,
            "reject": self.reject,
            "data-credit": self.data_credit,
            "stream-credit": self.stream_credit,
        }


@pytest.mark.interop_timeout(90)
@pytest.mark.parametrize(
    "row",
    rows_for("test_pywebtransport_peer.py::test_anywt_client_to_pywebtransport_server"),
    ids=lambda r: r.id,
)
def test_anywt_client_to_pywebtransport_server(
    row: Row, tmp_path: Path, pywebtransport_python: Path, peer_cert: tuple[Any, Path, Path]
) -> None:
    cert, certfile, keyfile = peer_cert
    report_path = tmp_path / "pywebtransport-server.jsonl"
    stderr = tmp_path / "pywebtransport-server.stderr"
    with peer_server(
        [
            *(str(pywebtransport_python), str(PEER), "server", "--host", "127.0.0.1"),
            *("--port", "0", "--certfile", str(certfile), "--keyfile", str(keyfile)),
            *("--lifetime", "80", "--report", str(report_path), *PEER_FLOW_ARGS),
            *("--protocols", *side.PROTOCOLS),
        ],
        stderr_path=stderr,
    ) as (_, ready):
        client = side.AnywtClient(ready["url"], row.anywt_backend, cert.sha256)
        checks = Checklist(row)
        checks.run(AnywtClientChecks(client, JsonLines(report_path)).as_dict())
    checks.assert_passed(
        f"pywebtransport server report (diagnostics left out):\n{_report_summary(report_path)}\n"
        f"its stderr:\n{tail(stderr, 3000)}"
    )


def _report_summary(path: Path) -> str:
    lines = []
    for record in JsonLines(path).records():
        record.pop("diagnostics", None)
        record.pop("headers", None)
        lines.append(json.dumps(record))
    return "\n".join(lines)
