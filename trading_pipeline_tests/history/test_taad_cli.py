"""Contract under test: the ``tp taad-*`` commands (trading_pipeline.cli.taad_commands) on a
hand-built Flex statement, with a real ledger and Dagster instance under a temporary home.

- ``taad-import -a A -f FILE`` runs ``import_trade_history_job`` (recorded in the instance)
  and prints the counts; a re-import adds nothing; ``--dry-run`` writes nothing (no session,
  no lifecycles; the run observes the asset and skips the rebuild); a bad file exits 1 with
  the file, line and reason, before any run or write.
- ``taad-report`` lists lifecycles: JSON carries the issue's fields with hand-computed
  values; ``--symbol``, ``--sort pnl``, csv; the table has totals.
- ``taad-status`` and ``taad-gaps`` read the ledger (a closing without its opening is a gap,
  listed with its date, symbol and execution id).
- ``taad-promote [--dry-run]`` and ``taad-enrich [--limit N]`` run their jobs and print
  their counts; a dry run promotes nothing; enrichment takes only what is still missing.

The statement (account U1111111): XYZ 100P 2026-12-18 sold 2 at 3.25 on 2026-11-20 (commission
1.30) and bought back at 1.05 on 2026-12-01 (1.30): gross (3.25 - 1.05) x 100 x 2 = 440.00,
commissions 2.60, net 437.40, confidence 1.0. ABC 50P 2026-11-27 sold 1 at 1.10 (1.00), expired
(BookTrade Ep at 16:20): gross 110.00, net 109.00, confidence 0.95. QRS 40P bought back (3)
on 2026-11-24 without its opening in the statement: a gap.
"""

from __future__ import annotations

import csv
import io
import json
import re

import dagster as dg
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from trading_pipeline.cli.main import app
from trading_pipeline.ledger import make_engine
from trading_pipeline.ledger.schema import (
    entry_snapshots,
    exit_snapshots,
    flex_executions,
    flex_import_sessions,
    trade_lifecycles,
    trades,
)
from trading_pipeline_tests.history.test_flex_parser import statement, trade

ACCOUNT = "U1111111"

# ##### FIXTURES

STO_XYZ = trade()
BTC_XYZ = trade(tradeID="5002", dateTime="20261201;101500", tradeDate="20261201", quantity="2", tradePrice="1.05",
                openCloseIndicator="C", transactionID="9002", buySell="BUY", ibOrderID="7002",
                ibExecID="0000e1.0002.01.01")
ABC = dict(symbol="ABC   261127P00050000", description="ABC 27NOV26 50 P", conid="822222", underlyingSymbol="ABC",
           strike="50", expiry="20261127")
STO_ABC = trade(**ABC, tradeID="5003", dateTime="20261120;100000", quantity="-1", tradePrice="1.1", ibCommission="-1",
                transactionID="9003", ibOrderID="7003", ibExecID="0000e1.0003.01.01")
EXPIRED_ABC = trade(**ABC, tradeID="5004", dateTime="20261127;162000", tradeDate="20261127", transactionType="BookTrade",
                    quantity="1", tradePrice="0", ibCommission="0", openCloseIndicator="C", notes="Ep",
                    transactionID="9004", buySell="BUY", ibOrderID="9004", ibExecID="")
# A buy to close whose opening is before the statement's window: a gap, not dropped.
LONE_BTC_QRS = trade(symbol="QRS   261218P00040000", description="QRS 18DEC26 40 P", conid="833333",
                     underlyingSymbol="QRS", strike="40", tradeID="5005", dateTime="20261124;110000",
                     tradeDate="20261124", quantity="3", tradePrice="0.2", openCloseIndicator="C",
                     transactionID="9005", buySell="BUY", ibOrderID="7005", ibExecID="0000e1.0005.01.01")
DATES = ("20261101", "20261201", "20261201;180000")


@pytest.fixture
def home(isolated_home):
    return isolated_home


@pytest.fixture
def statement_file(tmp_path):
    path = tmp_path / "activity.xml"
    path.write_bytes(statement(STO_XYZ, BTC_XYZ, STO_ABC, EXPIRED_ABC, LONE_BTC_QRS, dates=DATES))
    return path


