"""End-to-end benchmark: anywt next to the stacks users would pick instead, in one command.

    python bench/run.py --quick           # a few seconds per stack: does everything work?
    python bench/run.py                   # the full run behind the README figures
    python bench/run.py --update-readme   # ... and write them into README.md

Client and server are separate processes on 127.0.0.1; every loop is
bounded in count and time.  Per stack and round: session setup (median and
p90 of sequential sessions), one-stream bulk upload (checksummed), datagrams
received by the server while the client sends 1100-byte payloads for a
fixed time, 100 concurrent echo streams, and many concurrent idle sessions
(time to open, server peak RSS, memory per session).  Rounds interleave the
stacks (A B C A B C) and the report gives medians over rounds and medians of
per-round ratios, so that a noisy machine moves both sides of a ratio.

Stacks: anywt x backend (aioquic, qh3; aiopquic when its backend imports,
in the CPython 3.12 bench venv) x loop (asyncio, uvloop, trio); raw aioquic,
raw qh3 and raw aiopquic (plain QUIC through their own asyncio API);
aioquic's own H3 WebTransport; pywebtransport 0.21.1 (3.12 venv).  See
``bench/e2e/`` for the programs and ``--help`` for the knobs.

Writes ``bench/results/e2e.md`` (tables and target lines), ``e2e.png``
(throughput and datagram rate per stack) and ``e2e-<time>.json`` (every
sample; git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
E2E = HERE / "e2e"
RESULTS = HERE / "results"
README = ROOT / "README.md"
#: What the figures mean and where a target is missed, why (written by hand after a run).
NOTES = RESULTS / "e2e-notes.md"
START_MARK = "<!-- bench:start -->"
END_MARK = "<!-- bench:end -->"

sys.path.insert(0, str(E2E))
import envs  # noqa: E402
from common import percentile  # noqa: E402

WORKLOADS = ("setup", "bulk", "datagrams", "streams", "sessions")
LOOPS = ("asyncio", "uvloop", "trio")


# ----------------------------------------------------------------------
# Stacks


@dataclass(frozen=True)
class Stack:
    id: str
    peer: str
    env: str  # "main" (this interpreter or --main-python) or "py312" (the bench venv)
    check: str  # Python that must run without error for the stack to be measured
    args: tuple[str, ...] = ()
    slow: bool = False  # pure-Python QUIC (aioquic): smaller bulk size
    note: str = ""


def all_stacks() -> list[Stack]:
    stacks: list[Stack] = []
    for backend, env in (("aioquic", "main"), ("qh3", "main"), ("aiopquic", "py312")):
        for loop in LOOPS:
            check = (
                "import anywt; from anywt.backends.base import get_backend; "
                f"get_backend({backend!r})"
            )
            if loop != "asyncio":
                check += f"; import {loop}"
            stacks.append(
                Stack(
                    id=f"anywt-{backend}-{loop}",
                    peer="anywt",
                    env=env,
                    check=check,
                    args=("--backend", backend, "--loop", loop),
                    slow=backend == "aioquic",
                )
            )
    stacks += [
        Stack("raw-aioquic", "raw-aioquic", "main", "import aioquic", slow=True),
        Stack("raw-qh3", "raw-qh3", "main", "import qh3"),
        Stack("raw-aiopquic", "raw-aiopquic", "py312", "import aiopquic"),
        Stack("aioquic-h3wt", "aioquic-h3wt", "main", "import aioquic", slow=True),
        Stack("pywebtransport", "pywebtransport", "py312", "import pywebtransport"),
    ]
    return stacks


# ----------------------------------------------------------------------
# Settings


@dataclass
class Settings:
    rounds: int
    setup_count: int
    bulk_bytes: int
    slow_bulk_bytes: int
    datagram_seconds: float
    streams: int
    stream_bytes: int
    sessions: int
    concurrency: int
    workloads: tuple[str, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = args.quick

        def pick(value: Any, quick_value: Any, full_value: Any) -> Any:
            if value is not None:
                return value
            return quick_value if quick else full_value

        return cls(
            rounds=pick(args.rounds, 1, 3),
            setup_count=pick(args.setup_count, 5, 50),
            bulk_bytes=int(pick(args.bulk_mb, 3, 50) * 1_000_000),
            slow_bulk_bytes=int(pick(args.slow_bulk_mb, 1, 20) * 1_000_000),
            datagram_seconds=pick(args.datagram_seconds, 0.5, 3.0),
            streams=100,
            stream_bytes=int(pick(args.stream_kb, 8, 64) * 1000),
            sessions=pick(args.sessions, 20, 1000),
            concurrency=args.concurrency,
            workloads=tuple(args.workloads.split(",")) if args.workloads else WORKLOADS,
        )


# ----------------------------------------------------------------------
# Processes


class Proc:
    """A peer process: stdout lines into a queue (a reader thread), stdin for commands."""

    def __init__(self, argv: list[str], log: Path, *, stdin: bool = True) -> None:
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            cwd=str(E2E),
            start_new_session=True,
            env=_child_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def next_json(self, key: str, timeout: float) -> dict[str, Any]:
        """The next stdout JSON object that has ``key`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {key!r} line within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"exited ({self.proc.poll()}) before a {key!r} line")
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict) and key in obj:
                    return obj
                if isinstance(obj, dict) and "error" in obj:
                    raise RuntimeError(str(obj["error"]))

    def send(self, line: str) -> None:
        if self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 3.0) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            if self.wait(grace) is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, 15)
                if self.wait(grace) is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.proc.pid, 9)
                    self.wait(grace)
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self._log_file.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


# ----------------------------------------------------------------------
# One stack, one round


@dataclass
class Context:
    settings: Settings
    pythons: dict[str, str]
    certfile: Path
    keyfile: Path
    cert_sha256: str
    logs: Path
    progress: Progress


class Failure(Exception):
    pass


def _peer_argv(ctx: Context, stack: Stack) -> list[str]:
    return [ctx.pythons[stack.env], str(E2E / "peer.py"), stack.peer, *stack.args]


def _start_server(ctx: Context, stack: Stack, tag: str, max_sessions: int) -> tuple[Proc, int]:
    argv = [
        *_peer_argv(ctx, stack),
        "server",
        "--certfile",
        str(ctx.certfile),
        "--keyfile",
        str(ctx.keyfile),
        "--max-sessions",
        str(max_sessions),
    ]
    server = Proc(argv, ctx.logs / f"{stack.id}-{tag}-server.log")
    try:
        ready = server.next_json("port", 60)
    except Exception as exc:
        server.stop()
        raise Failure(f"server did not start: {exc}") from None
    return server, int(ready["port"])


def _stats(server: Proc) -> dict[str, Any]:
    server.send("stats")
    return dict(server.next_json("stats", 15)["stats"])


def _client_argv(ctx: Context, stack: Stack, port: int, workload: str) -> list[str]:
    s = ctx.settings
    argv = [
        *_peer_argv(ctx, stack),
        "client",
        "--port",
        str(port),
        "--cert-sha256",
        ctx.cert_sha256,
        "--workload",
        workload,
    ]
    if workload == "setup":
        argv += ["--count", str(s.setup_count)]
    elif workload == "bulk":
        argv += ["--size", str(s.slow_bulk_bytes if stack.slow else s.bulk_bytes)]
        argv += ["--op-timeout", "30"]
    elif workload == "datagrams":
        argv += ["--duration", str(s.datagram_seconds)]
    elif workload == "streams":
        argv += ["--streams", str(s.streams), "--size", str(s.stream_bytes), "--op-timeout", "60"]
    elif workload == "sessions":
        argv += [
            "--count",
            str(s.sessions),
            "--concurrency",
            str(s.concurrency),
            "--op-timeout",
            "30",
            "--hold-timeout",
            "120",
        ]
    return argv


def _client_timeout(ctx: Context, stack: Stack, workload: str) -> float:
    s = ctx.settings
    if workload == "setup":
        return 60 + 2.0 * s.setup_count
    if workload == "bulk":
        size = s.slow_bulk_bytes if stack.slow else s.bulk_bytes
        return 90 + size / 0.5e6
    if workload == "datagrams":
        return 60 + s.datagram_seconds
    if workload == "streams":
        return 200
    return 120 + 0.5 * s.sessions


def _run_client(ctx: Context, stack: Stack, port: int, workload: str, tag: str) -> dict[str, Any]:
    client = Proc(
        _client_argv(ctx, stack, port, workload),
        ctx.logs / f"{stack.id}-{tag}-{workload}-client.log",
        stdin=False,
    )
    try:
        result = client.next_json("result", _client_timeout(ctx, stack, workload))
    except Exception as exc:
        raise Failure(f"{workload}: {exc}") from None
    finally:
        client.stop(grace=5)
    return dict(result["result"])


def _measure_main(ctx: Context, stack: Stack, tag: str, out: dict[str, Any]) -> None:
    """setup, bulk, datagrams, streams against one server process."""
    wanted = [w for w in ("setup", "bulk", "datagrams", "streams") if w in ctx.settings.workloads]
    if not wanted:
        return
    try:
        server, port = _start_server(ctx, stack, tag, max_sessions=ctx.settings.setup_count + 100)
    except Failure as exc:
        for workload in wanted:
            out.setdefault("errors", {})[workload] = str(exc)
            ctx.progress.step(f"{stack.id} {workload} FAILED")
        return
    try:
        for workload in wanted:
            ctx.progress.show(f"{stack.id} {workload}")
            try:
                before = _stats(server)
                result = _run_client(ctx, stack, port, workload, tag)
                after = _stats(server)
            except Exception as exc:
                out.setdefault("errors", {})[workload] = str(exc)
                ctx.progress.step(f"{stack.id} {workload} FAILED")
                if server.proc.poll() is not None:
                    break
                continue
            _derive(workload, result, before, after, out)
            ctx.progress.step(f"{stack.id} {workload}")
    finally:
        server.stop()
    for workload in wanted:
        if workload not in out and workload not in out.get("errors", {}):
            out.setdefault("errors", {})[workload] = "server died"
            ctx.progress.step(f"{stack.id} {workload} FAILED")


def _derive(
    workload: str,
    result: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    out: dict[str, Any],
) -> None:
    out[workload] = result
    if workload == "setup":
        out["setup_ms"] = result["median_ms"]
        out["setup_p90_ms"] = result["p90_ms"]
        out["setup_failures"] = result["failures"]
    elif workload == "bulk":
        out["bulk_mb_s"] = result["mb_per_s"]
        out["bulk_ok"] = bool(result["checksum_ok"])
        record = (after.get("bulk") or [None])[-1]
        if record and record["bytes"] > 0:
            out["bulk_server_cpu_s_per_mb"] = record["cpu_s"] / (record["bytes"] / 1e6)
        out["bulk_client_cpu_s_per_mb"] = result["client_cpu_s"] / (result["bytes"] / 1e6)
    elif workload == "datagrams":
        received = after["datagrams"] - before["datagrams"]
        out["dgram_rx_per_s"] = received / result["seconds"]
        out["dgram_tx_per_s"] = result["sent_per_s"]
        out["dgram_delivered"] = received / result["sent"] if result["sent"] else 0.0
    elif workload == "streams":
        out["streams_s"] = result["seconds"]
        out["streams_ok"] = bool(result["echo_ok"])


def _measure_sessions(ctx: Context, stack: Stack, tag: str, out: dict[str, Any]) -> None:
    """Many idle sessions against a fresh server: time to open, memory per session."""
    if "sessions" not in ctx.settings.workloads:
        return
    ctx.progress.show(f"{stack.id} sessions")
    count = ctx.settings.sessions
    try:
        server, port = _start_server(ctx, stack, f"{tag}-sessions", max_sessions=count + 100)
    except Failure as exc:
        out.setdefault("errors", {})["sessions"] = str(exc)
        ctx.progress.step(f"{stack.id} sessions FAILED")
        return
    client: Proc | None = None
    try:
        time.sleep(0.5)
        base = _stats(server)
        client = Proc(
            _client_argv(ctx, stack, port, "sessions"),
            ctx.logs / f"{stack.id}-{tag}-sessions-client.log",
        )
        held = client.next_json("held", _client_timeout(ctx, stack, "sessions"))["held"]
        time.sleep(1.0)  # let the last handshakes' stragglers settle
        loaded = _stats(server)
        client.send("release")
        opened = int(held["opened"])
        out["sessions"] = {"client": held, "server_before": base, "server_held": loaded}
        out["sessions_opened"] = opened
        out["sessions_held"] = int(loaded["sessions_open"])
        out["sessions_open_s"] = float(held["seconds"])
        out["server_rss_base_mb"] = base["rss_kb"] / 1024
        out["server_peak_rss_mb"] = loaded["hwm_kb"] / 1024
        if opened:
            out["kb_per_session"] = (loaded["rss_kb"] - base["rss_kb"]) / opened
        ctx.progress.step(f"{stack.id} sessions")
    except Exception as exc:
        out.setdefault("errors", {})["sessions"] = str(exc)
        ctx.progress.step(f"{stack.id} sessions FAILED")
    finally:
        if client is not None:
            client.stop(grace=5)
        server.stop()


# ----------------------------------------------------------------------
# Progress


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.done = 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.round = ""

    def _line(self, text: str) -> str:
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.done:
            eta = f" eta {elapsed / self.done * (self.total - self.done):4.0f}s"
        bar = "#" * filled + "." * (width - filled)
        return f"[{bar}] {self.done}/{self.total} {elapsed:5.0f}s{eta} {self.round} {text}"

    def show(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + self._line(text)[:150])
            sys.stderr.flush()

    def step(self, text: str) -> None:
        self.done += 1
        if self.tty:
            self.show(text)
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(self._line(text) + "\n")
        sys.stderr.flush()


# ----------------------------------------------------------------------
# Statistics and reports


@dataclass
class Summary:
    median: float
    low: float
    high: float
    n: int

    def fmt(self, digits: int = 1, spread: bool = True) -> str:
        text = f"{self.median:.{digits}f}"
        if spread and self.n > 1:
            text += f" ({self.low:.{digits}f}..{self.high:.{digits}f})"
        return text


def summarize(values: list[float]) -> Summary | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return Summary(statistics.median(values), min(values), max(values), len(values))


def metric(rounds: list[dict[str, dict[str, Any]]], stack: str, key: str) -> list[float]:
    return [r[stack][key] for r in rounds if stack in r and r[stack].get(key) is not None]


def ratios(
    rounds: list[dict[str, dict[str, Any]]], a: str, b: str, key: str, *, diff: bool = False
) -> Summary | None:
    """Per round a/b (or a-b), then the median over rounds."""
    values = []
    for r in rounds:
        va = r.get(a, {}).get(key)
        vb = r.get(b, {}).get(key)
        if va is None or vb is None:
            continue
        if diff:
            values.append(va - vb)
        elif vb:
            values.append(va / vb)
    return summarize(values)


# (key, header, digits, higher is better)
COLUMNS = [
    ("setup_ms", "setup ms (median)", 1, False),
    ("setup_p90_ms", "setup ms (p90)", 1, False),
    ("bulk_mb_s", "bulk MB/s", 1, True),
    ("bulk_server_cpu_s_per_mb", "server CPU s/MB", 3, False),
    ("dgram_rx_per_s", "datagrams rx/s", 0, True),
    ("dgram_tx_per_s", "datagrams sent/s", 0, True),
    ("streams_s", "100 streams echo s", 2, False),
    ("sessions_open_s", "open N sessions s", 2, False),
    ("server_peak_rss_mb", "server peak RSS MB", 1, False),
    ("kb_per_session", "KB per idle session", 1, False),
]

TRIO_KEYS = [
    "setup_ms",
    "bulk_mb_s",
    "bulk_server_cpu_s_per_mb",
    "dgram_rx_per_s",
    "streams_s",
    "sessions_open_s",
    "kb_per_session",
]


def _fmt_ratio(summary: Summary | None, digits: int = 2, suffix: str = "x") -> str:
    if summary is None:
        return "n/a"
    text = f"{summary.median:.{digits}f}{suffix}"
    if summary.n > 1:
        text += f" ({summary.low:.{digits}f}..{summary.high:.{digits}f})"
    return text


def build_report(data: dict[str, Any]) -> tuple[str, list[str]]:
    """(markdown, target lines) from a run's data."""
    rounds: list[dict[str, dict[str, Any]]] = data["rounds"]
    stacks: list[str] = data["stacks"]
    settings = data["settings"]
    lines: list[str] = []
    machine = data["machine"]
    lines.append(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GiB; "
        f"{machine['os']}; load average {machine['load_before']} before, "
        f"{machine['load_after']} after; {data['date']}."
    )
    pys = ", ".join(f"{k}: CPython {v}" for k, v in machine["pythons"].items())
    lines.append(f"Python: {pys}. Versions: {data['versions']}.")
    bulk_note = (
        f"bulk = one stream of {settings['bulk_bytes'] / 1e6:g} MB "
        f"({settings['slow_bulk_bytes'] / 1e6:g} MB for the pure-Python aioquic stacks), "
        "checksummed (CRC-32) by the server"
    )
    lines.append(
        f"{settings['rounds']} round(s), stacks interleaved; medians over rounds "
        "(min..max in brackets when more than one round). "
        f"setup = {settings['setup_count']} sequential sessions (connect until usable); "
        f"{bulk_note}; datagrams = 1100-byte payloads sent for "
        f"{settings['datagram_seconds']:g} s, rate the server application received; "
        f"100 streams = {settings['streams']} concurrent bidi streams echoing "
        f"{settings['stream_bytes'] / 1000:g} kB each; N = {settings['sessions']} sessions "
        f"opened {settings['concurrency']} at a time, each on its own QUIC connection, held "
        "idle; KB per idle session = server RSS growth / N; server CPU from the server "
        "process's CPU time (all threads) between the first bulk byte and FIN."
    )
    lines.append("")
    header = "| stack | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines.append(header)
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for stack in stacks:
        cells = [f"`{stack}`"]
        for key, _, digits, _ in COLUMNS:
            summary = summarize(metric(rounds, stack, key))
            cells.append("-" if summary is None else summary.fmt(digits))
        lines.append("| " + " | ".join(cells) + " |")
    failures = []
    for stack in stacks:
        errs = {}
        for r in rounds:
            for workload, err in r.get(stack, {}).get("errors", {}).items():
                errs.setdefault(workload, err)
        for r in rounds:
            rec = r.get(stack, {})
            if rec.get("bulk_ok") is False:
                errs.setdefault("bulk", "checksum mismatch")
            if rec.get("streams_ok") is False:
                errs.setdefault("streams", "echo mismatch")
        for workload, err in errs.items():
            failures.append(f"- `{stack}` {workload}: {err[:200]}")
    for stack, reason in data.get("skipped", {}).items():
        failures.append(f"- `{stack}` not measured: {reason[:200]}")
    if failures:
        lines += ["", "Not measured or failed:", "", *failures]

    # Ratios
    lines += [
        "",
        "Per-round ratios, median (min..max):",
        "",
        "| A / B | setup | bulk MB/s | server CPU/MB | datagrams rx/s | 100 streams s "
        "| open N s | KB/session |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pairs = []
    for backend in ("aioquic", "qh3", "aiopquic"):
        pairs.append((f"anywt-{backend}-asyncio", f"raw-{backend}"))
    pairs.append(("aioquic-h3wt", "raw-aioquic"))
    pairs.append(("anywt-aioquic-asyncio", "aioquic-h3wt"))
    for backend in ("aioquic", "qh3", "aiopquic"):
        for loop in ("trio", "uvloop"):
            pairs.append((f"anywt-{backend}-{loop}", f"anywt-{backend}-asyncio"))
    pairs.append(("anywt-qh3-asyncio", "pywebtransport"))
    for a, b in pairs:
        if a not in stacks or b not in stacks:
            continue
        keys = [
            "setup_ms",
            "bulk_mb_s",
            "bulk_server_cpu_s_per_mb",
            "dgram_rx_per_s",
            "streams_s",
            "sessions_open_s",
            "kb_per_session",
        ]
        cells = [_fmt_ratio(ratios(rounds, a, b, key)) for key in keys]
        lines.append(f"| `{a}` / `{b}` | " + " | ".join(cells) + " |")

    targets = evaluate_targets(data)
    lines += ["", "Targets (pass/fail; CI does not fail on them):", ""]
    lines += [f"- {t}" for t in targets]
    return "\n".join(lines) + "\n", targets


def evaluate_targets(data: dict[str, Any]) -> list[str]:
    rounds = data["rounds"]
    stacks = data["stacks"]
    sessions = data["settings"]["sessions"]
    out: list[str] = []

    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "FAIL")

    for backend in ("aioquic", "qh3", "aiopquic"):
        ours, raw = f"anywt-{backend}-asyncio", f"raw-{backend}"
        if ours not in stacks or raw not in stacks:
            continue
        for key, label, limit, higher in (
            ("bulk_mb_s", "stream MB/s", 0.95, True),
            ("dgram_rx_per_s", "datagrams rx/s", 0.95, True),
            ("bulk_server_cpu_s_per_mb", "server CPU per MB", 1.05, False),
        ):
            summary = ratios(rounds, ours, raw, key)
            ok = (
                None
                if summary is None
                else (summary.median >= limit if higher else summary.median <= limit)
            )
            sign = ">=" if higher else "<="
            out.append(
                f"{verdict(ok)} layer cost on {backend}: {label} anywt/raw = "
                f"{_fmt_ratio(summary)} (target {sign} {limit:.2f}x)"
            )
    for backend in ("aioquic", "qh3", "aiopquic"):
        ours, base = f"anywt-{backend}-trio", f"anywt-{backend}-asyncio"
        if ours not in stacks or base not in stacks:
            continue
        worst: list[str] = []
        ok_all: bool | None = None
        for key in TRIO_KEYS:
            summary = ratios(rounds, ours, base, key)
            if summary is None:
                continue
            higher = next(c[3] for c in COLUMNS if c[0] == key)
            ok = summary.median >= 0.90 if higher else summary.median <= 1.10
            ok_all = ok if ok_all is None else (ok_all and ok)
            if not ok:
                worst.append(f"{key} {summary.median:.2f}x")
        detail = "every figure within 10%" if not worst else "outside: " + ", ".join(worst)
        out.append(f"{verdict(ok_all)} trio vs asyncio on {backend}: {detail}")
    for stack in stacks:
        if not stack.startswith("anywt-"):
            continue
        held = metric(rounds, stack, "sessions_held")
        opened = metric(rounds, stack, "sessions_opened")
        if not held:
            continue
        ok = min(held) >= sessions and min(opened) >= sessions
        out.append(
            f"{verdict(ok)} {sessions} sessions held on {stack}: opened {min(opened):.0f}, "
            f"server held {min(held):.0f} (worst round)"
        )
    for backend in ("aioquic", "qh3", "aiopquic"):
        ours, raw = f"anywt-{backend}-asyncio", f"raw-{backend}"
        if ours not in stacks or raw not in stacks:
            continue
        summary = ratios(rounds, ours, raw, "kb_per_session", diff=True)
        ok = None if summary is None else summary.median <= 20.0
        out.append(
            f"{verdict(ok)} memory per idle session on {backend}: anywt - raw QUIC connection = "
            f"{_fmt_ratio(summary, 1, ' KB')} (target <= 20 KB)"
        )
    return out


def write_chart(data: dict[str, Any], path: Path) -> str | None:
    """Throughput and datagram rate per stack, as horizontal bars with min..max whiskers."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart"
    rounds = data["rounds"]
    stacks = [s for s in data["stacks"] if summarize(metric(rounds, s, "bulk_mb_s"))]
    if not stacks:
        return "no figures to chart"
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(stacks) + 1.8), sharey=True)
    colors = [
        "#1f77b4" if s.startswith("anywt-") else "#7f7f7f" if s.startswith("raw-") else "#ff7f0e"
        for s in stacks
    ]
    for axis, key, title in (
        (axes[0], "bulk_mb_s", "one-stream upload, MB/s"),
        (axes[1], "dgram_rx_per_s", "datagrams received per second (1100 B)"),
    ):
        medians, lows, highs = [], [], []
        for stack in stacks:
            summary = summarize(metric(rounds, stack, key))
            medians.append(summary.median if summary else 0.0)
            lows.append(summary.median - summary.low if summary else 0.0)
            highs.append(summary.high - summary.median if summary else 0.0)
        positions = range(len(stacks))
        axis.barh(positions, medians, color=colors, xerr=[lows, highs], capsize=3)
        axis.set_title(title, fontsize=10)
        positive = [m for m in medians if m > 0]
        if positive and max(positive) / min(positive) > 30:
            axis.set_xscale("log")
            axis.set_title(title + " (log scale)", fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        for pos, value in zip(positions, medians, strict=True):
            axis.text(
                value,
                pos,
                f" {value:,.1f}" if value < 100 else f" {value:,.0f}",
                va="center",
                fontsize=8,
            )
    axes[0].set_yticks(list(range(len(stacks))), stacks, fontsize=9)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"anywt end-to-end bench, {data['date']} ({data['machine']['cores']} cores, "
        f"{data['settings']['rounds']} rounds, median and min..max); blue anywt, grey raw QUIC, "
        "orange other WebTransport stacks",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def update_readme(markdown: str, chart: str | None) -> None:
    section = [
        START_MARK,
        "## End-to-end benchmark",
        "",
        "anywt next to raw QUIC on the same stack and to the other Python WebTransport stacks,",
        "client and server in separate processes over 127.0.0.1 (`bench/run.py`; the",
        "programs are in `bench/e2e/`). Rerun with `python bench/run.py` (about",
        "20 minutes on 2 cores; `--quick` checks that every stack works in a few seconds each,",
        "`--update-readme` rewrites this section). The CPython 3.12 stacks (aiopquic,",
        "pywebtransport) run in a venv the runner builds under `~/.cache/anywt-bench`.",
        "",
    ]
    if chart:
        section += [f"![throughput and datagram rate per stack]({chart})", ""]
    section += [markdown.rstrip(), ""]
    if NOTES.is_file():
        section += [NOTES.read_text().rstrip(), ""]
    section.append(END_MARK)
    text = README.read_text() if README.exists() else ""
    block = "\n".join(section) + "\n"
    if START_MARK in text and END_MARK in text:
        head, _, rest = text.partition(START_MARK)
        _, _, tail = rest.partition(END_MARK)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    README.write_text(text)


# ----------------------------------------------------------------------
# Machine and versions


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024)
    return 0


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


_VERSIONS = (
    "import importlib.metadata as m, json, sys\n"
    "out = {'python': sys.version.split()[0]}\n"
    "for name in ('anywt', 'aioquic', 'qh3', 'aiopquic', 'pywebtransport', 'anyio', 'trio', "
    "'uvloop'):\n"
    "    try: out[name] = m.version(name)\n"
    "    except Exception: pass\n"
    "try:\n"
    "    from anywt import core; out['anywt_core'] = 'compiled' if core.COMPILED else 'pure'\n"
    "except Exception: pass\n"
    "print(json.dumps(out))\n"
)


def _versions(python: str) -> dict[str, str]:
    with contextlib.suppress(Exception):
        out = subprocess.run(  # noqa: PLW1510 - the return code is read
            [python, "-c", _VERSIONS], capture_output=True, text=True, timeout=60, cwd="/"
        )
        return dict(json.loads(out.stdout))
    return {}


def _check(python: str, code: str) -> str | None:
    """None when ``code`` runs under ``python``, else why not."""
    try:
        out = subprocess.run(  # noqa: PLW1510 - the return code is read
            [python, "-c", code], capture_output=True, text=True, timeout=90, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if out.returncode == 0:
        return None
    return (out.stderr.strip().splitlines() or ["failed"])[-1]


# ----------------------------------------------------------------------
# Main


def _select(stacks: list[Stack], patterns: str | None) -> list[Stack]:
    if not patterns:
        return stacks
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    return [s for s in stacks if any(fnmatch.fnmatch(s.id, p) for p in wanted)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="anywt end-to-end benchmark (see the module docstring)."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    parser.add_argument("--stacks", help="comma-separated stack ids or globs (anywt-qh3-*)")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--setup-count", type=int, help="sequential sessions (default 50)")
    parser.add_argument("--bulk-mb", type=float, help="bulk upload MB (default 50)")
    parser.add_argument("--slow-bulk-mb", type=float, help="bulk MB on aioquic stacks (20)")
    parser.add_argument("--datagram-seconds", type=float, help="seconds of datagrams (3)")
    parser.add_argument("--stream-kb", type=float, help="kB per echo stream (64)")
    parser.add_argument("--sessions", type=int, help="concurrent idle sessions (1000)")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions opening at once")
    parser.add_argument("--main-python", default=sys.executable, help="interpreter, main stacks")
    parser.add_argument("--no-py312", action="store_true", help="skip the 3.12-only stacks")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--update-readme", action="store_true", help="rewrite README section")
    parser.add_argument("--list", action="store_true", help="list the stacks and exit")
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="JSON",
        help="rebuild the table, chart (and README with --update-readme) from a saved run",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stacks = _select(all_stacks(), args.stacks)
    if args.list:
        for stack in all_stacks():
            print(f"{stack.id:24} {stack.env}")
        return 0
    settings = Settings.from_args(args)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    if args.report_only:
        data = json.loads(args.report_only.read_text())
        _publish(data, args, say)
        return 0

    pythons = {"main": args.main_python}
    skipped: dict[str, str] = {}
    if any(s.env == "py312" for s in stacks):
        if args.no_py312:
            reason = "--no-py312"
            python312 = None
        else:
            say("bench venv (CPython 3.12): checking ...")
            python312, reason = envs.ensure_bench_venv(log=say)
        if python312 is None:
            for stack in stacks:
                if stack.env == "py312":
                    skipped[stack.id] = f"CPython 3.12 venv unavailable: {reason}"
        else:
            pythons["py312"] = python312
    stale = envs.installed_differs(pythons["main"])
    if stale:
        say(
            "WARNING: the anywt installed for "
            f"{pythons['main']} differs from this checkout ({', '.join(stale[:5])}"
            f"{' ...' if len(stale) > 5 else ''}): the main stacks measure the installed copy; "
            "reinstall with `pip install .`"
        )
    checks: dict[tuple[str, str], str | None] = {}
    runnable: list[Stack] = []
    for stack in stacks:
        if stack.id in skipped:
            continue
        key = (stack.env, stack.check)
        if key not in checks:
            checks[key] = _check(pythons[stack.env], stack.check)
        if checks[key] is None:
            runnable.append(stack)
        else:
            skipped[stack.id] = str(checks[key])
    for stack_id, reason in skipped.items():
        say(f"skipping {stack_id}: {reason}")
    if not runnable:
        say("nothing to run")
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="anywt-bench-"))
    logs = work / "logs"
    logs.mkdir()
    certfile, keyfile, digest = _certificate(work, pythons["main"])
    per_stack = sum(1 for w in WORKLOADS if w in settings.workloads)
    progress = Progress(settings.rounds * len(runnable) * per_stack)
    ctx = Context(settings, pythons, certfile, keyfile, digest, logs, progress)
    say(
        f"{len(runnable)} stacks x {settings.rounds} round(s); logs in {logs}"
        + (f"; {len(skipped)} skipped" if skipped else "")
    )
    load_before = _load()
    started = time.time()
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        for index in range(settings.rounds):
            progress.round = f"round {index + 1}/{settings.rounds}"
            record: dict[str, dict[str, Any]] = {}
            rounds.append(record)
            for stack in runnable:
                out: dict[str, Any] = {}
                record[stack.id] = out
                _measure_main(ctx, stack, f"r{index + 1}", out)
                _measure_sessions(ctx, stack, f"r{index + 1}", out)
    except KeyboardInterrupt:
        say("\ninterrupted: reporting the rounds so far")
    versions = {"main": _versions(pythons["main"])}
    if "py312" in pythons:
        versions["py312"] = _versions(pythons["py312"])
    data = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.time() - started, 1),
        "quick": args.quick,
        "settings": settings.__dict__ | {"workloads": list(settings.workloads)},
        "stacks": [s.id for s in runnable],
        "skipped": skipped,
        "stale_install": stale,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "os": f"{platform.system()} {platform.release()}",
            "load_before": load_before,
            "load_after": _load(),
            "pythons": {k: v.get("python", "?") for k, v in versions.items()},
        },
        "versions": _version_text(versions),
        "version_detail": versions,
        "rounds": rounds,
    }
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    saved = args.out / f"e2e-{stamp}.json"
    saved.write_text(json.dumps(data, indent=1, default=str))
    shutil.rmtree(work / "cert", ignore_errors=True)
    _publish(data, args, say)
    say(f"saved every sample in {saved}; logs in {logs}")
    return 0


def _normalize(data: dict[str, Any]) -> None:
    """Recompute the setup figures from the stored samples (one definition for every run)."""
    for record in data["rounds"]:
        for out in record.values():
            samples = (out.get("setup") or {}).get("samples_ms")
            if samples:
                out["setup_ms"] = statistics.median(samples)
                out["setup_p90_ms"] = percentile(samples, 0.9)


def _publish(data: dict[str, Any], args: argparse.Namespace, say: Any) -> None:
    """Write the markdown table and the chart (and the README section if asked)."""
    args.out.mkdir(parents=True, exist_ok=True)
    _normalize(data)
    markdown, _targets = build_report(data)
    name = "e2e-quick" if data.get("quick") else "e2e"
    (args.out / f"{name}.md").write_text(markdown)
    chart_path = args.out / f"{name}.png"
    problem = write_chart(data, chart_path)
    if problem:
        say(problem)
    print(markdown)
    if args.update_readme:
        chart = None
        if not problem:
            with contextlib.suppress(ValueError):
                chart = str(chart_path.resolve().relative_to(ROOT))
        update_readme(markdown, chart)
        say(f"README.md section {START_MARK} updated")
    say(f"wrote {args.out / (name + '.md')} and {chart_path.name}")


def _version_text(versions: dict[str, dict[str, str]]) -> str:
    merged: dict[str, str] = {}
    for info in versions.values():
        for name, value in info.items():
            if name != "python":
                merged.setdefault(name, value)
    core = merged.pop("anywt_core", None)
    parts = [f"{k} {v}" for k, v in merged.items()]
    if core:
        parts.append(f"anywt core {core}")
    return ", ".join(parts)


def _certificate(work: Path, python: str) -> tuple[Path, Path, str]:
    """A throw-away ECDSA P-256 certificate for 127.0.0.1 (anywt's dev certificate)."""
    folder = work / "cert"
    folder.mkdir()
    code = (
        "import anywt, sys, pathlib\n"
        "c = anywt.generate_dev_certificate(['127.0.0.1'])\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "(d / 'cert.pem').write_bytes(c.cert_pem); (d / 'key.pem').write_bytes(c.key_pem)\n"
        "print(c.sha256_hex)\n"
    )
    out = subprocess.run(  # noqa: PLW1510 - the return code is read
        [python, "-c", code, str(folder)], capture_output=True, text=True, timeout=60, cwd="/"
    )
    if out.returncode != 0:
        raise SystemExit(f"cannot make a certificate: {out.stderr[-500:]}")
    return folder / "cert.pem", folder / "key.pem", out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
