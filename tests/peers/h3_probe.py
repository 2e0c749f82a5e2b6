"""A wire-level HTTP/3 WebTransport probe built on aioquic, for studying peers.

It logs, as JSON lines on stdout, what a peer really sends: its QUIC
transport parameters (raw ids, so unknown ones such as reset_stream_at show),
its HTTP/3 SETTINGS, its CONNECT request or response headers, every capsule
on the CONNECT stream (with FIN), stream resets, STOP_SENDING and the final
CONNECTION_CLOSE.  It also serves the project's echo contract well enough to
run a peer's client scenarios against it.

    python tests/peers/h3_probe.py server --certfile C --keyfile K [--settings draft15]
    python tests/peers/h3_probe.py client https://127.0.0.1:PORT/echo [--protocol webtransport-h3]

Settings profiles (what the probe itself advertises):
  aioquic       aioquic's own WebTransport settings (no SETTINGS_WT_ENABLED)
  draft15       aioquic's + WT_ENABLED=1 + WT_INITIAL_MAX_DATA/STREAMS (flow control on)
  draft15-nofc  aioquic's + WT_ENABLED=1, no initial limits (flow control off)

The probe never sends WT_MAX_DATA itself, so with ``draft15`` it advertises a
large initial limit (``--initial-max-data``, default 64 MiB).  Runs under the
project's Python with aioquic; standard library otherwise.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
import urllib.parse
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, H3Stream
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic import connection as quic_connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    ProtocolNegotiated,
    StopSendingReceived,
    StreamReset,
)

TRANSPORT_PARAMETER_NAMES = {
    0x00: "original_destination_connection_id",
    0x01: "max_idle_timeout",
    0x02: "stateless_reset_token",
    0x03: "max_udp_payload_size",
    0x04: "initial_max_data",
    0x05: "initial_max_stream_data_bidi_local",
    0x06: "initial_max_stream_data_bidi_remote",
    0x07: "initial_max_stream_data_uni",
    0x08: "initial_max_streams_bidi",
    0x09: "initial_max_streams_uni",
    0x0A: "ack_delay_exponent",
    0x0B: "max_ack_delay",
    0x0C: "disable_active_migration",
    0x0D: "preferred_address",
    0x0E: "active_connection_id_limit",
    0x0F: "initial_source_connection_id",
    0x10: "retry_source_connection_id",
    0x11: "version_information",
    0x20: "max_datagram_frame_size",
    0x2AB2: "grease_quic_bit",
    0x17F7586D: "reset_stream_at",
    0xFF04DE1B: "min_ack_delay",
}
_VARINT_PARAMETERS = {
    0x01,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
    0x09,
    0x0A,
    0x0B,
    0x0E,
    0x20,
    0xFF04DE1B,
}

SETTING_NAMES = {
    0x01: "QPACK_MAX_TABLE_CAPACITY",
    0x06: "MAX_FIELD_SECTION_SIZE",
    0x07: "QPACK_BLOCKED_STREAMS",
    0x08: "ENABLE_CONNECT_PROTOCOL",
    0x33: "H3_DATAGRAM",
    0x2B603742: "ENABLE_WEBTRANSPORT(draft-02)",
    0xC671706A: "WT_MAX_SESSIONS(draft-07..)",
    0x14E9CD29: "WT_MAX_SESSIONS(draft-13..)",
    0x2C7CF000: "WT_ENABLED(draft-15)",
    0x2B61: "WT_INITIAL_MAX_DATA",
    0x2B64: "WT_INITIAL_MAX_STREAMS_UNI",
    0x2B65: "WT_INITIAL_MAX_STREAMS_BIDI",
}

CAPSULE_NAMES = {
    0x00: "DATAGRAM",
    0x2843: "WT_CLOSE_SESSION",
    0x78AE: "WT_DRAIN_SESSION",
    0x190B4D3D: "WT_MAX_DATA",
    0x190B4D3E: "WT_MAX_STREAM_DATA",
    0x190B4D3F: "WT_MAX_STREAMS_BIDI",
    0x190B4D40: "WT_MAX_STREAMS_UNI",
    0x190B4D41: "WT_DATA_BLOCKED",
    0x190B4D42: "WT_STREAM_DATA_BLOCKED",
    0x190B4D43: "WT_STREAMS_BLOCKED_BIDI",
    0x190B4D44: "WT_STREAMS_BLOCKED_UNI",
}

WT_ENABLED = 0x2C7CF000
WT_INITIAL_MAX_DATA = 0x2B61
WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65
CLOSE_SESSION = 0x2843


def emit(event: str, **fields: Any) -> None:
    record = {"event": event, "t": round(time.time(), 6), **fields}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _hexname(table: dict[int, str], key: int) -> str:
    return f"{hex(key)} {table.get(key, '?')}"


# Keep the peer's raw transport parameters: aioquic drops the unknown ones.
_original_parse = quic_connection.QuicConnection._parse_transport_parameters


def _recording_parse(self: Any, data: bytes, from_session_ticket: bool = False) -> None:
    if not from_session_ticket:
        self._probe_raw_transport_parameters = bytes(data)
    _original_parse(self, data, from_session_ticket)


quic_connection.QuicConnection._parse_transport_parameters = _recording_parse  # type: ignore[method-assign]


def decode_transport_parameters(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    buf = Buffer(data=data)
    try:
        while not buf.eof():
            ident = buf.pull_uint_var()
            length = buf.pull_uint_var()
            value = buf.pull_bytes(length)
            shown: Any = value.hex()
            if ident in _VARINT_PARAMETERS and value:
                with contextlib.suppress(BufferReadError):
                    shown = Buffer(data=value).pull_uint_var()
            elif not value:
                shown = "(empty)"
            out[_hexname(TRANSPORT_PARAMETER_NAMES, ident)] = shown
    except BufferReadError:
        out["error"] = "truncated"
    return out


def encode_capsule(capsule_type: int, value: bytes) -> bytes:
    buf = Buffer(capacity=16 + len(value))
    buf.push_uint_var(capsule_type)
    buf.push_uint_var(len(value))
    buf.push_bytes(value)
    return buf.data


class ProbeH3(H3Connection):
    profile = "draft15"
    initial_max_data = 64 * 1024 * 1024

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        if self.profile in ("draft15", "draft15-nofc"):
            settings[WT_ENABLED] = 1
        if self.profile == "draft15":
            settings[WT_INITIAL_MAX_DATA] = self.initial_max_data
            settings[WT_INITIAL_MAX_STREAMS_UNI] = 100
            settings[WT_INITIAL_MAX_STREAMS_BIDI] = 100
        return settings

    def open_bidi(self, session_id: int) -> int:
        """create_webtransport_stream, plus what aioquic forgets for the reply.

        aioquic parses data arriving on its own WebTransport bidi stream as
        HTTP/3 frames (H3_FRAME_ERROR); mark the stream as a WT stream first.
        """
        stream_id = self.create_webtransport_stream(session_id)
        stream = self._stream.get(stream_id)
        if stream is None:
            stream = self._stream[stream_id] = H3Stream(stream_id)
        stream.frame_type = FrameType.WEBTRANSPORT_STREAM
        stream.session_id = session_id
        return stream_id


class ProbeProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3: ProbeH3 | None = None
        self.is_client = self._quic.configuration.is_client
        self.sessions: set[int] = set()
        self.capsule_buffers: dict[int, bytearray] = {}
        self.stream_buffers: dict[int, bytearray] = {}
        self.settings_logged = False
        self.response: asyncio.Future[list[tuple[bytes, bytes]]] = (
            asyncio.get_event_loop().create_future()
        )
        self.session_closed: asyncio.Future[dict[str, Any]] = (
            asyncio.get_event_loop().create_future()
        )
        self.echoes: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.terminated = asyncio.Event()
        if self.is_client:
            self.h3 = ProbeH3(self._quic, enable_webtransport=True)

    # -- QUIC level --------------------------------------------------------
    def quic_event_received(self, event: Any) -> None:
        if isinstance(event, ProtocolNegotiated) and self.h3 is None:
            if event.alpn_protocol in H3_ALPN:
                self.h3 = ProbeH3(self._quic, enable_webtransport=True)
            emit("alpn", protocol=event.alpn_protocol)
        elif isinstance(event, HandshakeCompleted):
            raw = getattr(self._quic, "_probe_raw_transport_parameters", b"")
            emit(
                "peer_transport_parameters",
                role="server" if self.is_client else "client",
                parameters=decode_transport_parameters(raw),
                alpn=event.alpn_protocol,
            )
        elif isinstance(event, ConnectionTerminated):
            emit(
                "connection_terminated",
                error_code=hex(event.error_code),
                frame_type=event.frame_type,
                reason=event.reason_phrase,
            )
            self.terminated.set()
            if not self.session_closed.done():
                self.session_closed.set_result({"connection_terminated": hex(event.error_code)})
        elif isinstance(event, StreamReset):
            emit("stream_reset", stream_id=event.stream_id, error_code=hex(event.error_code))
        elif isinstance(event, StopSendingReceived):
            emit("stop_sending", stream_id=event.stream_id, error_code=hex(event.error_code))

        if self.h3 is not None:
            try:
                h3_events = self.h3.handle_event(event)
            except Exception as exc:  # the probe must keep logging
                emit("h3_error", error=repr(exc))
                h3_events = []
            self._log_settings()
            for h3_event in h3_events:
                self._h3_event(h3_event)
            self.transmit()

    def _log_settings(self) -> None:
        if self.settings_logged or self.h3 is None or self.h3.received_settings is None:
            return
        self.settings_logged = True
        emit(
            "peer_settings",
            role="server" if self.is_client else "client",
            settings={_hexname(SETTING_NAMES, k): v for k, v in self.h3.received_settings.items()},
            sent={_hexname(SETTING_NAMES, k): v for k, v in (self.h3.sent_settings or {}).items()},
        )

    # -- HTTP/3 level ------------------------------------------------------
    def _h3_event(self, event: Any) -> None:
        assert self.h3 is not None
        if isinstance(event, HeadersReceived):
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            emit("headers", stream_id=event.stream_id, headers=headers, fin=event.stream_ended)
            if self.is_client:
                if not self.response.done():
                    self.response.set_result(event.headers)
            else:
                self._answer_connect(event.stream_id, dict(event.headers))
        elif isinstance(event, DataReceived):
            if event.stream_id in self.sessions:
                self._connect_stream_data(event.stream_id, event.data, event.stream_ended)
            else:
                emit(
                    "data", stream_id=event.stream_id, size=len(event.data), fin=event.stream_ended
                )
        elif isinstance(event, WebTransportStreamDataReceived):
            buf = self.stream_buffers.setdefault(event.stream_id, bytearray())
            buf += event.data
            if event.stream_ended:
                data = bytes(self.stream_buffers.pop(event.stream_id))
                self._stream_complete(event.stream_id, event.session_id, data)
        elif isinstance(event, DatagramReceived):
            emit("datagram", session_id=event.stream_id, size=len(event.data))
            if self.is_client:
                self.echoes.put_nowait(("datagram", event.data))
            else:
                self.h3.send_datagram(stream_id=event.stream_id, data=event.data)

    def _answer_connect(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        assert self.h3 is not None
        status = self.connect_status
        if headers.get(b":method") != b"CONNECT":
            status = 405
        self.h3.send_headers(
            stream_id, [(b":status", str(status).encode())], end_stream=status >= 300
        )
        if status < 300:
            self.sessions.add(stream_id)
        emit("connect_answered", stream_id=stream_id, status=status)

    def _connect_stream_data(self, session_id: int, data: bytes, fin: bool) -> None:
        buf = self.capsule_buffers.setdefault(session_id, bytearray())
        buf += data
        while True:
            reader = Buffer(data=bytes(buf))
            try:
                ctype = reader.pull_uint_var()
                length = reader.pull_uint_var()
                value = reader.pull_bytes(length)
            except BufferReadError:
                break
            del buf[: reader.tell()]
            record: dict[str, Any] = {
                "session_id": session_id,
                "type": _hexname(CAPSULE_NAMES, ctype),
                "length": length,
            }
            if ctype == CLOSE_SESSION and length >= 4:
                record["code"] = int.from_bytes(value[:4], "big")
                record["reason"] = value[4:].decode("utf-8", "replace")
                if not self.session_closed.done():
                    self.session_closed.set_result(
                        {"code": record["code"], "reason": record["reason"]}
                    )
            elif ctype in CAPSULE_NAMES and length <= 8 and length:
                try:
                    record["value"] = Buffer(data=value).pull_uint_var()
                except BufferReadError:
                    record["value_hex"] = value.hex()
            else:
                record["value_hex"] = value[:64].hex()
            emit("capsule", **record)
        if fin:
            emit("connect_stream_fin", session_id=session_id, leftover=len(buf))
            if not self.session_closed.done():
                self.session_closed.set_result({"fin": True})
            if not self.is_client and self.h3 is not None:
                try:  # answer FIN with FIN, as the draft asks
                    self.h3.send_data(session_id, b"", end_stream=True)
                except Exception as exc:
                    emit("h3_error", error=repr(exc))

    def _stream_complete(self, stream_id: int, session_id: int, data: bytes) -> None:
        assert self.h3 is not None
        bidi = not (stream_id & 2)
        emit("wt_stream", stream_id=stream_id, session_id=session_id, bidi=bidi, size=len(data))
        if self.is_client:
            self.echoes.put_nowait(("bidi" if bidi else "uni", data))
            return
        if bidi and data.startswith(b"close:"):
            code_text, _, reason = data[6:].decode("utf-8", "replace").partition(":")
            value = int(code_text or 0).to_bytes(4, "big") + reason.encode()
            self.h3.send_data(session_id, encode_capsule(CLOSE_SESSION, value), end_stream=True)
            emit("close_sent", session_id=session_id, code=int(code_text or 0), reason=reason)
            return
        if bidi:
            self._quic.send_stream_data(stream_id, data, end_stream=True)
        else:
            reply = self.h3.create_webtransport_stream(session_id, is_unidirectional=True)
            self._quic.send_stream_data(reply, data, end_stream=True)

    connect_status = 200


def _quic_config(is_client: bool, args: argparse.Namespace) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=H3_ALPN,
        max_datagram_frame_size=65536,
        idle_timeout=20.0,
    )
    if is_client:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_cert_chain(args.certfile, args.keyfile)
    return config


async def run_server(args: argparse.Namespace) -> int:
    ProbeH3.profile = args.settings
    ProbeH3.initial_max_data = args.initial_max_data
    ProbeProtocol.connect_status = args.status
    server = await serve(
        args.host, args.port, configuration=_quic_config(False, args), create_protocol=ProbeProtocol
    )
    port = server._transport.get_extra_info("sockname")[1]
    print(
        json.dumps(
            {
                "host": args.host,
                "port": port,
                "url": f"https://{args.host}:{port}/echo",
                "peer": "aioquic-probe",
                "settings_profile": args.settings,
            }
        ),
        flush=True,
    )
    try:
        await asyncio.sleep(args.lifetime)
    finally:
        server.close()
    return 0


async def run_client(args: argparse.Namespace) -> int:
    ProbeH3.profile = args.settings
    ProbeH3.initial_max_data = args.initial_max_data
    url = urllib.parse.urlparse(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 443
    async with connect(
        host, port, configuration=_quic_config(True, args), create_protocol=ProbeProtocol
    ) as proto:
        assert isinstance(proto, ProbeProtocol) and proto.h3 is not None
        h3 = proto.h3
        # Like pywebtransport, wait for the peer's SETTINGS before CONNECT.
        for _ in range(100):
            if h3.received_settings is not None or proto.terminated.is_set():
                break
            await asyncio.sleep(0.02)
        if proto.terminated.is_set():
            return 1
        session_id = proto._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", url.netloc.encode()),
            (b":path", (url.path or "/").encode()),
            (b":protocol", args.protocol.encode()),
        ]
        for item in args.header or []:
            key, _, value = item.partition(":")
            headers.append((key.strip().lower().encode(), value.strip().encode()))
        h3.send_headers(session_id, headers)
        proto.transmit()
        try:
            response = dict(await asyncio.wait_for(proto.response, 5.0))
        except TimeoutError:
            emit("result", ok=False, why="no response to CONNECT")
            return 1
        if response.get(b":status") != b"200":
            emit("result", ok=False, status=response.get(b":status", b"").decode())
            await asyncio.sleep(0.3)
            return 1
        proto.sessions.add(session_id)

        # bidi echo
        stream_id = h3.open_bidi(session_id)
        proto._quic.send_stream_data(stream_id, b"probe-bidi", end_stream=True)
        # uni echo
        uni = h3.create_webtransport_stream(session_id, is_unidirectional=True)
        proto._quic.send_stream_data(uni, b"probe-uni", end_stream=True)
        h3.send_datagram(stream_id=session_id, data=b"probe-datagram")
        proto.transmit()
        got: list[str] = []
        try:
            async with asyncio.timeout(3.0):
                while len(got) < 3:
                    kind, data = await proto.echoes.get()
                    got.append(f"{kind}:{data.decode('latin-1')}")
        except TimeoutError:
            pass
        emit("echoes", received=got)

        if args.close_by == "server":
            trigger = h3.open_bidi(session_id)
            proto._quic.send_stream_data(
                trigger, f"close:{args.code}:{args.reason}".encode(), end_stream=True
            )
        else:
            value = args.code.to_bytes(4, "big") + args.reason.encode()
            h3.send_data(session_id, encode_capsule(CLOSE_SESSION, value), end_stream=True)
            emit("close_sent", session_id=session_id, code=args.code, reason=args.reason)
        proto.transmit()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(proto.session_closed), 3.0)
        except TimeoutError:
            outcome = {"timeout": True}
        await asyncio.sleep(0.5)  # let resets / FIN / close arrive and be logged
        emit("result", ok=True, session_closed=outcome)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("server", "client"):
        p = sub.add_parser(name)
        p.add_argument(
            "--settings", choices=["aioquic", "draft15", "draft15-nofc"], default="draft15"
        )
        p.add_argument("--initial-max-data", type=int, default=64 * 1024 * 1024)
    srv = sub.choices["server"]
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--certfile", required=True)
    srv.add_argument("--keyfile", required=True)
    srv.add_argument("--status", type=int, default=200, help="status answered to CONNECT")
    srv.add_argument("--lifetime", type=float, default=120.0)
    cli = sub.choices["client"]
    cli.add_argument("url")
    cli.add_argument("--protocol", default="webtransport-h3", help=":protocol token to send")
    cli.add_argument("--header", action="append", help="extra 'name: value' request header")
    cli.add_argument("--close-by", choices=["server", "client"], default="server")
    cli.add_argument("--code", type=int, default=4243)
    cli.add_argument("--reason", default="probe-bye")
    cli.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    async def bounded() -> int:
        limit = args.lifetime + 5 if args.mode == "server" else args.timeout
        async with asyncio.timeout(limit):
            return await (run_server(args) if args.mode == "server" else run_client(args))

    try:
        code = asyncio.run(bounded())
    except TimeoutError:
        code = 0 if args.mode == "server" else 124
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
