"""Promotion never copies the pipeline's own trades: a lifecycle whose opening executions are
fills of our entry orders is linked to the trade those fills opened (counted as own_trades),
and the ledger keeps one trade for it."""

from datetime import date, datetime, timezone

from trading_pipeline.core.intents import IntentPurpose
from trading_pipeline.history.imports import import_statement
from trading_pipeline.history.promotion import promote_lifecycles
from trading_pipeline.ingest.flex import parse_flex
from trading_pipeline.ledger.history import list_lifecycles
from trading_pipeline.ledger.orders import record_fill
from trading_pipeline.ledger.trades import list_trades, mark_exit_pending
from trading_pipeline_tests.history.test_flex_parser import statement, trade
from trading_pipeline_tests.positions.test_fill_hook import ACCOUNT, CON_ID, execution, intent, open_short

LATER = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def flex_row(exec_id: str, *, quantity: int, price: float, open_close: str, when: str, trade_id: str) -> str:
    return trade(accountId=ACCOUNT, symbol="AAPL  261218P00220000", description="AAPL 18DEC26 220 P",
                 conid=str(CON_ID), underlyingSymbol="AAPL", strike="220", expiry="20261218", tradeID=trade_id,
                 dateTime=when, tradeDate=when[:8], quantity=str(quantity), tradePrice=str(price),
                 ibCommission="-1.95", openCloseIndicator=open_close, ibExecID=exec_id, ibOrderID=trade_id,
                 buySell="SELL" if quantity < 0 else "BUY")


def test_our_own_trade_is_linked_not_promoted_again(ledger_engine):
    own = open_short(ledger_engine)  # 3 AAPL 220P sold at 2.00, fill "e-<staged id>"
    exit_ = intent(ledger_engine, IntentPurpose.EXIT, CON_ID)
    mark_exit_pending(ledger_engine, own.id, intent_id=exit_.id, reason="profit_target", at=LATER)
    record_fill(ledger_engine, execution("x-1", exit_.order_ref, 3, 0.95, side="BOT", commission=1.95, minutes=60),
                at=LATER)
    opening_exec_id = f"e-{own.staged_opportunity_id}"

    data = statement(
        flex_row(opening_exec_id, quantity=-3, price=2.00, open_close="O", when="20261123;100000", trade_id="1"),
        flex_row("x-1", quantity=3, price=0.95, open_close="C", when="20261123;110000", trade_id="2"),
        flex_row("h-1", quantity=-1, price=1.50, open_close="O", when="20261120;100000", trade_id="3"),
        flex_row("h-2", quantity=1, price=0.50, open_close="C", when="20261120;150000", trade_id="4"),
        account=ACCOUNT,
    )
    import_statement(ledger_engine, parse_flex(data, source="activity.xml"), source="file",
                     file_name="activity.xml", at=LATER)

    result = promote_lifecycles(ledger_engine, at=LATER)
    assert (result.own_trades, result.promoted) == (1, 1)  # ours linked; the older one promoted
    trades = list_trades(ledger_engine)
    assert sorted(t.trade_source for t in trades) == ["execution", "ibkr_import"]
    linked = {row["lifecycle_id"]: row["promoted_trade_id"] for row in list_lifecycles(ledger_engine)}
    assert own.id in linked.values()

    again = promote_lifecycles(ledger_engine, at=LATER)
    assert (again.promoted, again.own_trades, again.already_promoted) == (0, 0, 2)
    assert len(list_trades(ledger_engine)) == 2
