"""Contract under test: trading_pipeline.core.options_math.

Vectorized Black-Scholes-Merton with a continuous dividend yield: price, delta, gamma, vega
(per 1.00 vol), theta (per year, -dV/dT) and rho (per 1.00 rate) for calls and puts, and an
implied volatility solver that returns either a volatility or NaN with an IVReason code, and
never raises on numeric input.

- Hand-checked textbook values (Hull, "Options, Futures, and Other Derivatives").
- Prices and greeks match QuantLib on a grid with deep ITM/OTM strikes, an hour to two years
  to expiry, 2 % to 300 % volatility, negative rates and q > 0. QuantLib uses the same units
  (theta per year, vega per 1.00 vol, rho per 1.00 rate; thetaPerDay = theta / 365), so the
  mapping is one to one. The solver recovers the volatility from QuantLib's own prices.
- Properties (hypothesis): put-call parity; greeks equal finite differences of the price;
  price -> IV -> price round trip with |IV error| < 1e-8 wherever vega > 1e-4 per 100 of spot;
  NaN with the right reason at or below intrinsic and at or above the upper bound; no exception
  and no warning on arbitrary floats, NaN exactly where a reason is given.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.core.options_math import (
    Greeks,
    ImpliedVolatility,
    IVReason,
    bsm_greeks,
    bsm_price,
    implied_volatility,
    implied_volatility_and_greeks,
    reason_text,
)

# --------------------------------------------------------------------------------------
# Textbook values
# --------------------------------------------------------------------------------------


def test_hull_call_and_put_on_a_non_dividend_stock():
    # Hull: S=42, K=40, r=10%, sigma=20%, T=0.5. d1 = (ln(42/40) + (0.10 + 0.02) * 0.5) /
    # (0.2 * sqrt(0.5)) = 0.7693, d2 = 0.6278; c = 42 N(d1) - 40 e^{-0.05} N(d2) = 4.76,
    # p = 40 e^{-0.05} N(-d2) - 42 N(-d1) = 0.81.
    market = dict(spot=42.0, strike=40.0, time_to_expiry=0.5, volatility=0.2, rate=0.10)
    assert bsm_price(option_type="call", **market) == pytest.approx(4.76, abs=0.005)
    assert bsm_price(option_type="put", **market) == pytest.approx(0.81, abs=0.005)


def test_hull_index_call_with_a_dividend_yield():
    # Hull: index 930, strike 900, r=8%, q=3%, sigma=20%, two months. d1 = 0.5444,
    # d2 = 0.4628; c = 930 e^{-0.005} N(d1) - 900 e^{-0.08/6} N(d2) = 51.83.
    price = bsm_price(
        option_type="call", spot=930.0, strike=900.0, time_to_expiry=2 / 12, volatility=0.2, rate=0.08, dividend_yield=0.03
    )
    assert price == pytest.approx(51.83, abs=0.005)


def test_hull_greeks_of_a_call():
    # Hull's running example of the greeks: S=49, K=50, r=5%, sigma=20%, 20 weeks (T=0.3846).
    # d1 = 0.0542: price 2.40, delta N(d1) = 0.522, gamma 0.066, vega 12.1 (per 1.00 vol),
    # theta -4.31 per year = -0.0118 per calendar day, rho 8.91 (per 1.00 rate).
    greeks = bsm_greeks(option_type="call", spot=49.0, strike=50.0, time_to_expiry=20 / 52, volatility=0.2, rate=0.05)
    assert greeks.price == pytest.approx(2.40, abs=0.005)
    assert greeks.delta == pytest.approx(0.522, abs=0.0005)
    assert greeks.gamma == pytest.approx(0.066, abs=0.0005)
    assert greeks.vega == pytest.approx(12.1, abs=0.05)
    assert greeks.vega_per_vol_point == pytest.approx(0.121, abs=0.0005)
    assert greeks.theta == pytest.approx(-4.31, abs=0.005)
    assert greeks.theta_per_day == pytest.approx(-0.0118, abs=0.00005)
    assert greeks.rho == pytest.approx(8.91, abs=0.005)
    assert greeks.rho_per_rate_point == pytest.approx(0.0891, abs=0.00005)


def test_hull_implied_volatility():
    # Hull: a call worth 1.875 with S=21, K=20, r=10%, T=0.25 has an implied volatility of 23.5 %.
    implied = implied_volatility(price=1.875, option_type="call", spot=21.0, strike=20.0, time_to_expiry=0.25, rate=0.10)
    assert implied.reason == IVReason.OK
    assert implied.volatility == pytest.approx(0.235, abs=0.0005)


# --------------------------------------------------------------------------------------
# Against QuantLib
# --------------------------------------------------------------------------------------

SPOT = 100.0
GRID_STRIKES = [40.0, 70.0, 95.0, 100.0, 105.0, 130.0, 200.0]  # deep ITM and OTM both ways
GRID_TIMES = [1e-4, 1 / 365, 7 / 365, 0.25, 1.0, 2.0]  # about 53 minutes to two years
GRID_VOLS = [0.02, 0.2, 0.6, 1.5, 3.0]
GRID_RATES = [(-0.01, 0.0), (0.0, 0.0), (0.05, 0.0), (0.05, 0.03)]  # (r, q)


def _grid():
    rows = [
        (right, strike, time, vol, rate, dividend)
        for right in ("call", "put")
        for strike in GRID_STRIKES
        for time in GRID_TIMES
        for vol in GRID_VOLS
        for rate, dividend in GRID_RATES
    ]
    right, strike, time, vol, rate, dividend = (np.array(column) for column in zip(*rows, strict=True))
    return right, strike, time, vol, rate, dividend


def _quantlib_black(right, strike, time, vol, rate, dividend):
    """QuantLib's BlackCalculator (closed form, any T): value and the five greeks per option."""
    ql = pytest.importorskip("QuantLib", reason="QuantLib is a test dependency (pip install QuantLib)")
    out = np.empty((6, right.size))
    for i in range(right.size):
        option_type = ql.Option.Call if right[i] == "call" else ql.Option.Put
        discount = math.exp(-rate[i] * time[i])
        forward = SPOT * math.exp(-dividend[i] * time[i]) / discount
        calc = ql.BlackCalculator(
            ql.PlainVanillaPayoff(option_type, float(strike[i])), forward, vol[i] * math.sqrt(time[i]), discount
        )
        out[:, i] = (
            calc.value(),
            calc.delta(SPOT),
            calc.gamma(SPOT),
            calc.vega(time[i]),
            calc.theta(SPOT, time[i]),
            calc.rho(time[i]),
        )
    return out


