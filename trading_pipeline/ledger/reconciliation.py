"""Repository of reconciliation runs: every comparison of the ledger with the broker, kept.

One row of ``reconciliation_runs`` per run of ``tp reconcile-positions`` / ``tp sync-orders``
and per reconciliation a job makes at its start, dry run or not: what kind it was
(``positions`` or ``orders``), what started it (``command``, ``job start``, ``monitor``, ...),
how many discrepancies it found, how many changes it applied (0 for a dry run) and its whole
report as JSON. A dry run writes its row too, so every look at the broker leaves a trace.

:func:`record_reconciliation_run_in` writes inside the caller's transaction, so a run that
applies changes records them and its row in one commit (no half writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from trading_pipeline.ledger.db import jsonable, write_transaction
from trading_pipeline.ledger.schema import reconciliation_runs
from trading_pipeline.ledger.staging import require_aware, row_to

RECONCILIATION_KINDS = ("positions", "orders")


@dataclass(frozen=True)
class ReconciliationRun:
    id: int
    kind: str
    started_at: datetime
    dry_run: bool
    trigger: str
    discrepancies: int
    applied: int
    report: Any
    dagster_run_id: str | None


def _values(kind: str, *, started_at: datetime, dry_run: bool, trigger: str, discrepancies: int, applied: int,
            report: Any, dagster_run_id: str | None) -> dict[str, Any]:
    if kind not in RECONCILIATION_KINDS:
        raise ValueError(f"a reconciliation run is one of {', '.join(RECONCILIATION_KINDS)}, not {kind!r}")
    if not trigger or len(trigger) > 32:
        raise ValueError(f"a reconciliation run needs a trigger of 1 to 32 characters, not {trigger!r}")
    if discrepancies < 0 or applied < 0:
        raise ValueError("discrepancies and applied changes are counts (0 or more)")
    if dry_run and applied:
        raise ValueError("a dry run applies nothing")
    return {"kind": kind, "started_at": require_aware(started_at, "started_at"), "dry_run": bool(dry_run),
            "trigger": trigger, "discrepancies": int(discrepancies), "applied": int(applied),
            "report": jsonable(report) if report is not None else None, "dagster_run_id": dagster_run_id}


def record_reconciliation_run_in(connection: Connection, kind: str, *, started_at: datetime, dry_run: bool,
                                 trigger: str, discrepancies: int, applied: int, report: Any = None,
                                 dagster_run_id: str | None = None) -> int:
    """Write one run inside the caller's transaction; its id."""
    values = _values(kind, started_at=started_at, dry_run=dry_run, trigger=trigger, discrepancies=discrepancies,
                     applied=applied, report=report, dagster_run_id=dagster_run_id)
    return connection.execute(insert(reconciliation_runs).values(**values).returning(reconciliation_runs.c.id)).scalar_one()


def record_reconciliation_run(engine: Engine, kind: str, *, started_at: datetime, dry_run: bool, trigger: str,
                              discrepancies: int, applied: int, report: Any = None,
                              dagster_run_id: str | None = None) -> int:
    """:func:`record_reconciliation_run_in` in a transaction of its own."""
    with write_transaction(engine) as connection:
        return record_reconciliation_run_in(connection, kind, started_at=started_at, dry_run=dry_run,
                                            trigger=trigger, discrepancies=discrepancies, applied=applied,
                                            report=report, dagster_run_id=dagster_run_id)


def get_reconciliation_run(engine: Engine, run_id: int) -> ReconciliationRun | None:
    with engine.connect() as connection:
        row = connection.execute(select(reconciliation_runs).where(reconciliation_runs.c.id == run_id)).first()
    return row_to(ReconciliationRun, row) if row is not None else None


