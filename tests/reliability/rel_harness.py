"""What the reliability tests share: sizes, task and memory accounting, servers, clients, peers.

* ``LONG`` (``ANYWT_LONG=1``) selects the long sizes of issue 7.
* ``live_tasks`` / ``settle_tasks`` count the tasks of the running event loop
  (asyncio or trio), to show that nothing outlives what owns it.
* ``Traced`` measures Python allocations with ``tracemalloc`` around a test.
* ``serving`` runs an ``anywt.Server`` on 127.0.0.1 (port 0) and ``connect``
  pins its certificate.
* ``LossyProxy`` is a seeded UDP proxy on loopback that drops, reorders,
  duplicates and delays datagrams, or swallows everything (a peer that
  stops responding).
* ``PeerProcess`` runs ``rel_peer.py`` (a client or server in another
  process) and kills it in ``finally``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import heapq
import importlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

import anywt

#: ``ANYWT_LONG=1``: the long sizes of issue 7 instead of the bounded CI ones.
LONG = os.environ.get("ANYWT_LONG", "").strip().lower() not in ("", "0", "false", "no")
MiB = 1024 * 1024
QUIC_BACKENDS = ("aioquic", "qh3")


def _aiopquic_available() -> bool:
    try:
        importlib.import_module("anywt.backends.aiopquic")
    except ImportError:
        return False
    return True


#: aioquic and qh3, and aiopquic on CPython >= 3.12 (not collected before: it needs 3.12).
ALL_BACKENDS = [
    *QUIC_BACKENDS,
    *(
        [
            pytest.param(
                "aiopquic",
                marks=pytest.mark.skipif(
                    not _aiopquic_available(), reason="needs `pip install anywt[aiopquic]`"
                ),
            )
        ]
        if sys.version_info >= (3, 12)
        else []
    ),
]
HERE = Path(__file__).resolve().parent
#: Where long runs write their figures (README.md quotes them).
RESULTS = HERE / "results"


def record_figure(name: str, figures: dict[str, Any]) -> None:
    """Keep a run's figures in ``results/<name>.json`` (long runs; the README cites them)."""
    if not LONG and not os.environ.get("ANYWT_RECORD"):
        return
    RESULTS.mkdir(exist_ok=True)
    figures = {**figures, "long": LONG, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible bytes that differ by seed and position."""
    block = b"".join(
        hashlib.sha256(seed.to_bytes(8, "big") + i.to_bytes(4, "big")).digest() for i in range(2048)
    )  # 64 KiB
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------------------
# Tasks and memory


def live_tasks() -> int:
    """Tasks alive in the current event loop."""
    if sniffio.current_async_library() == "trio":
        import trio

        return int(trio.lowlevel.current_statistics().tasks_living)
    import asyncio

    return len(asyncio.all_tasks())


async def settle_tasks(expected: int, timeout: float = 5.0) -> int:
    """Wait (bounded) until at most ``expected`` tasks live; return the last count."""
    count = live_tasks()
    with anyio.move_on_after(timeout):
        while count > expected:
            await anyio.sleep(0.05)
            count = live_tasks()
    return count


class Traced:
    """tracemalloc around a block: ``now()`` is what is allocated above the baseline."""

    def __init__(self, frames: int = 1) -> None:
        self.frames = frames
        self.base = 0
        self.peak = 0
        self._owned = False

    def __enter__(self) -> Traced:
        gc.collect()
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self._owned = True
        self.base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        return self

    def now(self) -> int:
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        self.peak = max(self.peak, peak - self.base)
        return current - self.base

    def top(self, limit: int = 8) -> str:
        """The largest allocation sites, for a failure message."""
        stats = tracemalloc.take_snapshot().statistics("lineno")[:limit]
        return "\n".join(str(stat) for stat in stats)

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            tracemalloc.stop()


# ---------------------------------------------------------------------------
# Servers and clients


@dataclass
class Served:
    """A running server and what its handlers saw."""

    server: anywt.Server
    sessions: list[anywt.Session] = field(default_factory=list)
    handler_errors: list[BaseException] = field(default_factory=list)
    handlers_done: int = 0

    def forget(self) -> None:
        """Drop the references kept to server-side sessions (before counting leaks)."""
        self.sessions.clear()

    @property
    def hashes(self) -> tuple[bytes]:
        return (self.server.certificate_sha256,)

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/") -> str:
        return self.server.url(path)


@asynccontextmanager
async def serving(handler: Any, **options: Any) -> AsyncIterator[Served]:
    """An ``anywt.Server`` on 127.0.0.1; ``handler`` (a coroutine function or route map) wrapped
    so that every server-side session and handler failure is recorded."""
    served: Served

    def wrap(inner: Any) -> Any:
        async def wrapped(session: anywt.Session) -> None:
            served.sessions.append(session)
            try:
                await inner(session)
            except Exception as exc:
                served.handler_errors.append(exc)
                raise
            finally:
                served.handlers_done += 1

        return wrapped

    routes = (
        {path: wrap(h) for path, h in handler.items()}
        if isinstance(handler, dict)
        else wrap(handler)
    )
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    server = anywt.Server(routes, **options)
    served = Served(server)
    async with server:
        yield served


def connect(
    target: Served | tuple[str, int, bytes], path: str = "/", **options: Any
) -> anywt.Connect:
    """``anywt.connect`` with the server's certificate pinned; ``target`` may be a
    (host, port, sha256) triple (a server in another process or behind a proxy)."""
    if isinstance(target, Served):
        host, port, digest = "127.0.0.1", target.port, target.server.certificate_sha256
    else:
        host, port, digest = target
    options.setdefault("server_certificate_hashes", (digest,))
    return anywt.connect(f"https://{host}:{port}{path}", **options)


async def warm_up(backend: str) -> None:
    """One echo round trip, so that first-use imports and caches are not counted as leaks."""
    from anywt.echo import echo_handler

    async with (
        serving({"/echo": echo_handler}, backend=backend) as served,
        connect(served, "/echo", backend=backend) as session,
    ):
        stream = await session.create_bidirectional_stream()
        await stream.write(b"warm", end_stream=True)
        await stream.read_all()
        session.send_datagram_nowait(b"warm")


async def wait_until(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


# ---------------------------------------------------------------------------
# The lossy proxy


@dataclass
class DirectionStats:
    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0
    send_failed: int = 0


class LossyProxy:
    """A seeded UDP proxy on 127.0.0.1 between clients and one server.

    Every datagram, in either direction, is dropped with probability
    ``loss``, duplicated with ``duplicate``, held back with ``reorder``
    (so that later ones overtake it), and delayed by ``delay`` plus up to
    ``jitter`` seconds.  ``blackhole = True`` swallows everything (the peer
    stops responding) until it is set back.  Decisions come from one
    ``random.Random(seed)``.  Run it with ``await task_group.start(proxy.run)``.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.target = target
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.jitter = jitter
        self.rng = random.Random(seed)
        self.blackhole = False
        self.up = DirectionStats()  # client -> server
        self.down = DirectionStats()  # server -> client
        self._listen: socket.socket | None = None
        self._upstreams: dict[tuple[str, int], socket.socket] = {}
        self._queue: list[
            tuple[float, int, bytes, socket.socket, tuple[str, int], DirectionStats]
        ] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._listen is not None
        host, port = self._listen.getsockname()[:2]
        return (host, port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def upstream_tasks(self) -> int:
        """Reader tasks started for clients (one per client address)."""
        return len(self._upstreams)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listen = _udp_socket()
        self._listen = listen
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._sender)
                tasks.start_soon(self._read_clients)
                task_status.started(self)
        finally:
            listen.close()
            for sock in self._upstreams.values():
                sock.close()

    async def _read_clients(self) -> None:
        listen = self._listen
        assert listen is not None and self._tasks is not None
        while True:
            await anyio.wait_readable(listen)
            for data, address in _drain(listen):
                upstream = self._upstreams.get(address)
                if upstream is None:
                    upstream = _udp_socket()
                    self._upstreams[address] = upstream
                    self._tasks.start_soon(self._read_server, upstream, address)
                self._schedule(data, upstream, self.target, self.up)

    async def _read_server(self, upstream: socket.socket, client: tuple[str, int]) -> None:
        listen = self._listen
        assert listen is not None
        while True:
            await anyio.wait_readable(upstream)
            for data, _ in _drain(upstream):
                self._schedule(data, listen, client, self.down)

    def _schedule(
        self, data: bytes, sock: socket.socket, to: tuple[str, int], stats: DirectionStats
    ) -> None:
        stats.received += 1
        rng = self.rng
        if self.blackhole or rng.random() < self.loss:
            stats.dropped += 1
            return
        copies = 1
        if rng.random() < self.duplicate:
            copies = 2
            stats.duplicated += 1
        now = anyio.current_time()
        for _ in range(copies):
            wait = self.delay + (rng.random() * self.jitter if self.jitter else 0.0)
            if rng.random() < self.reorder:
                wait += 2 * self.delay + 0.003
                stats.reordered += 1
            if wait <= 0 and not self._queue:
                self._send(data, sock, to, stats)
                continue
            stats.delayed += 1
            heapq.heappush(self._queue, (now + wait, next(self._seq), data, sock, to, stats))
        self._wake.set()

    def _send(
        self, data: bytes, sock: socket.socket, to: tuple[str, int], stats: DirectionStats
    ) -> None:
        try:
            sock.sendto(data, to)
        except OSError:
            stats.send_failed += 1  # a full buffer or a gone peer: lost, as UDP may lose it
            return
        stats.forwarded += 1

    async def _sender(self) -> None:
        while True:
            queue = self._queue
            now = anyio.current_time()
            while queue and queue[0][0] <= now:
                _, _, data, sock, to, stats = heapq.heappop(queue)
                self._send(data, sock, to, stats)
            self._wake = anyio.Event()
            deadline = queue[0][0] if queue else now + 3600
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._wake.wait()

    def figures(self) -> dict[str, Any]:
        return {"up": vars(self.up).copy(), "down": vars(self.down).copy()}


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MiB)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> Iterator[tuple[bytes, tuple[str, int]]]:
    while True:
        try:
            data, address = sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # ICMP errors from a peer that went away
        yield data, (address[0], address[1])


