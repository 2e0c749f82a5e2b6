"""Peer programs as child processes: own process group, bounded waits, always killed.

Standard library only (the pywebtransport venv's python never imports this;
the tests and ``venvs.py`` do).

- :func:`run` runs a program to its end within a time bound and returns its
  exit status and stdout; on timeout (or any error) the whole process group
  is killed.
- :func:`peer_server` starts a server program that prints one JSON "ready"
  line on stdout, yields ``(process, ready)``, and kills its process group
  when the block ends, also on failure.

Every child gets ``start_new_session=True`` (its own process group, so its
children die with it), ``stdin`` closed, and stderr into a file that the
caller can read for evidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["JsonLines", "run", "peer_server", "stop", "read_json_line", "tail"]


def _exited(proc: subprocess.Popen[Any]) -> bool:
    """True if the leader exited, without reaping it.

    While the leader is an unreaped zombie its pid, which is also the process
    group id, cannot be reused: a later ``killpg`` cannot hit a stranger.
    """
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def stop(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM the child's process group, wait up to ``grace`` s, then SIGKILL it.

    Does nothing once the leader has been reaped: its pid may then belong to
    someone else.
    """
    if proc.returncode is not None:
        return
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    if not _exited(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _exited(proc):
            time.sleep(0.02)
    # Grandchildren may outlive the leader; the group id is still ours (the
    # leader is not reaped yet), so this cannot reach anyone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def tail(path: Path | None, limit: int = 4000) -> str:
    """The end of a log file (for assertion messages)."""
    if path is None:
        return ""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _spawn(
    cmd: Sequence[str],
    *,
    stderr: IO[bytes] | int,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,  # its own process group, killed as one
    )


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    stderr_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> tuple[int | None, str]:
    """Run ``cmd`` to its end; return ``(exit status or None on timeout, stdout)``."""
    with contextlib.ExitStack() as stack:
        err: IO[bytes] | int = (
            stack.enter_context(open(stderr_path, "wb"))
            if stderr_path is not None
            else subprocess.DEVNULL
        )
        proc = _spawn(cmd, stderr=err, env=env, cwd=cwd)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            stop(proc, grace=1.0)
            out = proc.stdout.read() if proc.stdout is not None else b""
            return None, (out or b"").decode("utf-8", "replace")
        finally:
            stop(proc, grace=1.0)  # on any error; a no-op once reaped
            if proc.stdout is not None:
                proc.stdout.close()


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The first stdout line of ``proc`` as JSON; TimeoutError or RuntimeError otherwise."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no ready line within {timeout:g} s")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"exited with {proc.wait(timeout=5)} before its ready line")
            value = json.loads(line)
            if not isinstance(value, dict):
                raise RuntimeError(f"ready line is not a JSON object: {line!r}")
            return value
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before its ready line")


@contextlib.contextmanager
def peer_server(
    cmd: Sequence[str],
    *,
    stderr_path: Path,
    ready_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """Start a server that prints a JSON ready line; stop its process group afterwards."""
    with open(stderr_path, "wb") as err:
        proc = _spawn(cmd, stderr=err, env=env, cwd=None)
    try:
        try:
            ready = read_json_line(proc, ready_timeout)
        except (TimeoutError, RuntimeError, ValueError) as exc:
            raise RuntimeError(
                f"{Path(cmd[1]).name if len(cmd) > 1 else cmd[0]} did not start: {exc}\n"
                f"stderr:\n{tail(stderr_path)}"
            ) from None
        yield proc, ready
    finally:
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


class JsonLines:
    """A JSON-lines log a peer appends to (its ``--report`` file or stderr)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        """Every line that parses as a JSON object (other lines are plain log text)."""
        out: list[dict[str, Any]] = []
        try:
            text = self.path.read_text("utf-8", "replace")
        except OSError:
            return out
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    def wait_for(
        self, name: str, predicate: Any = None, timeout: float = 3.0
    ) -> list[dict[str, Any]]:
        """The ``name`` events matching ``predicate``, waiting (bounded) for one to appear."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.events(name) if predicate is None or predicate(r)]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)
