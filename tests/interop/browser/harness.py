"""Drive headless Chromium's WebTransport client against a local server.

Usage (from pytest or a script)::

    from harness import find_chromium, run_page  # conftest.py puts browser/ on sys.path

    result = run_page(
        "https://127.0.0.1:4433/echo",
        cert.sha256,
        ["ready", "bidi_echo", "uni_echo", "datagram_echo", "close_from_page"],
        timeout=30,
    )
    assert result.ok, result.summary()
    assert result.netlog.webtransport_http3_version == "draft-02"

:func:`run_page` serves ``page.html``/``page.js`` from a plain
``http.server`` on 127.0.0.1 (``http://127.0.0.1`` is a secure context, so the
page may use WebTransport), launches Chromium headless with the recipe from
``shared/reference/chromium.md`` (fresh profile, net-log, host resolver
locked to loopback, QUIC left on), collects the result of each step that the
page POSTs back, and always kills Chromium by process group and removes the
profile, even on failure or timeout.

Steps (``name`` or ``name:arg``) and what the *server under test* must do:

``ready``
    Open the shared session (``new WebTransport(url, {serverCertificateHashes})``).
    Server: accept the extended CONNECT on the URL's path.
``bidi_echo[:size]``
    Write ``size`` bytes (default 65536) on a bidi stream, FIN, read all.
    Server: echo the bytes on the same stream, then FIN.
``uni_echo[:size]``
    Write ``size`` bytes (default 16384) on a uni stream, FIN, then read the
    next incoming uni stream to its end. Server: after the client uni
    stream's FIN, open a uni stream carrying the same bytes, then FIN.
``server_bidi``
    **Trigger:** the page opens a bidi stream, writes ``open-bidi`` and FIN.
    Server: echo it as usual *and* open a bidi stream of its own carrying
    exactly :data:`SERVER_BIDI_PAYLOAD` followed by FIN. The page reads it to
    its end, then writes the same bytes back on that stream and FINs; the
    server may check that reply.
``datagram_echo[:attempts]``
    Send ``dgram-N`` datagrams every 100 ms (at most 30) until one echo
    arrives. Server: echo datagrams.
``abort_stream[:code]``
    Open a bidi stream, write ``abort-me``, wait for its echo, then abort
    the writable and cancel the readable with ``streamErrorCode`` 7 (or
    ``code``). Server: should see RESET_STREAM and STOP_SENDING with
    0x52e4a40fa8e2 (= 0x52e4a40fa8db + n + n // 0x1e); it is the server-side
    test's job to assert that; the page only reports what it did.
``close_from_page``
    A new session, closed with ``{closeCode: 4242, reason: "bye from page"}``;
    waits for ``closed``. Server: receives WT_CLOSE_SESSION(4242, ...) and
    answers with FIN on the CONNECT stream (``closed`` resolves only then).
``close_from_server``
    A new session; the page writes ``close:4343:bye from server`` and FIN on
    a bidi stream and waits for ``closed``. Server: on a bidi stream whose
    bytes start with ``close:<code>:<reason>``, read to FIN, then send
    WT_CLOSE_SESSION(code, reason) and FIN on the CONNECT stream. Passes if
    ``closed`` resolves with closeCode 4343 and that reason.
``protocols``
    A new session with ``protocols: ["echo-v1", "echo-v0"]`` (or the
    ``protocols`` argument); reports ``wt.protocol``. Server: answer
    ``wt-protocol: "echo-v1"`` (an sf-string) when offered.
``sessions_in_a_row[:n]``
    ``n`` (default 3) sessions one after the other: ready, 1000-byte bidi
    echo, close(0), wait for ``closed``.

The echo contract is the same as ``tests/peers/aioquic_wt.py`` implements.

Chromium 156 speaks draft-02 by default; pass
``extra_flags=["--enable-features=EnableWebTransportDraft07"]`` to also offer
draft-07. The version actually negotiated is read from the net-log
(:attr:`NetLogFacts.webtransport_http3_version`), as is the real reason of a
failure, which JS only reports as "Opening handshake failed". Reading those
reasons (:attr:`NetLogFacts.errors`), as seen with Chromium 156:

- ``CERTIFICATE_VERIFY_FAILED`` (net_error -356, quic_error 199): wrong hash,
  or a certificate that is not ECDSA or is valid for more than 14 days;
- ``net::ERR_METHOD_NOT_SUPPORTED`` (-322): the server's SETTINGS lack
  WebTransport, **or** the server answered the CONNECT with a non-2xx status
  (a 404 looks exactly the same);
- ``Write failed with error: -102``: nothing listens on that UDP port.

Chromium prints ``console.log`` lines on its stderr
(:attr:`BrowserResult.chromium_log_tail`); the D-Bus errors there are noise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ALL_STEPS",
    "SERVER_BIDI_PAYLOAD",
    "UNSAFE_PORTS",
    "BrowserResult",
    "NetLogFacts",
    "StepResult",
    "chromium_version",
    "find_chromium",
    "parse_netlog",
    "run_page",
]

HERE = Path(__file__).resolve().parent

#: Every step the page knows, in a sensible order for one run.
ALL_STEPS = (
    "ready",
    "bidi_echo",
    "uni_echo",
    "server_bidi",
    "datagram_echo",
    "abort_stream",
    "protocols",
    "close_from_page",
    "close_from_server",
    "sessions_in_a_row",
)

#: What a server writes on the bidi stream it opens for the ``open-bidi``
#: trigger (must match ``tests/peers/aioquic_wt.py``).
SERVER_BIDI_PAYLOAD = "anywt: hello on a server-initiated bidi stream"

#: Ports Chromium refuses to connect to (the Fetch standard's "bad ports",
#: which Chromium's net/base/port_util.cc follows): ERR_UNSAFE_PORT.
UNSAFE_PORTS = frozenset(
    {
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77,
        79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135,
        137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531,
        532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720,
        1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
        6668, 6669, 6679, 6697, 10080,
    }
)  # fmt: skip

# The recipe (reference/chromium.md). The resolver rule keeps every lookup on
# loopback: without it Chromium still contacts Google services at start-up.
# QUIC must stay enabled (never --disable-quic).
_BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# --- results --------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """One step as the page reported it."""

    step: str
    ok: bool
    detail: Any
    ms: float | None = None


@dataclass
class NetLogFacts:
    """What the Chromium net-log says about the WebTransport sessions."""

    #: ``webtransport_http3_version`` of each ready session, in order.
    webtransport_http3_versions: list[str] = field(default_factory=list)
    #: ``http_datagram_version`` of each ready session, in order.
    http_datagram_versions: list[str] = field(default_factory=list)
    #: Failure reasons from WebTransport client state changes and failed
    #: sessions (e.g. ``net::ERR_METHOD_NOT_SUPPORTED``, TLS errors).
    errors: list[str] = field(default_factory=list)
    #: Params of each ``QUIC_SESSION_CLOSED`` event.
    quic_session_closes: list[dict[str, Any]] = field(default_factory=list)
    #: Every event whose type mentions WEBTRANSPORT: ``{"type", "params"}``.
    webtransport_events: list[dict[str, Any]] = field(default_factory=list)
    #: False if the file was missing or could not be read at all.
    parsed: bool = False

    @property
    def webtransport_http3_version(self) -> str | None:
        """The version of the first session that became ready, if any."""
        return self.webtransport_http3_versions[0] if self.webtransport_http3_versions else None


@dataclass
class BrowserResult:
    """Everything one :func:`run_page` call learned."""

    #: Steps that were asked for, in order.
    requested: list[str]
    #: Results the page posted, in order.
    steps: list[StepResult]
    #: True if the page posted its final "done".
    done: bool
    #: True if the overall timeout expired first.
    timed_out: bool
    netlog: NetLogFacts
    #: Lines the page logged (page errors, unhandled rejections).
    page_log: list[str]
    #: Chromium's exit status, or None if it had to be killed.
    chromium_returncode: int | None
    #: The end of Chromium's stderr (console lines and errors).
    chromium_log_tail: str
    #: Wall-clock seconds from launch to result.
    elapsed: float
    #: True if Chromium fetched the page at all (False points at the launch).
    page_loaded: bool = False
    #: Where the net-log was kept, if asked to keep it.
    netlog_path: Path | None = None

    def step(self, name: str) -> StepResult | None:
        """The first result whose step is *name* (or starts with ``name:``)."""
        for result in self.steps:
            if result.step == name or result.step.startswith(name + ":"):
                return result
        return None

    @property
    def ok(self) -> bool:
        """Done, every requested step reported, and all passed."""
        reported = [r.step for r in self.steps]
        return self.done and reported == list(self.requested) and all(r.ok for r in self.steps)

    @property
    def webtransport_http3_version(self) -> str | None:
        """Shortcut for ``netlog.webtransport_http3_version``."""
        return self.netlog.webtransport_http3_version

    def summary(self) -> str:
        """A readable multi-line report, for assertion messages."""
        lines = [
            f"done={self.done} timed_out={self.timed_out} page_loaded={self.page_loaded} "
            f"elapsed={self.elapsed:.2f}s "
            f"chromium_rc={self.chromium_returncode} "
            f"wt_versions={self.netlog.webtransport_http3_versions}"
        ]
        for r in self.steps:
            lines.append(f"  {'PASS' if r.ok else 'FAIL'} {r.step}: {json.dumps(r.detail)}")
        missing = [s for s in self.requested if s not in {r.step for r in self.steps}]
        if missing:
            lines.append(f"  not reported: {missing}")
        if self.netlog.errors:
            lines.append(f"  net-log errors: {self.netlog.errors}")
        if self.page_log:
            lines.append(f"  page log: {self.page_log[-10:]}")
        if not self.ok:
            lines.append("  chromium stderr tail:\n" + self.chromium_log_tail[-3000:])
        return "\n".join(lines)


# --- finding and describing chromium ---------------------------------------------


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None.

    ``$ANYWT_CHROMIUM`` wins if set; otherwise the usual names on ``PATH``.
    """
    explicit = os.environ.get("ANYWT_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
    for name in _CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_version(chromium: str | None = None, *, timeout: float = 30.0) -> str | None:
    """``Chromium 156.0.8078.79 ...`` as the binary prints it, or None."""
    binary = chromium or find_chromium()
    if binary is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            check=False,
        )
        # Debian's wrapper prints a harmless shell warning on stderr first.
        for line in out.stdout.splitlines():
            if line.strip():
                return line.strip()
    return None


