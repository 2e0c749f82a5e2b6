"""Session events for callbacks: ``session.events.on(SessionEventType.DATAGRAM_RECEIVED, fn)``.

Handlers are plain callables run inline when the event happens; they must
not block (hand work to a task of your own for anything slow).  Typed
payloads, not dicts: each event is a frozen ``SessionEvent``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import anyio

__all__ = ["SessionEventType", "SessionEvent", "EventEmitter"]

logger = logging.getLogger("anywt.session")


class SessionEventType(StrEnum):
    """What a session reports to callbacks."""

    READY = "session_ready"
    STREAM_OPENED = "stream_opened"
    DATAGRAM_RECEIVED = "datagram_received"
    DRAINING = "session_draining"
    CLOSED = "session_closed"
    MAX_DATA_UPDATED = "max_data_updated"
    MAX_STREAMS_BIDI_UPDATED = "max_streams_bidi_updated"
    MAX_STREAMS_UNI_UPDATED = "max_streams_uni_updated"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One event; ``data`` holds its payload (stream, datagram bytes, close code...)."""

    type: SessionEventType
    session_id: int
    data: Any = None
    timestamp: float = field(default_factory=time.time)


Handler = Callable[[SessionEvent], object]


class EventEmitter:
    """Callbacks per event type, plus ``wait_for`` to await the next event of some types."""

    def __init__(self, session_id: int) -> None:
        self._session_id = session_id
        self._handlers: dict[SessionEventType, list[tuple[Handler, bool]]] = {}
        self._waiters: list[
            tuple[frozenset[SessionEventType], list[SessionEvent], anyio.Event]
        ] = []

    def on(self, event_type: SessionEventType | str, handler: Handler) -> None:
        """Call ``handler(event)`` for every event of that type."""
        self._add(event_type, handler, False)

    def once(self, event_type: SessionEventType | str, handler: Handler) -> None:
        """Call ``handler(event)`` for the next event of that type only."""
        self._add(event_type, handler, True)

    def off(self, event_type: SessionEventType | str, handler: Handler | None = None) -> None:
        """Remove one handler, or every handler of that type."""
        kind = SessionEventType(event_type)
        if handler is None:
            self._handlers.pop(kind, None)
            return
        handlers = self._handlers.get(kind, [])
        self._handlers[kind] = [item for item in handlers if item[0] is not handler]

    def listener_count(self, event_type: SessionEventType | str) -> int:
        return len(self._handlers.get(SessionEventType(event_type), []))

    async def wait_for(
        self,
        event_type: SessionEventType | str | Iterable[SessionEventType | str],
        *,
        timeout: float | None = None,
    ) -> SessionEvent:
        """The next event of these types (``TimeoutError`` after ``timeout`` seconds)."""
        if isinstance(event_type, (str, SessionEventType)):
            kinds = frozenset({SessionEventType(event_type)})
        else:
            kinds = frozenset(SessionEventType(kind) for kind in event_type)
        box: list[SessionEvent] = []
        done = anyio.Event()
        waiter = (kinds, box, done)
        self._waiters.append(waiter)
        try:
            with anyio.fail_after(timeout):
                await done.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return box[0]

    def emit(self, event_type: SessionEventType, data: Any = None) -> None:
        """Deliver an event to its handlers and waiters (used by anywt itself)."""
        handlers = self._handlers.get(event_type)
        waiters = self._waiters
        if not handlers and not waiters:
            return
        event = SessionEvent(event_type, self._session_id, data)
        if handlers:
            keep: list[tuple[Handler, bool]] = []
            for handler, once in handlers:
                try:
                    handler(event)
                except Exception:
                    logger.exception("session %d: %s handler failed", self._session_id, event_type)
                if not once:
                    keep.append((handler, once))
            self._handlers[event_type] = keep
        for kinds, box, done in list(waiters):
            if event_type in kinds and not box:
                box.append(event)
                done.set()

    def _add(self, event_type: SessionEventType | str, handler: Handler, once: bool) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable")
        self._handlers.setdefault(SessionEventType(event_type), []).append((handler, once))
