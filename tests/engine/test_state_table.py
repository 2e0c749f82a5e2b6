"""The session state table, and the engine following it.

Every (SessionState, SessionInput) pair is looked up (hypothesis
``sampled_from``, as h2's state-machine tests do, plus one exhaustive pass);
then real sessions are driven through every pair the table lists, on both
roles where the pair can happen, and the engine's ``session_state`` must be
the table's next state and the action must be visible (events or wire).
"""

from __future__ import annotations

import itertools

import pytest
from engine_wire import (
    CAPSULE_DRAIN,
    ENGINE_SETTINGS,
    FRAME_GOAWAY,
    PEER_D16_FC,
    Wire,
    capsule,
    close_capsule,
    drain_capsule,
    enc,
    frame,
)
from hypothesis import given
from hypothesis import strategies as st

from anywt.core.events import (
    SessionClosed,
    SessionDraining,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
)
from anywt.core.session_state import (
    LOCAL_INPUTS,
    TRANSITIONS,
    SessionAction,
    SessionInput,
    SessionState,
    SessionStateError,
    transition,
)

S, I, A = SessionState, SessionInput, SessionAction  # noqa: E741 - as in session_state.py
ALL_PAIRS = list(itertools.product(SessionState, SessionInput))
ENDED = (S.CLOSED, S.REJECTED)
REMOTE_INPUTS = [event for event in SessionInput if event not in LOCAL_INPUTS]


# ---------------------------------------------------------------------------
# The table alone


@ENGINE_SETTINGS
@given(state=st.sampled_from(SessionState), event=st.sampled_from(SessionInput))
def test_transition_matches_table(state, event):
    if (state, event) in TRANSITIONS:
        assert transition(state, event) == TRANSITIONS[(state, event)]
    else:
        with pytest.raises(SessionStateError):
            transition(state, event)


@pytest.mark.parametrize(
    ("state", "event"), ALL_PAIRS, ids=[f"{s.name}-{e.name}" for s, e in ALL_PAIRS]
)
def test_every_pair(state, event):
    entry = TRANSITIONS.get((state, event))
    if entry is None:
        with pytest.raises(SessionStateError) as info:
            transition(state, event)
        assert isinstance(info.value, ValueError)
        assert state.name in str(info.value)
        return
    action, next_state = transition(state, event)
    assert isinstance(action, SessionAction)
    assert isinstance(next_state, SessionState)
    if state in ENDED:
        assert (action, next_state) == (A.IGNORE, state)
    if action == A.IGNORE:
        assert next_state == state


@ENGINE_SETTINGS
@given(state=st.sampled_from(ENDED), event=st.sampled_from(REMOTE_INPUTS))
def test_ended_states_absorb_remote_inputs(state, event):
    assert transition(state, event) == (A.IGNORE, state)


@pytest.mark.parametrize("state", ENDED, ids=[s.name for s in ENDED])
def test_ended_states_absorb_repeated_close(state):
    assert transition(state, I.CLOSE_SENT) == (A.IGNORE, state)


def test_no_way_back_from_ended_states():
    for (state, _event), (_action, next_state) in TRANSITIONS.items():
        if state in ENDED:
            assert next_state == state
        if next_state == S.CONNECTING:
            assert state == S.CONNECTING
        if next_state == S.REQUESTED:
            assert state == S.REQUESTED


def test_every_live_state_can_end():
    for state in (S.CONNECTING, S.REQUESTED, S.CONNECTED, S.DRAINING):
        for event in (I.RESET_RECEIVED, I.ABORT, I.CONNECTION_LOST, I.CLOSE_SENT):
            assert transition(state, event)[1] in ENDED


# ---------------------------------------------------------------------------
# The engine follows the table

CLIENT, SERVER = "client", "server"
#: States only one role can be in.
STATE_ROLES = {S.CONNECTING: {CLIENT}, S.REQUESTED: {SERVER}}
#: Inputs only one role can receive.
INPUT_ROLES = {
    I.ACCEPT: {SERVER},
    I.REJECT: {SERVER},
    I.RESPONSE_OK: {CLIENT},
    I.RESPONSE_REJECT: {CLIENT},
    # A client's GOAWAY is about server push; a server's sessions ignore it.
    I.GOAWAY_RECEIVED: {CLIENT},
}


def _roles(state, event):
    roles = {CLIENT, SERVER}
    roles &= STATE_ROLES.get(state, roles)
    roles &= INPUT_ROLES.get(event, roles)
    return sorted(roles)


REACHABLE = [
    (state, event, role) for (state, event) in TRANSITIONS for role in _roles(state, event)
]
UNREACHABLE = {(state, event) for (state, event) in TRANSITIONS if not _roles(state, event)}


def test_unreachable_pairs_are_known():
    assert {(S.REQUESTED, I.GOAWAY_RECEIVED)} == UNREACHABLE


