"""``anywt.connect``: open a WebTransport session to a server.

Both forms work::

    async with anywt.connect("https://127.0.0.1:4433/echo") as session:
        ...                                   # the connection's task lives in this block

    session = await anywt.connect("https://127.0.0.1:4433/echo")
    ...
    await session.close()                     # ends the connection and its task

The ``async with`` form is the structured one (trio's rule: no task outlives
its block).  The ``await`` form drives the connection from a task that ends
when the session's connection closes.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup

from ._util import run_shielded, spawn_detached
from .backends.base import BackendError, Driver, QuicSettings, get_backend
from .config import ClientConfig
from .connection import Connection
from .core.engine import WebTransportEngine
from .core.errors import H3ErrorCode
from .core.errors import SessionLimitReached as EngineSessionLimitReached
from .exceptions import (
    BackendUnavailable,
    CertificateError,
    ConnectError,
    HandshakeTimeout,
    InvalidURL,
    SessionLimitReached,
    SessionRejected,
)
from .session import Session

__all__ = ["connect", "Client", "Connect", "parse_url"]

logger = logging.getLogger("anywt.client")


@dataclass(frozen=True, slots=True)
class ParsedURL:
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> ParsedURL:
    """Split an ``https://`` URL into host, port and path (with its query)."""
    if not isinstance(url, str):
        raise InvalidURL(f"the URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme != "https":
        raise InvalidURL(
            f"WebTransport URLs are https://, not {parts.scheme or 'scheme-less'}: {url!r}"
        )
    if not parts.hostname:
        raise InvalidURL(f"the URL {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidURL("WebTransport URLs cannot carry credentials")
    if parts.fragment:
        raise InvalidURL("WebTransport URLs cannot have a fragment")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return ParsedURL(parts.hostname, port or 443, path)


async def _resolve(host: str, port: int) -> tuple[str, int]:
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    if not infos:
        raise ConnectError(f"cannot resolve {host!r}")
    address = infos[0][4]
    return (str(address[0]), int(address[1]))


class _Link:
    """One client QUIC connection: its driver, engine and ``Connection``."""

    def __init__(self, url: ParsedURL, config: ClientConfig) -> None:
        self.url = url
        self.config = config
        self.driver: Driver | None = None
        self.connection: Connection | None = None

    async def open(self, *, max_sessions: int) -> Connection:
        config = self.config
        url = self.url
        try:
            backend = get_backend(config.backend)
        except BackendError as exc:
            raise BackendUnavailable(str(exc)) from exc
        remote = await _resolve(url.host, url.port)
        settings = QuicSettings(
            is_client=True,
            idle_timeout=config.idle_timeout,
            max_datagram_frame_size=config.max_datagram_frame_size,
            max_stream_data=config.limits.stream_receive_buffer,
            max_data=4 * config.limits.stream_receive_buffer,
            congestion_control=config.congestion_control,
            send_queue=config.limits.send_queue,
            server_name=config.server_name or url.host,
            verify=config.verify,
            cafile=config.resolved_cafile(),
            cadata=config.cadata,
            server_certificate_hashes=config.pinned_hashes(),
            qlog_dir=config.resolved_qlog_dir(),
            keylog_file=config.resolved_keylog_file(),
        )

        def on_activity(conn: Any, at: float) -> None:
            if self.connection is not None:
                self.connection._activity(at)

        def on_ended(conn: Any) -> None:
            if self.connection is not None:
                self.connection._ended()
            if self.driver is not None:
                self.driver.close()

        driver, quic = await backend.open_client(
            settings, remote, on_activity=on_activity, on_ended=on_ended
        )
        self.driver = driver
        engine = WebTransportEngine(
            quic, is_client=True, config=config.engine_config(max_sessions=max_sessions)
        )
        quic.engine = engine
        connection = Connection(
            quic,
            driver,
            is_client=True,
            backend_name=backend.name,
            limits=config.limits,
            close_timeout=config.close_timeout,
            remote_address=remote,
        )
        self.connection = connection
        engine.initialize(anyio.current_time())
        driver.request_transmit(quic)
        return connection

    def start_session(self, url: ParsedURL) -> Session:
        """Send a CONNECT for ``url`` on this connection (it waits for SETTINGS if needed)."""
        connection = self.connection
        assert connection is not None
        config = self.config
        session_id = connection._engine_call(
            connection.engine.connect,
            authority=url.authority,
            path=url.path,
            origin=config.origin,
            headers=config.headers,
            protocols=config.protocols,
        )
        session = Session(
            connection,
            session_id,
            is_client=True,
            path=url.path,
            authority=url.authority,
            origin=config.origin,
            headers=config.headers,
            protocols=config.protocols,
        )
        connection.add_session(session)
        return session

    async def wait_ready(self, session: Session) -> Session:
        connection = self.connection
        assert connection is not None
        timeout = self.config.connect_timeout
        authority = self.url.authority
        try:
            with anyio.fail_after(timeout):
                await session._ready.wait()
        except TimeoutError:
            raise HandshakeTimeout(
                f"no WebTransport session with {authority} within {timeout:g} s"
            ) from None
        if session._rejected is not None:
            raise session._rejected
        if not session.is_ready:
            reason = connection.close_reason or "the connection closed before the session opened"
            code = connection.close_error_code
            if "certificate" in reason.lower() or code == 0x12A:
                raise CertificateError(f"TLS with {authority} failed: {reason}", error_code=code)
            if session.close_info is not None and session.close_info.error_code in (
                H3ErrorCode.H3_REQUEST_REJECTED,
                H3ErrorCode.H3_REQUEST_CANCELLED,
            ):
                raise SessionLimitReached(f"{authority} refused another session on this connection")
            raise ConnectError(f"cannot open a session with {authority}: {reason}", error_code=code)
        return session

    def usable_for_another_session(self) -> bool:
        """Open, no GOAWAY, and room: flow control allows several sessions, else none is open."""
        connection = self.connection
        if connection is None or connection.is_closed or connection.goaway_received:
            return False
        engine = connection.engine
        if not engine.settings_received:
            return False
        return engine.flow_control or not connection.has_live_sessions()

    async def shutdown(self, session: Session | None = None) -> None:
        """Close ``session`` (if given), the connection gracefully, then stop the driver."""
        connection = self.connection
        driver = self.driver
        if driver is None:
            return
        with anyio.CancelScope(shield=True):
            if (
                connection is not None
                and not connection.is_closed
                and not connection.handshake_done
            ):
                # Nobody answered: there is no one to close gracefully with.
                driver.abort()
                return
            if connection is not None and not connection.is_closed:
                try:
                    if session is not None:
                        await session.close(close_connection=True)
                    else:
                        for open_session in connection.sessions:
                            if not open_session.is_closed:
                                await open_session.close(close_connection=False)
                        await connection.close()
                except Exception:
                    logger.debug("closing the connection failed", exc_info=True)
            driver.close()
            with anyio.move_on_after(self.config.close_timeout):
                await driver.closed.wait()
            if not driver.closed.is_set():
                driver.abort()


class Connect:
    """What ``connect()`` returns: await it, or use it as an async context manager."""

    def __init__(self, url: str, config: ClientConfig) -> None:
        self._link = _Link(parse_url(url), config)
        self._session: Session | None = None
        self._task_group: TaskGroup | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._open_detached().__await__()

    async def _open_detached(self) -> Session:
        link = self._link
        await link.open(max_sessions=1)
        driver = link.driver
        assert driver is not None
        spawn_detached(driver.run, name=f"anywt client {link.url.authority}")
        try:
            return await link.wait_ready(link.start_session(link.url))
        except BaseException:
            await link.shutdown()
            raise

    async def __aenter__(self) -> Session:
        link = self._link
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await link.open(max_sessions=1)
            assert link.driver is not None
            await task_group.start(run_shielded, link.driver)
            self._session = await link.wait_ready(link.start_session(link.url))
            return self._session
        except BaseException:
            await link.shutdown()
            task_group.cancel_scope.cancel()
            # Raise the error itself, not an ExceptionGroup of the hidden task group.
            await task_group.__aexit__(None, None, None)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        try:
            await self._link.shutdown(self._session)
        finally:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        return None


class Client:
    """Opens sessions, sharing QUIC connections between them where the server allows.

    ::

        async with anywt.Client(server_certificate_hashes=[digest]) as client:
            first = await client.connect("https://127.0.0.1:4433/a")
            second = await client.connect("https://127.0.0.1:4433/b")  # same connection

    Sessions to the same host and port share a connection once it has
    negotiated session flow control (drafts 13+; then the server may carry
    several sessions per connection); otherwise, or when the server refuses
    another session, each gets a connection of its own.  The connections'
    tasks live in the client's block; leaving it closes everything.
    """

    def __init__(self, *, config: ClientConfig | None = None, **options: Any) -> None:
        if config is None:
            config = ClientConfig.from_kwargs(**options)
        elif options:
            raise TypeError("pass either config= or keyword options, not both")
        self.config = config
        self._links: dict[tuple[str, int], list[_Link]] = {}
        self._task_group: TaskGroup | None = None
        self._closed = False

    @property
    def connections(self) -> list[Connection]:
        """The live QUIC connections of this client."""
        return [
            link.connection
            for links in self._links.values()
            for link in links
            if link.connection is not None and not link.connection.is_closed
        ]

    async def __aenter__(self) -> Client:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        try:
            await self.aclose()
        finally:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        return None

    async def connect(self, url: str) -> Session:
        """A new session to ``url``, on a shared connection when one can carry it."""
        if self._task_group is None or self._closed:
            raise RuntimeError("use the Client as `async with anywt.Client(...) as client`")
        parsed = parse_url(url)
        key = (parsed.host, parsed.port)
        links = self._links.setdefault(key, [])
        links[:] = [
            link for link in links if link.connection is not None and not link.connection.is_closed
        ]
        for link in links:
            if not link.usable_for_another_session():
                continue
            try:
                session = link.start_session(parsed)
            except (SessionLimitReached, EngineSessionLimitReached):
                continue
            try:
                return await link.wait_ready(session)
            except SessionLimitReached:
                continue
            except SessionRejected as exc:
                if exc.status != 429:
                    raise
        link = _Link(parsed, self.config)
        try:
            connection = await link.open(max_sessions=self.config.max_sessions_per_connection)
            assert link.driver is not None
            await self._task_group.start(run_shielded, link.driver)
            connection.close_when_unused = False
            links.append(link)
            return await link.wait_ready(link.start_session(parsed))
        except BaseException:
            await link.shutdown()
            raise

    async def aclose(self) -> None:
        """Close every session and connection of this client."""
        if self._closed:
            return
        self._closed = True
        async with anyio.create_task_group() as closing:
            for links in self._links.values():
                for link in links:
                    closing.start_soon(link.shutdown)
        self._links.clear()


def connect(
    url: str,
    *,
    backend: str | None = None,
    config: ClientConfig | None = None,
    **options: Any,
) -> Connect:
    """Open a WebTransport session to ``url`` (``https://host:port/path``).

    Options are the fields of ``ClientConfig`` (``server_certificate_hashes``,
    ``verify``, ``cafile``, ``protocols``, ``headers``, ``origin``,
    ``connect_timeout``, ``idle_timeout``, ``qlog_dir``, ``keylog_file``...);
    ``backend`` picks the QUIC stack ("aioquic", "qh3").  Raises
    ``InvalidURL``, ``ConnectError`` (``CertificateError``,
    ``HandshakeTimeout``) or ``SessionRejected``.
    """
    if config is None:
        config = ClientConfig.from_kwargs(**options)
    elif options:
        raise TypeError("pass either config= or keyword options, not both")
    if backend is not None and config.backend != backend:
        config = dataclasses.replace(config, backend=backend)
    return Connect(url, config)
