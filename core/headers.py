"""HTTP header handling for the extended CONNECT of WebTransport.

Validation of the request and response header sections QPACK decodes
(RFC 9114 section 4.3, RFC 9220), and the Structured Field strings of
WT-Available-Protocols / WT-Protocol (RFC 9651).  Bytes from the peer go
through the ``*_untrusted`` functions, which raise ``MessageError``
(H3_MESSAGE_ERROR) for a malformed message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import MessageError
from .events import Headers

__all__ = [
    "UPGRADE_TOKENS",
    "ConnectRequest",
    "parse_request_untrusted",
    "parse_status_untrusted",
    "parse_sf_string_list",
    "parse_sf_string",
    "serialize_sf_string",
    "serialize_sf_string_list",
    "check_header_fields",
]

#: ``:protocol`` values that name WebTransport over HTTP/3.
UPGRADE_TOKENS = (b"webtransport", b"webtransport-h3")

_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What the server learns from a request's header section."""

    method: str
    scheme: str | None
    authority: str
    path: str
    protocol: bytes | None
    origin: str | None
    protocols: tuple[str, ...]
    draft02: bool
    headers: Headers


def _text(value: bytes, name: bytes) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise MessageError(f"header {name.decode('latin-1')} is not ASCII") from None


def parse_request_untrusted(
    headers: Sequence[tuple[bytes, bytes]], *, allow_tokens: bool = False
) -> ConnectRequest:
    """Validate a request header section; return what matters for WebTransport.

    Only the generic HTTP/3 rules are checked here (pseudo-headers first,
    known, unique; lower-case names); whether the request is a WebTransport
    CONNECT is up to the caller.
    """
    pseudo: dict[bytes, bytes] = {}
    regular_seen = False
    origin: str | None = None
    protocols: tuple[str, ...] = ()
    draft02 = False
    for name, value in headers:
        if name.startswith(b":"):
            if regular_seen:
                raise MessageError("pseudo-header after a regular header")
            if name not in _REQUEST_PSEUDO:
                raise MessageError(f"unknown pseudo-header {name.decode('latin-1')}")
            if name in pseudo:
                raise MessageError(f"duplicate pseudo-header {name.decode('latin-1')}")
            pseudo[name] = value
            continue
        regular_seen = True
        if name.lower() != name:
            raise MessageError("header names must be lower case in HTTP/3")
        if name == b"origin":
            origin = _text(value, name)
        elif name == b"wt-available-protocols":
            protocols = parse_sf_string_list(value, allow_tokens=allow_tokens) or ()
        elif name == b"sec-webtransport-http3-draft02":
            draft02 = True
    method = pseudo.get(b":method")
    if not method:
        # A method is a token (RFC 9110 section 9.1): never empty.
        raise MessageError("request without :method" if method is None else "empty :method")
    if pseudo.get(b":path") == b"":
        # RFC 9114 section 4.3.1: :path must not be empty for http and https URIs.
        raise MessageError("empty :path")
    protocol = pseudo.get(b":protocol")
    if method == b"CONNECT":
        if protocol is not None:
            # Extended CONNECT (RFC 9220): all four other pseudo-headers are required.
            for required in (b":scheme", b":authority", b":path"):
                if required not in pseudo:
                    raise MessageError(f"extended CONNECT without {required.decode()}")
        elif b":authority" not in pseudo:
            raise MessageError("CONNECT without :authority")
    elif b":path" not in pseudo or b":scheme" not in pseudo:
        raise MessageError("request without :scheme or :path")
    scheme = pseudo.get(b":scheme")
    return ConnectRequest(
        method=_text(method, b":method"),
        scheme=None if scheme is None else _text(scheme, b":scheme"),
        authority=_text(pseudo.get(b":authority", b""), b":authority"),
        path=_text(pseudo.get(b":path", b""), b":path"),
        protocol=protocol,
        origin=origin,
        protocols=protocols,
        draft02=draft02,
        headers=tuple(headers),
    )


