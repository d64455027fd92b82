"""The ledger's tables: the single description of them (SQLAlchemy Core).

Alembic migrations create and change these tables; a test compares the migrated database
with this metadata, so the two cannot drift apart. New tables are added here and in a new
migration under ``migrations/versions/``.

Revision 0001: the scan tables. Revision 0002: the execution tables (staged opportunities,
order intents, broker orders and their events, fills, trading state and circuit breaker
trips, daily counters, approvals, execution runs).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    JSON,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from trading_pipeline.core.intents import IntentPurpose, IntentStatus


class UtcDateTime(TypeDecorator):
    """A point in time, stored in UTC, always returned timezone-aware in UTC.

    SQLite has no time zone type: SQLAlchemy would silently drop the offset and hand back
    naive datetimes. This type refuses naive input (its meaning is unknown), converts
    aware input to UTC, and marks what it reads as UTC, so both backends behave the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; the ledger stores UTC instants")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


MONEY_SCALE = 6
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_MONEY_LIMIT = Decimal(10) ** (18 - MONEY_SCALE)


def to_money(value) -> Decimal | None:
    """A price, premium, commission or P&L as the ledger stores it: a Decimal with six places.

    Floats are read through their shortest text form (1.1 is 1.1, not 1.100000000000000088...),
    so a quote that arrives as a float is stored as the number it was printed as. NaN,
    infinities, booleans and values beyond Numeric(18, 6) are refused.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"expected a number for a money column, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"money must be a finite number, not {value!r}")
        value = Decimal(repr(value))
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"money must be a finite number, not {value!r}")
    try:
        quantized = value.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise ValueError(f"money {value} does not fit Numeric(18, {MONEY_SCALE})") from None
    if abs(quantized) >= _MONEY_LIMIT:
        raise ValueError(f"money {value} does not fit Numeric(18, {MONEY_SCALE})")
    return quantized


class Money(TypeDecorator):
    """Exact money: Numeric(18, 6), returned as a Decimal with six places on both backends.

    PostgreSQL stores numeric exactly. SQLite has no decimal type and keeps a double; the
    six places and 18 digits keep every value we store (prices, commissions, P&L well below
    a billion) exact through the double and back (SQLAlchemy reads it back with six places).
    """

    impl = Numeric(18, MONEY_SCALE)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return to_money(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(value).quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


# Explicit constraint names: Alembic's batch mode (how SQLite alters tables) and later
# migrations can only drop or change a constraint they can name, on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

EXPORT_DATE_SOURCES = ("footer", "file date")

# One imported Barchart screener export (one Dagster partition) and the policy it was
# scored and selected with.
scan_imports = Table(
    "scan_imports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("partition_key", String(255), nullable=False, unique=True),
    Column("source_path", Text, nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("export_date", Date, nullable=False),
    Column("export_date_source", String(16), nullable=False),
    # The footer's timestamp text as Barchart printed it (e.g. "08-28-2025 08:46am CDT"):
    # kept verbatim because its zone abbreviation is not a reliable UTC offset.
    Column("downloaded_at", Text, nullable=True),
    Column("total_rows", Integer, nullable=False),
    Column("valid_rows", Integer, nullable=False),
    Column("invalid_rows", Integer, nullable=False),
    Column("selected_rows", Integer, nullable=False),
    Column("rejected_rows", Integer, nullable=False),
    Column("top_n", Integer, nullable=False),
    Column("diversify", Boolean, nullable=False),
    Column("max_per_symbol", Integer, nullable=False),
    Column("min_score", Float, nullable=False),
    Column("dagster_run_id", String(64), nullable=True),
    Column("imported_at", UtcDateTime, nullable=False),
    CheckConstraint(
        "export_date_source IN ('footer', 'file date')", name="export_date_source"
    ),
)

# Every data row of an import: the canonical candidate columns plus its scores and the
# selection outcome. Prices and percentages are Float (double precision): they are
# screener quotes rounded by Barchart and inputs to scores, not money that changed hands;
# exact decimal columns (Numeric) are kept for orders and fills.
scan_candidates = Table(
    "scan_candidates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "scan_import_id",
        Integer,
        ForeignKey("scan_imports.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Invalid rows keep whatever fields parsed, so every candidate column is nullable.
    Column("file_row", Integer, nullable=True),
    Column("symbol", String(32), nullable=True),
    Column("underlying_price", Float, nullable=True),
    Column("expiration", Date, nullable=True),
    Column("dte_reported", Integer, nullable=True),
    Column("dte", Integer, nullable=True),
    Column("strike", Float, nullable=True),
    Column("option_type", String(8), nullable=True),
    Column("moneyness_pct", Float, nullable=True),
    Column("bid", Float, nullable=True),
    Column("breakeven", Float, nullable=True),
    Column("breakeven_pct", Float, nullable=True),
    Column("volume", BigInteger, nullable=True),
    Column("open_interest", BigInteger, nullable=True),
    Column("iv_rank_pct", Float, nullable=True),
    Column("delta", Float, nullable=True),
    Column("return_pct_reported", Float, nullable=True),
    Column("annualized_return_pct_reported", Float, nullable=True),
    Column("profit_prob_pct", Float, nullable=True),
    Column("otm_pct", Float, nullable=True),
    Column("return_pct", Float, nullable=True),
    Column("annualized_return_pct", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("score_return", Float, nullable=True),
    Column("score_pop", Float, nullable=True),
    Column("score_iv_rank", Float, nullable=True),
    Column("score_liquidity", Float, nullable=True),
    Column("score_capital", Float, nullable=True),
    Column("score_safety", Float, nullable=True),
    Column("score", Float, nullable=True),
    Column("grade", String(2), nullable=True),
    Column("rank", Integer, nullable=True),
    Column("rejected", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Index("ix_scan_candidates_scan_import_id_rank", "scan_import_id", "rank"),
)


# ============================================================================ execution (0002)
#
# Money (strikes, prices, premiums, commissions, P&L) is exact: Money = Numeric(18, 6).
# Greeks, IV and percentages are Float: model outputs, not money. conIds and broker ids are
# BigInteger (option conIds exceed 32 bits). Statuses are strings with CHECK constraints.

STAGED_STATUSES = (
    "STAGED",  # written by the Sunday session
    "VALIDATED",  # re-checked with fresh data (validate-staged, 9:28 refresh)
    "STALE",  # the stock moved too far since staging (pre-market check)
    "ADJUSTED",  # small move: OTM distance recomputed, still traded
    "ABANDONED",  # strike selection found no acceptable strike
    "CANCELLED",  # cancelled by a person (cancel-staged)
    "SUBMITTED",  # its entry order went to the broker
    "WORKING",  # left working as a DAY order after the fill monitor window
    "PARTIAL",
    "FILLED",
    "EXPIRED",  # the session ended without a fill
    "FAILED",  # an error stopped it (see status_reason)
)
STRIKE_SELECTION_OUTCOMES = ("SELECTED", "UNCHANGED", "ABANDONED")
OPTION_RIGHTS = ("P", "C")
INTENT_PURPOSES = tuple(purpose.value for purpose in IntentPurpose)
INTENT_STATUSES = tuple(status.value for status in IntentStatus)
INTENT_SEC_TYPES = ("OPT", "STK")
ORDER_ACTIONS = ("BUY", "SELL")
ORDER_TYPES = ("LMT", "MKT", "ADAPTIVE", "MIDPRICE")  # trading_pipeline.broker.port.OrderType
FILL_SIDES = ("BOT", "SLD")
ORDER_EVENT_SOURCES = ("ledger", "broker", "reconciliation")
HALT_KINDS = ("manual", "daily_loss")  # trading_pipeline.core.risk.HaltKind
APPROVAL_DECISIONS = ("PENDING", "EXECUTE", "WAIT", "ABORT")
RUN_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "ABORTED")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    # Column names quoted: "right" is an SQL keyword on both backends.
    listed = ", ".join(f"'{value}'" for value in values)
    return f'"{column}" IN ({listed})'


# One put (or call) staged for a trading session, from a scored candidate and live data.
staged_opportunities = Table(
    "staged_opportunities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_day", Date, nullable=False),  # the trading day it is staged for
    # The scan it came from; a re-imported scan replaces its rows, the staged row stays.
    Column("scan_import_id", Integer, ForeignKey("scan_imports.id", ondelete="SET NULL"), nullable=True),
    Column("scan_candidate_id", Integer, ForeignKey("scan_candidates.id", ondelete="SET NULL"), nullable=True),
    Column("symbol", String(32), nullable=False),
    Column("sector", String(64), nullable=True),
    Column("expiration", Date, nullable=False),
    Column("strike", Money, nullable=False),
    Column("right", String(1), nullable=False),
    Column("contracts", Integer, nullable=False),
    Column("staged_stock_price", Money, nullable=True),
    Column("staged_bid", Money, nullable=True),
    Column("staged_ask", Money, nullable=True),
    Column("staged_mid", Money, nullable=True),
    Column("limit_price", Money, nullable=True),
    Column("delta", Float, nullable=True),
    Column("iv", Float, nullable=True),
    Column("otm_pct", Float, nullable=True),
    Column("dte", Integer, nullable=True),
    Column("margin_per_contract", Money, nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("validation_reasons", JSON, nullable=True),  # list of texts, one per failed check
    Column("strike_selection_outcome", String(16), nullable=True),
    Column("original_strike", Money, nullable=True),
    Column("live_delta", Float, nullable=True),
    Column("strike_selection_method", String(16), nullable=True),
    Column("strike_selection_reason", Text, nullable=True),
    Column("dagster_run_id", String(64), nullable=True),
    Column("staged_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint(_one_of("status", STAGED_STATUSES), name="status"),
    CheckConstraint(_one_of("right", OPTION_RIGHTS), name="right"),
    CheckConstraint('"contracts" >= 0', name="contracts"),
    CheckConstraint('"strike" > 0', name="strike"),
    CheckConstraint(_one_of("strike_selection_outcome", STRIKE_SELECTION_OUTCOMES), name="strike_selection_outcome"),
    Index("ix_staged_opportunities_session_day_status", "session_day", "status"),
)

# One execution run (a two-tier morning, a `trade`/`execute` command, an emergency stop) and
# its report.
execution_runs = Table(
    "execution_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dagster_run_id", String(64), nullable=True, unique=True),
    # hybrid / supervised / autonomous / trade / execute / emergency_stop / reconcile: not
    # constrained, so a new kind of run needs no migration.
    Column("mode", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("session_day", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("report", JSON, nullable=True),  # the execution report
    Column("error", Text, nullable=True),
    CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
    Index("ix_execution_runs_session_day", "session_day"),
)

# One order as the ledger knows it, written before it is sent (see core/intents.py for the
# protocol). The order ref is unique: writing the same intent twice returns the first.
order_intents = Table(
    "order_intents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_ref", String(40), nullable=False, unique=True),
    Column("session_day", Date, nullable=False),
    Column("purpose", String(24), nullable=False),
    Column("staged_opportunity_id", Integer, ForeignKey("staged_opportunities.id"), nullable=True),
    # The intent this one replaces the remainder of (REPLACE_REMAINDER).
    Column("parent_intent_id", Integer, ForeignKey("order_intents.id"), nullable=True),
    Column("execution_run_id", Integer, ForeignKey("execution_runs.id"), nullable=True),
    Column("symbol", String(32), nullable=False),
    Column("sec_type", String(8), nullable=False),
    Column("con_id", BigInteger, nullable=True),
    Column("expiration", Date, nullable=True),
    Column("strike", Money, nullable=True),
    Column("right", String(1), nullable=True),
    Column("action", String(4), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("limit_price", Money, nullable=True),
    Column("dry_run", Boolean, nullable=False),
    Column("account", String(32), nullable=True),
    Column("status", String(16), nullable=False),
    Column("filled_quantity", Integer, nullable=False),
    Column("avg_fill_price", Money, nullable=True),
    Column("broker_order_id", BigInteger, nullable=True),
    Column("broker_perm_id", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("dagster_run_id", String(64), nullable=True),
    Column("error", Text, nullable=True),  # the last problem, or why it needs review
    CheckConstraint(_one_of("purpose", INTENT_PURPOSES), name="purpose"),
    CheckConstraint(_one_of("status", INTENT_STATUSES), name="status"),
    CheckConstraint(_one_of("sec_type", INTENT_SEC_TYPES), name="sec_type"),
    CheckConstraint(_one_of("action", ORDER_ACTIONS), name="action"),
    CheckConstraint(_one_of("order_type", ORDER_TYPES), name="order_type"),
    CheckConstraint(_one_of("right", OPTION_RIGHTS), name="right"),
    CheckConstraint('"quantity" > 0', name="quantity"),
    CheckConstraint('"filled_quantity" >= 0', name="filled_quantity"),
    CheckConstraint('"limit_price" > 0', name="limit_price"),
    CheckConstraint("\"order_type\" <> 'LMT' OR \"limit_price\" IS NOT NULL", name="limit_needs_price"),
    CheckConstraint(
        "\"sec_type\" <> 'OPT' OR (\"expiration\" IS NOT NULL AND \"strike\" IS NOT NULL AND \"right\" IS NOT NULL)",
        name="option_terms",
    ),
    Index("ix_order_intents_session_day_status", "session_day", "status"),
    Index("ix_order_intents_status", "status"),
    Index("ix_order_intents_staged_opportunity_id", "staged_opportunity_id"),
)

# Every order the broker reported, ours or not, keyed by its permanent id.
broker_orders = Table(
    "broker_orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("perm_id", BigInteger, nullable=False, unique=True),
    Column("broker_order_id", BigInteger, nullable=True),
    Column("client_id", Integer, nullable=True),
    Column("intent_id", Integer, ForeignKey("order_intents.id"), nullable=True),
    Column("order_ref", String(255), nullable=True),
    Column("account", String(32), nullable=True),
    Column("symbol", String(32), nullable=True),
    Column("con_id", BigInteger, nullable=True),
    Column("action", String(4), nullable=True),
    Column("quantity", Integer, nullable=True),
    Column("order_type", String(16), nullable=True),
    Column("limit_price", Money, nullable=True),
    Column("status", String(32), nullable=False),  # the broker's own status text
    Column("filled", Integer, nullable=False),
    Column("remaining", Integer, nullable=True),
    Column("avg_fill_price", Money, nullable=True),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_broker_orders_intent_id", "intent_id"),
)

# The history of every intent: ledger transitions, broker status updates, reconciliation.
order_events = Table(
    "order_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("intent_id", Integer, ForeignKey("order_intents.id"), nullable=True),
    Column("perm_id", BigInteger, nullable=True),
    Column("event_time", UtcDateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(32), nullable=False),  # an intent status or the broker's text
    Column("filled", Integer, nullable=True),
    Column("remaining", Integer, nullable=True),
    Column("avg_fill_price", Money, nullable=True),
    Column("message", Text, nullable=True),
    CheckConstraint(_one_of("source", ORDER_EVENT_SOURCES), name="source"),
    Index("ix_order_events_intent_id", "intent_id"),
)

# Every execution at the broker, once (exec_id is unique). Fills of orders without an intent
# (placed by hand in TWS, or found by reconciliation) have no intent_id.
fills = Table(
    "fills",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("exec_id", String(64), nullable=False, unique=True),
    Column("intent_id", Integer, ForeignKey("order_intents.id"), nullable=True),
    Column("order_ref", String(255), nullable=True),
    Column("perm_id", BigInteger, nullable=True),
    Column("broker_order_id", BigInteger, nullable=True),
    Column("account", String(32), nullable=True),
    Column("symbol", String(32), nullable=False),
    Column("sec_type", String(8), nullable=True),
    Column("con_id", BigInteger, nullable=True),
    Column("expiration", Date, nullable=True),
    Column("strike", Money, nullable=True),
    Column("right", String(1), nullable=True),
    Column("side", String(3), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("price", Money, nullable=False),
    Column("commission", Money, nullable=True),  # arrives after the execution; filled in then
    Column("commission_currency", String(3), nullable=True),
    Column("realized_pnl", Money, nullable=True),
    Column("executed_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    CheckConstraint(_one_of("side", FILL_SIDES), name="side"),
    CheckConstraint('"quantity" > 0', name="quantity"),
    Index("ix_fills_intent_id", "intent_id"),
    Index("ix_fills_executed_at", "executed_at"),
)

# The trading halt flag: one row (id 1), created on first write; no row means not halted.
trading_state = Table(
    "trading_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("halted", Boolean, nullable=False),
    Column("halt_kind", String(16), nullable=True),
    Column("halt_reason", Text, nullable=True),
    Column("halted_at", UtcDateTime, nullable=True),
    Column("halted_by", String(64), nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint('"id" = 1', name="single_row"),
    CheckConstraint(_one_of("halt_kind", HALT_KINDS), name="halt_kind"),
)

# Circuit breaker trips (the daily loss limit, ...), kept for good.
breaker_trips = Table(
    "breaker_trips",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_day", Date, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("details", Text, nullable=True),
    Column("tripped_at", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime, nullable=True),
    Column("cleared_by", String(64), nullable=True),
    Index("ix_breaker_trips_session_day", "session_day"),
)

# Per trading session: the start-of-day NLV and the counters the risk governor limits.
daily_counters = Table(
    "daily_counters",
    metadata,
    Column("session_day", Date, primary_key=True),
    Column("start_nlv", Money, nullable=True),
    Column("new_positions", Integer, nullable=False),
    Column("orders_submitted", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint('"new_positions" >= 0', name="new_positions"),
    CheckConstraint('"orders_submitted" >= 0', name="orders_submitted"),
)

# Approvals of UI-launched hybrid runs: the run waits for a decision given by a CLI command
# or an approval job, and aborts when the deadline passes.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_key", String(128), nullable=False, unique=True),
    Column("session_day", Date, nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("deadline", UtcDateTime, nullable=False),
    Column("summary", Text, nullable=True),  # the market conditions shown to the approver
    Column("decision", String(16), nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("note", Text, nullable=True),
    CheckConstraint(_one_of("decision", APPROVAL_DECISIONS), name="decision"),
    Index("ix_approvals_session_day", "session_day"),
)


# --- Positions, snapshots, reconciliation (revision 0003) --------------------------------

TRADE_SOURCES = ("execution", "ibkr_import", "reconciliation", "manual")
TRADE_SIDES = ("short", "long")
TRADE_STATUSES = ("open", "closed")
# Why a trade closed: the exit rules (core/exits.py), the events at expiry, a closing order
# placed by hand, an imported lifecycle's closing, or a reconciliation that found it gone.
EXIT_REASONS = (
    "profit_target", "stop_loss", "time_exit", "expiration", "assignment", "exercise",
    "btc", "stc", "manual", "reconciliation",
)
SNAPSHOT_STATUSES = ("captured", "partial", "failed", "enriched")
SNAPSHOT_SOURCES = ("live", "enrichment")

# One option position from its opening to its closing: opened by our execution (the entry
# intent), imported from IBKR's history (a promoted lifecycle), or found at the broker by a
# reconciliation. Prices are per share (the premium), P&L in account currency for the whole
# position. ``trade_key`` makes every way in idempotent: "intent:<order_ref>",
# "lifecycle:<lifecycle_id>", "broker:<account>:<con_id>:<first seen day>".
trades = Table(
    "trades",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trade_key", String(160), nullable=False, unique=True),
    Column("trade_source", String(16), nullable=False),
    Column("account", String(32), nullable=True),
    Column("symbol", String(32), nullable=False),  # the underlying
    Column("con_id", BigInteger, nullable=True),
    Column("right", String(1), nullable=False),
    Column("strike", Money, nullable=False),
    Column("expiration", Date, nullable=False),
    Column("multiplier", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("side", String(5), nullable=False),
    Column("contracts", Integer, nullable=False),  # opened
    Column("open_contracts", Integer, nullable=False),  # still open
    Column("entry_price", Money, nullable=False),
    Column("entry_time", UtcDateTime, nullable=False),
    Column("entry_commission", Money, nullable=True),  # a cost: positive when paid
    Column("staged_opportunity_id", Integer, ForeignKey("staged_opportunities.id"), nullable=True),
    Column("entry_intent_id", Integer, ForeignKey("order_intents.id"), nullable=True),
    Column("strike_selection_method", String(24), nullable=True),
    Column("original_strike", Money, nullable=True),  # the staged strike before selection
    Column("live_delta", Float, nullable=True),  # the delta at entry, from the broker
    Column("status", String(8), nullable=False),
    Column("exit_price", Money, nullable=True),
    Column("exit_time", UtcDateTime, nullable=True),
    Column("exit_reason", String(16), nullable=True),
    Column("exit_commission", Money, nullable=True),
    Column("exit_intent_id", Integer, ForeignKey("order_intents.id"), nullable=True),
    Column("gross_pnl", Money, nullable=True),
    Column("net_pnl", Money, nullable=True),
    Column("lifecycle_id", String(160), nullable=True),  # an imported lifecycle's id
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint(_one_of("trade_source", TRADE_SOURCES), name="trade_source"),
    CheckConstraint(_one_of("side", TRADE_SIDES), name="side"),
    CheckConstraint(_one_of("status", TRADE_STATUSES), name="status"),
    CheckConstraint(_one_of("right", OPTION_RIGHTS), name="right"),
    CheckConstraint(_one_of("exit_reason", EXIT_REASONS), name="exit_reason"),
    CheckConstraint('"contracts" > 0', name="contracts"),
    CheckConstraint('"open_contracts" >= 0 AND "open_contracts" <= "contracts"', name="open_contracts"),
    CheckConstraint('"strike" > 0', name="strike"),
    CheckConstraint('"multiplier" > 0', name="multiplier"),
    CheckConstraint('"entry_price" >= 0', name="entry_price"),
    CheckConstraint("\"status\" <> 'closed' OR \"exit_reason\" IS NOT NULL", name="closed_has_reason"),
    Index("ix_trades_status", "status"),
    Index("ix_trades_symbol", "symbol"),
    Index("ix_trades_trade_source", "trade_source"),
)

# Stock delivered by an assignment (or bought by an exercise): the shares and their cost.
stock_positions = Table(
    "stock_positions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_trade_id", Integer, ForeignKey("trades.id"), nullable=True, unique=True),
    Column("account", String(32), nullable=True),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Integer, nullable=False),  # shares, negative when short
    Column("cost_price", Money, nullable=False),  # per share: the strike for an assignment
    Column("opened_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("status", String(8), nullable=False),
    CheckConstraint(_one_of("status", TRADE_STATUSES), name="status"),
    CheckConstraint('"quantity" <> 0', name="quantity"),
)

# The context of a trade at entry and at exit. The fields themselves (98 at entry, 24 at
# exit) are defined in one place, trading_pipeline.core.snapshots, and stored as one JSON
# document, so a new field needs no migration; the columns beside it are what queries and
# reports filter on. A failed capture is a row too (status "failed", the error kept).
entry_snapshots = Table(
    "entry_snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trade_id", Integer, ForeignKey("trades.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("captured_at", UtcDateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("data_quality_score", Float, nullable=True),  # 0..1: share of fields present
    Column("critical_fields_present", Integer, nullable=True),  # of the 8 critical fields
    Column("fields_present", Integer, nullable=True),
    Column("fields", JSON, nullable=True),
    Column("error", Text, nullable=True),
    CheckConstraint(_one_of("status", SNAPSHOT_STATUSES), name="status"),
    CheckConstraint(_one_of("source", SNAPSHOT_SOURCES), name="source"),
)

exit_snapshots = Table(
    "exit_snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trade_id", Integer, ForeignKey("trades.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("captured_at", UtcDateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trade_quality_score", Float, nullable=True),
    Column("fields_present", Integer, nullable=True),
    Column("fields", JSON, nullable=True),
    Column("error", Text, nullable=True),
    CheckConstraint(_one_of("status", SNAPSHOT_STATUSES), name="status"),
    CheckConstraint(_one_of("source", SNAPSHOT_SOURCES), name="source"),
)

# One row per open position per trading day (the 16:00 New York snapshot): the path a
# trade took, for the exit snapshot's path analysis and the learning engine.
position_snapshots = Table(
    "position_snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trade_id", Integer, ForeignKey("trades.id", ondelete="CASCADE"), nullable=False),
    Column("trading_day", Date, nullable=False),
    Column("captured_at", UtcDateTime, nullable=False),
    Column("current_premium", Money, nullable=True),
    Column("current_pnl", Money, nullable=True),
    Column("current_pnl_pct", Float, nullable=True),  # percent of the premium received
    Column("dte_remaining", Integer, nullable=True),
    Column("delta", Float, nullable=True),
    Column("gamma", Float, nullable=True),
    Column("theta", Float, nullable=True),
    Column("vega", Float, nullable=True),
    Column("iv", Float, nullable=True),
    Column("stock_price", Money, nullable=True),
    Column("distance_to_strike_pct", Float, nullable=True),
    Column("vix", Float, nullable=True),
    Column("spy_price", Money, nullable=True),
    Column("dagster_run_id", String(64), nullable=True),
    UniqueConstraint("trade_id", "trading_day", name="uq_position_snapshots_trade_day"),
    Index("ix_position_snapshots_trading_day", "trading_day"),
)

# Every reconciliation (positions or orders) and what it found and did, kept for good.
reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # positions / orders
    Column("started_at", UtcDateTime, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("trigger", String(32), nullable=False),  # command / job start / monitor
    Column("discrepancies", Integer, nullable=False),
    Column("applied", Integer, nullable=False),
    Column("report", JSON, nullable=True),
    Column("dagster_run_id", String(64), nullable=True),
    Index("ix_reconciliation_runs_started_at", "started_at"),
)


# --- Trade history (revisions 0004, 0005) -------------------------------------------------
#
# IBKR's history imported from Flex statements (TAAD). Raw executions and option events are
# immutable: written once by an import, never updated or deleted by any code path except
# `tp db-reset`. Lifecycles and gaps are derived: rebuilt whole, per account, from every
# stored execution (trading_pipeline.history.imports).
#
# Prices, quantities and P&L here are Float (double precision), not Money: they are the Flex
# reader's and the matcher's numbers stored exactly as computed, so lifecycles rebuilt from
# the ledger are the same as those matched from the file; the exact text IBKR printed stays
# in the raw text (flex_raw_chunks). Promoted trades hold the money (Money columns of `trades`).

IMPORT_SOURCES = ("file", "web_service")
STATEMENT_KINDS = ("activity", "trade_confirmation")
IMPORT_STATUSES = ("completed", "failed")
LIFECYCLE_EXIT_TYPES = ("btc", "stc", "expiration", "assignment", "exercise", "open")

# One import of one Flex statement (a file or a Web Service fetch): what it was and what it
# added. A dry run writes nothing (so every stored session has dry_run false today); a
# failed import keeps its session (status failed, the error) and nothing else. Counts are of
# the statement's executions: total = new + duplicate + skipped + errors.
flex_import_sessions = Table(
    "flex_import_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("source", String(16), nullable=False),
    Column("file_name", Text, nullable=False),
    Column("account", String(32), nullable=True),  # the account asked for; null: every account in the statement
    Column("accounts", JSON, nullable=True),  # the accounts whose executions were imported
    Column("statement_kind", String(24), nullable=False),
    Column("from_date", Date, nullable=True),
    Column("to_date", Date, nullable=True),
    Column("dry_run", Boolean, nullable=False),
    Column("total", Integer, nullable=False),
    Column("new_count", Integer, nullable=False),
    Column("duplicate_count", Integer, nullable=False),
    Column("skipped_count", Integer, nullable=False),  # other accounts' executions
    Column("error_count", Integer, nullable=False),  # invalid rows (not stored)
    Column("option_event_count", Integer, nullable=False),  # new OptionEAE rows
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("dagster_run_id", String(64), nullable=True),
    CheckConstraint(_one_of("source", IMPORT_SOURCES), name="source"),
    CheckConstraint(_one_of("statement_kind", STATEMENT_KINDS), name="statement_kind"),
    CheckConstraint(_one_of("status", IMPORT_STATUSES), name="status"),
    Index("ix_flex_import_sessions_started_at", "started_at"),
)

# The raw text of an import's rows, kept once per import session instead of once per row:
# every element exactly as IBKR wrote it (all attributes, known or not). The session's
# stored rows of one kind ("execution" / "option_event") are numbered from 0 in insertion
# order (the rows' ``raw_row``) and kept RAW_CHUNK_ROWS at a time, each chunk a Parquet
# file (one String column ``raw_xml``, zstd-compressed: a million executions of 1.1 kB
# take about 65 MB instead of 1.1 GB, and compress in about a second on two cores), so one
# row's text is recovered by reading one chunk (trading_pipeline.ledger.history.raw_xml_of).
# Since revision 0005 an "execution" chunk also holds its rows' typed columns
# (trading_pipeline.ledger.history.STORED_EXECUTION_COLUMNS, polars dtypes of
# ingest.flex.EXECUTION_COLUMNS) beside ``raw_xml`` (89 MB for the million rows):
# flex_executions keeps only a narrow row.
# Immutable like the rows.
RAW_KINDS = ("execution", "option_event")
RAW_CHUNK_ROWS = 20_000

flex_raw_chunks = Table(
    "flex_raw_chunks",
    metadata,
    Column("import_session_id", Integer, ForeignKey("flex_import_sessions.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("first_row", Integer, primary_key=True),  # raw_row of the chunk's first row
    Column("row_count", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),  # a Parquet file
    CheckConstraint(_one_of("kind", RAW_KINDS), name="kind"),
)

# Every valid execution of every imported statement, once, as a narrow row (revision 0005):
# what deduplication (the unique execution id; a cancellation is keyed apart from the
# execution it cancels, IBKR may give both the same id, as
# core.lifecycles.deduplicate_executions does), the options filter and the status report
# read, and where the rest is: every other typed column (the element's line, prices,
# quantities, times...: trading_pipeline.ledger.history.STORED_EXECUTION_COLUMNS) and the
# raw text are in the session's chunks (flex_raw_chunks, kind "execution", row ``raw_row``),
# read back whole by trading_pipeline.ledger.history.load_executions. Inserting a million
# rows of these 8 columns takes about 3 s; of all 27 columns, 7-8 s. Which execution a
# cancellation cancels is not stored: it is worked out at match time from all stored rows,
# since a correction may arrive in a later statement than its original. Rows with errors
# are not stored (their line and reason are in the import's result).
flex_executions = Table(
    "flex_executions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("import_session_id", Integer, ForeignKey("flex_import_sessions.id"), nullable=False),
    Column("raw_row", Integer, nullable=False),  # its columns and text in flex_raw_chunks (kind "execution")
    Column("account", String(32), nullable=False),
    Column("exec_id", String(64), nullable=False),
    Column("is_cancellation", Boolean, nullable=False),
    Column("put_call", String(1), nullable=True),  # null: not an option
    Column("trade_date", Date, nullable=True),
    UniqueConstraint("exec_id", "is_cancellation", name="uq_flex_executions_exec_id_is_cancellation"),
)

# <OptionEAE> rows (exercises, assignments, expirations and their stock legs), once each:
# ``event_key`` is what identifies the event, as text: account, date, type, contract (conid,
# else symbol), quantity and tradeID; stable across re-exports. Raw text in flex_raw_chunks
# (kind "option_event").
flex_option_events = Table(
    "flex_option_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("import_session_id", Integer, ForeignKey("flex_import_sessions.id"), nullable=False),
    Column("line", Integer, nullable=False),
    Column("raw_row", Integer, nullable=False),  # its text in flex_raw_chunks (kind "option_event")
    Column("event_key", String(160), nullable=False, unique=True),
    Column("account", String(32), nullable=False),
    Column("transaction_type", String(32), nullable=True),  # Assignment, Exercise, Expiration, Buy, Sell
    Column("asset_category", String(16), nullable=True),
    Column("symbol", Text, nullable=True),
    Column("underlying", String(32), nullable=True),
    Column("con_id", BigInteger, nullable=True),
    Column("put_call", String(1), nullable=True),
    Column("strike", Float, nullable=True),
    Column("expiry", Date, nullable=True),
    Column("multiplier", Float, nullable=True),
    Column("currency", String(8), nullable=True),
    Column("event_date", Date, nullable=True),
    Column("quantity", Float, nullable=True),
    Column("trade_price", Float, nullable=True),
    Column("mark_price", Float, nullable=True),
    Column("realized_pnl", Float, nullable=True),
    Column("trade_id", String(64), nullable=True),
)

# Option lifecycles (core.lifecycles.LIFECYCLE_COLUMNS): derived, rebuilt per account from
# every stored execution. ``opening_unit`` names the opening they share a part of (its order
# id, or "exec:<id>" without one): a closed lifecycle whose opening still has an open part
# may grow with a later closing, so it is not promoted yet. ``promoted_trade_id`` survives
# rebuilds: it is found again through trades.lifecycle_id.
def _equals_one_of(column: str, values: tuple[str, ...]) -> str:
    """Like _one_of, as ``col = 'a' OR col = 'b'``: SQLite evaluates a CHECK's IN list by
    building a small table for every inserted row: storing 416,000 lifecycles took about
    6 s with IN lists against 3 s without checks; the comparisons cost next to nothing."""
    return " OR ".join(f"\"{column}\" = '{value}'" for value in values)


trade_lifecycles = Table(
    "trade_lifecycles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("lifecycle_id", String(160), nullable=False, unique=True),
    Column("account", String(32), nullable=False),
    Column("underlying", String(32), nullable=False),
    Column("right", String(1), nullable=False),
    Column("strike", Float, nullable=False),
    Column("expiry", Date, nullable=False),
    Column("side", String(5), nullable=False),
    Column("quantity", Integer, nullable=False),  # contracts
    Column("open_price", Float, nullable=True),
    Column("close_price", Float, nullable=True),  # null while open
    Column("exit_type", String(16), nullable=False),
    Column("open_date", Date, nullable=True),
    Column("close_date", Date, nullable=True),
    Column("multiplier", Float, nullable=True),
    Column("currency", String(8), nullable=True),
    Column("gross_pnl", Float, nullable=True),
    Column("commissions", Float, nullable=True),  # costs: positive when paid
    Column("net_pnl", Float, nullable=True),
    Column("confidence", Float, nullable=True),
    Column("flag", String(64), nullable=True),
    Column("open_exec_ids", JSON, nullable=False),
    Column("close_exec_ids", JSON, nullable=False),
    Column("opening_unit", String(96), nullable=True),
    Column("built_at", UtcDateTime, nullable=False),
    Column("promoted_trade_id", Integer, ForeignKey("trades.id"), nullable=True),
    CheckConstraint(_equals_one_of("side", TRADE_SIDES), name="side"),
    CheckConstraint(_equals_one_of("right", OPTION_RIGHTS), name="right"),
    CheckConstraint(_equals_one_of("exit_type", LIFECYCLE_EXIT_TYPES), name="exit_type"),
)

# Closings whose opening is not among the stored executions (core.lifecycles.GAP_COLUMNS):
# derived like the lifecycles. No index on account in either table: a rebuild replaces a
# few accounts' rows whole (a scan), and every index slows the insert of hundreds of
# thousands of rows.
lifecycle_gaps = Table(
    "lifecycle_gaps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(32), nullable=False),
    Column("underlying", String(32), nullable=False),
    Column("right", String(1), nullable=False),
    Column("strike", Float, nullable=False),
    Column("expiry", Date, nullable=False),
    Column("side", String(5), nullable=False),
    Column("exec_id", String(64), nullable=False),
    Column("trade_date", Date, nullable=True),
    Column("quantity", Integer, nullable=False),  # contracts closed without an opening
    Column("exit_type", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("built_at", UtcDateTime, nullable=False),
)
