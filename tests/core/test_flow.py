"""Session flow-control arithmetic (draft-ietf-webtrans-http3 section 5; protocol.md 18-21)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anywt.core.errors import FlowControlError

WT_FLOW_CONTROL_ERROR = 0x045D4487
MAX_DATA = 2**62 - 1
MAX_STREAMS = 2**60


def test_limits(core):
    assert core.flow.MAX_DATA_LIMIT == MAX_DATA
    assert core.flow.MAX_STREAMS_LIMIT == MAX_STREAMS


def assert_fc_error(info) -> None:
    assert info.value.error_code == WT_FLOW_CONTROL_ERROR
    assert info.value.scope == "session"


# -- SendCredit ------------------------------------------------------------------------------


def test_send_credit_consume_to_the_limit(core):
    credit = core.flow.SendCredit(10)
    assert (credit.limit, credit.used, credit.available()) == (10, 0, 10)
    credit.consume(4)
    credit.consume(6)
    assert credit.available() == 0
    credit.consume(0)
    with pytest.raises(ValueError):
        credit.consume(1)
    with pytest.raises(ValueError):
        credit.consume(-1)
    assert credit.used == 10


def test_send_credit_update_limit_strict(core):
    credit = core.flow.SendCredit(10)
    assert credit.update_limit(11) is True
    assert credit.limit == 11
    with pytest.raises(FlowControlError) as info:
        credit.update_limit(11)  # equal: does not increase
    assert_fc_error(info)
    with pytest.raises(FlowControlError) as info:
        credit.update_limit(5)  # decreasing
    assert_fc_error(info)
    assert credit.limit == 11


def test_send_credit_update_limit_non_strict(core):
    credit = core.flow.SendCredit(10)
    assert credit.update_limit(10, strict=False) is False
    assert credit.update_limit(10, False) is False
    assert credit.update_limit(12, strict=False) is True
    with pytest.raises(FlowControlError):
        credit.update_limit(11, strict=False)
    assert credit.limit == 12


@pytest.mark.parametrize("strict", [True, False])
def test_send_credit_data_ceiling(core, strict):
    credit = core.flow.SendCredit(0)
    assert credit.ceiling == MAX_DATA
    assert credit.update_limit(MAX_DATA, strict) is True
    with pytest.raises(FlowControlError) as info:
        credit.update_limit(MAX_DATA + 1, strict)
    assert_fc_error(info)


@pytest.mark.parametrize("strict", [True, False])
def test_send_credit_streams_ceiling(core, strict):
    credit = core.flow.SendCredit(0, ceiling=MAX_STREAMS)
    with pytest.raises(FlowControlError) as info:
        credit.update_limit(MAX_STREAMS + 1, strict)
    assert_fc_error(info)
    assert credit.limit == 0
    assert credit.update_limit(MAX_STREAMS, strict) is True
    assert credit.limit == MAX_STREAMS


def test_send_credit_blocked_once_per_limit(core):
    credit = core.flow.SendCredit(5)
    assert credit.blocked_limit() == -1
    credit.consume(4)
    assert credit.blocked_limit() == -1
    credit.consume(1)
    assert credit.blocked_limit() == 5
    assert credit.blocked_limit() == -1
    assert credit.blocked_limit() == -1
    credit.update_limit(8)
    assert credit.blocked_limit() == -1
    credit.consume(3)
    assert credit.blocked_limit() == 8
    assert credit.blocked_limit() == -1


def test_send_credit_blocked_at_zero(core):
    credit = core.flow.SendCredit(0)
    assert credit.available() == 0
    assert credit.blocked_limit() == 0
    assert credit.blocked_limit() == -1


# -- ReceiveCredit ---------------------------------------------------------------------------


def test_receive_exactly_to_the_limit(core):
    credit = core.flow.ReceiveCredit(100)
    credit.on_receive(60)
    credit.on_receive(40)
    credit.on_receive(0)
    assert credit.received == 100
    with pytest.raises(FlowControlError) as info:
        credit.on_receive(1)
    assert_fc_error(info)
    assert credit.received == 100


def test_receive_one_over_in_one_go(core):
    credit = core.flow.ReceiveCredit(100)
    with pytest.raises(FlowControlError):
        credit.on_receive(101)
    assert credit.received == 0


def test_receive_zero_limit(core):
    credit = core.flow.ReceiveCredit(0)
    credit.on_receive(0)
    with pytest.raises(FlowControlError):
        credit.on_receive(1)


def test_auto_regrant_after_half_the_window(core):
    credit = core.flow.ReceiveCredit(100)
    assert credit.window == 100
    credit.on_receive(100)
    assert credit.on_consume(49) == -1
    assert credit.limit == 100
    assert credit.on_consume(1) == 150  # half the window consumed: consumed + window
    assert credit.limit == 150
    credit.on_receive(50)
    assert credit.on_consume(49) == -1
    assert credit.on_consume(1) == 200
    assert credit.limit == 200


def test_auto_regrant_with_explicit_window(core):
    credit = core.flow.ReceiveCredit(1000, window=100)
    credit.on_receive(1000)
    assert credit.on_consume(949) == -1
    assert credit.on_consume(1) == 1050
    credit.on_receive(50)
    assert credit.limit == 1050


def test_auto_regrant_never_decreases(core):
    credit = core.flow.ReceiveCredit(100, window=100)
    assert credit.grant(10_000) is True
    credit.on_receive(100)
    assert credit.on_consume(100) == -1
    assert credit.limit == 10_000


def test_auto_off(core):
    credit = core.flow.ReceiveCredit(100, auto=False)
    credit.on_receive(100)
    assert credit.on_consume(100) == -1
    assert credit.limit == 100
    assert credit.consumed == 100
    with pytest.raises(FlowControlError):
        credit.on_receive(1)
    assert credit.grant(300) is True
    credit.on_receive(200)


def test_auto_regrant_capped_at_ceiling(core):
    credit = core.flow.ReceiveCredit(8, ceiling=10)
    credit.on_receive(8)
    assert credit.on_consume(8) == 10
    credit.on_receive(2)
    assert credit.on_consume(2) == -1  # already at the ceiling
    assert credit.limit == 10


def test_streams_receive_credit(core):
    credit = core.flow.ReceiveCredit(4, ceiling=MAX_STREAMS)
    for _ in range(4):
        credit.on_receive(1)
    with pytest.raises(FlowControlError):
        credit.on_receive(1)  # stream N+1
    assert credit.on_consume(2) == 6  # two streams closed


def test_grant_by_hand(core):
    credit = core.flow.ReceiveCredit(100)
    assert credit.grant(100) is False
    assert credit.grant(50) is False
    assert credit.limit == 100
    assert credit.grant(101) is True
    assert credit.limit == 101
    assert credit.grant(MAX_DATA) is True
    with pytest.raises(ValueError):
        credit.grant(MAX_DATA + 1)
    streams = core.flow.ReceiveCredit(0, ceiling=MAX_STREAMS)
    with pytest.raises(ValueError):
        streams.grant(MAX_STREAMS + 1)
    assert streams.grant(MAX_STREAMS) is True


def test_peer_blocked(core):
    credit = core.flow.ReceiveCredit(100, ceiling=MAX_STREAMS)
    assert credit.peer_blocked_at == -1
    credit.on_peer_blocked(100)
    assert credit.peer_blocked_at == 100
    credit.on_peer_blocked(MAX_STREAMS)
    with pytest.raises(FlowControlError) as info:
        credit.on_peer_blocked(MAX_STREAMS + 1)
    assert_fc_error(info)


# -- properties ------------------------------------------------------------------------------


# Operations are flat (kind, number) tuples: much cheaper for hypothesis to generate.
@st.composite
def receive_scenarios(draw):
    limit = draw(st.integers(0, 2000))
    window = draw(st.one_of(st.just(-1), st.integers(0, 2000)))
    auto = draw(st.booleans())
    kinds = st.sampled_from(["receive", "receive", "consume", "grant"])
    ops = draw(st.lists(st.tuples(kinds, st.integers(0, 1500)), max_size=25))
    return limit, window, auto, ops


def run_receive(impl, scenario):
    """Apply a scenario, checking the invariants; return the trace."""
    limit, window, auto, ops = scenario
    credit = impl.flow.ReceiveCredit(limit, window=window, auto=auto)
    trace = []
    for op, number in ops:
        before = credit.limit
        value = number
        if op == "receive":
            if credit.received + value > credit.limit:
                with pytest.raises(FlowControlError):
                    credit.on_receive(value)
                trace.append(("error",))
            else:
                credit.on_receive(value)
                trace.append(("ok",))
        elif op == "consume":
            value = min(number, credit.received - credit.consumed)
            result = credit.on_consume(value)
            if result == -1:
                assert credit.limit == before
            else:
                assert result == credit.limit > before
                assert auto
            trace.append(("consume", result))
        else:
            trace.append(("grant", credit.grant(value)))
            assert credit.limit == max(before, value)
        assert credit.received <= credit.limit
        assert credit.limit >= before
        assert credit.consumed <= credit.received
    return trace, (credit.limit, credit.received, credit.consumed)


@given(scenario=receive_scenarios())
def test_receive_credit_properties(core, scenario):
    run_receive(core, scenario)


@given(
    limit=st.integers(1, 10_000),
    window=st.integers(2, 10_000),
    draws=st.lists(st.integers(0, 2**32), min_size=1, max_size=50),
)
def test_receiver_keeps_a_sender_going(core, limit, window, draws):
    # A receiver that consumes everything it gets always re-grants before the sender stalls.
    credit = core.flow.ReceiveCredit(limit, window=window)
    sent = 0
    for draw in draws:
        room = credit.limit - credit.received
        assert room > 0
        amount = 1 + draw % room
        credit.on_receive(amount)
        sent += amount
        credit.on_consume(amount)
    assert credit.received == sent


HUGE_LIMITS = [MAX_STREAMS, MAX_STREAMS + 1, MAX_DATA, MAX_DATA + 1]


@st.composite
def send_scenarios(draw):
    ceiling = draw(st.sampled_from([MAX_DATA, MAX_STREAMS, 3000]))
    limit = draw(st.integers(0, 2000))
    kinds = st.sampled_from(["consume", "update", "update", "huge", "blocked"])
    ops = []
    for kind, number, strict in draw(
        st.lists(st.tuples(kinds, st.integers(0, 4000), st.booleans()), max_size=25)
    ):
        if kind == "huge":
            ops.append(("update", HUGE_LIMITS[number % len(HUGE_LIMITS)], strict))
        elif kind == "update":
            ops.append(("update", number, strict))
        else:
            ops.append((kind, number))
    return ceiling, limit, ops


def run_send(impl, scenario):
    ceiling, limit, ops = scenario
    credit = impl.flow.SendCredit(limit, ceiling=ceiling)
    reported: set[int] = set()
    trace = []
    for op, *args in ops:
        before = credit.limit
        if op == "consume":
            amount = min(args[0], credit.available())
            credit.consume(amount)
            trace.append(("consume", amount))
        elif op == "update":
            new_limit, strict = args
            bad = new_limit > ceiling or new_limit < before or (strict and new_limit == before)
            if bad:
                with pytest.raises(FlowControlError):
                    credit.update_limit(new_limit, strict)
                trace.append(("error",))
            else:
                assert credit.update_limit(new_limit, strict) is (new_limit > before)
                trace.append(("update", new_limit))
        else:
            blocked = credit.blocked_limit()
            if blocked != -1:
                assert blocked == credit.limit == credit.used
                assert blocked not in reported
                reported.add(blocked)
            else:
                assert credit.used < credit.limit or credit.limit in reported
            trace.append(("blocked", blocked))
        assert credit.limit >= before
        assert 0 <= credit.used <= credit.limit <= ceiling or credit.limit == limit
    return trace, (credit.limit, credit.used)


@given(scenario=send_scenarios())
def test_send_credit_properties(core, scenario):
    run_send(core, scenario)


@given(scenario=receive_scenarios())
def test_receive_credit_differential(core_pair, scenario):
    pure, compiled = core_pair
    assert run_receive(compiled, scenario) == run_receive(pure, scenario)


@given(scenario=send_scenarios())
def test_send_credit_differential(core_pair, scenario):
    pure, compiled = core_pair
    assert run_send(compiled, scenario) == run_send(pure, scenario)
