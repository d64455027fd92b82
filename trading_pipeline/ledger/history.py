"""Repository of the trade history tables (revision 0004) and the queries its reports use.

Tables: ``flex_import_sessions``, ``flex_executions``, ``flex_option_events`` and
``flex_raw_chunks`` (raw, immutable: only inserted), ``trade_lifecycles`` and
``lifecycle_gaps`` (derived: replaced per account by :func:`replace_lifecycles`). The
services that decide what to write are in ``trading_pipeline.history`` (imports,
promotion); every write function here runs inside the caller's transaction
(:func:`trading_pipeline.ledger.db.write_transaction`), so an import is all or nothing.

Storage design (a statement may hold a million executions; issue 6's benchmark imports
one in the real configuration: SQLite in WAL mode, synchronous as configured):

* Raw rows stay immutable with all their attributes, but the raw text is not one TEXT per
  row (that was 1.1 GB for a million rows: written to the write-ahead log, then copied into
  the database, half a minute). Each import session keeps its stored rows' text in
  ``flex_raw_chunks``: Parquet files of RAW_CHUNK_ROWS rows, zstd-compressed (89 MB for
  those million rows with their typed columns, compressed on another thread while the
  driver inserts the narrow rows). A row carries ``raw_row``, its position in its session's rows of its kind;
  :func:`raw_xml_of` / :func:`execution_raw_xml` give it back exactly (one chunk read).
* Executions are stored column-wise (revision 0005): the typed columns matching,
  promotion and the reports read (:data:`STORED_EXECUTION_COLUMNS`) are in the same
  chunks as the raw text, and ``flex_executions`` keeps one narrow row per execution
  (:data:`NARROW_EXECUTION_COLUMNS`: deduplication by the one unique index, the options
  filter, the status report). :func:`load_executions` reads the chunks back with polars.
* Bulk rows go to the driver directly, not through SQLAlchemy's per-row processing:
  ``executemany`` with tuples on SQLite (values converted up front in polars to what
  SQLAlchemy itself stores: dates as ISO text, UTC times as naive "YYYY-MM-DD
  HH:MM:SS.ffffff", booleans as 0/1, JSON as text, so SQLAlchemy reads them back alike);
  ``COPY`` on PostgreSQL. Reads for a rebuild come back as polars frames.
* The import matches the executions it already holds in memory plus what the ledger had
  before (read back once, only the matching columns): a first import of a million rows
  reads nothing back.
* During a bulk insert the cyclic garbage collector is paused (a third of the time went
  to collections triggered by the driver's row tuples), columns holding one value are
  written into the statement once, and an import gives its SQLite connection a 256 MiB
  page cache (:func:`bulk_write_cache`; the default 2 MiB re-reads the execution-id
  index all through a million-row insert).
* ``trade_lifecycles``' CHECK constraints are written as ``=`` comparisons, not ``IN``
  lists: SQLite builds a small table for an IN list at every inserted row, which doubled
  the time to store 400,000 lifecycles.

The report queries (:func:`list_lifecycles`, :func:`lifecycle_summary`, :func:`list_gaps`,
:func:`list_import_sessions`, :func:`history_status`) are read-only and return plain dicts (floats, dates, lists).
"""

from __future__ import annotations

import gc
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Float, Table, and_, case, delete, func, insert, select, text, true
from sqlalchemy.exc import DBAPIError

from trading_pipeline.ingest.flex import EXECUTION_COLUMNS, NEW_YORK
from trading_pipeline.ledger.schema import (
    LIFECYCLE_EXIT_TYPES,
    RAW_CHUNK_ROWS,
    RAW_KINDS,
    flex_executions,
    flex_import_sessions,
    flex_option_events,
    flex_raw_chunks,
    lifecycle_gaps,
    trade_lifecycles,
    trades,
)

IMPORTED_SOURCE = "ibkr_import"

#: The typed execution columns stored (in the session's chunks, schema.flex_raw_chunks):
#: what matching, cancellation linking, promotion and the reports read. The others
#: (description, notes, transactionID, ... every attribute) are in the raw text.
STORED_EXECUTION_COLUMNS: tuple[str, ...] = (
    "line", "account", "exec_id", "is_cancellation", "trade_id", "orig_trade_id", "order_id", "asset_category",
    "symbol", "underlying", "con_id", "put_call", "strike", "expiry", "multiplier", "currency", "buy_sell",
    "quantity", "price", "commission", "open_close", "event", "date_time_utc", "trade_date",
)

