"""Repository of trades: one option position from its opening to its closing.

A trade comes in one of three ways, each idempotent by its ``trade_key``:

* our own execution: ``intent:<order_ref>`` of the entry intent, opened (and grown) from its
  fills by :func:`open_or_update_trade` with the intent's filled quantity and average price,
  so replaying a fill never counts it twice;
* IBKR's history: ``lifecycle:<lifecycle_id>`` of a promoted lifecycle;
* a reconciliation that found a position only at the broker:
  ``broker:<account>:<con_id>:<yyyy-mm-dd>``.

Closing (:func:`close_trade`) takes some or all of the open contracts at a price; the P&L
comes from ``core.positions`` (the one place for it) and accumulates over partial closes,
the exit price being their average. An exit order in flight is linked first with
:func:`mark_exit_pending` (its intent and the rule that sent it), so the fill that closes
the trade knows why. Every write is one transaction and takes its time as ``at``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from trading_pipeline.core.positions import position_pnl, premium_received
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import (
    EXIT_REASONS,
    TRADE_SIDES,
    TRADE_SOURCES,
    stock_positions,
    to_money,
    trades,
)
from trading_pipeline.ledger.staging import LedgerStateError, insert_or_ignore, require_aware


@dataclass(frozen=True)
class Trade:
    """One row of ``trades``: money as float, times timezone-aware UTC."""

    id: int
    trade_key: str
    trade_source: str
    account: str | None
    symbol: str
    con_id: int | None
    right: str
    strike: float
    expiration: date
    multiplier: int
    currency: str
    side: str
    contracts: int
    open_contracts: int
    entry_price: float
    entry_time: datetime
    entry_commission: float | None
    staged_opportunity_id: int | None
    entry_intent_id: int | None
    strike_selection_method: str | None
    original_strike: float | None
    live_delta: float | None
    status: str
    exit_price: float | None
    exit_time: datetime | None
    exit_reason: str | None
    exit_commission: float | None
    exit_intent_id: int | None
    gross_pnl: float | None
    net_pnl: float | None
    lifecycle_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def premium_received(self) -> float:
        """The whole position's premium (entry price x multiplier x contracts opened)."""
        return premium_received(self.entry_price, self.contracts, self.multiplier)

    def describe(self) -> str:
        return (f"{self.symbol} {self.expiration:%Y-%m-%d} {self.strike:g}{self.right} "
                f"{self.side} x{self.open_contracts if self.is_open else self.contracts}")


@dataclass(frozen=True)
class NewTrade:
    """What opening a trade needs; the rest starts empty (status open, all contracts open)."""

    trade_key: str
    trade_source: str
    symbol: str
    right: str
    strike: float
    expiration: date
    side: str
    contracts: int
    entry_price: float
    entry_time: datetime
    account: str | None = None
    con_id: int | None = None
    multiplier: int = 100
    currency: str = "USD"
    entry_commission: float | None = None
    staged_opportunity_id: int | None = None
    entry_intent_id: int | None = None
    strike_selection_method: str | None = None
    original_strike: float | None = None
    live_delta: float | None = None

    def __post_init__(self) -> None:
        if self.trade_source not in TRADE_SOURCES:
            raise ValueError(f"trade_source must be one of {', '.join(TRADE_SOURCES)}, not {self.trade_source!r}")
        if self.side not in TRADE_SIDES:
            raise ValueError(f"side must be 'short' or 'long', not {self.side!r}")
        if self.right not in ("P", "C"):
            raise ValueError(f"right must be 'P' or 'C', not {self.right!r}")
        if isinstance(self.contracts, bool) or not isinstance(self.contracts, int) or self.contracts <= 0:
            raise ValueError(f"contracts must be a whole number, 1 or more, not {self.contracts!r}")
        if self.entry_price < 0:
            raise ValueError(f"entry_price must not be negative, not {self.entry_price!r}")
        require_aware(self.entry_time, "entry_time")


_MONEY_FIELDS = ("strike", "entry_price", "entry_commission", "original_strike", "exit_price",
                 "exit_commission", "gross_pnl", "net_pnl")


def _trade(row) -> Trade:
    mapping = dict(row._mapping)
    for name in _MONEY_FIELDS:
        if isinstance(mapping.get(name), Decimal):
            mapping[name] = float(mapping[name])
    return Trade(**{field.name: mapping[field.name] for field in fields(Trade)})


def _money(value: float | None) -> Decimal | None:
    return None if value is None else to_money(value)


def read_trade(connection: Connection, *, trade_id: int | None = None, trade_key: str | None = None,
               lock: bool = False) -> Trade | None:
    """A trade inside the caller's transaction (``lock``: for update, on PostgreSQL)."""
    query = select(trades).where(trades.c.id == trade_id if trade_id is not None else trades.c.trade_key == trade_key)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _trade(row) if row is not None else None


