"""Trade history in the ledger: lifecycle rebuilds, promotion into trades, report queries
(trading_pipeline.history.promotion, trading_pipeline.history.imports.rebuild_lifecycles,
trading_pipeline.ledger.history), on SQLite and PostgreSQL.

Contract: rebuild_lifecycles replaces the derived lifecycles and gaps from every stored
execution and keeps each promoted lifecycle linked to its trade (by lifecycle id);
promote_lifecycles turns each closed lifecycle into one closed trade (trade_source
"ibkr_import", trade_key "lifecycle:<id>", exit reason = exit type, the lifecycle's prices,
P&L and commissions split entry/exit), idempotently; a dry run writes nothing; a lifecycle
whose opening still has contracts open waits; an assignment with its stock leg records the
stock position; lifecycle rows with an unknown side, right or exit type are refused by the
database. list_lifecycles / list_gaps / list_import_sessions / history_status report
what is stored (filters, sorts, counts); lifecycle_summary counts by exit type, totals the
closed lifecycles' net P&L per currency and lists the ten best closed, in SQL. Migration
0005 moves an 0004 ledger's typed execution columns into the session chunks (raw text kept
exactly, the history still matched and deduplicated) and its downgrade restores them.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from trading_pipeline.history.imports import rebuild_lifecycles
from trading_pipeline.history.promotion import promote_lifecycles
from trading_pipeline.ledger import make_engine
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.history import (
    STORED_EXECUTION_COLUMNS,
    execution_raw_xml,
    history_status,
    lifecycle_summary,
    list_gaps,
    list_import_sessions,
    list_lifecycles,
    load_executions,
)
from trading_pipeline.ledger.migrate import alembic_config
from trading_pipeline.ledger.schema import UtcDateTime, flex_import_sessions, flex_raw_chunks, trade_lifecycles
from trading_pipeline.ledger.trades import list_stock_positions, list_trades
from trading_pipeline_tests.history.test_flex_parser import statement, trade
from trading_pipeline_tests.history.test_history_imports import ACCOUNT, AT, OTHER, btc, run_import, sto, two_accounts

LATER = AT + timedelta(days=1)


def expired(exec_id: str, trade_id: str, *, contracts: int = 2, **extra) -> str:
    """The puts expiring worthless: a BookTrade BUY at 0, note Ep, 16:20 on the expiry day."""
    return btc(exec_id, trade_id, contracts=contracts, price="0", commission="0", when="20261218;162000",
               transactionType="BookTrade", notes="Ep", order="", **extra)


def assigned(exec_id: str, trade_id: str, *, contracts: int = 2) -> list[str]:
    """The short puts assigned: the option's BookTrade and the stock's (200 XYZ at 100)."""
    option = btc(exec_id, trade_id, contracts=contracts, price="0", commission="0", when="20261218;162000",
                 transactionType="BookTrade", notes="A", order="")
    stock = trade(assetCategory="STK", symbol="XYZ", description="XYZ INC", conid="1200", underlyingSymbol="XYZ",
                  multiplier="1", strike="", expiry="", putCall="", transactionType="BookTrade", notes="A",
                  tradePrice="100", quantity=str(100 * contracts), buySell="BUY", ibCommission="0",
                  tradeID=f"{trade_id}s", ibExecID=f"{exec_id}.stk", transactionID=f"tx{exec_id}.stk",
                  ibOrderID="", openCloseIndicator="O", dateTime="20261218;162000", tradeDate="20261218")
    return [option, stock]


# --- promotion -------------------------------------------------------------------------------------


def test_promotion_makes_one_closed_trade_per_lifecycle_and_is_idempotent(ledger_engine):
    run_import(ledger_engine, statement(sto("e1", "5001", commission="-1.30"), btc("b1", "5002", commission="-1.30")))
    (life,) = list_lifecycles(ledger_engine)

    dry = promote_lifecycles(ledger_engine, dry_run=True, at=LATER)
    assert (dry.dry_run, dry.candidates, dry.promoted, dry.already_promoted, dry.lifecycle_ids) == (
        True, 1, 1, 0, ("e1:btc",))
    assert list_trades(ledger_engine) == [] and list_lifecycles(ledger_engine) == [life]

    result = promote_lifecycles(ledger_engine, at=LATER)
    assert (result.candidates, result.promoted, result.already_promoted, result.waiting, result.errors) == (
        1, 1, 0, 0, ())
    (promoted,) = list_trades(ledger_engine)
    assert (promoted.trade_key, promoted.trade_source, promoted.lifecycle_id, promoted.status) == (
        "lifecycle:e1:btc", "ibkr_import", "e1:btc", "closed")
    assert (promoted.account, promoted.symbol, promoted.right, promoted.strike, promoted.expiration) == (
        ACCOUNT, "XYZ", "P", 100.0, date(2026, 12, 18))
    assert (promoted.side, promoted.contracts, promoted.open_contracts, promoted.multiplier, promoted.currency,
            promoted.con_id) == ("short", 2, 0, 100, "USD", 812345)
    assert (promoted.entry_price, promoted.exit_price, promoted.exit_reason) == (3.25, 1.00, "btc")
    assert promoted.entry_time == datetime(2026, 11, 20, 14, 35, 10, tzinfo=UTC)
    assert promoted.exit_time == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    # (3.25 - 1.00) x 2 x 100 = 450 gross; 1.30 to open, 1.30 to close; 447.40 net.
    assert (promoted.gross_pnl, promoted.entry_commission, promoted.exit_commission, promoted.net_pnl) == (
        450.0, 1.30, 1.30, 447.40)
    assert list_lifecycles(ledger_engine)[0]["promoted_trade_id"] == promoted.id

    again = promote_lifecycles(ledger_engine, at=LATER)
    assert (again.promoted, again.already_promoted, again.lifecycle_ids) == (0, 1, ())
    assert len(list_trades(ledger_engine)) == 1


def test_promoted_pnl_is_the_lifecycles_even_with_average_prices(ledger_engine):
    # One opening order filled 1 @ 3.25 and 2 @ 3.20 (average 3.21666...), closed 3 @ 1.00:
    # gross (3.25 - 1) x 100 + (3.20 - 1) x 2 x 100 = 665 exactly; from the average rounded to
    # six places it would be 665.0001.
    run_import(ledger_engine, statement(
        sto("e1", "1", contracts=1, price="3.25", commission="-0.65"),
        sto("e2", "2", contracts=2, price="3.20", commission="-1.30"),
        btc("b1", "3", contracts=3, price="1.00", commission="-1.95"),
    ))
    promote_lifecycles(ledger_engine, at=LATER)
    (promoted,) = list_trades(ledger_engine)
    assert promoted.contracts == 3 and promoted.entry_price == pytest.approx(3.216667)
    assert (promoted.gross_pnl, promoted.entry_commission, promoted.exit_commission) == (665.0, 1.95, 1.95)
    assert promoted.net_pnl == 661.10


def test_a_partly_closed_opening_waits_until_it_is_wholly_closed(ledger_engine):
    run_import(ledger_engine, statement(sto("e1", "1", contracts=3, commission="-1.95"),
                                        btc("b1", "2", contracts=1, commission="-0.65")))
    waiting = promote_lifecycles(ledger_engine, at=LATER)
    assert (waiting.candidates, waiting.promoted, waiting.waiting) == (1, 0, 1)
    assert list_trades(ledger_engine) == []

    run_import(ledger_engine, statement(btc("b2", "3", contracts=2, commission="-1.30", order="7003",
                                            when="20261127;100000")), "later.xml")
    done = promote_lifecycles(ledger_engine, at=LATER)
    assert (done.candidates, done.promoted, done.waiting) == (1, 1, 0)
    (promoted,) = list_trades(ledger_engine)
    # 3 @ 3.25 closed 1 @ 1.00 and 2 @ 1.00: gross 675; commissions 1.95 + 0.65 + 1.30.
    assert (promoted.contracts, promoted.gross_pnl, promoted.entry_commission, promoted.exit_commission) == (
        3, 675.0, 1.95, 1.95)
    assert promoted.net_pnl == 671.10


def test_an_assignment_records_the_stock_position(ledger_engine):
    run_import(ledger_engine, statement(sto("e1", "1"), *assigned("a1", "2")))
    result = promote_lifecycles(ledger_engine, at=LATER)
    assert (result.promoted, result.stock_positions) == (1, 1)
    (promoted,) = list_trades(ledger_engine)
    # Assigned: the option closes at 0, (3.25 - 0) x 2 x 100 = 650; 1.30 to open, nothing to close.
    assert (promoted.exit_reason, promoted.exit_price, promoted.gross_pnl, promoted.net_pnl) == (
        "assignment", 0.0, 650.0, 648.70)
    (stock,) = list_stock_positions(ledger_engine)
    assert (stock["source_trade_id"], stock["symbol"], stock["quantity"], stock["cost_price"], stock["account"]) == (
        promoted.id, "XYZ", 200, 100.0, ACCOUNT)
    assert stock["opened_at"] == datetime(2026, 12, 18, 21, 20, tzinfo=UTC)  # 16:20 New York


def test_an_expiration_records_no_stock_and_promotes_per_account(ledger_engine):
    run_import(ledger_engine, two_accounts(
        [sto("a1", "1"), expired("a2", "2")],
        [sto("o1", "3", accountId=OTHER), expired("o2", "4", accountId=OTHER)],
    ))
    result = promote_lifecycles(ledger_engine, account=OTHER, at=LATER)
    assert (result.account, result.candidates, result.promoted, result.stock_positions) == (OTHER, 1, 1, 0)
    (promoted,) = list_trades(ledger_engine)
    assert (promoted.account, promoted.exit_reason, promoted.gross_pnl) == (OTHER, "expiration", 650.0)
    assert list_stock_positions(ledger_engine) == []
    assert promote_lifecycles(ledger_engine, at=LATER).promoted == 1  # the other account's


def test_a_lifecycle_that_cannot_be_a_trade_is_reported_and_the_others_promoted(ledger_engine):
    odd = dict(multiplier="2.5", conid="99", strike="50", symbol="ODD", underlyingSymbol="ODD")
    run_import(ledger_engine, statement(sto("e1", "1"), btc("b1", "2"),
                                        sto("x1", "3", order="8001", **odd), btc("x2", "4", order="8002", **odd)))
    result = promote_lifecycles(ledger_engine, at=LATER)
    assert result.promoted == 1 and result.lifecycle_ids == ("e1:btc",)
    assert result.errors == (("x1:btc", "multiplier 2.5 is not a whole number of shares"),)
    assert result.as_dict()["errors"] == [["x1:btc", "multiplier 2.5 is not a whole number of shares"]]


# --- rebuilds ---------------------------------------------------------------------------------------


def test_a_rebuild_replaces_lifecycles_and_keeps_promotions(ledger_engine):
    run_import(ledger_engine, statement(sto("e1", "1"), btc("b1", "2"), sto("e2", "3", order="7010"),
                                        btc("g1", "4", order="7011", strike="90", when="20261121;100000")))
    promote_lifecycles(ledger_engine, at=LATER)
    (promoted,) = list_trades(ledger_engine)
    before = list_lifecycles(ledger_engine)
    rebuilt = rebuild_lifecycles(ledger_engine, as_of=date(2026, 12, 19), at=LATER)
    assert rebuilt == {"accounts": [ACCOUNT], "option_executions": 4, "lifecycles": 2, "open": 1, "closed": 1, "gaps": 1,
                       "promoted": 1, "promoted_orphaned": 0, "promoted_changed": 0}
    after = list_lifecycles(ledger_engine)
    assert [(row["lifecycle_id"], row["promoted_trade_id"]) for row in after] == [
        ("e1:btc", promoted.id), ("e2:open", None)]
    # The open short's expiry (2026-12-18) passed without a closing in the import.
    assert after[1]["flag"] == "expiry_passed_without_close" and before[1]["flag"] is None
    assert all(row["built_at"] == LATER for row in after)
    (gap,) = list_gaps(ledger_engine)
    assert (gap["exec_id"], gap["strike"], gap["quantity"], gap["exit_type"], gap["side"]) == ("g1", 90.0, 2, "btc",
                                                                                                "short")
    # Rebuilding again changes nothing but the time.
    assert rebuild_lifecycles(ledger_engine, as_of=date(2026, 12, 19), at=LATER) == rebuilt


def test_a_rebuild_reports_promoted_trades_the_history_no_longer_supports(ledger_engine):
    run_import(ledger_engine, statement(sto("e1", "1"), btc("b1", "2")))
    promote_lifecycles(ledger_engine, at=LATER)
    # An older opening of the same contract arrives: first in, first out, b1 now closes it.
    run_import(ledger_engine, statement(sto("e0", "0", order="7000", when="20261118;100000")), "older.xml")
    status = history_status(ledger_engine)
    assert status["lifecycles"]["promoted"] == 0
    rebuilt = rebuild_lifecycles(ledger_engine, as_of=date(2026, 12, 1), at=LATER)
    assert (rebuilt["promoted"], rebuilt["promoted_orphaned"]) == (0, 1)
    assert [row["lifecycle_id"] for row in list_lifecycles(ledger_engine)] == ["e0:btc", "e1:open"]


# --- reports -----------------------------------------------------------------------------------------


def test_report_queries_filter_sort_and_count(ledger_engine):
    assert history_status(ledger_engine) == {
        "accounts": [], "executions": 0, "option_events": 0,
        "lifecycles": {"total": 0, "open": 0, "closed": 0, "promoted": 0, "closed_not_promoted": 0},
        "gaps": 0, "import_sessions": 0, "last_import": None, "built_at": None}
    assert list_lifecycles(ledger_engine) == [] and list_gaps(ledger_engine) == []
    assert promote_lifecycles(ledger_engine, at=AT).candidates == 0

    run_import(ledger_engine, statement(
        sto("e1", "1", price="3.25"), btc("b1", "2", price="4.00"),  # a loss: (3.25 - 4) x 200 = -150
        sto("e2", "3", order="7010", symbol="ABC   261218P00050000", underlyingSymbol="ABC", strike="50",
            conid="77", when="20261118;100000"),  # still open
        sto("e3", "4", order="7012", when="20261119;100000"),  # first in: b1 closes it, the expiry e1
        expired("x3", "5"),
    ), "first.xml")
    run_import(ledger_engine, two_accounts([], [sto("o1", "9", accountId=OTHER)]), "other.xml", account=OTHER)
    by_date = list_lifecycles(ledger_engine)
    assert [row["lifecycle_id"] for row in by_date] == ["e2:open", "e3:btc", "e1:expiration", "o1:open"]
    assert [row["lifecycle_id"] for row in list_lifecycles(ledger_engine, sort="pnl")] == [
        "e3:btc", "e1:expiration", "e2:open", "o1:open"]  # worst first, open last
    assert [row["lifecycle_id"] for row in list_lifecycles(ledger_engine, sort="symbol")] == [
        "e2:open", "e3:btc", "e1:expiration", "o1:open"]
    assert [row["lifecycle_id"] for row in list_lifecycles(ledger_engine, symbol=" abc ")] == ["e2:open"]
    assert [row["lifecycle_id"] for row in list_lifecycles(ledger_engine, status="closed", account=ACCOUNT)] == [
        "e3:btc", "e1:expiration"]
    assert [row["lifecycle_id"] for row in list_lifecycles(ledger_engine, status="open", account=OTHER)] == ["o1:open"]
    loss = by_date[1]
    assert (loss["gross_pnl"], loss["commissions"], loss["net_pnl"]) == (-150.0, 2.6, -152.6)
    with pytest.raises(ValueError, match="sort must be one of"):
        list_lifecycles(ledger_engine, sort="size")
    with pytest.raises(ValueError, match="status must be one of"):
        list_lifecycles(ledger_engine, status="promoted")

    sessions = list_import_sessions(ledger_engine)
    assert [s["file_name"] for s in sessions] == ["other.xml", "first.xml"]
    assert [s["file_name"] for s in list_import_sessions(ledger_engine, limit=1)] == ["other.xml"]

    promote_lifecycles(ledger_engine, at=LATER)
    status = history_status(ledger_engine)
    assert status["accounts"] == [
        {"account": ACCOUNT, "executions": 5, "option_executions": 5, "first_trade_date": date(2026, 11, 18),
         "last_trade_date": date(2026, 12, 18)},
        {"account": OTHER, "executions": 1, "option_executions": 1, "first_trade_date": date(2026, 11, 20),
         "last_trade_date": date(2026, 11, 20)},
    ]
    assert (status["executions"], status["option_events"], status["gaps"], status["import_sessions"]) == (6, 0, 0, 2)
    assert status["lifecycles"] == {"total": 4, "open": 2, "closed": 2, "promoted": 2, "closed_not_promoted": 0}
    assert status["last_import"]["file_name"] == "other.xml" and status["built_at"] == AT


@pytest.mark.parametrize(("column", "value"), [("side", "flat"), ("right", "X"), ("exit_type", "lost")])
def test_lifecycle_rows_with_an_unknown_side_right_or_exit_type_are_refused(ledger_engine, column, value):
    run_import(ledger_engine, statement(sto("e1", "5001"), btc("b1", "5002")))
    (life,) = list_lifecycles(ledger_engine)
    row = {name: life[name] for name in (
        "account", "underlying", "right", "strike", "expiry", "side", "quantity", "exit_type", "open_exec_ids",
        "close_exec_ids", "built_at")}
    with pytest.raises(IntegrityError), ledger_engine.begin() as connection:
        connection.execute(insert(trade_lifecycles).values(**{**row, "lifecycle_id": "x", column: value}))
    with ledger_engine.begin() as connection:  # the same row with known values is stored
        connection.execute(insert(trade_lifecycles).values(**{**row, "lifecycle_id": "x"}))
    assert len(list_lifecycles(ledger_engine)) == 2


def test_lifecycle_summary_counts_totals_per_currency_and_ranks_the_best_closed(ledger_engine):
    assert lifecycle_summary(ledger_engine) == {
        "lifecycles": 0, "open": 0, "closed": 0, "gaps": 0,
        "by_exit_type": {"btc": 0, "stc": 0, "expiration": 0, "assignment": 0, "exercise": 0, "open": 0},
        "net_pnl_by_currency": {}, "top_closed": []}
    euro = dict(symbol="DEF   261218P00040000", underlyingSymbol="DEF", strike="40", conid="88", currency="EUR",
                ibCommissionCurrency="EUR")
    run_import(ledger_engine, statement(
        sto("e1", "1"), btc("b1", "2"),  # (3.25 - 1.00) x 200 - 2.60 = 447.40 USD
        sto("e2", "3", order="7010", symbol="ABC   261218P00050000", underlyingSymbol="ABC", strike="50",
            conid="77"),  # still open
        sto("e4", "5", order="7020", price="2.00", **euro),
        btc("b4", "6", order="7021", price="2.50", **euro),  # (2.00 - 2.50) x 200 - 2.60 = -102.60 EUR
        btc("g1", "7", order="7030", symbol="GHI   261218P00030000", underlyingSymbol="GHI", strike="30",
            conid="99"),  # a closing without its opening: a gap
    ))
    run_import(ledger_engine, two_accounts([], [sto("o1", "9", accountId=OTHER)]), "other.xml", account=OTHER)

    summary = lifecycle_summary(ledger_engine)
    assert {key: value for key, value in summary.items() if key != "top_closed"} == {
        "lifecycles": 4, "open": 2, "closed": 2, "gaps": 1,
        "by_exit_type": {"btc": 2, "stc": 0, "expiration": 0, "assignment": 0, "exercise": 0, "open": 2},
        "net_pnl_by_currency": {"EUR": -102.6, "USD": 447.4},
    }
    assert [(row["lifecycle_id"], row["currency"], row["net_pnl"]) for row in summary["top_closed"]] == [
        ("e1:btc", "USD", 447.4), ("e4:btc", "EUR", -102.6)]
    assert summary["top_closed"][0] == list_lifecycles(ledger_engine, status="closed", sort="pnl")[1]
    other = lifecycle_summary(ledger_engine, account=OTHER)
    assert (other["lifecycles"], other["open"], other["closed"], other["gaps"], other["net_pnl_by_currency"],
            other["top_closed"]) == (1, 1, 0, 0, {}, [])


def test_the_top_closed_are_at_most_ten_best_first(ledger_engine):
    rows = [row for n in range(12) for row in (
        sto(f"e{n}", f"{n}a", order=f"8{n:02d}", price=f"{2 + n / 10:.2f}", commission="0"),
        btc(f"b{n}", f"{n}b", order=f"9{n:02d}", price="1.00", commission="0"))]
    run_import(ledger_engine, statement(*rows))
    top = lifecycle_summary(ledger_engine)["top_closed"]
    # Lifecycle n earns (2 + n/10 - 1) x 200: the best is n = 11 (420), the tenth n = 2 (240).
    assert [row["lifecycle_id"] for row in top] == [f"e{n}:btc" for n in range(11, 1, -1)]
    assert [row["net_pnl"] for row in top] == [round((1 + n / 10) * 200, 6) for n in range(11, 1, -1)]


# --- revision 0005: executions stored column-wise -------------------------------------------------

# flex_executions as revision 0004 had it (every typed column a database column).
_AT_0004 = sa.Table(
    "flex_executions", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True), sa.Column("import_session_id", sa.Integer),
    sa.Column("line", sa.Integer), sa.Column("raw_row", sa.Integer), sa.Column("account", sa.String),
    sa.Column("exec_id", sa.String), sa.Column("is_cancellation", sa.Boolean), sa.Column("trade_id", sa.String),
    sa.Column("orig_trade_id", sa.String), sa.Column("order_id", sa.String),
    sa.Column("asset_category", sa.String), sa.Column("symbol", sa.Text), sa.Column("underlying", sa.String),
    sa.Column("con_id", sa.BigInteger), sa.Column("put_call", sa.String), sa.Column("strike", sa.Float),
    sa.Column("expiry", sa.Date), sa.Column("multiplier", sa.Float), sa.Column("currency", sa.String),
    sa.Column("buy_sell", sa.String), sa.Column("quantity", sa.Float), sa.Column("price", sa.Float),
    sa.Column("commission", sa.Float), sa.Column("open_close", sa.String), sa.Column("event", sa.String),
    sa.Column("date_time_utc", UtcDateTime), sa.Column("trade_date", sa.Date),
)
_XYZ = dict(account=ACCOUNT, is_cancellation=False, orig_trade_id=None, asset_category="OPT",
            symbol="XYZ   261218P00100000", underlying="XYZ", con_id=812345, put_call="P", strike=100.0,
            expiry=date(2026, 12, 18), multiplier=100.0, currency="USD", commission=-1.3, event="trade")
_ROWS_0004 = [
    dict(_XYZ, line=5, raw_row=0, exec_id="e1", trade_id="5001", order_id="7001",
         buy_sell="SELL", quantity=-2.0, price=3.25, open_close="O",
         date_time_utc=datetime(2026, 11, 20, 14, 35, 10, tzinfo=UTC), trade_date=date(2026, 11, 20)),
    dict(_XYZ, line=6, raw_row=1, exec_id="b1", trade_id="5002", order_id="7002",
         buy_sell="BUY", quantity=2.0, price=1.0, open_close="C",
         date_time_utc=datetime(2026, 11, 25, 15, 0, tzinfo=UTC), trade_date=date(2026, 11, 25)),
]
_RAW_0004 = [sto("e1", "5001", myNewAttribute="kept"), btc("b1", "5002")]


def _migrate(engine, revision: str, *, down: bool = False) -> None:
    config = alembic_config()
    with write_transaction(engine) as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def _texts(data: bytes) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data))


def test_revision_0005_moves_stored_executions_into_the_chunks_and_back(ledger_url):
    engine = make_engine(ledger_url)
    try:
        _migrate(engine, "0004")
        chunk = io.BytesIO()
        pl.DataFrame({"raw_xml": _RAW_0004}).write_parquet(chunk, compression="zstd")
        with write_transaction(engine) as connection:  # an import made at revision 0004
            session_id = connection.execute(insert(flex_import_sessions).values(
                started_at=AT, finished_at=AT, source="file", file_name="nov.xml", accounts=[ACCOUNT],
                statement_kind="activity", dry_run=False, total=2, new_count=2, duplicate_count=0,
                skipped_count=0, error_count=0, option_event_count=0, status="completed",
            ).returning(flex_import_sessions.c.id)).scalar_one()
            connection.execute(insert(_AT_0004), [dict(row, import_session_id=session_id) for row in _ROWS_0004])
            connection.execute(insert(flex_raw_chunks).values(
                import_session_id=session_id, kind="execution", first_row=0, row_count=2, data=chunk.getvalue()))

        _migrate(engine, "head")
        with engine.connect() as connection:
            assert [c["name"] for c in sa.inspect(connection).get_columns("flex_executions")] == [
                "id", "import_session_id", "raw_row", "account", "exec_id", "is_cancellation", "put_call",
                "trade_date"]
            loaded = load_executions(connection).sort("line")
            assert execution_raw_xml(connection, "e1") == _RAW_0004[0]  # the text kept exactly
            assert execution_raw_xml(connection, "b1") == _RAW_0004[1]
        for row, expected in zip(loaded.iter_rows(named=True), _ROWS_0004, strict=True):
            assert {name: row[name] for name in STORED_EXECUTION_COLUMNS} == {
                name: expected[name] for name in STORED_EXECUTION_COLUMNS}
            assert row["import_session_id"] == session_id
        # The moved history works at 0005: matched again, recognized as already stored.
        rebuilt = rebuild_lifecycles(engine, as_of=date(2026, 12, 1), at=AT)
        assert (rebuilt["option_executions"], rebuilt["lifecycles"], rebuilt["closed"]) == (2, 1, 1)
        assert list_lifecycles(engine)[0]["net_pnl"] == 447.4  # (3.25 - 1.00) x 200 - 2 x 1.30
        again = run_import(engine, statement(sto("e1", "5001"), sto("e5", "5005", order="7005")), "dec.xml")
        assert (again.new, again.duplicate) == (1, 1)

        _migrate(engine, "0004", down=True)
        with engine.connect() as connection:
            rows = connection.execute(select(_AT_0004).order_by(_AT_0004.c.id)).mappings().all()
            chunks = connection.execute(select(flex_raw_chunks.c.import_session_id, flex_raw_chunks.c.data)
                                        .where(flex_raw_chunks.c.kind == "execution")
                                        .order_by(flex_raw_chunks.c.import_session_id)).all()
        assert [{name: row[name] for name in _ROWS_0004[0]} for row in rows[:2]] == _ROWS_0004
        assert [row["import_session_id"] for row in rows] == [session_id, session_id, again.session_id]
        assert (rows[2]["exec_id"], rows[2]["line"], rows[2]["raw_row"], rows[2]["price"]) == ("e5", 6, 0, 3.25)
        assert [_texts(data).columns for _, data in chunks] == [["raw_xml"], ["raw_xml"]]
        assert _texts(chunks[0][1])["raw_xml"].to_list() == _RAW_0004
    finally:
        engine.dispose()
