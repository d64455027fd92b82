"""The open-positions view: the ledger's open trades joined with the broker's positions and quotes.

:func:`open_position_views` is what ``tp monitor`` shows and what a monitoring pass decides
on. For every open trade of the ledger (``ledger.trades``) it finds the broker's position of
the same contract (by conId, else by symbol, expiry, strike and right), quotes every option
in **one** batched ``broker.quotes`` call and every underlying in one more, and values the
position with ``core.positions`` (P&L in dollars and percent of the premium, greeks, DTE,
distance to the strike, alerts) and ``core.exits`` (the exit the rules would take now, its
limit on the option's price grid: ``BrokerPort.price_increments``, one request for all).

Where a row comes from (``PositionRow.where``):

- ``both``: an open trade the broker holds too (``broker_quantity`` is the broker's signed
  quantity of that contract; when it differs from the ledger's open contracts of the
  contract, the row carries a note: the position reconciliation reports and fixes it);
- ``ledger_only``: an open trade the broker does not hold (expired, assigned, closed by hand:
  the reconciliation closes it); it is still valued when it can be quoted;
- ``broker_only``: an option position the ledger has no open trade for (placed by hand or
  by another tool): listed so nothing held goes unseen, valued at the broker's average cost,
  never exited by the monitor (the reconciliation imports it as a trade first).

Several trades of one contract share its broker position (their open contracts are summed
for the comparison). Non-option broker positions (stock from an assignment) are not option
positions and are left to ``tp reconcile-positions``.

Underlyings: stocks, and the cash-settled index classes (:data:`INDEX_SYMBOLS`) as indices.
An underlying that cannot be qualified or quoted falls back to the underlying price the
option's greeks carry; a contract that cannot be quoted is valued without a quote (the row
says "no quote").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine

from trading_pipeline.broker.port import (
    BrokerError,
    BrokerPort,
    Contract,
    ContractError,
    ContractSpec,
    Position,
    Quote,
    SecType,
    fallback_increments,
)
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.exits import ExitDecision, ExitRules, decide_exit
from trading_pipeline.core.positions import PositionValue, PositionView, signed_quantity
from trading_pipeline.core.pricing import PriceIncrements
from trading_pipeline.ledger.trades import Trade, open_trades

# Underlyings quoted as indices (their options are cash settled); everything else is a stock.
INDEX_SYMBOLS = frozenset({"SPX", "XSP", "NDX", "RUT", "VIX", "OEX", "XEO", "DJX"})

WHERE_BOTH = "both"
WHERE_LEDGER_ONLY = "ledger_only"
WHERE_BROKER_ONLY = "broker_only"


@dataclass(frozen=True)
class PositionRow:
    """One open option position as monitoring sees it (see the module text).

    ``view`` holds the plain values the core judges (None only when the position could not
    be described at all); ``value`` its figures and alerts under the rules; ``decision`` the
    exit the rules would take now. ``contract`` is the qualified option (what an exit order
    needs), None when the broker does not know it.
    """

    where: str
    trade: Trade | None
    view: PositionView
    value: PositionValue
    decision: ExitDecision
    contract: Contract | None
    broker_quantity: float | None
    account: str | None
    notes: tuple[str, ...] = ()

    @property
    def trade_id(self) -> int | None:
        return self.trade.id if self.trade is not None else None

    @property
    def con_id(self) -> int | None:
        if self.contract is not None and self.contract.con_id:
            return self.contract.con_id
        return self.trade.con_id if self.trade is not None else None

    @property
    def exit_signal(self) -> str:
        """The rule that would close it now ("" when none)."""
        return self.decision.reason.value if self.decision.reason is not None else ""

    def as_dict(self) -> dict[str, Any]:
        row = self.value.as_dict()
        row.update(
            where=self.where, trade_key=self.trade.trade_key if self.trade is not None else None,
            con_id=self.con_id, account=self.account, broker_quantity=self.broker_quantity,
            exit_signal=self.exit_signal or None, decision=self.decision.as_dict(), notes=list(self.notes),
        )
        return row


@dataclass
class _Entry:
    """A row being assembled."""

    where: str
    trade: Trade | None
    contract: Contract | None
    broker: Position | None = None
    notes: list[str] = field(default_factory=list)


def open_position_views(engine: Engine, broker: BrokerPort, *, clock: Clock, rules: ExitRules | None = None,
                        account: str | None = None) -> list[PositionRow]:
    """Every open option position, from the ledger and the broker, valued now (module text).

    ``account``: only this account's trades and positions (trades without an account are
    kept). Rows come ledger trades first (oldest entry first), then broker-only positions.
    Broker errors (connection, timeouts) propagate: a view without the broker is no view.
    """
    rules = rules or ExitRules()
    today = calendar.new_york_date(clock.now())
    trades = [t for t in open_trades(engine) if account is None or t.account in (None, account)]
    positions = [p for p in broker.positions()
                 if p.quantity and p.contract.sec_type is SecType.OPTION
                 and (account is None or not p.account or p.account == account)]

    entries = _match(trades, positions)
    _qualify_missing(broker, entries)
    _note_quantity_mismatches(entries)
    options = {e.contract.con_id: e.contract for e in entries if e.contract is not None and e.contract.con_id}
    option_quotes = _quotes(broker, list(options.values()))
    grids = _price_grids(broker, list(options.values()))
    underlying_prices = _underlying_prices(broker, sorted({_symbol(e) for e in entries}))

    rows = []
    for entry in entries:
        quote = option_quotes.get(entry.contract.con_id) if entry.contract is not None else None
        view = _view(entry, quote, underlying_prices.get(_symbol(entry)), today)
        if quote is None and entry.contract is not None:
            entry.notes.append("the broker sent no quote")
        rows.append(PositionRow(
            where=entry.where, trade=entry.trade, view=view, value=rules.value(view),
            decision=decide_exit(view, rules, tick=_grid_of(entry.contract, grids)), contract=entry.contract,
            broker_quantity=entry.broker.quantity if entry.broker is not None else None,
            account=(entry.trade.account if entry.trade is not None and entry.trade.account else None)
            or (entry.broker.account if entry.broker is not None else None) or account,
            notes=tuple(entry.notes),
        ))
    return rows


# ---------------------------------------------------------------- price grids


def _price_grids(broker: BrokerPort, contracts: Sequence[Contract]) -> dict[int, PriceIncrements]:
    """Each option's price grid (its market rule) by conId, in one request: an exit limit is a
    point of it (TWS refuses any other price with error 110). The conservative fallback grid
    when the broker cannot say (``BrokerPort.price_increments``)."""
    if not contracts:
        return {}
    try:
        grids = broker.price_increments(contracts)
    except BrokerError as problem:
        grids = [fallback_increments(f"the broker could not say: {problem}") for _ in contracts]
    return {contract.con_id: grid for contract, grid in zip(contracts, grids)}


def _grid_of(contract: Contract | None, grids: dict[int, PriceIncrements]) -> PriceIncrements:
    grid = grids.get(contract.con_id) if contract is not None else None
    return grid or fallback_increments("the contract is not known to the broker")


# ---------------------------------------------------------------- matching


def _terms(symbol: str, expiry: date | None, strike: float | None, right: str | None) -> tuple:
    return (symbol.strip().upper(), expiry, round(float(strike or 0.0), 4), (right or "").upper()[:1])


def _match(trades: Sequence[Trade], positions: Sequence[Position]) -> list[_Entry]:
    by_con_id = {p.contract.con_id: p for p in positions if p.contract.con_id}
    by_terms = {_terms(p.contract.symbol, p.contract.expiry, p.contract.strike, p.contract.right): p
                for p in positions}
    matched: set[int] = set()
    entries = []
    for trade in trades:
        position = by_con_id.get(trade.con_id) if trade.con_id else None
        if position is None:
            position = by_terms.get(_terms(trade.symbol, trade.expiration, trade.strike, trade.right))
        if position is not None:
            matched.add(id(position))
            entries.append(_Entry(WHERE_BOTH, trade, position.contract, position))
            continue
        contract = None
        if trade.con_id:
            # Known to the broker by its id: quotable without another qualification.
            contract = Contract(con_id=trade.con_id, symbol=trade.symbol, sec_type=SecType.OPTION,
                                currency=trade.currency, expiry=trade.expiration, strike=trade.strike,
                                right=trade.right, multiplier=trade.multiplier)
        entries.append(_Entry(WHERE_LEDGER_ONLY, trade, contract,
                              notes=["not at the broker: expired, assigned or closed outside the ledger? "
                                     "(tp reconcile-positions)"]))
    for position in positions:
        if id(position) not in matched:
            entries.append(_Entry(WHERE_BROKER_ONLY, None, position.contract, position,
                                  notes=["only at the broker: no open trade in the ledger "
                                         "(tp reconcile-positions imports it)"]))
    return entries


def _qualify_missing(broker: BrokerPort, entries: Sequence[_Entry]) -> None:
    """Qualify the trades the broker holds no position of and that carry no conId (imported
    ones): one request for all, each alone when one of them is unknown."""
    missing = [e for e in entries if e.contract is None and e.trade is not None]
    if not missing:
        return
    specs = [ContractSpec.option(e.trade.symbol, e.trade.expiration, e.trade.strike, e.trade.right) for e in missing]
    try:
        for entry, contract in zip(missing, broker.qualify(*specs)):
            entry.contract = contract
        return
    except ContractError:
        pass
    for entry, spec in zip(missing, specs):
        try:
            [entry.contract] = broker.qualify(spec)
        except ContractError as problem:
            entry.notes.append(f"unknown to the broker: {problem}")


def _note_quantity_mismatches(entries: Sequence[_Entry]) -> None:
    ledger_by_contract: dict[int, int] = {}
    for entry in entries:
        if entry.where == WHERE_BOTH:
            key = id(entry.broker)
            ledger_by_contract[key] = ledger_by_contract.get(key, 0) + signed_quantity(entry.trade.side, entry.trade.open_contracts)
    for entry in entries:
        if entry.where != WHERE_BOTH:
            continue
        ledger = ledger_by_contract[id(entry.broker)]
        held = entry.broker.quantity
        if not math.isclose(ledger, held):
            entry.notes.append(f"quantity differs: the ledger's open trades of this contract hold {ledger:+d}, "
                               f"the broker {held:+g} (tp reconcile-positions)")


def _symbol(entry: _Entry) -> str:
    if entry.trade is not None:
        return entry.trade.symbol
    return entry.contract.symbol


# ---------------------------------------------------------------- quotes


def _quotes(broker: BrokerPort, contracts: Sequence[Contract]) -> dict[int, Quote]:
    if not contracts:
        return {}
    return {quote.contract.con_id: quote for quote in broker.quotes(list(contracts))}


def underlying_spec(symbol: str) -> ContractSpec:
    """The underlying's contract spec: an index for the cash-settled classes, else a stock."""
    symbol = symbol.strip().upper()
    return ContractSpec.index(symbol) if symbol in INDEX_SYMBOLS else ContractSpec.stock(symbol)


