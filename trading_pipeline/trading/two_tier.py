"""The two-tier execution morning: the imperative shell around the pure execution core.

:func:`run_two_tier` runs one session's morning on the broker's clock (docs/execution.md):

1. **start**: the run is recorded in ``execution_runs``; the clock sync check (fails above
   ``MAX_CLOCK_DRIFT_MS``); a reconciliation of the ledger's intents with the broker's open
   orders and executions BEFORE anything is sent (``OrderGateway.reconcile``);
2. **9:15 pre-market validation** (``core.staging.premarket_check``): a stock that moved under
   5 % is ADJUSTED and traded, over 10 % STALE, in between it needs review and is not traded;
3. **9:28 quote refresh**: fresh bid/ask, the 9:28 re-check (``staging_reasons``) and the limit
   recalculated from the bid-mid ratio. In *hybrid* mode the market conditions (VIX, average
   spread, the planned orders) go to ``decide``: ``execute``, ``wait`` (ask again after
   :data:`HYBRID_WAIT_SECONDS` with fresh quotes) or ``abort`` (nothing is sent);
4. **~9:29 adaptive strike selection**: the listed puts near the staged strike (read at 9:15:
   they do not change), one quote request with greeks for every trade's ``candidate_strikes``,
   ``select_strike`` (SELECTED / UNCHANGED / ABANDONED, recorded on the staged row with the
   original strike and the live delta); a strike's volume below STRIKE_MIN_VOLUME (0 before
   the open, a handful just after it) is checked on the previous session's volume instead;
5. **9:30 Tier 1**: each order routed (``route_order``), priced, and submitted through the
   ``OrderGateway`` (risk check, intent with a deterministic orderRef, send, ack). Rapid-fire
   (``USE_RAPID_FIRE=true``) submits every order at once; sequential submits the next order
   when the previous one is filled or no longer working, or after ``FILL_ADJUSTMENT_INTERVAL``;
6. **fill monitoring**: every ``FILL_CHECK_INTERVAL`` of broker time the order events are
   recorded and ``core.fill_policy`` decides: lower a limit (modify), cancel and replace a
   partly filled remainder (a REPLACE_REMAINDER intent), and at the end of the window leave
   the rest working as DAY orders (or cancel them). The ledger is the truth the decisions read
   (fills, statuses); events can be lost with a connection, so the broker's open orders and
   executions are reconciled every ``FILL_ADJUSTMENT_INTERVAL`` and before acting again after
   a disconnect (nothing is decided while the connection is down);
7. **Tier 2** (``TIER2_WINDOW_START``..``END``, every ``TIER2_CHECK_INTERVAL``): VIX and the
   average spread of the unfilled orders' options (``assess_conditions``); when favorable each
   unfilled order is re-priced once with ``tier2_limit``; when VIX is too high the check is
   skipped with the reason. Tier 2 ends early when no unfilled order is left to re-price;
8. **final reconciliation** (at ``TIER2_WINDOW_END``, or as soon as no order is left
   working): reconcile, record events, and the :class:`ExecutionReport`, stored in
   ``execution_runs`` and returned.

Prices. Every limit (the 9:28 limit, Tier 1, the fill policy's lowerings and replacements,
Tier 2) is a point of the option's price grid: its market rule from the broker
(``BrokerPort.price_increments``, asked once per contract and morning), e.g. 0.01 below $3
and 0.05 above for a penny-program class; TWS refuses any other price (error 110). The premium
floor is rounded up onto the grid; a fill-policy lowering smaller than the grid's step there
moves one grid step instead. Where the broker cannot say the grid, the conservative fallback
grid (0.05 below $3, 0.10 above) is used and the report's notes say so.

Re-runs. Every step is safe to run again: the run reconciles first; a staged trade whose
entry order already went out is adopted into fill monitoring, never sent again (one entry
intent per trade and session, orderRef ``tp-<day>-<staged id>-E1``); an entry intent that
reconciliation closed (never sent, or sent but not found at the broker: UNKNOWN) is reported
and left to a person. A step whose time has passed runs at once; after ``TIER2_WINDOW_END``
nothing new is sent.

Modes: *hybrid* asks ``decide`` (the CLI passes a terminal prompt; a run launched from the
Dagster UI passes :func:`ledger_approval_decider`, which polls the ledger's approvals until a
decision or the deadline, the end of the Tier 2 window, and then aborts); *supervised* runs and
marks the report for review; *autonomous* runs without asking (the CLI requires ``--yes``).
Dry run (the default): the same morning, but the gateway records intents with dry_run=True
and sends nothing, and no staged row changes; the report says what would have been sent.

This module has no Dagster imports: the CLI, the Dagster op and the tests share it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine

from trading_pipeline.broker.port import (
    BrokerError,
    BrokerPort,
    Contract,
    ContractError,
    ContractSpec,
    Quote,
    fallback_increments,
)
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.execution_params import AUTOMATION_MODES, ExecutionParameters
from trading_pipeline.core.fill_policy import (
    Cancel,
    CancelAndReplace,
    FillReport,
    LeaveWorking,
    LowerLimit,
    MonitoredOrder,
    OrderState,
    Wait,
    apply_action,
    build_fill_report,
    decide_fill_actions,
    monitoring_finished,
)
from trading_pipeline.core.intents import FINAL_STATUSES, IntentPurpose, IntentStatus
from trading_pipeline.core.pricing import Quote as PriceQuote
from trading_pipeline.core.pricing import PriceIncrements, limit_price, route_order, tier2_limit
from trading_pipeline.core.staging import PremarketOutcome, StagingInput, premarket_check, staging_reasons
from trading_pipeline.core.strike_selection import (
    StrikeOutcome,
    StrikeQuote,
    StrikeSelection,
    candidate_strikes,
    select_strike,
)
from trading_pipeline.core.tier2 import Conditions, assess_conditions, at_new_york, morning_timeline
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger import orders as ledger_orders
from trading_pipeline.ledger import risk as ledger_risk
from trading_pipeline.ledger.staging import (
    StagedOpportunity,
    list_staged,
    update_staged,
)
from trading_pipeline.trading.clock import check_clock_sync
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway, SubmitOutcome, SubmitResult

log = logging.getLogger(__name__)

DECISIONS = ("execute", "wait", "abort")
# Hybrid "wait": ask again after this many seconds of broker time, with fresh quotes.
HYBRID_WAIT_SECONDS = 60.0
# A Tier 1 order is priced from quotes at most this old (broker seconds); older ones are
# fetched again right before it is sent (a late start, a sequential submission).
QUOTE_MAX_AGE_SECONDS = 30.0
# The option multiplier of US equity options (premium in the report is per contract x 100).
OPTION_MULTIPLIER = 100
VIX_SYMBOL = "VIX"
# Staged statuses this morning may trade (before any order); rows with orders are adopted.
_TRADEABLE = frozenset({"STAGED", "VALIDATED", "ADJUSTED"})
_LIVE_INTENT = frozenset({IntentStatus.SENT, IntentStatus.ACKNOWLEDGED, IntentStatus.PARTIAL})


class ExecutionRefused(TradingPipelineError):
    """The morning cannot start (clock drift, an unknown mode, a closed window ...)."""


# ============================================================================ options, report


@dataclass(frozen=True)
class TwoTierOptions:
    """How one morning runs. ``session_day`` None: the session of the clock's New York date
    (or the next one when today has none or is over). ``follow_timeline`` False runs each step
    at once (a rehearsal). ``clock_rate``: broker seconds per real second (sleep lengths)."""

    mode: str = "hybrid"
    dry_run: bool = True
    account: str = ""
    session_day: date | None = None
    follow_timeline: bool = True
    clock_rate: float = 1.0
    dagster_run_id: str | None = None
    max_real_sleep: float = 0.25
    # At a fast simulated clock, checks due every 2 broker seconds would hammer the broker;
    # consecutive checks are at least this many real seconds apart.
    min_real_check_gap: float = 0.05

    def __post_init__(self) -> None:
        if self.mode not in AUTOMATION_MODES:
            raise ExecutionRefused(f"unknown mode {self.mode!r}: use one of {', '.join(AUTOMATION_MODES)}")


@dataclass(frozen=True)
class PlannedOrder:
    symbol: str
    expiration: date
    strike: float
    contracts: int
    bid: float | None
    ask: float | None
    limit: float | None


@dataclass(frozen=True)
class PreTradeConditions:
    """What hybrid mode shows before Tier 1: the broker time, VIX and the average spread
    (rated like Tier 2), the orders planned, and when the question closes."""

    at: datetime
    conditions: Conditions
    planned: tuple[PlannedOrder, ...]
    deadline: datetime
    asked: int = 1

    def summary(self) -> str:
        lines = [f"{self.at.astimezone(calendar.NEW_YORK):%H:%M:%S} New York: {self.conditions.level} - "
                 f"{self.conditions.reason}"]
        for order in self.planned:
            quote = (f"bid {order.bid:.2f} / ask {order.ask:.2f}, limit {order.limit:.2f}"
                     if order.bid is not None and order.ask is not None and order.limit is not None else "no quote")
            lines.append(f"  SELL {order.contracts} {order.symbol} {order.expiration.isoformat()} "
                         f"{order.strike:g} P: {quote}")
        lines.append(f"decide before {self.deadline.astimezone(calendar.NEW_YORK):%H:%M} New York")
        return "\n".join(lines)


Decide = Callable[[PreTradeConditions], str]


@dataclass(frozen=True)
class TradeReport:
    staged_id: int
    symbol: str
    expiration: str
    contracts: int
    original_strike: float
    strike: float | None
    strike_outcome: str | None
    strike_method: str | None
    live_delta: float | None
    premarket: str | None
    route: str | None
    limits: tuple[float, ...]
    filled: int
    avg_price: float | None
    premium: float
    status: str
    reason: str
    order_refs: tuple[str, ...]


@dataclass(frozen=True)
class Tier2Decision:
    at: str
    vix: float | None
    average_spread: float | None
    level: str
    favorable: bool
    reason: str
    action: str
    repriced: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ExecutionReport:
    execution_run_id: int
    dagster_run_id: str | None
    session_day: str
    mode: str
    dry_run: bool
    account: str
    status: str  # SUCCEEDED, ABORTED, FAILED
    review_required: bool
    trades: tuple[TradeReport, ...]
    totals: dict
    fill_report: dict | None
    tier2: tuple[Tier2Decision, ...]
    timings: dict
    clock: str
    reconciliation: tuple[str, ...]
    notes: tuple[str, ...]

    def as_dict(self) -> dict:
        """Plain JSON values (lists, not tuples): the report exactly as execution_runs stores it."""
        return json.loads(json.dumps(dataclasses.asdict(self), allow_nan=False))


# ============================================================================ decisions


def ledger_approval_decider(engine: Engine, clock: Clock, *, run_key: str, session_day: date, rate: float,
                            requested_by_log: Callable[[str], None] = log.info,
                            sleep: Callable[[float], None] = time.sleep,
                            poll_real_seconds: float = 0.2) -> Decide:
    """The hybrid decision of a run launched from the Dagster UI: ask in the ledger's
    approvals table (run key = the Dagster run id) and wait for ``tp approve-execution`` or
    ``approve_execution_job``. EXECUTE and ABORT end the wait; WAIT keeps waiting; at the
    deadline (the end of the Tier 2 window) the answer is abort."""

    def decide(conditions: PreTradeConditions) -> str:
        if clock.now() >= conditions.deadline:
            return "abort"
        approval = ledger_risk.request_approval(
            engine, run_key=run_key, session_day=session_day, deadline=conditions.deadline,
            at=clock.now(), summary=conditions.summary(),
        )
        requested_by_log(f"waiting for an approval of run {run_key} (tp approve-execution execute|wait|abort "
                         f"or approve_execution_job) until {conditions.deadline.isoformat()}")
        while True:
            # The deadline first, on this run's own clock: a decision recorded too late never executes.
            if clock.now() >= conditions.deadline:
                return "abort"
            if approval.decision in ("EXECUTE", "ABORT"):
                return approval.decision.lower()
            real = min(poll_real_seconds, max((conditions.deadline - clock.now()).total_seconds() / rate, 0.001)
                       if rate > 0 else poll_real_seconds)
            sleep(real)
            current = ledger_risk.get_approval(engine, run_key)
            if current is not None:
                approval = current

    return decide


def autonomous_decider(_conditions: PreTradeConditions) -> str:
    return "execute"


# ============================================================================ working state


@dataclass
class _Trade:
    """One staged trade through the morning (mutable working state of the runner)."""

    staged: StagedOpportunity
    status: str = "PENDING"  # PENDING until an outcome is known
    reason: str = ""
    stock: Contract | None = None
    option: Contract | None = None
    stock_price: float | None = None
    bid: float | None = None
    ask: float | None = None
    limit: float | None = None
    premarket: str | None = None
    selection: StrikeSelection | None = None
    route: str | None = None
    route_reason: str = ""
    limits: list[float] = field(default_factory=list)
    intent_ids: list[int] = field(default_factory=list)  # entry first, then replacements
    monitored: MonitoredOrder | None = None
    tier2_done: bool = False
    listed: dict[float, Contract] | None = None  # the expiry's listed puts, read before 9:29
    quoted_at: datetime | None = None  # broker time of bid/ask

    @property
    def id(self) -> int:
        return self.staged.id

    @property
    def strike(self) -> float:
        if self.selection is not None and self.selection.strike is not None:
            return float(self.selection.strike)
        return float(self.staged.strike)

    @property
    def pending(self) -> bool:
        return self.status == "PENDING"

    def drop(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason

    def describe(self) -> str:
        return f"#{self.id} {self.staged.symbol} {self.staged.expiration.isoformat()} {self.strike:g} P"


# ============================================================================ the runner


class TwoTierRunner:
    """One morning (see the module text). Build it and call :meth:`run`."""

    def __init__(
        self,
        *,
        broker: BrokerPort,
        engine: Engine,
        gateway: OrderGateway,
        clock: Clock,
        params: ExecutionParameters,
        options: TwoTierOptions,
        decide: Decide | None = None,
        say: Callable[[str], None] | None = None,
        checkpoint: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.broker = broker
        self.engine = engine
        self.gateway = gateway
        self.clock = clock
        self.params = params.with_overrides(automation_mode=options.mode)
        self.options = options
        if options.mode == "hybrid" and decide is None:
            raise ExecutionRefused("hybrid mode needs a way to ask (a prompt or the ledger's approvals)")
        self.decide = decide if options.mode == "hybrid" else autonomous_decider
        self._say = say or log.info
        self._checkpoint = checkpoint or (lambda _name: None)
        self._sleep = sleep
        self._monotonic = monotonic
        self.trades: list[_Trade] = []
        self.tier2: list[Tier2Decision] = []
        self.notes: list[str] = []
        self.reconciliation: list[str] = []
        self.timings: dict[str, dict] = {}
        self.fill_started_at: datetime | None = None
        self.fill_report: FillReport | None = None
        self._reconcile_needed = False
        self._next_reconcile: datetime | None = None
        self._clock_text = ""
        # Each option's price grid (its market rule) by conId, asked once per morning.
        self._grids: dict[int, PriceIncrements] = {}

    # ------------------------------------------------------------------ entry

    def run(self) -> ExecutionReport:
        now = self.clock.now()
        self.session_day = self.options.session_day or _session_day_for(now)
        self.timeline = morning_timeline(self.session_day, self.params)
        run = ledger_orders.start_execution_run(
            self.engine, mode=self.options.mode, dry_run=self.options.dry_run, session_day=self.session_day,
            at=now, dagster_run_id=self.options.dagster_run_id,
        )
        self.run_id = run.id
        # The gateway's intents name this run (its attributes, set before anything is sent).
        self.gateway.execution_run_id = run.id
        self.gateway.dagster_run_id = self.options.dagster_run_id
        self.say(f"execution run {run.id}: {self.options.mode} mode, "
                 f"{'DRY RUN (nothing is sent)' if self.options.dry_run else 'LIVE'}, session {self.session_day}")
        try:
            status = self._morning()
        except BaseException as problem:  # recorded, then raised again: never swallowed
            status, error = "FAILED", _describe(problem)
            self.notes.append(f"failed: {error}")
            try:
                ledger_orders.finish_execution_run(self.engine, self.run_id, status=status, at=self.clock.now(),
                                                   report=self._report(status).as_dict(), error=error)
            except Exception:  # the original problem matters more than the bookkeeping
                log.exception("could not record the failed execution run %s", self.run_id)
            raise
        report = self._report(status)
        ledger_orders.finish_execution_run(self.engine, self.run_id, status=status, at=self.clock.now(),
                                           report=report.as_dict())
        self.say(f"execution run {run.id} {status.lower()}: {_totals_line(report.totals)}")
        return report

    def say(self, message: str) -> None:
        self._say(message)

    def checkpoint(self, name: str) -> None:
        """A named point of the morning (logged; the fault-injection tests stop the process at one)."""
        log.debug("checkpoint %s", name)
        self._checkpoint(name)

    # ------------------------------------------------------------------ the morning

    def _morning(self) -> str:
        with self._timed("clock_sync"):
            self._clock_check()
        with self._timed("reconcile_start"):
            self._reconcile("start")
        self._load_trades()
        self.checkpoint("loaded")
        window_closed = self.clock.now() >= at_new_york(self.session_day, self.params.tier2_window_end)
        if window_closed:
            self.notes.append(f"the execution window of {self.session_day} closed at "
                              f"{self.params.tier2_window_end:%H:%M} New York: nothing new is sent")
            for trade in self._pending():
                trade.drop("NOT_TRADED", "the execution window had closed when the run started")
        if self._pending():
            with self._timed("premarket_validation", self.timeline.premarket_validation):
                self._wait_until(self.timeline.premarket_validation)
                self._premarket()
            self.checkpoint("premarket-done")
            with self._timed("quote_refresh", self.timeline.quote_refresh):
                self._wait_until(self.timeline.quote_refresh)
                self._refresh_quotes()
            self.checkpoint("quotes-refreshed")
            if self._pending() and not self._approved():
                for trade in self._pending():
                    trade.drop("ABORTED", "aborted before Tier 1: nothing was sent")
                self._final_reconciliation(wait=False)
                return "ABORTED"
            with self._timed("strike_selection", self.timeline.strike_selection):
                self._wait_until(self.timeline.strike_selection)
                self._select_strikes()
            self.checkpoint("strikes-selected")
        if self._pending() or self._monitored():
            with self._timed("tier1_and_fill_monitoring", self.timeline.tier1_submission):
                self._wait_until(self.timeline.tier1_submission)
                self._tier1_and_fill_monitoring()
        if self._monitored() and not self.options.dry_run:
            with self._timed("tier2"):
                self._tier2()
        self._final_reconciliation(wait=True)
        self._capture_entry_snapshots()
        return "SUCCEEDED"

    # ------------------------------------------------------------------ start

    def _clock_check(self) -> None:
        checked = check_clock_sync(self.clock, self.broker, self.params.max_clock_drift_ms,
                                   rate=self.options.clock_rate)
        self._clock_text = checked.reason
        self.say(checked.reason)
        if not checked.ok:
            raise ExecutionRefused(f"clock sync check failed: {checked.reason} (MAX_CLOCK_DRIFT_MS)")

    def _reconcile(self, when: str, *, quiet: bool = False) -> None:
        if self.options.dry_run and when != "start":
            return
        try:
            result = self.gateway.reconcile()
        except BrokerError as problem:
            if when == "start":
                raise  # nothing may be sent before the ledger agrees with the broker
            self.notes.append(f"reconciliation ({when}) failed: {problem}; reconciling again later")
            self._reconcile_needed = True
            return
        self._reconcile_needed = False
        text = _summary_of(result)
        review = tuple(getattr(result, "review", ()) or ())
        changed = bool(getattr(getattr(result, "applied", None), "updates_applied", 0)
                       or getattr(getattr(result, "applied", None), "fills_recorded", 0))
        if not quiet or changed or review:
            self.reconciliation.append(f"{when} at {_ny(self.clock.now())}: {text}")
            self.say(f"reconciliation ({when}): {text}")
        for line in review:
            if f"review: {line}" not in self.notes:
                self.notes.append(f"review: {line}")

    def _connected(self) -> bool:
        """Whether the broker connection is up (a request starts the adapter's bounded
        reconnect when it is down). After a loss the next step reconciles before acting."""
        if getattr(self.broker, "is_connected", True):
            return True
        if not self._reconcile_needed:
            self.notes.append(f"{_ny(self.clock.now())}: the broker connection is down; waiting for the "
                              "reconnect, then reconciling before acting")
        self._reconcile_needed = True
        try:
            self.broker.current_time()  # waits for the reconnect, or fails when it gives up
        except BrokerError:
            return False
        return True

    def _load_trades(self) -> None:
        rows = list_staged(self.engine, self.session_day)
        for staged in rows:
            trade = _Trade(staged=staged)
            intents = [i for i in ledger_orders.intents_for_staged(self.engine, staged.id)
                       if i.dry_run == self.options.dry_run and i.session_day == self.session_day
                       and i.purpose in (IntentPurpose.ENTRY, IntentPurpose.REPLACE_REMAINDER)]
            if intents:
                self._adopt(trade, intents)
            elif staged.status in _TRADEABLE:
                pass  # PENDING: this morning trades it
            elif staged.status == "STALE":
                trade.drop("STALE", staged.status_reason or "stale since staging")
            elif staged.status == "ABANDONED" and staged.strike_selection_outcome == "ABANDONED":
                trade.drop("ABANDONED", staged.strike_selection_reason or "abandoned by the strike selection")
            else:
                continue  # not staged (rejected on Sunday) or cancelled: not part of the morning
            self.trades.append(trade)
        adopted = sum(1 for t in self.trades if t.intent_ids)
        count = len(self.trades)
        self.say(f"{count} staged opportunit{'y' if count == 1 else 'ies'} for {self.session_day}: "
                 f"{len(self._pending())} to trade, {adopted} already sent earlier")

    def _adopt(self, trade: _Trade, intents: Sequence[ledger_orders.OrderIntent]) -> None:
        """A trade whose orders a previous run created: monitored again, never re-sent."""
        trade.intent_ids = [intent.id for intent in intents]
        trade.limits = [float(intent.limit_price) for intent in intents if intent.limit_price is not None]
        trade.route = intents[0].order_type
        entry = intents[0]
        if entry.status is IntentStatus.INTENDED and self.options.dry_run:
            trade.drop("DRY_RUN", _would_send(entry))
            return
        current = intents[-1]
        if current.status is IntentStatus.UNKNOWN:
            trade.drop("NEEDS_REVIEW", current.error or "its order's state is unknown: review at the broker")
            return
        if entry.status in (IntentStatus.CANCELLED, IntentStatus.REJECTED) and sum(
                i.filled_quantity for i in intents) == 0 and entry.sent_at is None:
            trade.drop("NOT_SENT", entry.error or "its order was never sent; not re-sent automatically")
            return
        trade.status = "SENT"
        self.notes.append(f"{trade.describe()}: adopted from an earlier run ({current.order_ref}, "
                          f"{current.status.value})")

    # ------------------------------------------------------------------ 9:15

    def _premarket(self) -> None:
        trades = self._pending()
        prices = self._stock_prices(trades)
        now = self.clock.now()
        for trade in trades:
            price = prices.get(trade.id)
            staged_price = trade.staged.staged_stock_price
            if price is None:
                trade.drop("NO_DATA", "no stock price at the 9:15 pre-market check")
                continue
            trade.stock_price = price
            if staged_price is None:
                trade.drop("NEEDS_REVIEW", "no stock price was recorded at staging to compare with")
                continue
            check = premarket_check(float(staged_price), price, float(trade.staged.strike), self.params)
            trade.premarket = f"{check.outcome.value}: {check.reason}"
            if check.outcome is PremarketOutcome.ADJUSTED:
                self._update(trade, status="ADJUSTED", otm_pct=check.otm_fraction * 100, status_reason=check.reason,
                             at=now)
            elif check.outcome is PremarketOutcome.STALE:
                self._update(trade, status="STALE", status_reason=check.reason, at=now)
                trade.drop("STALE", check.reason)
            else:
                self._update(trade, status_reason=check.reason, at=now)
                trade.drop("NEEDS_REVIEW", check.reason)
        self.say(f"pre-market check at {_ny(now)}: {len(self._pending())} of {len(trades)} tradeable")
        # The listed strikes do not change during the morning: read them now, so the 9:29
        # selection only needs fresh quotes.
        for trade in self._pending():
            try:
                self._listed_puts(trade)
            except BrokerError:
                pass  # read again at 9:29, where a failure drops the trade with its reason

    # ------------------------------------------------------------------ 9:28

    def _refresh_quotes(self) -> None:
        trades = self._pending()
        options = self._option_contracts(trades)
        quotes = self._quotes_by_con_id(list(options.values()))
        self._learn_grids(list(options.values()))
        now = self.clock.now()
        as_of = calendar.new_york_date(now)
        for trade in trades:
            contract = options.get(trade.id)
            quote = quotes.get(contract.con_id) if contract else None
            if quote is None or quote.bid is None or quote.ask is None or quote.ask < quote.bid:
                trade.bid = trade.ask = trade.limit = None
                if not self.params.adaptive_strike_enabled:
                    trade.drop("NO_DATA", "no two-sided quote for the staged strike at the 9:28 refresh")
                continue
            trade.option = contract
            trade.bid, trade.ask, trade.quoted_at = quote.bid, quote.ask, now
            trade.limit = limit_price(quote.bid, quote.ask, self.params.limit_bid_mid_ratio, self._grid(contract))
            volume = self._volume(contract, quote, as_of, self.params.staging_min_volume)
            reasons = staging_reasons(
                StagingInput(symbol=trade.staged.symbol, strike=float(trade.staged.strike),
                             expiration=trade.staged.expiration, stock_price=trade.stock_price, bid=quote.bid,
                             ask=quote.ask, volume=volume,
                             open_interest=None if quote.open_interest is None else int(quote.open_interest)),
                as_of, self.params)
            self._update(trade, staged_bid=quote.bid, staged_ask=quote.ask, staged_mid=(quote.bid + quote.ask) / 2,
                         limit_price=trade.limit, validation_reasons=reasons, at=now)
            if reasons and not self.params.adaptive_strike_enabled:
                trade.drop("NOT_TRADED", "failed the 9:28 re-check: " + "; ".join(reasons))
        self.say(f"quotes refreshed at {_ny(now)}: {len(self._pending())} trade(s) planned")

    def _approved(self) -> bool:
        """Hybrid mode's question (autonomous and supervised do not ask)."""
        if self.options.mode != "hybrid":
            return True
        deadline = at_new_york(self.session_day, self.params.tier2_window_end)
        asked = 0
        while True:
            if self.clock.now() >= deadline:
                self.notes.append(f"hybrid: the question closed at {_ny(deadline)} before a decision: aborted")
                return False
            asked += 1
            conditions = PreTradeConditions(
                at=self.clock.now(), conditions=self._conditions([t for t in self._pending() if t.bid is not None]),
                planned=tuple(PlannedOrder(t.staged.symbol, t.staged.expiration, t.strike, t.staged.contracts, t.bid,
                                           t.ask, t.limit) for t in self._pending()),
                deadline=deadline, asked=asked)
            self.say("market conditions before Tier 1:\n" + conditions.summary())
            answer = (self.decide(conditions) or "").strip().lower()
            if answer not in DECISIONS:
                self.notes.append(f"hybrid: unknown answer {answer!r}, taken as abort")
                answer = "abort"
            self.notes.append(f"hybrid decision {asked} at {_ny(self.clock.now())}: {answer} "
                              f"({conditions.conditions.level}: {conditions.conditions.reason})")
            if answer == "execute":
                return True
            if answer == "abort":
                self.say("aborted: no order is sent")
                return False
            if self.clock.now() + timedelta(seconds=HYBRID_WAIT_SECONDS) >= deadline:
                self.notes.append("hybrid: still waiting when the window closed: aborted")
                return False
            self._wait_until(self.clock.now() + timedelta(seconds=HYBRID_WAIT_SECONDS), force=True)
            self._refresh_quotes()

    # ------------------------------------------------------------------ 9:29

    def _select_strikes(self) -> None:
        now = self.clock.now()
        as_of = calendar.new_york_date(now)
        trades = self._pending()
        prices = self._stock_prices(trades)
        chains: dict[int, dict[float, Contract]] = {}
        for trade in trades:
            stock_price = prices.get(trade.id) or trade.stock_price
            if stock_price is None:
                trade.drop("NO_DATA", "no stock price at the 9:29 strike selection")
                continue
            trade.stock_price = stock_price
            try:
                chains[trade.id] = self._candidate_contracts(trade, stock_price)
            except BrokerError as problem:
                trade.drop("NO_DATA", f"the option chain could not be read at 9:29: {problem}")
        # One market data request for every candidate of every trade (greeks included).
        quotes_at = self.clock.now()
        try:
            quotes = self._quotes_by_con_id([c for chain in chains.values() for c in chain.values()])
        except BrokerError as problem:
            for trade in trades:
                if trade.id in chains:
                    trade.drop("NO_DATA", f"no quotes at the 9:29 strike selection: {problem}")
            return
        for trade in trades:
            if trade.id not in chains:
                continue
            contracts = chains[trade.id]
            strike_quotes = [self._strike_quote(strike, contract, quotes.get(contract.con_id), as_of)
                             for strike, contract in contracts.items() if contract.con_id in quotes]
            selection = select_strike(original_strike=float(trade.staged.strike), expiration=trade.staged.expiration,
                                      stock_price=trade.stock_price, quotes=strike_quotes, params=self.params)
            trade.selection = selection
            # A re-run starts from the strike an earlier run selected; the original stays the staged one.
            first_strike = trade.staged.original_strike if trade.staged.original_strike is not None else \
                trade.staged.strike
            fields_: dict[str, Any] = dict(
                strike_selection_outcome=selection.outcome.value, original_strike=float(first_strike),
                live_delta=selection.live_delta, strike_selection_method=selection.method,
                strike_selection_reason=selection.reason)
            if selection.outcome is StrikeOutcome.ABANDONED or selection.strike is None:
                self._update(trade, status="ABANDONED", status_reason=selection.reason, at=now, **fields_)
                trade.drop("ABANDONED", selection.reason)
                continue
            trade.option = contracts[round(float(selection.strike), 6)]
            trade.bid, trade.ask, trade.quoted_at = selection.bid, selection.ask, quotes_at
            if selection.outcome is StrikeOutcome.SELECTED:
                fields_.update(strike=float(selection.strike), delta=selection.live_delta)
            self._update(trade, at=now, **fields_)
            self.say(f"strike selection {trade.staged.symbol}: {selection.outcome.value} - {selection.reason}")
        self.say(f"strike selection at {_ny(now)}: {len(self._pending())} trade(s) to submit")

    def _candidate_contracts(self, trade: _Trade, stock_price: float) -> dict[float, Contract]:
        """The listed puts to quote for the selection: STRIKE_MAX_CANDIDATES OTM strikes near
        the staged one (only the staged strike when selection is off)."""
        wanted = self.params.strike_max_candidates
        by_strike = self._listed_puts(trade)
        original = round(float(trade.staged.strike), 6)
        if self.params.adaptive_strike_enabled:
            chosen = candidate_strikes(by_strike.keys(), stock_price, float(trade.staged.strike), wanted)
        else:
            chosen = (original,) if original in by_strike else ()
        return {strike: by_strike[strike] for strike in chosen}

    def _listed_puts(self, trade: _Trade) -> dict[float, Contract]:
        """The listed puts of the trade's expiry around its strike (kept for the morning)."""
        if trade.listed is None:
            wanted = self.params.strike_max_candidates
            listed = self.broker.strikes_near(trade.staged.symbol, trade.staged.expiration,
                                              float(trade.staged.strike), right="P", count=2 * wanted + 1,
                                              side="both")
            trade.listed = {round(float(c.strike), 6): c for c in listed if c.strike is not None}
        return trade.listed

    def _strike_quote(self, strike: float, contract: Contract, quote: Quote, as_of: date) -> StrikeQuote:
        greeks = quote.greeks
        return StrikeQuote(
            strike=strike, bid=quote.bid, ask=quote.ask, delta=greeks.delta if greeks is not None else None,
            iv=greeks.implied_vol if greeks is not None else None,
            volume=self._volume(contract, quote, as_of, self.params.strike_min_volume),
            open_interest=None if quote.open_interest is None else int(quote.open_interest))

    # ------------------------------------------------------------------ 9:30 and fills

    def _tier1_and_fill_monitoring(self) -> None:
        if self.clock.now() >= at_new_york(self.session_day, self.params.tier2_window_end):
            for trade in self._pending():
                trade.drop("NOT_TRADED", "the execution window closed before Tier 1")
        queue = [t for t in self._pending() if self._priced(t)]  # routes shown in a dry run
        if self.options.dry_run:
            self.checkpoint("tier1-start")
            self._submit_entries(queue)
            self.checkpoint("tier1-submitted")
            return
        adopted = self._monitored()
        started = self._earliest_sent_at(adopted) if adopted and not queue else self.clock.now()
        self.fill_started_at = started
        for trade in adopted:
            self._refresh_monitored(trade, started)
        self.checkpoint("tier1-start")
        if queue:
            self.say(f"Tier 1 at {_ny(self.clock.now())}: {len(queue)} order(s), "
                     f"{'rapid-fire' if self.params.use_rapid_fire else 'sequential'}")
        last_submitted: _Trade | None = None
        next_check = self.clock.now()
        while True:
            now = self.clock.now()
            window_over = now >= started + timedelta(seconds=self.params.fill_monitor_window_seconds)
            if queue and (self.params.use_rapid_fire or window_over or last_submitted is None
                          or self._sequential_ready(last_submitted, now)):
                batch = queue if (self.params.use_rapid_fire or window_over) else queue[:1]
                self._submit_entries(batch)
                last_submitted = batch[-1]
                queue = queue[len(batch):]
                if not queue:
                    self.checkpoint("tier1-submitted")
            self._fill_check(started)
            self.checkpoint("fill-check")
            if not queue and monitoring_finished([t.monitored for t in self._monitored()]):
                break
            if window_over and not self._connected():
                # Nothing can be decided blind: the orders stay as they are at the broker (DAY
                # orders) and the final reconciliation, or the next run, accounts for them.
                self.notes.append("fill monitoring ended with the broker connection down")
                break
            next_check = max(next_check + timedelta(seconds=self.params.fill_check_interval_seconds), self.clock.now())
            self._wait_until(next_check, force=True, min_real=self.options.min_real_check_gap)
        self.fill_report = build_fill_report([t.monitored for t in self._monitored()], started, self.clock.now())
        self.say(f"fill monitoring over: {self.fill_report.summary()}")

    def _sequential_ready(self, previous: _Trade, now: datetime) -> bool:
        order = previous.monitored
        if order is None or order.status is not OrderState.WORKING or order.is_complete or order.remaining == 0:
            return True
        return now >= order.submitted_at + timedelta(seconds=self.params.fill_adjustment_interval_seconds)

    def _fresh_quotes(self, trades: Sequence[_Trade]) -> list[_Trade]:
        """The trades with quotes at most :data:`QUOTE_MAX_AGE_SECONDS` old (re-quoted in one
        request when older: a late or sequential submission must not price from a stale mid,
        which can be below the bid by then)."""
        now = self.clock.now()
        stale = [t for t in trades if t.quoted_at is None
                 or (now - t.quoted_at).total_seconds() > QUOTE_MAX_AGE_SECONDS]
        if stale:
            try:
                quotes = self._quotes_by_con_id([t.option for t in stale if t.option is not None])
            except BrokerError as problem:
                quotes = {}
                self.notes.append(f"quotes before submission unavailable: {problem}")
            for trade in stale:
                quote = quotes.get(trade.option.con_id) if trade.option is not None else None
                if quote is None or quote.bid is None or quote.ask is None or quote.ask < quote.bid:
                    trade.drop("NO_DATA", "no live two-sided quote for the selected strike at submission")
                    continue
                trade.bid, trade.ask, trade.quoted_at = quote.bid, quote.ask, now
        return [t for t in trades if t.pending]

    def _priced(self, trade: _Trade) -> bool:
        """Routing and limit of a trade about to be submitted (False: no usable quote)."""
        if trade.bid is None or trade.ask is None or trade.option is None or trade.ask < trade.bid:
            trade.drop("NO_DATA", "no live two-sided quote for the selected strike at Tier 1")
            return False
        routing = route_order(trade.bid, trade.ask, self.params.use_adaptive_algo,
                              self.params.adaptive_algo_spread_threshold)
        trade.route = routing.order_type
        trade.route_reason = routing.reason
        grid = self._grid(trade.option)
        # The floor is rounded up onto the grid too: a limit is always a price TWS accepts.
        trade.limit = max(routing.limit_for(trade.bid, trade.ask, self.params.limit_bid_mid_ratio, grid),
                          grid.round_up(self.params.premium_floor))
        return True

    def _submit_entries(self, trades: Sequence[_Trade]) -> None:
        """Tier 1 orders through the gateway (one batch: risk state loaded once, each approved
        order counted before the next is checked)."""
        trades = self._fresh_quotes(trades)
        self._learn_grids([t.option for t in trades if t.option is not None])
        trades = [t for t in trades if self._priced(t)]
        if not trades:
            return
        specs = [IntentSpec(session_day=self.session_day, purpose=IntentPurpose.ENTRY, ref_id=t.id,
                            contract=t.option, action="SELL", quantity=t.staged.contracts, order_type=t.route,
                            limit_price=t.limit, seq=1, staged_opportunity_id=t.id, sector=t.staged.sector)
                 for t in trades]
        self.checkpoint("before-submit " + " ".join(spec.order_ref(dry_run=self.options.dry_run) for spec in specs))
        results = self._send_specs(trades, specs)
        for trade, spec, result in zip(trades, specs, results):
            self._entry_outcome(trade, spec, result)

    def _send_specs(self, trades: Sequence[_Trade], specs: Sequence[IntentSpec]) -> list[SubmitResult | None]:
        try:
            return list(self.gateway.submit_batch(specs))
        except BrokerError as problem:
            # Before or while sending: whatever went out is SENT in the ledger and the next
            # reconciliation settles it; nothing is re-sent.
            self.notes.append(f"Tier 1 submission failed: {problem}; reconciliation follows")
            self._reconcile_needed = True
            return [None] * len(specs)

    def _entry_outcome(self, trade: _Trade, spec: IntentSpec, result: SubmitResult | None) -> None:
        ref = spec.order_ref(dry_run=self.options.dry_run)
        intent = result.intent if result is not None and result.intent is not None else ledger_orders.get_intent(
            self.engine, order_ref=ref)
        if intent is None:
            reasons = "; ".join(result.reasons) if result is not None else "the submission failed before the intent"
            # No intent: refused before one was written (a failed margin check is REJECTED).
            trade.drop(result.outcome.value if result is not None else "NOT_SENT", reasons)
            return
        trade.intent_ids.append(intent.id)
        trade.limits.append(trade.limit)
        outcome = result.outcome if result is not None else SubmitOutcome.UNCERTAIN
        if outcome is SubmitOutcome.DRY_RUN or (outcome is SubmitOutcome.DUPLICATE and intent.dry_run):
            trade.drop("DRY_RUN", f"{_would_send(intent)} ({trade.route_reason})")
            return
        reasons = "; ".join(result.reasons) if result is not None else ""
        if outcome is SubmitOutcome.REFUSED:
            trade.drop("REFUSED", reasons or intent.error or "refused before sending")
            return
        if outcome is SubmitOutcome.REJECTED:
            trade.drop("REJECTED", reasons or intent.error or "rejected by the broker")
            return
        # SENT, UNCERTAIN (may be at the broker: monitored until reconciliation says otherwise)
        # or DUPLICATE (an earlier run sent it).
        self.say(f"Tier 1 {trade.describe()}: {intent.order_ref} {trade.route} limit {trade.limit:.2f} "
                 f"x{intent.quantity}: {outcome.value}" + (f" ({reasons})" if reasons and outcome is not
                                                           SubmitOutcome.SENT else ""))
        trade.status = "SENT"
        trade.monitored = MonitoredOrder(order_id=intent.order_ref, limit=trade.limit, total=intent.quantity,
                                         submitted_at=self.clock.now(), symbol=trade.staged.symbol)
        self._refresh_monitored(trade, self.fill_started_at or self.clock.now())

    def _fill_check(self, started: datetime) -> None:
        if not self._connected():
            return  # never act blind: the adapter reconnects, and the next check reconciles first
        self._record_events()
        now = self.clock.now()
        if self._reconcile_needed or self._next_reconcile is None or now >= self._next_reconcile:
            # Events can be lost with a connection: the broker's open orders and executions are
            # compared with the ledger every FILL_ADJUSTMENT_INTERVAL (before limits move).
            self._reconcile("during fill monitoring", quiet=True)
            self._next_reconcile = now + timedelta(seconds=self.params.fill_adjustment_interval_seconds)
        monitored = self._monitored()
        for trade in monitored:
            self._refresh_monitored(trade, started)
        now = self.clock.now()
        needing_quotes = [t for t in monitored if t.monitored.status is OrderState.WORKING
                          and not t.monitored.remainder_replaced and t.monitored.filled_fraction
                          > self.params.fill_partial_threshold and not t.monitored.is_complete]
        quotes = self._price_quotes(needing_quotes)
        # One decision per trade, each on its own contract's price grid.
        actions = []
        for trade in monitored:
            grid = self._trade_grid(trade)
            [action] = decide_fill_actions([trade.monitored], now, started, quotes, self.params, grid)
            actions.append(_on_grid(action, trade.monitored, grid, self.params.premium_floor))
        for trade, action in zip(monitored, actions):
            try:
                self._carry_out(trade, action, now)
            except BrokerError as problem:
                self.notes.append(f"{trade.describe()}: {type(action).__name__} failed: {problem}")
                self._reconcile_needed = True

    def _carry_out(self, trade: _Trade, action: Any, now: datetime) -> None:
        order = trade.monitored
        if isinstance(action, LowerLimit):
            change = self.gateway.modify(self._current_intent(trade), action.new_limit)
            if not change.done:
                # Filled or closed meanwhile (the next check sees it), or refused (a halt).
                self.say(f"{trade.describe()}: limit not lowered: {change.reason}")
                return
            trade.monitored = apply_action(order, action, now)
            trade.limits.append(action.new_limit)
            self.say(f"{trade.describe()}: {action.reason}")
        elif isinstance(action, CancelAndReplace):
            self._cancel_and_replace(trade, action, now)
        elif isinstance(action, LeaveWorking):
            trade.monitored = apply_action(order, action, now)
            if order.filled == 0:
                self._update(trade, status="WORKING", status_reason="left working as a DAY order after the fill "
                             "monitoring window", at=now, quiet=True)
            self.say(f"{trade.describe()}: {action.reason}")
        elif isinstance(action, Cancel):
            change = self.gateway.cancel(self._current_intent(trade), reason=action.reason)
            if change.done:
                trade.monitored = apply_action(order, action, now)
            self.say(f"{trade.describe()}: {action.reason}" + ("" if change.done else f" - {change.reason}"))

    def _cancel_and_replace(self, trade: _Trade, action: CancelAndReplace, now: datetime) -> None:
        current = self._current_intent(trade)
        change = self.gateway.cancel(current, reason=f"remainder to be replaced: {action.reason}")
        self._record_events()
        current = ledger_orders.get_intent(self.engine, current.id)
        if not change.done and current.status not in FINAL_STATUSES:
            self.say(f"{trade.describe()}: remainder not replaced, the cancel did not go through: {change.reason}")
            return
        remaining = current.quantity - current.filled_quantity
        if remaining <= 0 or current.status is IntentStatus.FILLED:
            self.say(f"{trade.describe()}: the remainder filled before the cancel; nothing to replace")
            self._refresh_monitored(trade, self.fill_started_at or now)
            return
        seq = len(trade.intent_ids)  # the entry is E1; its replacements R1, R2, ...
        spec = IntentSpec(session_day=self.session_day, purpose=IntentPurpose.REPLACE_REMAINDER, ref_id=trade.id,
                          contract=self._contract_of(trade, current), action="SELL", quantity=remaining,
                          order_type=current.order_type, limit_price=action.new_limit, seq=seq,
                          staged_opportunity_id=trade.id, parent_intent_id=current.id, sector=trade.staged.sector)
        self.checkpoint(f"before-submit {spec.order_ref(dry_run=self.options.dry_run)}")
        [result] = self._send_specs([trade], [spec])
        intent = result.intent if result is not None and result.intent is not None else ledger_orders.get_intent(
            self.engine, order_ref=spec.order_ref(dry_run=self.options.dry_run))
        if intent is None or result is None or result.outcome not in (SubmitOutcome.SENT, SubmitOutcome.UNCERTAIN,
                                                                      SubmitOutcome.DUPLICATE):
            why = "; ".join(result.reasons) if result is not None else "the submission failed"
            trade.monitored = dataclasses.replace(trade.monitored, status=OrderState.CANCELLED, remaining=0,
                                                  remainder_replaced=True)
            self.notes.append(f"{trade.describe()}: remainder of {remaining} not replaced ({why})")
            if intent is not None:
                trade.intent_ids.append(intent.id)
            return
        trade.intent_ids.append(intent.id)
        trade.limits.append(action.new_limit)
        replaced = dataclasses.replace(action, quantity=remaining)
        trade.monitored = apply_action(trade.monitored, replaced, now, new_order_id=intent.order_ref)
        self._refresh_monitored(trade, self.fill_started_at or now)
        self.say(f"{trade.describe()}: {action.reason} as {intent.order_ref}")

    def _contract_of(self, trade: _Trade, intent: ledger_orders.OrderIntent) -> Contract:
        if trade.option is not None and trade.option.con_id == intent.con_id:
            return trade.option
        [contract] = self.broker.qualify(ContractSpec.option(
            intent.symbol, intent.expiration, float(intent.strike), intent.right or "P"))
        trade.option = contract
        return contract

    def _learn_grids(self, contracts: Sequence[Contract]) -> None:
        """Ask the broker for the price grids of ``contracts`` not known yet (one request)."""
        unknown = list({c.con_id: c for c in contracts if c.con_id not in self._grids}.values())
        if not unknown:
            return
        try:
            grids = self.broker.price_increments(unknown)
        except BrokerError as problem:
            grids = [fallback_increments(f"the broker could not say: {problem}") for _ in unknown]
        for contract, grid in zip(unknown, grids):
            if grid.source.startswith("fallback"):
                self.notes.append(f"{contract.describe()}: priced on the {grid.source}")
            self._grids[contract.con_id] = grid

    def _grid(self, contract: Contract) -> PriceIncrements:
        """The price grid of ``contract`` (every limit of it is a point of the grid)."""
        self._learn_grids([contract])
        return self._grids[contract.con_id]

    def _trade_grid(self, trade: _Trade) -> PriceIncrements:
        """The price grid of a trade's current order's contract."""
        contract = trade.option
        if contract is None:
            try:
                contract = self._contract_of(trade, self._current_intent(trade))
            except BrokerError as problem:
                return fallback_increments(f"{trade.describe()} could not be qualified: {problem}")
        return self._grid(contract)

    def _refresh_monitored(self, trade: _Trade, started: datetime) -> None:
        """The trade's MonitoredOrder from the ledger's intents (the truth: fills and statuses)."""
        intents = [ledger_orders.get_intent(self.engine, intent_id) for intent_id in trade.intent_ids]
        current = intents[-1]
        filled = min(sum(i.filled_quantity for i in intents), intents[0].quantity)
        total = intents[0].quantity
        working = current.status in _LIVE_INTENT
        remaining = max(current.quantity - current.filled_quantity, 0) if working else 0
        remaining = min(remaining, total - filled)
        previous = trade.monitored
        if previous is None:
            previous = MonitoredOrder(
                order_id=current.order_ref, total=total, submitted_at=current.sent_at or started,
                limit=float(current.limit_price) if current.limit_price is not None else 0.0,
                symbol=trade.staged.symbol, remainder_replaced=len(intents) > 1,
                last_adjusted_at=current.sent_at if len(intents) > 1 else None,
                adjustments=_adjustments_made(self.engine, intents))
        if filled >= total:
            state = OrderState.FILLED
        elif working:
            state = OrderState.LEFT_WORKING if previous.status is OrderState.LEFT_WORKING else OrderState.WORKING
        elif current.status is IntentStatus.REJECTED:
            state = OrderState.REJECTED
        else:
            state = OrderState.CANCELLED
        trade.monitored = dataclasses.replace(previous, order_id=current.order_ref, filled=filled,
                                              remaining=remaining, status=state)

    def _current_intent(self, trade: _Trade) -> ledger_orders.OrderIntent:
        return ledger_orders.get_intent(self.engine, trade.intent_ids[-1])

    def _earliest_sent_at(self, trades: Sequence[_Trade]) -> datetime:
        sent = [ledger_orders.get_intent(self.engine, t.intent_ids[0]).sent_at for t in trades]
        known = [moment for moment in sent if moment is not None]
        return min(known) if known else self.clock.now()

    # ------------------------------------------------------------------ Tier 2

    def _tier2(self) -> None:
        fill_end = (self.fill_started_at or self.timeline.tier1_submission) + timedelta(
            seconds=self.params.fill_monitor_window_seconds)
        checks = [t for t in self.timeline.tier2_checks if t >= fill_end]
        if not self.params.tier2_enabled:
            self.notes.append("Tier 2 is off (TIER2_ENABLED=false)")
            return
        if not checks:
            self.notes.append(f"Tier 2: no check left in the window after fill monitoring ended at {_ny(fill_end)}")
            return
        for moment in checks:
            if self._tier2_finished():
                return
            self._wait_until(moment, while_waiting=self._between_checks)
            if moment < self.clock.now() - timedelta(seconds=self.params.tier2_check_interval_seconds):
                continue  # a check long past (a late re-run): only the latest one counts
            self._between_checks()
            if self._tier2_finished():
                return
            self.checkpoint("tier2-check")
            self._tier2_check()

    def _tier2_finished(self) -> bool:
        """Tier 2 re-prices each unfilled order once; with none left it has nothing to do."""
        if not self._unfilled():
            self.notes.append("Tier 2: every order is filled or closed; nothing to re-price")
            return True
        if all(t.tier2_done for t in self._unfilled()):
            self.notes.append("Tier 2: every unfilled order was re-priced (or found already lower) once; "
                              "no further checks")
            return True
        return False

    def _unfilled(self) -> list[_Trade]:
        return [t for t in self._monitored()
                if t.monitored.status in (OrderState.WORKING, OrderState.LEFT_WORKING)
                and not t.monitored.is_complete and t.monitored.remaining > 0]

    def _between_checks(self) -> None:
        if not self._connected():
            return
        if self._reconcile_needed:
            self._reconcile("after a reconnect")
        self._record_events()
        for trade in self._monitored():
            self._refresh_monitored(trade, self.fill_started_at or self.clock.now())

    def _tier2_check(self) -> None:
        if not self._connected():
            self.tier2.append(Tier2Decision(at=self.clock.now().isoformat(), vix=None, average_spread=None,
                                            level="unknown", favorable=False, reason="broker connection down",
                                            action="skipped: the broker connection is down"))
            return
        self._record_events()
        if self._reconcile_needed:
            self._reconcile("tier 2")
        for trade in self._monitored():
            self._refresh_monitored(trade, self.fill_started_at or self.clock.now())
        unfilled = [t for t in self._unfilled() if not t.tier2_done]
        now = self.clock.now()
        quotes = self._price_quotes(unfilled)
        spreads = [q.spread for q in quotes.values() if q.spread is not None and q.spread >= 0]
        vix = self._vix()
        conditions = assess_conditions(vix, spreads, self.params)
        repriced: list[dict] = []
        if conditions.favorable:
            for trade in unfilled:
                quote = quotes.get(trade.monitored.order_id)
                if quote is None or quote.bid is None or quote.ask is None or quote.ask < quote.bid:
                    continue
                grid = self._trade_grid(trade)
                fresh = limit_price(quote.bid, quote.ask, self.params.limit_bid_mid_ratio, grid)
                price = tier2_limit(fresh, quote.bid, quote.ask, self.params.tier2_limit_adjustment,
                                    self.params.premium_floor, grid, current_limit=trade.monitored.limit)
                trade.tier2_done = True
                if price is None:
                    continue
                try:
                    change = self.gateway.modify(self._current_intent(trade), price)
                except BrokerError as problem:
                    self.notes.append(f"{trade.describe()}: Tier 2 re-price failed: {problem}")
                    self._reconcile_needed = True
                    continue
                if not change.done:
                    self.notes.append(f"{trade.describe()}: Tier 2 re-price not made: {change.reason}")
                    continue
                repriced.append({"order_ref": trade.monitored.order_id, "from": trade.monitored.limit, "to": price})
                trade.monitored = dataclasses.replace(trade.monitored, limit=price)
                trade.limits.append(price)
            action = (f"re-priced {len(repriced)} of {len(unfilled)} unfilled order(s)" if repriced
                      else f"no unfilled order could be priced more aggressively ({len(unfilled)} checked)")
        else:
            action = "skipped: " + conditions.reason
        decision = Tier2Decision(at=now.isoformat(), vix=vix, average_spread=conditions.average_spread,
                                 level=conditions.level, favorable=conditions.favorable, reason=conditions.reason,
                                 action=action, repriced=tuple(repriced))
        self.tier2.append(decision)
        self.say(f"Tier 2 at {_ny(now)}: {conditions.level} ({conditions.reason}): {action}")

    def _vix(self) -> float | None:
        try:
            [vix] = self.broker.qualify(ContractSpec.index(VIX_SYMBOL))
            [quote] = self.broker.quotes([vix])
        except (BrokerError, ValueError) as problem:
            self.notes.append(f"VIX unavailable: {problem}")
            return None
        return quote.price

    # ------------------------------------------------------------------ 10:30

    def _final_reconciliation(self, *, wait: bool) -> None:
        if wait and self._unfilled() and not self.options.dry_run:
            with self._timed("waiting_for_final_reconciliation", self.timeline.final_reconciliation):
                self._wait_until(self.timeline.final_reconciliation, while_waiting=self._between_checks,
                                 until_idle=True)
        with self._timed("final_reconciliation"):
            self._record_events()
            self._reconcile("final")
            self._record_events()
            for trade in self._monitored():
                self._refresh_monitored(trade, self.fill_started_at or self.clock.now())
        if self.fill_started_at is not None:
            self.fill_report = build_fill_report([t.monitored for t in self._monitored()], self.fill_started_at,
                                                 self.clock.now())
        self.checkpoint("final")

    def _capture_entry_snapshots(self) -> None:
        """The entry snapshot of every trade this morning's fills opened (their fills opened
        the trades through the ledger's fill hook). Never fails the run: a capture that fails
        is recorded as a failed snapshot by the service, anything else becomes a note."""
        if self.options.dry_run:
            return  # a dry run fills nothing: no trade was opened
        from trading_pipeline.ledger.trades import get_trade
        from trading_pipeline.trading.monitor import capture_snapshots

        try:
            trade_ids = []
            for trade in self._monitored():
                entry = ledger_orders.get_intent(self.engine, trade.intent_ids[0])
                opened = get_trade(self.engine, trade_key=f"intent:{entry.order_ref}") if entry else None
                if opened is not None:
                    trade_ids.append(opened.id)
            if not trade_ids:
                return
            with self._timed("entry_snapshots"):
                counts = capture_snapshots(self.engine, self.broker, clock=self.clock, now=self.clock.now(),
                                           trade_ids=trade_ids)
        except Exception as problem:  # noqa: BLE001 - a snapshot never fails the morning
            self.notes.append(f"entry snapshots not captured: {_describe(problem)}")
            return
        if counts.get("note"):
            self.notes.append(f"entry snapshots {counts['note']}")
        for failure in counts.get("failed") or []:
            self.notes.append(f"entry snapshot failed: {failure}")
        if counts.get("entry"):
            self.say(f"entry snapshots captured for {counts['entry']} trade(s)")

    # ------------------------------------------------------------------ report

    def _report(self, status: str) -> ExecutionReport:
        trades = tuple(self._trade_report(trade) for trade in self.trades)
        contracts_total = sum(t.contracts for t in trades if t.order_refs)
        totals = {
            "staged": len(trades),
            "sent": len(self._monitored()),
            "filled": sum(1 for t in trades if t.status == "FILLED"),
            "partial": sum(1 for t in trades if t.status == "PARTIAL"),
            "working": sum(1 for t in trades if t.status == "WORKING"),
            "would_send": sum(1 for t in trades if t.status == "DRY_RUN"),
            "not_traded": sum(1 for t in trades if t.status not in ("FILLED", "PARTIAL", "WORKING", "DRY_RUN")),
            "contracts_filled": sum(t.filled for t in trades),
            "contracts_total": contracts_total,
            "premium": round(sum(t.premium for t in trades), 2),
        }
        return ExecutionReport(
            execution_run_id=self.run_id, dagster_run_id=self.options.dagster_run_id,
            session_day=self.session_day.isoformat(), mode=self.options.mode, dry_run=self.options.dry_run,
            account=_masked(self.options.account), status=status,
            review_required=self.options.mode == "supervised" or any(t.status == "NEEDS_REVIEW" for t in trades),
            trades=trades, totals=totals,
            fill_report=dataclasses.asdict(self.fill_report) if self.fill_report is not None else None,
            tier2=tuple(self.tier2), timings=dict(self.timings), clock=self._clock_text,
            reconciliation=tuple(self.reconciliation), notes=tuple(self.notes),
        )

    def _trade_report(self, trade: _Trade) -> TradeReport:
        intents = [ledger_orders.get_intent(self.engine, i) for i in trade.intent_ids]
        filled = sum(i.filled_quantity for i in intents if not i.dry_run)
        notional = sum(float(i.avg_fill_price) * i.filled_quantity for i in intents
                       if not i.dry_run and i.avg_fill_price is not None)
        average = round(notional / filled, 6) if filled else None
        status, reason = trade.status, trade.reason
        if status == "SENT":
            order = trade.monitored
            total = intents[0].quantity
            if filled >= total:
                status, reason = "FILLED", f"filled {filled}/{total}"
            elif order is not None and order.status in (OrderState.WORKING, OrderState.LEFT_WORKING) \
                    and order.remaining > 0:
                status = "PARTIAL" if filled else "WORKING"
                reason = f"filled {filled}/{total}; {order.remaining} working as a DAY order"
            elif filled:
                status, reason = "PARTIAL", f"filled {filled}/{total}; the rest was cancelled"
            else:
                status = "NOT_FILLED"
                reason = intents[-1].error or f"not filled ({intents[-1].status.value})"
        selection = trade.selection
        staged = trade.staged
        original = float(staged.original_strike if staged.original_strike is not None else staged.strike)
        if selection is not None:
            original = float(selection.original_strike)
        return TradeReport(
            staged_id=trade.id, symbol=staged.symbol, expiration=staged.expiration.isoformat(),
            contracts=staged.contracts, original_strike=original,
            strike=float(intents[0].strike) if intents and intents[0].strike is not None else (
                selection.strike if selection is not None else float(staged.strike)),
            strike_outcome=selection.outcome.value if selection is not None else staged.strike_selection_outcome,
            strike_method=selection.method if selection is not None else staged.strike_selection_method,
            live_delta=selection.live_delta if selection is not None else staged.live_delta,
            premarket=trade.premarket, route=trade.route, limits=tuple(round(x, 4) for x in trade.limits),
            filled=filled, avg_price=average,
            premium=round(notional * OPTION_MULTIPLIER, 2), status=status, reason=reason,
            order_refs=tuple(i.order_ref for i in intents),
        )

    # ------------------------------------------------------------------ helpers

    def _pending(self) -> list[_Trade]:
        return [t for t in self.trades if t.pending]

    def _monitored(self) -> list[_Trade]:
        return [t for t in self.trades if t.status == "SENT" and t.intent_ids]

    def _record_events(self) -> None:
        if self.options.dry_run:
            return
        try:
            self.gateway.record_events()
        except BrokerError as problem:
            self.notes.append(f"recording order events failed: {problem}; reconciling at the next check")
            self._reconcile_needed = True

    def _update(self, trade: _Trade, *, at: datetime, quiet: bool = False, **values: Any) -> None:
        """Record a step's outcome on the staged row (a dry run changes no staged row: it is a
        rehearsal of the live morning, which must find the trades as they were staged)."""
        if self.options.dry_run:
            return
        try:
            trade.staged = update_staged(self.engine, trade.id, at=at, **values)
        except TradingPipelineError as problem:
            if not quiet:
                self.notes.append(f"{trade.describe()}: staged row not updated: {problem}")

    def _wait_until(self, moment: datetime, *, force: bool = False, min_real: float = 0.0,
                    while_waiting: Callable[[], None] | None = None, until_idle: bool = False) -> None:
        """Wait for a broker-time instant (at once when it has passed, or without following
        the timeline). ``while_waiting`` runs every FILL_CHECK_INTERVAL of broker time (events
        recorded); ``until_idle`` stops waiting as soon as no order is left working."""
        if not (self.options.follow_timeline or force):
            return
        started_real = self._monotonic()
        next_call = self.clock.now()
        while True:
            now = self.clock.now()
            if now >= moment and self._monotonic() - started_real >= min_real:
                return
            if while_waiting is not None and now >= next_call:
                while_waiting()
                next_call = now + timedelta(seconds=max(self.params.fill_check_interval_seconds, 1.0))
                if until_idle and not self._unfilled():
                    return
            rate = self.options.clock_rate
            remaining = (moment - now).total_seconds()
            real = 0.01 if rate == 0 else remaining / rate
            real = max(real, min_real - (self._monotonic() - started_real), 0.001)
            if while_waiting is not None:
                real = min(real, max(self.options.min_real_check_gap, 0.001))
            self._sleep(min(real, self.options.max_real_sleep))

    def _timed(self, name: str, planned: datetime | None = None):
        return _Timing(self, name, planned)

    def _stock_prices(self, trades: Sequence[_Trade]) -> dict[int, float]:
        symbols = sorted({t.staged.symbol for t in trades})
        contracts: dict[str, Contract] = {}
        for symbol, contract in zip(symbols, self._qualify_each([ContractSpec.stock(s) for s in symbols])):
            if isinstance(contract, str):
                self.notes.append(f"{symbol}: {contract}")
            else:
                contracts[symbol] = contract
        quotes = self._quotes_by_con_id(list(contracts.values()))
        prices: dict[int, float] = {}
        for trade in trades:
            contract = contracts.get(trade.staged.symbol)
            quote = quotes.get(contract.con_id) if contract else None
            if quote is not None and quote.price is not None and quote.price > 0:
                prices[trade.id] = quote.price
                trade.stock = contract
        return prices

    def _option_contracts(self, trades: Sequence[_Trade]) -> dict[int, Contract]:
        specs = [ContractSpec.option(t.staged.symbol, t.staged.expiration, t.strike, "P") for t in trades]
        found: dict[int, Contract] = {}
        for trade, contract in zip(trades, self._qualify_each(specs)):
            if isinstance(contract, str):
                self.notes.append(f"{trade.describe()}: {contract}")
            else:
                found[trade.id] = contract
        return found

    def _qualify_each(self, specs: Sequence[ContractSpec]) -> list[Contract | str]:
        """One qualification request for all; when one fails, each alone (the problem as text)."""
        if not specs:
            return []
        try:
            return list(self.broker.qualify(*specs))
        except ContractError:
            pass
        results: list[Contract | str] = []
        for spec in specs:
            try:
                [contract] = self.broker.qualify(spec)
                results.append(contract)
            except ContractError as problem:
                results.append(str(problem))
        return results

    def _quotes_by_con_id(self, contracts: Sequence[Contract]) -> dict[int, Quote]:
        unique = list({c.con_id: c for c in contracts}.values())
        if not unique:
            return {}
        return {quote.contract.con_id: quote for quote in self.broker.quotes(unique)}

    def _price_quotes(self, trades: Sequence[_Trade]) -> dict[str, PriceQuote]:
        """Current bid/ask of the trades' options, by order id (what fill_policy takes)."""
        contracts = {}
        for trade in trades:
            con_id = self._current_intent(trade).con_id
            contract = trade.option if trade.option is not None and trade.option.con_id == con_id else None
            if contract is None:
                spec = ContractSpec.option(trade.staged.symbol, trade.staged.expiration,
                                           float(self._current_intent(trade).strike), "P")
                try:
                    [contract] = self.broker.qualify(spec)
                except (ContractError, BrokerError) as problem:
                    self.notes.append(f"{trade.describe()}: {problem}")
                    continue
                trade.option = contract
            contracts[trade.monitored.order_id] = contract
        if not contracts:
            return {}
        try:
            quotes = self._quotes_by_con_id(list(contracts.values()))
        except BrokerError as problem:
            self.notes.append(f"quotes unavailable: {problem}")
            return {}
        result = {}
        for order_id, contract in contracts.items():
            quote = quotes.get(contract.con_id)
            if quote is not None:
                result[order_id] = PriceQuote(bid=quote.bid, ask=quote.ask)
        return result

    def _volume(self, contract: Contract, quote: Quote, as_of: date, minimum: int) -> int | None:
        """The option's volume for the liquidity checks: today's, or the previous session's
        (its daily bar) when today's is below ``minimum``. Before the open today's volume is 0,
        and minutes after it a few contracts say nothing about the strike's liquidity."""
        today = None if quote.volume is None else int(quote.volume)
        if today is not None and today >= minimum:
            return today
        try:
            bars = self.broker.daily_bars(contract, 2)
        except BrokerError:
            return today
        earlier = [bar for bar in bars if bar.day < as_of]
        if earlier:
            return max(int(earlier[-1].volume), today or 0)
        return today

    def _conditions(self, trades: Sequence[_Trade]) -> Conditions:
        spreads = [t.ask - t.bid for t in trades if t.bid is not None and t.ask is not None and t.ask >= t.bid]
        return assess_conditions(self._vix(), spreads, self.params)


