"""Promotion of closed lifecycles into the ledger's trades (``trade_source`` "ibkr_import").

:func:`promote_lifecycles` turns each closed lifecycle (trading_pipeline.ledger.history's
``trade_lifecycles``) into one closed trade with ``trade_key`` "lifecycle:<lifecycle_id>",
through trading_pipeline.ledger.trades (``open_trade_in`` then ``close_trade_in``), in one
transaction. Idempotent: a lifecycle already linked to a trade, or whose trade key exists
(linked again then), is counted as already promoted and left alone.

What a trade gets from its lifecycle:

* account, underlying (as ``symbol``), right, strike, expiry, side, contracts (the
  lifecycle's quantity), multiplier, currency; ``con_id`` of the first opening execution.
* ``entry_price`` / ``exit_price``: the lifecycle's open and close prices (averages over its
  fills, per share); ``entry_time`` / ``exit_time``: its first opening and last closing
  execution (UTC).
* ``exit_reason``: the exit type (btc, stc, expiration, assignment, exercise).
* Commissions split into entry and exit: the opening executions' commission per contract
  times the lifecycle's contracts is the entry commission, the rest of the lifecycle's
  commissions the exit commission. The total is always the lifecycle's; the split is exact
  when the opening's fills all belong to this lifecycle or charge the same per contract
  (otherwise the per-contract average of its fills). A cancelled booking's commission,
  which the matcher adds to the execution that rebooked it, counts on the exit side.
* ``gross_pnl`` / ``net_pnl``: the lifecycle's. The matcher is the one place for imported P&L:
  close_trade_in computes P&L from the prices as stored (six places), which can differ
  from the lifecycle's by rounding when the prices are averages, so the lifecycle's figures
  are written over it (same transaction).
* An assignment or exercise whose stock leg is among the stored executions (a stock
  BookTrade of the underlying that day) also records the stock position: contracts x
  multiplier shares at the strike, bought for a short put or a long call, sold otherwise.
  Cash-settled options have no stock leg and get none.

Not copied (counted as ``own_trades``): a lifecycle the pipeline traded itself, whose opening
executions are fills of its own entry orders. That trade is already in the ledger (opened by
its fills, closed by its exit or by reconciliation): the lifecycle is linked to it instead,
so a trade is never counted twice.

Not promoted (counted as ``waiting``): a closed lifecycle whose opening still has contracts
open (a partial close): a later closing of the rest would change the lifecycle (its
quantity and P&L), so it is promoted once its opening is wholly closed. Lifecycles that
cannot be promoted (an odd multiplier, no currency, no times) are listed in ``errors`` with
the reason; the others are promoted anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select, update

from trading_pipeline.core.positions import delivered_shares
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.history import IMPORTED_SOURCE, load_executions, lock_history
from trading_pipeline.ledger.schema import fills, order_intents, to_money, trade_lifecycles, trades
from trading_pipeline.ledger.trades import NewTrade, close_trade_in, open_trade_in, record_stock_position

TRADE_KEY_PREFIX = "lifecycle:"
_STOCK_EVENTS = ("assignment", "exercise")


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion found and did (or, in a dry run, would do)."""

    dry_run: bool
    account: str | None
    candidates: int  # closed lifecycles considered
    promoted: int
    already_promoted: int
    waiting: int  # closed, but their opening still has contracts open
    errors: tuple[tuple[str, str], ...]  # (lifecycle_id, reason)
    lifecycle_ids: tuple[str, ...]  # the lifecycles promoted (dry run: that would be)
    stock_positions: int  # stock positions recorded for assignments and exercises
    own_trades: int = 0  # opened by the pipeline's own orders: linked to that trade, not copied

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["errors"] = [[lifecycle_id, reason] for lifecycle_id, reason in self.errors]
        result["lifecycle_ids"] = list(self.lifecycle_ids)
        return result


