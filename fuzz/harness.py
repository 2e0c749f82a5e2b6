"""Run one fuzz target: ``python fuzz/harness.py NAME [libFuzzer options] [corpus dir]``.

Under atheris (``pip install atheris``) the target is coverage-guided: anywt's
pure-Python core is instrumented as it is imported, and the compiled twin
runs beside it on every input (differential).  Without atheris, or with
``--random``, it feeds random and mutated bytes instead and understands
``-runs=N``, ``-max_total_time=T`` and ``-seed=S``.  Either way it ends by
printing libFuzzer's ``Done N runs in T second(s)`` line, which
``fuzz/run.py`` reads.  A failing input is written to ``-artifact_prefix``
(default: the current directory) as ``crash-<sha1>``, and the exit status is
non-zero.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _options(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        if arg.startswith("-") and "=" in arg:
            key, _, value = arg.lstrip("-").partition("=")
            out[key] = value
    return out


def _random_fuzz(name: str, argv: list[str]) -> int:
    """Random and mutated inputs, for machines without atheris."""
    import targets  # noqa: PLC0415 - imported after sys.path is set

    target = targets.TARGETS[name]
    options = _options(argv)
    runs = int(options.get("runs", "-1"))
    max_time = float(options.get("max_total_time", "0")) or float("inf")
    max_len = int(options.get("max_len", "512"))
    prefix = options.get("artifact_prefix", "./")
    rng = random.Random(int(options.get("seed", "0")) or None)
    pool: list[bytes] = [b""]
    start = time.monotonic()
    done = 0
    while (runs < 0 or done < runs) and time.monotonic() - start < max_time:
        if pool and rng.random() < 0.5:
            base = bytearray(rng.choice(pool))
            for _ in range(rng.randrange(1, 8)):
                if base and rng.random() < 0.7:
                    base[rng.randrange(len(base))] = rng.randrange(256)
                else:
                    base[rng.randrange(len(base) + 1) : 0] = rng.randbytes(rng.randrange(1, 16))
            data = bytes(base[:max_len])
        else:
            data = rng.randbytes(rng.randrange(max_len + 1))
        try:
            target(data)
        except Exception:
            traceback.print_exc()
            path = f"{prefix}crash-{hashlib.sha1(data).hexdigest()}"
            Path(path).write_bytes(data)
            print(f"==ERROR: uncaught exception; input written to {path}", file=sys.stderr)
            print(
                f"Done {done + 1} runs in {int(time.monotonic() - start)} second(s)",
                file=sys.stderr,
            )
            return 1
        done += 1
        if len(pool) < 256 and rng.random() < 0.01:
            pool.append(data)
    print(f"Done {done} runs in {int(time.monotonic() - start)} second(s)", file=sys.stderr)
    return 0


def _instrument(atheris: object) -> None:
    """Re-import anywt's pure-Python parsers and engine with coverage instrumentation.

    Importing ``anywt.core`` imports the whole ``anywt`` package; instrumenting
    all of it would cost seconds at every start.  The pure twins and
    ``headers`` are imported again instead, under instrumentation; errors,
    events and the configuration stay shared, so ``isinstance`` still works.
    """
    import anywt.core  # noqa: PLC0415 - plain import first

    fresh = [
        name for name in sys.modules if name.startswith("anywt.core._") and name.endswith("_py")
    ]
    for name in [*fresh, "anywt.core.headers", "anywt.core.qpack_bound"]:
        sys.modules.pop(name, None)
    with atheris.instrument_imports(include=["anywt.core"]):  # type: ignore[attr-defined]
        import anywt.core._capsule_py  # noqa: PLC0415
        import anywt.core._engine_py  # noqa: PLC0415
        import anywt.core._flow_py  # noqa: PLC0415
        import anywt.core._frames_py  # noqa: PLC0415
        import anywt.core._varint_py  # noqa: PLC0415
        import anywt.core.headers  # noqa: PLC0415
        import anywt.core.qpack_bound  # noqa: F401, PLC0415


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    name = sys.argv[1]
    rest = sys.argv[2:]
    use_random = "--random" in rest or os.environ.get("ANYWT_FUZZ_DRIVER") == "random"
    rest = [arg for arg in rest if arg != "--random"]
    if not use_random:
        try:
            import atheris  # noqa: PLC0415 - optional
        except ImportError:
            print("atheris is not installed: random inputs instead", file=sys.stderr)
            use_random = True
    if use_random:
        return _random_fuzz(name, rest)
    _instrument(atheris)
    import targets  # noqa: PLC0415 - after the instrumented modules are in place

    if name not in targets.TARGETS:
        print(f"unknown target {name!r}; targets: {', '.join(targets.TARGETS)}", file=sys.stderr)
        return 2
    atheris.Setup([sys.argv[0], *rest], targets.TARGETS[name])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
