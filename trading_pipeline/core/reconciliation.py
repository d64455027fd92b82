"""Ledger against broker: which option positions and which orders disagree, and why.

Pure comparisons of plain values; the caller loads both sides, shows the result, and (only
when asked to apply) writes what it says. Every finding carries a sentence a person can act
on, and ``as_dict()`` gives the whole result as JSON-ready data (the ``reconciliation_runs``
report).

Positions (:func:`compare_positions`, ``reconcile-positions``)
-------------------------------------------------------------
Quantities are signed contracts, as the broker counts them: short = negative.

* One contract is identified by **account + conId** when both sides know them; otherwise by
  its **terms**: (symbol, right, strike, expiration), within the same account when the
  ledger row names one. A ledger row without an account matches the terms in whichever
  account holds them; when several accounts hold them it cannot be told apart and is
  reported as ``ambiguous`` (for a person, never closed automatically).
* Several open ledger trades of one contract (two entries on different days) are summed and
  compared with the broker's quantity as one.
* Results: ``matched`` (same quantity), ``quantity_mismatches`` (ledger and broker both hold
  it, in different quantities, the difference broker - ledger), ``only_at_broker`` (held at
  the broker, not open in the ledger: import it as a reconciliation trade), ``only_in_ledger``
  (open in the ledger, not at the broker: closed outside the pipeline, expired or assigned:
  close it), ``ambiguous``.
* Broker positions of quantity 0 (IBKR lists positions closed today with 0) are ignored.

Orders (:func:`compare_orders`, ``sync-orders``)
------------------------------------------------
The ledger's ``broker_orders`` rows against the broker's orders (open and completed), each
identified by its permanent id (``perm_id``), else by its ``order_ref`` when exactly one order
on each side carries it.

* ``new_at_broker``: a broker order the ledger does not know (to add);
* ``to_update``: the broker is further along in a way that cannot contradict the ledger: a
  working order's new status, more fills, a commission or an average price the ledger did
  not have yet;
* ``conflicts``: the two disagree about something already settled: a final status against a
  different final status or a working one (the ledger says Filled, the broker Cancelled),
  fewer fills at the broker than in the ledger, a filled quantity that differs once either
  side is Filled, a commission or an average price that differs when both know it. **An
  order with a conflict is not updated at all**: every difference is reported for a person;
  nothing is overwritten silently;
* ``unchanged``; ``missing_at_broker``: in the ledger, not in the broker's list (IBKR lists
  the current session's orders only, so this is information, not an action).

Status texts are IBKR's (Submitted, Filled, ...); Cancelled and ApiCancelled mean the same.
Money compares to the half cent (commissions) and to 1e-6 (prices), counts exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from trading_pipeline.core.intents import (
    BROKER_CANCELLED_STATUSES,
    BROKER_FILLED_STATUSES,
    BROKER_REJECTED_STATUSES,
    KNOWN_BROKER_STATUSES,
    IntentStatus,
)
from trading_pipeline.core.positions import normalize_right

# ============================================================================ positions

# Strikes are compared to this many decimals (a ledger Decimal 180.0000 and a broker float 180.0).
_STRIKE_DECIMALS = 4


def _terms_text(symbol: str, right: str, strike: float, expiration: date) -> str:
    return f"{symbol} {expiration.isoformat()} {strike:g} {right}"


def _quantity_text(quantity: int) -> str:
    """-2 -> "2 short", 3 -> "3 long", 0 -> "none"."""
    if quantity == 0:
        return "none"
    return f"{abs(quantity)} {'short' if quantity < 0 else 'long'}"


@dataclass(frozen=True)
class LedgerPosition:
    """One open trade in the ledger. ``quantity``: its open contracts, signed (short
    negative; :func:`trading_pipeline.core.positions.signed_quantity` converts side + count)."""

    trade_id: int
    symbol: str
    right: str
    strike: float
    expiration: date
    quantity: int
    account: str | None = None
    con_id: int | None = None
    multiplier: int = 100
    entry_price: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", str(self.symbol).strip().upper())
        object.__setattr__(self, "right", normalize_right(self.right))
        object.__setattr__(self, "strike", float(self.strike))
        object.__setattr__(self, "account", self.account or None)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity == 0:
            raise ValueError(f"ledger trade {self.trade_id}: quantity must be a non-zero whole number "
                             f"(negative when short), not {self.quantity!r}")

    @property
    def terms(self) -> tuple[str, str, float, date]:
        return (self.symbol, self.right, round(self.strike, _STRIKE_DECIMALS), self.expiration)

    def describe(self) -> str:
        return _terms_text(self.symbol, self.right, self.strike, self.expiration)

    def as_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id, "account": self.account, "con_id": self.con_id, "symbol": self.symbol,
            "right": self.right, "strike": self.strike, "expiration": self.expiration.isoformat(),
            "quantity": self.quantity, "multiplier": self.multiplier, "entry_price": self.entry_price,
        }


@dataclass(frozen=True)
class BrokerPosition:
    """One option position at the broker. ``quantity`` signed (short negative), whole
    contracts; ``average_price`` per share (IBKR's avgCost divided by the multiplier)."""

    account: str
    con_id: int
    symbol: str
    right: str
    strike: float
    expiration: date
    quantity: int
    multiplier: int = 100
    average_price: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", str(self.symbol).strip().upper())
        object.__setattr__(self, "right", normalize_right(self.right))
        object.__setattr__(self, "strike", float(self.strike))
        quantity = self.quantity
        # IBKR reports positions as floats (-2.0); a fraction of a contract is not a position.
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)) or not float(quantity).is_integer():
            raise ValueError(f"broker position {self.account}:{self.con_id}: quantity must be whole contracts, "
                             f"not {quantity!r}")
        object.__setattr__(self, "quantity", int(quantity))

    @property
    def terms(self) -> tuple[str, str, float, date]:
        return (self.symbol, self.right, round(self.strike, _STRIKE_DECIMALS), self.expiration)

    def describe(self) -> str:
        return _terms_text(self.symbol, self.right, self.strike, self.expiration)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account, "con_id": self.con_id, "symbol": self.symbol, "right": self.right,
            "strike": self.strike, "expiration": self.expiration.isoformat(), "quantity": self.quantity,
            "multiplier": self.multiplier, "average_price": self.average_price,
        }


