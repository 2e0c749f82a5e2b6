"""anywt's side of the interop tests: a recording echo server and the client scenarios.

The server (:func:`recording_server`) is ``anywt.Server`` running in a
background thread (an anyio blocking portal), with a handler that serves the
project's echo contract (``anywt/echo.py``, ``tests/peers/README.md``) *and*
records what anywt saw: each stream's end (FIN, ``StreamReset.code``,
``StreamStopped.code``), the subprotocol offered and chosen, the draft, the
close code and reason, and the peaks of the flow-control credit from
``Session.diagnostics()``.  A test then asserts on that record, not only on
what the peer reports.

The client scenarios (:class:`AnywtClient`) are ``anywt.connect`` against any
server that speaks the echo contract: the aioquic and pywebtransport peer
programs, or an anywt server on the other backend.  Each returns a detail
dict and raises ``AssertionError`` with the evidence when anywt's view is
wrong.

Everything is bounded: every wait has a timeout, the server thread is
stopped when its block ends.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal, start_blocking_portal

import anywt
from anywt.echo import SERVER_BIDI_GREETING, select_first_protocol

__all__ = [
    "CLOSE_FROM_ANYWT",
    "CLOSE_FROM_PEER",
    "ABORT_CODE",
    "PROTOCOLS",
    "SMALL_FLOW",
    "AnywtClient",
    "RecordingServer",
    "SessionRecord",
    "StreamRecord",
    "recording_server",
    "WT_INITIAL_MAX_DATA",
    "WT_INITIAL_MAX_STREAMS_BIDI",
    "WT_INITIAL_MAX_STREAMS_UNI",
]

#: The application error code every "abort" scenario uses (page, peers, anywt).
ABORT_CODE = 7
#: (code, reason) a peer closes with, and anywt closes with.
CLOSE_FROM_PEER = (4242, "bye from the peer")
CLOSE_FROM_ANYWT = (4343, "bye from anywt")
#: Subprotocols offered, in the client's order of preference.
PROTOCOLS = ("echo-v1", "echo-v0")

#: Small initial session credit, so that modest transfers and stream counts
#: must be topped up by WT_MAX_DATA / WT_MAX_STREAMS capsules.
SMALL_FLOW = anywt.FlowControl(
    initial_max_data=256 * 1024, initial_max_streams_bidi=4, initial_max_streams_uni=4
)

# SETTINGS codepoints (draft-13+) to read the peer's initial credit from
# ConnectionDiagnostics.peer_settings.
WT_INITIAL_MAX_DATA = 0x2B61
WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65

_CLOSE_PREFIX = b"close:"
_OPEN_BIDI = b"open-bidi"
_COMMANDS = (_CLOSE_PREFIX, _OPEN_BIDI)
_STREAM_ENDS = (
    anywt.SessionClosed,
    anywt.StreamError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)
#: How long a recorded stream waits for the second half of an abort
#: (RESET_STREAM and STOP_SENDING travel separately).
_SETTLE = 3.0


# --------------------------------------------------------------------------
# What the server records
# --------------------------------------------------------------------------


@dataclass
class StreamRecord:
    """One stream as anywt's server saw it."""

    stream_id: int
    #: "bidi" (peer-opened), "uni" (peer-opened), "server-bidi" (opened by anywt).
    kind: str
    received: int = 0
    sent: int = 0
    #: The echo (or the reply read) completed with FIN.
    finished: bool = False
    reset: bool = False
    #: ``StreamReset.code``: the peer's application code, None if it gave none.
    reset_code: int | None = None
    stopped: bool = False
    #: ``StreamStopped.code``.
    stop_code: int | None = None
    error: str | None = None
    #: For "server-bidi": what the peer wrote back.
    reply: bytes | None = None


