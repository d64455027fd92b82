"""The Barchart inbox sensor: one run per new or changed export, cursor-driven, with skip
reasons that say what was checked."""

import json
import os
import shutil
import time

import dagster as dg
import pytest

from trading_pipeline import settings
from trading_pipeline.definitions import defs as build_defs
from trading_pipeline.defs.scans.sensors import InboxFile, barchart_export_sensor, plan_inbox

# ##### FIXTURES


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    folder = tmp_path / "inbox"
    monkeypatch.setenv("TP_BARCHART_INBOX", str(folder))
    return folder


def _drop(folder, name, *, age_seconds=60.0):
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    shutil.copyfile(settings.sample_export_path(), target)
    past = time.time() - age_seconds
    os.utime(target, (past, past))
    return target


def _tick(instance, cursor=None):
    """One evaluation, as the daemon does it: partitions added first, then runs resolved."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=build_defs())
    result = barchart_export_sensor(context)
    if isinstance(result, dg.SkipReason):
        return dg.SensorResult(skip_reason=result)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    # evaluate_tick resolves each RunRequest against the job (partition key must exist now).
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        barchart_export_sensor.evaluate_tick(context)
    return result


# ##### TESTS


def test_missing_inbox_skips_and_says_where(inbox):
    with dg.instance_for_test() as instance:
        result = _tick(instance)
    assert not result.run_requests
    assert str(inbox) in result.skip_reason.skip_message and "does not exist" in result.skip_reason.skip_message


def test_new_files_each_get_a_partition_and_a_run(inbox):
    _drop(inbox, "screener 08-28-2025.csv")
    _drop(inbox, "other.csv")
    (inbox / "notes.txt").write_text("not an export")
    with dg.instance_for_test() as instance:
        result = _tick(instance)
    keys = sorted(r.partition_key for r in result.run_requests)
    assert keys == ["other.csv", "screener_08-28-2025.csv"]
    [add] = result.dynamic_partitions_requests
    assert sorted(add.partition_keys) == keys
    config = {r.partition_key: r.run_config for r in result.run_requests}
    assert config["other.csv"]["ops"]["barchart_candidates"]["config"]["source_path"] == str(inbox / "other.csv")
    assert set(json.loads(result.cursor)) == {"screener 08-28-2025.csv", "other.csv"}


def test_second_tick_skips_until_a_file_changes(inbox):
    path = _drop(inbox, "a.csv")
    with dg.instance_for_test() as instance:
        first = _tick(instance)
        second = _tick(instance, cursor=first.cursor)
        assert not second.run_requests
        assert "1 CSV file(s), none new or changed" in second.skip_reason.skip_message
        path.write_text(path.read_text() + "\n")
        later = time.time() - 30
        os.utime(path, (later, later))
        third = _tick(instance, cursor=first.cursor)
    assert [r.partition_key for r in third.run_requests] == ["a.csv"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key


def test_file_still_being_written_waits_for_a_later_tick(inbox):
    # Modified "just now" as the sensor sees it (a little ahead, so building the test's
    # definitions, which takes seconds, cannot let the file settle first).
    _drop(inbox, "fresh.csv", age_seconds=-10.0)
    with dg.instance_for_test() as instance:
        result = _tick(instance)
    assert not result.run_requests
    assert "1 still being written" in result.skip_reason.skip_message


def test_plan_is_pure_and_ordered_by_modification_time():
    files = [InboxFile("b.csv", 2_000_000_000, 10), InboxFile("a.csv", 1_000_000_000, 10)]
    plan = plan_inbox(files, {"a.csv": "1000000000:10"}, now_ns=10_000_000_000)
    assert [f.name for f in plan.new_files] == ["b.csv"]
    assert plan.cursor == {"a.csv": "1000000000:10", "b.csv": "2000000000:10"}