class _Timing:
    """Records a step's planned broker time, the broker times it ran and its real duration."""

    def __init__(self, runner: TwoTierRunner, name: str, planned: datetime | None):
        self.runner, self.name, self.planned = runner, name, planned

    def __enter__(self) -> None:
        self.started = self.runner.clock.now()
        self.real = self.runner._monotonic()

    def __exit__(self, *exc_info: Any) -> None:
        entry = {"started": self.started.isoformat(), "finished": self.runner.clock.now().isoformat(),
                 "real_seconds": round(self.runner._monotonic() - self.real, 3)}
        if self.planned is not None:
            entry["planned"] = self.planned.isoformat()
        self.runner.timings[self.name] = entry


# ============================================================================ small helpers


def _on_grid(action: Any, order: MonitoredOrder, grid: PriceIncrements, premium_floor: float) -> Any:
    """A fill-policy action whose new limit is a point of ``grid``: a limit off it (the premium
    floor between two grid points) is rounded up (never below the floor); a lowering that the
    grid swallowed (a 0.01 step on a 0.05 grid) moves one grid step down instead, and becomes a
    Wait when that would go below the floor."""
    if not isinstance(action, (LowerLimit, CancelAndReplace)):
        return action
    noise = 1e-9
    floor = grid.round_up(premium_floor)
    price = grid.round_up(action.new_limit) if not grid.is_on_grid(action.new_limit) else action.new_limit
    if isinstance(action, LowerLimit) and price >= order.limit - noise:
        price = grid.step_down(order.limit)
        if price < floor - noise:
            return Wait(order.order_id, f"limit ${order.limit:.2f}: the next price of the grid "
                                        f"({grid.describe()}) is below the premium floor ${premium_floor:.2f}")
    if abs(price - action.new_limit) <= noise:
        return action
    return dataclasses.replace(action, new_limit=price,
                               reason=f"{action.reason}; on the price grid ({grid.describe()}): ${price:.2f}")


