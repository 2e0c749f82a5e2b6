"""A WebTransport server: path routing, admission checks, a task per session, graceful shutdown.

::

    async def echo(session: anywt.Session) -> None:
        async for stream in session.incoming_streams():
            ...

    async with anywt.Server({"/echo": echo}, port=4433, certfile=..., keyfile=...) as server:
        await server.serve_forever()

or, under a task group, ``server = await tg.start(anywt.serve, echo, ...)``.

Every handler runs in the server's task group and its session is closed
when it returns; ``aclose()`` refuses new sessions (GOAWAY), closes the open
ones with a code and reason, waits (bounded) for the handlers and then for
the connections to close.  No task outlives the server.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._util import run_shielded
from .backends.base import BackendConnection, BackendError, Driver, QuicSettings, get_backend
from .certs import DevCertificate, certificate_sha256, generate_dev_certificate
from .config import ServerConfig
from .connection import Connection
from .core import events as ev
from .core.engine import WebTransportEngine
from .core.errors import EngineClosed, H3ErrorCode
from .exceptions import BackendUnavailable
from .session import Session

__all__ = ["Server", "SessionRequest", "serve", "Handler"]

logger = logging.getLogger("anywt.server")

#: A session handler: runs for the life of the session.
Handler = Callable[[Session], Awaitable[None]]
#: Decides about a request: None accepts, an HTTP status (>= 300) rejects.
RequestHook = Callable[["SessionRequest"], "int | Awaitable[int | None] | None"]


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A client's request for a session, before it is accepted."""

    path: str
    authority: str
    origin: str | None
    headers: dict[str, str]
    protocols: tuple[str, ...]
    draft: str
    remote_address: tuple[str, int] | None
    session_id: int