def test_price_and_greeks_match_quantlib_black_calculator_on_the_edge_grid():
    right, strike, time, vol, rate, dividend = _grid()
    expected = _quantlib_black(right, strike, time, vol, rate, dividend)
    greeks = bsm_greeks(
        option_type=right, spot=SPOT, strike=strike, time_to_expiry=time, volatility=vol, rate=rate, dividend_yield=dividend
    )
    # Both are closed forms in double precision; they differ by rounding and by the normal
    # CDF: QuantLib's is accurate to ~1e-16 absolute (not relative) above 1e-8, which shows in
    # small out-of-the-money prices (~1e-14 absolute, 3e-7 relative on 1e-7 prices). So:
    # 1e-9 relative or 1e-11 absolute in money on a spot of 100; delta 1e-12, gamma 1e-13
    # absolute. The median difference is ~2e-16 relative.
    tolerances = {
        "price": (1e-9, 1e-11),
        "delta": (1e-9, 1e-12),
        "gamma": (1e-9, 1e-13),
        "vega": (1e-9, 1e-11),
        "theta": (1e-9, 1e-11),
        "rho": (1e-9, 1e-11),
    }
    for row, (name, (rtol, atol)) in enumerate(tolerances.items()):
        np.testing.assert_allclose(getattr(greeks, name), expected[row], rtol=rtol, atol=atol, err_msg=name)


