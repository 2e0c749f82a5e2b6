"""Load: many concurrent sessions x 10 streams each, echoed and checksummed; nothing is lost,
nothing fails, and once every session has closed the process's memory (server and clients)
is back near its baseline and no task is left.

CI runs a bounded number of sessions per stack; ``ANYWT_LONG=1`` runs 1,000.  Every
session of a round is open at the same time; once they all are, they echo their streams,
at most ``ECHOING`` sessions at once: the clients share the server's process and CPU, and
10,000 transfers at once would starve it for longer than any QUIC timer allows.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import anyio
import pytest
from rel_harness import (
    LONG,
    QUIC_BACKENDS,
    connect,
    holders,
    live_objects,
    live_tasks,
    pattern,
    record_figure,
    serving,
    settle_tasks,
    sha256,
    wait_until,
)

import anywt
from anywt.echo import echo_handler

pytestmark = pytest.mark.anyio

SESSIONS = 1000 if LONG else 16
STREAMS = 10
STREAM_SIZE = 16 * 1024 if LONG else 4 * 1024
#: Sessions echoing their streams at the same time (all of them are open meanwhile).
ECHOING = 100
LIMIT = 900 if LONG else 60


async def one_session(
    served: object,
    backend: str,
    index: int,
    gate: anyio.Event,
    done: list[int],
    limiter: anyio.CapacityLimiter | None = None,
    echoing: anyio.CapacityLimiter | None = None,
) -> None:
    """Connect (at most ``limiter``'s worth of handshakes at once), wait for ``gate``, then
    echo ``STREAMS`` streams at once and check each one's SHA-256."""
    if limiter is not None:
        await limiter.acquire()
    try:
        opening = connect(
            served,  # type: ignore[arg-type]
            "/echo",
            backend=backend,
            connect_timeout=120,
            idle_timeout=LIMIT,  # sessions wait their turn to echo without traffic
            close_timeout=60,  # the QUIC closing period (3 PTO) grows with the load
        )
        session = await opening.__aenter__()
    finally:
        if limiter is not None:
            limiter.release()
    try:
        await gate.wait()
        if echoing is None:
            await _echo_streams(session, index, done)
        else:
            async with echoing:
                await _echo_streams(session, index, done)
    except BaseException as exc:
        await opening.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await opening.__aexit__(None, None, None)


async def _echo_streams(session: anywt.Session, index: int, done: list[int]) -> None:

    async def one_stream(n: int) -> None:
        data = pattern(STREAM_SIZE, index * STREAMS + n)
        stream = await session.create_bidirectional_stream()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stream.write, data, True)
            echoed = await stream.read_all(max_size=STREAM_SIZE)
        assert sha256(echoed) == sha256(data), f"session {index} stream {n} corrupted"
        done.append(len(echoed))

    async with anyio.create_task_group() as streams:
        for n in range(STREAMS):
            streams.start_soon(one_stream, n)


async def _one_round(served: Any, quic_backend: str) -> dict[str, Any]:
    """Open SESSIONS sessions, echo STREAMS streams on each, close them all; its figures."""
    tasks_before = live_tasks()
    blocks_before = _blocks()
    handled_before = served.handlers_done
    gate = anyio.Event()
    done: list[int] = []
    start = time.monotonic()
    async with anyio.create_task_group() as clients:
        limiter = anyio.CapacityLimiter(32)  # handshakes at once
        echoing = anyio.CapacityLimiter(ECHOING)

        async def client(index: int) -> None:
            await one_session(served, quic_backend, index, gate, done, limiter, echoing)

        for index in range(SESSIONS):
            clients.start_soon(client, index)
        await wait_until(lambda: len(served.sessions) >= SESSIONS, LIMIT / 2)
        peak_sessions = len(served.server.sessions)
        held = _blocks() - blocks_before
        gate.set()
    seconds = time.monotonic() - start
    # The server ends each connection after its draining period (3 PTO), which grows with
    # the round trip times measured under the load.
    await wait_until(lambda: not served.server.connections, max(20, LIMIT / 4))
    await wait_until(lambda: served.handlers_done == handled_before + SESSIONS, 10)
    tasks_after = await settle_tasks(tasks_before)
    errors = list(served.handler_errors)
    served.forget()
    objects = live_objects()
    who = (
        "\n".join(holders(name) for name in ("StackConnection", "Connection", "Session"))
        if any(objects.values())
        else ""
    )
    return {
        "done": done,
        "errors": errors,
        "peak_sessions": peak_sessions,
        "held": held,
        "seconds": seconds,
        "tasks": (tasks_before, tasks_after),
        "objects": objects,
        "who": who,
        "after": _blocks(),
    }


@pytest.mark.parametrize("quic_backend", QUIC_BACKENDS)
async def test_many_sessions_echo_exactly_and_memory_returns(
    quic_backend: str, anyio_backend_name: str
) -> None:
    """Every byte of every stream comes back (SHA-256); afterwards no task, session,
    connection or stream object is left, and memory does not grow from one round to the next.

    Three identical rounds run: the first ones may leave one-time caches (dicts keep the
    capacity of their peak, aioquic's caches fill up over the first rounds); the last must
    add next to nothing to what the one before left.  Memory is counted with
    ``sys.getallocatedblocks`` and live objects, not tracemalloc, whose overhead would
    dominate a load test.
    """
    with anyio.fail_after(LIMIT * 3):
        async with serving(
            {"/echo": echo_handler},
            backend=quic_backend,
            max_connections=SESSIONS + 16,
            max_sessions=SESSIONS + 16,
            idle_timeout=LIMIT,  # sessions wait their turn to echo without traffic
            handshake_timeout=120,  # 1,000 handshakes share one process's CPU
        ) as served:
            # Warm up once (imports, TLS and QPACK caches), outside the accounting.
            await one_session(served, quic_backend, 9999, _set(anyio.Event()), [])
            await wait_until(lambda: not served.server.connections, 10)
            served.forget()
            rounds = [await _one_round(served, quic_backend) for _ in range(3)]
    for figures in rounds:
        done = figures["done"]
        assert len(done) == SESSIONS * STREAMS and sum(done) == SESSIONS * STREAMS * STREAM_SIZE
        assert not figures["errors"], figures["errors"]
        assert figures["peak_sessions"] == SESSIONS, figures["peak_sessions"]
        tasks_before, tasks_after = figures["tasks"]
        assert tasks_after <= tasks_before, figures["tasks"]
        # Once every connection ended and the test holds no reference, nothing of them may
        # stay alive: not the sessions, not the connections, not the QUIC state.
        objects = figures["objects"]
        assert objects == dict.fromkeys(objects, 0), (
            f"left after every session closed: {objects}\n{figures['who']}"
        )
    first, second = rounds[1], rounds[2]
    growth = second["after"] - first["after"]
    record_figure(
        f"load-{quic_backend}-{anyio_backend_name}",
        {
            "sessions": SESSIONS,
            "streams_per_session": STREAMS,
            "stream_bytes": STREAM_SIZE,
            "seconds": [round(figures["seconds"], 1) for figures in rounds],
            "blocks_held_while_open": second["held"],
            "blocks_per_session": second["held"] // SESSIONS,
            "growth_blocks_second_round": growth,
        },
    )
    # A few thousand blocks come and go with the interpreter's own caches whatever the load.
    assert growth < max(3000, second["held"] // 10), (growth, second["held"])


def _blocks() -> int:
    gc.collect()
    return sys.getallocatedblocks()


def _set(event: anyio.Event) -> anyio.Event:
    event.set()
    return event
