"""Repository of staged opportunities: the trades the Sunday session prepared for a session.

Every write is one transaction and takes the time it happens as ``at`` (timezone-aware,
from the caller's Clock: repositories never read the clock). Money columns come back as
Decimal with six places (see ``schema.Money``); floats given are stored as the number
they print as.

Also home of what the execution repositories (staging, orders, risk) share:
:class:`LedgerStateError` and two small helpers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Float, Table, insert, or_, select, update

from trading_pipeline.core.intents import IntentStatus
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import (
    OPTION_RIGHTS,
    STAGED_STATUSES,
    Money,
    STRIKE_SELECTION_OUTCOMES,
    order_events,
    order_intents,
    staged_opportunities,
    to_money,
)


class LedgerStateError(TradingPipelineError):
    """A write the ledger's current state forbids (cancelling a trade already sent, sending an
    intent twice, deciding an approval after its deadline...). Nothing was written."""


# --- shared by the execution repositories --------------------------------------------------


def require_aware(moment: datetime | None, name: str = "at") -> datetime | None:
    """``moment`` unchanged when it is None or timezone-aware; ValueError otherwise."""
    if moment is None:
        return None
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (from the run's Clock), not {moment!r}")
    return moment


def require_day(day: Any, name: str) -> date:
    if isinstance(day, datetime) or not isinstance(day, date):
        raise ValueError(f"{name} must be a datetime.date, not {day!r}")
    return day


def insert_or_ignore(connection: Connection, table: Table, values: Mapping[str, Any], key: Sequence[str]):
    """INSERT unless a row with the same unique ``key`` exists; the new primary key, or None.

    ON CONFLICT DO NOTHING on both backends: two writers racing on the same key never raise,
    the second simply finds the first's row (on PostgreSQL it waits for the first to commit).
    """
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    primary_key = list(table.primary_key.columns)[0]
    statement = (
        dialect_insert(table).values(**values).on_conflict_do_nothing(index_elements=list(key)).returning(primary_key)
    )
    return connection.execute(statement).scalar_one_or_none()


def row_to(cls, row) -> Any:
    """A frozen dataclass from a result row with the same names (extra columns ignored)."""
    mapping = row._mapping
    return cls(**{field.name: mapping[field.name] for field in fields(cls) if field.name in mapping})


# --- staged opportunities -------------------------------------------------------------------

# Statuses after the entry order went out: such a trade is cancelled at the broker, not here.
SUBMITTED_STATUSES = frozenset({"SUBMITTED", "WORKING", "PARTIAL", "FILLED"})
# History: no further change through update_staged.
FINAL_STAGED_STATUSES = frozenset({"CANCELLED", "ABANDONED", "FILLED", "EXPIRED"})
# Before any order: what the 9:15 / 9:28 checks move between.
PRE_SUBMISSION_STATUSES = frozenset({"STAGED", "VALIDATED", "STALE", "ADJUSTED"})


@dataclass(frozen=True)
class StagedOpportunity:
    id: int
    session_day: date
    scan_import_id: int | None
    scan_candidate_id: int | None
    symbol: str
    sector: str | None
    expiration: date
    strike: Decimal
    right: str
    contracts: int
    staged_stock_price: Decimal | None
    staged_bid: Decimal | None
    staged_ask: Decimal | None
    staged_mid: Decimal | None
    limit_price: Decimal | None
    delta: float | None
    iv: float | None
    otm_pct: float | None
    dte: int | None
    margin_per_contract: Decimal | None
    status: str
    status_reason: str | None
    validation_reasons: list[str] | None
    strike_selection_outcome: str | None
    original_strike: Decimal | None
    live_delta: float | None
    strike_selection_method: str | None
    strike_selection_reason: str | None
    dagster_run_id: str | None
    staged_at: datetime
    updated_at: datetime

    def describe(self) -> str:
        return f"#{self.id} {self.symbol} {self.expiration.isoformat()} {self.strike.normalize():f} {self.right}"


_TIMESTAMPS = ("staged_at", "updated_at")
STAGED_FIELDS = tuple(column.name for column in staged_opportunities.columns if column.name not in ("id", *_TIMESTAMPS))
_REQUIRED_FIELDS = ("session_day", "symbol", "expiration", "strike", "contracts")


def _checked_fields(values: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    """The values normalized (symbol upper case, right P/C), or ValueError naming the problem."""
    unknown = sorted(set(values) - set(STAGED_FIELDS))
    if unknown:
        raise ValueError(f"unknown staged opportunity fields: {', '.join(unknown)}")
    checked = dict(values)
    if new:
        missing = [name for name in _REQUIRED_FIELDS if checked.get(name) is None]
        if missing:
            raise ValueError(f"staged opportunity lacks: {', '.join(missing)}")
        checked.setdefault("status", "STAGED")
        checked.setdefault("right", "P")
    for name in ("session_day", "expiration"):
        if name in checked:
            require_day(checked[name], name)
    if "symbol" in checked:
        symbol = str(checked["symbol"]).strip().upper()
        if not symbol:
            raise ValueError("a staged opportunity needs a symbol")
        checked["symbol"] = symbol
    if "right" in checked:
        right = str(checked["right"]).strip().upper()
        if right not in OPTION_RIGHTS:
            raise ValueError(f"right must be P or C, not {checked['right']!r}")
        checked["right"] = right
    if "status" in checked and checked["status"] not in STAGED_STATUSES:
        raise ValueError(f"unknown staged status {checked['status']!r} (one of {', '.join(STAGED_STATUSES)})")
    outcome = checked.get("strike_selection_outcome")
    if outcome is not None:
        outcome = getattr(outcome, "value", outcome)  # core.strike_selection.StrikeOutcome
        if outcome not in STRIKE_SELECTION_OUTCOMES:
            raise ValueError(f"unknown strike selection outcome {outcome!r}")
        checked["strike_selection_outcome"] = outcome
    if "contracts" in checked:
        contracts = checked["contracts"]
        if isinstance(contracts, bool) or not isinstance(contracts, int) or contracts < 0:
            raise ValueError(f"contracts must be a whole number, 0 or more, not {contracts!r}")
    for name, value in checked.items():
        column_type = staged_opportunities.c[name].type
        if isinstance(column_type, Money):
            checked[name] = to_money(value)  # ValueError now, not inside the transaction
        elif isinstance(column_type, Float) and value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number or None, not {value!r}")
    reasons = checked.get("validation_reasons")
    if reasons is not None:
        if isinstance(reasons, str) or not all(isinstance(reason, str) for reason in reasons):
            raise ValueError("validation_reasons must be a list of texts")
        checked["validation_reasons"] = list(reasons)
    return checked


def insert_staged(engine: Engine, rows: Iterable[Mapping[str, Any]], *, at: datetime) -> list[int]:
    """Store staged opportunities (all or none); their ids, in the order given.

    Each row holds staged_opportunities columns: session_day, symbol, expiration, strike and
    contracts are required; status defaults to STAGED and right to P.
    """
    require_aware(at)
    checked = [_checked_fields(row, new=True) for row in rows]
    ids = []
    with write_transaction(engine) as connection:
        for row in checked:
            statement = insert(staged_opportunities).values(**row, staged_at=at, updated_at=at)
            ids.append(connection.execute(statement.returning(staged_opportunities.c.id)).scalar_one())
    return ids


def get_staged(engine: Engine, staged_id: int) -> StagedOpportunity | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(staged_opportunities).where(staged_opportunities.c.id == staged_id)
        ).first()
    return row_to(StagedOpportunity, row) if row is not None else None


def list_staged(
    engine: Engine, session_day: date | None = None, statuses: Iterable[str] | None = None
) -> list[StagedOpportunity]:
    """Staged opportunities, oldest session first, then in staging order (id)."""
    query = select(staged_opportunities)
    if session_day is not None:
        query = query.where(staged_opportunities.c.session_day == require_day(session_day, "session_day"))
    if statuses is not None:
        wanted = list(statuses)
        unknown = sorted(set(wanted) - set(STAGED_STATUSES))
        if unknown:
            raise ValueError(f"unknown staged status(es): {', '.join(unknown)}")
        query = query.where(staged_opportunities.c.status.in_(wanted))
    query = query.order_by(staged_opportunities.c.session_day, staged_opportunities.c.id)
    with engine.connect() as connection:
        return [row_to(StagedOpportunity, row) for row in connection.execute(query)]


def _locked_staged(connection: Connection, staged_id: int) -> StagedOpportunity:
    # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers): a cancel
    # and an order being claimed for the same trade take turns.
    row = connection.execute(
        select(staged_opportunities).where(staged_opportunities.c.id == staged_id).with_for_update()
    ).first()
    if row is None:
        raise LedgerStateError(f"staged opportunity {staged_id} does not exist")
    return row_to(StagedOpportunity, row)


def update_staged(engine: Engine, staged_id: int, *, at: datetime, **fields_to_set: Any) -> StagedOpportunity:
    """Change fields of one staged opportunity (status, prices, strike selection...).

    Refused (LedgerStateError) once it is CANCELLED, ABANDONED, FILLED or EXPIRED: those rows
    are history. Fill-driven changes (SUBMITTED, PARTIAL, FILLED) are made by the orders
    repository itself when its intents move.
    """
    require_aware(at)
    if not fields_to_set:
        raise ValueError("nothing to update")
    checked = _checked_fields(fields_to_set, new=False)
    for name in _REQUIRED_FIELDS:
        if name in checked and checked[name] is None:
            raise ValueError(f"{name} cannot be emptied")
    with write_transaction(engine) as connection:
        current = _locked_staged(connection, staged_id)
        if current.status in FINAL_STAGED_STATUSES:
            raise LedgerStateError(
                f"staged opportunity {current.describe()} is {current.status}: it can no longer change"
            )
        connection.execute(
            update(staged_opportunities)
            .where(staged_opportunities.c.id == staged_id)
            .values(**checked, updated_at=at)
        )
        return _locked_staged(connection, staged_id)


def cancel_staged(
    engine: Engine, staged_id: int, *, at: datetime, reason: str = "cancelled by request"
) -> StagedOpportunity:
    """Cancel a staged opportunity that has not been sent; its unsent intents are cancelled too.

    Refused (LedgerStateError) when its order went out (status SUBMITTED, WORKING, PARTIAL or
    FILLED, or an intent that is sent, live or has fills): cancel at the broker instead.
    Cancelling a cancelled one changes nothing; an ABANDONED or EXPIRED one is refused.
    """
    require_aware(at)
    with write_transaction(engine) as connection:
        current = _locked_staged(connection, staged_id)
        if current.status == "CANCELLED":
            return current
        if current.status in SUBMITTED_STATUSES:
            raise LedgerStateError(
                f"staged opportunity {current.describe()} was already submitted (status {current.status}): "
                "cancel its order at the broker instead"
            )
        if current.status in FINAL_STAGED_STATUSES:
            raise LedgerStateError(f"staged opportunity {current.describe()} is already {current.status}")
        intents = order_intents.c
        sent = connection.execute(
            select(intents.order_ref, intents.status).where(
                intents.staged_opportunity_id == staged_id,
                intents.dry_run.is_(False),
                or_(
                    intents.status.not_in([IntentStatus.INTENDED.value, IntentStatus.CANCELLED.value]),
                    intents.filled_quantity > 0,
                ),
            )
        ).all()
        if sent:
            listed = ", ".join(f"{ref} ({status})" for ref, status in sent)
            raise LedgerStateError(
                f"staged opportunity {current.describe()} has orders that went to the broker: {listed}; "
                "cancel them at the broker instead"
            )
        # Its intents not sent yet can never be sent now (mark_sent claims only INTENDED ones).
        unsent = connection.execute(
            select(intents.id).where(
                intents.staged_opportunity_id == staged_id, intents.status == IntentStatus.INTENDED.value
            )
        ).scalars().all()
        message = f"staged opportunity cancelled: {reason}"
        for intent_id in unsent:
            connection.execute(
                update(order_intents)
                .where(intents.id == intent_id)
                .values(status=IntentStatus.CANCELLED.value, error=message, updated_at=at)
            )
            connection.execute(
                insert(order_events).values(
                    intent_id=intent_id, event_time=at, source="ledger", status=IntentStatus.CANCELLED.value,
                    message=message,
                )
            )
        connection.execute(
            update(staged_opportunities)
            .where(staged_opportunities.c.id == staged_id)
            .values(status="CANCELLED", status_reason=reason, updated_at=at)
        )
        return _locked_staged(connection, staged_id)