def test_greek_conventions_match_quantlib_vanilla_option_engine():
    """VanillaOption + AnalyticEuropeanEngine: the units a QuantLib user sees (T = days/365)."""
    ql = pytest.importorskip("QuantLib", reason="QuantLib is a test dependency (pip install QuantLib)")
    today = ql.Date(23, 11, 2026)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    spot, rate, dividend, vol = ql.SimpleQuote(SPOT), ql.SimpleQuote(0.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.2)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(dividend), day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), day_count)),
    )
    engine = ql.AnalyticEuropeanEngine(process)
    for right, strike, days, sigma, r, q in [
        ("put", 90.0, 1, 0.25, 0.045, 0.0),
        ("put", 120.0, 30, 0.45, 0.045, 0.015),
        ("call", 80.0, 91, 0.9, 0.0, 0.03),
        ("call", 150.0, 730, 0.3, 0.05, 0.02),
    ]:
        rate.setValue(r)
        dividend.setValue(q)
        vol.setValue(sigma)
        option = ql.VanillaOption(
            ql.PlainVanillaPayoff(ql.Option.Call if right == "call" else ql.Option.Put, strike),
            ql.EuropeanExercise(today + days),
        )
        option.setPricingEngine(engine)
        greeks = bsm_greeks(
            option_type=right, spot=SPOT, strike=strike, time_to_expiry=days / 365, volatility=sigma, rate=r, dividend_yield=q
        )
        for ours, theirs in [
            (greeks.price, option.NPV()),
            (greeks.delta, option.delta()),
            (greeks.gamma, option.gamma()),
            (greeks.vega, option.vega()),
            (greeks.theta, option.theta()),
            (greeks.theta_per_day, option.thetaPerDay()),
            (greeks.rho, option.rho()),
        ]:
            assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-12)


