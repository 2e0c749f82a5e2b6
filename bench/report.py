"""compiled/pure ratios of the micro-benchmarks.

Used by ``bench/conftest.py`` at the end of a ``pytest bench`` run, and on its
own over a saved pytest-benchmark JSON file::

    pytest bench --benchmark-json=bench/results/micro.json
    python bench/report.py bench/results/micro.json

Every figure is a ratio inside one run (DESIGN.md section 6): ``pure/compiled``
is how many times faster the compiled core is; ``compiled/aioquic`` compares
the compiled core with aioquic's C ``Buffer`` where a group has that reference
(above 1: aioquic is faster).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any


def _impl(bench: Mapping[str, Any]) -> str:
    impl = (bench.get("extra_info") or {}).get("impl")
    if impl:
        return str(impl)
    # Fall back on the parametrisation id: test_x[compiled]
    name = str(bench.get("name", ""))
    return name.rpartition("[")[2].rstrip("]")


def ratios(benchmarks: Iterable[Mapping[str, Any]], stat: str = "min") -> list[dict[str, Any]]:
    """One row per group: the ``stat`` time of each implementation and the ratios."""
    groups: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        group = str(bench.get("group") or bench.get("name"))
        groups.setdefault(group, {})[_impl(bench)] = float(bench["stats"][stat])
    rows = []
    for group, times in groups.items():
        row: dict[str, Any] = {"group": group, **times}
        if "pure" in times and "compiled" in times:
            row["pure/compiled"] = times["pure"] / times["compiled"]
        if "compiled" in times and "aioquic" in times:
            row["compiled/aioquic"] = times["compiled"] / times["aioquic"]
        rows.append(row)
    return rows


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:10.2f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:6.2f}x"


def format_ratios(benchmarks: Iterable[Mapping[str, Any]], stat: str = "min") -> str:
    rows = ratios(list(benchmarks), stat)
    if not rows:
        return "no benchmarks"
    width = max(len("group"), *(len(r["group"]) for r in rows))
    lines = [
        f"{'group':<{width}}  {'pure us':>10}  {'compiled us':>11}  {'aioquic us':>10}"
        f"  {'pure/compiled':>13}  {'compiled/aioquic':>16}",
    ]
    for r in rows:
        lines.append(
            f"{r['group']:<{width}}  {_us(r.get('pure')):>10}  {_us(r.get('compiled')):>11}"
            f"  {_us(r.get('aioquic')):>10}  {_x(r.get('pure/compiled')):>13}"
            f"  {_x(r.get('compiled/aioquic')):>16}"
        )
    lines.append(f"(times: {stat} per round, in microseconds)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    with open(argv[1]) as f:
        data = json.load(f)
    print(format_ratios(data["benchmarks"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
