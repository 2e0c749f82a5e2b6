# C types for _flow_py.py, compiled as anywt.core._flow_c.
# Limits are varints (62-bit): long long holds them with room for the sign.

cdef class SendCredit:
    cdef public long long limit
    cdef public long long used
    cdef public long long ceiling
    cdef long long _blocked_reported

    cpdef long long available(self)
    cpdef consume(self, long long amount)
    cpdef release(self, long long amount)
    cpdef bint update_limit(self, long long new_limit, bint strict=*) except -1
    cpdef long long blocked_limit(self)

cdef class ReceiveCredit:
    cdef public long long limit
    cdef public long long received
    cdef public long long consumed
    cdef public long long window
    cdef public bint auto
    cdef public long long ceiling
    cdef public long long peer_blocked_at

    cpdef on_receive(self, long long amount)
    cpdef long long on_consume(self, long long amount) except? -2
    cpdef bint grant(self, long long new_limit) except -1
    cpdef on_peer_blocked(self, long long limit)
