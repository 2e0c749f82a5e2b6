"""Shared fixtures: the compiled/pure core matrix (aio-libs style).

Every sans-IO test that takes ``core`` runs twice, once against the pure
Python twins (``anywt.core._<name>_py``) and once against the compiled ones
(``anywt.core._<name>_c``), whatever ``ANYWT_NO_EXTENSIONS`` says about the
live dispatchers.  ``core_pair`` gives both at once for differential tests.

Tests import the *installed* anywt: run ``pytest`` from the repository root,
never ``python -m pytest`` (that would put the source tree's ``anywt/`` first).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: bounded and fast by default (the whole sans-IO suite in well under a
# minute); HYPOTHESIS_PROFILE=ci is deterministic with twice the examples,
# =thorough searches much harder.
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci", parent=settings.get_profile("dev"), max_examples=200, derandomize=True
)
settings.register_profile("thorough", parent=settings.get_profile("dev"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

#: The twins: each is ``core/_<name>_py.py`` compiled with ``core/_<name>_c.pxd``.
TWINS = ("varint", "capsule", "frames", "flow")


def _flag(name: str) -> bool:
    # Same reading as anywt.core._accel.
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class CoreImpl:
    """One implementation of the hot core modules: compiled or pure Python."""

    compiled: bool

    def _module(self, name: str) -> ModuleType:
        suffix = "c" if self.compiled else "py"
        return importlib.import_module(f"anywt.core._{name}_{suffix}")

    @property
    def name(self) -> str:
        return "compiled" if self.compiled else "pure"

    @property
    def varint(self) -> ModuleType:
        return self._module("varint")

    @property
    def capsule(self) -> ModuleType:
        return self._module("capsule")

    @property
    def frames(self) -> ModuleType:
        return self._module("frames")

    @property
    def flow(self) -> ModuleType:
        return self._module("flow")

    def __str__(self) -> str:
        return self.name


PURE = CoreImpl(compiled=False)
COMPILED = CoreImpl(compiled=True)


def _check_compiled() -> None:
    """Skip (or, under ANYWT_REQUIRE_EXTENSIONS, fail) when the compiled twins are missing."""
    try:
        for name in TWINS:
            importlib.import_module(f"anywt.core._{name}_c")
    except ImportError as exc:
        if _flag("ANYWT_REQUIRE_EXTENSIONS"):
            pytest.fail(f"ANYWT_REQUIRE_EXTENSIONS is set but the compiled core is missing: {exc}")
        pytest.skip("compiled core not built: reinstall anywt with a C compiler")


@pytest.fixture(scope="session", params=[False, True], ids=["pure", "compiled"])
def core(request: pytest.FixtureRequest) -> CoreImpl:
    """The core implementation under test: pure Python, then compiled."""
    if request.param:
        _check_compiled()
    return CoreImpl(compiled=request.param)


@pytest.fixture(scope="session")
def core_pair() -> tuple[CoreImpl, CoreImpl]:
    """``(pure, compiled)`` for differential tests."""
    _check_compiled()
    return PURE, COMPILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the pure-vs-compiled comparisons, so a pure-only install can leave them out."""
    for item in items:
        if "core_pair" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.differential)
