"""The CPython >= 3.12 venv of the bench: aiopquic, pywebtransport and anywt from this checkout.

aiopquic 0.6 and pywebtransport 0.21 need CPython >= 3.12; the project may
run on 3.11.  ``ensure_bench_venv()`` finds a 3.12/3.13 interpreter
(``ANYWT_PY312``, pyenv, or ``python3.12``/``python3.13`` on PATH), creates
the venv once under ``ANYWT_BENCH_VENV`` (default
``~/.cache/anywt-bench/py312``), installs the pinned references and anywt
from this checkout, and reinstalls anywt whenever the checkout's sources
change (a hash of them is kept in the venv).  Standard library only.

    python bench/e2e/envs.py          # build or refresh; prints the venv's python
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ("aiopquic==0.6.1", "pywebtransport==0.21.1")
EXTRAS = "qh3,trio,uvloop"
MARKER = "anywt-bench.json"
_SOURCE_DIRS = ("anywt", "core", "backends")
_SOURCE_FILES = ("setup.py", "pyproject.toml")


def source_hash(root: Path = ROOT) -> str:
    """SHA-256 over anywt's sources in the checkout (what an install would build)."""
    digest = hashlib.sha256()
    paths = [root / name for name in _SOURCE_FILES]
    for folder in _SOURCE_DIRS:
        paths.extend(sorted((root / folder).glob("*.py")))
        paths.extend(sorted((root / folder).glob("*.pxd")))
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def installed_differs(python: str, root: Path = ROOT) -> list[str]:
    """Source files whose installed copy (under ``python``) differs from the checkout."""
    code = "import anywt, os; print(os.path.dirname(anywt.__file__))"
    try:
        out = subprocess.run(  # noqa: PLW1510 - the return code is read
            [python, "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired):
        return ["(anywt does not import)"]
    if out.returncode != 0:
        return ["(anywt does not import)"]
    installed = Path(out.stdout.strip())
    differs = []
    for folder, target in (("anywt", installed), ("core", installed / "core")):
        for path in sorted((root / folder).glob("*.py")):
            copy = target / path.name
            if not copy.is_file() or copy.read_bytes() != path.read_bytes():
                differs.append(f"{folder}/{path.name}")
    for path in sorted((root / "backends").glob("*.py")):
        copy = installed / "backends" / path.name
        if not copy.is_file() or copy.read_bytes() != path.read_bytes():
            differs.append(f"backends/{path.name}")
    return differs


def venv_dir() -> Path:
    env = os.environ.get("ANYWT_BENCH_VENV")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "anywt-bench" / "py312"


def _version(command: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(  # noqa: PLW1510 - the return code is read
            [command, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python312() -> str | None:
    candidates: list[str] = []
    if os.environ.get("ANYWT_PY312"):
        candidates.append(os.environ["ANYWT_PY312"])
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        for minor in (12, 13):
            names = sorted(
                (p.name for p in pyenv.iterdir() if re.fullmatch(rf"3\.{minor}\.\d+", p.name)),
                key=lambda n: tuple(int(x) for x in n.split(".")),
                reverse=True,
            )
            candidates.extend(str(pyenv / n / "bin" / "python3") for n in names)
    for name in ("python3.12", "python3.13"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for command in candidates:
        version = _version(command)
        if version is not None and (3, 12) <= version <= (3, 13):
            return command
    return None


def _staged_source(scratch: Path) -> Path:
    """A copy of what builds anywt, so that this build never shares ``build/`` with another."""
    target = scratch / "anywt-src"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.html", "build")
    for folder in _SOURCE_DIRS:
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    for name in (*_SOURCE_FILES, "README.md", "MANIFEST.in"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target / name)
    return target


def _pip(python: Path, *args: str, timeout: float) -> tuple[bool, str]:
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    try:
        out = subprocess.run(  # noqa: PLW1510 - the return code is read
            [str(python), "-m", "pip", "install", "--quiet", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"pip timed out after {timeout:.0f} s"
    if out.returncode != 0:
        return False, (out.stderr or out.stdout)[-3000:]
    return True, ""


def ensure_bench_venv(*, timeout: float = 900.0, log: object = None) -> tuple[str | None, str]:
    """(python of the bench venv, "") or (None, why not). Builds or refreshes as needed."""

    def say(text: str) -> None:
        if callable(log):
            log(text)

    directory = venv_dir()
    python = directory / "bin" / "python"
    want_hash = source_hash()
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    if marker.get("references") != list(REFERENCES) or not python.exists():
        interpreter = find_python312()
        if interpreter is None:
            return None, "no CPython 3.12/3.13 found (set ANYWT_PY312)"
        say(f"creating the bench venv {directory} with {interpreter}")
        if directory.exists():
            shutil.rmtree(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(  # noqa: PLW1510 - the return code is read
            [interpreter, "-m", "venv", str(directory)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return None, f"venv creation failed: {made.stderr[-2000:]}"
        say("installing " + " ".join(REFERENCES) + f" and anywt[{EXTRAS}] from the checkout")
        with tempfile.TemporaryDirectory(prefix="anywt-bench-src-") as scratch:
            source = _staged_source(Path(scratch))
            ok, err = _pip(python, *REFERENCES, f"{source}[{EXTRAS}]", timeout=timeout)
        if not ok:
            return None, f"installing the bench venv failed: {err}"
        marker = {"references": list(REFERENCES), "anywt_source": want_hash}
        (directory / MARKER).write_text(json.dumps(marker))
    elif marker.get("anywt_source") != want_hash:
        say("the checkout changed: reinstalling anywt into the bench venv (a few minutes)")
        with tempfile.TemporaryDirectory(prefix="anywt-bench-src-") as scratch:
            source = _staged_source(Path(scratch))
            ok, err = _pip(python, "--no-deps", "--force-reinstall", str(source), timeout=timeout)
        if not ok:
            return None, f"reinstalling anywt failed: {err}"
        marker["anywt_source"] = want_hash
        (directory / MARKER).write_text(json.dumps(marker))
    return str(python), ""


if __name__ == "__main__":
    found, reason = ensure_bench_venv(log=lambda text: print(text, file=sys.stderr))
    if found is None:
        print(reason, file=sys.stderr)
        sys.exit(1)
    print(found)
