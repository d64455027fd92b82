"""trading.snapshots on the simulator, through the real IBKR adapter: an entry capture of an
open trade fills the 98 fields from the broker and the ledger (values agree with what the
broker itself reports), a broker failure is recorded as a failed snapshot and never raised
(a later capture replaces it), data gaps leave a partial snapshot with its reasons, position
snapshots cover every open trade, and the exit capture analyses the stored path.
"""

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
import talib
from sqlalchemy import insert

from trading_pipeline.broker.port import ContractSpec, OrderRequest
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.ingest.earnings import parse_earnings_calendar
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import scan_candidates, scan_imports
from trading_pipeline.ledger.snapshots import get_entry_snapshot, get_exit_snapshot, list_position_snapshots
from trading_pipeline.ledger.staging import insert_staged
from trading_pipeline.ledger.trades import close_trade, get_trade
from trading_pipeline.trading.clock import BrokerClock
from trading_pipeline.trading.snapshots import (
    capture_entry_snapshot,
    capture_exit_snapshot,
    capture_position_snapshots,
)
from trading_pipeline_tests.snapshots.conftest import AAPL_EXPIRY, open_put
from trading_pipeline_tests.trading.conftest import connect

MONDAY = date(2026, 11, 23)
EARNINGS = parse_earnings_calendar("symbol,date,timing\nAAPL,2027-01-28,AMC\n", source="test calendar")

# ##### FIXTURES


def staged_from_scan(engine, *, iv_rank: float = 61.5) -> int:
    """A staged AAPL 220 put whose screener row had this IV rank (what the Sunday session leaves)."""
    at = datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)
    with write_transaction(engine) as connection:
        scan_id = connection.execute(insert(scan_imports).values(
            partition_key="export.csv", source_path="/export.csv", file_name="export.csv", sha256="0" * 64,
            export_date=date(2026, 11, 20), export_date_source="footer", total_rows=1, valid_rows=1,
            invalid_rows=0, selected_rows=1, rejected_rows=0, top_n=10, diversify=True, max_per_symbol=1,
            min_score=0.0, imported_at=at).returning(scan_imports.c.id)).scalar_one()
        candidate = connection.execute(insert(scan_candidates).values(
            scan_import_id=scan_id, symbol="AAPL", iv_rank_pct=iv_rank, score=81.0, grade="B", rank=1,
            profit_prob_pct=88.0, rejected=False).returning(scan_candidates.c.id)).scalar_one()
    return insert_staged(engine, [{"session_day": MONDAY, "symbol": "AAPL", "expiration": AAPL_EXPIRY,
                                   "strike": 220.0, "contracts": 2, "scan_candidate_id": candidate,
                                   "margin_per_contract": 2500.0}], at=at)[0]


# ##### TESTS


def test_entry_capture_of_an_open_trade(engine, broker, clock):
    trade = open_put(engine, staged_opportunity_id=staged_from_scan(engine), strike_selection_method="delta",
                     original_strike=225.0, live_delta=-0.05)
    outcome = capture_entry_snapshot(engine, broker, trade, clock=clock, earnings=EARNINGS)

    assert outcome.status == "captured" and outcome.written and not outcome.problems
    assert outcome.critical_fields_present == 8 and outcome.data_quality_score > 0.95
    stored = get_entry_snapshot(engine, trade.id)
    assert stored.fields_present == outcome.fields_present and stored.captured_at == clock.now()
    f = stored.fields

    # The values are the broker's own.
    option, stock = broker.qualify(ContractSpec.option("AAPL", AAPL_EXPIRY, 220.0, "P"), ContractSpec.stock("AAPL"))
    quote = broker.quotes([option])[0]
    assert (f["delta"], f["iv"], f["bid"], f["ask"]) == (quote.greeks.delta, quote.greeks.implied_vol, quote.bid,
                                                        quote.ask)
    bars = broker.daily_bars(stock, 260, end=MONDAY)
    closes = np.array([b.close for b in bars])
    assert f["rsi_14"] == pytest.approx(talib.RSI(closes, 14)[-1])
    assert f["stock_price"] == broker.quotes([stock])[0].price
    margin = broker.what_if_margin(option, OrderRequest.limit("SELL", 2, 0.57)).init_margin_change
    assert f["margin_requirement"] == margin
    assert f["margin_efficiency_pct"] == pytest.approx(114.0 / margin * 100)
    assert f["vix"] == 17.0 and f["sector"] == "Information Technology"
    assert f["dte"] == 25 and f["days_to_earnings"] == 66 and f["earnings_timing"] == "AMC"
    assert f["iv_rank"] == 61.5 and f["scan_grade"] == "B" and f["original_strike"] == 225.0
    assert f["trend_direction"] in ("up", "down", "sideways") and f["trade_source"] == "manual"