@dataclass
class SessionRecord:
    """One session as anywt's server saw it."""

    session_id: int
    #: Same value for sessions on the same QUIC connection.
    connection: int
    path: str
    origin: str | None
    draft: str | None
    offered_protocols: tuple[str, ...]
    protocol: str | None
    streams: list[StreamRecord] = field(default_factory=list)
    datagrams_echoed: int = 0
    #: (code, reason) a ``close:`` command asked for (the server then closed).
    close_command: tuple[int, str] | None = None
    close: anywt.CloseInfo | None = None
    flow_control: bool | None = None
    #: Credit values of the first snapshot and their peaks over the session.
    initial: dict[str, int | None] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    #: The connection's peer SETTINGS (from ConnectionDiagnostics).
    peer_settings: dict[int, int] | None = None
    handler_error: str | None = None

    def streams_of(self, kind: str) -> list[StreamRecord]:
        return [s for s in self.streams if s.kind == kind]

    def summary(self) -> dict[str, Any]:
        """A compact view for assertion messages."""
        return {
            "session_id": self.session_id,
            "connection": self.connection,
            "path": self.path,
            "draft": self.draft,
            "protocol": self.protocol,
            "offered": list(self.offered_protocols),
            "streams": [
                {
                    k: v
                    for k, v in vars(s).items()
                    if v not in (None, False, 0) or k in ("stream_id", "kind")
                }
                for s in self.streams
            ],
            "datagrams_echoed": self.datagrams_echoed,
            "close_command": self.close_command,
            "close": None if self.close is None else vars_of(self.close),
            "flow_control": self.flow_control,
            "initial": self.initial,
            "peak": self.peak,
            "handler_error": self.handler_error,
        }


def vars_of(info: anywt.CloseInfo) -> dict[str, Any]:
    return {
        "code": info.code,
        "reason": info.reason,
        "by_peer": info.by_peer,
        "error_code": info.error_code,
    }


_CREDIT_FIELDS = (
    "local_max_data",
    "peer_max_data",
    "local_max_streams_bidi",
    "local_max_streams_uni",
    "peer_max_streams_bidi",
    "peer_max_streams_uni",
    "local_data_sent",
    "peer_data_sent",
)


def _snapshot(session: anywt.Session, record: SessionRecord) -> None:
    """Fold the session's current diagnostics into the record (never raises)."""
    try:
        diag = session.diagnostics_nowait()
    except Exception:  # the session is gone: keep what we have
        return
    record.flow_control = diag.flow_control_negotiated
    if record.draft is None:
        record.draft = diag.draft
    for name in _CREDIT_FIELDS:
        value = getattr(diag, name)
        if name not in record.initial:
            record.initial[name] = value
        if value is not None:
            record.peak[name] = max(record.peak.get(name, value), value)
    if record.peer_settings is None:
        with contextlib.suppress(Exception):
            record.peer_settings = dict(session.connection.diagnostics().peer_settings or {})


