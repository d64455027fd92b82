"""Enrichment of promoted trades: entry and exit snapshots rebuilt from history.

Trades promoted from IBKR's history (``trade_source`` ``ibkr_import``) were never snapshotted
live. :func:`enrich_trades` gives each of them an entry and (once closed) an exit snapshot
with ``source`` "enrichment", built by the same definitions as live snapshots
(``core.snapshots``) from what ``core.enrichment`` reconstructs:

* without a broker: only what the trade itself says (terms, prices, days to expiry, P&L,
  premium, breakeven...): status "partial";
* with a broker (``tp taad-enrich --with-ibkr``): daily bars of the underlying, VIX, SPY,
  QQQ, IWM and the sector's SPDR ETF around the trade's dates, one request per symbol for all
  the trades of the run; the IV and greeks at entry and exit solved from the traded prices;
  status "enriched" when the market of the moment was found (``core.enrichment``), else
  "partial". A symbol the broker does not know or cannot serve leaves its fields empty and
  is listed in the result's ``problems``; it never fails the run (a lost connection does).

Which trades: promoted trades without an entry snapshot, or closed ones without an exit
snapshot (a failed capture counts as none), oldest entry first, at most ``limit`` of them.
With a broker, trades whose enrichment snapshots are still "partial" are taken again: a
richer enrichment replaces our own partial one (never a live snapshot, never an "enriched"
one). So a re-run adds only what is missing: idempotent.

Each snapshot is one transaction (through ``ledger.snapshots``); an interrupted run leaves
whole snapshots only, and the next run completes the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

import polars as pl
from sqlalchemy import Engine, Table, update

from trading_pipeline.broker.port import (
    BrokerConnectionError,
    BrokerDisconnected,
    BrokerError,
    BrokerPort,
)
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.enrichment import (
    DEFAULT_RISK_FREE_RATE,
    MARKET_SYMBOLS,
    Reconstruction,
    bars_frame,
    bars_needed,
    entry_day,
    reconstruct_trade,
)
from trading_pipeline.core.snapshots import (
    SECTOR_ETFS,
    EarningsInfo,
    Snapshot,
    TradeTerms,
    build_entry_snapshot,
    build_exit_snapshot,
    fields_to_json,
)
from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest.earnings import ABSENT, EarningsCalendar, load_earnings_calendar
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import entry_snapshots, exit_snapshots
from trading_pipeline.ledger.snapshots import (
    StoredSnapshot,
    list_entry_snapshots,
    list_exit_snapshots,
    save_entry_snapshot,
    save_exit_snapshot,
)
from trading_pipeline.ledger.trades import Trade, list_trades
from trading_pipeline.trading.snapshots import sector_of_symbol, trade_terms, underlying_spec

log = logging.getLogger(__name__)

SOURCE = "enrichment"
IMPORTED = "ibkr_import"
PARTIAL, ENRICHED, FAILED = "partial", "enriched", "failed"


# ============================================================================ market history


class MarketHistory(Protocol):
    """Daily bars by symbol, for the enrichment. ``problems`` says what could not be had."""

    problems: list[str]

    def bars(self, symbol: str, *, end: date, sessions: int) -> pl.DataFrame | None: ...


class BrokerHistory:
    """Daily bars from the broker (the IBKR adapter, or the simulator through it), each
    symbol asked once per run: a later, narrower request is served from the first answer
    when it covers it. Unknown symbols and refused requests become ``problems``; a lost
    connection is raised (the run fails and can be run again)."""

    def __init__(self, broker: BrokerPort):
        self.broker = broker
        self.problems: list[str] = []
        self._cache: dict[str, tuple[date, int, pl.DataFrame | None]] = {}

    def bars(self, symbol: str, *, end: date, sessions: int) -> pl.DataFrame | None:
        symbol = symbol.strip().upper()
        cached = self._cache.get(symbol)
        if cached is not None and cached[0] >= end and cached[1] >= sessions:
            return cached[2]
        frame = self._fetch(symbol, end, sessions)
        self._cache[symbol] = (end, sessions, frame)
        return frame

    def _fetch(self, symbol: str, end: date, sessions: int) -> pl.DataFrame | None:
        try:
            [contract] = self.broker.qualify(underlying_spec(symbol))
            return bars_frame(self.broker.daily_bars(contract, sessions, end=end))
        except (BrokerConnectionError, BrokerDisconnected):
            raise
        except BrokerError as problem:  # an unknown contract (ContractError), a refused request
            self.problems.append(f"daily bars of {symbol}: {problem}")
        return None


# ============================================================================ results


@dataclass(frozen=True)
class TradeEnrichment:
    """What one trade got."""

    trade_id: int
    symbol: str
    entry_day: date
    entry_status: str | None  # None: not written (already had one)
    exit_status: str | None
    entry_quality: float | None  # data quality score of the entry snapshot written
    exit_fields_present: int | None
    entry_iv: float | None
    exit_iv: float | None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "trade_id": self.trade_id, "symbol": self.symbol, "entry_day": self.entry_day.isoformat(),
            "entry_status": self.entry_status, "exit_status": self.exit_status,
            "entry_quality": self.entry_quality, "exit_fields_present": self.exit_fields_present,
            "entry_iv": self.entry_iv, "exit_iv": self.exit_iv, "notes": list(self.notes),
        }


@dataclass(frozen=True)
class EnrichmentResult:
    """A run of :func:`enrich_trades`."""

    with_ibkr: bool
    promoted: int  # promoted trades in the ledger
    candidates: int  # of them, missing something
    trades: tuple[TradeEnrichment, ...]
    entry_written: int
    exit_written: int
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def enriched(self) -> int:
        """Trades that got at least one snapshot in this run."""
        return sum(1 for t in self.trades if t.entry_status or t.exit_status)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trade in self.trades:
            for status in (trade.entry_status, trade.exit_status):
                if status:
                    counts[status] = counts.get(status, 0) + 1
        return dict(sorted(counts.items()))

    def average_entry_quality(self) -> float | None:
        scores = [t.entry_quality for t in self.trades if t.entry_quality is not None]
        return round(sum(scores) / len(scores), 4) if scores else None

    def as_dict(self) -> dict:
        return {
            "with_ibkr": self.with_ibkr, "promoted": self.promoted, "candidates": self.candidates,
            "enriched": self.enriched, "entry_written": self.entry_written, "exit_written": self.exit_written,
            "statuses": self.status_counts(), "average_entry_quality": self.average_entry_quality(),
            "problems": list(self.problems), "trades": [t.as_dict() for t in self.trades],
        }

    def summary(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in self.status_counts().items()) or "none"
        source = "with broker bars" if self.with_ibkr else "from the trades alone"
        return (f"{self.enriched} of {self.candidates} trade(s) to enrich enriched {source} "
                f"({self.promoted} promoted): {self.entry_written} entry and {self.exit_written} exit "
                f"snapshot(s) written ({statuses})")


# ============================================================================ selection


def _needs(stored: StoredSnapshot | None, *, upgrade_partial: bool) -> bool:
    """Whether a snapshot is missing: none, a failed capture, or (``upgrade_partial``) our own
    partial enrichment."""
    if stored is None or stored.status == FAILED:
        return True
    return upgrade_partial and stored.source == SOURCE and stored.status == PARTIAL


def trades_to_enrich(engine: Engine, *, limit: int | None = None, upgrade_partial: bool = False
                     ) -> tuple[list[Trade], int, dict[int, StoredSnapshot], dict[int, StoredSnapshot]]:
    """The promoted trades missing a snapshot (oldest entry first, at most ``limit``), the
    number of promoted trades, and the stored entry and exit snapshots by trade id."""
    promoted = list_trades(engine, source=IMPORTED)
    entries = {s.trade_id: s for s in list_entry_snapshots(engine)}
    exits = {s.trade_id: s for s in list_exit_snapshots(engine)}
    wanted = [
        t for t in promoted
        if _needs(entries.get(t.id), upgrade_partial=upgrade_partial)
        or (t.status == "closed" and _needs(exits.get(t.id), upgrade_partial=upgrade_partial))
    ]
    if limit is not None and limit > 0:
        wanted = wanted[:limit]
    return wanted, len(promoted), entries, exits


# ============================================================================ the service


def enrich_trades(
    engine: Engine,
    *,
    clock: Clock,
    market: MarketHistory | None = None,
    limit: int | None = None,
    rate: float = DEFAULT_RISK_FREE_RATE,
    earnings: EarningsCalendar | None = None,
) -> EnrichmentResult:
    """Enrich the promoted trades that miss snapshots (module text); ``market`` None: from the
    trades alone. ``earnings`` None: the user's earnings calendar file, if any."""
    trades, promoted, entries, exits = trades_to_enrich(engine, limit=limit, upgrade_partial=market is not None)
    problems: list[str] = []
    if earnings is None:
        try:
            earnings = load_earnings_calendar()
        except InputFileError as problem:
            problems.append(f"earnings calendar not used: {problem}")
            earnings = ABSENT
    terms = {t.id: trade_terms(t) for t in trades}
    sectors = {symbol: sector_of_symbol(symbol) for symbol in {t.symbol for t in trades}}
    bars = _fetch_bars(market, trades, terms, sectors) if market is not None else {}
    if market is not None:
        problems.extend(market.problems)

    captured_at = clock.now()
    done: list[TradeEnrichment] = []
    entry_written = exit_written = 0
    for trade in trades:
        term = terms[trade.id]
        sector = sectors.get(trade.symbol)
        event = earnings.next_earnings(trade.symbol, entry_day(term))
        rebuilt = reconstruct_trade(
            term, captured_at=captured_at, bars=bars.get(trade.symbol, {}), sector=sector, rate=rate,
            earnings=EarningsInfo(event.day, event.timing) if event is not None else None,
        )
        outcome, wrote_entry, wrote_exit = _store(
            engine, trade, term, rebuilt, captured_at, entries.get(trade.id), exits.get(trade.id),
            upgrade_partial=market is not None,
        )
        entry_written += wrote_entry
        exit_written += wrote_exit
        done.append(outcome)
    result = EnrichmentResult(with_ibkr=market is not None, promoted=promoted, candidates=len(trades),
                              trades=tuple(done), entry_written=entry_written, exit_written=exit_written,
                              problems=tuple(problems))
    log.info(result.summary())
    return result