#: The execution columns also kept in ``flex_executions``' narrow rows (besides id,
#: import_session_id and raw_row): deduplication, the options filter, the status report.
NARROW_EXECUTION_COLUMNS: tuple[str, ...] = ("account", "exec_id", "is_cancellation", "put_call", "trade_date")

#: ``<OptionEAE>`` frame columns (ingest.flex.OPTION_EVENT_COLUMNS) -> flex_option_events columns.
OPTION_EVENT_STORED: dict[str, str] = {
    "line": "line", "event_key": "event_key", "account": "account", "transaction_type": "transaction_type",
    "asset_category": "asset_category", "symbol": "symbol", "underlying": "underlying", "con_id": "con_id",
    "put_call": "put_call", "strike": "strike", "expiry": "expiry", "multiplier": "multiplier",
    "currency": "currency", "date": "event_date", "quantity": "quantity", "trade_price": "trade_price",
    "mark_price": "mark_price", "realized_pnl": "realized_pnl", "trade_id": "trade_id",
}

LIFECYCLE_STORED: tuple[str, ...] = (
    "lifecycle_id", "account", "underlying", "right", "strike", "expiry", "side", "quantity", "open_price",
    "close_price", "exit_type", "open_date", "close_date", "multiplier", "currency", "gross_pnl", "commissions",
    "net_pnl", "confidence", "flag", "open_exec_ids", "close_exec_ids", "opening_unit",
)
GAP_STORED: tuple[str, ...] = (
    "account", "underlying", "right", "strike", "expiry", "side", "exec_id", "trade_date", "quantity", "exit_type",
    "reason",
)

LIFECYCLE_SORTS = ("date", "pnl", "symbol")
LIFECYCLE_STATUSES = ("open", "closed")

# Float columns of the derived tables rounded in report rows: six places, the ledger's money
# precision, so binary noise (397.40000000000003) never reaches a report.
_REPORT_FLOATS = ("open_price", "close_price", "gross_pnl", "commissions", "net_pnl")


# ============================================================================ bulk rows


