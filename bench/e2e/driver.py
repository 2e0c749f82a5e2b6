"""The client side of every workload, written once over a small per-stack adapter.

A stack's client adapter knows how to open and close a session (or a bare
QUIC connection), upload a bulk stream, echo one stream and send a burst of
datagrams with its own API; the timing, the checks and the counting live
here so that every stack is measured the same way.  Runs on anyio, so on
asyncio, uvloop and trio alike (the asyncio-only stacks are run on asyncio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import anyio
from common import (
    DATAGRAM_SIZE,
    PATTERN,
    bulk_chunks,
    echo_payload,
    emit,
    expected_bulk_reply,
    percentile,
    raise_fd_limit,
)


class ClientAdapter(Protocol):
    async def open(self) -> Any: ...
    async def close(self, conn: Any) -> None: ...
    async def bulk(self, conn: Any, chunks: list[tuple[bytes, bool]]) -> bytes: ...
    async def echo(self, conn: Any, data: bytes) -> bytes: ...
    async def blast(self, conn: Any, payload: bytes, count: int) -> int: ...


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/bench")
    parser.add_argument("--cert-sha256", default="", help="hex SHA-256 of the server certificate")
    parser.add_argument(
        "--workload", required=True, choices=["setup", "bulk", "datagrams", "streams", "sessions"]
    )
    parser.add_argument("--count", type=int, default=50, help="sessions (setup, sessions)")
    parser.add_argument("--size", type=int, default=50_000_000, help="bytes (bulk, per stream)")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of datagrams")
    parser.add_argument("--burst", type=int, default=16, help="datagrams per send burst")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions opening at once")
    parser.add_argument("--op-timeout", type=float, default=20.0, help="seconds for one operation")
    parser.add_argument("--hold-timeout", type=float, default=120.0)


async def _setup(adapter: ClientAdapter, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[float] = []
    failures = 0
    for _ in range(args.count):
        try:
            with anyio.fail_after(args.op_timeout):
                start = time.perf_counter()
                conn = await adapter.open()
                samples.append(time.perf_counter() - start)
        except Exception:
            failures += 1
            continue
        with anyio.move_on_after(args.op_timeout, shield=True):
            await adapter.close(conn)
    return {
        "samples_ms": [round(s * 1000, 3) for s in samples],
        "median_ms": statistics.median(samples) * 1000 if samples else float("nan"),
        "p90_ms": percentile(samples, 0.9) * 1000,
        "failures": failures,
    }


async def _bulk(adapter: ClientAdapter, args: argparse.Namespace) -> dict[str, Any]:
    chunks = bulk_chunks(args.size)
    expected = expected_bulk_reply(args.size)
    with anyio.fail_after(args.op_timeout):
        conn = await adapter.open()
    try:
        with anyio.fail_after(args.op_timeout + args.size / 1e6):  # 1 MB/s at worst
            start = time.perf_counter()
            reply = await adapter.bulk(conn, chunks)
            seconds = time.perf_counter() - start
    finally:
        with anyio.move_on_after(args.op_timeout, shield=True):
            await adapter.close(conn)
    return {
        "bytes": args.size,
        "seconds": seconds,
        "mb_per_s": args.size / seconds / 1e6,
        "checksum_ok": reply == expected,
    }


async def _datagrams(adapter: ClientAdapter, args: argparse.Namespace) -> dict[str, Any]:
    payload = PATTERN[:DATAGRAM_SIZE]
    with anyio.fail_after(args.op_timeout):
        conn = await adapter.open()
    sent = 0
    try:
        with anyio.fail_after(args.duration + args.op_timeout):
            start = time.perf_counter()
            deadline = start + args.duration
            while time.perf_counter() < deadline:
                sent += await adapter.blast(conn, payload, args.burst)
            seconds = time.perf_counter() - start
        # Let the server take in what is still queued before we go.
        await anyio.sleep(0.5)
    finally:
        with anyio.move_on_after(args.op_timeout, shield=True):
            await adapter.close(conn)
    return {"sent": sent, "seconds": seconds, "sent_per_s": sent / seconds}


async def _streams(adapter: ClientAdapter, args: argparse.Namespace) -> dict[str, Any]:
    data = echo_payload(args.size)
    with anyio.fail_after(args.op_timeout):
        conn = await adapter.open()
    results: list[bool] = []

    async def one() -> None:
        echoed = await adapter.echo(conn, data)
        results.append(echoed == data)

    try:
        with anyio.fail_after(args.op_timeout * 3):
            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for _ in range(args.streams):
                    tasks.start_soon(one)
            seconds = time.perf_counter() - start
    finally:
        with anyio.move_on_after(args.op_timeout, shield=True):
            await adapter.close(conn)
    moved = 2 * len(data) * args.streams
    return {
        "streams": args.streams,
        "bytes_each": len(data),
        "seconds": seconds,
        "mb_per_s": moved / seconds / 1e6,
        "echo_ok": len(results) == args.streams and all(results),
    }


async def _sessions(adapter: ClientAdapter, args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    held: list[Any] = []
    failures = 0
    limiter = anyio.CapacityLimiter(max(1, args.concurrency))

    async def one() -> None:
        nonlocal failures
        async with limiter:
            try:
                with anyio.fail_after(args.op_timeout):
                    held.append(await adapter.open())
            except Exception:
                failures += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(args.count):
            tasks.start_soon(one)
    seconds = time.perf_counter() - start
    result = {
        "opened": len(held),
        "failures": failures,
        "seconds": seconds,
        "per_s": len(held) / seconds if seconds > 0 else 0.0,
    }
    # Hold them while the controller reads the server's memory, then leave at once
    # (closing 1,000 connections gracefully is not what is measured).
    emit({"held": result})
    with anyio.move_on_after(args.hold_timeout):
        await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return result


WORKLOADS: dict[str, Callable[[ClientAdapter, argparse.Namespace], Any]] = {
    "setup": _setup,
    "bulk": _bulk,
    "datagrams": _datagrams,
    "streams": _streams,
    "sessions": _sessions,
}


def run_client(
    make_adapter: Callable[[], ClientAdapter], args: argparse.Namespace, loop: str
) -> int:
    """Run ``args.workload`` with the adapter on ``loop``; print its JSON result; exit code."""

    async def main() -> dict[str, Any]:
        adapter = make_adapter()
        cpu = time.process_time()
        result = dict(await WORKLOADS[args.workload](adapter, args))
        result["client_cpu_s"] = time.process_time() - cpu
        return result

    try:
        result = run_on(loop, main)
    except BaseException as exc:  # report, whatever it was
        emit({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]})
        sys.stdout.flush()
        os._exit(1)
    emit({"result": result})
    sys.stdout.flush()
    # Leave without waiting for stacks' background threads and graceful closes.
    os._exit(0)


def run_on(loop: str, func: Callable[[], Any]) -> Any:
    if loop == "uvloop":
        return anyio.run(func, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(func, backend=loop)
