"""Sessions the server refuses: routing, origins, the session limit, hooks, subprotocols."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import Lab, ServerHarness, echo_bidi, wait_until

import anywt
from anywt.server import SessionRequest

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]


async def rejected(
    lab: Lab, server: ServerHarness, path: str = "/echo", **options: object
) -> anywt.SessionRejected:
    """The rejection ``session = await anywt.connect(...)`` raises."""
    with pytest.raises(anywt.SessionRejected) as caught:
        await lab.connect(server, path, **options)
    return caught.value


async def test_unknown_path_is_404(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        error = await rejected(lab, server, "/nope")
        assert error.status == 404
        assert isinstance(error, anywt.WebTransportError)
        # The query string is not part of the route.
        session = await lab.client(server, "/echo?x=1")
        assert session.path == "/echo?x=1"
        assert await echo_bidi(session, b"routed") == b"routed"
        assert server.server.sessions_rejected == 1


async def test_rejection_from_async_with_connect_is_not_wrapped(wt: LabFactory) -> None:
    """``async with anywt.connect(...)`` raises SessionRejected itself, as the await form does.

    (Not an ExceptionGroup from the task group hidden inside ``connect()``.)
    """
    async with wt() as lab:
        server = await lab.server()
        raised: BaseException | None = None
        try:
            async with lab.connect(server, "/nope"):
                pass
        except BaseException as exc:
            raised = exc
        assert isinstance(raised, anywt.SessionRejected), f"got {raised!r}"
        assert raised.status == 404


async def test_routes_pick_the_handler(wt: LabFactory) -> None:
    seen: list[str] = []

    async def a(session: anywt.Session) -> None:
        seen.append("a:" + session.path)
        await session.wait_closed()

    async def b(session: anywt.Session) -> None:
        seen.append("b:" + session.path)
        await session.wait_closed()

    async with wt() as lab:
        server = await lab.server({"/a": a, "/b": b})
        async with lab.connect(server, "/b"):
            pass
        async with lab.connect(server, "/a"):
            pass
        assert seen == ["b:/b", "a:/a"]
        await rejected(lab, server, "/c")


async def test_origin_allowlist_403(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server(origins=("https://good.example",))
        error = await rejected(lab, server, origin="https://evil.example")
        assert error.status == 403
        error = await rejected(lab, server)  # no Origin at all
        assert error.status == 403
        session = await lab.client(server, origin="https://good.example")
        assert session.origin == "https://good.example"
        server_session = await server.session()
        assert server_session.origin == "https://good.example"


async def test_max_sessions_429(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server(max_sessions=1)
        first = await lab.client(server)
        error = await rejected(lab, server)
        assert error.status == 429
        # Once the first ends there is room again.
        await first.close()
        await (await server.session()).wait_closed()
        await wait_until(lambda: not server.server.sessions)
        second = await lab.client(server)
        assert await echo_bidi(second, b"room again") == b"room again"


@pytest.mark.parametrize("hook_kind", ["sync", "async"])
async def test_process_request_401(wt: LabFactory, hook_kind: str) -> None:
    requests: list[SessionRequest] = []

    def decide(request: SessionRequest) -> int | None:
        requests.append(request)
        return None if request.headers.get("authorization") == "Bearer ok" else 401

    async def decide_async(request: SessionRequest) -> int | None:
        await anyio.sleep(0.01)
        return decide(request)

    hook = decide if hook_kind == "sync" else decide_async
    async with wt() as lab:
        server = await lab.server(process_request=hook)
        error = await rejected(lab, server, headers={"authorization": "Bearer nope"})
        assert error.status == 401
        session = await lab.client(server, headers={"authorization": "Bearer ok"})
        assert await echo_bidi(session, b"authorized") == b"authorized"
        assert len(requests) == 2
        request = requests[1]
        assert request.path == "/echo"
        assert request.authority == f"127.0.0.1:{server.server.port}"
        assert request.draft.startswith("draft-")
        assert request.remote_address is not None
        assert request.remote_address[0] == "127.0.0.1"
        server_session = await server.session()
        assert server_session.headers["authorization"] == "Bearer ok"


async def test_process_request_that_fails_refuses_with_500(wt: LabFactory) -> None:
    def broken(request: SessionRequest) -> int | None:
        raise RuntimeError("bug in the hook")

    async with wt() as lab:
        server = await lab.server(process_request=broken)
        error = await rejected(lab, server)
        assert error.status == 500


async def test_subprotocol_negotiation(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server(protocols=("b",))
        session = await lab.client(server, protocols=("a", "b"))
        assert session.protocol == "b"
        assert session.protocols == ("a", "b")
        server_session = await server.session()
        assert server_session.protocol == "b"
        assert server_session.protocols == ("a", "b")
        diag = await session.diagnostics()
        assert diag.wt_protocol == "b"

        # Nothing in common: the session opens without a protocol.
        other = await lab.client(server, protocols=("c",))
        assert other.protocol is None
        assert (await server.session(1)).protocol is None


async def test_select_protocol_hook(wt: LabFactory) -> None:
    def pick(request: SessionRequest) -> str | None:
        return request.protocols[-1]

    async with wt() as lab:
        server = await lab.server(select_protocol=pick)
        session = await lab.client(server, protocols=("x", "y", "z"))
        assert session.protocol == "z"
        assert (await server.session()).protocol == "z"
