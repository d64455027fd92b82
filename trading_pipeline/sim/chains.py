"""Option chains: trading classes, listed expirations, strikes, OCC symbols, conIds, ticks.

Trading classes (one underlying can have several; the order is part of the conId):

- SPX: ``SPX`` (AM-settled third-Friday monthlies and January LEAPS) and ``SPXW``
  (PM-settled dailies, weeklies and monthlies). On a third Friday both list the same
  expiry, which is why TWS calls ``Option('SPX', <third Friday>, ...)`` ambiguous.
  NDX (``NDX``/``NDXP``) and RUT (``RUT``/``RUTW``) follow the same pattern (no dailies).
- XSP: ``XSP`` (PM, dailies, weeklies, monthlies). SPY, QQQ, IWM: dailies too.
- VIX: ``VIX`` (monthly, the Wednesday 30 days before the next month's third Friday) and
  ``VIXW`` (the other Wednesdays); both AM-settled.
- every other stock or ETF: one class named after the symbol ("BRK B" -> "BRKB"), with
  weeklies, monthlies and January LEAPS.

Listed expirations as of a day: dailies (every session) for the next 14 calendar days,
weeklies (Fridays) for the next 8 weeks, monthlies (third Fridays) for the next 12 months,
the next two Januaries as LEAPS. An expiry that falls on an NYSE holiday moves to the
previous session. ``Instrument.expiry`` is the expiration date as TWS reports it in
lastTradeDateOrContractMonth; for AM-settled classes trading ends the session before
(:func:`last_trading_day`) and the settlement uses the expiry day's opening prices.

Strikes: from 0.5x to 1.3x the reference price (3x for VIX, whose calls are the active
side), on increments by strike level (<25: 0.5, <50: 1, <200: 2.5, <1000: 5, <2500: 10,
above: 25; SPX and RUT 5, NDX 25, XSP 1). Strikes are handled as integer tenths to keep
float noise out of keys and conIds.

Option conIds are decodable decimal numbers (readable in a log):
``UUU K YYMMDD SSSSSS`` = underlying ordinal (1-based position of the symbol in the
universe's sorted symbols), K = 2 x class index + (0 call, 1 put), the expiry, the strike in
tenths. AAPL 2025-12-19 230 put with AAPL at ordinal 12 is 121251219002300. They are at
least 10**13 (no overlap with underlying conIds, which are below 10**9) and below 2**53.
They exceed 32 bits: storage must use 64-bit integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from trading_pipeline.core import calendar
from trading_pipeline.sim import ticks
from trading_pipeline.sim.types import Instrument, SecType
from trading_pipeline.sim.universe import Underlying

MULTIPLIER = 100

DAILY_HORIZON_DAYS = 14
WEEKLY_HORIZON_DAYS = 56
MONTHLY_HORIZON_MONTHS = 12
LEAPS_YEARS = 2
VIX_MONTHLY_COUNT = 7
VIX_WEEKLY_HORIZON_DAYS = 42

STRIKE_RANGE_LOW = 0.5
STRIKE_RANGE_HIGH = 1.3
VIX_STRIKE_RANGE_HIGH = 3.0

OPTION_CON_ID_MIN = 10**13
MAX_UNDERLYING_ORDINAL = 899

# Names whose options trade in pennies at every price (brief: SPY, QQQ, IWM, AAPL, ...).
PENNY_OPTION_NAMES: frozenset[str] = frozenset(
    """
    SPY QQQ IWM DIA GLD SLV TLT SMH XLE XLF XLK XLV XLY XLP XLI XLU XLB EEM EFA HYG USO KRE
    XBI GDX ARKK XOP EWZ FXI TQQQ IBB SOXX
    AAPL MSFT NVDA AMZN GOOGL GOOG META TSLA AMD AVGO NFLX INTC MU BAC C JPM WFC XOM CVX DIS
    BA PFE KO T VZ F GM PLTR COIN UBER PYPL SBUX NKE WMT ORCL CSCO QCOM MRNA SMCI HOOD CRM
    ADBE COST HD MCD UNH LLY ABBV MRK JNJ V MA GS MS SCHW OXY SLB HAL FCX NEM DAL UAL CCL
    """.split()
)

# Cash-settled index options quoted in nickels and dimes.
_NICKEL_INDEX_SYMBOLS = frozenset({"SPX", "NDX", "RUT"})

# Equity options outside the penny program: 0.05 below $3, 0.10 at or above (a few
# high-priced names; every other name not in PENNY_OPTION_NAMES is in the penny program).
NICKEL_OPTION_NAMES: frozenset[str] = frozenset({"NVR", "AZO", "MTD", "TDG", "FICO"})


@dataclass(frozen=True)
class OptionClass:
    """One trading class of an underlying's options."""

    name: str
    am_settled: bool
    dailies: bool = False
    weeklies: bool = False
    monthlies: bool = False
    leaps: bool = False
    vix_monthlies: bool = False
    vix_weeklies: bool = False


