#!/usr/bin/env python3
"""A WebTransport peer built on aioquic's own HTTP/3 WebTransport support.

This is an interop *reference* peer: it uses only what aioquic 1.7's
``H3Connection(quic, enable_webtransport=True)`` offers (the draft-02 dialect),
plus the few pieces aioquic lacks, written here by hand: capsule parsing,
WT_CLOSE_SESSION, and routing around two H3-layer quirks (see "Quirks").
It never imports anywt, so a bug in anywt cannot hide behind it.

Server::

    python tests/peers/aioquic_wt.py server --host 127.0.0.1 --port 0 \\
        --certfile cert.pem --keyfile key.pem [--path /echo]

prints one JSON line ``{"host", "port", "url"}`` on stdout, then serves until
SIGTERM/SIGINT or ``--lifetime`` seconds. It logs one JSON object per line on
stderr (``{"t", "event", ...}``) so a test can assert what the server saw
(reset codes, close codes, the reply on a server-opened stream).

Client::

    python tests/peers/aioquic_wt.py client https://127.0.0.1:PORT/echo \\
        (--cert-hash HEX | --insecure) [--scenario NAME ...]

prints one JSON line ``{"scenario", "ok", "detail"}`` per scenario and exits 0
only if all passed. Each scenario runs on its own QUIC connection and
session, bounded by ``--timeout``.

The echo contract (what the server does, and what any server under test must
do for the client scenarios and the browser harness):

* CONNECT with ``:protocol`` ``webtransport`` on ``--path`` is accepted (200,
  plus ``wt-protocol`` if the client offered ``wt-available-protocols`` and
  one of them is in ``--protocols``); any other request gets 404.
* bidi stream: the bytes are echoed back on the same stream, then FIN.
* client uni stream: after its FIN, the server opens a uni stream carrying the
  same bytes, then FIN.
* datagram: echoed.
* bidi stream whose bytes start with ``close:<code>:<reason>`` (read up to
  FIN): the server closes the session with WT_CLOSE_SESSION(code, reason)
  and FIN on the CONNECT stream.
* bidi stream whose bytes start with ``open-bidi``: echoed as usual, and the
  server also opens a bidi stream of its own carrying
  :data:`SERVER_BIDI_PAYLOAD` then FIN. Whatever the peer writes back on
  that stream is logged (``server_bidi_reply``) when it ends.
* WT_CLOSE_SESSION from the peer: logged (``session_close_received``), and
  answered with FIN on the CONNECT stream.
* RESET_STREAM / STOP_SENDING: logged with the raw code and the decoded
  WebTransport application code (``stream_reset``, ``stop_sending``).

Quirks of aioquic's H3 layer that this file works around:

* A bidi stream created locally with ``create_webtransport_stream`` is not
  registered as a WebTransport stream inside ``H3Connection``, so the
  peer's bytes on it would be parsed as HTTP/3 frames and never surface.
  QUIC events for such streams are handled here and never reach the H3 layer.
* aioquic does not parse capsules and has no session close; the CONNECT
  stream body arrives as ``DataReceived`` and is parsed here.
* Resets and STOP_SENDING are not surfaced by the H3 layer, so they are
  taken from the QUIC events before those reach it.

Loopback use only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import json
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from cryptography.hazmat.primitives.serialization import Encoding

# --- protocol constants (draft-ietf-webtrans-http3, RFC 9297) ---------------

CAPSULE_CLOSE_SESSION = 0x2843
CAPSULE_DRAIN_SESSION = 0x78AE
#: First codepoint of the WebTransport application error range.
WT_APP_ERROR_FIRST = 0x52E4A40FA8DB
#: Largest 32-bit WebTransport application error code.
WT_APP_ERROR_MAX = 0xFFFFFFFF
H3_NO_ERROR = 0x100
H3_REQUEST_REJECTED = 0x10B
#: Longest reason a WT_CLOSE_SESSION may carry, in bytes.
MAX_CLOSE_REASON = 1024
#: Capsules we buffer whole are small; anything larger is skipped unparsed.
MAX_BUFFERED_CAPSULE = 65536

# --- the echo contract's commands --------------------------------------------

#: A bidi stream starting with this asks the server to close the session.
CLOSE_COMMAND_PREFIX = b"close:"
#: A bidi stream starting with this asks the server to open a bidi stream.
OPEN_BIDI_TRIGGER = b"open-bidi"
#: What the server writes on the bidi stream it opens for ``open-bidi``.
SERVER_BIDI_PAYLOAD = b"anywt: hello on a server-initiated bidi stream"
# A close command is "close:" + up to 10 digits + ":" + a <=1024-byte reason.
_MAX_CLOSE_COMMAND = len(CLOSE_COMMAND_PREFIX) + 11 + MAX_CLOSE_REASON

#: SETTINGS_WT_MAX_SESSIONS of draft-07; offering it lets Chromium (with
#: EnableWebTransportDraft07) pick draft-07 instead of draft-02.
SETTINGS_WT_MAX_SESSIONS_DRAFT07 = 0xC671706A

DEFAULT_PROTOCOLS = ("echo-v1", "echo-v0")
MAX_DATAGRAM_FRAME_SIZE = 65536


# --- small helpers shared by both sides ---------------------------------------


def log(event: str, **fields: Any) -> None:
    """Write one JSON log line to stderr (stdout is reserved for results)."""
    record = {"t": round(time.time(), 4), "event": event, **fields}
    print(json.dumps(record, default=repr), file=sys.stderr, flush=True)


def wt_error_to_wire(code: int) -> int:
    """Map a 32-bit WebTransport application error code to its HTTP/3 codepoint.

    Every 0x1f-th codepoint of the range is a reserved (GREASE) one and skipped.
    """
    if not 0 <= code <= WT_APP_ERROR_MAX:
        raise ValueError(f"WebTransport error code out of range: {code}")
    return WT_APP_ERROR_FIRST + code + code // 0x1E


def wire_to_wt_error(wire: int) -> int | None:
    """Inverse of :func:`wt_error_to_wire`; None if *wire* is not such a code."""
    shifted = wire - WT_APP_ERROR_FIRST
    if shifted < 0 or shifted % 0x1F == 0x1E:
        return None
    code = shifted - shifted // 0x1F
    return code if code <= WT_APP_ERROR_MAX else None


def encode_capsule(capsule_type: int, payload: bytes) -> bytes:
    """Encode one RFC 9297 capsule: type varint, length varint, payload."""
    return encode_uint_var(capsule_type) + encode_uint_var(len(payload)) + payload


def close_session_capsule(code: int, reason: str) -> bytes:
    """Encode WT_CLOSE_SESSION: a 32-bit code then the UTF-8 reason."""
    reason_bytes = reason.encode("utf-8")
    if len(reason_bytes) > MAX_CLOSE_REASON:
        raise ValueError("close reason longer than 1024 bytes")
    return encode_capsule(
        CAPSULE_CLOSE_SESSION, (code & 0xFFFFFFFF).to_bytes(4, "big") + reason_bytes
    )


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Decode a WT_CLOSE_SESSION payload into (code, reason)."""
    if len(payload) < 4:
        raise ValueError("WT_CLOSE_SESSION shorter than 4 bytes")
    return int.from_bytes(payload[:4], "big"), payload[4:].decode("utf-8", "replace")


