"""Run the fuzz targets for N inputs and/or T seconds each, and keep a ledger of the counts.

::

    python fuzz/run.py                          # every target, 60 s each
    python fuzz/run.py --runs 10000000 --time 7200 --jobs 2 capsule frames
    python fuzz/run.py --random --time 5        # without atheris: random inputs
    python fuzz/run.py --update-readme          # the ledger's totals into README.md

Each target runs in its own process (``fuzz/harness.py``, under ``nice``),
with a corpus kept in ``fuzz/corpus/<target>/`` so that the next run starts
where this one stopped.  Crashing inputs land in ``fuzz/artifacts/``.  Every
run is appended to ``fuzz/ledger.json`` with its input count; ``--summary``
prints the totals per target (what README.md quotes).  Exit status: 0 when
no target failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.py"
LEDGER = HERE / "ledger.json"
README = HERE.parent / "README.md"
#: The line after which README.md holds the table of ledger totals (up to a blank line).
TABLE_MARK = "<!-- fuzz-counts -->"

#: Every target, with the input length that suits it.
MAX_LEN = {
    "varint": 64,
    "settings": 256,
    "capsule": 512,
    "frames": 512,
    "headers": 512,
    "qpack": 512,
    "preamble": 256,
    "datagram": 256,
    "engine": 1024,
}
TARGETS = tuple(MAX_LEN)
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


@dataclass
class Result:
    target: str
    driver: str
    runs: int
    seconds: float
    ok: bool
    returncode: int
    artifact: str | None
    started: str

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def run_target(
    target: str,
    *,
    runs: int | None,
    seconds: float | None,
    random_driver: bool,
    corpus: bool = True,
    workdir: Path = HERE,
    nice: int = 10,
    seed: int | None = None,
) -> Result:
    """Run one target in a subprocess; return how many inputs it took and whether it failed."""
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(HARNESS), target, f"-max_len={MAX_LEN[target]}"]
    command.append(f"-artifact_prefix={artifacts}/{target}-")
    if runs is not None:
        command.append(f"-runs={runs}")
    if seconds is not None:
        command.append(f"-max_total_time={max(1, int(seconds))}")
    if seed is not None:
        command.append(f"-seed={seed}")
    command += ["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048"]
    if random_driver:
        command.append("--random")
    elif corpus:
        directory = workdir / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        command.append(str(directory))
    if nice and hasattr(os, "nice"):
        command = ["nice", "-n", str(nice), *command]
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    begin = time.monotonic()
    budget = None if seconds is None else seconds * 2 + 120
    env = dict(os.environ, PYTHONHASHSEED="0")
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=budget, env=env, check=False
        )
        output = proc.stderr + proc.stdout
        returncode = proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        returncode = -9
    elapsed = time.monotonic() - begin
    matches = _DONE.findall(output)
    count = int(matches[-1][0]) if matches else _last_count(output)
    artifact = None
    found = re.search(r"(?:Test unit written to|input written to) (\S+)", output)
    if found:
        artifact = found.group(1)
    ok = returncode == 0 and artifact is None
    if not ok:
        (artifacts / f"{target}-{int(time.time())}.log").write_text(output[-20000:])
    return Result(
        target=target,
        driver="random" if random_driver else "atheris",
        runs=count,
        seconds=round(elapsed, 1),
        ok=ok,
        returncode=returncode,
        artifact=artifact,
        started=started,
    )


def _last_count(output: str) -> int:
    """The last ``#N`` status line of libFuzzer (when it did not get to print Done)."""
    counts = re.findall(r"^#(\d+)\s", output, flags=re.MULTILINE)
    return int(counts[-1]) if counts else 0


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401, PLC0415 - only probing
    except ImportError:
        return False
    return True


def load_ledger(path: Path = LEDGER) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return list(json.loads(path.read_text()))


def record(result: Result, path: Path = LEDGER) -> None:
    entries = load_ledger(path)
    entries.append(asdict(result))
    path.write_text(json.dumps(entries, indent=1) + "\n")


def summary(path: Path = LEDGER) -> dict[str, dict[str, float]]:
    """Total inputs, seconds and failures per target over the ledger."""
    out: dict[str, dict[str, float]] = {}
    for entry in load_ledger(path):
        item = out.setdefault(
            str(entry["target"]), {"runs": 0, "seconds": 0.0, "failures": 0, "sessions": 0}
        )
        item["runs"] += int(entry["runs"])  # type: ignore[call-overload]
        item["seconds"] += float(entry["seconds"])  # type: ignore[arg-type]
        item["failures"] += 0 if entry["ok"] else 1
        item["sessions"] += 1
    return out


def readme_table(totals: dict[str, dict[str, float]]) -> str:
    """The README table of ledger totals, one row per target in ``TARGETS`` order."""
    rows = ["| target | inputs | hours | failures |", "| --- | ---: | ---: | ---: |"]
    for target in TARGETS:
        item = totals.get(target)
        if item is None:
            rows.append(f"| `{target}` | CI runs only | — | — |")
        else:
            rows.append(
                f"| `{target}` | {int(item['runs']):,} | {item['seconds'] / 3600:.2f} "
                f"| {int(item['failures'])} |"
            )
    return "\n".join(rows) + "\n"


def update_readme(path: Path = README, ledger: Path = LEDGER) -> None:
    """Replace the table after ``TABLE_MARK`` with the ledger's current totals."""
    text = path.read_text()
    start = text.index(TABLE_MARK) + len(TABLE_MARK) + 1
    end = text.index("\n\n", start) + 1
    path.write_text(text[:start] + readme_table(summary(ledger)) + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets", nargs="*", help=f"targets (default: all of {', '.join(TARGETS)})"
    )
    parser.add_argument("--runs", type=int, default=None, help="inputs per target")
    parser.add_argument("--time", type=float, default=None, help="seconds per target")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once")
    parser.add_argument("--random", action="store_true", help="random inputs, not atheris")
    parser.add_argument("--no-ledger", action="store_true", help="do not record the counts")
    parser.add_argument("--summary", action="store_true", help="print the ledger's totals")
    parser.add_argument(
        "--update-readme", action="store_true", help="write the ledger's totals into README.md"
    )
    parser.add_argument("--nice", type=int, default=10)
    args = parser.parse_args(argv)
    if args.summary:
        for target, item in sorted(summary().items()):
            rate = item["runs"] / item["seconds"] if item["seconds"] else 0
            print(
                f"{target:10} {int(item['runs']):>12,} inputs  {item['seconds'] / 3600:6.2f} h"
                f"  {rate:8.0f}/s  failures {int(item['failures'])}"
            )
        return 0
    if args.update_readme:
        update_readme()
        return 0
    names = args.targets or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    runs, seconds = args.runs, args.time
    if runs is None and seconds is None:
        seconds = 60.0
    random_driver = args.random or not have_atheris()
    if random_driver and not args.random:
        print("atheris is not installed: random inputs instead", file=sys.stderr)

    def one(name: str) -> Result:
        result = run_target(
            name, runs=runs, seconds=seconds, random_driver=random_driver, nice=args.nice
        )
        if not args.no_ledger:
            record(result)
        status = "ok" if result.ok else f"FAILED ({result.artifact or result.returncode})"
        print(
            f"{name:10} {result.runs:>12,} inputs in {result.seconds:8.1f} s "
            f"({result.rate:7.0f}/s) {status}",
            flush=True,
        )
        return result

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, names))
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
