"""Expirations, assignments and exercises: closing the ledger's trades whose option expired.

:func:`process_expirations` looks at every open trade whose expiration has settled (the close
of its expiration day has passed: ``core.calendar``, early closes included; an expiration on
a day the NYSE is closed settles at the close of the session before) and asks the broker what
became of it. Evidence, strongest first:

1. **still held** at the broker (``positions()``): the trade is left open and reported (TWS
   books expirations overnight; the next run looks again);
2. the broker's **book entries** (``executions()``: an execution of the option with no order
   behind it, perm id 0 and order id 0, on or after the expiration day, on the closing side):
   with a delivery of the underlying at the strike at the same moment it is an assignment
   (short) or an exercise (long); booked at a price above 0 without a delivery it is a cash
   settlement at that price; booked at 0 without a delivery it expired worthless. The
   simulator books every expiry this way; a real TWS may not report book entries at all;
3. otherwise, with the option gone, the **underlying's close** on the settlement day
   (``daily_bars``): in the money by a cent or more (the OCC's automatic exercise threshold)
   means assigned / exercised, else expired. Only for options on stocks (physical delivery:
   the option closes at 0 and the stock changes hands at the strike, whatever the exact
   settlement price); a cash-settled option (an index) without a book entry is left open and
   reported, because its settlement value (AM or PM) cannot be known from a daily bar and a
   guessed P&L must never enter the ledger.

An option that was closed by an *order* at the broker (a buy to close entered in TWS) is not an
expiry: it is reported and left to ``sync-orders`` / ``reconcile-positions``.

Applying: assigned -> the option trade closes at the booked price (0 for physical delivery)
with exit reason ``assignment`` and the stock is recorded at the strike
(``trades.record_stock_position``: +multiplier x contracts shares for a short put, minus that
for a short call; an exercised long call buys, a long put sells); expired -> closes at 0 with
``expiration``; exercised long -> ``exercise``. The exit time is the settlement close, not the
time of the run. One transaction per trade (the close and the stock together). Idempotent: a
closed trade is no longer open, and the stock is recorded once per trade. After each close the
exit snapshot is captured (``trading.snapshots.capture_exit_snapshot``, which never raises).

Trades of another account than the broker's are skipped: their positions are not visible
through this connection, and "not held" would be a false conclusion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time as wall_time, timedelta, timezone
from typing import Any

from sqlalchemy import Engine

from trading_pipeline.broker.port import (
    BrokerPort,
    Contract,
    ContractError,
    ContractSpec,
    DailyBar,
    FillReport,
    Position,
    SecType,
)
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.positions import delivered_shares
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.staging import LedgerStateError
from trading_pipeline.ledger.trades import Trade, close_trade_in, open_trades, record_stock_position

log = logging.getLogger(__name__)

# The OCC exercises an option automatically when it is in the money by this much or more.
AUTO_EXERCISE_THRESHOLD = 0.01
# A delivery of stock belongs to a book entry of the option when booked this close in time.
DELIVERY_WINDOW = timedelta(minutes=1)
# Daily bars asked for around the settlement day (a few, so a holiday before it is covered).
SETTLEMENT_BARS = 5

# What happened to a trade at its expiry (``ExpiryDecision.outcome``).
EXPIRED = "expiration"
ASSIGNED = "assignment"
EXERCISED = "exercise"
STILL_HELD = "still_held"
CLOSED_BY_ORDER = "closed_by_order"
UNDETERMINED = "undetermined"
OTHER_ACCOUNT = "other_account"
CLOSING_OUTCOMES = frozenset({EXPIRED, ASSIGNED, EXERCISED})


# ============================================================================ values


@dataclass(frozen=True)
class ExpiryDecision:
    """What the evidence says about one trade. ``outcome`` in CLOSING_OUTCOMES closes it
    at ``exit_price`` at ``exit_time``; ``stock_quantity`` shares (signed, 0 for none) are
    recorded at ``stock_price``. ``evidence`` names what decided; ``message`` says it all."""

    trade_id: int
    description: str
    outcome: str
    evidence: str
    message: str
    exit_price: float | None = None
    exit_time: datetime | None = None
    exit_commission: float | None = None
    stock_quantity: int = 0
    stock_price: float | None = None

    @property
    def closes(self) -> bool:
        return self.outcome in CLOSING_OUTCOMES

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["exit_time"] = self.exit_time.isoformat() if self.exit_time else None
        return values


# ============================================================================ pure rules


def settlement_day(expiration: date) -> date:
    """The session at whose close an option of this expiration settles: the expiration day,
    or the last session before it when the NYSE is closed that day."""
    return expiration if calendar.is_session(expiration) else calendar.previous_session(expiration)


def settlement_close(expiration: date) -> datetime:
    """The instant (UTC) an option of this expiration settles (early closes included)."""
    return calendar.session_bounds(settlement_day(expiration)).close_utc


def has_settled(expiration: date, now: datetime) -> bool:
    return now >= settlement_close(expiration)


def intrinsic_value(right: str, strike: float, underlying_price: float) -> float:
    return max(strike - underlying_price, 0.0) if right == "P" else max(underlying_price - strike, 0.0)


def matches_contract(trade: Trade, contract: Contract) -> bool:
    """Whether the broker's ``contract`` is the trade's option: by conId when both have one,
    else by its terms."""
    if trade.con_id and contract.con_id:
        return int(trade.con_id) == int(contract.con_id)
    return (contract.is_option and contract.symbol.upper() == trade.symbol.upper() and contract.right == trade.right
            and contract.expiry == trade.expiration and contract.strike is not None
            and abs(float(contract.strike) - float(trade.strike)) < 1e-6)


def is_book_entry(report: FillReport) -> bool:
    """An execution with no order behind it: the broker's booking of an expiry."""
    return not report.perm_id and not report.order_id