def _pull_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """Decode an RFC 9000 varint at *pos*; return (value, next pos) or None if cut."""
    if pos >= len(data):
        return None
    length = 1 << (data[pos] >> 6)
    if pos + length > len(data):
        return None
    value = data[pos] & 0x3F
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, pos + length


class CapsuleParser:
    """Incremental capsule parser for the CONNECT stream body.

    Fed arbitrary slices; returns whole capsules. Known capsules we care
    about are small, so a capsule is buffered whole unless it is larger than
    :data:`MAX_BUFFERED_CAPSULE`, in which case its payload is skipped as it
    arrives (reported with ``None`` as payload).
    """

    def __init__(self) -> None:
        self._buf = b""
        self._skip = 0  # payload bytes of an oversized capsule still to drop

    @property
    def mid_capsule(self) -> bool:
        """True if a capsule has started but not ended (a FIN here is an error)."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> list[tuple[int, bytes | None]]:
        """Add bytes; return the capsules completed by them, in order."""
        out: list[tuple[int, bytes | None]] = []
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buf += data
        while self._buf:
            header = _pull_varint(self._buf, 0)
            if header is None:
                break  # type incomplete
            length_field = _pull_varint(self._buf, header[1])
            if length_field is None:
                break  # length incomplete
            capsule_type, (length, start) = header[0], length_field
            if length > MAX_BUFFERED_CAPSULE:
                out.append((capsule_type, None))
                available = len(self._buf) - start
                self._skip = length - min(length, available)
                self._buf = self._buf[start + min(length, available) :]
                continue
            if len(self._buf) - start < length:
                break  # payload incomplete
            out.append((capsule_type, self._buf[start : start + length]))
            self._buf = self._buf[start + length :]
        return out


def parse_sf_string_list(value: str) -> list[str]:
    """Parse an RFC 8941 list of sf-strings, e.g. ``"echo-v1", "echo-v0"``.

    Parameters and non-string members are skipped; a malformed list yields
    what was parsed before the error (good enough for a test peer).
    """
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t,":
            i += 1
        if i >= n:
            break
        if value[i] != '"':
            # A token or other bare item: skip to the next comma.
            while i < n and value[i] != ",":
                i += 1
            continue
        i += 1
        chars: list[str] = []
        while i < n and value[i] != '"':
            if value[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(value[i])
            i += 1
        i += 1  # closing quote
        items.append("".join(chars))
        while i < n and value[i] != ",":  # parameters
            i += 1
    return items


def sf_string(value: str) -> str:
    """Serialize an RFC 8941 sf-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _headers_dict(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Decode a header list into a dict (last value wins; fine for our use)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}


def _is_uni(stream_id: int) -> bool:
    return bool(stream_id & 0x2)


def _is_client_initiated(stream_id: int) -> bool:
    return not stream_id & 0x1


# --- server -------------------------------------------------------------------


@dataclass
class _ServerSession:
    """Server-side state of one WebTransport session (its CONNECT stream)."""

    session_id: int
    path: str
    capsules: CapsuleParser = field(default_factory=CapsuleParser)
    fin_sent: bool = False  # we ended our side of the CONNECT stream
    ended: bool = False  # the peer ended or reset the CONNECT stream


@dataclass
class _InboundStream:
    """A peer-opened WebTransport stream the server is handling."""

    session_id: int
    # "undecided" until the first bytes tell echo from a command.
    mode: str = "undecided"
    buf: bytearray = field(default_factory=bytearray)
    nbytes: int = 0


