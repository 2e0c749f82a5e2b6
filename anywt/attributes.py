"""Typed attributes of sessions and streams, for anyio's ``extra()``."""

from __future__ import annotations

from anyio import TypedAttributeSet, typed_attribute

__all__ = ["WebTransportAttribute"]


class WebTransportAttribute(TypedAttributeSet):
    """``stream.extra(WebTransportAttribute.session_id)`` and friends."""

    #: The session id (the stream id of its CONNECT stream).
    session_id: int = typed_attribute()
    #: The QUIC stream id of a stream.
    stream_id: int = typed_attribute()
    #: The request path of the session.
    path: str = typed_attribute()
    #: The negotiated ALPN (always "h3").
    alpn: str = typed_attribute()
    #: The WebTransport draft spoken on the connection, e.g. "draft-02".
    draft: str = typed_attribute()
    #: The QUIC backend in use, e.g. "aioquic".
    backend: str = typed_attribute()
