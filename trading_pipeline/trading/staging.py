"""The Sunday session: scored candidates become staged opportunities for the next session.

:func:`run_sunday_session` takes the selected rows of a scan (``scan_imports`` /
``scan_candidates``; :func:`import_export_file` scans a Barchart file into the ledger first),
and for each, in rank order:

1. qualifies the stock and the put with the broker and fetches live quotes (the stock's price,
   the put's bid, ask, volume, open interest and greeks);
2. validates it (``core.staging.staging_reasons``: OTM range, premium floor, DTE range,
   spread, volume, open interest; every failure is a reason);
3. prices the limit (``core.pricing.limit_price`` with LIMIT_BID_MID_RATIO) on the option's
   price grid (its market rule, ``BrokerPort.price_increments``: e.g. 0.01 below $3 and 0.05
   above for a penny-program class; TWS refuses a limit off it with error 110);
4. asks the broker for the margin of one contract (a whatIf order at that limit);
5. sizes it (``core.staging.size_position``) within the session's margin budget
   (``session_margin_budget``: MARGIN_BUDGET_PCT x the account's buying power), the budget
   consumed in rank order.

It is staged for the next NYSE session after the clock's New York date
(``calendar.next_session``: on Sunday, Monday). Passing rows are stored STAGED; rows that fail
are stored too, as ABANDONED with ``status_reason`` "not staged: ..." and each reason in
``validation_reasons`` (the schema has no REJECTED status; ABANDONED is final and never
traded). A candidate already staged for that session (same symbol, expiry, strike and right)
is not staged again: running the session twice stages nothing new, and the budget counts the
margin already staged. A row a person cancelled stays cancelled (not re-staged behind their
back); a rejected one is evaluated again (the market may have moved) but a rejection that
stands is not stored twice.

The simple trade paths (``tp trade``, ``tp execute``): :func:`submit_staged` sends staged rows
through the order gateway (reconciling first), :func:`stage_manual` stages one order a person
names.

:func:`validate_staged` re-checks staged rows with fresh data (``tp validate-staged``): rows
that pass become VALIDATED with the fresh prices (the stock price too: re-validating
re-bases the 9:15 move check) and limit, and a size that never grows; rows that fail become
STALE with their reasons (STALE is not traded, and a later validation can bring it back).
:func:`cancel_staged` cancels one that was not sent.

Money safety: staging never sends an order (whatIf orders are never placed); orders leave only
through ``submit_staged`` and the order gateway, dry run unless asked otherwise.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from trading_pipeline.broker.port import (
    BrokerError,
    BrokerPort,
    Contract,
    ContractError,
    ContractSpec,
    OrderRequest,
    Quote,
    fallback_increments,
)
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import IntentPurpose
from trading_pipeline.core.pricing import PriceIncrements, limit_price, route_order
from trading_pipeline.core.scoring import ScanPolicy, score_candidates, select_candidates
from trading_pipeline.core.staging import StagingInput, session_margin_budget, size_position, staging_reasons
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ingest.barchart import read_main_view
from trading_pipeline.ledger import staging as staged_repo
from trading_pipeline.ledger.orders import finish_execution_run, start_execution_run
from trading_pipeline.ledger.scans import get_scan, replace_scan
from trading_pipeline.ledger.schema import scan_candidates
from trading_pipeline.ledger.staging import PRE_SUBMISSION_STATUSES, StagedOpportunity
from trading_pipeline.trading.order_gateway import (
    IntentSpec,
    OrderGateway,
    ReconcileReport,
    SubmitOutcome,
    SubmitResult,
    sector_map_from_env,
)

# Statuses of a staged row that still holds its place (and its margin) in the session.
_HOLDING_STATUSES = frozenset({"STAGED", "VALIDATED", "ADJUSTED", "STALE", "SUBMITTED", "WORKING", "PARTIAL",
                               "FILLED"})
STAGED = "STAGED"
REJECTED = "REJECTED"              # reported; stored as ABANDONED with the reasons
ALREADY_STAGED = "ALREADY_STAGED"  # reported; nothing stored
_NOT_STAGED = "not staged:"


@dataclass(frozen=True)
class StagingCandidate:
    """One selected row of a scan."""

    symbol: str
    expiration: date
    strike: float
    right: str = "P"
    rank: int | None = None
    scan_import_id: int | None = None
    scan_candidate_id: int | None = None
    score: float | None = None
    grade: str | None = None

    def key(self) -> tuple[str, date, float, str]:
        return (self.symbol, self.expiration, round(self.strike, 6), self.right)

    def describe(self) -> str:
        return f"{self.symbol} {self.expiration.isoformat()} {self.strike:g} {self.right}"


@dataclass(frozen=True)
class StagingOutcome:
    """What the session did with one candidate: STAGED, REJECTED (stored ABANDONED with its
    reasons) or ALREADY_STAGED."""

    candidate: StagingCandidate
    status: str
    reasons: tuple[str, ...] = ()
    staged_id: int | None = None
    contracts: int = 0
    stock_price: float | None = None
    bid: float | None = None
    ask: float | None = None
    limit_price: float | None = None
    margin_per_contract: float | None = None
    delta: float | None = None
    sizing: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.candidate.symbol, "expiration": self.candidate.expiration.isoformat(),
            "strike": self.candidate.strike, "right": self.candidate.right, "rank": self.candidate.rank,
            "status": self.status, "staged_id": self.staged_id, "contracts": self.contracts,
            "stock_price": self.stock_price, "bid": self.bid, "ask": self.ask, "limit_price": self.limit_price,
            "margin_per_contract": self.margin_per_contract, "delta": self.delta, "sizing": self.sizing,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class StagingReport:
    session_day: date
    as_of: date
    scan_import_id: int | None
    buying_power: float
    budget: float
    budget_used_before: float
    outcomes: tuple[StagingOutcome, ...]
    stored: bool

    def _with(self, status: str) -> list[StagingOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def staged(self) -> list[StagingOutcome]:
        return self._with(STAGED)

    @property
    def rejected(self) -> list[StagingOutcome]:
        return self._with(REJECTED)

    @property
    def already_staged(self) -> list[StagingOutcome]:
        return self._with(ALREADY_STAGED)

    @property
    def margin_staged(self) -> float:
        return float(sum(o.contracts * (o.margin_per_contract or 0.0) for o in self.staged))

    def reasons_summary(self) -> dict[str, int]:
        """How many rejected candidates failed each kind of check."""
        return dict(Counter(reason_kind(reason) for outcome in self.rejected for reason in outcome.reasons)
                    .most_common())

    def summary(self) -> str:
        return (f"session {self.session_day.isoformat()}: {len(self.staged)} staged, {len(self.rejected)} rejected, "
                f"{len(self.already_staged)} already staged; margin ${self.margin_staged:,.2f} of the budget "
                f"${self.budget:,.2f} (${self.budget_used_before:,.2f} staged before)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_day": self.session_day.isoformat(), "as_of": self.as_of.isoformat(),
            "scan_import_id": self.scan_import_id, "buying_power": self.buying_power, "budget": self.budget,
            "budget_used_before": self.budget_used_before, "margin_staged": self.margin_staged,
            "staged": len(self.staged), "rejected": len(self.rejected), "already_staged": len(self.already_staged),
            "reasons_summary": self.reasons_summary(), "stored": self.stored,
            "outcomes": [outcome.as_dict() for outcome in self.outcomes],
        }


def reason_kind(reason: str) -> str:
    """The check a reason names, for counting: the setting in parentheses (STAGING_MIN_OTM_PCT)
    when there is one, else the reason's words before any number or colon."""
    setting = re.search(r"\(([A-Z][A-Z_]+)\)", reason)
    if setting:
        return setting.group(1)
    return re.split(r"[:$\d]", reason, maxsplit=1)[0].strip() or reason


