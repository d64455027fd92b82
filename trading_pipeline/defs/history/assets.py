"""Trade history (TAAD) as assets: raw Flex imports, lifecycles, promoted and enriched trades.

Thin shells over the services in ``trading_pipeline.history`` (imports, promotion,
enrichment) and the ledger's queries (``ledger.history``); each materialization reports the
counts a person checks, and its whole result as the ``result`` JSON metadata (the ``taad-*``
commands print from it).

* ``flex_raw_imports``: one Flex statement imported into the ledger (raw executions kept
  immutable with all their attributes, deduplicated by execution id; an import session
  recorded). From a file (run config ``path``, optional ``account``) or, without a path,
  from the Flex Web Service for a configured account. A dry run imports nothing: it is
  reported as an *observation* of the asset (no materialization), and the lifecycles step
  after it is skipped.
* ``trade_lifecycles``: rebuilt from every stored execution (derived data, replaced whole in
  one transaction; promotions survive by lifecycle id).
* ``promoted_trades``: closed lifecycles promoted into ``trades`` (``ibkr_import``); a dry
  run is an observation, like the import's.
* ``enriched_trades``: entry and exit snapshots of promoted trades, from the trades alone or
  with the broker's daily bars (``with_ibkr``, client id 1: pool ``ibkr_client_1``).

No partitions, on purpose: an import is idempotent by execution id, so "re-materializing a
file" has nothing to replace, and lifecycles are derived from all executions at once (a
closing in one file matches an opening in another), so they cannot be cut by file or by day.
A partition per file would promise a replace-by-partition the data does not have. Writers
share the pool ``trade_history`` (one step at a time), because a rebuild replaces the
lifecycle tables whole.
"""

import math
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from trading_pipeline.core.calendar import new_york_date
from trading_pipeline.core.clock import SystemClock
from trading_pipeline.defs.history.config import (
    EnrichConfig,
    FlexImportConfig,
    LifecyclesConfig,
    PromoteConfig,
    resolve_flex_account,
)
from trading_pipeline.defs.metadata import markdown_table
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.defs.staging.assets import BROKER_POOL, connected_broker
from trading_pipeline.errors import TradingPipelineError

HISTORY_POOL = "trade_history"
GROUP = "history"
LIFECYCLE_PREVIEW = ["account", "underlying", "right", "strike", "expiry", "side", "quantity", "open_price",
                     "close_price", "exit_type", "open_date", "close_date", "net_pnl", "confidence"]


