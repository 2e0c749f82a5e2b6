"""``Session``: one WebTransport session, and its datagram channel."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import UnreliableObjectStream

from ._util import Latch, Signal
from .attributes import WebTransportAttribute
from .core import errors as core_errors
from .core.session_state import SessionStateError
from .diagnostics import SessionDiagnostics, SessionStats, snapshot_to_diagnostics
from .events import EventEmitter, SessionEventType
from .exceptions import (
    DatagramsUnavailable,
    DatagramTooLarge,
    SessionClosed,
    SessionClosedError,
    SessionClosedOK,
    SessionRejected,
)
from .streams import BidirectionalStream, ReceiveStream, SendStream, Stream, UnreadBytes

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Session", "SessionState", "CloseInfo", "DatagramChannel"]

logger = logging.getLogger("anywt.session")


class SessionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a session ended (what W3C's ``closed`` promise resolves to)."""

    code: int
    reason: str
    #: True when the peer ended it.
    by_peer: bool
    #: The wire code when it ended abruptly (reset CONNECT stream, protocol error, lost connection).
    error_code: int | None = None

    @property
    def clean(self) -> bool:
        return self.error_code is None and self.code == 0


class DatagramChannel(UnreliableObjectStream[bytes]):
    """A session's datagrams as an anyio ``UnreliableObjectStream[bytes]``.

    Sends raise ``DatagramTooLarge`` past ``max_datagram_size`` (never a silent
    drop); the receive queue is bounded: when the application falls behind the
    oldest datagrams are dropped and counted in ``dropped``.
    """

    def __init__(self, session: Session, limit: int, limit_bytes: int) -> None:
        self._session = session
        self._queue: deque[bytes] = deque()
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._bytes = 0
        self._signal = Signal()
        #: Received datagrams dropped because the queue was full.
        self.dropped = 0
        #: Sends that failed (too large, or the session not open).
        self.send_errors = 0

    @property
    def max_datagram_size(self) -> int:
        """The largest payload a datagram may carry right now."""
        return self._session._max_datagram_size()

    @property
    def queued(self) -> int:
        """Received datagrams waiting to be read."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Their payload bytes."""
        return self._bytes

    async def send(self, item: bytes) -> None:
        """Send one datagram (unreliable: it may be lost)."""
        await anyio.lowlevel.checkpoint()
        self.send_nowait(item)

    def send_nowait(self, item: bytes) -> None:
        """Send one datagram without yielding to other tasks."""
        try:
            self._session._send_datagram(bytes(item))
        except Exception:
            self.send_errors += 1
            raise

    async def receive(self) -> bytes:
        """The next datagram; waits for one."""
        while True:
            if self._queue:
                return self._pop()
            self._session._check_receive_possible()
            await self._signal.wait()

    def receive_nowait(self) -> bytes:
        """The next datagram, or ``anyio.WouldBlock``."""
        if self._queue:
            return self._pop()
        self._session._check_receive_possible()
        raise anyio.WouldBlock

    async def aclose(self) -> None:
        self._queue.clear()
        self._bytes = 0

    def _feed(self, data: bytes) -> None:
        queue = self._queue
        if len(queue) >= self._limit:
            self._bytes -= len(queue.popleft())
            self.dropped += 1
        queue.append(data)
        self._bytes += len(data)
        while self._bytes > self._limit_bytes:
            # Also bounded in bytes: DATAGRAM capsules may be far larger than QUIC datagrams.
            self._bytes -= len(queue.popleft())
            self.dropped += 1
        self._signal.fire()

    def _pop(self) -> bytes:
        data = self._queue.popleft()
        self._bytes -= len(data)
        return data

    def _wake(self) -> None:
        self._signal.fire()

    def __aiter__(self) -> DatagramChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except SessionClosed:
            raise StopAsyncIteration from None