def promote_lifecycles(engine: Engine, *, account: str | None = None, dry_run: bool = False,
                       at: datetime) -> PromotionResult:
    """Promote the closed lifecycles (of ``account``, or all) not promoted yet; see the module."""
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime (from the run's Clock)")
    opened = engine.connect() if dry_run else write_transaction(engine)
    with opened as connection:
        if not dry_run:
            lock_history(connection)
        return _promote(connection, account, dry_run=dry_run, at=at)


def _promote(connection: Connection, account: str | None, *, dry_run: bool, at: datetime) -> PromotionResult:
    query = select(trade_lifecycles).order_by(trade_lifecycles.c.open_date, trade_lifecycles.c.id)
    if account is not None:
        query = query.where(trade_lifecycles.c.account == account)
    lifecycles = [dict(row) for row in connection.execute(query).mappings()]
    open_units = {_unit(row) for row in lifecycles if row["exit_type"] == "open"}
    closed = [row for row in lifecycles if row["exit_type"] != "open"]

    already, waiting, todo = 0, 0, []
    for row in closed:
        if row["promoted_trade_id"] is not None:
            already += 1
        elif _unit(row) in open_units:
            waiting += 1
        else:
            todo.append(row)

    # A trade with the lifecycle's key exists (promoted before a rebuild lost the link?): link it.
    keys = [TRADE_KEY_PREFIX + row["lifecycle_id"] for row in todo]
    existing: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        found = connection.execute(select(trades.c.trade_key, trades.c.id).where(trades.c.trade_key.in_(keys[start:start + 500])))
        existing.update({key: trade_id for key, trade_id in found})

    # A lifecycle the pipeline itself traded is already a trade (opened by its entry fills): it
    # is linked to that trade, never promoted a second time (the learning data would count it
    # twice). Its opening executions are fills of an intent whose root is the trade's entry.
    own = _own_trades(connection, todo)
    if own:
        for row in todo:
            if row["lifecycle_id"] in own and not dry_run:
                _link(connection, row["lifecycle_id"], own[row["lifecycle_id"]])
        todo = [row for row in todo if row["lifecycle_id"] not in own]

    facts = _ExecutionFacts(connection, sorted({row["account"] for row in todo})) if todo else None
    promoted_ids: list[str] = []
    errors: list[tuple[str, str]] = []
    stock_positions = 0
    for row in todo:
        key = TRADE_KEY_PREFIX + row["lifecycle_id"]
        if key in existing:
            already += 1
            if not dry_run:
                _link(connection, row["lifecycle_id"], existing[key])
            continue
        assert facts is not None
        terms, problem = _terms(row, facts)
        if problem is not None:
            errors.append((row["lifecycle_id"], problem))
            continue
        promoted_ids.append(row["lifecycle_id"])
        if dry_run:
            continue
        trade_id = _write_trade(connection, row, terms, at)
        if row["exit_type"] in _STOCK_EVENTS and facts.has_stock_leg(row):
            shares = delivered_shares(row["side"], row["right"], int(row["quantity"]), int(terms["multiplier"]))
            record_stock_position(connection, source_trade_id=trade_id, account=row["account"],
                                  symbol=row["underlying"], quantity=shares,
                                  cost_price=row["strike"], at=terms["exit_time"])
            stock_positions += 1
    return PromotionResult(
        dry_run=dry_run,
        account=account,
        candidates=len(closed),
        promoted=len(promoted_ids),
        already_promoted=already,
        waiting=waiting,
        errors=tuple(errors),
        lifecycle_ids=tuple(promoted_ids),
        stock_positions=stock_positions,
        own_trades=len(own),
    )


def _unit(row: dict[str, Any]) -> tuple:
    """The opening a lifecycle is (a part of): contract, side and opening order."""
    return (row["account"], row["underlying"], row["right"], row["strike"], row["expiry"], row["side"],
            row["opening_unit"] if row["opening_unit"] is not None else row["lifecycle_id"])


class _ExecutionFacts:
    """What the lifecycle rows do not carry, from the stored executions of their accounts:
    times, conIds and commissions by execution id, and the stock legs of assignments."""

    def __init__(self, connection: Connection, accounts: Sequence[str]):
        # One read of the stored chunks for both: option fills and assignment stock legs.
        executions = load_executions(connection, accounts, columns=(
            "account", "exec_id", "is_cancellation", "date_time_utc", "con_id", "commission", "quantity", "put_call",
            "symbol", "trade_date", "asset_category", "event"))
        options = executions.filter(pl.col("put_call").is_not_null())
        self.by_exec_id = {
            exec_id: (moment, con_id, commission, quantity)
            for exec_id, moment, con_id, commission, quantity in options.filter(~pl.col("is_cancellation")).select(
                "exec_id", "date_time_utc", "con_id", "commission", "quantity"
            ).iter_rows()
        }
        legs = executions.filter(
            (pl.col("asset_category") == "STK") & pl.col("event").is_in(list(_STOCK_EVENTS))
            & ~pl.col("is_cancellation")
        ).select("account", "symbol", "trade_date").iter_rows()
        self.stock_legs = {(account, (symbol or "").strip().upper(), day) for account, symbol, day in legs}

    def has_stock_leg(self, row: dict[str, Any]) -> bool:
        return (row["account"], row["underlying"].strip().upper(), row["close_date"]) in self.stock_legs


def _terms(row: dict[str, Any], facts: _ExecutionFacts) -> tuple[dict[str, Any], str | None]:
    """The trade's terms from a lifecycle, or the reason it cannot be promoted."""
    opening = [facts.by_exec_id.get(exec_id) for exec_id in row["open_exec_ids"]]
    closing = [facts.by_exec_id.get(exec_id) for exec_id in row["close_exec_ids"]]
    if not opening or any(fact is None for fact in opening + closing):
        return {}, "an execution of the lifecycle is not stored (rebuild the lifecycles)"
    multiplier = row["multiplier"]
    if multiplier is None or not float(multiplier).is_integer() or multiplier <= 0:
        return {}, f"multiplier {multiplier!r} is not a whole number of shares"
    if not row["currency"] or len(row["currency"]) > 3:
        return {}, f"currency {row['currency']!r} is not a 3-letter code"
    if row["open_price"] is None or row["close_price"] is None or row["open_price"] < 0 or row["close_price"] < 0:
        return {}, "no opening or closing price"
    entry_times = [fact[0] for fact in opening if fact[0] is not None]
    exit_times = [fact[0] for fact in closing if fact[0] is not None]
    if not entry_times or not exit_times:
        return {}, "no opening or closing time"
    # Commission per contract of the opening's fills, IBKR's negative (paid) made a cost.
    contracts = sum(abs(fact[3] or 0.0) for fact in opening)
    paid = sum(-(fact[2] or 0.0) for fact in opening)
    total = row["commissions"] or 0.0
    entry_commission = paid / contracts * row["quantity"] if contracts else 0.0
    if not all(math.isfinite(value) for value in (entry_commission, total)):
        return {}, "commissions are not numbers"
    return {
        "multiplier": int(multiplier),
        "con_id": opening[0][1],
        "entry_time": min(entry_times),
        "exit_time": max(exit_times),
        "entry_commission": round(entry_commission, 6),
        "exit_commission": round(total - round(entry_commission, 6), 6),
    }, None


def _write_trade(connection: Connection, row: dict[str, Any], terms: dict[str, Any], at: datetime) -> int:
    trade = open_trade_in(
        connection,
        NewTrade(
            trade_key=TRADE_KEY_PREFIX + row["lifecycle_id"],
            trade_source=IMPORTED_SOURCE,
            symbol=row["underlying"],
            right=row["right"],
            strike=row["strike"],
            expiration=row["expiry"],
            side=row["side"],
            contracts=int(row["quantity"]),
            entry_price=row["open_price"],
            entry_time=terms["entry_time"],
            account=row["account"],
            con_id=terms["con_id"],
            multiplier=terms["multiplier"],
            currency=row["currency"],
            entry_commission=terms["entry_commission"],
        ),
        at=at,
    )
    if trade.is_open:
        close_trade_in(connection, trade.id, exit_price=row["close_price"], exit_reason=row["exit_type"],
                       exit_time=terms["exit_time"], exit_commission=terms["exit_commission"], at=at)
    # The lifecycle's P&L, not one recomputed from rounded average prices (see the module).
    connection.execute(
        update(trades).where(trades.c.id == trade.id).values(
            gross_pnl=to_money(row["gross_pnl"]), net_pnl=to_money(row["net_pnl"]), lifecycle_id=row["lifecycle_id"]
        )
    )
    _link(connection, row["lifecycle_id"], trade.id)
    return trade.id


def _own_trades(connection: Connection, lifecycles: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Lifecycle id -> the pipeline's own trade it is, for lifecycles opened by our orders."""
    opening = {row["lifecycle_id"]: list(row["open_exec_ids"] or []) for row in lifecycles}
    wanted = sorted({exec_id for ids in opening.values() for exec_id in ids})
    intent_of: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        found = connection.execute(select(fills.c.exec_id, fills.c.intent_id).where(
            fills.c.exec_id.in_(wanted[start:start + 500]), fills.c.intent_id.is_not(None)))
        intent_of.update({exec_id: intent_id for exec_id, intent_id in found})
    if not intent_of:
        return {}
    parents = dict(connection.execute(select(order_intents.c.id, order_intents.c.parent_intent_id)).all())

    def root(intent_id: int) -> int:
        seen = set()
        while parents.get(intent_id) is not None and intent_id not in seen:
            seen.add(intent_id)
            intent_id = parents[intent_id]
        return intent_id

    trade_of_entry = dict(connection.execute(
        select(trades.c.entry_intent_id, trades.c.id).where(trades.c.entry_intent_id.is_not(None))).all())
    own: dict[str, int] = {}
    for lifecycle_id, exec_ids in opening.items():
        for exec_id in exec_ids:
            trade_id = trade_of_entry.get(root(intent_of[exec_id])) if exec_id in intent_of else None
            if trade_id is not None:
                own[lifecycle_id] = trade_id
                break
    return own


def _link(connection: Connection, lifecycle_id: str, trade_id: int) -> None:
    connection.execute(
        update(trade_lifecycles).where(trade_lifecycles.c.lifecycle_id == lifecycle_id)
        .values(promoted_trade_id=trade_id)
    )


__all__ = ["PromotionResult", "TRADE_KEY_PREFIX", "promote_lifecycles"]
