"""The broker port: what the project asks of a broker, in plain values.

The rest of the project (Dagster ops, the CLI, the execution and reconciliation code) talks
to a broker only through :class:`BrokerPort`. Its one implementation is the IBKR adapter
(``trading_pipeline.broker.ibkr.IbkrBroker``, on ib_async), which trades a real TWS / IB
Gateway and the project's simulator alike. No ib_async type crosses this boundary: every
argument and result is a frozen dataclass defined here.

The port is synchronous: Dagster ops and CLI commands are synchronous code. Every call is
bounded by a timeout and fails with a :class:`BrokerError` subclass that says what went
wrong in words a user understands; nothing hangs.

Units and conventions:

- times are timezone-aware UTC ``datetime``; expirations and bar days are ``date``;
- prices in the contract's currency per unit (an option's premium per share, as quoted);
- ``right`` is ``"P"`` or ``"C"``; ``action`` is ``"BUY"`` or ``"SELL"``;
- greeks as TWS reports them: vega per 1 volatility point (0.01), theta per calendar day;
  implied volatility per 1.00 (0.25 means 25 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Protocol, runtime_checkable

from trading_pipeline.core.pricing import FALLBACK_OPTION_INCREMENTS, PriceIncrements
from trading_pipeline.errors import TradingPipelineError

# ============================================================================ errors


class BrokerError(TradingPipelineError):
    """Base of every error the broker port raises on purpose."""


class BrokerConnectionError(BrokerError):
    """The broker could not be reached or refused the connection."""


class ClientIdInUseError(BrokerConnectionError):
    """Another connection already uses this client id (TWS error 326)."""


class BrokerDisconnected(BrokerError):
    """The connection is down (lost and not re-established, or never opened)."""


class BrokerTimeout(BrokerError):
    """The broker did not answer a request in time."""


class BrokerRequestError(BrokerError):
    """The broker answered a request with an error (TWS error code and text)."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


class ContractError(BrokerError):
    """Contracts that are unknown to the broker or ambiguous; lists every problem."""

    def __init__(self, problems: Sequence["ContractProblem"]):
        self.problems = tuple(problems)
        super().__init__("; ".join(problem.describe() for problem in self.problems))


class OrderRejected(BrokerError):
    """The broker refused an order (or a modification, or a cancel)."""

    def __init__(self, message: str, *, order_id: int, code: int | None = None):
        super().__init__(message)
        self.order_id = order_id
        self.code = code


# ============================================================================ contracts


class SecType(str, Enum):
    STOCK = "STK"
    INDEX = "IND"
    OPTION = "OPT"
    # Positions and executions may name other kinds; the project trades the three above.
    FUTURE = "FUT"
    FUTURE_OPTION = "FOP"
    CASH = "CASH"
    OTHER = "OTHER"


def _check_right(right: str | None) -> str | None:
    if right is None:
        return None
    normalized = right.strip().upper()[:1]
    if normalized not in ("P", "C"):
        raise ValueError(f"option right must be P or C, not {right!r}")
    return normalized


@dataclass(frozen=True)
class ContractSpec:
    """What a caller asks the broker to qualify (a contract described by its terms)."""

    symbol: str
    sec_type: SecType = SecType.STOCK
    expiry: date | None = None
    strike: float | None = None
    right: str | None = None
    trading_class: str = ""
    exchange: str = "SMART"
    currency: str = "USD"
    primary_exchange: str = ""

    def __post_init__(self) -> None:
        symbol = self.symbol.strip().upper()
        if not symbol:
            raise ValueError("a contract needs a symbol")
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "sec_type", SecType(self.sec_type))
        object.__setattr__(self, "right", _check_right(self.right))
        object.__setattr__(self, "trading_class", self.trading_class.strip().upper())
        if self.sec_type is SecType.OPTION:
            if self.expiry is None or self.strike is None or self.right is None:
                raise ValueError(f"an option on {symbol} needs an expiry, a strike and a right")
            if not (self.strike > 0 and math.isfinite(self.strike)):
                raise ValueError(f"strike must be a positive number, not {self.strike!r}")

    @classmethod
    def stock(cls, symbol: str, **terms) -> "ContractSpec":
        return cls(symbol, SecType.STOCK, **terms)

    @classmethod
    def index(cls, symbol: str, **terms) -> "ContractSpec":
        return cls(symbol, SecType.INDEX, **terms)

    @classmethod
    def option(cls, symbol: str, expiry: date, strike: float, right: str, *,
               trading_class: str = "", **terms) -> "ContractSpec":
        return cls(symbol, SecType.OPTION, expiry=expiry, strike=float(strike), right=right,
                   trading_class=trading_class, **terms)

    def describe(self) -> str:
        if self.sec_type is SecType.OPTION:
            text = f"{self.symbol} {self.expiry.isoformat()} {self.strike:g} {self.right}"
            return f"{text} ({self.trading_class})" if self.trading_class else text
        return f"{self.symbol} ({self.sec_type.value})"