class Session:
    """One WebTransport session: streams and datagrams between two endpoints.

    Use it as an async context manager (it closes on exit), or call
    ``close()``.  Incoming streams come from ``incoming_streams()`` (or the
    per-direction iterators); datagrams from ``datagrams``.
    """

    def __init__(
        self,
        connection: Connection,
        session_id: int,
        *,
        is_client: bool,
        path: str,
        authority: str,
        origin: str | None,
        headers: tuple[tuple[bytes, bytes], ...],
        protocols: tuple[str, ...],
    ) -> None:
        self._connection = connection
        self._session_id = session_id
        self._is_client = is_client
        self._path = path
        self._authority = authority
        self._origin = origin
        self._headers = headers
        self._protocols = protocols
        self._protocol: str | None = None
        self._state = SessionState.CONNECTING
        self._ready = Latch()
        self._closed = Latch()
        self._close_info: CloseInfo | None = None
        self._rejected: SessionRejected | None = None
        self._streams: dict[int, Stream] = {}
        self._incoming: deque[Stream] = deque()
        self._incoming_signal = Signal()
        self._credit = Signal()
        limits = connection.limits
        self._incoming_limit = limits.incoming_streams
        # A stream may legitimately hold as much as the credit we grant.
        flow = connection.engine.config
        self._receive_limit = max(
            limits.stream_receive_buffer,
            flow.initial_max_data if flow.flow_control else 0,
        )
        # ... and all its streams together as much as one of them may.
        self._unread = UnreadBytes()
        # Ended streams the application dropped with bytes unread: (stream id, its
        # receive side), released on the next event (``_release_abandoned``).
        self._abandoned: list[tuple[int, Any]] = []
        self._unread_limit = max(limits.session_receive_buffer, self._receive_limit)
        self._send_buffer = limits.stream_send_buffer
        self.datagrams = DatagramChannel(self, limits.datagram_queue, limits.datagram_queue_bytes)
        self.events = EventEmitter(session_id)
        # Statistics the engine does not keep.
        self._created_wall = time.time()
        self._ready_wall: float | None = None
        self._closed_wall: float | None = None
        self._last_active = self._created_wall
        self._streams_created = 0
        self._streams_closed = 0
        self._stream_errors = 0
        self._bidi_created = 0
        self._uni_created = 0
        self._send_errors = 0
        self._receive_errors = 0
        self._blocked: set[int] = set()

    # ------------------------------------------------------------------
    # What a session is

    @property
    def session_id(self) -> int:
        return self._session_id

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def path(self) -> str:
        return self._path

    @property
    def authority(self) -> str:
        return self._authority

    @property
    def origin(self) -> str | None:
        return self._origin

    @property
    def headers(self) -> dict[str, str]:
        """The request headers (a copy, as text)."""
        out: dict[str, str] = {}
        for name, value in self._headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            out[key] = f"{out[key]}, {text}" if key in out else text
        return out

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return self._headers

    @property
    def protocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered."""
        return self._protocols

    @property
    def protocol(self) -> str | None:
        """The negotiated subprotocol (WT-Protocol), if any."""
        return self._protocol

    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def is_ready(self) -> bool:
        return self._state in (SessionState.CONNECTED, SessionState.DRAINING)

    @property
    def is_closed(self) -> bool:
        return self._state == SessionState.CLOSED

    @property
    def last_active(self) -> float:
        """Wall-clock time of the last stream data or datagram, either way."""
        return self._last_active

    @property
    def close_info(self) -> CloseInfo | None:
        return self._close_info

    @property
    def close_code(self) -> int | None:
        return None if self._close_info is None else self._close_info.code

    @property
    def close_reason(self) -> str | None:
        return None if self._close_info is None else self._close_info.reason

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        return {
            WebTransportAttribute.session_id: lambda: self._session_id,
            WebTransportAttribute.path: lambda: self._path,
            **self._connection.extra_attributes,
        }

    def extra(self, attribute: Any, default: Any = ...) -> Any:
        """anyio-style typed attribute lookup."""
        getter = self.extra_attributes.get(attribute)
        if getter is None:
            if default is ...:
                raise anyio.TypedAttributeLookupError("attribute not found")
            return default
        return getter()

    def __repr__(self) -> str:
        return f"<Session {self._session_id} {self._path} {self._state.value}>"

    # ------------------------------------------------------------------
    # Life

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until the session is established (raises if it fails or ``timeout`` passes)."""
        with anyio.fail_after(timeout):
            await self._ready.wait()
        if self._rejected is not None:
            raise self._rejected
        if self._close_info is not None and self._ready_wall is None:
            raise self._closed_error()

    async def wait_closed(self) -> CloseInfo:
        """Wait until the session ends; return how it ended."""
        await self._closed.wait()
        assert self._close_info is not None
        return self._close_info

    async def wait_draining(self) -> None:
        """Wait until the peer asks to wrap up (or the session closes)."""
        while self._state not in (SessionState.DRAINING, SessionState.CLOSED):
            await self.events.wait_for(
                [SessionEventType.DRAINING, SessionEventType.CLOSED, SessionEventType.READY]
            )

    async def close(
        self,
        code: int = 0,
        reason: str = "",
        *,
        close_connection: bool | None = None,
        error_code: int | None = None,
    ) -> None:
        """Close the session: WT_CLOSE_SESSION(code, reason), then FIN.

        ``error_code`` is the newer name of ``code``.  ``close_connection``
        also closes the QUIC connection (default: a client does when no other
        session uses it).  Closing twice does nothing.
        """
        if error_code is not None:
            code = error_code
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError(f"close code {code} is outside 0..0xffffffff")
        connection = self._connection
        if self._state != SessionState.CLOSED:
            self._state = SessionState.CLOSING
            connection._engine_call(connection.engine.close_session, self._session_id, code, reason)
        if close_connection is None:
            close_connection = (
                self._is_client
                and connection.close_when_unused
                and not connection.has_live_sessions()
            )
        if close_connection:
            await connection.close(wait_for=self._session_id)

    async def drain(self) -> None:
        """Ask the peer to wrap the session up (WT_DRAIN_SESSION)."""
        self._check_open()
        connection = self._connection
        try:
            connection._engine_call(connection.engine.drain_session, self._session_id)
        except SessionStateError as exc:
            raise SessionClosed(0, str(exc)) from None
        self._state = SessionState.DRAINING

    async def __aenter__(self) -> Session:
        await self.ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    # ------------------------------------------------------------------
    # Streams

    async def create_bidirectional_stream(
        self, *, timeout: float | None = None
    ) -> BidirectionalStream:
        """Open a bidirectional stream (waits for stream credit, up to ``timeout``)."""
        stream = await self._open_stream(False, timeout)
        assert isinstance(stream, BidirectionalStream)
        return stream

    async def create_unidirectional_stream(self, *, timeout: float | None = None) -> SendStream:
        """Open a unidirectional stream (waits for stream credit, up to ``timeout``)."""
        stream = await self._open_stream(True, timeout)
        assert isinstance(stream, SendStream)
        return stream

    async def _open_stream(self, unidirectional: bool, timeout: float | None) -> Stream:
        connection = self._connection
        with anyio.fail_after(timeout):
            if self._state == SessionState.CONNECTING and not self._is_client:
                await self.ready()
            while True:
                self._check_open()
                try:
                    stream_id = connection._engine_call(
                        connection.engine.open_stream,
                        self._session_id,
                        is_unidirectional=unidirectional,
                    )
                except SessionStateError:
                    raise self._closed_error() from None
                if stream_id is not None:
                    break
                await self._credit.wait()
        stream: Stream = (
            SendStream(self, stream_id) if unidirectional else BidirectionalStream(self, stream_id)
        )
        self._streams[stream_id] = stream
        self._streams_created += 1
        if unidirectional:
            self._uni_created += 1
        else:
            self._bidi_created += 1
        self._touch()
        return stream

    async def accept_stream(self) -> Stream:
        """The next stream the peer opened (either kind)."""
        while True:
            if self._abandoned:
                self._release_abandoned()
            if self._incoming:
                return self._incoming.popleft()
            self._check_receive_possible()
            await self._incoming_signal.wait()

    async def incoming_streams(self) -> AsyncIterator[Stream]:
        """Every stream the peer opens, until the session closes."""
        while True:
            try:
                yield await self.accept_stream()
            except SessionClosed:
                return

    async def incoming_bidirectional_streams(self) -> AsyncIterator[BidirectionalStream]:
        """The bidirectional streams the peer opens (uni ones wait for their own iterator)."""
        async for stream in self._incoming_of(BidirectionalStream):
            yield stream
            del stream  # the application decides how long a stream lives

    async def incoming_unidirectional_streams(self) -> AsyncIterator[ReceiveStream]:
        """The unidirectional streams the peer opens."""
        async for stream in self._incoming_of(ReceiveStream):
            yield stream
            del stream

    async def _incoming_of(self, kind: type[Any]) -> AsyncIterator[Any]:
        while True:
            if self._abandoned:
                self._release_abandoned()
            for index, stream in enumerate(self._incoming):
                if isinstance(stream, kind):
                    del self._incoming[index]
                    yield stream
                    del stream
                    break
            else:
                try:
                    self._check_receive_possible()
                except SessionClosed:
                    return
                await self._incoming_signal.wait()

    # ------------------------------------------------------------------
    # Datagrams

    async def send_datagram(self, data: bytes) -> None:
        """Send one datagram (``DatagramTooLarge`` past ``datagrams.max_datagram_size``)."""
        await self.datagrams.send(data)

    def send_datagram_nowait(self, data: bytes) -> None:
        self.datagrams.send_nowait(data)

    async def receive_datagram(self) -> bytes:
        """The next datagram."""
        return await self.datagrams.receive()

    async def read_datagram(self) -> bytes:
        return await self.datagrams.receive()

    # ------------------------------------------------------------------
    # Flow control

    async def grant_data_credit(self, max_data: int) -> bool:
        """Raise the peer's WT_MAX_DATA to ``max_data`` (absolute); False if not higher."""
        connection = self._connection
        return bool(
            connection._engine_call(connection.engine.grant_data_credit, self._session_id, max_data)
        )

    async def grant_streams_credit(self, max_streams: int, is_unidirectional: bool) -> bool:
        """Raise the peer's WT_MAX_STREAMS (absolute, cumulative); False if not higher."""
        connection = self._connection
        return bool(
            connection._engine_call(
                connection.engine.grant_streams_credit,
                self._session_id,
                max_streams,
                is_unidirectional,
            )
        )

    # ------------------------------------------------------------------
    # Diagnostics

    async def diagnostics(self) -> SessionDiagnostics:
        """A snapshot of the session's protocol state and counters."""
        return self.diagnostics_nowait()

    async def diagnose(self) -> SessionDiagnostics:
        return self.diagnostics_nowait()

    def diagnostics_nowait(self) -> SessionDiagnostics:
        connection = self._connection
        snapshot = connection.engine.session_snapshot(self._session_id)
        try:
            max_size: int | None = self._max_datagram_size()
        except Exception:
            max_size = None
        return snapshot_to_diagnostics(
            snapshot,
            state=self._state.value,
            wall_offset=time.time() - anyio.current_time(),
            datagram_queue=self.datagrams.queued,
            max_datagram_size=max_size,
            blocked_streams=tuple(sorted(self._blocked)),
            connection_active=not connection.is_closed,
            stats=self._stats(),
        )

    async def get_session_stats(self) -> dict[str, Any]:
        """The counters as a dict (the older API's shape)."""
        return self._stats().to_dict()

    def statistics(self) -> SessionStats:
        """The counters as a frozen snapshot."""
        return self._stats()

    def _stats(self) -> SessionStats:
        connection = self._connection
        try:
            snapshot = connection.engine.session_snapshot(self._session_id)
            sent, received = snapshot.data_sent, snapshot.data_received
            datagrams_sent, datagrams_received = (
                snapshot.datagrams_sent,
                snapshot.datagrams_received,
            )
            dropped = snapshot.datagrams_dropped
            protocol_errors = snapshot.protocol_errors
            bytes_sent = snapshot.data_sent + snapshot.datagram_bytes_sent
            bytes_received = snapshot.data_received + snapshot.datagram_bytes_received
        except KeyError:
            sent = received = datagrams_sent = datagrams_received = dropped = protocol_errors = 0
            bytes_sent = bytes_received = 0
        del sent, received
        quic = connection.quic_stats()
        # QUIC packets where the stack counts them, else the UDP datagrams
        # carrying them (a datagram may coalesce several packets).
        packets_sent = quic.get("packets_sent") or quic.get("datagrams_sent")
        packets_received = quic.get("packets_received") or quic.get("datagrams_received")
        return SessionStats(
            session_id=self._session_id,
            created_at=self._created_wall,
            ready_at=self._ready_wall,
            closed_at=self._closed_wall,
            streams_created=self._streams_created,
            streams_closed=self._streams_closed,
            stream_errors=self._stream_errors,
            bidirectional_streams=self._bidi_created,
            unidirectional_streams=self._uni_created,
            datagrams_sent=datagrams_sent,
            datagrams_received=datagrams_received,
            datagrams_dropped=dropped + self.datagrams.dropped,
            datagram_send_errors=self.datagrams.send_errors,
            protocol_errors=protocol_errors,
            bytes_sent=bytes_sent,
            bytes_received=bytes_received,
            packets_sent=None if packets_sent is None else int(packets_sent),
            packets_received=None if packets_received is None else int(packets_received),
            send_errors=self._send_errors + self.datagrams.send_errors,
            receive_errors=self._receive_errors,
            last_active=self._last_active,
        )

    # ------------------------------------------------------------------
    # Called by streams and the datagram channel

    def _touch(self) -> None:
        self._last_active = time.time()

    def _check_open(self) -> None:
        if self._state == SessionState.CLOSED or self._state == SessionState.CLOSING:
            raise self._closed_error()

    def _check_receive_possible(self) -> None:
        if self._state == SessionState.CLOSED:
            raise self._closed_error()

    def _check_send_possible(self) -> None:
        if self._state in (SessionState.CLOSED, SessionState.CLOSING):
            raise self._closed_error()

    def _closed_error(self) -> SessionClosed:
        if self._rejected is not None:
            return SessionClosedError(0, f"rejected with status {self._rejected.status}")
        info = self._close_info
        if info is None:
            return SessionClosedOK(0, "closing", by_peer=False)
        kind = SessionClosedOK if info.clean else SessionClosedError
        return kind(info.code, info.reason, error_code=info.error_code, by_peer=info.by_peer)

    def _max_datagram_size(self) -> int:
        connection = self._connection
        try:
            size: int = connection.engine.max_datagram_size(self._session_id)
        except core_errors.DatagramsUnavailable as exc:
            raise DatagramsUnavailable(str(exc)) from None
        return size

    def _send_datagram(self, data: bytes) -> None:
        self._check_send_possible()
        connection = self._connection
        try:
            connection._engine_call(connection.engine.send_datagram, self._session_id, data)
        except core_errors.DatagramTooLarge as exc:
            raise DatagramTooLarge(exc.size, exc.max_size) from None
        except core_errors.DatagramsUnavailable as exc:
            raise DatagramsUnavailable(str(exc)) from None
        except SessionStateError:
            raise self._closed_error() from None
        self._touch()

    def _send_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> int:
        connection = self._connection
        taken: int = connection._engine_call(
            connection.engine.send_stream_data, stream_id, data, end_stream
        )
        if taken < len(data):
            self._blocked.add(stream_id)
        else:
            self._blocked.discard(stream_id)
        self._touch()
        return taken

    async def _wait_send_buffer(self, stream_id: int) -> None:
        """Wait while the stream has more than the send buffer queued in QUIC."""
        connection = self._connection
        limit = self._send_buffer
        while connection.send_backlog(stream_id) > limit:
            self._check_send_possible()
            await connection.wait_progress()

    async def _wait_data_credit(self) -> None:
        self._check_send_possible()
        await self._credit.wait()

    def _stream_consumed(self, stream_id: int, amount: int) -> None:
        self._connection._consumed(self._session_id, stream_id, amount)
        self._touch()

    def _reset_stream(self, stream_id: int, code: int) -> None:
        connection = self._connection
        try:
            connection._engine_call(connection.engine.reset_stream, stream_id, code)
        except (core_errors.UnknownStream, core_errors.EngineClosed):
            return
        self._stream_errors += 1

    def _stop_stream(self, stream_id: int, code: int) -> None:
        connection = self._connection
        try:
            connection._engine_call(connection.engine.stop_stream, stream_id, code)
        except (core_errors.UnknownStream, core_errors.EngineClosed):
            return

    # ------------------------------------------------------------------
    # Called by the connection as engine events arrive

    def _on_established(self, protocol: str | None) -> None:
        self._protocol = protocol
        if self._state == SessionState.CONNECTING:
            self._state = SessionState.CONNECTED
        self._ready_wall = time.time()
        self._ready.set()
        self.events.emit(SessionEventType.READY)

    def _on_rejected(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self._rejected = SessionRejected(status, headers)
        self._finish(CloseInfo(0, f"rejected with status {status}", True, None))

    def _on_draining(self) -> None:
        if self._state == SessionState.CONNECTED:
            self._state = SessionState.DRAINING
        self.events.emit(SessionEventType.DRAINING)

    def _on_closed(self, info: CloseInfo) -> None:
        self._finish(info)

    def _finish(self, info: CloseInfo) -> None:
        if self._close_info is not None:
            return
        self._close_info = info
        self._state = SessionState.CLOSED
        self._closed_wall = time.time()
        for stream in list(self._streams.values()):
            _end_stream(stream)
        self._streams.clear()
        self._incoming_signal.fire()
        self._credit.fire()
        self.datagrams._wake()
        self._ready.set()
        self._closed.set()
        self.events.emit(SessionEventType.CLOSED, info)

    def _on_stream_opened(self, stream_id: int, unidirectional: bool) -> None:
        if self._abandoned:
            self._release_abandoned()
        stream: Stream = (
            ReceiveStream(self, stream_id)
            if unidirectional
            else BidirectionalStream(self, stream_id)
        )
        self._streams[stream_id] = stream
        self._streams_created += 1
        if unidirectional:
            self._uni_created += 1
        else:
            self._bidi_created += 1
        if len(self._incoming) >= self._incoming_limit:
            # The application does not accept streams fast enough: refuse this one.
            self._stream_errors += 1
            self._streams.pop(stream_id, None)
            connection = self._connection
            connection._engine_call(connection.engine.stop_stream, stream_id, 0)
            if not unidirectional:
                connection._engine_call(connection.engine.reset_stream, stream_id, 0)
            return
        self._incoming.append(stream)
        self._incoming_signal.fire()
        self._touch()
        self.events.emit(SessionEventType.STREAM_OPENED, stream)

    def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if self._abandoned:
            self._release_abandoned()
        stream = self._streams.get(stream_id)
        if stream is None or isinstance(stream, SendStream):
            return
        side = stream._recv
        if side.stopped:
            return
        side.feed(data, end_stream)
        self._last_active = time.time()
        if side.size > self._receive_limit or self._unread.total > self._unread_limit:
            # The peer ignores flow control (or the stack cannot enforce it): the
            # stream that went past the stream's or the session's bound is stopped.
            self._receive_errors += 1
            side.stopped = True
            side.discard()
            self._stop_stream(stream_id, 0)
            side.signal.fire()
        if end_stream:
            self._stream_done(stream_id)
        if side.eof or side.stopped:
            self._forget_if_finished(stream)

    def _on_stream_reset(self, stream_id: int, code: int | None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or isinstance(stream, SendStream):
            return
        side = stream._recv
        side.reset = True
        side.reset_code = code
        side.signal.fire()
        self._stream_errors += 1
        self._stream_done(stream_id)
        self._forget_if_finished(stream)

    def _on_stream_stopped(self, stream_id: int, code: int | None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or isinstance(stream, ReceiveStream):
            return
        side = stream._send_side
        side.stopped = True
        side.stopped_code = code
        self._credit.fire()
        self._stream_errors += 1
        self._forget_if_finished(stream)

    def _stream_done(self, stream_id: int) -> None:
        self._streams_closed += 1

    def _forget_if_finished(self, stream: Stream) -> None:
        """Stop routing events to a stream whose every direction has ended.

        The application may still hold the object and read what is buffered;
        the session keeps no reference, so a long-lived session does not grow
        with the number of streams it has seen.
        """
        if not isinstance(stream, SendStream):
            recv = stream._recv
            if not (recv.eof or recv.reset or recv.stopped):
                return
        if not isinstance(stream, ReceiveStream):
            send = stream._send_side
            if not (send.closed or send.reset or send.stopped):
                return
        stream_id = stream.stream_id
        if self._streams.get(stream_id) is stream:
            del self._streams[stream_id]
        self._blocked.discard(stream_id)
        if not isinstance(stream, SendStream) and stream._recv.size:
            # Should the application drop it unread, its bytes must still leave the
            # session's total and be reported consumed (flow-control credit).
            # The finalizer must not keep the session alive (its registry is global).
            weakref.finalize(stream, _stream_abandoned, weakref.ref(self), stream_id, stream._recv)

    def _on_abandoned(self, stream_id: int, recv: Any) -> None:
        # A garbage-collector callback: it may run in the middle of an engine call, so
        # the bytes are only queued here, and a task waiting for streams releases them.
        self._abandoned.append((stream_id, recv))
        with contextlib.suppress(Exception):  # the event loop may be gone already
            self._incoming_signal.fire()

    def _release_abandoned(self) -> None:
        """Release what dropped streams left unread (a garbage collector callback only
        queues them: it may run in the middle of an engine call)."""
        abandoned = self._abandoned
        while abandoned:
            stream_id, recv = abandoned.pop()
            unreported = recv.received - recv.reported
            recv.discard()
            recv.reported = recv.received
            if unreported > 0 and self._state is SessionState.CONNECTED:
                with contextlib.suppress(
                    core_errors.UnknownSession, core_errors.EngineClosed, ValueError
                ):
                    self._connection._consumed(self._session_id, stream_id, unreported, False)

    def _on_datagram(self, data: bytes) -> None:
        self.datagrams._feed(data)
        self._touch()
        self.events.emit(SessionEventType.DATAGRAM_RECEIVED, data)

    def _on_credit(self, event_type: SessionEventType, value: int) -> None:
        self._credit.fire()
        self.events.emit(event_type, value)


def _stream_abandoned(session_ref: weakref.ref[Session], stream_id: int, recv: Any) -> None:
    session = session_ref()
    if session is not None:
        session._on_abandoned(stream_id, recv)


def _end_stream(stream: Stream) -> None:
    """Wake every task reading a stream of a session that ended: it then sees the close."""
    if not isinstance(stream, SendStream):
        stream._recv.signal.fire()
