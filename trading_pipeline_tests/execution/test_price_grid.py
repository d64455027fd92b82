"""Contract: limits are priced on the contract's price grid, end to end (the real-money bug).

A penny-program put priced above $3 trades in nickels (0.01 below $3, 0.05 at or above): TWS
refuses a limit like 4.67 with error 110. Against the simulated TWS (``sim_gateway``: seed 7,
Monday 2026-11-23 10:00 New York, paper account) through the real adapter, order gateway and
ledger:

- the Sunday session stages an MMM put (bid >= $3) at a limit on the 0.05 grid: the bid-mid
  ratio price rounded up to the next nickel (hand-computed from the quote), not to the cent;
- ``submit_staged`` sends it live and the simulator accepts it at that limit; the cent-rounded
  limit the pipeline used to compute is refused by the simulator with 110 (the bug, shown);
- once it has filled, a monitoring pass on Tuesday places the exit (a time exit under
  TIME_EXIT_DTE 24) as a BUY limit on the same grid: the mid rounded up to the next nickel,
  accepted and working at the simulator;
- the fill manager's re-pricing ladder on that grid (two_tier's ``_on_grid`` over
  ``core.fill_policy``): a cent lowering above $3 moves one nickel instead of standing still,
  a premium floor between grid points is rounded up, and the ladder waits at the floor.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pytest

from trading_pipeline.broker.port import ContractSpec
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.exits import ExitRules
from trading_pipeline.core.intents import IntentPurpose
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.trades import open_trades
from trading_pipeline.trading.clock import BrokerClock
from trading_pipeline.trading.monitor import run_monitor_pass
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway, SubmitOutcome
from trading_pipeline.trading.staging import StagingCandidate, run_sunday_session, submit_staged
from trading_pipeline_tests.sim.conftest import sim_gateway  # noqa: F401  (the fixture)
from trading_pipeline_tests.trading.conftest import SIM_ACCOUNT, connect

DEC18 = date(2026, 12, 18)
# ATM puts cost more than $3; the OTM minimum is switched off for this one candidate.
PARAMS = ExecutionParameters().with_overrides(staging_min_otm_fraction=0.0)


def nickel_up(price: float) -> float:
    """By hand: the next multiple of 0.05 at or above ``price`` (in whole cents)."""
    cents = math.ceil(round(price * 100, 6))
    return (cents + (-cents) % 5) / 100


@pytest.fixture
def engine(tmp_path):
    ledger = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(ledger)
    yield ledger
    ledger.dispose()


@pytest.fixture
def broker(sim_gateway):  # noqa: F811
    adapter = connect(sim_gateway.port)
    try:
        yield adapter
    finally:
        adapter.disconnect()


def ratio_price(bid: float, ask: float) -> float:
    return bid + PARAMS.limit_bid_mid_ratio * ((bid + ask) / 2 - bid)


def cent_up(price: float) -> float:
    return math.ceil(round(price * 100, 6)) / 100


def put_the_bug_hits(broker):
    """The cheapest MMM December put with a bid at or above $3 whose ratio price rounded to
    the cent (the old computation) is not a nickel."""
    [stock] = broker.qualify(ContractSpec.stock("MMM"))
    puts = broker.strikes_near("MMM", DEC18, broker.quotes([stock])[0].price, count=10, side="both")
    hit = [q for q in broker.quotes(puts)
           if q.bid and q.bid >= 3.0 and cent_up(ratio_price(q.bid, q.ask)) != nickel_up(ratio_price(q.bid, q.ask))]
    return min(hit, key=lambda q: q.bid)


def test_a_penny_program_put_above_three_dollars_is_staged_sent_and_exited_on_nickels(sim_gateway, broker, engine):  # noqa: F811
    sim = sim_gateway.broker
    clock = BrokerClock(broker, rate=0)
    quote = put_the_bug_hits(broker)
    put, bid, ask = quote.contract, quote.bid, quote.ask
    cent_limit = cent_up(ratio_price(bid, ask))                      # what the pipeline used to send
    expected = nickel_up(ratio_price(bid, ask))
    assert bid >= 3.0 and cent_limit != expected

    report = run_sunday_session(broker, engine, clock, PARAMS, sector_map={}, candidates=[
        StagingCandidate("MMM", DEC18, float(put.strike), "P")])
    [outcome] = report.outcomes
    assert outcome.status == "STAGED", outcome.reasons
    assert outcome.limit_price == pytest.approx(expected)

    trade = submit_staged(broker, engine, clock, PARAMS, staged_ids=[outcome.staged_id], dry_run=False,
                          account=SIM_ACCOUNT, sector_map={})
    [result] = trade.results
    assert result.outcome is SubmitOutcome.SENT, result.reasons
    [order] = [o for o in sim_gateway.call(sim.open_orders, None) if o.request.order_ref == result.order_ref]
    assert order.request.lmt_price == pytest.approx(expected) and order.request.action == "SELL"

    # The cent-rounded limit (the old computation) at the same simulator: refused with 110
    # (already by the risk governor's what-if margin request, before any order is placed).
    with OrderGateway(broker, engine, clock, PARAMS, dry_run=False, account=SIM_ACCOUNT, sector_map={}) as gateway:
        [refused] = gateway.submit_batch([IntentSpec(
            session_day=date(2026, 11, 23), purpose=IntentPurpose.ENTRY, ref_id=999, contract=put,
            action="SELL", quantity=1, order_type="LMT", limit_price=cent_limit)])
    assert refused.outcome is SubmitOutcome.REJECTED and refused.intent is None
    assert "minimum price variation" in refused.reasons[0]

    # Filled within the hour (the simulator's fill odds at the mid).
    for _ in range(12):
        sim_gateway.call(sim.advance, timedelta(minutes=5))
        if sim_gateway.call(sim.order, order.client_id, order.order_id).status.value == "Filled":
            break
    assert sim_gateway.call(sim.order, order.client_id, order.order_id).status.value == "Filled"

    # Monday's pass records the fill: the ledger opens the trade (sold with 25 days left).
    run_monitor_pass(engine, broker, clock=clock, rules=ExitRules(), auto_exit=False, account=SIM_ACCOUNT,
                     params=PARAMS)
    assert [t.symbol for t in open_trades(engine)] == ["MMM"]

    # Tuesday 10:00: 24 days left. A time exit under TIME_EXIT_DTE 24 (the trade opened with 25,
    # outside that window): a BUY limit at the mid rounded up to the next nickel (the quote is
    # on the grid, so that is at most the ask).
    sim_gateway.call(sim.advance_to, datetime(2026, 11, 24, 10, 0, tzinfo=NEW_YORK).astimezone(timezone.utc))
    rules = ExitRules(time_exit_dte=24)
    report = run_monitor_pass(engine, broker, clock=clock, rules=rules, auto_exit=True, dry_run=False,
                              account=SIM_ACCOUNT, params=PARAMS, fill_wait_seconds=0.5)
    now_quote = broker.quotes([put])[0]
    assert now_quote.bid >= 3.0                                   # still in the nickel band
    exit_limit = nickel_up((now_quote.bid + now_quote.ask) / 2)
    assert cent_up((now_quote.bid + now_quote.ask) / 2) != exit_limit      # cents would be refused
    [action] = report.exits
    assert action.outcome == "SENT" and action.order_type == "LMT"
    assert action.limit_price == pytest.approx(exit_limit)
    [exit_order] = [o for o in sim_gateway.call(sim.open_orders, None) if o.request.action == "BUY"]
    assert exit_order.request.lmt_price == pytest.approx(exit_limit) and exit_order.status.value == "Submitted"
    assert [t.symbol for t in open_trades(engine)] == ["MMM"]


# ------------------------------------------------------------------ the re-pricing ladder

from trading_pipeline.core.fill_policy import (  # noqa: E402
    CancelAndReplace,
    LowerLimit,
    MonitoredOrder,
    Wait,
    decide_fill_actions,
)
from trading_pipeline.core.pricing import PENNY_PROGRAM, Quote  # noqa: E402
from trading_pipeline.trading.two_tier import _on_grid  # noqa: E402

UTC = timezone.utc
SENT_AT = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
LADDER = ExecutionParameters()          # lowers by FILL_ADJUSTMENT_INCREMENT 0.01 every 60 s


def ladder_step(order: MonitoredOrder, params: ExecutionParameters = LADDER, quote: Quote | None = None):
    now = SENT_AT + timedelta(seconds=61)
    [action] = decide_fill_actions([order], now, SENT_AT, {order.order_id: quote} if quote else {}, params,
                                   PENNY_PROGRAM)
    return _on_grid(action, order, PENNY_PROGRAM, params.premium_floor)


def test_a_cent_lowering_above_three_dollars_moves_one_nickel():
    # 3.05 - 0.01 = 3.04, the nearest grid point is 3.05 again: the order would never move.
    # One grid step instead: 3.00.
    action = ladder_step(MonitoredOrder("tp-E1", 3.05, 1, SENT_AT))
    assert isinstance(action, LowerLimit) and action.new_limit == pytest.approx(3.00)
    # Below $3 the cent ladder is untouched: 2.50 -> 2.49.
    action = ladder_step(MonitoredOrder("tp-E1", 2.50, 1, SENT_AT))
    assert isinstance(action, LowerLimit) and action.new_limit == pytest.approx(2.49)
    assert "on the price grid" not in action.reason


def test_the_floor_is_a_grid_point_and_the_ladder_stops_there():
    floor_params = LADDER.with_overrides(premium_floor=3.02)
    # 3.10 -> 3.09 -> nearest 3.10: one step is 3.05, above the floor 3.02 (3.05 on the grid).
    action = ladder_step(MonitoredOrder("tp-E1", 3.10, 1, SENT_AT), floor_params)
    assert isinstance(action, LowerLimit) and action.new_limit == pytest.approx(3.05)
    # At 3.05 the next step (3.00) is below the floor: wait.
    assert isinstance(ladder_step(MonitoredOrder("tp-E1", 3.05, 1, SENT_AT), floor_params), Wait)
    # A replaced remainder priced at the raw floor 3.02 goes out at 3.05.
    partial = MonitoredOrder("tp-E1", 3.05, 4, SENT_AT, filled=3)
    action = ladder_step(partial, floor_params, Quote(2.60, 2.80))
    assert isinstance(action, CancelAndReplace) and action.new_limit == pytest.approx(3.05)
