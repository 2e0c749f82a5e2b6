"""The bounded CI run of the fuzz harnesses in fuzz/: every target for a few seconds, in its own
process, under atheris (coverage-guided) when it is installed, else on random inputs.

A target fails when anywt raises anything but the protocol error it documents, disagrees
between its pure and compiled twins, changes its answer with the slicing of its input, or
(the engine) takes its internal-error path, uses a wrong wire code or holds more than its
limits; the failing input is kept under the test's temporary directory.  ``fuzz/run.py``
runs the same targets for millions of inputs (README.md, Reliability).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import run as fuzz_run  # fuzz/run.py (conftest puts fuzz/ on sys.path)
import targets as fuzz_targets  # fuzz/targets.py
from rel_harness import LONG

SECONDS = 60.0 if LONG else float(os.environ.get("ANYWT_FUZZ_SECONDS", "2"))


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[fuzz_run.Result]]:
    """Every target started at once, two at a time (this machine has two cores)."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    random_driver = not fuzz_run.have_atheris()
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {
        target: pool.submit(
            fuzz_run.run_target,
            target,
            runs=None,
            seconds=SECONDS,
            random_driver=random_driver,
            corpus=False,
            workdir=workdir,
            nice=0,
            seed=1234,
        )
        for target in fuzz_run.TARGETS
    }
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("target", fuzz_run.TARGETS)
def test_fuzz_target_smoke(target: str, fuzz_results: dict[str, Future[fuzz_run.Result]]) -> None:
    result = fuzz_results[target].result(timeout=SECONDS * 4 + 120)
    # atheris when installed (pip install atheris), random inputs otherwise: said here.
    print(f"{target}: {result.runs} inputs in {result.seconds} s ({result.driver})")
    assert result.driver == ("atheris" if fuzz_run.have_atheris() else "random")
    assert result.ok, f"{target} failed after {result.runs} inputs: {result.artifact}"
    assert result.runs > 0


def test_random_driver_fallback(tmp_path: Path) -> None:
    """The driver used where atheris does not install: the same targets on random bytes."""
    result = fuzz_run.run_target(
        "engine", runs=None, seconds=1, random_driver=True, corpus=False, workdir=tmp_path, nice=0
    )
    assert result.ok and result.runs > 0 and result.driver == "random", result


def test_readme_table_follows_the_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    for runs, ok in ((6_000_000, True), (4_000_000, True), (5, False)):
        result = fuzz_run.Result("capsule", "atheris", runs, 1800.0, ok, 0, None, "t")
        fuzz_run.record(result, ledger)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{fuzz_run.TABLE_MARK}\n| old |\n| --- |\n\n## after\n")
    table = fuzz_run.readme_table(fuzz_run.summary(ledger))
    assert "| `capsule` | 10,000,005 | 1.50 | 1 |" in table
    assert "| `varint` | CI runs only | — | — |" in table
    assert len(table.splitlines()) == 2 + len(fuzz_run.TARGETS)
    fuzz_run.update_readme(readme, ledger)
    assert readme.read_text() == f"intro\n\n{fuzz_run.TABLE_MARK}\n{table}\n## after\n"


REGRESSIONS = sorted((Path(fuzz_run.__file__).parent / "regressions").iterdir())


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
@pytest.mark.parametrize("target", fuzz_run.TARGETS)
def test_fuzz_regression_inputs(target: str, path: Path) -> None:
    """Inputs that once failed a target, replayed through every target on every run of the suite
    (the smoke runs above start from an empty corpus, so they would not meet them again)."""
    fuzz_targets.TARGETS[target](path.read_bytes())
