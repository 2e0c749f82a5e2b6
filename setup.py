"""Declares the compiled twins of the hot core modules; metadata lives in pyproject.toml.

Every ``core/_<name>_py.py`` that has a ``core/_<name>_c.pxd`` is compiled by
Cython (pure-Python mode) into the extension ``anywt.core._<name>_c``.

Cython finds the augmenting ``.pxd`` (and resolves ``cimport``) by the
*qualified* module name.  The sources live in ``core/`` but install as
``anywt.core``, so they are staged as ``build/cython-src-*/anywt/core/`` first;
otherwise Cython would silently compile untyped modules.

Environment:
- ``ANYWT_NO_EXTENSIONS=1``: build nothing, install pure Python only.
- ``ANYWT_REQUIRE_EXTENSIONS=1``: a failed compile is an error, not a warning.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
CORE = HERE / "core"
# A private staging directory per build process: pip runs this file several
# times, and concurrent builds must not delete each other's generated C.
(HERE / "build").mkdir(exist_ok=True)
STAGE = Path(tempfile.mkdtemp(prefix="cython-src-", dir=HERE / "build"))
atexit.register(shutil.rmtree, STAGE, ignore_errors=True)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS = _flag("ANYWT_NO_EXTENSIONS") or platform.python_implementation() != "CPython"
REQUIRE_EXTENSIONS = _flag("ANYWT_REQUIRE_EXTENSIONS")


def _warn(message: str) -> None:
    bar = "*" * 72
    sys.stderr.write(f"\n{bar}\nanywt: {message}\n{bar}\n\n")


def _stage_sources() -> list[str]:
    """Copy core/ to build/cython-src/anywt/core/ and return the twin names."""
    target = STAGE / "anywt" / "core"
    target.mkdir(parents=True)
    (STAGE / "anywt" / "__init__.py").write_text("")
    for source in CORE.iterdir():
        if source.suffix in (".py", ".pxd"):
            shutil.copy2(source, target / source.name)
    names = []
    for pxd in sorted(CORE.glob("_*_c.pxd")):
        name = pxd.name[1 : -len("_c.pxd")]
        if (CORE / f"_{name}_py.py").exists():
            names.append(name)
    return names


def _extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        _warn("ANYWT_NO_EXTENSIONS is set (or not CPython): installing the pure-Python core.")
        return []
    try:
        from Cython.Build import cythonize  # noqa: PLC0415 - only needed when compiling
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        _warn("Cython is not available: installing the pure-Python core.")
        return []
    names = _stage_sources()
    extensions = [
        Extension(
            f"anywt.core._{name}_c",
            [str((STAGE / "anywt" / "core" / f"_{name}_py.py").relative_to(HERE))],
        )
        for name in names
    ]
    try:
        return list(
            cythonize(
                extensions,
                include_path=[str(STAGE)],
                # Types come from the .pxd only; the annotations are for mypy and readers.
                compiler_directives={"language_level": "3", "annotation_typing": False},
                # Cython does not notice a changed .pxd in pure-Python mode.
                force=True,
                quiet=True,
            )
        )
    except Exception as exc:  # Cython raises assorted errors on bad sources
        if REQUIRE_EXTENSIONS:
            raise
        _warn(f"cythonize failed ({exc!r}): installing the pure-Python core.")
        return []


class OptionalBuildExt(build_ext):
    """Falls back to pure Python when the C compiler fails, unless required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            _warn(f"building the compiled core failed ({exc!r}): using pure Python.")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            _warn(f"compiling {ext.name} failed ({exc!r}): that module stays pure Python.")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