def closing_side(trade: Trade) -> str:
    return "BOT" if trade.side == "short" else "SLD"


def classify_expiry(trade: Trade, *, held: Sequence[Position], executions: Sequence[FillReport],
                    underlying_close: float | None, underlying_day: date | None,
                    physical: bool | None) -> ExpiryDecision:
    """The decision for one trade whose expiration has settled (see the module text), from the
    broker's positions and executions and the underlying's settlement-day close (None when
    unknown). ``physical``: True for an option on a stock, False for a cash-settled one, None
    when unknown. Pure: the caller gathers the evidence."""
    base = dict(trade_id=trade.id, description=trade.describe())
    close_at = settlement_close(trade.expiration)
    contracts, multiplier = trade.open_contracts, trade.multiplier

    still = [p for p in held if p.quantity and matches_contract(trade, p.contract)]
    if still:
        quantity = sum(p.quantity for p in still)
        return ExpiryDecision(**base, outcome=STILL_HELD, evidence="broker position",
                              message=f"still held at the broker ({quantity:+g}) after the close of "
                                      f"{settlement_day(trade.expiration)}: left open, looked at again next run")

    day_start = datetime.combine(settlement_day(trade.expiration), wall_time(0), tzinfo=calendar.NEW_YORK)
    relevant = [e for e in executions if e.time >= day_start and matches_contract(trade, e.contract)
                and e.side == closing_side(trade)]
    booked = [e for e in relevant if is_book_entry(e)]
    if booked:
        price = booked[-1].price
        commission = sum(e.commission or 0.0 for e in booked)
        delivery = [e for e in executions if is_book_entry(e) and e.contract.sec_type is SecType.STOCK
                    and e.contract.symbol.upper() == trade.symbol.upper()
                    and abs(e.price - float(trade.strike)) < 1e-6
                    and any(abs(e.time - b.time) <= DELIVERY_WINDOW for b in booked)]
        booked_qty = sum(e.quantity for e in booked)
        note = "" if booked_qty >= contracts else (
            f"; the broker booked {booked_qty:g} contract(s), the ledger had {contracts} open (all closed)")
        if delivery:
            outcome = ASSIGNED if trade.side == "short" else EXERCISED
            shares = delivered_shares(trade.side, trade.right, contracts, multiplier)
            return ExpiryDecision(**base, outcome=outcome, evidence=f"book entry {booked[-1].exec_id}",
                                  message=f"{outcome} booked by the broker: option out at {price:g}, "
                                          f"{shares:+d} {trade.symbol} at {float(trade.strike):g}{note}",
                                  exit_price=price, exit_time=close_at, exit_commission=commission,
                                  stock_quantity=shares, stock_price=float(trade.strike))
        if price > 0:
            outcome = ASSIGNED if trade.side == "short" else EXERCISED
            return ExpiryDecision(**base, outcome=outcome, evidence=f"book entry {booked[-1].exec_id}",
                                  message=f"cash-settled {outcome} booked by the broker at {price:g}{note}",
                                  exit_price=price, exit_time=close_at, exit_commission=commission)
        return ExpiryDecision(**base, outcome=EXPIRED, evidence=f"book entry {booked[-1].exec_id}",
                              message=f"expired worthless, booked by the broker at 0{note}",
                              exit_price=0.0, exit_time=close_at, exit_commission=commission)

    by_order = [e for e in relevant if not is_book_entry(e)]
    if by_order:
        refs = ", ".join(sorted({e.order_ref or f"perm {e.perm_id}" for e in by_order}))
        return ExpiryDecision(**base, outcome=CLOSED_BY_ORDER, evidence=f"execution {by_order[-1].exec_id}",
                              message=f"closed at the broker by an order ({refs}) on its last day, not by the "
                                      "expiry: sync-orders / reconcile-positions record it")

    if physical is not True:
        why = "a cash-settled option" if physical is False else "the underlying is unknown to the broker"
        return ExpiryDecision(**base, outcome=UNDETERMINED, evidence="none",
                              message=f"no longer held and no book entry reported; {why}: its settlement value "
                                      "cannot be known here, left open (close it by hand)")
    if underlying_close is None or underlying_day != settlement_day(trade.expiration):
        return ExpiryDecision(**base, outcome=UNDETERMINED, evidence="none",
                              message=f"no longer held, no book entry, and no close of {trade.symbol} for "
                                      f"{settlement_day(trade.expiration)}: left open, looked at again next run")
    evidence = f"{trade.symbol} closed at {underlying_close:g} on {underlying_day}"
    itm = intrinsic_value(trade.right, float(trade.strike), underlying_close)
    if itm < AUTO_EXERCISE_THRESHOLD:
        return ExpiryDecision(**base, outcome=EXPIRED, evidence=evidence,
                              message=f"expired worthless ({evidence}; no book entry reported)",
                              exit_price=0.0, exit_time=close_at)
    outcome = ASSIGNED if trade.side == "short" else EXERCISED
    shares = delivered_shares(trade.side, trade.right, contracts, multiplier)
    return ExpiryDecision(**base, outcome=outcome, evidence=evidence,
                          message=f"{outcome}: {itm:.2f} in the money ({evidence}; no book entry reported); "
                                  f"{shares:+d} {trade.symbol} at {float(trade.strike):g}",
                          exit_price=0.0, exit_time=close_at, stock_quantity=shares,
                          stock_price=float(trade.strike))


