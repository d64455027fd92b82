"""Reconciliation of the ledger with the broker: positions, orders, and the start of every job.

Three services, the imperative shell around the pure comparisons of
``core.reconciliation``; every run leaves a ``reconciliation_runs`` row (dry run or not).

:func:`reconcile_positions` (``tp reconcile-positions``): the ledger's open trades against the
broker's option positions (``core.reconciliation.compare_positions``), and what to do about
each difference. A dry run (``apply=False``) changes nothing and says what it would do;
``apply=True`` does it, in one transaction (each action in a savepoint: one that finds the
ledger changed meanwhile is skipped and reported, the others apply):

* **only at the broker** -> imported as a trade: source ``reconciliation``, key
  ``broker:<account>:<conId>:<yyyy-mm-dd>`` (the New York day it was first seen: importing
  again that day finds it), entry price the broker's average cost per share (IBKR's avgCost
  divided by the multiplier; commissions included, as IBKR counts them), entry time now (the
  broker does not say when it was opened);
* **only in the ledger** -> closed with its P&L, priced by the best evidence: (1) for an
  expiration that has settled, what ``trading.expirations`` decides (expired at 0, assigned /
  exercised with the stock recorded); (2) else the broker's closing executions of that
  contract since the trade's entry (their average price, reason ``btc`` for a short, ``stc``
  for a long: a closing order placed outside the pipeline); (3) else the current mark (mid,
  else last, else the prior close) with reason ``reconciliation``, and the report says the
  P&L is an estimate at the mark. With no price at all it is left open for a person: a P&L
  is never invented. Executions the ledger already holds under one of our intents are never
  used (the fill hook applied them to their own trades); run ``sync-orders`` first (the job
  start does) so fills of our own exits close their trades with their own reasons;
* **quantity mismatch** (decided here): the ledger's entries are never rewritten (their
  prices are facts). The broker holding *more* of the same side -> the extra contracts are
  imported as their own reconciliation trade at the broker's average cost (IBKR reports one
  average for the whole position: an approximation the report names). The broker holding
  *fewer* -> the difference is closed on the ledger's trades, oldest first, priced as for a
  trade only in the ledger. The broker holding the *other side*, and a ledger trade that
  cannot be told apart between accounts (``ambiguous``) -> reported for a person only;
* trades of another account than the connection's are not compared (their positions are not
  visible here) and are listed as such.

:func:`sync_orders` (``tp sync-orders``): the broker's orders, statuses, fills and
commissions into the ledger. The broker side: its open orders (all client ids) and its
executions of the day (``day``, New York; with ``include_filled`` from that day on, or with no
day every execution the broker still lists; the port exposes no completed-orders list, so
filled orders are known through their executions). An order known only through executions
is ``Filled``, or ``Cancelled`` when the ledger knows it was for more than was filled. The
broker's book entries (expirations, assignments: no order behind them) are not orders and
are left to ``trading.expirations``. ``core.reconciliation.compare_orders`` decides: orders
new at the broker are added to ``broker_orders`` (through ``ledger.orders.record_status`` when
the order ref names one of our intents, so its status moves too), orders that moved on are
brought forward (never backwards), and conflicts are reported and **never overwritten**:
the ledger says Filled and the broker Cancelled, the fill quantities differ, the commission
differs. Commissions are compared per fill (where the ledger keeps them; a fill not recorded
yet is simply new, not a conflict). Fills: every execution new to the ledger is recorded
through ``ledger.orders.record_fill`` (the one path; its hook opens and closes trades), and a
commission the ledger lacks is filled in; a fill whose quantity, price or commission differs
from the broker's is a conflict and left as it is, and so is the rest of its order. New
executions are recorded even for an order in conflict (an execution is a fact reported once).
Each write is idempotent (exec ids, perm ids), so an interrupted sync is completed by the
next one.

:func:`reconcile_at_job_start`: what every job that trades does first (the execution jobs,
the monitoring pass, the emergency liquidation): (1) sync today's orders (applied: it only
records what the broker reports, so a fill of our own exit closes its trade with its own
reason before anything else looks); (2) process expirations (applied: settled facts);
(3) reconcile positions in **report mode** (``apply=False``): a discrepancy is logged and
returned, and the job goes on. Why not apply at every job start: importing or closing
trades changes P&L history on the strength of one look at the broker, which may be taken
mid-flight (a fill being reported, positions not loaded yet after a reconnect); a person
confirms with ``tp reconcile-positions --live``. Going on is safe: the risk governor reads
the broker's own positions and margin for every order, not the ledger's trades. Each step
is guarded: any failure in one (a broker or ledger error, even a bug) is logged with its
traceback and reported in the summary's ``errors``, and the next step runs; bookkeeping must
never stop a job that reduces risk, and a job whose broker is down fails at its own next
call anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time as wall_time, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from trading_pipeline.broker.port import BrokerPort, Contract, ContractError, ContractSpec, FillReport, Position, SecType
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.positions import signed_quantity
from trading_pipeline.core.reconciliation import (
    BrokerOrderRecord,
    BrokerPosition,
    LedgerOrder,
    LedgerPosition,
    OrderReconciliation,
    PositionReconciliation,
    compare_orders,
    compare_positions,
)
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger import orders as ledger_orders
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.reconciliation import (
    broker_order_rows,
    fills_by_exec_id,
    filled_by_perm_id,
    intent_ids_by_ref,
    record_reconciliation_run,
    record_reconciliation_run_in,
)
from trading_pipeline.ledger.staging import LedgerStateError
from trading_pipeline.ledger.trades import NewTrade, Trade, close_trade_in, open_trade_in, open_trades
from trading_pipeline.trading.order_gateway import broker_execution
from trading_pipeline.trading.expirations import (
    CLOSED_BY_ORDER,
    CLOSING_OUTCOMES,
    ExpiryDecision,
    apply_expiry_in,
    broker_account,
    capture_exit_snapshot_safely,
    closing_side,
    decide_expiries,
    has_settled,
    is_book_entry,
    matches_contract,
    process_expirations,
)

log = logging.getLogger(__name__)

TRIGGER_COMMAND = "command"
TRIGGER_JOB_START = "job start"
# reconciliation_runs.trigger holds this many characters.
_TRIGGER_LENGTH = 32
# Commissions closer than this are the same (cents, as the broker rounds them).
_COMMISSION_TOLERANCE = 0.005
_PRICE_TOLERANCE = 1e-6

# What a position action does.
IMPORT, CLOSE, REVIEW = "import", "close", "review"


def _trigger(text: str) -> str:
    cleaned = " ".join((text or "").split()) or TRIGGER_COMMAND
    return cleaned[:_TRIGGER_LENGTH]


def _start_of_day(day: date) -> datetime:
    return datetime.combine(day, wall_time(0), tzinfo=calendar.NEW_YORK).astimezone(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _without_the_agreeing(comparison: dict, key: str) -> dict:
    """A comparison for the stored report: what agrees is counted, not listed (a monitoring
    pass every few minutes over hundreds of positions must not store them all each time)."""
    return {**comparison, key: len(comparison[key])}


# ============================================================================ positions: values


@dataclass(frozen=True)
class PositionAction:
    """One thing the position reconciliation does (or, in a dry run, would do).

    ``kind``: import (a broker position becomes a trade), close (some or all open contracts of
    a trade close at ``price`` with ``exit_reason``), review (for a person; nothing is done).
    ``price_source`` names the evidence for the price."""

    kind: str
    contract: str
    explanation: str
    trade_id: int | None = None
    contracts: int | None = None
    price: float | None = None
    exit_reason: str | None = None
    exit_time: datetime | None = None
    exit_commission: float | None = None
    price_source: str = ""
    new_trade: NewTrade | None = None
    expiry: ExpiryDecision | None = None
    applied: bool = False
    result: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "contract": self.contract, "trade_id": self.trade_id, "contracts": self.contracts,
            "price": self.price, "exit_reason": self.exit_reason, "exit_time": _iso(self.exit_time),
            "exit_commission": self.exit_commission, "price_source": self.price_source,
            "trade_key": self.new_trade.trade_key if self.new_trade else None,
            "stock_quantity": self.expiry.stock_quantity if self.expiry else 0,
            "explanation": self.explanation, "applied": self.applied, "result": self.result,
        }


@dataclass(frozen=True)
class PositionReconciliationReport:
    at: datetime
    dry_run: bool
    trigger: str
    account: str | None
    comparison: PositionReconciliation
    actions: tuple[PositionAction, ...]
    not_compared: tuple[str, ...] = ()
    stock_positions_at_broker: int = 0
    run_id: int | None = None

    @property
    def discrepancies(self) -> int:
        return self.comparison.discrepancies

    @property
    def applied(self) -> int:
        return sum(1 for action in self.actions if action.applied)

    @property
    def clean(self) -> bool:
        return self.comparison.clean

    def summary(self) -> str:
        mode = "dry run" if self.dry_run else "applied"
        done = (f"{self.applied} of {sum(1 for a in self.actions if a.kind != REVIEW)} change(s) applied"
                if not self.dry_run else f"{sum(1 for a in self.actions if a.kind != REVIEW)} change(s) proposed")
        reviews = sum(1 for a in self.actions if a.kind == REVIEW)
        return (f"positions ({mode}): {self.comparison.summary()}; {done}"
                + (f", {reviews} for review" if reviews else ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "positions", "at": self.at.isoformat(), "dry_run": self.dry_run, "trigger": self.trigger,
            "account": self.account, "summary": self.summary(), "discrepancies": self.discrepancies,
            "applied": self.applied, "comparison": _without_the_agreeing(self.comparison.as_dict(), "matched"),
            "actions": [action.as_dict() for action in self.actions], "not_compared": list(self.not_compared),
            "stock_positions_at_broker": self.stock_positions_at_broker, "run_id": self.run_id,
        }


# ============================================================================ positions: evidence


def _ledger_position(trade: Trade) -> LedgerPosition:
    return LedgerPosition(trade_id=trade.id, symbol=trade.symbol, right=trade.right, strike=float(trade.strike),
                          expiration=trade.expiration, quantity=signed_quantity(trade.side, trade.open_contracts),
                          account=trade.account, con_id=int(trade.con_id) if trade.con_id else None,
                          multiplier=trade.multiplier, entry_price=float(trade.entry_price))


def _broker_position(position: Position) -> BrokerPosition:
    contract = position.contract
    multiplier = contract.multiplier or 100
    return BrokerPosition(account=position.account, con_id=contract.con_id, symbol=contract.symbol,
                          right=contract.right, strike=float(contract.strike), expiration=contract.expiry,
                          quantity=position.quantity, multiplier=multiplier,
                          average_price=round(position.avg_cost / multiplier, 6))


def _contract_text(trade: Trade) -> str:
    """The trade's option as the comparison names contracts ("AAPL 2026-12-18 220 P")."""
    return f"{trade.symbol} {trade.expiration.isoformat()} {float(trade.strike):g} {trade.right}"


