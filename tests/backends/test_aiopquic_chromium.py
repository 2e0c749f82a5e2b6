"""Headless Chromium against ``anywt serve-echo --backend aiopquic``, on asyncio and trio.

Every page step of ``tests/interop/browser/page.js`` (the interop suite's
harness) runs against an echo server on the aiopquic backend in its own
process, in Chromium's default dialect (draft-02) and with draft-07 turned
on.  Without Chromium the test skips; ``ANYWT_REQUIRE_INTEROP=1`` (CI) makes
that skip a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SKIP_REASON = "needs CPython >= 3.12 and `pip install anywt[aiopquic]`"
pytest.importorskip("aiopquic", reason=SKIP_REASON)

BROWSER = Path(__file__).resolve().parents[1] / "interop" / "browser"
if str(BROWSER) not in sys.path:
    sys.path.insert(0, str(BROWSER))

from harness import find_chromium, run_page  # noqa: E402

STEPS = [
    "ready",
    "bidi_echo:65536",
    "uni_echo:16384",
    "server_bidi",
    "datagram_echo",
    "abort_stream:7",
    "protocols",
    "close_from_page",
    "close_from_server",
    "sessions_in_a_row:20",
]
DRAFT07_FLAG = "--enable-features=EnableWebTransportDraft07"


def _require_interop() -> bool:
    value = os.environ.get("ANYWT_REQUIRE_INTEROP", "").strip().lower()
    return value not in ("", "0", "false", "no")


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@pytest.mark.parametrize("dialect", ["draft-02", "draft-07"])
def test_chromium_against_serve_echo_on_aiopquic(loop: str, dialect: str) -> None:
    chromium = find_chromium()
    if chromium is None:
        if _require_interop():
            pytest.fail("ANYWT_REQUIRE_INTEROP=1 but no chromium (apt-get install chromium)")
        pytest.skip("no chromium (apt-get install chromium)")
    command = [sys.executable, "-m", "anywt", "serve-echo", "--backend", "aiopquic"]
    command += ["--loop", loop, "--host", "127.0.0.1", "--port", "0"]
    server = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        assert info["backend"] == "aiopquic"
        flags = [DRAFT07_FLAG] if dialect == "draft-07" else []
        result = run_page(
            info["url"],
            bytes.fromhex(info["cert_sha256"]),
            STEPS,
            timeout=90,
            step_timeout=10,
            extra_flags=flags,
            chromium=chromium,
        )
        assert result.ok, result.summary()
        versions = set(result.netlog.webtransport_http3_versions)
        assert versions == {dialect}, result.summary()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            assert server.wait(15) == 0, "serve-echo did not stop cleanly"
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