# ============================================================================ gathering evidence


def broker_account(broker: BrokerPort) -> str:
    return (getattr(broker, "account", "") or "").strip()


def settled_open_trades(engine: Engine, now: datetime) -> list[Trade]:
    """The ledger's open trades whose expiration has settled by ``now``."""
    return [trade for trade in open_trades(engine) if has_settled(trade.expiration, now)]


def underlying_kind(broker: BrokerPort, symbol: str) -> tuple[Contract | None, bool | None]:
    """The underlying's contract and whether its options deliver it (a stock: True; an
    index: False); (None, None) when the broker knows neither."""
    for spec, physical in ((ContractSpec.stock(symbol), True), (ContractSpec.index(symbol), False)):
        try:
            [contract] = broker.qualify(spec)
        except ContractError:
            continue
        return contract, physical
    return None, None


def settlement_close_price(broker: BrokerPort, contract: Contract, day: date) -> tuple[float | None, date | None]:
    """The underlying's close on ``day`` from daily bars ending that day: (close, day), or
    (None, None) when no bar of that day exists (yet)."""
    bars: list[DailyBar] = broker.daily_bars(contract, SETTLEMENT_BARS, end=day)
    for bar in bars:
        if bar.day == day:
            return bar.close, bar.day
    return None, None


def decide_expiries(broker: BrokerPort, trades: Sequence[Trade]) -> list[ExpiryDecision]:
    """One decision per settled trade, asking the broker once for positions and executions
    and, only where needed, once per underlying for its kind and its settlement close."""
    if not trades:
        return []
    account = broker_account(broker)
    decisions: dict[int, ExpiryDecision] = {}
    ours = []
    for trade in trades:
        if trade.account and account and trade.account != account:
            decisions[trade.id] = ExpiryDecision(
                trade_id=trade.id, description=trade.describe(), outcome=OTHER_ACCOUNT, evidence="none",
                message=f"account {trade.account} is not this connection's ({account}): not looked at")
        else:
            ours.append(trade)
    if ours:
        held = [p for p in broker.positions() if p.quantity]
        earliest = min(settlement_day(t.expiration) for t in ours)
        since = datetime.combine(earliest, wall_time(0), tzinfo=calendar.NEW_YORK).astimezone(timezone.utc)
        executions = [e for e in broker.executions(since=since) if e.quantity > 0]
        underlyings: dict[str, tuple[Contract | None, bool | None]] = {}
        closes: dict[tuple[str, date], tuple[float | None, date | None]] = {}
        for trade in ours:
            evidence = dict(held=held, executions=executions, underlying_close=None, underlying_day=None,
                            physical=None)
            first = classify_expiry(trade, **evidence)
            if first.outcome != UNDETERMINED:
                decisions[trade.id] = first
                continue
            # Only now the underlying is needed: its kind and the settlement day's close.
            symbol = trade.symbol.upper()
            if symbol not in underlyings:
                underlyings[symbol] = underlying_kind(broker, symbol)
            contract, physical = underlyings[symbol]
            evidence["physical"] = physical
            day = settlement_day(trade.expiration)
            if contract is not None and physical:
                if (symbol, day) not in closes:
                    closes[(symbol, day)] = settlement_close_price(broker, contract, day)
                evidence["underlying_close"], evidence["underlying_day"] = closes[(symbol, day)]
            decisions[trade.id] = classify_expiry(trade, **evidence)
    return [decisions[trade.id] for trade in trades]