def _session_day_for(now: datetime) -> date:
    """The session this morning belongs to: today's if it has one that has not closed, else the next."""
    today = calendar.new_york_date(now)
    if calendar.is_session(today) and now < calendar.session_bounds(today).close_utc:
        return today
    return calendar.next_session(today)


def _adjustments_made(engine: Engine, intents: Sequence[ledger_orders.OrderIntent]) -> int:
    """Limit reductions an earlier run made (distinct lower limits seen in the orders' broker
    events), so a re-run keeps to FILL_MAX_ADJUSTMENTS per trade."""
    limits: set = set()
    for intent in intents:
        for event in ledger_orders.order_events_for_intent(engine, intent.id):
            # OrderGateway.modify writes "limit modified at the broker (...): limit a -> b".
            if event.message and event.message.startswith("limit modified at the broker"):
                limits.add(event.message)
    return len(limits)


def _would_send(intent: ledger_orders.OrderIntent) -> str:
    limit = f" limit {intent.limit_price.normalize():f}" if intent.limit_price is not None else ""
    return (f"dry run: would have sent {intent.action} {intent.quantity} {intent.symbol} "
            f"{intent.expiration.isoformat() if intent.expiration else ''} "
            f"{intent.strike.normalize():f} {intent.right} {intent.order_type}{limit} as {intent.order_ref}")


