# C types for _h3_py.py, compiled as anywt.core._h3_c.
cimport cython
from anywt.core cimport _constants
from anywt.core cimport _frames_c as _frames
from anywt.core cimport _records_c as _records
from anywt.core cimport _varint_c as _varint

cpdef bint is_client_bidi(long long stream_id)

cdef class H3Connection:
    cdef object _transport
    cdef bint _is_client
    cdef object _config
    cdef list _events
    cdef Py_ssize_t _event_pos
    cdef dict _streams
    cdef double _now
    cdef bint _initialized
    cdef bint _closed
    cdef long long _close_error_code
    cdef object _close_reason
    cdef dict _local_settings
    cdef object _peer_settings
    cdef object _dialect
    cdef bint _flow_control
    cdef bint _datagrams_enabled
    cdef long long _max_datagram_payload
    cdef object _encoder
    cdef object _decoder
    cdef long long _control_stream_id
    cdef long long _encoder_stream_id
    cdef long long _decoder_stream_id
    cdef long long _peer_control_id
    cdef long long _peer_encoder_id
    cdef long long _peer_decoder_id
    cdef long long _max_remote_bidi
    cdef long long _max_remote_uni
    cdef set _expected_remote
    cdef list _waiting_for_settings
    cdef long long _goaway_sent
    cdef long long _goaway_received
    cdef long long _max_request_id

    cdef long long _open_local_uni(self, long long stream_type) except? -1
    cdef _check_open(self)
    cdef _send_headers(self, long long stream_id, list headers, bint end_stream)
    cdef _close_connection(self, long long error_code, str reason, bint by_peer)
    cdef _internal_error(self, str where)
    @cython.locals(is_uni=bint, is_local=bint, highest=cython.longlong, start=cython.longlong,
                   skipped=cython.longlong)
    cdef _records.StreamRecord _new_remote_stream(self, long long stream_id)
    @cython.locals(first=cython.longlong, session_id=cython.longlong)
    cdef _read_preamble(self, _records.StreamRecord record, object data, bint end_stream)
    cdef _classify_uni(self, _records.StreamRecord record, long long stream_type,
                       long long session_id, long long header_len, bytes rest, bint end_stream)
    cdef _on_control_data(self, _records.StreamRecord record, object data, bint end_stream)
    cdef _on_settings(self, dict settings)
    cdef object _pick_dialect(self, object settings)
    cdef bint _negotiate_flow_control(self, object settings) except -1
    cdef _on_goaway(self, bytes payload)
    cdef _on_qpack_data(self, _records.StreamRecord record, object data, bint end_stream)
    cdef _on_encoder_data(self, object data)
    cdef _send_decoder_data(self, bytes data)
    cdef _on_request_data(self, _records.StreamRecord record, object data, bint end_stream)
    cdef _process_request_frames(self, _records.StreamRecord record, list frames, bint end_stream)
    cdef bint _decode_headers(self, _records.StreamRecord record, bytes payload) except -1
    cdef _on_headers(self, _records.StreamRecord record, list headers)
    cdef _section_too_large(self, _records.StreamRecord record, object size)
    cdef _answer_and_forget(self, _records.StreamRecord record, int status)

    # Hooks the WebTransport engine implements.
    cdef _associate(self, _records.StreamRecord record, long long session_id,
                    long long header_len, bytes rest, bint end_stream)
    cdef _on_request(self, _records.StreamRecord record, list headers)
    cdef _on_response(self, _records.StreamRecord record, list headers)
    cdef _on_connect_data(self, _records.StreamRecord record, bytes payload)
    cdef _on_connect_fin(self, _records.StreamRecord record)
    cdef _settings_ready(self, list waiting)
    cdef _goaway_ready(self, long long goaway_id)
    cdef _end_all_sessions(self, long long error_code)
    cdef _handle_protocol_error(self, object exc, _records.StreamRecord record)
    cdef _maybe_forget(self, _records.StreamRecord record)
