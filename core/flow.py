"""WebTransport session flow control: the live implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accel import load_twin

if TYPE_CHECKING:
    from . import _flow_py as _impl
else:
    _impl = load_twin("flow")

__all__ = ["MAX_DATA_LIMIT", "MAX_STREAMS_LIMIT", "ReceiveCredit", "SendCredit"]

MAX_DATA_LIMIT = _impl.MAX_DATA_LIMIT
MAX_STREAMS_LIMIT = _impl.MAX_STREAMS_LIMIT
ReceiveCredit = _impl.ReceiveCredit
SendCredit = _impl.SendCredit