@dataclass(frozen=True)
class PositionMatch:
    """A contract the ledger and the broker both hold. ``difference`` = broker - ledger
    (0 for a match): the contracts the ledger must add (negative: sell/short more) to agree."""

    broker: BrokerPosition
    ledger: tuple[LedgerPosition, ...]
    explanation: str

    @property
    def ledger_quantity(self) -> int:
        return sum(position.quantity for position in self.ledger)

    @property
    def broker_quantity(self) -> int:
        return self.broker.quantity

    @property
    def difference(self) -> int:
        return self.broker_quantity - self.ledger_quantity

    @property
    def trade_ids(self) -> tuple[int, ...]:
        return tuple(position.trade_id for position in self.ledger)

    def as_dict(self) -> dict[str, Any]:
        return {
            "contract": self.broker.describe(), "account": self.broker.account, "con_id": self.broker.con_id,
            "ledger_quantity": self.ledger_quantity, "broker_quantity": self.broker_quantity,
            "difference": self.difference, "trade_ids": list(self.trade_ids), "explanation": self.explanation,
            "broker": self.broker.as_dict(), "ledger": [position.as_dict() for position in self.ledger],
        }


@dataclass(frozen=True)
class BrokerOnly:
    """Held at the broker, not open in the ledger: to import."""

    broker: BrokerPosition
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"contract": self.broker.describe(), "explanation": self.explanation, "broker": self.broker.as_dict()}