def _put_in_state(engine_module, state, role):
    """A session of ``role`` brought to ``state`` through the engine's own API and the wire."""
    wire = Wire(engine_module, is_client=role == CLIENT).start(PEER_D16_FC)
    engine = wire.engine
    if role == CLIENT:
        sid = engine.connect(authority="example.com", path="/state")
        if state == S.CONNECTING:
            return wire, sid
        if state == S.REJECTED:
            wire.respond(sid, 404)
            return wire, sid
        wire.respond(sid, 200)
    else:
        sid = wire.request(path="/state")
        if state == S.REQUESTED:
            return wire, sid
        if state == S.REJECTED:
            engine.reject(sid, 404)
            return wire, sid
        engine.accept(sid)
    if state == S.DRAINING:
        engine.drain_session(sid)
    elif state == S.CLOSED:
        engine.close_session(sid, 1, "closed")
    assert engine.session_state(sid) == state
    return wire, sid


def _apply(wire, sid, event):
    engine = wire.engine
    if event == I.ACCEPT:
        engine.accept(sid)
    elif event == I.REJECT:
        engine.reject(sid, 404)
    elif event == I.RESPONSE_OK:
        wire.respond(sid, 200)
    elif event == I.RESPONSE_REJECT:
        wire.respond(sid, 404)
    elif event == I.DRAIN_SENT:
        engine.drain_session(sid)
    elif event == I.DRAIN_RECEIVED:
        wire.send_capsules(sid, drain_capsule())
    elif event == I.GOAWAY_RECEIVED:
        wire.feed(wire.peer_control_id, frame(FRAME_GOAWAY, enc(sid + 4)))
    elif event == I.CLOSE_SENT:
        engine.close_session(sid, 2, "by the test")
    elif event == I.CLOSE_RECEIVED:
        wire.send_capsules(sid, close_capsule(3, "by the peer"))
    elif event == I.FIN_RECEIVED:
        wire.feed(sid, b"", fin=True)
    elif event == I.RESET_RECEIVED:
        wire.reset(sid, 0x10C)
    elif event == I.ABORT:
        if wire.is_client and engine.session_state(sid) == S.CONNECTING:
            wire.respond(sid, 200, extra=[(b":status", b"200")])  # malformed response
        else:
            wire.send_capsules(sid, capsule(CAPSULE_DRAIN, b"\x00"))  # malformed capsule
    elif event == I.CONNECTION_LOST:
        wire.terminate(0, "gone")
    else:  # pragma: no cover
        raise AssertionError(event)


_LIFECYCLE = (SessionEstablished, SessionRejected, SessionClosed, SessionDraining, SessionRequested)


@pytest.mark.parametrize(
    ("state", "event", "role"),
    REACHABLE,
    ids=[f"{s.name}-{e.name}-{r}" for s, e, r in REACHABLE],
)
def test_engine_follows_table(engine_module, state, event, role):
    wire, sid = _put_in_state(engine_module, state, role)
    action, next_state = TRANSITIONS[(state, event)]
    wire.take()
    drains_before = (
        wire.sent_capsules(sid).count((CAPSULE_DRAIN, b"")) if wire.transport.data(sid) else 0
    )
    _apply(wire, sid, event)
    assert wire.engine.session_state(sid) == next_state
    if event != I.CONNECTION_LOST:
        assert wire.transport.closed is None, "a session input closed the whole connection"
    new = [e for e in wire.take() if isinstance(e, _LIFECYCLE) and e.session_id == sid]
    kinds = [type(e) for e in new]
    if action == A.ESTABLISH:
        assert kinds == [SessionEstablished]
    elif action == A.REJECT:
        if role == SERVER:
            assert kinds == []
            assert wire.sent_status(sid) >= 400
        else:
            assert kinds == [SessionRejected]
    elif action == A.CANCEL:
        assert kinds == [SessionClosed]
        assert wire.transport.reset_codes(sid) == [0x10C]
    elif action == A.DRAIN:
        if event == I.DRAIN_SENT:
            assert kinds == []
            assert wire.sent_capsules(sid).count((CAPSULE_DRAIN, b"")) == drains_before + 1
        else:
            assert kinds == [SessionDraining]
    elif action == A.CLOSE:
        assert kinds == [SessionClosed]
        assert new[0].error_code is None
    elif action == A.ABORT:
        assert kinds == [SessionClosed]
        assert new[0].error_code is not None
    else:
        assert action == A.IGNORE
        assert kinds == []


LOCAL_MISSING = [
    (state, event, role)
    for state, event in ALL_PAIRS
    if event in LOCAL_INPUTS and (state, event) not in TRANSITIONS
    for role in _roles(state, I.CLOSE_SENT)
]


@pytest.mark.parametrize(
    ("state", "event", "role"),
    LOCAL_MISSING,
    ids=[f"{s.name}-{e.name}-{r}" for s, e, r in LOCAL_MISSING],
)
def test_engine_refuses_local_inputs_missing_from_table(engine_module, state, event, role):
    wire, sid = _put_in_state(engine_module, state, role)
    mark = wire.transport.mark()
    with pytest.raises(SessionStateError):
        _apply(wire, sid, event)
    assert wire.engine.session_state(sid) == state
    assert wire.transport.since(mark) == []
