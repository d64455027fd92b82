"""Contract under test: the trade-history Dagster definitions (trading_pipeline.defs.history).

- ``flex_inbox_sensor``: one import run per new or changed *.xml in TP_FLEX_INBOX (the file's
  path in the run config), cursor by name -> mtime:size, files still being written wait,
  other files are ignored, a missing folder is a skip naming it.
- ``daily_flex_import_schedule``: 06:00 New York; a weekend or holiday is a skip naming the
  day and why; no configured Flex account is a skip naming the variables; an incomplete
  account a skip with the configuration error (never a token); otherwise one run per
  account with a run key naming the previous session.
- The assets as jobs: an import run materializes ``flex_raw_imports`` (counts, session id)
  and ``trade_lifecycles`` (counts by exit type, net P&L per currency); a dry run is an
  observation and the rebuild is skipped; promotion and enrichment runs report their counts
  (these run in test_taad_cli.py and test_web_service_import.py); here, the enrichment run
  with the broker (daily bars from the simulator's TWS through the IBKR adapter).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import dagster as dg
import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.definitions import defs as build_defs
from trading_pipeline.defs.history.config import IMPORT_ASSET, import_run_config
from trading_pipeline.defs.history.schedules import daily_flex_import_schedule, plan_daily_import
from trading_pipeline.defs.history.sensors import flex_inbox_sensor
from trading_pipeline_tests.sim.conftest import sim_gateway  # noqa: F401 (fixture)

TOKEN = "8675309112233445566778"

# ##### FIXTURES


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    folder = tmp_path / "flex"
    monkeypatch.setenv("TP_FLEX_INBOX", str(folder))
    return folder


def drop(folder, name, *, age_seconds=60.0, text="<FlexQueryResponse/>"):
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_text(text)
    past = time.time() - age_seconds
    os.utime(target, (past, past))
    return target


_DEFS = []


def code_location() -> dg.Definitions:
    """The code location, loaded once for the module (loading takes seconds)."""
    if not _DEFS:
        _DEFS.append(build_defs())
    return _DEFS[0]


def tick(cursor=None):
    """One evaluation (the sensor reads no instance: it only lists the folder)."""
    context = dg.build_sensor_context(cursor=cursor, definitions=code_location())
    result = flex_inbox_sensor(context)
    if isinstance(result, dg.SkipReason):
        return dg.SensorResult(skip_reason=result)
    flex_inbox_sensor.evaluate_tick(context)  # the requests resolve against the job
    return result


def new_york(*args) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def account_env(*slots: int) -> dict[str, str]:
    env = {}
    for slot in slots:
        env[f"IBKR_FLEX_TOKEN_{slot}"] = f"{TOKEN}{slot}"
        env[f"IBKR_FLEX_QUERY_ID_{slot}"] = f"10{slot}"
        env[f"IBKR_FLEX_ACCOUNT_{slot}"] = f"U100000{slot}"
    return env


# ##### TESTS: the sensor


def test_a_missing_inbox_is_a_skip_that_names_the_folder(inbox):
    result = tick()
    assert not result.run_requests
    assert str(inbox) in result.skip_reason.skip_message and "does not exist" in result.skip_reason.skip_message


def test_each_new_statement_gets_one_run_with_its_path_and_the_same_file_is_not_imported_twice(inbox):
    first = drop(inbox, "activity 2026-11.xml")
    drop(inbox, "notes.txt")  # not a Flex statement: ignored
    drop(inbox, ".partial.xml")  # hidden: ignored
    result = tick()
    [request] = result.run_requests
    assert request.run_config == import_run_config(path=str(first))
    assert request.tags["trading/source"] == "inbox"
    cursor = json.loads(result.cursor)
    assert list(cursor) == ["activity 2026-11.xml"]

    again = tick(result.cursor)
    assert not again.run_requests
    assert "1 Flex file(s), none new or changed" in again.skip_reason.skip_message

    # Changed (new size and time): imported again; the import itself skips what it has.
    drop(inbox, "activity 2026-11.xml", text="<FlexQueryResponse>more</FlexQueryResponse>", age_seconds=30)
    changed = tick(result.cursor)
    assert len(changed.run_requests) == 1 and changed.run_requests[0].run_key != request.run_key


def test_a_file_still_being_written_waits_for_a_later_tick(inbox):
    drop(inbox, "settled.xml")
    growing = drop(inbox, "growing.xml", age_seconds=0.0)
    result = tick()
    assert [r.run_config["ops"][IMPORT_ASSET]["config"]["path"] for r in result.run_requests] == [
        str(inbox / "settled.xml")]
    assert "growing.xml" not in json.loads(result.cursor)
    with growing.open("a") as still_writing:
        still_writing.write("<!-- more -->")
    later = tick(result.cursor)
    assert "1 still being written" in later.skip_reason.skip_message


# ##### TESTS: the schedule


def test_weekends_and_holidays_are_skipped_with_the_reason():
    env = account_env(1)
    saturday = plan_daily_import(new_york(2026, 11, 28, 6), env)
    assert isinstance(saturday, dg.SkipReason)
    assert "Saturday 2026-11-28 is not an NYSE session (weekend)" in saturday.skip_message
    thanksgiving = plan_daily_import(new_york(2026, 11, 26, 6), env)
    assert "2026-11-26 is not an NYSE session (holiday: Thanksgiving" in thanksgiving.skip_message


def test_no_account_configured_names_the_variables():
    skip = plan_daily_import(new_york(2026, 11, 30, 6), {})
    assert isinstance(skip, dg.SkipReason)
    for variable in ("IBKR_FLEX_TOKEN_1", "IBKR_FLEX_QUERY_ID_1", "IBKR_FLEX_ACCOUNT_1"):
        assert variable in skip.skip_message


def test_an_incomplete_account_is_a_skip_without_the_token():
    env = account_env(1)
    del env["IBKR_FLEX_QUERY_ID_1"]
    skip = plan_daily_import(new_york(2026, 11, 30, 6), env)
    assert "IBKR_FLEX_QUERY_ID_1" in skip.skip_message and TOKEN not in skip.skip_message


def test_one_run_per_configured_account_for_the_previous_session():
    # Monday 2026-11-30: the previous session is the Friday after Thanksgiving, 2026-11-27.
    requests = plan_daily_import(new_york(2026, 11, 30, 6), account_env(1, 3))
    assert [r.run_key for r in requests] == ["flex-web:U1000001:2026-11-27", "flex-web:U1000003:2026-11-27"]
    assert requests[1].run_config == import_run_config(account="U1000003")
    assert all(TOKEN not in json.dumps(r.run_config) + json.dumps(r.tags) for r in requests)


def test_the_schedule_definition_evaluates_at_six_new_york(monkeypatch):
    for name, value in account_env(2).items():
        monkeypatch.setenv(name, value)
    assert daily_flex_import_schedule.cron_schedule == "0 6 * * *"
    assert daily_flex_import_schedule.execution_timezone == "America/New_York"
    context = dg.build_schedule_context(scheduled_execution_time=new_york(2026, 12, 1, 6))
    result = daily_flex_import_schedule.evaluate_tick(context)
    [request] = result.run_requests
    assert request.run_key == "flex-web:U1000002:2026-11-30"
    job = code_location().resolve_job_def("import_trade_history_job")
    assert dg.validate_run_config(job, request.run_config)


def test_the_domain_in_the_code_location():
    defs = code_location()
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"flex_raw_imports", "trade_lifecycles", "promoted_trades", "enriched_trades"} <= keys
    jobs = {job.name: job for job in repo.get_all_jobs()}
    assert {"import_trade_history_job", "promote_trades_job", "enrich_trades_job"} <= set(jobs)
    assert {n.name for n in jobs["import_trade_history_job"].graph.node_defs} == {"flex_raw_imports",
                                                                                    "trade_lifecycles"}
    sensors = {s.name: s for s in repo.sensor_defs}
    schedules = {s.name: s for s in repo.schedule_defs}
    # Both only import (idempotent) and never trade: they may run by default.
    assert sensors["flex_inbox_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert schedules["daily_flex_import_schedule"].default_status == dg.DefaultScheduleStatus.RUNNING


def test_the_enrich_job_reads_daily_bars_from_the_broker(sim_gateway, tmp_path, monkeypatch):  # noqa: F811
    """``enriched_trades`` with ``with_ibkr`` connects with the IBKR_* settings (here the
    simulator's TWS), enriches the promoted trade and disconnects."""
    from trading_pipeline.defs.history.config import enrich_run_config
    from trading_pipeline.ledger import make_engine, migrate
    from trading_pipeline.ledger.snapshots import get_entry_snapshot, get_exit_snapshot
    from trading_pipeline_tests.history.test_enrichment import promoted

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    for name, value in {"TP_LEDGER_URL": url, "IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(sim_gateway.port),
                        "IBKR_CLIENT_ID": "1", "IBKR_ACCOUNT": "", "IBKR_MAX_MESSAGES_PER_SECOND": "0"}.items():
        monkeypatch.setenv(name, value)
    engine = make_engine(url)
    migrate(engine)
    trade = promoted(engine, strike=250.0, entry_price=3.0, exit_price=1.2,
                     entry=new_york(2026, 11, 18, 10), exit_=new_york(2026, 11, 20, 15))
    with dg.instance_for_test() as instance:
        result = code_location().resolve_job_def("enrich_trades_job").execute_in_process(
            run_config=enrich_run_config(with_ibkr=True), instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node("enriched_trades")[0].metadata
    assert metadata["statuses"].value == {"enriched": 2} and metadata["problems"].value == 0
    assert get_entry_snapshot(engine, trade.id).fields["stock_price"] > 0
    assert get_exit_snapshot(engine, trade.id).status == "enriched"
    deadline = time.monotonic() + 5  # the simulator notices the closed socket on its own thread
    while sim_gateway.connected_client_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim_gateway.connected_client_ids() == []  # the run disconnected
