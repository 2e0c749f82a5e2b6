"""anywt.core: the sans-IO WebTransport protocol core.

Nothing in here touches a socket, a clock or an event loop: bytes and events
go in, bytes, transport calls and events come out.  Hot modules are compiled
with Cython from the same source that also runs as plain Python;
``COMPILED`` tells which one is live, ``ANYWT_NO_EXTENSIONS=1`` forces pure
Python.
"""

from __future__ import annotations

from . import capsule, engine, flow, frames, varint
from ._accel import twin_status

__all__ = ["COMPILED", "capsule", "engine", "flow", "frames", "twin_status", "varint"]

#: True when every hot module of the core is the compiled one.
COMPILED: bool = bool(twin_status()) and all(twin_status().values())