@dataclass(frozen=True)
class LedgerOnly:
    """Open in the ledger, not at the broker: to close (or, when ambiguous, to review)."""

    ledger: LedgerPosition
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"contract": self.ledger.describe(), "explanation": self.explanation, "ledger": self.ledger.as_dict()}


@dataclass(frozen=True)
class PositionReconciliation:
    matched: tuple[PositionMatch, ...] = ()
    quantity_mismatches: tuple[PositionMatch, ...] = ()
    only_at_broker: tuple[BrokerOnly, ...] = ()
    only_in_ledger: tuple[LedgerOnly, ...] = ()
    ambiguous: tuple[LedgerOnly, ...] = ()

    @property
    def discrepancies(self) -> int:
        """Findings that need an action or a person (everything but the matches)."""
        return len(self.quantity_mismatches) + len(self.only_at_broker) + len(self.only_in_ledger) + len(self.ambiguous)

    @property
    def clean(self) -> bool:
        return self.discrepancies == 0

    def summary(self) -> str:
        return (f"{len(self.matched)} matched, {len(self.quantity_mismatches)} quantity mismatch(es), "
                f"{len(self.only_at_broker)} only at the broker, {len(self.only_in_ledger)} only in the ledger"
                + (f", {len(self.ambiguous)} ambiguous" if self.ambiguous else ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "discrepancies": self.discrepancies,
            "matched": [item.as_dict() for item in self.matched],
            "quantity_mismatches": [item.as_dict() for item in self.quantity_mismatches],
            "only_at_broker": [item.as_dict() for item in self.only_at_broker],
            "only_in_ledger": [item.as_dict() for item in self.only_in_ledger],
            "ambiguous": [item.as_dict() for item in self.ambiguous],
        }


def compare_positions(
    ledger: Sequence[LedgerPosition] | Iterable[LedgerPosition],
    broker: Sequence[BrokerPosition] | Iterable[BrokerPosition],
) -> PositionReconciliation:
    """What differs between the ledger's open trades and the broker's option positions (see
    the module docstring). Results are in a stable order: broker positions by account, terms
    and conId; ledger rows by trade id."""
    # One entry per broker contract (account + conId); duplicates in the list are summed.
    held: dict[tuple[str, int], BrokerPosition] = {}
    for position in broker:
        if position.quantity == 0:
            continue
        key = (position.account, position.con_id)
        if key in held:
            earlier = held[key]
            position = BrokerPosition(
                earlier.account, earlier.con_id, earlier.symbol, earlier.right, earlier.strike, earlier.expiration,
                earlier.quantity + position.quantity, earlier.multiplier, earlier.average_price,
            )
        held[key] = position
    by_terms: dict[tuple[str, str, float, date], list[tuple[str, int]]] = {}
    for key, position in held.items():
        by_terms.setdefault(position.terms, []).append(key)

    assigned: dict[tuple[str, int], list[LedgerPosition]] = {}
    only_in_ledger: list[LedgerOnly] = []
    ambiguous: list[LedgerOnly] = []
    for row in sorted(ledger, key=lambda item: item.trade_id):
        key = _broker_key_for(row, held, by_terms)
        if isinstance(key, list):  # several accounts hold the terms; the row names none
            accounts = ", ".join(sorted(account for account, _ in key))
            ambiguous.append(LedgerOnly(row, (
                f"trade {row.trade_id} {row.describe()} ({_quantity_text(row.quantity)}) names no account and "
                f"the broker holds this contract in several ({accounts}): review it by hand")))
        elif key is None:
            only_in_ledger.append(LedgerOnly(row, (
                f"trade {row.trade_id} {row.describe()} is open in the ledger ({_quantity_text(row.quantity)}) "
                f"but not held at the broker{_account_words(row.account)}: it was closed outside the pipeline, "
                f"expired or was assigned; close it in the ledger")))
        else:
            assigned.setdefault(key, []).append(row)

    matched: list[PositionMatch] = []
    mismatches: list[PositionMatch] = []
    only_at_broker: list[BrokerOnly] = []
    for key in sorted(held, key=lambda k: (k[0], held[k].terms, k[1])):
        position = held[key]
        rows = assigned.get(key)
        if not rows:
            only_at_broker.append(BrokerOnly(position, (
                f"{position.describe()} is held at the broker ({_quantity_text(position.quantity)}, account "
                f"{position.account}, conId {position.con_id}) but not open in the ledger: import it as a "
                f"reconciliation trade")))
            continue
        ledger_quantity = sum(row.quantity for row in rows)
        trades = ", ".join(str(row.trade_id) for row in rows)
        if ledger_quantity == position.quantity:
            matched.append(PositionMatch(position, tuple(rows), (
                f"{position.describe()}: {_quantity_text(position.quantity)} in the ledger (trade(s) {trades}) "
                f"and at the broker")))
            continue
        difference = position.quantity - ledger_quantity
        if (ledger_quantity < 0) != (position.quantity < 0):
            detail = "the broker holds the other side"
        elif abs(position.quantity) > abs(ledger_quantity):
            detail = f"the broker holds {abs(difference)} more"
        else:
            detail = f"the broker holds {abs(difference)} fewer"
        mismatches.append(PositionMatch(position, tuple(rows), (
            f"{position.describe()}: ledger {_quantity_text(ledger_quantity)} (trade(s) {trades}), broker "
            f"{_quantity_text(position.quantity)}: {detail} (difference {difference:+d})")))

    return PositionReconciliation(
        matched=tuple(matched),
        quantity_mismatches=tuple(mismatches),
        only_at_broker=tuple(only_at_broker),
        only_in_ledger=tuple(only_in_ledger),
        ambiguous=tuple(ambiguous),
    )


def _account_words(account: str | None) -> str:
    return f" in account {account}" if account else ""


def _broker_key_for(
    row: LedgerPosition,
    held: dict[tuple[str, int], BrokerPosition],
    by_terms: dict[tuple[str, str, float, date], list[tuple[str, int]]],
) -> tuple[str, int] | list[tuple[str, int]] | None:
    """The broker contract a ledger row belongs to: by account + conId, else by terms (in the
    row's account, or in the only account holding them); a list when several accounts do."""
    if row.account is not None and row.con_id is not None and (row.account, row.con_id) in held:
        return (row.account, row.con_id)
    candidates = by_terms.get(row.terms, [])
    if row.account is not None:
        candidates = [key for key in candidates if key[0] == row.account]
    # A known conId that differs from the broker's is a different contract (e.g. an adjusted
    # option after a split keeps its terms text but not its conId).
    if row.con_id is not None:
        candidates = [key for key in candidates if key[1] == row.con_id]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    return sorted(candidates)


# ============================================================================ orders

# Money closer than these counts as equal (commissions are cents; prices have more digits).
COMMISSION_TOLERANCE = 0.005
PRICE_TOLERANCE = 1e-6

FILLED, CANCELLED, REJECTED = "filled", "cancelled", "rejected"


def final_meaning(status: str) -> str | None:
    """"filled", "cancelled" or "rejected" for a final status, None for a working one. Takes
    IBKR's texts (Filled, Cancelled, ApiCancelled, Inactive) and the ledger's intent statuses
    (FILLED, CANCELLED, REJECTED), so either vocabulary can stand on the ledger side."""
    if status in BROKER_FILLED_STATUSES or status == IntentStatus.FILLED.value:
        return FILLED
    if status in BROKER_CANCELLED_STATUSES or status == IntentStatus.CANCELLED.value:
        return CANCELLED
    if status in BROKER_REJECTED_STATUSES or status == IntentStatus.REJECTED.value:
        return REJECTED
    return None


@dataclass(frozen=True)
class LedgerOrder:
    """One order as the ledger's ``broker_orders`` holds it (``commission``: the sum of its
    fills' commissions, None while unknown). ``status`` is IBKR's text or an intent status."""

    perm_id: int | None
    order_ref: str | None
    status: str
    filled: int = 0
    quantity: int | None = None
    avg_fill_price: float | None = None
    commission: float | None = None
    symbol: str = ""
    row_id: int | None = None

    def label(self) -> str:
        ident = f"perm {self.perm_id}" if self.perm_id is not None else f"ref {self.order_ref}"
        return f"order {ident}{' ' + self.symbol if self.symbol else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "perm_id": self.perm_id, "order_ref": self.order_ref, "status": self.status, "filled": self.filled,
            "quantity": self.quantity, "avg_fill_price": self.avg_fill_price, "commission": self.commission,
            "symbol": self.symbol, "row_id": self.row_id,
        }


