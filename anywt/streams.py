"""WebTransport streams as anyio byte streams.

``ReceiveStream`` is an ``anyio.abc.ByteReceiveStream``, ``SendStream`` an
``anyio.abc.ByteSendStream`` and ``BidirectionalStream`` an
``anyio.abc.ByteStream``, so anyio's helpers (buffered readers, text
streams, ``anyio.streams.stapled``) work on them.  On top come the read and
write calls of the session API users know: ``read(n)``, ``read_all()``,
``readexactly(n)``, ``readuntil(sep)``, ``write(data, end_stream)``,
``reset(code)`` and ``stop_receiving(code)``.

Writes wait for flow-control credit (WebTransport session credit and the
QUIC stream's send buffer) instead of raising; reads return what arrived
and wait only when nothing has.  Everything a stream holds is bounded.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, ByteStream

from ._util import Signal
from .attributes import WebTransportAttribute
from .core.errors import EngineClosed, UnknownStream
from .exceptions import SessionClosed, StreamReset, StreamStopped

if TYPE_CHECKING:
    from .session import Session

__all__ = ["ReceiveStream", "SendStream", "BidirectionalStream", "Stream"]

#: Largest piece handed to the engine per call, so a big write neither copies
#: everything at once nor starves other streams.
_WRITE_CHUNK = 256 * 1024


class UnreadBytes:
    """Received stream bytes the application has not read yet, over a whole session."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


