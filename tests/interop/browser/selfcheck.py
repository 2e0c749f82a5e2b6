#!/usr/bin/env python3
"""Prove the browser harness and the aioquic peer against each other.

Runs, against ``tests/peers/aioquic_wt.py server`` with a fresh dev certificate:

1. the aioquic peer's own client scenarios (peer against itself);
2. headless Chromium with every harness step (draft-02, Chromium's default);
3. Chromium with ``--enable-features=EnableWebTransportDraft07``: aioquic only
   offers draft-02, so draft-02 must still be what the net-log reports; this
   proves the net-log version extraction, not draft-07;
4. the failure diagnostics: a wrong certificate hash must fail with the TLS
   reason in the net-log;

then checks the server's JSON log for what only the server can see (the
abort codes, the close code the page sent, the reply on the server-opened
stream). Prints a report and exits 0 only if everything passed.

    python tests/interop/browser/selfcheck.py [--chromium PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PEER = REPO / "tests" / "peers" / "aioquic_wt.py"

sys.path.insert(0, str(HERE))
from harness import (  # noqa: E402
    ALL_STEPS,
    BrowserResult,
    chromium_version,
    find_chromium,
    run_page,
)

#: Steps tried under draft-07 (aioquic's H3 is draft-02 code with the draft-07
#: setting added, which is enough for these).
DRAFT07_STEPS = (
    "ready",
    "bidi_echo",
    "uni_echo",
    "server_bidi",
    "datagram_echo",
    "abort_stream",
    "close_from_page",
    "close_from_server",
)


def _load_certs() -> ModuleType:
    """``anywt.certs``, or the file itself if the package is not importable yet."""
    sys.path.insert(0, str(REPO))
    try:
        import anywt.certs

        return anywt.certs
    except ImportError:
        spec = importlib.util.spec_from_file_location("_anywt_certs", REPO / "anywt" / "certs.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look the module up
        spec.loader.exec_module(module)
        return module


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of the child's stdout, or TimeoutError."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("server printed no ready line")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextlib.contextmanager
def aioquic_peer_server(
    certfile: Path,
    keyfile: Path,
    log_path: Path,
    *,
    path: str = "/echo",
    lifetime: float = 300,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Run the aioquic echo server on 127.0.0.1; yield its URL.

    Its JSON-lines log goes to *log_path* (see :func:`read_server_log`).
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, str(PEER), "server", "--host", "127.0.0.1", "--port", "0"),
                *("--certfile", str(certfile), "--keyfile", str(keyfile)),
                *("--path", path, "--lifetime", str(lifetime)),
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
    try:
        ready = json.loads(_read_line(proc, timeout=20))
        yield str(ready["url"])
    finally:
        _stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def read_server_log(log_path: Path) -> list[dict[str, Any]]:
    """The aioquic server's log records (one JSON object per line)."""
    records = []
    for line in log_path.read_text("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def run_peer_client(url: str, cert_hash: str, timeout: float) -> list[dict[str, Any]]:
    """Run every aioquic client scenario; return their JSON results."""
    proc = subprocess.Popen(
        [sys.executable, str(PEER), "client", url, "--cert-hash", cert_hash],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        _stop(proc)
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


class Report:
    """Collects named checks and prints them as they come."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.count = 0

    def check(self, name: str, ok: bool, detail: Any = "") -> None:
        self.count += 1
        if not ok:
            self.failures.append(name)
        text = detail if isinstance(detail, str) else json.dumps(detail)
        print(f"  {'PASS' if ok else 'FAIL'} {name}{': ' + text if text else ''}", flush=True)


def _browser_section(report: Report, title: str, result: BrowserResult) -> None:
    print(f"\n{title} ({result.elapsed:.2f}s, chromium rc {result.chromium_returncode})")
    for step in result.steps:
        report.check(f"browser {step.step}", step.ok, step.detail)
    missing = [s for s in result.requested if s not in {r.step for r in result.steps}]
    report.check("browser run complete", result.done and not missing, {"missing": missing})
    if not result.ok:
        print(result.summary())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="harness + aioquic peer self-check")
    parser.add_argument("--chromium", help="chromium binary (default: found on PATH)")
    parser.add_argument("--keep", help="keep certificate, logs and net-logs in this directory")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound for each browser run")
    args = parser.parse_args(argv)

    chromium = args.chromium or find_chromium()
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    print(f"chromium: {chromium_version(chromium)} ({chromium})")

    certs = _load_certs()
    cert = certs.generate_dev_certificate()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="anywt-selfcheck-"))
    workdir.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = cert.write(workdir)
    server_log = workdir / "aioquic-server.log"

    def netlog(name: str) -> Path | None:
        return workdir / f"netlog-{name}.json" if args.keep else None

    report = Report()
    started = time.monotonic()

    with aioquic_peer_server(certfile, keyfile, server_log) as url:
        print(f"aioquic server: {url} (cert sha256 {cert.sha256_hex})")

        print("\naioquic client -> aioquic server")
        for item in run_peer_client(url, cert.sha256_hex, timeout=120):
            report.check(f"peer {item['scenario']}", item["ok"], item["detail"])

        default = run_page(
            url,
            cert.sha256,
            list(ALL_STEPS),
            timeout=args.timeout,
            chromium=chromium,
            keep_netlog=netlog("default"),
        )
        _browser_section(report, "chromium (default flags) -> aioquic server", default)
        versions = default.netlog.webtransport_http3_versions
        report.check(
            "net-log: every session draft-02",
            bool(versions) and set(versions) == {"draft-02"},
            {"versions": versions, "datagram": default.netlog.http_datagram_versions},
        )

        draft07 = run_page(
            url,
            cert.sha256,
            ["ready", "bidi_echo", "datagram_echo"],
            timeout=args.timeout,
            chromium=chromium,
            extra_flags=["--enable-features=EnableWebTransportDraft07"],
            keep_netlog=netlog("draft07"),
        )
        _browser_section(report, "chromium with EnableWebTransportDraft07 -> aioquic", draft07)
        report.check(
            "net-log: draft-02 (aioquic offers no draft-07)",
            draft07.webtransport_http3_version == "draft-02",
            {"versions": draft07.netlog.webtransport_http3_versions},
        )

        wrong = run_page(
            url,
            bytes(32),
            ["ready"],
            timeout=args.timeout,
            chromium=chromium,
            keep_netlog=netlog("wrong-hash"),
        )
        print(f"\nchromium with a wrong certificate hash ({wrong.elapsed:.2f}s)")
        step = wrong.step("ready")
        report.check(
            "wrong hash: ready fails", step is not None and not step.ok, step and step.detail
        )
        report.check(
            "wrong hash: net-log names the TLS failure",
            any("CERTIFICATE_VERIFY_FAILED" in e for e in wrong.netlog.errors),
            wrong.netlog.errors,
        )

    # aioquic with draft-07's WT_MAX_SESSIONS added to its SETTINGS: proves
    # the net-log extraction reports draft-07 when it is negotiated.
    draft07_log = workdir / "aioquic-server-draft07.log"
    with aioquic_peer_server(
        certfile, keyfile, draft07_log, extra_args=("--offer-draft07",)
    ) as url07:
        both = run_page(
            url07,
            cert.sha256,
            list(DRAFT07_STEPS),
            timeout=args.timeout,
            chromium=chromium,
            extra_flags=["--enable-features=EnableWebTransportDraft07"],
            keep_netlog=netlog("draft07-offered"),
        )
        _browser_section(
            report, "chromium with EnableWebTransportDraft07 -> aioquic +0xc671706a", both
        )
        report.check(
            "net-log: draft-07 negotiated",
            set(both.netlog.webtransport_http3_versions) == {"draft-07"},
            {"versions": both.netlog.webtransport_http3_versions},
        )
        plain = run_page(url07, cert.sha256, ["ready"], timeout=args.timeout, chromium=chromium)
        print(f"\nchromium (default flags) -> aioquic +0xc671706a ({plain.elapsed:.2f}s)")
        report.check(
            "net-log: default Chromium still picks draft-02",
            plain.ok and plain.webtransport_http3_version == "draft-02",
            {"versions": plain.netlog.webtransport_http3_versions, "ok": plain.ok},
        )

    print("\nwhat the aioquic server saw")
    log = read_server_log(server_log)
    wire7 = 0x52E4A40FA8E2
    resets = [r for r in log if r["event"] == "stream_reset" and r["error_code"] == wire7]
    stops = [r for r in log if r["event"] == "stop_sending" and r["error_code"] == wire7]
    # Two of each: the peer client's abort_stream and the page's.
    report.check("server saw RESET_STREAM 0x52e4a40fa8e2 (code 7)", len(resets) >= 2, len(resets))
    report.check("server saw STOP_SENDING 0x52e4a40fa8e2 (code 7)", len(stops) >= 2, len(stops))
    closes = [(r["code"], r["reason"]) for r in log if r["event"] == "session_close_received"]
    report.check(
        "server got WT_CLOSE_SESSION(4242, 'bye from page')", (4242, "bye from page") in closes
    )
    replies = [r for r in log if r["event"] == "server_bidi_reply"]
    report.check(
        "server-opened bidi streams got the payload back",
        len(replies) >= 2 and all(r["matches_payload"] for r in replies),
        len(replies),
    )
    grease = [r for r in log if r["event"] == "capsule_skipped"]
    report.check("server skipped Chromium's GREASE capsules", bool(grease), len(grease))

    elapsed = time.monotonic() - started
    passed = report.count - len(report.failures)
    print(f"\n{passed} passed, {len(report.failures)} failed")
    print(f"(total {elapsed:.1f}s; files in {workdir if args.keep else 'a removed temp dir'})")
    if report.failures:
        print("failed: " + ", ".join(report.failures))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
