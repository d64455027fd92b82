"""Vectorized Black-Scholes-Merton pricing, greeks and implied volatility.

Model: European options on an underlying with a continuous dividend yield ``q`` and a
continuously compounded risk-free rate ``r``; ``time_to_expiry`` is in years. Inputs are
numpy arrays or scalars and broadcast against each other; outputs have the broadcast
shape (0-d inputs give numpy scalars).

Conventions (docs/options_math.md has the formulas):

- ``vega`` is per 1.00 of volatility (``Greeks.vega_per_vol_point`` divides by 100);
- ``theta`` is per year of calendar time, ``-dV/dT`` (``Greeks.theta_per_day`` divides by
  365); ``rho`` is per 1.00 of rate; ``gamma`` per unit of underlying.
- ``option_type``: strings ``"call"``/``"put"`` (or ``"c"``/``"p"``, any case), or booleans
  where True means call. Anything else is an invalid option type.

The implied volatility solver never raises on bad numbers and never returns a guess: every
quote gets either the volatility that reprices it (to the precision its price allows) or
NaN with an :class:`IVReason` code. Method, after the ideas of P. Jaeckel, "Let's Be Rational" (2015),
written here from the paper's description:

1. normalise to an out-of-the-money option on the forward (``x = -|ln(F/K)| <= 0``, price
   ``beta`` in units of ``sqrt(F K)``), removing the intrinsic value of in-the-money quotes;
2. an initial guess from one of four branches, split at the inflection point of the price
   in ``s = sigma sqrt(T)`` and at the two points where its tangent there meets 0 and the
   upper bound. Each branch interpolates with a shape-preserving rational cubic, the outer
   two in a transformed variable that follows the price's asymptotics;
3. Householder iterations of order 3 (quartic convergence) on an objective that is close to
   linear in each branch (``1/ln b`` in the low tail, ``b`` in the middle, ``ln(b_max - b)``
   near the upper bound), kept inside a bracket so that they cannot diverge.

Large arrays are cut into cache-sized chunks that run on all available cores (numpy and
scipy release the GIL), which is why there is no Python loop per quote anywhere.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr, ndtri

FloatArray = NDArray[np.float64]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_3 = math.sqrt(3.0)
_TWO_PI_OVER_3_SQRT_3 = 2.0 * math.pi / (3.0 * math.sqrt(3.0))
_EPS = float(np.finfo(np.float64).eps)

# Quotes are kept away from under- and overflow, far beyond anything listed: prices from
# 1e-250, strike and forward within [1e-250, 1e250], |ln(F/K)| up to 500 and normalised
# prices from 1e-300. Outside, even repricing in double precision fails.
_MIN_PRICE = 1e-250
_MAX_SCALE = 1e250
_MAX_ABS_LOG_MONEYNESS = 500.0
_MIN_NORMALISED_PRICE = 1e-300
# An in-the-money quote's time value is price minus intrinsic value; both are of the size of
# F or K, so a difference within a few ulps of them is rounding, not time value.
_TIME_VALUE_ULPS = 8.0
# Householder(3) converges quartically: the error after a step is about C e^4, e the error
# before it (about the size of the step) and C below 1 on our branches (measured). Once a
# step is below 1e-5 relative, what is left is of order 1e-20: far below double precision.
_STEP_TOLERANCE = 1e-5
_MAX_ITERATIONS = 24
# Below this total volatility s = sigma sqrt(T) the rounding of b is checked (see
# _relative_resolution) and solutions resolved worse than _MAX_RELATIVE_ROUNDING refused.
_SMALL_TOTAL_VOL = 1e-3
_MAX_RELATIVE_ROUNDING = 1e-10
# Rational cubic control parameters beyond this are linear interpolation for our purpose.
_MAX_CONTROL = 1e6

_CHUNK = 1 << 15  # 32k doubles (256 kB) per array: few Python calls per quote, arrays near L2 size
_MIN_PARALLEL = 1 << 16


class IVReason(enum.IntEnum):
    """Why an implied volatility is NaN (``OK`` when it is not)."""

    OK = 0
    NON_FINITE_INPUT = 1
    NON_POSITIVE_INPUT = 2
    INVALID_OPTION_TYPE = 3
    BELOW_INTRINSIC = 4
    AT_INTRINSIC = 5
    AT_OR_ABOVE_UPPER_BOUND = 6
    OUTSIDE_NUMERICAL_RANGE = 7
    NO_CONVERGENCE = 8

    @property
    def text(self) -> str:
        return _REASON_TEXT[self]


_REASON_TEXT: dict[IVReason, str] = {
    IVReason.OK: "ok",
    IVReason.NON_FINITE_INPUT: "an input (price, spot, strike, time, rate or dividend yield) is NaN or infinite",
    IVReason.NON_POSITIVE_INPUT: "price, spot, strike or time to expiry is zero or negative",
    IVReason.INVALID_OPTION_TYPE: "option type is not call or put",
    IVReason.BELOW_INTRINSIC: "price is below the discounted intrinsic value (arbitrage)",
    IVReason.AT_INTRINSIC: "price equals the discounted intrinsic value (no time value to imply a volatility from)",
    IVReason.AT_OR_ABOVE_UPPER_BOUND: (
        "price is at or above the no-arbitrage upper bound (discounted spot for a call, discounted strike for a put)"
    ),
    IVReason.OUTSIDE_NUMERICAL_RANGE: (
        "inputs too extreme (or expiry and volatility too close to zero) to solve in double precision"
    ),
    IVReason.NO_CONVERGENCE: "the solver did not converge",
}
_REASON_TEXT_ARRAY = np.array([_REASON_TEXT[reason] for reason in IVReason], dtype=object)


def reason_text(codes: ArrayLike) -> NDArray[np.object_]:
    """The text of each :class:`IVReason` code, in an array of the codes' shape."""
    return _REASON_TEXT_ARRAY[np.asarray(codes, dtype=np.intp)]


