"""Contract of the ledger commands (tp init, status, version, db-reset), on SQLite and PostgreSQL.

- init creates or migrates the ledger and says which; repeating it changes nothing;
- status shows the (redacted) URL, revision against head, row counts and latest scans,
  creates nothing when the ledger does not exist yet, and renders sections others register;
- version names the package, Python and the libraries with their installed versions;
- db-reset never resets without a yes: with no terminal and no --yes it refuses and changes
  nothing; asked on a terminal it resets on "y" only; --yes resets;
- the ledger comes from --ledger-url, else TP_LEDGER_URL, else <home>/data/ledger.sqlite;
- a password in the URL is never printed, even when the connection fails; errors are one
  line, never a traceback.
"""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import time
from importlib import metadata as package_metadata

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import trading_pipeline
from trading_pipeline.cli import ledger_commands
from trading_pipeline.cli.app import app, console
from trading_pipeline.ledger import (
    current_revision, get_scan, head_revision, make_engine, migrate, replace_scan, table_counts,
)
from trading_pipeline_tests.test_ledger import scan_record, scored_frame

PASSWORD = "pw-never-printed-7531"

runner = CliRunner()


HEAD = head_revision()


def scan_table_counts(engine) -> dict[str, int]:
    counts = table_counts(engine)
    return {name: counts[name] for name in ("scan_imports", "scan_candidates")}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables 200 columns wide, so no cell a test reads is folded.

    The width is set on the shared console itself (restored afterwards): rich reads
    COLUMNS only once when the console is created, which may be before this test runs.
    """
    monkeypatch.setattr(console, "_width", 200)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def with_password(url: str) -> str:
    """The URL with a password added where the backend has one (PostgreSQL: trust auth
    accepts any password, so the command still connects)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False)


def shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def ledger_with_one_scan(url: str) -> int:
    engine = make_engine(url)
    try:
        migrate(engine)
        return replace_scan(engine, scan_record(), scored_frame())
    finally:
        engine.dispose()


def counts_of(url: str) -> dict[str, int]:
    """Row counts of the scan tables (the ones these tests fill)."""
    engine = make_engine(url)
    try:
        return scan_table_counts(engine)
    finally:
        engine.dispose()


def assert_no_password(result) -> None:
    assert PASSWORD not in result.stdout
    assert PASSWORD not in result.stderr


# --- init ------------------------------------------------------------------------------


def test_init_creates_then_reports_the_ledger_already_at_head(ledger_url):
    url = with_password(ledger_url)

    first = invoke("init", "--ledger-url", url)
    again = invoke("init", "--ledger-url", url)

    assert first.exit_code == 0, first.output
    assert f"Ledger    {shown_url(url)}" in first.stdout
    assert f"created at revision {HEAD}" in first.stdout
    assert again.exit_code == 0, again.output
    assert f"already at revision {HEAD} (newest)" in again.stdout
    assert_no_password(first)
    assert_no_password(again)


def test_init_without_options_uses_the_embedded_default_under_home(isolated_home):
    result = invoke("init")

    assert result.exit_code == 0, result.output
    database = isolated_home / "data" / "ledger.sqlite"
    assert database.is_file()
    assert f"sqlite:///{database}" in result.stdout


def test_ledger_url_option_wins_over_the_environment(isolated_home, tmp_path, monkeypatch):
    from_environment = tmp_path / "environment.sqlite"
    from_option = tmp_path / "option.sqlite"
    monkeypatch.setenv("TP_LEDGER_URL", f"sqlite:///{from_environment}")

    assert invoke("init", "--ledger-url", f"sqlite:///{from_option}").exit_code == 0
    assert from_option.is_file() and not from_environment.exists()

    assert invoke("init").exit_code == 0
    assert from_environment.is_file()
    assert not (isolated_home / "data" / "ledger.sqlite").exists()


