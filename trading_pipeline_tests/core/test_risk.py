"""Contract under test: trading_pipeline.core.risk (the risk governor).

check_order runs the halt, daily loss, max open positions, max new positions per day, margin
utilization and sector concentration checks in that order and reports every failure with the
limit and the numbers; a value at a limit passes except the daily loss, whose limit trips the
circuit breaker (trips_breaker) unless trading is already halted. Exits are refused only under
a manual halt ("halt blocks exits"). session_counters_reset clears the daily counters and a
breaker halt at the session boundary and keeps a manual halt. Each limit is tested at, just
under and just over its boundary; the numbers are worked by hand in the comments.
"""

from __future__ import annotations

import time as wallclock
from dataclasses import replace
from datetime import date

import pytest

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.risk import (
    CHECK_DAILY_LOSS,
    CHECK_HALT,
    CHECK_MARGIN_UTILIZATION,
    CHECK_MAX_NEW_POSITIONS,
    CHECK_MAX_OPEN_POSITIONS,
    CHECK_SECTOR_CONCENTRATION,
    UNKNOWN_SECTOR,
    HaltKind,
    OrderProposal,
    RiskLimits,
    RiskState,
    check_exit,
    check_order,
    halt,
    record_opening,
    resume,
    sector_of,
    session_counters_reset,
    trip_breaker,
)

MONDAY = date(2025, 9, 8)
TUESDAY = date(2025, 9, 9)
LIMITS = RiskLimits.from_params(ExecutionParameters())


def account(**changes) -> RiskState:
    """An empty $100,000 account at the start of Monday's session."""
    base = RiskState(session_day=MONDAY, start_of_day_nlv=100_000.0, current_nlv=100_000.0)
    return replace(base, **changes)


def order(margin: float = 5_000.0, sector: str | None = "Technology", **changes) -> OrderProposal:
    return OrderProposal(symbol=changes.pop("symbol", "AAPL"), contracts=changes.pop("contracts", 1),
                         margin_required=margin, sector=sector, **changes)


def test_limits_come_from_the_parameters():
    limits = RiskLimits.from_params(ExecutionParameters().with_overrides(max_open_positions=4, max_daily_loss_fraction=-0.03))
    assert limits.max_open_positions == 4
    assert limits.max_daily_loss_fraction == -0.03
    assert LIMITS == RiskLimits(-0.02, 10, 10, 0.80, 0.30)


def test_first_order_of_an_empty_account_is_approved():
    # Sector share: 5,000 / max(5,000, 0.80 x 100,000 = 80,000) = 6.25 %.
    decision = check_order(account(), order(), LIMITS)
    assert decision.approved
    assert decision.failures == ()
    assert not decision.trips_breaker


# ------------------------------------------------------------------ halt


def test_manual_halt_blocks_openings_and_exits():
    state = halt(account(), "emergency stop by operator")
    decision = check_order(state, order(), LIMITS)
    assert not decision.approved
    assert decision.failed_checks == (CHECK_HALT,)
    assert decision.reasons == ("trading halted (manual): emergency stop by operator",)
    exit_decision = check_exit(state)
    assert not exit_decision.approved
    assert exit_decision.reasons[0].startswith("halt blocks exits: emergency stop by operator")
    assert "--liquidate" in exit_decision.reasons[0]
    # A closing order goes through the exit check.
    assert check_order(state, order(is_opening=False), LIMITS) == exit_decision


def test_exits_pass_every_other_limit():
    # Over the loss limit, at 10 positions, over the margin limit: exits still go.
    state = account(pnl_today=-5_000.0, open_positions=10, new_positions_today=10, init_margin_used=95_000.0)
    assert check_exit(state).approved
    assert check_order(state, order(is_opening=False), LIMITS).approved


# ------------------------------------------------------------------ daily loss


@pytest.mark.parametrize(
    ("pnl", "fails"),
    [
        (-1_999.99, False),  # just under: -1.99999 % of 100,000
        (-2_000.00, True),   # at: -2.00 % reaches the limit
        (-2_000.01, True),   # just over
        (3_000.00, False),   # a gain
    ],
)
def test_daily_loss_boundary(pnl, fails):
    decision = check_order(account(pnl_today=pnl), order(), LIMITS)
    assert decision.approved is (not fails)
    assert decision.trips_breaker is fails
    assert (CHECK_DAILY_LOSS in decision.failed_checks) is fails