def _sqlite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Values as SQLAlchemy stores them in SQLite (so its reads give the same objects)."""
    converted = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                raise ValueError(f"column {name}: naive datetimes are not stored (the ledger stores UTC instants)")
            column = column.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
        elif dtype == pl.Date:
            column = column.dt.strftime("%Y-%m-%d")
        elif dtype == pl.Boolean:
            column = column.cast(pl.Int64)
        elif dtype == pl.Float64 or dtype == pl.Float32:
            column = column.fill_nan(None)  # SQLite cannot keep NaN (it reads back as NULL)
        elif isinstance(dtype, pl.List):
            column = _json_text(name)
        converted.append(column.alias(name))
    return frame.select(converted)


def _postgres_values(frame: pl.DataFrame) -> pl.DataFrame:
    converted = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                raise ValueError(f"column {name}: naive datetimes are not stored (the ledger stores UTC instants)")
            column = column.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
        elif dtype == pl.Float64 or dtype == pl.Float32:
            column = column.fill_nan(None)
        elif isinstance(dtype, pl.List):
            column = _json_text(name)
        converted.append(column.alias(name))
    return frame.select(converted)


def _sqlite_literal(column: pl.Series) -> str | None:
    """``column``'s one value as an SQLite literal when it holds a single value throughout
    (null, an integer, a finite float, a text without NUL), else None (bind it per row)."""
    if column.len() < 2 or isinstance(column.dtype, pl.List):
        return None
    value = column[0]
    if value != column[-1]:  # the usual answer, at no cost
        return None
    if value is None:
        return "NULL" if column.null_count() == column.len() else None
    if column.null_count() or not (column == value).all():  # an equality scan: far cheaper than n_unique
        return None
    if isinstance(value, bool):  # not expected after _sqlite_values (0/1), but never True/False text
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _json_text(name: str) -> pl.Expr:
    """A list column as JSON text, encoded by polars (quotes and controls escaped)."""
    encoded = pl.struct(pl.col(name).alias("v")).struct.json_encode()
    return encoded.str.slice(5, encoded.str.len_chars() - 6)  # '{"v":' ... '}' removed


def bulk_insert(connection: Connection, table: Table, frame: pl.DataFrame) -> None:
    """Insert every row of ``frame`` (columns named like the table's) inside the caller's
    transaction, fast: ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""
    if frame.height == 0:
        return
    unknown = [name for name in frame.columns if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
    preparer = connection.dialect.identifier_preparer
    column_list = ", ".join(preparer.quote(name) for name in frame.columns)
    table_name = preparer.format_table(table)
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.cursor()
    # The cyclic garbage collector is paused meanwhile: the driver builds a tuple per row,
    # and the collections those allocations trigger scan every live object again and again
    # (a third of the time to insert 400,000 lifecycles). Nothing here makes cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if connection.dialect.name == "sqlite":
            values = _sqlite_values(frame)
            # A column holding one value throughout (the session id, the account, built_at,
            # promoted_trade_id all null...) is written into the statement once instead of
            # being bound at every row: the driver's binding is most of the time.
            placeholders, bound = [], []
            for name in values.columns:
                constant = _sqlite_literal(values.get_column(name))
                placeholders.append(constant if constant is not None else "?")
                if constant is None:
                    bound.append(name)
            statement = f"INSERT INTO {table_name} ({column_list}) VALUES ({', '.join(placeholders)})"
            # Columns to Python lists, zipped: several times cheaper than iter_rows.
            rows = zip(*(values.get_column(name).to_list() for name in bound)) if bound else ((),) * values.height
            cursor.executemany(statement, rows)
        else:
            statement = f"COPY {table_name} ({column_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
            # Every text field quoted: an unquoted \N is NULL, a quoted one the text "\N".
            csv = _postgres_values(frame).write_csv(include_header=False, null_value=r"\N", quote_style="non_numeric")
            cursor.copy_expert(statement, io.StringIO(csv))
    except dbapi.Error as exc:
        # The same exception types as every other ledger write (sqlalchemy.exc.*).
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=connection.dialect) from exc
    finally:
        if collecting:
            gc.enable()
        cursor.close()


#: SQLite page cache of a connection during a bulk write, in KiB (PRAGMA cache_size takes
#: a negative number as KiB): 256 MiB. The default (2 MiB) spills the pages of the unique
#: execution-id index out and reads them back all through a million-row insert (3 s -> 5 s).
BULK_WRITE_CACHE_KIB = 262_144


@contextmanager
def bulk_write_cache(connection: Connection) -> Iterator[None]:
    """A large SQLite page cache for ``connection`` while the block runs, restored after
    (pooled connections are reused by every other caller). Nothing on PostgreSQL."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{BULK_WRITE_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(before)}")


def _fetch_frame(connection: Connection, query, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows of a Core ``query`` (its columns named like ``schema``) as a frame, read through
    the driver: SQLite's text dates and times and 0/1 booleans are converted in polars."""
    # IN lists rendered out (one placeholder per value): the driver gets plain SQL.
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    cursor = connection.connection.cursor()
    try:
        parameters = compiled.params
        if connection.dialect.name == "sqlite":
            positional = [parameters[name] for name in compiled.positiontup]
            cursor.execute(str(compiled), positional)
        else:
            cursor.execute(str(compiled), parameters)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    # Column by column: building a frame from row tuples is about twice as slow.
    columns = list(zip(*rows)) if rows else [() for _ in schema]
    if connection.dialect.name != "sqlite":
        return pl.DataFrame([pl.Series(name, values, dtype=dtype) for (name, dtype), values in
                             zip(schema.items(), columns, strict=True)])
    stored = {
        name: (pl.String() if isinstance(dtype, pl.Datetime) or dtype == pl.Date else
               pl.Int64() if dtype == pl.Boolean else dtype)
        for name, dtype in schema.items()
    }
    frame = pl.DataFrame([pl.Series(name, values, dtype=dtype) for (name, dtype), values in
                          zip(stored.items(), columns, strict=True)])
    conversions = []
    for name, dtype in schema.items():
        if isinstance(dtype, pl.Datetime):
            conversions.append(
                pl.col(name).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
                .dt.replace_time_zone("UTC").dt.convert_time_zone(dtype.time_zone or "UTC").alias(name)
            )
        elif dtype == pl.Date:
            conversions.append(pl.col(name).str.to_date("%Y-%m-%d").alias(name))
        elif dtype == pl.Boolean:
            conversions.append(pl.col(name).cast(pl.Boolean).alias(name))
    return frame.with_columns(conversions) if conversions else frame


# ============================================================================ imports (writes)


def lock_history(connection: Connection) -> None:
    """Serialize writers of the history tables (imports, rebuilds, promotions) on PostgreSQL;
    readers are not blocked. (SQLite's write transactions take the write lock at BEGIN.)"""
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE flex_executions IN SHARE ROW EXCLUSIVE MODE"))


def _accounts_filter(column, accounts: Sequence[str] | None):
    return column.in_(list(accounts)) if accounts is not None else true()


def stored_execution_keys(connection: Connection, accounts: Sequence[str]) -> pl.DataFrame:
    """(exec_id, is_cancellation) of the stored executions of ``accounts``."""
    query = select(flex_executions.c.exec_id, flex_executions.c.is_cancellation).where(
        flex_executions.c.account.in_(list(accounts))
    )
    return _fetch_frame(connection, query, {"exec_id": pl.String(), "is_cancellation": pl.Boolean()})


def stored_event_keys(connection: Connection, accounts: Sequence[str]) -> set[str]:
    query = select(flex_option_events.c.event_key).where(flex_option_events.c.account.in_(list(accounts)))
    return set(connection.execute(query).scalars())


#: What :func:`load_executions` returns: EXECUTION_COLUMNS, plus the import each came from.
LOADED_EXECUTION_COLUMNS: dict[str, pl.DataType] = {**EXECUTION_COLUMNS, "import_session_id": pl.Int64()}

#: The stored columns that matching and cancellation linking read (the rest stays unread:
#: reading a million rows back costs about a second per ten columns).
MATCH_COLUMNS: tuple[str, ...] = (
    "account", "exec_id", "is_cancellation", "trade_id", "orig_trade_id", "order_id", "underlying", "put_call",
    "strike", "expiry", "multiplier", "currency", "buy_sell", "quantity", "price", "commission", "open_close",
    "event", "date_time_utc", "trade_date",
)


def load_executions(
    connection: Connection,
    accounts: Sequence[str] | None = None,
    *,
    options_only: bool = False,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The stored executions of ``accounts`` (all when None) in the parser's layout
    (:data:`LOADED_EXECUTION_COLUMNS`); ``options_only``: only option executions.

    Only ``columns`` of the stored ones are read (default: all); the others, and raw_xml
    (see :func:`raw_xml_of`), are null. Columns that are not stored are
    filled: ``date_time`` from the UTC time, ``cancelled`` false and no cancellation links
    (link them with core.lifecycles.link_cancellations), no errors. Rows come in import
    session order, then in their order within the session.

    The typed columns live in the sessions' Parquet chunks (schema.flex_raw_chunks): the
    chunks of the sessions that may hold ``accounts`` are read (only the wanted columns),
    then filtered here, much faster than reading a million rows through the driver.
    """
    wanted = list(columns or STORED_EXECUTION_COLUMNS)
    unknown = [name for name in wanted if name not in STORED_EXECUTION_COLUMNS]
    if unknown:
        raise ValueError(f"not stored columns: {', '.join(unknown)}")
    wanted = list(dict.fromkeys(wanted))
    filters = []
    if accounts is not None:
        filters.append(pl.col("account").is_in(list(accounts)))
    if options_only:
        filters.append(pl.col("put_call").is_not_null())
    read = list(dict.fromkeys([*wanted, *(["account"] if accounts is not None else []),
                               *(["put_call"] if options_only else [])]))
    parts = []
    for session_id, data in _execution_chunks(connection, accounts):
        part = pl.read_parquet(io.BytesIO(data), columns=read)
        if filters:
            part = part.filter(*filters)
        parts.append(part.select(*wanted, pl.lit(session_id, pl.Int64).alias("import_session_id")))
    schema = {name: EXECUTION_COLUMNS[name] for name in wanted} | {"import_session_id": pl.Int64()}
    frame = pl.concat(parts, rechunk=True) if parts else pl.DataFrame(schema=schema)
    filled = [
        pl.lit(None, dtype).alias(name) for name, dtype in LOADED_EXECUTION_COLUMNS.items()
        if name not in frame.columns
    ]
    frame = frame.with_columns(filled).with_columns(
        pl.lit(False).alias("cancelled"),
        pl.col("date_time_utc").dt.convert_time_zone(NEW_YORK).alias("date_time")
        if "date_time_utc" in wanted else pl.lit(None, EXECUTION_COLUMNS["date_time"]).alias("date_time"),
    )
    return frame.select([pl.col(name).cast(dtype) for name, dtype in LOADED_EXECUTION_COLUMNS.items()])


def _execution_chunks(connection: Connection, accounts: Sequence[str] | None):
    """(session id, Parquet file) of every execution chunk of the import sessions that may
    hold executions of ``accounts`` (all when None), in session and row order. A session
    records the accounts it imported (flex_import_sessions.accounts); one without that
    list is read too (its rows are filtered by account anyway)."""
    sessions = flex_import_sessions.c
    listed = connection.execute(select(sessions.id, sessions.accounts)).all()
    wanted = None if accounts is None else set(accounts)
    chosen = [session_id for session_id, held in listed
              if wanted is None or held is None or wanted.intersection(held)]
    if not chosen:
        return
    chunks = flex_raw_chunks.c
    # One session at a time: a session's chunks are a few dozen, each a few MB.
    for session_id in sorted(chosen):
        found = connection.execute(
            select(chunks.data).where(chunks.import_session_id == session_id, chunks.kind == "execution")
            .order_by(chunks.first_row)
        ).scalars()
        for data in found:
            yield session_id, data


def insert_import_session(connection: Connection, values: dict[str, Any]) -> int:
    return connection.execute(
        insert(flex_import_sessions).values(**values).returning(flex_import_sessions.c.id)
    ).scalar_one()


def insert_executions(connection: Connection, session_id: int, executions: pl.DataFrame) -> None:
    """Store valid executions (parser layout) as raw rows of import ``session_id``: a narrow
    row each in ``flex_executions`` (:data:`NARROW_EXECUTION_COLUMNS`), every typed stored
    column and the row's ``raw_xml`` in the session's chunks (``flex_raw_chunks``)."""
    insert_executions_deferred(connection, session_id, executions).store()


class PendingChunks:
    """Execution chunks being compressed on a thread of their own, for a caller's
    transaction: :meth:`store` waits for them and inserts them (the import is not whole
    without them); :meth:`abandon` only waits (the transaction is being rolled back)."""

    def __init__(self, connection: Connection, session_id: int, rows: pl.DataFrame):
        self._connection = connection
        self._session_id = session_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunks")
        self._chunks = self._pool.submit(_compressed_chunks, rows)

    def store(self) -> None:
        try:
            _insert_chunks(self._connection, self._session_id, "execution", self._chunks.result())
        finally:
            self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        self._chunks.cancel()
        self._pool.shutdown(wait=True)


def insert_executions_deferred(connection: Connection, session_id: int, executions: pl.DataFrame) -> PendingChunks:
    """Like :func:`insert_executions`, in two parts: inserts the narrow rows now, while the
    chunks are compressed on another thread (without the GIL; the driver releases it while
    SQLite works), and returns them pending: the caller may do other work meanwhile (store
    the lifecycles...) and must :meth:`PendingChunks.store` them before its commit."""
    typed = executions.select(
        *[pl.col(name).cast(EXECUTION_COLUMNS[name]) for name in STORED_EXECUTION_COLUMNS],
        pl.col("raw_xml"),
    )
    narrow = typed.select(
        pl.lit(session_id, pl.Int64).alias("import_session_id"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("raw_row"),
        *NARROW_EXECUTION_COLUMNS,
    )
    pending = PendingChunks(connection, session_id, typed)
    try:
        bulk_insert(connection, flex_executions, narrow)
    except BaseException:
        pending.abandon()
        raise
    return pending


def insert_option_events(connection: Connection, session_id: int, events: pl.DataFrame) -> None:
    """Store ``<OptionEAE>`` rows (the parser's layout plus ``event_key``)."""
    frame = events.select(
        pl.lit(session_id, pl.Int64).alias("import_session_id"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("raw_row"),
        *[pl.col(source).alias(target) for source, target in OPTION_EVENT_STORED.items()],
    )
    bulk_insert(connection, flex_option_events, frame)
    insert_raw_text(connection, session_id, "option_event", events["raw_xml"])


def _parquet_chunk(rows: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    rows.write_parquet(buffer, compression="zstd", compression_level=1, statistics=False)
    return buffer.getvalue()


def _compressed_chunks(rows: pl.DataFrame | pl.Series) -> list[tuple[int, int, bytes]]:
    """(first row, row count, Parquet file) per RAW_CHUNK_ROWS rows of ``rows``: a frame
    with a ``raw_xml`` column (and any typed columns), or the raw texts alone."""
    if isinstance(rows, pl.Series):
        rows = rows.rename("raw_xml").to_frame()
    if rows["raw_xml"].null_count():
        raise ValueError("every stored row has its raw text")
    return [
        (start, min(RAW_CHUNK_ROWS, rows.height - start), _parquet_chunk(rows.slice(start, RAW_CHUNK_ROWS)))
        for start in range(0, rows.height, RAW_CHUNK_ROWS)
    ]


def _insert_chunks(connection: Connection, session_id: int, kind: str, chunks: list[tuple[int, int, bytes]]) -> None:
    if kind not in RAW_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RAW_KINDS)}, not {kind!r}")
    if chunks:  # a few dozen rows: Core's executemany is fine (and handles bytes on both backends)
        connection.execute(insert(flex_raw_chunks), [
            {"import_session_id": session_id, "kind": kind, "first_row": first_row, "row_count": row_count,
             "data": data}
            for first_row, row_count, data in chunks
        ])


def insert_raw_text(connection: Connection, session_id: int, kind: str, texts: pl.Series) -> None:
    """Store the raw text of a session's rows of ``kind`` (row i of ``texts`` is the stored
    row with ``raw_row`` i) as Parquet chunks of RAW_CHUNK_ROWS rows (schema.flex_raw_chunks)."""
    _insert_chunks(connection, session_id, kind, _compressed_chunks(texts))


def raw_xml_of(connection: Connection, session_id: int, kind: str, raw_row: int) -> str | None:
    """The raw text (the element exactly as IBKR wrote it) of the stored row of ``kind``
    ("execution" / "option_event") with ``raw_row`` in import ``session_id``; None when
    there is no such row."""
    table = flex_raw_chunks.c
    found = connection.execute(
        select(table.first_row, table.row_count, table.data)
        .where(table.import_session_id == session_id, table.kind == kind, table.first_row <= raw_row)
        .order_by(table.first_row.desc()).limit(1)
    ).first()
    if found is None or raw_row >= found.first_row + found.row_count:
        return None
    return pl.read_parquet(io.BytesIO(found.data), columns=["raw_xml"])["raw_xml"][raw_row - found.first_row]


def execution_raw_xml(connection: Connection, exec_id: str, *, is_cancellation: bool = False) -> str | None:
    """The raw text of the stored execution ``exec_id`` (a cancellation: ``is_cancellation``);
    None when it is not stored."""
    e = flex_executions.c
    found = connection.execute(
        select(e.import_session_id, e.raw_row).where(e.exec_id == exec_id, e.is_cancellation.is_(is_cancellation))
    ).first()
    return None if found is None else raw_xml_of(connection, found.import_session_id, "execution", found.raw_row)


def history_accounts(connection: Connection) -> list[str]:
    """Every account with stored executions or derived rows."""
    found: set[str] = set()
    for column in (flex_executions.c.account, trade_lifecycles.c.account, lifecycle_gaps.c.account):
        found.update(connection.execute(select(column).distinct()).scalars())
    return sorted(found)


# ============================================================================ lifecycles (derived)


def replace_lifecycles(
    connection: Connection,
    accounts: Sequence[str],
    lifecycles: pl.DataFrame,
    gaps: pl.DataFrame,
    *,
    built_at: datetime,
) -> dict[str, int]:
    """Replace the lifecycles and gaps of ``accounts`` (the matcher's frames; lifecycles with
    ``opening_unit``) inside the caller's transaction, and link each lifecycle to the trade it
    was promoted to (trades.lifecycle_id): a promotion survives every rebuild.

    Returns counts: lifecycles, open, closed, gaps, promoted (lifecycles linked to a trade),
    promoted_orphaned (promoted trades whose lifecycle no longer exists: the history changed
    under them), promoted_changed (linked trades whose contracts or net P&L differ from their
    lifecycle's now).
    """
    accounts = list(accounts)
    connection.execute(delete(trade_lifecycles).where(trade_lifecycles.c.account.in_(accounts)))
    connection.execute(delete(lifecycle_gaps).where(lifecycle_gaps.c.account.in_(accounts)))
    promoted = _fetch_frame(
        connection,
        select(trades.c.id, trades.c.lifecycle_id, trades.c.contracts,
               trades.c.net_pnl.cast(Float()).label("trade_net_pnl"))
        .where(trades.c.trade_source == IMPORTED_SOURCE, trades.c.lifecycle_id.is_not(None),
               trades.c.account.in_(accounts)),
        {"id": pl.Int64(), "lifecycle_id": pl.String(), "contracts": pl.Int64(), "trade_net_pnl": pl.Float64()},
    )
    frame = lifecycles.select(LIFECYCLE_STORED).join(
        promoted.rename({"id": "promoted_trade_id"}), on="lifecycle_id", how="left"
    )
    changed = 0 if promoted.height == 0 else frame.filter(
        pl.col("promoted_trade_id").is_not_null()
        & ((pl.col("quantity") != pl.col("contracts"))
           | ((pl.col("net_pnl").fill_null(0.0) - pl.col("trade_net_pnl").fill_null(0.0)).abs() > 0.005))
    ).height
    # In lifecycle id order: the unique index then grows at its end, much cheaper than
    # inserts all over it (reports sort as they need).
    stored = frame.select(*LIFECYCLE_STORED, pl.lit(built_at).alias("built_at"), "promoted_trade_id").sort(
        "lifecycle_id")
    bulk_insert(connection, trade_lifecycles, stored)
    bulk_insert(connection, lifecycle_gaps, gaps.select(*GAP_STORED, pl.lit(built_at).alias("built_at")))
    linked = int(frame["promoted_trade_id"].is_not_null().sum())
    open_count = int((lifecycles["exit_type"] == "open").sum())
    return {
        "lifecycles": lifecycles.height,
        "open": open_count,
        "closed": lifecycles.height - open_count,
        "gaps": gaps.height,
        "promoted": linked,
        "promoted_orphaned": promoted.height - linked,
        "promoted_changed": changed,
    }


# ============================================================================ reports (read-only)


def _report_row(mapping) -> dict[str, Any]:
    row = dict(mapping)
    for name in _REPORT_FLOATS:
        if row.get(name) is not None:
            row[name] = round(float(row[name]), 6)
    return row


def list_lifecycles(
    engine: Engine,
    *,
    account: str | None = None,
    symbol: str | None = None,
    sort: str = "date",
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Lifecycles as dicts (every stored column, ``promoted_trade_id`` included).

    ``sort``: "date" (opening date, oldest first), "pnl" (net P&L, worst first; open ones
    last), "symbol" (underlying, then opening date). ``status``: "open" or "closed".
    ``symbol`` is an underlying (case and blanks ignored).
    """
    if sort not in LIFECYCLE_SORTS:
        raise ValueError(f"sort must be one of {', '.join(LIFECYCLE_SORTS)}, not {sort!r}")
    if status is not None and status not in LIFECYCLE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(LIFECYCLE_STATUSES)}, not {status!r}")
    table = trade_lifecycles.c
    query = select(trade_lifecycles)
    if account is not None:
        query = query.where(table.account == account)
    if symbol is not None:
        query = query.where(table.underlying == symbol.strip().upper())
    if status == "open":
        query = query.where(table.exit_type == "open")
    elif status == "closed":
        query = query.where(table.exit_type != "open")
    # NULL ordering differs between SQLite and PostgreSQL; "is null" first makes it explicit.
    by_date = (table.open_date.is_(None), table.open_date, table.close_date.is_(None), table.close_date)
    if sort == "pnl":
        query = query.order_by(table.net_pnl.is_(None), table.net_pnl, *by_date, table.id)
    elif sort == "symbol":
        query = query.order_by(table.underlying, *by_date, table.id)
    else:
        query = query.order_by(*by_date, table.id)
    with engine.connect() as connection:
        return [_report_row(row) for row in connection.execute(query).mappings()]


#: How many closed lifecycles :func:`lifecycle_summary` lists, best net P&L first.
SUMMARY_TOP = 10


def lifecycle_summary(engine: Engine, *, account: str | None = None) -> dict[str, Any]:
    """What the lifecycles hold, computed in SQL (no lifecycle list in memory: there may be
    hundreds of thousands).

    ``lifecycles``, ``open``, ``closed`` and ``gaps`` (counts); ``by_exit_type``: a count for
    every exit type (schema.LIFECYCLE_EXIT_TYPES, zeros included); ``net_pnl_by_currency``:
    the closed lifecycles' net P&L summed per currency (rounded to cents; a lifecycle without
    net P&L counts 0, one without currency under "unknown"), currencies in alphabetical
    order; ``top_closed``: the SUMMARY_TOP closed lifecycles with the highest net P&L (none
    counts as 0; ties by opening date, closing date, id) as :func:`list_lifecycles` rows.
    ``account``: only that account's.
    """
    table = trade_lifecycles.c
    mine = table.account == account if account is not None else true()
    is_closed = table.exit_type != "open"
    net = func.coalesce(table.net_pnl, 0.0)
    with engine.connect() as connection:
        by_exit = dict(connection.execute(
            select(table.exit_type, func.count()).where(mine).group_by(table.exit_type)).all())
        sums = connection.execute(
            select(table.currency, func.sum(net)).where(mine, is_closed).group_by(table.currency)).all()
        top = connection.execute(
            select(trade_lifecycles).where(mine, is_closed)
            .order_by(net.desc(), table.open_date.is_(None), table.open_date, table.close_date.is_(None),
                      table.close_date, table.id)
            .limit(SUMMARY_TOP)
        ).mappings().all()
        gaps = lifecycle_gaps.c
        gap_count = connection.execute(
            select(func.count()).select_from(lifecycle_gaps)
            .where(gaps.account == account if account is not None else true())
        ).scalar_one()
    totals: dict[str, float] = {}
    for currency, total in sums:
        key = currency or "unknown"
        totals[key] = totals.get(key, 0.0) + float(total or 0.0)
    counts = {exit_type: int(by_exit.get(exit_type, 0)) for exit_type in LIFECYCLE_EXIT_TYPES}
    counts.update({exit_type: int(count) for exit_type, count in by_exit.items() if exit_type not in counts})
    total = sum(counts.values())
    return {
        "lifecycles": total,
        "open": counts.get("open", 0),
        "closed": total - counts.get("open", 0),
        "gaps": int(gap_count),
        "by_exit_type": counts,
        "net_pnl_by_currency": {key: round(totals[key], 2) for key in sorted(totals)},
        "top_closed": [_report_row(row) for row in top],
    }


def list_gaps(engine: Engine, *, account: str | None = None) -> list[dict[str, Any]]:
    """Closings without an opening among the stored executions, oldest first."""
    table = lifecycle_gaps.c
    query = select(lifecycle_gaps).order_by(table.trade_date.is_(None), table.trade_date, table.id)
    if account is not None:
        query = query.where(table.account == account)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def list_import_sessions(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The latest import sessions first, at most ``limit``."""
    table = flex_import_sessions.c
    query = select(flex_import_sessions).order_by(table.started_at.desc(), table.id.desc()).limit(limit)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def history_status(engine: Engine) -> dict[str, Any]:
    """What the trade history holds.

    ``accounts``: per account, executions stored (all, options), the first and last trade
    date; ``executions`` and ``option_events`` in total; ``lifecycles``: total, open, closed,
    promoted, closed_not_promoted; ``gaps``; ``import_sessions`` (count) and ``last_import``
    (the latest session's row, or None); ``built_at``: when lifecycles were last rebuilt.
    """
    e = flex_executions.c
    lc = trade_lifecycles.c
    with engine.connect() as connection:
        per_account = connection.execute(
            select(
                e.account,
                func.count().label("executions"),
                func.count(e.put_call).label("option_executions"),
                func.min(e.trade_date).label("first_trade_date"),
                func.max(e.trade_date).label("last_trade_date"),
            ).group_by(e.account).order_by(e.account)
        ).mappings().all()
        is_open = lc.exit_type == "open"
        lifecycle_counts = connection.execute(
            select(
                func.count().label("total"),
                func.count(case((is_open, 1))).label("open"),
                func.count(case((~is_open, 1))).label("closed"),
                func.count(lc.promoted_trade_id).label("promoted"),
                func.count(case((and_(~is_open, lc.promoted_trade_id.is_(None)), 1))).label("closed_not_promoted"),
                func.max(lc.built_at).label("built_at"),
            )
        ).mappings().one()
        gaps = connection.execute(select(func.count()).select_from(lifecycle_gaps)).scalar_one()
        events = connection.execute(select(func.count()).select_from(flex_option_events)).scalar_one()
        sessions = connection.execute(select(func.count()).select_from(flex_import_sessions)).scalar_one()
    latest = list_import_sessions(engine, limit=1)
    counts = dict(lifecycle_counts)
    built_at = counts.pop("built_at")
    return {
        "accounts": [dict(row) for row in per_account],
        "executions": sum(row["executions"] for row in per_account),
        "option_events": events,
        "lifecycles": counts,
        "gaps": gaps,
        "import_sessions": sessions,
        "last_import": latest[0] if latest else None,
        "built_at": built_at,
    }