@dataclass(frozen=True, eq=False)
class Greeks:
    """Model price and the five greeks, each an array of the inputs' broadcast shape.

    ``vega`` per 1.00 of volatility, ``theta`` per year (``-dV/dT``), ``rho`` per 1.00 of
    rate: the same units as QuantLib's. NaN wherever the inputs are not a valid option.
    """

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    rho: FloatArray

    @property
    def theta_per_day(self) -> FloatArray:
        """Theta per calendar day (per year / 365)."""
        return self.theta / 365.0

    @property
    def vega_per_vol_point(self) -> FloatArray:
        """Vega per 1 percentage point of volatility (per 1.00 / 100)."""
        return self.vega / 100.0

    @property
    def rho_per_rate_point(self) -> FloatArray:
        """Rho per 1 percentage point of rate (per 1.00 / 100)."""
        return self.rho / 100.0


@dataclass(frozen=True, eq=False)
class ImpliedVolatility:
    """Implied volatilities (per 1.00, annualised) and why any of them is NaN."""

    volatility: FloatArray
    reason: NDArray[np.int8]

    @property
    def ok(self) -> NDArray[np.bool_]:
        return np.asarray(self.reason) == IVReason.OK

    def reason_text(self) -> NDArray[np.object_]:
        return reason_text(self.reason)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def bsm_price(
    *,
    option_type: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    time_to_expiry: ArrayLike,
    volatility: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
    threads: int | None = None,
) -> FloatArray:
    """Black-Scholes-Merton price; NaN where the inputs are not a valid option.

    Valid means finite inputs, positive spot, strike, time and volatility, and a known
    option type. At the limits (tiny time or volatility) the price tends to the discounted
    intrinsic value and never falls below it.
    """
    omega, arrays, shape = _prepare(option_type, spot, strike, time_to_expiry, volatility, rate, dividend_yield)
    (price,) = _run_chunked(_price_chunk, [omega, *arrays], 1, threads)
    return _shaped(price, shape)


def bsm_greeks(
    *,
    option_type: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    time_to_expiry: ArrayLike,
    volatility: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
    threads: int | None = None,
) -> Greeks:
    """Price, delta, gamma, vega, theta and rho in one pass (shared d1, d2, pdf and cdfs)."""
    omega, arrays, shape = _prepare(option_type, spot, strike, time_to_expiry, volatility, rate, dividend_yield)
    columns = _run_chunked(_greeks_chunk, [omega, *arrays], 6, threads)
    return Greeks(*(_shaped(column, shape) for column in columns))


def implied_volatility(
    *,
    price: ArrayLike,
    option_type: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    time_to_expiry: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
    threads: int | None = None,
) -> ImpliedVolatility:
    """The volatility at which :func:`bsm_price` equals ``price`` (a discounted premium).

    Never raises for numeric input: quotes that have no implied volatility get NaN and an
    :class:`IVReason` saying why (see :func:`reason_text`).
    """
    omega, arrays, shape = _prepare(option_type, spot, strike, time_to_expiry, price, rate, dividend_yield)
    volatility, reason = _run_chunked(_implied_chunk, [omega, *arrays], 2, threads, dtypes=(np.float64, np.int8))
    return ImpliedVolatility(_shaped(volatility, shape), _shaped(reason, shape))