def test_daily_loss_reason_names_the_limit_and_numbers():
    decision = check_order(account(pnl_today=-2_500.0, current_nlv=97_500.0), order(), LIMITS)
    expected = ("daily loss limit reached: P&L today -$2,500.00 is -2.50% of start-of-day NLV "
                "$100,000.00 (MAX_DAILY_LOSS -2.00%); trading halted")
    assert decision.reasons == (expected,)
    assert decision.breaker_reason == expected


def test_breaker_trip_halts_new_positions_but_not_exits():
    state = account(pnl_today=-2_000.0)
    decision = check_order(state, order(), LIMITS)
    halted = trip_breaker(state, decision)
    assert halted.halted and halted.halt_kind is HaltKind.DAILY_LOSS
    assert halted.halt_reason == decision.breaker_reason
    again = check_order(halted, order(), LIMITS)
    assert again.failed_checks == (CHECK_HALT, CHECK_DAILY_LOSS)
    assert not again.trips_breaker  # already halted: nothing new to record
    assert check_exit(halted).approved  # stop-loss exits must still run


def test_a_breaker_never_loosens_a_manual_halt():
    manual = halt(account(pnl_today=-3_000.0), "operator")
    decision = check_order(manual, order(), LIMITS)
    assert not decision.trips_breaker
    assert halt(manual, "breaker", HaltKind.DAILY_LOSS) == manual
    assert trip_breaker(manual, decision) == manual
    # But a manual halt replaces a breaker halt.
    breaker = halt(account(), "breaker", HaltKind.DAILY_LOSS)
    assert halt(breaker, "operator").halt_kind is HaltKind.MANUAL


def test_resume_lifts_the_halt():
    state = resume(halt(account(), "operator"))
    assert not state.halted and state.halt_reason is None and state.halt_kind is None
    assert check_order(state, order(), LIMITS).approved


def test_no_start_of_day_nlv_cannot_pass():
    decision = check_order(account(start_of_day_nlv=0.0), order(), LIMITS)
    assert decision.failed_checks == (CHECK_DAILY_LOSS,)
    assert "start-of-day NLV is $0.00" in decision.reasons[0]
    assert not decision.trips_breaker


# ------------------------------------------------------------------ positions


@pytest.mark.parametrize(("open_now", "fails"), [(8, False), (9, False), (10, True)])
def test_max_open_positions_boundary(open_now, fails):
    # 9 open + this order = 10: at the limit, passes. 10 open + 1 = 11: over.
    decision = check_order(account(open_positions=open_now), order(), LIMITS)
    assert (CHECK_MAX_OPEN_POSITIONS in decision.failed_checks) is fails
    assert decision.approved is (not fails)


def test_max_open_positions_reason():
    decision = check_order(account(open_positions=10), order(), LIMITS)
    assert decision.reasons == ("max open positions: 10 open + this order = 11 > 10 (MAX_OPEN_POSITIONS)",)


@pytest.mark.parametrize(("new_today", "fails"), [(8, False), (9, False), (10, True)])
def test_max_new_positions_per_day_boundary(new_today, fails):
    decision = check_order(account(new_positions_today=new_today), order(), LIMITS)
    assert (CHECK_MAX_NEW_POSITIONS in decision.failed_checks) is fails
    assert decision.approved is (not fails)


def test_max_new_positions_reason():
    decision = check_order(account(new_positions_today=10, open_positions=2), order(), LIMITS)
    assert decision.reasons == (
        "max new positions per day: 10 opened today + this order = 11 > 10 (MAX_NEW_POSITIONS_PER_DAY)",
    )


# ------------------------------------------------------------------ margin


@pytest.mark.parametrize(
    ("order_margin", "fails"),
    [
        (4_999.0, False),  # (75,000 + 4,999) / 100,000 = 79.999 %
        (5_000.0, False),  # 80.000 %: at the limit
        (5_001.0, True),   # 80.001 %
    ],
)
def test_margin_utilization_boundary(order_margin, fails):
    state = account(init_margin_used=75_000.0)
    decision = check_order(state, order(order_margin), LIMITS)
    assert (CHECK_MARGIN_UTILIZATION in decision.failed_checks) is fails
    assert decision.approved is (not fails)


