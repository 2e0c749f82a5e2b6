"""Fixtures of the engine suite: the pure/compiled engine matrix and the QUIC stacks.

``engine_module`` is ``anywt.core._engine_py`` and then ``anywt.core._engine_c``
(skipped when the compiled engine is not built, an error under
``ANYWT_REQUIRE_EXTENSIONS``); ``stack_name`` runs in-memory pair tests on
aioquic and on qh3.  Hypothesis runs with ``ENGINE_SETTINGS``: few examples,
derandomized, so the suite stays fast and repeatable (``engine_wire.ENGINE_SETTINGS``).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

# tests/ on the path for ``helpers.quicpair`` (tests/ is not a package).
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def load_engine(compiled: bool) -> ModuleType:
    """The engine module; skip (or fail under ANYWT_REQUIRE_EXTENSIONS) without the compiled one."""
    if not compiled:
        return importlib.import_module("anywt.core._engine_py")
    try:
        return importlib.import_module("anywt.core._engine_c")
    except ImportError as exc:
        if _flag("ANYWT_REQUIRE_EXTENSIONS"):
            pytest.fail(
                f"ANYWT_REQUIRE_EXTENSIONS is set but the compiled engine is missing: {exc}"
            )
        pytest.skip("compiled core not built")


@pytest.fixture(scope="session", params=["pure", "compiled"])
def engine_module(request: pytest.FixtureRequest) -> ModuleType:
    """The engine implementation under test."""
    return load_engine(request.param == "compiled")


@pytest.fixture(scope="session")
def engine_modules() -> tuple[ModuleType, ModuleType]:
    """(pure, compiled), for differential tests."""
    return load_engine(False), load_engine(True)


@pytest.fixture(params=["aioquic", "qh3"])
def stack_name(request: pytest.FixtureRequest) -> str:
    """The QUIC stack under an in-memory pair."""
    if request.param == "qh3":
        pytest.importorskip("qh3")
    return str(request.param)
