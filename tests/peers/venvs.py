"""Private virtual environments for interop peer programs.

Some interop peers need another Python than the one running the tests
(pywebtransport 0.21 needs CPython >= 3.12).  This module finds a suitable
interpreter, creates a venv for the peer once under a cache directory, installs
the pinned packages into it and hands back the venv's ``python``.

Importable::

    from tests.peers.venvs import ensure_venv
    python, reason = ensure_venv("pywebtransport")
    if python is None:
        pytest.skip(reason)

or as a command line tool (prints the python path, or the reason on stderr and
exits 1)::

    python tests/peers/venvs.py pywebtransport
    python tests/peers/venvs.py --list

Environment:

- ``ANYWT_PEER_VENV_DIR``: cache root (default ``~/.cache/anywt-peers``); each
  peer gets ``<root>/<name>``.
- ``ANYWT_PY312``: the interpreter to use (path or command), checked first.
- ``ANYWT_PEER_PIP_TIMEOUT``: seconds allowed for the whole pip install
  (default 300).
- ``ANYWT_PEER_OFFLINE=1``: never create or install; only reuse a ready venv.

Works without a terminal: pip runs with ``--no-input`` and stdin closed,
every child in its own process group, killed on timeout (``procs.py``).
Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

try:
    from . import procs
except ImportError:  # run as a script, or imported with tests/peers on sys.path
    import procs  # type: ignore[no-redef]


@dataclass(frozen=True)
class PeerSpec:
    """What one peer needs: pinned requirements and the Python it runs on."""

    name: str
    requirements: tuple[str, ...]
    min_python: tuple[int, int]
    max_python: tuple[int, int]  # inclusive; newest minor version we try
    import_check: str  # a module that must import once installed


PEERS = {
    "pywebtransport": PeerSpec(
        name="pywebtransport",
        requirements=("pywebtransport==0.21.1",),
        min_python=(3, 12),
        max_python=(3, 13),
        import_check="pywebtransport",
    ),
}

MARKER = "anywt-peer.json"
_PROBE_TIMEOUT = 20.0
_VENV_TIMEOUT = 180.0
_DEFAULT_PIP_TIMEOUT = 300.0


class VenvResult(NamedTuple):
    """``python`` is the venv interpreter, or None and ``reason`` says why."""

    python: Path | None
    reason: str


class _Interpreter(NamedTuple):
    path: str
    version: tuple[int, int, int]


# --------------------------------------------------------------------------
# Finding an interpreter
# --------------------------------------------------------------------------

_PROBE_CODE = (
    "import sys, json, venv, ensurepip;"
    "print(json.dumps({'impl': sys.implementation.name,"
    " 'version': list(sys.version_info[:3]), 'exe': sys.executable}))"
)


def _probe(command: str) -> _Interpreter | None:
    """Run ``command`` and return what it is, or None if it does not work.

    A pyenv shim for a version that is not selected exits non-zero, so only a
    successful run counts.
    """
    try:
        returncode, stdout = procs.run([command, "-I", "-c", _PROBE_CODE], timeout=_PROBE_TIMEOUT)
    except OSError:
        return None
    if returncode != 0:
        return None
    try:
        info = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    if info.get("impl") != "cpython":
        return None
    major, minor, micro = (int(x) for x in info["version"])
    return _Interpreter(path=info.get("exe") or command, version=(major, minor, micro))


def _pyenv_root() -> Path | None:
    env = os.environ.get("PYENV_ROOT")
    if env:
        return Path(env)
    exe = shutil.which("pyenv")
    if exe:
        try:
            returncode, stdout = procs.run([exe, "root"], timeout=_PROBE_TIMEOUT)
            if returncode == 0 and stdout.strip():
                return Path(stdout.strip())
        except OSError:
            pass
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split("."))


def _candidates(spec: PeerSpec) -> Iterator[str]:
    """Interpreter commands in order of preference."""
    env = os.environ.get("ANYWT_PY312")
    if env:
        yield env
    root = _pyenv_root()
    wanted = [(3, minor) for minor in range(spec.min_python[1], spec.max_python[1] + 1)]
    if root is not None and (root / "versions").is_dir():
        names = [p.name for p in (root / "versions").iterdir()]
        for major, minor in wanted:
            pattern = re.compile(rf"^{major}\.{minor}\.\d+$")
            # newest patch release of the oldest suitable minor version first
            for name in sorted(
                (n for n in names if pattern.match(n)), key=_version_key, reverse=True
            ):
                yield str(root / "versions" / name / "bin" / "python3")
    for major, minor in wanted:
        exe = shutil.which(f"python{major}.{minor}")
        if exe:
            yield exe


def find_interpreter(spec: PeerSpec) -> tuple[str | None, str]:
    """Return (interpreter path, "") or (None, reason)."""
    tried = []
    for command in _candidates(spec):
        if command in tried:
            continue
        tried.append(command)
        info = _probe(command)
        if info is None:
            continue
        if spec.min_python <= info.version[:2] <= spec.max_python:
            return info.path, ""
    want = f"{spec.min_python[0]}.{spec.min_python[1]}"
    reason = (
        f"CPython >= {want} not found (needed by peer {spec.name!r}); "
        f"install with `pyenv install {want}` or set ANYWT_PY312 to an interpreter"
    )
    if tried:
        reason += f" (tried: {', '.join(tried)})"
    return None, reason


# --------------------------------------------------------------------------
# Creating the venv
# --------------------------------------------------------------------------


def cache_root() -> Path:
    env = os.environ.get("ANYWT_PEER_VENV_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "anywt-peers"


def venv_dir(name: str) -> Path:
    return cache_root() / name


def _venv_python(directory: Path) -> Path:
    if os.name == "nt":
        return directory / "Scripts" / "python.exe"
    return directory / "bin" / "python"


def _marker_content(spec: PeerSpec) -> dict[str, object]:
    return {"name": spec.name, "requirements": list(spec.requirements)}


def _is_ready(spec: PeerSpec, directory: Path) -> bool:
    python = _venv_python(directory)
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker != _marker_content(spec) or not python.exists():
        return False
    try:
        returncode, _ = procs.run(
            [str(python), "-I", "-c", f"import {spec.import_check}"], timeout=60
        )
    except OSError:
        return False
    return returncode == 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive file lock (parallel test workers create venvs once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no locking, creation is still idempotent
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(cmd: Sequence[str], timeout: float) -> tuple[bool, str]:
    env = dict(os.environ)
    env.update(
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    with tempfile.TemporaryDirectory(prefix="anywt-venv-") as scratch:
        err_path = Path(scratch) / "stderr"
        try:
            returncode, stdout = procs.run(cmd, timeout=timeout, stderr_path=err_path, env=env)
        except OSError as exc:
            return False, f"could not run {cmd[0]}: {exc}"
        stderr = procs.tail(err_path, 20000)
    if returncode is None:
        return False, f"timed out after {timeout:.0f}s: {' '.join(cmd)}"
    if returncode != 0:
        return False, f"{' '.join(cmd)} exited {returncode}:\n{_tail(stderr or stdout)}"
    return True, ""


def ensure_venv(
    name: str = "pywebtransport",
    *,
    recreate: bool = False,
    pip_timeout: float | None = None,
) -> VenvResult:
    """Create (once) the venv for peer ``name`` and return its python.

    Never raises for environmental problems: they come back as ``reason``.
    """
    spec = PEERS.get(name)
    if spec is None:
        return VenvResult(None, f"unknown peer {name!r}; known: {', '.join(sorted(PEERS))}")
    directory = venv_dir(name)
    if not recreate and _is_ready(spec, directory):
        return VenvResult(_venv_python(directory), "")
    if os.environ.get("ANYWT_PEER_OFFLINE") == "1":
        return VenvResult(None, f"peer venv {directory} not ready and ANYWT_PEER_OFFLINE=1")
    if pip_timeout is None:
        pip_timeout = float(os.environ.get("ANYWT_PEER_PIP_TIMEOUT", _DEFAULT_PIP_TIMEOUT))

    with _locked(directory.parent / f".{name}.lock"):
        # Another process may have finished it while we waited for the lock.
        if not recreate and _is_ready(spec, directory):
            return VenvResult(_venv_python(directory), "")
        interpreter, reason = find_interpreter(spec)
        if interpreter is None:
            return VenvResult(None, reason)
        if directory.exists():
            shutil.rmtree(directory)
        ok, err = _run([interpreter, "-m", "venv", str(directory)], _VENV_TIMEOUT)
        if not ok:
            return VenvResult(None, f"creating venv failed: {err}")
        python = _venv_python(directory)
        ok, err = _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--timeout",
                "60",
                "--retries",
                "2",
                *spec.requirements,
            ],
            pip_timeout,
        )
        if not ok:
            return VenvResult(None, f"installing {' '.join(spec.requirements)} failed: {err}")
        (directory / MARKER).write_text(json.dumps(_marker_content(spec)))
        if not _is_ready(spec, directory):
            return VenvResult(
                None, f"venv {directory} built but `import {spec.import_check}` fails"
            )
        return VenvResult(python, "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create or locate an interop peer venv.")
    parser.add_argument("name", nargs="?", default="pywebtransport", help="peer name")
    parser.add_argument("--recreate", action="store_true", help="rebuild from scratch")
    parser.add_argument("--list", action="store_true", help="list known peers and exit")
    parser.add_argument("--pip-timeout", type=float, default=None, help="seconds for pip")
    args = parser.parse_args(argv)
    if args.list:
        for spec in PEERS.values():
            print(f"{spec.name}: {' '.join(spec.requirements)} -> {venv_dir(spec.name)}")
        return 0
    result = ensure_venv(args.name, recreate=args.recreate, pip_timeout=args.pip_timeout)
    if result.python is None:
        print(result.reason, file=sys.stderr)
        return 1
    print(result.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
