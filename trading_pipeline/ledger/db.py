"""Connecting to the ledger: embedded SQLite by default, PostgreSQL by URL.

The ledger is the project's operational truth, so every connection is set up the same
way no matter who opens it (CLI, Dagster run, test):

* SQLite gets WAL journaling (readers never block the writer and vice versa), a busy
  timeout (a second writer waits instead of failing at once) and enforced foreign keys
  (SQLite ignores them unless told otherwise, per connection).
* SQLite transactions are real transactions, DDL included: Python's sqlite3 module by
  default starts a transaction only before INSERT/UPDATE/DELETE, which would leave a
  migration or a read-then-write half outside any transaction. We take over BEGIN.
* :func:`write_transaction` starts SQLite transactions with ``BEGIN IMMEDIATE`` so a writer
  takes the write lock up front: a deferred transaction that reads first and writes later
  can fail with "database is locked" without waiting, busy timeout or not.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from trading_pipeline import settings
from trading_pipeline.errors import ConfigurationError, TradingPipelineError

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option that marks a transaction as a writer (see write_transaction).
_WRITE_OPTION = "ledger_write"


class LedgerUnavailableError(TradingPipelineError):
    """The ledger cannot be reached or used (connection refused, wrong credentials...)."""


def parse_ledger_url(url: str) -> URL:
    """The URL as SQLAlchemy understands it, refused unless it is SQLite or PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # SQLAlchemy's message would not help, and the raw text may hold a password.
        raise ConfigurationError(
            "the ledger URL is not a valid SQLAlchemy URL "
            "(expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB)"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"the ledger supports SQLite and PostgreSQL, not '{parsed.get_backend_name()}' "
            f"({settings.redact_url(url)})"
        )
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships
        # psycopg2 (as dagster-postgres does), so a bare URL means psycopg2 here.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for in-memory SQLite and other backends."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str | None = None) -> Engine:
    """An engine on the ledger; default URL from :func:`settings.ledger_url`.

    For a SQLite file the folder is created, so the embedded default needs no setup.
    """
    url = url or settings.ledger_url()
    parsed = parse_ledger_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed)
    try:
        # pre_ping: a connection the server dropped (restart, idle timeout) is replaced
        # instead of failing the next run that happens to get it from the pool.
        return create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError):
        raise ConfigurationError(
            f"the database driver for {settings.redact_url(url)} is not installed"
        ) from None


def _make_sqlite_engine(url: URL) -> Engine:
    database_file = sqlite_file(url)
    if database_file is not None:
        database_file.expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection, _connection_record):
        # Autocommit at the driver level: SQLAlchemy's "begin" listener below then
        # decides exactly when a transaction starts (the documented SQLAlchemy recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # synchronous stays at its default (FULL): the ledger will hold order
            # intents that must survive a power cut, and one fsync per commit is cheap.
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection):
        mode = "IMMEDIATE" if connection.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def write_transaction(engine: Engine) -> AbstractContextManager[Connection]:
    """A transaction for writing: commits on success, rolls back on any exception.

    On SQLite it takes the write lock at BEGIN (waiting up to the busy timeout for
    another writer), so everything inside sees a stable database; on PostgreSQL it is
    an ordinary transaction.
    """
    return engine.execution_options(**{_WRITE_OPTION: True}).begin()


def describe_url(engine_or_url: Engine | str) -> str:
    """The ledger URL for people: password hidden."""
    if isinstance(engine_or_url, Engine):
        return engine_or_url.url.render_as_string(hide_password=True)
    return settings.redact_url(engine_or_url)


def without_password(text: str, url: str | URL) -> str:
    """text with the URL's password blanked out, for messages built from driver errors."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return text  # nothing we can parse a password out of; messages never echo it
    password = parsed.password
    if password:
        text = text.replace(str(password), "***")
    return text


def jsonable(report: Any) -> Any:
    """``report`` as plain JSON values for a JSON column: Decimals as text (exact), dates and
    times as ISO text, enums by value, tuples and sets as lists. NaN and infinities are refused
    (not JSON; PostgreSQL rejects them)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, (date, datetime)):
            return value.isoformat()
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, (set, frozenset, tuple)):
            return list(value)
        raise TypeError(f"cannot store {type(value).__name__} in a report")

    try:
        return json.loads(json.dumps(report, default=convert, allow_nan=False))
    except ValueError as problem:
        raise ValueError(f"the report is not valid JSON: {problem}") from None
