"""The ledger: the project's operational truth (SQLAlchemy Core, Alembic migrations).

Embedded SQLite by default (``<home>/data/ledger.sqlite``), PostgreSQL by URL
(``TP_LEDGER_URL``). Writes that must not be half-done are one transaction each.
"""

from trading_pipeline.ledger.db import (
    LedgerUnavailableError,
    describe_url,
    make_engine,
    write_transaction,
)
from trading_pipeline.ledger.migrate import current_revision, head_revision, migrate, reset
from trading_pipeline.ledger.scans import (
    CANDIDATE_SCHEMA,
    get_scan,
    list_scans,
    load_candidates,
    replace_scan,
    scan_counts,
    table_counts,
)

__all__ = [
    "CANDIDATE_SCHEMA",
    "LedgerUnavailableError",
    "current_revision",
    "describe_url",
    "get_scan",
    "head_revision",
    "list_scans",
    "load_candidates",
    "make_engine",
    "migrate",
    "replace_scan",
    "reset",
    "scan_counts",
    "table_counts",
    "write_transaction",
]