@dataclass(frozen=True)
class Contract:
    """A contract the broker knows, with its id (the result of qualification)."""

    con_id: int
    symbol: str
    sec_type: SecType
    exchange: str = "SMART"
    currency: str = "USD"
    primary_exchange: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    expiry: date | None = None
    strike: float | None = None
    right: str | None = None
    multiplier: int = 1

    @property
    def is_option(self) -> bool:
        return self.sec_type is SecType.OPTION

    def describe(self) -> str:
        if self.is_option:
            return (f"{self.symbol} {self.expiry.isoformat() if self.expiry else '?'} "
                    f"{self.strike:g} {self.right} ({self.trading_class or self.symbol})")
        return f"{self.symbol} ({self.sec_type.value})"


@dataclass(frozen=True)
class ContractProblem:
    """Why one requested contract could not be qualified."""

    spec: ContractSpec
    reason: str                                   # "unknown" or "ambiguous"
    candidates: tuple[Contract, ...] = ()
    detail: str = ""                              # the broker's own words, when it gave any
    subject: str = ""                             # how to name what was asked, if not the spec

    def describe(self) -> str:
        subject = self.subject or self.spec.describe()
        if self.reason == "ambiguous":
            listed = ", ".join(
                f"{c.describe()} conId {c.con_id}" for c in self.candidates
            )
            return (f"{subject} is ambiguous: it matches {len(self.candidates)} "
                    f"contracts ({listed}); name one, e.g. with its trading class")
        text = f"{subject} is unknown to the broker"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class OptionChainParameters:
    """One (exchange, trading class) row of an underlying's option chain."""

    symbol: str
    underlying_con_id: int
    exchange: str
    trading_class: str
    multiplier: int
    expirations: tuple[date, ...]
    strikes: tuple[float, ...]


# ============================================================================ market data


@dataclass(frozen=True)
class OptionGreeks:
    """Greeks of one option, from the broker's model or computed by us from the mid."""

    implied_vol: float
    delta: float
    gamma: float
    vega: float                   # per 1 volatility point
    theta: float                  # per calendar day
    underlying_price: float
    model_price: float | None
    source: str                   # "model" (the broker's) or "computed" (ours, from bid/ask)


@dataclass(frozen=True)
class Quote:
    """A snapshot of one contract's market; fields the market did not send are None."""

    contract: Contract
    time: datetime                # the broker's time when the snapshot was asked for
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    close: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    volume: float | None = None
    open_interest: float | None = None
    greeks: OptionGreeks | None = None
    greeks_problem: str = ""      # why an option has no greeks, when it has none

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None or self.bid <= 0 or self.ask < self.bid:
            return None
        return (self.bid + self.ask) / 2.0

    @property
    def price(self) -> float | None:
        """The best single price: the mid, else the last trade, else the prior close."""
        for value in (self.mid, self.last, self.close):
            if value is not None:
                return value
        return None


@dataclass(frozen=True)
class DailyBar:
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float


# ============================================================================ orders


class OrderType(str, Enum):
    LIMIT = "LMT"
    MARKET = "MKT"
    ADAPTIVE = "ADAPTIVE"         # IBKR's Adaptive algo on a limit (or market) order
    MIDPRICE = "MIDPRICE"         # IBKR's MIDPRICE order type, optionally capped by a limit