def test_brackets_in_names_and_urls_are_printed_literally_not_as_markup(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = make_engine(url)
    try:
        migrate(engine)
        replace_scan(engine, scan_record("[red]screener[/red].csv"), scored_frame())
    finally:
        engine.dispose()

    status = invoke("status", "--ledger-url", url)
    ipv6 = invoke("status", "--ledger-url", f"postgresql://trader:{PASSWORD}@[::1]:{closed_port()}/ledger")

    assert "[red]screener[/red].csv" in status.stdout
    assert "postgresql://trader:***@[::1]:" in ipv6.stderr
    assert_no_password(ipv6)


# --- status ----------------------------------------------------------------------------


def test_status_shows_revision_counts_and_latest_scans(ledger_url):
    url = with_password(ledger_url)
    scan_id = ledger_with_one_scan(url)

    result = invoke("status", "--ledger-url", url)

    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert f"Ledger {shown_url(url)}" in lines
    assert f"Revision {HEAD} (newest)" in lines
    assert "scan_imports 1" in lines
    assert "scan_candidates 5" in lines
    # id, partition, export date, rows, valid, invalid, selected, imported (UTC)
    assert f"{scan_id} 2026-11-20_screener.csv 2026-11-20 5 4 1 2 2026-11-20 21:50:00" in lines
    assert_no_password(result)


def test_status_of_a_missing_sqlite_ledger_creates_nothing(tmp_path):
    database = tmp_path / "not_yet" / "ledger.sqlite"

    result = invoke("status", "--ledger-url", f"sqlite:///{database}")

    assert result.exit_code == 0, result.output
    assert "not initialized" in result.stdout and "tp init" in result.stdout
    assert not database.parent.exists()


def test_status_of_an_empty_database_says_not_initialized(ledger_url):
    engine = make_engine(ledger_url)
    with engine.connect():  # the database exists (SQLite: an empty file), without tables
        pass
    engine.dispose()

    result = invoke("status", "--ledger-url", ledger_url)

    assert result.exit_code == 0, result.output
    assert f"not initialized (newest is {HEAD}): run `tp init`" in result.stdout
    assert "scan_imports" not in result.stdout  # sections need the tables


def test_status_renders_sections_registered_by_other_features(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger_with_one_scan(url)
    monkeypatch.setattr(ledger_commands, "STATUS_SECTIONS", list(ledger_commands.STATUS_SECTIONS))

    @ledger_commands.status_section
    def risk_governor(context):
        return f"Risk governor: halted=no (ledger revision {context.revision})"

    @ledger_commands.status_section
    def nothing_to_say(context):
        return None

    result = invoke("status", "--ledger-url", url)

    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(f"Risk governor: halted=no (ledger revision {HEAD})")
    assert "scan_candidates" in result.stdout  # the built-in sections are still there


# --- version ---------------------------------------------------------------------------


def test_version_names_package_python_and_libraries():
    result = invoke("version")

    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert f"trading_pipeline {trading_pipeline.__version__}" in lines
    assert f"Python {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" in lines
    for distribution in ("dagster", "ib_async", "polars", "duckdb", "SQLAlchemy"):
        assert f"{distribution} {package_metadata.version(distribution)}" in lines
    assert f"ledger schema {HEAD}" in lines


# --- db-reset --------------------------------------------------------------------------


def test_db_reset_without_yes_and_without_a_terminal_refuses_and_changes_nothing(ledger_url):
    url = with_password(ledger_url)
    scan_id = ledger_with_one_scan(url)

    result = invoke("db-reset", "--ledger-url", url)  # CliRunner's stdin is not a terminal

    assert result.exit_code == 1
    assert "no terminal to confirm on; pass --yes" in result.stderr
    assert counts_of(url) == {"scan_imports": 1, "scan_candidates": 5}
    engine = make_engine(url)
    try:
        assert get_scan(engine)["id"] == scan_id
    finally:
        engine.dispose()
    assert_no_password(result)


def test_db_reset_with_yes_empties_the_ledger_at_head(ledger_url):
    url = with_password(ledger_url)
    ledger_with_one_scan(url)

    result = invoke("db-reset", "--yes", "--ledger-url", url)

    assert result.exit_code == 0, result.output
    assert f"Ledger {shown_url(url)} reset: empty, at revision {HEAD}" in " ".join(result.stdout.split())
    assert counts_of(url) == {"scan_imports": 0, "scan_candidates": 0}
    assert_no_password(result)


def run_in_terminal(args: list[str], answer: bytes, timeout: float = 60.0) -> tuple[int, str]:
    """Run the ledger commands in a real pseudo-terminal; type answer at the first prompt."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "trading_pipeline.cli.ledger_commands", *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(secondary)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # the terminal closes when the process exits (EIO on Linux)
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                os.write(primary, answer)
                answered = True
            if process.poll() is not None and not ready:
                break
        return process.wait(timeout=10), output.decode(errors="replace")
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()


def test_db_reset_on_a_terminal_resets_only_after_yes(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger_with_one_scan(url)

    declined_code, declined = run_in_terminal(["db-reset", "--ledger-url", url], b"n\n")

    assert "scan_imports 1, scan_candidates 5" in declined  # what would be deleted
    assert "Delete all ledger data and recreate the tables? [y/N]" in declined
    assert declined_code == 1
    assert "Not reset; nothing changed." in declined
    assert counts_of(url) == {"scan_imports": 1, "scan_candidates": 5}

    accepted_code, accepted = run_in_terminal(["db-reset", "--ledger-url", url], b"y\n")

    assert accepted_code == 0, accepted
    assert f"reset: empty, at revision {HEAD}" in accepted
    assert counts_of(url) == {"scan_imports": 0, "scan_candidates": 0}
    engine = make_engine(url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


# --- errors ----------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", ["init", "status", "db-reset --yes"])
def test_unreachable_postgresql_gives_one_line_without_the_password(command):
    url = f"postgresql://trader:{PASSWORD}@127.0.0.1:{closed_port()}/ledger"

    result = invoke(*command.split(), "--ledger-url", url)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ledger postgresql://trader:***@127.0.0.1:")
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.output
    assert_no_password(result)


@pytest.mark.parametrize("command", ["init", "status", "db-reset", "db-reset --yes"])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"mysql://trader:{PASSWORD}@db/ledger", "supports SQLite and PostgreSQL, not 'mysql'"),
        (f"nonsense {PASSWORD}", "not a valid SQLAlchemy URL"),
    ],
)
def test_unusable_ledger_url_is_refused_in_one_line(command, url, message):
    result = invoke(*command.split(), "--ledger-url", url)

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert_no_password(result)
