"""One monitoring pass: reconcile, look at every open position, exit by rule, snapshot.

:func:`run_monitor_pass` is what a run of ``monitor_positions_job`` does (the sensor's runs,
``tp auto-monitor``'s passes), in this order:

1. **reconcile** before anything can be sent: the start-of-job reconciliation of the
   positions domain (``trading.reconciliation.reconcile_at_job_start``: expirations and
   assignments, today's orders and fills, positions in report mode; imported only when the
   module is present), then :func:`reconcile_exit_intents`: the ledger's exit intents against
   the broker's open orders and today's executions (missing fills are recorded: fills of
   earlier exits close their trades through the ledger's fill hook);
2. **the view** (``trading.positions.open_position_views``): the open trades with quotes,
   P&L, greeks, DTE, distance, alerts and the exit decision (``core.exits``);
3. **exits** (only with ``auto_exit``): one EXIT intent per decision through the
   :class:`~trading_pipeline.trading.order_gateway.OrderGateway` (orderRef
   ``tp-<day>-<conId>-X<seq>``, risk governor and halt check inside), LMT at the decided
   limit for profit and time exits, MKT for stops; the trade is then marked exit-pending
   (``trades.mark_exit_pending``) with the rule, so its fill closes it with that reason.
   A dry run (the default) records ``tpd-`` intents and sends nothing;
4. **fills**: market exits are given a few seconds to fill, then the exit intents are
   reconciled again, so the fills and the trades they close are in the ledger before the
   report;
5. **snapshots** (``trading.snapshots``, imported only when present; a capture never fails
   the pass): an entry snapshot for each open trade opened within a day that has none, an
   exit snapshot for each trade closed within a few days that has none.

No duplicate orders, ever:

- a trade whose exit order is working (its intent is SENT, ACKNOWLEDGED, PARTIAL or UNKNOWN,
  or INTENDED by a run still in progress) gets no second one. A working exit LIMIT is
  re-priced (``OrderGateway.modify``) when the rule's limit moves; a working LIMIT whose
  trade now hits its stop is cancelled, and the MARKET stop goes with the next pass, after
  the reconciliation has recorded whatever the cancelled order filled;
- an exit never closes more than the broker holds: its quantity is the trade's open
  contracts, capped at the broker's position of that contract less the exits already
  working on it. A trade the broker does not hold is not exited (the reconciliation closes
  it), nor is a position only the broker holds (the reconciliation imports it first);
- exit orders are DAY orders. One of an earlier session that is no longer among the
  broker's open orders expired at that session's close: it is closed as CANCELLED in the
  ledger (the intents reconciliation could only flag it for review, since the broker lists
  only today's executions), and the rule may send a new one; the cap above keeps fills the
  ledger never saw from making it close more than is held;
- a dry run records one dry-run exit per contract and day (later passes report it as
  already recorded).

Halts (``core.risk``): exits reduce risk, so the daily-loss breaker, which halts new
positions, does not stop them (a stop loss must still close the position that caused the
loss). A **manual** halt (the emergency stop, an operator) blocks exits too, as the governor
rules: the pass then sends nothing, says so, and leaves closing to ``tp emergency-stop
--liquidate``. Exits are sent only while the market is open (regular hours of a session,
early closes respected); outside them the decisions are reported and wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, select

from trading_pipeline.broker.port import BrokerError, BrokerPort, OrderUpdate
from trading_pipeline.broker.settings import mask_account
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.exits import MARKET, ExitReason, ExitRules
from trading_pipeline.core.intents import OPEN_STATUSES, IntentPurpose, IntentStatus, parse_order_ref
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger.orders import OrderIntent, get_intent, record_status
from trading_pipeline.ledger.risk import get_trading_state
from trading_pipeline.ledger.schema import entry_snapshots, exit_snapshots, order_intents, trades
from trading_pipeline.ledger.staging import LedgerStateError, row_to
from trading_pipeline.ledger.trades import Trade, get_trade, mark_exit_pending, open_trades
from trading_pipeline.trading.order_gateway import (
    IntentSpec,
    OrderGateway,
    ReconcileReport,
    SubmitOutcome,
    SubmitResult,
)
from trading_pipeline.trading.positions import PositionRow, open_position_views

log = logging.getLogger(__name__)

# How long (real seconds) a pass waits for its market exits to fill before reconciling.
EXIT_FILL_WAIT_SECONDS = 5.0
# Snapshots are taken live: only for trades opened (entry) or closed (exit) this recently;
# older ones are left to the snapshot enrichment.
ENTRY_SNAPSHOT_MAX_AGE = timedelta(days=1)
EXIT_SNAPSHOT_MAX_AGE = timedelta(days=3)
# Limits differing by less than this are the same price (float noise).
_PRICE_NOISE = 1e-6
_EXIT_PURPOSES = (IntentPurpose.EXIT.value, IntentPurpose.LIQUIDATE.value)

# Outcomes of an exit action beyond the gateway's SubmitOutcome values.
SKIPPED = "SKIPPED"
MODIFIED = "MODIFIED"
CANCELLED_FOR_STOP = "CANCELLED_FOR_STOP"


# ============================================================================ report


@dataclass(frozen=True)
class ExitAction:
    """What the pass did about one exit decision."""

    trade_id: int
    position: str
    reason: str
    order_type: str | None
    limit_price: float | None
    quantity: int
    outcome: str
    order_ref: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(trade_id=self.trade_id, position=self.position, reason=self.reason, order_type=self.order_type,
                    limit_price=self.limit_price, quantity=self.quantity, outcome=self.outcome,
                    order_ref=self.order_ref, detail=self.detail)


@dataclass(frozen=True)
class MonitorReport:
    at: datetime
    session_day: date
    account: str
    dry_run: bool
    auto_exit: bool
    rules: str
    market_open: bool
    positions: tuple[PositionRow, ...]
    exits: tuple[ExitAction, ...]
    closed: tuple[dict, ...]
    reconciliation: dict
    snapshots: dict
    notes: tuple[str, ...] = ()

    @property
    def signals(self) -> int:
        return sum(1 for row in self.positions if row.decision.should_exit)

    @property
    def exits_sent(self) -> int:
        return sum(1 for action in self.exits if action.outcome in (SubmitOutcome.SENT.value,
                                                                   SubmitOutcome.UNCERTAIN.value))

    def summary(self) -> str:
        mode = "dry run" if self.dry_run else "live"
        exits = (f"{self.exits_sent} exit(s) sent, {sum(1 for a in self.exits if a.outcome == 'DRY_RUN')} "
                 f"recorded as dry run" if self.auto_exit else "auto-exit off")
        return (f"{len(self.positions)} open position(s), {self.signals} exit signal(s), {exits}, "
                f"{len(self.closed)} trade(s) closed ({mode})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(), "session_day": self.session_day.isoformat(), "account": self.account,
            "dry_run": self.dry_run, "auto_exit": self.auto_exit, "rules": self.rules,
            "market_open": self.market_open, "summary": self.summary(),
            "positions": [row.as_dict() for row in self.positions],
            "exits": [action.as_dict() for action in self.exits],
            "closed": list(self.closed), "reconciliation": self.reconciliation, "snapshots": self.snapshots,
            "notes": list(self.notes),
        }


# ============================================================================ the pass


def run_monitor_pass(engine: Engine, broker: BrokerPort, *, clock: Clock, rules: ExitRules, auto_exit: bool,
                     dry_run: bool = True, account: str, params: ExecutionParameters,
                     dagster_run_id: str | None = None, confirmed_account: str | None = None,
                     sector_map: Mapping[str, str] | None = None,
                     say: Callable[[str], None] | None = None,
                     fill_wait_seconds: float = EXIT_FILL_WAIT_SECONDS) -> MonitorReport:
    """One pass (see the module text). ``dry_run`` matters only with ``auto_exit``: without
    it nothing can be sent and the gateway is a dry-run one (no live-account guard).
    ``confirmed_account``: a live pass to a non-paper account needs it (and TP_LIVE_ARMED=1)."""
    say = say or log.info
    started = clock.now()
    today = calendar.new_york_date(started)
    notes: list[str] = []
    open_before = [trade.id for trade in open_trades(engine, account=None)]
    reconciliation = _reconcile_at_start(engine, broker, clock, dagster_run_id, notes, strict=auto_exit)
    sends = auto_exit and not dry_run
    with OrderGateway(broker, engine, clock, params, dry_run=not sends, account=account, sector_map=sector_map,
                      confirmed_account=confirmed_account, dagster_run_id=dagster_run_id) as gateway:
        intents = reconcile_exit_intents(gateway)
        reconciliation["intents"] = intents.as_dict()
        notes.extend(f"review: {line}" for line in intents.review)
        rows = open_position_views(engine, broker, clock=clock, rules=rules, account=account or None)
        market = calendar.market_status(clock.now())
        actions: list[ExitAction] = []
        if auto_exit:
            actions = _ExitPlanner(engine, broker, gateway, clock, today=today, dry_run=dry_run,
                                   market_open=market.is_open, market_reason=market.reason or "").run(rows)
            sent_market = [a for a in actions if a.outcome == SubmitOutcome.SENT.value and a.order_type == MARKET]
            if any(a.outcome in (SubmitOutcome.SENT.value, SubmitOutcome.UNCERTAIN.value, MODIFIED,
                                 CANCELLED_FOR_STOP) for a in actions):
                _wait_for_fills(broker, engine, sent_market, fill_wait_seconds, notes)
                settled = reconcile_exit_intents(gateway)
                notes.extend(f"review: {line}" for line in settled.review if f"review: {line}" not in notes)
    closed = _closed_since(engine, open_before)
    snapshots = capture_snapshots(engine, broker, clock=clock, now=clock.now())
    report = MonitorReport(
        at=started, session_day=today, account=mask_account(account) if account else "", dry_run=dry_run,
        auto_exit=auto_exit, rules=rules.describe(), market_open=market.is_open, positions=tuple(rows),
        exits=tuple(actions), closed=tuple(closed), reconciliation=reconciliation, snapshots=snapshots,
        notes=tuple(notes),
    )
    say(report.summary())
    return report


def _reconcile_at_start(engine: Engine, broker: BrokerPort, clock: Clock, dagster_run_id: str | None,
                        notes: list[str], *, strict: bool) -> dict:
    """The positions domain's start-of-job reconciliation, when its module is present. A
    failure stops a pass that may send exits (nothing is sent before the ledger agrees with
    the broker); a look-only pass notes it and goes on."""
    from trading_pipeline.trading.reconciliation import reconcile_at_job_start  # it imports this module

    try:
        summary = reconcile_at_job_start(engine, broker, clock=clock, dagster_run_id=dagster_run_id,
                                         trigger="monitor")
    except TradingPipelineError as problem:
        if strict:
            raise
        notes.append(f"the start-of-job reconciliation failed: {problem}")
        return {"positions": f"failed: {problem}"}
    notes.extend(f"review: {line}" for line in summary.get("review") or [])
    notes.extend(f"reconciliation: {line}" for line in summary.get("errors") or [])
    return {"positions": summary}


def reconcile_exit_intents(gateway: OrderGateway) -> ReconcileReport:
    """``OrderGateway.reconcile`` limited to exit and liquidation orders: their missing fills
    are recorded (the fill hook closes the trades); statuses are brought forward; nothing is
    sent.

    Limited on purpose: a monitoring pass may run while an execution morning works its entry
    orders with another client id, and reconciling those here could flag an entry the morning
    has claimed but not yet placed (SENT, not yet at the broker) as UNKNOWN under its feet.
    Entry fills are the morning's and the start-of-job reconciliation's business."""
    return gateway.reconcile(purposes=(IntentPurpose.EXIT, IntentPurpose.LIQUIDATE))


def _wait_for_fills(broker: BrokerPort, engine: Engine, sent: Sequence["ExitAction"], seconds: float,
                    notes: list[str]) -> None:
    """Give the market exits just sent a moment to fill (they usually fill at once)."""
    for action in sent:
        intent = get_intent(engine, order_ref=action.order_ref) if action.order_ref else None
        if intent is None or intent.broker_order_id is None or seconds <= 0:
            continue
        try:
            update: OrderUpdate = broker.wait_for_order(intent.broker_order_id, {"Filled"}, seconds)
        except BrokerError as problem:
            notes.append(f"{action.order_ref}: not filled within {seconds:g}s ({problem}); "
                         "the next pass records its fills")
            continue
        if update.status != "Filled":
            notes.append(f"{action.order_ref}: {update.status} ({update.message or 'no message'})")


def _closed_since(engine: Engine, trade_ids: Sequence[int]) -> list[dict]:
    """The trades open when the pass began that are closed now (by its reconciliation's fills,
    expirations, or its own exits)."""
    if not trade_ids:
        return []
    query = select(trades.c.id).where(trades.c.id.in_(list(trade_ids)), trades.c.status == "closed")
    with engine.connect() as connection:
        closed_ids = connection.execute(query.order_by(trades.c.id)).scalars().all()
    closed = []
    for trade in (get_trade(engine, trade_id) for trade_id in closed_ids):
        closed.append({"trade_id": trade.id, "position": trade.describe(), "exit_reason": trade.exit_reason,
                       "exit_price": trade.exit_price, "gross_pnl": trade.gross_pnl, "net_pnl": trade.net_pnl})
    return closed


# ============================================================================ exits


class _ExitPlanner:
    """Turns one pass's exit decisions into gateway orders (see the module text)."""

    def __init__(self, engine: Engine, broker: BrokerPort, gateway: OrderGateway, clock: Clock, *, today: date,
                 dry_run: bool, market_open: bool, market_reason: str):
        self.engine = engine
        self.broker = broker
        self.gateway = gateway
        self.clock = clock
        self.today = today
        self.dry_run = dry_run
        self.market_open = market_open
        self.market_reason = market_reason

    def run(self, rows: Sequence[PositionRow]) -> list[ExitAction]:
        due = [row for row in rows if row.trade is not None and row.decision.should_exit]
        if not due:
            return []
        blocked = get_trading_state(self.engine).blocks(opening=False)
        if blocked:
            return [self._skip(row, f"{blocked}: exits are blocked by a manual halt "
                                    "(tp emergency-stop --liquidate closes positions)") for row in due]
        if not self.market_open:
            return [self._skip(row, f"market closed ({self.market_reason}): exits are sent in regular hours")
                    for row in due]
        con_ids = sorted({row.con_id for row in due if row.con_id})
        working = self._working_exits(con_ids)
        # What may still be closed per contract: the broker's position less the exits working on it.
        closable: dict[int, int] = {}
        for row in rows:
            if row.con_id and row.broker_quantity is not None:
                closable[row.con_id] = int(round(abs(row.broker_quantity)))
        for con_id, intents in working.items():
            if con_id in closable and not self.dry_run:
                closable[con_id] -= sum(intent.remaining for intent in intents)

        actions: list[ExitAction] = []
        planned: list[tuple[PositionRow, IntentSpec]] = []
        next_seq = self._next_seqs(con_ids)
        for row in due:
            trade, decision = row.trade, row.decision
            own = [i for i in working.get(row.con_id, []) if i.id == trade.exit_intent_id]
            if self.dry_run and working.get(row.con_id):
                recorded = working[row.con_id][0]
                actions.append(self._skip(row, f"dry run: exit {recorded.order_ref} already recorded today",
                                          order_ref=recorded.order_ref))
                continue
            if own:
                actions.append(self._adjust(row, own[0]))
                continue
            if row.contract is None or not row.con_id:
                actions.append(self._skip(row, "the broker does not know its contract: no exit order"))
                continue
            held = row.broker_quantity
            if held is None or (held < 0) != (trade.side == "short"):
                actions.append(self._skip(row, "the broker holds no such position: not exited "
                                               "(tp reconcile-positions settles it)"))
                continue
            quantity = min(trade.open_contracts, closable.get(row.con_id, 0))
            if quantity <= 0:
                refs = ", ".join(i.order_ref for i in working.get(row.con_id, [])) or "none"
                actions.append(self._skip(row, f"exits already working cover this contract's position ({refs})"))
                continue
            closable[row.con_id] -= quantity
            seq = next_seq.get(row.con_id, 1)
            next_seq[row.con_id] = seq + 1
            planned.append((row, IntentSpec(
                session_day=self.today, purpose=IntentPurpose.EXIT, ref_id=row.con_id, contract=row.contract,
                action=decision.action, quantity=quantity, order_type=decision.order_type,
                limit_price=decision.limit_price if decision.order_type != MARKET else None, seq=seq)))
        if planned:
            results = self.gateway.submit_batch([spec for _, spec in planned])
            actions.extend(self._after_submit(row, spec, result) for (row, spec), result in zip(planned, results))
        return actions

    # -- the pieces

    def _skip(self, row: PositionRow, detail: str, *, order_ref: str | None = None) -> ExitAction:
        decision = row.decision
        return ExitAction(row.trade.id, row.view.describe(), decision.reason.value, decision.order_type,
                          decision.limit_price, 0, SKIPPED, order_ref, detail)

    def _working_exits(self, con_ids: Sequence[int]) -> dict[int, list[OrderIntent]]:
        """Exit (and liquidation) intents that may be working, by conId. Live: every open one,
        except DAY orders of an earlier session no longer open at the broker (closed here as
        CANCELLED, see the module text). Dry run: today's dry-run exits."""
        if not con_ids:
            return {}
        query = select(order_intents).where(order_intents.c.purpose.in_(_EXIT_PURPOSES),
                                            order_intents.c.con_id.in_(con_ids),
                                            order_intents.c.dry_run.is_(self.dry_run))
        if self.dry_run:
            query = query.where(order_intents.c.session_day == self.today)
        else:
            query = query.where(order_intents.c.status.in_([status.value for status in OPEN_STATUSES]))
        with self.engine.connect() as connection:
            found = [row_to(OrderIntent, row) for row in connection.execute(query.order_by(order_intents.c.id))]
        earlier = [intent for intent in found if not self.dry_run and intent.session_day < self.today
                   and intent.status is not IntentStatus.INTENDED]
        if earlier:
            open_refs = {update.order_ref for update in self.broker.open_orders()}
            for intent in earlier:
                if intent.order_ref in open_refs:
                    continue
                record_status(self.engine, intent.id, broker_status="Cancelled", filled=intent.filled_quantity,
                              at=self.clock.now(),
                              message=f"DAY exit order of {intent.session_day} expired at that session's close "
                                      "(no longer open at the broker)")
                found.remove(intent)
        working: dict[int, list[OrderIntent]] = {}
        for intent in found:
            working.setdefault(intent.con_id, []).append(intent)
        return working

    def _next_seqs(self, con_ids: Sequence[int]) -> dict[int, int]:
        """The next free exit seq of today per conId (every earlier exit of the day keeps its ref)."""
        if not con_ids:
            return {}
        query = select(order_intents.c.order_ref, order_intents.c.con_id).where(
            order_intents.c.purpose == IntentPurpose.EXIT.value, order_intents.c.session_day == self.today,
            order_intents.c.con_id.in_(con_ids), order_intents.c.dry_run.is_(self.dry_run))
        seqs: dict[int, int] = {}
        with self.engine.connect() as connection:
            for order_ref, con_id in connection.execute(query):
                parsed = parse_order_ref(order_ref)
                if parsed is not None:
                    seqs[con_id] = max(seqs.get(con_id, 1), parsed.seq + 1)
        return seqs

    def _adjust(self, row: PositionRow, working: OrderIntent) -> ExitAction:
        """The trade's own exit is working: re-price a limit, or make way for a stop."""
        decision = row.decision
        base = dict(trade_id=row.trade.id, position=row.view.describe(), reason=decision.reason.value,
                    order_type=decision.order_type, limit_price=decision.limit_price, quantity=working.remaining,
                    order_ref=working.order_ref)
        if decision.reason is ExitReason.STOP_LOSS and decision.order_type == MARKET and working.order_type != MARKET:
            change = self.gateway.cancel(working, reason="replaced by a stop-loss market exit")
            if change.done:
                return ExitAction(**base, outcome=CANCELLED_FOR_STOP,
                                  detail=f"working {working.order_type} exit cancelled for the stop loss; the "
                                         "market exit goes with the next pass, after its fills are reconciled")
            return ExitAction(**base, outcome=SKIPPED, detail=f"the working exit could not be cancelled: {change.reason}")
        if (decision.order_type == working.order_type == "LMT" and decision.limit_price is not None
                and working.limit_price is not None
                and abs(float(working.limit_price) - decision.limit_price) > _PRICE_NOISE):
            change = self.gateway.modify(working, decision.limit_price)
            if change.done:
                return ExitAction(**base, outcome=MODIFIED,
                                  detail=f"limit {float(working.limit_price):.2f} -> {decision.limit_price:.2f}")
            return ExitAction(**base, outcome=SKIPPED, detail=f"exit working; not re-priced: {change.reason}")
        return ExitAction(**base, outcome=SKIPPED, detail=f"exit {working.order_ref} is working ({working.status.value})")

    def _after_submit(self, row: PositionRow, spec: IntentSpec, result: SubmitResult) -> ExitAction:
        decision = row.decision
        detail = "; ".join(result.reasons)
        in_flight = result.outcome in (SubmitOutcome.SENT, SubmitOutcome.UNCERTAIN) or (
            result.outcome is SubmitOutcome.DUPLICATE and result.intent is not None and result.intent.is_open
            and not result.intent.dry_run)
        if in_flight and result.intent is not None:
            try:
                mark_exit_pending(self.engine, row.trade.id, intent_id=result.intent.id, reason=decision.reason.value,
                                  at=self.clock.now())
            except LedgerStateError as problem:  # closed meanwhile (a reconciliation, an expiry)
                detail = f"{detail}; not marked pending: {problem}".lstrip("; ")
        return ExitAction(row.trade.id, row.view.describe(), decision.reason.value, spec.order_type,
                          spec.limit_price, spec.quantity, result.outcome.value, result.order_ref,
                          detail or decision.explanation)


