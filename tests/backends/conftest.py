"""Fixtures of the backend suite: both QUIC stacks, real connections in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The aiopquic backend exists on CPython >= 3.12 only (aiopquic's wheels): on an
# older interpreter its modules are not part of the suite (CI runs them in its
# 3.12 stage), rather than collected and skipped.
collect_ignore = (
    ["test_aiopquic.py", "test_aiopquic_chromium.py"] if sys.version_info < (3, 12) else []
)

# tests/ on the path for ``helpers.quicpair`` (tests/ is not a package).
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture(params=["aioquic", "qh3"])
def stack_name(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    pytest.importorskip(str(request.param))
    return str(request.param)