# ============================================================================ opening


def open_trade_in(connection: Connection, trade: NewTrade, *, at: datetime) -> Trade:
    """Open ``trade`` inside the caller's transaction; the existing one if its key is known."""
    require_aware(at)
    values: dict[str, Any] = {field.name: getattr(trade, field.name) for field in fields(NewTrade)}
    for name in ("strike", "entry_price", "entry_commission", "original_strike"):
        values[name] = _money(values[name])
    values.update(open_contracts=trade.contracts, status="open", created_at=at, updated_at=at)
    insert_or_ignore(connection, trades, values, ["trade_key"])
    return read_trade(connection, trade_key=trade.trade_key)


def open_trade(engine: Engine, trade: NewTrade, *, at: datetime) -> Trade:
    """Open ``trade`` (one transaction); the existing one if its key is known."""
    with write_transaction(engine) as connection:
        return open_trade_in(connection, trade, at=at)


def open_or_update_trade(connection: Connection, trade: NewTrade, *, at: datetime) -> Trade:
    """Open the trade, or set an open one's size, price and commission to ``trade``'s.

    For entries that fill in parts: the caller passes the entry intent's filled quantity and
    average price so far, so applying the same fills again changes nothing. Contracts already
    closed stay closed (open contracts grow by the difference only).
    """
    existing = read_trade(connection, trade_key=trade.trade_key, lock=True)
    if existing is None:
        return open_trade_in(connection, trade, at=at)
    if (existing.contracts == trade.contracts and existing.entry_price == trade.entry_price
            and existing.entry_commission == trade.entry_commission):
        return existing
    if not existing.is_open:
        raise LedgerStateError(f"trade {existing.id} ({existing.describe()}) is closed: its entry cannot change")
    if trade.contracts < existing.contracts - existing.open_contracts:
        raise LedgerStateError(
            f"trade {existing.id}: {trade.contracts} contract(s) is fewer than the "
            f"{existing.contracts - existing.open_contracts} already closed"
        )
    connection.execute(
        update(trades).where(trades.c.id == existing.id).values(
            contracts=trade.contracts,
            open_contracts=existing.open_contracts + trade.contracts - existing.contracts,
            entry_price=_money(trade.entry_price),
            entry_commission=_money(trade.entry_commission),
            updated_at=at,
        )
    )
    return read_trade(connection, trade_id=existing.id)


# ============================================================================ closing


def mark_exit_pending(engine: Engine, trade_id: int, *, intent_id: int, reason: str, at: datetime) -> Trade:
    """Link an exit order in flight to its trade, with the rule that sent it."""
    _check_reason(reason)
    with write_transaction(engine) as connection:
        trade = _open_trade(connection, trade_id)
        connection.execute(
            update(trades).where(trades.c.id == trade.id).values(exit_intent_id=intent_id, exit_reason=reason,
                                                                 updated_at=require_aware(at))
        )
        return read_trade(connection, trade_id=trade.id)


def close_trade_in(connection: Connection, trade_id: int, *, exit_price: float, exit_reason: str,
                   exit_time: datetime, exit_commission: float | None = None, exit_intent_id: int | None = None,
                   contracts: int | None = None, at: datetime) -> Trade:
    """Close ``contracts`` (default: all still open) of the trade at ``exit_price``, inside the
    caller's transaction. P&L accumulates over partial closes; the exit price is their
    average; the status becomes closed when nothing is left open."""
    _check_reason(exit_reason)
    require_aware(exit_time, "exit_time")
    require_aware(at)
    if exit_price < 0:
        raise ValueError(f"exit_price must not be negative, not {exit_price!r}")
    trade = _open_trade(connection, trade_id)
    closing = trade.open_contracts if contracts is None else contracts
    if isinstance(closing, bool) or not isinstance(closing, int) or not 0 < closing <= trade.open_contracts:
        raise LedgerStateError(
            f"trade {trade.id} ({trade.describe()}): cannot close {closing!r} contract(s) of "
            f"{trade.open_contracts} open"
        )
    closed_before = trade.contracts - trade.open_contracts
    gross = (trade.gross_pnl or 0.0) + position_pnl(trade.side, trade.entry_price, exit_price, closing,
                                                    trade.multiplier)
    average_exit = ((trade.exit_price or 0.0) * closed_before + exit_price * closing) / (closed_before + closing)
    commission = None
    if trade.exit_commission is not None or exit_commission is not None:
        commission = (trade.exit_commission or 0.0) + (exit_commission or 0.0)
    open_left = trade.open_contracts - closing
    # Entry commission counts once the whole trade is closed, in proportion before that.
    entry_cost = (trade.entry_commission or 0.0) * (trade.contracts - open_left) / trade.contracts
    net = gross - entry_cost - (commission or 0.0)
    connection.execute(
        update(trades).where(trades.c.id == trade.id).values(
            open_contracts=open_left,
            status="closed" if open_left == 0 else "open",
            exit_price=_money(average_exit),
            exit_time=exit_time,
            exit_reason=exit_reason,
            exit_commission=_money(commission),
            exit_intent_id=exit_intent_id if exit_intent_id is not None else trade.exit_intent_id,
            gross_pnl=_money(gross),
            net_pnl=_money(net),
            updated_at=at,
        )
    )
    return read_trade(connection, trade_id=trade.id)