def occ_root(symbol: str) -> str:
    """The OCC root of a stock's options: the symbol without spaces ("BRK B" -> "BRKB")."""
    return symbol.replace(" ", "")


def option_classes(underlying: Underlying) -> tuple[OptionClass, ...]:
    """The trading classes of ``underlying``'s options, in conId order."""
    symbol = underlying.symbol
    if symbol == "SPX":
        return (
            OptionClass("SPX", am_settled=True, monthlies=True, leaps=True),
            OptionClass("SPXW", am_settled=False, dailies=True, weeklies=True, monthlies=True),
        )
    if symbol in ("NDX", "RUT"):
        return (
            OptionClass(symbol, am_settled=True, monthlies=True),
            OptionClass("NDXP" if symbol == "NDX" else "RUTW", am_settled=False, weeklies=True, monthlies=True),
        )
    if symbol == "XSP":
        return (OptionClass("XSP", am_settled=False, dailies=True, weeklies=True, monthlies=True),)
    if symbol == "VIX":
        return (
            OptionClass("VIX", am_settled=True, vix_monthlies=True),
            OptionClass("VIXW", am_settled=True, vix_weeklies=True),
        )
    return (
        OptionClass(
            occ_root(symbol),
            am_settled=False,
            dailies=symbol in ("SPY", "QQQ", "IWM"),
            weeklies=True,
            monthlies=True,
            leaps=True,
        ),
    )


def option_class(underlying: Underlying, trading_class: str) -> OptionClass | None:
    for klass in option_classes(underlying):
        if klass.name == trading_class:
            return klass
    return None


# ----- expirations -----


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    first_friday = first + timedelta(days=(4 - first.weekday()) % 7)
    return first_friday + timedelta(days=14)


def session_on_or_before(day: date) -> date:
    """``day`` if the NYSE trades then, else the session before (holiday-adjusted expiry)."""
    return day if calendar.is_session(day) else calendar.previous_session(day)


def vix_monthly_expiry(year: int, month: int) -> date:
    """The VIX expiration of ``month``: 30 days before the next month's third Friday.

    When that Friday is a holiday the count starts from the session before it; when the
    Wednesday itself is a holiday, the session before it.
    """
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    friday = session_on_or_before(third_friday(next_year, next_month))
    return session_on_or_before(friday - timedelta(days=30))


def last_trading_day_of(klass: OptionClass, expiry: date) -> date:
    return calendar.previous_session(expiry) if klass.am_settled else expiry


def last_trading_day(instrument: Instrument) -> date:
    """The last day an option trades: the session before expiry for AM-settled classes."""
    if instrument.expiry is None:
        raise ValueError(f"{instrument.local_symbol or instrument.symbol} has no expiry")
    if is_am_settled(instrument.trading_class):
        return calendar.previous_session(instrument.expiry)
    return instrument.expiry


def is_am_settled(trading_class: str) -> bool:
    """True for classes settled on the expiry day's opening prices (SPX, NDX, RUT monthlies, VIX)."""
    return trading_class in ("SPX", "NDX", "RUT", "VIX", "VIXW")


@lru_cache(maxsize=4096)
def listed_expirations(klass: OptionClass, today: date) -> tuple[date, ...]:
    """The expirations of ``klass`` listed on ``today`` (still tradable on it), ascending."""
    last_day = calendar.CALENDAR_LAST_DAY
    candidates: set[date] = set()

    def add(day: date) -> None:
        if day <= last_day:
            candidates.add(session_on_or_before(day))

    if klass.dailies:
        candidates.update(calendar.sessions_between(today, min(today + timedelta(days=DAILY_HORIZON_DAYS), last_day)))
    if klass.weeklies:
        friday = today + timedelta(days=(4 - today.weekday()) % 7)
        while friday <= today + timedelta(days=WEEKLY_HORIZON_DAYS):
            add(friday)
            friday += timedelta(days=7)
    if klass.monthlies:
        for offset in range(MONTHLY_HORIZON_MONTHS + 1):
            add(third_friday(*_add_months(today.year, today.month, offset)))
    if klass.leaps:
        horizon = _add_months(today.year, today.month, MONTHLY_HORIZON_MONTHS)
        januaries = [year for year in range(today.year + 1, today.year + 4) if (year, 1) > horizon]
        for year in januaries[:LEAPS_YEARS]:
            add(third_friday(year, 1))
    if klass.vix_monthlies or klass.vix_weeklies:
        monthly = {
            vix_monthly_expiry(*_add_months(today.year, today.month, offset)) for offset in range(VIX_MONTHLY_COUNT + 2)
        }
        if klass.vix_monthlies:
            upcoming = sorted(d for d in monthly if d <= last_day and last_trading_day_of(klass, d) >= today)
            return tuple(upcoming[:VIX_MONTHLY_COUNT])
        wednesday = today + timedelta(days=(2 - today.weekday()) % 7)
        while wednesday <= today + timedelta(days=VIX_WEEKLY_HORIZON_DAYS):
            adjusted = session_on_or_before(wednesday)
            if adjusted not in monthly:
                candidates.add(adjusted)
            wednesday += timedelta(days=7)
    return tuple(sorted(d for d in candidates if last_trading_day_of(klass, d) >= today))


