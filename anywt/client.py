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

from ._util import spawn_detached
from .backends.base import BackendError, Driver, QuicSettings, get_backend
from .config import ClientConfig
from .connection import Connection
from .core.engine import WebTransportEngine
from .exceptions import (
    BackendUnavailable,
    CertificateError,
    ConnectError,
    HandshakeTimeout,
    InvalidURL,
)
from .session import Session

__all__ = ["connect", "Connect", "parse_url"]

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


class _ClientRun:
    """Everything one client connection needs: socket, endpoint, engine, session."""

    def __init__(self, url: str, config: ClientConfig) -> None:
        self.url = parse_url(url)
        self.config = config
        self.driver: Driver | None = None
        self.connection: Connection | None = None
        self.session: Session | None = None

    async def open(self) -> None:
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
        now = anyio.current_time()
        engine = WebTransportEngine(
            quic, is_client=True, config=config.engine_config(max_sessions=1)
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
        engine.initialize(now)
        session_id = engine.connect(
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
        self.session = session
        driver.request_transmit(quic)

    async def wait_ready(self) -> Session:
        session = self.session
        connection = self.connection
        assert session is not None and connection is not None
        timeout = self.config.connect_timeout
        try:
            with anyio.fail_after(timeout):
                await session._ready.wait()
        except TimeoutError:
            raise HandshakeTimeout(
                f"no WebTransport session with {self.url.authority} within {timeout:g} s"
            ) from None
        if session._rejected is not None:
            raise session._rejected
        if not session.is_ready:
            reason = connection.close_reason or "the connection closed before the session opened"
            code = connection.close_error_code
            if "certificate" in reason.lower() or code == 0x12A:
                raise CertificateError(
                    f"TLS with {self.url.authority} failed: {reason}", error_code=code
                )
            raise ConnectError(
                f"cannot open a session with {self.url.authority}: {reason}", error_code=code
            )
        return session

    async def shutdown(self) -> None:
        """Close the session and connection gracefully, then stop the endpoint."""
        session = self.session
        connection = self.connection
        endpoint = self.driver
        if endpoint is None:
            return
        with anyio.CancelScope(shield=True):
            if session is not None and connection is not None and not connection.is_closed:
                try:
                    await session.close(close_connection=True)
                except Exception:
                    logger.debug("closing the session failed", exc_info=True)
            endpoint.close()
            with anyio.move_on_after(self.config.close_timeout):
                await endpoint.closed.wait()
            if not endpoint.closed.is_set():
                endpoint.abort()


class Connect:
    """What ``connect()`` returns: await it, or use it as an async context manager."""

    def __init__(self, url: str, config: ClientConfig) -> None:
        self._run = _ClientRun(url, config)
        self._task_group: TaskGroup | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._open_detached().__await__()

    async def _open_detached(self) -> Session:
        run = self._run
        await run.open()
        endpoint = run.driver
        assert endpoint is not None
        spawn_detached(endpoint.run, name=f"anywt client {run.url.authority}")
        try:
            return await run.wait_ready()
        except BaseException:
            await run.shutdown()
            raise

    async def __aenter__(self) -> Session:
        run = self._run
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await run.open()
            assert run.driver is not None
            await task_group.start(run.driver.run)
            return await run.wait_ready()
        except BaseException as exc:
            await run.shutdown()
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
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
            await self._run.shutdown()
        finally:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(exc_type, exc, tb)
        return None


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