# --- the page server --------------------------------------------------------------


class _Collector:
    """Thread-safe sink for what the page posts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: list[StepResult] = []
        self.page_log: list[str] = []
        self.done = threading.Event()
        self.first_request = threading.Event()


def _make_handler(config: bytes, collector: _Collector) -> type[BaseHTTPRequestHandler]:
    files = {
        "/": ("page.html", "text/html; charset=utf-8"),
        "/page.html": ("page.html", "text/html; charset=utf-8"),
        "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    }

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keep-alive would leave threads waiting on idle sockets.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; results carry what matters

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            collector.first_request.set()
            path = urlsplit(self.path).path
            if path == "/config.json":
                self._reply(HTTPStatus.OK, config, "application/json")
            elif path in files:
                name, ctype = files[path]
                self._reply(HTTPStatus.OK, (HERE / name).read_bytes(), ctype)
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            raw = self.rfile.read(length)
            try:
                message = json.loads(raw)
            except ValueError:
                self._reply(HTTPStatus.BAD_REQUEST, b"bad json", "text/plain")
                return
            path = urlsplit(self.path).path
            with collector.lock:
                if path == "/log":
                    collector.page_log.append(str(message.get("message")))
                elif path == "/result" and message.get("done"):
                    collector.done.set()
                elif path == "/result":
                    collector.steps.append(
                        StepResult(
                            step=str(message.get("step")),
                            ok=bool(message.get("ok")),
                            detail=message.get("detail"),
                            ms=message.get("ms"),
                        )
                    )
            self._reply(HTTPStatus.NO_CONTENT, b"", "text/plain")

    return Handler


@contextlib.contextmanager
def _page_server(config: bytes, collector: _Collector) -> Iterator[int]:
    """Serve the page on 127.0.0.1 on a port Chromium will accept; yield it."""
    server: ThreadingHTTPServer | None = None
    for _ in range(50):
        candidate = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(config, collector))
        if candidate.server_address[1] not in UNSAFE_PORTS:
            server = candidate
            break
        candidate.server_close()  # ERR_UNSAFE_PORT: bind again
    if server is None:
        raise RuntimeError("could not bind a page server on a port Chromium accepts")
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- chromium process control --------------------------------------------------------


def _exited(pid: int) -> bool:
    """True if the child has exited, *without reaping it*.

    While the leader is an unreaped zombie its pid (and so our process group
    id) cannot be reused, so a later killpg cannot hit a stranger.
    """
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """SIGTERM the process group, wait up to *grace*, then SIGKILL it.

    SIGTERM first so Chromium can finish writing the net-log. Returns the
    leader's exit status if it exited on its own before any signal.
    """
    exited_before = _exited(proc.pid)
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    if not exited_before:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _exited(proc.pid):
            time.sleep(0.05)
    # Children (renderer, GPU, network service) may outlive the leader; the
    # leader is still unreaped here, so the group id is still ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return proc.returncode if exited_before else None


def _tail(path: Path, limit: int = 20000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


# --- net-log ---------------------------------------------------------------------


def _load_netlog(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Read a net-log, tolerating a file cut short by a killed browser."""
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return None
    if not text.strip():
        return None
    try:
        whole = json.loads(text)
        return whole.get("constants", {}), list(whole.get("events", []))
    except ValueError:
        pass
    # Chromium writes the constants on the first line and one event per line,
    # each followed by a comma; a killed browser leaves the list unclosed.
    lines = text.splitlines()
    constants: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    for line in lines:
        stripped = line.strip().rstrip(",")
        if stripped.startswith('{"constants":'):
            with contextlib.suppress(ValueError):
                constants = json.loads(stripped + "}").get("constants", {})
            continue
        if stripped.startswith("{"):
            with contextlib.suppress(ValueError):
                event = json.loads(stripped)
                if isinstance(event, dict) and "type" in event:
                    events.append(event)
    return constants, events


