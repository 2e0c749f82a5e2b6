# C types for _capsule_py.py, compiled as anywt.core._capsule_c.
cimport cython
from anywt.core cimport _varint_c as _varint

cdef int _HEADER, _BODY, _SKIP

cdef long long _UNKNOWN
cdef long long _PROHIBITED

cdef long long _limit_for(unsigned long long capsule_type, long long max_capsule_size)

cdef class CapsuleParser:
    cdef public long long max_capsule_size
    cdef int _state
    cdef bytes _header
    cdef unsigned long long _type
    cdef unsigned long long _remaining
    cdef list _chunks
    cdef public unsigned long long skipped_bytes
    cdef public unsigned long long skipped_capsules
    cdef public unsigned long long dropped_datagrams

    cpdef list feed(self, object data)
    @cython.locals(pos=Py_ssize_t, size=Py_ssize_t, state=int, take=Py_ssize_t)
    cdef list _feed(self, bytes data)
    @cython.locals(held=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, type_len=Py_ssize_t,
                   length_len=Py_ssize_t, header_end=Py_ssize_t, buf=bytes,
                   capsule_type=cython.ulonglong, length=cython.ulonglong, limit=cython.longlong)
    cdef Py_ssize_t _read_header(self, bytes data, Py_ssize_t pos, Py_ssize_t size, list out) except -1
    cdef Py_ssize_t _hold_header(self, bytes buf, Py_ssize_t start, Py_ssize_t pos, Py_ssize_t size)
    cpdef feed_eof(self)

cpdef bytes encode_capsule(unsigned long long capsule_type, object value=*)
