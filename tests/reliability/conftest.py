"""Fixtures of the reliability suite: fuzzing, limits, loss, load and faults.

Every async test runs under asyncio and under trio (anyio's pytest plugin);
tests that move real QUIC traffic also take ``quic_backend`` where it matters.
Everything binds 127.0.0.1 and is bounded in time.

``ANYWT_LONG=1`` turns the bounded CI sizes into the long ones of issue 7
(100 MB through the lossy proxy, 1,000 sessions x 10 streams, longer
fuzzing); the tests are the same, only their sizes change, so the CI run
skips nothing.  ``reliability_sizes`` says which sizes are in force.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for extra in (HERE, HERE.parent / "engine", ROOT / "fuzz"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """anyio's pytest plugin runs each ``@pytest.mark.anyio`` test on this backend."""
    return str(request.param)


@pytest.fixture(scope="session", params=["pure", "compiled"])
def engine_module(request: pytest.FixtureRequest) -> ModuleType:
    """The engine under test: the pure-Python one, then the compiled one."""
    if request.param == "pure":
        return importlib.import_module("anywt.core._engine_py")
    try:
        return importlib.import_module("anywt.core._engine_c")
    except ImportError as exc:
        if os.environ.get("ANYWT_REQUIRE_EXTENSIONS", "").strip() not in ("", "0"):
            pytest.fail(
                f"ANYWT_REQUIRE_EXTENSIONS is set but the compiled engine is missing: {exc}"
            )
        pytest.skip("compiled core not built")
