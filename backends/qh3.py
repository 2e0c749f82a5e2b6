"""The qh3 backend (qh3 2.x, checked with 2.1.0): ``pip install 'anywt[qh3]'``.

qh3 2.x is a thin Python facade over a Rust QUIC core (``conn._core``): 10 to
20 times cheaper per byte than aioquic.  What the adapter adds or cannot do:

* **Receive windows are re-granted on receipt, not on consumption.**  The
  native core slides its windows as data arrives (the window size is all the
  configuration sets) and has no hook to hold credit back, so
  ``stream_consumed`` does nothing here: a peer is bounded in flight
  (``max_stream_data`` per stream, ``max_data`` per connection), but the
  application may be handed more than that before it reads.  ``stats()``
  says so (``receive_credit_on_consumption`` = 0); aioquic does bind them.
* ``datagrams_to_send`` of the facade can raise "packet builder capacity
  exhausted" and lose the datagrams it already built; the transmit loop is
  redone here over ``_core.poll_transmit``, keeping what was built (and
  logging it to qlog like the facade does).
* The final size of a reset stream is dropped by the facade: the core's
  ``next_event`` is wrapped to keep it.
* The DATAGRAM payload limit is conservative (qh3 does not tell its peer's
  connection id length or its packet number length: 20 and 4 bytes are
  assumed), because a frame that fits the peer's limit but not the packet
  wedges the whole connection.  The client's path MTU discovery raises it
  during the connection.
* Opening a stream over the peer's MAX_STREAMS raises in qh3: the shared
  adapter queues the writes and retries when credit arrives.
* Local stream limits are fixed by qh3 (100 bidirectional, 103
  unidirectional); congestion control is qh3's own (accepted as "reno").
* No datagram send backlog is exposed (``datagram_backlog()`` is 0).
* A qh3 client cannot trust a self-signed server certificate given as
  ``cafile``/``cadata`` (it wants a CA and a leaf it signed); pin the
  certificate's hash instead.  One pinned hash is checked inside the TLS
  handshake (the server is told); several are checked at HandshakeCompleted,
  and then the server only learns at its idle timeout.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from qh3._hazmat import pull_quic_header
from qh3.quic import events as _events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.logger import QLOG_VERSION, QuicFileLogger, QuicLoggerTrace
from qh3.quic.packet import encode_quic_version_negotiation

from ._sansio import QuicStack, StackBackend, StackConnection
from .base import Address, BackendError, QuicSettings

__all__ = ["Qh3Stack", "backend"]

logger = logging.getLogger("anywt.backends")

#: What qh3 does not tell and we must assume for the DATAGRAM limit: the
#: longest connection id, the longest packet number, the AEAD tag.
_MAX_CID = 20
_MAX_PACKET_NUMBER = 4
_AEAD_TAG = 16


class _RoleFileLogger(QuicFileLogger):
    """qh3's qlog file logger, writing ``<ODCID>_<client|server>.qlog``."""

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


class _CoreProxy:
    """qh3's native connection core, seen through a proxy that keeps reset final sizes.

    The facade turns the core's ``("stream_reset", stream_id, code, final_size)``
    into a ``StreamReset`` without the final size; the proxy records it first.
    Methods of the core are cached on the proxy at first use.
    """

    def __init__(self, core: Any, sizes: dict[int, int]) -> None:
        self._anywt_core = core
        self._anywt_sizes = sizes

    def next_event(self) -> Any:
        event = self._anywt_core.next_event()
        if event is not None and event[0] == "stream_reset":
            self._anywt_sizes[event[1]] = event[3]
        return event

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._anywt_core, name)
        if callable(value):
            self.__dict__[name] = value
        return value