class Server:
    """A WebTransport server on one UDP socket.

    ``handler`` is one coroutine function for every path, or a mapping of
    path to coroutine function (unknown paths get 404).  Options are the
    fields of ``ServerConfig``; without a certificate a local-development one
    is generated (``server.certificate`` has it and its SHA-256).
    """

    def __init__(
        self,
        handler: Handler | Mapping[str, Handler] | None = None,
        *,
        config: ServerConfig | None = None,
        process_request: RequestHook | None = None,
        select_protocol: Callable[[SessionRequest], str | None] | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = ServerConfig.from_kwargs(**options)
        elif options:
            raise TypeError("pass either config= or keyword options, not both")
        if handler is None:
            self._routes: Mapping[str, Handler] | None = None
            self._default: Handler | None = None
        elif callable(handler):
            self._routes = None
            self._default = handler
        else:
            self._routes = dict(handler)
            self._default = None
            for path, route in self._routes.items():
                if not path.startswith("/") or not callable(route):
                    raise TypeError(f"route {path!r} must be a path mapped to a coroutine function")
        self.config = config
        self._process_request = process_request
        self._select_protocol = select_protocol
        self.certificate: DevCertificate | None = None
        self._chain_pem: bytes | None = None
        self._key_pem: bytes | None = None
        self._endpoint: Driver | None = None
        self._task_group: TaskGroup | None = None
        self._connections: dict[int, Connection] = {}
        self._sessions: set[Session] = set()
        self._closing = False
        self._closed = anyio.Event()
        self._handler_scopes: set[anyio.CancelScope] = set()
        self._janitor_scope: anyio.CancelScope | None = None
        self._started = False
        self.sessions_accepted = 0
        self.sessions_rejected = 0
        self.connections_refused = 0

    # ------------------------------------------------------------------
    # Where it listens

    @property
    def address(self) -> tuple[str, int]:
        if self._endpoint is None:
            raise RuntimeError("the server is not started")
        return self._endpoint.local_address

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    def url(self, path: str = "/") -> str:
        host = self.host
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{self.port}{path}"

    @property
    def certificate_sha256(self) -> bytes:
        """SHA-256 of the leaf certificate's DER (for ``server_certificate_hashes``)."""
        if self._chain_pem is None:
            raise RuntimeError("the server is not started")
        return certificate_sha256(self._chain_pem)

    @property
    def sessions(self) -> set[Session]:
        return set(self._sessions)

    @property
    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    # ------------------------------------------------------------------
    # Life

    async def __aenter__(self) -> Server:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                # The exception leaving the block is the caller's: the task
                # group must not wrap it into an ExceptionGroup.
                await task_group.__aexit__(None, None, None)
        return None

    async def _start(self) -> None:
        if self._started:
            raise RuntimeError("a Server starts once")
        self._started = True
        config = self.config
        try:
            backend = get_backend(config.backend)
        except BackendError as exc:
            raise BackendUnavailable(str(exc)) from exc
        pair = config.certificate()
        if pair is None:
            self.certificate = generate_dev_certificate(_hosts_for(config.host))
            pair = (self.certificate.cert_pem, self.certificate.key_pem)
            logger.info(
                "anywt server: generated a local-development certificate, SHA-256 %s",
                self.certificate.sha256_hex,
            )
        self._chain_pem, self._key_pem = pair
        settings = QuicSettings(
            is_client=False,
            idle_timeout=config.idle_timeout,
            max_datagram_frame_size=config.max_datagram_frame_size,
            max_stream_data=config.limits.stream_receive_buffer,
            max_data=4 * config.limits.stream_receive_buffer,
            congestion_control=config.congestion_control,
            send_queue=config.limits.send_queue,
            certificate_chain_pem=self._chain_pem,
            private_key_pem=self._key_pem,
            qlog_dir=config.resolved_qlog_dir(),
            keylog_file=config.resolved_keylog_file(),
        )
        self._backend_name = backend.name
        endpoint = await backend.open_server(
            settings,
            config.host,
            config.port,
            on_connection=self._on_connection,
            on_activity=self._on_activity,
            on_ended=self._on_ended,
        )
        self._endpoint = endpoint
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(run_shielded, endpoint)
            task_group.start_soon(self._janitor)
        except BaseException:
            endpoint.abort()
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        logger.info("anywt server listening on %s (%s)", self.url(), backend.name)

    async def serve_forever(self) -> None:
        """Run until ``aclose()`` (or cancellation)."""
        await self._closed.wait()

    async def aclose(self, code: int = 0, reason: str = "server shutting down") -> None:
        """Refuse new sessions, close the open ones with ``code``/``reason``, wait, stop."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        close_timeout = self.config.close_timeout
        try:
            for connection in list(self._connections.values()):
                _quietly(connection, connection.engine.send_goaway)
            for session in list(self._sessions):
                if not session.is_closed:
                    try:
                        await session.close(code, reason, close_connection=False)
                    except Exception:
                        logger.debug("closing %r failed", session, exc_info=True)
            with anyio.move_on_after(close_timeout):
                while self._sessions:
                    await anyio.sleep(0.01)
            # Handlers still running after the grace period are cancelled.
            for scope in list(self._handler_scopes):
                scope.cancel()
            if self._janitor_scope is not None:
                self._janitor_scope.cancel()
            async with anyio.create_task_group() as closing:
                for connection in list(self._connections.values()):
                    closing.start_soon(connection.close)
            endpoint = self._endpoint
            if endpoint is not None:
                endpoint.close()
                with anyio.move_on_after(close_timeout):
                    await endpoint.closed.wait()
                if not endpoint.closed.is_set():
                    endpoint.abort()
        finally:
            endpoint = self._endpoint
            if endpoint is not None and not endpoint.closed.is_set():
                endpoint.abort()
            self._closed.set()

    # ------------------------------------------------------------------
    # Connections

    def _on_connection(self, quic: BackendConnection) -> None:
        config = self.config
        engine = WebTransportEngine(
            quic,
            is_client=False,
            config=config.engine_config(max_sessions=config.max_sessions_per_connection),
        )
        quic.engine = engine
        endpoint = self._endpoint
        assert endpoint is not None
        connection = Connection(
            quic,
            endpoint,
            is_client=False,
            backend_name=self._backend_name,
            limits=config.limits,
            close_timeout=config.close_timeout,
            remote_address=getattr(quic, "remote_address", None),
            on_request=self._on_request,
        )
        self._connections[id(quic)] = connection
        engine.initialize(anyio.current_time())
        if self._closing or len(self._connections) > config.max_connections:
            self.connections_refused += 1
            # QUIC's CONNECTION_REFUSED: try again later.
            quic.close_transport(0x02, "server busy" if not self._closing else "shutting down")

    def _on_activity(self, quic: BackendConnection, now: float) -> None:
        connection = self._connections.get(id(quic))
        if connection is not None:
            connection._activity(now)

    def _on_ended(self, quic: BackendConnection) -> None:
        connection = self._connections.pop(id(quic), None)
        if connection is not None:
            connection._ended()

    async def _janitor(self) -> None:
        """Close connections that carry no session for longer than the handshake timeout."""
        with anyio.CancelScope() as scope:
            self._janitor_scope = scope
            await self._janitor_loop()

    async def _janitor_loop(self) -> None:
        timeout = self.config.handshake_timeout
        while not self._closing:
            await anyio.sleep(min(1.0, timeout / 2))
            self._sweep_idle_connections(anyio.current_time(), timeout)

    def _sweep_idle_connections(self, now: float, timeout: float) -> None:
        """Close connections that have had no session for ``timeout`` seconds.

        A method of its own so the loop keeps no connection alive between sweeps.
        """
        for connection in list(self._connections.values()):
            if connection.has_live_sessions() or connection.is_closed:
                connection.idle_since = math.inf
                continue
            since = connection.idle_since
            if since == math.inf:
                connection.idle_since = now
            elif now - since > timeout:
                logger.info("closing %r: no session for %.1f s", connection, timeout)
                _quietly(connection, connection.engine.close, H3ErrorCode.H3_NO_ERROR, "idle")

    # ------------------------------------------------------------------
    # Sessions

    def _on_request(self, connection: Connection, event: ev.SessionRequested) -> None:
        request = SessionRequest(
            path=event.path,
            authority=event.authority,
            origin=event.origin,
            headers={
                name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers
            },
            protocols=event.protocols,
            draft=event.dialect.label,
            remote_address=connection.remote_address,
            session_id=event.session_id,
        )
        status = self._check_request(request)
        if status is not None:
            self._reject(connection, request, status)
            return
        assert self._task_group is not None
        self._task_group.start_soon(self._admit, connection, request, event)

    def _check_request(self, request: SessionRequest) -> int | None:
        config = self.config
        if self._closing:
            return 503
        if self._route(request.path) is None:
            return 404
        if config.origins is not None and request.origin not in config.origins:
            return 403
        live = sum(1 for session in self._sessions if not session.is_closed)
        if live >= config.max_sessions:
            return 429
        return None

    def _route(self, path: str) -> Handler | None:
        if self._routes is None:
            return self._default
        return self._routes.get(path.split("?", 1)[0])

    def _reject(self, connection: Connection, request: SessionRequest, status: int) -> None:
        self.sessions_rejected += 1
        logger.info("refusing session %s%s with %d", request.authority, request.path, status)
        _quietly(connection, connection.engine.reject, request.session_id, status)

    async def _admit(
        self, connection: Connection, request: SessionRequest, event: ev.SessionRequested
    ) -> None:
        if self._process_request is not None:
            try:
                verdict = self._process_request(request)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except Exception:
                logger.exception("process_request failed; refusing the session")
                verdict = 500
            if verdict is not None:
                self._reject(connection, request, int(verdict))
                return
        protocol = self._choose_protocol(request)
        handler = self._route(request.path)
        assert handler is not None
        session = Session(
            connection,
            request.session_id,
            is_client=False,
            path=request.path,
            authority=request.authority,
            origin=request.origin,
            headers=event.headers,
            protocols=request.protocols,
        )
        connection.add_session(session)
        try:
            connection._engine_call(connection.engine.accept, request.session_id, protocol=protocol)
        except Exception as exc:
            logger.info("cannot accept session %d: %s", request.session_id, exc)
            return
        self.sessions_accepted += 1
        self._sessions.add(session)
        scope = anyio.CancelScope()
        self._handler_scopes.add(scope)
        try:
            with scope:
                await handler(session)
        except Exception:
            logger.exception("session handler for %s failed", request.path)
        finally:
            self._handler_scopes.discard(scope)
            self._sessions.discard(session)
            if not session.is_closed and not connection.is_closed:
                with anyio.CancelScope(shield=True):
                    try:
                        await session.close(close_connection=False)
                    except Exception:
                        logger.debug("closing %r failed", session, exc_info=True)

    def _choose_protocol(self, request: SessionRequest) -> str | None:
        if self._select_protocol is not None:
            chosen = self._select_protocol(request)
            if chosen is not None and chosen not in request.protocols:
                raise ValueError(
                    f"select_protocol chose {chosen!r}, which the client did not offer"
                )
            return chosen
        for protocol in self.config.protocols:
            if protocol in request.protocols:
                return protocol
        return None


def _quietly(connection: Connection, method: Callable[..., Any], *args: Any) -> None:
    try:
        connection._engine_call(method, *args)
    except (EngineClosed, KeyError, ValueError) as exc:
        logger.debug("%s ignored: %s", getattr(method, "__name__", method), exc)


def _hosts_for(host: str) -> tuple[str, ...]:
    hosts = ["127.0.0.1", "::1", "localhost"]
    if host not in hosts and host not in ("0.0.0.0", "::"):
        hosts.insert(0, host)
    return tuple(hosts)


async def serve(
    handler: Handler | Mapping[str, Handler],
    host: str = "127.0.0.1",
    port: int = 4433,
    *,
    task_status: TaskStatus[Server] = anyio.TASK_STATUS_IGNORED,
    process_request: RequestHook | None = None,
    **options: Any,
) -> None:
    """Serve until cancelled; for ``await task_group.start(serve, handler, ...)``.

    ``task_status.started(server)`` reports the running ``Server`` (its port,
    URL and certificate hash).
    """
    server = Server(handler, process_request=process_request, host=host, port=port, **options)
    async with server:
        task_status.started(server)
        await server.serve_forever()
