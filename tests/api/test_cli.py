"""The command line, run as subprocesses (from /tmp, so the installed anywt is the one imported)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from wt_harness import QUIC_BACKENDS

#: Seconds any one command may take.
TIMEOUT = 30
CWD = "/tmp"


def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anywt", *args],
        cwd=CWD,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``process``, or fail after ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no output within {timeout} s")


@contextmanager
def echo_server(backend: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anywt",
            "serve-echo",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--backend",
            backend,
        ],
        cwd=CWD,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = read_line(process, TIMEOUT)
        try:
            info = json.loads(first)
        except json.JSONDecodeError:
            pytest.fail(f"the first line is not JSON: {first!r}")
        yield process, info
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("backend", QUIC_BACKENDS)
def test_serve_echo_and_client(backend: str) -> None:
    with echo_server(backend) as (process, info):
        assert info["host"] == "127.0.0.1"
        port = info["port"]
        assert isinstance(port, int) and 0 < port < 65536
        assert info["url"] == f"https://127.0.0.1:{port}/echo"
        assert re.fullmatch(r"[0-9a-f]{64}", info["cert_sha256"])
        result = run(
            "client", info["url"], "--cert-hash", info["cert_sha256"], "--backend", backend
        )
        assert result.returncode == 0, result.stderr
        echoes = json.loads(result.stdout.strip().splitlines()[-1])
        assert echoes["bidi_echo"] == "hello from anywt"
        assert echoes["uni_echo"] == "hello from anywt"
        assert echoes["datagram_echo"] == "datagram: hello from anywt"
        assert echoes["draft"].startswith("draft-")

        # A wrong hash is refused: non-zero exit, no echo.
        refused = run(
            "client", info["url"], "--cert-hash", "00" * 32, "--backend", backend, "--timeout", "3"
        )
        assert refused.returncode != 0
        assert "hello from anywt" not in refused.stdout

        # SIGTERM stops the server cleanly.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0


@pytest.mark.parametrize(
    ("backend", "loop"),
    [(backend, loop) for backend in QUIC_BACKENDS for loop in ("asyncio", "uvloop", "trio")],
)
def test_demo(backend: str, loop: str) -> None:
    result = run("demo", "--backend", backend, "--loop", loop)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout
    assert "code 4242" in result.stdout


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"anywt \d+\.\d+\.\d+\S* \((compiled|pure Python) core\)\n", result.stdout)


def test_no_command_prints_help() -> None:
    result = run()
    assert result.returncode == 2
    assert "serve-echo" in result.stdout


def test_runs_from_the_installed_package() -> None:
    # Sanity of the harness: from /tmp the import is the installed copy, not the checkout.
    result = subprocess.run(
        [sys.executable, "-c", "import anywt; print(anywt.__file__)"],
        cwd=CWD,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    checkout = Path(__file__).resolve().parents[2] / "anywt"
    assert not result.stdout.startswith(str(checkout))
    assert "site-packages" in result.stdout