def _trade_contract(trade: Trade) -> Contract:
    """The trade's option as the broker port takes it (by conId when the ledger has it)."""
    return Contract(con_id=int(trade.con_id or 0), symbol=trade.symbol, sec_type=SecType.OPTION,
                    expiry=trade.expiration, strike=float(trade.strike), right=trade.right,
                    multiplier=trade.multiplier)


def _marks(broker: BrokerPort, trades: Sequence[Trade]) -> dict[int, tuple[float | None, str]]:
    """The current price of each trade's option (mid, else last, else close) and its source,
    in one quote request; (None, why) when the broker gives none."""
    contracts: dict[int, Contract] = {}
    marks: dict[int, tuple[float | None, str]] = {}
    for trade in trades:
        if trade.con_id:
            contracts[trade.id] = _trade_contract(trade)
            continue
        try:
            [contracts[trade.id]] = broker.qualify(
                ContractSpec.option(trade.symbol, trade.expiration, float(trade.strike), trade.right))
        except ContractError as problem:
            marks[trade.id] = (None, f"not quoted: {problem}")
    if contracts:
        ids = list(contracts)
        for trade_id, quote in zip(ids, broker.quotes([contracts[i] for i in ids])):
            for name, value in (("mid", quote.mid), ("last", quote.last), ("close", quote.close)):
                if value is not None and value >= 0:
                    marks[trade_id] = (round(value, 6), name)
                    break
            else:
                marks[trade_id] = (None, "the broker sent no bid/ask, last or close")
    return marks