def jsonable(value):
    """A value as JSON can hold it: dates as ISO text, tuples as lists, NaN as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return jsonable(value.item())
    return value


def _now() -> datetime:
    return SystemClock().now()


# ============================================================================ raw imports


def import_metadata(result: dict) -> dict:
    """What a person checks of an import (``result`` is ImportResult.as_dict())."""
    errors = result.get("error_rows") or []
    preview = pl.DataFrame(
        {"line": [int(line) for line, _ in errors], "reason": [str(reason) for _, reason in errors]},
        schema={"line": pl.Int64, "reason": pl.String},
    )
    from_date, to_date = result.get("from_date"), result.get("to_date")
    return {
        "session_id": result.get("session_id") if result.get("session_id") is not None else "none (dry run)",
        "source": result.get("source") or "",
        "file_name": result.get("file_name") or "",
        "accounts": ", ".join(result.get("accounts") or ()),
        "statement_kind": result.get("statement_kind") or "",
        "date_range": f"{from_date or '?'} to {to_date or '?'}",
        "dry_run": bool(result.get("dry_run")),
        "total": int(result.get("total") or 0),
        "new": int(result.get("new") or 0),
        "duplicate": int(result.get("duplicate") or 0),
        "skipped": int(result.get("skipped") or 0),
        "errors": int(result.get("errors") or 0),
        "dagster/row_count": int(result.get("new") or 0),
        "error_rows_preview": markdown_table(preview, limit=20),
        "result": dg.MetadataValue.json(result),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"xml", "sqlite"},
    pool=HISTORY_POOL,
    output_required=False,
    description="Executions of IBKR Flex statements (Activity or Trade Confirmation), raw and immutable, "
                "deduplicated by execution id; one import session per statement.",
)
def flex_raw_imports(context: dg.AssetExecutionContext, config: FlexImportConfig, ledger: LedgerResource):
    """One statement imported: from ``path``, else the Flex Web Service of ``account``.

    A bad file fails the step with its file, line, attribute and reason, and nothing is
    written; a Web Service failure (bad token, bad query id, timeout) fails it with a message
    that names the account, never the token.
    """
    from trading_pipeline.history.imports import fetch_statement, import_statement, read_statement_file

    engine = ledger.engine()
    account = resolve_flex_account(config.account)
    try:
        if config.path:
            path = Path(config.path).expanduser()
            data = read_statement_file(path, account=account)
            source, file_name = "file", path.name
        else:
            file_name, data = fetch_statement(account, poll_interval=max(config.poll_interval_seconds, 0.0))
            source = "web_service"
        result = import_statement(engine, data, source=source, file_name=file_name, account=account,
                                  dry_run=config.dry_run, at=_now(), dagster_run_id=context.run.run_id)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    summary = jsonable(result.as_dict())
    metadata = import_metadata(summary)
    context.log.info(
        f"{'dry run: ' if config.dry_run else ''}{summary['total']} execution(s) in {file_name}: "
        f"{summary['new']} new, {summary['duplicate']} duplicate, {summary['skipped']} skipped, "
        f"{summary['errors']} with errors"
    )
    if config.dry_run:
        # Nothing was written: an observation, not a materialization, and no rebuild after it.
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=metadata))
        return
    yield dg.Output(None, metadata=metadata)


# ============================================================================ lifecycles


def lifecycle_metadata(summary: dict, rebuilt: dict) -> dict:
    """The asset's metadata from :func:`trading_pipeline.ledger.history.lifecycle_summary`:
    counts by exit type, open, closed, gaps, the closed lifecycles' net P&L per currency
    (amounts in different currencies are never added together) and the best ten."""
    top = summary["top_closed"]
    preview = pl.DataFrame([{name: row.get(name) for name in LIFECYCLE_PREVIEW} for row in top]) if top \
        else pl.DataFrame({name: [] for name in LIFECYCLE_PREVIEW})
    return {
        "dagster/row_count": summary["lifecycles"],
        "closed": summary["closed"],
        "open": summary["open"],
        "gaps": summary["gaps"],
        "by_exit_type": dg.MetadataValue.json(summary["by_exit_type"]),
        "net_pnl_by_currency": dg.MetadataValue.json(summary["net_pnl_by_currency"]),
        "top_10_by_net_pnl": markdown_table(preview, limit=10),
        "rebuild": dg.MetadataValue.json(jsonable(rebuilt)),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "sqlite"},
    deps=[flex_raw_imports],
    pool=HISTORY_POOL,
    description="Option trade lifecycles (opening + closings, P&L, confidence) rebuilt from every stored execution; "
                "closings without an opening are kept as gaps.",
)
def trade_lifecycles(context: dg.AssetExecutionContext, config: LifecyclesConfig,
                     ledger: LedgerResource) -> dg.MaterializeResult:
    """One row per lifecycle: (account, underlying, right, strike, expiry), one opening and
    its closings of one exit type. Rebuilt whole from the stored executions."""
    from trading_pipeline.history.imports import rebuild_lifecycles
    from trading_pipeline.ledger.history import lifecycle_summary

    engine = ledger.engine()
    at = _now()
    try:
        as_of = date.fromisoformat(config.as_of) if config.as_of else new_york_date(at)
    except ValueError:
        raise dg.Failure(description=f"as_of {config.as_of!r} is not a date (YYYY-MM-DD)") from None
    try:
        rebuilt = rebuild_lifecycles(engine, as_of=as_of, at=at)
        summary = lifecycle_summary(engine)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    metadata = lifecycle_metadata(summary, rebuilt)
    metadata["as_of"] = as_of.isoformat()
    totals = ", ".join(f"{currency} {total:,.2f}" for currency, total in summary["net_pnl_by_currency"].items())
    context.log.info(f"{summary['lifecycles']} lifecycle(s) ({summary['closed']} closed, {summary['open']} open), "
                     f"{summary['gaps']} gap(s); net P&L of the closed ones: {totals or 'none'}")
    return dg.MaterializeResult(metadata=metadata)


# ============================================================================ promotion


@dg.asset(
    group_name=GROUP,
    kinds={"sqlite"},
    deps=[trade_lifecycles],
    pool=HISTORY_POOL,
    output_required=False,
    description="Closed lifecycles promoted into the ledger's trades (trade_source ibkr_import), idempotently.",
)
def promoted_trades(context: dg.AssetExecutionContext, config: PromoteConfig, ledger: LedgerResource):
    """One trade per closed lifecycle (trade key ``lifecycle:<id>``); already promoted ones
    are skipped. A dry run counts what would be promoted and writes nothing (an observation)."""
    from trading_pipeline.history.promotion import promote_lifecycles

    try:
        result = promote_lifecycles(ledger.engine(), account=resolve_flex_account(config.account),
                                    dry_run=config.dry_run, at=_now())
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    summary = jsonable(result.as_dict())
    metadata = {
        "dry_run": config.dry_run,
        "account": config.account or "all",
        "candidates": int(summary.get("candidates") or 0),
        "promoted": int(summary.get("promoted") or 0),
        "already_promoted": int(summary.get("already_promoted") or 0),
        "waiting": int(summary.get("waiting") or 0),
        "errors": len(summary.get("errors") or []),
        "stock_positions": int(summary.get("stock_positions") or 0),
        "dagster/row_count": int(summary.get("promoted") or 0),
        "result": dg.MetadataValue.json(summary),
    }
    context.log.info(f"{'dry run: would promote ' if config.dry_run else 'promoted '}{metadata['promoted']} "
                     f"lifecycle(s); {metadata['already_promoted']} already promoted, {metadata['waiting']} waiting "
                     f"for the rest of their opening to close")
    for lifecycle_id, reason in summary.get("errors") or []:
        context.log.warning(f"lifecycle {lifecycle_id} not promoted: {reason}")
    if config.dry_run:
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=metadata))
        return
    yield dg.Output(None, metadata=metadata)


# ============================================================================ enrichment


ENRICHED_PREVIEW = ["trade_id", "symbol", "entry_day", "entry_status", "exit_status", "entry_quality", "entry_iv",
                    "exit_iv"]


@dg.asset(
    group_name=GROUP,
    kinds={"ibkr", "sqlite"},
    deps=[promoted_trades],
    pool=BROKER_POOL,
    description="Entry and exit snapshots of promoted trades, reconstructed from history (source enrichment).",
)
def enriched_trades(context: dg.AssetExecutionContext, config: EnrichConfig,
                    ledger: LedgerResource) -> dg.MaterializeResult:
    """One entry and one exit snapshot per promoted trade that had none: the market context
    rebuilt from daily bars (``with_ibkr``) or only what the trade says, with a status
    (enriched / partial) and a data quality score. Re-running adds only what is missing."""
    from trading_pipeline.history.enrichment import BrokerHistory, enrich_trades

    engine = ledger.engine()
    broker = None
    try:
        market = None
        if config.with_ibkr:
            broker = connected_broker()
            market = BrokerHistory(broker)
        result = enrich_trades(engine, clock=SystemClock(), market=market, limit=config.limit or None,
                               rate=config.risk_free_rate)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    finally:
        if broker is not None:
            broker.disconnect()
    summary = jsonable(result.as_dict())
    context.log.info(result.summary())
    for problem in result.problems:
        context.log.warning(problem)
    rows = summary["trades"]
    preview = pl.DataFrame([{name: row.get(name) for name in ENRICHED_PREVIEW} for row in rows]) if rows \
        else pl.DataFrame({name: [] for name in ENRICHED_PREVIEW})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": result.enriched,
        "with_ibkr": config.with_ibkr,
        "promoted": result.promoted,
        "candidates": result.candidates,
        "entry_written": result.entry_written,
        "exit_written": result.exit_written,
        "statuses": dg.MetadataValue.json(result.status_counts()),
        "average_entry_quality": dg.MetadataValue.float(result.average_entry_quality() or 0.0),
        "problems": len(result.problems),
        "preview": markdown_table(preview, limit=20),
        "result": dg.MetadataValue.json(summary),
    })