def _summary_of(result: Any) -> str:
    if result is None:
        return "done"
    summary = getattr(result, "summary", None)
    if callable(summary):
        return summary()
    if isinstance(summary, str):
        return summary
    return str(result)


def _describe(problem: BaseException) -> str:
    text = str(problem).strip()
    return f"{type(problem).__name__}: {text}" if text else type(problem).__name__


def _ny(moment: datetime) -> str:
    return f"{moment.astimezone(calendar.NEW_YORK):%H:%M:%S}"


def _masked(account: str) -> str:
    if not account:
        return ""
    from trading_pipeline.broker.settings import mask_account

    return mask_account(account)


def _totals_line(totals: Mapping[str, Any]) -> str:
    return (f"{totals['filled']} filled, {totals['partial']} partial, {totals['working']} working, "
            f"{totals['would_send']} dry-run, {totals['not_traded']} not traded; "
            f"{totals['contracts_filled']}/{totals['contracts_total']} contracts, premium ${totals['premium']:,.2f}")


def run_two_tier(*, broker: BrokerPort, engine: Engine, gateway: OrderGateway, clock: Clock,
                 params: ExecutionParameters, options: TwoTierOptions, decide: Decide | None = None,
                 say: Callable[[str], None] | None = None,
                 checkpoint: Callable[[str], None] | None = None) -> ExecutionReport:
    """Run one execution morning (see the module text) and return its report."""
    runner = TwoTierRunner(broker=broker, engine=engine, gateway=gateway, clock=clock, params=params,
                           options=options, decide=decide, say=say, checkpoint=checkpoint)
    return runner.run()


