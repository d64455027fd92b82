"""Contract under test: enrichment of imported trades.

``core.enrichment`` (pure) rebuilds a trade's market at entry and exit from daily bars: the
underlying's close of the day (the last bar on or before it, at most 5 days old), the time
to the expiry's close in 365-day years, the implied volatility solved from the traded price
and the greeks at it, VIX's close, and the inputs of the one snapshot definition
(``core.snapshots``); it never raises on missing data and says why an IV does not exist.
``history.enrichment.enrich_trades`` writes entry and exit snapshots (source "enrichment",
status enriched / partial, quality score) for promoted trades (``ibkr_import``) that miss
them, at most ``limit``; re-running adds nothing; with a broker it replaces its own partial
snapshots, never a live one; against the simulator through the IBKR adapter it finds the
market. Expectations are hand-computed (an independent Black-Scholes formula below).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.clock import FixedClock
from trading_pipeline.core.enrichment import (
    bars_frame,
    bars_needed,
    close_of_day,
    day_quote,
    reconstruct_moment,
    reconstruct_trade,
    years_to_expiry,
)
from trading_pipeline.core.snapshots import TradeTerms, build_entry_snapshot, build_exit_snapshot
from trading_pipeline.history.enrichment import BrokerHistory, enrich_trades, trades_to_enrich
from trading_pipeline.ledger.snapshots import (
    get_entry_snapshot,
    get_exit_snapshot,
    save_entry_snapshot,
)
from trading_pipeline.ledger.trades import NewTrade, close_trade, open_trade
from trading_pipeline_tests.sim.conftest import sim_gateway  # noqa: F401 (fixture)

RATE = 0.04
ENTRY = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)  # Monday
EXIT = datetime(2026, 12, 2, 11, 0, tzinfo=NEW_YORK)  # Wednesday of the next week
EXPIRY = date(2026, 12, 18)  # a Friday session: closes 16:00 New York
# 2026-11-23 15:00 UTC to 2026-12-18 21:00 UTC: 25 days and 6 hours.
ENTRY_YEARS = 25.25 / 365
# 2026-12-02 16:00 UTC to 2026-12-18 21:00 UTC: 16 days and 5 hours.
EXIT_YEARS = (16 + 5 / 24) / 365
ENTRY_PRICE, EXIT_PRICE = 2.50, 0.80


# ##### FIXTURES


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def put_price_and_delta(spot: float, strike: float, years: float, vol: float, rate: float = RATE):
    """Black-Scholes European put (no dividend), written out here as the independent check."""
    d1 = (math.log(spot / strike) + (rate + vol * vol / 2) * years) / (vol * math.sqrt(years))
    d2 = d1 - vol * math.sqrt(years)
    price = strike * math.exp(-rate * years) * normal_cdf(-d2) - spot * normal_cdf(-d1)
    return price, -normal_cdf(-d1)


def bars(closes: dict[date, float]) -> pl.DataFrame:
    return bars_frame({"date": d, "open": c, "high": c + 1, "low": c - 1, "close": c, "volume": 1e6}
                      for d, c in closes.items())


AAPL_BARS = bars({date(2026, 11, 20): 198.0, date(2026, 11, 23): 200.0, date(2026, 12, 1): 203.0,
                  date(2026, 12, 2): 205.0})
VIX_BARS = bars({date(2026, 11, 20): 16.0, date(2026, 11, 23): 17.0, date(2026, 12, 2): 15.0})


def terms(**changes) -> TradeTerms:
    values = dict(trade_id=1, symbol="AAPL", right="P", strike=190.0, expiration=EXPIRY, side="short", contracts=2,
                  entry_price=ENTRY_PRICE, entry_time=ENTRY.astimezone(UTC), multiplier=100,
                  exit_price=EXIT_PRICE, exit_time=EXIT.astimezone(UTC), exit_reason="btc",
                  gross_pnl=(ENTRY_PRICE - EXIT_PRICE) * 200, net_pnl=(ENTRY_PRICE - EXIT_PRICE) * 200 - 2.6,
                  trade_source="ibkr_import")
    values.update(changes)
    return TradeTerms(**values)


class TableHistory:
    """Market history from frames held in memory (a real data source, not a mock)."""

    def __init__(self, frames: dict[str, pl.DataFrame]):
        self.frames = frames
        self.problems: list[str] = []
        self.asked: list[tuple[str, date, int]] = []

    def bars(self, symbol: str, *, end: date, sessions: int) -> pl.DataFrame | None:
        self.asked.append((symbol, end, sessions))
        if symbol not in self.frames:
            self.problems.append(f"daily bars of {symbol}: unknown")
            return None
        return self.frames[symbol]


def promoted(engine, *, key: str = "lifecycle:A1", symbol: str = "AAPL", strike: float = 190.0,
             entry_price: float = ENTRY_PRICE, exit_price: float | None = EXIT_PRICE, source: str = "ibkr_import",
             entry=ENTRY, exit_=EXIT, reason: str = "btc"):
    trade = open_trade(engine, NewTrade(trade_key=key, trade_source=source, symbol=symbol, right="P", strike=strike,
                                        expiration=EXPIRY, side="short", contracts=2, entry_price=entry_price,
                                        entry_time=entry.astimezone(UTC), entry_commission=1.3),
                       at=entry.astimezone(UTC))
    if exit_price is not None:
        trade = close_trade(engine, trade.id, exit_price=exit_price, exit_reason=reason,
                            exit_time=exit_.astimezone(UTC), exit_commission=1.3, at=exit_.astimezone(UTC))
    return trade


CLOCK = FixedClock(datetime(2026, 12, 10, 12, tzinfo=UTC))


# ##### TESTS: the pure reconstruction


def test_years_to_expiry_run_to_the_close_of_the_expiry_session():
    assert years_to_expiry(EXPIRY, ENTRY) == pytest.approx(ENTRY_YEARS, abs=1e-12)
    # Friday 2026-11-27 is an early close (13:00 New York = 18:00 UTC): 3 days and 3 hours.
    assert years_to_expiry(date(2026, 11, 27), datetime(2026, 11, 24, 10, tzinfo=NEW_YORK)) == pytest.approx(
        3.125 / 365, abs=1e-12)


def test_close_of_the_day_is_the_last_bar_on_or_before_it_and_not_older_than_five_days():
    assert close_of_day(AAPL_BARS, date(2026, 11, 23)) == 200.0
    assert close_of_day(AAPL_BARS, date(2026, 11, 25)) == 200.0  # two days on: still that close
    assert close_of_day(AAPL_BARS, date(2026, 11, 29)) is None  # six days after the last bar
    assert close_of_day(AAPL_BARS, date(2026, 11, 19)) is None  # nothing before
    assert close_of_day(None, date(2026, 11, 23)) is None
    quote = day_quote(VIX_BARS, date(2026, 11, 23))
    assert (quote.price, quote.previous_close, quote.change_pct) == (17.0, 16.0, pytest.approx(6.25))


def test_the_implied_volatility_reprices_the_traded_price_and_the_greeks_follow_it():
    moment = reconstruct_moment(right="P", strike=190.0, expiration=EXPIRY, option_price=ENTRY_PRICE,
                                moment=ENTRY, underlying_bars=AAPL_BARS, rate=RATE)
    assert (moment.day, moment.underlying_close, moment.dte) == (date(2026, 11, 23), 200.0, 25)
    assert moment.years_to_expiry == pytest.approx(ENTRY_YEARS)
    assert moment.otm_pct == pytest.approx(5.0)  # (200 - 190) / 200
    assert moment.iv_problem is None and 0.1 < moment.iv < 0.6
    price, delta = put_price_and_delta(200.0, 190.0, ENTRY_YEARS, moment.iv)
    assert price == pytest.approx(ENTRY_PRICE, abs=1e-9)
    assert moment.delta == pytest.approx(delta, abs=1e-9)
    assert moment.theta < 0 and moment.vega > 0 and moment.gamma > 0


@pytest.mark.parametrize(
    ("price", "moment", "bars_given", "problem"),
    [
        (0.0, datetime(2026, 12, 18, 16, 20, tzinfo=NEW_YORK), AAPL_BARS, "the option had expired"),
        (5.0, ENTRY, bars({date(2026, 11, 23): 150.0}), "below the discounted intrinsic value"),
        (ENTRY_PRICE, ENTRY, None, "no price of the underlying on that day"),
        (None, ENTRY, AAPL_BARS, "no option price"),
    ],
)
def test_no_implied_volatility_says_why(price, moment, bars_given, problem):
    rebuilt = reconstruct_moment(right="P", strike=190.0, expiration=EXPIRY, option_price=price, moment=moment,
                                 underlying_bars=bars_given)
    assert rebuilt.iv is None and rebuilt.delta is None
    assert problem in rebuilt.iv_problem


def test_the_reconstruction_fills_the_snapshot_definitions_fields():
    rebuilt = reconstruct_trade(terms(), captured_at=CLOCK.now(), bars={"AAPL": AAPL_BARS, "VIX": VIX_BARS}, rate=RATE)
    assert (rebuilt.entry_status, rebuilt.exit_status) == ("enriched", "enriched")
    entry = build_entry_snapshot(rebuilt.entry_inputs).fields
    assert (entry["stock_price"], entry["vix"], entry["dte"], entry["trade_source"]) == (200.0, 17.0, 25, "ibkr_import")
    assert entry["vix_change_pct"] == pytest.approx(6.25)
    assert entry["otm_pct"] == pytest.approx(5.0)
    assert entry["iv"] == pytest.approx(rebuilt.entry.iv) and entry["delta"] == pytest.approx(rebuilt.entry.delta)
    assert entry["bid"] is None and entry["ask"] is None  # the past's quotes are not in daily bars
    exit_fields = build_exit_snapshot(terms(), entry, [], rebuilt.exit_context).fields
    assert exit_fields["exit_stock_price"] == 205.0
    assert exit_fields["stock_change_pct"] == pytest.approx(2.5)  # 200 -> 205
    assert (exit_fields["exit_vix"], exit_fields["vix_change"]) == (15.0, -2.0)
    price, _ = put_price_and_delta(205.0, 190.0, EXIT_YEARS, exit_fields["exit_iv"])
    assert price == pytest.approx(EXIT_PRICE, abs=1e-9)
    assert exit_fields["iv_change"] == pytest.approx(exit_fields["exit_iv"] - entry["iv"])


def test_without_bars_only_the_trade_itself_and_the_status_is_partial():
    rebuilt = reconstruct_trade(terms(), captured_at=CLOCK.now())
    assert (rebuilt.entry_status, rebuilt.exit_status) == ("partial", "partial")
    entry = build_entry_snapshot(rebuilt.entry_inputs)
    assert entry.fields["dte"] == 25 and entry.fields["entry_premium"] == ENTRY_PRICE
    assert entry.fields["iv"] is None and entry.fields["stock_price"] is None
    assert 0 < entry.data_quality_score < 0.5
    # An expiration exit at 16:20 has no market IV even with bars: the option is gone.
    expired = reconstruct_trade(terms(exit_price=0.0, exit_time=datetime(2026, 12, 18, 16, 20, tzinfo=NEW_YORK),
                                      exit_reason="expiration"),
                                captured_at=CLOCK.now(), bars={"AAPL": bars({date(2026, 12, 18): 210.0})})
    assert expired.exit.iv is None and expired.exit_status == "enriched"
    assert expired.entry_status == "partial"  # these bars do not reach back to the entry


def test_one_bars_request_covers_every_trade_from_a_year_before_the_first_entry():
    first = terms()
    later = terms(entry_time=datetime(2026, 12, 1, 10, tzinfo=NEW_YORK), exit_time=None, exit_price=None)
    end, sessions = bars_needed([first, later], lookback_sessions=300)
    # Sessions 2026-11-23 .. 2026-12-02: 23, 24, 25, 27, 30 Nov and 1, 2 Dec (26 Nov Thanksgiving).
    assert (end, sessions) == (date(2026, 12, 2), 7 + 300)
    assert bars_needed([]) is None


# ##### TESTS: the service


def test_without_a_broker_every_promoted_trade_gets_partial_snapshots_once(ledger_engine):
    trade = promoted(ledger_engine)
    live = promoted(ledger_engine, key="intent:X", source="execution")
    still_open = promoted(ledger_engine, key="lifecycle:B2", exit_price=None)
    result = enrich_trades(ledger_engine, clock=CLOCK)
    assert (result.promoted, result.candidates, result.entry_written, result.exit_written) == (2, 2, 2, 1)
    entry, exit_ = get_entry_snapshot(ledger_engine, trade.id), get_exit_snapshot(ledger_engine, trade.id)
    assert (entry.source, entry.status, exit_.source, exit_.status) == ("enrichment", "partial", "enrichment", "partial")
    assert entry.fields["dte"] == 25 and entry.fields["iv"] is None
    assert entry.data_quality_score == pytest.approx(result.trades[0].entry_quality)
    assert exit_.fields["gross_pnl"] == pytest.approx(340.0)  # (2.50 - 0.80) x 100 x 2
    assert exit_.fields["days_held"] == 9 and exit_.fields["win"] is True
    assert get_exit_snapshot(ledger_engine, still_open.id) is None  # open: no exit yet
    assert get_entry_snapshot(ledger_engine, live.id) is None  # not an imported trade
    again = enrich_trades(ledger_engine, clock=CLOCK)
    assert (again.candidates, again.entry_written, again.exit_written) == (0, 0, 0)


def test_with_market_history_snapshots_are_enriched_and_replace_partial_ones(ledger_engine):
    trade = promoted(ledger_engine)
    enrich_trades(ledger_engine, clock=CLOCK)  # partial first
    market = TableHistory({"AAPL": AAPL_BARS, "VIX": VIX_BARS})
    result = enrich_trades(ledger_engine, clock=CLOCK, market=market, rate=RATE)
    assert (result.entry_written, result.exit_written) == (1, 1)
    entry, exit_ = get_entry_snapshot(ledger_engine, trade.id), get_exit_snapshot(ledger_engine, trade.id)
    assert (entry.status, exit_.status) == ("enriched", "enriched")
    assert (entry.fields["stock_price"], entry.fields["vix"], exit_.fields["exit_stock_price"]) == (200.0, 17.0, 205.0)
    price, _ = put_price_and_delta(200.0, 190.0, ENTRY_YEARS, entry.fields["iv"])
    assert price == pytest.approx(ENTRY_PRICE, abs=1e-9)
    assert entry.captured_at == CLOCK.now()
    # One request per symbol; SPY, QQQ, IWM and the sector ETF are unknown here: noted, not fatal.
    assert sorted({symbol for symbol, _, _ in market.asked}) == ["AAPL", "IWM", "QQQ", "SPY", "VIX", "XLK"]
    assert any("SPY" in problem for problem in result.problems)
    again = enrich_trades(ledger_engine, clock=CLOCK, market=TableHistory({"AAPL": AAPL_BARS, "VIX": VIX_BARS}))
    assert (again.candidates, again.entry_written, again.exit_written) == (0, 0, 0)


def test_a_live_snapshot_is_never_replaced_and_limit_takes_the_oldest_first(ledger_engine):
    first = promoted(ledger_engine)
    second = promoted(ledger_engine, key="lifecycle:C3", entry=ENTRY + timedelta(days=1))
    save_entry_snapshot(ledger_engine, first.id, captured_at=CLOCK.now(), status="partial", fields={"dte": 25},
                        fields_present=1, data_quality_score=0.01, critical_fields_present=1, source="live")
    assert [t.id for t in trades_to_enrich(ledger_engine, upgrade_partial=True)[0]] == [first.id, second.id]
    result = enrich_trades(ledger_engine, clock=CLOCK, market=TableHistory({"AAPL": AAPL_BARS}), limit=1)
    assert [t.trade_id for t in result.trades] == [first.id]
    assert (result.entry_written, result.exit_written) == (0, 1)  # its live entry snapshot stays
    entry = get_entry_snapshot(ledger_engine, first.id)
    assert (entry.source, entry.status, entry.fields) == ("live", "partial", {"dte": 25})
    assert get_entry_snapshot(ledger_engine, second.id) is None


def test_against_the_simulator_through_the_ibkr_adapter(sim_gateway, tmp_path):  # noqa: F811
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.settings import BrokerSettings
    from trading_pipeline.ledger import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(engine)
    # Entered Wednesday 2026-11-18 and bought back Friday 2026-11-20: before the simulator's
    # Monday, so its history has both days; prices near a 5 % OTM AAPL put's.
    spot = gateway_close(sim_gateway, "AAPL", date(2026, 11, 18))
    strike = round(spot * 0.95)
    trade = promoted(engine, strike=strike, entry_price=3.0, exit_price=1.2,
                     entry=datetime(2026, 11, 18, 10, tzinfo=NEW_YORK), exit_=datetime(2026, 11, 20, 15, tzinfo=NEW_YORK))
    broker = IbkrBroker(BrokerSettings(host="127.0.0.1", port=sim_gateway.port, timeout=5.0,
                                       max_messages_per_second=0))
    broker.connect()
    try:
        result = enrich_trades(engine, clock=CLOCK, market=BrokerHistory(broker))
    finally:
        broker.disconnect()
    assert result.problems == ()
    entry, exit_ = get_entry_snapshot(engine, trade.id), get_exit_snapshot(engine, trade.id)
    assert (entry.status, exit_.status) == ("enriched", "enriched")
    assert entry.fields["stock_price"] == pytest.approx(spot)
    assert entry.fields["vix"] > 5 and entry.fields["spy_price"] > 100 and entry.fields["rsi_14"] is not None
    assert entry.fields["trend_direction"] in ("up", "down", "sideways")
    assert exit_.fields["exit_stock_price"] == pytest.approx(gateway_close(sim_gateway, "AAPL", date(2026, 11, 20)))
    assert entry.data_quality_score > 0.5
    engine.dispose()


def gateway_close(gateway, symbol: str, day: date) -> float:
    """The simulator's own daily close of ``symbol`` on ``day`` (read on its thread)."""
    sim = gateway.broker

    def read():
        underlying = sim.catalog.underlying(symbol)
        [bar] = [b for b in sim.daily_bars(underlying.con_id, day, 1) if b.day == day]
        return bar.close

    return gateway.call(read)
