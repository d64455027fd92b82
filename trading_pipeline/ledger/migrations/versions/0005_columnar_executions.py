"""Executions stored column-wise: flex_executions keeps a narrow row per execution (id,
import_session_id, raw_row, account, exec_id, is_cancellation, put_call, trade_date); the
other typed columns move into each import session's Parquet chunks (flex_raw_chunks, kind
"execution") beside the raw text, which is kept exactly.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

Data moves per import session: its rows are read in ``raw_row`` order, its chunks
(RAW_CHUNK_ROWS rows each, one String column ``raw_xml``) are rewritten with the typed
columns added, then the moved columns are dropped (batch mode on SQLite: the table is
rebuilt). The downgrade puts the columns back, fills them from the chunks and rewrites the
chunks with the raw text alone. Everything here is frozen: it does not import the package's
storage code, which will keep changing.
"""

from __future__ import annotations

import io

import polars as pl
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHUNK_ROWS = 20_000

# The columns that move (0004's flex_executions columns besides the narrow ones), with their
# SQL type at 0004 and their polars dtype in the chunks.
_MOVED: dict[str, tuple[sa.types.TypeEngine, pl.DataType, bool]] = {  # name: (SQL type, dtype, nullable)
    "line": (sa.Integer(), pl.Int64(), False),
    "trade_id": (sa.String(length=64), pl.String(), True),
    "orig_trade_id": (sa.String(length=64), pl.String(), True),
    "order_id": (sa.String(length=64), pl.String(), True),
    "asset_category": (sa.String(length=16), pl.String(), True),
    "symbol": (sa.Text(), pl.String(), True),
    "underlying": (sa.String(length=32), pl.String(), True),
    "con_id": (sa.BigInteger(), pl.Int64(), True),
    "strike": (sa.Float(), pl.Float64(), True),
    "expiry": (sa.Date(), pl.Date(), True),
    "multiplier": (sa.Float(), pl.Float64(), True),
    "currency": (sa.String(length=8), pl.String(), True),
    "buy_sell": (sa.String(length=4), pl.String(), True),
    "quantity": (sa.Float(), pl.Float64(), True),
    "price": (sa.Float(), pl.Float64(), True),
    "commission": (sa.Float(), pl.Float64(), True),
    "open_close": (sa.String(length=1), pl.String(), True),
    "event": (sa.String(length=16), pl.String(), True),
    "date_time_utc": (sa.DateTime(timezone=True), pl.Datetime("us", "UTC"), True),
}
_NARROW: dict[str, tuple[sa.types.TypeEngine, pl.DataType]] = {
    "account": (sa.String(length=32), pl.String()),
    "exec_id": (sa.String(length=64), pl.String()),
    "is_cancellation": (sa.Boolean(), pl.Boolean()),
    "put_call": (sa.String(length=1), pl.String()),
    "trade_date": (sa.Date(), pl.Date()),
}
# The chunk layout the package reads at 0005 (ledger.history.STORED_EXECUTION_COLUMNS, then raw_xml).
_CHUNK_COLUMNS = (
    "line", "account", "exec_id", "is_cancellation", "trade_id", "orig_trade_id", "order_id", "asset_category",
    "symbol", "underlying", "con_id", "put_call", "strike", "expiry", "multiplier", "currency", "buy_sell",
    "quantity", "price", "commission", "open_close", "event", "date_time_utc", "trade_date",
)
_DTYPES = {name: dtype for name, (_, dtype, _) in _MOVED.items()} | {
    name: dtype for name, (_, dtype) in _NARROW.items()}


def _executions(with_moved: bool) -> sa.Table:
    columns = [sa.Column("id", sa.Integer()), sa.Column("import_session_id", sa.Integer()),
               sa.Column("raw_row", sa.Integer())]
    columns += [sa.Column(name, sql_type) for name, (sql_type, _) in _NARROW.items()]
    if with_moved:
        columns += [sa.Column(name, sql_type) for name, (sql_type, _, _) in _MOVED.items()]
    return sa.Table("flex_executions", sa.MetaData(), *columns)


_CHUNKS = sa.table(
    "flex_raw_chunks",
    sa.column("import_session_id", sa.Integer()), sa.column("kind", sa.String()), sa.column("first_row", sa.Integer()),
    sa.column("row_count", sa.Integer()), sa.column("data", sa.LargeBinary()),
)


