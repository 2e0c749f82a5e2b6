"""Small integer constants shared by the compiled core modules.

``_constants.pxd`` declares the same values as a C enum, so the compiled
modules compare C integers; this file gives them to the pure-Python build.
Keep the two in step (tests/test_build.py checks it).
"""

from __future__ import annotations

# What a stream is, once the engine knows.
KIND_PENDING = 0  # incoming, its type or preamble not yet read
KIND_CONTROL = 1  # the peer's control stream
KIND_QPACK_ENCODER = 2  # the peer's QPACK encoder stream
KIND_QPACK_DECODER = 3  # the peer's QPACK decoder stream
KIND_IGNORED = 4  # unknown type, or a stream we gave up on: data is dropped
KIND_REQUEST = 5  # a CONNECT (session) stream
KIND_WT = 6  # a WebTransport data stream of an established session
KIND_BUFFERED = 7  # a WebTransport data stream waiting for its session
KIND_LOCAL = 8  # one of our own unidirectional H3 streams (control, QPACK)

# Session states: the values of session_state.SessionState.
STATE_CONNECTING = 1
STATE_REQUESTED = 2
STATE_CONNECTED = 3
STATE_DRAINING = 4
STATE_CLOSED = 5
STATE_REJECTED = 6