def is_expiration_of(klass: OptionClass, day: date) -> bool:
    """True when ``day`` is an expiration ``klass`` lists at some point (for conId decoding)."""
    if not (calendar.CALENDAR_FIRST_DAY < day <= calendar.CALENDAR_LAST_DAY) or not calendar.is_session(day):
        return False
    if klass.dailies:
        return True
    friday = day + timedelta(days=(4 - day.weekday()) % 7)
    if klass.weeklies and session_on_or_before(friday) == day:
        return True
    if (klass.monthlies or klass.leaps) and session_on_or_before(third_friday(day.year, day.month)) == day:
        return klass.monthlies or day.month == 1
    if klass.vix_monthlies or klass.vix_weeklies:
        is_monthly = vix_monthly_expiry(day.year, day.month) == day
        if klass.vix_monthlies:
            return is_monthly
        wednesday = day + timedelta(days=(2 - day.weekday()) % 7)
        return not is_monthly and session_on_or_before(wednesday) == day
    return False


def _add_months(year: int, month: int, offset: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + offset
    return index // 12, index % 12 + 1


# ----- strikes (in integer tenths) -----

# (strike level in tenths below which the increment applies, increment in tenths)
_STRIKE_LEVELS: tuple[tuple[int, int], ...] = (
    (250, 5),        # below 25: 0.5
    (500, 10),       # below 50: 1
    (2_000, 25),     # below 200: 2.5
    (10_000, 50),    # below 1000: 5
    (25_000, 100),   # below 2500: 10
)
_TOP_INCREMENT = 250  # 25 from 2500 up
_FIXED_INCREMENTS = {"SPX": 50, "RUT": 50, "NDX": 250, "XSP": 10}


def strike_increment_tenths(symbol: str, strike_tenths: int) -> int:
    """The strike increment (tenths) at a strike level for ``symbol``."""
    fixed = _FIXED_INCREMENTS.get(symbol)
    if fixed is not None:
        return fixed
    for below, increment in _STRIKE_LEVELS:
        if strike_tenths < below:
            return increment
    return _TOP_INCREMENT


def is_listed_strike(symbol: str, strike_tenths: int) -> bool:
    """True when the strike sits on ``symbol``'s strike grid."""
    return strike_tenths > 0 and strike_tenths % strike_increment_tenths(symbol, strike_tenths) == 0


@lru_cache(maxsize=8192)
def strike_ladder_tenths(symbol: str, reference_price: float) -> tuple[int, ...]:
    """Listed strikes (tenths) around ``reference_price``, ascending."""
    high_factor = VIX_STRIKE_RANGE_HIGH if symbol == "VIX" else STRIKE_RANGE_HIGH
    # Inside [0.5x, 1.3x]; the epsilon keeps float noise (13 x 1.3 = 16.900000000000002) out.
    low = max(1, math.ceil(reference_price * STRIKE_RANGE_LOW * 10 - 1e-6))
    high = math.floor(reference_price * high_factor * 10 + 1e-6)
    strikes = []
    strike = low
    # Walk up to the first grid point, then step by the level's increment.
    while strike <= high:
        increment = strike_increment_tenths(symbol, strike)
        if strike % increment:
            strike += increment - strike % increment
            continue
        strikes.append(strike)
        strike += increment
    return tuple(strikes)


def strike_ladder(symbol: str, reference_price: float) -> tuple[float, ...]:
    return tuple(tenths / 10 for tenths in strike_ladder_tenths(symbol, reference_price))


def strike_to_tenths(strike: float) -> int:
    return int(round(float(strike) * 10))


# ----- ticks -----


def option_market_rule_id(underlying_symbol: str) -> int:
    """The market rule (price grid, sim/ticks.py) of ``underlying_symbol``'s options."""
    if underlying_symbol in _NICKEL_INDEX_SYMBOLS:
        return ticks.INDEX_OPTION_RULE
    if underlying_symbol in PENNY_OPTION_NAMES:
        return ticks.OPTION_PENNY_EVERYWHERE_RULE
    if underlying_symbol in NICKEL_OPTION_NAMES:
        return ticks.OPTION_NICKEL_DIME_RULE
    return ticks.OPTION_PENNY_PROGRAM_RULE


def option_tick(underlying_symbol: str, price: float) -> float:
    """The price increment of ``underlying_symbol``'s options at ``price`` (its market rule)."""
    return ticks.increment(option_market_rule_id(underlying_symbol), price)


def option_min_tick(underlying_symbol: str) -> float:
    """The smallest increment (TWS's minTick): the rule's increment below $3."""
    return ticks.increment(option_market_rule_id(underlying_symbol), 0.0)


# ----- OCC symbols and conIds -----


def occ_symbol(trading_class: str, expiry: date, right: str, strike_tenths: int) -> str:
    """``SPXW  251219C05900000``: root padded to 6, YYMMDD, C/P, strike x 1000 in 8 digits."""
    return f"{trading_class:<6}{expiry:%y%m%d}{right}{strike_tenths * 100:08d}"


@dataclass(frozen=True)
class OptionKey:
    """What an option conId encodes."""

    ordinal: int
    class_index: int
    expiry: date
    right: str
    strike_tenths: int


def encode_option_con_id(key: OptionKey) -> int:
    if not 1 <= key.ordinal <= MAX_UNDERLYING_ORDINAL:
        raise ValueError(f"underlying ordinal {key.ordinal} outside 1..{MAX_UNDERLYING_ORDINAL}")
    if not 0 <= key.class_index <= 4:
        raise ValueError(f"class index {key.class_index} outside 0..4")
    if not 0 < key.strike_tenths < 1_000_000:
        raise ValueError(f"strike {key.strike_tenths / 10} outside the encodable range")
    if not 2000 <= key.expiry.year <= 2099:
        raise ValueError(f"expiry {key.expiry} outside 2000..2099")
    kind = key.class_index * 2 + (1 if key.right == "P" else 0)
    yymmdd = (key.expiry.year - 2000) * 10_000 + key.expiry.month * 100 + key.expiry.day
    return ((key.ordinal * 10 + kind) * 1_000_000 + yymmdd) * 1_000_000 + key.strike_tenths


def decode_option_con_id(con_id: int) -> OptionKey | None:
    """The parts of an option conId, or None when it is not a well-formed one."""
    if not OPTION_CON_ID_MIN <= con_id < (MAX_UNDERLYING_ORDINAL + 1) * 10**13:
        return None
    rest, strike_tenths = divmod(con_id, 1_000_000)
    rest, yymmdd = divmod(rest, 1_000_000)
    ordinal, kind = divmod(rest, 10)
    yy, mmdd = divmod(yymmdd, 10_000)
    mm, dd = divmod(mmdd, 100)
    try:
        expiry = date(2000 + yy, mm, dd)
    except ValueError:
        return None
    if strike_tenths == 0:
        return None
    return OptionKey(ordinal, kind // 2, expiry, "P" if kind % 2 else "C", strike_tenths)


def make_option(
    underlying: Underlying,
    ordinal: int,
    class_index: int,
    klass: OptionClass,
    expiry: date,
    right: str,
    strike_tenths: int,
) -> Instrument:
    """The option Instrument for one (class, expiry, right, strike) of ``underlying``."""
    return Instrument(
        con_id=encode_option_con_id(OptionKey(ordinal, class_index, expiry, right, strike_tenths)),
        symbol=underlying.symbol,
        sec_type=SecType.OPT,
        exchange="SMART",
        primary_exchange="",
        local_symbol=occ_symbol(klass.name, expiry, right, strike_tenths),
        trading_class=klass.name,
        long_name=underlying.long_name,
        min_tick=option_min_tick(underlying.symbol),
        expiry=expiry,
        strike=strike_tenths / 10,
        right=right,
        multiplier=MULTIPLIER,
        underlying_con_id=underlying.con_id,
        underlying_symbol=underlying.symbol,
        underlying_sec_type=underlying.sec_type,
        market_rule_id=option_market_rule_id(underlying.symbol),
    )