# ============================================================================ candidates


def import_export_file(engine: Engine, path: str | Path, clock: Clock, *, policy: ScanPolicy = ScanPolicy(),
                       partition_key: str | None = None, dagster_run_id: str | None = None) -> int:
    """Parse, score and select a Barchart export and store it as a scan (replacing an earlier
    scan of the same partition key); its scan id. A bad file raises InputFileError before any
    write. (``tp`` commands run the scan as a Dagster run instead; this is the service path.)"""
    from trading_pipeline.defs.scans.partitions import export_partition_key

    path = Path(path)
    export = read_main_view(path)
    scored = select_candidates(score_candidates(export.rows), policy)
    selected = scored.filter(~scored["rejected"]).height
    return replace_scan(engine, {
        "partition_key": partition_key or export_partition_key(path.name), "source_path": str(path.resolve()),
        "file_name": path.name, "sha256": export.sha256, "export_date": export.export_date,
        "export_date_source": export.export_date_source, "downloaded_at": export.downloaded_at,
        "total_rows": scored.height, "valid_rows": export.valid_rows.height,
        "invalid_rows": export.invalid_rows.height, "selected_rows": selected,
        "rejected_rows": scored.height - selected, "top_n": policy.top_n, "diversify": policy.diversify,
        "max_per_symbol": policy.max_per_symbol, "min_score": policy.min_score, "dagster_run_id": dagster_run_id,
        "imported_at": clock.now(),
    }, scored)


