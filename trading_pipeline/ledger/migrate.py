"""Alembic migrations of the ledger, run from code (no alembic.ini at runtime).

The migration scripts ship inside the package (``ledger/migrations``), so an installed
wheel can create or upgrade its ledger with ``tp init`` alone.

To write a new migration (developers), against a ledger at head::

    python -c "from alembic import command; from trading_pipeline.ledger.migrate import \
alembic_config; command.revision(alembic_config(), message='what changes', \
rev_id='0002', autogenerate=True)"

then review the generated file: autogenerate is a draft, not a migration.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text

from trading_pipeline.errors import ConfigurationError
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"

# Key of the PostgreSQL advisory lock that serializes migrations: two processes starting
# at once (two Dagster runs, a run and `tp init`) must not both create the tables.
# (On SQLite, write_transaction's BEGIN IMMEDIATE does the same.)
_MIGRATION_LOCK_KEY = 0x7470_6C65_6467_6572 & 0x7FFF_FFFF_FFFF_FFFF  # "tpledger"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser interpolation: a literal % in a URL (encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this version of the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revision 0001
        raise ConfigurationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The ledger's revision; None when it was never migrated (empty database)."""
    with engine.connect() as connection:
        return _revision_of(connection)


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _lock_for_migration(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def _upgrade(connection: Connection) -> str:
    found = _revision_of(connection)
    if found is not None and found not in _known_revisions():
        raise ConfigurationError(
            f"the ledger is at revision {found}, which this version of trading_pipeline does "
            f"not know (its newest is {head_revision()}); upgrade trading_pipeline, "
            "or reset the ledger with `tp db-reset`"
        )
    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:  # pragma: no cover - guarded by the check above
        raise ConfigurationError(f"cannot migrate the ledger: {exc}") from None
    revision = _revision_of(connection)
    assert revision is not None
    return revision


def migrate(engine: Engine) -> str:
    """Create the ledger or bring it up to the newest revision; return that revision.

    Idempotent, safe to run from several processes at once, and all or nothing: the
    whole upgrade is one transaction on both backends (SQLite and PostgreSQL both have
    transactional DDL).
    """
    with write_transaction(engine) as connection:
        _lock_for_migration(connection)
        return _upgrade(connection)


def reset(engine: Engine) -> str:
    """Drop the ledger's tables (data and alembic_version), then migrate to head.

    Only the ledger's own tables are dropped, never anything else in the database: a
    PostgreSQL database may be shared with other applications (Dagster's run storage).
    One transaction: a reset that fails leaves the ledger as it was.
    """
    with write_transaction(engine) as connection:
        _lock_for_migration(connection)
        preparer = connection.dialect.identifier_preparer
        # CASCADE on PostgreSQL drops foreign keys that tables of a newer revision (not in
        # this metadata) might hold on ours; SQLite does not enforce FKs on DROP that way.
        cascade = " CASCADE" if connection.dialect.name == "postgresql" else ""
        names = [table.name for table in reversed(metadata.sorted_tables)] + [VERSION_TABLE]
        for name in names:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.quote(name)}{cascade}")
        return _upgrade(connection)