class Qh3Stack(QuicStack):
    """qh3's classes and the private details this adapter relies on."""

    name = "qh3"
    credit_on_consumption = False
    events = _events
    connection_class = QuicConnection
    configuration_class = QuicConfiguration
    gone_messages = ("after RESET_STREAM", "completed stream", "connection is closed")

    def configuration(self, settings: QuicSettings) -> Any:
        config = super().configuration(settings)
        if settings.is_client and len(settings.server_certificate_hashes) == 1:
            # qh3 can check one pinned hash inside the handshake, right after
            # the CertificateVerify signature: the server is then told with a
            # TLS alert instead of waiting for its idle timeout (a close sent
            # from HandshakeCompleted cannot reach it).  Several hashes are
            # checked at HandshakeCompleted by the shared adapter.
            config.assert_fingerprint = settings.server_certificate_hashes[0].hex()
        return config

    def set_congestion_control(self, config: Any, name: str) -> None:
        if name != "reno":
            raise BackendError(
                f"qh3 does not let the congestion control be chosen ({name!r} asked); "
                "use 'reno' (qh3's own) or the aioquic backend"
            )

    def load_certificate(self, config: Any, chain_pem: bytes, key_pem: bytes) -> None:
        config.load_cert_chain(chain_pem, key_pem)

    def qlog_logger(self, directory: str) -> Any:
        return _RoleFileLogger(directory)

    def attach(self, connection: StackConnection, settings: QuicSettings | None) -> None:
        quic = connection.quic
        sizes: dict[int, int] = {}
        connection.extra["reset_sizes"] = sizes
        create_core = quic._create_core

        def _create_core(remote_addr: Any, initial_dcid: bytes, now: float) -> None:
            create_core(remote_addr, initial_dcid, now)
            quic._core = _CoreProxy(quic._core, sizes)

        # The core is created at connect() / the first datagram, and again
        # after version negotiation or a retry.
        quic._create_core = _create_core
        if quic._core is not None:
            quic._core = _CoreProxy(quic._core, sizes)

    def transmit(self, connection: StackConnection, now: float) -> list[tuple[bytes, Address]]:
        quic = connection.quic
        core = quic._core
        if core is None:
            return []
        datagrams: list[tuple[bytes, Address]] = []
        while True:
            try:
                transmit = core.poll_transmit(now)
            except RuntimeError as exc:
                # Transient ("packet builder capacity exhausted"): the builder
                # is transactional, so what was built so far is kept.
                connection.transmit_errors += 1
                logger.debug("qh3 transmit stopped: %s", exc)
                break
            if transmit is None:
                break
            data = transmit[0]
            if quic._quic_logger is not None:
                quic._log_datagram("datagrams_sent", data)
                quic._log_packets("packet_sent", data)
            datagrams.append((data, transmit[1]))
        return datagrams

    def final_size(self, connection: StackConnection, stream_id: int) -> int:
        size = connection.extra["reset_sizes"].pop(stream_id, None)
        return -1 if size is None else int(size)

    def packet_frame_budget(self, quic: Any) -> int:
        core = quic._core
        if core is None:
            return 0
        return int(core.active_path[5]) - 1 - _MAX_CID - _MAX_PACKET_NUMBER - _AEAD_TAG

    def send_backlog(self, quic: Any, stream_id: int) -> int:
        return int(quic.get_send_buffer_size(stream_id))

    def key_phase(self, quic: Any) -> int | None:
        core = quic._core
        if core is None:
            return None
        phase = core.send_key_phase
        return None if phase is None else int(phase)

    def peer_certificate_der(self, quic: Any) -> bytes | None:
        certificate = quic.get_peercert()
        if certificate is None:
            return None
        der: bytes = certificate.public_bytes()
        return der

    def close(self, quic: Any, error_code: int, frame_type: int | None, reason: str) -> bool:
        if quic._core is None:
            return False  # a server before its first datagram: qh3 would ignore the close
        quic.close(error_code=error_code, frame_type=frame_type, reason_phrase=reason)
        return True

    def is_stream_limit_error(self, exc: Exception) -> bool:
        message = str(exc)
        return isinstance(exc, ValueError) and "stream limit" in message and "exceeded" in message

    def stats(self, connection: StackConnection) -> dict[str, float | int | None]:
        core = connection.quic._core
        if core is None:
            return {}
        return {
            "rtt": core.smoothed_rtt,
            "latest_rtt": core.latest_rtt,
            "cwnd": core.congestion_window,
            "bytes_in_flight": core.bytes_in_flight,
            "packets_lost": core.loss_total,
            "pto_count": core.pto_count,
        }

    def parse_header(self, data: bytes, cid_length: int) -> tuple[int | None, int, bytes, bytes]:
        header = pull_quic_header(data, 0, cid_length)
        return header[0], int(header[1]), header[3], header[4]

    def encode_version_negotiation(
        self, source_cid: bytes, destination_cid: bytes, versions: list[int]
    ) -> bytes:
        return encode_quic_version_negotiation(
            source_cid=source_cid, destination_cid=destination_cid, supported_versions=versions
        )


STACK = Qh3Stack()


def backend() -> StackBackend:
    """The qh3 backend (name "qh3", kind "sans-io")."""
    return StackBackend(STACK)