def tp(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def ledger(home):
    return make_engine(f"sqlite:///{home / 'data' / 'ledger.sqlite'}")


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def runs(home):
    with dg.DagsterInstance.get() as instance:
        return instance.get_runs()


def report(*args: str) -> list[dict]:
    result = tp("taad-report", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ##### TESTS


def test_import_then_report_with_hand_computed_lifecycles(home, statement_file):
    result = tp("taad-import", "--account", ACCOUNT, "-f", str(statement_file))
    assert result.exit_code == 0, result.output
    assert "Import session 1" in result.stdout
    assert "│     5 │   5 │         0 │       0 │      0 │" in result.stdout  # total, new, duplicate, skipped, errors
    assert "Lifecycles rebuilt: 2 (2 closed, 0 open), 1 gap(s); net P&L USD 546.40" in result.stdout
    [run] = runs(home)
    assert run.job_name == "import_trade_history_job" and run.tags["trading/source"] == "cli"

    rows = report()
    assert [row["underlying"] for row in rows] == ["ABC", "XYZ"]  # by opening date, then id
    xyz = rows[1]
    assert {k: xyz[k] for k in ("account", "underlying", "right", "strike", "expiry", "side", "quantity",
                                "open_price", "close_price", "exit_type", "open_date", "close_date")} == {
        "account": ACCOUNT, "underlying": "XYZ", "right": "P", "strike": 100.0, "expiry": "2026-12-18",
        "side": "short", "quantity": 2, "open_price": 3.25, "close_price": 1.05, "exit_type": "btc",
        "open_date": "2026-11-20", "close_date": "2026-12-01"}
    assert (xyz["gross_pnl"], xyz["commissions"], xyz["net_pnl"], xyz["confidence"]) == pytest.approx(
        (440.0, 2.6, 437.4, 1.0))
    abc = rows[0]
    assert (abc["exit_type"], abc["close_price"], abc["close_date"], abc["gross_pnl"], abc["net_pnl"],
            abc["confidence"]) == ("expiration", 0.0, "2026-11-27", pytest.approx(110.0), pytest.approx(109.0),
                                   pytest.approx(0.95))

    assert [row["underlying"] for row in report("--sort", "pnl")] == ["ABC", "XYZ"]  # worst net P&L first
    only = tp("taad-report", "--symbol", "xyz", "--format", "csv")
    [line] = list(csv.DictReader(io.StringIO(only.stdout)))
    assert (line["underlying"], line["net_pnl"]) == ("XYZ", "437.4")
    table = tp("taad-report").stdout
    assert "Total USD" in table and "546.40" in table and "Win rate" in table and "100.0 %" in table

    status = tp("taad-status")
    assert status.exit_code == 0, status.output
    assert "activity.xml" in status.stdout and "completed" in status.stdout
    assert "2 (2 closed, 0 open)" in status.stdout and "0 (2 closed not promoted yet)" in status.stdout
    gaps = tp("taad-gaps")
    assert gaps.exit_code == 0, gaps.output
    assert "Session 1: 2026-11-01 to 2026-12-01 (31 days), 5 records" in gaps.stdout
    assert "2026-11-24" in gaps.stdout and "QRS" in gaps.stdout and "0000e1.0005.01.01" in gaps.stdout
    assert "Average confidence: 0.97" in gaps.stdout  # (1.0 + 0.95) / 2

    again = tp("taad-import", "-a", ACCOUNT, "-f", str(statement_file))
    assert "│     5 │   0 │         5 │       0 │      0 │" in again.stdout
    assert count(ledger(home), flex_executions) == 5 and count(ledger(home), flex_import_sessions) == 2


def test_dry_run_counts_and_writes_nothing(home, statement_file):
    result = tp("taad-import", "-a", ACCOUNT, "-f", str(statement_file), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run (nothing written)" in result.stdout and "│     5 │   5 │" in result.stdout
    engine = ledger(home)
    assert (count(engine, flex_import_sessions), count(engine, flex_executions), count(engine, trade_lifecycles)) == (
        0, 0, 0)
    [run] = runs(home)
    assert run.tags["trading/dry_run"] == "true"
    with dg.DagsterInstance.get() as instance:
        materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        observed = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
        skipped = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_SKIPPED)
    assert not materialized.records and len(observed.records) == 1
    assert [r.event_log_entry.step_key for r in skipped.records] == ["trade_lifecycles"]


def test_a_bad_file_exits_1_naming_file_and_line_and_changes_nothing(home, tmp_path):
    bad = tmp_path / "truncated.xml"
    bad.write_bytes(statement(STO_XYZ, BTC_XYZ, dates=DATES)[:-60])
    result = tp("taad-import", "-a", ACCOUNT, "-f", str(bad))
    assert result.exit_code == 1
    assert "truncated.xml" in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.output
    assert runs(home) == []
    missing = tp("taad-import", "-a", ACCOUNT, "-f", str(tmp_path / "nowhere.xml"))
    assert missing.exit_code == 1 and "file not found" in missing.stderr


def test_promote_then_enrich_are_runs_and_idempotent(home, statement_file):
    assert tp("taad-import", "-a", ACCOUNT, "-f", str(statement_file)).exit_code == 0
    engine = ledger(home)
    preview = tp("taad-promote", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "dry run" in preview.stdout and "Would promote" in preview.stdout and count(engine, trades) == 0
    promoted = tp("taad-promote", "--account", ACCOUNT)
    assert re.search(r"│ Promoted +│ 2 │", promoted.stdout), promoted.stdout
    assert count(engine, trades) == 2
    assert {row["promoted_trade_id"] is not None for row in report()} == {True}

    first = tp("taad-enrich", "--limit", "1")
    assert first.exit_code == 0, first.output
    assert "Enriched 1 of 1 trade(s) missing snapshots (2 promoted)" in first.stdout
    assert "1 entry, 1 exit snapshot(s); 2 partial" in first.stdout  # from the trades alone: no market
    assert count(engine, entry_snapshots) == 1 and count(engine, exit_snapshots) == 1
    assert [r.job_name for r in reversed(runs(home))] == [
        "import_trade_history_job", "promote_trades_job", "promote_trades_job", "enrich_trades_job"]
