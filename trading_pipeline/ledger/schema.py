"""The ledger's tables: the single description of them (SQLAlchemy Core).

Alembic migrations create and change these tables; a test compares the migrated database
with this metadata, so the two cannot drift apart. New tables are added here and in a new
migration under ``migrations/versions/``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator):
    """A point in time, stored in UTC, always returned timezone-aware in UTC.

    SQLite has no time zone type: SQLAlchemy would silently drop the offset and hand back
    naive datetimes. This type refuses naive input (its meaning is unknown), converts
    aware input to UTC, and marks what it reads as UTC, so both backends behave the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; the ledger stores UTC instants")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# Explicit constraint names: Alembic's batch mode (how SQLite alters tables) and later
# migrations can only drop or change a constraint they can name, on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

EXPORT_DATE_SOURCES = ("footer", "file date")

# One imported Barchart screener export (one Dagster partition) and the policy it was
# scored and selected with.
scan_imports = Table(
    "scan_imports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("partition_key", String(255), nullable=False, unique=True),
    Column("source_path", Text, nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("export_date", Date, nullable=False),
    Column("export_date_source", String(16), nullable=False),
    # The footer's timestamp text as Barchart printed it (e.g. "08-28-2025 08:46am CDT"):
    # kept verbatim because its zone abbreviation is not a reliable UTC offset.
    Column("downloaded_at", Text, nullable=True),
    Column("total_rows", Integer, nullable=False),
    Column("valid_rows", Integer, nullable=False),
    Column("invalid_rows", Integer, nullable=False),
    Column("selected_rows", Integer, nullable=False),
    Column("rejected_rows", Integer, nullable=False),
    Column("top_n", Integer, nullable=False),
    Column("diversify", Boolean, nullable=False),
    Column("max_per_symbol", Integer, nullable=False),
    Column("min_score", Float, nullable=False),
    Column("dagster_run_id", String(64), nullable=True),
    Column("imported_at", UtcDateTime, nullable=False),
    CheckConstraint(
        "export_date_source IN ('footer', 'file date')", name="export_date_source"
    ),
)

# Every data row of an import: the canonical candidate columns plus its scores and the
# selection outcome. Prices and percentages are Float (double precision): they are
# screener quotes rounded by Barchart and inputs to scores, not money that changed hands;
# exact decimal columns (Numeric) are kept for orders and fills.
scan_candidates = Table(
    "scan_candidates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "scan_import_id",
        Integer,
        ForeignKey("scan_imports.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Invalid rows keep whatever fields parsed, so every candidate column is nullable.
    Column("file_row", Integer, nullable=True),
    Column("symbol", String(32), nullable=True),
    Column("underlying_price", Float, nullable=True),
    Column("expiration", Date, nullable=True),
    Column("dte_reported", Integer, nullable=True),
    Column("dte", Integer, nullable=True),
    Column("strike", Float, nullable=True),
    Column("option_type", String(8), nullable=True),
    Column("moneyness_pct", Float, nullable=True),
    Column("bid", Float, nullable=True),
    Column("breakeven", Float, nullable=True),
    Column("breakeven_pct", Float, nullable=True),
    Column("volume", BigInteger, nullable=True),
    Column("open_interest", BigInteger, nullable=True),
    Column("iv_rank_pct", Float, nullable=True),
    Column("delta", Float, nullable=True),
    Column("return_pct_reported", Float, nullable=True),
    Column("annualized_return_pct_reported", Float, nullable=True),
    Column("profit_prob_pct", Float, nullable=True),
    Column("otm_pct", Float, nullable=True),
    Column("return_pct", Float, nullable=True),
    Column("annualized_return_pct", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("score_return", Float, nullable=True),
    Column("score_pop", Float, nullable=True),
    Column("score_iv_rank", Float, nullable=True),
    Column("score_liquidity", Float, nullable=True),
    Column("score_capital", Float, nullable=True),
    Column("score_safety", Float, nullable=True),
    Column("score", Float, nullable=True),
    Column("grade", String(2), nullable=True),
    Column("rank", Integer, nullable=True),
    Column("rejected", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Index("ix_scan_candidates_scan_import_id_rank", "scan_import_id", "rank"),
)
