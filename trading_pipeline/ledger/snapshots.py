"""Repository of snapshots: entry and exit snapshots (one per trade) and position snapshots
(one per trade per trading day).

- Entry and exit: :func:`save_entry_snapshot` / :func:`save_exit_snapshot` write the trade's
  snapshot unless it already has one. A stored *failed* capture is the one exception: a new
  capture replaces it (so a capture that failed at the fill can be taken again); a failure
  never replaces a good snapshot. :func:`record_failed_entry_snapshot` (and exit) store a
  failed capture with its error text. Each returns the stored row and whether this call
  wrote it.
- Position snapshots: :func:`save_position_snapshots` upserts by (trade, trading day), all
  rows in one transaction: re-running a day's snapshot replaces that day's values.

The fields are kept as one JSON document (``core.snapshots.fields_to_json``: dates as ISO
text); :func:`get_entry_snapshot` gives them back as Python values. Every write is one
transaction and takes its time from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Table, select, update

from trading_pipeline.core.snapshots import POSITION_FIELD_NAMES, fields_from_json, fields_to_json
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import (
    SNAPSHOT_SOURCES,
    SNAPSHOT_STATUSES,
    entry_snapshots,
    exit_snapshots,
    position_snapshots,
    scan_candidates,
    staged_opportunities,
    to_money,
)
from trading_pipeline.ledger.staging import insert_or_ignore, require_aware, require_day

FAILED = "failed"
_POSITION_MONEY = ("current_premium", "current_pnl", "stock_price", "spy_price")


@dataclass(frozen=True)
class StoredSnapshot:
    """One entry or exit snapshot row; ``fields`` as Python values (None for a failed one)."""

    id: int
    kind: str  # entry / exit
    trade_id: int
    captured_at: datetime
    source: str
    status: str
    fields_present: int | None
    fields: dict | None
    error: str | None
    data_quality_score: float | None = None  # entry
    critical_fields_present: int | None = None  # entry
    trade_quality_score: float | None = None  # exit

    @property
    def failed(self) -> bool:
        return self.status == FAILED


@dataclass(frozen=True)
class SaveResult:
    snapshot: StoredSnapshot
    written: bool  # False: the trade already had a snapshot that was not a failed one


# ============================================================================ entry / exit


def save_entry_snapshot(engine: Engine, trade_id: int, *, captured_at: datetime, status: str, fields: Mapping,
                        fields_present: int, data_quality_score: float, critical_fields_present: int,
                        error: str | None = None, source: str = "live") -> SaveResult:
    """Store the trade's entry snapshot (replacing a failed one only)."""
    values = dict(captured_at=require_aware(captured_at, "captured_at"), source=_source(source),
                  status=_status(status), data_quality_score=data_quality_score,
                  critical_fields_present=critical_fields_present, fields_present=fields_present,
                  fields=fields_to_json(fields), error=error)
    return _save(engine, entry_snapshots, "entry", trade_id, values)


def record_failed_entry_snapshot(engine: Engine, trade_id: int, *, captured_at: datetime, error: str,
                                 source: str = "live") -> SaveResult:
    """Store a failed capture (status failed, the error kept) unless a good snapshot exists."""
    values = dict(captured_at=require_aware(captured_at, "captured_at"), source=_source(source), status=FAILED,
                  data_quality_score=None, critical_fields_present=None, fields_present=None, fields=None,
                  error=error)
    return _save(engine, entry_snapshots, "entry", trade_id, values)


def save_exit_snapshot(engine: Engine, trade_id: int, *, captured_at: datetime, status: str, fields: Mapping,
                       fields_present: int, trade_quality_score: float | None, error: str | None = None,
                       source: str = "live") -> SaveResult:
    """Store the trade's exit snapshot (replacing a failed one only)."""
    values = dict(captured_at=require_aware(captured_at, "captured_at"), source=_source(source),
                  status=_status(status), trade_quality_score=trade_quality_score, fields_present=fields_present,
                  fields=fields_to_json(fields), error=error)
    return _save(engine, exit_snapshots, "exit", trade_id, values)


def record_failed_exit_snapshot(engine: Engine, trade_id: int, *, captured_at: datetime, error: str,
                                source: str = "live") -> SaveResult:
    values = dict(captured_at=require_aware(captured_at, "captured_at"), source=_source(source), status=FAILED,
                  trade_quality_score=None, fields_present=None, fields=None, error=error)
    return _save(engine, exit_snapshots, "exit", trade_id, values)


def get_entry_snapshot(engine: Engine, trade_id: int) -> StoredSnapshot | None:
    return _get(engine, entry_snapshots, "entry", trade_id)


def get_exit_snapshot(engine: Engine, trade_id: int) -> StoredSnapshot | None:
    return _get(engine, exit_snapshots, "exit", trade_id)


def list_entry_snapshots(engine: Engine, *, status: str | None = None) -> list[StoredSnapshot]:
    return _list(engine, entry_snapshots, "entry", status)


def list_exit_snapshots(engine: Engine, *, status: str | None = None) -> list[StoredSnapshot]:
    return _list(engine, exit_snapshots, "exit", status)