@dataclass
class _LocalBidi:
    """A bidi stream the server opened; the peer's reply is collected here."""

    session_id: int
    data: bytearray = field(default_factory=bytearray)


def _classify(buf: bytes) -> str:
    """Tell an echo stream from a command stream by its first bytes."""
    if buf.startswith(CLOSE_COMMAND_PREFIX):
        return "close"
    if buf.startswith(OPEN_BIDI_TRIGGER):
        return "open-bidi"
    if CLOSE_COMMAND_PREFIX.startswith(buf) or OPEN_BIDI_TRIGGER.startswith(buf):
        return "undecided"  # too short to tell yet
    return "echo"


class _H3ConnectionDraft07(H3Connection):
    """aioquic's H3 plus the draft-07 WT_MAX_SESSIONS setting.

    aioquic has no hook for extra SETTINGS; overriding this private method is
    the only way in. Everything else stays aioquic's draft-02 behaviour,
    which matches draft-07 on the wire for what the echo contract uses.
    """

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[SETTINGS_WT_MAX_SESSIONS_DRAFT07] = 1
        return settings


class WtServerProtocol(QuicConnectionProtocol):
    """One QUIC connection of the echo server."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        path: str,
        protocols: Sequence[str],
        offer_draft07: bool = False,
    ) -> None:
        super().__init__(quic, stream_handler)
        self._path = path
        self._offer_draft07 = offer_draft07
        self._protocols = tuple(protocols)
        self._h3: H3Connection | None = None
        self._settings_logged = False
        self._sessions: dict[int, _ServerSession] = {}
        self._inbound: dict[int, _InboundStream] = {}
        self._local_bidi: dict[int, _LocalBidi] = {}
        self._cid = quic.host_cid.hex()[:8]

    # QUIC events ------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        """Dispatch QUIC events: some here, the rest through the H3 layer."""
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol in H3_ALPN:
                h3_class = _H3ConnectionDraft07 if self._offer_draft07 else H3Connection
                self._h3 = h3_class(self._quic, enable_webtransport=True)
                log("h3_ready", conn=self._cid, settings_sent=self._h3.sent_settings)
            return
        if isinstance(event, HandshakeCompleted):
            log("handshake_completed", conn=self._cid, alpn=event.alpn_protocol)
            return
        if isinstance(event, ConnectionTerminated):
            log(
                "connection_terminated",
                conn=self._cid,
                error_code=event.error_code,
                reason=event.reason_phrase,
            )
            return
        if isinstance(event, StreamReset):
            self._on_reset(event.stream_id, event.error_code)
        elif isinstance(event, StopSendingReceived):
            self._on_stop_sending(event.stream_id, event.error_code)
        # Streams we opened ourselves never go to the H3 layer (quirk 1).
        stream_id = getattr(event, "stream_id", None)
        if stream_id is not None and stream_id in self._local_bidi:
            if isinstance(event, StreamDataReceived):
                self._on_local_bidi_data(stream_id, event.data, event.end_stream)
            elif isinstance(event, StreamReset):
                self._local_bidi.pop(stream_id, None)
            return
        if self._h3 is None:
            return
        for h3_event in self._h3.handle_event(event):
            self._on_h3_event(h3_event)
        if not self._settings_logged and self._h3.received_settings is not None:
            self._settings_logged = True
            log("settings_received", conn=self._cid, settings=self._h3.received_settings)

    def _on_reset(self, stream_id: int, error_code: int) -> None:
        log(
            "stream_reset",
            conn=self._cid,
            stream_id=stream_id,
            error_code=error_code,
            wt_error_code=wire_to_wt_error(error_code),
        )
        self._inbound.pop(stream_id, None)
        session = self._sessions.get(stream_id)
        if session is not None:
            session.ended = True
            log("session_reset", conn=self._cid, session_id=stream_id)

    def _on_stop_sending(self, stream_id: int, error_code: int) -> None:
        # aioquic has already reset our sending side in response.
        log(
            "stop_sending",
            conn=self._cid,
            stream_id=stream_id,
            error_code=error_code,
            wt_error_code=wire_to_wt_error(error_code),
        )

    # H3 events --------------------------------------------------------------

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._on_headers(event)
        elif isinstance(event, DataReceived):
            self._on_session_data(event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, WebTransportStreamDataReceived):
            self._on_wt_stream_data(event)
        elif isinstance(event, DatagramReceived):
            self._on_datagram(event.stream_id, event.data)

    def _on_headers(self, event: HeadersReceived) -> None:
        assert self._h3 is not None
        stream_id = event.stream_id
        if stream_id in self._sessions:
            log("unexpected_headers", conn=self._cid, stream_id=stream_id)
            return
        headers = _headers_dict(event.headers)
        method = headers.get(":method", "")
        protocol = headers.get(":protocol", "")
        path = headers.get(":path", "").split("?", 1)[0]
        log("request", conn=self._cid, stream_id=stream_id, headers=headers)
        if method != "CONNECT" or protocol not in ("webtransport", "webtransport-h3"):
            self._h3.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
            log("rejected", conn=self._cid, stream_id=stream_id, status=404, why="not WT")
            return
        if path != self._path:
            self._h3.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
            log("rejected", conn=self._cid, stream_id=stream_id, status=404, why="path")
            return
        response = [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        offered = parse_sf_string_list(headers.get("wt-available-protocols", ""))
        chosen = next((p for p in offered if p in self._protocols), None)
        if chosen is not None:
            response.append((b"wt-protocol", sf_string(chosen).encode()))
        self._h3.send_headers(stream_id, response)
        self._sessions[stream_id] = _ServerSession(session_id=stream_id, path=path)
        log(
            "session_accepted",
            conn=self._cid,
            session_id=stream_id,
            offered_protocols=offered,
            protocol=chosen,
        )

    def _on_session_data(self, stream_id: int, data: bytes, ended: bool) -> None:
        assert self._h3 is not None
        session = self._sessions.get(stream_id)
        if session is None:
            return  # the body of a rejected request
        for capsule_type, payload in session.capsules.feed(data):
            if capsule_type == CAPSULE_CLOSE_SESSION and payload is not None:
                try:
                    code, reason = parse_close_payload(payload)
                except ValueError as exc:
                    log("bad_capsule", conn=self._cid, session_id=stream_id, error=str(exc))
                    continue
                log(
                    "session_close_received",
                    conn=self._cid,
                    session_id=stream_id,
                    code=code,
                    reason=reason,
                )
            elif capsule_type == CAPSULE_DRAIN_SESSION:
                log("session_drain_received", conn=self._cid, session_id=stream_id)
            else:
                # Chromium sends a GREASE capsule right after the 200.
                log(
                    "capsule_skipped",
                    conn=self._cid,
                    session_id=stream_id,
                    type=hex(capsule_type),
                    length=None if payload is None else len(payload),
                )
        if ended:
            session.ended = True
            log(
                "session_fin_received",
                conn=self._cid,
                session_id=stream_id,
                mid_capsule=session.capsules.mid_capsule,
            )
            # A FIN (with or without a close capsule) ends the session; answer
            # with our own FIN as the draft asks.
            if not session.fin_sent:
                session.fin_sent = True
                self._h3.send_data(stream_id, b"", end_stream=True)

    def _on_wt_stream_data(self, event: WebTransportStreamDataReceived) -> None:
        stream_id = event.stream_id
        session = self._sessions.get(event.session_id)
        if session is None or session.ended:
            log(
                "stream_for_unknown_session",
                conn=self._cid,
                stream_id=stream_id,
                session_id=event.session_id,
            )
            return
        state = self._inbound.get(stream_id)
        if state is None:
            state = _InboundStream(
                session_id=event.session_id, mode="uni" if _is_uni(stream_id) else "undecided"
            )
            self._inbound[stream_id] = state
            log(
                "stream_opened",
                conn=self._cid,
                stream_id=stream_id,
                session_id=event.session_id,
                uni=_is_uni(stream_id),
            )
        state.nbytes += len(event.data)

        if state.mode == "uni":
            state.buf += event.data
            if event.stream_ended:
                self._inbound.pop(stream_id, None)
                self._answer_uni(state)
            return

        if state.mode == "echo":
            self._send(stream_id, event.data, event.stream_ended)
            if event.stream_ended:
                self._finish_inbound(stream_id, state)
            return

        state.buf += event.data
        if state.mode == "undecided":
            mode = _classify(bytes(state.buf))
            if mode == "undecided":
                if not event.stream_ended:
                    return
                mode = "echo"  # ended before it could be a command
            if mode == "open-bidi":
                self._open_server_bidi(state.session_id)
                mode = "echo"  # the trigger stream itself is echoed as usual
            state.mode = mode
            if mode == "echo":
                data, state.buf = bytes(state.buf), bytearray()
                self._send(stream_id, data, event.stream_ended)
                if event.stream_ended:
                    self._finish_inbound(stream_id, state)
                return

        # mode == "close": collect the command up to FIN, bounded in size.
        if len(state.buf) > _MAX_CLOSE_COMMAND:
            self._inbound.pop(stream_id, None)
            log("bad_close_command", conn=self._cid, stream_id=stream_id, error="too long")
            self._quic.reset_stream(stream_id, H3_REQUEST_REJECTED)
            return
        if event.stream_ended:
            self._inbound.pop(stream_id, None)
            self._run_close_command(stream_id, state)

    def _finish_inbound(self, stream_id: int, state: _InboundStream) -> None:
        self._inbound.pop(stream_id, None)
        log("stream_echoed", conn=self._cid, stream_id=stream_id, nbytes=state.nbytes)

    def _answer_uni(self, state: _InboundStream) -> None:
        """Echo a finished client uni stream on a new server uni stream."""
        assert self._h3 is not None
        out_id = self._h3.create_webtransport_stream(state.session_id, is_unidirectional=True)
        self._send(out_id, bytes(state.buf), True)
        log("uni_echoed", conn=self._cid, stream_id=out_id, nbytes=len(state.buf))

    def _open_server_bidi(self, session_id: int) -> None:
        """The ``open-bidi`` trigger: open a bidi stream carrying the payload."""
        assert self._h3 is not None
        out_id = self._h3.create_webtransport_stream(session_id, is_unidirectional=False)
        self._local_bidi[out_id] = _LocalBidi(session_id=session_id)
        self._send(out_id, SERVER_BIDI_PAYLOAD, True)
        log("server_bidi_opened", conn=self._cid, stream_id=out_id, session_id=session_id)

    def _on_local_bidi_data(self, stream_id: int, data: bytes, ended: bool) -> None:
        state = self._local_bidi[stream_id]
        state.data += data
        if ended:
            del self._local_bidi[stream_id]
            log(
                "server_bidi_reply",
                conn=self._cid,
                stream_id=stream_id,
                nbytes=len(state.data),
                matches_payload=bytes(state.data) == SERVER_BIDI_PAYLOAD,
            )

    def _run_close_command(self, stream_id: int, state: _InboundStream) -> None:
        """``close:<code>:<reason>``: close the session from the server side."""
        assert self._h3 is not None
        text = bytes(state.buf)[len(CLOSE_COMMAND_PREFIX) :].decode("utf-8", "replace")
        code_text, _, reason = text.partition(":")
        session = self._sessions.get(state.session_id)
        try:
            code = int(code_text)
            capsule = close_session_capsule(code, reason)
        except ValueError as exc:
            log("bad_close_command", conn=self._cid, stream_id=stream_id, error=str(exc))
            self._quic.reset_stream(stream_id, H3_REQUEST_REJECTED)
            return
        # End the command stream cleanly; the session is going away anyway.
        self._send(stream_id, b"", True)
        if session is None or session.fin_sent:
            return
        session.fin_sent = True
        # aioquic has no close API: the capsule goes as DATA on the CONNECT
        # stream, followed by FIN.
        self._h3.send_data(state.session_id, capsule, end_stream=True)
        log(
            "session_close_sent",
            conn=self._cid,
            session_id=state.session_id,
            code=code,
            reason=reason,
        )

    def _on_datagram(self, flow_id: int, data: bytes) -> None:
        assert self._h3 is not None
        session = self._sessions.get(flow_id)
        if session is None or session.ended:
            log("datagram_for_unknown_session", conn=self._cid, session_id=flow_id)
            return
        self._h3.send_datagram(flow_id, data)
        log("datagram_echoed", conn=self._cid, session_id=flow_id, nbytes=len(data))

    def _send(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Write to a stream; a stream the peer already stopped is just logged."""
        try:
            self._quic.send_stream_data(stream_id, data, end_stream)
        except (RuntimeError, ValueError, AssertionError) as exc:
            log("send_failed", conn=self._cid, stream_id=stream_id, error=str(exc))


