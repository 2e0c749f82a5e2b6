"""The anywt command line: ``python -m anywt`` or ``anywt``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


def _selfcheck(args: argparse.Namespace) -> int:
    """Report which core is live and time it against the pure one."""
    import importlib

    from anywt import core

    report: dict[str, object] = {"compiled": core.COMPILED, "modules": core.twin_status()}
    sample = bytes.fromhex("25 7bbd 9d7f3e7d c2197c5eff14e88c") * 250
    timings: dict[str, float] = {}
    for kind in ("py", "c"):
        try:
            varint = importlib.import_module(f"anywt.core._varint_{kind}")
        except ImportError:
            continue
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            reader = varint.ByteReader(sample)
            while not reader.at_end():
                reader.pull_varint()
            best = min(best, time.perf_counter() - start)
        timings[kind] = best / 1000 * 1e9
    report["varint_decode_ns"] = {k: round(v, 1) for k, v in timings.items()}
    if "py" in timings and "c" in timings:
        report["compiled_speedup"] = round(timings["py"] / timings["c"], 1)
    print(json.dumps(report, indent=2 if args.pretty else None))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the command line."""
    parser = argparse.ArgumentParser(prog="anywt", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and core mode")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("selfcheck", help="report which core is live and how fast it is")
    check.add_argument("--pretty", action="store_true")
    check.set_defaults(func=_selfcheck)
    args = parser.parse_args(argv)
    if args.version:
        import anywt
        import anywt.core

        mode = "compiled" if anywt.core.COMPILED else "pure Python"
        print(f"anywt {anywt.__version__} ({mode} core)")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
