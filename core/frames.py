"""HTTP/3 framing for WebTransport: the live implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accel import load_twin

if TYPE_CHECKING:
    from . import _frames_py as _impl
else:
    _impl = load_twin("frames")

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_CANCEL_PUSH",
    "FRAME_DATA",
    "FRAME_GOAWAY",
    "FRAME_HEADERS",
    "FRAME_MAX_PUSH_ID",
    "FRAME_PUSH_PROMISE",
    "FRAME_SETTINGS",
    "FRAME_WT_STREAM",
    "STREAM_CONTROL",
    "STREAM_PUSH",
    "STREAM_QPACK_DECODER",
    "STREAM_QPACK_ENCODER",
    "STREAM_WEBTRANSPORT",
    "FrameReader",
    "encode_frame",
    "encode_frame_header",
    "encode_settings",
    "encode_wt_stream_header",
    "is_reserved_type",
    "parse_settings",
]

DEFAULT_MAX_FRAME_SIZE = _impl.DEFAULT_MAX_FRAME_SIZE
FRAME_DATA = _impl.FRAME_DATA
FRAME_HEADERS = _impl.FRAME_HEADERS
FRAME_CANCEL_PUSH = _impl.FRAME_CANCEL_PUSH
FRAME_SETTINGS = _impl.FRAME_SETTINGS
FRAME_PUSH_PROMISE = _impl.FRAME_PUSH_PROMISE
FRAME_GOAWAY = _impl.FRAME_GOAWAY
FRAME_MAX_PUSH_ID = _impl.FRAME_MAX_PUSH_ID
FRAME_WT_STREAM = _impl.FRAME_WT_STREAM
STREAM_CONTROL = _impl.STREAM_CONTROL
STREAM_PUSH = _impl.STREAM_PUSH
STREAM_QPACK_ENCODER = _impl.STREAM_QPACK_ENCODER
STREAM_QPACK_DECODER = _impl.STREAM_QPACK_DECODER
STREAM_WEBTRANSPORT = _impl.STREAM_WEBTRANSPORT
FrameReader = _impl.FrameReader
encode_frame = _impl.encode_frame
encode_frame_header = _impl.encode_frame_header
encode_settings = _impl.encode_settings
encode_wt_stream_header = _impl.encode_wt_stream_header
is_reserved_type = _impl.is_reserved_type
parse_settings = _impl.parse_settings
