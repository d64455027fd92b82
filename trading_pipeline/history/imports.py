"""Import IBKR Flex statements into the ledger's trade history, and rebuild the lifecycles.

:func:`read_statement_file` reads a saved statement and :func:`fetch_statement` fetches one
from the Flex Web Service (trading_pipeline.broker.flex_web), each with the account's date
format; :func:`import_statement` stores a parsed statement; :func:`rebuild_lifecycles`
matches every stored execution again.

What an import does (one transaction: all of it or nothing):

* Counts every execution of the statement once: ``total = new + duplicate + skipped +
  errors``. ``skipped``: another account's executions when ``account`` is given. ``errors``:
  rows the reader flagged (a price that is not a number, ...); they are **not stored** (a
  row that could not be read has no reliable execution id, and storing it would turn the
  corrected row of a later export into a "duplicate"); their line and reason are in
  ``error_rows``. ``duplicate``: executions already stored, or repeated in the statement
  (by execution id; a cancellation is keyed apart from what it cancels).
* Stores the new executions raw (a narrow row each for deduplication; their typed
  columns and the whole element with every attribute kept, compressed per session: see
  trading_pipeline.ledger.history) and the new ``<OptionEAE>`` rows, under one import
  session. Matching runs beside the inserts (on a second thread), the compression beside
  the inserts and the storing of the lifecycles (on a third); on SQLite the connection gets
  a large page cache for the transaction (given back after).
* Rebuilds the lifecycles and gaps of the accounts that got new executions from **all**
  their stored executions (this import's taken from memory, the earlier ones read back):
  cancellations are linked to their originals over every import, so a correction that
  arrives in a later statement than its original cancels it. Lifecycles promoted to
  trades stay linked (by lifecycle id).

A dry run reads the ledger only to count duplicates and writes nothing (no session). A
file that cannot be used raises InputFileError before anything is written (no session);
an import that fails while writing leaves nothing but a session with status "failed" and
the error.

Order of executions for matching: time (``date_time_utc``), then non-cancellations before
cancellations, then execution id. It depends only on what is stored, not on the order the
statements were imported: a cancellation follows the execution it cancels even when the two
came in different statements imported in any order, and among bookings of one trade id at
the same time the original (IBKR's first exec id suffix, ``.01``) comes before its rebook
(``.02``), so the cancellation takes the original. (Within one file, executions at the same
second are thus taken by execution id rather than by line.)

Settings (besides broker.flex_web's IBKR_FLEX_TOKEN_n / IBKR_FLEX_QUERY_ID_n /
IBKR_FLEX_ACCOUNT_n, n = 1..3):

| variable                   | what |
|----------------------------|------|
| ``IBKR_FLEX_DATE_FORMAT_n``  | date format of account n's Flex query: ``yyyyMMdd``, ``yyyy-MM-dd``, ``MM/dd/yyyy``, ``dd/MM/yyyy`` or ``auto`` (the default: detected; a file whose dates could be read both ways is refused, asking for this setting) |
| ``IBKR_FLEX_DATE_FORMAT``    | the same for statements read without an account, or of an account without its own setting |
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, update

from trading_pipeline.broker.flex_web import MAX_ACCOUNTS, FlexAccountSettings, fetch_account_statement
from trading_pipeline.core.calendar import new_york_date
from trading_pipeline.core.lifecycles import deduplicate_executions, link_cancellations, match_lifecycles
from trading_pipeline.errors import ConfigurationError, InputFileError
from trading_pipeline.ingest.flex import DATE_FORMATS, FlexStatementData, parse_flex, read_flex
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.history import (
    LOADED_EXECUTION_COLUMNS,
    MATCH_COLUMNS,
    bulk_write_cache,
    history_accounts,
    insert_executions_deferred,
    insert_import_session,
    insert_option_events,
    load_executions,
    lock_history,
    replace_lifecycles,
    stored_event_keys,
    stored_execution_keys,
)
from trading_pipeline.ledger.schema import IMPORT_SOURCES, flex_import_sessions

log = logging.getLogger(__name__)

DATE_FORMAT_VARIABLE = "IBKR_FLEX_DATE_FORMAT"
ERROR_ROWS_LISTED = 50
# Execution order for matching (see the module text); no time: last.
_ORDER = ("date_time_utc", "is_cancellation", "exec_id")
_KEY = ("exec_id", "is_cancellation")


@dataclass(frozen=True)
class ImportResult:
    """What an import found and did. ``session_id`` is None for a dry run."""

    session_id: int | None
    source: str
    file_name: str
    accounts: tuple[str, ...]
    statement_kind: str
    from_date: date | None
    to_date: date | None
    total: int
    new: int
    duplicate: int
    skipped: int
    errors: int
    dry_run: bool
    error_rows: tuple[tuple[int, str], ...]  # (line, reason), the first 50 by line
    option_events_new: int = 0
    option_events_duplicate: int = 0
    option_events_errors: int = 0
    rebuild: Mapping[str, Any] | None = field(default=None, compare=False)  # None: nothing new (or dry run)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (dates as ISO text, tuples as lists)."""
        result = asdict(self)
        result["accounts"] = list(self.accounts)
        result["error_rows"] = [[line, reason] for line, reason in self.error_rows]
        for name in ("from_date", "to_date"):
            result[name] = result[name].isoformat() if result[name] is not None else None
        result["rebuild"] = dict(self.rebuild) if self.rebuild is not None else None
        return result