def _underlying_prices(broker: BrokerPort, symbols: Iterable[str]) -> dict[str, float]:
    """The price of each underlying (one qualification, one quote request); symbols the
    broker does not know are left out (the option's greeks carry a price then)."""
    symbols = list(symbols)
    if not symbols:
        return {}
    specs = [underlying_spec(symbol) for symbol in symbols]
    try:
        contracts: list[Contract] = list(broker.qualify(*specs))
    except ContractError:
        contracts = []
        for spec in specs:
            try:
                contracts.extend(broker.qualify(spec))
            except ContractError:
                continue
    quotes = _quotes(broker, contracts)
    prices = {}
    for contract in contracts:
        quote = quotes.get(contract.con_id)
        price = quote.price if quote is not None else None
        if price is not None and price > 0:
            prices[contract.symbol] = price
    return prices


# ---------------------------------------------------------------- the view


def _view(entry: _Entry, quote: Quote | None, underlying_price: float | None, today: date) -> PositionView:
    greeks = quote.greeks if quote is not None else None
    if underlying_price is None and greeks is not None:
        underlying_price = greeks.underlying_price
    common: dict[str, Any] = dict(
        as_of_day=today,
        bid=quote.bid if quote is not None else None,
        ask=quote.ask if quote is not None else None,
        last=quote.last if quote is not None else None,
        underlying_price=underlying_price,
        delta=greeks.delta if greeks is not None else None,
        gamma=greeks.gamma if greeks is not None else None,
        theta=greeks.theta if greeks is not None else None,
        vega=greeks.vega if greeks is not None else None,
        iv=greeks.implied_vol if greeks is not None else None,
        con_id=entry.contract.con_id if entry.contract is not None and entry.contract.con_id else None,
    )
    trade = entry.trade
    if trade is not None:
        return PositionView(
            trade_id=trade.id, symbol=trade.symbol, right=trade.right, strike=trade.strike,
            expiration=trade.expiration, contracts=trade.open_contracts, entry_price=trade.entry_price,
            side=trade.side, multiplier=trade.multiplier, account=trade.account,
            entry_day=calendar.new_york_date(trade.entry_time), **common)
    position, contract = entry.broker, entry.contract
    multiplier = contract.multiplier or 100
    # IBKR's average cost of an option includes the multiplier: per share it is avg_cost / multiplier.
    return PositionView(
        trade_id=None, symbol=contract.symbol, right=contract.right or "P", strike=contract.strike or 0.0,
        expiration=contract.expiry, contracts=int(round(abs(position.quantity))),
        entry_price=max(abs(position.avg_cost) / multiplier, 0.0), side="short" if position.quantity < 0 else "long",
        multiplier=multiplier, account=position.account or None, **common)
