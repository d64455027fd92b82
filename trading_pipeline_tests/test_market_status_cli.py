"""Contract: ``tp market-status [--at WHEN] [--format table|json]``.

- Prints OPEN or CLOSED (with the reason), today's session, the next open and next close in
  New York time with UTC beside it, flags early closes, and lists early closes in the next
  30 days; exits 0 whether the market is open or closed.
- ``--at`` without an offset is New York wall-clock time; with an offset it is that instant.
- ``--format json`` prints one JSON object with ISO instants in both zones.
- A malformed or out-of-range ``--at`` exits 2 with a one-line error, no traceback.

Expected times are worked out by hand (EST = UTC-5, EDT = UTC-4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest
from typer.testing import CliRunner

from trading_pipeline.cli.main import app


def run_tp(*args: str):
    return CliRunner().invoke(app, list(args))


def test_an_open_moment():
    result = run_tp("market-status", "--at", "2026-11-24 10:00")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "NYSE OPEN" in out
    assert "CLOSED" not in out
    assert "Tue 2026-11-24 10:00 EST (15:00 UTC)" in out
    assert "2026-11-24 09:30-16:00 New York" in out
    assert "next open     Wed 2026-11-25 09:30 EST (14:30 UTC)" in out
    assert "next close    Tue 2026-11-24 16:00 EST (21:00 UTC)" in out
    # Black Friday and Christmas Eve are both within 30 days.
    assert "Fri 2026-11-27 13:00 EST (18:00 UTC)" in out
    assert "Thu 2026-12-24 13:00 EST (18:00 UTC)" in out


def test_a_holiday():
    result = run_tp("market-status", "--at", "2026-11-26 10:00")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "NYSE CLOSED (holiday: Thanksgiving)" in out
    assert "session       none today" in out
    assert "next open     Fri 2026-11-27 09:30 EST (14:30 UTC)" in out
    # The next close is Black Friday's early close, and it is flagged.
    assert "next close    Fri 2026-11-27 13:00 EST (18:00 UTC)  early close" in out


def test_a_weekend():
    result = run_tp("market-status", "--at", "2026-11-28 12:00")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "NYSE CLOSED (weekend)" in out
    assert "next open     Mon 2026-11-30 09:30 EST (14:30 UTC)" in out
    assert "next close    Mon 2026-11-30 16:00 EST (21:00 UTC)" in out
    next_close_line = next(line for line in out.splitlines() if line.startswith("next close"))
    assert "early close" not in next_close_line  # Monday is a full day
    assert "2026-11-27" not in out  # Black Friday is past


def test_an_early_close_day():
    result = run_tp("market-status", "--at", "2026-11-27 10:00")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "NYSE OPEN" in out
    assert "2026-11-27 09:30-13:00 New York  early close" in out
    assert "next close    Fri 2026-11-27 13:00 EST (18:00 UTC)  early close" in out
    assert "next open     Mon 2026-11-30 09:30 EST (14:30 UTC)" in out


def test_after_the_early_close():
    result = run_tp("market-status", "--at", "2026-11-27 13:00")
    assert result.exit_code == 0, result.output
    assert "NYSE CLOSED (after the close)" in result.output


def test_summer_time_moment_given_with_a_utc_offset():
    # 13:30 UTC on 2026-07-06 is 09:30 EDT, the first instant of the session.
    result = run_tp("market-status", "--at", "2026-07-06T13:30:00+00:00")
    assert result.exit_code == 0, result.output
    assert "NYSE OPEN" in result.output
    assert "Mon 2026-07-06 09:30 EDT (13:30 UTC)" in result.output


def test_json_output_for_an_early_close_day():
    result = run_tp("market-status", "--at", "2026-11-27T15:00:00Z", "--format", "json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status == {
        "now": {"utc": "2026-11-27T15:00:00+00:00", "new_york": "2026-11-27T10:00:00-05:00"},
        "is_open": True,
        "reason": None,
        "session": "2026-11-27",
        "session_open": {"utc": "2026-11-27T14:30:00+00:00", "new_york": "2026-11-27T09:30:00-05:00"},
        "session_close": {"utc": "2026-11-27T18:00:00+00:00", "new_york": "2026-11-27T13:00:00-05:00"},
        "is_early_close": True,
        "next_open": {"utc": "2026-11-30T14:30:00+00:00", "new_york": "2026-11-30T09:30:00-05:00"},
        "next_close": {"utc": "2026-11-27T18:00:00+00:00", "new_york": "2026-11-27T13:00:00-05:00"},
        "next_close_is_early": True,
        "upcoming_early_closes": [
            {
                "date": "2026-11-27",
                "close": {"utc": "2026-11-27T18:00:00+00:00", "new_york": "2026-11-27T13:00:00-05:00"},
            },
            {
                "date": "2026-12-24",
                "close": {"utc": "2026-12-24T18:00:00+00:00", "new_york": "2026-12-24T13:00:00-05:00"},
            },
        ],
    }


def test_json_output_on_a_holiday():
    status = json.loads(run_tp("market-status", "--at", "2026-07-03 11:00", "--format", "json").output)
    assert status["is_open"] is False
    assert status["reason"] == "holiday: July 4th"
    assert status["session"] is None and status["session_open"] is None
    assert status["next_open"]["new_york"] == "2026-07-06T09:30:00-04:00"
    assert status["upcoming_early_closes"] == []


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("next tuesday", "is not a date-time"),
        ("2026-13-01 10:00", "is not a date-time"),
        ("2040-01-02 10:00", "outside the calendar's range"),
    ],
)
def test_a_bad_at_is_a_clear_error(at, message):
    result = run_tp("market-status", "--at", at)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_installed_command_uses_the_system_clock_without_at():
    # The real console script in a fresh process: whatever the moment, it answers and exits 0.
    tp = os.path.join(os.path.dirname(sys.executable), "tp")
    if not os.path.exists(tp):
        pytest.skip("the tp console script is not installed next to this Python")
    completed = subprocess.run(
        [tp, "market-status", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    status = json.loads(completed.stdout)
    assert isinstance(status["is_open"], bool)
    assert (status["reason"] is None) == status["is_open"]
    now = datetime.fromisoformat(status["now"]["utc"])
    assert datetime.fromisoformat(status["next_open"]["utc"]) > now
    assert datetime.fromisoformat(status["next_close"]["utc"]) > now