def parse_netlog(path: str | os.PathLike[str]) -> NetLogFacts:
    """Extract the WebTransport facts from a Chromium ``--log-net-log`` file."""
    facts = NetLogFacts()
    loaded = _load_netlog(Path(path))
    if loaded is None:
        return facts
    constants, events = loaded
    facts.parsed = True
    type_names = {v: k for k, v in constants.get("logEventTypes", {}).items()}
    for event in events:
        name = type_names.get(event.get("type"), str(event.get("type")))
        params = event.get("params") or {}
        if name == "QUIC_SESSION_CLOSED":
            facts.quic_session_closes.append(params)
        if "WEBTRANSPORT" not in name:
            continue
        facts.webtransport_events.append({"type": name, "params": params})
        if name == "QUIC_SESSION_WEBTRANSPORT_SESSION_READY":
            version = params.get("webtransport_http3_version")
            if version is not None:
                facts.webtransport_http3_versions.append(str(version))
            datagram = params.get("http_datagram_version")
            if datagram is not None:
                facts.http_datagram_versions.append(str(datagram))
        error = params.get("error") or params.get("net_error") or params.get("details")
        if error and (name.endswith("STATE_CHANGED") or "FAIL" in name or "ERROR" in name):
            text = json.dumps(error) if isinstance(error, dict) else str(error)
            if text not in facts.errors:
                facts.errors.append(text)
    return facts