def _fetch_bars(market: MarketHistory, trades: Sequence[Trade], terms: dict[int, TradeTerms],
                sectors: dict[str, str | None]) -> dict[str, dict[str, pl.DataFrame]]:
    """The bars each trade's reconstruction uses, by the trade's symbol: its own, the
    market's (VIX, SPY, QQQ, IWM) and its sector ETF's. One request per symbol."""
    window = bars_needed(terms.values())
    if window is None:
        return {}
    end, sessions = window
    market_bars = {symbol: market.bars(symbol, end=end, sessions=sessions) for symbol in MARKET_SYMBOLS}
    by_symbol: dict[str, dict[str, pl.DataFrame]] = {}
    for symbol in sorted({t.symbol for t in trades}):
        own_end, own_sessions = bars_needed(terms[t.id] for t in trades if t.symbol == symbol) or window
        frames = dict(market_bars)
        frames[symbol] = market.bars(symbol, end=own_end, sessions=own_sessions)
        etf = SECTOR_ETFS.get(sectors.get(symbol) or "")
        if etf:
            frames[etf] = market.bars(etf, end=end, sessions=sessions)
        by_symbol[symbol] = {name: frame for name, frame in frames.items() if frame is not None}
    return by_symbol


def _store(engine: Engine, trade: Trade, terms: TradeTerms, rebuilt: Reconstruction, captured_at: datetime,
           stored_entry: StoredSnapshot | None, stored_exit: StoredSnapshot | None, *, upgrade_partial: bool
           ) -> tuple[TradeEnrichment, int, int]:
    notes = []
    if rebuilt.entry.iv_problem:
        notes.append(f"entry IV: {rebuilt.entry.iv_problem}")
    if rebuilt.exit is not None and rebuilt.exit.iv_problem:
        notes.append(f"exit IV: {rebuilt.exit.iv_problem}")

    entry_status = entry_quality = None
    entry_fields = stored_entry.fields if stored_entry is not None and not stored_entry.failed else None
    if _needs(stored_entry, upgrade_partial=upgrade_partial):
        snapshot = build_entry_snapshot(rebuilt.entry_inputs)
        if _write(engine, "entry", trade.id, stored_entry, rebuilt.entry_status, snapshot, captured_at):
            entry_status, entry_quality = rebuilt.entry_status, snapshot.data_quality_score
            entry_fields = snapshot.fields

    exit_status = exit_present = None
    if rebuilt.exit_context is not None and trade.status == "closed" and _needs(stored_exit,
                                                                                upgrade_partial=upgrade_partial):
        # Imported trades have no daily position snapshots: their path is the exit alone.
        snapshot = build_exit_snapshot(terms, entry_fields, [], rebuilt.exit_context)
        if _write(engine, "exit", trade.id, stored_exit, rebuilt.exit_status, snapshot, captured_at):
            exit_status, exit_present = rebuilt.exit_status, snapshot.fields_present
    outcome = TradeEnrichment(
        trade_id=trade.id, symbol=trade.symbol, entry_day=rebuilt.entry.day, entry_status=entry_status,
        exit_status=exit_status, entry_quality=entry_quality, exit_fields_present=exit_present,
        entry_iv=rebuilt.entry.iv, exit_iv=rebuilt.exit.iv if rebuilt.exit is not None else None,
        notes=tuple(notes),
    )
    return outcome, int(entry_status is not None), int(exit_status is not None)


