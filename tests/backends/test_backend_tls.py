"""Choosing a backend, configuring it, and the TLS checks of a client (both stacks)."""

from __future__ import annotations

import sys

import pytest
from backend_harness import (
    SERVER_ADDR,
    backend,
    client_settings,
    dev_certificate,
    make_chain,
    make_link,
    server_settings,
)

from anywt.backends._sansio import CRYPTO_ERROR_BAD_CERTIFICATE, PINNING_FAILED, StackConnection
from anywt.backends.base import (
    BackendError,
    QuicSettings,
    SansIOConnection,
    ServerDemux,
    get_backend,
)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="nope"):
        get_backend("nope")


def test_missing_stack_names_the_pip_command(monkeypatch):
    # A stack that cannot be imported: the backend module fails to import.
    for name in [n for n in sys.modules if n == "qh3" or n.startswith("qh3.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "qh3", None)
    monkeypatch.delitem(sys.modules, "anywt.backends.qh3", raising=False)
    with pytest.raises(BackendError, match=r"pip install 'anywt\[qh3\]'"):
        get_backend("qh3")


def test_backend_shape(stack_name):
    chosen = get_backend(stack_name)
    assert chosen.name == stack_name
    assert chosen.kind == "sans-io"
    conn = chosen.client_connection(client_settings(), SERVER_ADDR, 1.0)
    assert isinstance(conn, SansIOConnection)
    demux = chosen.server_demux(server_settings(), lambda connection: None)
    demux_protocol: ServerDemux = demux  # checked by mypy in the backends; here by name
    for name in ("datagram_received", "stateless_datagrams", "connection_ended"):
        assert callable(getattr(demux_protocol, name))


def test_configuration_errors(stack_name):
    chosen = backend(stack_name)
    with pytest.raises(BackendError, match="congestion"):
        chosen.client_connection(client_settings(congestion_control="nope"), SERVER_ADDR, 1.0)
    with pytest.raises(BackendError, match="certificate"):
        chosen.server_demux(QuicSettings(is_client=False), lambda connection: None)
    with pytest.raises(BackendError, match="certificate"):
        chosen.server_demux(server_settings(b"not a pem", b"not a key"), lambda connection: None)


def test_configuration_from_settings(stack_name):
    chosen = backend(stack_name)
    config = chosen.configuration(
        client_settings(idle_timeout=7.0, max_data=1 << 20, max_stream_data=1 << 18)
    )
    assert config.alpn_protocols == ["h3"]
    assert config.idle_timeout == 7.0
    assert (config.max_data, config.max_stream_data) == (1 << 20, 1 << 18)
    assert config.max_datagram_frame_size == 65536
    assert config.server_name == "127.0.0.1"
    # The client fills the server name in from the address when not given.
    conn = chosen.client_connection(
        QuicSettings(is_client=True, verify=False), ("127.0.0.1", 4433), 1.0
    )
    assert conn.quic.configuration.server_name == "127.0.0.1"


def test_handshake_with_verification_off(stack_name):
    link = make_link(stack_name)
    assert link.client_engine.handshake == ("h3", link.client.max_datagram_payload())
    assert link.server_engine.handshake is not None
    assert link.client.certificate_error is None


@pytest.mark.parametrize("how", ["cadata", "cafile"])
def test_handshake_with_ca_verification(stack_name, how, tmp_path):
    chain = make_chain()
    if how == "cafile":
        path = tmp_path / "ca.pem"
        path.write_bytes(chain.ca_pem)
        trust = {"cafile": str(path)}
    else:
        trust = {"cadata": chain.ca_pem}
    for name in ("127.0.0.1", "localhost"):
        link = make_link(
            stack_name,
            client=client_settings(verify=True, server_name=name, **trust),
            server=server_settings(chain.leaf_pem, chain.key_pem),
        )
        assert link.client.handshake_done and link.server is not None
        assert link.server.handshake_done


def _refused(stack_name, client, server):
    link = make_link(stack_name, client=client, server=server, handshake=False)
    assert link.run(lambda: link.client.terminated, rounds=2000)
    assert not link.client.handshake_done
    assert link.client_engine.handshake is None
    assert link.client_engine.terminated is not None
    return link


def test_wrong_server_name_is_refused(stack_name):
    chain = make_chain()
    link = _refused(
        stack_name,
        client_settings(verify=True, server_name="example.com", cadata=chain.ca_pem),
        server_settings(chain.leaf_pem, chain.key_pem),
    )
    assert link.client.certificate_error is not None
    assert "certificate" in link.client_engine.terminated[1]


def test_unknown_ca_is_refused(stack_name):
    chain, other = make_chain(), make_chain("other")
    link = _refused(
        stack_name,
        client_settings(verify=True, cadata=other.ca_pem),
        server_settings(chain.leaf_pem, chain.key_pem),
    )
    assert link.client.certificate_error is not None


def test_self_signed_refused_by_default(stack_name):
    # The system store does not know our development certificate.
    link = _refused(stack_name, client_settings(verify=True), server_settings())
    assert link.client.certificate_error is not None


@pytest.mark.parametrize("extra", [0, 2], ids=["one-hash", "three-hashes"])
def test_pinned_hash_accepted(stack_name, extra):
    pins = (*[bytes([n]) * 32 for n in range(extra)], dev_certificate().sha256)
    # verify=True is overridden by the pins (chain verification is skipped).
    link = make_link(
        stack_name, client=client_settings(verify=True, server_certificate_hashes=pins)
    )
    assert link.client.handshake_done and link.client.certificate_error is None


@pytest.mark.parametrize("extra", [1, 3], ids=["one-hash", "three-hashes"])
def test_wrong_pinned_hash_terminates_without_session(stack_name, extra):
    pins = tuple(bytes([n]) * 32 for n in range(extra))
    link = make_link(
        stack_name, client=client_settings(server_certificate_hashes=pins), handshake=False
    )
    # The engine may already have queued its control stream and a request.
    assert link.run(lambda: link.client_engine.terminated is not None, rounds=2000)
    code, reason = link.client_engine.terminated
    assert code == CRYPTO_ERROR_BAD_CERTIFICATE
    assert reason.startswith(PINNING_FAILED)
    assert link.client.certificate_error == reason
    # Nothing but the termination reached the engine: no handshake, no data.
    assert [call[0] for call in link.client_engine.calls] == ["terminated"]
    assert not link.client.handshake_done
    assert link.terminated(rounds=400)
    # The server never saw a single stream byte from this client.
    assert not [call for call in link.server_engine.calls if call[0] != "terminated"]


def test_pinning_failure_tells_the_server(stack_name):
    # aioquic: the CONNECTION_CLOSE goes in the handshake space; qh3 with one
    # pin: the TLS layer refuses the certificate during the handshake.
    link = make_link(
        stack_name,
        client=client_settings(server_certificate_hashes=(b"\x01" * 32,)),
        handshake=False,
    )
    assert link.terminated(rounds=400)
    assert link.server is not None and link.server.close_info is not None
    assert link.server.close_info[0] == CRYPTO_ERROR_BAD_CERTIFICATE
    assert link.now < 10, "the server had to wait for its idle timeout"


def test_connection_protocol_members(stack_name):
    link = make_link(stack_name)
    conn: StackConnection = link.client
    for name in (
        "send_backlog",
        "stream_consumed",
        "datagram_backlog",
        "request_key_update",
        "key_updates",
        "stats",
        "process_events",
        "max_datagram_payload",
    ):
        assert callable(getattr(conn, name))
    stats = conn.stats()
    for key in ("rtt", "cwnd", "bytes_in_flight", "packets_sent", "packets_lost"):
        assert key in stats
    assert stats["cwnd"] and stats["cwnd"] > 0
    assert stats["receive_credit_on_consumption"] == (1 if stack_name == "aioquic" else 0)
    assert backend(stack_name).credit_on_consumption is (stack_name == "aioquic")


def test_stacks_imported_only_when_chosen():
    import subprocess

    code = (
        "import sys, anywt.backends.base, anywt.backends._sansio\n"
        "assert 'aioquic' not in sys.modules and 'qh3' not in sys.modules\n"
        "from anywt.backends.base import get_backend\n"
        "get_backend('aioquic')\n"
        "assert 'aioquic' in sys.modules and 'qh3' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/", timeout=30)
