# C types for _engine_py.py, compiled as anywt.core._engine_c.
cimport cython
from anywt.core cimport _capsule_c as _capsule
from anywt.core cimport _constants
from anywt.core cimport _flow_c as _flow
from anywt.core cimport _frames_c as _frames
from anywt.core cimport _h3_c as _h3
from anywt.core cimport _records_c as _records
from anywt.core cimport _varint_c as _varint

cdef class WebTransportEngine(_h3.H3Connection):
    cdef dict _sessions
    cdef long long _buffered_count
    cdef object _buffered_datagrams
    cdef object _closed_sessions
    cdef long long _datagrams_dropped
    cdef long long _streams_rejected

    cdef long long _datagram_limit(self) except? -1
    cdef _records.SessionRecord _get_session(self, object session_id)
    cdef long long _live_sessions(self)
    cdef long long _session_limit(self)
    cdef object _local_transition(self, _records.SessionRecord session, object event)
    cdef object _remote_transition(self, _records.SessionRecord session, object event)
    cdef _send_request(self, _records.SessionRecord session)
    cdef _init_session_flow(self, _records.SessionRecord session)
    cdef _establish(self, _records.SessionRecord session)
    cdef _reject_session(self, _records.SessionRecord session, int status, list extra)
    cdef _finish_session(self, _records.SessionRecord session, bint by_peer, long long error_code)
    cdef _terminate_streams(self, _records.SessionRecord session)
    cdef _reset_connect_stream(self, _records.SessionRecord session, long long error_code)
    cdef _abort_session(self, _records.SessionRecord session, long long error_code, bint by_peer)
    cdef _remember_closed(self, long long session_id)
    cdef _send_capsule(self, _records.SessionRecord session, bytes capsule, bint end_stream=*)
    cdef _dispatch_stream_data(self, _records.StreamRecord record, object data, bint end_stream)
    cdef _attach(self, _records.StreamRecord record, _records.SessionRecord session)
    @cython.locals(session=_records.SessionRecord, size=Py_ssize_t)
    cdef _deliver(self, _records.StreamRecord record, object data, bint end_stream)
    @cython.locals(credit=_flow.ReceiveCredit)
    cdef bint _account_received(self, _records.StreamRecord record, _records.SessionRecord session,
                                Py_ssize_t size) except -1
    cdef _discard(self, _records.StreamRecord record, _records.SessionRecord session, object data,
                  bint end_stream)
    cdef _buffer_stream(self, _records.StreamRecord record, bytes rest, bint end_stream)
    cdef _hold(self, _records.StreamRecord record, object data, bint end_stream)
    cdef _flush_buffered(self, _records.SessionRecord session)
    cdef _reject_buffered(self, long long session_id, long long error_code)
    cdef _reject_stream(self, _records.StreamRecord record, long long error_code)
    cdef _on_stream_reset(self, _records.StreamRecord record, long long error_code, long long final_size)
    cdef _on_stop_sending(self, _records.StreamRecord record, long long error_code)
    cdef _return_unsent_credit(self, _records.StreamRecord record, _records.SessionRecord session, long long dropped)
    cdef _give_stream_credit(self, _records.SessionRecord session, bint uni)
    cdef _on_headerless_reset(self, _records.StreamRecord record, long long final_size)
    cdef _records.SessionRecord _sole_session(self)
    @cython.locals(quarter=cython.ulonglong, session_id=cython.longlong,
                   session=_records.SessionRecord, size=Py_ssize_t, length=Py_ssize_t)
    cdef _on_datagram(self, object data)
    cdef _deliver_datagram(self, _records.SessionRecord session, bytes payload)
    cdef _drop_buffered_datagrams(self, long long session_id)
    cdef _refuse_request(self, _records.StreamRecord record, long long error_code)
    cdef _on_capsule(self, _records.SessionRecord session, unsigned long long capsule_type, bytes value)
    cdef _on_flow_capsule(self, _records.SessionRecord session, unsigned long long capsule_type, long long value)
    cdef _on_connect_stream_ended(self, _records.StreamRecord record, long long error_code)
    cdef _forget_connect_stream(self, _records.StreamRecord record, _records.SessionRecord session)
