# C types for _varint_py.py, compiled as anywt.core._varint_c.
# Values are 62-bit: always unsigned long long, never narrower.
cimport cython

cpdef int varint_length(unsigned char first)

@cython.locals(value=cython.ulonglong, i=Py_ssize_t)
cpdef unsigned long long read_varint(bytes buf, Py_ssize_t pos, Py_ssize_t length) except? 0

cpdef tuple decode_varint(object buf, Py_ssize_t pos=*)

@cython.locals(size=Py_ssize_t, first=cython.uchar, length=Py_ssize_t,
               value=cython.ulonglong, i=Py_ssize_t)
cdef tuple _decode_bytes(bytes buf, Py_ssize_t pos)

cpdef int varint_size(object value) except -1
cdef int _check_range(object value) except -1
cpdef encode_varint(object value, bytearray out)

@cython.locals(shift=cython.int)
cpdef _encode_unchecked(unsigned long long value, bytearray out)
cpdef bytes varint_bytes(object value)

cdef class ByteReader:
    cdef readonly bytes data
    cdef public Py_ssize_t pos
    cdef readonly Py_ssize_t end

    @cython.locals(pos=Py_ssize_t, first=cython.uchar, length=Py_ssize_t,
                   value=cython.ulonglong, i=Py_ssize_t)
    cpdef unsigned long long pull_varint(self) except? 0
    @cython.locals(pos=Py_ssize_t)
    cpdef bytes pull_bytes(self, Py_ssize_t length)
    @cython.locals(pos=Py_ssize_t)
    cpdef bytes pull_rest(self)
    cpdef Py_ssize_t remaining(self)
    cpdef bint at_end(self)
