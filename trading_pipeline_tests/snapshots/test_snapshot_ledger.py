"""ledger.snapshots on SQLite and PostgreSQL: one entry and one exit snapshot per trade (a new
capture replaces a failed one only; a failure never replaces a good one), failed captures
kept with their error, position snapshots upserted per trade and trading day in one
transaction, and the staging context (staged row + screener row) of a trade.
"""

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from trading_pipeline.core.snapshots import ENTRY_FIELD_NAMES
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import scan_candidates, scan_imports
from trading_pipeline.ledger.snapshots import (
    get_entry_snapshot,
    get_exit_snapshot,
    list_entry_snapshots,
    list_position_snapshots,
    record_failed_entry_snapshot,
    record_failed_exit_snapshot,
    save_entry_snapshot,
    save_exit_snapshot,
    save_position_snapshots,
    staging_context,
)
from trading_pipeline.ledger.staging import insert_staged
from trading_pipeline.ledger.trades import NewTrade, open_trade

AT = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)

# ##### FIXTURES


@pytest.fixture
def trade_id(ledger_engine) -> int:
    return open_trade(ledger_engine, NewTrade(
        trade_key="manual:1", trade_source="manual", symbol="AAPL", right="P", strike=220.0,
        expiration=date(2026, 12, 18), side="short", contracts=1, entry_price=1.25, entry_time=AT), at=AT).id


def entry_fields(**values) -> dict:
    fields = dict.fromkeys(ENTRY_FIELD_NAMES)
    fields.update(expiration=date(2026, 12, 18), entry_time=AT, delta=-0.2, dte=25)
    fields.update(values)
    return fields


def save_entry(engine, trade_id, status="captured", **values):
    return save_entry_snapshot(engine, trade_id, captured_at=AT, status=status, fields=entry_fields(**values),
                               fields_present=4, data_quality_score=0.05, critical_fields_present=2)


def position_row(trade_id, day, pnl, **values) -> dict:
    row = dict(trade_id=trade_id, trading_day=day, captured_at=AT, current_premium=1.0, current_pnl=pnl,
               current_pnl_pct=pnl / 125 * 100, dte_remaining=(date(2026, 12, 18) - day).days, delta=-0.2,
               gamma=0.01, theta=-0.03, vega=0.1, iv=0.3, stock_price=250.5, distance_to_strike_pct=12.2,
               vix=17.0, spy_price=665.25)
    row.update(values)
    return row


# ##### TESTS


def test_entry_snapshot_round_trip(ledger_engine, trade_id):
    saved = save_entry(ledger_engine, trade_id)
    assert saved.written
    stored = get_entry_snapshot(ledger_engine, trade_id)
    assert stored.status == "captured" and stored.data_quality_score == 0.05 and stored.critical_fields_present == 2
    assert stored.fields["expiration"] == date(2026, 12, 18) and stored.fields["entry_time"] == AT
    assert stored.fields["delta"] == -0.2 and set(stored.fields) == set(ENTRY_FIELD_NAMES)


def test_a_second_capture_never_replaces_a_good_snapshot(ledger_engine, trade_id):
    save_entry(ledger_engine, trade_id, delta=-0.2)
    again = save_entry(ledger_engine, trade_id, status="partial", delta=-0.9)
    assert not again.written and again.snapshot.fields["delta"] == -0.2
    failure = record_failed_entry_snapshot(ledger_engine, trade_id, captured_at=AT, error="boom")
    assert not failure.written and failure.snapshot.status == "captured"
    assert get_entry_snapshot(ledger_engine, trade_id).error is None


def test_a_failed_capture_is_kept_then_replaced_by_a_capture(ledger_engine, trade_id):
    failed = record_failed_entry_snapshot(ledger_engine, trade_id, captured_at=AT, error="BrokerDisconnected: down")
    assert failed.written and failed.snapshot.failed and failed.snapshot.fields is None
    assert get_entry_snapshot(ledger_engine, trade_id).error == "BrokerDisconnected: down"
    # Another failure changes nothing; a capture replaces it.
    assert not record_failed_entry_snapshot(ledger_engine, trade_id, captured_at=AT, error="again").written
    replaced = save_entry(ledger_engine, trade_id, status="partial")
    assert replaced.written and replaced.snapshot.status == "partial" and replaced.snapshot.id == failed.snapshot.id
    assert [s.status for s in list_entry_snapshots(ledger_engine)] == ["partial"]


