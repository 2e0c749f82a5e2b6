"""WebTransport session flow control (draft-ietf-webtrans-http3 section 5), one direction at a time.

Both limits of a session, data (Stream Body bytes) and streams (cumulative
count per direction), follow the same arithmetic: ``SendCredit`` tracks what
we may still send under the limit the peer granted, ``ReceiveCredit`` what the
peer may send under the limit we granted, and when to grant more.  In the
spirit of h2's window manager: small, no I/O, easy to property-test.  This
file is the source of both the pure-Python module and, with ``_flow_c.pxd``,
the compiled ``anywt.core._flow_c``.
"""

from __future__ import annotations

from .errors import FlowControlError

__all__ = ["MAX_STREAMS_LIMIT", "MAX_DATA_LIMIT", "SendCredit", "ReceiveCredit"]

#: WT_MAX_STREAMS and WT_STREAMS_BLOCKED values above this are a flow-control error.
MAX_STREAMS_LIMIT = 1 << 60
#: The largest varint: the ceiling of WT_MAX_DATA.
MAX_DATA_LIMIT = (1 << 62) - 1


class SendCredit:
    """What we may send under a limit the peer grants.

    ``limit`` comes from SETTINGS and then WT_MAX_* capsules; ``used`` grows as
    we send.  ``blocked_limit()`` hands out each limit once, for the
    WT_*_BLOCKED capsule that tells the peer we are stuck on it.
    """

    def __init__(self, limit: int, ceiling: int = MAX_DATA_LIMIT) -> None:
        self.limit = limit
        self.used = 0
        self.ceiling = ceiling
        self._blocked_reported = -1

    def available(self) -> int:
        """How much may be sent now."""
        return self.limit - self.used

    def consume(self, amount: int) -> None:
        """Account for ``amount`` sent; more than ``available()`` is a bug of the caller."""
        if amount < 0 or amount > self.limit - self.used:
            raise ValueError(f"cannot use {amount} of {self.limit - self.used} available credit")
        self.used += amount

    def release(self, amount: int) -> None:
        """Give back ``amount`` counted as sent that the peer never counts (a reset dropped it)."""
        if amount < 0 or amount > self.used:
            raise ValueError(f"cannot release {amount} of {self.used} used credit")
        self.used -= amount

    def update_limit(self, new_limit: int, strict: bool = True) -> bool:
        """Apply a WT_MAX_* value from the peer; return True if it raised the limit.

        A value above the ceiling is an error; so is one that does not
        increase the limit (``strict``, draft-16) or that decreases it.
        """
        if new_limit > self.ceiling:
            raise FlowControlError(f"flow-control limit {new_limit} exceeds {self.ceiling}")
        if new_limit < self.limit or (strict and new_limit == self.limit):
            raise FlowControlError(
                f"flow-control limit {new_limit} does not increase the current {self.limit}"
            )
        raised = new_limit > self.limit
        self.limit = new_limit
        return raised

    def blocked_limit(self) -> int:
        """The limit to report as blocked, once per limit value; else -1."""
        if self.used < self.limit or self._blocked_reported == self.limit:
            return -1
        self._blocked_reported = self.limit
        return self.limit


class ReceiveCredit:
    """What the peer may send under a limit we grant, and when to grant more.

    ``on_receive`` checks each arrival against the limit; ``on_consume`` (data
    read by the application, or streams closed) returns a new limit to
    advertise once half of ``window`` has been consumed since the limit was
    last raised, when ``auto`` is on.  ``grant`` raises the limit by hand.
    """

    def __init__(
        self, limit: int, window: int = -1, auto: bool = True, ceiling: int = MAX_DATA_LIMIT
    ) -> None:
        self.limit = limit
        self.received = 0
        self.consumed = 0
        self.window = limit if window < 0 else window
        self.auto = auto
        self.ceiling = ceiling
        #: The last WT_*_BLOCKED value the peer reported, or -1.
        self.peer_blocked_at = -1

    def on_receive(self, amount: int) -> None:
        """The peer sent ``amount`` more; beyond the limit is a flow-control error."""
        received = self.received + amount
        if received > self.limit:
            raise FlowControlError(
                f"peer exceeded the flow-control limit {self.limit} ({received})"
            )
        self.received = received

    def on_consume(self, amount: int) -> int:
        """``amount`` was consumed; return a new limit to advertise, or -1."""
        self.consumed += amount
        if not self.auto or self.limit - self.consumed > self.window // 2:
            return -1
        new_limit = self.consumed + self.window
        if new_limit > self.ceiling:
            new_limit = self.ceiling
        if new_limit <= self.limit:
            return -1
        self.limit = new_limit
        return new_limit

    def grant(self, new_limit: int) -> bool:
        """Raise the limit to ``new_limit`` by hand; False if that would not raise it."""
        if new_limit > self.ceiling:
            raise ValueError(f"flow-control limit {new_limit} exceeds {self.ceiling}")
        if new_limit <= self.limit:
            return False
        self.limit = new_limit
        return True

    def on_peer_blocked(self, limit: int) -> None:
        """The peer reported being blocked at ``limit``."""
        if limit > self.ceiling:
            raise FlowControlError(f"blocked value {limit} exceeds {self.ceiling}")
        self.peer_blocked_at = limit