def scan_candidates_to_stage(engine: Engine, scan_import_id: int) -> list[StagingCandidate]:
    """The selected (ranked) rows of a scan, best first."""
    table = scan_candidates.c
    query = (select(table.id, table.symbol, table.expiration, table.strike, table.option_type, table.rank,
                    table.score, table.grade)
             .where(table.scan_import_id == scan_import_id, table.rank.is_not(None))
             .order_by(table.rank, table.id))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [StagingCandidate(symbol=row.symbol, expiration=row.expiration, strike=float(row.strike),
                             right="C" if (row.option_type or "put").lower() == "call" else "P", rank=row.rank,
                             scan_import_id=scan_import_id, scan_candidate_id=row.id, score=row.score,
                             grade=row.grade)
            for row in rows]


def resolve_scan(engine: Engine, *, partition_key: str = "", scan_import_id: int | None = None) -> dict[str, Any]:
    """The scan to stage from: by id, by partition key, else the latest import."""
    scan = get_scan(engine, partition_key=partition_key or None, scan_import_id=scan_import_id)
    if scan is None:
        which = (f"scan {scan_import_id}" if scan_import_id is not None else
                 f"a scan of the export {partition_key!r}" if partition_key else "any scan")
        raise TradingPipelineError(f"the ledger holds no {which}: run `tp scan --from-csv FILE` first")
    return scan


# ============================================================================ market data


@dataclass(frozen=True)
class _Market:
    """Live data of one candidate; ``problem`` when the broker could not give it."""

    option: Contract | None = None
    stock_quote: Quote | None = None
    option_quote: Quote | None = None
    problem: str = ""
    grid: PriceIncrements | None = None   # the option's price grid (market rule)

    def staging_input(self, candidate: StagingCandidate) -> StagingInput:
        option = self.option_quote
        return StagingInput(
            symbol=candidate.symbol, strike=candidate.strike, expiration=candidate.expiration,
            stock_price=self.stock_quote.price if self.stock_quote else None,
            bid=_positive(option.bid) if option else None, ask=_positive(option.ask) if option else None,
            volume=_whole(option.volume) if option else None,
            open_interest=_whole(option.open_interest) if option else None,
        )


def _fetch_market(broker: BrokerPort, candidates: Sequence[StagingCandidate]) -> list[_Market]:
    """Qualify every stock and option and fetch their quotes in one request."""
    stock_specs = {c.symbol: ContractSpec.stock(c.symbol) for c in candidates}
    stocks = _qualify_each(broker, list(stock_specs.values()))
    stock_by_symbol = dict(zip(stock_specs, stocks))
    options = _qualify_each(broker, [ContractSpec.option(c.symbol, c.expiration, c.strike, c.right)
                                     for c in candidates])
    wanted = [contract for contract in [*stock_by_symbol.values(), *options] if isinstance(contract, Contract)]
    quotes = {quote.contract.con_id: quote for quote in broker.quotes(_unique(wanted))}
    grids = _grids(broker, [option for option in options if isinstance(option, Contract)])
    markets = []
    for candidate, option in zip(candidates, options):
        stock = stock_by_symbol[candidate.symbol]
        problem = "; ".join(item for item in (stock, option) if isinstance(item, str))
        if problem:
            markets.append(_Market(problem=problem))
            continue
        markets.append(_Market(option=option, stock_quote=quotes.get(stock.con_id),
                               option_quote=quotes.get(option.con_id), grid=grids[option.con_id]))
    return markets


def _grids(broker: BrokerPort, options: Sequence[Contract]) -> dict[int, PriceIncrements]:
    """The price grid of each option by conId, in one request; the conservative fallback grid
    (see ``BrokerPort.price_increments``) when the broker cannot say."""
    unique = _unique(options)
    if not unique:
        return {}
    try:
        grids = broker.price_increments(unique)
    except BrokerError as problem:
        grids = [fallback_increments(f"the broker could not say: {problem}") for _ in unique]
    return {option.con_id: grid for option, grid in zip(unique, grids)}


def _qualify_each(broker: BrokerPort, specs: list[ContractSpec]) -> list[Contract | str]:
    """One contract per spec, or the broker's reason it is unknown or ambiguous."""
    if not specs:
        return []
    try:
        return list(broker.qualify(*specs))
    except ContractError:
        pass  # some failed: ask one by one to learn which (rare: screener rows are listed options)
    results: list[Contract | str] = []
    for spec in specs:
        try:
            results.append(broker.qualify(spec)[0])
        except ContractError as problem:
            results.append(str(problem))
    return results


