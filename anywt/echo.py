"""The echo service behind ``anywt serve-echo`` and ``anywt demo`` (and the interop tests).

What it does, per session:

* a bidirectional stream is echoed back as it arrives, then FIN;
* a unidirectional stream from the client is answered, after its FIN, by a
  unidirectional stream from the server carrying the same bytes;
* datagrams are echoed;
* a bidirectional stream whose first bytes are ``close:<code>:<reason>``
  (read to its FIN) makes the server close the session with that code and
  reason;
* a bidirectional stream whose first bytes are ``open-bidi`` is echoed, and
  the server also opens a bidirectional stream of its own carrying
  ``SERVER_BIDI_GREETING``, then FIN (the peer may write back on it);
* offered subprotocols: the first one the client lists is accepted
  (``select_first_protocol``).
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskGroup

from .exceptions import SessionClosed, StreamError
from .server import SessionRequest
from .session import Session
from .streams import BidirectionalStream, ReceiveStream

__all__ = ["echo_handler", "select_first_protocol", "SERVER_BIDI_GREETING", "ECHO_LIMIT"]

logger = logging.getLogger("anywt.echo")

SERVER_BIDI_GREETING = b"anywt: hello on a server-initiated bidi stream"
#: A unidirectional stream is echoed once complete, so it is held whole: up to this much.
ECHO_LIMIT = 64 * 1024 * 1024
_COMMANDS = (b"close:", b"open-bidi")
_COMMAND_PEEK = max(len(command) for command in _COMMANDS)
#: How an echo ends when the peer or the session goes away.
_STREAM_ENDED = (SessionClosed, StreamError, anyio.ClosedResourceError, anyio.BrokenResourceError)


async def echo_handler(session: Session) -> None:
    """Echo everything on ``session`` until it closes."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_echo_datagrams, session)
        try:
            async for stream in session.incoming_streams():
                if isinstance(stream, BidirectionalStream):
                    tasks.start_soon(_echo_bidi, session, stream, tasks)
                elif isinstance(stream, ReceiveStream):
                    tasks.start_soon(_echo_uni, session, stream)
        finally:
            tasks.cancel_scope.cancel()


async def _echo_datagrams(session: Session) -> None:
    try:
        async for datagram in session.datagrams:
            try:
                session.send_datagram_nowait(datagram)
            except SessionClosed:
                return
            except Exception as exc:  # a datagram that cannot go back is dropped, as UDP would
                logger.debug("datagram echo failed: %s", exc)
    except SessionClosed:
        return


async def _echo_bidi(session: Session, stream: BidirectionalStream, tasks: TaskGroup) -> None:
    try:
        head = b""
        ended = False
        # Read only while the first bytes could still turn out to be a command.
        while _could_be_command(head):
            try:
                head += await stream.receive(_COMMAND_PEEK - len(head))
            except anyio.EndOfStream:
                ended = True
                break
        if head.startswith(b"close:"):
            rest = b"" if ended else await stream.read_all(max_size=4096)
            await _close_command(session, head + rest)
            return
        if head.startswith(b"open-bidi"):
            server_stream = await session.create_bidirectional_stream()
            await server_stream.write(SERVER_BIDI_GREETING, end_stream=True)
            tasks.start_soon(_drain_reply, server_stream)
        if head:
            await stream.write(head)
        if not ended:
            async for chunk in stream:
                await stream.write(chunk)
        await stream.send_eof()
    except (
        SessionClosed,
        StreamError,
        anyio.ClosedResourceError,
        anyio.BrokenResourceError,
    ) as exc:
        logger.debug("bidi echo on %d ended: %s", stream.stream_id, exc)


def _could_be_command(head: bytes) -> bool:
    """True while ``head`` is a proper prefix of a command (more bytes may complete it)."""
    return any(len(head) < len(command) and command.startswith(head) for command in _COMMANDS)


async def _close_command(session: Session, command: bytes) -> None:
    _, _, rest = command.partition(b":")
    code_text, _, reason = rest.partition(b":")
    try:
        code = int(code_text)
    except ValueError:
        code = 0
    await session.close(code, reason.decode("utf-8", errors="replace"), close_connection=False)


async def _drain_reply(stream: BidirectionalStream) -> None:
    """Read what the peer writes back on our stream, so it completes."""
    try:
        await stream.read_all(max_size=1 << 20)
    except Exception as exc:
        logger.debug("server bidi reply on %d: %s", stream.stream_id, exc)


async def _echo_uni(session: Session, stream: ReceiveStream) -> None:
    try:
        data = await stream.read_all(max_size=ECHO_LIMIT)
        reply = await session.create_unidirectional_stream()
        await reply.write(data, end_stream=True)
    except (SessionClosed, StreamError, anyio.ClosedResourceError, ValueError) as exc:
        logger.debug("uni echo on %d ended: %s", stream.stream_id, exc)


def select_first_protocol(request: SessionRequest) -> str | None:
    """The echo service speaks whatever subprotocol the client lists first."""
    return request.protocols[0] if request.protocols else None