@dataclass
class _Executions:
    """Closing executions of one contract at the broker, handed out oldest first."""

    reports: list[FillReport]
    left: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reports.sort(key=lambda report: (report.time, report.exec_id))
        self.left = {report.exec_id: report.quantity for report in self.reports}

    def take(self, contracts: int, *, after: datetime) -> tuple[int, float, float | None, datetime | None, list[str]]:
        """Up to ``contracts`` from executions at or after ``after``: (taken, average price,
        their share of the commissions (None when unknown), time of the last, exec ids)."""
        taken, notional, commission, last, ids = 0, 0.0, 0.0, None, []
        commission_known = True
        for report in self.reports:
            if taken >= contracts:
                break
            if report.time < after or self.left[report.exec_id] <= 0:
                continue
            quantity = int(min(self.left[report.exec_id], contracts - taken))
            if quantity <= 0:
                continue
            self.left[report.exec_id] -= quantity
            taken += quantity
            notional += quantity * report.price
            if report.commission is None:
                commission_known = False
            else:
                commission += report.commission * quantity / report.quantity
            last = report.time
            ids.append(report.exec_id)
        price = round(notional / taken, 6) if taken else 0.0
        return taken, price, round(commission, 6) if commission_known and taken else None, last, ids


def _closing_evidence(broker: BrokerPort, engine: Engine, trades: Sequence[Trade]) -> dict[int, _Executions]:
    """Per trade, the broker's closing executions of its contract that the ledger has not
    applied under one of our intents (one pool per contract, shared by its trades)."""
    if not trades:
        return {}
    since = min(trade.entry_time for trade in trades)
    reports = [r for r in broker.executions(since=since) if r.quantity > 0 and not is_book_entry(r)]
    recorded = fills_by_exec_id(engine, [r.exec_id for r in reports])
    usable = [r for r in reports if recorded.get(r.exec_id) is None or recorded[r.exec_id].intent_id is None]
    pools: dict[tuple, _Executions] = {}
    evidence: dict[int, _Executions] = {}
    for trade in trades:
        key = (trade.con_id or None, trade.symbol, trade.right, float(trade.strike), trade.expiration, trade.side)
        if key not in pools:
            pools[key] = _Executions([r for r in usable if matches_contract(trade, r.contract)
                                      and r.side == closing_side(trade)])
        evidence[trade.id] = pools[key]
    return evidence


def _close_actions(trade: Trade, contracts: int, executions: _Executions | None,
                   mark: tuple[float | None, str] | None, now: datetime, why: str) -> list[PositionAction]:
    """Close ``contracts`` of ``trade``: from closing executions first, the rest at the mark;
    a review action for what no price covers."""
    actions: list[PositionAction] = []
    left = contracts
    contract = _contract_text(trade)
    if executions is not None:
        taken, price, commission, last, ids = executions.take(left, after=trade.entry_time)
        if taken:
            reason = "btc" if trade.side == "short" else "stc"
            actions.append(PositionAction(
                CLOSE, contract, f"{why}; closed by execution(s) {', '.join(ids)} at the broker "
                                 f"(a closing order placed outside the pipeline)",
                trade_id=trade.id, contracts=taken, price=price, exit_reason=reason, exit_time=last,
                exit_commission=commission, price_source=f"execution {', '.join(ids)}"))
            left -= taken
    if left <= 0:
        return actions
    price, source = mark if mark is not None else (None, "not quoted")
    if price is None:
        actions.append(PositionAction(
            REVIEW, contract, f"{why}; no closing execution found and no price ({source}): left open, close it "
                              "by hand (a P&L is never invented)", trade_id=trade.id, contracts=left))
        return actions
    actions.append(PositionAction(
        CLOSE, contract, f"{why}; no closing execution found at the broker: closed at the current mark "
                         f"{price:g} ({source}); the P&L is an estimate at that mark, check the broker's statement",
        trade_id=trade.id, contracts=left, price=price, exit_reason="reconciliation", exit_time=now,
        price_source=f"mark ({source})"))
    return actions


