"""Snapshot capture: the shell around ``core.snapshots`` that gathers data from the broker and
the ledger, builds the snapshot and stores it.

- :func:`capture_entry_snapshot` — at a fill. **Never raises**: a snapshot must never block
  or undo a trade. Each piece of data is fetched on its own, so a gap (an unknown contract, a
  market-data error, a missing earnings file) leaves only its fields empty; the snapshot is
  stored as ``captured`` when the eight critical fields are present, else ``partial``, with
  the gaps in its ``error`` text. When the broker connection itself fails (down, dropped,
  refused) or anything unexpected happens, the capture is stored as ``failed`` with the
  error, and a later capture replaces it.
- :func:`capture_exit_snapshot` — at the closing fill; never raises, same rules. It needs the
  trade closed; it reads the stored entry snapshot and the daily position snapshots.
- :func:`capture_position_snapshots` — one snapshot per open trade for a trading day (the
  Dagster asset ``position_snapshots`` and ``tp snapshot-positions`` call it). Gaps leave
  fields empty; a broker connection failure raises (the run fails and can be run again).

What an entry capture asks the broker: the option's quote and greeks, the underlying's
quote and ~260 daily bars (indicators), SPY / QQQ / IWM / VIX quotes and SPY's bars (market
context), the sector's SPDR ETF quote, the account summary and a what-if margin of the
position (risk). From the ledger: the staged row and its screener row (sector, IV rank, scan
score). Quotes are those of the moment of capture: a re-capture taken later says so in its
``captured_at``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

import polars as pl

from trading_pipeline.broker.port import (
    BrokerConnectionError,
    BrokerDisconnected,
    BrokerError,
    BrokerPort,
    Contract,
    ContractError,
    ContractSpec,
    DailyBar,
    OrderRequest,
    Quote,
)
from trading_pipeline.core.calendar import new_york_date
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.snapshots import (
    CRITICAL_FIELDS,
    SECTOR_ETFS,
    AccountFigures,
    EarningsInfo,
    EntryInputs,
    ExitContext,
    OptionMarket,
    PriceQuote,
    ScanContext,
    TradeTerms,
    build_entry_snapshot,
    build_exit_snapshot,
    build_position_snapshot,
)
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ingest.earnings import EarningsCalendar, load_earnings_calendar
from trading_pipeline.ledger.snapshots import (
    get_entry_snapshot,
    list_position_snapshots,
    record_failed_entry_snapshot,
    record_failed_exit_snapshot,
    save_entry_snapshot,
    save_exit_snapshot,
    save_position_snapshots,
    staging_context,
)
from trading_pipeline.ledger.trades import Trade, open_trades
from trading_pipeline.trading.positions import underlying_spec  # one place for the index classes

log = logging.getLogger(__name__)

T = TypeVar("T")

STOCK_BARS = 260  # SMA 200 plus its slope, and a 52-week window
MARKET_BARS = 60  # SMA 50 and its 5-session slope
# Failures of the connection itself: the capture as a whole failed (and may be taken again).
CONNECTION_FAILURES = (BrokerDisconnected, BrokerConnectionError)


class SnapshotCaptureError(TradingPipelineError):
    """A capture could not proceed (the trade is not in the state the snapshot needs)."""


@dataclass(frozen=True)
class SnapshotOutcome:
    """What one entry or exit capture did; ``written`` is False when the trade already had a
    snapshot (a stored failure is replaced, anything else kept)."""

    trade_id: int
    kind: str  # entry / exit
    status: str  # captured / partial / failed
    written: bool
    snapshot_id: int | None = None
    fields_present: int | None = None
    data_quality_score: float | None = None
    critical_fields_present: int | None = None  # entry
    trade_quality_score: float | None = None  # exit
    problems: tuple[str, ...] = ()
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def summary(self) -> str:
        if self.failed:
            return f"{self.kind} snapshot of trade {self.trade_id} failed: {self.error}"
        kept = "" if self.written else " (an earlier snapshot was kept)"
        if self.kind == "entry":
            quality = f"{self.data_quality_score:.1%}" if self.data_quality_score is not None else "?"
            return (f"entry snapshot of trade {self.trade_id} {self.status} (quality: {quality}, critical fields: "
                    f"{self.critical_fields_present}/{len(CRITICAL_FIELDS)}){kept}")
        quality = f"{self.trade_quality_score:.2f}" if self.trade_quality_score is not None else "?"
        return f"exit snapshot of trade {self.trade_id} {self.status} (trade quality: {quality}){kept}"


@dataclass
class _Gaps:
    """The data a capture could not get, in words; connection failures are not gaps."""

    problems: list[str] = field(default_factory=list)

    def attempt(self, what: str, fetch: Callable[[], T]) -> T | None:
        try:
            return fetch()
        except CONNECTION_FAILURES:
            raise
        except (BrokerError, TradingPipelineError, ValueError) as problem:
            self.problems.append(f"{what}: {problem}")
            return None


# ============================================================================ entry


def capture_entry_snapshot(engine, broker: BrokerPort, trade: Trade, *, clock: Clock,
                           earnings: EarningsCalendar | None = None) -> SnapshotOutcome:
    """Capture and store the entry snapshot of ``trade``; never raises (see the module)."""
    captured_at = _now(clock)
    try:
        gaps = _Gaps()
        snapshot = build_entry_snapshot(_entry_inputs(engine, broker, trade, captured_at, earnings, gaps))
        status = "captured" if snapshot.all_critical_present else "partial"
        saved = save_entry_snapshot(
            engine, trade.id, captured_at=captured_at, status=status, fields=snapshot.fields,
            fields_present=snapshot.fields_present, data_quality_score=snapshot.data_quality_score,
            critical_fields_present=snapshot.critical_fields_present, error=_gap_text(gaps),
        )
        stored = saved.snapshot
        outcome = SnapshotOutcome(
            trade_id=trade.id, kind="entry", status=stored.status, written=saved.written, snapshot_id=stored.id,
            fields_present=stored.fields_present, data_quality_score=stored.data_quality_score,
            critical_fields_present=stored.critical_fields_present, problems=tuple(gaps.problems),
            error=stored.error,
        )
    except Exception as problem:  # noqa: BLE001 - the trade must never fail because of its snapshot
        return _failed(engine, trade, "entry", captured_at, problem)
    log.info(outcome.summary())
    return outcome


def _entry_inputs(engine, broker: BrokerPort, trade: Trade, captured_at: datetime,
                  earnings: EarningsCalendar | None, gaps: _Gaps) -> EntryInputs:
    terms = trade_terms(trade)
    entry_day = new_york_date(trade.entry_time)
    context = staging_context(engine, trade.staged_opportunity_id) or {}
    sector = context.get("sector") or gaps.attempt("sector map", lambda: sector_of_symbol(trade.symbol))
    sector_etf = SECTOR_ETFS.get(sector or "")

    names = ["option", "stock", "SPY", "QQQ", "IWM", "VIX"] + (["sector"] if sector_etf else [])
    specs = [option_spec(trade), underlying_spec(trade.symbol), ContractSpec.stock("SPY"), ContractSpec.stock("QQQ"),
             ContractSpec.stock("IWM"), ContractSpec.index("VIX")] + ([ContractSpec.stock(sector_etf)] if sector_etf else [])
    contracts = dict(zip(names, qualify_each(broker, specs, gaps)))
    quotes = quotes_by_name(broker, contracts, gaps)

    stock_bars = spy_bars = None
    if contracts.get("stock") is not None:
        stock_bars = gaps.attempt(f"daily bars of {trade.symbol}",
                                  lambda: bars_frame(broker.daily_bars(contracts["stock"], STOCK_BARS, end=entry_day)))
    if contracts.get("SPY") is not None:
        spy_bars = gaps.attempt("daily bars of SPY",
                                lambda: bars_frame(broker.daily_bars(contracts["SPY"], MARKET_BARS, end=entry_day)))
    summary = gaps.attempt("account summary", broker.account_summary)
    margin = None
    if contracts.get("option") is not None and trade.side == "short":
        margin = gaps.attempt("what-if margin", lambda: _what_if_margin(broker, contracts["option"], trade))
    elif trade.side == "long":
        margin = trade.premium_received  # a long option needs its price, nothing more

    if earnings is None:
        earnings = gaps.attempt("earnings calendar", load_earnings_calendar)
    event = earnings.next_earnings(trade.symbol, entry_day) if earnings is not None else None
    if earnings is not None and not earnings.present:
        gaps.problems.append("earnings calendar: no file (days to earnings unknown)")

    return EntryInputs(
        trade=terms, captured_at=captured_at,
        option=option_market(quotes.get("option")),
        stock=price_quote(quotes.get("stock")), stock_bars=stock_bars,
        spy=price_quote(quotes.get("SPY")), qqq=price_quote(quotes.get("QQQ")), iwm=price_quote(quotes.get("IWM")),
        vix=price_quote(quotes.get("VIX")), spy_bars=spy_bars,
        sector=sector, sector_etf=price_quote(quotes.get("sector")),
        earnings=EarningsInfo(event.day, event.timing) if event is not None else None,
        account=AccountFigures(summary.net_liquidation, summary.buying_power, summary.init_margin_req)
        if summary is not None else None,
        margin_requirement=margin,
        scan=ScanContext(
            sector=context.get("sector"), margin_per_contract=context.get("margin_per_contract"),
            strike_selection_outcome=context.get("strike_selection_outcome"), iv_rank=context.get("iv_rank_pct"),
            scan_score=context.get("score"), scan_grade=context.get("grade"), scan_rank=context.get("rank"),
            scan_profit_prob_pct=context.get("profit_prob_pct"),
        ),
    )


def _what_if_margin(broker: BrokerPort, contract: Contract, trade: Trade) -> float | None:
    """The initial margin of the whole position: a what-if of selling it again (nothing is
    placed); naked-option margin grows linearly with the contracts, so this is its size."""
    quantity = trade.contracts
    if trade.entry_price > 0:
        # The entry price is an average of fills (4.0425): TWS refuses a what-if off the
        # contract's price grid (error 110), so the limit is the nearest grid price.
        # (Never 0: a 0.02 average on a 0.05 grid takes the first grid price.)
        grid = broker.price_increments([contract])[0]
        price = max(grid.round_nearest(trade.entry_price), grid.increment_at(0.0))
        request = OrderRequest.limit("SELL", quantity, price)
    else:
        request = OrderRequest.market("SELL", quantity)
    impact = broker.what_if_margin(contract, request)
    return impact.init_margin_change


# ============================================================================ exit


def capture_exit_snapshot(engine, broker: BrokerPort, trade: Trade, *, clock: Clock) -> SnapshotOutcome:
    """Capture and store the exit snapshot of the closed ``trade``; never raises."""
    captured_at = _now(clock)
    try:
        if trade.is_open or trade.exit_time is None:
            raise SnapshotCaptureError(f"trade {trade.id} ({trade.describe()}) is not closed yet: no exit to snapshot")
        gaps = _Gaps()
        entry = get_entry_snapshot(engine, trade.id)
        if entry is None or entry.fields is None:
            gaps.problems.append("no entry snapshot: changes since entry unknown")
        path = list_position_snapshots(engine, trade_id=trade.id)
        names = ["option", "stock", "VIX"]
        contracts = dict(zip(names, qualify_each(
            broker, [option_spec(trade), underlying_spec(trade.symbol), ContractSpec.index("VIX")], gaps)))
        quotes = quotes_by_name(broker, contracts, gaps)
        option = option_market(quotes.get("option"))
        stock = price_quote(quotes.get("stock"))
        context = ExitContext(
            iv=option.iv if option is not None else None,
            stock_price=(stock.price if stock is not None else None) or (option.underlying_price if option else None),
            vix=price_quote(quotes.get("VIX")).price if quotes.get("VIX") is not None else None,
        )
        snapshot = build_exit_snapshot(trade_terms(trade), entry.fields if entry else None, path, context)
        details_complete = all(snapshot.fields[name] is not None for name in (
            "exit_date", "exit_price", "exit_reason", "days_held", "gross_pnl", "net_pnl", "roi_pct", "win"))
        status = "captured" if details_complete and entry is not None and entry.fields else "partial"
        saved = save_exit_snapshot(
            engine, trade.id, captured_at=captured_at, status=status, fields=snapshot.fields,
            fields_present=snapshot.fields_present, trade_quality_score=snapshot.fields["trade_quality_score"],
            error=_gap_text(gaps),
        )
        stored = saved.snapshot
        outcome = SnapshotOutcome(
            trade_id=trade.id, kind="exit", status=stored.status, written=saved.written, snapshot_id=stored.id,
            fields_present=stored.fields_present, data_quality_score=snapshot.data_quality_score,
            trade_quality_score=stored.trade_quality_score, problems=tuple(gaps.problems), error=stored.error,
        )
    except Exception as problem:  # noqa: BLE001 - an exit must never fail because of its snapshot
        return _failed(engine, trade, "exit", captured_at, problem)
    log.info(outcome.summary())
    return outcome


# ============================================================================ position snapshots


def capture_position_snapshots(engine, broker: BrokerPort, *, trading_day: date, clock: Clock,
                               dagster_run_id: str | None = None) -> list[dict]:
    """One snapshot per trade open on ``trading_day`` (opened that day or before), stored in
    one transaction. Each row holds the 16 position fields plus ``symbol``, ``right``,
    ``strike`` and ``expiration`` for display, and ``problems`` (the data it lacked)."""
    trades = [t for t in open_trades(engine) if new_york_date(t.entry_time) <= trading_day]
    if not trades:
        return []
    captured_at = _now(clock)
    gaps = _Gaps()
    underlyings = sorted({t.symbol for t in trades})
    specs = ([option_spec(t) for t in trades] + [underlying_spec(s) for s in underlyings]
             + [ContractSpec.index("VIX"), ContractSpec.stock("SPY")])
    names = [f"trade:{t.id}" for t in trades] + [f"stock:{s}" for s in underlyings] + ["VIX", "SPY"]
    contracts = dict(zip(names, qualify_each(broker, specs, gaps)))
    quotes = quotes_by_name(broker, contracts, gaps)
    vix = price_quote(quotes.get("VIX"))
    spy = price_quote(quotes.get("SPY"))

    rows = []
    for trade in trades:
        stock = price_quote(quotes.get(f"stock:{trade.symbol}"))
        row = build_position_snapshot(
            trade_terms(trade), trading_day=trading_day, captured_at=captured_at,
            option=option_market(quotes.get(f"trade:{trade.id}")),
            stock_price=stock.price if stock is not None else None,
            vix=vix.price if vix is not None else None, spy_price=spy.price if spy is not None else None,
        )
        rows.append({**row, "symbol": trade.symbol, "right": trade.right, "strike": trade.strike,
                     "expiration": trade.expiration, "problems": _problems_of(trade, trades, gaps.problems)})
    save_position_snapshots(engine, rows, dagster_run_id=dagster_run_id)
    return rows


# ============================================================================ broker helpers


def option_spec(trade: Trade) -> ContractSpec:
    return ContractSpec.option(trade.symbol, trade.expiration, trade.strike, trade.right)


def qualify_each(broker: BrokerPort, specs: Sequence[ContractSpec], gaps: _Gaps) -> list[Contract | None]:
    """One contract per spec; None (and a gap) for each one the broker does not know. One
    request for all, then one each only when some are unknown."""
    try:
        return list(broker.qualify(*specs))
    except ContractError:
        pass
    found: list[Contract | None] = []
    for spec in specs:
        contract = gaps.attempt(f"contract {spec.describe()}", lambda spec=spec: broker.qualify(spec)[0])
        found.append(contract)
    return found


def quotes_by_name(broker: BrokerPort, contracts: dict[str, Contract | None], gaps: _Gaps) -> dict[str, Quote]:
    """One quote request for every known contract; the quotes by the caller's names. When the
    broker refuses the request (one contract without market data can spoil it), each
    contract is asked for on its own, so only the refused ones are missing."""
    named = [(name, contract) for name, contract in contracts.items() if contract is not None]
    if not named:
        return {}
    try:
        quotes = broker.quotes([contract for _, contract in named])
        return {name: quote for (name, _), quote in zip(named, quotes)}
    except CONNECTION_FAILURES:
        raise
    except BrokerError:
        pass
    found = {}
    for name, contract in named:
        quote = gaps.attempt(f"market data of {contract.describe()}", lambda contract=contract: broker.quotes([contract]))
        if quote:
            found[name] = quote[0]
    return found


def option_market(quote: Quote | None) -> OptionMarket | None:
    if quote is None:
        return None
    greeks = quote.greeks
    return OptionMarket(
        bid=quote.bid, ask=quote.ask, last=quote.last, close=quote.close, volume=quote.volume,
        open_interest=quote.open_interest, bid_size=quote.bid_size, ask_size=quote.ask_size,
        delta=greeks.delta if greeks else None, gamma=greeks.gamma if greeks else None,
        theta=greeks.theta if greeks else None, vega=greeks.vega if greeks else None,
        iv=greeks.implied_vol if greeks else None, model_price=greeks.model_price if greeks else None,
        underlying_price=greeks.underlying_price if greeks else None,
    )


def price_quote(quote: Quote | None) -> PriceQuote | None:
    return None if quote is None else PriceQuote(price=quote.price, previous_close=quote.close)


def bars_frame(bars: Sequence[DailyBar]) -> pl.DataFrame:
    return pl.DataFrame(
        {"date": [b.day for b in bars], "open": [b.open for b in bars], "high": [b.high for b in bars],
         "low": [b.low for b in bars], "close": [b.close for b in bars], "volume": [b.volume for b in bars]},
        schema={"date": pl.Date, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
                "volume": pl.Float64},
    )


def sector_of_symbol(symbol: str) -> str | None:
    """The symbol's sector: the ``TP_SECTOR_MAP`` file when set, else the default universe's
    GICS map; None when neither knows it."""
    from trading_pipeline.core.risk import sector_of
    from trading_pipeline.sim.universe import SECTOR_BY_SYMBOL
    from trading_pipeline.trading.order_gateway import sector_map_from_env

    configured = sector_map_from_env()
    if symbol.strip().upper() in configured:
        return sector_of(symbol, configured)
    return SECTOR_BY_SYMBOL.get(symbol.strip().upper())


# ============================================================================ helpers


def trade_terms(trade: Trade) -> TradeTerms:
    return TradeTerms(
        trade_id=trade.id, symbol=trade.symbol, right=trade.right, strike=trade.strike, expiration=trade.expiration,
        side=trade.side, contracts=trade.contracts, entry_price=trade.entry_price, entry_time=trade.entry_time,
        multiplier=trade.multiplier, open_contracts=trade.open_contracts, trade_source=trade.trade_source,
        strike_selection_method=trade.strike_selection_method, original_strike=trade.original_strike,
        live_delta=trade.live_delta, exit_price=trade.exit_price, exit_time=trade.exit_time,
        exit_reason=trade.exit_reason, gross_pnl=trade.gross_pnl, net_pnl=trade.net_pnl,
    )


def _problems_of(trade: Trade, trades: Sequence[Trade], problems: Sequence[str]) -> list[str]:
    """The gaps that concern ``trade``: those naming its option or underlying, and those
    naming no trade at all (market data, VIX, SPY)."""
    def names(t: Trade) -> tuple[str, str]:
        return option_spec(t).describe(), underlying_spec(t.symbol).describe()

    everyone = {name for t in trades for name in names(t)}
    own = names(trade)
    return [p for p in problems if any(name in p for name in own) or not any(name in p for name in everyone)]


def _now(clock: Clock) -> datetime:
    """The clock's time; a clock that cannot be read (a broker clock whose broker is down)
    falls back to the system's, so the failure itself can still be recorded."""
    try:
        return clock.now()
    except Exception:  # noqa: BLE001
        from trading_pipeline.core.clock import SystemClock

        return SystemClock().now()


def _gap_text(gaps: _Gaps) -> str | None:
    return "; ".join(gaps.problems) if gaps.problems else None


def _failed(engine, trade: Trade, kind: str, captured_at: datetime, problem: Exception) -> SnapshotOutcome:
    error = f"{type(problem).__name__}: {problem}" if not isinstance(problem, TradingPipelineError) else str(problem)
    trade_id = getattr(trade, "id", None)
    log.warning("%s snapshot of trade %s failed: %s", kind, trade_id, error)
    record = record_failed_entry_snapshot if kind == "entry" else record_failed_exit_snapshot
    try:
        saved = record(engine, trade_id, captured_at=captured_at, error=error)
    except Exception as storing:  # noqa: BLE001 - even the ledger may be down; say so, never raise
        return SnapshotOutcome(trade_id=trade_id, kind=kind, status="failed", written=False,
                               error=f"{error} (and recording the failure failed: {storing})")
    stored = saved.snapshot
    if not stored.failed:
        error += f" (the {kind} snapshot taken before, {stored.status}, is kept)"
    return SnapshotOutcome(trade_id=trade_id, kind=kind, status="failed", written=saved.written,
                           snapshot_id=stored.id, error=error)
