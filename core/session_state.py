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

S, I, A = SessionState, SessionInput, SessionAction

TRANSITIONS: dict[tuple[SessionState, SessionInput], tuple[SessionAction, SessionState]] = {
    # Client waiting for the response.
    (S.CONNECTING, I.RESPONSE_OK): (A.ESTABLISH, S.CONNECTED),
    (S.CONNECTING, I.RESPONSE_REJECT): (A.REJECT, S.REJECTED),
    (S.CONNECTING, I.CLOSE_SENT): (A.CANCEL, S.CLOSED),
    (S.CONNECTING, I.FIN_RECEIVED): (A.ABORT, S.CLOSED),
    (S.CONNECTING, I.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.CONNECTING, I.ABORT): (A.ABORT, S.CLOSED),
    (S.CONNECTING, I.CONNECTION_LOST): (A.ABORT, S.CLOSED),
    (S.CONNECTING, I.GOAWAY_RECEIVED): (A.IGNORE, S.CONNECTING),
    # Server waiting for the application.
    (S.REQUESTED, I.ACCEPT): (A.ESTABLISH, S.CONNECTED),
    (S.REQUESTED, I.REJECT): (A.REJECT, S.REJECTED),
    (S.REQUESTED, I.CLOSE_SENT): (A.REJECT, S.REJECTED),
    (S.REQUESTED, I.FIN_RECEIVED): (A.ABORT, S.CLOSED),
    (S.REQUESTED, I.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.REQUESTED, I.ABORT): (A.ABORT, S.CLOSED),
    (S.REQUESTED, I.CONNECTION_LOST): (A.ABORT, S.CLOSED),
    (S.REQUESTED, I.GOAWAY_RECEIVED): (A.IGNORE, S.REQUESTED),
    # Open.
    (S.CONNECTED, I.DRAIN_SENT): (A.DRAIN, S.DRAINING),
    (S.CONNECTED, I.DRAIN_RECEIVED): (A.DRAIN, S.DRAINING),
    (S.CONNECTED, I.GOAWAY_RECEIVED): (A.DRAIN, S.DRAINING),
    (S.CONNECTED, I.CLOSE_SENT): (A.CLOSE, S.CLOSED),
    (S.CONNECTED, I.CLOSE_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.CONNECTED, I.FIN_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.CONNECTED, I.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.CONNECTED, I.ABORT): (A.ABORT, S.CLOSED),
    (S.CONNECTED, I.CONNECTION_LOST): (A.ABORT, S.CLOSED),
    # Draining: still open; more drains change nothing.
    (S.DRAINING, I.DRAIN_SENT): (A.DRAIN, S.DRAINING),
    (S.DRAINING, I.DRAIN_RECEIVED): (A.IGNORE, S.DRAINING),
    (S.DRAINING, I.GOAWAY_RECEIVED): (A.IGNORE, S.DRAINING),
    (S.DRAINING, I.CLOSE_SENT): (A.CLOSE, S.CLOSED),
    (S.DRAINING, I.CLOSE_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.DRAINING, I.FIN_RECEIVED): (A.CLOSE, S.CLOSED),
    (S.DRAINING, I.RESET_RECEIVED): (A.ABORT, S.CLOSED),
    (S.DRAINING, I.ABORT): (A.ABORT, S.CLOSED),
    (S.DRAINING, I.CONNECTION_LOST): (A.ABORT, S.CLOSED),
}

# Ended sessions absorb late input from the peer and repeated closes.
for _ended in (S.CLOSED, S.REJECTED):
    for _input in (
        I.CLOSE_SENT,
        I.CLOSE_RECEIVED,
        I.FIN_RECEIVED,
        I.RESET_RECEIVED,
        I.ABORT,
        I.CONNECTION_LOST,
        I.GOAWAY_RECEIVED,
        I.DRAIN_RECEIVED,
    ):
        TRANSITIONS[(_ended, _input)] = (A.IGNORE, _ended)

del S, I, A


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
