"""The build: compiled twins really got their C types, the dispatch switches, core's imports.

None of this times anything.  The ``.pxd`` files of the source tree are the
reference: every name they declare must show up, as C, in the compiled module.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_SRC = REPO / "core"
PXDS = sorted(CORE_SRC.glob("_*_c.pxd"))
TWIN_NAMES = [p.name[1 : -len("_c.pxd")] for p in PXDS]

# DESIGN.md section 1: core/ imports only the standard library and pylsqpack;
# no event loop, no QUIC stack, no sockets, no threads, no clock.
BLOCKED = ("anyio", "asyncio", "trio", "aioquic", "qh3", "socket", "selectors", "threading")
NO_CLOCK = ("time", "datetime")
ALLOWED_THIRD_PARTY = ("pylsqpack",)


def _flag(name: str) -> bool:
    # Same reading as anywt.core._accel.
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def compiled_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(f"anywt.core._{name}_c")
    except ImportError as exc:
        if _flag("ANYWT_REQUIRE_EXTENSIONS"):
            pytest.fail(
                f"ANYWT_REQUIRE_EXTENSIONS is set but anywt.core._{name}_c is missing: {exc}"
            )
        pytest.skip("compiled core not built: reinstall anywt with a C compiler")


def pure_module(name: str, decl: PxdDecl) -> types.ModuleType:
    """The installed pure twin; it must define what the source tree's .pxd declares.

    Cython refuses a .pxd that declares what the .py lacks, so a missing name
    means the installed copy predates core/ (edited since the last install).
    """
    module = importlib.import_module(f"anywt.core._{name}_py")
    missing = [
        n for n in [*decl.functions, *decl.variables, *decl.classes] if not hasattr(module, n)
    ]
    for cls_name, cls_decl in decl.classes.items():
        cls = getattr(module, cls_name, None)
        missing += [f"{cls_name}.{m}" for m in cls_decl.methods if not hasattr(cls, m)]
    if missing:
        message = (
            f"installed anywt.core._{name}_py predates core/_{name}_c.pxd ({missing}): reinstall"
        )
        if _flag("ANYWT_REQUIRE_EXTENSIONS"):
            pytest.fail(message)
        pytest.skip(message)
    return module


def compiled_available() -> bool:
    try:
        for name in TWIN_NAMES:
            importlib.import_module(f"anywt.core._{name}_c")
    except ImportError:
        return False
    return True


# -- reading the .pxd files ------------------------------------------------------------------


@dataclass
class ClassDecl:
    methods: dict[str, str] = field(default_factory=dict)  # name -> "cpdef" | "cdef"
    attributes: dict[str, str] = field(default_factory=dict)  # name -> public|readonly|private


@dataclass
class PxdDecl:
    functions: dict[str, str] = field(default_factory=dict)  # name -> "cpdef" | "cdef"
    variables: set[str] = field(default_factory=set)
    classes: dict[str, ClassDecl] = field(default_factory=dict)


_DECORATOR = re.compile(r"@cython\.\w+\((?:[^()]|\([^()]*\))*\)")
_DECL = re.compile(r"(\s*)(cpdef|cdef)\s+(.*)")


def parse_pxd(path: Path) -> PxdDecl:
    """The cdef/cpdef names a .pxd declares (enough of the grammar for our files)."""
    text = _DECORATOR.sub("", path.read_text())
    decl = PxdDecl()
    current: ClassDecl | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indented = line[0].isspace()
        if not indented:
            current = None
        match = _DECL.fullmatch(line)
        if not match:
            continue  # cimport, from ... cimport, continuation lines
        _, kind, rest = match.groups()
        if rest.startswith("class "):
            name = re.match(r"class\s+(\w+)", rest).group(1)
            current = decl.classes[name] = ClassDecl()
            continue
        if "(" in rest:
            name = rest.split("(", 1)[0].split()[-1]
            if indented and current is not None:
                current.methods[name] = kind
            else:
                decl.functions[name] = kind
            continue
        first, *more = rest.split(",")
        words = first.split()
        modifier = words[0] if words[0] in ("public", "readonly") else "private"
        names = [words[-1], *(m.strip() for m in more)]
        for name in names:
            if indented and current is not None:
                current.attributes[name] = modifier
            else:
                decl.variables.add(name)
    return decl


def test_pxd_parser_sees_the_declarations():
    # Guard the parser itself on what the varint .pxd is known to hold.
    decl = parse_pxd(CORE_SRC / "_varint_c.pxd")
    assert decl.functions["decode_varint"] == "cpdef"
    assert decl.functions["_decode_bytes"] == "cdef"
    assert decl.functions["read_varint"] == "cpdef"
    assert decl.classes["ByteReader"].methods["pull_varint"] == "cpdef"
    assert decl.classes["ByteReader"].attributes == {
        "data": "readonly",
        "pos": "public",
        "end": "readonly",
    }


def test_every_pxd_has_a_source():
    assert TWIN_NAMES, "no core/_*_c.pxd found: run the tests from the repository root"
    for name in TWIN_NAMES:
        assert (CORE_SRC / f"_{name}_py.py").is_file(), name
    assert {"varint", "capsule", "frames", "flow"} <= set(TWIN_NAMES)


# -- (a) the compiled modules got their C types ----------------------------------------------

CYTHON_FUNCTION_TYPES = {"cython_function_or_method", "builtin_function_or_method"}
CYTHON_METHOD_TYPES = CYTHON_FUNCTION_TYPES | {"method_descriptor"}


@pytest.mark.parametrize("name", TWIN_NAMES)
def test_compiled_module_is_an_extension(name):
    module = compiled_module(name)
    suffix = Path(module.__file__).suffix
    assert suffix in (".so", ".pyd"), module.__file__
    assert module.__name__ == f"anywt.core._{name}_c"


@pytest.mark.parametrize("name", TWIN_NAMES)
def test_module_level_declarations_are_c(name):
    decl = parse_pxd(CORE_SRC / f"_{name}_c.pxd")
    pure = pure_module(name, decl)
    compiled = compiled_module(name)
    capi = getattr(compiled, "__pyx_capi__", {})
    c_level = set(decl.functions) | decl.variables
    if c_level:
        # An untyped compile (the .pxd not found) has no C API at all.
        assert set(capi) >= c_level, f"missing from __pyx_capi__: {c_level - set(capi)}"
    for fname, kind in decl.functions.items():
        assert isinstance(getattr(pure, fname), types.FunctionType), fname
        if kind == "cpdef":
            assert type(getattr(compiled, fname)).__name__ in CYTHON_FUNCTION_TYPES, fname
        else:  # cdef: C only, invisible from Python
            assert not hasattr(compiled, fname), fname
    for var in decl.variables:
        assert hasattr(pure, var), var
        assert not hasattr(compiled, var), f"cdef variable {var} is a Python global"


@pytest.mark.parametrize(
    ("name", "cls_name"),
    [
        (name, cls_name)
        for name in TWIN_NAMES
        for cls_name in parse_pxd(CORE_SRC / f"_{name}_c.pxd").classes
    ],
)
def test_cdef_classes_are_extension_types(name, cls_name):
    module_decl = parse_pxd(CORE_SRC / f"_{name}_c.pxd")
    decl = module_decl.classes[cls_name]
    pure = pure_module(name, module_decl)
    compiled = compiled_module(name)
    cls = getattr(compiled, cls_name)
    pure_cls = getattr(pure, cls_name)

    # An extension type: no per-instance __dict__ (a Python class, even compiled, has one).
    assert isinstance(cls, type)
    assert cls.__dictoffset__ == 0
    assert pure_cls.__dictoffset__ != 0
    assert cls.__module__ == compiled.__name__

    for method, kind in decl.methods.items():
        assert isinstance(pure_cls.__dict__[method], types.FunctionType), method
        if kind == "cpdef":
            assert type(cls.__dict__[method]).__name__ in CYTHON_METHOD_TYPES, method
        else:
            assert not hasattr(cls, method), f"cdef method {method} is visible from Python"
    for attr, modifier in decl.attributes.items():
        if modifier == "private":
            assert attr not in cls.__dict__, attr
        else:
            assert type(cls.__dict__[attr]).__name__ == "getset_descriptor", attr

    # An instance without running __init__ (the C struct, zeroed): enough to probe its slots.
    instance = cls.__new__(cls)
    assert not hasattr(instance, "__dict__")
    with pytest.raises(AttributeError):
        instance.not_declared_anywhere = 1
    for attr, modifier in decl.attributes.items():
        if modifier == "private":
            assert not hasattr(instance, attr), f"private C attribute {attr} is visible"
        elif modifier == "readonly":
            with pytest.raises(AttributeError):
                setattr(instance, attr, getattr(instance, attr))
        else:
            setattr(instance, attr, getattr(instance, attr))


def test_compiled_twins_call_each_other_in_c():
    # The capsule and frames twins cimport the varint twin: their parsers must work on
    # the C varint type, e.g. parse_varint_payload builds a compiled ByteReader.
    capsule = compiled_module("capsule")
    compiled_module("varint")
    assert "encode_capsule" in capsule.__pyx_capi__
    assert capsule.parse_varint_payload(b"\x40\x41") == 0x41


# -- (b) the live core -----------------------------------------------------------------------


def test_compiled_is_live_when_required():
    if not _flag("ANYWT_REQUIRE_EXTENSIONS") or _flag("ANYWT_NO_EXTENSIONS"):
        pytest.skip("ANYWT_REQUIRE_EXTENSIONS is not set")
    import anywt.core

    assert anywt.core.COMPILED is True
    assert all(anywt.core.twin_status().values())


def test_dispatchers_agree_with_compiled_flag():
    import anywt.core

    status = anywt.core.twin_status()
    assert set(status) >= {"varint", "capsule", "frames", "flow"}
    assert all(status.values()) == anywt.core.COMPILED
    for name, is_compiled in status.items():
        dispatcher = importlib.import_module(f"anywt.core.{name}")
        suffix = "c" if is_compiled else "py"
        assert dispatcher._impl.__name__ == f"anywt.core._{name}_{suffix}"
    assert anywt.core.varint.decode_varint is anywt.core.varint._impl.decode_varint
    assert anywt.core.capsule.CapsuleParser is anywt.core.capsule._impl.CapsuleParser
    assert anywt.core.frames.FrameReader is anywt.core.frames._impl.FrameReader
    assert anywt.core.flow.SendCredit is anywt.core.flow._impl.SendCredit


# -- subprocess helpers ----------------------------------------------------------------------


def run_python(code: str, tmp_path: Path, env: dict[str, str], *flags: str) -> dict:
    """Run ``code`` in a fresh interpreter (isolated, outside the repository); parse its JSON."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANYWT_")}
    clean.update(env)
    proc = subprocess.run(
        [sys.executable, "-I", *flags, "-c", code],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _installed_dirs() -> tuple[str, str]:
    import anywt.core

    core_dir = Path(anywt.core.__file__).resolve().parent
    return str(core_dir.parent), str(core_dir.parent.parent)


# -- (c) core imports with the event loops, QUIC stacks, sockets and threads blocked ----------

BLOCKED_IMPORT_SCRIPT = """
import importlib, json, pkgutil, sys, types

BLOCKED = {blocked!r}
MACHINERY = ("_frozen_importlib", "_frozen_importlib_external", "importlib")
transitive = []

def importer():
    # The module whose code runs the import: the first frame outside the import system.
    # (A compiled module has no frame of its own; its importer shows as the nearest
    # Python caller, which for a core twin is anywt.core itself.)
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.partition(".")[0] not in MACHINERY:
            return name
        frame = frame.f_back
    return ""

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            by = importer()
            if by.startswith("anywt"):
                raise ImportError(f"{{by}} imports {{name}}: anywt.core must not")
            transitive.append([name, by])
        return None

preloaded = sorted(m for m in BLOCKED if m in sys.modules)
sys.meta_path.insert(0, Blocker())
# A bare parent package: test core/'s own imports, not what anywt/__init__.py pulls in.
parent = types.ModuleType("anywt")
parent.__path__ = [{package_dir!r}]
sys.modules["anywt"] = parent
sys.path.append({site_dir!r})  # for pylsqpack, the one third-party import allowed
before = set(sys.modules)
failures = {{}}
import anywt.core
names = sorted(m.name for m in pkgutil.iter_modules(anywt.core.__path__))
for name in names:
    try:
        importlib.import_module("anywt.core." + name)
    except Exception as exc:
        failures[name] = f"{{type(exc).__name__}}: {{exc}}"
new = sorted(set(sys.modules) - before)
print(json.dumps({{
    "preloaded": preloaded,
    "compiled": anywt.core.COMPILED,
    "submodules": names,
    "failures": failures,
    "transitive": transitive,
    "new": new,
    "stdlib": sorted(sys.stdlib_module_names),
}}))
"""

# What the standard library may pull in on core's behalf: logging imports threading
# (for its module lock), and DESIGN.md section 4 wants loggers under anywt.*.
TRANSITIVE_OK = {"threading"}


@pytest.mark.parametrize("mode", ["compiled", "pure"])
def test_core_imports_with_loops_stacks_sockets_threads_blocked(tmp_path, mode):
    if mode == "compiled" and not compiled_available():
        compiled_module(TWIN_NAMES[0])  # skips or fails as configured
    package_dir, site_dir = _installed_dirs()
    code = BLOCKED_IMPORT_SCRIPT.format(blocked=BLOCKED, package_dir=package_dir, site_dir=site_dir)
    env = {"ANYWT_NO_EXTENSIONS": "1"} if mode == "pure" else {}
    # -S: without site, nothing imports threading before our blocker is in place.
    result = run_python(code, tmp_path, env, "-S")
    assert result["preloaded"] == [], "imported by the interpreter before the blocker was in place"
    assert result["compiled"] is (mode == "compiled")
    assert {"varint", "capsule", "frames", "flow", "errors"} <= set(result["submodules"])
    # No core module imports a blocked module itself.
    assert result["failures"] == {}
    stdlib = set(result["stdlib"])
    # Only the standard library may, and only the modules it needs for itself.
    for name, by in result["transitive"]:
        assert by.partition(".")[0] in stdlib, f"{by} imported {name} for core"
        assert name.partition(".")[0] in TRANSITIVE_OK, f"{by} imported {name} for core"
    outside = [
        m
        for m in result["new"]
        if m.partition(".")[0] not in stdlib
        and m.partition(".")[0] not in ("anywt", *ALLOWED_THIRD_PARTY)
        # Cython's shared runtime modules, created by the extensions themselves.
        and not m.startswith(("_cython_", "cython_runtime"))
    ]
    assert outside == [], "core imported modules beyond the standard library and pylsqpack"


def test_blocker_catches_a_direct_import(tmp_path):
    # The blocker is not a no-op: a module of the anywt package importing socket fails.
    package_dir, site_dir = _installed_dirs()
    code = BLOCKED_IMPORT_SCRIPT.format(
        blocked=BLOCKED, package_dir=package_dir, site_dir=site_dir
    ).replace(
        "import anywt.core\n",
        "import anywt.core\nexec(compile('import socket', "
        "'x', 'exec'), {'__name__': 'anywt.core.fake'})\n",
        1,
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANYWT_")}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "anywt.core.fake imports socket" in proc.stderr


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """Absolute imports, skipping ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.orelse:
                    visit(child)
                return
        if isinstance(node, ast.Import):
            found.extend((alias.name.partition(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.partition(".")[0], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_core_sources_import_no_clock_loop_or_third_party():
    # The static half of the rule: what a lazy import inside a function would hide.
    problems = []
    for path in sorted(CORE_SRC.glob("*.py")):
        for module, line in _imports(ast.parse(path.read_text(), str(path))):
            where = f"core/{path.name}:{line} imports {module}"
            if module in BLOCKED or module in NO_CLOCK:
                problems.append(where)
            elif module not in sys.stdlib_module_names and module not in ALLOWED_THIRD_PARTY:
                problems.append(where + " (not standard library)")
    assert problems == []


# -- (d) ANYWT_NO_EXTENSIONS and the fallback ------------------------------------------------

DISPATCH_SCRIPT = """
import json, sys, warnings
caught = []
with warnings.catch_warnings(record=True) as records:
    warnings.simplefilter("always")
    {prelude}
    import anywt.core
    from anywt.core import capsule, flow, frames, varint
caught = [str(w.message) for w in records if issubclass(w.category, RuntimeWarning)]
print(json.dumps({{
    "compiled": anywt.core.COMPILED,
    "status": anywt.core.twin_status(),
    "impls": {{n: m._impl.__name__ for n, m in
              dict(capsule=capsule, flow=flow, frames=frames, varint=varint).items()}},
    "c_loaded": sorted(m for m in sys.modules if m.startswith("anywt.core.") and m.endswith("_c")),
    "warnings": caught,
}}))
"""

BLOCK_COMPILED_PRELUDE = """
    class NoCompiled:
        def find_spec(self, name, path=None, target=None):
            if name.startswith("anywt.core._") and name.endswith("_c"):
                raise ImportError(f"{name} is hidden by the test")
            return None
    sys.meta_path.insert(0, NoCompiled())
"""


@pytest.mark.parametrize(
    "env",
    [
        {"ANYWT_NO_EXTENSIONS": "1"},
        {"ANYWT_NO_EXTENSIONS": "yes"},
        {"ANYWT_NO_EXTENSIONS": "1", "ANYWT_REQUIRE_EXTENSIONS": "1"},  # NO wins
    ],
    ids=["1", "yes", "with-require"],
)
def test_no_extensions_gives_pure_core(tmp_path, env):
    result = run_python(DISPATCH_SCRIPT.format(prelude="pass"), tmp_path, env)
    assert result["compiled"] is False
    assert set(result["status"]) >= {"capsule", "flow", "frames", "varint"}
    assert not any(result["status"].values())
    assert result["impls"] == {n: f"anywt.core._{n}_py" for n in result["impls"]}
    assert result["c_loaded"] == []
    assert result["warnings"] == []


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_no_extensions_off_gives_compiled_core(tmp_path, value):
    if not compiled_available():
        compiled_module(TWIN_NAMES[0])
    result = run_python(
        DISPATCH_SCRIPT.format(prelude="pass"), tmp_path, {"ANYWT_NO_EXTENSIONS": value}
    )
    assert result["compiled"] is True
    assert result["impls"] == {n: f"anywt.core._{n}_c" for n in result["impls"]}
    assert result["warnings"] == []


def test_missing_compiled_core_falls_back_with_one_warning(tmp_path):
    result = run_python(DISPATCH_SCRIPT.format(prelude=BLOCK_COMPILED_PRELUDE), tmp_path, {})
    assert result["compiled"] is False
    assert result["impls"] == {n: f"anywt.core._{n}_py" for n in result["impls"]}
    assert len(result["warnings"]) == 1
    assert "compiled core is not available" in result["warnings"][0]


def test_missing_compiled_core_is_an_error_when_required(tmp_path):
    code = DISPATCH_SCRIPT.format(prelude=BLOCK_COMPILED_PRELUDE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANYWT_")}
    clean["ANYWT_REQUIRE_EXTENSIONS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "ANYWT_REQUIRE_EXTENSIONS" in proc.stderr


# -- (e) the sdist keeps the .pxd files ------------------------------------------------------


def test_manifest_ships_the_pxd_files(monkeypatch):
    # What `python -m build --sdist` would take, without building: setuptools' own
    # MANIFEST.in interpreter over the source tree.
    from setuptools.command.egg_info import FileList

    monkeypatch.chdir(REPO)
    lines = [
        line.strip()
        for line in (REPO / "MANIFEST.in").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "graft core" in lines
    files = FileList()
    for line in lines:
        files.process_template_line(line)
    shipped = set(files.files)
    wanted = {f"core/{p.name}" for p in PXDS}
    wanted |= {f"core/_{name}_py.py" for name in TWIN_NAMES}
    wanted |= {"setup.py", "pyproject.toml", "MANIFEST.in"} - {"MANIFEST.in"}
    assert wanted <= shipped, f"left out of the sdist: {sorted(wanted - shipped)}"
    assert not any(f.endswith((".so", ".c", ".pyc")) for f in shipped)