def list_reconciliation_runs(engine: Engine, *, kind: str | None = None, dagster_run_id: str | None = None,
                             limit: int = 20) -> list[ReconciliationRun]:
    """The latest runs first, filtered by what is given."""
    query = (select(reconciliation_runs)
             .order_by(reconciliation_runs.c.started_at.desc(), reconciliation_runs.c.id.desc()).limit(limit))
    if kind is not None:
        query = query.where(reconciliation_runs.c.kind == kind)
    if dagster_run_id is not None:
        query = query.where(reconciliation_runs.c.dagster_run_id == dagster_run_id)
    with engine.connect() as connection:
        return [row_to(ReconciliationRun, row) for row in connection.execute(query)]


# ============================================================================ reads for the reconciliations
#
# What the order and position reconciliations read of the execution tables (owned by
# ledger/orders.py): plain reads, returned as that module's own row types.

_CHUNK = 500  # bounded IN lists


def fills_by_exec_id(engine: Engine, exec_ids) -> dict[str, "Fill"]:
    """The ledger's fills of these exec ids, by exec id."""
    from trading_pipeline.ledger.orders import Fill
    from trading_pipeline.ledger.schema import fills

    wanted = list(dict.fromkeys(exec_ids))
    found: dict[str, Fill] = {}
    with engine.connect() as connection:
        for start in range(0, len(wanted), _CHUNK):
            rows = connection.execute(select(fills).where(fills.c.exec_id.in_(wanted[start:start + _CHUNK])))
            found.update({row.exec_id: row_to(Fill, row) for row in rows})
    return found


def broker_order_rows(engine: Engine, *, perm_ids=(), since: datetime | None = None,
                      until: datetime | None = None) -> list["BrokerOrderRecord"]:
    """The ledger's broker_orders rows with one of ``perm_ids``, plus (when a window is given)
    those first seen or updated in [since, until)."""
    from sqlalchemy import and_, or_

    from trading_pipeline.ledger.orders import BrokerOrderRecord
    from trading_pipeline.ledger.schema import broker_orders

    conditions = []
    wanted = sorted(set(perm_ids))
    for start in range(0, len(wanted), _CHUNK):
        conditions.append(broker_orders.c.perm_id.in_(wanted[start:start + _CHUNK]))
    if since is not None or until is not None:
        window = []
        for column in (broker_orders.c.first_seen_at, broker_orders.c.updated_at):
            bounds = []
            if since is not None:
                bounds.append(column >= require_aware(since, "since"))
            if until is not None:
                bounds.append(column < require_aware(until, "until"))
            window.append(and_(*bounds))
        conditions.append(or_(*window))
    if not conditions:
        return []
    query = select(broker_orders).where(or_(*conditions)).order_by(broker_orders.c.id)
    with engine.connect() as connection:
        return [row_to(BrokerOrderRecord, row) for row in connection.execute(query)]


def intent_ids_by_ref(engine: Engine, order_refs) -> dict[str, int]:
    """The ids of the intents with these order refs (dry-run ones included), by ref."""
    from trading_pipeline.ledger.schema import order_intents

    wanted = sorted({ref for ref in order_refs if ref})
    found: dict[str, int] = {}
    with engine.connect() as connection:
        for start in range(0, len(wanted), _CHUNK):
            rows = connection.execute(select(order_intents.c.order_ref, order_intents.c.id)
                                      .where(order_intents.c.order_ref.in_(wanted[start:start + _CHUNK])))
            found.update({row.order_ref: row.id for row in rows})
    return found


def filled_by_perm_id(engine: Engine, perm_ids) -> dict[int, int]:
    """Contracts the ledger's fills hold per broker order (perm id)."""
    from sqlalchemy import func

    from trading_pipeline.ledger.schema import fills

    wanted = sorted(set(perm_ids))
    found: dict[int, int] = {}
    with engine.connect() as connection:
        for start in range(0, len(wanted), _CHUNK):
            rows = connection.execute(select(fills.c.perm_id, func.sum(fills.c.quantity))
                                      .where(fills.c.perm_id.in_(wanted[start:start + _CHUNK]))
                                      .group_by(fills.c.perm_id))
            found.update({int(perm_id): int(total) for perm_id, total in rows})
    return found