def _unique(contracts: Iterable[Contract]) -> list[Contract]:
    return list({contract.con_id: contract for contract in contracts}.values())


def _margin_per_contract(broker: BrokerPort, option: Contract, limit: float, account: str) -> float:
    impact = broker.what_if_margin(option, OrderRequest.limit("SELL", 1, limit, account=account))
    change = impact.init_margin_change
    if change is None and impact.init_margin_after is not None and impact.init_margin_before is not None:
        change = impact.init_margin_after - impact.init_margin_before
    if change is None or not math.isfinite(change) or change <= 0:
        raise BrokerError(f"the broker's whatIf gave no initial margin for {option.describe()}")
    return change


def _limit(bid: float | None, ask: float | None, ratio: float, grid: PriceIncrements | None) -> float | None:
    """The sell limit on the option's grid (the fallback grid when it is unknown)."""
    grid = grid or fallback_increments("no price grid known")
    if bid is None:
        return None
    if ask is None or ask < bid:
        return grid.round_up(bid)  # no ask (weekend): the bid is the only price known
    return limit_price(bid, ask, ratio, grid)


# ============================================================================ the session


def run_sunday_session(broker: BrokerPort, engine: Engine, clock: Clock, params: ExecutionParameters, *,
                       candidates: Sequence[StagingCandidate], sector_map: Mapping[str, str] | None = None,
                       store: bool = True, dagster_run_id: str | None = None) -> StagingReport:
    """Stage ``candidates`` (best first) for the next session (see the module text).
    ``store=False`` evaluates and reports without writing to the ledger."""
    now = clock.now()
    as_of = calendar.new_york_date(now)
    session_day = calendar.next_session(as_of)
    sectors = {k.upper(): v for k, v in (sector_map if sector_map is not None else sector_map_from_env()).items()}
    summary = broker.account_summary()
    buying_power = summary.buying_power or 0.0
    budget = session_margin_budget(buying_power, params)
    on_file = staged_repo.list_staged(engine, session_day)
    existing = [row for row in on_file if row.status in _HOLDING_STATUSES]
    held = {_row_key(row): row for row in existing}
    # A person's cancellation stands for the session: not staged again behind their back.
    held.update({_row_key(row): row for row in on_file if row.status == "CANCELLED" and _row_key(row) not in held})
    # Rows this session rejected before: re-evaluated (the market may have moved), but a
    # rejection that stands is not stored a second time.
    rejected_before = {_row_key(row): row for row in on_file
                       if row.status == "ABANDONED" and (row.status_reason or "").startswith(_NOT_STAGED)}
    used_before = sum(row.contracts * float(row.margin_per_contract or 0) for row in existing
                      if row.status != "FILLED")
    remaining = budget - used_before

    fresh = [c for c in candidates if c.key() not in held]
    markets = dict(zip((c.key() for c in fresh), _fetch_market(broker, fresh))) if fresh else {}
    outcomes: list[StagingOutcome] = []
    to_store: list[tuple[int, dict[str, Any]]] = []     # (outcome index, staged row)
    seen: set[tuple] = set()
    for candidate in candidates:
        key = candidate.key()
        if key in held or key in seen:
            row = held.get(key)
            if row is not None and row.status == "CANCELLED":
                why = f"cancelled for {session_day.isoformat()} as #{row.id}: a cancellation stands"
            else:
                why = (f"already staged for {session_day.isoformat()}" + (f" as #{row.id}" if row else "")
                       + ": not staged twice")
            outcomes.append(StagingOutcome(candidate, ALREADY_STAGED, staged_id=row.id if row else None,
                                           reasons=(why,)))
            continue
        seen.add(key)
        outcome, row = _stage_one(broker, candidate, markets[key], as_of, session_day, params, remaining,
                                  summary.account, sectors, dagster_run_id)
        if outcome.status == STAGED:
            remaining -= outcome.contracts * (outcome.margin_per_contract or 0.0)
            to_store.append((len(outcomes), row))
        elif key in rejected_before:
            outcome = replace(outcome, staged_id=rejected_before[key].id)
        else:
            to_store.append((len(outcomes), row))
        outcomes.append(outcome)

    if store and to_store:
        ids = staged_repo.insert_staged(engine, [row for _, row in to_store], at=clock.now())
        for (index, _), staged_id in zip(to_store, ids):
            outcomes[index] = replace(outcomes[index], staged_id=staged_id)
    return StagingReport(session_day=session_day, as_of=as_of, scan_import_id=candidates[0].scan_import_id
                         if candidates else None, buying_power=buying_power, budget=budget,
                         budget_used_before=used_before, outcomes=tuple(outcomes), stored=store)


