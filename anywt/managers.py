"""``SessionManager`` and ``ConnectionManager``: keep track of many sessions or connections.

::

    async with anywt.SessionManager(max_sessions=1000, idle_timeout=300) as manager:
        async def handler(session: anywt.Session) -> None:
            await manager.add_session(session)     # SessionLimitReached past 1000
            ...

        async with anywt.Server(handler, port=4433) as server:
            await server.serve_forever()

A manager is an async context manager that owns its background work (an
anyio task group entered by ``async with``): a task per managed resource
that drops it the moment it closes, and a periodic check (every
``cleanup_interval`` seconds) that closes the resources silent for longer
than ``idle_timeout``.  Leaving the ``async with`` calls ``shutdown()``,
which closes every resource still managed; no task outlives the block.
Like any task group, enter and leave it in one task, and nest other task
groups (``anywt.connect()`` blocks included) inside it or around it, not
across it.

Both name sets of the session managers users know work unchanged: the newer
generic ones (``get_resource``, ``get_all_resources``,
``cleanup_closed_resources``, ``add_session(session=...)``) and the older
ones (``get_session``, ``get_all_sessions``, ``get_session_count``,
``cleanup_closed_sessions``, ``close_all_sessions``, ``create()``).  Methods
that were coroutines there are coroutines here; ``get_session_count()``,
``has_session()``, ``len()`` and ``in`` are plain calls.  Identifiers may be
passed positionally or by their old keyword.

Closing codes and reasons are class attributes (override them in a subclass):

=====================  ==========================  ====================================
why                    session (WT_CLOSE_SESSION)  connection (HTTP/3 error code)
=====================  ==========================  ====================================
over the limit         429, "session limit         H3_NO_ERROR (0x100), "connection
                       reached"                    limit reached"
idle                   0, "idle timeout"           H3_NO_ERROR, "idle timeout"
``shutdown()``         0, "session manager         H3_NO_ERROR, "connection manager
                       shutting down"              shutting down"
=====================  ==========================  ====================================
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import anyio
from anyio.abc import TaskGroup

from .connection import Connection
from .core.errors import H3ErrorCode
from .exceptions import (
    ConnectionClosed,
    ConnectionLimitReached,
    SessionClosed,
    SessionLimitReached,
)
from .session import Session, SessionState

__all__ = ["SessionManager", "ConnectionManager", "ConnectionLimitReached"]

logger = logging.getLogger("anywt.managers")

_K = TypeVar("_K", bound=Hashable)
_R = TypeVar("_R")

#: Default limits and intervals (those of the older managers users know).
DEFAULT_MAX_SESSIONS = 10000
DEFAULT_MAX_CONNECTIONS = 3000
DEFAULT_SESSION_CLEANUP_INTERVAL = 60.0
DEFAULT_CONNECTION_CLEANUP_INTERVAL = 30.0
DEFAULT_CONNECTION_IDLE_TIMEOUT = 60.0
#: How long one close may take during cleanup and shutdown before it is given up.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: When no ``cleanup_interval`` is given, idle checks run at least this often per timeout.
_CHECKS_PER_IDLE_TIMEOUT = 4


@dataclass(eq=False, slots=True)
class _Entry(Generic[_K, _R]):
    """One managed resource and the cancel scope of the task that watches it close."""

    key: _K
    resource: _R
    watcher: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class _ResourceManager(Generic[_K, _R]):
    """What both managers share: storage, limit, watchers, idle checks, stats, shutdown.

    Subclasses say how to identify, inspect and close their kind of resource.
    """

    _kind: ClassVar[str] = "resource"
    _resource_type: ClassVar[type]
    _default_cleanup_interval: ClassVar[float] = DEFAULT_SESSION_CLEANUP_INTERVAL
    #: The code/reason a resource refused at the limit is closed with.
    LIMIT_CLOSE_CODE: ClassVar[int] = 0
    LIMIT_CLOSE_REASON: ClassVar[str] = "limit reached"
    #: The code/reason an idle resource is closed with.
    IDLE_CLOSE_CODE: ClassVar[int] = 0
    IDLE_CLOSE_REASON: ClassVar[str] = "idle timeout"
    #: The code/reason ``shutdown()`` closes what is left with.
    SHUTDOWN_CLOSE_CODE: ClassVar[int] = 0
    SHUTDOWN_CLOSE_REASON: ClassVar[str] = "manager shutting down"

    def __init__(
        self,
        max_resources: int | None,
        idle_timeout: float | None,
        cleanup_interval: float | None,
        close_timeout: float,
    ) -> None:
        if max_resources is None:
            max_resources = 0
        if isinstance(max_resources, bool) or not isinstance(max_resources, int):
            raise TypeError(f"max_{self._kind}s must be an int or None, not {max_resources!r}")
        if idle_timeout is not None:
            idle_timeout = float(idle_timeout)
            if math.isnan(idle_timeout):
                raise ValueError("idle_timeout must be a number of seconds, not NaN")
            if idle_timeout <= 0 or math.isinf(idle_timeout):
                idle_timeout = None
        if cleanup_interval is None:
            cleanup_interval = self._default_cleanup_interval
            if idle_timeout is not None:
                cleanup_interval = min(cleanup_interval, idle_timeout / _CHECKS_PER_IDLE_TIMEOUT)
        else:
            cleanup_interval = float(cleanup_interval)
            if not cleanup_interval > 0 or math.isinf(cleanup_interval):
                raise ValueError(
                    f"cleanup_interval must be a positive number of seconds, not {cleanup_interval}"
                )
        close_timeout = float(close_timeout)
        if not close_timeout > 0:
            raise ValueError(f"close_timeout must be positive, not {close_timeout}")
        self._max = max(0, max_resources)
        self._idle_timeout = idle_timeout
        self._cleanup_interval = cleanup_interval
        self._close_timeout = close_timeout
        # Keyed by id(resource): ids of sessions repeat across connections.
        self._entries: dict[int, _Entry[_K, _R]] = {}
        self._by_key: dict[_K, list[_Entry[_K, _R]]] = {}
        self._task_group: TaskGroup | None = None
        self._loop_scope: anyio.CancelScope | None = None
        self._shutdown_done: anyio.Event | None = None
        self._state = "new"  # new -> active -> closing -> closed
        self._running_tasks = 0
        self._total_created = 0
        self._total_closed = 0
        self._max_concurrent = 0
        self._idle_closed = 0
        self._rejected_at_limit = 0

    # ------------------------------------------------------------------
    # What subclasses provide

    def _key_of(self, resource: _R) -> _K:
        raise NotImplementedError

    def _is_closed(self, resource: _R) -> bool:
        raise NotImplementedError

    def _is_active(self, resource: _R) -> bool:
        raise NotImplementedError

    def _state_of(self, resource: _R) -> str:
        raise NotImplementedError

    def _all_states(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _last_active(self, resource: _R) -> float | None:
        """Wall-clock time of the resource's last activity (None: unknown, never idle)."""
        raise NotImplementedError

    async def _wait_closed(self, resource: _R) -> None:
        raise NotImplementedError

    async def _close(self, resource: _R, code: int, reason: str) -> None:
        raise NotImplementedError

    def _check_code(self, code: int) -> None:
        raise NotImplementedError

    def _limit_error(self) -> Exception:
        raise NotImplementedError

    def _closed_error(self, resource: _R) -> Exception:
        raise NotImplementedError

    # ------------------------------------------------------------------
    # Configuration and state

    @property
    def idle_timeout(self) -> float | None:
        """Seconds without activity after which a resource is closed (None: never)."""
        return self._idle_timeout

    @property
    def cleanup_interval(self) -> float:
        """Seconds between two checks for idle (and closed) resources."""
        return self._cleanup_interval

    @property
    def is_active(self) -> bool:
        """True inside ``async with`` until ``shutdown()``: resources can be added."""
        return self._state == "active"

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: object) -> bool:
        """``session in manager`` or ``session_id in manager`` (likewise for connections)."""
        try:
            return bool(self._find(item))
        except TypeError:  # unhashable: cannot be an id
            return False

    def __repr__(self) -> str:
        limit = self._max or "unlimited"
        return f"<{type(self).__name__} {len(self)}/{limit} {self._state}>"

    # ------------------------------------------------------------------
    # Life

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"a {type(self).__name__} can be entered only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._shutdown_done = anyio.Event()
        self._loop_scope = anyio.CancelScope()
        self._state = "active"
        task_group.start_soon(self._cleanup_loop, name=f"anywt {type(self).__name__} cleanup")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        suppress: bool | None = None
        try:
            with anyio.CancelScope(shield=True):
                await self.shutdown()
        finally:
            if task_group is not None:
                self._task_group = None
                task_group.cancel_scope.cancel()
                suppress = await task_group.__aexit__(exc_type, exc, tb)
        return suppress

    async def shutdown(self) -> None:
        """Stop the checks and close every resource still managed.  Idempotent.

        Afterwards adding raises ``RuntimeError``; the getters keep working.
        """
        if self._state in ("closing", "closed"):
            if self._shutdown_done is not None:
                await self._shutdown_done.wait()
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        try:
            if self._loop_scope is not None:
                self._loop_scope.cancel()
            await self._close_all(self.SHUTDOWN_CLOSE_CODE, self.SHUTDOWN_CLOSE_REASON)
        finally:
            self._state = "closed"
            if self._shutdown_done is not None:
                self._shutdown_done.set()

    # ------------------------------------------------------------------
    # Adding and removing

    async def add_resource(self, resource: _R) -> _K:
        """Manage ``resource``; returns its id.

        Raises ``RuntimeError`` outside ``async with`` or after ``shutdown()``
        (the resource is then closed), the kind's closed error if it is
        already closed, and the kind's limit error when the manager is full
        (the resource is then closed with ``LIMIT_CLOSE_CODE`` /
        ``LIMIT_CLOSE_REASON``).  Adding a managed resource again does nothing.
        """
        if not isinstance(resource, self._resource_type):
            raise TypeError(
                f"a {type(self).__name__} manages {self._resource_type.__name__} objects, "
                f"not {type(resource).__name__}"
            )
        await anyio.lowlevel.checkpoint()
        name = type(self).__name__
        if self._state == "new":
            raise RuntimeError(f"the {name} is not active: use it as `async with {name}(...)`")
        if self._state != "active":
            await self._close_quietly(
                resource, self.SHUTDOWN_CLOSE_CODE, self.SHUTDOWN_CLOSE_REASON
            )
            raise RuntimeError(f"the {name} is shut down")
        existing = self._entries.get(id(resource))
        if existing is not None and existing.resource is resource:
            return existing.key
        if self._is_closed(resource):
            raise self._closed_error(resource)
        if self._max:
            self._sweep_closed()
            if len(self._entries) >= self._max:
                self._rejected_at_limit += 1
                logger.info("%s full (%d): closing %r", name, self._max, resource)
                await self._close_quietly(resource, self.LIMIT_CLOSE_CODE, self.LIMIT_CLOSE_REASON)
                raise self._limit_error()
        key = self._key_of(resource)
        entry: _Entry[_K, _R] = _Entry(key, resource)
        self._entries[id(resource)] = entry
        self._by_key.setdefault(key, []).append(entry)
        self._total_created += 1
        self._max_concurrent = max(self._max_concurrent, len(self._entries))
        assert self._task_group is not None
        self._task_group.start_soon(self._watch, entry)
        return key

    async def remove_resource(self, resource_id: _K | _R) -> _R | None:
        """Stop managing a resource (without closing it); returns it, or None if unknown."""
        await anyio.lowlevel.checkpoint()
        entries = self._find(resource_id)
        if not entries:
            return None
        entry = entries[0]
        self._forget(entry)
        return entry.resource

    async def close_resource(self, resource_id: _K | _R, code: int, reason: str = "") -> bool:
        """Close a managed resource and stop managing it; False if it is unknown."""
        self._check_code(code)
        entries = self._find(resource_id)
        if not entries:
            await anyio.lowlevel.checkpoint()
            return False
        entry = entries[0]
        self._forget(entry)
        await self._close_quietly(entry.resource, code, reason)
        return True

    async def close_all_resources(self, code: int, reason: str = "") -> int:
        """Close every managed resource (concurrently); returns how many."""
        self._check_code(code)
        return await self._close_all(code, reason)

    async def cleanup_closed_resources(self) -> int:
        """Drop the resources that are closed; returns how many (they also go on their own)."""
        await anyio.lowlevel.checkpoint()
        return self._sweep_closed()

    async def cleanup_closed(self) -> int:
        """Same as ``cleanup_closed_resources()``."""
        return await self.cleanup_closed_resources()

    # ------------------------------------------------------------------
    # Looking up

    async def get_resource(self, resource_id: _K | _R) -> _R | None:
        """The managed resource with that id (or that object), or None."""
        await anyio.lowlevel.checkpoint()
        entries = self._find(resource_id)
        return entries[0].resource if entries else None

    async def get_all_resources(self) -> list[_R]:
        """Every managed resource, in the order they were added."""
        await anyio.lowlevel.checkpoint()
        return [entry.resource for entry in self._entries.values()]

    async def get_stats(self) -> dict[str, Any]:
        """Counters and the current picture (see the subclass for the key list)."""
        await anyio.lowlevel.checkpoint()
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """``get_stats()`` without awaiting."""
        by_state = dict.fromkeys(self._all_states(), 0)
        active = 0
        for entry in self._entries.values():
            resource = entry.resource
            state = self._state_of(resource)
            by_state[state] = by_state.get(state, 0) + 1
            if self._is_active(resource):
                active += 1
        return {
            "total_created": self._total_created,
            "total_closed": self._total_closed,
            "current_count": len(self._entries),
            "max_concurrent": self._max_concurrent,
            "active": active,
            "by_state": by_state,
            "states": dict(by_state),
            "idle_closed": self._idle_closed,
            "rejected_at_limit": self._rejected_at_limit,
            f"max_{self._kind}s": self._max,
            "idle_timeout": self._idle_timeout,
            "cleanup_interval": self._cleanup_interval,
        }

    def _find(self, ident: object) -> list[_Entry[_K, _R]]:
        if isinstance(ident, self._resource_type):
            entry = self._entries.get(id(ident))
            return [entry] if entry is not None and entry.resource is ident else []
        return self._by_key.get(ident, [])  # type: ignore[arg-type]

    def _resources_where(self, keep: Callable[[_R], bool]) -> list[_R]:
        return [entry.resource for entry in self._entries.values() if keep(entry.resource)]

    # ------------------------------------------------------------------
    # Inner workings

    def _forget(self, entry: _Entry[_K, _R], *, count: bool = True) -> bool:
        """Drop an entry (if still managed) and stop its watcher; count it as closed."""
        resource = entry.resource
        if self._entries.get(id(resource)) is not entry:
            return False
        del self._entries[id(resource)]
        same_key = self._by_key.get(entry.key)
        if same_key is not None:
            same_key.remove(entry)
            if not same_key:
                del self._by_key[entry.key]
        entry.watcher.cancel()
        if count:
            self._total_closed += 1
        return True

    def _sweep_closed(self) -> int:
        gone = [entry for entry in self._entries.values() if self._is_closed(entry.resource)]
        return sum(1 for entry in gone if self._forget(entry))

    def _sweep_idle(self) -> None:
        timeout = self._idle_timeout
        task_group = self._task_group
        if timeout is None or task_group is None:
            return
        now = time.time()
        for entry in list(self._entries.values()):
            resource = entry.resource
            if self._is_closed(resource):
                continue
            try:
                last = self._last_active(resource)
            except Exception:
                logger.debug("cannot tell when %r was last active", resource, exc_info=True)
                continue
            if last is None or now - last <= timeout:
                continue
            logger.info("closing %r: idle for %.1f s", resource, now - last)
            self._forget(entry)
            self._idle_closed += 1
            task_group.start_soon(
                self._close_quietly, resource, self.IDLE_CLOSE_CODE, self.IDLE_CLOSE_REASON
            )

    async def _close_all(self, code: int, reason: str) -> int:
        entries = list(self._entries.values())
        for entry in entries:
            self._forget(entry)
        if entries:
            async with anyio.create_task_group() as closing:
                for entry in entries:
                    closing.start_soon(self._close_quietly, entry.resource, code, reason)
        else:
            await anyio.lowlevel.checkpoint()
        return len(entries)

    async def _close_quietly(self, resource: _R, code: int, reason: str) -> None:
        """Close one resource, bounded in time and shielded; failures are logged."""
        self._running_tasks += 1
        try:
            with anyio.move_on_after(self._close_timeout, shield=True) as scope:
                try:
                    await self._close(resource, code, reason)
                except Exception:
                    logger.debug("closing %r failed", resource, exc_info=True)
            if scope.cancelled_caught:
                logger.warning(
                    "closing %r took longer than %.1f s; gave up", resource, self._close_timeout
                )
        finally:
            self._running_tasks -= 1

    async def _watch(self, entry: _Entry[_K, _R]) -> None:
        """Drop the entry as soon as its resource closes."""
        self._running_tasks += 1
        try:
            with entry.watcher:
                await self._wait_closed(entry.resource)
                self._forget(entry)
        except Exception:
            logger.exception("watching %r failed", entry.resource)
        finally:
            self._running_tasks -= 1

    async def _cleanup_loop(self) -> None:
        self._running_tasks += 1
        try:
            assert self._loop_scope is not None
            with self._loop_scope:
                while True:
                    await anyio.sleep(self._cleanup_interval)
                    try:
                        self._sweep_closed()
                        self._sweep_idle()
                    except Exception:
                        logger.exception("%s cleanup failed", type(self).__name__)
        finally:
            self._running_tasks -= 1