def test_margin_utilization_at_the_limit_despite_float_noise():
    # (9.97 + 79,990.35) / 100,000.40 is exactly 80 % in decimals; binary floats give
    # 0.8000000000000002. At the limit passes.
    assert (9.97 + 79_990.35) / 100_000.40 > 0.8
    state = account(start_of_day_nlv=100_000.40, current_nlv=100_000.40, init_margin_used=9.97)
    decision = check_order(state, order(79_990.35), LIMITS)
    assert CHECK_MARGIN_UTILIZATION not in decision.failed_checks


def test_margin_utilization_reason():
    decision = check_order(account(init_margin_used=60_000.0, current_nlv=98_000.0), order(22_500.0, sector=None), LIMITS)
    # (60,000 + 22,500) / 98,000 = 84.18 %
    assert (
        "margin utilization after the order 84.18% > 80.00% (MAX_MARGIN_UTILIZATION): initial margin "
        "$60,000.00 + order $22,500.00 on NLV $98,000.00"
    ) in decision.reasons


# ------------------------------------------------------------------ sectors


@pytest.mark.parametrize(
    ("order_margin", "fails"),
    [
        (4_000.0, False),  # (19,000 + 4,000) / 80,000 = 28.75 %
        (5_000.0, False),  # 24,000 / 80,000 = 30.00 %: at the limit
        (5_001.0, True),   # 24,001 / 80,000 = 30.00125 %
    ],
)
def test_sector_concentration_boundary_against_the_margin_capacity(order_margin, fails):
    # Book after the order about 44,000 < capacity 0.80 x 100,000 = 80,000: capacity is the base.
    state = account(init_margin_used=39_000.0, open_positions=4,
                    sector_margin={"Technology": 19_000.0, "Energy": 20_000.0})
    decision = check_order(state, order(order_margin), LIMITS)
    assert (CHECK_SECTOR_CONCENTRATION in decision.failed_checks) is fails
    assert decision.approved is (not fails)


def test_sector_concentration_reason_against_the_capacity():
    state = account(sector_margin={"Technology": 19_000.0})
    decision = check_order(state, order(6_000.0), LIMITS)
    # 25,000 / 80,000 = 31.25 %
    assert decision.reasons == (
        "sector concentration: Technology would hold $25,000.00 = 31.25% of the margin capacity "
        "(MAX_MARGIN_UTILIZATION x NLV) $80,000.00 > 30.00% (MAX_SECTOR_CONCENTRATION)",
    )


def test_sector_concentration_against_the_book_when_it_exceeds_the_capacity():
    # NLV 50,000: capacity 40,000. Book 50,000 already exceeds it.
    state = account(start_of_day_nlv=50_000.0, current_nlv=50_000.0, init_margin_used=30_000.0,
                    sector_margin={"Technology": 10_000.0, "Energy": 20_000.0, "Health": 20_000.0})
    small = check_order(state, order(5_000.0), LIMITS)
    # Technology 15,000 / book 55,000 = 27.27 %: passes (margin: 35,000 / 50,000 = 70 %).
    assert small.approved
    large = check_order(state, order(10_000.0), LIMITS)
    # 20,000 / 60,000 = 33.33 %.
    assert large.failed_checks == (CHECK_SECTOR_CONCENTRATION,)
    assert "= 33.33% of the margin book $60,000.00" in large.reasons[0]


def test_unknown_sector_is_one_sector_of_its_own():
    assert sector_of("aapl", {"AAPL": "Technology"}) == "Technology"
    assert sector_of("XYZ", {"AAPL": "Technology"}) == UNKNOWN_SECTOR
    assert order(sector=None).sector == UNKNOWN_SECTOR
    assert order(sector="  ").sector == UNKNOWN_SECTOR
    state = account(sector_margin={UNKNOWN_SECTOR: 20_000.0, "Technology": 20_000.0})
    # Unknown: (20,000 + 5,000) / 80,000 = 31.25 % > 30 %; an order in a third sector passes.
    assert check_order(state, order(sector=None), LIMITS).failed_checks == (CHECK_SECTOR_CONCENTRATION,)
    assert "Unknown would hold $25,000.00" in check_order(state, order(sector=None), LIMITS).reasons[0]
    assert check_order(state, order(sector="Energy"), LIMITS).approved