# ============================================================================ with a broker connection


@dataclass(frozen=True)
class MorningSetup:
    """Everything a command or a Dagster run chooses about a morning. ``clock``: "system" (a
    real TWS: the local clock, checked against the broker's) or "broker" (a simulator: the
    broker's own time, :class:`~trading_pipeline.trading.clock.BrokerClock`); ``clock_rate``:
    the broker clock's speed (None: measure it; 0: a stepped simulator, read through). ``overrides``: ExecutionParameters fields (run
    config) on top of the environment's variables."""

    mode: str = "hybrid"
    dry_run: bool = True
    confirm_account: str = ""
    session_day: date | None = None
    clock: str = "system"
    clock_rate: float | None = None
    follow_timeline: bool = True
    dagster_run_id: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in AUTOMATION_MODES:
            raise ExecutionRefused(f"unknown mode {self.mode!r}: use one of {', '.join(AUTOMATION_MODES)}")
        if self.clock not in ("system", "broker"):
            raise ExecutionRefused(f"clock must be system or broker, not {self.clock!r}")
        if self.clock_rate is not None and not self.clock_rate >= 0:
            raise ExecutionRefused(f"clock rate must be 0 (stepped) or more, not {self.clock_rate!r}")


def execution_parameters(env: Mapping[str, str], overrides: Mapping[str, Any]) -> ExecutionParameters:
    """The environment's variables (seeds' names), then the run config's fields."""
    chosen = {name: value for name, value in overrides.items() if value is not None and value != ""}
    return ExecutionParameters.from_mapping(env).with_overrides(**chosen)