def _no_fit_reason(size, margin: float, budget_remaining: float, params: ExecutionParameters) -> str:
    if size.limited_by == "max_position_size":
        return (f"one contract needs ${margin:,.2f} of margin, above the ${params.max_position_size:,.2f} "
                "a trade may use (MAX_POSITION_SIZE)")
    if size.limited_by == "budget":
        return (f"one contract needs ${margin:,.2f} of margin; ${max(budget_remaining, 0.0):,.2f} of the "
                "session's budget is left (MARGIN_BUDGET_PCT)")
    return f"no contract fits: {size.reason}"


def _row_key(row: StagedOpportunity) -> tuple[str, date, float, str]:
    return (row.symbol, row.expiration, round(float(row.strike), 6), row.right)


def _stage_one(broker: BrokerPort, candidate: StagingCandidate, market: _Market, as_of: date, session_day: date,
               params: ExecutionParameters, budget_remaining: float, account: str, sectors: Mapping[str, str],
               dagster_run_id: str | None) -> tuple[StagingOutcome, dict[str, Any]]:
    reasons: list[str] = []
    data = market.staging_input(candidate) if not market.problem else None
    if market.problem:
        reasons.append(market.problem)
    else:
        reasons.extend(staging_reasons(data, as_of, params))
    bid, ask = (data.bid, data.ask) if data else (None, None)
    limit = _limit(bid, ask, params.limit_bid_mid_ratio, market.grid)
    margin = None
    contracts, sizing = 0, ""
    if not reasons:
        try:
            margin = _margin_per_contract(broker, market.option, limit, account)
        except BrokerError as problem:
            reasons.append(f"margin unknown: {problem}")
    if not reasons:
        size = size_position(margin, budget_remaining, params.max_contracts_per_trade, params.max_position_size)
        contracts, sizing = size.contracts, size.reason
        if contracts == 0:
            reasons.append(_no_fit_reason(size, margin, budget_remaining, params))
    greeks = market.option_quote.greeks if market.option_quote else None
    stock_price = data.stock_price if data else None
    status = REJECTED if reasons else STAGED
    outcome = StagingOutcome(candidate, status, tuple(reasons), contracts=contracts, stock_price=stock_price,
                             bid=bid, ask=ask, limit_price=limit, margin_per_contract=margin,
                             delta=greeks.delta if greeks else None, sizing=sizing)
    row = {
        "session_day": session_day, "scan_import_id": candidate.scan_import_id,
        "scan_candidate_id": candidate.scan_candidate_id, "symbol": candidate.symbol,
        "sector": sectors.get(candidate.symbol.upper()), "expiration": candidate.expiration,
        "strike": candidate.strike, "right": candidate.right, "contracts": contracts,
        "staged_stock_price": stock_price, "staged_bid": bid, "staged_ask": ask,
        "staged_mid": (bid + ask) / 2 if bid is not None and ask is not None else None,
        "limit_price": limit, "delta": greeks.delta if greeks else None,
        "iv": greeks.implied_vol if greeks else None,
        "otm_pct": (stock_price - candidate.strike) / stock_price * 100 if stock_price else None,
        "dte": (candidate.expiration - session_day).days, "margin_per_contract": margin,
        "status": "STAGED" if status == STAGED else "ABANDONED",
        "status_reason": sizing if status == STAGED else _NOT_STAGED + " " + "; ".join(reasons),
        "validation_reasons": list(reasons), "dagster_run_id": dagster_run_id,
    }
    return outcome, row


# ============================================================================ validate, cancel


@dataclass(frozen=True)
class ValidationOutcome:
    staged: StagedOpportunity          # as it is now (after the update when stored)
    previous_status: str
    status: str                        # VALIDATED or STALE
    reasons: tuple[str, ...] = ()
    changes: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.staged.id, "trade": self.staged.describe(), "previous_status": self.previous_status,
                "status": self.status, "contracts": self.staged.contracts,
                "limit_price": _float(self.staged.limit_price), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class ValidationReport:
    as_of: date
    outcomes: tuple[ValidationOutcome, ...]
    stored: bool

    @property
    def validated(self) -> int:
        return sum(outcome.status == "VALIDATED" for outcome in self.outcomes)

    @property
    def stale(self) -> int:
        return sum(outcome.status == "STALE" for outcome in self.outcomes)

    def summary(self) -> str:
        return f"{len(self.outcomes)} staged row(s) re-checked: {self.validated} validated, {self.stale} stale"

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "validated": self.validated, "stale": self.stale,
                "stored": self.stored, "outcomes": [outcome.as_dict() for outcome in self.outcomes]}