# --- the driver --------------------------------------------------------------------


def run_page(
    server_url: str,
    cert_sha256: bytes | None,
    steps: Sequence[str],
    *,
    timeout: float,
    extra_flags: Sequence[str] = (),
    protocols: Sequence[str] | None = None,
    step_timeout: float = 10.0,
    chromium: str | None = None,
    keep_netlog: str | os.PathLike[str] | None = None,
    kill_grace: float = 3.0,
) -> BrowserResult:
    """Run *steps* in headless Chromium against the WebTransport *server_url*.

    Args:
        server_url: ``https://127.0.0.1:PORT/path`` of the server under test.
            Use 127.0.0.1, not localhost: Chromium would try ::1 first and
            QUIC does not fall back.
        cert_sha256: SHA-256 of the server's DER certificate, passed as
            ``serverCertificateHashes``; None to pass no hashes (e.g. with
            ``--ignore-certificate-errors-spki-list`` in *extra_flags*).
        steps: step names, optionally ``name:arg`` (see the module docstring).
        timeout: bound on the whole run, launch to last result.
        extra_flags: more Chromium flags, e.g.
            ``["--enable-features=EnableWebTransportDraft07"]``.
        protocols: ``protocols`` for the shared session and the ``protocols``
            step (default for that step: ``["echo-v1", "echo-v0"]``).
        step_timeout: bound on each wait inside the page.
        chromium: the binary; default :func:`find_chromium`.
        keep_netlog: copy the net-log here (for debugging); otherwise it is
            deleted with the profile.
        kill_grace: seconds Chromium gets after SIGTERM before SIGKILL.

    Raises:
        FileNotFoundError: no Chromium binary.
        ValueError: the server URL's port is one Chromium refuses.
    """
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary (apt-get install chromium)")
    target = urlsplit(server_url)
    if target.port is not None and target.port in UNSAFE_PORTS:
        raise ValueError(f"port {target.port} is on Chromium's unsafe list (ERR_UNSAFE_PORT)")

    config = json.dumps(
        {
            "url": server_url,
            "cert_sha256": list(cert_sha256) if cert_sha256 is not None else None,
            "steps": list(steps),
            "protocols": list(protocols) if protocols is not None else None,
            "step_timeout_ms": int(step_timeout * 1000),
            "server_bidi_payload": SERVER_BIDI_PAYLOAD,
        }
    ).encode()
    collector = _Collector()
    workdir = Path(tempfile.mkdtemp(prefix="anywt-chromium-"))
    profile = workdir / "profile"
    profile.mkdir()
    netlog = workdir / "netlog.json"
    stderr_path = workdir / "chromium.stderr"
    started = time.monotonic()
    timed_out = False
    returncode: int | None = None
    kept: Path | None = None
    try:
        with _page_server(config, collector) as page_port:
            cmd = [
                binary,
                *_BASE_FLAGS,
                f"--user-data-dir={profile}",
                f"--log-net-log={netlog}",
                *extra_flags,
                f"http://127.0.0.1:{page_port}/",
            ]
            with open(stderr_path, "wb") as err:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,  # its own process group, killed as one
                )
            try:
                deadline = started + timeout
                while not collector.done.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        timed_out = True
                        break
                    if collector.done.wait(min(0.1, left)):
                        break
                    if _exited(proc.pid):
                        break  # chromium died: no result will come
                if collector.done.is_set():
                    # The page closes its tab when done; give Chromium a moment
                    # to exit by itself so the net-log is complete.
                    settle = time.monotonic() + min(kill_grace, 2.0)
                    while time.monotonic() < settle and not _exited(proc.pid):
                        time.sleep(0.05)
            finally:
                returncode = _kill_group(proc, kill_grace)
        elapsed = time.monotonic() - started
        if keep_netlog is not None and netlog.exists():
            kept = Path(keep_netlog)
            shutil.copyfile(netlog, kept)
        facts = parse_netlog(netlog)
        with collector.lock:
            return BrowserResult(
                requested=list(steps),
                steps=list(collector.steps),
                done=collector.done.is_set(),
                timed_out=timed_out,
                netlog=facts,
                page_log=list(collector.page_log),
                chromium_returncode=returncode,
                chromium_log_tail=_tail(stderr_path),
                elapsed=elapsed,
                page_loaded=collector.first_request.is_set(),
                netlog_path=kept,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
