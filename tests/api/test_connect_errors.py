"""Connecting wrong: timeouts, bad URLs and options, unknown backends, refused certificates."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from wt_harness import LIMIT, Lab

import anywt

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]

WRONG_HASH = bytes(32)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("listener", ["nothing bound", "silent socket"])
async def test_no_server_is_handshake_timeout(quic_backend: str, listener: str) -> None:
    silent = None
    if listener == "silent socket":
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
    else:
        port = free_udp_port()
    try:
        with anyio.fail_after(LIMIT):
            started = time.monotonic()
            with pytest.raises(anywt.HandshakeTimeout) as caught:
                await anywt.connect(
                    f"https://127.0.0.1:{port}/echo",
                    backend=quic_backend,
                    server_certificate_hashes=(WRONG_HASH,),
                    connect_timeout=0.5,
                )
            elapsed = time.monotonic() - started
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value, anywt.ConnectError)
        # The error comes when the timeout passes (slack: 1 s for the cleanup after it).
        assert 0.45 <= elapsed < 0.5 + 1.0, f"HandshakeTimeout after {elapsed:.2f} s"
    finally:
        if silent is not None:
            silent.close()


async def test_no_server_async_with_form_is_handshake_timeout(quic_backend: str) -> None:
    """The ``async with`` form raises the same HandshakeTimeout (not an ExceptionGroup)."""
    port = free_udp_port()
    raised: BaseException | None = None
    with anyio.fail_after(LIMIT):
        try:
            async with anywt.connect(
                f"https://127.0.0.1:{port}/echo",
                backend=quic_backend,
                server_certificate_hashes=(WRONG_HASH,),
                connect_timeout=0.3,
            ):
                pass
        except BaseException as exc:
            raised = exc
    assert isinstance(raised, anywt.HandshakeTimeout), f"got {raised!r}"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:4433/echo", "https"),
        ("wss://127.0.0.1:4433/echo", "https"),
        ("https:///echo", "no host"),
        ("https://127.0.0.1:4433/echo#fragment", "fragment"),
        ("https://user:pw@127.0.0.1:4433/echo", "credentials"),
        ("https://127.0.0.1:99999/echo", "invalid"),
    ],
)
async def test_invalid_url(url: str, why: str) -> None:
    with anyio.fail_after(LIMIT), pytest.raises(anywt.InvalidURL, match=why) as caught:
        await anywt.connect(url)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, anywt.WebTransportError)


async def test_unknown_backend_is_value_error() -> None:
    with anyio.fail_after(LIMIT):
        with pytest.raises(ValueError, match="nope"):
            await anywt.connect("https://127.0.0.1:4433/echo", backend="nope")
        with pytest.raises(ValueError, match="nope"):
            async with anywt.Server({"/echo": anywt.echo.echo_handler}, port=0, backend="nope"):
                pass


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"connect_timeout": -1.5}, "connect_timeout"),
        ({"idle_timeout": "soon"}, "idle_timeout"),
        ({"close_timeout": 0}, "close_timeout"),
        ({"max_datagram_frame_size": -1}, "max_datagram_frame_size"),
        ({"server_certificate_hashes": ("zz",)}, "server_certificate_hashes"),
        ({"server_certificate_hashes": (b"short",)}, "server_certificate_hashes"),
        ({"flow_control": "yes"}, "flow_control"),
        ({"limits": {}}, "limits"),
        ({"backend": ""}, "backend"),
    ],
)
async def test_bad_client_options_name_the_key(options: dict[str, object], key: str) -> None:
    with anyio.fail_after(LIMIT), pytest.raises(anywt.ConfigurationError) as caught:
        await anywt.connect("https://127.0.0.1:4433/echo", **options)
    assert caught.value.key == key
    assert key in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: anywt.FlowControl(initial_max_data=-1), "flow_control.initial_max_data"),
        (lambda: anywt.FlowControl(initial_max_streams_bidi=1.5), "initial_max_streams_bidi"),
        (lambda: anywt.Limits(datagram_queue=0), "limits.datagram_queue"),
        (lambda: anywt.Limits(stream_send_buffer=True), "limits.stream_send_buffer"),
        (lambda: anywt.ServerConfig(port=70000), "port"),
        (lambda: anywt.ServerConfig(max_sessions=0), "max_sessions"),
        (lambda: anywt.ServerConfig(handshake_timeout=-1), "handshake_timeout"),
        (lambda: anywt.ServerConfig(certfile="a.pem"), "keyfile"),
        (lambda: anywt.ClientConfig(connect_timeout=None), "connect_timeout"),
    ],
)
def test_bad_config_values_name_the_key(build: Callable[[], object], key: str) -> None:
    with pytest.raises(anywt.ConfigurationError) as caught:
        build()
    assert key in caught.value.key
    assert isinstance(caught.value, ValueError)


async def test_bad_server_options_name_the_key() -> None:
    with anyio.fail_after(LIMIT), pytest.raises(anywt.ConfigurationError) as caught:
        anywt.Server({"/echo": anywt.echo.echo_handler}, port=0, max_sessions=-3)
    assert caught.value.key == "max_sessions"
    with pytest.raises(TypeError, match="no_such_option"):
        anywt.Server({"/echo": anywt.echo.echo_handler}, port=0, no_such_option=1)
    with pytest.raises(TypeError, match="no_such_option"):
        anywt.connect("https://127.0.0.1:4433/", no_such_option=1)


async def test_wrong_pinned_hash_is_certificate_error(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        started = time.monotonic()
        with pytest.raises(anywt.CertificateError) as caught:
            await lab.connect(server, server_certificate_hashes=(WRONG_HASH,), connect_timeout=5)
        # Refused by the TLS check, not by waiting for the connect timeout.
        assert time.monotonic() - started < 4
        assert isinstance(caught.value, anywt.ConnectError)
        # The right hash (as hex text) still works.
        session = await lab.client(
            server, server_certificate_hashes=(server.server.certificate_sha256.hex(),)
        )
        assert session.is_ready


async def test_verify_without_ca_is_certificate_error(
    wt: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with wt() as lab:
        server = await lab.server()
        started = time.monotonic()
        with pytest.raises(anywt.CertificateError):
            await lab.connect(server, server_certificate_hashes=(), verify=True, connect_timeout=5)
        assert time.monotonic() - started < 4


async def test_stream_credit_timeout(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server(
            flow_control=anywt.FlowControl(initial_max_streams_bidi=0, auto_grant=False)
        )
        session = await lab.client(server)
        assert session.connection.flow_control
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await session.create_bidirectional_stream(timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 2
        # Unidirectional credit was not withheld.
        uni = await session.create_unidirectional_stream(timeout=2)
        await uni.write(b"uni still fine", end_stream=True)
        reply = await session.accept_stream()
        assert await reply.read_all() == b"uni still fine"
        # The session is still usable once credit comes.
        await (await server.session()).grant_streams_credit(1, False)
        stream = await session.create_bidirectional_stream(timeout=5)
        await stream.write(b"now", end_stream=True)
        assert await stream.read_all() == b"now"


async def test_config_object_form(wt: LabFactory) -> None:
    async with wt() as lab:
        server = await lab.server()
        config = anywt.ClientConfig(
            backend=lab.backend, server_certificate_hashes=server.hashes, connect_timeout=5
        )
        with pytest.raises(TypeError):
            anywt.connect(server.url(), config=config, connect_timeout=1)
        async with anywt.connect(server.url(), config=config) as session:
            assert session.extra(anywt.WebTransportAttribute.backend) == lab.backend
        # backend= overrides the config's.
        other = "qh3" if lab.backend == "aioquic" else "aioquic"
        async with anywt.connect(server.url(), config=config, backend=other) as session:
            assert session.connection.backend == other