def make_clock(setup: MorningSetup, broker: BrokerPort) -> tuple[Clock, float]:
    """The morning's clock and its rate (broker seconds per real second)."""
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.trading.clock import BrokerClock

    if setup.clock == "system":
        return SystemClock(), 1.0
    if setup.clock_rate is not None:
        return BrokerClock(broker, rate=setup.clock_rate).sync(), setup.clock_rate
    clock = BrokerClock.measured(broker)
    return clock, clock.rate


def connected_broker(env: Mapping[str, str]):
    """An IBKR adapter for the execution commands (the default client id, ``IBKR_*``)."""
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.settings import BrokerSettings

    broker = IbkrBroker(BrokerSettings.from_env(env))
    broker.connect()
    return broker


def reconcile_with_broker(engine: Engine, setup: MorningSetup, env: Mapping[str, str], *,
                          wrap_broker: Callable[[BrokerPort], BrokerPort] | None = None) -> dict:
    """The execution job's first step: the live-account guard (for a live run) and a
    reconciliation of the ledger with the broker, before the morning sends anything."""
    from trading_pipeline.trading.order_gateway import check_live_account, live_armed

    params = execution_parameters(env, setup.overrides)
    broker = connected_broker(env)
    try:
        port = wrap_broker(broker) if wrap_broker else broker
        account = getattr(broker, "account", "") or env.get("IBKR_ACCOUNT", "")
        if not setup.dry_run:
            check_live_account(account, armed=live_armed(env), confirmed_account=setup.confirm_account or None)
        clock, _rate = make_clock(setup, port)
        # A dry-run gateway can never send: reconciling needs no live permission.
        with OrderGateway(port, engine, clock, params, dry_run=True, account=account) as gateway:
            report = gateway.reconcile()
        return report.as_dict()
    finally:
        broker.disconnect()