class _ReceiveSide:
    """The receiving half: a bounded buffer the engine fills and the application drains."""

    __slots__ = (
        "unread",
        "chunks",
        "size",
        "eof",
        "reset_code",
        "reset",
        "stopped",
        "signal",
        "received",
        "consumed",
        "reported",
        "_reading",
    )

    def __init__(self, unread: UnreadBytes) -> None:
        #: The session's total, kept in step with ``size``.
        self.unread = unread
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.reset = False
        self.reset_code: int | None = None
        #: We sent STOP_SENDING (or closed our side): reads fail.
        self.stopped = False
        self.signal = Signal()
        self.received = 0
        self.consumed = 0
        #: Consumption already reported for flow control (data pushed back by
        #: ``readuntil`` is not reported twice).
        self.reported = 0
        self._reading = False

    def feed(self, data: bytes, end_stream: bool) -> None:
        if data:
            self.chunks.append(data)
            self.size += len(data)
            self.unread.total += len(data)
            self.received += len(data)
        if end_stream:
            self.eof = True
        self.signal.fire()

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` buffered bytes (at least one chunk's worth is joined)."""
        chunks = self.chunks
        first = chunks.popleft()
        if len(first) > max_bytes:
            chunks.appendleft(first[max_bytes:])
            first = first[:max_bytes]
        elif chunks and len(first) < max_bytes:
            parts = [first]
            total = len(first)
            while chunks and total < max_bytes:
                nxt = chunks.popleft()
                room = max_bytes - total
                if len(nxt) > room:
                    chunks.appendleft(nxt[room:])
                    nxt = nxt[:room]
                parts.append(nxt)
                total += len(nxt)
            first = b"".join(parts)
        self.size -= len(first)
        self.unread.total -= len(first)
        self.consumed += len(first)
        return first

    def give_back(self, data: bytes) -> None:
        """Put bytes read too far back in front (they count as unread again)."""
        self.chunks.appendleft(data)
        self.size += len(data)
        self.unread.total += len(data)
        self.consumed -= len(data)

    def discard(self) -> None:
        """Drop everything buffered (the stream was stopped)."""
        self.chunks.clear()
        self.unread.total -= self.size
        self.size = 0


class _StreamBase:
    """What every stream has: its id, its session, typed attributes."""

    def __init__(self, session: Session, stream_id: int) -> None:
        self._session = session
        self._stream_id = stream_id

    @property
    def stream_id(self) -> int:
        """The QUIC stream id."""
        return self._stream_id

    @property
    def session(self) -> Session:
        return self._session

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        session = self._session
        return {
            WebTransportAttribute.stream_id: lambda: self._stream_id,
            WebTransportAttribute.session_id: lambda: session.session_id,
            WebTransportAttribute.path: lambda: session.path,
            **session.connection.extra_attributes,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._stream_id} of session {self._session.session_id}>"


class _Reading(_StreamBase):
    _recv: _ReceiveSide

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Bytes that arrived (at most ``max_bytes``; never empty).

        Raises ``anyio.EndOfStream`` after the peer's FIN, ``StreamReset`` when
        the peer reset the stream, ``anyio.ClosedResourceError`` after we
        stopped reading.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        side = self._recv
        if side._reading:
            raise anyio.BusyResourceError("receiving")
        side._reading = True
        try:
            while True:
                if side.stopped:
                    raise anyio.ClosedResourceError
                if side.chunks:
                    data = side.take(max_bytes)
                    unreported = side.consumed - side.reported
                    if unreported > 0:
                        side.reported = side.consumed
                        self._session._stream_consumed(self._stream_id, unreported)
                    return data
                if side.reset:
                    raise StreamReset(
                        f"stream {self._stream_id} was reset by the peer"
                        + ("" if side.reset_code is None else f" with code {side.reset_code}"),
                        stream_id=self._stream_id,
                        code=side.reset_code,
                    )
                if side.eof:
                    raise anyio.EndOfStream
                self._session._check_receive_possible()
                await side.signal.wait()
        finally:
            side._reading = False

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (or, with -1, everything until FIN); ``b""`` at the end."""
        if n < 0:
            return await self.read_all()
        if n == 0:
            return b""
        try:
            return await self.receive(n)
        except anyio.EndOfStream:
            return b""

    async def read_all(self, *, max_size: int | None = None) -> bytes:
        """Everything until the peer's FIN (``ValueError`` past ``max_size``)."""
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                data = await self.receive(1 << 20)
            except anyio.EndOfStream:
                return b"".join(parts)
            total += len(data)
            if max_size is not None and total > max_size:
                raise ValueError(f"stream {self._stream_id} sent more than {max_size} bytes")
            parts.append(data)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``anyio.IncompleteRead`` if the stream ends first."""
        parts: list[bytes] = []
        remaining = n
        while remaining > 0:
            try:
                data = await self.receive(remaining)
            except anyio.EndOfStream:
                raise anyio.IncompleteRead from None
            parts.append(data)
            remaining -= len(data)
        return b"".join(parts)

    async def readuntil(self, separator: bytes = b"\n", *, limit: int = 65536) -> bytes:
        """Bytes up to and including ``separator``.

        Raises ``anyio.IncompleteRead`` if the stream ends first and
        ``anyio.DelimiterNotFound`` after ``limit`` bytes without it.
        """
        if not separator:
            raise ValueError("separator must not be empty")
        side = self._recv
        buffer = bytearray()
        while True:
            index = buffer.find(separator)
            if index >= 0:
                end = index + len(separator)
                if end < len(buffer):
                    # Hand back what was read past the separator.
                    side.give_back(bytes(buffer[end:]))
                return bytes(buffer[:end])
            if len(buffer) > limit:
                raise anyio.DelimiterNotFound(limit)
            try:
                buffer += await self.receive(limit + len(separator))
            except anyio.EndOfStream:
                raise anyio.IncompleteRead from None

    async def readline(self, *, limit: int = 65536) -> bytes:
        """One line with its ``\\n``."""
        return await self.readuntil(b"\n", limit=limit)

    async def stop_receiving(self, code: int = 0) -> None:
        """Tell the peer to stop sending (STOP_SENDING with an application code)."""
        side = self._recv
        ended = side.stopped or side.eof or side.reset
        # Either way, what is buffered can no longer be read.
        side.stopped = True
        side.discard()
        if not ended:
            side.signal.fire()
            self._session._stop_stream(self._stream_id, code)
        self._session._forget_if_finished(self)  # type: ignore[arg-type]

    @property
    def bytes_received(self) -> int:
        return self._recv.received


class _SendSide:
    __slots__ = ("closed", "reset", "stopped_code", "stopped", "sent", "lock")

    def __init__(self) -> None:
        #: We sent FIN (or reset).
        self.closed = False
        self.reset = False
        self.stopped = False
        self.stopped_code: int | None = None
        self.sent = 0
        self.lock = anyio.Lock()


class _Writing(_StreamBase):
    _send_side: _SendSide

    async def send(self, item: bytes) -> None:
        """Send all of ``item``, waiting for flow-control credit as needed."""
        await self.write(item)

    async def write(self, data: bytes | bytearray | memoryview, end_stream: bool = False) -> None:
        """Send ``data`` (then FIN with ``end_stream``); waits rather than buffering more."""
        side = self._send_side
        if not isinstance(data, bytes):
            data = bytes(data)
        async with side.lock:
            self._check_writable()
            session = self._session
            size = len(data)
            offset = 0
            while offset < size or (end_stream and offset == size and not side.closed):
                chunk_end = min(size, offset + _WRITE_CHUNK)
                fin = end_stream and chunk_end == size
                chunk = data if offset == 0 and chunk_end == size else data[offset:chunk_end]
                await session._wait_send_buffer(self._stream_id)
                self._check_writable()
                try:
                    taken = session._send_stream_data(self._stream_id, chunk, fin)
                except (UnknownStream, EngineClosed):
                    self._check_writable()
                    raise anyio.ClosedResourceError from None
                offset += taken
                side.sent += taken
                if fin and taken == len(chunk):
                    side.closed = True
                    session._forget_if_finished(self)  # type: ignore[arg-type]
                    break
                if taken < len(chunk):
                    # Session flow control: wait for WT_MAX_DATA.
                    await session._wait_data_credit()

    async def write_all(
        self, data: bytes | bytearray | memoryview, *, end_stream: bool = False
    ) -> None:
        """Same as ``write``: every write sends all of its data."""
        await self.write(data, end_stream)

    async def send_eof(self) -> None:
        """End our side of the stream (FIN)."""
        side = self._send_side
        if side.closed or side.reset:
            return
        await self.write(b"", end_stream=True)

    async def close(self) -> None:
        """FIN, as ``send_eof``; for symmetry with the older session API."""
        await self.send_eof()

    async def reset(self, code: int = 0) -> None:
        """Abort our sending side with an application error code (RESET_STREAM)."""
        side = self._send_side
        if side.closed or side.reset:
            return
        side.reset = True
        self._session._reset_stream(self._stream_id, code)
        self._session._forget_if_finished(self)  # type: ignore[arg-type]

    def _check_writable(self) -> None:
        side = self._send_side
        if side.stopped:
            raise StreamStopped(
                f"the peer stopped stream {self._stream_id}"
                + ("" if side.stopped_code is None else f" with code {side.stopped_code}"),
                stream_id=self._stream_id,
                code=side.stopped_code,
            )
        if side.closed or side.reset:
            raise anyio.ClosedResourceError
        self._session._check_send_possible()

    @property
    def bytes_sent(self) -> int:
        return self._send_side.sent


class ReceiveStream(_Reading, ByteReceiveStream):
    """A unidirectional stream the peer opened: we only read."""

    def __init__(self, session: Session, stream_id: int) -> None:
        super().__init__(session, stream_id)
        self._recv = _ReceiveSide(session._unread)

    async def aclose(self) -> None:
        """Stop reading (STOP_SENDING with code 0) unless the stream already ended."""
        await self.stop_receiving(0)


class SendStream(_Writing, ByteSendStream):
    """A unidirectional stream we opened: we only write."""

    def __init__(self, session: Session, stream_id: int) -> None:
        super().__init__(session, stream_id)
        self._send_side = _SendSide()

    async def aclose(self) -> None:
        """FIN (a clean end), unless it was reset."""
        with contextlib.suppress(anyio.ClosedResourceError, StreamStopped, SessionClosed):
            await self.send_eof()


class BidirectionalStream(_Reading, _Writing, ByteStream):
    """A bidirectional stream, opened by either side."""

    def __init__(self, session: Session, stream_id: int) -> None:
        _StreamBase.__init__(self, session, stream_id)
        self._recv = _ReceiveSide(session._unread)
        self._send_side = _SendSide()

    async def aclose(self) -> None:
        """FIN our side and stop reading what we will not read."""
        with contextlib.suppress(anyio.ClosedResourceError, StreamStopped, SessionClosed):
            await self.send_eof()
        recv = self._recv
        if not (recv.eof or recv.reset or recv.stopped):
            await self.stop_receiving(0)


#: Any WebTransport stream.
Stream = ReceiveStream | SendStream | BidirectionalStream