def validate_staged(broker: BrokerPort, engine: Engine, clock: Clock, params: ExecutionParameters, *,
                    session_day: date | None = None, ids: Sequence[int] | None = None, store: bool = True,
                    ) -> ValidationReport:
    """Re-check staged rows not sent yet (STAGED, VALIDATED, ADJUSTED, STALE) with fresh data:
    those of ``session_day``, else of every session from today (New York) on; ``ids`` limits
    it to those rows. See the module text for what changes."""
    now = clock.now()
    as_of = calendar.new_york_date(now)
    rows = [row for row in staged_repo.list_staged(engine, session_day, statuses=sorted(PRE_SUBMISSION_STATUSES))
            if (session_day is not None or row.session_day >= as_of) and (ids is None or row.id in ids)]
    if not rows:
        return ValidationReport(as_of, (), store)
    candidates = [StagingCandidate(row.symbol, row.expiration, float(row.strike), row.right) for row in rows]
    markets = _fetch_market(broker, candidates)
    account = broker.account_summary().account
    outcomes = []
    for row, candidate, market in zip(rows, candidates, markets):
        outcomes.append(_revalidate(broker, engine, clock, params, row, candidate, market, as_of, account, store))
    return ValidationReport(as_of, tuple(outcomes), store)


def _revalidate(broker: BrokerPort, engine: Engine, clock: Clock, params: ExecutionParameters,
                row: StagedOpportunity, candidate: StagingCandidate, market: _Market, as_of: date, account: str,
                store: bool) -> ValidationOutcome:
    reasons: list[str] = [market.problem] if market.problem else []
    data = market.staging_input(candidate) if not market.problem else None
    if data is not None:
        reasons.extend(staging_reasons(data, as_of, params))
    changes: dict[str, Any] = {}
    if not reasons:
        limit = _limit(data.bid, data.ask, params.limit_bid_mid_ratio, market.grid)
        try:
            margin = _margin_per_contract(broker, market.option, limit, account)
        except BrokerError as problem:
            reasons.append(f"margin unknown: {problem}")
        else:
            # The size never grows at re-validation: the Sunday session's budget decided it.
            allowed = min(row.contracts, params.max_contracts_per_trade)
            size = size_position(margin, allowed * margin, allowed, params.max_position_size)
            if size.contracts == 0:
                reasons.append(f"no contract fits: {size.reason}")
            else:
                greeks = market.option_quote.greeks if market.option_quote else None
                changes = {
                    "staged_stock_price": data.stock_price, "staged_bid": data.bid, "staged_ask": data.ask,
                    "staged_mid": (data.bid + data.ask) / 2 if data.ask is not None else None,
                    "limit_price": limit, "margin_per_contract": margin, "contracts": size.contracts,
                    "otm_pct": (data.stock_price - candidate.strike) / data.stock_price * 100,
                    "delta": greeks.delta if greeks else row.delta, "iv": greeks.implied_vol if greeks else row.iv,
                    "status": "VALIDATED", "status_reason": f"re-validated on {as_of.isoformat()}: {size.reason}",
                    "validation_reasons": [],
                }
    if reasons:
        changes = {"status": "STALE", "status_reason": "failed re-validation: " + "; ".join(reasons),
                   "validation_reasons": reasons}
    updated = staged_repo.update_staged(engine, row.id, at=clock.now(), **changes) if store else row
    return ValidationOutcome(updated, row.status, changes["status"], tuple(reasons), changes)


def cancel_staged(engine: Engine, clock: Clock, staged_id: int, *, reason: str = "cancelled by request",
                  ) -> StagedOpportunity:
    """Cancel a staged opportunity that was not sent (its unsent intents with it); refused
    (LedgerStateError) once its order went to the broker."""
    return staged_repo.cancel_staged(engine, staged_id, at=clock.now(), reason=reason)


# ============================================================================ helpers


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _whole(value: float | None) -> int | None:
    return int(value) if value is not None and math.isfinite(value) and value >= 0 else None


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


# ============================================================================ the simple trade paths

# Staged rows that may be sent (STALE, ABANDONED, CANCELLED... may not).
TRADEABLE_STATUSES = frozenset({"STAGED", "VALIDATED", "ADJUSTED"})