def _write(engine: Engine, kind: str, trade_id: int, stored: StoredSnapshot | None, status: str,
           snapshot: Snapshot, captured_at: datetime) -> bool:
    """Store a snapshot: a new one (or over a failed capture) through ledger.snapshots; over
    our own partial enrichment by :func:`_replace_partial_enrichment`. True when written."""
    if stored is not None and not stored.failed:
        if status == PARTIAL and stored.status == PARTIAL:
            return False  # nothing better to offer: keep the row (and its captured_at) as it is
        return _replace_partial_enrichment(engine, kind, trade_id, status, snapshot, captured_at)
    if kind == "entry":
        saved = save_entry_snapshot(
            engine, trade_id, captured_at=captured_at, status=status, fields=snapshot.fields,
            fields_present=snapshot.fields_present, data_quality_score=snapshot.data_quality_score,
            critical_fields_present=snapshot.critical_fields_present or 0, source=SOURCE)
    else:
        saved = save_exit_snapshot(
            engine, trade_id, captured_at=captured_at, status=status, fields=snapshot.fields,
            fields_present=snapshot.fields_present, trade_quality_score=snapshot.fields.get("trade_quality_score"),
            source=SOURCE)
    return saved.written


def _replace_partial_enrichment(engine: Engine, kind: str, trade_id: int, status: str, snapshot: Snapshot,
                                captured_at: datetime) -> bool:
    """Replace the trade's partial enrichment snapshot in one transaction. The WHERE clause is
    the guard: a live snapshot, or one already enriched, is never touched."""
    table: Table = entry_snapshots if kind == "entry" else exit_snapshots
    values = dict(captured_at=captured_at, status=status, fields_present=snapshot.fields_present,
                  fields=fields_to_json(snapshot.fields), error=None)
    if kind == "entry":
        values.update(data_quality_score=snapshot.data_quality_score,
                      critical_fields_present=snapshot.critical_fields_present or 0)
    else:
        values.update(trade_quality_score=snapshot.fields.get("trade_quality_score"))
    with write_transaction(engine) as connection:
        changed = connection.execute(
            update(table)
            .where(table.c.trade_id == trade_id, table.c.source == SOURCE, table.c.status == PARTIAL)
            .values(**values)
        ).rowcount
    return changed == 1


__all__ = [
    "BrokerHistory",
    "EnrichmentResult",
    "MarketHistory",
    "TradeEnrichment",
    "enrich_trades",
    "trades_to_enrich",
]