@dataclass(frozen=True)
class BrokerOrderRecord:
    """One order as the broker reports it (open or completed), with the sum of its fills'
    commissions when reported. The descriptive fields are what the ledger stores on adding it."""

    perm_id: int
    order_ref: str
    status: str
    filled: int = 0
    quantity: int | None = None
    avg_fill_price: float | None = None
    commission: float | None = None
    symbol: str = ""
    con_id: int | None = None
    account: str = ""
    action: str = ""
    order_type: str = ""
    limit_price: float | None = None
    broker_order_id: int | None = None
    client_id: int | None = None

    def label(self) -> str:
        return f"order perm {self.perm_id}{' ' + self.symbol if self.symbol else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class OrderDifference:
    """One field on which the ledger and the broker differ."""

    field: str
    ledger: Any
    broker: Any
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "ledger": self.ledger, "broker": self.broker, "explanation": self.explanation}


@dataclass(frozen=True)
class OrderComparison:
    """A ledger order and its broker order, with what differs (updates or conflicts)."""

    ledger: LedgerOrder
    broker: BrokerOrderRecord
    differences: tuple[OrderDifference, ...] = ()
    explanation: str = ""

    @property
    def changes(self) -> dict[str, Any]:
        """field -> the broker's value (what an update writes)."""
        return {difference.field: difference.broker for difference in self.differences}

    def as_dict(self) -> dict[str, Any]:
        return {
            "order": self.broker.label(), "explanation": self.explanation,
            "differences": [difference.as_dict() for difference in self.differences],
            "ledger": self.ledger.as_dict(), "broker": self.broker.as_dict(),
        }


