"""The one place that decides between the compiled and the pure-Python core.

Each hot module exists once, as ``_<name>_py.py`` (the source of truth, plain
Python) and is compiled from that same source into ``_<name>_c`` when the
extension build succeeds.  ``load_twin`` returns the compiled module unless
``ANYWT_NO_EXTENSIONS`` is set; a missing compiled module falls back to pure
Python with a visible warning, or is an error under
``ANYWT_REQUIRE_EXTENSIONS``.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import ModuleType

__all__ = ["NO_EXTENSIONS", "REQUIRE_EXTENSIONS", "load_twin", "twin_status"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS: bool = _flag("ANYWT_NO_EXTENSIONS") or sys.implementation.name != "cpython"
REQUIRE_EXTENSIONS: bool = _flag("ANYWT_REQUIRE_EXTENSIONS") and not _flag("ANYWT_NO_EXTENSIONS")

_status: dict[str, bool] = {}
_warned: list[bool] = []  # one warning per process


def load_twin(name: str) -> ModuleType:
    """Import ``anywt.core._<name>_c``, or ``_<name>_py`` when it cannot be used."""
    package = __name__.rpartition(".")[0]
    pure = f"{package}._{name}_py"
    if NO_EXTENSIONS:
        _status[name] = False
        return importlib.import_module(pure)
    try:
        module = importlib.import_module(f"{package}._{name}_c")
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                f"ANYWT_REQUIRE_EXTENSIONS is set but {package}._{name}_c cannot be imported: {exc}"
            ) from exc
        if not _warned:
            _warned.append(True)
            warnings.warn(
                f"anywt: the compiled core is not available ({exc}); running the "
                "pure-Python core, which is much slower. Reinstall with a C compiler, "
                "or set ANYWT_NO_EXTENSIONS=1 to silence this warning.",
                RuntimeWarning,
                stacklevel=3,
            )
        _status[name] = False
        return importlib.import_module(pure)
    _status[name] = True
    return module


def twin_status() -> dict[str, bool]:
    """Which twins are loaded, and whether each is the compiled one."""
    return dict(_status)
