"""The entry, position and exit snapshots: the one definition of their fields, and the pure
builders that fill them (no I/O, no clock reads: every value is an argument).

- :data:`ENTRY_FIELDS` (98) describe a trade at its fill, in groups: the seeds' option
  pricing (8), technical (18), market context (14), trade parameters (8), earnings (3), risk
  (5) and metadata (6), plus the groups that make up the rest of the 98: strike selection (4),
  liquidity (7), volatility (5), premium (6), scan (4) and price action (10).
  :data:`CRITICAL_FIELDS` are the eight the learning engine leans on most.
- :data:`POSITION_FIELDS` (16) describe an open position at one session's close.
- :data:`EXIT_FIELDS` (24) describe how a trade ended: exit details (8), context changes
  (6), path analysis (6) and quality (4).

Conventions: ``*_pct`` fields are percent numbers (4.5 means 4.5 %); implied and realised
volatilities are fractions per year (0.25 means 25 %), as the broker reports IV; prices are
per share; P&L, premium and margin are account currency for the whole position; days are
calendar days; the entry day is the New York date of the fill. Greeks are the broker's
(put delta negative, vega per volatility point, theta per calendar day).

A missing input never raises: the fields it feeds are None, and the scores drop.

**Data quality score** (entry, 0..1): the weighted share of the 98 fields present (not None),
a critical field weighing 2 and any other 1 (total weight 106). **Exit data quality**: the
plain share of the 24 exit fields present.

**Trade quality score** (exit, 0..1): the weighted mean of three parts, each in 0..1 —
capture (0.4): the realised P&L over the best P&L seen (capture efficiency, clipped to 0..1;
0 when the trade was never in profit); cushion (0.3): the distance to the strike at the
closest approach over the distance at entry (OTM %), clipped to 0..1; drawdown (0.3): one
minus the worst P&L seen as a share of the premium, clipped to 0..1. A part whose inputs are
missing is left out and the weights of the others renormalised; None when all are missing.

**Risk-adjusted return** (exit): ROI % per day held (at least one day) divided by the
underlying's annualised 20-day realised volatility at entry in percent: percent of premium
earned per day per point of volatility.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import polars as pl

from trading_pipeline.core.calendar import new_york_date
from trading_pipeline.core.indicators import compute_indicators
from trading_pipeline.core.positions import PositionView, position_mark, position_mid, premium_received

FIELDS_VERSION = 1

FIELD_TYPES = ("float", "int", "str", "bool", "date", "datetime")


@dataclass(frozen=True)
class FieldDef:
    """One snapshot field: its name, group, type, unit, where it comes from and what it means."""

    name: str
    group: str
    type: str
    unit: str
    source: str
    meaning: str
    critical: bool = False


def _group(group: str, rows: Sequence[tuple]) -> list[FieldDef]:
    return [FieldDef(name, group, kind, unit, source, meaning, critical=bool(rest and rest[0]))
            for name, kind, unit, source, meaning, *rest in rows]


CRITICAL = True
_BROKER_OPTION = "broker: option quote"
_BROKER_GREEKS = "broker: option greeks (model)"
_BARS = "broker: underlying daily bars (TA-Lib)"
_BARS_OWN = "broker: underlying daily bars (core.indicators)"
_TRADE = "ledger: trade"

# ============================================================================ entry (98)

ENTRY_FIELDS: tuple[FieldDef, ...] = tuple(
    _group("option_pricing", [
        ("delta", "float", "per $1 of underlying", _BROKER_GREEKS, "option delta at capture (put negative)", CRITICAL),
        ("gamma", "float", "per $1 of underlying", _BROKER_GREEKS, "option gamma"),
        ("theta", "float", "$ per share per day", _BROKER_GREEKS, "option theta per calendar day"),
        ("vega", "float", "$ per share per vol point", _BROKER_GREEKS, "option vega per volatility point"),
        ("iv", "float", "fraction per year", _BROKER_GREEKS, "implied volatility of the option", CRITICAL),
        ("theoretical_price", "float", "$ per share", _BROKER_GREEKS, "the broker's model price of the option"),
        ("bid", "float", "$ per share", _BROKER_OPTION, "option bid at capture"),
        ("ask", "float", "$ per share", _BROKER_OPTION, "option ask at capture"),
    ])
    + _group("technical", [
        ("rsi_14", "float", "0-100", _BARS, "RSI, 14 sessions (Wilder)"),
        ("macd_line", "float", "$", _BARS, "MACD line (EMA 12 - EMA 26)"),
        ("macd_signal", "float", "$", _BARS, "MACD signal line (EMA 9 of the MACD line)"),
        ("macd_histogram", "float", "$", _BARS, "MACD line minus signal"),
        ("adx_14", "float", "0-100", _BARS, "ADX, 14 sessions: trend strength"),
        ("atr_14", "float", "$", _BARS, "average true range, 14 sessions"),
        ("atr_pct", "float", "%", _BARS, "ATR as a percent of the close (NATR)"),
        ("bb_upper", "float", "$", _BARS, "upper Bollinger band (SMA 20 + 2 sd)"),
        ("bb_lower", "float", "$", _BARS, "lower Bollinger band (SMA 20 - 2 sd)"),
        ("bb_percent_b", "float", "fraction", _BARS, "%B: where the close sits in the bands (0 lower, 1 upper)"),
        ("bb_bandwidth_pct", "float", "%", _BARS, "band width as a percent of the middle band"),
        ("sma_20_distance_pct", "float", "%", _BARS, "close above (+) or below (-) the 20-session SMA"),
        ("sma_50_distance_pct", "float", "%", _BARS, "close above (+) or below (-) the 50-session SMA"),
        ("sma_200_distance_pct", "float", "%", _BARS, "close above (+) or below (-) the 200-session SMA"),
        ("support_level", "float", "$", _BARS_OWN, "nearest swing low below the close (60 sessions)"),
        ("resistance_level", "float", "$", _BARS_OWN, "nearest swing high above the close (60 sessions)"),
        ("trend_direction", "str", "up|down|sideways", _BARS_OWN, "from the 5-session slopes of SMA 20 and 50",
         CRITICAL),
        ("volatility_regime", "str", "low|normal|high", _BARS_OWN, "today's ATR % against the last year's"),
    ])
    + _group("market_context", [
        ("spy_price", "float", "$", "broker: SPY quote", "S&P 500 ETF price"),
        ("spy_change_pct", "float", "%", "broker: SPY quote", "SPY change since the previous close"),
        ("qqq_price", "float", "$", "broker: QQQ quote", "Nasdaq 100 ETF price"),
        ("qqq_change_pct", "float", "%", "broker: QQQ quote", "QQQ change since the previous close"),
        ("iwm_price", "float", "$", "broker: IWM quote", "Russell 2000 ETF price"),
        ("iwm_change_pct", "float", "%", "broker: IWM quote", "IWM change since the previous close"),
        ("vix", "float", "index points", "broker: VIX index quote", "CBOE volatility index", CRITICAL),
        ("vix_change_pct", "float", "%", "broker: VIX index quote", "VIX change since the previous close"),
        ("sector", "str", "GICS sector", "staged row, TP_SECTOR_MAP, default universe", "the underlying's sector"),
        ("sector_change_pct", "float", "%", "broker: sector SPDR ETF quote",
         "the sector ETF's change since the previous close"),
        ("market_trend", "str", "up|down|sideways", "broker: SPY daily bars",
         "SPY trend direction (same rule as trend_direction)"),
        ("vix_regime", "str", "low|normal|high", "derived: vix", "VIX below 18 low, above 25 high, else normal"),
        ("day_of_week", "str", "Monday..Friday", "derived: entry day", "weekday of the entry day"),
        ("is_opex_week", "bool", "", "derived: entry day", "the entry week holds the month's third Friday"),
    ])
    + _group("trade_parameters", [
        ("right", "str", "P|C", _TRADE, "put or call"),
        ("strike", "float", "$", _TRADE, "strike price"),
        ("expiration", "date", "date", _TRADE, "expiration date"),
        ("dte", "int", "days", "derived: trade", "calendar days from the entry day to expiration", CRITICAL),
        ("contracts", "int", "contracts", _TRADE, "contracts opened"),
        ("entry_premium", "float", "$ per share", _TRADE, "fill price (average)"),
        ("stock_price", "float", "$", "broker: underlying quote", "underlying price at capture"),
        ("otm_pct", "float", "%", "derived", "distance of the strike out of the money, percent of the price"),
    ])
    + _group("earnings", [
        ("days_to_earnings", "int", "days", "earnings calendar file", "days from the entry day to the next earnings",
         CRITICAL),
        ("earnings_timing", "str", "BMO|AMC|unknown", "earnings calendar file", "before the open or after the close"),
        ("earnings_before_expiration", "bool", "", "earnings calendar file",
         "the next earnings fall on or before expiration"),
    ])
    + _group("risk", [
        ("margin_requirement", "float", "$", "broker: what-if margin (else staged margin)",
         "initial margin of the position"),
        ("margin_efficiency_pct", "float", "%", "derived", "premium received as a percent of the margin", CRITICAL),
        ("buying_power_impact_pct", "float", "%", "broker: account summary",
         "the position's margin as a percent of buying power"),
        ("portfolio_heat_pct", "float", "%", "broker: account summary",
         "account initial margin as a percent of net liquidation"),
        ("max_loss", "float", "$", "derived", "loss if the underlying goes to zero (short put); premium paid (long); "
         "None for a short call (unbounded)"),
    ])
    + _group("metadata", [
        ("trade_id", "int", "", _TRADE, "the trade's id in the ledger"),
        ("symbol", "str", "", _TRADE, "the underlying's symbol"),
        ("trade_source", "str", "", _TRADE, "execution, ibkr_import, reconciliation or manual"),
        ("entry_time", "datetime", "UTC", _TRADE, "fill time"),
        ("captured_at", "datetime", "UTC", "clock", "when the snapshot was taken"),
        ("fields_version", "int", "", "core.snapshots", "version of these field definitions"),
    ])
    + _group("strike_selection", [
        ("strike_selection_method", "str", "", _TRADE, "how the strike was chosen (delta, otm, unchanged...)"),
        ("original_strike", "float", "$", _TRADE, "the staged strike before live selection"),
        ("live_delta", "float", "", _TRADE, "the delta at selection, from the broker"),
        ("strike_selection_outcome", "str", "SELECTED|UNCHANGED", "ledger: staged opportunity",
         "outcome of the live selection"),
    ])
    + _group("liquidity", [
        ("mid_price", "float", "$ per share", _BROKER_OPTION, "(bid + ask) / 2"),
        ("bid_ask_spread", "float", "$ per share", _BROKER_OPTION, "ask - bid"),
        ("spread_pct", "float", "%", _BROKER_OPTION, "spread as a percent of the mid"),
        ("option_volume", "float", "contracts", _BROKER_OPTION, "option volume today"),
        ("open_interest", "float", "contracts", _BROKER_OPTION, "option open interest"),
        ("bid_size", "float", "contracts", _BROKER_OPTION, "size at the bid"),
        ("ask_size", "float", "contracts", _BROKER_OPTION, "size at the ask"),
    ])
    + _group("volatility", [
        ("iv_rank", "float", "0-100", "ledger: scan candidate (Barchart IV Rank)", "IV rank from the screener export",
         CRITICAL),
        ("realized_vol_20", "float", "fraction per year", _BARS_OWN, "20-session realised volatility"),
        ("realized_vol_60", "float", "fraction per year", _BARS_OWN, "60-session realised volatility"),
        ("iv_hv_ratio", "float", "ratio", "derived", "iv / realized_vol_20"),
        ("hv_rank", "float", "0-100", _BARS_OWN, "20-session realised volatility ranked in the last year"),
    ])
    + _group("premium", [
        ("premium_total", "float", "$", "derived", "entry premium x multiplier x contracts"),
        ("return_pct", "float", "%", "derived", "premium / (strike - premium): return on the cash at risk"),
        ("annualized_return_pct", "float", "%", "derived", "return_pct x 365 / dte"),
        ("breakeven_price", "float", "$", "derived", "strike - premium (put), strike + premium (call)"),
        ("breakeven_distance_pct", "float", "%", "derived",
         "distance from the price to the breakeven, percent of the price"),
        ("prob_otm_pct", "float", "%", "derived: delta", "(1 - |delta|) x 100: delta's estimate of expiring worthless"),
    ])
    + _group("scan", [
        ("scan_score", "float", "0-100", "ledger: scan candidate", "composite score of the screener row"),
        ("scan_grade", "str", "A..F", "ledger: scan candidate", "grade of the screener row"),
        ("scan_rank", "int", "", "ledger: scan candidate", "rank in the scan's selected list"),
        ("scan_profit_prob_pct", "float", "%", "ledger: scan candidate", "Barchart's profit probability"),
    ])
    + _group("price_action", [
        ("change_1d_pct", "float", "%", _BARS_OWN, "underlying change over 1 session"),
        ("change_5d_pct", "float", "%", _BARS_OWN, "underlying change over 5 sessions"),
        ("change_20d_pct", "float", "%", _BARS_OWN, "underlying change over 20 sessions"),
        ("stock_volume", "float", "shares", _BARS_OWN, "underlying volume of the latest bar (so far today)"),
        ("avg_volume_20", "float", "shares", _BARS_OWN, "average volume of the 20 sessions before"),
        ("relative_volume", "float", "ratio", _BARS_OWN, "stock_volume / avg_volume_20"),
        ("distance_from_52w_high_pct", "float", "%", _BARS_OWN, "close below the 52-week high (<= 0)"),
        ("distance_from_52w_low_pct", "float", "%", _BARS_OWN, "close above the 52-week low (>= 0)"),
        ("support_distance_pct", "float", "%", _BARS_OWN, "close above support, percent of the close"),
        ("resistance_distance_pct", "float", "%", _BARS_OWN, "resistance above the close, percent of the close"),
    ])
)

CRITICAL_FIELDS: tuple[str, ...] = (
    "delta", "iv", "iv_rank", "vix", "dte", "trend_direction", "days_to_earnings", "margin_efficiency_pct",
)
CRITICAL_WEIGHT = 2.0

# ============================================================================ position (16)

POSITION_FIELDS: tuple[FieldDef, ...] = tuple(_group("position", [
    ("trade_id", "int", "", _TRADE, "the trade's id"),
    ("trading_day", "date", "date", "partition", "the session the snapshot belongs to"),
    ("captured_at", "datetime", "UTC", "clock", "when it was taken"),
    ("current_premium", "float", "$ per share", _BROKER_OPTION, "the option's mark: mid, else last, else close"),
    ("current_pnl", "float", "$", "derived", "P&L of the open contracts at the mark (before commissions)"),
    ("current_pnl_pct", "float", "%", "derived", "current_pnl as a percent of their premium"),
    ("dte_remaining", "int", "days", "derived", "calendar days from the trading day to expiration"),
    ("delta", "float", "per $1 of underlying", _BROKER_GREEKS, "option delta"),
    ("gamma", "float", "per $1 of underlying", _BROKER_GREEKS, "option gamma"),
    ("theta", "float", "$ per share per day", _BROKER_GREEKS, "option theta"),
    ("vega", "float", "$ per share per vol point", _BROKER_GREEKS, "option vega"),
    ("iv", "float", "fraction per year", _BROKER_GREEKS, "implied volatility"),
    ("stock_price", "float", "$", "broker: underlying quote", "underlying price"),
    ("distance_to_strike_pct", "float", "%", "derived",
     "how far the price is out of the money (negative in the money)"),
    ("vix", "float", "index points", "broker: VIX index quote", "VIX"),
    ("spy_price", "float", "$", "broker: SPY quote", "SPY price"),
]))

# ============================================================================ exit (24)

EXIT_FIELDS: tuple[FieldDef, ...] = tuple(
    _group("exit_details", [
        ("exit_date", "date", "date", _TRADE, "New York date of the closing fill"),
        ("exit_price", "float", "$ per share", _TRADE, "closing price (average over partial closes; 0 at expiry)"),
        ("exit_reason", "str", "", _TRADE, "profit_target, stop_loss, time_exit, expiration, assignment, ..."),
        ("days_held", "int", "days", "derived", "calendar days from the entry day to the exit day"),
        ("gross_pnl", "float", "$", _TRADE, "P&L before commissions"),
        ("net_pnl", "float", "$", _TRADE, "P&L after commissions"),
        ("roi_pct", "float", "%", "derived", "gross P&L as a percent of the premium received"),
        ("win", "bool", "", "derived", "net P&L above zero (gross when net is unknown)"),
    ])
    + _group("context_changes", [
        ("exit_iv", "float", "fraction per year", _BROKER_GREEKS, "the option's implied volatility at exit"),
        ("iv_change", "float", "fraction per year", "derived", "exit_iv - entry iv"),
        ("exit_stock_price", "float", "$", "broker: underlying quote", "underlying price at exit"),
        ("stock_change_pct", "float", "%", "derived", "underlying change from entry to exit"),
        ("exit_vix", "float", "index points", "broker: VIX index quote", "VIX at exit"),
        ("vix_change", "float", "index points", "derived", "exit_vix - entry vix"),
    ])
    + _group("path_analysis", [
        ("path_days", "int", "snapshots", "ledger: position snapshots", "daily position snapshots taken while open"),
        ("closest_to_strike_pct", "float", "%", "position snapshots + exit", "smallest distance to the strike seen"),
        ("max_drawdown", "float", "$", "position snapshots + exit", "worst P&L seen (0 when never under water)"),
        ("max_profit", "float", "$", "position snapshots + exit", "best P&L seen, the realised one included"),
        ("max_profit_pct", "float", "%", "derived", "max_profit as a percent of the premium"),
        ("capture_efficiency", "float", "fraction", "derived",
         "realised gross P&L / max_profit (None unless max_profit > 0)"),
    ])
    + _group("quality", [
        ("trade_quality_score", "float", "0-1", "derived", "capture, cushion and drawdown combined (module docstring)"),
        ("risk_adjusted_return", "float", "% per day per vol point", "derived",
         "roi_pct per day held / entry realised volatility (20) in percent"),
        ("return_on_margin_pct", "float", "%", "derived", "gross P&L as a percent of the entry margin"),
        ("annualized_return_on_margin_pct", "float", "%", "derived", "return_on_margin_pct x 365 / days held"),
    ])
)

ENTRY_FIELD_NAMES = tuple(f.name for f in ENTRY_FIELDS)
POSITION_FIELD_NAMES = tuple(f.name for f in POSITION_FIELDS)
EXIT_FIELD_NAMES = tuple(f.name for f in EXIT_FIELDS)

_ENTRY_BY_NAME = {f.name: f for f in ENTRY_FIELDS}
_EXIT_BY_NAME = {f.name: f for f in EXIT_FIELDS}

# GICS sector -> its Select Sector SPDR ETF (the sector's one-day move at entry).
SECTOR_ETFS: dict[str, str] = {
    "Information Technology": "XLK", "Communication Services": "XLC", "Consumer Discretionary": "XLY",
    "Consumer Staples": "XLP", "Energy": "XLE", "Financials": "XLF", "Health Care": "XLV",
    "Industrials": "XLI", "Materials": "XLB", "Real Estate": "XLRE", "Utilities": "XLU",
}
VIX_LOW, VIX_HIGH = 18.0, 25.0  # the seeds' Tier 2 thresholds (TIER2_VIX_LOW / TIER2_VIX_HIGH)
QUALITY_WEIGHTS = {"capture": 0.4, "cushion": 0.3, "drawdown": 0.3}
# Fixed English names (the calendar module's follow the locale).
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# ============================================================================ inputs


@dataclass(frozen=True)
class TradeTerms:
    """What the snapshots need of a trade (a plain copy of the ledger's row)."""

    trade_id: int | None
    symbol: str
    right: str
    strike: float
    expiration: date
    side: str
    contracts: int
    entry_price: float
    entry_time: datetime
    multiplier: int = 100
    open_contracts: int | None = None  # None: all of them
    trade_source: str | None = None
    strike_selection_method: str | None = None
    original_strike: float | None = None
    live_delta: float | None = None
    exit_price: float | None = None
    exit_time: datetime | None = None
    exit_reason: str | None = None
    gross_pnl: float | None = None
    net_pnl: float | None = None

    @property
    def contracts_open(self) -> int:
        return self.contracts if self.open_contracts is None else self.open_contracts


@dataclass(frozen=True)
class OptionMarket:
    """One option's quote and greeks as the broker gave them (None where it sent nothing)."""

    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    close: float | None = None
    volume: float | None = None
    open_interest: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    iv: float | None = None
    model_price: float | None = None
    underlying_price: float | None = None

    @property
    def mid(self) -> float | None:
        """Monitoring's mid (core.positions.position_mid: a bid of 0 counts)."""
        mid = position_mid(self.bid, self.ask)
        # Six places, as the ledger keeps prices: (0.54 + 0.60) / 2 is 0.57, not 0.5700000000000001.
        return None if mid is None else round(mid, 6)

    @property
    def mark(self) -> float | None:
        """Monitoring's mark (core.positions.position_mark: the mid, else the last price), else
        the previous close: a snapshot records a premium even before the day's first trade."""
        mark = position_mark(self.bid, self.ask, self.last)
        if mark is not None:
            return round(mark, 6)
        close = _num(self.close)
        return close if close is not None and close >= 0 else None


@dataclass(frozen=True)
class PriceQuote:
    """An index or stock: its price now and the previous session's close."""

    price: float | None
    previous_close: float | None = None

    @property
    def change_pct(self) -> float | None:
        return _percent(_minus(_num(self.price), _num(self.previous_close)), _num(self.previous_close))


@dataclass(frozen=True)
class AccountFigures:
    net_liquidation: float | None = None
    buying_power: float | None = None
    init_margin_req: float | None = None


@dataclass(frozen=True)
class ScanContext:
    """What the ledger knows from staging and the screener row (all optional)."""

    sector: str | None = None
    margin_per_contract: float | None = None
    strike_selection_outcome: str | None = None
    iv_rank: float | None = None
    scan_score: float | None = None
    scan_grade: str | None = None
    scan_rank: int | None = None
    scan_profit_prob_pct: float | None = None


@dataclass(frozen=True)
class EarningsInfo:
    """The symbol's next earnings on or after the entry day (None when unknown)."""

    next_date: date | None
    timing: str | None = None


@dataclass(frozen=True)
class EntryInputs:
    trade: TradeTerms
    captured_at: datetime
    option: OptionMarket | None = None
    stock: PriceQuote | None = None
    stock_bars: pl.DataFrame | None = None
    spy: PriceQuote | None = None
    qqq: PriceQuote | None = None
    iwm: PriceQuote | None = None
    vix: PriceQuote | None = None
    spy_bars: pl.DataFrame | None = None
    sector: str | None = None
    sector_etf: PriceQuote | None = None
    earnings: EarningsInfo | None = None
    account: AccountFigures | None = None
    margin_requirement: float | None = None
    scan: ScanContext | None = None


@dataclass(frozen=True)
class ExitContext:
    """The market when the trade closed (None where the broker had nothing)."""

    iv: float | None = None
    stock_price: float | None = None
    vix: float | None = None


@dataclass(frozen=True)
class Snapshot:
    kind: str  # entry / exit
    fields: dict
    fields_present: int
    data_quality_score: float
    critical_fields_present: int | None = None  # entry only

    @property
    def all_critical_present(self) -> bool:
        return self.critical_fields_present == len(CRITICAL_FIELDS)


# ============================================================================ entry


def build_entry_snapshot(inputs: EntryInputs) -> Snapshot:
    """The 98 entry fields from what capture gathered; missing inputs give None fields."""
    trade = inputs.trade
    option = inputs.option or OptionMarket()
    scan = inputs.scan or ScanContext()
    entry_day = _new_york_day(trade.entry_time)
    technical = compute_indicators(inputs.stock_bars)
    market = compute_indicators(inputs.spy_bars)

    stock_price = _first(inputs.stock.price if inputs.stock else None, option.underlying_price, technical.close)
    strike, premium = _num(trade.strike), _num(trade.entry_price)
    dte = (trade.expiration - entry_day).days if entry_day is not None and trade.expiration else None
    premium_total = _safe(premium_received, premium, trade.contracts, trade.multiplier)
    margin = _positive(inputs.margin_requirement)
    if margin is None and scan.margin_per_contract is not None:
        margin = _positive(_num(scan.margin_per_contract) * trade.contracts)
    account = inputs.account or AccountFigures()
    delta = _num(option.delta)
    iv = _positive(option.iv)
    vix = _num(inputs.vix.price) if inputs.vix else None
    return_pct = _percent(premium, _minus(strike, premium)) if premium is not None and strike and strike > premium else None
    earnings = inputs.earnings
    days_to_earnings = None
    if earnings is not None and earnings.next_date is not None and entry_day is not None:
        days_to_earnings = (earnings.next_date - entry_day).days

    values = {
        # option pricing
        "delta": delta, "gamma": _num(option.gamma), "theta": _num(option.theta), "vega": _num(option.vega),
        "iv": iv, "theoretical_price": _num(option.model_price), "bid": _num(option.bid), "ask": _num(option.ask),
        # technical
        "rsi_14": technical.rsi_14, "macd_line": technical.macd_line, "macd_signal": technical.macd_signal,
        "macd_histogram": technical.macd_histogram, "adx_14": technical.adx_14, "atr_14": technical.atr_14,
        "atr_pct": technical.atr_pct, "bb_upper": technical.bb_upper, "bb_lower": technical.bb_lower,
        "bb_percent_b": technical.bb_percent_b, "bb_bandwidth_pct": technical.bb_bandwidth_pct,
        "sma_20_distance_pct": technical.sma_20_distance_pct, "sma_50_distance_pct": technical.sma_50_distance_pct,
        "sma_200_distance_pct": technical.sma_200_distance_pct, "support_level": technical.support_level,
        "resistance_level": technical.resistance_level, "trend_direction": technical.trend_direction,
        "volatility_regime": technical.volatility_regime,
        # market context
        "spy_price": _quote_price(inputs.spy), "spy_change_pct": _quote_change(inputs.spy),
        "qqq_price": _quote_price(inputs.qqq), "qqq_change_pct": _quote_change(inputs.qqq),
        "iwm_price": _quote_price(inputs.iwm), "iwm_change_pct": _quote_change(inputs.iwm),
        "vix": vix, "vix_change_pct": _quote_change(inputs.vix),
        "sector": inputs.sector or scan.sector, "sector_change_pct": _quote_change(inputs.sector_etf),
        "market_trend": market.trend_direction, "vix_regime": vix_regime(vix),
        "day_of_week": WEEKDAY_NAMES[entry_day.weekday()] if entry_day else None,
        "is_opex_week": is_opex_week(entry_day) if entry_day else None,
        # trade parameters
        "right": trade.right, "strike": strike, "expiration": trade.expiration, "dte": dte,
        "contracts": trade.contracts, "entry_premium": premium, "stock_price": stock_price,
        "otm_pct": otm_pct(trade.right, strike, stock_price),
        # earnings
        "days_to_earnings": days_to_earnings,
        "earnings_timing": (earnings.timing or "unknown") if days_to_earnings is not None else None,
        "earnings_before_expiration": (earnings.next_date <= trade.expiration) if days_to_earnings is not None else None,
        # risk
        "margin_requirement": margin,
        "margin_efficiency_pct": _percent(premium_total, margin),
        "buying_power_impact_pct": _percent(margin, _positive(account.buying_power)),
        "portfolio_heat_pct": _percent(_num(account.init_margin_req), _positive(account.net_liquidation)),
        "max_loss": max_loss(trade.side, trade.right, strike, premium, trade.contracts, trade.multiplier),
        # metadata
        "trade_id": trade.trade_id, "symbol": trade.symbol, "trade_source": trade.trade_source,
        "entry_time": trade.entry_time, "captured_at": inputs.captured_at, "fields_version": FIELDS_VERSION,
        # strike selection
        "strike_selection_method": trade.strike_selection_method, "original_strike": _num(trade.original_strike),
        "live_delta": _num(trade.live_delta), "strike_selection_outcome": scan.strike_selection_outcome,
        # liquidity
        "mid_price": option.mid, "bid_ask_spread": _spread(option),
        "spread_pct": _percent(_spread(option), option.mid), "option_volume": _num(option.volume),
        "open_interest": _num(option.open_interest), "bid_size": _num(option.bid_size),
        "ask_size": _num(option.ask_size),
        # volatility
        "iv_rank": _num(scan.iv_rank), "realized_vol_20": technical.realized_vol_20,
        "realized_vol_60": technical.realized_vol_60, "iv_hv_ratio": _ratio(iv, _positive(technical.realized_vol_20)),
        "hv_rank": technical.hv_rank,
        # premium
        "premium_total": premium_total, "return_pct": return_pct,
        "annualized_return_pct": return_pct * 365.0 / dte if return_pct is not None and dte and dte > 0 else None,
        "breakeven_price": breakeven(trade.right, strike, premium),
        "breakeven_distance_pct": otm_pct(trade.right, breakeven(trade.right, strike, premium), stock_price),
        "prob_otm_pct": (1.0 - abs(delta)) * 100.0 if delta is not None and abs(delta) <= 1 else None,
        # scan
        "scan_score": _num(scan.scan_score), "scan_grade": scan.scan_grade, "scan_rank": scan.scan_rank,
        "scan_profit_prob_pct": _num(scan.scan_profit_prob_pct),
        # price action
        "change_1d_pct": technical.change_1d_pct, "change_5d_pct": technical.change_5d_pct,
        "change_20d_pct": technical.change_20d_pct, "stock_volume": technical.volume,
        "avg_volume_20": technical.avg_volume_20, "relative_volume": technical.relative_volume,
        "distance_from_52w_high_pct": technical.distance_from_52w_high_pct,
        "distance_from_52w_low_pct": technical.distance_from_52w_low_pct,
        "support_distance_pct": technical.support_distance_pct,
        "resistance_distance_pct": technical.resistance_distance_pct,
    }
    fields = _normalized(values, ENTRY_FIELDS)
    present = {name for name, value in fields.items() if value is not None}
    return Snapshot(
        kind="entry", fields=fields, fields_present=len(present),
        data_quality_score=entry_quality_score(present),
        critical_fields_present=sum(1 for name in CRITICAL_FIELDS if name in present),
    )


def entry_quality_score(present: Iterable[str]) -> float:
    """Weighted share of the entry fields present (critical fields weigh 2)."""
    present = set(present)
    total = sum(_weight(f) for f in ENTRY_FIELDS)
    have = sum(_weight(f) for f in ENTRY_FIELDS if f.name in present)
    return round(have / total, 6)


def _weight(field: FieldDef) -> float:
    return CRITICAL_WEIGHT if field.critical else 1.0


# ============================================================================ position


def build_position_snapshot(trade: TradeTerms, *, trading_day: date, captured_at: datetime,
                            option: OptionMarket | None, stock_price: float | None, vix: float | None,
                            spy_price: float | None) -> dict:
    """The 16 position fields of one open trade at one session (None where data is missing).

    Mark, P&L, DTE and distance to the strike follow monitoring's one rule
    (``core.positions.PositionView``: the mark is the mid, else the last price)."""
    option = option or OptionMarket()
    stock = _first(stock_price, option.underlying_price)
    values = {
        "trade_id": trade.trade_id, "trading_day": trading_day, "captured_at": captured_at,
        "delta": _num(option.delta), "gamma": _num(option.gamma), "theta": _num(option.theta),
        "vega": _num(option.vega), "iv": _positive(option.iv), "stock_price": stock,
        "vix": _num(vix), "spy_price": _num(spy_price),
    }
    try:
        view = PositionView(
            trade_id=trade.trade_id, symbol=trade.symbol, right=trade.right, strike=trade.strike,
            expiration=trade.expiration, contracts=trade.contracts_open, entry_price=trade.entry_price,
            as_of_day=trading_day, side=trade.side, multiplier=trade.multiplier, bid=_num(option.bid),
            ask=_num(option.ask), last=_num(option.last), underlying_price=stock,
        )
    except (ValueError, TypeError, AttributeError):
        view = None  # terms the position rules refuse (no open contracts, ...): figures stay empty
    if view is not None:
        values.update(current_premium=None if view.mark is None else round(view.mark, 6), current_pnl=view.pnl,
                      current_pnl_pct=view.pnl_pct, dte_remaining=view.dte,
                      distance_to_strike_pct=view.distance_to_strike_pct)
    return _normalized(values, POSITION_FIELDS)


# ============================================================================ exit


def build_exit_snapshot(trade: TradeTerms, entry_fields: Mapping | None, path: Sequence[Mapping],
                        context: ExitContext | None) -> Snapshot:
    """The 24 exit fields of a closed trade, from its entry snapshot's fields (None when there
    is none), its position snapshots (rows with ``current_pnl`` and ``distance_to_strike_pct``)
    and the market at exit."""
    entry = dict(entry_fields or {})
    context = context or ExitContext()
    entry_day = _new_york_day(trade.entry_time)
    exit_day = _new_york_day(trade.exit_time)
    days_held = (exit_day - entry_day).days if entry_day and exit_day else None
    premium_total = _safe(premium_received, _num(trade.entry_price), trade.contracts, trade.multiplier)
    gross, net = _num(trade.gross_pnl), _num(trade.net_pnl)
    roi = _percent(gross, _positive(premium_total))
    outcome = net if net is not None else gross

    exit_stock = _num(context.stock_price)
    exit_distance = otm_pct(trade.right, _num(trade.strike), exit_stock)
    analysis = path_analysis(path, realised_pnl=gross, premium_total=premium_total, exit_distance_pct=exit_distance)
    entry_iv, entry_stock, entry_vix = _num(entry.get("iv")), _num(entry.get("stock_price")), _num(entry.get("vix"))
    margin = _positive(_num(entry.get("margin_requirement")))
    return_on_margin = _percent(gross, margin)
    per_day = max(days_held, 1) if days_held is not None else None
    entry_vol = _positive(_num(entry.get("realized_vol_20")))

    values = {
        "exit_date": exit_day, "exit_price": _num(trade.exit_price), "exit_reason": trade.exit_reason,
        "days_held": days_held, "gross_pnl": gross, "net_pnl": net, "roi_pct": roi,
        "win": (outcome > 0) if outcome is not None else None,
        "exit_iv": _positive(context.iv), "iv_change": _minus(_positive(context.iv), entry_iv),
        "exit_stock_price": exit_stock,
        "stock_change_pct": _percent(_minus(exit_stock, entry_stock), entry_stock),
        "exit_vix": _num(context.vix), "vix_change": _minus(_num(context.vix), entry_vix),
        **analysis,
        "trade_quality_score": trade_quality_score(
            capture_efficiency=analysis["capture_efficiency"], max_profit=analysis["max_profit"],
            closest_to_strike_pct=analysis["closest_to_strike_pct"], entry_otm_pct=_num(entry.get("otm_pct")),
            max_drawdown=analysis["max_drawdown"], premium_total=premium_total),
        "risk_adjusted_return": (_ratio(roi / per_day, entry_vol * 100.0)
                                 if roi is not None and per_day and entry_vol else None),
        "return_on_margin_pct": return_on_margin,
        "annualized_return_on_margin_pct": (return_on_margin * 365.0 / per_day
                                            if return_on_margin is not None and per_day else None),
    }
    fields = _normalized(values, EXIT_FIELDS)
    present = sum(1 for value in fields.values() if value is not None)
    return Snapshot(kind="exit", fields=fields, fields_present=present,
                    data_quality_score=round(present / len(EXIT_FIELDS), 6))


def path_analysis(path: Sequence[Mapping], *, realised_pnl: float | None, premium_total: float | None,
                  exit_distance_pct: float | None) -> dict:
    """The six path fields: the daily snapshots' P&L and distance to the strike, the exit's
    realised P&L and distance counted as the path's last point."""
    pnls = [v for v in (_num(row.get("current_pnl")) for row in path) if v is not None]
    distances = [v for v in (_num(row.get("distance_to_strike_pct")) for row in path) if v is not None]
    if realised_pnl is not None:
        pnls.append(realised_pnl)
    if exit_distance_pct is not None:
        distances.append(exit_distance_pct)
    max_profit = max(pnls) if pnls else None
    return {
        "path_days": len(path),
        "closest_to_strike_pct": min(distances) if distances else None,
        "max_drawdown": min(0.0, min(pnls)) if pnls else None,
        "max_profit": max_profit,
        "max_profit_pct": _percent(max_profit, _positive(premium_total)),
        "capture_efficiency": (_ratio(realised_pnl, max_profit)
                               if realised_pnl is not None and max_profit is not None and max_profit > 0 else None),
    }


def trade_quality_score(*, capture_efficiency: float | None, max_profit: float | None,
                        closest_to_strike_pct: float | None, entry_otm_pct: float | None,
                        max_drawdown: float | None, premium_total: float | None) -> float | None:
    """0..1: capture (0.4), cushion (0.3), drawdown (0.3); see the module docstring."""
    parts: dict[str, float] = {}
    if capture_efficiency is not None:
        parts["capture"] = _clip(capture_efficiency)
    elif max_profit is not None and max_profit <= 0:
        parts["capture"] = 0.0  # never in profit: nothing was there to capture
    if closest_to_strike_pct is not None and entry_otm_pct is not None and entry_otm_pct > 0:
        parts["cushion"] = _clip(closest_to_strike_pct / entry_otm_pct)
    if max_drawdown is not None and premium_total is not None and premium_total > 0:
        parts["drawdown"] = 1.0 - _clip(-max_drawdown / premium_total)
    if not parts:
        return None
    weight = sum(QUALITY_WEIGHTS[name] for name in parts)
    return round(sum(QUALITY_WEIGHTS[name] * value for name, value in parts.items()) / weight, 6)


# ============================================================================ small rules


def otm_pct(right: str | None, strike: float | None, price: float | None) -> float | None:
    """How far ``strike`` is out of the money, percent of ``price`` (negative in the money)."""
    if strike is None or price is None or price <= 0 or right not in ("P", "C"):
        return None
    distance = price - strike if right == "P" else strike - price
    return distance / price * 100.0


def breakeven(right: str | None, strike: float | None, premium: float | None) -> float | None:
    if strike is None or premium is None or right not in ("P", "C"):
        return None
    return strike - premium if right == "P" else strike + premium


def max_loss(side: str, right: str, strike: float | None, premium: float | None, contracts: int,
             multiplier: int) -> float | None:
    """The most the position can lose: a short put if the stock went to zero; a long option
    its premium; a short call has no bound (None)."""
    if premium is None:
        return None
    if side == "long":
        return premium * contracts * multiplier
    if right == "P" and strike is not None:
        return max(strike - premium, 0.0) * contracts * multiplier
    return None


def vix_regime(vix: float | None) -> str | None:
    if vix is None:
        return None
    if vix < VIX_LOW:
        return "low"
    if vix > VIX_HIGH:
        return "high"
    return "normal"


def is_opex_week(day: date) -> bool:
    """True when ``day``'s Monday-to-Friday week holds the month's third Friday."""
    monday = day.toordinal() - day.weekday()
    friday = date.fromordinal(monday + 4)
    return friday.weekday() == 4 and 15 <= friday.day <= 21


# ============================================================================ JSON


def fields_to_json(fields: Mapping) -> dict:
    """The fields as JSON values: dates and datetimes as ISO text, Decimals as floats."""
    out = {}
    for name, value in fields.items():
        if isinstance(value, (datetime, date)):
            out[name] = value.isoformat()
        elif isinstance(value, Decimal):
            out[name] = float(value)
        else:
            out[name] = value
    return out


def fields_from_json(fields: Mapping | None, kind: str = "entry") -> dict:
    """Stored JSON fields back to Python values by their definitions (unknown names kept)."""
    definitions = _ENTRY_BY_NAME if kind == "entry" else _EXIT_BY_NAME
    out = {}
    for name, value in (fields or {}).items():
        definition = definitions.get(name)
        if isinstance(value, str) and definition is not None:
            try:
                if definition.type == "date":
                    value = date.fromisoformat(value)
                elif definition.type == "datetime":
                    value = datetime.fromisoformat(value)
            except ValueError:
                pass
        out[name] = value
    return out


def fields_markdown(fields: Sequence[FieldDef]) -> str:
    """The fields as a markdown table (docs/snapshots.md holds these, checked by a test)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|") or " "

    lines = ["| # | field | group | type | unit | source | meaning |", "|---|---|---|---|---|---|---|"]
    for number, f in enumerate(fields, start=1):
        name = f"**{f.name}** (critical)" if f.critical else f.name
        cells = [str(number), name, f.group, f.type, cell(f.unit), cell(f.source), cell(f.meaning)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FIELD_TABLES = {"entry": ENTRY_FIELDS, "position": POSITION_FIELDS, "exit": EXIT_FIELDS}


def with_field_tables(document: str) -> str:
    """``document`` with the text between each ``<!-- fields:KIND -->`` and
    ``<!-- /fields:KIND -->`` marker pair replaced by that kind's current table."""
    for kind, fields in FIELD_TABLES.items():
        begin, end = f"<!-- fields:{kind} -->", f"<!-- /fields:{kind} -->"
        if begin in document and end in document:
            head, rest = document.split(begin, 1)
            _, tail = rest.split(end, 1)
            document = f"{head}{begin}\n{fields_markdown(fields)}\n{end}{tail}"
    return document


# ============================================================================ helpers


def _normalized(values: Mapping, definitions: Sequence[FieldDef]) -> dict:
    """Every defined field in order, values coerced to their type; NaN, infinities and values
    of the wrong type become None (never stored as present)."""
    out = {}
    for definition in definitions:
        out[definition.name] = _coerce(values.get(definition.name), definition.type)
    return out


def _coerce(value, kind: str):
    if value is None:
        return None
    try:
        if kind == "float":
            number = float(value) + 0.0  # + 0.0: -0.0 (a rounded zero P&L) reads 0.0
            return number if math.isfinite(number) else None
        if kind == "int":
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return int(value)
        if kind == "bool":
            return bool(value)
        if kind == "str":
            text = str(value).strip()
            return text or None
        if kind == "date":
            return value if isinstance(value, date) and not isinstance(value, datetime) else None
        if kind == "datetime":
            return value if isinstance(value, datetime) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def _num(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value) -> float | None:
    number = _num(value)
    return number if number is not None and number > 0 else None


def _first(*values) -> float | None:
    for value in values:
        number = _positive(value)
        if number is not None:
            return number
    return None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None


def _percent(numerator: float | None, denominator: float | None) -> float | None:
    value = _ratio(numerator, denominator)
    return None if value is None else value * 100.0


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _safe(function, *args):
    """``function(*args)``, or None when an argument is missing or the rule refuses it."""
    if any(arg is None for arg in args):
        return None
    try:
        return function(*args)
    except (ValueError, TypeError, ZeroDivisionError):
        return None


def _spread(option: OptionMarket) -> float | None:
    if option.mid is None:
        return None
    return round(_num(option.ask) - _num(option.bid), 6)


def _quote_price(quote: PriceQuote | None) -> float | None:
    return _positive(quote.price) if quote is not None else None


def _quote_change(quote: PriceQuote | None) -> float | None:
    return quote.change_pct if quote is not None else None


def _new_york_day(moment: datetime | None) -> date | None:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        return None
    return new_york_date(moment)
