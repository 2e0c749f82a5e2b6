"""Headless Chromium's WebTransport client against anywt's server.

One browser launch per dialect runs every page step (``browser/page.js``):
draft-02 (Chromium's default) and draft-07 (``EnableWebTransportDraft07``).
The page reports what JS saw; anywt's server (in this process, on the aioquic
backend, and on aiopquic on CPython >= 3.12; not qh3: see the qh3 note in
README's interop matrix) records what arrived,
and both are checked.  The negotiated version comes from Chromium's net-log,
and a failure prints the net-log's reason (JS only says "Opening handshake
failed").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from anywt_side import ABORT_CODE, PROTOCOLS, RecordingServer, SessionRecord, recording_server
from harness import SERVER_BIDI_PAYLOAD, BrowserResult, run_page
from matrix import Checklist, Row, rows_for

from anywt.echo import SERVER_BIDI_GREETING

DRAFT07_FLAG = "--enable-features=EnableWebTransportDraft07"
SESSIONS_IN_A_ROW = 20
BIDI_BYTES = 65536
UNI_BYTES = 16384
PAGE_CLOSE = (4242, "bye from page")
SERVER_CLOSE = (4343, "bye from server")

STEPS = [
    "ready",
    f"bidi_echo:{BIDI_BYTES}",
    f"uni_echo:{UNI_BYTES}",
    "server_bidi",
    "datagram_echo",
    f"abort_stream:{ABORT_CODE}",
    "protocols",
    "close_from_page",
    "close_from_server",
    f"sessions_in_a_row:{SESSIONS_IN_A_ROW}",
]
#: Sessions the steps open: the shared one, protocols, the two closes, the row.
EXPECTED_SESSIONS = 4 + SESSIONS_IN_A_ROW


def test_greeting_matches_the_page() -> None:
    """The page checks the server-bidi payload against the harness constant."""
    assert SERVER_BIDI_GREETING.decode() == SERVER_BIDI_PAYLOAD


def _step_ok(result: BrowserResult, name: str) -> Any:
    step = result.step(name)
    assert step is not None, f"the page never reported {name}"
    assert step.ok, f"page step {step.step} failed: {step.detail}"
    return step.detail


class ChromiumChecks:
    """Each feature of a browser row: the page's report and what anywt's server saw."""

    def __init__(self, row: Row, result: BrowserResult, records: list[SessionRecord]) -> None:
        self.row = row
        self.result = result
        self.records = records

    def _streams(self, kind: str) -> list[Any]:
        return [s for r in self.records for s in r.streams_of(kind)]

    def version(self) -> None:
        versions = self.result.netlog.webtransport_http3_versions
        assert versions, f"no QUIC_SESSION_WEBTRANSPORT_SESSION_READY in the net-log: {versions}"
        assert set(versions) == {self.row.dialect}, (
            f"net-log versions {dict(Counter(versions))}, wanted {self.row.dialect}"
        )
        assert len(versions) >= EXPECTED_SESSIONS, f"{len(versions)} sessions ready in the net-log"
        drafts = {r.draft for r in self.records}
        assert drafts == {self.row.dialect}, f"anywt negotiated {drafts}"

    def bidi(self) -> None:
        detail = _step_ok(self.result, "bidi_echo")
        assert detail["bytes"] == BIDI_BYTES
        echoed = [s for s in self._streams("bidi") if s.finished and s.received == BIDI_BYTES]
        assert echoed, "anywt's server saw no complete 64 KiB bidi echo"

    def uni(self) -> None:
        _step_ok(self.result, "uni_echo")
        uni = [s for s in self._streams("uni") if s.finished and s.received == UNI_BYTES]
        assert uni, "anywt's server saw no complete uni stream"

    def server_bidi(self) -> None:
        _step_ok(self.result, "server_bidi")
        replies = [s.reply for s in self._streams("server-bidi")]
        assert SERVER_BIDI_GREETING in replies, f"replies on anywt's bidi streams: {replies}"

    def datagrams(self) -> None:
        _step_ok(self.result, "datagram_echo")
        assert sum(r.datagrams_echoed for r in self.records) >= 1

    def _aborted(self) -> list[Any]:
        return [s for s in self._streams("bidi") if s.reset or s.stopped]

    def reset_code(self) -> None:
        _step_ok(self.result, "abort_stream")  # writable.abort(streamErrorCode 7)
        assert any(s.reset_code == ABORT_CODE for s in self._aborted()), (
            f"no StreamReset with code 7 in anywt: {[vars(s) for s in self._aborted()]}"
        )

    def stop_code(self) -> None:
        _step_ok(self.result, "abort_stream")  # readable.cancel(streamErrorCode 7)
        assert any(s.stop_code == ABORT_CODE for s in self._aborted()), (
            f"no StreamStopped with code 7 in anywt: {[vars(s) for s in self._aborted()]}"
        )

    def client_close(self) -> None:
        _step_ok(self.result, "close_from_page")
        closes = [r.close for r in self.records if r.close is not None]
        got = [(c.code, c.reason) for c in closes if c.by_peer]
        assert PAGE_CLOSE in got, f"closes the page made, as anywt saw them: {got}"

    def server_close(self) -> None:
        detail = _step_ok(self.result, "close_from_server")
        assert (detail["closeCode"], detail["reason"]) == SERVER_CLOSE, detail
        commanded = [r for r in self.records if r.close_command == SERVER_CLOSE]
        assert commanded, "anywt never got the close command"
        info = commanded[0].close
        assert info is not None and not info.by_peer, f"close info {info}"

    def subprotocol(self) -> None:
        detail = _step_ok(self.result, "protocols")
        assert detail["protocol"] == PROTOCOLS[0], detail
        negotiated = [r for r in self.records if r.offered_protocols]
        assert negotiated, "anywt saw no WT-Available-Protocols"
        assert negotiated[0].offered_protocols == PROTOCOLS
        assert negotiated[0].protocol == PROTOCOLS[0]

    def sessions_in_a_row(self) -> None:
        detail = _step_ok(self.result, "sessions_in_a_row")
        assert detail["sessions"] == SESSIONS_IN_A_ROW
        echoed = [
            r
            for r in self.records
            if any(s.finished and s.received == 1000 for s in r.streams_of("bidi"))
            and r.close is not None
        ]
        assert len(echoed) >= SESSIONS_IN_A_ROW, f"anywt saw {len(echoed)} of them"

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
            "sessions-in-a-row": self.sessions_in_a_row,
        }


def _run(server: RecordingServer, chromium: str, flags: list[str]) -> BrowserResult:
    return run_page(
        server.url,
        server.cert_sha256,
        STEPS,
        timeout=60,
        extra_flags=flags,
        chromium=chromium,
        step_timeout=10,
    )


@pytest.mark.interop_timeout(100)
@pytest.mark.parametrize("row", rows_for("test_chromium.py::test_chromium"), ids=lambda r: r.id)
def test_chromium(row: Row, chromium: str) -> None:
    flags = [DRAFT07_FLAG] if row.dialect == "draft-07" else []
    with recording_server(backend=row.anywt_backend) as server:
        result = _run(server, chromium, flags)
        # The last sessions' closes may land just after the page's final POST.
        records = server.wait_for(
            lambda rs: len(rs) >= EXPECTED_SESSIONS and all(r.close is not None for r in rs),
            timeout=5,
        )
        seen = server.describe(records)
    checks = Checklist(row)
    checks.run(ChromiumChecks(row, result, records).as_dict())
    checks.assert_passed(
        f"chromium flags {flags}\n{result.summary()}\nanywt's server saw:\n{seen[-6000:]}"
    )


@pytest.mark.interop_timeout(60)
def test_chromium_failure_names_the_reason(chromium: str) -> None:
    """A wrong certificate hash: JS says little, the net-log names the TLS failure."""
    with recording_server(backend="aioquic") as server:
        result = run_page(server.url, bytes(32), ["ready"], timeout=30, chromium=chromium)
        records = server.sessions()
    step = result.step("ready")
    assert step is not None and not step.ok, result.summary()
    assert any("CERTIFICATE_VERIFY_FAILED" in e for e in result.netlog.errors), result.summary()
    assert records == [], "a session was accepted despite the failed handshake"
