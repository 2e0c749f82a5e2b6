# The C view of _constants.py (the same values; tests/test_build.py checks it).
cdef enum:
    KIND_PENDING = 0
    KIND_CONTROL = 1
    KIND_QPACK_ENCODER = 2
    KIND_QPACK_DECODER = 3
    KIND_IGNORED = 4
    KIND_REQUEST = 5
    KIND_WT = 6
    KIND_BUFFERED = 7
    KIND_LOCAL = 8

cdef enum:
    STATE_CONNECTING = 1
    STATE_REQUESTED = 2
    STATE_CONNECTED = 3
    STATE_DRAINING = 4
    STATE_CLOSED = 5
    STATE_REJECTED = 6