def implied_volatility_and_greeks(
    *,
    price: ArrayLike,
    option_type: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    time_to_expiry: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
    threads: int | None = None,
) -> tuple[ImpliedVolatility, Greeks]:
    """:func:`implied_volatility` and the greeks at that volatility, sharing the work.

    The greeks are NaN wherever the implied volatility is.
    """
    omega, arrays, shape = _prepare(option_type, spot, strike, time_to_expiry, price, rate, dividend_yield)
    columns = _run_chunked(
        _implied_and_greeks_chunk, [omega, *arrays], 8, threads, dtypes=(np.float64, np.int8) + (np.float64,) * 6
    )
    implied = ImpliedVolatility(_shaped(columns[0], shape), _shaped(columns[1], shape))
    return implied, Greeks(*(_shaped(column, shape) for column in columns[2:]))


# --------------------------------------------------------------------------------------
# Input handling and chunked execution
# --------------------------------------------------------------------------------------


def _option_sign(option_type: ArrayLike) -> FloatArray:
    """+1.0 for calls, -1.0 for puts, NaN for anything else."""
    kinds = np.asarray(option_type)
    if kinds.dtype == np.bool_:
        return np.where(kinds, 1.0, -1.0)
    if kinds.dtype.kind in "USO":
        words = np.strings.lower(np.strings.strip(kinds.astype(np.str_)))
        is_call = (words == "call") | (words == "c")
        is_put = (words == "put") | (words == "p")
        return np.where(is_call, 1.0, np.where(is_put, -1.0, np.nan))
    raise TypeError(f"option_type must be strings ('call'/'put') or booleans (True = call), not {kinds.dtype}")


def _prepare(option_type: ArrayLike, *values: ArrayLike) -> tuple[FloatArray, list[FloatArray], tuple[int, ...]]:
    """Broadcast everything to one shape and flatten to 1-d float64 (views where possible)."""
    omega = _option_sign(option_type)
    arrays = [np.asarray(value, dtype=np.float64) for value in values]
    shape = np.broadcast_shapes(omega.shape, *(array.shape for array in arrays))
    flat = [np.broadcast_to(array, shape).reshape(-1) for array in (omega, *arrays)]
    return flat[0], flat[1:], shape


