"""core.snapshots, entry side: the one definition of the 98 entry fields (groups, types,
the 8 critical fields), the documented table in docs/snapshots.md, the weighted data-quality
score, and build_entry_snapshot's values from hand-built inputs (missing inputs give None and
a lower score, never an exception). Also the 16 position fields' builder.
"""

from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from trading_pipeline.core.snapshots import (
    CRITICAL_FIELDS,
    ENTRY_FIELD_NAMES,
    ENTRY_FIELDS,
    EXIT_FIELDS,
    FIELD_TYPES,
    POSITION_FIELD_NAMES,
    POSITION_FIELDS,
    AccountFigures,
    EarningsInfo,
    EntryInputs,
    OptionMarket,
    PriceQuote,
    ScanContext,
    TradeTerms,
    build_entry_snapshot,
    build_position_snapshot,
    entry_quality_score,
    fields_from_json,
    fields_to_json,
    is_opex_week,
    with_field_tables,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "snapshots.md"
# Monday 2026-11-23, 10:00 New York.
ENTRY_TIME = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)

# ##### FIXTURES


def terms(**overrides) -> TradeTerms:
    values = dict(trade_id=7, symbol="AAPL", right="P", strike=220.0, expiration=date(2026, 12, 18), side="short",
                  contracts=2, entry_price=1.25, entry_time=ENTRY_TIME, trade_source="execution",
                  strike_selection_method="delta", original_strike=225.0, live_delta=-0.21)
    values.update(overrides)
    return TradeTerms(**values)


def bars(sessions: int = 260) -> pl.DataFrame:
    close = 250 + 0.1 * np.arange(sessions)
    days = pl.date_range(date(2025, 1, 1), date(2025, 1, 1) + (date(2025, 1, 2) - date(2025, 1, 1)) * (sessions - 1),
                         eager=True)
    return pl.DataFrame({"date": days, "open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": np.full(sessions, 2.0e6)})


def full_inputs(**overrides) -> EntryInputs:
    values = dict(
        trade=terms(), captured_at=ENTRY_TIME,
        option=OptionMarket(bid=1.20, ask=1.30, last=1.25, volume=150, open_interest=2_000, bid_size=10,
                            ask_size=12, delta=-0.20, gamma=0.01, theta=-0.05, vega=0.20, iv=0.32,
                            model_price=1.26, underlying_price=250.0),
        stock=PriceQuote(250.0, 252.0), stock_bars=bars(),
        spy=PriceQuote(660.0, 650.0), qqq=PriceQuote(600.0, 600.0), iwm=PriceQuote(240.0, 250.0),
        vix=PriceQuote(20.0, 16.0), spy_bars=bars(60), sector="Information Technology",
        sector_etf=PriceQuote(101.0, 100.0), earnings=EarningsInfo(date(2026, 12, 3), "AMC"),
        account=AccountFigures(net_liquidation=100_000.0, buying_power=400_000.0, init_margin_req=12_000.0),
        margin_requirement=8_000.0,
        scan=ScanContext(sector="Information Technology", margin_per_contract=3_900.0,
                         strike_selection_outcome="SELECTED", iv_rank=55.0, scan_score=82.5, scan_grade="B",
                         scan_rank=3, scan_profit_prob_pct=84.0),
    )
    values.update(overrides)
    return EntryInputs(**values)


# ##### TESTS


def test_the_field_counts_and_the_seeds_group_sizes():
    assert (len(ENTRY_FIELDS), len(POSITION_FIELDS), len(EXIT_FIELDS)) == (98, 16, 24)
    groups = Counter(f.group for f in ENTRY_FIELDS)
    assert {g: groups[g] for g in ("option_pricing", "technical", "market_context", "trade_parameters", "earnings",
                                   "risk", "metadata")} == {
        "option_pricing": 8, "technical": 18, "market_context": 14, "trade_parameters": 8, "earnings": 3,
        "risk": 5, "metadata": 6}
    assert Counter(f.group for f in EXIT_FIELDS) == {"exit_details": 8, "context_changes": 6, "path_analysis": 6,
                                                     "quality": 4}
    for fields in (ENTRY_FIELDS, POSITION_FIELDS, EXIT_FIELDS):
        assert len({f.name for f in fields}) == len(fields)
        assert all(f.type in FIELD_TYPES and f.meaning and f.source for f in fields)
    assert {"strike_selection_method", "original_strike", "live_delta"} <= set(ENTRY_FIELD_NAMES)


