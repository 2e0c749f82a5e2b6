"""The narrow interface the engine drives: what a backend implements over its QUIC connection."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Transport"]


class Transport(Protocol):
    """What the engine needs from a QUIC connection.

    Every call queues work on the QUIC connection and returns at once; the
    backend's driver later turns it into packets.
    """

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue bytes (and optionally FIN) on a stream, opening it if new."""

    def reset_stream(self, stream_id: int, error_code: int) -> int:
        """Abort our sending side of a stream (RESET_STREAM).

        Return how many bytes queued on the stream the reset dropped unsent
        (they are not part of its final size); 0 when that is not known.
        Never more than were really dropped: the engine gives their
        flow-control credit back.
        """

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        """Ask the peer to stop sending on a stream (STOP_SENDING)."""

    def send_datagram(self, data: bytes) -> None:
        """Queue a QUIC DATAGRAM frame."""

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        """The id the next locally opened stream of that kind gets."""

    def close(self, error_code: int, reason: str) -> None:
        """Close the QUIC connection."""