# ============================================================================ reading statements


def _known_format(value: str, variable: str) -> str:
    for known in DATE_FORMATS:
        if value.strip().lower() == known.lower():
            return known
    raise ConfigurationError(f"{variable}={value.strip()!r} is not a Flex date format: use one of "
                             f"{', '.join(DATE_FORMATS)}")


def date_format_for(account: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The Flex date format of ``account``: IBKR_FLEX_DATE_FORMAT_n of the slot whose
    IBKR_FLEX_ACCOUNT_n names it, else IBKR_FLEX_DATE_FORMAT, else "auto"."""
    env = os.environ if env is None else env
    if account and account.strip():
        for slot in range(1, MAX_ACCOUNTS + 1):
            if env.get(f"IBKR_FLEX_ACCOUNT_{slot}", "").strip() == account.strip():
                variable = f"{DATE_FORMAT_VARIABLE}_{slot}"
                if env.get(variable, "").strip():
                    return _known_format(env[variable], variable)
                break
    if env.get(DATE_FORMAT_VARIABLE, "").strip():
        return _known_format(env[DATE_FORMAT_VARIABLE], DATE_FORMAT_VARIABLE)
    return "auto"


def read_statement_file(path: Path | str, *, account: str | None = None,
                        env: Mapping[str, str] | None = None) -> FlexStatementData:
    """Parse the saved Flex statement at ``path`` with ``account``'s date format.

    InputFileError (file, line, attribute, reason) when the file cannot be used.
    """
    return read_flex(path, date_format=date_format_for(account, env=env))


def fetch_statement(account: str | None = None, *, env: Mapping[str, str] | None = None,
                    **fetch_options: Any) -> tuple[str, FlexStatementData]:
    """Fetch and parse the statement of a configured account from the Flex Web Service.

    Returns (a label naming account and query, for the import's file name; the statement).
    ``account`` None: the only account configured. ``fetch_options`` go to
    broker.flex_web.fetch_statement (poll_interval, timeout, clock, sleep...). Errors:
    ConfigurationError, FlexWebServiceError (never showing the token), InputFileError.
    """
    settings = FlexAccountSettings.from_env(env)
    configured = settings.account(account)
    body = fetch_account_statement(settings, configured.account, env=env, **fetch_options)
    label = f"flex_web_service:{configured.account}:query {configured.query_id}"
    data = parse_flex(body, source=label, date_format=date_format_for(configured.account, env=env))
    return label, data


# ============================================================================ importing


@dataclass(frozen=True, eq=False)
class _Plan:
    """A statement sorted out before touching the ledger."""

    accounts: tuple[str, ...]
    from_date: date | None
    to_date: date | None
    total: int
    skipped: int
    error_rows: tuple[tuple[int, str], ...]
    errors: int
    candidates: pl.DataFrame  # valid executions of the wanted accounts, first of each key
    repeated: int  # executions repeated within the statement
    events: pl.DataFrame  # valid option events of the wanted accounts, first of each key
    events_repeated: int
    events_errors: int


def _plan(data: FlexStatementData, file_name: str, account: str | None) -> _Plan:
    executions = data.executions
    row_accounts = executions["account"].drop_nulls().unique(maintain_order=True).to_list()
    known = list(dict.fromkeys([*data.accounts, *row_accounts]))
    if account is not None:
        account = account.strip()
        if account not in known:
            raise InputFileError(
                file_name,
                f"the statement has no account {account} (it has: {', '.join(known) or 'none'})",
            )
        accounts: tuple[str, ...] = (account,)
    else:
        accounts = tuple(known)

    wanted = pl.col("account").is_in(list(accounts)) if account is not None else pl.lit(True)
    selected = executions.filter(wanted)
    # A valid row must have what the ledger keys it by (the reader guarantees both today).
    problems = (
        pl.when(pl.col("error").is_not_null()).then(pl.col("error"))
        .when(pl.col("account").is_null()).then(pl.lit("no account (accountId) on the row or its statement"))
        .when(pl.col("exec_id").is_null()).then(pl.lit("no execution id"))
    )
    selected = selected.with_columns(problems.alias("problem"))
    invalid = selected.filter(pl.col("problem").is_not_null()).sort("line")
    valid = selected.filter(pl.col("problem").is_null()).drop("problem")
    candidates = deduplicate_executions(valid)

    events = data.option_events.filter(wanted if account is not None else pl.lit(True))
    bad_events = events.filter(pl.col("error").is_not_null() | pl.col("account").is_null()).height
    events = events.filter(pl.col("error").is_null() & pl.col("account").is_not_null()).with_columns(
        _event_key().alias("event_key")
    )
    unique_events = events.unique(subset=["event_key"], keep="first", maintain_order=True)

    statements = [s for s in data.statements if s.account_id in accounts]
    from_dates = [s.from_date for s in statements if s.from_date is not None]
    to_dates = [s.to_date for s in statements if s.to_date is not None]
    trade_dates = valid["trade_date"].drop_nulls()
    from_date = min(from_dates) if from_dates else (trade_dates.min() if trade_dates.len() else None)
    to_date = max(to_dates) if to_dates else (trade_dates.max() if trade_dates.len() else None)
    return _Plan(
        accounts=accounts,
        from_date=from_date,
        to_date=to_date,
        total=executions.height,
        skipped=executions.height - selected.height,
        error_rows=tuple(invalid.select("line", "problem").head(ERROR_ROWS_LISTED).iter_rows()),
        errors=invalid.height,
        candidates=candidates,
        repeated=valid.height - candidates.height,
        events=unique_events,
        events_repeated=events.height - unique_events.height,
        events_errors=bad_events,
    )


def _event_key() -> pl.Expr:
    """What identifies an OptionEAE row across re-exports, as text."""
    parts = [
        pl.col("account"),
        pl.col("date").dt.strftime("%Y-%m-%d"),
        pl.col("transaction_type"),
        pl.coalesce(pl.col("con_id").cast(pl.String), pl.col("symbol")),
        pl.col("quantity").cast(pl.String),
        pl.col("trade_id"),
    ]
    return pl.concat_str([part.fill_null("") for part in parts], separator="|")


def _check_call(source: str, at: datetime) -> None:
    if source not in IMPORT_SOURCES:
        raise ValueError(f"source must be one of {', '.join(IMPORT_SOURCES)}, not {source!r}")
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime (from the run's Clock)")


def import_statement(
    engine: Engine,
    data: FlexStatementData,
    *,
    source: str,
    file_name: str,
    account: str | None = None,
    dry_run: bool = False,
    at: datetime,
    dagster_run_id: str | None = None,
    timings: dict[str, float] | None = None,
    cpu_timings: dict[str, float] | None = None,
) -> ImportResult:
    """Import a parsed statement (see the module text). ``account``: import only its
    executions (the others are skipped); the statement must have it. ``timings``, when
    given, receives the seconds each step took (for benchmarks and diagnosis); ``cpu_timings``
    the CPU seconds of the process (every thread) in each."""
    _check_call(source, at)
    steps = _Steps(timings, cpu_timings)
    plan = _plan(data, file_name, account)
    steps.done("sort out the statement")
    result = dict(
        source=source, file_name=file_name, accounts=plan.accounts, statement_kind=data.kind,
        from_date=plan.from_date, to_date=plan.to_date, total=plan.total, skipped=plan.skipped,
        errors=plan.errors, error_rows=plan.error_rows, option_events_errors=plan.events_errors,
    )
    if dry_run:
        with engine.connect() as connection:
            new = _not_stored(plan.candidates, stored_execution_keys(connection, plan.accounts))
            new_events = _new_events(plan.events, stored_event_keys(connection, plan.accounts))
        return ImportResult(
            session_id=None, **result, new=new.height, duplicate=plan.repeated + plan.candidates.height - new.height,
            dry_run=True, option_events_new=new_events.height,
            option_events_duplicate=plan.events_repeated + plan.events.height - new_events.height,
        )
    session = dict(
        started_at=at, source=source, file_name=file_name, account=account, accounts=list(plan.accounts),
        statement_kind=data.kind, from_date=plan.from_date, to_date=plan.to_date, dry_run=False,
        total=plan.total, skipped_count=plan.skipped, error_count=plan.errors, dagster_run_id=dagster_run_id,
    )
    try:
        with write_transaction(engine) as connection, bulk_write_cache(connection):
            lock_history(connection)
            new = _not_stored(plan.candidates, stored_execution_keys(connection, plan.accounts))
            new_events = _new_events(plan.events, stored_event_keys(connection, plan.accounts))
            counts = dict(
                new=new.height, duplicate=plan.repeated + plan.candidates.height - new.height,
                option_events_new=new_events.height,
                option_events_duplicate=plan.events_repeated + plan.events.height - new_events.height,
            )
            # The accounts that get new executions: their lifecycles are rebuilt from their
            # stored option executions and the new ones.
            changed = new["account"].unique(maintain_order=True).to_list()
            everything = None
            if changed:
                # Only the columns matching reads: sorting and filtering a million rows costs
                # by the column. The new executions come from memory, not read back.
                stored = load_executions(connection, changed, options_only=True, columns=MATCH_COLUMNS)
                arrived = new.select([pl.col(name).cast(LOADED_EXECUTION_COLUMNS[name]) for name in MATCH_COLUMNS]) \
                    .filter(pl.col("put_call").is_not_null())
                everything = pl.concat([stored.select(MATCH_COLUMNS), arrived]) if stored.height else arrived
            session_id = insert_import_session(connection, {
                **session, "new_count": counts["new"], "duplicate_count": counts["duplicate"],
                "option_event_count": counts["option_events_new"], "status": "completed",
            })
            steps.done("read the ledger")
            rebuild = None
            # Matching (polars and numpy, mostly without the GIL) runs on a second thread
            # while the driver inserts the executions' narrow rows, and a third compresses
            # their chunks meanwhile and while the lifecycles are stored: two cores busy.
            with ThreadPoolExecutor(max_workers=1) as pool, _frequent_gil_handover():
                matching = pool.submit(_match, everything, as_of=new_york_date(at)) if everything is not None \
                    else None
                chunks = insert_executions_deferred(connection, session_id, new)
                try:
                    insert_option_events(connection, session_id, new_events)
                    steps.done("store executions (matching beside)")
                    matched = matching.result() if matching is not None else None
                    steps.done("match: the rest after the inserts")
                except BaseException:
                    chunks.abandon()
                    raise
            try:
                if matched is not None:
                    lifecycles, gaps = matched
                    rebuild = {"accounts": changed, "option_executions": everything.height,
                               **replace_lifecycles(connection, changed, lifecycles, gaps, built_at=at)}
                    steps.done("store lifecycles (compression beside)")
            except BaseException:
                chunks.abandon()
                raise
            chunks.store()
            steps.done("store the compressed chunks")
            connection.execute(
                update(flex_import_sessions).where(flex_import_sessions.c.id == session_id)
                .values(finished_at=at + timedelta(seconds=steps.elapsed()))
            )
        steps.done("commit")
    except Exception as problem:
        _record_failure(engine, session, problem, at + timedelta(seconds=steps.elapsed()))
        raise
    log.info("Flex import %s (%s): %d execution(s), %d new, %d duplicate, %d skipped, %d with errors",
             file_name, ", ".join(plan.accounts), plan.total, counts["new"], counts["duplicate"], plan.skipped,
             plan.errors)
    return ImportResult(session_id=session_id, **result, **counts, dry_run=False, rebuild=rebuild)


#: The GIL switch interval while the driver's insert loop runs beside matching: the loop
#: gives the GIL up only every switch interval (5 ms by default), so the matching thread,
#: which needs it briefly between its polars and numpy calls, would mostly wait.
_SHARED_SWITCH_INTERVAL = 0.0001


@contextmanager
def _frequent_gil_handover() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(_SHARED_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class _Steps:
    """Seconds per step (wall, and the process's CPU) into a caller's dicts (nothing when
    there are none)."""

    def __init__(self, timings: dict[str, float] | None, cpu_timings: dict[str, float] | None = None):
        self.timings = timings
        self.cpu_timings = cpu_timings
        self.started = self.mark = time.perf_counter()
        self.cpu_mark = time.process_time()

    def done(self, step: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self.timings is not None:
            self.timings[step] = self.timings.get(step, 0.0) + now - self.mark
        if self.cpu_timings is not None:
            self.cpu_timings[step] = self.cpu_timings.get(step, 0.0) + cpu - self.cpu_mark
        self.mark, self.cpu_mark = now, cpu

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _not_stored(candidates: pl.DataFrame, stored_keys: pl.DataFrame) -> pl.DataFrame:
    if stored_keys.height == 0:
        return candidates
    return candidates.join(stored_keys.select(_KEY), on=list(_KEY), how="anti", maintain_order="left")


def _new_events(events: pl.DataFrame, stored_keys: set[str]) -> pl.DataFrame:
    if not stored_keys:
        return events
    return events.filter(~pl.col("event_key").is_in(list(stored_keys)))


def _record_failure(engine: Engine, session: dict[str, Any], problem: Exception, finished_at: datetime) -> None:
    """Keep a failed import's session (nothing else was written). Best effort: the original
    error is what the caller must see, so a failure here is only logged."""
    try:
        with write_transaction(engine) as connection:
            insert_import_session(connection, {
                **session, "finished_at": finished_at, "new_count": 0, "duplicate_count": 0,
                "option_event_count": 0, "status": "failed", "error": f"{type(problem).__name__}: {problem}"[:2000],
            })
    except Exception:  # noqa: BLE001 - see above
        log.exception("could not record the failed import of %s", session.get("file_name"))


# ============================================================================ lifecycles


def _match(executions: pl.DataFrame, *, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lifecycles (with ``opening_unit``) and gaps of ``executions``: every stored option
    execution of some accounts, in any order."""
    ordered = executions.sort(list(_ORDER), nulls_last=True, maintain_order=True)
    linked = link_cancellations(ordered)
    matched = match_lifecycles(linked, as_of=as_of)
    return _with_opening_units(matched.lifecycles, linked), matched.gaps


def _with_opening_units(lifecycles: pl.DataFrame, executions: pl.DataFrame) -> pl.DataFrame:
    """``opening_unit``: the opening order of the lifecycle's first opening execution (the
    matcher's unit of one opening), or "exec:<id>" for an execution without an order id."""
    units = executions.filter(~pl.col("is_cancellation")).select(
        pl.col("exec_id").alias("first_open_exec_id"),
        pl.coalesce(pl.col("order_id"), pl.lit("exec:") + pl.col("exec_id")).alias("opening_unit"),
    )
    return (
        lifecycles.with_columns(pl.col("open_exec_ids").list.first().alias("first_open_exec_id"))
        .join(units, on="first_open_exec_id", how="left", maintain_order="left")
        .drop("first_open_exec_id")
    )


def rebuild_lifecycles(engine: Engine, *, as_of: date, at: datetime,
                       accounts: Sequence[str] | None = None) -> dict[str, Any]:
    """Match every stored execution of ``accounts`` (default: every account in the history)
    again and replace their lifecycles and gaps, in one transaction.

    ``as_of`` flags open lifecycles whose expiry has passed. Returns the accounts and counts
    (option_executions matched, lifecycles, open, closed, gaps, promoted, promoted_orphaned,
    promoted_changed).
    """
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime (from the run's Clock)")
    with write_transaction(engine) as connection, bulk_write_cache(connection):
        lock_history(connection)
        chosen = list(accounts) if accounts is not None else history_accounts(connection)
        executions = load_executions(connection, chosen, options_only=True, columns=MATCH_COLUMNS).select(MATCH_COLUMNS)
        lifecycles, gaps = _match(executions, as_of=as_of)
        counts = replace_lifecycles(connection, chosen, lifecycles, gaps, built_at=at)
    return {"accounts": chosen, "option_executions": executions.height, **counts}


__all__ = [
    "DATE_FORMAT_VARIABLE",
    "ImportResult",
    "date_format_for",
    "fetch_statement",
    "import_statement",
    "read_statement_file",
    "rebuild_lifecycles",
]