def _format_url(host: str, port: int, path: str) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    authority = f"[{host}]:{port}" if is_v6 else f"{host}:{port}"
    return f"https://{authority}{path}"


async def run_server(args: argparse.Namespace) -> int:
    """Serve until a signal or the lifetime ends; print the ready line first."""
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=list(H3_ALPN),
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        idle_timeout=30.0,
    )
    configuration.load_cert_chain(args.certfile, args.keyfile)
    server = await serve(
        args.host,
        args.port,
        configuration=configuration,
        create_protocol=functools.partial(
            WtServerProtocol,
            path=args.path,
            protocols=args.protocols,
            offer_draft07=args.offer_draft07,
        ),
    )
    try:
        # serve() hides its transport; the bound port (for --port 0) is only
        # reachable through it.
        transport = server._transport
        assert transport is not None
        port = int(transport.get_extra_info("sockname")[1])
        url = _format_url(args.host, port, args.path)
        print(json.dumps({"host": args.host, "port": port, "url": url}), flush=True)
        log("listening", host=args.host, port=port, url=url, path=args.path)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.lifetime)
            log("stopping", why="signal")
        except TimeoutError:
            log("stopping", why="lifetime", lifetime=args.lifetime)
    finally:
        server.close()
    return 0


# --- client -------------------------------------------------------------------


