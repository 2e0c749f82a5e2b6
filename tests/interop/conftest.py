"""Interop tests: shared fixtures and the rules every interop test follows.

- A peer that is not installed (Chromium, a CPython >= 3.12 for
  pywebtransport) makes its tests skip, with the install command in the
  reason.  With ``ANYWT_REQUIRE_INTEROP=1`` (CI sets it) every skip of a test
  under this directory is turned into a failure: :func:`pytest_runtest_makereport`.
- Every test is bounded in time: a SIGALRM watchdog fails a test that outlives
  its ``interop_timeout`` mark (default :data:`DEFAULT_TIMEOUT` s), on top
  of the bounded waits inside each test.  Peer processes run in their own
  process groups and are killed in ``finally`` blocks (``tests/peers/procs.py``,
  ``browser/harness.py``).
- 127.0.0.1 only.
- Rows on the aiopquic backend (CPython >= 3.12 only) are not collected on
  an older interpreter (``matrix.rows_for``); on 3.12 without
  ``anywt[aiopquic]`` they skip like a missing peer: :func:`_aiopquic_installed`.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE.parent / "peers"
for _path in (HERE, HERE / "browser", PEERS_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import venvs  # noqa: E402
from harness import find_chromium  # noqa: E402
from matrix import Row  # noqa: E402

import anywt  # noqa: E402

#: Seconds a test may take unless its ``interop_timeout`` mark says otherwise.
DEFAULT_TIMEOUT = 120.0

INSTALL_CHROMIUM = "apt-get install chromium"
INSTALL_PY312 = "pyenv install 3.12"
INSTALL_AIOPQUIC = "pip install 'anywt[aiopquic]'"


def interop_required() -> bool:
    """True when ``ANYWT_REQUIRE_INTEROP`` asks for every interop test to run."""
    return os.environ.get("ANYWT_REQUIRE_INTEROP", "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop_timeout(seconds): fail the interop test after this many seconds"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``ANYWT_REQUIRE_INTEROP=1`` a skipped interop test is a failed one."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or hasattr(report, "wasxfail") or not interop_required():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"ANYWT_REQUIRE_INTEROP=1: this interop test must run, but it was skipped: {reason}"
    )


# --------------------------------------------------------------------------
# Time bound
# --------------------------------------------------------------------------


class InteropTimeout(Exception):
    """The test outlived its interop_timeout."""


@pytest.fixture(autouse=True)
def _interop_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test (raising in the main thread) once its time is up."""
    mark = request.node.get_closest_marker("interop_timeout")
    limit = float(mark.args[0]) if mark is not None else DEFAULT_TIMEOUT

    def expired(signum: int, frame: FrameType | None) -> None:
        raise InteropTimeout(f"interop test exceeded its {limit:g} s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------
# Peers that may be missing
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary (skip, or fail under ANYWT_REQUIRE_INTEROP, without one)."""
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            f"no Chromium found (install it: `{INSTALL_CHROMIUM}`, "
            "or point ANYWT_CHROMIUM at a binary)"
        )
    return binary


@functools.cache
def _aiopquic_import_error() -> str | None:
    """Why anywt's aiopquic backend does not import here (None when it does)."""
    try:
        importlib.import_module("anywt.backends.aiopquic")
    except ImportError as exc:
        return str(exc)
    return None


@pytest.fixture(autouse=True)
def _aiopquic_installed(request: pytest.FixtureRequest) -> None:
    """A test running a matrix row on aiopquic skips (fails under ANYWT_REQUIRE_INTEROP) without it.

    Only the row's own test (``Row.test``): ``test_matrix.py`` takes rows too,
    and checks them without any backend.
    """
    callspec = getattr(request.node, "callspec", None)
    row = callspec.params.get("row") if callspec is not None else None
    if not isinstance(row, Row) or "aiopquic" not in row.backends:
        return
    if row.test.partition("::")[2] != getattr(request.node, "originalname", None):
        return
    error = _aiopquic_import_error()
    if error is not None:
        pytest.skip(f"the aiopquic backend does not import ({error}): `{INSTALL_AIOPQUIC}`")


@pytest.fixture(scope="session")
def pywebtransport_python() -> Path:
    """The pywebtransport venv's python, built once under ~/.cache/anywt-peers."""
    result = venvs.ensure_venv("pywebtransport")
    if result.python is None:
        reason = result.reason
        if INSTALL_PY312 not in reason:
            reason += f" (a CPython >= 3.12 is needed: `{INSTALL_PY312}`)"
        pytest.skip(f"pywebtransport peer unavailable: {reason}")
    return result.python


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def peer_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[anywt.DevCertificate, Path, Path]:
    """A certificate for peer servers: (certificate, certfile, keyfile).

    anywt's local-development certificate (ECDSA P-256, 14 days at most,
    CA:FALSE, SANs for 127.0.0.1): what browsers pin and what rustls
    (pywebtransport) accepts as its own trust anchor.
    """
    cert = anywt.generate_dev_certificate()
    certfile, keyfile = cert.write(tmp_path_factory.mktemp("peer-cert"))
    return cert, Path(certfile), Path(keyfile)