def test_exactly_the_eight_critical_fields_are_flagged():
    assert set(CRITICAL_FIELDS) == {"delta", "iv", "iv_rank", "vix", "dte", "trend_direction", "days_to_earnings",
                                    "margin_efficiency_pct"}
    assert {f.name for f in ENTRY_FIELDS if f.critical} == set(CRITICAL_FIELDS)


def test_the_position_fields_are_the_table_columns_plus_trade_day_and_time():
    from trading_pipeline.ledger.schema import position_snapshots

    stored = {c.name for c in position_snapshots.columns} - {"id", "dagster_run_id"}
    assert set(POSITION_FIELD_NAMES) == stored


def test_docs_list_every_field_as_defined():
    document = DOC.read_text(encoding="utf-8")
    assert with_field_tables(document) == document, (
        "docs/snapshots.md is out of date; regenerate its tables with core.snapshots.with_field_tables")
    for name in ENTRY_FIELD_NAMES:
        assert f"| {name} |" in document or f"| **{name}** (critical) |" in document


def test_quality_score_weighs_critical_fields_twice():
    everything = set(ENTRY_FIELD_NAMES)
    assert entry_quality_score(everything) == 1.0
    assert entry_quality_score(everything - {"days_to_earnings", "iv_rank"}) == pytest.approx(102 / 106, abs=1e-6)
    assert entry_quality_score(everything - {"rsi_14", "bid"}) == pytest.approx(104 / 106, abs=1e-6)
    assert entry_quality_score(set()) == 0.0


def test_a_full_entry_snapshot_from_hand_built_inputs():
    snapshot = build_entry_snapshot(full_inputs())
    f = snapshot.fields
    assert list(f) == list(ENTRY_FIELD_NAMES)
    assert snapshot.fields_present == 98 and snapshot.critical_fields_present == 8
    assert snapshot.data_quality_score == 1.0 and snapshot.all_critical_present
    assert f["dte"] == 25 and f["days_to_earnings"] == 10 and f["earnings_timing"] == "AMC"
    assert f["earnings_before_expiration"] is True
    assert f["otm_pct"] == pytest.approx((250 - 220) / 250 * 100)  # 12 %
    assert f["premium_total"] == pytest.approx(250.0)  # 1.25 x 100 x 2
    assert f["margin_efficiency_pct"] == pytest.approx(250 / 8_000 * 100)
    assert f["buying_power_impact_pct"] == pytest.approx(2.0)
    assert f["portfolio_heat_pct"] == pytest.approx(12.0)
    assert f["max_loss"] == pytest.approx((220 - 1.25) * 200)
    assert f["return_pct"] == pytest.approx(1.25 / 218.75 * 100)
    assert f["annualized_return_pct"] == pytest.approx(1.25 / 218.75 * 100 * 365 / 25)
    assert f["breakeven_price"] == pytest.approx(218.75)
    assert f["prob_otm_pct"] == pytest.approx(80.0)
    assert f["mid_price"] == 1.25 and f["bid_ask_spread"] == pytest.approx(0.10) and f["spread_pct"] == pytest.approx(8.0)
    assert f["spy_change_pct"] == pytest.approx(10 / 650 * 100) and f["iwm_change_pct"] == pytest.approx(-4.0)
    assert f["vix"] == 20.0 and f["vix_change_pct"] == pytest.approx(25.0) and f["vix_regime"] == "normal"
    assert f["sector_change_pct"] == pytest.approx(1.0)
    assert f["trend_direction"] == "up" and f["market_trend"] == "up"  # steadily rising bars
    assert f["day_of_week"] == "Monday" and f["is_opex_week"] is False
    assert f["iv_rank"] == 55.0 and f["scan_grade"] == "B" and f["strike_selection_outcome"] == "SELECTED"
    assert f["iv_hv_ratio"] == pytest.approx(0.32 / f["realized_vol_20"])
    assert f["entry_time"] == ENTRY_TIME and f["fields_version"] == 1