# ------------------------------------------------------------------ all together


def test_every_failure_is_reported_in_order():
    state = halt(account(pnl_today=-2_000.0, open_positions=10, new_positions_today=10,
                         init_margin_used=79_000.0, sector_margin={"Technology": 23_000.0}), "operator")
    decision = check_order(state, order(2_000.0), LIMITS)
    assert decision.failed_checks == (
        CHECK_HALT, CHECK_DAILY_LOSS, CHECK_MAX_OPEN_POSITIONS, CHECK_MAX_NEW_POSITIONS,
        CHECK_MARGIN_UTILIZATION, CHECK_SECTOR_CONCENTRATION,
    )
    assert len(decision.reasons) == 6


def test_a_batch_counts_each_approved_order_before_the_next():
    state = account(start_of_day_nlv=1_000_000.0, current_nlv=1_000_000.0)
    approved = 0
    for index in range(11):
        proposal = order(5_000.0, sector=f"S{index}")
        decision = check_order(state, proposal, LIMITS)
        if decision.approved:
            approved += 1
            state = record_opening(state, proposal)
    assert approved == 10
    assert decision.failed_checks == (CHECK_MAX_OPEN_POSITIONS, CHECK_MAX_NEW_POSITIONS)
    assert state.open_positions == 10 and state.new_positions_today == 10
    assert state.init_margin_used == 50_000.0
    assert state.sector_margin["S0"] == 5_000.0


def test_record_opening_adds_to_the_sector():
    state = record_opening(account(sector_margin={"Technology": 1_000.0}), order(2_500.0))
    assert state.sector_margin == {"Technology": 3_500.0}
    assert record_opening(state, order(is_opening=False)) == state


# ------------------------------------------------------------------ daily reset


def test_session_reset_clears_the_day_and_a_breaker_halt():
    state = account(pnl_today=-2_400.0, current_nlv=97_600.0, open_positions=6, new_positions_today=6)
    state = trip_breaker(state, check_order(state, order(), LIMITS))
    assert state.halted
    tuesday = session_counters_reset(state, TUESDAY)
    assert tuesday.session_day == TUESDAY
    assert tuesday.new_positions_today == 0 and tuesday.pnl_today == 0.0
    assert tuesday.start_of_day_nlv == 97_600.0
    assert tuesday.open_positions == 6  # positions carry over
    assert not tuesday.halted
    assert check_order(tuesday, order(), LIMITS).approved


def test_session_reset_keeps_a_manual_halt():
    state = halt(account(new_positions_today=3), "operator")
    tuesday = session_counters_reset(state, TUESDAY, start_of_day_nlv=101_000.0)
    assert tuesday.halted and tuesday.halt_reason == "operator"
    assert tuesday.start_of_day_nlv == 101_000.0 and tuesday.new_positions_today == 0


def test_session_reset_same_day_is_a_no_op_and_going_back_is_refused():
    state = account(new_positions_today=4)
    assert session_counters_reset(state, MONDAY) is state
    with pytest.raises(ValueError, match="already at 2025-09-08"):
        session_counters_reset(state, date(2025, 9, 5))


# ------------------------------------------------------------------ inputs and speed


def test_bad_state_and_proposals_are_refused():
    with pytest.raises(ValueError, match="open_positions"):
        account(open_positions=-1)
    with pytest.raises(ValueError, match="margin of sector"):
        account(sector_margin={"Energy": -1.0})
    with pytest.raises(ValueError, match="at least one contract"):
        order(contracts=0)
    with pytest.raises(ValueError, match="margin_required"):
        order(float("nan"))


def test_a_check_takes_well_under_a_millisecond_at_p99():
    state = account(open_positions=5, new_positions_today=5, init_margin_used=40_000.0,
                    sector_margin={f"S{i}": 4_000.0 for i in range(10)})
    proposal = order(5_000.0, sector="S3")
    timings = []
    for _ in range(3_000):
        started = wallclock.perf_counter()
        check_order(state, proposal, LIMITS)
        timings.append(wallclock.perf_counter() - started)
    timings.sort()
    p99 = timings[int(len(timings) * 0.99)]
    assert p99 < 0.001, f"p99 {p99 * 1e6:.0f} us"