ADAPTIVE_PRIORITIES = ("Patient", "Normal", "Urgent")
TIMES_IN_FORCE = ("DAY", "GTC", "IOC")


@dataclass(frozen=True)
class OrderRequest:
    """One order to send. Build it with :meth:`limit`, :meth:`market`, :meth:`adaptive`
    or :meth:`midprice`; ``order_ref`` is passed through to the broker unchanged (the
    project writes a deterministic reference there so a restart can find its orders)."""

    action: str
    quantity: float
    order_type: OrderType
    limit_price: float | None = None
    adaptive_priority: str = ""
    tif: str = "DAY"
    order_ref: str = ""
    account: str = ""
    outside_rth: bool = False

    def __post_init__(self) -> None:
        action = self.action.strip().upper()
        if action not in ("BUY", "SELL"):
            raise ValueError(f"action must be BUY or SELL, not {self.action!r}")
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "order_type", OrderType(self.order_type))
        if not (self.quantity > 0 and math.isfinite(self.quantity)):
            raise ValueError(f"quantity must be a positive number, not {self.quantity!r}")
        if self.tif not in TIMES_IN_FORCE:
            raise ValueError(f"time in force must be one of {', '.join(TIMES_IN_FORCE)}")
        if self.limit_price is not None and not (self.limit_price > 0 and math.isfinite(self.limit_price)):
            raise ValueError(f"limit price must be a positive number, not {self.limit_price!r}")
        kind = self.order_type
        if kind is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order needs a limit price")
        if kind is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a market order has no limit price")
        if kind is OrderType.ADAPTIVE:
            priority = self.adaptive_priority or "Normal"
            if priority not in ADAPTIVE_PRIORITIES:
                raise ValueError(f"adaptive priority must be one of {', '.join(ADAPTIVE_PRIORITIES)}")
            object.__setattr__(self, "adaptive_priority", priority)
        elif self.adaptive_priority:
            raise ValueError("adaptive priority applies to adaptive orders only")

    @classmethod
    def limit(cls, action: str, quantity: float, price: float, **terms) -> "OrderRequest":
        return cls(action, quantity, OrderType.LIMIT, limit_price=price, **terms)

    @classmethod
    def market(cls, action: str, quantity: float, **terms) -> "OrderRequest":
        return cls(action, quantity, OrderType.MARKET, **terms)

    @classmethod
    def adaptive(cls, action: str, quantity: float, price: float | None = None, *,
                 priority: str = "Normal", **terms) -> "OrderRequest":
        """Adaptive algo: on a limit order when ``price`` is given, else on a market order."""
        return cls(action, quantity, OrderType.ADAPTIVE, limit_price=price,
                   adaptive_priority=priority, **terms)

    @classmethod
    def midprice(cls, action: str, quantity: float, cap: float | None = None, **terms) -> "OrderRequest":
        """MIDPRICE: rests at the mid; ``cap`` is the worst price accepted, if any."""
        return cls(action, quantity, OrderType.MIDPRICE, limit_price=cap, **terms)


@dataclass(frozen=True)
class BracketRequest:
    """An entry limit with a take-profit limit and a stop-loss stop, one OCA family."""

    action: str
    quantity: float
    entry_limit: float
    take_profit_limit: float
    stop_loss_price: float
    order_ref: str = ""
    tif: str = "DAY"
    account: str = ""

    def __post_init__(self) -> None:
        action = self.action.strip().upper()
        if action not in ("BUY", "SELL"):
            raise ValueError(f"action must be BUY or SELL, not {self.action!r}")
        object.__setattr__(self, "action", action)
        for name in ("quantity", "entry_limit", "take_profit_limit", "stop_loss_price"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name.replace('_', ' ')} must be a positive number, not {value!r}")
        # A sell (short) profits when the price falls: take profit below, stop above.
        low, high = (self.take_profit_limit, self.stop_loss_price) if action == "SELL" else (
            self.stop_loss_price, self.take_profit_limit)
        if not low < self.entry_limit < high:
            side = "below" if action == "SELL" else "above"
            raise ValueError(f"a {action} bracket needs the take profit {side} the entry "
                             "and the stop loss on the other side")