def test_missing_inputs_give_none_fields_and_a_lower_score_never_an_exception():
    bare = build_entry_snapshot(EntryInputs(trade=terms(), captured_at=ENTRY_TIME))
    f = bare.fields
    assert f["delta"] is None and f["vix"] is None and f["rsi_14"] is None and f["days_to_earnings"] is None
    assert f["dte"] == 25 and f["premium_total"] == pytest.approx(250.0)
    assert bare.critical_fields_present == 1  # dte only
    assert 0 < bare.data_quality_score < 0.5
    # The staged margin per contract stands in for a missing what-if margin.
    staged = build_entry_snapshot(EntryInputs(trade=terms(), captured_at=ENTRY_TIME,
                                              scan=ScanContext(margin_per_contract=4_000.0)))
    assert staged.fields["margin_requirement"] == 8_000.0
    # Nonsense values never become "present".
    odd = build_entry_snapshot(full_inputs(option=OptionMarket(bid=float("nan"), ask=-1.0, iv=0.0, delta=float("inf")),
                                           stock_bars=pl.DataFrame({"x": [1]}), margin_requirement=0.0,
                                           scan=None, vix=PriceQuote(None, None)))
    assert odd.fields["bid"] is None and odd.fields["iv"] is None and odd.fields["delta"] is None
    assert odd.fields["margin_efficiency_pct"] is None and odd.fields["vix"] is None
    assert odd.data_quality_score < 1.0


def test_json_round_trip_keeps_dates_and_times():
    fields = build_entry_snapshot(full_inputs()).fields
    stored = fields_to_json(fields)
    assert stored["expiration"] == "2026-12-18" and stored["entry_time"] == "2026-11-23T15:00:00+00:00"
    assert fields_from_json(stored) == fields


@pytest.mark.parametrize(("day", "expected"), [
    (date(2026, 11, 16), True), (date(2026, 11, 20), True),  # the week of Friday 2026-11-20
    (date(2026, 11, 23), False), (date(2026, 12, 14), True), (date(2026, 12, 21), False),
])
def test_opex_week_holds_the_third_friday(day, expected):
    assert is_opex_week(day) is expected


def test_position_snapshot_follows_the_monitoring_rule():
    row = build_position_snapshot(
        terms(open_contracts=1), trading_day=date(2026, 11, 27), captured_at=ENTRY_TIME,
        option=OptionMarket(bid=0.40, ask=0.50, delta=-0.1, gamma=0.01, theta=-0.04, vega=0.1, iv=0.3),
        stock_price=240.0, vix=18.5, spy_price=661.0)
    assert list(row) == list(POSITION_FIELD_NAMES)
    assert row["current_premium"] == 0.45
    assert row["current_pnl"] == pytest.approx((1.25 - 0.45) * 100)  # one contract still open
    assert row["current_pnl_pct"] == pytest.approx(64.0)
    assert row["dte_remaining"] == 21
    assert row["distance_to_strike_pct"] == pytest.approx(20 / 240 * 100)
    empty = build_position_snapshot(terms(), trading_day=date(2026, 11, 27), captured_at=ENTRY_TIME, option=None,
                                    stock_price=None, vix=None, spy_price=None)
    assert empty["current_pnl"] is None and empty["distance_to_strike_pct"] is None and empty["dte_remaining"] == 21
    closed = build_position_snapshot(terms(open_contracts=0), trading_day=date(2026, 11, 27), captured_at=ENTRY_TIME,
                                     option=OptionMarket(bid=0.4, ask=0.5), stock_price=240.0, vix=None,
                                     spy_price=None)
    assert closed["current_pnl"] is None and closed["stock_price"] == 240.0


@pytest.mark.parametrize(
    ("bid", "ask", "last", "close", "mid", "mark"),
    [
        (0.0, 0.05, None, 0.10, 0.025, 0.025),  # a zero bid counts, as in monitoring
        (0.50, 0.60, 0.58, 0.40, 0.55, 0.55),
        (None, None, 0.58, 0.40, None, 0.58),  # no quote: the last price
        (None, None, None, 0.40, None, 0.40),  # nothing today: the previous close (snapshots only)
        (0.70, 0.60, None, None, None, None),  # crossed: no mid
    ],
)
def test_snapshot_mid_and_mark_follow_the_positions_rule(bid, ask, last, close, mid, mark):
    from trading_pipeline.core.positions import position_mark, position_mid

    option = OptionMarket(bid=bid, ask=ask, last=last, close=close)
    assert option.mid == mid
    assert option.mark == mark
    if mid is not None:
        assert option.mid == pytest.approx(position_mid(bid, ask))
    if last is not None or mid is not None:
        assert option.mark == pytest.approx(position_mark(bid, ask, last))
