"""What the behaviour tests of the async API share: echo servers and clients on loopback UDP.

Everything an experiment opens lives in one ``Lab`` (an async context manager)
entered *inside* the test's ``anyio.fail_after``: servers and client sessions
open task groups, and a task group must close inside the cancel scope it was
opened in (trio checks).  Fixtures that start things before the test body
(``echo`` in conftest.py) bound their own setup and teardown instead.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import sniffio

import anywt
from anywt.echo import echo_handler
from anywt.session import CloseInfo, Session

#: Every test is bounded by this many seconds (tests that move data pick their own).
LIMIT = 15.0
#: The QUIC stacks of the matrix.
QUIC_BACKENDS = ("aioquic", "qh3")
#: Bytes a "large" transfer moves per stack: aioquic manages ~5 MB/s here, qh3 much more.
LARGE = {"aioquic": 2 * 1024 * 1024, "qh3": 16 * 1024 * 1024, "aiopquic": 16 * 1024 * 1024}
#: Why the native backend's cells skip where it cannot run.
AIOPQUIC_SKIP = "needs CPython >= 3.12 and `pip install anywt[aiopquic]`"


def aiopquic_available() -> bool:
    """The aiopquic backend imports here (asked on CPython >= 3.12 only)."""
    try:
        importlib.import_module("anywt.backends.aiopquic")
    except ImportError:
        return False
    return True


#: The matrix's backend parameters: the sans-IO stacks, and aiopquic on the
#: interpreters it exists for (CPython >= 3.12; CI covers it in its 3.12 stage).
QUIC_BACKEND_PARAMS = [
    *QUIC_BACKENDS,
    *(
        [
            pytest.param(
                "aiopquic",
                marks=pytest.mark.skipif(not aiopquic_available(), reason=AIOPQUIC_SKIP),
            )
        ]
        if sys.version_info >= (3, 12)
        else []
    ),
]

#: For the few tests that also run on uvloop: asyncio, asyncio+uvloop, trio.
WITH_UVLOOP = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ],
)

#: What a server-side test hook gets: the session, before (or instead of) the echo.
SessionHook = Callable[[Session], Awaitable[object]]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms; ``TimeoutError`` after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ by seed and position (cheap to build, easy to check)."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 2048  # 64 KiB
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


def live_task_count() -> int:
    """Tasks alive in the current event loop (asyncio or trio)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return int(trio.lowlevel.current_statistics().tasks_living)
    import asyncio

    return len(asyncio.all_tasks())


async def wait_task_count(expected: int, timeout: float = 5.0) -> int:
    """Wait (bounded) until at most ``expected`` tasks live; return the last count."""
    count = live_task_count()
    with anyio.move_on_after(timeout):
        while count > expected:
            await anyio.sleep(0.02)
            count = live_task_count()
    return count


@dataclass
class ServerHarness:
    """A server on 127.0.0.1 and what its handler saw."""

    server: anywt.Server
    backend: str
    #: Every server-side session, in the order they arrived.
    sessions: list[Session] = field(default_factory=list)
    #: How each server-side session ended (``close_info`` when its handler returned).
    closes: list[CloseInfo | None] = field(default_factory=list)
    #: Exceptions the test hooks raised (a hook should not fail silently).
    errors: list[BaseException] = field(default_factory=list)

    @property
    def hashes(self) -> tuple[bytes]:
        return (self.server.certificate_sha256,)

    def url(self, path: str = "/echo") -> str:
        return self.server.url(path)

    async def session(self, index: int = 0, timeout: float = 5.0) -> Session:
        """The ``index``-th server-side session (waits for it to arrive)."""
        await wait_until(lambda: len(self.sessions) > index, timeout)
        return self.sessions[index]


class Lab:
    """Servers and clients of one test; everything closes when the lab does."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> Lab:
        await self.stack.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.stack.__aexit__(*exc_info)

    async def server(
        self,
        routes: Mapping[str, Any] | None = None,
        *,
        hook: SessionHook | None = None,
        echo: bool = True,
        **options: Any,
    ) -> ServerHarness:
        """Start a server; by default ``/echo`` runs ``hook`` (if any) then the echo service.

        With ``echo=False`` the handler runs ``hook`` and then holds the session
        open until it closes.
        """
        harness: ServerHarness

        async def handler(session: Session) -> None:
            harness.sessions.append(session)
            try:
                if hook is not None:
                    try:
                        await hook(session)
                    except Exception as exc:
                        harness.errors.append(exc)
                        raise
                if echo:
                    await echo_handler(session)
                else:
                    await session.wait_closed()
            finally:
                harness.closes.append(session.close_info)

        options.setdefault("backend", self.backend)
        server = anywt.Server(
            {"/echo": handler} if routes is None else routes,
            host="127.0.0.1",
            port=0,
            **options,
        )
        await self.stack.enter_async_context(server)
        harness = ServerHarness(server, options["backend"])
        return harness

    def connect(self, server: ServerHarness, path: str = "/echo", **options: Any) -> anywt.Connect:
        """``anywt.connect`` to ``server`` (its certificate pinned), not yet awaited."""
        options.setdefault("backend", self.backend)
        options.setdefault("server_certificate_hashes", server.hashes)
        return anywt.connect(server.url(path), **options)

    async def client(self, server: ServerHarness, path: str = "/echo", **options: Any) -> Session:
        """A client session, closed when the lab ends."""
        return await self.stack.enter_async_context(self.connect(server, path, **options))


@asynccontextmanager
async def bounded_lab(backend: str, limit: float = LIMIT) -> AsyncIterator[Lab]:
    """A lab inside ``anyio.fail_after(limit)``: the test, its servers and clients all bounded."""
    with anyio.fail_after(limit):
        async with Lab(backend) as lab:
            yield lab


@dataclass
class EchoPair:
    """An echo server and one client session connected to it."""

    lab: Lab
    harness: ServerHarness
    session: Session

    @property
    def server(self) -> anywt.Server:
        return self.harness.server

    @property
    def backend(self) -> str:
        return self.lab.backend

    async def server_session(self) -> Session:
        return await self.harness.session(0)


async def echo_bidi(session: Session, payload: bytes) -> bytes:
    """Send ``payload`` on a new bidirectional stream (then FIN) and read the echo."""
    stream = await session.create_bidirectional_stream()
    received = bytearray()

    async def read() -> None:
        received.extend(await stream.read_all())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        await stream.write(payload, end_stream=True)
    return bytes(received)


async def echo_datagram(session: Session, payload: bytes, attempts: int = 20) -> bytes:
    """Send a datagram until its echo comes back (datagrams may be lost); the echo."""
    for _ in range(attempts):
        await session.send_datagram(payload)
        with anyio.move_on_after(0.25):
            while True:
                received = await session.receive_datagram()
                if received == payload:
                    return received
    raise AssertionError(f"no echo of a datagram in {attempts} attempts")
