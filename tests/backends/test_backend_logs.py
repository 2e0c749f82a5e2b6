"""qlog traces per role and TLS key logs (both stacks)."""

from __future__ import annotations

import json

from backend_harness import client_settings, make_link, server_settings


def _close(link):
    link.client.close(0, "bye")
    assert link.terminated()


def test_qlog_written_per_role(stack_name, tmp_path):
    qlog = tmp_path / "qlog"  # created on demand
    link = make_link(
        stack_name,
        client=client_settings(qlog_dir=str(qlog)),
        server=server_settings(qlog_dir=str(qlog)),
    )
    link.client.send_stream_data(0, b"traced", end_stream=True)
    link.run()
    _close(link)
    odcid = link.client.quic.original_destination_connection_id.hex()
    files = sorted(path.name for path in qlog.iterdir())
    # One directory, one connection: both traces, neither overwritten.
    assert files == [f"{odcid}_client.qlog", f"{odcid}_server.qlog"]
    for role in ("client", "server"):
        document = json.loads((qlog / f"{odcid}_{role}.qlog").read_text())
        (trace,) = document["traces"]
        assert trace["vantage_point"]["type"] == role
        assert trace["common_fields"]["ODCID"] == odcid
        assert any(event["name"] == "transport:packet_sent" for event in trace["events"])


def test_keylog_lines_written_and_file_closed(stack_name, tmp_path):
    keylog = tmp_path / "keys.log"
    keylog.write_text("# earlier content is kept\n")
    link = make_link(
        stack_name,
        client=client_settings(keylog_file=str(keylog)),
        server=server_settings(keylog_file=str(keylog)),
    )
    lines = keylog.read_text().splitlines()
    assert lines[0] == "# earlier content is kept"
    labels = sorted(line.split()[0] for line in lines[1:])
    # Four secrets per side (NSS key log format), both sides appended.
    assert labels == sorted(
        2
        * [
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
        ]
    )
    client_random = {line.split()[1] for line in lines[1:]}
    assert len(client_random) == 1  # one connection
    files = [link.client._keylog, link.server._keylog]
    assert all(handle is not None and not handle.closed for handle in files)
    _close(link)
    assert all(handle.closed for handle in files)
    assert link.client._keylog is None and link.server._keylog is None