@dataclass(frozen=True)
class OrderHandle:
    """An order the broker acknowledged: its ids and what was asked."""

    order_id: int
    perm_id: int
    client_id: int
    order_ref: str
    contract: Contract
    action: str
    quantity: float
    order_type: str               # the broker's order type: LMT, MKT, STP, MIDPRICE
    limit_price: float | None
    status: str                   # the status when acknowledged (Submitted, PreSubmitted, Filled)
    algo: str = ""                # "Adaptive" for the Adaptive algo, else empty


@dataclass(frozen=True)
class BracketHandle:
    parent: OrderHandle
    take_profit: OrderHandle
    stop_loss: OrderHandle


DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
WORKING_STATUSES = frozenset({"PreSubmitted", "Submitted"})


@dataclass(frozen=True)
class OrderUpdate:
    """The state of one order after a change (status, fills so far, the broker's message)."""

    order_id: int
    perm_id: int
    client_id: int
    order_ref: str
    contract: Contract
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    status: str
    filled: float
    remaining: float
    avg_fill_price: float
    last_fill_price: float
    parent_id: int = 0
    message: str = ""             # the broker's error text when it rejected or cancelled it
    error_code: int | None = None
    algo: str = ""                # "Adaptive" for the Adaptive algo, else empty

    @property
    def is_done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass(frozen=True)
class FillReport:
    """One execution with its commission (None until the broker reported it)."""

    exec_id: str
    time: datetime
    account: str
    contract: Contract
    order_id: int
    perm_id: int
    client_id: int
    order_ref: str
    side: str                     # BOT or SLD
    quantity: float
    price: float
    cum_quantity: float
    avg_price: float
    commission: float | None
    commission_currency: str
    realized_pnl: float | None


OrderEvent = OrderUpdate | FillReport


class OrderEventStream(Protocol):
    """The order status and fill stream: events in the order the broker sent them.

    Use as a context manager (or call :meth:`close`) so the adapter stops queueing."""

    def get(self, timeout: float) -> OrderEvent:
        """The next event; :class:`BrokerTimeout` when none arrives within ``timeout`` s."""
        ...

    def drain(self) -> list[OrderEvent]:
        """Every event queued so far, without waiting."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "OrderEventStream": ...

    def __exit__(self, *exc_info) -> None: ...


# ============================================================================ account


@dataclass(frozen=True)
class Position:
    account: str
    contract: Contract
    quantity: float               # negative when short
    avg_cost: float               # per unit including the multiplier, as IBKR reports


@dataclass(frozen=True)
class AccountSummary:
    """The account's key figures (USD); ``values`` holds every tag the broker sent."""

    account: str
    net_liquidation: float | None
    total_cash_value: float | None
    buying_power: float | None
    excess_liquidity: float | None
    available_funds: float | None
    init_margin_req: float | None
    maint_margin_req: float | None
    equity_with_loan: float | None
    gross_position_value: float | None
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MarginImpact:
    """What an order would do to the account's margin (a what-if order; nothing placed)."""

    init_margin_before: float | None
    init_margin_change: float | None
    init_margin_after: float | None
    maint_margin_before: float | None
    maint_margin_change: float | None
    maint_margin_after: float | None
    equity_with_loan_before: float | None
    equity_with_loan_change: float | None
    equity_with_loan_after: float | None
    commission: float | None
    warning: str = ""


@dataclass(frozen=True)
class ConnectionInfo:
    host: str
    port: int
    client_id: int
    server_version: int
    accounts: tuple[str, ...]
    account: str                  # the account orders go to (IBKR_ACCOUNT or the only one)


# ============================================================================ price grids


def fallback_increments(reason: str) -> PriceIncrements:
    """:data:`FALLBACK_OPTION_INCREMENTS` (see :meth:`BrokerPort.price_increments`), saying why
    it is used."""
    return PriceIncrements(FALLBACK_OPTION_INCREMENTS.bands,
                           f"fallback ({reason}): the non-penny grid, 0.05 below $3, 0.10 above")


# ============================================================================ the port