class ScenarioError(Exception):
    """A scenario's expectation failed; the message is its detail."""


@dataclass
class _Stream:
    """Bytes received on one stream, and whether it has ended."""

    stream_id: int
    data: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reset_code: int | None = None


@dataclass
class _ClientSession:
    """Client-side state of one WebTransport session."""

    session_id: int
    response: asyncio.Future[dict[str, str]]
    capsules: CapsuleParser = field(default_factory=CapsuleParser)
    close_info: tuple[int, str] | None = None
    fin_received: asyncio.Event = field(default_factory=asyncio.Event)
    fin_sent: bool = False
    streams: dict[int, _Stream] = field(default_factory=dict)
    incoming: asyncio.Queue[_Stream] = field(default_factory=asyncio.Queue)
    datagrams: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)


class WtClientProtocol(QuicConnectionProtocol):
    """The client side: aioquic's H3 client plus the workarounds above."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler)
        self.h3 = H3Connection(quic, enable_webtransport=True)
        self.settings_received = asyncio.Event()
        self.terminated: tuple[int, str] | None = None
        self._sessions: dict[int, _ClientSession] = {}
        # Bidi streams we opened: their data bypasses the H3 layer (quirk 1).
        self._local_bidi: dict[int, _Stream] = {}

    # setup --------------------------------------------------------------------

    def peer_certificate_sha256(self) -> bytes | None:
        """SHA-256 of the server's DER certificate, once the handshake is done."""
        # aioquic offers no public accessor for the peer certificate.
        cert = self._quic.tls._peer_certificate
        return None if cert is None else hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()

    def open_session(
        self, authority: str, path: str, extra_headers: Sequence[tuple[str, str]] = ()
    ) -> _ClientSession:
        """Send an extended CONNECT; the response arrives in ``session.response``."""
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b":protocol", b"webtransport"),
            (b"sec-webtransport-http3-draft02", b"1"),
            (b"origin", b"https://" + authority.encode()),
        ] + [(k.encode(), v.encode()) for k, v in extra_headers]
        session = _ClientSession(
            session_id=stream_id, response=asyncio.get_running_loop().create_future()
        )
        self._sessions[stream_id] = session
        self.h3.send_headers(stream_id, headers)
        self.transmit()
        return session

    # operations ---------------------------------------------------------------

    def open_bidi(self, session: _ClientSession) -> _Stream:
        stream_id = self.h3.create_webtransport_stream(session.session_id, False)
        stream = _Stream(stream_id)
        self._local_bidi[stream_id] = stream
        return stream

    def open_uni(self, session: _ClientSession) -> int:
        return self.h3.create_webtransport_stream(session.session_id, True)

    def write(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._quic.send_stream_data(stream_id, data, end_stream)
        self.transmit()

    def reset(self, stream_id: int, wt_code: int, *, stop_sending: bool = True) -> None:
        wire = wt_error_to_wire(wt_code)
        self._quic.reset_stream(stream_id, wire)
        if stop_sending:
            self._quic.stop_stream(stream_id, wire)
        self.transmit()

    def send_datagram(self, session: _ClientSession, data: bytes) -> None:
        self.h3.send_datagram(session.session_id, data)
        self.transmit()

    def close_session(self, session: _ClientSession, code: int, reason: str) -> None:
        """WT_CLOSE_SESSION then FIN on the CONNECT stream (aioquic has no API)."""
        session.fin_sent = True
        self.h3.send_data(session.session_id, close_session_capsule(code, reason), True)
        self.transmit()

    # events -------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = (event.error_code, event.reason_phrase)
            for session in self._sessions.values():
                if not session.response.done():
                    session.response.set_exception(
                        ConnectionError(f"connection closed: {self.terminated}")
                    )
                session.fin_received.set()
            for stream in self._local_bidi.values():
                stream.ended.set()
            return
        stream_id = getattr(event, "stream_id", None)
        if stream_id is not None and stream_id in self._local_bidi:
            stream = self._local_bidi[stream_id]
            if isinstance(event, StreamDataReceived):
                stream.data += event.data
                if event.end_stream:
                    stream.ended.set()
            elif isinstance(event, StreamReset):
                stream.reset_code = event.error_code
                stream.ended.set()
            return
        if isinstance(event, StreamReset):
            for session in self._sessions.values():
                incoming = session.streams.get(event.stream_id)
                if incoming is not None:
                    incoming.reset_code = event.error_code
                    incoming.ended.set()
        for h3_event in self.h3.handle_event(event):
            self._on_h3_event(h3_event)
        if self.h3.received_settings is not None:
            self.settings_received.set()

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            session = self._sessions.get(event.stream_id)
            if session is not None and not session.response.done():
                session.response.set_result(_headers_dict(event.headers))
            if session is not None and event.stream_ended:
                session.fin_received.set()
        elif isinstance(event, DataReceived):
            session = self._sessions.get(event.stream_id)
            if session is None:
                return
            for capsule_type, payload in session.capsules.feed(event.data):
                if capsule_type == CAPSULE_CLOSE_SESSION and payload is not None:
                    session.close_info = parse_close_payload(payload)
            if event.stream_ended:
                session.fin_received.set()
        elif isinstance(event, WebTransportStreamDataReceived):
            session = self._sessions.get(event.session_id)
            if session is None:
                return
            stream = session.streams.get(event.stream_id)
            if stream is None:
                stream = session.streams[event.stream_id] = _Stream(event.stream_id)
                session.incoming.put_nowait(stream)
            stream.data += event.data
            if event.stream_ended:
                stream.ended.set()
        elif isinstance(event, DatagramReceived):
            session = self._sessions.get(event.stream_id)
            if session is not None:
                session.datagrams.put_nowait(event.data)


@dataclass(frozen=True)
class Target:
    """Where and how the client connects."""

    host: str
    port: int
    path: str
    cert_hash: bytes | None
    insecure: bool
    timeout: float

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def wt_session(
    target: Target,
    *,
    path: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    expect_status: str = "200",
) -> AsyncIterator[tuple[WtClientProtocol, _ClientSession, dict[str, str]]]:
    """Connect, check the pin, wait for SETTINGS, open one session.

    Yields ``(protocol, session, response_headers)``. The connection is closed
    when the block ends.
    """
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=list(H3_ALPN),
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        server_name=target.host,
        # With a pinned hash we check the certificate ourselves after the
        # handshake; CA verification of a self-signed cert would fail.
        verify_mode=ssl.CERT_NONE if (target.cert_hash or target.insecure) else None,
        idle_timeout=max(10.0, target.timeout),
    )
    async with connect(
        target.host,
        target.port,
        configuration=configuration,
        create_protocol=WtClientProtocol,
    ) as proto:
        assert isinstance(proto, WtClientProtocol)
        if target.cert_hash is not None:
            got = proto.peer_certificate_sha256()
            if got != target.cert_hash:
                # Nothing has been sent on any stream yet: fail before talking.
                proto.close(error_code=0x12A, reason_phrase="certificate hash mismatch")
                raise ScenarioError(f"certificate hash mismatch: got {got.hex() if got else None}")
        # An extended CONNECT needs the server's SETTINGS (RFC 9220).
        await asyncio.wait_for(proto.settings_received.wait(), target.timeout)
        settings = proto.h3.received_settings or {}
        if settings.get(0x2B603742) != 1 and settings.get(0xC671706A) is None:
            raise ScenarioError(f"server SETTINGS lack WebTransport: {settings}")
        session = proto.open_session(target.authority, path or target.path, extra_headers)
        headers = await asyncio.wait_for(asyncio.shield(session.response), target.timeout)
        if headers.get(":status") != expect_status:
            raise ScenarioError(f"status {headers.get(':status')}, wanted {expect_status}")
        yield proto, session, headers


