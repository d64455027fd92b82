"""Contract of trading/reconciliation.py ``sync_orders`` (``tp sync-orders``), against the
simulated TWS over the real wire protocol:

- the broker's orders of the day come into the ledger: an order placed by hand in TWS (new:
  added to broker_orders with its fill and commission), one still working (added as
  Submitted), and our own entry whose fill the ledger missed (recorded through record_fill,
  whose hook opens its trade; its row, written Filled with 0 filled when the fill raced the
  acknowledgement, brought forward to the broker's count without a conflict);
- a dry run writes nothing but its reconciliation_runs row, and says what it would do;
- a second sync finds nothing to do (idempotent);
- conflicts are reported and never overwritten: the ledger says Filled while the broker
  still works the order; a fill's commission differs from the broker's. A commission the
  ledger lacks is filled in;
- the day's window: an execution of another day is not part of a day's sync, and
  ``--date`` takes YYYY-MM-DD, today and yesterday.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import update

from trading_pipeline.broker.port import ContractSpec, OrderRequest
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import IntentPurpose, IntentStatus
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.orders import get_broker_order, get_intent, list_fills
from trading_pipeline.ledger.reconciliation import list_reconciliation_runs
from trading_pipeline.ledger.schema import broker_orders, fills
from trading_pipeline.ledger.trades import get_trade
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway
from trading_pipeline.trading.reconciliation import parse_day, sync_orders
from trading_pipeline_tests.trading.conftest import (  # noqa: F401
    MONDAY,
    SIM_ACCOUNT,
    broker,
    clock,
    engine,
    sim_gateway,
    stage,
)

DECEMBER = date(2026, 12, 18)


def seed_the_day(broker, engine, clock):  # noqa: F811
    """Three orders at the broker: one sold by hand (filled), one resting by hand (working),
    and our own entry sent through the gateway whose fill event the ledger never drained."""
    put_220, put_230, put_240 = broker.qualify(*[ContractSpec.option("AAPL", DECEMBER, k, "P")
                                                 for k in (220.0, 230.0, 240.0)])
    [quote] = broker.quotes([put_230])
    by_hand = broker.place_order(put_220, OrderRequest.market("SELL", 1))
    resting = broker.place_order(put_230, OrderRequest.limit("SELL", 1, round(quote.ask + 5.0, 2)))
    with OrderGateway(broker, engine, clock, ExecutionParameters(), dry_run=False, account=SIM_ACCOUNT) as gateway:
        [ours] = gateway.submit_batch([IntentSpec(MONDAY, IntentPurpose.ENTRY, stage(engine, put_240), put_240,
                                                  "SELL", 1, "MKT", margin_required=100.0)])
    return by_hand, resting, ours


def test_sync_brings_orders_fills_and_commissions_in_then_finds_nothing(sim_gateway, broker, engine,  # noqa: F811
                                                                         clock):
    by_hand, resting, ours = seed_the_day(broker, engine, clock)
    executions = {e.perm_id: e for e in broker.executions()}
    assert set(executions) == {by_hand.perm_id, ours.handle.perm_id}
    with write_transaction(engine) as connection:
        # What the gateway writes when the fill races the acknowledgement (made certain here):
        # Filled with 0 filled, the fill itself only in the event stream nobody drained.
        connection.execute(update(broker_orders).where(broker_orders.c.perm_id == ours.handle.perm_id)
                           .values(status="Filled", filled=0))
    assert list_fills(engine) == []  # the gateway sent ours; its fill event was never recorded

    preview = sync_orders(engine, broker, clock=clock, day=None, include_filled=False, apply=False)

    assert preview.dry_run and list_fills(engine) == [] and get_broker_order(engine, by_hand.perm_id) is None
    assert set(preview.new_fills) == {e.exec_id for e in executions.values()}
    assert {item.broker.perm_id for item in preview.comparison.new_at_broker} == {by_hand.perm_id, resting.perm_id}
    # Ours: the row's Filled with 0 filled is brought forward to the broker's count, no conflict.
    [to_update] = preview.comparison.to_update
    assert to_update.broker.perm_id == ours.handle.perm_id
    assert (to_update.broker.status, to_update.broker.filled) == ("Filled", 1)
    assert preview.status_breakdown == {"Filled": 2, "Submitted": 1}

    report = sync_orders(engine, broker, clock=clock, day=None, include_filled=False, apply=True)

    assert (report.fills_recorded, report.orders_added, report.orders_updated, report.conflicts) == (2, 2, 1, 0)
    recorded = {fill.exec_id: fill for fill in list_fills(engine)}
    manual_fill = recorded[executions[by_hand.perm_id].exec_id]
    assert manual_fill.intent_id is None and float(manual_fill.commission) == executions[by_hand.perm_id].commission
    row = get_broker_order(engine, by_hand.perm_id)
    assert (row.status, row.filled, row.intent_id) == ("Filled", 1, None)
    assert get_broker_order(engine, resting.perm_id).status == "Submitted"
    intent = get_intent(engine, order_ref=ours.order_ref)
    assert intent.status is IntentStatus.FILLED and intent.filled_quantity == 1
    ours_row = get_broker_order(engine, ours.handle.perm_id)
    assert (ours_row.status, ours_row.filled, ours_row.intent_id) == ("Filled", 1, intent.id)
    # The fill hook opened our trade from the recorded fill.
    trade = get_trade(engine, trade_key=f"intent:{ours.order_ref}")
    assert trade is not None and trade.entry_price == pytest.approx(executions[ours.handle.perm_id].price)
    assert [(run.dry_run, run.applied) for run in list_reconciliation_runs(engine, kind="orders")] == [
        (False, report.applied), (True, 0)]

    again = sync_orders(engine, broker, clock=clock, day=None, include_filled=False, apply=True)

    assert again.discrepancies == 0 and again.applied == 0
    assert len(again.comparison.unchanged) == 3


def test_conflicts_are_reported_never_overwritten_and_missing_commissions_filled_in(sim_gateway, broker,  # noqa: F811
                                                                                    engine, clock):
    by_hand, resting, ours = seed_the_day(broker, engine, clock)
    sync_orders(engine, broker, clock=clock, day=None, include_filled=False, apply=True)
    manual_exec = next(e for e in broker.executions() if e.perm_id == by_hand.perm_id)
    our_exec = next(e for e in broker.executions() if e.perm_id == ours.handle.perm_id)
    with write_transaction(engine) as connection:
        # The ledger believes the resting order filled; one fill's commission is wrong, another's lost.
        connection.execute(update(broker_orders).where(broker_orders.c.perm_id == resting.perm_id)
                           .values(status="Filled"))
        connection.execute(update(fills).where(fills.c.exec_id == manual_exec.exec_id).values(commission=9.99))
        connection.execute(update(fills).where(fills.c.exec_id == our_exec.exec_id).values(commission=None))

    report = sync_orders(engine, broker, clock=clock, day=None, include_filled=False, apply=True)

    [status_conflict] = report.comparison.conflicts
    assert status_conflict.broker.perm_id == resting.perm_id
    assert "the ledger says Filled, the broker Submitted" in status_conflict.explanation
    assert get_broker_order(engine, resting.perm_id).status == "Filled"  # not overwritten
    [fill_conflict] = report.fill_conflicts
    assert (fill_conflict.exec_id, fill_conflict.field, fill_conflict.ledger) == (manual_exec.exec_id,
                                                                                   "commission", 9.99)
    recorded = {fill.exec_id: fill for fill in list_fills(engine)}
    assert float(recorded[manual_exec.exec_id].commission) == 9.99  # not overwritten
    assert float(recorded[our_exec.exec_id].commission) == our_exec.commission  # filled in
    assert report.commissions_filled == 1 and report.conflicts == 2
    [run] = list_reconciliation_runs(engine, kind="orders", limit=1)
    assert run.report["conflicts"] == 2 and run.discrepancies == report.discrepancies


def test_a_day_window_leaves_other_days_out(sim_gateway, broker, engine, clock):  # noqa: F811
    seed_the_day(broker, engine, clock)
    sim_gateway.call(sim_gateway.broker.advance, timedelta(days=1))  # Tuesday: nothing traded yet

    tuesday = sync_orders(engine, broker, clock=clock, day=None, include_filled=False, apply=False)
    monday = sync_orders(engine, broker, clock=clock, day=MONDAY, include_filled=False, apply=False)
    everything = sync_orders(engine, broker, clock=clock, day=None, include_filled=True, apply=False)

    assert tuesday.day == MONDAY + timedelta(days=1) and tuesday.new_fills == ()
    assert len(monday.new_fills) == 2 and len(everything.new_fills) == 2
    assert everything.since is None and monday.until is not None


def test_dates_a_person_types():
    today = date(2026, 2, 3)
    assert parse_day("2026-02-02", today) == date(2026, 2, 2)
    assert parse_day("yesterday", today) == date(2026, 2, 2) and parse_day(" Today ", today) == today
    assert parse_day("", today) is None
    with pytest.raises(TradingPipelineError, match="YYYY-MM-DD, today or yesterday"):
        parse_day("02/03/2026", today)