def _import_action(position: BrokerPosition, contracts: int, side: str, day: date, now: datetime,
                   why: str) -> PositionAction:
    key = f"broker:{position.account}:{position.con_id}:{day.isoformat()}"
    new = NewTrade(trade_key=key, trade_source="reconciliation", symbol=position.symbol, right=position.right,
                   strike=position.strike, expiration=position.expiration, side=side, contracts=contracts,
                   entry_price=max(position.average_price or 0.0, 0.0), entry_time=now,
                   account=position.account or None, con_id=position.con_id, multiplier=position.multiplier)
    return PositionAction(IMPORT, position.describe(), f"{why}; imported as {key} at the broker's average cost "
                                                       f"{new.entry_price:g} per share",
                          contracts=contracts, price=new.entry_price, price_source="broker average cost",
                          new_trade=new)


# ============================================================================ positions: the service


def plan_positions(engine: Engine, broker: BrokerPort, *, now: datetime, account: str | None = None
                   ) -> tuple[PositionReconciliation, list[PositionAction], list[str], int, dict[int, Trade]]:
    """Compare and decide (no writes): the comparison, the actions, the trades not compared,
    the count of non-option positions at the broker, and the open trades by id."""
    account = account or broker_account(broker) or None
    trades = open_trades(engine)
    compared, not_compared = [], []
    for t in trades:
        if account is None or t.account in (None, account):
            compared.append(t)
        else:
            not_compared.append(f"trade {t.id} {t.describe()}: account {t.account} is not this connection's "
                                f"({account})")
    held = [p for p in broker.positions() if p.quantity and (account is None or p.account == account)]
    options = [p for p in held if p.contract.is_option and p.contract.expiry and p.contract.strike]
    stock_count = len(held) - len(options)
    broker_side = []
    for position in options:
        try:
            broker_side.append(_broker_position(position))
        except ValueError as problem:  # e.g. a fraction of a contract: not comparable, said so
            not_compared.append(f"broker position {position.contract.describe()}: {problem}")
    by_id = {trade.id: trade for trade in compared}
    comparison = compare_positions([_ledger_position(t) for t in compared], broker_side)
    day = calendar.new_york_date(now)

    # Trades to close, whole or in part: (trade, contracts, why), oldest entry first.
    to_close: list[tuple[Trade, int, str]] = []
    actions: list[PositionAction] = []
    for item in comparison.only_in_ledger:
        trade = by_id[item.ledger.trade_id]
        to_close.append((trade, trade.open_contracts, item.explanation))
    for item in comparison.ambiguous:
        actions.append(PositionAction(REVIEW, item.ledger.describe(), item.explanation,
                                      trade_id=item.ledger.trade_id))
    for item in comparison.only_at_broker:
        position = item.broker
        actions.append(_import_action(position, abs(position.quantity), "short" if position.quantity < 0 else "long",
                                      day, now, item.explanation))
    for item in comparison.quantity_mismatches:
        ledger_qty, broker_qty = item.ledger_quantity, item.broker_quantity
        if (ledger_qty < 0) != (broker_qty < 0):
            actions.append(PositionAction(REVIEW, item.broker.describe(), f"{item.explanation}: review it by hand "
                                                                          "(nothing is changed)"))
        elif abs(broker_qty) > abs(ledger_qty):
            actions.append(_import_action(item.broker, abs(item.difference), "short" if broker_qty < 0 else "long",
                                          day, now, f"{item.explanation}; the extra contracts (IBKR reports one "
                                                    "average cost for the whole position: an approximation)"))
        else:
            surplus = abs(ledger_qty) - abs(broker_qty)
            for row in sorted(item.ledger, key=lambda r: (by_id[r.trade_id].entry_time, r.trade_id)):
                if surplus <= 0:
                    break
                trade = by_id[row.trade_id]
                closing = min(surplus, trade.open_contracts)
                to_close.append((trade, closing, f"{item.explanation}: {closing} of trade {trade.id} closed"))
                surplus -= closing

    to_close.sort(key=lambda entry: (entry[0].entry_time, entry[0].id))
    settled = [trade for trade, contracts, _ in to_close
               if has_settled(trade.expiration, now) and contracts == trade.open_contracts]
    expiries = {decision.trade_id: decision for decision in decide_expiries(broker, settled)}
    # Settled trades close by the expiry's evidence, or by a closing order's execution; a
    # settled option is never valued at a mark (an expired option's last quote means nothing).
    by_execution = [(t, n, why) for t, n, why in to_close
                    if t.id not in expiries or expiries[t.id].outcome == CLOSED_BY_ORDER]
    executions = _closing_evidence(broker, engine, [t for t, _, _ in by_execution])
    # Marks only for what executions leave uncovered (one quote request for all of them): a
    # look ahead on copies of the pools (trades of one contract share one), in closing order.
    copies: dict[int, _Executions] = {}
    need_mark = []
    for trade, contracts, _ in by_execution:
        pool = executions[trade.id]
        probe = copies.setdefault(id(pool), replace_pool(pool))
        if probe.take(contracts, after=trade.entry_time)[0] < contracts and trade.id not in expiries:
            need_mark.append(trade)
    marks = _marks(broker, need_mark) if need_mark else {}
    for trade, contracts, why in to_close:
        decision = expiries.get(trade.id)
        if decision is not None and decision.closes:
            actions.append(PositionAction(
                CLOSE, _contract_text(trade), f"{why}; {decision.message}", trade_id=trade.id, contracts=contracts,
                price=decision.exit_price, exit_reason=decision.outcome, exit_time=decision.exit_time,
                exit_commission=decision.exit_commission, price_source=decision.evidence, expiry=decision))
        elif decision is not None and decision.outcome != CLOSED_BY_ORDER:
            actions.append(PositionAction(REVIEW, _contract_text(trade), f"{why}; at expiry: {decision.message}",
                                          trade_id=trade.id, contracts=contracts))
        else:
            note = f"; at expiry: {decision.message}" if decision is not None else ""
            mark = marks.get(trade.id) if decision is None else (None, "an expired option has no mark")
            actions.extend(_close_actions(trade, contracts, executions.get(trade.id), mark, now, why + note))
    return comparison, actions, not_compared, stock_count, by_id


