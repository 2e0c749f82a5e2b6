"""pywebtransport 0.21 as an interop peer: an echo server and a scenario client.

Runs under the private venv made by ``tests/peers/venvs.py`` (CPython >= 3.12,
``pywebtransport==0.21.1``) and uses only pywebtransport's public API.  It
does not import anywt.

Server::

    python pywebtransport_peer.py server --host 127.0.0.1 --port 0 \
        --certfile cert.pem --keyfile key.pem

prints one JSON line ``{"host", "port", "url", ...}`` on stdout once it
listens, then serves the project's echo contract on any path:

- a bidirectional stream is echoed back, then FIN;
- a unidirectional stream from the client is answered, after its FIN, by a
  server unidirectional stream carrying the same bytes;
- datagrams are echoed;
- a bidirectional stream whose first bytes are ``close:<code>:<reason>`` makes
  the server close the session with that code and reason;
- (extension) a bidirectional stream whose first bytes are ``diag:`` is
  answered with the server's view of the session as one JSON object
  (``SessionDiagnostics`` plus counters), then FIN;
- (extension) a session to the path ``/reject`` is rejected with status 404.

Everything the server observes goes to stderr as JSON lines with an "event"
key (``connection_diagnostics``, ``session_ready``, ``session_closed`` with
the last ``SessionDiagnostics`` snapshot, ...); ``--report FILE`` also appends
them to FILE.  Other stderr lines are plain log text.  pywebtransport refuses
port 0, so ``--port 0`` picks a free UDP port first.

Client::

    python pywebtransport_peer.py client https://127.0.0.1:4433/echo --insecure \
        [--ca cert.pem] [--scenario NAME ...] [--big-bytes N]

runs scenarios (default: all) and prints one JSON object per scenario,
``{"scenario", "ok", "detail"}``; exits 0 only if every scenario passed.
Scenarios: bidi_echo, uni_echo, datagram_echo, big_transfer, stream_credit,
multi_session, close_code, abort_stream, protocols.  Every wait is bounded; a
watchdog ends the process after ``--total-timeout`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import math
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pywebtransport as pwt
from pywebtransport.types import EventType

PEER_NAME = "pywebtransport"
CLOSE_PREFIX = b"close:"
DIAG_PREFIX = b"diag:"
_log = logging.getLogger("pywebtransport-peer")


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Turn diagnostics dataclasses (bytes, enums, tuples) into JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class Reporter:
    """JSON lines on stderr (and optionally a file)."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "peer": PEER_NAME, "t": round(time.time(), 6), **fields}
        line = json.dumps(_jsonable(record), sort_keys=False)
        with self._lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            if self._path:
                with open(self._path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")


def _start_watchdog(seconds: float, what: str) -> None:
    """Hard stop: pywebtransport runs a native thread, so never trust shutdown."""

    def fire() -> None:
        sys.stderr.write(f"pywebtransport-peer: {what} watchdog fired after {seconds:.0f}s\n")
        sys.stderr.flush()
        os._exit(124)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def _free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _bounded(awaitable: Awaitable[Any], seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


async def _quiet(awaitable: Awaitable[Any], seconds: float = 3.0) -> None:
    """Await a cleanup step, ignoring its errors and bounding its time."""
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        _log.debug("cleanup step failed: %r", exc)


def _error_text(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(code, int) and hex(code) not in text:
        text += f" (error_code={hex(code)})"
    # pywebtransport wraps errors; the first cause usually names the real problem.
    cause = exc.__cause__ or exc.__context__
    depth = 0
    while cause is not None and depth < 4:
        text += f" <- {type(cause).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
        depth += 1
    return text


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


class SessionHandler:
    """Serves the echo contract on one accepted session."""

    def __init__(
        self, session: pwt.WebTransportSession, reporter: Reporter, args: argparse.Namespace
    ):
        self.session = session
        self.reporter = reporter
        self.args = args
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.last_diag: Any = None
        self.counters = {
            "bidi_streams": 0,
            "uni_streams": 0,
            "datagrams_echoed": 0,
            "bytes_echoed": 0,
            "stream_errors": 0,
            "datagram_errors": 0,
        }
        self._tasks: set[asyncio.Task[Any]] = set()
        session.events.on(event_type=EventType.SESSION_CLOSED, handler=self._on_closed)

    async def _on_closed(self, event: pwt.Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        self.close_code = data.get("error_code")
        self.close_reason = data.get("reason")
        self.closed.set()

    async def _wait_closed(self) -> None:
        """Until SESSION_CLOSED arrives (or, as a fallback, the session says it is closed)."""
        while not self.closed.is_set():
            if self.session.is_closed:
                await asyncio.sleep(0.2)  # the event, if it comes, carries code and reason
                self.closed.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), 0.25)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def snapshot(self) -> Any:
        try:
            self.last_diag = await _bounded(self.session.diagnose(), 5.0)
        except Exception as exc:  # closed or gone: keep the last snapshot
            _log.debug("diagnose failed: %r", exc)
        return self.last_diag

    async def run(self) -> None:
        self._spawn(self._accept_bidi())
        self._spawn(self._accept_uni())
        self._spawn(self._echo_datagrams())
        await self.snapshot()
        self.reporter.emit(
            "session_ready",
            session_id=self.session.session_id,
            path=self.session.path,
            headers=self.session.headers,
            wt_available_protocols=self.session.wt_available_protocols,
            wt_protocol=self.session.wt_protocol,
            connection=self.session.connection.handle,
            diagnostics=self.last_diag,
        )
        try:
            await _bounded(self._wait_closed(), self.args.session_lifetime)
        except TimeoutError:
            _log.warning("session %d outlived --session-lifetime; closing", self.session.session_id)
            await _quiet(self.session.close(error_code=0, reason="session lifetime exceeded"))
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.reporter.emit(
                "session_closed",
                session_id=self.session.session_id,
                path=self.session.path,
                close_code=self.close_code,
                close_reason=self.close_reason,
                counters=self.counters,
                diagnostics=self.last_diag,
            )

    async def _accept_bidi(self) -> None:
        async for stream in self.session.incoming_bidirectional_streams():
            self._spawn(self._serve_bidi(stream))

    async def _accept_uni(self) -> None:
        async for stream in self.session.incoming_unidirectional_streams():
            self._spawn(self._serve_uni(stream))

    async def _serve_bidi(self, stream: pwt.WebTransportBidirectionalStream) -> None:
        self.counters["bidi_streams"] += 1
        timeout = self.args.stream_timeout
        try:
            async with asyncio.timeout(timeout):
                head = b""
                eof = False
                # Decide whether this is a command: need len("close:") bytes.
                while len(head) < len(CLOSE_PREFIX):
                    chunk = await stream.read()
                    if not chunk:
                        eof = True
                        break
                    head += chunk
                    if not CLOSE_PREFIX.startswith(head[: len(CLOSE_PREFIX)]) and not (
                        DIAG_PREFIX.startswith(head[: len(DIAG_PREFIX)])
                    ):
                        break
                if head.startswith(CLOSE_PREFIX):
                    await self._close_command(stream, head, eof)
                    return
                if head.startswith(DIAG_PREFIX):
                    await self._diag_command(stream, eof)
                    return
                if head:
                    await stream.write_all(data=head)
                    self.counters["bytes_echoed"] += len(head)
                while not eof:
                    chunk = await stream.read()
                    if not chunk:
                        break
                    await stream.write_all(data=chunk)
                    self.counters["bytes_echoed"] += len(chunk)
                # The credit with the whole echo written, before the FIN: a
                # client may close the session as soon as it reads the FIN,
                # and the snapshot below is then cancelled with the session's
                # tasks (the report would keep the session_ready snapshot).
                await self.snapshot()
                await stream.write(data=b"", end_stream=True)
        except Exception as exc:
            self._stream_error(stream.stream_id, "bidi", exc)
            return
        await self.snapshot()

    def _stream_error(self, stream_id: int, kind: str, exc: BaseException) -> None:
        """Count and report a stream that ended abruptly (e.g. reset by the client)."""
        self.counters["stream_errors"] += 1
        _log.info("%s stream %d: %s", kind, stream_id, _error_text(exc))
        self.reporter.emit(
            "stream_error",
            session_id=self.session.session_id,
            stream_id=stream_id,
            kind=kind,
            error=_error_text(exc),
            error_code=getattr(exc, "error_code", None),
        )

    async def _close_command(self, stream: Any, head: bytes, eof: bool) -> None:
        data = head
        if not eof:
            # The reason may span chunks: read to FIN, briefly, capped.
            try:
                async with asyncio.timeout(1.0):
                    while len(data) < 4096:
                        chunk = await stream.read()
                        if not chunk:
                            break
                        data += chunk
            except TimeoutError:
                pass
        text = data[len(CLOSE_PREFIX) :].decode("utf-8", "replace")
        code_text, _, reason = text.partition(":")
        try:
            code = int(code_text.strip(), 0)
        except ValueError:
            code = 0
        await self.snapshot()
        self.reporter.emit(
            "close_requested", session_id=self.session.session_id, code=code, reason=reason
        )
        await self.session.close(error_code=code, reason=reason)

    async def _diag_command(self, stream: Any, eof: bool) -> None:
        if not eof:
            try:
                async with asyncio.timeout(1.0):
                    while await stream.read():
                        pass
            except TimeoutError:
                pass
        diag = await self.snapshot()
        conn_diag = None
        try:
            conn_diag = await _bounded(self.session.connection.diagnose(), 5.0)
        except Exception as exc:
            _log.debug("connection diagnose failed: %r", exc)
        body = json.dumps(
            _jsonable(
                {
                    "peer": PEER_NAME,
                    "version": pwt.__version__,
                    "session": diag,
                    "connection": conn_diag,
                    "counters": self.counters,
                }
            )
        ).encode()
        await stream.write_all(data=body, end_stream=True)

    async def _serve_uni(self, stream: pwt.WebTransportReceiveStream) -> None:
        self.counters["uni_streams"] += 1
        try:
            async with asyncio.timeout(self.args.stream_timeout):
                data = await stream.read_all()
                reply = await self.session.create_unidirectional_stream()
                await reply.write_all(data=data, end_stream=True)
                self.counters["bytes_echoed"] += len(data)
        except Exception as exc:
            self._stream_error(stream.stream_id, "uni", exc)
            return
        await self.snapshot()

    async def _echo_datagrams(self) -> None:
        while not self.session.is_closed:
            try:
                data = await self.session.read_datagram()
            except Exception as exc:
                _log.debug("read_datagram ended: %r", exc)
                return
            try:
                await self.session.send_datagram(data=data)
                self.counters["datagrams_echoed"] += 1
            except Exception as exc:
                self.counters["datagram_errors"] += 1
                _log.info("send_datagram: %s", _error_text(exc))


async def _serve_connection(
    connection: pwt.WebTransportConnection, reporter: Reporter, args: argparse.Namespace
) -> None:
    tasks: set[asyncio.Task[Any]] = set()
    reported = False
    try:
        async for session in connection.incoming_sessions():
            if session.path.split("?")[0] == "/reject":
                await _quiet(session.reject(status_code=404))
                reporter.emit("session_rejected", session_id=session.session_id, path=session.path)
                continue
            offered = list(session.wt_available_protocols or ())
            chosen = next((p for p in args.protocols if p in offered), None)
            # Listen for SESSION_CLOSED before accepting: a client may close
            # right after the 200, and an event nobody listens to is lost.
            handler = SessionHandler(session, reporter, args)
            try:
                await _bounded(session.accept(wt_protocol=chosen), 10.0)
            except Exception as exc:
                _log.warning("accept failed: %s", _error_text(exc))
                continue
            if not reported:
                reported = True
                try:
                    diag = await _bounded(connection.diagnose(), 5.0)
                    reporter.emit("connection_diagnostics", diagnostics=diag)
                except Exception as exc:
                    _log.debug("connection diagnose failed: %r", exc)
            task = asyncio.ensure_future(handler.run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def run_server(args: argparse.Namespace) -> int:
    reporter = Reporter(args.report)
    extra: dict[str, Any] = {}
    if args.initial_max_data is not None:
        extra["initial_max_data"] = args.initial_max_data
    if args.session_receive_window is not None:
        extra["session_receive_window"] = args.session_receive_window
    if args.max_sessions is not None:
        extra["max_sessions"] = args.max_sessions
    if args.initial_max_streams_bidi is not None:
        extra["initial_max_streams_bidi"] = args.initial_max_streams_bidi
    if args.initial_max_streams_uni is not None:
        extra["initial_max_streams_uni"] = args.initial_max_streams_uni

    server: pwt.WebTransportServer | None = None
    port = args.port
    last_error: Exception | None = None
    for _attempt in range(5 if args.port == 0 else 1):
        port = _free_udp_port(args.host) if args.port == 0 else args.port
        config = pwt.ServerConfig(
            bind_host=args.host,
            bind_port=port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            max_idle_timeout=args.idle_timeout,
            close_timeout=3.0,
            **extra,
        )
        candidate = pwt.WebTransportServer(config=config)
        try:
            await _bounded(candidate.listen(), 10.0)
        except Exception as exc:  # port taken between probe and bind: retry
            last_error = exc
            await _quiet(candidate.close())
            continue
        server = candidate
        break
    if server is None:
        sys.stderr.write(f"pywebtransport-peer: cannot listen: {last_error!r}\n")
        return 2

    bound = server.local_addresses
    if bound:
        port = int(bound[0][1])
    print(
        json.dumps(
            {
                "host": args.host,
                "port": port,
                "url": f"https://{_url_host(args.host)}:{port}{args.path}",
                "peer": PEER_NAME,
                "version": pwt.__version__,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    connection_tasks: set[asyncio.Task[Any]] = set()

    async def accept_loop() -> None:
        async for connection in server.incoming_connections():
            task = asyncio.ensure_future(_serve_connection(connection, reporter, args))
            connection_tasks.add(task)
            task.add_done_callback(connection_tasks.discard)

    acceptor = asyncio.ensure_future(accept_loop())
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.lifetime)
    except TimeoutError:
        _log.warning("server lifetime (%ss) reached; shutting down", args.lifetime)
    finally:
        acceptor.cancel()
        for task in list(connection_tasks):
            task.cancel()
        await asyncio.gather(acceptor, *connection_tasks, return_exceptions=True)
        await _quiet(server.close(), 5.0)
    return 0


# --------------------------------------------------------------------------
# Client scenarios
# --------------------------------------------------------------------------


class Client:
    """One WebTransportClient shared by the scenarios; a session per scenario."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        parsed = urllib.parse.urlparse(args.url)
        self.authority = parsed.netloc
        self.path = parsed.path or "/"
        if args.insecure:
            verify: ssl.VerifyMode = ssl.CERT_NONE
        else:
            verify = ssl.CERT_REQUIRED
        extra: dict[str, Any] = {}
        for key in (
            "initial_max_data",
            "session_receive_window",
            "initial_max_streams_bidi",
            "initial_max_streams_uni",
        ):
            if getattr(args, key) is not None:
                extra[key] = getattr(args, key)
        self.config = pwt.ClientConfig(
            verify_mode=verify,
            ca_certs=args.ca,
            connect_timeout=args.connect_timeout,
            close_timeout=3.0,
            max_idle_timeout=args.idle_timeout,
            **extra,
        )
        self.client = pwt.WebTransportClient(config=self.config)

    async def connect(self, protocols: list[str] | None = None) -> pwt.WebTransportSession:
        return await self.client.connect(
            url=self.args.url,
            timeout=self.args.connect_timeout,
            wt_available_protocols=protocols,
        )

    async def dispose(
        self, session: pwt.WebTransportSession, *, close_connection: bool = True
    ) -> None:
        connection = None
        with contextlib.suppress(Exception):
            connection = session.connection
        if not session.is_closed:
            await _quiet(session.close())
        if close_connection and connection is not None:
            await _quiet(connection.close())

    async def close(self) -> None:
        await _quiet(self.client.close(), 5.0)


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _bidi_roundtrip(
    session: pwt.WebTransportSession, payload: bytes, timeout: float
) -> bytes:
    async with asyncio.timeout(timeout):
        stream = await session.create_bidirectional_stream()
        await stream.write_all(data=payload, end_stream=True)
        return await stream.read_all()


async def _closed_waiter(session: pwt.WebTransportSession) -> asyncio.Future[dict[str, Any]]:
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_closed(event: pwt.Event) -> None:
        if not future.done():
            future.set_result(event.data if isinstance(event.data, dict) else {})

    session.events.on(event_type=EventType.SESSION_CLOSED, handler=on_closed)
    return future


async def scenario_bidi_echo(c: Client) -> tuple[bool, Any]:
    session = await c.connect()
    try:
        results = []
        for i, size in enumerate((1, 11, 1400, 70_000)):
            payload = b"anywt bidi " + _payload(size, seed=100 + i)
            echoed = await _bidi_roundtrip(session, payload, c.args.op_timeout)
            results.append(
                {"sent": len(payload), "received": len(echoed), "equal": echoed == payload}
            )
        ok = all(r["equal"] for r in results)
        return ok, {"streams": results, "session_id": session.session_id}
    finally:
        await c.dispose(session)


async def scenario_uni_echo(c: Client) -> tuple[bool, Any]:
    session = await c.connect()
    try:
        incoming = session.incoming_unidirectional_streams()
        results = []
        for i, size in enumerate((5, 3000)):
            payload = b"anywt uni " + _payload(size, seed=200 + i)
            async with asyncio.timeout(c.args.op_timeout):
                out = await session.create_unidirectional_stream()
                await out.write_all(data=payload, end_stream=True)
                reply = await anext(incoming)
                echoed = await reply.read_all()
            results.append(
                {
                    "sent": len(payload),
                    "received": len(echoed),
                    "equal": echoed == payload,
                    "reply_stream_id": reply.stream_id,
                }
            )
        return all(r["equal"] for r in results), {"streams": results}
    finally:
        await c.dispose(session)


async def scenario_datagram_echo(c: Client) -> tuple[bool, Any]:
    session = await c.connect()
    try:
        conn_diag = await _bounded(session.connection.diagnose(), 5.0)
        outcome = {}
        for size in (16, 1000):
            got = False
            attempts = 0
            errors: list[str] = []
            for attempt in range(c.args.datagram_attempts):
                attempts += 1
                payload = f"dg{size}:{attempt}:".encode() + _payload(size, seed=300 + attempt)
                try:
                    await _bounded(session.send_datagram(data=payload), 2.0)
                except Exception as exc:
                    errors.append(_error_text(exc))
                    break
                deadline = time.monotonic() + c.args.datagram_wait
                while time.monotonic() < deadline:
                    try:
                        echoed = await asyncio.wait_for(
                            session.read_datagram(), timeout=max(0.01, deadline - time.monotonic())
                        )
                    except TimeoutError:
                        break
                    if echoed.startswith(f"dg{size}:".encode()) and len(echoed) == len(payload):
                        got = True
                        break
                if got:
                    break
            outcome[str(size)] = {"echoed": got, "attempts": attempts, "errors": errors}
        ok = all(v["echoed"] for v in outcome.values())
        # Where does pywebtransport's own send limit sit? (informational)
        limits: dict[str, str] = {}
        for size in (1100, 1150, 1160, 1161, 1162, 1200, 1400):
            try:
                await _bounded(session.send_datagram(data=b"L" * size), 2.0)
                limits[str(size)] = "accepted"
            except Exception as exc:
                limits[str(size)] = _error_text(exc)
        return ok, {
            "sizes": outcome,
            "peer_max_datagram_frame_size": conn_diag.peer_max_datagram_frame_size,
            "send_limit_probe": limits,
        }
    finally:
        await c.dispose(session)


async def scenario_big_transfer(c: Client) -> tuple[bool, Any]:
    size = c.args.big_bytes
    session = await c.connect()
    try:
        data = _payload(size, seed=400)
        expected = hashlib.sha256(data).hexdigest()
        started = time.monotonic()
        received = 0
        digest = hashlib.sha256()
        async with asyncio.timeout(c.args.big_timeout):
            stream = await session.create_bidirectional_stream()

            async def writer() -> None:
                await stream.write_all(data=data, end_stream=True)

            async def reader() -> None:
                nonlocal received
                while True:
                    chunk = await stream.read()
                    if not chunk:
                        return
                    received += len(chunk)
                    digest.update(chunk)

            await asyncio.gather(writer(), reader())
        elapsed = time.monotonic() - started
        diag = await _bounded(session.diagnose(), 5.0)
        conn = await _bounded(session.connection.diagnose(), 5.0)
        fc = bool(diag.flow_control_negotiated)
        # Credit we were given grew past the peer's initial WT_MAX_DATA, and the
        # credit we granted grew past ours: WT_MAX_DATA capsules flowed both ways.
        exercised = fc and size > conn.peer_initial_max_data and size > c.config.initial_max_data
        send_credit_grew = diag.peer_max_data > conn.peer_initial_max_data
        recv_credit_grew = diag.local_max_data > c.config.initial_max_data
        same = received == size and digest.hexdigest() == expected
        ok = same and (not fc or not exercised or (send_credit_grew and recv_credit_grew))
        if c.args.require_flow_control and not fc:
            ok = False
        return ok, {
            "bytes": size,
            "received": received,
            "sha256_match": digest.hexdigest() == expected,
            "seconds": round(elapsed, 3),
            "mb_per_s_each_way": round(size / max(elapsed, 1e-9) / 1e6, 2),
            "flow_control_negotiated": fc,
            "credit_exercised": exercised,
            "peer_initial_max_data": conn.peer_initial_max_data,
            "local_initial_max_data": c.config.initial_max_data,
            "peer_max_data": diag.peer_max_data,
            "local_max_data": diag.local_max_data,
            "data_sent": diag.data_sent,
            "data_received": diag.data_received,
            "send_credit_grew": send_credit_grew,
            "recv_credit_grew": recv_credit_grew,
        }
    finally:
        await c.dispose(session)


async def scenario_stream_credit(c: Client) -> tuple[bool, Any]:
    """More streams than the initial WT_MAX_STREAMS_* allow: stream credit must flow."""
    count = c.args.stream_count
    session = await c.connect()
    try:
        conn = await _bounded(session.connection.diagnose(), 5.0)
        incoming = session.incoming_unidirectional_streams()
        bidi_ok = uni_ok = 0
        async with asyncio.timeout(c.args.big_timeout):
            for i in range(count):
                payload = b"bidi %d" % i
                if await _bidi_roundtrip(session, payload, c.args.op_timeout) == payload:
                    bidi_ok += 1
            for i in range(count):
                payload = b"uni %d" % i
                out = await session.create_unidirectional_stream()
                await out.write_all(data=payload, end_stream=True)
                reply = await anext(incoming)
                if await reply.read_all() == payload:
                    uni_ok += 1
        diag = await _bounded(session.diagnose(), 5.0)
        detail = {
            "streams_each_way": count,
            "bidi_echoed": bidi_ok,
            "uni_echoed": uni_ok,
            "flow_control_negotiated": diag.flow_control_negotiated,
            "peer_initial_max_streams_bidi": conn.peer_initial_max_streams_bidi,
            "peer_initial_max_streams_uni": conn.peer_initial_max_streams_uni,
            "peer_max_streams_bidi": diag.peer_max_streams_bidi,
            "peer_max_streams_uni": diag.peer_max_streams_uni,
            "local_max_streams_uni": diag.local_max_streams_uni,
            "local_streams_bidi_opened": diag.local_streams_bidi_opened,
            "local_streams_uni_opened": diag.local_streams_uni_opened,
        }
        ok = bidi_ok == count and uni_ok == count
        if diag.flow_control_negotiated and count > conn.peer_initial_max_streams_bidi:
            ok = ok and diag.peer_max_streams_bidi > conn.peer_initial_max_streams_bidi
        return ok, detail
    finally:
        await c.dispose(session)


async def scenario_multi_session(c: Client) -> tuple[bool, Any]:
    count = c.args.sessions
    first = await c.connect()
    sessions = [first]
    connection = first.connection
    detail: dict[str, Any] = {
        "note": (
            "pywebtransport's WebTransportClient.connect() always opens a new QUIC "
            "connection; extra sessions use WebTransportConnection.create_session()"
        )
    }
    try:
        conn_diag = await _bounded(connection.diagnose(), 5.0)
        first_diag = await _bounded(first.diagnose(), 5.0)
        detail["flow_control_negotiated"] = first_diag.flow_control_negotiated
        detail["peer_initial"] = {
            "max_data": conn_diag.peer_initial_max_data,
            "max_streams_bidi": conn_diag.peer_initial_max_streams_bidi,
            "max_streams_uni": conn_diag.peer_initial_max_streams_uni,
        }
        try:
            for _ in range(count - 1):
                extra = await _bounded(
                    connection.create_session(authority=c.authority, path=c.path),
                    c.args.connect_timeout,
                )
                await _bounded(extra.ensure_ready(), c.args.connect_timeout)
                sessions.append(extra)
        except Exception as exc:
            why = _error_text(exc)
            if not first_diag.flow_control_negotiated:
                why += (
                    " (flow control was not negotiated, and pywebtransport then allows only "
                    "one session per connection)"
                )
            detail["error"] = why
            detail["sessions_opened"] = len(sessions)
            return False, detail

        same_connection = all(s.connection is connection for s in sessions)
        payloads = [
            b"session %d " % i + _payload(500 + i, seed=500 + i) for i in range(len(sessions))
        ]
        echoes = await asyncio.gather(
            *(
                _bidi_roundtrip(s, p, c.args.op_timeout)
                for s, p in zip(sessions, payloads, strict=True)
            ),
            return_exceptions=True,
        )
        results = []
        for s, p, e in zip(sessions, payloads, echoes, strict=True):
            if isinstance(e, BaseException):
                results.append({"session_id": s.session_id, "error": _error_text(e)})
            else:
                results.append({"session_id": s.session_id, "equal": e == p})
        detail.update(
            sessions_opened=len(sessions),
            same_connection=same_connection,
            connection_handle=connection.handle,
            results=results,
        )
        ok = same_connection and all(r.get("equal") for r in results)
        return ok, detail
    finally:
        for s in sessions[1:]:
            await _quiet(s.close())
        await c.dispose(first)


async def scenario_close_code(c: Client) -> tuple[bool, Any]:
    detail: dict[str, Any] = {}
    # 1. The client closes with an application code and reason.
    session = await c.connect()
    try:
        closed = await _closed_waiter(session)
        await _bounded(
            session.close(error_code=c.args.client_close_code, reason=c.args.client_close_reason),
            5.0,
        )
        try:
            data = await asyncio.wait_for(asyncio.shield(closed), timeout=3.0)
        except TimeoutError:
            data = None
        detail["client_close"] = {
            "code": c.args.client_close_code,
            "reason": c.args.client_close_reason,
            "closed_locally": session.is_closed,
            "local_event": None
            if data is None
            else {"code": data.get("error_code"), "reason": data.get("reason")},
        }
        client_ok = session.is_closed
    except Exception as exc:
        detail["client_close"] = {"error": _error_text(exc)}
        client_ok = False
    finally:
        await c.dispose(session)

    # 2. The server closes, asked to by the close:<code>:<reason> trigger.
    session = await c.connect()
    want_code, want_reason = c.args.server_close_code, c.args.server_close_reason
    try:
        closed = await _closed_waiter(session)
        async with asyncio.timeout(c.args.op_timeout):
            stream = await session.create_bidirectional_stream()
            await stream.write_all(
                data=f"close:{want_code}:{want_reason}".encode(), end_stream=True
            )
            data = await asyncio.shield(closed)
        seen_code, seen_reason = data.get("error_code"), data.get("reason")
        server_ok = seen_code == want_code and seen_reason == want_reason
        detail["server_close"] = {
            "expected_code": want_code,
            "expected_reason": want_reason,
            "code": seen_code,
            "reason": seen_reason,
        }
    except Exception as exc:
        detail["server_close"] = {"error": _error_text(exc)}
        server_ok = False
    finally:
        await c.dispose(session)
    return client_ok and server_ok, detail


async def scenario_abort_stream(c: Client) -> tuple[bool, Any]:
    """Reset and stop a bidi stream with application code 7; the session must survive."""
    code = c.args.abort_code
    session = await c.connect()
    try:
        async with asyncio.timeout(c.args.op_timeout):
            stream = await session.create_bidirectional_stream()
            await stream.write_all(data=b"abort-me")
            first = await stream.read(max_size=64)
            await stream.reset(error_code=code)
            await stream.stop_receiving(error_code=code)
            await asyncio.sleep(0.05)  # let RESET_STREAM / STOP_SENDING leave first
            payload = b"still alive"
            echoed = await _bidi_roundtrip(session, payload, c.args.op_timeout)
        return echoed == payload, {
            "code": code,
            "echo_before_abort": first.decode("latin-1"),
            "after": echoed.decode("latin-1"),
            "stream_id": stream.stream_id,
        }
    finally:
        await c.dispose(session)


async def scenario_protocols(c: Client) -> tuple[bool, Any]:
    """Offer WT-Available-Protocols; the server's WT-Protocol must be one of them."""
    offered = list(c.args.protocols)
    session = await c.connect(protocols=offered)
    try:
        chosen = session.wt_protocol
        echoed = await _bidi_roundtrip(session, b"protocols", c.args.op_timeout)
        return chosen in offered and echoed == b"protocols", {
            "offered": offered,
            "protocol": chosen,
        }
    finally:
        await c.dispose(session)


SCENARIOS: dict[str, Callable[[Client], Awaitable[tuple[bool, Any]]]] = {
    "bidi_echo": scenario_bidi_echo,
    "uni_echo": scenario_uni_echo,
    "datagram_echo": scenario_datagram_echo,
    "big_transfer": scenario_big_transfer,
    "stream_credit": scenario_stream_credit,
    "multi_session": scenario_multi_session,
    "close_code": scenario_close_code,
    "abort_stream": scenario_abort_stream,
    "protocols": scenario_protocols,
}


async def run_client(args: argparse.Namespace) -> int:
    names: list[str] = []
    for item in args.scenario or ["all"]:
        for raw in item.split(","):
            name = raw.strip()
            if name == "all":
                names.extend(SCENARIOS)
            elif name:
                names.append(name)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.stderr.write(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}\n"
        )
        return 2

    client = Client(args)
    all_ok = True
    try:
        for name in names:
            started = time.monotonic()
            try:
                ok, detail = await _bounded(SCENARIOS[name](client), args.scenario_timeout)
            except TimeoutError:
                ok, detail = False, f"timed out after {args.scenario_timeout}s"
            except Exception as exc:
                ok, detail = False, _error_text(exc)
            all_ok = all_ok and ok
            record = {
                "scenario": name,
                "ok": bool(ok),
                "detail": detail,
                "seconds": round(time.monotonic() - started, 3),
                "peer": PEER_NAME,
            }
            print(json.dumps(_jsonable(record)), flush=True)
    finally:
        await client.close()
    return 0 if all_ok else 1


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("PEER_LOG_LEVEL", "WARNING"))
    parser.add_argument(
        "--trace",
        action="store_true",
        help="enable pywebtransport's Rust tracing on stderr (filter with RUST_LOG, e.g. debug)",
    )
    sub = parser.add_subparsers(dest="mode", required=True)

    srv = sub.add_parser("server", help="run the echo server")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=0, help="0 picks a free UDP port")
    srv.add_argument("--certfile", required=True)
    srv.add_argument("--keyfile", required=True)
    srv.add_argument("--path", default="/echo", help="path used in the printed url")
    srv.add_argument("--report", default=None, help="also append JSON event lines to this file")
    srv.add_argument("--lifetime", type=float, default=600.0, help="exit after this many seconds")
    srv.add_argument("--session-lifetime", type=float, default=300.0)
    srv.add_argument("--stream-timeout", type=float, default=60.0)
    srv.add_argument("--idle-timeout", type=float, default=30.0)
    srv.add_argument(
        "--initial-max-data", type=int, default=None, help="SETTINGS_WT_INITIAL_MAX_DATA"
    )
    srv.add_argument("--session-receive-window", type=int, default=None)
    srv.add_argument("--max-sessions", type=int, default=None)
    srv.add_argument("--initial-max-streams-bidi", type=int, default=None)
    srv.add_argument("--initial-max-streams-uni", type=int, default=None)
    srv.add_argument(
        "--protocols",
        nargs="*",
        default=["echo-v1", "echo-v0"],
        help="subprotocols the server speaks, in order of preference",
    )

    cli = sub.add_parser("client", help="run scenarios against an echo server")
    cli.add_argument("url")
    trust = cli.add_mutually_exclusive_group()
    trust.add_argument(
        "--insecure", action="store_true", help="do not verify the server certificate"
    )
    trust.add_argument("--ca", default=None, help="PEM file of trusted certificate(s)")
    cli.add_argument("--scenario", action="append", help=f"one of {', '.join(SCENARIOS)} or all")
    cli.add_argument("--big-bytes", type=int, default=8 * 1024 * 1024)
    cli.add_argument("--sessions", type=int, default=3, help="sessions for multi_session")
    cli.add_argument(
        "--stream-count", type=int, default=25, help="streams each way for stream_credit"
    )
    cli.add_argument("--connect-timeout", type=float, default=10.0)
    cli.add_argument("--op-timeout", type=float, default=10.0)
    cli.add_argument("--big-timeout", type=float, default=60.0)
    cli.add_argument("--scenario-timeout", type=float, default=90.0)
    cli.add_argument("--total-timeout", type=float, default=300.0)
    cli.add_argument("--idle-timeout", type=float, default=30.0)
    cli.add_argument("--datagram-attempts", type=int, default=20)
    cli.add_argument("--datagram-wait", type=float, default=0.5)
    cli.add_argument("--client-close-code", type=int, default=4242)
    cli.add_argument("--client-close-reason", default="client-bye")
    cli.add_argument("--server-close-code", type=int, default=4243)
    cli.add_argument("--server-close-reason", default="server-bye")
    cli.add_argument("--abort-code", type=int, default=7, help="code for abort_stream")
    cli.add_argument("--protocols", nargs="*", default=["echo-v1", "echo-v0"])
    cli.add_argument("--initial-max-data", type=int, default=None)
    cli.add_argument("--session-receive-window", type=int, default=None)
    cli.add_argument("--initial-max-streams-bidi", type=int, default=None)
    cli.add_argument("--initial-max-streams-uni", type=int, default=None)
    cli.add_argument(
        "--require-flow-control",
        action="store_true",
        help="big_transfer fails unless session flow control was negotiated",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        stream=sys.stderr,
        format="pywebtransport-peer %(levelname)s %(name)s: %(message)s",
    )
    if args.trace:
        from pywebtransport.utils import init_tracing

        os.environ.setdefault("RUST_LOG", "debug")
        init_tracing()
    if args.mode == "server":
        _start_watchdog(args.lifetime + 30.0, "server")
        code = asyncio.run(run_server(args))
    else:
        _start_watchdog(args.total_timeout, "client")
        code = asyncio.run(run_client(args))
    sys.stdout.flush()
    sys.stderr.flush()
    # The native reactor thread may linger; the work is done and reported.
    os._exit(code)


if __name__ == "__main__":
    main()