@dataclass(frozen=True)
class TradeReport:
    """What ``tp trade`` / ``tp execute`` did: the reconciliation that came first, one
    gateway result per order, and the staged rows that were not sent (with why)."""

    mode: str
    dry_run: bool
    reconcile: ReconcileReport
    results: tuple[SubmitResult, ...]
    skipped: tuple[str, ...]
    execution_run_id: int

    def count(self, outcome: SubmitOutcome) -> int:
        return sum(result.outcome is outcome for result in self.results)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(outcome)} {outcome.value.lower().replace('_', '-')}"
                           for outcome in SubmitOutcome if self.count(outcome))
        kind = "dry run" if self.dry_run else "LIVE"
        return f"{kind}: {len(self.results)} order(s): {counts or 'none'}; {len(self.skipped)} staged row(s) skipped"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "dry_run": self.dry_run, "summary": self.summary(),
            "reconcile": self.reconcile.as_dict(), "skipped": list(self.skipped),
            "orders": [{"order_ref": r.order_ref, "outcome": r.outcome.value, "order": r.description,
                        "reasons": list(r.reasons), "intent_id": r.intent.id if r.intent else None,
                        "perm_id": r.handle.perm_id if r.handle else None} for r in self.results],
        }


def submit_staged(broker: BrokerPort, engine: Engine, clock: Clock, params: ExecutionParameters, *,
                  staged_ids: Sequence[int], dry_run: bool, account: str, confirmed_account: str | None = None,
                  armed: bool | None = None, sector_map: Mapping[str, str] | None = None,
                  max_trades: int | None = None, mode: str = "trade",
                  dagster_run_id: str | None = None) -> TradeReport:
    """Send staged opportunities as entry orders through the order gateway, at once.

    The run is recorded (``execution_runs``, mode ``trade`` or ``execute``); the ledger is
    reconciled with the broker first; rows that are not STAGED, VALIDATED or ADJUSTED, or
    have no contracts, are skipped with the reason; at most ``max_trades`` orders go, in the
    order given. Each order is routed like the morning's (``core.pricing.route_order`` on the
    staged bid/ask: Adaptive, MIDPRICE, or a plain limit at the mid) at the staged limit.
    """
    if max_trades is not None and max_trades < 1:
        raise TradingPipelineError(f"max trades must be 1 or more, not {max_trades}")
    rows, skipped = [], []
    for staged_id in staged_ids:
        row = staged_repo.get_staged(engine, staged_id)
        if row is None:
            skipped.append(f"#{staged_id}: no such staged opportunity")
        elif row.status not in TRADEABLE_STATUSES:
            skipped.append(f"{row.describe()}: {row.status}" + (f" ({row.status_reason})" if row.status_reason else ""))
        elif row.contracts < 1:
            skipped.append(f"{row.describe()}: no contracts")
        else:
            rows.append(row)
    if max_trades is not None and len(rows) > max_trades:
        skipped += [f"{row.describe()}: beyond --max-trades {max_trades}" for row in rows[max_trades:]]
        rows = rows[:max_trades]
    at = clock.now()
    session_day = rows[0].session_day if rows else calendar.new_york_date(at)
    run = start_execution_run(engine, mode=mode, dry_run=dry_run, session_day=session_day, at=at,
                              dagster_run_id=dagster_run_id)
    try:
        with OrderGateway(broker, engine, clock, params, dry_run=dry_run, account=account,
                          sector_map=sector_map if sector_map is not None else sector_map_from_env(),
                          confirmed_account=confirmed_account, armed=armed, execution_run_id=run.id,
                          dagster_run_id=dagster_run_id) as gateway:
            reconciled = gateway.reconcile()
            specs = []
            options = _qualify_each(broker, [ContractSpec.option(row.symbol, row.expiration, float(row.strike),
                                                                 row.right) for row in rows])
            grids = _grids(broker, [option for option in options if isinstance(option, Contract)])
            for row, option in zip(rows, options):
                if isinstance(option, str):
                    skipped.append(f"{row.describe()}: {option}")
                    continue
                spec = _entry_spec(row, option, params, grids[option.con_id])
                if isinstance(spec, str):
                    skipped.append(f"{row.describe()}: {spec}")
                else:
                    specs.append(spec)
            results = gateway.submit_batch(specs)
    except Exception as problem:
        finish_execution_run(engine, run.id, status="FAILED", at=clock.now(), error=str(problem))
        raise
    report = TradeReport(mode=mode, dry_run=dry_run, reconcile=reconciled, results=tuple(results),
                         skipped=tuple(skipped), execution_run_id=run.id)
    finish_execution_run(engine, run.id, status="SUCCEEDED", at=clock.now(), report=report.as_dict())
    return report