class _Recorder:
    """The echo contract, recording as it goes (runs in the server's event loop)."""

    def __init__(self) -> None:
        self.sessions: list[SessionRecord] = []

    async def handle(self, session: anywt.Session) -> None:
        record = SessionRecord(
            session_id=session.session_id,
            connection=id(session.connection),
            path=session.path,
            origin=session.origin,
            draft=session.connection.draft,
            offered_protocols=tuple(session.protocols),
            protocol=session.protocol,
        )
        self.sessions.append(record)
        _snapshot(session, record)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._datagrams, session, record)
                async for stream in session.incoming_streams():
                    if isinstance(stream, anywt.BidirectionalStream):
                        tasks.start_soon(self._bidi, session, stream, record, tasks)
                    elif isinstance(stream, anywt.ReceiveStream):
                        tasks.start_soon(self._uni, session, stream, record)
                # The session is closed: stream tasks see it and end; bound the wait.
                tasks.cancel_scope.deadline = anyio.current_time() + 1.0
        except Exception as exc:
            record.handler_error = repr(exc)
        with anyio.move_on_after(5.0):
            record.close = await session.wait_closed()

    async def _datagrams(self, session: anywt.Session, record: SessionRecord) -> None:
        try:
            async for datagram in session.datagrams:
                with contextlib.suppress(anywt.DatagramError, anywt.SessionClosed):
                    session.send_datagram_nowait(datagram)
                    record.datagrams_echoed += 1
        except anywt.SessionClosed:
            return

    async def _bidi(
        self,
        session: anywt.Session,
        stream: anywt.BidirectionalStream,
        record: SessionRecord,
        tasks: TaskGroup,
    ) -> None:
        rec = StreamRecord(stream.stream_id, "bidi")
        record.streams.append(rec)
        try:
            head = b""
            ended = False
            while any(len(head) < len(c) and c.startswith(head) for c in _COMMANDS):
                try:
                    head += await stream.receive(max(len(c) for c in _COMMANDS) - len(head))
                except anyio.EndOfStream:
                    ended = True
                    break
            rec.received += len(head)
            if head.startswith(_CLOSE_PREFIX):
                rest = b"" if ended else await stream.read_all(max_size=4096)
                rec.received += len(rest)
                _, _, text = (head + rest).decode("utf-8", "replace").partition(":")
                code_text, _, reason = text.partition(":")
                code = int(code_text)
                record.close_command = (code, reason)
                rec.finished = True
                await session.close(code, reason, close_connection=False)
                return
            if head.startswith(_OPEN_BIDI):
                mine = await session.create_bidirectional_stream()
                await mine.write(SERVER_BIDI_GREETING, end_stream=True)
                tasks.start_soon(self._server_bidi_reply, mine, record)
            if head:
                await stream.write(head)
                rec.sent += len(head)
            if not ended:
                async for chunk in stream:
                    rec.received += len(chunk)
                    await stream.write(chunk)
                    rec.sent += len(chunk)
            await stream.send_eof()
            rec.finished = True
        except anywt.StreamReset as exc:
            rec.reset, rec.reset_code = True, exc.code
            await self._settle(stream, rec)
        except anywt.StreamStopped as exc:
            rec.stopped, rec.stop_code = True, exc.code
            await self._settle(stream, rec)
        except _STREAM_ENDS as exc:
            rec.error = repr(exc)
        except Exception as exc:  # a bug in the test's own handler must show up
            rec.error = f"handler bug: {exc!r}"
        finally:
            _snapshot(session, record)

    async def _settle(self, stream: anywt.BidirectionalStream, rec: StreamRecord) -> None:
        """After one half of an abort, wait (bounded) for the other half to arrive."""
        with anyio.move_on_after(_SETTLE):
            while not (rec.reset and rec.stopped):
                if not rec.stopped:
                    try:
                        await stream.write(b"")  # sends nothing; raises once STOP_SENDING came
                    except anywt.StreamStopped as exc:
                        rec.stopped, rec.stop_code = True, exc.code
                    except _STREAM_ENDS:
                        return
                if not rec.reset:
                    with anyio.move_on_after(0.02):
                        try:
                            await stream.receive()
                        except anywt.StreamReset as exc:
                            rec.reset, rec.reset_code = True, exc.code
                        except anyio.EndOfStream:
                            return  # a FIN, not a reset: nothing more will come
                        except _STREAM_ENDS:
                            return
                await anyio.sleep(0.02)

    async def _server_bidi_reply(
        self, stream: anywt.BidirectionalStream, record: SessionRecord
    ) -> None:
        rec = StreamRecord(stream.stream_id, "server-bidi", sent=len(SERVER_BIDI_GREETING))
        record.streams.append(rec)
        try:
            rec.reply = await stream.read_all(max_size=1 << 20)
            rec.received = len(rec.reply)
            rec.finished = True
        except anywt.StreamReset as exc:
            rec.reset, rec.reset_code = True, exc.code
        except _STREAM_ENDS as exc:
            rec.error = repr(exc)

    async def _uni(
        self, session: anywt.Session, stream: anywt.ReceiveStream, record: SessionRecord
    ) -> None:
        rec = StreamRecord(stream.stream_id, "uni")
        record.streams.append(rec)
        try:
            data = await stream.read_all(max_size=64 * 1024 * 1024)
            rec.received = len(data)
            reply = await session.create_unidirectional_stream()
            await reply.write(data, end_stream=True)
            rec.sent = len(data)
            rec.finished = True
        except anywt.StreamReset as exc:
            rec.reset, rec.reset_code = True, exc.code
        except _STREAM_ENDS as exc:
            rec.error = repr(exc)
        finally:
            _snapshot(session, record)


