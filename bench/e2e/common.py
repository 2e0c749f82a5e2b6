"""What every end-to-end bench peer shares: the bench protocol, counters, the control channel.

Standard library only (plus anyio in the client driver, ``driver.py``): the
peers run under the project's Python and under the CPython 3.12 bench venv.

The bench protocol, the same over every stack:

* a bidirectional stream whose first byte is ``B`` (bulk): the server reads
  everything up to FIN, checksums it (CRC-32 of the bytes after the ``B``)
  and answers ``struct.pack("!QI", size, crc)`` then FIN;
* first byte ``E`` (echo): the server writes back every byte it reads
  (the ``E`` included) and FIN after the client's FIN;
* datagrams: counted by the server, not answered.

A server process prints one JSON line (``{"port": ...}``) when it listens,
then answers its controller on stdin/stdout from a thread (so any event loop
works): ``stats`` gives a JSON line of counters, CPU and memory; ``quit``
ends the process.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Any

CMD_BULK = b"B"
CMD_ECHO = b"E"
REPLY = struct.Struct("!QI")
CHUNK_SIZE = 64 * 1024
DATAGRAM_SIZE = 1100

#: The bytes every client sends, from a fixed seed (not compressible, not all zero).
PATTERN = random.Random(20240601).randbytes(CHUNK_SIZE)

_print_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    """One JSON line on stdout, whole."""
    line = json.dumps(obj, separators=(",", ":"))
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def expected_bulk_reply(size: int) -> bytes:
    """What the server answers to a bulk upload of ``size`` pattern bytes."""
    crc = 0
    full, rest = divmod(size, CHUNK_SIZE)
    for _ in range(full):
        crc = zlib.crc32(PATTERN, crc)
    crc = zlib.crc32(PATTERN[:rest], crc)
    return REPLY.pack(size, crc)


def bulk_chunks(size: int, chunk: int = CHUNK_SIZE) -> list[tuple[bytes, bool]]:
    """The upload as (chunk, is_last) pairs; the first starts with ``B``.

    Built before the clock starts; the chunk objects are shared, so 50 MB
    costs a handful of 64 KiB objects.
    """
    out: list[tuple[bytes, bool]] = [(CMD_BULK, size == 0)]
    full, rest = divmod(size, chunk)
    body = PATTERN[:chunk]
    for index in range(full):
        out.append((body, rest == 0 and index == full - 1))
    if rest:
        out.append((PATTERN[:rest], True))
    return out


def echo_payload(size: int) -> bytes:
    return CMD_ECHO + PATTERN[: max(0, size - 1)]


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free right now (for stacks that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> None:
    """A client holding 1,000 connections needs a socket each (some stacks)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def memory_kb() -> dict[str, int]:
    """This process's resident set now and at its peak (Linux ``/proc``), in KiB."""
    out = {"rss_kb": 0, "hwm_kb": 0, "threads": 0}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    out["hwm_kb"] = int(line.split()[1])
                elif line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
    except OSError:
        pass
    return out


class Counters:
    """What a bench server counts; read by the control thread (plain ints, the GIL suffices)."""

    def __init__(self) -> None:
        self.sessions_open = 0
        self.sessions_total = 0
        self.datagrams = 0
        self.datagram_bytes = 0
        self.streams = 0
        self.stream_errors = 0
        self.bulk: list[dict[str, Any]] = []

    def session_opened(self) -> None:
        self.sessions_open += 1
        self.sessions_total += 1

    def session_closed(self) -> None:
        self.sessions_open -= 1

    def datagram(self, size: int) -> None:
        self.datagrams += 1
        self.datagram_bytes += size


class BulkSink:
    """Server side of one bulk upload: counts, checksums, times it (wall and process CPU)."""

    __slots__ = ("counters", "size", "crc", "cpu0", "wall0")

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.size = 0
        self.crc = 0
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()

    def feed(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)

    def finish(self) -> bytes:
        """Record the transfer; return the reply to send."""
        self.counters.bulk.append(
            {
                "bytes": self.size,
                "cpu_s": time.process_time() - self.cpu0,
                "wall_s": time.perf_counter() - self.wall0,
            }
        )
        del self.counters.bulk[:-4]
        return REPLY.pack(self.size, self.crc)


def stats(counters: Counters) -> dict[str, Any]:
    times = os.times()
    return {
        "sessions_open": counters.sessions_open,
        "sessions_total": counters.sessions_total,
        "datagrams": counters.datagrams,
        "datagram_bytes": counters.datagram_bytes,
        "streams": counters.streams,
        "stream_errors": counters.stream_errors,
        "bulk": list(counters.bulk),
        "cpu_s": time.process_time(),
        "user_s": times.user,
        "system_s": times.system,
        **memory_kb(),
    }


def start_control(counters: Counters) -> None:
    """Answer the controller on stdin from a daemon thread; EOF or ``quit`` ends the process."""

    baseline: list[Any] = []

    def serve() -> None:
        if sys.stdin is None:
            return
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                emit({"stats": stats(counters)})
            elif command == "trace-start":  # diagnostics: Python allocations from now on
                import tracemalloc

                tracemalloc.start(1)
                baseline[:] = [tracemalloc.take_snapshot()]
                emit({"trace": "started"})
            elif command.startswith("trace-top") and baseline:
                emit({"trace": _trace_top(baseline[0], command)})
            elif command == "quit":
                break
        sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=serve, name="bench-control", daemon=True).start()


def _trace_top(baseline: Any, command: str) -> dict[str, Any]:
    """Allocation growth since ``trace-start``: by file, and the top lines (``trace-top N``)."""
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    limit = int(command.split()[1]) if len(command.split()) > 1 else 25
    by_file = snapshot.compare_to(baseline, "filename")
    by_line = snapshot.compare_to(baseline, "lineno")
    total = sum(stat.size_diff for stat in by_file)
    return {
        "total_kb": total / 1024,
        "files": [
            [stat.traceback[0].filename, round(stat.size_diff / 1024, 1), stat.count_diff]
            for stat in by_file[:limit]
        ],
        "lines": [
            [str(stat.traceback[0]), round(stat.size_diff / 1024, 1), stat.count_diff]
            for stat in by_line[:limit]
        ],
    }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]