class SessionManager(_ResourceManager[int, Session]):
    """Tracks sessions: a limit, removal when they close, idle closing, stats, shutdown.

    ``max_sessions`` (None or <= 0: no limit) bounds how many are managed at
    once; adding past it closes the session with ``LIMIT_CLOSE_CODE`` (429) /
    ``LIMIT_CLOSE_REASON`` and raises ``anywt.SessionLimitReached``.

    ``idle_timeout`` (seconds; None or <= 0, the default: never) closes a
    session with no activity for that long: activity is stream data read
    or written, datagrams sent or received (``Session.last_active``).
    It is closed with ``IDLE_CLOSE_CODE`` (0) / ``IDLE_CLOSE_REASON``
    ("idle timeout") at the first check past the timeout, so within
    ``idle_timeout + cleanup_interval``.

    ``cleanup_interval`` (seconds; ``session_cleanup_interval`` is its older
    name) is how often the manager checks; by default 60 s, or a quarter of
    ``idle_timeout`` when that is shorter.  Closed sessions do not wait for
    it: they leave the moment they close.

    Session ids are per connection, so a server's sessions on different
    connections may share one; lookups by id then give the earliest added.
    Every method taking a ``session_id`` also takes the ``Session`` itself,
    which is always exact.

    ``get_stats()`` keys: ``total_created``, ``total_closed`` (every session
    that left the manager: closed, removed, idle, shut down),
    ``current_count``, ``max_concurrent``, ``active`` / ``active_sessions``
    (connected or draining), ``by_state`` / ``states`` (state value -> count,
    every state present), ``idle_closed``, ``rejected_at_limit``,
    ``max_sessions``, ``idle_timeout``, ``cleanup_interval``.
    """

    _kind = "session"
    _resource_type = Session
    _default_cleanup_interval = DEFAULT_SESSION_CLEANUP_INTERVAL
    LIMIT_CLOSE_CODE = 429
    LIMIT_CLOSE_REASON = "session limit reached"
    IDLE_CLOSE_CODE = 0
    IDLE_CLOSE_REASON = "idle timeout"
    SHUTDOWN_CLOSE_CODE = 0
    SHUTDOWN_CLOSE_REASON = "session manager shutting down"

    def __init__(
        self,
        max_sessions: int | None = DEFAULT_MAX_SESSIONS,
        idle_timeout: float | None = None,
        cleanup_interval: float | None = None,
        *,
        session_cleanup_interval: float | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        if session_cleanup_interval is not None:
            if cleanup_interval is not None and cleanup_interval != session_cleanup_interval:
                raise TypeError("pass cleanup_interval or session_cleanup_interval, not both")
            cleanup_interval = session_cleanup_interval
        super().__init__(max_sessions, idle_timeout, cleanup_interval, close_timeout)

    @classmethod
    def create(
        cls,
        *,
        max_sessions: int | None = DEFAULT_MAX_SESSIONS,
        session_cleanup_interval: float | None = None,
        **options: Any,
    ) -> Self:
        """The older factory: same as calling the class."""
        return cls(
            max_sessions=max_sessions, session_cleanup_interval=session_cleanup_interval, **options
        )

    @property
    def max_sessions(self) -> int:
        """The limit (0: none)."""
        return self._max

    # Subclass hooks -------------------------------------------------------

    def _key_of(self, resource: Session) -> int:
        return resource.session_id

    def _is_closed(self, resource: Session) -> bool:
        return resource.is_closed

    def _is_active(self, resource: Session) -> bool:
        return resource.state in (SessionState.CONNECTED, SessionState.DRAINING)

    def _state_of(self, resource: Session) -> str:
        return str(resource.state.value)

    def _all_states(self) -> tuple[str, ...]:
        return tuple(state.value for state in SessionState)

    def _last_active(self, resource: Session) -> float | None:
        return resource.last_active

    async def _wait_closed(self, resource: Session) -> None:
        await resource.wait_closed()

    async def _close(self, resource: Session, code: int, reason: str) -> None:
        await resource.close(code, reason)

    def _check_code(self, code: int) -> None:
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError(f"session close code {code} is outside 0..0xffffffff")

    def _limit_error(self) -> Exception:
        return SessionLimitReached(f"Maximum sessions ({self._max}) exceeded")

    def _closed_error(self, resource: Session) -> Exception:
        info = resource.close_info
        if info is None:
            return SessionClosed(0, "the session is closed")
        return SessionClosed(
            info.code, info.reason, error_code=info.error_code, by_peer=info.by_peer
        )

    # The names users know ---------------------------------------------------

    async def add_session(self, session: Session) -> int:
        """Manage ``session``; returns its id (``add_session(session=...)`` works too).

        Raises ``SessionLimitReached`` when full (the session is closed with
        429, "session limit reached"), ``SessionClosed`` if it already is,
        ``RuntimeError`` outside ``async with`` or after ``shutdown()``.
        """
        return await self.add_resource(session)

    async def remove_session(self, session_id: int | Session) -> Session | None:
        """Stop managing a session without closing it; returns it (None if unknown)."""
        return await self.remove_resource(session_id)

    async def get_session(self, session_id: int | Session) -> Session | None:
        """The managed session with that id, or None (older name of ``get_resource``)."""
        return await self.get_resource(session_id)

    async def get_all_sessions(self) -> list[Session]:
        """Every managed session (older name of ``get_all_resources``)."""
        return await self.get_all_resources()

    async def get_sessions_by_state(self, state: SessionState | str) -> list[Session]:
        """The managed sessions in ``state`` (a ``SessionState`` or its value)."""
        await anyio.lowlevel.checkpoint()
        wanted = SessionState(state)
        return self._resources_where(lambda session: session.state == wanted)

    async def get_active_sessions(self) -> list[Session]:
        """The managed sessions that are connected or draining."""
        await anyio.lowlevel.checkpoint()
        return self._resources_where(self._is_active)

    def has_session(self, session_id: int | Session) -> bool:
        """Whether a session with that id (or that session) is managed."""
        return session_id in self

    def get_session_count(self) -> int:
        """How many sessions are managed."""
        return len(self._entries)

    async def close_session(
        self, session_id: int | Session, code: int = 0, reason: str = ""
    ) -> bool:
        """Close a managed session with ``code``/``reason`` and drop it; False if unknown."""
        return await self.close_resource(session_id, code, reason)

    async def close_all_sessions(self, code: int = 0, reason: str = "") -> int:
        """Close every managed session (concurrently) and drop them; returns how many."""
        return await self.close_all_resources(code, reason)

    async def cleanup_closed_sessions(self) -> int:
        """Drop the closed sessions (older name of ``cleanup_closed_resources``)."""
        return await self.cleanup_closed_resources()

    def stats(self) -> dict[str, Any]:
        data = super().stats()
        data["active_sessions"] = data["active"]
        return data


class ConnectionManager(_ResourceManager[int, Connection]):
    """Tracks QUIC connections the way ``SessionManager`` tracks sessions.

    A connection's id is the value ``add_connection()`` returns (its
    ``id()``); every method also takes the ``Connection`` itself.

    ``max_connections`` (None or <= 0: no limit): adding past it closes the
    connection (H3_NO_ERROR, "connection limit reached") and raises
    ``ConnectionLimitReached``.  ``idle_timeout`` (default 60 s; None or
    <= 0: never; ``connection_idle_timeout`` is its older name) closes a
    connection that received nothing for that long (``last_activity``) with
    H3_NO_ERROR, "idle timeout".  ``cleanup_interval`` (older names
    ``connection_cleanup_interval`` and ``connection_idle_check_interval``;
    the shortest given wins) is how often it checks: by default 30 s, or a
    quarter of ``idle_timeout`` when that is shorter.

    ``get_stats()`` has the keys of ``SessionManager.get_stats()``, with
    ``max_connections`` and states "connected", "draining" (GOAWAY
    received) and "closed".
    """

    _kind = "connection"
    _resource_type = Connection
    _default_cleanup_interval = DEFAULT_CONNECTION_CLEANUP_INTERVAL
    LIMIT_CLOSE_CODE = int(H3ErrorCode.H3_NO_ERROR)
    LIMIT_CLOSE_REASON = "connection limit reached"
    IDLE_CLOSE_CODE = int(H3ErrorCode.H3_NO_ERROR)
    IDLE_CLOSE_REASON = "idle timeout"
    SHUTDOWN_CLOSE_CODE = int(H3ErrorCode.H3_NO_ERROR)
    SHUTDOWN_CLOSE_REASON = "connection manager shutting down"

    def __init__(
        self,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float | None = DEFAULT_CONNECTION_IDLE_TIMEOUT,
        cleanup_interval: float | None = None,
        *,
        connection_cleanup_interval: float | None = None,
        connection_idle_check_interval: float | None = None,
        connection_idle_timeout: float | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        intervals = [
            value
            for value in (
                cleanup_interval,
                connection_cleanup_interval,
                connection_idle_check_interval,
            )
            if value is not None
        ]
        if connection_idle_timeout is not None:
            idle_timeout = connection_idle_timeout
        super().__init__(
            max_connections, idle_timeout, min(intervals) if intervals else None, close_timeout
        )

    @classmethod
    def create(cls, **options: Any) -> Self:
        """The older factory: same as calling the class."""
        return cls(**options)

    @property
    def max_connections(self) -> int:
        """The limit (0: none)."""
        return self._max

    # Subclass hooks -------------------------------------------------------

    def _key_of(self, resource: Connection) -> int:
        return id(resource)

    def _is_closed(self, resource: Connection) -> bool:
        return resource.is_closed

    def _is_active(self, resource: Connection) -> bool:
        return not resource.is_closed

    def _state_of(self, resource: Connection) -> str:
        if resource.is_closed:
            return "closed"
        return "draining" if resource.goaway_received else "connected"

    def _all_states(self) -> tuple[str, ...]:
        return ("connected", "draining", "closed")

    def _last_active(self, resource: Connection) -> float | None:
        return resource.last_activity

    async def _wait_closed(self, resource: Connection) -> None:
        await resource.wait_closed()

    async def _close(self, resource: Connection, code: int, reason: str) -> None:
        await resource.close(code, reason)

    def _check_code(self, code: int) -> None:
        if not 0 <= code < 1 << 62:
            raise ValueError(f"connection error code {code} is outside 0..2**62-1")

    def _limit_error(self) -> Exception:
        return ConnectionLimitReached(f"Maximum connections ({self._max}) exceeded")

    def _closed_error(self, resource: Connection) -> Exception:
        return ConnectionClosed(
            "the connection is closed",
            error_code=resource.close_error_code,
            reason=resource.close_reason,
        )

    # The names users know ---------------------------------------------------

    async def add_connection(self, connection: Connection) -> int:
        """Manage ``connection``; returns its id (``add_connection(connection=...)`` too).

        Raises ``ConnectionLimitReached`` when full (the connection is closed),
        ``ConnectionClosed`` if it already is, ``RuntimeError`` outside
        ``async with`` or after ``shutdown()``.
        """
        return await self.add_resource(connection)

    async def remove_connection(
        self,
        connection_id: int | Connection | None = None,
        *,
        connection_handle: int | Connection | None = None,
    ) -> Connection | None:
        """Stop managing a connection without closing it; returns it (None if unknown).

        ``connection_handle=`` is the same argument under its newest older name.
        """
        ident = connection_id if connection_id is not None else connection_handle
        if ident is None:
            raise TypeError("remove_connection() needs connection_id")
        return await self.remove_resource(ident)

    async def get_connection(self, connection_id: int | Connection) -> Connection | None:
        """The managed connection with that id, or None."""
        return await self.get_resource(connection_id)

    async def get_all_connections(self) -> list[Connection]:
        """Every managed connection."""
        return await self.get_all_resources()

    async def get_connections_by_state(self, state: str) -> list[Connection]:
        """The managed connections in ``state`` ("connected", "draining", "closed")."""
        await anyio.lowlevel.checkpoint()
        return self._resources_where(lambda connection: self._state_of(connection) == state)

    async def get_active_connections(self) -> list[Connection]:
        """The managed connections that are not closed."""
        await anyio.lowlevel.checkpoint()
        return self._resources_where(self._is_active)

    def has_connection(self, connection_id: int | Connection) -> bool:
        """Whether that connection (or id) is managed."""
        return connection_id in self

    def get_connection_count(self) -> int:
        """How many connections are managed."""
        return len(self._entries)

    async def close_connection(
        self,
        connection_id: int | Connection,
        code: int = H3ErrorCode.H3_NO_ERROR,
        reason: str = "",
    ) -> bool:
        """Close a managed connection (HTTP/3 error ``code``) and drop it; False if unknown."""
        return await self.close_resource(connection_id, code, reason)

    async def close_all_connections(
        self, code: int = H3ErrorCode.H3_NO_ERROR, reason: str = ""
    ) -> int:
        """Close every managed connection (concurrently); returns how many."""
        return await self.close_all_resources(code, reason)

    async def cleanup_closed_connections(self) -> int:
        """Drop the closed connections (older name of ``cleanup_closed_resources``)."""
        return await self.cleanup_closed_resources()