def replace_pool(pool: _Executions) -> _Executions:
    """A copy of a pool with its own counters (to look ahead without using it up)."""
    copy = _Executions(list(pool.reports))
    copy.left = dict(pool.left)
    return copy


def _apply_position_action(connection, action: PositionAction, trades: dict[int, Trade], *, account: str | None,
                           at: datetime) -> tuple[PositionAction, Trade | None]:
    """One action inside the caller's transaction (in a savepoint: a refusal undoes only it)."""
    try:
        with connection.begin_nested():
            if action.kind == IMPORT:
                opened = open_trade_in(connection, action.new_trade, at=at)
                if opened.created_at != at:
                    return replace(action, result=f"already imported as trade {opened.id} ({opened.status})"), None
                return replace(action, applied=True, trade_id=opened.id, result=f"imported as trade {opened.id}"), None
            trade = trades[action.trade_id]
            if action.expiry is not None:
                closed, stock_id = apply_expiry_in(connection, trade, action.expiry, account=account, at=at)
                stock = f", stock position {stock_id}" if stock_id else ""
            else:
                closed = close_trade_in(connection, trade.id, exit_price=action.price, exit_reason=action.exit_reason,
                                        exit_time=action.exit_time, exit_commission=action.exit_commission,
                                        contracts=action.contracts, at=at)
                stock = ""
            trades[trade.id] = closed
            pnl = f"net P&L {closed.net_pnl:,.2f}" if closed.net_pnl is not None else "P&L unknown"
            return (replace(action, applied=True, result=f"closed {action.contracts} ({closed.status}, {pnl}{stock})"),
                    closed if not closed.is_open else None)
    except (LedgerStateError, ValueError) as problem:
        return replace(action, result=f"not applied: {problem}"), None


def reconcile_positions(engine: Engine, broker: BrokerPort, *, clock: Clock, apply: bool, trigger: str,
                        account: str | None = None, dagster_run_id: str | None = None
                        ) -> PositionReconciliationReport:
    """Compare the ledger's open trades with the broker's positions and (``apply``) fix the
    ledger; see the module text. Writes a reconciliation_runs row either way."""
    now = clock.now()
    account = account or broker_account(broker) or None
    comparison, actions, not_compared, stock_count, trades = plan_positions(engine, broker, now=now, account=account)
    report = PositionReconciliationReport(at=now, dry_run=not apply, trigger=_trigger(trigger), account=account,
                                          comparison=comparison, actions=tuple(actions),
                                          not_compared=tuple(not_compared), stock_positions_at_broker=stock_count)
    closed: list[Trade] = []
    if apply:
        with write_transaction(engine) as connection:
            done = []
            for action in actions:
                if action.kind == REVIEW:
                    done.append(action)
                    continue
                result, fully_closed = _apply_position_action(connection, action, trades, account=account, at=now)
                done.append(result)
                if fully_closed is not None:
                    closed.append(fully_closed)
            report = replace(report, actions=tuple(done))
            run_id = record_reconciliation_run_in(
                connection, "positions", started_at=now, dry_run=False, trigger=report.trigger,
                discrepancies=report.discrepancies, applied=report.applied, report=report.as_dict(),
                dagster_run_id=dagster_run_id)
    else:
        run_id = record_reconciliation_run(
            engine, "positions", started_at=now, dry_run=True, trigger=report.trigger,
            discrepancies=report.discrepancies, applied=0, report=report.as_dict(), dagster_run_id=dagster_run_id)
    for trade in closed:
        capture_exit_snapshot_safely(engine, broker, trade, clock=clock)
    return replace(report, run_id=run_id)


# ============================================================================ orders: values


@dataclass(frozen=True)
class FillConflict:
    exec_id: str
    field: str
    ledger: Any
    broker: Any
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"exec_id": self.exec_id, "field": self.field, "ledger": self.ledger, "broker": self.broker,
                "explanation": self.explanation}


@dataclass(frozen=True)
class OrderSyncReport:
    at: datetime
    day: date
    since: datetime | None
    until: datetime | None
    include_filled: bool
    dry_run: bool
    trigger: str
    broker_order_count: int
    ledger_order_count: int
    comparison: OrderReconciliation
    new_fills: tuple[str, ...]
    commissions_missing: tuple[str, ...]
    fill_conflicts: tuple[FillConflict, ...]
    book_entries: int
    status_breakdown: dict[str, int]
    stale_rows: tuple[int, ...] = ()
    fills_recorded: int = 0
    commissions_filled: int = 0
    orders_added: int = 0
    orders_updated: int = 0
    notes: tuple[str, ...] = ()
    run_id: int | None = None

    @property
    def conflicts(self) -> int:
        return len(self.comparison.conflicts) + len(self.fill_conflicts)

    @property
    def discrepancies(self) -> int:
        return (self.comparison.discrepancies + len(self.new_fills) + len(self.commissions_missing)
                + len(self.fill_conflicts) + len(self.stale_rows))

    @property
    def applied(self) -> int:
        return self.fills_recorded + self.commissions_filled + self.orders_added + self.orders_updated

    def summary(self) -> str:
        head = (f"orders ({'dry run' if self.dry_run else 'applied'}, {self.day}"
                f"{', including filled' if self.include_filled else ''}): {self.broker_order_count} at the broker, "
                f"{self.ledger_order_count} in the ledger; {len(self.comparison.new_at_broker)} new, "
                f"{len(self.comparison.to_update)} to update, {self.conflicts} conflict(s); "
                f"{len(self.new_fills)} new fill(s), {len(self.commissions_missing)} commission(s) to fill in")
        if self.dry_run:
            return head
        return (head + f"; done: {self.orders_added} added, {self.orders_updated} updated, {self.fills_recorded} "
                       f"fill(s) recorded, {self.commissions_filled} commission(s) filled in")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "orders", "at": self.at.isoformat(), "day": self.day.isoformat(), "since": _iso(self.since),
            "until": _iso(self.until), "include_filled": self.include_filled, "dry_run": self.dry_run,
            "trigger": self.trigger, "summary": self.summary(), "broker_orders": self.broker_order_count,
            "ledger_orders": self.ledger_order_count, "discrepancies": self.discrepancies, "applied": self.applied,
            "conflicts": self.conflicts, "comparison": _without_the_agreeing(self.comparison.as_dict(), "unchanged"),
            "new_fills": list(self.new_fills),
            "commissions_missing": list(self.commissions_missing), "stale_rows": list(self.stale_rows),
            "fill_conflicts": [item.as_dict() for item in self.fill_conflicts], "book_entries": self.book_entries,
            "status_breakdown": dict(self.status_breakdown), "fills_recorded": self.fills_recorded,
            "commissions_filled": self.commissions_filled, "orders_added": self.orders_added,
            "orders_updated": self.orders_updated, "notes": list(self.notes), "run_id": self.run_id,
        }


