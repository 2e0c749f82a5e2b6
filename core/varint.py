"""QUIC variable-length integers (RFC 9000 section 16): the live implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accel import load_twin

if TYPE_CHECKING:
    from . import _varint_py as _impl
else:
    _impl = load_twin("varint")

__all__ = ["VARINT_MAX", "decode_varint", "encode_varint", "varint_bytes", "varint_size"]

VARINT_MAX = _impl.VARINT_MAX
decode_varint = _impl.decode_varint
encode_varint = _impl.encode_varint
varint_bytes = _impl.varint_bytes
varint_size = _impl.varint_size
