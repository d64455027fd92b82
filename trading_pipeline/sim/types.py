"""The values the simulator's parts exchange.

These are plain, immutable records. The engine produces them; the session encodes them on
the wire. Field names follow the TWS API's where one exists, in snake_case.
Prices are floats (the wire carries decimal text; the simulator rounds to the tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum


class SecType(str, Enum):
    STK = "STK"
    IND = "IND"
    OPT = "OPT"


@dataclass(frozen=True)
class Instrument:
    """One contract the simulated market lists."""

    con_id: int
    symbol: str
    sec_type: SecType
    currency: str = "USD"
    exchange: str = "SMART"          # what contract details report as the routing exchange
    primary_exchange: str = ""       # NASDAQ, NYSE, ARCA, CBOE ...; empty for indices/options
    local_symbol: str = ""           # the ticker, or the OCC symbol for options
    trading_class: str = ""
    long_name: str = ""
    min_tick: float = 0.01
    # Options only
    expiry: date | None = None       # last trading day
    strike: float = 0.0
    right: str = ""                  # "P" or "C"
    multiplier: int = 1              # 100 for equity and index options
    underlying_con_id: int = 0
    underlying_symbol: str = ""
    underlying_sec_type: SecType | None = None
    # The price grid (sim/ticks.py): contract details list it once per exchange as
    # marketRuleIds; orders off it are refused with error 110.
    market_rule_id: int = 26

    @property
    def is_option(self) -> bool:
        return self.sec_type is SecType.OPT

    @property
    def expiry_text(self) -> str:
        """lastTradeDateOrContractMonth as TWS sends it (YYYYMMDD), empty for non-options."""
        return self.expiry.strftime("%Y%m%d") if self.expiry else ""


@dataclass(frozen=True)
class ContractQuery:
    """What a client asked for in reqContractDetails / qualifyContracts (empty = any)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    expiry_prefix: str = ""          # YYYYMM or YYYYMMDD
    strike: float = 0.0
    right: str = ""                  # first letter, "C" or "P"
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


@dataclass(frozen=True)
class OptionParameters:
    """One row of reqSecDefOptParams: per (exchange, trading class)."""

    exchange: str
    underlying_con_id: int
    trading_class: str
    multiplier: int
    expirations: tuple[str, ...]     # YYYYMMDD, sorted
    strikes: tuple[float, ...]       # sorted


@dataclass(frozen=True)
class OptionGreeks:
    implied_vol: float
    delta: float
    price: float                     # model (theoretical) price
    pv_dividend: float
    gamma: float
    vega: float                      # per 1 vol point (0.01), as TWS reports
    theta: float                     # per calendar day, as TWS reports
    underlying_price: float


@dataclass(frozen=True)
class Quote:
    con_id: int
    time: datetime
    bid: float | None
    ask: float | None
    last: float | None
    bid_size: int = 0
    ask_size: int = 0
    last_size: int = 0
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None       # prior session's close
    volume: int = 0
    open_interest: int = 0           # options only
    greeks: OptionGreeks | None = None


@dataclass(frozen=True)
class Bar:
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    bar_count: int


class OrderStatus(str, Enum):
    PENDING_SUBMIT = "PendingSubmit"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    INACTIVE = "Inactive"

    @property
    def is_done(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.INACTIVE)


@dataclass(frozen=True)
class OrderRequest:
    """The parts of a placeOrder the simulator acts on (the session keeps the rest verbatim)."""

    action: str                      # BUY or SELL
    total_quantity: float
    order_type: str                  # LMT, MKT, STP, MIDPRICE, ...
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    algo_strategy: str = ""          # "", "Adaptive", ...
    algo_params: tuple[tuple[str, str], ...] = ()
    what_if: bool = False


@dataclass(frozen=True)
class OrderRecord:
    """The state of one order as the account sees it now."""

    client_id: int
    order_id: int
    perm_id: int
    instrument: Instrument
    request: OrderRequest
    status: OrderStatus
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission: float = 0.0          # total so far
    why_held: str = ""
    created: datetime | None = None
    completed_time: datetime | None = None
    completed_status: str = ""       # text for completedOrder, e.g. "Filled Size: 1"


@dataclass(frozen=True)
class Execution:
    exec_id: str                     # unique, TWS-like: 0000e9b5.6555a859.01.01
    time: datetime                   # UTC
    account: str
    instrument: Instrument
    side: str                        # BOT or SLD
    shares: float
    price: float
    perm_id: int
    client_id: int
    order_id: int
    cum_qty: float
    avg_price: float
    order_ref: str = ""
    liquidity: int = 1               # 1 added, 2 removed, 3 routed out
    commission: float = 0.0
    realized_pnl: float | None = None
    # Why the execution happened outside an order: "" for a normal fill, "expiration",
    # "assignment", "exercise" (the account's book entries at the close of an expiry day).
    book_reason: str = ""


@dataclass(frozen=True)
class Position:
    account: str
    instrument: Instrument
    quantity: float                  # negative for short
    avg_cost: float                  # per unit including the multiplier, as TWS reports


@dataclass(frozen=True)
class PortfolioItem:
    account: str
    instrument: Instrument
    position: float
    market_price: float
    market_value: float
    average_cost: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class MarginImpact:
    """whatIf: the account's margin before, the change, and after (TWS's OrderState block)."""

    init_margin_before: float
    maint_margin_before: float
    equity_with_loan_before: float
    init_margin_change: float
    maint_margin_change: float
    equity_with_loan_change: float
    init_margin_after: float
    maint_margin_after: float
    equity_with_loan_after: float
    commission: float


# ----- events the engine publishes to its listeners (the sessions) -----


@dataclass(frozen=True)
class OrderEvent:
    """An order's state changed (accepted, modified, partly filled, filled, cancelled ...)."""

    order: OrderRecord


@dataclass(frozen=True)
class FillEvent:
    execution: Execution
    order: OrderRecord | None        # None for book entries (expiration, assignment)


@dataclass(frozen=True)
class PositionEvent:
    position: Position


@dataclass(frozen=True)
class AccountEvent:
    """Account values changed; the session re-reads them from the engine."""

    account: str


@dataclass(frozen=True)
class ErrorEvent:
    """An error addressed to one client (e.g. 201 for an order rejected asynchronously)."""

    client_id: int
    req_id: int
    code: int
    message: str


class SimError(Exception):
    """A request the engine refuses; the session answers with TWS error `code`."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
