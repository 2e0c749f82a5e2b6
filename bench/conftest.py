"""Micro-benchmark fixtures: the pure and the compiled core side by side, ratios at the end.

Run ``pytest bench`` from the repository root (it imports the installed anywt).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
from report import format_ratios


class Impl:
    """The pure (``_x_py``) or compiled (``_x_c``) twins of the hot core modules."""

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled
        self.name = "compiled" if compiled else "pure"
        suffix = "c" if compiled else "py"
        self.varint: ModuleType = importlib.import_module(f"anywt.core._varint_{suffix}")
        self.capsule: ModuleType = importlib.import_module(f"anywt.core._capsule_{suffix}")
        self.frames: ModuleType = importlib.import_module(f"anywt.core._frames_{suffix}")
        self.flow: ModuleType = importlib.import_module(f"anywt.core._flow_{suffix}")


@pytest.fixture(scope="session", params=[False, True], ids=["pure", "compiled"])
def impl(request: pytest.FixtureRequest) -> Impl:
    try:
        return Impl(compiled=request.param)
    except ImportError as exc:
        flag = os.environ.get("ANYWT_REQUIRE_EXTENSIONS", "").strip().lower()
        if flag not in ("", "0", "false", "no"):
            pytest.fail(f"ANYWT_REQUIRE_EXTENSIONS is set but the compiled core is missing: {exc}")
        pytest.skip("compiled core not built: reinstall anywt with a C compiler")


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    benchmarks = getattr(session, "benchmarks", None)
    if not benchmarks:
        return
    rows = []
    for bench in benchmarks:
        if bench.has_error or not bench.stats:
            continue
        rows.append(
            {
                "group": bench.group,
                "name": bench.name,
                "extra_info": bench.extra_info,
                "stats": {"min": bench.stats.min, "median": bench.stats.median},
            }
        )
    terminalreporter.write_sep("-", "anywt micro-benchmarks: ratios within this run")
    terminalreporter.write_line(format_ratios(rows, "min"))
    terminalreporter.write_line("")
    terminalreporter.write_line(format_ratios(rows, "median"))


@pytest.fixture(scope="session")
def impl_modules() -> dict[str, ModuleType]:
    """The pure and the compiled engine modules, by implementation name."""
    modules = {"pure": importlib.import_module("anywt.core._engine_py")}
    try:
        modules["compiled"] = importlib.import_module("anywt.core._engine_c")
    except ImportError as exc:
        flag = os.environ.get("ANYWT_REQUIRE_EXTENSIONS", "").strip().lower()
        if flag not in ("", "0", "false", "no"):
            pytest.fail(f"ANYWT_REQUIRE_EXTENSIONS is set but the compiled core is missing: {exc}")
        pytest.skip("compiled core not built: reinstall anywt with a C compiler")
    return modules