def run_morning(engine: Engine, setup: MorningSetup, env: Mapping[str, str], *,
                decide: Decide | Callable[[Clock, float, date], Decide] | None = None,
                say: Callable[[str], None] | None = None, checkpoint: Callable[[str], None] | None = None,
                wrap_broker: Callable[[BrokerPort], BrokerPort] | None = None) -> ExecutionReport:
    """Connect to the broker (``IBKR_*``), build the clock and the order gateway (the live
    guard refuses a non-paper account unless ``TP_LIVE_ARMED=1`` and confirmed), run the
    morning and disconnect. ``decide`` may be a factory ``(clock, rate, session_day) ->
    Decide`` when it needs the morning's clock (the ledger approvals)."""
    from trading_pipeline.trading.order_gateway import live_armed, sector_map_from_env

    params = execution_parameters(env, setup.overrides)
    broker = connected_broker(env)
    try:
        port = wrap_broker(broker) if wrap_broker else broker
        account = getattr(broker, "account", "") or env.get("IBKR_ACCOUNT", "")
        clock, rate = make_clock(setup, port)
        session_day = setup.session_day or _session_day_for(clock.now())
        if decide is not None and setup.mode == "hybrid" and getattr(decide, "needs_clock", False):
            decide = decide(clock, rate, session_day)
        gateway = OrderGateway(port, engine, clock, params, dry_run=setup.dry_run, account=account,
                               sector_map=sector_map_from_env(env), confirmed_account=setup.confirm_account or None,
                               armed=live_armed(env), dagster_run_id=setup.dagster_run_id)
        with gateway:
            options = TwoTierOptions(mode=setup.mode, dry_run=setup.dry_run, account=account,
                                     session_day=session_day, follow_timeline=setup.follow_timeline,
                                     clock_rate=rate, dagster_run_id=setup.dagster_run_id)
            return run_two_tier(broker=port, engine=engine, gateway=gateway, clock=clock, params=params,
                                options=options, decide=decide, say=say, checkpoint=checkpoint)
    finally:
        broker.disconnect()