# ============================================================================ orders: the service


def _sum_commissions(values: Iterable[float | None]) -> float | None:
    values = list(values)
    if not values or any(value is None for value in values):
        return None
    return round(sum(values), 6)


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


DAY_WORDS = ("today", "yesterday")


def parse_day(text: str | None, today: date) -> date | None:
    """A ``sync-orders --date`` value: YYYY-MM-DD, "today" or "yesterday" (the calendar day
    before ``today``, New York); empty or None: None (today, decided by the run's clock)."""
    cleaned = (text or "").strip().lower()
    if not cleaned:
        return None
    if cleaned == "today":
        return today
    if cleaned == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(cleaned)
    except ValueError:
        raise TradingPipelineError(f"date {text!r} is not YYYY-MM-DD, today or yesterday") from None


def _window(day: date | None, today: date, include_filled: bool) -> tuple[date, datetime | None, datetime | None]:
    chosen = day or today
    if not include_filled:
        return chosen, _start_of_day(chosen), _start_of_day(chosen + timedelta(days=1))
    if day is None:
        return chosen, None, None  # every execution the broker still lists
    return chosen, _start_of_day(chosen), None


def plan_order_sync(engine: Engine, broker: BrokerPort, *, now: datetime, day: date | None, include_filled: bool):
    """Gather both sides and compare them (no writes). Returns a dict of what the report and
    the apply step need."""
    chosen, since, until = _window(day, calendar.new_york_date(now), include_filled)
    reports = [r for r in broker.executions(since=since) if r.quantity > 0 and (until is None or r.time < until)]
    book = [r for r in reports if is_book_entry(r)]
    executions = [r for r in reports if not is_book_entry(r)]
    open_updates = [u for u in broker.open_orders() if u.perm_id]

    by_perm: dict[int, list[FillReport]] = {}
    for report in executions:
        if report.perm_id:
            by_perm.setdefault(report.perm_id, []).append(report)
    perm_ids = set(by_perm) | {u.perm_id for u in open_updates}
    ledger_rows = broker_order_rows(engine, perm_ids=perm_ids, since=since, until=until)
    rows_by_perm = {row.perm_id: row for row in ledger_rows}
    ledger_fills = fills_by_exec_id(engine, [r.exec_id for r in executions])

    # Fill-level: new executions, missing commissions, and executions that disagree.
    new_fills = [r for r in executions if r.exec_id not in ledger_fills]
    missing_commission, fill_conflicts = [], []
    for report in executions:
        known = ledger_fills.get(report.exec_id)
        if known is None:
            continue
        if int(round(report.quantity)) != known.quantity:
            fill_conflicts.append(FillConflict(report.exec_id, "quantity", known.quantity, report.quantity,
                                               f"fill {report.exec_id}: ledger {known.quantity}, broker "
                                               f"{report.quantity:g}"))
        if abs(float(known.price) - report.price) > _PRICE_TOLERANCE:
            fill_conflicts.append(FillConflict(report.exec_id, "price", float(known.price), report.price,
                                               f"fill {report.exec_id}: price ledger {float(known.price):g}, broker "
                                               f"{report.price:g}"))
        if report.commission is not None:
            if known.commission is None:
                missing_commission.append(report)
            elif abs(float(known.commission) - report.commission) > _COMMISSION_TOLERANCE:
                fill_conflicts.append(FillConflict(
                    report.exec_id, "commission", float(known.commission), report.commission,
                    f"fill {report.exec_id}: commission ledger {float(known.commission):g}, broker "
                    f"{report.commission:g}; not overwritten, review it"))

    # Order-level: the broker's orders (open ones, and those known through executions).
    accounts = {r.perm_id: r.account for r in executions if r.perm_id}
    broker_records: dict[int, BrokerOrderRecord] = {}
    for update in open_updates:
        broker_records[update.perm_id] = BrokerOrderRecord(
            perm_id=update.perm_id, order_ref=update.order_ref or "", status=update.status,
            filled=int(round(update.filled)), quantity=int(round(update.filled + update.remaining)),
            avg_fill_price=round(update.avg_fill_price, 6) if update.filled else None,
            symbol=update.contract.symbol, con_id=update.contract.con_id or None,
            account=accounts.get(update.perm_id, ""), action=update.action, order_type=update.order_type,
            limit_price=update.limit_price, broker_order_id=update.order_id or None, client_id=update.client_id)
    for perm_id, fills_of in by_perm.items():
        if perm_id in broker_records:
            continue
        filled = int(round(sum(r.quantity for r in fills_of)))
        known = rows_by_perm.get(perm_id)
        quantity = known.quantity if known is not None and known.quantity else None
        # Not open any more: filled, or (the ledger knows it was for more) cancelled after a part.
        status = "Cancelled" if quantity is not None and filled < quantity else "Filled"
        first = fills_of[0]
        notional = sum(r.quantity * r.price for r in fills_of)
        broker_records[perm_id] = BrokerOrderRecord(
            perm_id=perm_id, order_ref=first.order_ref or "", status=status, filled=filled,
            quantity=quantity if quantity is not None else filled,
            avg_fill_price=round(notional / sum(r.quantity for r in fills_of), 6),
            symbol=first.contract.symbol, con_id=first.contract.con_id or None, account=first.account,
            action="BUY" if first.side == "BOT" else "SELL", broker_order_id=first.order_id or None,
            client_id=first.client_id)
    # The ledger's filled count is what its fills hold once this sync's new executions are
    # recorded (fills are recorded first), or its row's count when that is more: a row the
    # acknowledgement wrote as Filled with 0 filled (the fill raced the ack, its event never
    # drained) is then no conflict. Commissions are compared per fill above, not per order.
    recorded = filled_by_perm_id(engine, [row.perm_id for row in ledger_rows])
    arriving: dict[int, int] = {}
    for report in new_fills:
        if report.perm_id:
            arriving[report.perm_id] = arriving.get(report.perm_id, 0) + int(round(report.quantity))
    ledger_side = [LedgerOrder(perm_id=row.perm_id, order_ref=row.order_ref, status=row.status,
                               filled=max(row.filled, recorded.get(row.perm_id, 0) + arriving.get(row.perm_id, 0)),
                               quantity=row.quantity, avg_fill_price=_float(row.avg_fill_price),
                               symbol=row.symbol or "", row_id=row.id) for row in ledger_rows]
    comparison = compare_orders(ledger_side, broker_records.values())
    # Orders that agree but whose row still shows an older filled count: the row is refreshed.
    stale = tuple(item.broker.perm_id for item in comparison.unchanged
                  if rows_by_perm[item.broker.perm_id].filled != item.broker.filled)
    breakdown: dict[str, int] = {}
    for record in broker_records.values():
        breakdown[record.status] = breakdown.get(record.status, 0) + 1
    return {
        "day": chosen, "since": since, "until": until, "executions": executions, "book": book,
        "new_fills": new_fills, "missing_commission": missing_commission, "fill_conflicts": fill_conflicts,
        "comparison": comparison, "broker_records": broker_records, "rows_by_perm": rows_by_perm, "stale": stale,
        "ledger_rows": ledger_rows, "breakdown": breakdown, "by_perm": by_perm,
    }