@dataclass(frozen=True)
class NewBrokerOrder:
    broker: BrokerOrderRecord
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"order": self.broker.label(), "explanation": self.explanation, "broker": self.broker.as_dict()}


@dataclass(frozen=True)
class MissingBrokerOrder:
    ledger: LedgerOrder
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"order": self.ledger.label(), "explanation": self.explanation, "ledger": self.ledger.as_dict()}


@dataclass(frozen=True)
class OrderReconciliation:
    new_at_broker: tuple[NewBrokerOrder, ...] = ()
    to_update: tuple[OrderComparison, ...] = ()
    conflicts: tuple[OrderComparison, ...] = ()
    unchanged: tuple[OrderComparison, ...] = ()
    missing_at_broker: tuple[MissingBrokerOrder, ...] = ()

    @property
    def discrepancies(self) -> int:
        """Findings that change the ledger or need a person (not unchanged, not missing)."""
        return len(self.new_at_broker) + len(self.to_update) + len(self.conflicts)

    @property
    def clean(self) -> bool:
        return not self.conflicts

    def summary(self) -> str:
        return (f"{len(self.new_at_broker)} new at the broker, {len(self.to_update)} to update, "
                f"{len(self.conflicts)} conflict(s), {len(self.unchanged)} unchanged, "
                f"{len(self.missing_at_broker)} not in the broker's list")

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "discrepancies": self.discrepancies,
            "new_at_broker": [item.as_dict() for item in self.new_at_broker],
            "to_update": [item.as_dict() for item in self.to_update],
            "conflicts": [item.as_dict() for item in self.conflicts],
            "unchanged": [item.as_dict() for item in self.unchanged],
            "missing_at_broker": [item.as_dict() for item in self.missing_at_broker],
        }


