# C types for _records_py.py, compiled as anywt.core._records_c.
from anywt.core cimport _capsule_c as _capsule
from anywt.core cimport _constants
from anywt.core cimport _flow_c as _flow
from anywt.core cimport _varint_c as _varint

cdef class SessionRecord

cdef class StreamRecord:
    cdef public long long stream_id
    cdef public int kind
    cdef public bint is_local
    cdef public bint is_unidirectional
    cdef public long long session_id
    cdef public SessionRecord session
    cdef public bytes preamble
    cdef public long long header_len
    cdef public long long received
    cdef public long long sent
    cdef public bint recv_open
    cdef public bint send_open
    cdef public object reader
    cdef public list held
    cdef public long long held_size
    cdef public bint held_fin
    cdef public list pending_frames
    cdef public bint counted
    cdef public bint blocked
    cdef public bint stopped

cdef class SessionRecord:
    cdef public long long session_id
    cdef public bint is_client
    cdef public object dialect
    cdef public bytes datagram_prefix
    cdef public int state
    cdef public _capsule.CapsuleParser parser
    cdef public str authority
    cdef public str path
    cdef public object origin
    cdef public tuple request_headers
    cdef public tuple protocols
    cdef public object protocol
    cdef public int status
    cdef public tuple response_headers
    cdef public bint draft02_header
    cdef public bint request_sent
    cdef public list pending_capsules
    cdef public set streams
    cdef public bint flow
    cdef public bint strict_flow
    cdef public _flow.SendCredit send_data
    cdef public _flow.ReceiveCredit recv_data
    cdef public _flow.SendCredit send_bidi
    cdef public _flow.SendCredit send_uni
    cdef public _flow.ReceiveCredit recv_bidi
    cdef public _flow.ReceiveCredit recv_uni
    cdef public bint connect_send_open
    cdef public bint connect_recv_open
    cdef public bint close_received
    cdef public long long data_sent
    cdef public long long data_received
    cdef public long long data_consumed
    cdef public long long local_bidi_opened
    cdef public long long local_uni_opened
    cdef public long long peer_bidi_opened
    cdef public long long peer_uni_opened
    cdef public long long peer_bidi_closed
    cdef public long long peer_uni_closed
    cdef public long long streams_closed
    cdef public long long resets_sent
    cdef public long long resets_received
    cdef public long long datagrams_sent
    cdef public long long datagram_bytes_sent
    cdef public long long datagrams_received
    cdef public long long datagram_bytes_received
    cdef public long long datagrams_dropped
    cdef public long long protocol_errors
    cdef public double created_at
    cdef public double established_at
    cdef public double closed_at
    cdef public double last_activity
    cdef public long long close_code
    cdef public object close_reason
    cdef public long long close_error_code
    cdef public bint closed_by_peer

    cpdef bint is_open(self)
    cpdef bint is_live(self)
    cpdef enable_flow_control(self, long long peer_max_data, long long peer_max_bidi,
                              long long peer_max_uni, long long local_max_data,
                              long long local_max_bidi, long long local_max_uni,
                              long long data_window, long long streams_window,
                              bint auto, bint strict)
    cpdef snapshot(self, long long buffered_streams)
