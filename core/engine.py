"""The sans-IO WebTransport engine: the live implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accel import load_twin

if TYPE_CHECKING:
    from . import _engine_py as _impl
else:
    _impl = load_twin("engine")

__all__ = ["WebTransportEngine"]

WebTransportEngine = _impl.WebTransportEngine