def ledger_approvals(engine: Engine, run_key: str, say: Callable[[str], None] | None = None):
    """A ``decide`` factory for :func:`run_morning`: the UI path (ledger approvals)."""

    def factory(clock: Clock, rate: float, session_day: date) -> Decide:
        return ledger_approval_decider(engine, clock, run_key=run_key, session_day=session_day, rate=rate,
                                       requested_by_log=say or log.info)

    factory.needs_clock = True  # type: ignore[attr-defined]
    return factory


def decide_waiting_run(engine, decision: str, *, run_key: str = "", by: str, note: str | None = None,
                       now: datetime | None = None) -> ledger_risk.Approval:
    """Record ``decision`` for the run ``run_key`` (empty: the only run waiting)."""
    if not run_key:
        waiting = ledger_risk.pending_approvals(engine)
        if not waiting:
            raise TradingPipelineError("no execution run is waiting for an approval")
        if len(waiting) > 1:
            listed = ", ".join(a.run_key for a in waiting)
            raise TradingPipelineError(f"{len(waiting)} runs are waiting for an approval ({listed}): name one")
        run_key = waiting[0].run_key
    approval = ledger_risk.get_approval(engine, run_key)
    if approval is None:
        raise TradingPipelineError(f"no approval was requested for run {run_key}")
    at = now or datetime.now(timezone.utc)
    if abs(at - approval.requested_at) > timedelta(days=1):
        # The waiting run keeps a simulator's clock (the demo, a test): record the decision in
        # its time. The run itself enforces its deadline on its own clock either way.
        at = min(max(approval.requested_at, approval.requested_at + timedelta(seconds=1)), approval.deadline)
    return ledger_risk.decide_approval(engine, run_key, decision, by=by, at=at, note=note)