def _payload(size: int, tag: bytes) -> bytes:
    """Deterministic, non-repeating-looking test bytes."""
    out = bytearray(tag)
    i = 0
    while len(out) < size:
        out += (i * 2654435761 & 0xFFFFFFFF).to_bytes(4, "big")
        i += 1
    return bytes(out[:size])


async def _read_all(stream: _Stream, timeout: float) -> bytes:
    await asyncio.wait_for(stream.ended.wait(), timeout)
    if stream.reset_code is not None:
        raise ScenarioError(f"stream {stream.stream_id} reset with {stream.reset_code:#x}")
    return bytes(stream.data)


async def scenario_bidi_echo(t: Target) -> dict[str, Any]:
    payload = _payload(100_000, b"bidi-echo:")
    async with wt_session(t) as (proto, session, _):
        stream = proto.open_bidi(session)
        proto.write(stream.stream_id, payload, end_stream=True)
        got = await _read_all(stream, t.timeout)
        if got != payload:
            raise ScenarioError(f"echo mismatch: sent {len(payload)} got {len(got)} bytes")
        return {"bytes": len(got), "stream_id": stream.stream_id}


async def scenario_uni_echo(t: Target) -> dict[str, Any]:
    payload = _payload(20_000, b"uni-echo:")
    async with wt_session(t) as (proto, session, _):
        stream_id = proto.open_uni(session)
        proto.write(stream_id, payload, end_stream=True)
        incoming = await asyncio.wait_for(session.incoming.get(), t.timeout)
        if not _is_uni(incoming.stream_id) or _is_client_initiated(incoming.stream_id):
            raise ScenarioError(f"expected a server uni stream, got {incoming.stream_id}")
        got = await _read_all(incoming, t.timeout)
        if got != payload:
            raise ScenarioError(f"echo mismatch: sent {len(payload)} got {len(got)} bytes")
        return {"bytes": len(got), "server_stream_id": incoming.stream_id}