# ============================================================================ applying


def apply_expiry_in(connection, trade: Trade, decision: ExpiryDecision, *, account: str | None,
                    at: datetime) -> tuple[Trade, int | None]:
    """Close the trade and record its stock (when delivered) inside the caller's
    transaction: (the closed trade, the stock position's id or None)."""
    if not decision.closes:
        raise ValueError(f"trade {trade.id}: {decision.outcome} does not close a trade")
    closed = close_trade_in(connection, trade.id, exit_price=decision.exit_price, exit_reason=decision.outcome,
                            exit_time=decision.exit_time, exit_commission=decision.exit_commission, at=at)
    stock_id = None
    if decision.stock_quantity:
        stock_id = record_stock_position(connection, source_trade_id=trade.id, account=trade.account or account,
                                         symbol=trade.symbol, quantity=decision.stock_quantity,
                                         cost_price=decision.stock_price, at=decision.exit_time)
    return closed, stock_id


def capture_exit_snapshot_safely(engine: Engine, broker: BrokerPort, trade: Trade, *, clock: Clock) -> str:
    """The exit snapshot of a closed trade (helper SNAP's service, which never raises); "" when
    the service is not installed. Guarded: a snapshot never undoes or blocks a close."""
    try:
        from trading_pipeline.trading.snapshots import capture_exit_snapshot
    except ImportError:
        return ""
    try:
        outcome = capture_exit_snapshot(engine, broker, trade, clock=clock)
    except Exception as problem:  # the service promises not to raise; a close must survive if it does
        log.warning("exit snapshot of trade %s failed: %s", trade.id, problem)
        return f"failed: {problem}"
    return str(getattr(outcome, "status", "") or "captured")


def process_expirations(engine: Engine, broker: BrokerPort, *, clock: Clock) -> list[dict]:
    """Close the settled trades the broker's evidence explains (see the module text); one
    dict per settled open trade: its decision, and ``applied`` (with ``stock_position_id`` and
    ``exit_snapshot``) when it was closed now."""
    now = clock.now()
    trades = settled_open_trades(engine, now)
    results = []
    account = broker_account(broker) or None
    for trade, decision in zip(trades, decide_expiries(broker, trades)):
        row = decision.as_dict() | {"applied": False}
        if decision.closes:
            try:
                with write_transaction(engine) as connection:
                    closed, stock_id = apply_expiry_in(connection, trade, decision, account=account,
                                                       at=clock.now())
            except LedgerStateError as problem:  # closed meanwhile by another process: nothing to do
                row["message"] += f" (not applied: {problem})"
            else:
                row.update(applied=True, stock_position_id=stock_id, net_pnl=closed.net_pnl,
                           gross_pnl=closed.gross_pnl)
                row["exit_snapshot"] = capture_exit_snapshot_safely(engine, broker, closed, clock=clock)
        results.append(row)
    return results


__all__ = [
    "ASSIGNED", "CLOSED_BY_ORDER", "EXERCISED", "EXPIRED", "OTHER_ACCOUNT", "STILL_HELD", "UNDETERMINED",
    "ExpiryDecision", "apply_expiry_in", "classify_expiry", "decide_expiries", "delivered_shares",
    "has_settled", "intrinsic_value", "process_expirations", "settlement_close", "settlement_day",
]
