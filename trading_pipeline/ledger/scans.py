"""Repository of Barchart scan imports: write one scan, read scans and their candidates.

A scan is written whole or not at all: :func:`replace_scan` is one transaction that
removes an earlier import of the same partition (its candidates go with it, by cascade)
and inserts the new import and all its candidate rows.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from trading_pipeline.core.scoring import SCORE_COLUMNS
from trading_pipeline.ingest.barchart import CANONICAL_COLUMNS
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import metadata, scan_candidates, scan_imports

# The scored candidate frame as the scorer returns it (canonical parser columns, then the
# scorer's), in that order. The frame's `row` is stored as `file_row`: `row` is
# awkward as a column name in SQL.
CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    **CANONICAL_COLUMNS,
    **{name: pl.Float64() for name in SCORE_COLUMNS},
    "score": pl.Float64(),
    "grade": pl.String(),
    "rank": pl.Int64(),
    "rejected": pl.Boolean(),
    "reason": pl.String(),
}

_FRAME_TO_TABLE = {name: ("file_row" if name == "row" else name) for name in CANDIDATE_SCHEMA}

COUNT_FIELDS = ("total_rows", "valid_rows", "invalid_rows", "selected_rows", "rejected_rows")

# What the caller describes; the id is the ledger's to assign.
RECORD_FIELDS = tuple(column.name for column in scan_imports.columns if column.name != "id")
_OPTIONAL_FIELDS = {"downloaded_at", "dagster_run_id", *COUNT_FIELDS}


def scan_counts(candidates: pl.DataFrame) -> dict[str, int]:
    """Row counts of a scored and selected frame, as stored on the import."""
    total = candidates.height
    invalid = candidates.filter(pl.col("error").is_not_null()).height
    selected = candidates.filter(pl.col("rank").is_not_null()).height
    rejected = candidates.filter(pl.col("rejected")).height
    return {
        "total_rows": total,
        "valid_rows": total - invalid,
        "invalid_rows": invalid,
        "selected_rows": selected,
        "rejected_rows": rejected,
    }


def _checked_record(record: dict[str, Any], candidates: pl.DataFrame) -> dict[str, Any]:
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    if unknown:
        raise ValueError(f"unknown scan import fields: {', '.join(unknown)}")
    missing = sorted(set(RECORD_FIELDS) - set(record) - _OPTIONAL_FIELDS)
    if missing:
        raise ValueError(f"scan import record lacks: {', '.join(missing)}")
    if not isinstance(record["export_date"], date) or isinstance(record["export_date"], datetime):
        raise ValueError("export_date must be a datetime.date")
    imported_at = record["imported_at"]
    if not isinstance(imported_at, datetime) or imported_at.utcoffset() is None:
        raise ValueError("imported_at must be a timezone-aware datetime (from the run's Clock)")

    # Counts are facts about the frame: fill in what the caller left out, and refuse a
    # record that contradicts the rows it arrives with.
    counts = scan_counts(candidates)
    for field, actual in counts.items():
        given = record.get(field)
        if given is not None and given != actual:
            raise ValueError(f"{field} is {given} but the candidate frame has {actual}")
    return {
        "downloaded_at": None,
        "dagster_run_id": None,
        **record,
        **counts,
    }


def _candidate_frame_for_insert(candidates: pl.DataFrame) -> pl.DataFrame:
    """The frame's ledger columns in table order, in their canonical dtypes.

    Extra columns (diagnostics a caller may add) are not stored. NaN becomes null: SQLite
    cannot store NaN (it reads back as NULL), and both backends must round-trip alike.
    """
    missing = [name for name in CANDIDATE_SCHEMA if name not in candidates.columns]
    if missing:
        raise ValueError(f"candidate frame lacks columns: {', '.join(missing)}")
    columns = []
    for name, dtype in CANDIDATE_SCHEMA.items():
        column = pl.col(name).cast(dtype, strict=True)
        if dtype == pl.Float64():
            column = column.fill_nan(None)
        columns.append(column.alias(_FRAME_TO_TABLE[name]))
    try:
        return candidates.select(columns)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"candidate frame has a column of the wrong type: {exc}") from None


def replace_scan(engine: Engine, record: dict[str, Any], candidates: pl.DataFrame) -> int:
    """Store one scan (import record + every candidate row); return the new import's id.

    Any earlier import with the same partition_key is deleted first, in the same
    transaction: readers see the old scan or the new one, never a mix, and a failure
    anywhere leaves the old scan exactly as it was.

    ``record`` holds the scan_imports fields except ``id``; the row counts may be
    omitted (they are computed from ``candidates``) and must match the frame if given.
    ``imported_at`` must be timezone-aware (stored as UTC).
    """
    frame = _candidate_frame_for_insert(candidates)
    record = _checked_record(record, frame)
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Serialize writers of scans (readers are not blocked): two runs replacing
            # the same partition at once would otherwise both delete the old import and
            # the second insert would hit the unique partition key.
            connection.execute(text("LOCK TABLE scan_imports IN SHARE ROW EXCLUSIVE MODE"))
        connection.execute(delete(scan_imports).where(scan_imports.c.partition_key == record["partition_key"]))
        scan_import_id = connection.execute(
            insert(scan_imports).values(**record).returning(scan_imports.c.id)
        ).scalar_one()
        if frame.height:
            _bulk_insert_candidates(connection, frame.with_columns(scan_import_id=pl.lit(scan_import_id)))
    return scan_import_id


def _bulk_insert_candidates(connection: Connection, frame: pl.DataFrame) -> None:
    """Insert many candidate rows fast, inside the caller's transaction.

    SQLAlchemy's per-row parameter processing costs seconds per 100,000 rows, so rows go
    to the driver directly. On SQLite they are converted up front in polars to what
    SQLAlchemy itself would store (dates as ISO text, booleans as 0/1), so reads through
    SQLAlchemy see the same values; PostgreSQL loads them with COPY.
    """
    preparer = connection.dialect.identifier_preparer
    column_list = ", ".join(preparer.quote(name) for name in frame.columns)
    table_name = preparer.format_table(scan_candidates)
    dbapi = connection.dialect.loaded_dbapi
    if connection.dialect.name == "sqlite":
        placeholders = ", ".join("?" for _ in frame.columns)
        statement = f"INSERT INTO {table_name} ({column_list}) VALUES ({placeholders})"
    else:
        statement = f"COPY {table_name} ({column_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "sqlite":
            frame = frame.with_columns(
                pl.col(pl.Date).dt.to_string("%Y-%m-%d"), pl.col(pl.Boolean).cast(pl.Int64)
            )
            cursor.executemany(statement, frame.iter_rows())
        else:
            # COPY is PostgreSQL's bulk load (multi-row INSERTs took ~20 s for 100,000
            # rows here). Every text field is quoted: an unquoted \N is NULL, a quoted one
            # is the text "\N". Floats are written in shortest round-trip form.
            csv = frame.write_csv(include_header=False, null_value=r"\N", quote_style="non_numeric")
            cursor.copy_expert(statement, io.StringIO(csv))
    except dbapi.Error as exc:
        # The same exception types as every other ledger write (sqlalchemy.exc.*).
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=connection.dialect) from exc
    finally:
        cursor.close()


def get_scan(
    engine: Engine, *, partition_key: str | None = None, scan_import_id: int | None = None
) -> dict[str, Any] | None:
    """One import record by partition key or id; the latest import when neither is given."""
    if partition_key is not None and scan_import_id is not None:
        raise ValueError("give partition_key or scan_import_id, not both")
    query = select(scan_imports)
    if partition_key is not None:
        query = query.where(scan_imports.c.partition_key == partition_key)
    elif scan_import_id is not None:
        query = query.where(scan_imports.c.id == scan_import_id)
    else:
        query = query.order_by(scan_imports.c.imported_at.desc(), scan_imports.c.id.desc()).limit(1)
    with engine.connect() as connection:
        found = connection.execute(query).mappings().first()
    return dict(found) if found is not None else None


def list_scans(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The latest imports first, at most ``limit`` of them."""
    query = (
        select(scan_imports)
        .order_by(scan_imports.c.imported_at.desc(), scan_imports.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def load_candidates(engine: Engine, scan_import_id: int) -> pl.DataFrame:
    """The stored candidates of one import, in canonical dtypes and the scorer's order.

    Order: selected rows by rank, then the others by score (highest first), rows without
    a score (invalid) last; ties keep the order they were stored in.
    """
    table = scan_candidates.c
    query = (
        select(*(table[_FRAME_TO_TABLE[name]] for name in CANDIDATE_SCHEMA))
        .where(table.scan_import_id == scan_import_id)
        # NULL ordering differs between SQLite and PostgreSQL; "is null" first makes it
        # explicit and the same on both.
        .order_by(
            table.rank.is_(None),
            table.rank,
            table.score.is_(None),
            table.score.desc(),
            table.id,
        )
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame(rows, schema=CANDIDATE_SCHEMA, orient="row")


def table_counts(engine: Engine) -> dict[str, int]:
    """Row count of every ledger table, by table name."""
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
        }