async def scenario_datagram_echo(t: Target) -> dict[str, Any]:
    # Datagrams may be lost even on loopback (e.g. sent before the peer is
    # ready); retry a bounded number of times.
    attempts = 20
    async with wt_session(t) as (proto, session, _):
        for attempt in range(1, attempts + 1):
            payload = b"dgram-%d" % attempt
            proto.send_datagram(session, payload)
            deadline = time.monotonic() + min(0.25, t.timeout)
            while (left := deadline - time.monotonic()) > 0:
                try:
                    got = await asyncio.wait_for(session.datagrams.get(), left)
                except TimeoutError:
                    break
                if got.startswith(b"dgram-"):
                    return {"attempts": attempt, "echo": got.decode()}
        raise ScenarioError(f"no datagram echoed after {attempts} attempts")


async def scenario_server_bidi(t: Target) -> dict[str, Any]:
    async with wt_session(t) as (proto, session, _):
        trigger = proto.open_bidi(session)
        proto.write(trigger.stream_id, OPEN_BIDI_TRIGGER, end_stream=True)
        incoming = await asyncio.wait_for(session.incoming.get(), t.timeout)
        if _is_uni(incoming.stream_id) or _is_client_initiated(incoming.stream_id):
            raise ScenarioError(f"expected a server bidi stream, got {incoming.stream_id}")
        got = await _read_all(incoming, t.timeout)
        if got != SERVER_BIDI_PAYLOAD:
            raise ScenarioError(f"unexpected payload {got!r}")
        # Write the payload back so the server can check its read side.
        proto.write(incoming.stream_id, got, end_stream=True)
        echo = await _read_all(trigger, t.timeout)
        # Give the reply a moment to leave before the connection closes.
        await asyncio.sleep(0.05)
        return {"server_stream_id": incoming.stream_id, "trigger_echo": echo.decode()}


async def scenario_close_from_client(t: Target) -> dict[str, Any]:
    code, reason = 4242, "bye from aioquic client"
    async with wt_session(t) as (proto, session, _):
        proto.close_session(session, code, reason)
        try:
            await asyncio.wait_for(session.fin_received.wait(), t.timeout)
        except TimeoutError:
            raise ScenarioError("server did not FIN the CONNECT stream") from None
        return {"sent_code": code, "sent_reason": reason, "server_close": session.close_info}


async def scenario_close_from_server(t: Target) -> dict[str, Any]:
    code, reason = 4343, "bye from server"
    async with wt_session(t) as (proto, session, _):
        stream = proto.open_bidi(session)
        proto.write(stream.stream_id, b"close:%d:%s" % (code, reason.encode()), end_stream=True)
        try:
            await asyncio.wait_for(session.fin_received.wait(), t.timeout)
        except TimeoutError:
            raise ScenarioError("server did not close the session") from None
        if session.close_info != (code, reason):
            raise ScenarioError(f"close info {session.close_info}, wanted {(code, reason)}")
        if not session.fin_sent:
            session.fin_sent = True
            proto.h3.send_data(session.session_id, b"", True)
            proto.transmit()
        return {"code": code, "reason": reason}