# --------------------------------------------------------------------------
# The server in a background thread
# --------------------------------------------------------------------------


@dataclass
class RecordingServer:
    """A running anywt echo server: where it is, and what it saw."""

    portal: BlockingPortal
    server: anywt.Server
    recorder: _Recorder
    backend: str
    url: str
    cert_sha256: bytes
    flow_control: anywt.FlowControl

    def sessions_rejected(self) -> int:
        """How many requests the server refused (counted by ``anywt.Server``)."""
        return int(self.portal.call(lambda: self.server.sessions_rejected))

    def sessions(self) -> list[SessionRecord]:
        """A consistent copy of the records (taken in the server's thread)."""
        return self.portal.call(lambda: copy.deepcopy(self.recorder.sessions))

    def wait_for(
        self, predicate: Callable[[list[SessionRecord]], bool], timeout: float = 5.0
    ) -> list[SessionRecord]:
        """Poll the records until ``predicate`` holds (or the time is up); return them."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.sessions()
            if predicate(records) or time.monotonic() >= deadline:
                return records
            time.sleep(0.05)

    def describe(self, records: list[SessionRecord] | None = None) -> str:
        """Every session record as JSON lines, for assertion messages."""
        records = self.sessions() if records is None else records
        return "\n".join(json.dumps(r.summary(), default=repr) for r in records)


def _make_server(recorder: _Recorder, path: str, **options: Any) -> anywt.Server:
    return anywt.Server({path: recorder.handle}, select_protocol=select_first_protocol, **options)


@contextlib.contextmanager
def recording_server(
    *,
    backend: str = "aioquic",
    path: str = "/echo",
    flow_control: anywt.FlowControl = SMALL_FLOW,
    **options: Any,
) -> Iterator[RecordingServer]:
    """Run an anywt echo server on 127.0.0.1 in a thread; stop it when the block ends.

    Only ``path`` is served (others get 404); ``options`` are ``ServerConfig``
    fields.
    """
    options.setdefault("close_timeout", 2.0)
    with start_blocking_portal("asyncio") as portal:
        recorder = _Recorder()
        server = portal.call(
            functools.partial(
                _make_server,
                recorder,
                path,
                host="127.0.0.1",
                port=0,
                backend=backend,
                flow_control=flow_control,
                **options,
            )
        )
        with portal.wrap_async_context_manager(server):
            yield RecordingServer(
                portal=portal,
                server=server,
                recorder=recorder,
                backend=backend,
                url=server.url(path),
                cert_sha256=server.certificate_sha256,
                flow_control=flow_control,
            )


# --------------------------------------------------------------------------
# anywt as the client
# --------------------------------------------------------------------------


class ScenarioFailed(AssertionError):
    """anywt's client saw something other than the echo contract promises."""


def _expect(condition: bool, message: str, **evidence: Any) -> None:
    if not condition:
        raise ScenarioFailed(f"{message}: {json.dumps(evidence, default=repr)}")


