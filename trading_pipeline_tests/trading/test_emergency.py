"""Contract of the emergency stop (trading/emergency.py), against the simulated TWS:

- the halt is set in the ledger before the broker is reached (even an unreachable broker
  leaves trading halted), and the stop is recorded as an execution run with its report;
- 100 working orders (placed by another client id through the gateway) are all cancelled by
  the stop's own client id (9), and their intents are closed in the ledger;
- with liquidate every position is closed at market through LIQUIDATE intents, which pass
  the halt by design; a second stop does not close twice;
- it works while another client is connected and trading: afterwards nothing works at the
  broker and that client's next orders are refused by the halt;
- resume_trading lifts the halt (recorded).
"""

from __future__ import annotations

import threading
from datetime import date

from trading_pipeline.broker.ibkr import IbkrBroker
from trading_pipeline.broker.port import ContractSpec
from trading_pipeline.core.clock import FixedClock
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import IntentPurpose, IntentStatus
from trading_pipeline.core.risk import HaltKind
from trading_pipeline.ledger import make_engine
from trading_pipeline.ledger.orders import get_execution_run, intents_for_session, list_execution_runs
from trading_pipeline.ledger.risk import get_trading_state
from trading_pipeline.trading.emergency import EMERGENCY_CLIENT_ID, emergency_broker, emergency_stop, resume_trading
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway, SubmitOutcome
from trading_pipeline_tests.trading.conftest import (
    AAPL_PUT,
    MONDAY,
    SIM_ACCOUNT,
    fast_settings,
    free_port,
    stage,
    stage_many,
)
from trading_pipeline_tests.sim.conftest import SIM_START

ROOMY = ExecutionParameters().with_overrides(max_open_positions=1000, max_new_positions_per_day=1000,
                                             max_sector_concentration=1.0)


def working_at_sim(gateway) -> list:
    return [order for order in gateway.call(gateway.broker.open_orders, None)]


def emergency_adapter(port: int) -> IbkrBroker:
    return IbkrBroker(fast_settings(port, client_id=EMERGENCY_CLIENT_ID))


def place_resting_puts(broker, engine, clock, count: int, params=ROOMY) -> list:
    """``count`` sell-to-open orders far above the ask (they rest), through the gateway."""
    [put] = broker.qualify(AAPL_PUT)
    [quote] = broker.quotes([put])
    specs = [IntentSpec(MONDAY, IntentPurpose.ENTRY, staged_id, put, "SELL", 1, "LMT",
                        limit_price=round(quote.ask + 5, 2), margin_required=100.0)
             for staged_id in stage_many(engine, put, count)]
    with OrderGateway(broker, engine, clock, params, dry_run=False, account=SIM_ACCOUNT) as orders:
        return orders.submit_batch(specs)


def test_the_halt_is_set_even_when_the_broker_is_unreachable(engine):
    clock = FixedClock(SIM_START)
    nobody = IbkrBroker(fast_settings(free_port(), client_id=EMERGENCY_CLIENT_ID))
    report = emergency_stop(nobody, engine, clock)
    state = get_trading_state(engine)
    assert state.halted and state.halt_kind is HaltKind.MANUAL and state.halt_reason == "emergency stop"
    assert "connection refused" in report.error and not report.ok
    run = get_execution_run(engine, report.execution_run_id)
    assert run.mode == "emergency_stop" and run.status == "FAILED" and run.error == report.error


def test_a_hundred_working_orders_are_all_cancelled(sim_gateway, broker, engine, clock):
    placed = place_resting_puts(broker, engine, clock, 100)
    assert all(result.sent for result in placed) and len(working_at_sim(sim_gateway)) == 100
    stopper = emergency_adapter(sim_gateway.port)
    try:
        report = emergency_stop(stopper, engine, FixedClock(SIM_START))
    finally:
        stopper.disconnect()
    assert report.ok and report.working_before == 100 and report.cancelled == 100
    assert report.cancel_method == "reqGlobalCancel"
    assert working_at_sim(sim_gateway) == []
    assert get_trading_state(engine).halted
    intents = intents_for_session(engine, MONDAY)
    assert len(intents) == 100 and {intent.status for intent in intents} == {IntentStatus.CANCELLED}
    [run] = [run for run in list_execution_runs(engine) if run.mode == "emergency_stop"]
    assert run.status == "SUCCEEDED" and run.report["cancelled"] == 100 and run.report["still_working"] == []