@runtime_checkable
class BrokerPort(Protocol):
    """What the project needs from a broker. Every call is bounded by a timeout."""

    # --- connection
    def connect(self) -> ConnectionInfo: ...
    def disconnect(self) -> None: ...
    @property
    def is_connected(self) -> bool: ...
    def current_time(self) -> datetime: ...

    # --- reference data
    def qualify(self, *specs: ContractSpec) -> list[Contract]:
        """One contract per spec, in order; :class:`ContractError` lists every unknown or
        ambiguous one (with the candidates)."""
        ...

    def option_chain_parameters(self, symbol: str) -> list[OptionChainParameters]:
        """Expirations, strikes, trading classes and multiplier of an underlying's options."""
        ...

    def strikes_near(self, symbol: str, expiry: date, price: float, *, right: str = "P",
                     count: int | None = None, pct: float | None = None, side: str = "both",
                     trading_class: str = "") -> list[Contract]:
        """The listed options of one expiry closest to ``price``: the ``count`` nearest
        strikes, or those within ``pct`` percent of it; ``side`` "below" / "above" keeps one
        side only. Sorted by strike."""
        ...

    def price_increments(self, contracts: Sequence[Contract]) -> list[PriceIncrements]:
        """The price grid of each contract, in order: the prices its orders may carry (IBKR's
        market rule: TWS refuses any other limit with error 110).

        Which rule: contract details list one market rule id per valid exchange. Orders go
        through SMART, and SMART routes to whichever exchange; the rule used is that of the
        contract's **primary exchange** when it is among the listed ones, else that of the
        **first listed exchange** (SMART itself in TWS's listings; options have no primary
        exchange). US option exchanges apply one grid per class (penny program or not), so
        the listed rules describe the same grid in practice.

        Whatever the broker cannot answer (no contract details, no rule id, a rule request
        that times out, an empty rule) gives :data:`FALLBACK_OPTION_INCREMENTS`: **0.05 below
        $3 and 0.10 at or above**, the non-penny grid. Every point of it is also a point of
        the penny-program grid (0.01 / 0.05) and of the all-penny grid, so an order priced on
        it is accepted whatever the class; the penny-program grid would NOT be safe (3.15 or
        2.97 is refused on a non-penny class). Its ``source`` starts with "fallback" and says
        why. Answers are cached per conId and per rule id; fallbacks are not (the next call
        asks again)."""
        ...

    # --- market data
    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        """A snapshot per contract, in order; options carry greeks (the broker's model
        greeks, or computed from the bid/ask mid when those do not come in time)."""
        ...

    def daily_bars(self, contract: Contract, days: int, end: date | None = None) -> list[DailyBar]: ...

    # --- orders
    def place_order(self, contract: Contract, request: OrderRequest) -> OrderHandle:
        """Send one order and wait for the broker's acknowledgement; :class:`OrderRejected`
        when it refuses. Never re-sent automatically."""
        ...

    def place_bracket(self, contract: Contract, bracket: BracketRequest) -> BracketHandle: ...
    def modify_order(self, order: OrderHandle, limit_price: float) -> OrderHandle: ...
    def cancel_order(self, order: OrderHandle | int) -> OrderUpdate:
        """Cancel and wait until the broker confirms (the final update: Cancelled, or
        Filled when the fill won the race)."""
        ...

    def wait_for_order(self, order: OrderHandle | int, statuses: frozenset[str] | set[str],
                       timeout: float) -> OrderUpdate:
        """The order's update once its status is in ``statuses`` or it is done (filled,
        cancelled, inactive); :class:`BrokerTimeout` after ``timeout`` seconds."""
        ...

    def order_events(self) -> OrderEventStream:
        """A stream of this client's order updates and fills from now on."""
        ...

    def open_orders(self) -> list[OrderUpdate]:
        """Every open API order of the account, whichever client id placed it."""
        ...

    def global_cancel(self) -> None:
        """Ask the broker to cancel every working order of the account, whichever client placed
        it (TWS's reqGlobalCancel); returns once sent, not once done (watch open_orders)."""
        ...

    def executions(self, since: datetime | None = None) -> list[FillReport]:
        """The account's executions (today's, or since ``since``), with commissions."""
        ...

    # --- account
    def positions(self) -> list[Position]: ...
    def account_summary(self) -> AccountSummary: ...
    def what_if_margin(self, contract: Contract, request: OrderRequest) -> MarginImpact: ...
