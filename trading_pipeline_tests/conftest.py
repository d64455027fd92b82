"""Fixtures shared by the whole test suite.

- ``isolated_home``: TP_HOME and DAGSTER_HOME in a temporary folder (and the ledger URL and
  inbox back at their defaults under it), so no test touches the checkout's data.
- ``shared_data_dir``: ../shared/data (real sample files); skips when absent.
- ``postgres_server``: one real PostgreSQL server per test session (see postgres.py);
  skips when the server binaries are missing, fails instead when TP_REQUIRE_POSTGRES=1.
- ``ledger_url``: runs a test twice, on a fresh SQLite file and on a fresh PostgreSQL
  database; ``ledger_engine``: an engine on it, migrated to head.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from trading_pipeline_tests.postgres import PostgresServer, PostgresUnavailable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fixed_console_width(monkeypatch):
    """The commands' tables render at the width they have when piped (160 columns), whatever
    width an earlier test in the same worker (a COLUMNS it set) or the terminal left."""
    from trading_pipeline.cli.app import console

    monkeypatch.setattr(console, "_width", 160)


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project home: settings resolve every default path under it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TP_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / ".dagster_home"))
    (home / ".dagster_home").mkdir()
    monkeypatch.delenv("TP_LEDGER_URL", raising=False)
    monkeypatch.delenv("TP_BARCHART_INBOX", raising=False)
    return home


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real sample files in ../shared/data (test use only; never copied into the repo)."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared sample data not present at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


def postgres_required() -> bool:
    """CI sets TP_REQUIRE_POSTGRES=1: a missing server is then a failure, not a skip."""
    return os.environ.get("TP_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session; ``create_database(name) -> url``."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if postgres_required():
            pytest.fail(f"{exc}; TP_REQUIRE_POSTGRES=1 forbids skipping", pytrace=False)
        pytest.skip(str(exc))
    with server:
        yield server


def _database_name(node_name: str) -> str:
    """A unique, valid database name derived from the test's name (helps when debugging)."""
    _database_name.counter += 1  # type: ignore[attr-defined]
    slug = re.sub(r"[^a-z0-9]+", "_", node_name.lower()).strip("_")[:40]
    return f"t{_database_name.counter}_{slug}"  # type: ignore[attr-defined]


_database_name.counter = 0  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty ledger database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(_database_name(request.node.name))


@pytest.fixture
def ledger_engine(ledger_url: str):
    """An engine on a fresh ledger migrated to head (disposed after the test)."""
    from trading_pipeline.ledger import make_engine, migrate

    engine = make_engine(ledger_url)
    migrate(engine)
    yield engine
    engine.dispose()
