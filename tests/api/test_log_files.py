"""qlog_dir= and keylog_file= write files on clients and servers; QLOGDIR and SSLKEYLOGFILE too."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from wt_harness import Lab, echo_bidi

pytestmark = pytest.mark.anyio

LabFactory = Callable[..., AbstractAsyncContextManager[Lab]]

#: TLS 1.3 secrets every key log must hold (NSS key log format).
SECRETS = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
)


def qlog_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file() and path.stat().st_size > 0]


def check_keylog(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    text = path.read_text()
    for label in SECRETS:
        assert label in text, f"{label} missing from {path}"


async def test_qlog_dir_and_keylog_file_options(wt: LabFactory, tmp_path: Path) -> None:
    server_qlog = tmp_path / "server-qlog"
    client_qlog = tmp_path / "client-qlog"
    server_qlog.mkdir()
    client_qlog.mkdir()
    async with wt() as lab:
        server = await lab.server(
            qlog_dir=str(server_qlog), keylog_file=str(tmp_path / "server.keys"), trust_env=False
        )
        session = await lab.client(
            server,
            qlog_dir=str(client_qlog),
            keylog_file=str(tmp_path / "client.keys"),
            trust_env=False,
        )
        assert await echo_bidi(session, b"logged") == b"logged"
        await session.close()
    assert qlog_files(client_qlog), "no client qlog"
    assert qlog_files(server_qlog), "no server qlog"
    check_keylog(tmp_path / "client.keys")
    check_keylog(tmp_path / "server.keys")
    # Both ends logged the same client handshake secret.
    client_lines = set((tmp_path / "client.keys").read_text().splitlines())
    server_lines = set((tmp_path / "server.keys").read_text().splitlines())
    assert client_lines & server_lines


async def test_env_vars_honoured_when_trust_env(
    wt: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qlog = tmp_path / "env-qlog"
    qlog.mkdir()
    keys = tmp_path / "env.keys"
    monkeypatch.setenv("QLOGDIR", str(qlog))
    monkeypatch.setenv("SSLKEYLOGFILE", str(keys))
    async with wt() as lab:
        server = await lab.server(trust_env=False)  # this one ignores them
        session = await lab.client(server)  # trust_env=True by default
        assert await echo_bidi(session, b"env") == b"env"
        await session.close()
    files = qlog_files(qlog)
    assert len(files) == 1, files  # the client's only
    check_keylog(keys)


async def test_env_vars_ignored_without_trust_env(
    wt: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qlog = tmp_path / "ignored-qlog"
    qlog.mkdir()
    keys = tmp_path / "ignored.keys"
    monkeypatch.setenv("QLOGDIR", str(qlog))
    monkeypatch.setenv("SSLKEYLOGFILE", str(keys))
    async with wt() as lab:
        server = await lab.server(trust_env=False)
        session = await lab.client(server, trust_env=False)
        assert await echo_bidi(session, b"quiet") == b"quiet"
        await session.close()
    assert qlog_files(qlog) == []
    assert not keys.exists() or keys.read_text() == ""
