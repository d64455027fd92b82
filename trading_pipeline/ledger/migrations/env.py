"""Alembic environment of the ledger, run programmatically by trading_pipeline.ledger.migrate.

The caller hands over an open connection in ``config.attributes["connection"]`` (inside its
own transaction), so a migration runs in the caller's transaction and on the caller's
engine settings (SQLite pragmas included). Without one (Alembic's own command API used by
a developer, e.g. to autogenerate a revision) it opens the configured ledger.
"""

from __future__ import annotations

from alembic import context

from trading_pipeline.ledger.schema import metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place: batch mode rebuilds the table. It is a
        # no-op on PostgreSQL, so one migration script serves both backends.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from trading_pipeline.ledger.db import make_engine, write_transaction

    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or None)
    try:
        with write_transaction(engine) as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the ledger's migrations run online only (trading_pipeline.ledger.migrate)")
run_migrations_online()