def close_trade(engine: Engine, trade_id: int, *, exit_price: float, exit_reason: str, exit_time: datetime,
                exit_commission: float | None = None, exit_intent_id: int | None = None,
                contracts: int | None = None, at: datetime) -> Trade:
    """:func:`close_trade_in` in a transaction of its own."""
    with write_transaction(engine) as connection:
        return close_trade_in(connection, trade_id, exit_price=exit_price, exit_reason=exit_reason,
                              exit_time=exit_time, exit_commission=exit_commission,
                              exit_intent_id=exit_intent_id, contracts=contracts, at=at)


def add_exit_commission(connection: Connection, trade_id: int, amount: float, *, at: datetime) -> Trade:
    """Add a commission that arrived after the exit fill (IBKR reports commissions apart from
    executions): the exit commission grows and the net P&L shrinks by ``amount``."""
    trade = read_trade(connection, trade_id=trade_id, lock=True)
    if trade is None:
        raise LedgerStateError(f"no trade {trade_id} in the ledger")
    connection.execute(
        update(trades).where(trades.c.id == trade.id).values(
            exit_commission=_money((trade.exit_commission or 0.0) + amount),
            net_pnl=_money(trade.net_pnl - amount) if trade.net_pnl is not None else None,
            updated_at=require_aware(at),
        )
    )
    return read_trade(connection, trade_id=trade.id)


def _check_reason(reason: str) -> None:
    if reason not in EXIT_REASONS:
        raise ValueError(f"exit reason must be one of {', '.join(EXIT_REASONS)}, not {reason!r}")


def _open_trade(connection: Connection, trade_id: int) -> Trade:
    trade = read_trade(connection, trade_id=trade_id, lock=True)
    if trade is None:
        raise LedgerStateError(f"no trade {trade_id} in the ledger")
    if not trade.is_open:
        raise LedgerStateError(f"trade {trade.id} ({trade.describe()}) is already closed ({trade.exit_reason})")
    return trade


# ============================================================================ reading


def get_trade(engine: Engine, trade_id: int | None = None, *, trade_key: str | None = None) -> Trade | None:
    if (trade_id is None) == (trade_key is None):
        raise ValueError("give a trade id or a trade key")
    with engine.connect() as connection:
        return read_trade(connection, trade_id=trade_id, trade_key=trade_key)


def list_trades(engine: Engine, *, status: str | None = None, account: str | None = None,
                symbol: str | None = None, source: str | None = None) -> list[Trade]:
    """Trades oldest entry first, filtered by what is given."""
    query = select(trades).order_by(trades.c.entry_time, trades.c.id)
    if status is not None:
        query = query.where(trades.c.status == status)
    if account is not None:
        query = query.where(trades.c.account == account)
    if symbol is not None:
        query = query.where(trades.c.symbol == symbol.strip().upper())
    if source is not None:
        query = query.where(trades.c.trade_source == source)
    with engine.connect() as connection:
        return [_trade(row) for row in connection.execute(query)]


def open_trades(engine: Engine, *, account: str | None = None) -> list[Trade]:
    return list_trades(engine, status="open", account=account)


# ============================================================================ stock


def record_stock_position(connection: Connection, *, source_trade_id: int | None, account: str | None,
                          symbol: str, quantity: int, cost_price: float, at: datetime) -> int:
    """Record shares delivered by an assignment (or bought by an exercise); once per trade."""
    if quantity == 0:
        raise ValueError("a stock position needs a quantity")
    values = dict(source_trade_id=source_trade_id, account=account, symbol=symbol.strip().upper(),
                  quantity=quantity, cost_price=to_money(cost_price), opened_at=require_aware(at), status="open")
    if source_trade_id is None:
        return connection.execute(insert(stock_positions).values(**values).returning(stock_positions.c.id)).scalar_one()
    inserted = insert_or_ignore(connection, stock_positions, values, ["source_trade_id"])
    if inserted is not None:
        return inserted
    return connection.execute(
        select(stock_positions.c.id).where(stock_positions.c.source_trade_id == source_trade_id)
    ).scalar_one()


def list_stock_positions(engine: Engine, *, status: str | None = "open") -> list[dict]:
    query = select(stock_positions).order_by(stock_positions.c.opened_at, stock_positions.c.id)
    if status is not None:
        query = query.where(stock_positions.c.status == status)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        row["cost_price"] = float(row["cost_price"])
    return rows
