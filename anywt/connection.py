"""``Connection``: one QUIC connection, its engine, and the sessions it carries.

It sits between the driver (which reports new input) and the sessions: it
drains the engine's events and routes them, and it is how sessions and
streams call the engine (``_engine_call`` dispatches the events a call
produced and asks the driver to transmit).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import SocketAttribute

from ._util import Latch, Signal
from .attributes import WebTransportAttribute
from .backends.base import BackendError
from .config import Limits
from .core import events as ev
from .core.engine import WebTransportEngine
from .core.errors import EngineClosed, H3ErrorCode
from .diagnostics import ConnectionDiagnostics
from .events import SessionEventType
from .exceptions import KeyUpdateUnavailable
from .session import CloseInfo, Session

if TYPE_CHECKING:
    from .backends.base import Address, BackendConnection, Driver

__all__ = ["Connection"]

logger = logging.getLogger("anywt.connection")


class Connection:
    """A QUIC connection carrying WebTransport sessions (client or server side)."""

    def __init__(
        self,
        quic: BackendConnection,
        endpoint: Driver,
        *,
        is_client: bool,
        backend_name: str,
        limits: Limits,
        close_timeout: float,
        remote_address: Address | None,
        on_request: Callable[[Connection, ev.SessionRequested], None] | None = None,
    ) -> None:
        engine = quic.engine
        if engine is None:
            raise RuntimeError("the QUIC connection has no engine")
        self._quic = quic
        self.engine: WebTransportEngine = engine
        self._endpoint = endpoint
        self._is_client = is_client
        self._backend_name = backend_name
        self.limits = limits
        self._close_timeout = close_timeout
        self._remote_address = remote_address
        self._on_request = on_request
        self._sessions: dict[int, Session] = {}
        self._progress = Signal()
        self._settings = Latch()
        self._handshake = Latch()
        self._terminated = Latch()
        self._close_error_code: int | None = None
        self._close_reason = ""
        self._closed_by_peer = False
        self._goaway: int | None = None
        self.created_at = time.time()
        #: Since when the connection carries no session (the server's janitor reads it).
        self.idle_since = math.inf
        #: A client closes its connection with its last session (a ``Client`` pool keeps it).
        self.close_when_unused = True
        self.last_activity = self.created_at
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.StreamDataReceived: self._on_stream_data,
            ev.DatagramReceived: self._on_datagram,
            ev.StreamOpened: self._on_stream_opened,
            ev.StreamReset: self._on_stream_reset,
            ev.StreamStopped: self._on_stream_stopped,
            ev.DataCreditAvailable: self._on_data_credit,
            ev.StreamsCreditAvailable: self._on_streams_credit,
            ev.SessionRequested: self._on_session_requested,
            ev.SessionEstablished: self._on_established,
            ev.SessionRejected: self._on_rejected,
            ev.SessionDraining: self._on_draining,
            ev.SessionClosed: self._on_session_closed,
            ev.SettingsReceived: self._on_settings,
            ev.GoawayReceived: self._on_goaway,
            ev.ConnectionTerminated: self._on_terminated,
        }

    # ------------------------------------------------------------------
    # What a connection is

    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def backend(self) -> str:
        return self._backend_name

    @property
    def quic(self) -> BackendConnection:
        """The backend's connection object (for diagnostics; do not drive it)."""
        return self._quic

    @property
    def remote_address(self) -> Address | None:
        return self._remote_address

    @property
    def local_address(self) -> Address:
        return self._endpoint.local_address

    @property
    def draft(self) -> str | None:
        """The WebTransport draft spoken, e.g. "draft-02" (None before SETTINGS)."""
        dialect = self.engine.dialect
        return None if dialect is None else dialect.label

    @property
    def flow_control(self) -> bool:
        return self.engine.flow_control

    @property
    def is_closed(self) -> bool:
        return self._terminated.is_set()

    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    @property
    def close_error_code(self) -> int | None:
        return self._close_error_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def handshake_done(self) -> bool:
        """The QUIC handshake completed (and the certificate was accepted)."""
        return self._quic.handshake_done

    @property
    def goaway_received(self) -> bool:
        return self._goaway is not None

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        return {
            WebTransportAttribute.alpn: lambda: "h3",
            WebTransportAttribute.draft: lambda: self.draft,
            WebTransportAttribute.backend: lambda: self._backend_name,
            SocketAttribute.local_address: lambda: self.local_address,
            SocketAttribute.remote_address: lambda: self._remote_address,
        }

    def has_live_sessions(self) -> bool:
        return any(not session.is_closed for session in self._sessions.values())

    def add_session(self, session: Session) -> None:
        self._sessions[session.session_id] = session

    # ------------------------------------------------------------------
    # Engine calls and events

    def _engine_call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the engine, route the events that produced, and have the driver transmit."""
        try:
            result = method(*args, **kwargs)
        finally:
            self._pump()
            self._endpoint.request_transmit(self._quic)
        return result

    def _pump(self) -> None:
        engine = self.engine
        handlers = self._handlers
        event = engine.next_event()
        while event is not None:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
            event = engine.next_event()

    def _activity(self, now: float) -> None:
        """The driver fed new input to the engine."""
        self._pump()
        if self._quic.handshake_done and not self._handshake.is_set():
            self._handshake.set()
        self.last_activity = time.time()
        self._progress.fire()

    def _ended(self) -> None:
        """The QUIC connection is over (called by the driver)."""
        self._pump()
        if self._close_error_code is None:
            self._close_error_code = H3ErrorCode.H3_NO_ERROR
        for session in list(self._sessions.values()):
            if not session.is_closed:
                session._on_closed(CloseInfo(0, "connection closed", True, self._close_error_code))
        self._handshake.set()
        self._settings.set()
        self._terminated.set()
        self._progress.fire()

    def _consumed(self, session_id: int, stream_id: int, amount: int, pump: bool = True) -> None:
        """The application read ``amount`` bytes: credit for the peer.  ``pump=False``
        while the engine's events are being handled (they must stay in order)."""
        engine = self.engine
        if engine.closed:
            return
        engine.consume_data(session_id, amount)
        self._quic.stream_consumed(stream_id, amount)
        if pump:
            self._pump()
        self._endpoint.request_transmit(self._quic)

    def send_backlog(self, stream_id: int) -> int:
        return self._quic.send_backlog(stream_id)

    async def wait_progress(self) -> None:
        """Wait until the driver processes new input (ACKs, credit) or the connection ends."""
        if self._terminated.is_set():
            return
        await self._progress.wait()

    # Event handlers --------------------------------------------------------

    def _on_stream_data(self, event: ev.StreamDataReceived) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_stream_data(event.stream_id, event.data, event.end_stream)

    def _on_datagram(self, event: ev.DatagramReceived) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_datagram(event.data)

    def _on_stream_opened(self, event: ev.StreamOpened) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_stream_opened(event.stream_id, event.is_unidirectional)

    def _on_stream_reset(self, event: ev.StreamReset) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_stream_reset(event.stream_id, event.code)

    def _on_stream_stopped(self, event: ev.StreamStopped) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_stream_stopped(event.stream_id, event.code)

    def _on_data_credit(self, event: ev.DataCreditAvailable) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_credit(SessionEventType.MAX_DATA_UPDATED, event.max_data)

    def _on_streams_credit(self, event: ev.StreamsCreditAvailable) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            kind = (
                SessionEventType.MAX_STREAMS_UNI_UPDATED
                if event.is_unidirectional
                else SessionEventType.MAX_STREAMS_BIDI_UPDATED
            )
            session._on_credit(kind, event.max_streams)

    def _on_session_requested(self, event: ev.SessionRequested) -> None:
        if self._on_request is None:  # a client never gets requests
            return
        self._on_request(self, event)

    def _on_established(self, event: ev.SessionEstablished) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_established(event.protocol)

    def _on_rejected(self, event: ev.SessionRejected) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_rejected(event.status, event.headers)

    def _on_draining(self, event: ev.SessionDraining) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_draining()

    def _on_session_closed(self, event: ev.SessionClosed) -> None:
        session = self._sessions.get(event.session_id)
        if session is not None:
            session._on_closed(CloseInfo(event.code, event.reason, event.by_peer, event.error_code))

    def _on_settings(self, event: ev.SettingsReceived) -> None:
        self._settings.set()

    def _on_goaway(self, event: ev.GoawayReceived) -> None:
        self._goaway = event.last_id

    def _on_terminated(self, event: ev.ConnectionTerminated) -> None:
        self._close_error_code = event.error_code
        self._close_reason = event.reason
        self._closed_by_peer = event.by_peer

    # ------------------------------------------------------------------
    # Life

    async def wait_handshake(self) -> None:
        await self._handshake.wait()

    async def wait_closed(self) -> None:
        """Wait until the QUIC connection is fully closed."""
        await self._terminated.wait()

    async def close(
        self, code: int = H3ErrorCode.H3_NO_ERROR, reason: str = "", *, wait_for: int | None = None
    ) -> None:
        """Close the QUIC connection; open sessions end with it.

        With ``wait_for`` (a session id whose close we just sent) it first
        waits briefly for the peer's FIN on that CONNECT stream, so the close
        capsule is not lost to the connection close (draft section 6).
        """
        if self._terminated.is_set():
            return
        engine = self.engine
        if wait_for is not None:
            with anyio.move_on_after(min(1.0, self._close_timeout)):
                while not engine.closed and not engine.peer_finished_session(wait_for):
                    await self._progress.wait()
        if not engine.closed:
            with contextlib.suppress(EngineClosed):
                self._engine_call(engine.close, code, reason)
        with anyio.move_on_after(self._close_timeout):
            await self._terminated.wait()
        if not self._terminated.is_set():
            logger.warning(
                "connection did not close within %.1f s; dropping it", self._close_timeout
            )
            self._endpoint.abort()

    def request_key_update(self) -> None:
        """Start a QUIC key update (fresh traffic keys), counted in ``diagnostics()``."""
        try:
            self._quic.request_key_update()
        except BackendError as exc:
            raise KeyUpdateUnavailable(str(exc)) from exc
        self._endpoint.request_transmit(self._quic)

    @property
    def key_updates(self) -> int:
        return self._quic.key_updates()

    def quic_stats(self) -> dict[str, float | int | None]:
        try:
            return self._quic.stats()
        except Exception:  # a stack that cannot say
            return {}

    def diagnostics(self) -> ConnectionDiagnostics:
        snapshot = self.engine.connection_snapshot()
        return ConnectionDiagnostics(
            is_client=self._is_client,
            backend=self._backend_name,
            local_address=self.local_address,
            remote_address=self._remote_address,
            draft=None if snapshot.dialect is None else snapshot.dialect.label,
            flow_control_negotiated=snapshot.flow_control,
            local_settings=dict(snapshot.local_settings),
            peer_settings=None if snapshot.peer_settings is None else dict(snapshot.peer_settings),
            sessions=snapshot.sessions,
            max_datagram_size=snapshot.max_datagram_size,
            key_updates=self._quic.key_updates(),
            goaway_sent=snapshot.goaway_sent,
            goaway_received=snapshot.goaway_received,
            streams_rejected=snapshot.streams_rejected,
            datagrams_dropped=snapshot.datagrams_dropped,
            closed=self.is_closed,
            close_error_code=self._close_error_code,
            close_reason=self._close_reason,
            quic=self.quic_stats(),
            io=self._endpoint.io_counters(),
        )

    def __repr__(self) -> str:
        role = "client" if self._is_client else "server"
        return f"<Connection {role} {self._backend_name} to {self._remote_address}>"