def test_liquidation_closes_every_position_despite_the_halt(sim_gateway, broker, engine, clock):
    [put] = broker.qualify(AAPL_PUT)
    [call_put] = broker.qualify(ContractSpec.option("MSFT", date(2026, 12, 18), 450.0, "P"))
    with OrderGateway(broker, engine, clock, ROOMY, dry_run=False, account=SIM_ACCOUNT) as orders:
        opened = orders.submit_batch([
            IntentSpec(MONDAY, IntentPurpose.ENTRY, stage(engine, put), put, "SELL", 2, "MKT", margin_required=1.0),
            IntentSpec(MONDAY, IntentPurpose.ENTRY, stage(engine, call_put), call_put, "SELL", 1, "MKT",
                       margin_required=1.0),
        ])
    assert all(result.sent for result in opened)
    positions = {p.instrument.con_id: p.quantity for p in sim_gateway.call(sim_gateway.broker.positions)}
    assert positions == {put.con_id: -2, call_put.con_id: -1}

    stopper = emergency_adapter(sim_gateway.port)
    try:
        report = emergency_stop(stopper, engine, FixedClock(SIM_START), liquidate=True)
        again = emergency_stop(stopper, engine, FixedClock(SIM_START), liquidate=True)
    finally:
        stopper.disconnect()
    assert report.ok and len(report.liquidations) == 2
    assert {(r.order_ref, r.outcome) for r in report.liquidations} == {
        (f"tp-20261123-{put.con_id}-L1", SubmitOutcome.SENT), (f"tp-20261123-{call_put.con_id}-L1", SubmitOutcome.SENT)}
    assert "BUY 2 AAPL" in next(r.description for r in report.liquidations if str(put.con_id) in r.order_ref)
    assert sim_gateway.call(sim_gateway.broker.positions) == []
    assert get_trading_state(engine).halted                      # liquidating does not lift it
    assert again.liquidations == ()                              # nothing left to close
    liquidations = [i for i in intents_for_session(engine, MONDAY) if i.purpose is IntentPurpose.LIQUIDATE]
    assert len(liquidations) == 2 and all(i.order_type == "MKT" and i.action == "BUY" for i in liquidations)


def test_the_stop_works_while_another_client_is_trading(sim_gateway, broker, engine, clock):
    # The other "process": client id 1 with its own ledger engine, submitting order after order.
    other_engine = make_engine(str(engine.url))
    [put] = broker.qualify(AAPL_PUT)
    [quote] = broker.quotes([put])
    outcomes: list[SubmitOutcome] = []
    started, failure = threading.Event(), []

    def trade() -> None:
        try:
            with OrderGateway(broker, other_engine, clock, ROOMY, dry_run=False, account=SIM_ACCOUNT) as orders:
                for _ in range(400):
                    spec = IntentSpec(MONDAY, IntentPurpose.ENTRY, stage(other_engine, put), put, "SELL", 1, "LMT",
                                      limit_price=round(quote.ask + 5, 2), margin_required=100.0)
                    outcomes.append(orders.submit(spec).outcome)
                    started.set()
                    if outcomes[-1] is SubmitOutcome.REFUSED:
                        return
        except Exception as problem:  # noqa: BLE001 (reported by the test)
            failure.append(problem)
            started.set()

    trader = threading.Thread(target=trade)
    trader.start()
    assert started.wait(10)
    stopper = emergency_adapter(sim_gateway.port)
    try:
        report = emergency_stop(stopper, engine, FixedClock(SIM_START))
    finally:
        stopper.disconnect()
    trader.join(20)
    assert not failure and not trader.is_alive()
    assert report.ok and report.working_before >= 1
    assert outcomes[-1] is SubmitOutcome.REFUSED and SubmitOutcome.SENT in outcomes
    assert working_at_sim(sim_gateway) == []
    assert sim_gateway.connected_client_ids() == [1]            # the trader's connection stayed up
    other_engine.dispose()


def test_resume_trading_lifts_the_halt(engine):
    clock = FixedClock(SIM_START)
    nobody = IbkrBroker(fast_settings(free_port(), client_id=EMERGENCY_CLIENT_ID))
    emergency_stop(nobody, engine, clock)
    before, after = resume_trading(engine, clock, by="tester")
    assert before.halted and not after.halted and not get_trading_state(engine).halted
    [run] = [run for run in list_execution_runs(engine) if run.mode == "resume_trading"]
    assert run.report["was_halted"] and run.report["resumed_by"] == "tester"


def test_a_stop_with_nothing_working_is_quick_and_clean(sim_gateway, engine):
    stopper = emergency_adapter(sim_gateway.port)
    try:
        report = emergency_stop(stopper, engine, FixedClock(SIM_START))
    finally:
        stopper.disconnect()
    assert report.ok and report.working_before == 0 and report.elapsed_seconds < 1.0


def test_a_broken_broker_setting_cannot_prevent_the_halt(engine):
    report = emergency_stop(lambda: emergency_broker({"IBKR_PORT": "seven"}), engine, FixedClock(SIM_START))
    assert get_trading_state(engine).halted
    assert report.error == "IBKR_PORT must be a whole number, not 'seven'"
    # The stop's own client id, whatever IBKR_CLIENT_ID says (3 would be refused).
    assert emergency_broker({"IBKR_CLIENT_ID": "3", "IBKR_PORT": "4002"}).settings.client_id == EMERGENCY_CLIENT_ID