def _money_differs(a: float | None, b: float | None, tolerance: float) -> bool:
    return a is not None and b is not None and not math.isclose(a, b, rel_tol=0.0, abs_tol=tolerance)


def _money(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _compare_one(ledger: LedgerOrder, broker: BrokerOrderRecord) -> tuple[list[OrderDifference], list[OrderDifference]]:
    """(updates, conflicts) between one ledger order and its broker order."""
    updates: list[OrderDifference] = []
    conflicts: list[OrderDifference] = []
    ledger_final = final_meaning(ledger.status)
    broker_final = final_meaning(broker.status)

    # Status: a working order may move to anything; a final one may not change its meaning
    # (Cancelled and ApiCancelled, or FILLED and Filled, say the same: nothing to write).
    if ledger.status != broker.status:
        if ledger_final is not None:
            if broker_final != ledger_final:
                conflicts.append(OrderDifference("status", ledger.status, broker.status,
                                                 f"the ledger says {ledger.status}, the broker {broker.status}"))
        elif broker_final is not None or ledger.status in KNOWN_BROKER_STATUSES:
            # Working -> final, or one broker working text to another (PreSubmitted ->
            # Submitted). An intent status (ACKNOWLEDGED) against a working text says the same.
            updates.append(OrderDifference("status", ledger.status, broker.status,
                                           f"status {ledger.status} -> {broker.status}"))

    # Fills only grow, and only while the ledger still has the order working.
    grew = False
    if broker.filled != ledger.filled:
        if broker.filled < ledger.filled:
            conflicts.append(OrderDifference("filled", ledger.filled, broker.filled,
                                             f"the ledger has {ledger.filled} filled, the broker only {broker.filled}"))
        elif ledger_final is not None:
            conflicts.append(OrderDifference("filled", ledger.filled, broker.filled,
                                             f"the ledger closed the order ({ledger.status}) with {ledger.filled} "
                                             f"filled, the broker reports {broker.filled}"))
        else:
            grew = True
            updates.append(OrderDifference("filled", ledger.filled, broker.filled,
                                           f"filled {ledger.filled} -> {broker.filled}"))

    # Average price: written when the ledger has none, or when more fills moved it.
    if broker.avg_fill_price is not None and broker.filled > 0:
        if ledger.avg_fill_price is None or (grew and _money_differs(
                ledger.avg_fill_price, broker.avg_fill_price, PRICE_TOLERANCE)):
            updates.append(OrderDifference("avg_fill_price", ledger.avg_fill_price, broker.avg_fill_price,
                                           f"average fill price {_money(ledger.avg_fill_price)} -> "
                                           f"{_money(broker.avg_fill_price)}"))
        elif _money_differs(ledger.avg_fill_price, broker.avg_fill_price, PRICE_TOLERANCE):
            conflicts.append(OrderDifference("avg_fill_price", ledger.avg_fill_price, broker.avg_fill_price,
                                             f"average fill price: ledger {_money(ledger.avg_fill_price)}, broker "
                                             f"{_money(broker.avg_fill_price)}"))

    # Commission: written once known; a different known value is a conflict.
    if broker.commission is not None:
        if ledger.commission is None:
            updates.append(OrderDifference("commission", None, broker.commission,
                                           f"commission {_money(broker.commission)} reported"))
        elif _money_differs(ledger.commission, broker.commission, COMMISSION_TOLERANCE):
            conflicts.append(OrderDifference("commission", ledger.commission, broker.commission,
                                             f"commission: ledger {_money(ledger.commission)}, broker "
                                             f"{_money(broker.commission)}"))
    return updates, conflicts


def compare_orders(
    ledger_orders: Iterable[LedgerOrder],
    broker_orders: Iterable[BrokerOrderRecord],
) -> OrderReconciliation:
    """What ``sync-orders`` must add, update and report (see the module docstring). Orders
    are matched by perm_id, else by an order_ref carried by exactly one order on each side."""
    ledger_list = list(ledger_orders)
    broker_list = sorted(broker_orders, key=lambda order: order.perm_id)
    broker_by_perm: dict[int, BrokerOrderRecord] = {}
    for order in broker_list:
        if order.perm_id in broker_by_perm:
            raise ValueError(f"the broker's list holds perm_id {order.perm_id} twice")
        broker_by_perm[order.perm_id] = order
    broker_ref_count: dict[str, int] = {}
    for order in broker_list:
        if order.order_ref:
            broker_ref_count[order.order_ref] = broker_ref_count.get(order.order_ref, 0) + 1
    ledger_ref_count: dict[str, int] = {}
    for order in ledger_list:
        if order.order_ref:
            ledger_ref_count[order.order_ref] = ledger_ref_count.get(order.order_ref, 0) + 1
    broker_by_ref = {order.order_ref: order for order in broker_list if broker_ref_count.get(order.order_ref) == 1}

    used: set[int] = set()
    pairs: list[tuple[LedgerOrder, BrokerOrderRecord]] = []
    missing: list[MissingBrokerOrder] = []
    # perm_id first for every ledger order, then refs, so a ref never steals a perm_id match.
    unmatched: list[LedgerOrder] = []
    for order in ledger_list:
        if order.perm_id is not None and order.perm_id in broker_by_perm and order.perm_id not in used:
            used.add(order.perm_id)
            pairs.append((order, broker_by_perm[order.perm_id]))
        else:
            unmatched.append(order)
    for order in unmatched:
        candidate = broker_by_ref.get(order.order_ref or "")
        if (candidate is not None and candidate.perm_id not in used and ledger_ref_count.get(order.order_ref or "") == 1
                and order.perm_id in (None, candidate.perm_id)):
            used.add(candidate.perm_id)
            pairs.append((order, candidate))
            continue
        shared = broker_ref_count.get(order.order_ref or "", 0)
        if shared > 1:
            reason = (f"{order.label()} ({order.status}) has no perm_id match and {shared} broker orders carry "
                      f"its ref {order.order_ref}: it cannot be told which; review it")
        else:
            reason = (f"{order.label()} ({order.status}) is not in the broker's list (IBKR lists the current "
                      f"session's orders only): nothing to do unless it should be there")
        missing.append(MissingBrokerOrder(order, reason))

    new: list[NewBrokerOrder] = []
    for order in broker_list:
        if order.perm_id in used:
            continue
        new.append(NewBrokerOrder(order, (
            f"{order.label()} ({order.status}, {order.filled} filled"
            f"{', ref ' + order.order_ref if order.order_ref else ''}) is not in the ledger: add it")))

    to_update: list[OrderComparison] = []
    conflicts: list[OrderComparison] = []
    unchanged: list[OrderComparison] = []
    for ledger, broker in sorted(pairs, key=lambda pair: pair[1].perm_id):
        updates, problems = _compare_one(ledger, broker)
        if problems:
            # Nothing of this order is written: the updates are listed with the conflicts.
            text = "; ".join(item.explanation for item in problems)
            conflicts.append(OrderComparison(ledger, broker, tuple(problems + updates),
                                             f"{broker.label()}: conflict: {text}; not changed, review it"))
        elif updates:
            text = "; ".join(item.explanation for item in updates)
            to_update.append(OrderComparison(ledger, broker, tuple(updates), f"{broker.label()}: {text}"))
        else:
            unchanged.append(OrderComparison(ledger, broker, (), f"{broker.label()}: ledger and broker agree "
                                                                 f"({broker.status}, {broker.filled} filled)"))
    return OrderReconciliation(
        new_at_broker=tuple(new),
        to_update=tuple(to_update),
        conflicts=tuple(conflicts),
        unchanged=tuple(unchanged),
        missing_at_broker=tuple(missing),
    )