# ============================================================================ snapshots


def capture_snapshots(engine: Engine, broker: BrokerPort, *, clock: Clock, now: datetime,
                      trade_ids: Sequence[int] | None = None) -> dict:
    """Entry snapshots of open trades opened within ENTRY_SNAPSHOT_MAX_AGE that have none, and
    exit snapshots of trades closed within EXIT_SNAPSHOT_MAX_AGE that have none (``trade_ids``:
    only those trades' entry snapshots). Never raises: a failure is counted and named."""
    from trading_pipeline.trading import snapshots as service
    from trading_pipeline.ingest.earnings import load_earnings_calendar

    try:
        earnings = load_earnings_calendar()  # once per pass, not once per trade
    except Exception:  # noqa: BLE001 - a bad calendar file: each capture records the problem itself
        earnings = None
    counts: dict[str, Any] = {"entry": 0, "exit": 0, "failed": []}
    try:
        entries, exits = _snapshots_due(engine, now, trade_ids)
    except Exception as problem:  # noqa: BLE001 - snapshots never stop monitoring or trading
        counts["failed"].append(f"listing the trades to snapshot: {problem}")
        return counts
    for kind, due, capture in (("entry", entries, partial(service.capture_entry_snapshot, earnings=earnings)),
                               ("exit", exits, service.capture_exit_snapshot)):
        for trade in due:
            try:
                capture(engine, broker, trade, clock=clock)
                counts[kind] += 1
            except Exception as problem:  # noqa: BLE001 - the service should not raise; guarded anyway
                counts["failed"].append(f"{kind} snapshot of trade {trade.id}: {problem}")
    return counts


def _snapshots_due(engine: Engine, now: datetime, trade_ids: Sequence[int] | None) -> tuple[list[Trade], list[Trade]]:
    has_entry = select(entry_snapshots.c.trade_id)
    has_exit = select(exit_snapshots.c.trade_id)
    entry_query = select(trades.c.id).where(trades.c.status == "open", trades.c.entry_time >= now - ENTRY_SNAPSHOT_MAX_AGE,
                                            trades.c.id.not_in(has_entry))
    if trade_ids is not None:
        entry_query = entry_query.where(trades.c.id.in_(list(trade_ids)))
    exit_query = select(trades.c.id).where(trades.c.status == "closed", trades.c.exit_time >= now - EXIT_SNAPSHOT_MAX_AGE,
                                           trades.c.id.not_in(has_exit))
    with engine.connect() as connection:
        entry_ids = connection.execute(entry_query.order_by(trades.c.id)).scalars().all()
        exit_ids = [] if trade_ids is not None else connection.execute(exit_query.order_by(trades.c.id)).scalars().all()
    return ([get_trade(engine, i) for i in entry_ids], [get_trade(engine, i) for i in exit_ids])

