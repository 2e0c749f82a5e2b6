"""The interop matrix in README.md is the one the tests run (``matrix.py``)."""

from __future__ import annotations

import importlib

import matrix
import pytest


def test_readme_matrix_is_current() -> None:
    text = matrix.README.read_text("utf-8")
    assert matrix.START in text and matrix.END in text, "README.md lacks the matrix markers"
    assert matrix.updated_readme(text) == text, (
        "README.md's interop matrix differs from tests/interop/matrix.py: "
        "run `python tests/interop/matrix.py --write`"
    )


@pytest.mark.parametrize("row", matrix.ROWS, ids=lambda r: r.id)
def test_row_names_a_test_that_runs_it(row: matrix.Row) -> None:
    """Each row's test exists and is parametrized over its rows that run here.

    A row whose backend this interpreter lacks (aiopquic before CPython 3.12)
    must not be among the parameters at all: left out, not skipped.
    """
    module_name, _, function_name = row.test.partition("::")
    module = importlib.import_module(module_name.removesuffix(".py"))
    function = getattr(module, function_name)
    params = [
        mark.args[1]
        for mark in getattr(function, "pytestmark", [])
        if mark.name == "parametrize" and mark.args[0] == "row"
    ]
    assert params, f"{row.test} is not parametrized over matrix rows"
    if matrix.runs_here(row):
        assert row in list(params[0]), f"{row.test} does not run {row.id}"
    else:
        assert row not in list(params[0]), f"{row.test} collects {row.id}, which cannot run here"


def test_only_rows_on_the_native_backend_depend_on_python() -> None:
    """Exactly the rows with aiopquic on either side depend on the interpreter."""
    for row in matrix.ROWS:
        on_aiopquic = "aiopquic" in row.backends
        assert matrix.runs_here(row, (3, 12)), row.id
        assert matrix.runs_here(row, (3, 11)) is not on_aiopquic, row.id
    backends = {backend for row in matrix.ROWS for backend in row.backends}
    assert backends == {"aioquic", "qh3", "aiopquic"}


def test_row_ids_are_unique() -> None:
    ids = [row.id for row in matrix.ROWS]
    assert len(ids) == len(set(ids))


def test_checklist_fails_a_claimed_feature_without_a_check() -> None:
    row = matrix.ROWS[0]
    checks = matrix.Checklist(row)
    checks.run({feature: lambda: None for feature in row.features[1:]})
    with pytest.raises(AssertionError, match="has no check"):
        checks.assert_passed()
