"""The emergency stop: halt trading, cancel every working order, optionally liquidate.

:func:`emergency_stop`, in this order:

1. **the halt flag is set in the ledger first** (a manual halt), before the broker is even
   reached: from that instant every other process's next risk check and every claim of an
   order for sending (``ledger.orders.mark_sent``) refuses, whatever happens next;
2. **every working order is cancelled** at the broker with ``reqGlobalCancel`` (it cancels
   the orders of every client id, including a running execution job's and orders entered in
   TWS); the open orders are then polled until none is working, the global cancel re-sent
   while some are: an order another process claimed just before the halt may reach the
   broker after the first cancel (the order gateway also re-checks the halt between the
   orders of a batch). Survivors after the wait are reported;
3. the ledger is **reconciled** with the broker (cancelled intents closed, fills recorded);
4. with ``liquidate``, the job-start reconciliation of every trading job first
   (``trading.reconciliation.reconcile_at_job_start``; its findings join the review lines, a
   failure of it never stops the liquidation), then **every position is closed at market**
   through the order gateway
   (intents with purpose LIQUIDATE). They bypass the risk governor's halt check by design:
   the halt is there to stop new risk, and liquidation removes risk. A liquidation still
   goes through the live-account guard (a non-paper account needs ``TP_LIVE_ARMED=1`` and
   the confirmed account id) and is recorded like every order;
5. the whole stop is recorded as an execution run (mode ``emergency_stop``) with its report.

It uses its own broker client id, :data:`EMERGENCY_CLIENT_ID` (9), so it connects while an
execution job holds the default id 1 (TWS refuses a second connection with an id in use);
3 is TWS's reserved master id. The ``tp emergency-stop`` command runs this directly, not as
a Dagster run: it must not wait for a run queue or the code location to load; the execution
run row records it.

:func:`resume_trading` lifts a halt (a person's decision), recorded the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from trading_pipeline.broker.port import BrokerError, BrokerPort, Position, SecType
from trading_pipeline.broker.settings import COMMAND_CLIENT_IDS
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import IntentPurpose, IntentStatus, deterministic_order_ref
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger.orders import finish_execution_run, get_intent, open_intents, start_execution_run
from trading_pipeline.ledger.risk import TradingState, clear_halt, get_trading_state, set_halt
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway, SubmitResult

EMERGENCY_CLIENT_ID = COMMAND_CLIENT_IDS["emergency-stop"]
DEFAULT_REASON = "emergency stop"
DEFAULT_CANCEL_WAIT_SECONDS = 5.0
# SENT intents at the halt are waited for at most this long (a crashed run's stay SENT).
IN_FLIGHT_WAIT_SECONDS = 1.0
_POLL_SECONDS = 0.02
_RECANCEL_SECONDS = 0.1


@dataclass(frozen=True)
class EmergencyReport:
    halted_at: datetime
    halt: TradingState
    working_before: int
    cancel_method: str
    still_working: tuple[str, ...]
    liquidate: bool
    liquidations: tuple[SubmitResult, ...]
    skipped_positions: tuple[str, ...]
    reconcile_summary: str
    review: tuple[str, ...]
    elapsed_seconds: float
    execution_run_id: int | None
    error: str = ""
    # From the start until the halt was set, and until the broker showed no working order.
    halt_seconds: float = 0.0
    cancelled_seconds: float | None = None

    @property
    def cancelled(self) -> int:
        return self.working_before - len(self.still_working)

    @property
    def ok(self) -> bool:
        return not self.error and not self.still_working and all(
            result.sent for result in self.liquidations)

    def lines(self) -> list[str]:
        lines = [f"Trading HALTED at {self.halted_at.isoformat()}: {self.halt.halt_reason}"]
        if self.cancel_method:
            lines.append(f"Working orders: {self.working_before} before, {self.cancelled} cancelled "
                         f"({self.cancel_method}), {len(self.still_working)} still working")
        lines += [f"  still working: {item}" for item in self.still_working]
        if self.liquidate:
            lines.append(f"Liquidation: {sum(r.sent for r in self.liquidations)} of {len(self.liquidations)} "
                         "closing order(s) sent at market")
            lines += [f"  {result.summary()}" for result in self.liquidations]
            lines += [f"  skipped: {item}" for item in self.skipped_positions]
        if self.reconcile_summary:
            lines.append(f"Ledger: {self.reconcile_summary}")
        lines += [f"  review: {item}" for item in self.review]
        if self.error:
            lines.append(f"ERROR: {self.error}")
        lines.append(f"Done in {self.elapsed_seconds:.3f} s; the halt stays until `tp resume-trading`.")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "halted_at": self.halted_at.isoformat(), "halt_reason": self.halt.halt_reason,
            "working_before": self.working_before, "cancelled": self.cancelled,
            "cancel_method": self.cancel_method, "still_working": list(self.still_working),
            "liquidate": self.liquidate,
            "liquidations": [{"order_ref": r.order_ref, "outcome": r.outcome.value, "order": r.description,
                              "reasons": list(r.reasons)} for r in self.liquidations],
            "skipped_positions": list(self.skipped_positions), "reconcile": self.reconcile_summary,
            "review": list(self.review), "elapsed_seconds": round(self.elapsed_seconds, 4),
            "halt_seconds": round(self.halt_seconds, 4),
            "cancelled_seconds": None if self.cancelled_seconds is None else round(self.cancelled_seconds, 4),
            "error": self.error,
        }


def emergency_stop(broker: BrokerPort | Callable[[], BrokerPort], engine: Engine, clock: Clock, *,
                   liquidate: bool = False,
                   by: str = "emergency-stop", reason: str = DEFAULT_REASON,
                   params: ExecutionParameters | None = None, confirmed_account: str | None = None,
                   armed: bool | None = None, sector_map: Mapping[str, str] | None = None,
                   cancel_wait_seconds: float = DEFAULT_CANCEL_WAIT_SECONDS,
                   dagster_run_id: str | None = None,
                   monotonic: Callable[[], float] = time.perf_counter) -> EmergencyReport:
    """Halt, cancel everything, optionally liquidate (see the module text).

    ``broker`` may be connected or not (it is connected here, after the halt is set), or a
    function that makes one (called after the halt is set, so not even a broken broker setting
    can prevent the halt; a broker made so is disconnected at the end). Broker failures do not
    undo the halt: they end the stop early with ``error`` in the report.
    """
    started = monotonic()
    halted_at = clock.now()
    halt = set_halt(engine, reason, by=by, at=halted_at)
    halt_seconds = monotonic() - started
    # Orders claimed for sending before the halt may still be on their way to the broker.
    in_flight = [intent.id for intent in open_intents(engine) if intent.status is IntentStatus.SENT]
    run = start_execution_run(engine, mode="emergency_stop", dry_run=False,
                              session_day=calendar.new_york_date(halted_at), at=halted_at,
                              dagster_run_id=dagster_run_id)
    report = EmergencyReport(halted_at=halted_at, halt=halt, working_before=0, cancel_method="",
                             still_working=(), liquidate=liquidate, liquidations=(), skipped_positions=(),
                             reconcile_summary="", review=(), elapsed_seconds=0.0, execution_run_id=run.id,
                             halt_seconds=halt_seconds)
    made = None
    try:
        if callable(broker):
            broker = made = broker()
        if not broker.is_connected:
            broker.connect()
        working = [update for update in broker.open_orders() if not update.is_done]
        method = request_global_cancel(broker)
        still = _cancel_until_quiet(broker, engine, in_flight, cancel_wait_seconds)
        report = replace(report, working_before=len(working), cancel_method=method,
                         still_working=tuple(_describe_order(update) for update in still),
                         cancelled_seconds=None if still else monotonic() - started)
        account = _account_of(broker)
        params = params or ExecutionParameters()
        # Reconciling sends nothing: a dry-run gateway needs no live-account guard.
        with OrderGateway(broker, engine, clock, params, dry_run=True, account=account,
                          execution_run_id=run.id, dagster_run_id=dagster_run_id) as gateway:
            reconciled = gateway.reconcile()
        report = replace(report, reconcile_summary=reconciled.summary(), review=reconciled.review)
        if liquidate:
            # Before it places orders, the reconciliation every trading job makes first (after
            # the halt and the cancels, which must never wait for it); never blocks liquidating.
            report = replace(report, review=report.review + _reconcile_before_liquidating(
                engine, broker, clock, dagster_run_id))
            with OrderGateway(broker, engine, clock, params, dry_run=False, account=account,
                              sector_map=sector_map, confirmed_account=confirmed_account, armed=armed,
                              execution_run_id=run.id, dagster_run_id=dagster_run_id) as gateway:
                specs, skipped = _liquidation_specs(engine, broker.positions(), calendar.new_york_date(clock.now()))
                results = gateway.submit_batch(specs) if specs else []
            report = replace(report, liquidations=tuple(results), skipped_positions=tuple(skipped))
    except (BrokerError, TradingPipelineError) as problem:
        report = replace(report, error=str(problem))
    finally:
        if made is not None:
            made.disconnect()
    report = replace(report, elapsed_seconds=monotonic() - started)
    finish_execution_run(engine, run.id, status="FAILED" if report.error else "SUCCEEDED", at=clock.now(),
                         report=report.as_dict(), error=report.error or None)
    return report


def _reconcile_before_liquidating(engine: Engine, broker: BrokerPort, clock: Clock,
                                  dagster_run_id: str | None) -> tuple[str, ...]:
    """``trading.reconciliation.reconcile_at_job_start``; its lines for review. Any failure
    is one more line: the liquidation goes ahead whatever the bookkeeping says."""
    try:
        from trading_pipeline.trading.reconciliation import reconcile_at_job_start

        summary = reconcile_at_job_start(engine, broker, clock=clock, dagster_run_id=dagster_run_id,
                                         trigger="job start: emergency stop")
    except Exception as problem:  # noqa: BLE001 (liquidating must not depend on it)
        return (f"reconciliation before liquidating failed: {problem}",)
    return tuple(f"reconciliation: {line}" for line in summary["review"] + summary["errors"])


def emergency_broker(env: Mapping[str, str] | None = None):
    """The IBKR adapter of the emergency stop: the ``IBKR_*`` settings with client id 9
    (``IBKR_CLIENT_ID`` is ignored: the stop must not collide with the job it stops)."""
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.settings import BrokerSettings

    env = os.environ if env is None else env
    settings = BrokerSettings.from_env({k: v for k, v in env.items() if k != "IBKR_CLIENT_ID"})
    return IbkrBroker(settings.with_overrides(client_id=EMERGENCY_CLIENT_ID))


def resume_trading(engine: Engine, clock: Clock, *, by: str = "resume-trading",
                   dagster_run_id: str | None = None) -> tuple[TradingState, TradingState]:
    """Lift the halt (manual or breaker) and clear uncleared breaker trips; recorded as an
    execution run (mode ``resume_trading``). Returns the states before and after."""
    at = clock.now()
    before = get_trading_state(engine)
    run = start_execution_run(engine, mode="resume_trading", dry_run=False,
                              session_day=calendar.new_york_date(at), at=at, dagster_run_id=dagster_run_id)
    after = clear_halt(engine, by=by, at=at)
    finish_execution_run(engine, run.id, status="SUCCEEDED", at=clock.now(), report={
        "was_halted": before.halted, "halt_kind": before.halt_kind.value if before.halt_kind else None,
        "halt_reason": before.halt_reason, "resumed_by": by,
    })
    return before, after


def request_global_cancel(broker: BrokerPort) -> str:
    """Cancel every working order of the account, whichever client placed it; how it was done.

    TWS's reqGlobalCancel (``BrokerPort.global_cancel``) is the only request that reaches other
    clients' orders. A port that cannot send it (it raises NotImplementedError) falls back to
    cancelling the open orders one by one.
    """
    try:
        broker.global_cancel()
        return "reqGlobalCancel"
    except NotImplementedError:
        pass
    for update in broker.open_orders():
        try:
            broker.cancel_order(update.order_id)
        except BrokerError:
            pass  # not ours or already done: reported as still working if it stays open
    return "one cancel per order"


def _cancel_until_quiet(broker: BrokerPort, engine: Engine, in_flight: list[int], seconds: float) -> list:
    """Poll the open orders until none is working, re-sending the global cancel while some
    are (an order claimed before the halt can reach the broker after the first cancel). Also
    waits (at most IN_FLIGHT_WAIT_SECONDS) for the intents that were SENT at the halt to be
    acknowledged or closed by their sender, then looks once more. The orders still working
    when ``seconds`` have passed are returned."""
    started = time.monotonic()
    deadline = started + seconds
    last_cancel = started
    while True:
        working = [update for update in broker.open_orders() if not update.is_done]
        now = time.monotonic()
        if working:
            if now >= deadline:
                return working
            if now - last_cancel >= _RECANCEL_SECONDS:
                request_global_cancel(broker)
                last_cancel = now
        else:
            in_flight = [intent_id for intent_id in in_flight
                         if get_intent(engine, intent_id).status is IntentStatus.SENT]
            if not in_flight or now >= min(deadline, started + IN_FLIGHT_WAIT_SECONDS):
                return []
        time.sleep(_POLL_SECONDS)


def _liquidation_specs(engine: Engine, positions: list[Position], day: date) -> tuple[list[IntentSpec], list[str]]:
    specs, skipped = [], []
    for position in positions:
        contract = position.contract
        quantity = int(round(abs(position.quantity)))
        if quantity == 0:
            continue
        if contract.sec_type not in (SecType.OPTION, SecType.STOCK):
            skipped.append(f"{contract.describe()}: {contract.sec_type.value} positions are not liquidated here")
            continue
        seq = _next_liquidation_seq(engine, day, contract.con_id)
        if seq is None:
            skipped.append(f"{contract.describe()}: a liquidation order is already working")
            continue
        if not contract.exchange:
            contract = replace(contract, exchange="SMART")
        specs.append(IntentSpec(session_day=day, purpose=IntentPurpose.LIQUIDATE, ref_id=contract.con_id,
                                contract=contract, action="BUY" if position.quantity < 0 else "SELL",
                                quantity=quantity, order_type="MKT", seq=seq))
    return specs, skipped


def _next_liquidation_seq(engine: Engine, day: date, con_id: int) -> int | None:
    """The first unused seq of this position's liquidation ref today; None while an earlier
    liquidation order of it is still open (sending another would close it twice)."""
    seq = 1
    while True:
        intent = get_intent(engine, order_ref=deterministic_order_ref(day, con_id, IntentPurpose.LIQUIDATE, seq))
        if intent is None:
            return seq
        if intent.is_open:
            return None
        seq += 1


def _account_of(broker: BrokerPort) -> str:
    account = getattr(broker, "account", "")
    return account or broker.account_summary().account


def _describe_order(update) -> str:
    return (f"order {update.order_id} (client {update.client_id}, ref {update.order_ref or '-'}) "
            f"{update.action} {update.quantity:g} {update.contract.describe()}: {update.status}")
