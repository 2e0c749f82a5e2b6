"""Error codes, the application error mapping (protocol.md 2.4, case 16), the error tree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anywt.core import errors
from anywt.core.errors import (
    APP_ERROR_FIRST,
    APP_ERROR_LAST,
    ProtocolError,
    app_error_to_h3,
    h3_error_to_app,
    is_reserved_codepoint,
)

# protocol.md section 2.4, verified there by computation.
APP_VECTORS = [
    (0, 0x52E4A40FA8DB),
    (1, 0x52E4A40FA8DC),
    (0x1D, 0x52E4A40FA8F8),
    (0x1E, 0x52E4A40FA8FA),
    (0xFF, 0x52E4A40FA9E2),
    (0xFFFFFFFF, 0x52E5AC983162),
]


def test_range_constants():
    assert APP_ERROR_FIRST == 0x52E4A40FA8DB
    assert APP_ERROR_LAST == 0x52E5AC983162
    # The range holds 2**32 codes plus the reserved codepoints in between (protocol.md 2.4).
    assert APP_ERROR_LAST - APP_ERROR_FIRST + 1 == 2**32 + 143_165_576


@pytest.mark.parametrize(("code", "h3"), APP_VECTORS, ids=hex)
def test_app_error_vectors(code, h3):
    assert app_error_to_h3(code) == h3
    assert h3_error_to_app(h3) == code


@pytest.mark.parametrize(
    "h3",
    [
        0x52E4A40FA8F9,  # reserved, skipped between 0x1d and 0x1e
        0x52E4A40FA918,
        0x52E4A40FA937,
        0x10F,  # Chromium's H3_CONNECT_ERROR
        0x0,
        0x100,
        0x170D7B68,  # WT_SESSION_GONE
        APP_ERROR_FIRST - 1,
        APP_ERROR_LAST + 1,
        2**62 - 1,
    ],
    ids=hex,
)
def test_no_application_code(h3):
    assert h3_error_to_app(h3) is None


def test_reserved_codepoints_in_range_are_skipped():
    # Every reserved codepoint near the start maps to None, and no code maps onto one.
    start = APP_ERROR_FIRST
    reserved = [h for h in range(start, start + 0x1F * 40) if is_reserved_codepoint(h)]
    assert reserved[:3] == [0x52E4A40FA8F9, 0x52E4A40FA918, 0x52E4A40FA937]
    for h in reserved:
        assert h3_error_to_app(h) is None
    mapped = {app_error_to_h3(n) for n in range(0x1E * 40)}
    assert not mapped & set(reserved)
    # The mapping is dense over the non-reserved codepoints.
    assert (
        sorted(mapped)[: 0x1E * 39]
        == [h for h in range(start, start + 0x1F * 40) if not is_reserved_codepoint(h)][: 0x1E * 39]
    )


@pytest.mark.parametrize(
    ("code", "reserved"),
    [(0x20, False), (0x21, True), (0x40, True), (0x41, False), (0x52E4A40FA8F9, True)],
)
def test_is_reserved_codepoint(code, reserved):
    assert is_reserved_codepoint(code) is reserved


@given(code=st.integers(0, 0xFFFFFFFF))
def test_app_error_round_trip(code):
    h3 = app_error_to_h3(code)
    assert APP_ERROR_FIRST <= h3 <= APP_ERROR_LAST
    assert not is_reserved_codepoint(h3)
    assert h3_error_to_app(h3) == code


@given(h3=st.integers(APP_ERROR_FIRST, APP_ERROR_LAST))
def test_h3_error_round_trip(h3):
    code = h3_error_to_app(h3)
    if is_reserved_codepoint(h3):
        assert code is None
    else:
        assert code is not None
        assert 0 <= code <= 0xFFFFFFFF
        assert app_error_to_h3(code) == h3


@given(a=st.integers(0, 0xFFFFFFFE))
def test_app_error_mapping_is_monotonic(a):
    assert app_error_to_h3(a) < app_error_to_h3(a + 1)


@pytest.mark.parametrize("bad", [1.0, "1", None, True, False, b"\x01"])
def test_app_error_type_error(bad):
    with pytest.raises(TypeError):
        app_error_to_h3(bad)


@pytest.mark.parametrize("bad", [-1, 2**32, 2**62])
def test_app_error_value_error(bad):
    with pytest.raises(ValueError):
        app_error_to_h3(bad)


# -- the error tree --------------------------------------------------------------------------

EXPECTED = {
    # class name: (wire code, scope)
    "ProtocolError": (0x101, "connection"),
    "H3ConnectionError": (0x101, "connection"),
    "GeneralProtocolError": (0x101, "connection"),
    "StreamCreationError": (0x103, "connection"),
    "ClosedCriticalStream": (0x104, "connection"),
    "FrameUnexpected": (0x105, "connection"),
    "FrameError": (0x106, "connection"),
    "ExcessiveLoad": (0x107, "connection"),
    "IdError": (0x108, "connection"),
    "SettingsError": (0x109, "connection"),
    "MissingSettings": (0x10A, "connection"),
    "DatagramError": (0x33, "connection"),
    "QpackDecompressionFailed": (0x200, "connection"),
    "RequestRejected": (0x10B, "stream"),
    "MessageError": (0x10E, "session"),
    "MalformedCapsule": (0x10E, "session"),
    "FlowControlError": (0x045D4487, "session"),
    "ProhibitedCapsule": (0x045D4487, "session"),
}


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= all_subclasses(sub)
    return found


def test_every_protocol_error_is_known():
    defined = {
        cls.__name__ for cls in all_subclasses(ProtocolError) if cls.__module__ == errors.__name__
    }
    assert defined | {"ProtocolError"} == set(EXPECTED)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()), ids=sorted(EXPECTED))
def test_wire_code_and_scope(name, expected):
    cls = getattr(errors, name)
    code, scope = expected
    assert cls.error_code == code
    assert cls.scope == scope
    exc = cls("boom")
    assert exc.error_code == code
    assert exc.scope == scope
    assert exc.message == "boom"
    assert str(exc) == f"boom (error code {code:#x})"
    assert isinstance(exc, ProtocolError)
    assert isinstance(exc, Exception)
    if cls is not ProtocolError:
        assert (scope == "connection") == isinstance(exc, errors.H3ConnectionError)


def test_error_code_override_is_per_instance():
    exc = errors.MessageError("x", error_code=0x10C)
    assert exc.error_code == 0x10C
    assert errors.MessageError.error_code == 0x10E
    assert errors.MessageError("y").error_code == 0x10E


def test_no_builtin_shadowing():
    assert errors.H3ConnectionError is not ConnectionError
    assert not issubclass(errors.H3ConnectionError, ConnectionError)
    import builtins

    assert not set(errors.__all__) & set(dir(builtins))


def test_truncated_varint_is_a_value_error():
    assert issubclass(errors.TruncatedVarint, ValueError)
    assert not issubclass(errors.TruncatedVarint, ProtocolError)


@pytest.mark.parametrize(
    ("enum_name", "member", "value"),
    [
        ("H3ErrorCode", "H3_NO_ERROR", 0x100),
        ("H3ErrorCode", "H3_FRAME_ERROR", 0x106),
        ("H3ErrorCode", "H3_ID_ERROR", 0x108),
        ("H3ErrorCode", "H3_MESSAGE_ERROR", 0x10E),
        ("H3ErrorCode", "H3_CONNECT_ERROR", 0x10F),
        ("H3ErrorCode", "H3_VERSION_FALLBACK", 0x110),
        ("H3ErrorCode", "H3_DATAGRAM_ERROR", 0x33),
        ("WTErrorCode", "WT_BUFFERED_STREAM_REJECTED", 0x3994BD84),
        ("WTErrorCode", "WT_SESSION_GONE", 0x170D7B68),
        ("WTErrorCode", "WT_FLOW_CONTROL_ERROR", 0x045D4487),
        ("WTErrorCode", "WT_ALPN_ERROR", 0x0817B3DD),
        ("WTErrorCode", "WT_REQUIREMENTS_NOT_MET", 0x212C0D48),
        ("QpackErrorCode", "QPACK_DECOMPRESSION_FAILED", 0x200),
    ],
)
def test_error_code_enums(enum_name, member, value):
    assert getattr(getattr(errors, enum_name), member) == value


def test_h3_error_codes_are_contiguous():
    codes = sorted(int(c) for c in errors.H3ErrorCode if c != errors.H3ErrorCode.H3_DATAGRAM_ERROR)
    assert codes == list(range(0x100, 0x111))