def test_the_margin_what_if_of_an_averaged_entry_price_sits_on_the_price_grid(engine, broker, clock):
    # Two fills at 0.57 and 0.575 average 0.5725: TWS (and the simulator) refuse a what-if
    # limit off the contract's grid with error 110, which left the margin field empty.
    trade = open_put(engine, entry_price=0.5725)
    outcome = capture_entry_snapshot(engine, broker, trade, clock=clock, earnings=EARNINGS)
    assert not any("margin" in problem for problem in outcome.problems)
    option = broker.qualify(ContractSpec.option("AAPL", AAPL_EXPIRY, 220.0, "P"))[0]
    margin = broker.what_if_margin(option, OrderRequest.limit("SELL", 2, 0.57)).init_margin_change
    assert get_entry_snapshot(engine, trade.id).fields["margin_requirement"] == margin


def test_a_broker_failure_is_recorded_not_raised_and_a_later_capture_replaces_it(engine, sim_gateway):
    trade = open_put(engine)
    down = connect(sim_gateway.port)
    down.disconnect()  # the connection is gone before the capture asks anything
    failed = capture_entry_snapshot(engine, down, trade, clock=BrokerClock(down, rate=0), earnings=EARNINGS)
    assert failed.failed and failed.written and "not connected" in failed.error
    stored = get_entry_snapshot(engine, trade.id)
    assert stored.status == "failed" and "not connected" in stored.error and stored.fields is None

    up = connect(sim_gateway.port)
    try:
        retried = capture_entry_snapshot(engine, up, trade, clock=BrokerClock(up, rate=0), earnings=EARNINGS)
    finally:
        up.disconnect()
    assert retried.written and retried.status == "partial"  # no staging row: no IV rank
    assert retried.critical_fields_present == 7 and retried.snapshot_id == failed.snapshot_id
    assert get_entry_snapshot(engine, trade.id).fields["delta"] is not None


def test_data_gaps_leave_a_partial_snapshot_with_its_reasons(engine, broker, clock):
    # An option the broker does not list (strike 221) and no earnings file: fields from the
    # ledger and the rest of the market are still there.
    trade = open_put(engine, strike=221.0)
    outcome = capture_entry_snapshot(engine, broker, trade, clock=clock, earnings=parse_earnings_calendar(
        "symbol,date\n", source="empty calendar"))
    assert outcome.status == "partial" and outcome.written
    assert any("AAPL 2026-12-18 221 P" in problem for problem in outcome.problems)
    f = get_entry_snapshot(engine, trade.id).fields
    assert f["delta"] is None and f["margin_requirement"] is None and f["days_to_earnings"] is None
    assert f["dte"] == 25 and f["vix"] == 17.0 and f["rsi_14"] is not None
    assert "221" in get_entry_snapshot(engine, trade.id).error


def test_position_snapshots_then_the_exit_snapshot_with_its_path(engine, broker, clock, sim_gateway):
    trade = open_put(engine)
    unknown = open_put(engine, key="manual:aapl-221", strike=221.0, contracts=1)
    assert capture_entry_snapshot(engine, broker, trade, clock=clock, earnings=EARNINGS).status == "partial"

    monday = capture_position_snapshots(engine, broker, trading_day=MONDAY, clock=clock, dagster_run_id="run-1")
    assert [row["trade_id"] for row in monday] == [trade.id, unknown.id]
    assert monday[0]["current_premium"] is not None and monday[0]["dte_remaining"] == 25 and not monday[0]["problems"]
    assert monday[1]["current_premium"] is None and monday[1]["stock_price"] is not None and monday[1]["problems"]

    sim_gateway.call(sim_gateway.broker.advance, timedelta(days=1, hours=6))  # Tuesday 16:00 New York
    assert clock.now().astimezone(NEW_YORK).hour == 16
    capture_position_snapshots(engine, broker, trading_day=date(2026, 11, 24), clock=clock)
    path = list_position_snapshots(engine, trade_id=trade.id)
    assert [row["trading_day"] for row in path] == [MONDAY, date(2026, 11, 24)]
    assert path[0]["dagster_run_id"] == "run-1"

    closed = close_trade(engine, trade.id, exit_price=0.30, exit_reason="profit_target", exit_time=clock.now(),
                         exit_commission=2.6, at=clock.now())
    outcome = capture_exit_snapshot(engine, broker, closed, clock=clock)
    assert outcome.status == "captured" and outcome.written
    f = get_exit_snapshot(engine, trade.id).fields
    assert f["path_days"] == 2 and f["days_held"] == 1 and f["exit_reason"] == "profit_target"
    assert f["gross_pnl"] == pytest.approx(54.0) and f["roi_pct"] == pytest.approx(54 / 114 * 100)
    assert f["max_profit"] == pytest.approx(max([54.0] + [row["current_pnl"] for row in path]))
    assert f["closest_to_strike_pct"] <= min(row["distance_to_strike_pct"] for row in path)
    assert 0 <= f["trade_quality_score"] <= 1 and f["exit_iv"] is not None
    assert get_trade(engine, unknown.id).is_open


def test_an_exit_capture_of_an_open_trade_is_recorded_as_failed(engine, broker, clock):
    trade = open_put(engine)
    outcome = capture_exit_snapshot(engine, broker, trade, clock=clock)
    assert outcome.failed and "not closed yet" in outcome.error
    assert get_exit_snapshot(engine, trade.id).status == "failed"