def _entry_spec(row: StagedOpportunity, option: Contract, params: ExecutionParameters,
                grid: PriceIncrements) -> IntentSpec | str:
    limit = float(row.limit_price) if row.limit_price is not None else None
    if limit is None:
        return "no limit price"
    # A staged limit is on the grid when it was priced by this version; one from before (or
    # typed by a person) is rounded up onto it: a sell never asks less than was staged.
    limit = grid.round_up(limit)
    order_type = "LMT"
    bid, ask = _float(row.staged_bid), _float(row.staged_ask)
    if bid is not None and ask is not None and ask >= bid:
        routing = route_order(bid, ask, params.use_adaptive_algo, params.adaptive_algo_spread_threshold)
        order_type = routing.order_type
        if order_type == "LMT":
            limit = routing.limit_for(bid, ask, params.limit_bid_mid_ratio, grid)
    if limit + 1e-9 < params.premium_floor:
        return f"limit {limit:.2f} is below the premium floor {params.premium_floor:.2f} (PREMIUM_FLOOR)"
    margin = float(row.margin_per_contract) * row.contracts if row.margin_per_contract is not None else None
    return IntentSpec(session_day=row.session_day, purpose=IntentPurpose.ENTRY, ref_id=row.id, contract=option,
                      action="SELL", quantity=row.contracts, order_type=order_type, limit_price=limit,
                      margin_required=margin, sector=row.sector)


def stage_manual(broker: BrokerPort, engine: Engine, clock: Clock, params: ExecutionParameters, *, symbol: str,
                 strike: float, expiration: date, premium: float, contracts: int, right: str = "P",
                 sector_map: Mapping[str, str] | None = None, dagster_run_id: str | None = None,
                 ) -> StagedOpportunity:
    """A staged row for one order a person names (``tp execute``), at ``premium`` as its limit,
    for today's session while it is open, else the next one. The staging checks are run and
    their failures kept as information (a person chose this trade); the premium floor,
    MAX_CONTRACTS_PER_TRADE and the risk governor (when it is sent) still apply."""
    if not (premium > 0 and math.isfinite(premium)):
        raise TradingPipelineError(f"the premium must be a positive number, not {premium!r}")
    if premium + 1e-9 < params.premium_floor:
        raise TradingPipelineError(f"premium {premium:.2f} is below the premium floor "
                                   f"{params.premium_floor:.2f} (PREMIUM_FLOOR): no order goes below it")
    if not 1 <= contracts <= params.max_contracts_per_trade:
        raise TradingPipelineError(f"contracts must be 1 to {params.max_contracts_per_trade} "
                                   f"(MAX_CONTRACTS_PER_TRADE), not {contracts}")
    candidate = StagingCandidate(symbol.strip().upper(), expiration, float(strike), right.strip().upper()[:1])
    [market] = _fetch_market(broker, [candidate])
    if market.problem:
        raise TradingPipelineError(market.problem)
    grid = market.grid or fallback_increments("no price grid known")
    if not grid.is_on_grid(premium):
        raise TradingPipelineError(
            f"premium {premium:g} is not a price of {candidate.describe()}'s grid ({grid.describe()}; "
            f"{grid.source}): the broker would refuse it; use {grid.round_down(premium):.2f} or "
            f"{grid.round_up(premium):.2f}")
    now = clock.now()
    today = calendar.new_york_date(now)
    open_today = calendar.is_session(today) and now < calendar.session_bounds(today).close_utc
    session_day = today if open_today else calendar.next_session(today)
    data = market.staging_input(candidate)
    notes = staging_reasons(data, today, params)
    margin = _margin_per_contract(broker, market.option, premium, broker.account_summary().account)
    greeks = market.option_quote.greeks if market.option_quote else None
    sectors = {k.upper(): v for k, v in (sector_map if sector_map is not None else sector_map_from_env()).items()}
    reason = "manual order (tp execute)" + (f"; staging checks not met: {'; '.join(notes)}" if notes else "")
    [staged_id] = staged_repo.insert_staged(engine, [{
        "session_day": session_day, "symbol": candidate.symbol, "sector": sectors.get(candidate.symbol),
        "expiration": expiration, "strike": candidate.strike, "right": candidate.right, "contracts": contracts,
        "staged_stock_price": data.stock_price, "staged_bid": data.bid, "staged_ask": data.ask,
        "staged_mid": (data.bid + data.ask) / 2 if data.bid is not None and data.ask is not None else None,
        "limit_price": premium, "delta": greeks.delta if greeks else None,
        "iv": greeks.implied_vol if greeks else None,
        "otm_pct": (data.stock_price - candidate.strike) / data.stock_price * 100 if data.stock_price else None,
        "dte": (expiration - session_day).days, "margin_per_contract": margin, "status": "STAGED",
        "status_reason": reason, "validation_reasons": notes, "dagster_run_id": dagster_run_id,
    }], at=clock.now())
    return staged_repo.get_staged(engine, staged_id)