def _write_order(engine: Engine, record: BrokerOrderRecord, *, intent_id: int | None, at: datetime) -> None:
    """Bring one broker order into the ledger: through its intent when it is one of ours (the
    status moves forward only, and the broker_orders row follows), else its row directly."""
    remaining = None if record.quantity is None else max(record.quantity - record.filled, 0)
    avg = record.avg_fill_price if record.filled else None
    if intent_id is not None:
        ledger_orders.record_status(engine, intent_id, broker_status=record.status, filled=record.filled, at=at,
                                    remaining=remaining, avg_fill_price=avg, message="sync-orders",
                                    broker_order_id=record.broker_order_id, perm_id=record.perm_id,
                                    client_id=record.client_id)
        return
    with write_transaction(engine) as connection:
        # The orders repository's own upsert (one row per perm id; known details never blanked).
        ledger_orders.upsert_broker_order(
            connection, perm_id=record.perm_id, at=at, status=record.status, filled=record.filled,
            remaining=remaining, avg_fill_price=avg, order_ref=record.order_ref or None,
            broker_order_id=record.broker_order_id, client_id=record.client_id, account=record.account or None,
            symbol=record.symbol or None, con_id=record.con_id, action=record.action or None,
            quantity=record.quantity, order_type=record.order_type or None, limit_price=record.limit_price)


def sync_orders(engine: Engine, broker: BrokerPort, *, clock: Clock, day: date | None = None,
                include_filled: bool = False, apply: bool = True, trigger: str = TRIGGER_COMMAND,
                dagster_run_id: str | None = None) -> OrderSyncReport:
    """Bring the broker's orders, statuses, fills and commissions into the ledger; report
    conflicts without overwriting them (see the module text). ``day``: the New York day
    (None: today). ``apply=False`` is a dry run. Writes a reconciliation_runs row either way."""
    now = clock.now()
    plan = plan_order_sync(engine, broker, now=now, day=day, include_filled=include_filled)
    comparison: OrderReconciliation = plan["comparison"]
    notes = []
    if plan["book"]:
        notes.append(f"{len(plan['book'])} book entr(y/ies) (expirations, assignments) left to the expiry step")
    if plan["since"] is not None and calendar.new_york_date(now) > plan["day"] and not include_filled:
        notes.append("a real TWS lists only recent executions: an older day may show fewer than happened")
    report = OrderSyncReport(
        at=now, day=plan["day"], since=plan["since"], until=plan["until"], include_filled=include_filled,
        dry_run=not apply, trigger=_trigger(trigger), broker_order_count=len(plan["broker_records"]),
        ledger_order_count=len(plan["ledger_rows"]), comparison=comparison,
        new_fills=tuple(r.exec_id for r in plan["new_fills"]),
        commissions_missing=tuple(r.exec_id for r in plan["missing_commission"]),
        fill_conflicts=tuple(plan["fill_conflicts"]), book_entries=len(plan["book"]),
        status_breakdown=plan["breakdown"], stale_rows=plan["stale"], notes=tuple(notes))
    if apply:
        report = _apply_order_sync(engine, plan, report, at=now)
    run_id = record_reconciliation_run(
        engine, "orders", started_at=now, dry_run=not apply, trigger=report.trigger,
        discrepancies=report.discrepancies, applied=report.applied, report=report.as_dict(),
        dagster_run_id=dagster_run_id)
    return replace(report, run_id=run_id)