async def scenario_abort_stream(t: Target) -> dict[str, Any]:
    # The server logs the codes it sees; this side only checks that the
    # session survives the reset.
    async with wt_session(t) as (proto, session, _):
        stream = proto.open_bidi(session)
        proto.write(stream.stream_id, b"abort-me")
        await asyncio.sleep(0.05)
        proto.reset(stream.stream_id, 7)
        check = proto.open_bidi(session)
        proto.write(check.stream_id, b"still alive", end_stream=True)
        got = await _read_all(check, t.timeout)
        if got != b"still alive":
            raise ScenarioError(f"session unusable after reset: {got!r}")
        return {"wt_code": 7, "wire_code": hex(wt_error_to_wire(7))}


async def scenario_protocols(t: Target) -> dict[str, Any]:
    offered = ["echo-v1", "echo-v0"]
    header = ", ".join(sf_string(p) for p in offered)
    async with wt_session(t, extra_headers=[("wt-available-protocols", header)]) as (
        _,
        _session,
        headers,
    ):
        chosen = parse_sf_string_list(headers.get("wt-protocol", ""))
        if not chosen or chosen[0] not in offered:
            raise ScenarioError(f"wt-protocol {headers.get('wt-protocol')!r} not one offered")
        return {"protocol": chosen[0]}


async def scenario_not_found(t: Target) -> dict[str, Any]:
    async with wt_session(t, path="/no-such-path", expect_status="404") as (_, _s, headers):
        return {"status": headers.get(":status")}


SCENARIOS: dict[str, Callable[[Target], Any]] = {
    "bidi_echo": scenario_bidi_echo,
    "uni_echo": scenario_uni_echo,
    "datagram_echo": scenario_datagram_echo,
    "server_bidi": scenario_server_bidi,
    "abort_stream": scenario_abort_stream,
    "protocols": scenario_protocols,
    "not_found": scenario_not_found,
    "close_from_client": scenario_close_from_client,
    "close_from_server": scenario_close_from_server,
}


async def run_client(args: argparse.Namespace) -> int:
    """Run the chosen scenarios one after the other; print one line each."""
    parts = urlsplit(args.url)
    if parts.scheme != "https" or parts.hostname is None or parts.port is None:
        print(f"bad URL {args.url!r}: want https://HOST:PORT/PATH", file=sys.stderr)
        return 2
    target = Target(
        host=parts.hostname,
        port=parts.port,
        path=parts.path or "/",
        cert_hash=bytes.fromhex(args.cert_hash) if args.cert_hash else None,
        insecure=args.insecure,
        timeout=args.timeout,
    )
    loop = asyncio.get_running_loop()

    def quiet_abandoned_waiters(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # When a timeout cancels aioquic's connect(), its handshake waiter is
        # later failed with ConnectionError that nobody awaits; that is not news.
        if isinstance(context.get("exception"), ConnectionError) and "never retrieved" in str(
            context.get("message")
        ):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(quiet_abandoned_waiters)
    all_ok = True
    for name in args.scenario or list(SCENARIOS):
        started = time.monotonic()
        try:
            # Bound the whole scenario, connection setup and teardown included.
            detail = await asyncio.wait_for(SCENARIOS[name](target), target.timeout * 2)
            ok = True
        except TimeoutError:  # before OSError, of which it is a subclass
            ok, detail = False, f"timed out (timeout {target.timeout}s per wait)"
        except (ScenarioError, ConnectionError, OSError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        all_ok &= ok
        elapsed = round(time.monotonic() - started, 3)
        print(json.dumps({"scenario": name, "ok": ok, "detail": detail, "elapsed": elapsed}))
        sys.stdout.flush()
    return 0 if all_ok else 1


# --- command line -------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode", required=True)

    srv = sub.add_parser("server", help="run the echo server")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--certfile", required=True)
    srv.add_argument("--keyfile", required=True)
    srv.add_argument("--path", default="/echo")
    srv.add_argument(
        "--protocols",
        nargs="*",
        default=list(DEFAULT_PROTOCOLS),
        help="subprotocols the server accepts, in no particular order",
    )
    srv.add_argument(
        "--offer-draft07",
        action="store_true",
        help="also send draft-07's WT_MAX_SESSIONS (0xc671706a) in SETTINGS",
    )
    srv.add_argument(
        "--lifetime",
        type=float,
        default=600.0,
        help="exit after this many seconds even if nobody stops the server",
    )

    cli = sub.add_parser("client", help="run client scenarios against a server")
    cli.add_argument("url")
    pin = cli.add_mutually_exclusive_group(required=True)
    pin.add_argument("--cert-hash", help="hex SHA-256 of the server's DER certificate")
    pin.add_argument("--insecure", action="store_true", help="skip certificate checks")
    cli.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="scenario to run (repeatable); default: all",
    )
    cli.add_argument("--timeout", type=float, default=10.0, help="per-wait timeout, seconds")

    args = parser.parse_args(argv)
    if args.mode == "server":
        return asyncio.run(run_server(args))
    return asyncio.run(run_client(args))


if __name__ == "__main__":
    sys.exit(main())