# ---------------------------------------------------------------------------
# Peers in other processes


class PeerProcess:
    """``rel_peer.py`` in a subprocess; ``line()`` reads what it prints, ``kill()`` ends it."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "rel_peer.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    async def line(self, timeout: float = 15.0) -> str:
        """The next line the peer prints (bounded)."""
        assert self.proc.stdout is not None
        with anyio.fail_after(timeout):
            raw = await anyio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        if not raw:
            raise RuntimeError(f"the peer exited: {self.stderr()}")
        return raw.decode().strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-4000:]

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def live_objects() -> dict[str, int]:
    """How many sessions, connections, streams and QUIC connections exist (leak detection)."""
    from anywt.backends._sansio import StackConnection
    from anywt.connection import Connection
    from anywt.session import Session
    from anywt.streams import BidirectionalStream, ReceiveStream, SendStream

    kinds = {
        "Session": Session,
        "Connection": Connection,
        "StackConnection": StackConnection,
        "Stream": (BidirectionalStream, ReceiveStream, SendStream),
    }
    gc.collect()
    counts = dict.fromkeys(kinds, 0)
    for obj in gc.get_objects():
        for name, kind in kinds.items():
            if isinstance(obj, kind):
                counts[name] += 1
    return counts


def holders(type_name: str, limit: int = 6) -> str:
    """Who refers to the live objects of a type (for a leak's failure message)."""
    gc.collect()
    found = [
        o
        for o in gc.get_objects()
        if type(o).__name__ == type_name and type(o).__module__.startswith("anywt")
    ][:limit]
    lines = []
    for obj in found:
        refs = []
        for ref in gc.get_referrers(obj):
            if ref is found:
                continue
            kind = type(ref).__name__
            if kind in ("coroutine", "frame"):
                code = ref.cr_code if kind == "coroutine" else ref.f_code
                kind += " " + code.co_qualname
            elif isinstance(ref, dict):
                owners = [type(o).__name__ for o in gc.get_referrers(ref) if o is not found][:3]
                kind += f" of {owners}"
            refs.append(kind)
        lines.append(f"{obj!r}: {sorted(set(refs))}")
    del found
    return "\n".join(lines)


def elapsed(start: float) -> float:
    return time.monotonic() - start