def payload(size: int, tag: bytes) -> bytes:
    """Deterministic test bytes that do not repeat within a stream."""
    out = bytearray(tag)
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class AnywtClient:
    """``anywt.connect`` to an echo-contract server, one session per scenario.

    Call :meth:`run` with a scenario coroutine function; it runs under
    ``anyio.run`` and is bounded by ``timeout``.
    """

    url: str
    backend: str
    cert_sha256: bytes
    flow_control: anywt.FlowControl = SMALL_FLOW
    timeout: float = 15.0

    def options(self, **extra: Any) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "backend": self.backend,
            "server_certificate_hashes": (self.cert_sha256,),
            "connect_timeout": 10.0,
            "close_timeout": 2.0,
            "flow_control": self.flow_control,
        }
        opts.update(extra)
        return opts

    def with_url(self, url: str) -> AnywtClient:
        return replace(self, url=url)

    def run(self, scenario: Callable[..., Any], *args: Any) -> Any:
        async def bounded() -> Any:
            with anyio.fail_after(self.timeout):
                return await scenario(self, *args)

        return anyio.run(bounded, backend="asyncio")

    # Scenarios ---------------------------------------------------------------

    async def bidi_echo(self, size: int = 100_000) -> dict[str, Any]:
        data = payload(size, b"bidi-echo:")
        async with anywt.connect(self.url, **self.options()) as session:
            stream = await session.create_bidirectional_stream()
            got = await _echo(stream, data)
            _expect(got == data, "bidi echo differs", sent=len(data), got=len(got))
            return {"bytes": len(got), "draft": session.connection.draft}

    async def uni_echo(self, size: int = 20_000) -> dict[str, Any]:
        data = payload(size, b"uni-echo:")
        async with anywt.connect(self.url, **self.options()) as session:
            out = await session.create_unidirectional_stream()
            await out.write(data, end_stream=True)
            incoming = await session.accept_stream()
            _expect(
                isinstance(incoming, anywt.ReceiveStream),
                "expected a server uni stream",
                got=repr(incoming),
            )
            assert isinstance(incoming, anywt.ReceiveStream)
            got = await incoming.read_all()
            _expect(got == data, "uni echo differs", sent=len(data), got=len(got))
            return {"bytes": len(got), "stream_id": incoming.stream_id}

    async def datagram_echo(self, attempts: int = 20) -> dict[str, Any]:
        async with anywt.connect(self.url, **self.options()) as session:
            for attempt in range(1, attempts + 1):
                sent = b"dgram-%d" % attempt
                await session.send_datagram(sent)
                with anyio.move_on_after(0.25):
                    while True:
                        got = await session.receive_datagram()
                        if got.startswith(b"dgram-"):
                            return {"attempts": attempt, "echo": got.decode()}
            raise ScenarioFailed(f"no datagram echoed after {attempts} attempts")

    async def server_bidi(self) -> dict[str, Any]:
        async with anywt.connect(self.url, **self.options()) as session:
            trigger = await session.create_bidirectional_stream()
            echo = await _echo(trigger, _OPEN_BIDI)
            incoming = await session.accept_stream()
            _expect(
                isinstance(incoming, anywt.BidirectionalStream),
                "expected a server-opened bidi stream",
                got=repr(incoming),
            )
            assert isinstance(incoming, anywt.BidirectionalStream)
            got = await incoming.read_all()
            _expect(got == SERVER_BIDI_GREETING, "unexpected server payload", got=got)
            await incoming.write(got, end_stream=True)
            await anyio.sleep(0.05)  # let the reply leave before the session closes
            return {"server_stream_id": incoming.stream_id, "trigger_echo": echo.decode()}

    async def abort_stream(self, code: int = ABORT_CODE) -> dict[str, Any]:
        async with anywt.connect(self.url, **self.options()) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"abort-me")
            first = await stream.receive()
            await stream.reset(code)
            await stream.stop_receiving(code)
            await anyio.sleep(0.05)  # RESET_STREAM / STOP_SENDING leave first
            check = await session.create_bidirectional_stream()
            after = await _echo(check, b"still alive")
            _expect(after == b"still alive", "session unusable after the abort", got=after)
            return {
                "code": code,
                "echo_before_abort": first.decode(),
                "stream_id": stream.stream_id,
            }

    async def close_by_anywt(self, code: int, reason: str) -> dict[str, Any]:
        async with anywt.connect(self.url, **self.options()) as session:
            await session.close(code, reason)
            info = session.close_info
            _expect(info is not None, "no close info after close()")
            assert info is not None
            return {"close": vars_of(info)}

    async def close_by_peer(self, code: int, reason: str) -> dict[str, Any]:
        async with anywt.connect(self.url, **self.options()) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(f"close:{code}:{reason}".encode(), end_stream=True)
            with anyio.fail_after(5.0):
                info = await session.wait_closed()
            _expect(
                (info.code, info.reason, info.by_peer) == (code, reason, True),
                "the peer's close did not arrive as sent",
                want=[code, reason],
                got=vars_of(info),
            )
            return {"close": vars_of(info)}

    async def protocols(self, offered: tuple[str, ...] = PROTOCOLS) -> dict[str, Any]:
        async with anywt.connect(self.url, **self.options(protocols=offered)) as session:
            _expect(
                session.protocol in offered,
                "WT-Protocol not one of those offered",
                offered=offered,
                protocol=session.protocol,
            )
            return {"protocol": session.protocol, "offered": list(offered)}

    async def rejected(self, path: str = "/no-such-path") -> dict[str, Any]:
        base = self.url.split("/", 3)
        url = "/".join(base[:3]) + path
        try:
            async with anywt.connect(url, **self.options()):
                pass
        except anywt.SessionRejected as exc:
            return {"status": exc.status}
        except BaseExceptionGroup as group:
            raise ScenarioFailed(
                f"`async with anywt.connect({path!r})` raised {group!r} instead of "
                "SessionRejected itself (the await form and the docstring promise the "
                "exception, not a group)"
            ) from group
        raise ScenarioFailed(f"a session to {path} was not rejected")

    async def big_transfer(self, size: int) -> dict[str, Any]:
        """Echo ``size`` bytes on one bidi stream, writing and reading at once."""
        data = payload(size, b"big:")
        async with anywt.connect(self.url, **self.options()) as session:
            stream = await session.create_bidirectional_stream()
            started = time.monotonic()
            got = await _echo(stream, data)
            elapsed = time.monotonic() - started
            _expect(
                hashlib.sha256(got).digest() == hashlib.sha256(data).digest(),
                "big transfer differs",
                sent=len(data),
                got=len(got),
            )
            diag = await session.diagnostics()
            peer = session.connection.diagnostics().peer_settings or {}
            return {
                "bytes": size,
                "seconds": round(elapsed, 3),
                "draft": diag.draft,
                "flow_control": diag.flow_control_negotiated,
                "local_initial_max_data": self.flow_control.initial_max_data,
                "local_max_data": diag.local_max_data,
                "peer_initial_max_data": peer.get(WT_INITIAL_MAX_DATA),
                "peer_max_data": diag.peer_max_data,
                "data_sent": diag.local_data_sent,
                "data_received": diag.peer_data_sent,
            }

    async def stream_credit(self, count: int) -> dict[str, Any]:
        """``count`` bidi echoes then ``count`` uni echoes on one session."""
        async with anywt.connect(self.url, **self.options()) as session:
            for i in range(count):
                stream = await session.create_bidirectional_stream()
                got = await _echo(stream, b"bidi %d" % i)
                _expect(got == b"bidi %d" % i, "bidi echo differs", index=i, got=got)
            for i in range(count):
                out = await session.create_unidirectional_stream()
                await out.write(b"uni %d" % i, end_stream=True)
                incoming = await session.accept_stream()
                assert isinstance(incoming, anywt.ReceiveStream)
                got = await incoming.read_all()
                _expect(got == b"uni %d" % i, "uni echo differs", index=i, got=got)
            diag = await session.diagnostics()
            peer = session.connection.diagnostics().peer_settings or {}
            return {
                "streams_each_way": count,
                "flow_control": diag.flow_control_negotiated,
                "local_initial_max_streams_uni": self.flow_control.initial_max_streams_uni,
                "local_max_streams_uni": diag.local_max_streams_uni,
                "peer_initial_max_streams_bidi": peer.get(WT_INITIAL_MAX_STREAMS_BIDI),
                "peer_max_streams_bidi": diag.peer_max_streams_bidi,
                "peer_initial_max_streams_uni": peer.get(WT_INITIAL_MAX_STREAMS_UNI),
                "peer_max_streams_uni": diag.peer_max_streams_uni,
            }

    async def peer_diagnostics(self) -> dict[str, Any]:
        """The pywebtransport peer server's ``diag:`` extension: its view as JSON."""
        async with anywt.connect(self.url, **self.options()) as session:
            stream = await session.create_bidirectional_stream()
            body = await _echo(stream, b"diag:")
            result: dict[str, Any] = json.loads(body)
            return result

    async def draft(self) -> str | None:
        async with anywt.connect(self.url, **self.options()) as session:
            return session.connection.draft


async def _echo(stream: anywt.BidirectionalStream, data: bytes) -> bytes:
    """Write ``data`` + FIN while reading the echo to its FIN."""
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await stream.read_all())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        await stream.write(data, end_stream=True)
    return received[0]
