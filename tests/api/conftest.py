"""Fixtures of the API tests: every async test runs under asyncio and under trio.

The behaviour tests also take ``quic_backend`` (aioquic, qh3, and aiopquic on
CPython >= 3.12 with ``anywt[aiopquic]``, else that cell skips), so each runs in
every cell of {asyncio, trio} x {aioquic, qh3, aiopquic}; a few add uvloop through
``wt_harness.WITH_UVLOOP``.  ``wt`` opens a bounded ``Lab`` of servers and
clients on 127.0.0.1; ``echo`` is an echo server with one client session
already connected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import LIMIT, QUIC_BACKEND_PARAMS, EchoPair, Lab, bounded_lab


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """anyio's pytest plugin runs each ``@pytest.mark.anyio`` test on this backend."""
    return str(request.param)


@pytest.fixture(params=QUIC_BACKEND_PARAMS)
def quic_backend(request: pytest.FixtureRequest) -> str:
    """The QUIC stack under test."""
    return str(request.param)


@pytest.fixture
def wt(quic_backend: str) -> Callable[..., AbstractAsyncContextManager[Lab]]:
    """``async with wt() as lab``: servers and clients on ``quic_backend``, bounded in time."""

    def factory(limit: float = LIMIT) -> AbstractAsyncContextManager[Lab]:
        return bounded_lab(quic_backend, limit)

    return factory


@pytest.fixture
async def echo(quic_backend: str) -> AsyncIterator[EchoPair]:
    """An echo server on 127.0.0.1 and a client session to its ``/echo``.

    One deadline spans setup, the test and teardown (a cancel scope may span
    the ``yield``: anyio runs fixtures and the test in one task); the test
    bounds itself more tightly inside.
    """
    with anyio.fail_after(3 * LIMIT):
        async with Lab(quic_backend) as lab:
            harness = await lab.server()
            session = await lab.client(harness)
            yield EchoPair(lab, harness, session)