def test_exit_snapshot_rules_are_the_same(ledger_engine, trade_id):
    assert record_failed_exit_snapshot(ledger_engine, trade_id, captured_at=AT, error="down").written
    saved = save_exit_snapshot(ledger_engine, trade_id, captured_at=AT, status="captured",
                               fields={"exit_date": date(2026, 12, 1), "win": True}, fields_present=2,
                               trade_quality_score=0.8)
    assert saved.written and saved.snapshot.trade_quality_score == 0.8
    assert get_exit_snapshot(ledger_engine, trade_id).fields == {"exit_date": date(2026, 12, 1), "win": True}
    with pytest.raises(ValueError, match="status"):
        save_exit_snapshot(ledger_engine, trade_id, captured_at=AT, status="fine", fields={}, fields_present=0,
                           trade_quality_score=None)


def test_position_snapshots_upsert_per_trade_and_day(ledger_engine, trade_id):
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    assert save_position_snapshots(ledger_engine, [position_row(trade_id, monday, 10.0),
                                                   position_row(trade_id, tuesday, 20.0)], dagster_run_id="r1") == 2
    # A re-run of Tuesday replaces its values (and its run id).
    save_position_snapshots(ledger_engine, [position_row(trade_id, tuesday, 35.5, vix=None)], dagster_run_id="r2")
    rows = list_position_snapshots(ledger_engine, trade_id=trade_id)
    assert [(r["trading_day"], r["current_pnl"], r["dagster_run_id"]) for r in rows] == [
        (monday, 10.0, "r1"), (tuesday, 35.5, "r2")]
    assert rows[1]["vix"] is None and rows[1]["spy_price"] == 665.25
    assert [r["trading_day"] for r in list_position_snapshots(ledger_engine, trading_day=monday)] == [monday]


def test_position_snapshots_are_all_or_nothing(ledger_engine, trade_id):
    good = position_row(trade_id, date(2026, 11, 23), 10.0)
    bad = position_row(trade_id + 99, date(2026, 11, 23), 10.0)  # no such trade
    with pytest.raises(Exception):
        save_position_snapshots(ledger_engine, [good, bad])
    assert list_position_snapshots(ledger_engine) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        save_position_snapshots(ledger_engine, [position_row(trade_id, date(2026, 11, 23), 1.0,
                                                             captured_at=datetime(2026, 11, 23, 16))])


def test_staging_context_joins_the_staged_and_the_screener_row(ledger_engine):
    with write_transaction(ledger_engine) as connection:
        scan_id = connection.execute(insert(scan_imports).values(
            partition_key="x.csv", source_path="/x.csv", file_name="x.csv", sha256="0" * 64,
            export_date=date(2026, 11, 20), export_date_source="footer", total_rows=1, valid_rows=1,
            invalid_rows=0, selected_rows=1, rejected_rows=0, top_n=10, diversify=True, max_per_symbol=1,
            min_score=0.0, imported_at=AT).returning(scan_imports.c.id)).scalar_one()
        candidate_id = connection.execute(insert(scan_candidates).values(
            scan_import_id=scan_id, symbol="AAPL", iv_rank_pct=61.5, score=83.2, grade="B", rank=2,
            profit_prob_pct=86.0, rejected=False).returning(scan_candidates.c.id)).scalar_one()
    staged_id, = insert_staged(ledger_engine, [{
        "session_day": date(2026, 11, 23), "symbol": "AAPL", "expiration": date(2026, 12, 18), "strike": 220.0,
        "contracts": 1, "sector": "Information Technology", "margin_per_contract": 3950.5,
        "scan_candidate_id": candidate_id, "strike_selection_outcome": "SELECTED"}], at=AT - timedelta(days=1))
    assert staging_context(ledger_engine, staged_id) == {
        "sector": "Information Technology", "margin_per_contract": 3950.5, "strike_selection_outcome": "SELECTED",
        "iv_rank_pct": 61.5, "score": 83.2, "grade": "B", "rank": 2, "profit_prob_pct": 86.0}
    assert staging_context(ledger_engine, None) is None and staging_context(ledger_engine, staged_id + 5) is None
