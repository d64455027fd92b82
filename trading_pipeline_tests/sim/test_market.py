"""Contract under test: trading_pipeline.sim.market.Market.

Deterministic seeded price paths (same seed, same prices, whatever the order of questions),
anchored so the price at the start is the starting price; one-minute steps in the session,
the last value held outside it (early closes included); XSP = SPX / 10 and SPY following
SPX; the symbol's volatility, the market factor and VIX against SPX; replayed daily bars
(on their dates, or laid from the start); daily bars cut at ``now``. Option quotes: the
volatility surface and BSM (hand values), TWS greek units, bid/ask rules (formula, ticks,
never crossed, bid 0 for worthless, doubled at the open, wider far OTM), volume and open
interest, settlement; a quote's cost.

The market's random paths are not known in advance, so tests read prices from it and check
the relations between them; formulas are checked against hand-computed values.
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from trading_pipeline.core.options_math import bsm_greeks
from trading_pipeline.sim import chains
from trading_pipeline.sim.instruments import InstrumentCatalog
from trading_pipeline.sim.market import Market, bsm_scalar, volatility_at
from trading_pipeline.sim.types import Bar
from trading_pipeline.sim.universe import DEFAULT_UNIVERSE

UTC = timezone.utc
MONDAY = date(2026, 11, 23)
START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 New York
OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
CLOSE = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
DECEMBER = date(2026, 12, 18)


def make_market(seed: int = 7, **kwargs) -> Market:
    kwargs.setdefault("start", START)
    return Market(seed=seed, universe=DEFAULT_UNIVERSE, catalog=InstrumentCatalog(DEFAULT_UNIVERSE), **kwargs)


@pytest.fixture(scope="module")
def market() -> Market:
    return make_market(prices={"AAPL": 230.5})


def option(market: Market, symbol: str, expiry: date, strike: float, right: str, trading_class: str | None = None):
    listed = market.catalog.options(symbol, expiry, MONDAY, trading_class)
    (found,) = [o for o in listed if o.strike == strike and o.right == right]
    return found


def nearest_strike(market: Market, symbol: str, expiry: date, price: float) -> float:
    return min((o.strike for o in market.catalog.options(symbol, expiry, MONDAY)), key=lambda k: abs(k - price))


def log_returns(bars: list[Bar]) -> np.ndarray:
    closes = np.array([bar.close for bar in bars])
    return np.diff(np.log(closes))


# ----- prices ------------------------------------------------------------------------


def test_the_price_at_the_start_is_the_starting_price(market):
    assert market.underlying_price("AAPL", START) == 230.5  # from prices
    assert market.underlying_price("KO", START) == 70.0  # the universe's default
    assert market.underlying_price("SPX", START) == 6650.0
    assert market.underlying_price("XSP", START) == 665.0  # SPX / 10 by default
    assert market.underlying_price("VIX", START) == 17.0
    assert market.start == START


def test_same_seed_same_prices_whatever_the_order_of_questions():
    instants = [START + timedelta(minutes=m) for m in (0, 7, 95, 300, 1500, 4000)]
    symbols = ["AAPL", "SPX", "VIX", "SPY", "XLK", "KO"]
    first, second = make_market(seed=11), make_market(seed=11)
    forward = {(s, t): first.underlying_price(s, t) for s in symbols for t in instants}
    backward = {(s, t): second.underlying_price(s, t) for s in reversed(symbols) for t in reversed(instants)}
    assert forward == backward
    put = option(first, "AAPL", DECEMBER, 250.0, "P")
    assert first.quote(put, instants[3]) == second.quote(put, instants[3])
    assert first.daily_bars(first.catalog.underlying("XLK"), MONDAY, 30) == second.daily_bars(
        second.catalog.underlying("XLK"), MONDAY, 30
    )
    other = make_market(seed=12)
    assert any(other.underlying_price(s, t) != forward[(s, t)] for s in symbols for t in instants[1:])


def test_prices_step_each_minute_and_hold_outside_the_session(market):
    assert market.underlying_price("AAPL", START + timedelta(minutes=7)) == market.underlying_price(
        "AAPL", START + timedelta(minutes=7, seconds=59)
    )
    close = market.underlying_price("AAPL", CLOSE)
    for later in (CLOSE + timedelta(hours=2), datetime(2026, 11, 24, 14, 29, tzinfo=UTC)):
        assert market.underlying_price("AAPL", later) == close
    (bar,) = market.daily_bars(market.catalog.underlying("AAPL"), MONDAY, 1)
    assert bar.close == close and bar.open == market.underlying_price("AAPL", OPEN)
    minutes = [market.underlying_price("AAPL", OPEN + timedelta(minutes=m)) for m in range(0, 391, 13)]
    assert bar.low <= min(minutes) and bar.high >= max(minutes)
    # Saturday and Sunday hold Friday's close
    friday = market.daily_bars(market.catalog.underlying("AAPL"), date(2026, 11, 20), 1)[0]
    assert market.underlying_price("AAPL", datetime(2026, 11, 22, 12, 0, tzinfo=UTC)) == friday.close


def test_early_close_holds_from_one_pm(market):
    # The day after Thanksgiving closes at 13:00 New York (18:00 UTC).
    early_close = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    price = market.underlying_price("SPX", early_close)
    assert market.underlying_price("SPX", early_close + timedelta(hours=2)) == price
    (bar,) = market.daily_bars(market.catalog.underlying("SPX"), date(2026, 11, 27), 1)
    assert bar.close == price


def test_xsp_is_spx_over_ten_and_spy_follows_spx(market):
    spy_start, spx_start = market.underlying_price("SPY", START), market.underlying_price("SPX", START)
    for minutes in (0, 31, 200, 1000, 2900):
        at = START + timedelta(minutes=minutes)
        spx = market.underlying_price("SPX", at)
        assert market.underlying_price("XSP", at) == pytest.approx(spx / 10, abs=0.006)
        assert market.underlying_price("SPY", at) / spy_start == pytest.approx(spx / spx_start, abs=2e-5)


def test_daily_moves_have_the_universes_volatility(market):
    for symbol in ("SPX", "AAPL", "KO"):
        bars = market.daily_bars(market.catalog.underlying(symbol), MONDAY, 253)
        daily = DEFAULT_UNIVERSE.get(symbol).annual_vol / math.sqrt(252)
        assert np.std(log_returns(bars)) == pytest.approx(daily, rel=0.2), symbol


def test_stocks_follow_the_market_and_vix_moves_against_it(market):
    spx = log_returns(market.daily_bars(market.catalog.underlying("SPX"), MONDAY, 300))
    xlk = log_returns(market.daily_bars(market.catalog.underlying("XLK"), MONDAY, 300))
    gld = log_returns(market.daily_bars(market.catalog.underlying("GLD"), MONDAY, 300))
    vix_bars = market.daily_bars(market.catalog.underlying("VIX"), MONDAY, 300)
    vix = log_returns(vix_bars)
    assert np.corrcoef(spx, xlk)[0, 1] > 0.75  # XLK's correlation is 0.9
    assert abs(np.corrcoef(spx, gld)[0, 1]) < 0.3  # GLD's is 0.05
    assert np.corrcoef(spx, vix)[0, 1] < -0.6  # VIX's is -0.8
    levels = [bar.close for bar in vix_bars]
    assert 12.0 < statistics.mean(levels) < 26.0 and min(levels) > 5.0  # reverting toward 18


def test_reference_price_is_the_previous_close_and_chains_follow_it():
    market = make_market(prices={"AAPL": 100.0})
    aapl = market.catalog.underlying("AAPL")
    friday, monday = market.daily_bars(aapl, MONDAY, 2)
    assert market.reference_price("AAPL", MONDAY) == friday.close
    assert market.reference_price("AAPL", date(2026, 11, 24)) == monday.close
    assert market.reference_price("AAPL", date(2026, 11, 22)) == friday.close  # a Sunday
    strikes = market.catalog.option_parameters("AAPL", MONDAY)[0].strikes
    assert strikes == chains.strike_ladder("AAPL", friday.close)
    assert 45.0 <= strikes[0] <= 55.0


def test_replayed_bars_on_their_own_dates():
    bars = [
        Bar(date(2019, 1, 2), 245.98, 251.21, 245.95, 250.18, 126925200, 249.1, 1),
        Bar(date(2019, 1, 3), 248.23, 248.57, 243.67, 244.21, 144140700, 245.5, 1),
        Bar(date(2019, 1, 4), 247.59, 253.11, 247.17, 252.39, 142628800, 250.9, 1),
        Bar(date(2019, 1, 7), 252.69, 255.95, 251.69, 254.38, 103139100, 254.0, 1),
    ]
    start = datetime(2019, 1, 3, 16, 0, tzinfo=UTC)
    market = make_market(bars={"SPY": bars}, prices={"SPY": 1.0}, start=start)  # bars win over prices
    spy = market.catalog.underlying("SPY")
    assert market.daily_bars(spy, date(2019, 1, 7), 4) == bars
    january_3_open = datetime(2019, 1, 3, 14, 30, tzinfo=UTC)
    assert market.underlying_price("SPY", january_3_open) == 248.23
    assert market.underlying_price("SPY", datetime(2019, 1, 3, 21, 0, tzinfo=UTC)) == 244.21
    intraday = [market.underlying_price("SPY", january_3_open + timedelta(minutes=m)) for m in range(391)]
    assert 243.67 <= min(intraday) and max(intraday) <= 248.57
    # after the last bar the walk goes on from its close
    (after,) = market.daily_bars(spy, date(2019, 1, 8), 1)
    assert after.day == date(2019, 1, 8) and abs(after.open / 254.38 - 1) < 0.05


def test_replayed_crash_moves_the_stocks_too():
    crash = Bar(MONDAY, 6650.0, 6650.0, 6100.0, 6118.0, 0, 6300.0, 0)  # -8 % in a day
    market = make_market(bars={"SPX": [crash]}, start=datetime(2026, 11, 23, 14, 0, tzinfo=UTC))
    assert market.underlying_price("SPX", CLOSE) == 6118.0
    assert market.underlying_price("XSP", CLOSE) == 611.8
    for symbol in ("XLK", "QQQ", "AAPL"):
        (day,) = market.daily_bars(market.catalog.underlying(symbol), MONDAY, 1)
        assert day.close < day.open * 0.99, symbol
    (vix,) = market.daily_bars(market.catalog.underlying("VIX"), MONDAY, 1)
    assert vix.close > vix.open * 1.2


def test_bars_not_covering_the_start_are_laid_from_it():
    bars = [
        Bar(date(2019, 1, 2), 10.0, 11.0, 9.0, 10.5, 100, 10.0, 1),
        Bar(date(2019, 1, 3), 10.5, 12.0, 10.0, 11.5, 200, 11.0, 1),
        Bar(date(2019, 1, 4), 11.5, 11.5, 10.0, 10.2, 300, 10.5, 1),
    ]
    market = make_market(bars={"AAPL": bars})
    laid = market.daily_bars(market.catalog.underlying("AAPL"), date(2026, 11, 25), 3)
    assert [bar.day for bar in laid] == [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)]
    assert [(b.open, b.high, b.low, b.close) for b in laid] == [(b.open, b.high, b.low, b.close) for b in bars]


def test_daily_bars_stop_at_now(market):
    aapl = market.catalog.underlying("AAPL")
    bars = market.daily_bars(aapl, date(2026, 12, 31), 3, now=START)
    assert [bar.day for bar in bars] == [date(2026, 11, 19), date(2026, 11, 20), MONDAY]
    today = bars[-1]
    assert today.close == 230.5 and today.open == market.underlying_price("AAPL", OPEN)
    full = market.daily_bars(aapl, MONDAY, 1)[0]
    assert today.volume == full.volume * 30 // 390  # 30 of 390 minutes
    assert market.daily_bars(aapl, MONDAY, 0) == []


def test_unknown_symbols_and_naive_instants_are_refused(market):
    with pytest.raises(KeyError):
        market.underlying_price("NOPE", START)
    with pytest.raises(ValueError, match="timezone-aware"):
        market.underlying_price("AAPL", datetime(2026, 11, 23, 15, 0))
    assert make_market(prices={"NOPE": 3.0, "AAPL": 1.0}).ignored_symbols == ("NOPE",)


def test_without_a_start_the_first_instant_asked_is_the_anchor():
    catalog = InstrumentCatalog(DEFAULT_UNIVERSE)
    market = Market(seed=7, universe=DEFAULT_UNIVERSE, catalog=catalog, prices={"AAPL": 99.0})
    at = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    assert market.underlying_price("AAPL", at) == 99.0
    assert market.start == at


# ----- stock and index quotes -----------------------------------------------------------


def test_stock_quotes(market):
    aapl = market.catalog.underlying("AAPL")
    quote = market.quote(aapl, START)
    assert (quote.bid, quote.last, quote.ask) == (230.49, 230.5, 230.51)  # a cent each side (penny name)
    assert quote.close == market.reference_price("AAPL", MONDAY)
    assert quote.open == market.underlying_price("AAPL", OPEN) and quote.low <= 230.5 <= quote.high
    early = market.quote(aapl, OPEN + timedelta(minutes=3))
    assert round(early.ask - early.bid, 2) == 0.04  # doubled in the first 15 minutes
    mmm = market.quote(market.catalog.underlying("MMM"), START)  # $165: about a basis point
    assert round(mmm.ask - mmm.last, 2) == round(mmm.last - mmm.bid, 2) == 0.02
    assert quote.bid_size % 100 == 0 and quote.bid_size > 0 and quote.volume > 0
    assert market.mark(aapl, START) == 230.5


def test_index_quotes_have_no_bid_or_ask(market):
    quote = market.quote(market.catalog.underlying("SPX"), START)
    assert quote.bid is None and quote.ask is None and quote.last == 6650.0 and quote.volume == 0
    assert quote.close == market.reference_price("SPX", MONDAY)


# ----- option model ------------------------------------------------------------------------


def test_volatility_surface_hand_values():
    # ATM, T = 0.25, VIX at 18: short end 0.276, long end 0.315, weight exp(-1.25) = 0.2865048
    assert volatility_at(0.3, 1.0, 0.6, 100.0, 100.0, 0.25) == pytest.approx(0.3038263, abs=1e-7)
    # strike 90: k = ln(0.9) / 0.5 = -0.2107210, smile 1 + 0.6 x 0.2107210 + 0.4 x 0.0444034
    assert volatility_at(0.3, 1.0, 0.6, 90.0, 100.0, 0.25) == pytest.approx(0.3476362, abs=1e-7)
    # VIX at 36: short end 0.552, long end 0.4725
    assert volatility_at(0.3, 2.0, 0.6, 100.0, 100.0, 0.25) == pytest.approx(0.4952771, abs=1e-7)
    # the smile is capped at 3x (a 80 % OTM strike a week out)
    atm = volatility_at(0.3, 1.0, 0.6, 100.0, 100.0, 7 / 365)
    assert volatility_at(0.3, 1.0, 0.6, 20.0, 100.0, 7 / 365) == pytest.approx(3 * atm)


def test_scalar_pricing_matches_hull_and_options_math():
    # Hull, Options Futures and Other Derivatives: S 42, K 40, r 10 %, sigma 20 %, T 0.5
    assert bsm_scalar(True, 42.0, 40.0, 0.5, 0.2, 0.1, 0.0)[0] == pytest.approx(4.7594, abs=1e-4)
    assert bsm_scalar(False, 42.0, 40.0, 0.5, 0.2, 0.1, 0.0)[0] == pytest.approx(0.8086, abs=1e-4)
    grid = [
        (call, spot, strike, years, vol)
        for call in (True, False)
        for spot in (100.0,)
        for strike in (40.0, 80.0, 95.0, 100.0, 110.0, 160.0)
        for years in (60 / 31_536_000, 1 / 365, 30 / 365, 2.0)
        for vol in (0.05, 0.3, 1.5)
    ]
    reference = bsm_greeks(
        option_type=np.array([g[0] for g in grid]),
        spot=np.array([g[1] for g in grid]),
        strike=np.array([g[2] for g in grid]),
        time_to_expiry=np.array([g[3] for g in grid]),
        volatility=np.array([g[4] for g in grid]),
        rate=0.04,
        dividend_yield=0.013,
    )
    for n, (call, spot, strike, years, vol) in enumerate(grid):
        price, delta, gamma, vega, theta = bsm_scalar(call, spot, strike, years, vol, 0.04, 0.013)
        expected = (reference.price[n], reference.delta[n], reference.gamma[n], reference.vega[n], reference.theta[n])
        for got, want in zip((price, delta, gamma, vega, theta), expected, strict=True):
            assert got == pytest.approx(float(want), rel=1e-9, abs=1e-11), grid[n]


def test_option_quotes_carry_the_model_in_tws_units(market):
    put = option(market, "AAPL", DECEMBER, 220.0, "P")
    quote = market.quote(put, START)
    greeks = quote.greeks
    spot = market.underlying_price("AAPL", START)
    years = (market.settlement_instant(put) - START).total_seconds() / (365 * 86400)
    vix_ratio = market.underlying_price("VIX", START) / 18.0
    assert greeks.underlying_price == spot
    assert greeks.implied_vol == pytest.approx(volatility_at(0.27 * 1.1, vix_ratio, 0.6, 220.0, spot, years), rel=1e-12)
    price, delta, gamma, vega, theta = bsm_scalar(False, spot, 220.0, years, greeks.implied_vol, 0.04, 0.004)
    assert greeks.price == pytest.approx(price, rel=1e-12)
    assert (greeks.delta, greeks.gamma) == (pytest.approx(delta, rel=1e-12), pytest.approx(gamma, rel=1e-12))
    assert greeks.vega == pytest.approx(vega / 100, rel=1e-12)  # per vol point
    assert greeks.theta == pytest.approx(theta / 365, rel=1e-12)  # per calendar day
    assert greeks.pv_dividend == pytest.approx(spot * (1 - math.exp(-0.004 * years)))
    assert -1 < greeks.delta < 0 and greeks.theta < 0 and greeks.vega > 0
    assert market.implied_volatility(put, START) == greeks.implied_vol


def test_model_prices_keep_put_call_parity(market):
    spot = market.underlying_price("AAPL", START)
    strike = nearest_strike(market, "AAPL", DECEMBER, spot)
    call = market.quote(option(market, "AAPL", DECEMBER, strike, "C"), START).greeks
    put = market.quote(option(market, "AAPL", DECEMBER, strike, "P"), START).greeks
    settlement = market.settlement_instant(option(market, "AAPL", DECEMBER, strike, "C"))
    years = (settlement - START).total_seconds() / 31_536_000
    parity = spot * math.exp(-0.004 * years) - strike * math.exp(-0.04 * years)
    assert call.price - put.price == pytest.approx(parity, abs=1e-9)


def quoted_chain(market, symbol, expiry, at, trading_class=None):
    options = market.catalog.options(symbol, expiry, MONDAY, trading_class)
    return list(zip(options, market.quotes(options, at), strict=True))


@pytest.mark.parametrize(
    ("symbol", "expiry", "trading_class"),
    [("AAPL", DECEMBER, None), ("SPX", DECEMBER, "SPXW"), ("MMM", DECEMBER, None)],
)
def test_bid_ask_rules_over_a_chain(market, symbol, expiry, trading_class):
    chain = quoted_chain(market, symbol, expiry, START, trading_class)
    assert len(chain) > 50
    for instrument, quote in chain:
        model = quote.greeks.price
        assert 0.0 <= quote.bid < quote.ask, instrument.local_symbol
        assert quote.bid <= model + 1e-9 and model <= quote.ask + 1e-9, instrument.local_symbol
        for price in (quote.bid, quote.ask, quote.last):
            tick = chains.option_tick(symbol, price)
            assert price == pytest.approx(round(price / tick) * tick, abs=1e-9), (instrument.local_symbol, price)
        if model < chains.option_min_tick(symbol) / 2:  # worthless: nothing bid, one tick asked
            assert (quote.bid, quote.ask, quote.bid_size) == (0.0, chains.option_min_tick(symbol), 0)
    cheapest_put = min((q for i, q in chain if i.right == "P"), key=lambda q: q.greeks.price)
    assert cheapest_put.bid == 0.0


def test_spread_width_formula(market):
    # AAPL is a penny name: width = 0.5 x (0.03 + 0.04 x model), times 1 + 8 (d - 0.1) (at
    # most 3) beyond 10 % out of the money; bid rounded down and ask up to the cent.
    for instrument, quote in quoted_chain(market, "AAPL", DECEMBER, START):
        model, spot = quote.greeks.price, quote.greeks.underlying_price
        if quote.bid == 0.0:
            continue
        out = math.log(instrument.strike / spot) if instrument.right == "C" else math.log(spot / instrument.strike)
        width = 0.5 * (0.03 + 0.04 * model) * min(1 + 8 * max(out - 0.10, 0.0), 3.0)
        assert quote.bid == pytest.approx(math.floor((model - width / 2) * 100 + 1e-9) / 100, abs=1e-9)
        assert quote.ask == pytest.approx(math.ceil((model + width / 2) * 100 - 1e-9) / 100, abs=1e-9)


def test_spreads_double_in_the_first_fifteen_minutes(market):
    spot = market.underlying_price("AAPL", OPEN)
    put = option(market, "AAPL", DECEMBER, nearest_strike(market, "AAPL", DECEMBER, spot), "P")
    early, later = market.quote(put, OPEN + timedelta(minutes=5)), market.quote(put, OPEN + timedelta(minutes=20))

    def width(quote):  # before rounding to the cent
        return 0.5 * (0.03 + 0.04 * quote.greeks.price)

    assert early.ask - early.bid == pytest.approx(2 * width(early), abs=0.021)
    assert later.ask - later.bid == pytest.approx(width(later), abs=0.021)


def test_spx_ticks_are_nickels_and_dimes(market):
    chain = quoted_chain(market, "SPX", DECEMBER, START, "SPXW")
    cents = {round(price * 100) for _, q in chain for price in (q.bid, q.ask) if price >= 3.0}
    assert cents and all(c % 10 == 0 for c in cents)
    cents = {round(price * 100) for _, q in chain for price in (q.bid, q.ask) if price < 3.0}
    assert cents and all(c % 5 == 0 for c in cents) and any(c % 10 for c in cents)


def test_volume_and_open_interest(market):
    spot = market.underlying_price("AAPL", START)
    atm = nearest_strike(market, "AAPL", DECEMBER, spot)
    near = option(market, "AAPL", DECEMBER, atm, "P")
    far_otm = market.catalog.options("AAPL", DECEMBER, MONDAY)[1]  # the lowest strike's put
    far_expiry = min(market.catalog.expirations("AAPL", MONDAY)[-3:])
    later_atm = option(market, "AAPL", far_expiry, nearest_strike(market, "AAPL", far_expiry, spot), "P")
    morning, afternoon = market.quote(near, START), market.quote(near, START + timedelta(hours=5))
    assert morning.open_interest == afternoon.open_interest > 0
    assert 0 < morning.volume < afternoon.volume
    assert market.quote(far_otm, START).open_interest < morning.open_interest / 10
    assert market.quote(later_atm, START).open_interest < morning.open_interest
    assert make_market(prices={"AAPL": 230.5}).quote(near, START) == morning


def test_settled_options_show_their_intrinsic_value(market):
    spx_close = market.underlying_price("SPX", CLOSE)
    strike = nearest_strike(market, "SPX", MONDAY, spx_close) + 50  # in the money for a put
    put = option(market, "SPX", MONDAY, strike, "P", "SPXW")  # 0DTE
    before = market.quote(put, CLOSE - timedelta(minutes=1))
    assert before.bid is not None and before.greeks is not None
    after = market.quote(put, CLOSE + timedelta(minutes=30))
    assert after.bid is None and after.ask is None and after.greeks is None
    assert after.last == round(strike - spx_close, 2) == market.mark(put, CLOSE + timedelta(hours=1))
    assert market.settlement_price(put) == spx_close


def test_am_settled_options_settle_on_the_opening_price(market):
    monthly = option(market, "SPX", DECEMBER, 6650.0, "C", "SPX")
    december_open = datetime(2026, 12, 18, 14, 30, tzinfo=UTC)
    assert market.settlement_instant(monthly) == december_open
    assert market.settlement_price(monthly) == market.underlying_price("SPX", december_open)
    weekly = option(market, "SPX", DECEMBER, 6650.0, "C", "SPXW")
    assert market.settlement_instant(weekly) == datetime(2026, 12, 18, 21, 0, tzinfo=UTC)


def test_option_marks_are_mids(market):
    put = option(market, "AAPL", DECEMBER, 220.0, "P")
    quote = market.quote(put, START)
    assert market.mark(put, START) == pytest.approx((quote.bid + quote.ask) / 2)


def test_option_daily_bars(market):
    put = option(market, "AAPL", DECEMBER, 220.0, "P")
    bars = market.daily_bars(put, MONDAY, 5, now=START)
    assert len(bars) == 5 and bars[-1].day == MONDAY
    assert all(bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close) for bar in bars)
    assert bars[-1].close == market.quote(put, START).last
    expired = option(market, "SPX", MONDAY, 6650.0, "P", "SPXW")
    assert [bar.day for bar in market.daily_bars(expired, date(2026, 11, 30), 10)][-1] == MONDAY


# ----- cost ----------------------------------------------------------------------------------


def test_a_quote_costs_well_under_a_millisecond():
    market = make_market()
    options = market.catalog.options("AAPL", DECEMBER, MONDAY)
    market.quotes(options, START)  # paths and open interest of the day
    put = options[40]
    started = time.process_time()
    for minute in range(1, 201):  # each minute is a new quote, not a cache hit
        market.quote(put, START + timedelta(minutes=minute))
    per_quote = (time.process_time() - started) / 200
    assert per_quote < 0.0005
    expiries = market.catalog.expirations("AAPL", MONDAY)[:6]
    everything = [o for expiry in expiries for o in market.catalog.options("AAPL", expiry, MONDAY)]
    started = time.process_time()
    market.quotes(everything[:500], START + timedelta(minutes=300))
    assert time.process_time() - started < 1.0  # the monitor's 500 positions
