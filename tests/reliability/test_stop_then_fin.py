"""A FIN that crosses our STOP_SENDING still ends the stream.

The server stops a stream after its first bytes; the client, which has not
seen the STOP_SENDING yet (a proxy delays every datagram by 150 ms), ends
the stream with FIN, so no RESET_STREAM follows.  The server must still
forget the stream and give its stream credit back: picoquic (aiopquic)
never reports a FIN that arrives after STOP_SENDING, aioquic and qh3 do.
"""

from __future__ import annotations

import anyio
import pytest
from rel_harness import ALL_BACKENDS, LossyProxy, connect, serving, wait_until

import anywt

pytestmark = pytest.mark.anyio
DELAY = 0.15
STREAMS = 3


@pytest.mark.parametrize("quic_backend", ALL_BACKENDS)
async def test_fin_crossing_our_stop_sending_ends_the_stream(quic_backend: str) -> None:
    stopped: list[int] = []

    async def stop_after_first_bytes(session: anywt.Session) -> None:
        async for stream in session.incoming_unidirectional_streams():
            assert await stream.receive() == b"first"
            await stream.stop_receiving(5)
            stopped.append(stream.stream_id)
            del stream

    flow = anywt.FlowControl(initial_max_streams_uni=STREAMS, initial_max_data=1 << 20)
    with anyio.fail_after(40):
        async with (
            serving(stop_after_first_bytes, backend=quic_backend, flow_control=flow) as served,
            anyio.create_task_group() as tasks,
        ):
            proxy = LossyProxy(("127.0.0.1", served.port), delay=DELAY, seed=3)
            await tasks.start(proxy.run)
            target = ("127.0.0.1", proxy.port, served.server.certificate_sha256)
            async with connect(target, connect_timeout=20.0) as session:
                server_session = served.sessions[0]
                engine = server_session.connection.engine
                # Twice the stream credit: only streams that ended give it back.
                for round_ in range(2 * STREAMS):
                    stream = await session.create_unidirectional_stream(timeout=10)
                    await stream.write(b"first")
                    await wait_until(lambda n=round_: len(stopped) > n, 10)
                    # The STOP_SENDING is still on its way to us: our FIN crosses it.
                    await stream.write(b"last", end_stream=True)
                sid = server_session.session_id
                await wait_until(lambda: not engine.session_snapshot(sid).active_streams, 10)
                assert all(engine.stream_session(s) is None for s in stopped)
                # They ended with FIN, not with a reset answering our STOP_SENDING.
                assert engine.session_snapshot(sid).streams_reset_received == 0
            tasks.cancel_scope.cancel()
    assert len(stopped) == 2 * STREAMS