def _utc(value):
    """A stored time as an aware UTC instant (SQLite gives it back naive, in UTC)."""
    from datetime import timezone

    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _raw_texts(connection, session_id: int) -> list[tuple[int, int, pl.Series]]:
    found = connection.execute(
        sa.select(_CHUNKS.c.first_row, _CHUNKS.c.row_count, _CHUNKS.c.data)
        .where(_CHUNKS.c.import_session_id == session_id, _CHUNKS.c.kind == "execution")
        .order_by(_CHUNKS.c.first_row)
    ).all()
    return [(first, count, pl.read_parquet(io.BytesIO(data))) for first, count, data in found]


def _replace_chunks(connection, session_id: int, frame: pl.DataFrame) -> None:
    connection.execute(sa.delete(_CHUNKS).where(_CHUNKS.c.import_session_id == session_id,
                                                _CHUNKS.c.kind == "execution"))
    rows = []
    for start in range(0, frame.height, CHUNK_ROWS):
        buffer = io.BytesIO()
        frame.slice(start, CHUNK_ROWS).write_parquet(buffer, compression="zstd", compression_level=1,
                                                     statistics=False)
        rows.append({"import_session_id": session_id, "kind": "execution", "first_row": start,
                     "row_count": min(CHUNK_ROWS, frame.height - start), "data": buffer.getvalue()})
    if rows:
        connection.execute(sa.insert(_CHUNKS), rows)


def _session_ids(connection) -> list[int]:
    table = _executions(with_moved=False)
    return list(connection.execute(sa.select(table.c.import_session_id).distinct()
                                   .order_by(table.c.import_session_id)).scalars())


def upgrade() -> None:
    connection = op.get_bind()
    table = _executions(with_moved=True)
    for session_id in _session_ids(connection):
        rows = connection.execute(
            sa.select(table.c.raw_row, *(table.c[name] for name in _CHUNK_COLUMNS))
            .where(table.c.import_session_id == session_id).order_by(table.c.raw_row)
        ).all()
        values = list(zip(*rows))
        raw_rows = list(values[0])
        if raw_rows != list(range(len(raw_rows))):
            raise RuntimeError(f"import session {session_id}: its executions' raw rows are not 0..n-1")
        columns = []
        for name, column_values in zip(_CHUNK_COLUMNS, values[1:], strict=True):
            if name == "date_time_utc":
                column_values = [_utc(value) for value in column_values]
            columns.append(pl.Series(name, list(column_values), dtype=_DTYPES[name]))
        texts = _raw_texts(connection, session_id)
        raw_xml = pl.concat([chunk["raw_xml"] for _, _, chunk in texts]) if texts else pl.Series(
            "raw_xml", [], pl.String())
        if raw_xml.len() != len(raw_rows):
            raise RuntimeError(f"import session {session_id}: {len(raw_rows)} executions but "
                               f"{raw_xml.len()} raw texts")
        _replace_chunks(connection, session_id, pl.DataFrame([*columns, raw_xml.rename("raw_xml")]))
    with op.batch_alter_table("flex_executions") as batch:
        for name in _MOVED:
            batch.drop_column(name)


def downgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("flex_executions") as batch:
        for name, (sql_type, _, _) in _MOVED.items():
            # Added nullable, filled below, then made NOT NULL where 0004 had it.
            batch.add_column(sa.Column(name, sql_type, nullable=True))
    table = _executions(with_moved=True)
    for session_id in _session_ids(connection):
        ids = dict(connection.execute(
            sa.select(table.c.raw_row, table.c.id).where(table.c.import_session_id == session_id)).all())
        chunks = _raw_texts(connection, session_id)
        frame = pl.concat([chunk for _, _, chunk in chunks]) if chunks else None
        if frame is None or frame.height != len(ids):
            raise RuntimeError(f"import session {session_id}: the chunks do not hold its executions")
        moved = frame.select(list(_MOVED)).with_row_index("raw_row")
        statement = sa.update(table).where(table.c.id == sa.bindparam("row_id")).values(
            **{name: sa.bindparam(f"v_{name}") for name in _MOVED})
        connection.execute(statement, [
            {"row_id": ids[row["raw_row"]], **{f"v_{name}": row[name] for name in _MOVED}}
            for row in moved.iter_rows(named=True)
        ])
        _replace_chunks(connection, session_id, frame.select("raw_xml"))
    with op.batch_alter_table("flex_executions") as batch:
        for name, (sql_type, _, nullable) in _MOVED.items():
            if not nullable:
                batch.alter_column(name, existing_type=sql_type, nullable=False)