def _shaped(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return values.reshape(shape)[()] if shape == () else values.reshape(shape)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_chunked(
    kernel: Callable[..., Sequence[np.ndarray]],
    inputs: list[np.ndarray],
    n_outputs: int,
    threads: int | None,
    dtypes: Sequence[type] | None = None,
) -> list[np.ndarray]:
    """Apply ``kernel`` to cache-sized slices of ``inputs``, on several threads if large."""
    size = inputs[0].shape[0]
    outputs = [np.empty(size, dtype=dtype) for dtype in (dtypes or (np.float64,) * n_outputs)]

    def run(start: int) -> None:
        stop = min(start + _CHUNK, size)
        results = kernel(*(array[start:stop] for array in inputs))
        for output, result in zip(outputs, results, strict=True):
            output[start:stop] = result

    starts = range(0, size, _CHUNK)
    workers = min(threads or _available_cores(), len(starts))
    if workers <= 1 or size < _MIN_PARALLEL:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    return outputs


# --------------------------------------------------------------------------------------
# Pricing and greeks
# --------------------------------------------------------------------------------------


def _valid_option(omega, spot, strike, time, volatility, rate, dividend_yield) -> NDArray[np.bool_]:
    # A comparison with NaN is False, so (0 < value < inf) also rejects NaN.
    positive = (
        (0 < spot) & (spot < np.inf) & (0 < strike) & (strike < np.inf) & (0 < time) & (time < np.inf)
        & (0 < volatility) & (volatility < np.inf)
    )
    return positive & np.isfinite(omega) & np.isfinite(rate) & np.isfinite(dividend_yield)


def _price_chunk(omega, spot, strike, time, volatility, rate, dividend_yield):
    with np.errstate(all="ignore"):
        valid = _valid_option(omega, spot, strike, time, volatility, rate, dividend_yield)
        discount = np.exp(-rate * time)
        carry = np.exp(-dividend_yield * time)
        total_vol = volatility * np.sqrt(time)
        log_moneyness = np.log(spot / strike) + (rate * time - dividend_yield * time)
        d1 = log_moneyness / total_vol + 0.5 * total_vol
        spot_carry = spot * carry
        strike_discount = strike * discount
        price = omega * (spot_carry * ndtr(omega * d1) - strike_discount * ndtr(omega * (d1 - total_vol)))
        # Never below the discounted intrinsic value (rounding in the difference above).
        price = np.maximum(price, np.maximum(omega * (spot_carry - strike_discount), 0.0))
        return (np.where(valid, price, np.nan),)


def _greeks_chunk(omega, spot, strike, time, volatility, rate, dividend_yield):
    with np.errstate(all="ignore"):
        valid = _valid_option(omega, spot, strike, time, volatility, rate, dividend_yield)
        discount = np.exp(-rate * time)
        carry = np.exp(-dividend_yield * time)
        log_moneyness = np.log(spot / strike) + (rate * time - dividend_yield * time)
        greeks = _greeks_from_parts(
            omega, spot, strike, time, volatility, rate, dividend_yield, discount, carry, log_moneyness, np.sqrt(time)
        )
        return [np.where(valid, greek, np.nan) for greek in greeks]


def _greeks_from_parts(omega, spot, strike, time, volatility, rate, dividend_yield, discount, carry, log_fk, sqrt_t):
    """Price and greeks given the pieces that the implied volatility solver also needs.

    ``log_fk`` is ln(F/K) = ln(S/K) + (r - q) T; ``discount`` e^{-rT}; ``carry`` e^{-qT}.
    """
    total_vol = volatility * sqrt_t
    d1 = log_fk / total_vol + 0.5 * total_vol
    cdf_d1 = ndtr(omega * d1)  # N(d1) for a call, N(-d1) for a put
    cdf_d2 = ndtr(omega * (d1 - total_vol))
    pdf_d1 = np.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI
    spot_carry = spot * carry
    strike_discount = strike * discount
    price = omega * (spot_carry * cdf_d1 - strike_discount * cdf_d2)
    price = np.maximum(price, np.maximum(omega * (spot_carry - strike_discount), 0.0))
    delta = omega * carry * cdf_d1
    gamma = carry * pdf_d1 / (spot * total_vol)
    vega = spot_carry * pdf_d1 * sqrt_t
    theta = -0.5 * vega * volatility / time + omega * (dividend_yield * spot_carry * cdf_d1 - rate * strike_discount * cdf_d2)
    rho = omega * time * strike_discount * cdf_d2
    return price, delta, gamma, vega, theta, rho


# --------------------------------------------------------------------------------------
# Implied volatility: from quotes to the normalised problem and back
# --------------------------------------------------------------------------------------


def _implied_chunk(omega, spot, strike, time, price, rate, dividend_yield):
    volatility, reason, _ = _implied_with_parts(omega, spot, strike, time, price, rate, dividend_yield)
    return volatility, reason


def _implied_and_greeks_chunk(omega, spot, strike, time, price, rate, dividend_yield):
    volatility, reason, parts = _implied_with_parts(omega, spot, strike, time, price, rate, dividend_yield)
    discount, carry, log_fk, sqrt_t = parts
    with np.errstate(all="ignore"):
        greeks = _greeks_from_parts(
            omega, spot, strike, time, volatility, rate, dividend_yield, discount, carry, log_fk, sqrt_t
        )
    return (volatility, reason, *greeks)


def _implied_with_parts(omega, spot, strike, time, price, rate, dividend_yield):
    """Implied volatility and reason codes of one chunk, plus the market parts computed on the way."""
    with np.errstate(all="ignore"):
        discount = np.exp(-rate * time)
        carry = np.exp(-dividend_yield * time)
        sqrt_t = np.sqrt(time)
        forward = spot * carry / discount
        log_fk = np.log(forward / strike)
        undiscounted = price / discount

        # Reduce to an out-of-the-money option: an in-the-money call is worth its intrinsic
        # value F - K plus the price of the put (parity), and the reverse for a put. By the
        # symmetry b(x, s, call) = b(-x, s, put) the OTM option is then a call on x <= 0.
        intrinsic = np.maximum(omega * (forward - strike), 0.0)
        time_value = undiscounted - intrinsic
        low_fk = np.minimum(forward, strike)
        high_fk = np.maximum(forward, strike)
        ulps = (_TIME_VALUE_ULPS * _EPS) * high_fk
        rounding = (intrinsic > 0) * ulps
        # At the upper bound (time value = min(F, K)) the volatility is infinite; within a few
        # ulps of it the price cannot tell one huge volatility from another.
        headroom = low_fk - ulps
        x = -np.abs(log_fk)
        upper = np.sqrt(low_fk / high_fk)  # e^{x/2}
        beta = time_value / (high_fk * upper)  # time value / sqrt(F K)

        # Fast path for clean quotes: one combined test. The time value is NaN or infinite if
        # the price, spot, strike, rate, dividend yield or option type (NaN omega) is.
        solvable = (
            np.isfinite(time_value + time + rate + dividend_yield)
            & (time > 0)
            & _within_scale(price, low_fk, high_fk, x)
            & (time_value > rounding)
            & (beta >= _MIN_NORMALISED_PRICE)
            & (beta < upper)
            & (time_value < headroom)
        )
        reason = np.zeros(omega.shape, dtype=np.int8)
        if not solvable.all():
            bad = np.flatnonzero(~solvable)
            reason[bad] = _reason_codes(
                *(
                    array[bad]
                    for array in (omega, spot, strike, time, price, rate, dividend_yield)
                    + (low_fk, high_fk, undiscounted, x, time_value, rounding, headroom, beta, upper)
                )
            )
            solvable = reason == IVReason.OK
        if solvable.all():
            total_vol, converged = _solve_normalised(beta, x, upper)
        else:
            total_vol = np.full(omega.shape, np.nan)
            converged = np.zeros(omega.shape, dtype=bool)
            index = np.flatnonzero(solvable)
            if index.size:
                total_vol[index], converged[index] = _solve_normalised(beta[index], x[index], upper[index])
        reason[solvable & ~(converged & np.isfinite(total_vol) & (total_vol > 0))] = IVReason.NO_CONVERGENCE
        # Very small total volatilities (seconds to expiry, or almost no volatility) near the
        # money: b is then a difference of two numbers close to 1/2, and its rounding may be
        # larger than the accuracy we promise. Refuse those rather than return noise.
        tiny = np.flatnonzero((reason == IVReason.OK) & (total_vol < _SMALL_TOTAL_VOL))
        if tiny.size:
            resolution = _relative_resolution(total_vol[tiny], x[tiny], upper[tiny])
            reason[tiny[resolution > _MAX_RELATIVE_ROUNDING]] = IVReason.OUTSIDE_NUMERICAL_RANGE
        volatility = total_vol / sqrt_t
        if not (reason == IVReason.OK).all():
            volatility[reason != IVReason.OK] = np.nan
        return volatility, reason, (discount, carry, log_fk, sqrt_t)


def _relative_resolution(total_vol, x, upper):
    """Relative error of s caused by rounding in b(x, s) = e^{x/2} N(d1) - e^{-x/2} N(d2).

    Each term carries a few ulps of error; divided by b'(s) s that is the relative error of
    the solution.
    """
    h = x / total_vol
    t = 0.5 * total_vol
    terms = upper * ndtr(h + t) + ndtr(h - t) / upper
    vega = np.exp(-0.5 * (h * h + t * t)) * _INV_SQRT_2PI
    return 4.0 * _EPS * terms / (vega * total_vol)


def _within_scale(price, low_fk, high_fk, x):
    # Comparisons with NaN are False: NaN anywhere is outside the scale.
    return (
        (price >= _MIN_PRICE)
        & (low_fk >= 1.0 / _MAX_SCALE)
        & (high_fk <= _MAX_SCALE)
        & (x >= -_MAX_ABS_LOG_MONEYNESS)
    )


def _reason_codes(
    omega, spot, strike, time, price, rate, dividend_yield, low_fk, high_fk, undiscounted, x, time_value, rounding, headroom, beta, upper
):
    """The first reason, in this order of precedence, why each quote has no implied volatility."""
    finite = (
        np.isfinite(price)
        & np.isfinite(spot)
        & np.isfinite(strike)
        & np.isfinite(time)
        & np.isfinite(rate)
        & np.isfinite(dividend_yield)
    )
    positive = (price > 0) & (spot > 0) & (strike > 0) & (time > 0)
    representable = (
        np.isfinite(undiscounted)
        & _within_scale(price, low_fk, high_fk, x)
        & ((beta >= _MIN_NORMALISED_PRICE) | (time_value <= rounding))
    )
    return np.select(
        [
            ~finite,
            ~positive,
            np.isnan(omega),
            ~representable,
            time_value < -rounding,
            time_value <= rounding,
            ~((beta < upper) & (time_value < headroom)),
        ],
        [
            IVReason.NON_FINITE_INPUT,
            IVReason.NON_POSITIVE_INPUT,
            IVReason.INVALID_OPTION_TYPE,
            IVReason.OUTSIDE_NUMERICAL_RANGE,
            IVReason.BELOW_INTRINSIC,
            IVReason.AT_INTRINSIC,
            IVReason.AT_OR_ABOVE_UPPER_BOUND,
        ],
        IVReason.OK,
    ).astype(np.int8)


# --------------------------------------------------------------------------------------
# The normalised problem: find s = sigma sqrt(T) > 0 with b(x, s) = beta, where
#   b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2),   x <= 0,  0 < beta < e^{x/2}.
# With h = x/s and t = s/2:   b'(s) = exp(-(h^2 + t^2)/2) / sqrt(2 pi),
#   b''/b' = h^2/s - s/4,     b'''/b' = (b''/b')^2 - 3 h^2/s^2 - 1/4.
# --------------------------------------------------------------------------------------

_LOWEST, _MIDDLE, _UPPERMOST = 0, 1, 2


def _solve_normalised(beta: FloatArray, x: FloatArray, upper: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Total volatility s for each normalised OTM price, and whether it converged."""
    # b is convex below its inflection point s_c = sqrt(2|x|) and concave above. The tangent
    # at s_c meets 0 at s_l and the upper bound e^{x/2} at s_u; s_l (for prices below b_c)
    # or s_u (above) is the far end of the middle branch, beyond which the tail branches lie.
    s_c = np.sqrt(-2.0 * x)
    b_c = 0.5 * upper - ndtr(-s_c) / upper
    vega_c = upper * _INV_SQRT_2PI
    lower_half = beta < b_c
    s_end = np.where(lower_half, np.maximum(s_c - b_c / vega_c, 0.0), s_c + (upper - b_c) / vega_c)
    h_end = x / s_end
    t_end = 0.5 * s_end
    b_end = upper * ndtr(h_end + t_end) - ndtr(h_end - t_end) / upper
    vega_end = np.exp(-0.5 * (h_end * h_end + t_end * t_end)) * _INV_SQRT_2PI
    lowest = lower_half & (beta < b_end)
    uppermost = ~lower_half & (beta > b_end)

    total_vol = np.empty_like(beta)
    converged = np.empty(beta.shape, dtype=bool)
    tails = lowest | uppermost
    if tails.any():
        index = np.flatnonzero(lowest)
        if index.size:
            total_vol[index], converged[index] = _solve_lowest(
                beta[index], x[index], upper[index], s_end[index], b_end[index], vega_end[index]
            )
        index = np.flatnonzero(uppermost)
        if index.size:
            total_vol[index], converged[index] = _solve_uppermost(
                beta[index], x[index], upper[index], s_end[index], b_end[index], h_end[index], vega_end[index]
            )
        index = np.flatnonzero(~tails)
        beta, x, upper, lower_half, s_c, b_c, vega_c, s_end, b_end, vega_end = (
            array[index] for array in (beta, x, upper, lower_half, s_c, b_c, vega_c, s_end, b_end, vega_end)
        )
    else:
        index = None

    # The middle branch interpolates s(beta) itself between (b_end, s_end) and (b_c, s_c),
    # slopes 1/b'; its curvature -b''/b'^3 is 0 at s_c, the right end in the lower half.
    d_c = 1.0 / vega_c
    d_end = 1.0 / vega_end
    b_left, b_right = np.where(lower_half, b_end, b_c), np.where(lower_half, b_c, b_end)
    s_left, s_right = np.where(lower_half, s_end, s_c), np.where(lower_half, s_c, s_end)
    d_left, d_right = np.where(lower_half, d_end, d_c), np.where(lower_half, d_c, d_end)
    guess = _rational_cubic(beta, b_left, b_right, s_left, s_right, d_left, d_right, 0.0, at_right=lower_half)
    middle_vol, middle_converged = _householder(_MIDDLE, guess, s_left, s_right, beta, x, upper, beta)
    if index is None:
        return middle_vol, middle_converged
    total_vol[index], converged[index] = middle_vol, middle_converged
    return total_vol, converged


def _solve_lowest(beta, x, upper, s_l, b_l, vega_l):
    """Deep out of the money (beta < b(s_l)): the price is exponentially small in 1/s^2.

    There b(s) is close to f(s) = (2 pi |x| / (3 sqrt 3)) N(-z)^3 with z = |x| / (sqrt(3) s):
    both behave like phi(x/s) s^3 / x^2 as s -> 0, and f inverts in closed form. So f is
    interpolated as a function of beta on [0, b_l] (f(0) = 0, f'(0) = 1, value, slope and
    curvature matched at b_l) and the guess is f's inverse at the interpolated value.
    """
    abs_x = -x
    z = abs_x / (_SQRT_3 * s_l)
    tail = ndtr(-z)
    pdf = np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    f_l = _TWO_PI_OVER_3_SQRT_3 * abs_x * tail * tail * tail
    # df/dbeta = f'(s)/b'(s) = 2 pi z^2 N(-z)^2 e^{z^2 + s^2/8}, written with N(-z)/phi(z) so
    # that nothing overflows for large z; d2f/dbeta2 = (f''/f' - b''/b') (df/dbeta) / b'.
    slope_l = (z * tail / pdf) ** 2 * np.exp(0.125 * s_l * s_l)
    curvature_l = ((z * z - 2.0 + 2.0 * z * pdf / tail) / s_l - (abs_x * abs_x / (s_l * s_l * s_l) - 0.25 * s_l)) * slope_l / vega_l
    f = _rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, slope_l, curvature_l, at_right=True)
    guess = abs_x / (_SQRT_3 * -ndtri(np.cbrt(f / (_TWO_PI_OVER_3_SQRT_3 * abs_x))))
    return _householder(_LOWEST, guess, np.zeros_like(s_l), s_l, beta, x, upper, np.log(beta))


def _solve_uppermost(beta, x, upper, s_u, b_u, h_u, vega_u):
    """Close to the upper bound (beta > b(s_u)): e^{x/2} - b(s) is close to 2 N(-s/2).

    f(s) = N(-s/2) is interpolated as a function of beta on [b_u, e^{x/2}] (f = 0 and
    f' = -1/2 at the bound, value, slope and curvature matched at b_u); the guess is
    s = -2 N^{-1}(f).
    """
    f_u = ndtr(-0.5 * s_u)
    slope_u = -0.5 * np.exp(0.5 * h_u * h_u)
    curvature_u = -(h_u * h_u / s_u) * slope_u / vega_u
    f = _rational_cubic(beta, b_u, upper, f_u, 0.0, slope_u, -0.5, curvature_u, at_right=False)
    guess = -2.0 * ndtri(f)
    # The objective works on the distance to the bound, ln(e^{x/2} - b).
    return _householder(_UPPERMOST, guess, s_u, np.full_like(s_u, np.inf), beta, x, upper, np.log(upper - beta))


def _householder(objective, guess, low, high, beta, x, upper, target):
    """Householder(3) iterations on one branch's objective, safeguarded by a bracket.

    ``target`` is the objective's value at the solution (ln beta, beta or ln(e^{x/2} -
    beta)). A step that leaves the bracket [low, high] is replaced by bisection (or by
    doubling when the bracket is open above); an element is done when a step inside the
    bracket moves s by less than _STEP_TOLERANCE relative. While most elements are still
    working every element steps (a converged one only moves by rounding), which is cheaper
    than gathering the working ones.
    """
    s = np.where((guess > low) & (guess < high), guess, _bisect(low, high))  # also replaces a NaN guess
    converged = np.zeros(s.shape, dtype=bool)
    working: NDArray[np.intp] | None = None  # None: every element steps
    for _ in range(_MAX_ITERATIONS):
        if working is None:
            s, low, high, converged = _householder_step(objective, s, low, high, beta, x, upper, target)
            left = np.flatnonzero(~converged)
            if 4 * left.size <= s.size:
                working = left
        else:
            w = working
            s[w], low[w], high[w], converged[w] = _householder_step(
                objective, s[w], low[w], high[w], beta[w], x[w], upper[w], target[w]
            )
            working = w[~converged[w]]
        if working is not None and not working.size:
            break
    return s, converged


def _householder_step(objective, s, low, high, beta, x, upper, target):
    """One safeguarded step for every element: the new s, the narrowed bracket and whether done."""
    h = x / s
    t = 0.5 * s
    hh = h * h
    vega = np.exp(-0.5 * (hh + t * t)) * _INV_SQRT_2PI
    b2 = hh / s - 0.25 * s  # b''/b'
    b3 = b2 * b2 - 3.0 * hh / (s * s) - 0.25  # b'''/b'
    if objective == _UPPERMOST:
        # g = ln(e^{x/2} - b) - target, with the distance to the bound summed, not subtracted.
        gap = upper * ndtr(-(h + t)) + ndtr(h - t) / upper
        below = gap > upper - beta
        mu = vega / gap
        newton = (np.log(gap) - target) / mu
        h2 = b2 + mu
        h3 = b3 + 3.0 * b2 * mu + 2.0 * mu * mu
    else:
        black = upper * ndtr(h + t) - ndtr(h - t) / upper
        below = black < beta
        if objective == _MIDDLE:  # g = b - beta
            newton = (target - black) / vega
            h2, h3 = b2, b3
        else:  # g = 1/L - 1/ln(beta) with L = ln b, lam = L' = b'/b
            log_b = np.log(black)
            lam = vega / black
            newton = log_b * (1.0 - log_b / target) / lam
            lam_over_log = lam / log_b
            h2 = b2 - lam - 2.0 * lam_over_log
            h3 = b3 - 3.0 * lam * b2 + 2.0 * lam * lam - 6.0 * lam_over_log * (b2 - lam) + 6.0 * lam_over_log * lam_over_log
    low = np.where(below, s, low)
    high = np.where(below, high, s)
    step = newton * (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))
    proposal = s + step
    # Non-strict: at convergence the bracket closes onto s and the last tiny step may land on its end.
    accepted = (proposal >= low) & (proposal <= high) & (proposal > 0)
    if not accepted.all():
        proposal = np.where(accepted, proposal, _bisect(low, high))
    # A bracket a few ulps wide also ends the search: rounding in b then decides the last bits.
    done = (accepted & (np.abs(step) <= _STEP_TOLERANCE * proposal)) | (high - low <= 8.0 * _EPS * proposal)
    return proposal, low, high, done


def _bisect(low, high):
    """Midpoint of the bracket, or twice its lower end when it is open above."""
    return np.where(np.isfinite(high), 0.5 * (low + high), 2.0 * low)


def _rational_cubic(at, x_l, x_r, y_l, y_r, d_l, d_r, second, *, at_right):
    """Shape-preserving rational cubic through (x_l, y_l), (x_r, y_r) with end slopes d_l, d_r.

    R(t) = [y_r t^3 + (r y_r - w d_r) t^2 u + (r y_l + w d_l) t u^2 + y_l u^3] / [1 + (r - 3) t u]
    with w = x_r - x_l, t = (at - x_l)/w, u = 1 - t (Delbourgo and Gregory). r = 3 is the cubic
    Hermite; r is chosen to match ``second``, the second derivative at the right end where
    ``at_right`` (a bool or bool array) and at the left end elsewhere, and raised where needed
    so that the curve keeps the data's monotonicity and convexity.
    """
    width = x_r - x_l
    t = (at - x_l) / width
    u = (x_r - at) / width  # not 1 - t: near the right end this keeps its relative accuracy
    secant = (y_r - y_l) / width
    spread = d_r - d_l
    to_left = secant - d_l
    to_right = d_r - secant
    control = (0.5 * width * second + spread) / np.where(at_right, to_right, to_left)
    # R''(0) = 2[r (secant - d_l) - spread]/w and R''(1) = 2[r (d_r - secant) - spread]/w keep
    # the sign of the data's curvature when r >= spread/(secant - d_l) and r >= spread/(d_r -
    # secant); monotone data stays monotone when r >= (d_l + d_r)/secant.
    curved = to_left * to_right > 0
    shape_min = np.where(curved, np.maximum(spread / to_left, spread / to_right), 0.0)
    monotone = (d_l * secant > 0) & (d_r * secant > 0)
    shape_min = np.maximum(shape_min, np.where(monotone, (d_l + d_r) / secant, 0.0))
    control = np.where(np.isfinite(control), control, _MAX_CONTROL)
    control = np.minimum(np.maximum(control, shape_min), _MAX_CONTROL)
    numerator = t * t * (y_r * t + (control * y_r - width * d_r) * u) + u * u * ((control * y_l + width * d_l) * t + y_l * u)
    return numerator / (1.0 + (control - 3.0) * t * u)
