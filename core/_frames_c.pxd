# C types for _frames_py.py, compiled as anywt.core._frames_c.
cimport cython
from anywt.core cimport _varint_c as _varint

cdef int _HEADER, _DATA, _BUFFER, _SKIP

cdef bint _is_known_frame(unsigned long long frame_type)
cpdef bint is_reserved_type(unsigned long long value)
cpdef bytes encode_frame_header(unsigned long long frame_type, unsigned long long length)
cpdef bytes encode_frame(unsigned long long frame_type, object payload)
cpdef bytes encode_wt_stream_header(unsigned long long session_id, bint unidirectional)

cdef class FrameReader:
    cdef public long long max_frame_size
    cdef int _state
    cdef bytes _header
    cdef unsigned long long _type
    cdef unsigned long long _remaining
    cdef list _chunks
    cdef public unsigned long long skipped_bytes

    cpdef list feed(self, object data)
    @cython.locals(pos=Py_ssize_t, size=Py_ssize_t, state=int, take=Py_ssize_t)
    cdef list _feed(self, bytes data)
    @cython.locals(held=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, type_len=Py_ssize_t,
                   length_len=Py_ssize_t, header_end=Py_ssize_t, buf=bytes,
                   frame_type=cython.ulonglong, length=cython.ulonglong)
    cdef Py_ssize_t _read_header(self, bytes data, Py_ssize_t pos, Py_ssize_t size, list out) except -1
    cdef _hold(self, bytes buf, Py_ssize_t start, Py_ssize_t held)
    cpdef bint ended_cleanly(self)