def test_implied_volatility_recovers_the_volatility_from_quantlib_prices():
    right, strike, time, vol, rate, dividend = _grid()
    price, _, _, vega, _, _ = _quantlib_black(right, strike, time, vol, rate, dividend)
    implied = implied_volatility(
        price=price, option_type=right, spot=SPOT, strike=strike, time_to_expiry=time, rate=rate, dividend_yield=dividend
    )
    meaningful = vega > 1e-4
    assert meaningful.sum() > 0.6 * right.size  # the grid is mostly quotes that carry information
    assert np.all(implied.reason[meaningful] == IVReason.OK)
    assert np.max(np.abs(implied.volatility[meaningful] - vol[meaningful])) < 1e-8
    # Where vega is tiny the quote may sit at intrinsic within rounding; any answer given
    # must still reprice the quote.
    solved = implied.ok
    repriced = bsm_price(
        option_type=right[solved],
        spot=SPOT,
        strike=strike[solved],
        time_to_expiry=time[solved],
        volatility=implied.volatility[solved],
        rate=rate[solved],
        dividend_yield=dividend[solved],
    )
    np.testing.assert_allclose(repriced, price[solved], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

spots = st.floats(1.0, 1000.0)
log_moneyness = st.floats(-1.5, 1.5)  # strike from 0.22x to 4.5x spot
times = st.floats(1e-4, 5.0)
vols = st.floats(0.01, 3.0)
rates = st.floats(-0.02, 0.15)
dividends = st.floats(0.0, 0.10)
rights = st.sampled_from(["call", "put"])


@settings(max_examples=300, deadline=None)
@given(spot=spots, log_k=log_moneyness, time=times, vol=vols, rate=rates, dividend=dividends)
def test_put_call_parity(spot, log_k, time, vol, rate, dividend):
    strike = spot * math.exp(log_k)
    market = dict(spot=spot, strike=strike, time_to_expiry=time, volatility=vol, rate=rate, dividend_yield=dividend)
    call, put = bsm_price(option_type="call", **market), bsm_price(option_type="put", **market)
    forward_value = spot * math.exp(-dividend * time) - strike * math.exp(-rate * time)
    assert call - put == pytest.approx(forward_value, abs=1e-12 * (spot + strike))
    call_greeks, put_greeks = bsm_greeks(option_type="call", **market), bsm_greeks(option_type="put", **market)
    # The parity identity differentiated: deltas differ by e^{-qT}, gamma and vega are equal.
    assert call_greeks.delta - put_greeks.delta == pytest.approx(math.exp(-dividend * time), abs=1e-12)
    assert call_greeks.gamma == pytest.approx(put_greeks.gamma, rel=1e-12)
    assert call_greeks.vega == pytest.approx(put_greeks.vega, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    right=rights,
    spot=spots,
    log_k=st.floats(-0.5, 0.5),
    time=st.floats(0.02, 3.0),
    vol=st.floats(0.05, 1.5),
    rate=rates,
    dividend=dividends,
)
def test_greeks_equal_finite_differences_of_the_price(right, spot, log_k, time, vol, rate, dividend):
    strike = spot * math.exp(log_k)
    market = dict(spot=spot, strike=strike, time_to_expiry=time, volatility=vol, rate=rate, dividend_yield=dividend)

    def price(**bumped):
        return float(bsm_price(option_type=right, **{**market, **bumped}))

    greeks = bsm_greeks(option_type=right, **market)
    # Steps on the scale over which the price curves: one standard deviation of the spot.
    deviation = spot * vol * math.sqrt(time)
    h_spot, h_gamma, h_time, h_vol, h_rate = 1e-4 * deviation, 1e-3 * deviation, 1e-5 * time, 1e-5 * vol, 1e-6
    delta = (price(spot=spot + h_spot) - price(spot=spot - h_spot)) / (2 * h_spot)
    gamma = (price(spot=spot + h_gamma) - 2 * price() + price(spot=spot - h_gamma)) / h_gamma**2
    vega = (price(volatility=vol + h_vol) - price(volatility=vol - h_vol)) / (2 * h_vol)
    theta = -(price(time_to_expiry=time + h_time) - price(time_to_expiry=time - h_time)) / (2 * h_time)
    rho = (price(rate=rate + h_rate) - price(rate=rate - h_rate)) / (2 * h_rate)
    # Central differences. Truncation is (step / scale)^2 times derivatives that grow like
    # powers of d1 in the wings (relative tolerance); rounding is eps * price / step, and
    # eps * price / step^2 for gamma (absolute tolerance).
    d1 = (math.log(spot / strike) + (rate - dividend + vol**2 / 2) * time) / (vol * math.sqrt(time))
    wings = (1 + d1 * d1) ** 2
    rounding = 4 * np.finfo(float).eps * (spot + strike)
    assert greeks.delta == pytest.approx(delta, rel=1e-7 * wings, abs=1e-12 + rounding / h_spot)
    assert greeks.gamma == pytest.approx(gamma, rel=1e-5 * wings, abs=1e-12 / spot + rounding / h_gamma**2)
    assert greeks.vega == pytest.approx(vega, rel=1e-7 * wings, abs=1e-12 * spot + rounding / h_vol)
    assert greeks.theta == pytest.approx(theta, rel=1e-7 * wings, abs=1e-12 * spot + rounding / h_time)
    assert greeks.rho == pytest.approx(rho, rel=1e-7 * wings, abs=1e-12 * spot + rounding / h_rate)


@settings(max_examples=400, deadline=None)
@given(right=rights, spot=spots, log_k=log_moneyness, time=times, vol=vols, rate=rates, dividend=dividends)
def test_implied_volatility_round_trip(right, spot, log_k, time, vol, rate, dividend):
    strike = spot * math.exp(log_k)
    market = dict(option_type=right, spot=spot, strike=strike, time_to_expiry=time, rate=rate, dividend_yield=dividend)
    greeks = bsm_greeks(**market, volatility=vol)
    implied = implied_volatility(price=greeks.price, **market)
    # vega > 1e-4 on a spot of 100, i.e. vega / spot > 1e-6, is where the accuracy is promised.
    if greeks.vega > 1e-6 * spot:
        assert implied.reason == IVReason.OK
        assert abs(implied.volatility - vol) < 1e-8
    if implied.reason == IVReason.OK:
        repriced = bsm_price(**market, volatility=implied.volatility)
        assert repriced == pytest.approx(greeks.price, rel=1e-9, abs=1e-13 * max(spot, strike))
    else:
        assert math.isnan(implied.volatility)
        # Only quotes without information fail: zero price, or no time value left in it.
        assert implied.reason in (IVReason.NON_POSITIVE_INPUT, IVReason.AT_INTRINSIC, IVReason.OUTSIDE_NUMERICAL_RANGE)


@settings(max_examples=200, deadline=None)
@given(right=rights, spot=spots, log_k=log_moneyness, time=times, rate=rates, dividend=dividends)
def test_prices_at_or_beyond_the_no_arbitrage_bounds_get_nan_with_a_reason(right, spot, log_k, time, rate, dividend):
    strike = spot * math.exp(log_k)
    market = dict(option_type=right, spot=spot, strike=strike, time_to_expiry=time, rate=rate, dividend_yield=dividend)
    spot_value = spot * math.exp(-dividend * time)
    strike_value = strike * math.exp(-rate * time)
    intrinsic = max(spot_value - strike_value, 0.0) if right == "call" else max(strike_value - spot_value, 0.0)
    upper = spot_value if right == "call" else strike_value

    def reason(price):
        implied = implied_volatility(price=price, **market)
        assert math.isnan(implied.volatility) == (implied.reason != IVReason.OK)
        return IVReason(int(implied.reason))

    assert reason(upper) == IVReason.AT_OR_ABOVE_UPPER_BOUND
    assert reason(upper * 1.01) == IVReason.AT_OR_ABOVE_UPPER_BOUND
    if intrinsic > 1e-6 * spot:  # in the money: the intrinsic value is a positive price
        assert reason(intrinsic) == IVReason.AT_INTRINSIC
        assert reason(intrinsic * 0.99) == IVReason.BELOW_INTRINSIC
    else:  # out of the money: intrinsic is 0, a zero price is not a positive price
        assert reason(0.0) == IVReason.NON_POSITIVE_INPUT
        assert reason(-0.01) == IVReason.NON_POSITIVE_INPUT


any_float = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(
    columns=st.lists(st.tuples(*(any_float,) * 7), min_size=1, max_size=20),
    right=st.sampled_from(["call", "put", True, False, "straddle"]),
)
def test_no_exception_or_warning_on_arbitrary_floats(columns, right):
    price, spot, strike, time, vol, rate, dividend = (np.array(column) for column in zip(*columns, strict=True))
    market = dict(option_type=right, spot=spot, strike=strike, time_to_expiry=time, rate=rate, dividend_yield=dividend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        implied, greeks = implied_volatility_and_greeks(price=price, **market)
        plain = implied_volatility(price=price, **market)
        model = bsm_greeks(**market, volatility=vol)
    assert set(np.unique(implied.reason)) <= {int(reason) for reason in IVReason}
    np.testing.assert_array_equal(implied.reason, plain.reason)
    np.testing.assert_array_equal(implied.volatility, plain.volatility)
    solved = implied.reason == IVReason.OK
    assert np.all(np.isnan(implied.volatility[~solved]))
    assert np.all(np.isfinite(implied.volatility[solved]) & (implied.volatility[solved] > 0))
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        assert np.all(np.isnan(getattr(greeks, name)[~solved]))
    # The model is defined for finite inputs with positive spot, strike, time and volatility.
    defined = (
        np.isfinite(rate) & np.isfinite(dividend) & (spot > 0) & (strike > 0) & (time > 0) & (vol > 0)
        & np.isfinite(spot) & np.isfinite(strike) & np.isfinite(time) & np.isfinite(vol)
    )
    if right == "straddle":  # an invalid type ranks after non-finite and non-positive numbers
        assert set(np.unique(implied.reason)) <= {
            IVReason.NON_FINITE_INPUT,
            IVReason.NON_POSITIVE_INPUT,
            IVReason.INVALID_OPTION_TYPE,
        }
        assert np.all(np.isnan(model.price))
    else:
        assert np.all(np.isnan(model.price[~defined]))


# --------------------------------------------------------------------------------------
# Specific cases and the vectorized interface
# --------------------------------------------------------------------------------------


def test_hours_to_expiry_deep_in_and_out_of_the_money():
    # T = 1e-4 years is about 53 minutes; strikes from 90 to 110 on a spot of 100.
    strikes = np.linspace(90.0, 110.0, 81)
    vols = np.array([0.1, 0.3, 1.0, 2.5])[:, None]
    market = dict(spot=100.0, strike=strikes, time_to_expiry=1e-4, rate=0.05, dividend_yield=0.01)
    for right in ("call", "put"):
        greeks = bsm_greeks(option_type=right, **market, volatility=vols)
        implied = implied_volatility(price=greeks.price, option_type=right, **market)
        meaningful = np.broadcast_to(greeks.vega > 1e-4, implied.reason.shape)
        assert meaningful.sum() > 100
        assert np.all(implied.reason[meaningful] == IVReason.OK)
        assert np.max(np.abs(implied.volatility - vols)[meaningful]) < 1e-8


def test_far_wings_solve_to_full_precision():
    # Deep OTM puts (strike 50 on spot 100), a year out, low and high vol, and deep ITM puts.
    vols = np.array([0.05, 0.15, 0.4, 1.0, 2.0, 4.0])
    for strike in (50.0, 200.0):
        market = dict(option_type="put", spot=100.0, strike=strike, time_to_expiry=1.0, rate=0.03, dividend_yield=0.01)
        greeks = bsm_greeks(**market, volatility=vols)
        implied = implied_volatility(price=greeks.price, **market)
        meaningful = greeks.vega > 1e-4
        assert np.all(implied.reason[meaningful] == IVReason.OK)
        assert np.max(np.abs(implied.volatility - vols)[meaningful]) < 1e-8
    # 4.0 vol on a 50 put: the price is near the upper bound K e^{-rT}, the uppermost branch.
    assert implied_volatility(
        price=bsm_price(option_type="call", spot=100.0, strike=100.0, time_to_expiry=4.0, volatility=3.0, rate=0.0),
        option_type="call",
        spot=100.0,
        strike=100.0,
        time_to_expiry=4.0,
        rate=0.0,
    ).volatility == pytest.approx(3.0, abs=1e-10)


def test_fused_greeks_equal_the_greeks_at_the_implied_volatility():
    strikes = np.array([60.0, 90.0, 100.0, 100.0, 140.0, 100.0])
    # 100.5 is above the put's upper bound 100 e^{-0.02} = 98.02; the 140 put's intrinsic value
    # is 140 e^{-0.02} - 100 e^{-0.01} = 38.23 < 41; a zero price is not a positive price.
    prices = np.array([0.5, 4.0, 9.0, 100.5, 41.0, 0.0])
    market = dict(option_type="put", spot=100.0, strike=strikes, time_to_expiry=0.5, rate=0.04, dividend_yield=0.02)
    implied, greeks = implied_volatility_and_greeks(price=prices, **market)
    ok, above, zero = IVReason.OK, IVReason.AT_OR_ABOVE_UPPER_BOUND, IVReason.NON_POSITIVE_INPUT
    assert list(implied.reason) == [ok, ok, ok, above, ok, zero]
    expected = bsm_greeks(**market, volatility=implied.volatility)
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        np.testing.assert_allclose(getattr(greeks, name), getattr(expected, name), rtol=1e-14, atol=0, err_msg=name)
    assert np.all(np.isnan(greeks.delta[~implied.ok]))


def test_scalars_give_scalars_and_arrays_broadcast():
    implied = implied_volatility(price=5.0, option_type="put", spot=100.0, strike=100.0, time_to_expiry=0.25, rate=0.0)
    assert isinstance(implied, ImpliedVolatility)
    assert np.ndim(implied.volatility) == 0 and isinstance(float(implied.volatility), float)
    assert implied.reason == IVReason.OK
    greeks = bsm_greeks(
        option_type="call",
        spot=100.0,
        strike=np.array([[90.0], [100.0], [110.0]]),
        time_to_expiry=np.array([0.1, 0.5, 1.0, 2.0]),
        volatility=0.3,
        rate=0.01,
    )
    assert isinstance(greeks, Greeks)
    assert greeks.delta.shape == (3, 4)
    assert greeks.delta[0, 0] == pytest.approx(
        float(bsm_greeks(option_type="call", spot=100.0, strike=90.0, time_to_expiry=0.1, volatility=0.3, rate=0.01).delta)
    )


def test_option_types_as_strings_or_booleans():
    market = dict(spot=100.0, strike=105.0, time_to_expiry=0.5, volatility=0.25, rate=0.02)
    call = bsm_price(option_type="call", **market)
    put = bsm_price(option_type="put", **market)
    prices = bsm_price(option_type=np.array(["call", "PUT", " c ", "p", "Call", "straddle"]), **market)
    np.testing.assert_array_equal(prices[:5], [call, put, call, put, call])
    assert math.isnan(prices[5])
    np.testing.assert_array_equal(bsm_price(option_type=np.array([True, False]), **market), [call, put])
    implied = implied_volatility(
        price=put, option_type=np.array(["put", "x"], dtype=object), spot=100.0, strike=105.0, time_to_expiry=0.5, rate=0.02
    )
    assert list(implied.reason) == [IVReason.OK, IVReason.INVALID_OPTION_TYPE]
    with pytest.raises(TypeError):
        bsm_price(option_type=1.0, **market)


def test_reason_codes_have_texts():
    texts = {reason: reason.text for reason in IVReason}
    assert len(set(texts.values())) == len(IVReason)
    codes = np.array([[IVReason.OK, IVReason.BELOW_INTRINSIC], [IVReason.NO_CONVERGENCE, IVReason.AT_INTRINSIC]])
    described = reason_text(codes)
    assert described.shape == (2, 2)
    assert described[0, 1] == IVReason.BELOW_INTRINSIC.text
    assert "below the discounted intrinsic value" in described[0, 1]
    implied = implied_volatility(price=-1.0, option_type="put", spot=100.0, strike=100.0, time_to_expiry=1.0, rate=0.0)
    assert implied.reason_text() == IVReason.NON_POSITIVE_INPUT.text


def test_large_arrays_are_identical_on_one_thread_and_on_several():
    rng = np.random.default_rng(3)
    size = 150_000  # several chunks, above the size that goes parallel
    strike = rng.uniform(50.0, 150.0, size)
    time = rng.integers(1, 731, size) / 365
    vol = rng.uniform(0.05, 1.5, size)
    market = dict(option_type="put", spot=100.0, strike=strike, time_to_expiry=time, rate=0.03, dividend_yield=0.01)
    price = bsm_price(**market, volatility=vol)
    one, one_greeks = implied_volatility_and_greeks(price=price, **market, threads=1)
    many, many_greeks = implied_volatility_and_greeks(price=price, **market, threads=4)
    np.testing.assert_array_equal(one.volatility, many.volatility)
    np.testing.assert_array_equal(one.reason, many.reason)
    np.testing.assert_array_equal(one_greeks.theta, many_greeks.theta)
    # And element by element the same as solving a few quotes on their own.
    few = implied_volatility(price=price[:5], **{**market, "strike": strike[:5], "time_to_expiry": time[:5]})
    np.testing.assert_array_equal(few.volatility, one.volatility[:5])
