"""What stands between a morning and the broker: the hybrid approval of a run launched from
the UI (a decision in the ledger, or an abort at the deadline), the clock sync check, and the
live-account guard (a non-paper account needs TP_LIVE_ARMED=1 and the confirmed account id)."""

from __future__ import annotations

import threading
import time
from datetime import timezone

import pytest

from trading_pipeline.core.clock import SystemClock
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.ledger.orders import get_execution_run, intents_for_session, list_execution_runs
from trading_pipeline.ledger.risk import get_approval, pending_approvals
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.prices import load_prices
from trading_pipeline.sim.server import SimGateway
from trading_pipeline.trading.order_gateway import LiveTradingRefused, OrderGateway
from trading_pipeline.trading.two_tier import (
    ExecutionRefused,
    MorningSetup,
    TwoTierOptions,
    TwoTierRunner,
    decide_waiting_run,
    ledger_approvals,
    reconcile_with_broker,
    run_morning,
)
from trading_pipeline_tests.execution.conftest import MONDAY, Market, new_york, stage_sunday


def _in_thread(fn):
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as problem:  # handed to the test thread
            outcome["error"] = problem

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for(condition, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_ui_launched_hybrid_run_waits_for_the_ledger_approval_then_executes(market):
    stage_sunday(market)
    market.monday(new_york(9, 27))
    run_key = "dagster-run-42"
    decide = ledger_approvals(market.engine, run_key)
    thread, outcome = _in_thread(lambda: market.morning(mode="hybrid", decide=decide, overrides={
        "tier2_enabled": False, "fill_monitor_window_seconds": 60}))

    [waiting] = _wait_for(lambda: pending_approvals(market.engine, MONDAY))
    assert waiting.run_key == run_key and waiting.decision == "PENDING"
    assert waiting.deadline == new_york(9, 40) and "SELL" in waiting.summary
    assert market.orders() == []  # nothing goes out before the decision
    decide_waiting_run(market.engine, "wait", by="test")  # WAIT keeps the run waiting
    time.sleep(0.2)
    assert market.orders() == [] and thread.is_alive()
    decide_waiting_run(market.engine, "execute", by="test", note="conditions fine")
    thread.join(60)

    report = outcome["value"]
    assert report.status == "SUCCEEDED" and market.orders()
    approval = get_approval(market.engine, run_key)
    assert approval.decision == "EXECUTE" and approval.decided_by == "test"
    assert all(i.sent_at >= approval.decided_at for i in intents_for_session(market.engine, MONDAY)
               if i.sent_at is not None)


def test_a_ui_launched_hybrid_run_aborts_when_nobody_decides_before_the_deadline(market):
    stage_sunday(market)
    market.monday(new_york(9, 27, 30), speed=60.0)
    # The question closes with the Tier 2 window: 9:30 here.
    report = market.morning(mode="hybrid", decide=ledger_approvals(market.engine, "run-nobody"), speed=60.0,
                            overrides={"tier2_window_start": "09:20", "tier2_window_end": "09:30"})

    assert report.status == "ABORTED" and market.orders() == []
    approval = get_approval(market.engine, "run-nobody")
    assert approval.decision == "PENDING" and approval.deadline == new_york(9, 30)
    assert market.now() >= new_york(9, 30)


def test_a_clock_out_of_sync_refuses_the_morning_and_records_why(market):
    market.monday(new_york(9, 27))
    broker = market.broker()
    try:
        gateway = OrderGateway(broker, market.engine, SystemClock(), ExecutionParameters(), dry_run=True,
                               account="DU1234567")
        # The local clock (2025/2026 now) against a simulator at 2026-11-23: far beyond 50 ms.
        runner = TwoTierRunner(broker=broker, engine=market.engine, gateway=gateway, clock=SystemClock(),
                               params=ExecutionParameters(), options=TwoTierOptions(
                                   mode="autonomous", dry_run=True, clock_rate=300.0, session_day=MONDAY))
        with pytest.raises(ExecutionRefused, match="clock sync check failed: Clock drift"):
            runner.run()
        gateway.close()
    finally:
        broker.disconnect()
    [run] = list_execution_runs(market.engine)
    assert run.status == "FAILED" and "MAX_CLOCK_DRIFT_MS" in run.error
    assert market.orders() == []


@pytest.fixture
def live_market(tmp_path):
    """A simulated TWS whose only account is a real-money account (not DU...)."""
    from trading_pipeline import settings
    from trading_pipeline.ledger.db import make_engine
    from trading_pipeline.ledger.migrate import migrate

    prices, _ = load_prices(settings.sample_export_path())
    sim = SimBroker(seed=7, start=new_york(10, 45).astimezone(timezone.utc), speed=0.0, prices=prices,
                    account_id="U1234567")
    gateway = SimGateway(sim)
    gateway.start()
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(engine)
    try:
        yield Market(gateway, sim, engine, "")
    finally:
        gateway.stop()
        engine.dispose()


def test_live_orders_to_a_real_money_account_need_arming_and_the_confirmed_id(live_market):
    stepped = MorningSetup(mode="autonomous", dry_run=False, clock="broker", clock_rate=0.0)

    with pytest.raises(LiveTradingRefused) as refused:
        run_morning(live_market.engine, stepped, live_market.env)
    message = str(refused.value)
    assert "not a paper account" in message and "TP_LIVE_ARMED=1 is not set" in message
    assert "--confirm-account" in message and "U1234567" not in message  # the id is masked
    with pytest.raises(LiveTradingRefused, match="TP_LIVE_ARMED=1 is not set"):
        run_morning(live_market.engine, MorningSetup(mode="autonomous", dry_run=False, clock="broker",
                                                     clock_rate=0.0, confirm_account="U1234567"), live_market.env)
    with pytest.raises(LiveTradingRefused, match="the account id is not confirmed"):
        run_morning(live_market.engine, stepped, {**live_market.env, "TP_LIVE_ARMED": "1"})
    with pytest.raises(LiveTradingRefused, match="does not match"):
        run_morning(live_market.engine, MorningSetup(mode="autonomous", dry_run=False, clock="broker",
                                                     clock_rate=0.0, confirm_account="U7654321"),
                    {**live_market.env, "TP_LIVE_ARMED": "1"})
    # The job's first step refuses the same way, before it reconciles anything.
    with pytest.raises(LiveTradingRefused):
        reconcile_with_broker(live_market.engine, stepped, live_market.env)
    assert list_execution_runs(live_market.engine) == [] and live_market.orders() == []

    # Armed and confirmed: the morning runs (after 10:30 here, so it sends nothing new).
    report = run_morning(live_market.engine, MorningSetup(mode="autonomous", dry_run=False, clock="broker",
                                                          clock_rate=0.0, confirm_account="U1234567"),
                         {**live_market.env, "TP_LIVE_ARMED": "1"})
    assert report.status == "SUCCEEDED" and not report.dry_run
    assert any("closed at 10:30" in note for note in report.notes)
    # A dry run needs neither.
    dry = run_morning(live_market.engine, MorningSetup(mode="autonomous", dry_run=True, clock="broker",
                                                       clock_rate=0.0), live_market.env)
    assert dry.dry_run and get_execution_run(live_market.engine, dry.execution_run_id).status == "SUCCEEDED"
