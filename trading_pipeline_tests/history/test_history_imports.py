"""The Flex import service (trading_pipeline.history.imports) on SQLite and PostgreSQL.

Contract: import_statement stores each valid execution of a statement once (raw: typed
columns, and the whole element, unknown attributes kept, recoverable exactly with
execution_raw_xml / raw_xml_of from the session's compressed chunks) under one import session whose
counts add up (total = new + duplicate + skipped + errors); rows with errors are not stored
but listed with line and reason; re-importing the same or an overlapping statement adds
nothing; a dry run writes nothing; ``account`` imports only that account's executions (an
account the statement lacks is refused, nothing written); the lifecycles of the accounts
that got new executions are rebuilt from all their stored executions, so a correction
arriving in a later statement cancels its original (in whichever order the two were
imported); a failure while writing leaves only a "failed" session. read_statement_file
reads dates with the account's IBKR_FLEX_DATE_FORMAT_n (else IBKR_FLEX_DATE_FORMAT, else
auto) and refuses bad files before anything is written; fetch_statement gets a configured
account's statement from the (simulated, loopback) Flex Web Service. Storage (revision
0005): each execution is a narrow row plus its typed columns and raw text in the session's
chunks; load_executions reads them back (accounts and options filters, asked columns, in
session then row order); an import gives the SQLite connection its page cache back; bulk
rows whose columns hold one value throughout round-trip like bound ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from trading_pipeline.errors import ConfigurationError, InputFileError
from trading_pipeline.history import imports
from trading_pipeline.history.imports import (
    ImportResult,
    date_format_for,
    fetch_statement,
    import_statement,
    read_statement_file,
)
from trading_pipeline.ingest.flex import FlexStatementData, parse_flex, raw_attributes
from trading_pipeline.ledger import history as ledger_history
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.history import (
    execution_raw_xml,
    list_gaps,
    list_import_sessions,
    list_lifecycles,
    raw_xml_of,
)
from trading_pipeline.ledger.schema import (
    flex_executions,
    flex_import_sessions,
    flex_option_events,
    flex_raw_chunks,
    lifecycle_gaps,
    trade_lifecycles,
)
from trading_pipeline_tests.history.test_flex_parser import statement, trade

ACCOUNT = "U1111111"
OTHER = "U2222222"
AT = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 18:00 New York on Tuesday 2026-12-01


# --- hand-built statements -----------------------------------------------------------------------


def sto(exec_id: str, trade_id: str, *, contracts: int = 2, price: str = "3.25", commission: str = "-1.3",
        when: str = "20261120;093510", order: str = "7001", **extra: object) -> str:
    """Sell to open ``contracts`` XYZ 18DEC26 100 puts (an Activity <Trade> row)."""
    values = dict(ibExecID=exec_id, tradeID=trade_id, transactionID=f"tx{exec_id}", ibOrderID=order,
                  quantity=str(-contracts), tradePrice=price, ibCommission=commission, dateTime=when,
                  tradeDate=when[:8])
    return trade(**{**values, **extra})


def btc(exec_id: str, trade_id: str, *, contracts: int = 2, price: str = "1.00", commission: str = "-1.3",
        when: str = "20261125;100000", order: str = "7002", **extra: object) -> str:
    """Buy to close ``contracts`` of the same puts."""
    values = dict(ibExecID=exec_id, tradeID=trade_id, transactionID=f"tx{exec_id}", ibOrderID=order,
                  buySell="BUY", quantity=str(contracts), tradePrice=price, ibCommission=commission,
                  openCloseIndicator="C", dateTime=when, tradeDate=when[:8])
    return trade(**{**values, **extra})


def parsed(data: bytes, name: str = "statement.xml") -> FlexStatementData:
    return parse_flex(data, source=name)


def run_import(engine, data: bytes, name: str = "statement.xml", **options) -> ImportResult:
    return import_statement(engine, parsed(data, name), source="file", file_name=name, at=AT, **options)


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def history_counts(engine) -> tuple[int, ...]:
    return tuple(count(engine, table) for table in (flex_import_sessions, flex_executions, flex_option_events,
                                                    trade_lifecycles, lifecycle_gaps))


def two_accounts(rows: list[str], other_rows: list[str]) -> bytes:
    """A statement with two <FlexStatement>s: ACCOUNT's rows and OTHER's."""
    def block(account: str, lines: list[str]) -> str:
        return (f'<FlexStatement accountId="{account}" fromDate="20261101" toDate="20261130" period="Custom" '
                f'whenGenerated="20261130;180000">\n<Trades>\n' + "\n".join(lines) + "\n</Trades>\n</FlexStatement>\n")
    return ('<FlexQueryResponse queryName="two" type="AF">\n<FlexStatements count="2">\n'
            + block(ACCOUNT, rows) + block(OTHER, other_rows)
            + "</FlexStatements>\n</FlexQueryResponse>\n").encode()


# --- importing -----------------------------------------------------------------------------------------


def test_import_stores_valid_executions_raw_and_lists_the_bad_ones(ledger_engine):
    data = statement(
        sto("e1", "5001", myNewAttribute="kept"),
        btc("b1", "5002"),
        sto("bad", "5003", tradePrice="abc"),
        sto("", "5004", levelOfDetail="ORDER"),  # an order summary: not an execution at all
    )
    result = run_import(ledger_engine, data, "nov.xml")
    assert (result.total, result.new, result.duplicate, result.skipped, result.errors) == (3, 2, 0, 0, 1)
    assert result.error_rows == ((7, "attribute 'tradePrice': not a number 'abc'"),)
    assert (result.accounts, result.statement_kind, result.from_date, result.to_date) == (
        (ACCOUNT,), "activity", date(2026, 11, 1), date(2026, 11, 30))
    assert result.session_id is not None and not result.dry_run
    assert result.rebuild == {"accounts": [ACCOUNT], "option_executions": 2, "lifecycles": 1, "open": 0, "closed": 1,
                              "gaps": 0, "promoted": 0, "promoted_orphaned": 0, "promoted_changed": 0}

    with ledger_engine.connect() as connection:
        narrow = connection.execute(select(flex_executions).order_by(flex_executions.c.raw_row)).mappings().all()
        rows = ledger_history.load_executions(connection).sort("line").to_dicts()
        session = connection.execute(select(flex_import_sessions)).mappings().one()
    # The narrow rows: what deduplication, the options filter and the status report read.
    assert [dict(r) for r in narrow] == [
        {"id": narrow[0]["id"], "import_session_id": result.session_id, "raw_row": 0, "account": ACCOUNT,
         "exec_id": "e1", "is_cancellation": False, "put_call": "P", "trade_date": date(2026, 11, 20)},
        {"id": narrow[1]["id"], "import_session_id": result.session_id, "raw_row": 1, "account": ACCOUNT,
         "exec_id": "b1", "is_cancellation": False, "put_call": "P", "trade_date": date(2026, 11, 25)},
    ]
    # Every typed column comes back from the session's chunks.
    assert [(r["exec_id"], r["line"], r["quantity"], r["price"], r["commission"]) for r in rows] == [
        ("e1", 5, -2.0, 3.25, -1.3), ("b1", 6, 2.0, 1.0, -1.3)]
    first = rows[0]
    assert first["import_session_id"] == session["id"] == result.session_id
    assert (first["account"], first["underlying"], first["put_call"], first["strike"], first["expiry"]) == (
        ACCOUNT, "XYZ", "P", 100.0, date(2026, 12, 18))
    assert first["date_time_utc"] == datetime(2026, 11, 20, 14, 35, 10, tzinfo=UTC)  # 09:35:10 New York
    assert (first["is_cancellation"], first["open_close"], first["event"]) == (False, "O", "trade")
    assert first["symbol"] == "XYZ   261218P00100000"  # OCC padding kept
    with ledger_engine.connect() as connection:
        raw = execution_raw_xml(connection, "e1")
        second_raw = raw_xml_of(connection, session["id"], "execution", narrow[1]["raw_row"])
        assert raw_xml_of(connection, session["id"], "execution", 2) is None  # only two rows stored
        assert execution_raw_xml(connection, "bad") is None and execution_raw_xml(connection, "e1",
                                                                                 is_cancellation=True) is None
    assert raw == sto("e1", "5001", myNewAttribute="kept")  # the element exactly as written
    assert raw_attributes(raw)["myNewAttribute"] == "kept"
    assert second_raw == btc("b1", "5002")
    assert (session["source"], session["file_name"], session["account"], session["accounts"]) == (
        "file", "nov.xml", None, [ACCOUNT])
    assert (session["total"], session["new_count"], session["duplicate_count"], session["skipped_count"],
            session["error_count"], session["status"], session["dry_run"]) == (3, 2, 0, 0, 1, "completed", False)
    assert session["started_at"] == AT and session["finished_at"] >= AT

    # STO 2 @ 3.25, BTC 2 @ 1.00: (3.25 - 1.00) x 2 x 100 = 450; commissions 1.30 + 1.30.
    (life,) = list_lifecycles(ledger_engine)
    assert (life["side"], life["exit_type"], life["quantity"], life["open_price"], life["close_price"]) == (
        "short", "btc", 2, 3.25, 1.0)
    assert (life["gross_pnl"], life["commissions"], life["net_pnl"], life["confidence"]) == (450.0, 2.6, 447.4, 1.0)
    assert (life["open_exec_ids"], life["close_exec_ids"], life["opening_unit"]) == (["e1"], ["b1"], "7001")
    assert life["lifecycle_id"] == "e1:btc" and life["promoted_trade_id"] is None and life["built_at"] == AT


def test_reimporting_the_same_or_an_overlapping_statement_adds_nothing(ledger_engine):
    first = statement(sto("e1", "5001"), btc("b1", "5002", contracts=1))
    run_import(ledger_engine, first, "first.xml")
    before = list_lifecycles(ledger_engine)

    again = run_import(ledger_engine, first, "first.xml")
    assert (again.total, again.new, again.duplicate, again.rebuild) == (2, 0, 2, None)
    assert list_lifecycles(ledger_engine) == before  # not even rebuilt

    # Overlap: b1 again, and the rest closed a day later.
    overlapping = statement(btc("b1", "5002", contracts=1), btc("b2", "5003", contracts=1, when="20261126;100000", order="7003"))
    later = run_import(ledger_engine, overlapping, "second.xml")
    assert (later.total, later.new, later.duplicate) == (2, 1, 1)
    assert count(ledger_engine, flex_executions) == 3
    assert [s["new_count"] for s in list_import_sessions(ledger_engine)] == [1, 0, 2]
    (life,) = list_lifecycles(ledger_engine)
    # One opening closed by two orders: a partial match, (3.25 - 1.00) x 2 x 100 = 450.
    assert (life["quantity"], life["close_exec_ids"], life["confidence"], life["gross_pnl"]) == (
        2, ["b1", "b2"], 0.9, 450.0)

    # An execution repeated within one statement counts once too.
    repeated = run_import(ledger_engine, statement(sto("e9", "5009"), sto("e9", "5009")), "third.xml")
    assert (repeated.total, repeated.new, repeated.duplicate) == (2, 1, 1)
    assert count(ledger_engine, flex_executions) == 4


def test_raw_text_is_kept_per_session_in_chunks_and_every_row_recovers_its_own(ledger_engine, monkeypatch):
    monkeypatch.setattr(ledger_history, "RAW_CHUNK_ROWS", 2)  # five rows: chunks of 2, 2 and 1
    rows = [sto(f"s{i}", f"50{i}", order=f"70{i}", comment=f"row {i} &amp; more") for i in range(3)]
    run_import(ledger_engine, statement(*rows[:2]))
    second = run_import(ledger_engine, statement(*rows, btc("b1", "5009"), btc("b2", "5010")))
    assert (second.new, second.duplicate) == (3, 2)
    with ledger_engine.connect() as connection:
        chunks = connection.execute(
            select(flex_raw_chunks.c.import_session_id, flex_raw_chunks.c.first_row, flex_raw_chunks.c.row_count)
            .where(flex_raw_chunks.c.kind == "execution")
            .order_by(flex_raw_chunks.c.import_session_id, flex_raw_chunks.c.first_row)
        ).all()
        stored = connection.execute(
            select(flex_executions.c.exec_id, flex_executions.c.import_session_id, flex_executions.c.raw_row)
            .order_by(flex_executions.c.id)
        ).all()
        raw = {exec_id: execution_raw_xml(connection, exec_id) for exec_id, _, _ in stored}
    first_id = second.session_id - 1
    assert [tuple(chunk) for chunk in chunks] == [(first_id, 0, 2), (second.session_id, 0, 2),
                                                  (second.session_id, 2, 1)]
    assert [tuple(row) for row in stored] == [("s0", first_id, 0), ("s1", first_id, 1), ("s2", second.session_id, 0),
                                              ("b1", second.session_id, 1), ("b2", second.session_id, 2)]
    assert raw == {"s0": rows[0], "s1": rows[1], "s2": rows[2], "b1": btc("b1", "5009"), "b2": btc("b2", "5010")}
    # The typed columns come back from the same chunks: session order, then row order;
    # the columns not asked for are null.
    with ledger_engine.connect() as connection:
        loaded = ledger_history.load_executions(connection, columns=("exec_id", "price"))
    assert loaded.select("exec_id", "import_session_id", "price").rows() == [
        ("s0", first_id, 3.25), ("s1", first_id, 3.25), ("s2", second.session_id, 3.25),
        ("b1", second.session_id, 1.0), ("b2", second.session_id, 1.0)]
    assert loaded["line"].null_count() == loaded["account"].null_count() == 5


def test_loading_executions_filters_accounts_and_options_across_sessions(ledger_engine):
    stock = trade(assetCategory="STK", symbol="XYZ", conid="1200", multiplier="1", strike="", expiry="",
                  putCall="", tradePrice="100", quantity="100", buySell="BUY", ibExecID="k1", tradeID="5100",
                  transactionID="txk1", openCloseIndicator="O")
    run_import(ledger_engine, statement(sto("e1", "5001"), stock), "mine.xml")
    run_import(ledger_engine, two_accounts([btc("b1", "5002")], [sto("o1", "5003", accountId=OTHER)]), "both.xml")
    with ledger_engine.connect() as connection:
        everything = ledger_history.load_executions(connection)
        mine = ledger_history.load_executions(connection, [ACCOUNT])
        options = ledger_history.load_executions(connection, [ACCOUNT], options_only=True)
        other = ledger_history.load_executions(connection, [OTHER], options_only=True, columns=("exec_id",))
        nobody = ledger_history.load_executions(connection, ["U0000000"])
    assert everything["exec_id"].to_list() == ["e1", "k1", "b1", "o1"]
    assert mine["exec_id"].to_list() == ["e1", "k1", "b1"]
    assert options["exec_id"].to_list() == ["e1", "b1"]
    assert (other["exec_id"].to_list(), other["account"].to_list()) == (["o1"], [None])
    assert nobody.height == 0 and nobody.schema == everything.schema
    k1 = mine.row(1, named=True)
    assert (k1["asset_category"], k1["put_call"], k1["quantity"], k1["price"], k1["cancelled"]) == (
        "STK", None, 100.0, 100.0, False)
    assert k1["date_time"] == datetime(2026, 11, 20, 9, 35, 10, tzinfo=k1["date_time"].tzinfo)  # New York time
    assert str(k1["date_time"].tzinfo) == "America/New_York"


def test_an_import_restores_the_connections_page_cache(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(engine)
    try:
        with engine.connect() as connection:
            pooled = connection.connection.dbapi_connection
            default = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        run_import(engine, statement(sto("e1", "5001"), btc("b1", "5002")))
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection is pooled  # the connection the import used
            assert connection.exec_driver_sql("PRAGMA cache_size").scalar_one() == default == -2000
    finally:
        engine.dispose()


def test_dry_run_counts_and_writes_nothing(ledger_engine):
    data = statement(sto("e1", "5001"), btc("b1", "5002"), sto("bad", "5003", quantity="x"))
    dry = run_import(ledger_engine, data, dry_run=True)
    assert (dry.session_id, dry.dry_run, dry.total, dry.new, dry.duplicate, dry.errors) == (None, True, 3, 2, 0, 1)
    assert dry.rebuild is None
    assert history_counts(ledger_engine) == (0, 0, 0, 0, 0)
    as_dict = dry.as_dict()  # JSON-ready
    assert as_dict["from_date"] == "2026-11-01" and as_dict["accounts"] == [ACCOUNT]
    assert as_dict["error_rows"] == [[7, "attribute 'quantity': not a number 'x'"]]
    assert (as_dict["new"], as_dict["errors"], as_dict["session_id"], as_dict["dry_run"]) == (2, 1, None, True)

    run_import(ledger_engine, statement(sto("e1", "5001")))
    counted = history_counts(ledger_engine)
    dry_again = run_import(ledger_engine, data, dry_run=True)
    assert (dry_again.new, dry_again.duplicate, dry_again.errors) == (1, 1, 1)
    assert history_counts(ledger_engine) == counted


CANCELLED_STATEMENT = statement(sto("e1.01", "700", price="1.50", order="11"))
# The correction, in a later statement: the TradeCancel (empty tradeID, original in
# origTradeID), the rebook under the same tradeID at 1.55 with an adjusting +0.20, and the BTC.
CORRECTION_STATEMENT = statement(
    sto("e1.99", "", price="1.50", order="11", transactionType="TradeCancel", notes="Ca", buySell="SELL (Ca.)",
        origTradeID="700", commission="0", quantity="2"),
    sto("e1.02", "700", price="1.55", order="11", commission="0.20"),
    btc("b1", "701", price="0.55", when="20261130;110000"),
)


@pytest.mark.parametrize("order", ["in order", "correction first"])
def test_a_correction_in_a_later_statement_cancels_its_original(ledger_engine, order):
    files = [("original.xml", CANCELLED_STATEMENT), ("correction.xml", CORRECTION_STATEMENT)]
    if order == "correction first":
        files.reverse()
    for name, data in files:
        run_import(ledger_engine, data, name)
        if name == "original.xml" and order == "in order":  # alone, the original is an open short
            (life,) = list_lifecycles(ledger_engine)
            assert (life["exit_type"], life["open_exec_ids"], life["gross_pnl"]) == ("open", ["e1.01"], None)
    # Both the cancelled execution and its cancellation are stored raw.
    with ledger_engine.connect() as connection:
        stored = connection.execute(
            select(flex_executions.c.exec_id, flex_executions.c.is_cancellation).order_by(flex_executions.c.exec_id)
        ).all()
    assert stored == [("b1", False), ("e1.01", False), ("e1.02", False), ("e1.99", True)]
    (life,) = list_lifecycles(ledger_engine)
    assert (life["open_exec_ids"], life["close_exec_ids"], life["quantity"]) == (["e1.02"], ["b1"], 2)
    # The rebook's price counts: (1.55 - 0.55) x 2 x 100 = 200. Commissions: the withdrawn
    # booking's 1.30 (cancellation refunded 0) less the rebook's 0.20 adjustment, plus 1.30.
    assert (life["open_price"], life["close_price"], life["gross_pnl"]) == (1.55, 0.55, 200.0)
    assert life["commissions"] == pytest.approx(1.30 - 0.20 + 1.30)
    assert life["net_pnl"] == pytest.approx(200.0 - 2.40)
    assert list_gaps(ledger_engine) == []


def test_account_filter_imports_one_account_and_skips_the_others(ledger_engine):
    data = two_accounts([sto("a1", "1"), btc("a2", "2")],
                        [sto("o1", "3", accountId=OTHER), sto("o2", "4", accountId=OTHER, tradePrice="zz")])
    result = run_import(ledger_engine, data, account=OTHER)
    assert (result.accounts, result.total, result.new, result.skipped, result.errors) == ((OTHER,), 4, 1, 2, 1)
    with ledger_engine.connect() as connection:
        assert connection.execute(select(flex_executions.c.exec_id)).scalars().all() == ["o1"]
        assert connection.execute(select(flex_import_sessions.c.account)).scalar_one() == OTHER
    assert [life["account"] for life in list_lifecycles(ledger_engine)] == [OTHER]

    everything = run_import(ledger_engine, data)
    assert (everything.accounts, everything.new, everything.duplicate, everything.skipped) == (
        (ACCOUNT, OTHER), 2, 1, 0)
    assert sorted(life["account"] for life in list_lifecycles(ledger_engine)) == [ACCOUNT, OTHER]


def test_a_bad_file_or_an_account_it_lacks_is_refused_and_nothing_is_written(ledger_engine, tmp_path):
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(statement(sto("e2", "5002"))[:-40])
    with pytest.raises(InputFileError) as caught:
        read_statement_file(truncated, env={})  # before anything could be imported
    assert caught.value.file == str(truncated)
    with pytest.raises(InputFileError, match=f"mine.xml: the statement has no account {OTHER} .*it has: {ACCOUNT}"):
        run_import(ledger_engine, statement(sto("e1", "5001")), "mine.xml", account=OTHER)
    assert history_counts(ledger_engine) == (0, 0, 0, 0, 0)  # not even a session


def test_a_failure_while_writing_keeps_only_a_failed_session(ledger_engine, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "replace_lifecycles", broken)  # fails after the rows were inserted
    with pytest.raises(RuntimeError, match="disk full"):
        run_import(ledger_engine, statement(sto("e1", "5001")), "doomed.xml", dagster_run_id="run-1")
    assert history_counts(ledger_engine) == (1, 0, 0, 0, 0)
    (session,) = list_import_sessions(ledger_engine)
    assert (session["status"], session["error"], session["file_name"], session["new_count"],
            session["dagster_run_id"]) == ("failed", "RuntimeError: disk full", "doomed.xml", 0, "run-1")


def test_option_events_are_stored_once(ledger_engine):
    option = sto("x.opt", "6100", transactionType="BookTrade", notes="A", price="0", buySell="BUY", quantity="2",
                 openCloseIndicator="C", commission="0", when="20261218;162000")
    events = (
        "<OptionEAE>\n"
        f'<OptionEAE accountId="{ACCOUNT}" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" '
        'conid="812345" underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" '
        'date="20261218" transactionType="Assignment" quantity="2" tradePrice="0" markPrice="0" tradeID="6100" />\n'
        f'<OptionEAE accountId="{ACCOUNT}" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" '
        'conid="812345" date="bad" transactionType="Assignment" quantity="2" tradeID="6100" />\n'
        "</OptionEAE>\n"
    )
    data = statement(sto("e1", "5001"), option, extra=events)
    first = run_import(ledger_engine, data)
    assert (first.option_events_new, first.option_events_duplicate, first.option_events_errors) == (1, 0, 1)
    again = run_import(ledger_engine, data)
    assert (again.option_events_new, again.option_events_duplicate) == (0, 1)
    with ledger_engine.connect() as connection:
        (event,) = connection.execute(select(flex_option_events)).mappings().all()
    assert event["event_key"] == f"{ACCOUNT}|2026-12-18|Assignment|812345|2.0|6100"
    assert (event["event_date"], event["strike"], event["trade_id"]) == (date(2026, 12, 18), 100.0, "6100")
    with ledger_engine.connect() as connection:
        raw = raw_xml_of(connection, event["import_session_id"], "option_event", event["raw_row"])
    assert raw is not None and raw.startswith("<OptionEAE ") and 'tradePrice="0" markPrice="0"' in raw
    (life,) = list_lifecycles(ledger_engine)
    assert (life["exit_type"], life["gross_pnl"], life["confidence"]) == ("assignment", 650.0, 0.85)


# --- reading and fetching statements ------------------------------------------------------------------------

SLASHED = statement(sto("e1", "5001", when="05/11/2026;093000", tradeDate="05/11/2026", expiry="04/12/2026"),
                    dates=("01/11/2026", "12/11/2026", "12/11/2026;180000"))


def test_date_format_comes_from_the_accounts_slot_then_the_default(tmp_path):
    path = tmp_path / "slashed.xml"
    path.write_bytes(SLASHED)
    env = {"IBKR_FLEX_ACCOUNT_2": ACCOUNT, "IBKR_FLEX_DATE_FORMAT_2": "dd/MM/yyyy"}
    data = read_statement_file(path, account=ACCOUNT, env=env)
    row = data.executions.row(0, named=True)
    assert (row["trade_date"], row["expiry"], row["error"]) == (date(2026, 11, 5), date(2026, 12, 4), None)
    # Without a setting the file's dates could be read both ways: refused, never guessed.
    with pytest.raises(InputFileError, match="(?i)ambiguous"):
        read_statement_file(path, account=ACCOUNT, env={})
    us = read_statement_file(path, env={"IBKR_FLEX_DATE_FORMAT": "mm/dd/yyyy"})  # case ignored
    assert us.executions.row(0, named=True)["trade_date"] == date(2026, 5, 11)
    assert date_format_for(OTHER, env=env) == "auto"
    assert date_format_for(ACCOUNT, env={**env, "IBKR_FLEX_DATE_FORMAT": "yyyyMMdd"}) == "dd/MM/yyyy"
    with pytest.raises(ConfigurationError, match="IBKR_FLEX_DATE_FORMAT_2='31.12.2026' is not"):
        date_format_for(ACCOUNT, env={**env, "IBKR_FLEX_DATE_FORMAT_2": "31.12.2026"})


def test_fetch_statement_from_the_loopback_flex_web_service_and_import_it(tmp_path):
    ledger_engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(ledger_engine)
    from trading_pipeline.sim.flex import FlexOptions, StatementKind
    from trading_pipeline.sim.flex_service import FlexServiceGateway, ServedAccount, ServedQuery
    from trading_pipeline_tests.history.test_flex_web import ACCOUNT as SIM_ACCOUNT, TOKEN, SteppedTime, traded_broker

    broker = traded_broker()  # sold one AAPL put
    served = ServedAccount(broker, token=TOKEN, queries=(
        ServedQuery("1002", StatementKind.TRADE_CONFIRMATION, options=FlexOptions(correct_execution=1)),))
    with FlexServiceGateway([served], pending_polls=1) as gateway:
        stepped = SteppedTime()
        label, data = fetch_statement(SIM_ACCOUNT, env=gateway.client_env(), poll_interval=2, timeout=30,
                                      clock=stepped.clock, sleep=stepped.sleep)
    assert label == f"flex_web_service:{SIM_ACCOUNT}:query 1002"
    assert (data.kind, data.accounts, stepped.sleeps) == ("trade_confirmation", (SIM_ACCOUNT,), [2])
    result = import_statement(ledger_engine, data, source="web_service", file_name=label, account=SIM_ACCOUNT,
                              at=AT)
    # The sale, its cancellation and its rebook: all stored; the short put counts once.
    assert (result.total, result.new, result.errors) == (3, 3, 0)
    (life,) = list_lifecycles(ledger_engine)
    assert (life["underlying"], life["side"], life["exit_type"], life["quantity"]) == ("AAPL", "short", "open", 1)
    assert list_import_sessions(ledger_engine)[0]["source"] == "web_service"
    ledger_engine.dispose()


def test_bulk_rows_with_columns_of_one_value_round_trip(ledger_engine):
    """On SQLite a column holding one value throughout is written into the statement once:
    quotes, nulls, floats and times must come back as bound values do."""
    import polars as pl

    from trading_pipeline.ledger.db import write_transaction

    reason = "it's \"odd\"; 'quoted' -- not SQL"
    frame = pl.DataFrame({
        "account": [ACCOUNT] * 3, "underlying": ["XYZ", "XYZ", "ABC"], "right": ["P"] * 3, "strike": [100.5] * 3,
        "expiry": [date(2026, 12, 18)] * 3, "side": ["short"] * 3, "exec_id": ["g1", "g2", "g3"],
        "trade_date": pl.Series([None] * 3, dtype=pl.Date), "quantity": [2] * 3, "exit_type": ["btc"] * 3,
        "reason": [reason] * 3, "built_at": [AT] * 3,
    })
    with write_transaction(ledger_engine) as connection:
        ledger_history.bulk_insert(connection, lifecycle_gaps, frame)
    rows = list_gaps(ledger_engine)
    assert [(r["exec_id"], r["underlying"], r["reason"], r["strike"], r["trade_date"], r["quantity"], r["built_at"],
             r["expiry"]) for r in rows] == [
        (exec_id, underlying, reason, 100.5, None, 2, AT, date(2026, 12, 18))
        for exec_id, underlying in (("g1", "XYZ"), ("g2", "XYZ"), ("g3", "ABC"))]
