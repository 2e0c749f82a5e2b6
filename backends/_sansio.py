"""The adapter between a sans-IO QUIC connection (aioquic, qh3) and the engine.

aioquic and qh3 share one ``QuicConnection`` surface (receive_datagram,
datagrams_to_send, get_timer, handle_timer, next_event, send_stream_data,
send_datagram_frame, ...), but their event classes are different objects.
``QuicStack`` describes one stack; ``SansIOConnection`` wraps one of its
connections, implements the engine's ``Transport`` on it, and translates its
events into engine calls through a per-stack ``{event class: handler}``
table.  Nothing here reads a WebTransport or HTTP/3 byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anywt.core.engine import WebTransportEngine

__all__ = ["QuicStack", "SansIOConnection"]

logger = logging.getLogger("anywt.backends")

# Bytes a 1-RTT packet spends around a DATAGRAM frame's payload: the short
# header (1 + a connection id of up to 20 + a packet number of up to 4), the
# AEAD tag (16), the frame type (1) and a 2-byte length.
_DATAGRAM_OVERHEAD = 1 + 20 + 4 + 16 + 1 + 2


@dataclass(frozen=True, slots=True)
class QuicStack:
    """What differs between sans-IO QUIC stacks, as data."""

    name: str
    #: The stack's event classes, by aioquic's names.
    events: Any
    #: ``QuicConnection`` class.
    connection_class: Any
    #: ``QuicConfiguration`` class.
    configuration_class: Any


class SansIOConnection:
    """One QUIC connection of a sans-IO stack, driving one ``WebTransportEngine``."""

    def __init__(
        self, quic: Any, stack: QuicStack, engine: WebTransportEngine | None = None
    ) -> None:
        self.quic = quic
        self.stack = stack
        self.engine: WebTransportEngine | None = engine
        self.handshake_done = False
        self.terminated = False
        self.alpn: str | None = None
        events = stack.events
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            events.StreamDataReceived: self._on_stream_data,
            events.StreamReset: self._on_stream_reset,
            events.StopSendingReceived: self._on_stop_sending,
            events.DatagramFrameReceived: self._on_datagram,
            events.HandshakeCompleted: self._on_handshake_completed,
            events.ConnectionTerminated: self._on_terminated,
            events.ProtocolNegotiated: self._on_protocol_negotiated,
        }

    # Transport (called by the engine) ----------------------------------

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.quic.send_stream_data(stream_id, data, end_stream)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        try:
            self.quic.reset_stream(stream_id, error_code)
        except (ValueError, AssertionError) as exc:
            # The stack already discarded the stream: nothing left to reset.
            logger.debug("reset_stream(%d) ignored: %s", stream_id, exc)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        try:
            self.quic.stop_stream(stream_id, error_code)
        except (ValueError, AssertionError) as exc:
            logger.debug("stop_stream(%d) ignored: %s", stream_id, exc)

    def send_datagram(self, data: bytes) -> None:
        self.quic.send_datagram_frame(data)

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        stream_id: int = self.quic.get_next_available_stream_id(is_unidirectional)
        return stream_id

    def close(self, error_code: int, reason: str) -> None:
        self.quic.close(error_code=error_code, reason_phrase=reason)

    # Events (called by the driver) ---------------------------------------

    def process_events(self, now: float) -> None:
        """Feed every pending QUIC event to the engine."""
        quic = self.quic
        handlers = self._handlers
        event = quic.next_event()
        while event is not None:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event, now)
            event = quic.next_event()

    def max_datagram_payload(self) -> int:
        """The largest DATAGRAM frame payload that fits one packet and the peer's limit."""
        quic = self.quic
        peer_limit = getattr(quic, "_remote_max_datagram_frame_size", None)
        if not peer_limit:
            return 0
        packet = getattr(quic, "_max_datagram_size", 1200)
        return int(min(peer_limit, packet - _DATAGRAM_OVERHEAD))

    def final_size(self, stream_id: int) -> int:
        """The final size of a reset stream, when the stack lets us see it; else -1."""
        stream = getattr(self.quic, "_streams", {}).get(stream_id)
        receiver = getattr(stream, "receiver", None)
        size = getattr(receiver, "_final_size", None)
        return -1 if size is None else int(size)

    def _on_stream_data(self, event: Any, now: float) -> None:
        if self.engine is not None:
            self.engine.receive_stream_data(event.stream_id, event.data, event.end_stream, now)

    def _on_stream_reset(self, event: Any, now: float) -> None:
        if self.engine is not None:
            self.engine.receive_stream_reset(
                event.stream_id, event.error_code, self.final_size(event.stream_id), now
            )

    def _on_stop_sending(self, event: Any, now: float) -> None:
        if self.engine is not None:
            self.engine.receive_stop_sending(event.stream_id, event.error_code, now)

    def _on_datagram(self, event: Any, now: float) -> None:
        if self.engine is not None:
            self.engine.receive_datagram(event.data, now)

    def _on_protocol_negotiated(self, event: Any, now: float) -> None:
        self.alpn = event.alpn_protocol

    def _on_handshake_completed(self, event: Any, now: float) -> None:
        self.handshake_done = True
        self.alpn = event.alpn_protocol
        if self.engine is not None:
            self.engine.handshake_completed(event.alpn_protocol, self.max_datagram_payload(), now)

    def _on_terminated(self, event: Any, now: float) -> None:
        self.terminated = True
        if self.engine is not None:
            self.engine.connection_terminated(event.error_code, event.reason_phrase, now)
