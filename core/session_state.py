"""The WebTransport session state machine, as a table.

``TRANSITIONS[(state, input)] -> (action, next_state)``.  The engine feeds
every lifecycle input through ``transition``; a pair missing from the table is
an error: a ``SessionStateError`` (a ``ValueError``) when the application
asked for it, a protocol error when the peer caused it.  The *action* names
what the engine must do; the engine maps each action to one method.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = [
    "SessionState",
    "SessionInput",
    "SessionAction",
    "TRANSITIONS",
    "LOCAL_INPUTS",
    "SessionStateError",
    "transition",
]


class SessionState(IntEnum):
    """Where a session is in its life."""

    CONNECTING = 1  # client: CONNECT sent, no response yet
    REQUESTED = 2  # server: CONNECT received, the application has not answered
    CONNECTED = 3
    DRAINING = 4  # still usable; one side asked to wrap up
    CLOSED = 5
    REJECTED = 6  # answered with a non-2xx status


class SessionInput(Enum):
    ACCEPT = "accept"  # server application accepts
    REJECT = "reject"  # server application rejects
    RESPONSE_OK = "response_ok"  # client got a 2xx
    RESPONSE_REJECT = "response_reject"  # client got a non-2xx final status
    DRAIN_SENT = "drain_sent"
    DRAIN_RECEIVED = "drain_received"  # WT_DRAIN_SESSION
    GOAWAY_RECEIVED = "goaway_received"
    CLOSE_SENT = "close_sent"  # application closes
    CLOSE_RECEIVED = "close_received"  # WT_CLOSE_SESSION
    FIN_RECEIVED = "fin_received"  # CONNECT stream ended without a close capsule
    RESET_RECEIVED = "reset_received"  # CONNECT stream reset or stopped by the peer
    ABORT = "abort"  # protocol error on the session
    CONNECTION_LOST = "connection_lost"


class SessionAction(Enum):
    ESTABLISH = "establish"
    REJECT = "reject"  # send (server) or report (client) a rejection
    CANCEL = "cancel"  # client gives up before the response: reset the CONNECT stream
    DRAIN = "drain"  # send or report a drain
    CLOSE = "close"  # orderly close: capsule and FIN sent, or received and answered
    ABORT = "abort"  # abrupt end: reset streams
    IGNORE = "ignore"


#: Inputs that come from the application rather than the peer.
LOCAL_INPUTS = frozenset(
    {SessionInput.ACCEPT, SessionInput.REJECT, SessionInput.DRAIN_SENT, SessionInput.CLOSE_SENT}
)

S, In, A = SessionState, SessionInput, SessionAction

TRANSITIONS: dict[tuple[SessionState, SessionInput], tuple[SessionAction, SessionState]] = {
    # Client waiting for the response.
    (S.CONNECTING, In.RESPONSE_OK): (A.ESTABLISH, S.CONNECTED),
    (S.CONNECTING, In.RESPONSE_REJECT): (A.REJECT, S.REJECTED),
    (S.CONNECTING, In.CLOSE_SENT): (A.CANCEL, S.CLOSED),
    (S.CONNECTING, In.FIN_RECEIVED): (A.ABORT, S.CLOSED),
    (S.CONNECTING, In.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.CONNECTING, In.ABORT): (A.ABORT, S.CLOSED),
    (S.CONNECTING, In.CONNECTION_LOST): (A.ABORT, S.CLOSED),
    (S.CONNECTING, In.GOAWAY_RECEIVED): (A.IGNORE, S.CONNECTING),
    # Server waiting for the application.
    (S.REQUESTED, In.ACCEPT): (A.ESTABLISH, S.CONNECTED),
    (S.REQUESTED, In.REJECT): (A.REJECT, S.REJECTED),
    (S.REQUESTED, In.CLOSE_SENT): (A.REJECT, S.REJECTED),
    (S.REQUESTED, In.FIN_RECEIVED): (A.ABORT, S.CLOSED),
    (S.REQUESTED, In.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.REQUESTED, In.ABORT): (A.ABORT, S.CLOSED),
    (S.REQUESTED, In.CONNECTION_LOST): (A.ABORT, S.CLOSED),
    (S.REQUESTED, In.GOAWAY_RECEIVED): (A.IGNORE, S.REQUESTED),
    # Open.
    (S.CONNECTED, In.DRAIN_SENT): (A.DRAIN, S.DRAINING),
    (S.CONNECTED, In.DRAIN_RECEIVED): (A.DRAIN, S.DRAINING),
    (S.CONNECTED, In.GOAWAY_RECEIVED): (A.DRAIN, S.DRAINING),
    (S.CONNECTED, In.CLOSE_SENT): (A.CLOSE, S.CLOSED),
    (S.CONNECTED, In.CLOSE_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.CONNECTED, In.FIN_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.CONNECTED, In.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.CONNECTED, In.ABORT): (A.ABORT, S.CLOSED),
    (S.CONNECTED, In.CONNECTION_LOST): (A.ABORT, S.CLOSED),
    # Draining: still open; more drains change nothing.
    (S.DRAINING, In.DRAIN_SENT): (A.DRAIN, S.DRAINING),
    (S.DRAINING, In.DRAIN_RECEIVED): (A.IGNORE, S.DRAINING),
    (S.DRAINING, In.GOAWAY_RECEIVED): (A.IGNORE, S.DRAINING),
    (S.DRAINING, In.CLOSE_SENT): (A.CLOSE, S.CLOSED),
    (S.DRAINING, In.CLOSE_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.DRAINING, In.FIN_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.DRAINING, In.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.DRAINING, In.ABORT): (A.ABORT, S.CLOSED),
    (S.DRAINING, In.CONNECTION_LOST): (A.ABORT, S.CLOSED),
}

# Ended sessions absorb late input from the peer and repeated closes.
for _ended in (S.CLOSED, S.REJECTED):
    for _input in (
        In.CLOSE_SENT,
        In.CLOSE_RECEIVED,
        In.FIN_RECEIVED,
        In.RESET_RECEIVED,
        In.ABORT,
        In.CONNECTION_LOST,
        In.GOAWAY_RECEIVED,
        In.DRAIN_RECEIVED,
        In.RESPONSE_OK,  # a late answer to a request we cancelled
        In.RESPONSE_REJECT,
    ):
        TRANSITIONS[(_ended, _input)] = (A.IGNORE, _ended)

del S, In, A


class SessionStateError(ValueError):
    """The application asked for something the session's state does not allow."""


def transition(state: SessionState, event: SessionInput) -> tuple[SessionAction, SessionState]:
    """Look up a transition; raise ``SessionStateError`` when there is none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise SessionStateError(
            f"cannot handle {event.value!r} in session state {state.name}"
        ) from None
