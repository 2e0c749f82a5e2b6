"""The aioquic backend (aioquic 1.2+, checked with 1.7.2).

aioquic is pure Python: the slowest stack (about 5 MB/s per core), and the
most transparent one, which lets this adapter do what qh3 cannot:

* **Receive windows follow consumption.**  aioquic re-grants credit on
  receipt and doubles its windows whenever half is used, so a peer could make
  us buffer without bound.  Here the instance's ``_write_stream_limits`` and
  ``_write_connection_limits`` are replaced: MAX_STREAM_DATA and MAX_DATA
  only move when the application reported what it read
  (``stream_consumed``), by at least a quarter of the window at a time.  A
  peer can therefore never have more than ``max_stream_data`` unread bytes
  per stream, nor ``max_data`` per connection, waiting for the application.
  Which streams the application reads is asked of the engine
  (``stream_session``): HTTP/3 control, QPACK and request streams, which the
  engine consumes itself, are credited on receipt, and so are streams the
  engine stopped; a WebTransport stream's header (at most 16 bytes, never
  seen by the application) is credited with its data.
* The exact DATAGRAM payload limit: aioquic has no PMTU discovery and always
  uses 2-byte packet numbers, so ``max_datagram_size - 1 - len(dcid) - 2 - 16``
  is the frame budget of every 1-RTT packet.
* The reset final size (the receiver's ``_final_size``), the send backlog of a
  stream (its sender's buffer) and of datagrams (``_datagrams_pending``).
* Local stream limits (MAX_STREAMS) from the settings; aioquic hard-codes 128.
* Congestion control: "reno" or "cubic".

Opening a stream over the peer's MAX_STREAMS queues it inside aioquic until
credit arrives (qh3 raises; the shared adapter queues there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from aioquic import tls as _tls
from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from _buffer
from aioquic.quic import events as _events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.congestion.base import create_congestion_control
from aioquic.quic.connection import QuicConnection
from aioquic.quic.logger import QLOG_VERSION, QuicFileLogger, QuicLoggerTrace
from aioquic.quic.packet import encode_quic_version_negotiation, pull_quic_header
from aioquic.quic.packet_builder import PACKET_NUMBER_SEND_SIZE
from cryptography.hazmat.primitives.serialization import Encoding

from ._sansio import QuicStack, StackBackend, StackConnection
from .base import BackendError, QuicSettings

__all__ = ["AioquicStack", "backend"]

#: AEAD tag of every QUIC packet protection (AES-GCM, ChaCha20-Poly1305).
_AEAD_TAG = 16
#: Bytes of a stream the application may not have read although we credited
#: them: room for the WebTransport stream header the engine strips.
_HEADER_SLACK = 16


class _RoleFileLogger(QuicFileLogger):
    """aioquic's qlog file logger, writing ``<ODCID>_<client|server>.qlog``.

    Client and server traces of one connection share the ODCID; without the
    role in the name, one would overwrite the other.
    """

    def end_trace(self, trace: QuicLoggerTrace) -> None:
        trace_dict = trace.to_dict()
        role = trace_dict["vantage_point"]["type"]
        name = f"{trace_dict['common_fields']['ODCID']}_{role}.qlog"
        with open(os.path.join(self.path, name), "w", encoding="utf-8") as out:
            json.dump(
                {"qlog_format": "JSON", "qlog_version": QLOG_VERSION, "traces": [trace_dict]},
                out,
            )
        self._traces.remove(trace)


class _StreamCredit:
    __slots__ = ("application", "delivered", "ended", "released", "reported", "size", "stopped")

    def __init__(self) -> None:
        self.delivered = 0  # bytes handed to the engine
        self.reported = 0  # bytes the application said it read
        self.size = 0  # bytes the peer used of our window (final size after a reset)
        self.released = 0  # bytes we may grant again
        self.ended = False  # FIN delivered or reset received
        self.stopped = False  # the engine sent STOP_SENDING: nothing is read any more
        #: A WebTransport data stream (read by the application), an HTTP/3
        #: stream the engine reads itself (False), or not known yet (None).
        self.application: bool | None = None


class _ReceiveCredit:
    """aioquic receive windows driven by consumption (see the module docstring).

    ``classify(stream_id)`` says whether a stream carries application data
    (True), is one the engine consumes itself (False), or is not known (None).
    """

    def __init__(
        self,
        quic: QuicConnection,
        max_data: int,
        max_stream_data: int,
        classify: Callable[[int], bool | None],
    ) -> None:
        self._quic = quic
        self._classify = classify
        self._stream_window = max_stream_data
        self._stream_step = max(1, max_stream_data // 4)
        self._connection_window = max_data
        self._connection_step = max(1, max_data // 4)
        self._streams: dict[int, _StreamCredit] = {}
        self._received = 0
        self._released = 0
        write_stream_limits = quic._write_stream_limits
        write_connection_limits = quic._write_connection_limits
        streams = self._streams

        def _write_stream_limits(builder: Any, space: Any, stream: Any) -> None:
            local = stream.max_stream_data_local
            if not local:  # our own unidirectional streams
                return
            receiver = stream.receiver
            if not receiver.is_finished:
                record = streams.get(stream.stream_id)
                target = (record.released if record is not None else 0) + self._stream_window
                if target - local >= self._stream_step:
                    stream.max_stream_data_local = target
            if stream.max_stream_data_local_sent != stream.max_stream_data_local:
                # Let aioquic write the frame, with its doubling rule disarmed.
                highest = receiver.highest_offset
                receiver.highest_offset = 0
                try:
                    write_stream_limits(builder, space, stream)
                finally:
                    receiver.highest_offset = highest

        def _write_connection_limits(builder: Any, space: Any) -> None:
            limit = quic._local_max_data
            target = self._released + self._connection_window
            if target - limit.value >= self._connection_step:
                limit.value = target
            used = limit.used
            limit.used = 0  # disarms the doubling rule; MAX_STREAMS is unaffected
            try:
                write_connection_limits(builder, space)
            finally:
                limit.used = used

        # Instance attributes shadow the methods _write_application calls.
        setattr(quic, "_write_stream_limits", _write_stream_limits)  # noqa: B010
        setattr(quic, "_write_connection_limits", _write_connection_limits)  # noqa: B010

    def _record(self, stream_id: int) -> _StreamCredit:
        record = self._streams.get(stream_id)
        if record is None:
            record = self._streams[stream_id] = _StreamCredit()
        return record

    def _update(self, stream_id: int, record: _StreamCredit) -> None:
        if record.application is not True or record.stopped:
            unread = 0  # the engine consumed it, or dropped it
        else:
            unread = max(0, record.delivered - record.reported - _HEADER_SLACK)
        released = record.size - unread
        if released > record.released:
            self._released += released - record.released
            record.released = released
        if record.ended and record.released >= record.size:
            del self._streams[stream_id]  # fully accounted: later reports change nothing

    def on_data(self, stream_id: int, size: int, end_stream: bool) -> None:
        record = self._record(stream_id)
        record.delivered += size
        if record.delivered > record.size:
            self._received += record.delivered - record.size
            record.size = record.delivered
        if end_stream:
            record.ended = True
        if record.application is None:
            kind = self._classify(stream_id)
            if kind is not None:
                record.application = kind
            elif record.ended:
                # The engine forgot a stream that completed in one go, or never
                # knew its type: bound it like application data.
                record.application = True
        self._update(stream_id, record)

    def on_reset(self, stream_id: int, final_size: int) -> None:
        record = self._record(stream_id)
        record.ended = True
        if final_size > record.size:
            self._received += final_size - record.size
            record.size = final_size
        self._update(stream_id, record)

    def on_stop(self, stream_id: int) -> None:
        if stream_id not in self._streams and stream_id not in self._quic._streams:
            return  # nothing was or will be received on it
        record = self._record(stream_id)
        record.stopped = True
        self._update(stream_id, record)

    def consumed(self, stream_id: int, amount: int) -> None:
        record = self._streams.get(stream_id)
        if record is None:
            return
        record.reported += amount
        self._update(stream_id, record)

    def stats(self) -> dict[str, float | int | None]:
        return {
            "receive_window": self._quic._local_max_data.value,
            "receive_unconsumed": self._received - self._released,
        }


class AioquicStack(QuicStack):
    """aioquic's classes and the private details this adapter relies on."""

    name = "aioquic"
    credit_on_consumption = True
    events = _events
    connection_class = QuicConnection
    configuration_class = QuicConfiguration
    gone_messages = ("stream was reset", "finished stream")

    def set_congestion_control(self, config: Any, name: str) -> None:
        try:
            create_congestion_control(name, max_datagram_size=config.max_datagram_size)
        except Exception:  # aioquic raises a bare Exception for an unknown name
            raise BackendError(
                f"aioquic has no congestion control {name!r} (choose 'reno' or 'cubic')"
            ) from None
        config.congestion_control_algorithm = name

    def load_certificate(self, config: Any, chain_pem: bytes, key_pem: bytes) -> None:
        chain = _tls.load_pem_x509_certificates(chain_pem)
        if not chain:
            raise BackendError("the certificate chain PEM holds no certificate")
        config.certificate = chain[0]
        config.certificate_chain = chain[1:]
        config.private_key = _tls.load_pem_private_key(key_pem, None)

    def qlog_logger(self, directory: str) -> Any:
        return _RoleFileLogger(directory)

    def attach(self, connection: StackConnection, settings: QuicSettings | None) -> None:
        if settings is None:
            return
        quic: QuicConnection = connection.quic
        # Read into the transport parameters when the first packet is built.
        for limit, value in (
            (quic._local_max_streams_bidi, settings.max_streams_bidi),
            (quic._local_max_streams_uni, settings.max_streams_uni),
        ):
            limit.value = limit.sent = value
        connection.credit = _ReceiveCredit(
            quic, settings.max_data, settings.max_stream_data, connection.stream_kind
        )

    def final_size(self, connection: StackConnection, stream_id: int) -> int:
        # Read while handling StreamReset: aioquic discards the stream in the
        # next datagrams_to_send once both halves are done.
        stream = connection.quic._streams.get(stream_id)
        if stream is None:
            return -1
        size = stream.receiver._final_size
        return -1 if size is None else int(size)

    def packet_frame_budget(self, quic: Any) -> int:
        return int(
            quic._max_datagram_size
            - 1
            - len(quic._peer_cid.cid)
            - PACKET_NUMBER_SEND_SIZE
            - _AEAD_TAG
        )

    def send_backlog(self, quic: Any, stream_id: int) -> int:
        stream = quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        if sender._reset_error_code is not None:
            return 0  # reset: the rest will never be sent (aioquic keeps it in its buffer)
        return max(0, int(sender._buffer_stop - sender.highest_offset))

    def waits_for_stream_credit(self, quic: Any, stream_id: int) -> bool:
        stream = quic._streams.get(stream_id)
        return bool(stream is not None and stream.is_blocked)

    def datagram_backlog(self, quic: Any) -> int:
        return len(quic._datagrams_pending)

    def key_phase(self, quic: Any) -> int | None:
        cryptos = getattr(quic, "_cryptos", None)
        if not cryptos:
            return None
        pair = cryptos.get(_tls.Epoch.ONE_RTT)
        if pair is None or not pair.send.is_valid():
            return None
        return int(pair.send.key_phase)

    def peer_certificate_der(self, quic: Any) -> bytes | None:
        context = quic.tls
        certificate = None if context is None else context._peer_certificate
        if certificate is None:
            return None
        der: bytes = certificate.public_bytes(Encoding.DER)
        return der

    def stats(self, connection: StackConnection) -> dict[str, float | int | None]:
        quic = connection.quic
        loss = quic._loss
        initialized = bool(loss._rtt_initialized)
        return {
            "rtt": loss._rtt_smoothed if initialized else None,
            "min_rtt": loss._rtt_min if initialized else None,
            "latest_rtt": loss._rtt_latest if initialized else None,
            "cwnd": loss.congestion_window,
            "bytes_in_flight": loss.bytes_in_flight,
            "packets_sent": quic._packet_number,
            "pto_count": loss._pto_count,
        }

    def parse_header(self, data: bytes, cid_length: int) -> tuple[int | None, int, bytes, bytes]:
        header = pull_quic_header(Buffer(data=data), host_cid_length=cid_length)
        return (
            header.version,
            int(header.packet_type.value),
            header.destination_cid,
            header.source_cid,
        )

    def encode_version_negotiation(
        self, source_cid: bytes, destination_cid: bytes, versions: list[int]
    ) -> bytes:
        return encode_quic_version_negotiation(
            source_cid=source_cid, destination_cid=destination_cid, supported_versions=versions
        )


STACK = AioquicStack()


def backend() -> StackBackend:
    """The aioquic backend (name "aioquic", kind "sans-io")."""
    return StackBackend(STACK)