def _save(engine: Engine, table: Table, kind: str, trade_id: int, values: dict) -> SaveResult:
    with write_transaction(engine) as connection:
        inserted = insert_or_ignore(connection, table, {"trade_id": trade_id, **values}, ["trade_id"])
        if inserted is not None:
            return SaveResult(_read(connection, table, kind, trade_id), written=True)
        existing = _read(connection, table, kind, trade_id, lock=True)
        # Only a failed capture gives way, and only to an attempt that is not itself a failure
        # (retrying a failure refreshes nothing worth keeping).
        if existing.failed and values["status"] != FAILED:
            connection.execute(update(table).where(table.c.trade_id == trade_id).values(**values))
            return SaveResult(_read(connection, table, kind, trade_id), written=True)
        return SaveResult(existing, written=False)


def _read(connection: Connection, table: Table, kind: str, trade_id: int, *, lock: bool = False):
    query = select(table).where(table.c.trade_id == trade_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return None if row is None else _stored(row, kind)


def _get(engine: Engine, table: Table, kind: str, trade_id: int) -> StoredSnapshot | None:
    with engine.connect() as connection:
        return _read(connection, table, kind, trade_id)


def _list(engine: Engine, table: Table, kind: str, status: str | None) -> list[StoredSnapshot]:
    query = select(table).order_by(table.c.trade_id)
    if status is not None:
        query = query.where(table.c.status == status)
    with engine.connect() as connection:
        return [_stored(row, kind) for row in connection.execute(query)]


def _stored(row, kind: str) -> StoredSnapshot:
    m = row._mapping
    return StoredSnapshot(
        id=m["id"], kind=kind, trade_id=m["trade_id"], captured_at=m["captured_at"], source=m["source"],
        status=m["status"], fields_present=m["fields_present"],
        fields=None if m["fields"] is None else fields_from_json(m["fields"], kind),
        error=m["error"],
        data_quality_score=m.get("data_quality_score"), critical_fields_present=m.get("critical_fields_present"),
        trade_quality_score=m.get("trade_quality_score"),
    )


def _status(status: str) -> str:
    if status not in SNAPSHOT_STATUSES:
        raise ValueError(f"snapshot status must be one of {', '.join(SNAPSHOT_STATUSES)}, not {status!r}")
    return status


def _source(source: str) -> str:
    if source not in SNAPSHOT_SOURCES:
        raise ValueError(f"snapshot source must be one of {', '.join(SNAPSHOT_SOURCES)}, not {source!r}")
    return source


# ============================================================================ position snapshots


def save_position_snapshots(engine: Engine, rows: Iterable[Mapping[str, Any]], *,
                            dagster_run_id: str | None = None) -> int:
    """Upsert position snapshots (the 16 fields each) by trade and trading day, in one
    transaction; the number of rows written."""
    prepared = [_position_values(row, dagster_run_id) for row in rows]
    if not prepared:
        return 0
    with write_transaction(engine) as connection:
        for values in prepared:
            _upsert_position(connection, values)
    return len(prepared)


def _position_values(row: Mapping[str, Any], dagster_run_id: str | None) -> dict:
    values = {name: row.get(name) for name in POSITION_FIELD_NAMES}
    if values["trade_id"] is None:
        raise ValueError("a position snapshot needs its trade_id")
    require_day(values["trading_day"], "trading_day")
    require_aware(values["captured_at"], "captured_at")
    for name in _POSITION_MONEY:
        values[name] = None if values[name] is None else to_money(values[name])
    values["dagster_run_id"] = dagster_run_id
    return values


def _upsert_position(connection: Connection, values: dict) -> None:
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(position_snapshots).values(**values)
    changed = {name: statement.excluded[name] for name in values if name not in ("trade_id", "trading_day")}
    connection.execute(statement.on_conflict_do_update(index_elements=["trade_id", "trading_day"], set_=changed))


def list_position_snapshots(engine: Engine, *, trade_id: int | None = None,
                            trading_day: date | None = None) -> list[dict]:
    """Position snapshots (money as float), by trading day then trade."""
    query = select(position_snapshots).order_by(position_snapshots.c.trading_day, position_snapshots.c.trade_id)
    if trade_id is not None:
        query = query.where(position_snapshots.c.trade_id == trade_id)
    if trading_day is not None:
        query = query.where(position_snapshots.c.trading_day == require_day(trading_day, "trading_day"))
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        for name in _POSITION_MONEY:
            if isinstance(row[name], Decimal):
                row[name] = float(row[name])
    return rows


# ============================================================================ entry context


def staging_context(engine: Engine, staged_opportunity_id: int | None) -> dict | None:
    """What staging and the screener knew of a trade: the staged row's sector, margin per
    contract and strike selection outcome, and its scan row's IV rank, score, grade, rank and
    profit probability. None when the trade was not staged (or the row is gone)."""
    if staged_opportunity_id is None:
        return None
    query = (
        select(
            staged_opportunities.c.sector, staged_opportunities.c.margin_per_contract,
            staged_opportunities.c.strike_selection_outcome,
            scan_candidates.c.iv_rank_pct, scan_candidates.c.score, scan_candidates.c.grade,
            scan_candidates.c.rank, scan_candidates.c.profit_prob_pct,
        )
        .select_from(staged_opportunities.outerjoin(
            scan_candidates, scan_candidates.c.id == staged_opportunities.c.scan_candidate_id))
        .where(staged_opportunities.c.id == staged_opportunity_id)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    values = dict(row._mapping)
    if isinstance(values["margin_per_contract"], Decimal):
        values["margin_per_contract"] = float(values["margin_per_contract"])
    return values