def parse_status_untrusted(headers: Sequence[tuple[bytes, bytes]]) -> int:
    """The ``:status`` of a response header section (three digits)."""
    status: bytes | None = None
    for name, value in headers:
        if name.startswith(b":"):
            if name != b":status" or status is not None:
                raise MessageError(
                    f"unexpected pseudo-header {name.decode('latin-1')} in a response"
                )
            status = value
    if status is None or len(status) != 3 or not status.isdigit():
        raise MessageError(f"response with an invalid :status {status!r}")
    return int(status)


def check_header_fields(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Validate extra header fields an application wants to send."""
    checked = []
    for name, value in headers:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError("header names and values must be bytes")
        if not name or name.startswith(b":") or name.lower() != name:
            raise ValueError(f"invalid header name {name!r}: lower-case, not a pseudo-header")
        if any(c in value for c in b"\r\n\x00"):
            raise ValueError(f"header {name!r} has a forbidden character")
        checked.append((name, value))
    return checked


def _parse_item(value: str, pos: int, allow_tokens: bool) -> tuple[str | None, int]:
    """One list member: an sf-string (or a token, as drafts 10-12 used); None if neither."""
    if pos < len(value) and value[pos] == '"':
        out = []
        pos += 1
        while pos < len(value):
            char = value[pos]
            if char == "\\":
                if pos + 1 >= len(value) or value[pos + 1] not in '"\\':
                    return None, len(value)
                out.append(value[pos + 1])
                pos += 2
            elif char == '"':
                return "".join(out), pos + 1
            elif not " " <= char <= "~":
                return None, len(value)
            else:
                out.append(char)
                pos += 1
        return None, len(value)
    if not allow_tokens:
        return None, len(value)
    start = pos
    while pos < len(value) and value[pos] not in ",; \t":
        pos += 1
    token = value[start:pos]
    if not token or not (token[0].isalpha() or token[0] == "*"):
        return None, len(value)
    return token, pos


def _skip_parameters(value: str, pos: int) -> int:
    # Parameters (";key=value") are allowed and ignored.
    while pos < len(value) and value[pos] == ";":
        pos += 1
        while pos < len(value) and value[pos] not in ",;":
            if value[pos] == '"':
                _, pos = _parse_item(value, pos, True)
            else:
                pos += 1
    return pos


def parse_sf_string_list(raw: bytes, *, allow_tokens: bool = False) -> tuple[str, ...] | None:
    """Parse WT-Available-Protocols; None when the field is malformed (it is then ignored).

    Members must be sf-strings (draft-13+); ``allow_tokens`` also takes the
    sf-tokens of drafts 10-12.
    """
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    items: list[str] = []
    pos = 0
    value = value.strip(" \t")
    if not value:
        return ()
    while True:
        item, pos = _parse_item(value, pos, allow_tokens)
        if item is None:
            return None
        items.append(item)
        pos = _skip_parameters(value, pos)
        while pos < len(value) and value[pos] in " \t":
            pos += 1
        if pos >= len(value):
            return tuple(items)
        if value[pos] != ",":
            return None
        pos += 1
        while pos < len(value) and value[pos] in " \t":
            pos += 1
        if pos >= len(value):
            return None


def parse_sf_string(raw: bytes, *, allow_tokens: bool = False) -> str | None:
    """Parse WT-Protocol (one item); None when malformed."""
    items = parse_sf_string_list(raw, allow_tokens=allow_tokens)
    if items is None or len(items) != 1:
        return None
    return items[0]


def serialize_sf_string(value: str) -> bytes:
    """An sf-string: printable ASCII, quotes and backslashes escaped."""
    if not all(" " <= char <= "~" for char in value):
        raise ValueError(f"protocol name {value!r} must be printable ASCII")
    return ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"').encode("ascii")


def serialize_sf_string_list(values: Iterable[str]) -> bytes:
    """An sf-list of strings."""
    return b", ".join(serialize_sf_string(value) for value in values)