def _apply_order_sync(engine: Engine, plan: dict, report: OrderSyncReport, *, at: datetime) -> OrderSyncReport:
    comparison: OrderReconciliation = plan["comparison"]
    conflicted_fills = {item.exec_id for item in plan["fill_conflicts"]}
    # An order in conflict, or with a fill in conflict, is left as it is (its new fills aside).
    conflicted = {item.broker.perm_id for item in comparison.conflicts}
    conflicted |= {r.perm_id for r in plan["executions"] if r.exec_id in conflicted_fills and r.perm_id}
    intents = intent_ids_by_ref(engine, [r.order_ref for r in plan["broker_records"].values()])
    rows_by_perm = plan["rows_by_perm"]

    # Fills first: facts, recorded once per exec id (the fill hook moves their trades).
    recorded = 0
    for report_ in plan["new_fills"]:
        if ledger_orders.record_fill(engine, broker_execution(report_), at=at):
            recorded += 1
    filled_in = 0
    for report_ in plan["missing_commission"]:
        if report_.exec_id in conflicted_fills or report_.perm_id in conflicted:
            continue
        ledger_orders.record_fill(engine, broker_execution(report_), at=at)  # fills in the missing commission only
        filled_in += 1

    added = updated = 0
    for item in comparison.new_at_broker:
        record = item.broker
        if record.perm_id in conflicted:
            continue
        _write_order(engine, record, intent_id=intents.get(record.order_ref), at=at)
        added += 1
    for item in comparison.to_update:
        record = item.broker
        if record.perm_id in conflicted:
            continue
        row = rows_by_perm.get(record.perm_id)
        intent_id = (row.intent_id if row is not None else None) or intents.get(record.order_ref)
        _write_order(engine, record, intent_id=intent_id, at=at)
        updated += 1
    for perm_id in plan["stale"]:
        if perm_id in conflicted:
            continue
        row = rows_by_perm[perm_id]
        record = plan["broker_records"][perm_id]
        _write_order(engine, record, intent_id=row.intent_id or intents.get(record.order_ref), at=at)
        updated += 1
    return replace(report, fills_recorded=recorded, commissions_filled=filled_in, orders_added=added,
                   orders_updated=updated)


# ============================================================================ the start of every job


def reconcile_at_job_start(engine: Engine, broker: BrokerPort, *, clock: Clock, dagster_run_id: str | None = None,
                           trigger: str) -> dict:
    """What every job that trades does first (see the module text): sync today's orders
    (applied), process expirations (applied), reconcile positions in report mode. Returns a
    JSON-able summary: each step's outcome, ``review`` (lines for a person), ``errors``."""
    label = _trigger(trigger)
    summary: dict[str, Any] = {"at": clock.now().isoformat(), "trigger": label, "orders": None,
                               "expirations": [], "positions": None, "review": [], "errors": []}

    def guarded(step: str, work):
        # Any failure, a bug included, is logged with its traceback and reported, never
        # raised: bookkeeping must not stop a job that manages risk (an exit, a liquidation).
        try:
            return work()
        except Exception as problem:  # noqa: BLE001
            log.exception("reconciliation at job start: %s failed", step)
            summary["errors"].append(f"{step}: {type(problem).__name__}: {problem}")
            return None

    orders = guarded("sync-orders", lambda: sync_orders(engine, broker, clock=clock, day=None, include_filled=False,
                                                       apply=True, trigger=label, dagster_run_id=dagster_run_id))
    if orders is not None:
        summary["orders"] = {"summary": orders.summary(), "run_id": orders.run_id, "conflicts": orders.conflicts,
                             "fills_recorded": orders.fills_recorded}
        summary["review"] += [item.explanation for item in orders.comparison.conflicts]
        summary["review"] += [item.explanation for item in orders.fill_conflicts]
    expiries = guarded("expirations", lambda: process_expirations(engine, broker, clock=clock))
    if expiries is not None:
        summary["expirations"] = expiries
        summary["review"] += [f"trade {row['trade_id']} {row['description']}: {row['message']}" for row in expiries
                              if not row["applied"] and row["outcome"] not in CLOSING_OUTCOMES]
    positions = guarded("positions", lambda: reconcile_positions(engine, broker, clock=clock, apply=False,
                                                                trigger=label, dagster_run_id=dagster_run_id))
    if positions is not None:
        summary["positions"] = {"summary": positions.summary(), "run_id": positions.run_id,
                                "discrepancies": positions.discrepancies,
                                "actions": [action.as_dict() for action in positions.actions]}
        summary["review"] += [action.explanation for action in positions.actions]
    closed = sum(1 for row in summary["expirations"] if row.get("applied"))
    summary["summary"] = "; ".join(part for part in (
        orders.summary() if orders is not None else "orders: not synced",
        f"expirations: {closed} closed of {len(summary['expirations'])} settled",
        positions.summary() if positions is not None else "positions: not reconciled",
    ))
    return summary
