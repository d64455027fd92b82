"""Contract of the Sunday session service (trading/staging.py), on the bundled sample export
against the simulated TWS on Sunday evening (prices seeded from the export):

- the export is scanned into the ledger and its selected rows are staged, in rank order, for
  the next session (Monday 2026-11-23);
- a staged row carries the live stock price and quote, the limit bid + LIMIT_BID_MID_RATIO x
  (mid - bid) rounded up to the cent, the broker's whatIf margin of one contract, and the size
  min(MAX_CONTRACTS_PER_TRADE, budget left / margin, MAX_POSITION_SIZE / margin);
- the budget is MARGIN_BUDGET_PCT x buying power and is consumed in rank order;
- rows failing validation or sizing are stored ABANDONED with every reason (and summarized);
- running the session again stages nothing twice; store=False writes nothing;
- validate_staged re-checks with fresh data (VALIDATED, or STALE with reasons, and back);
- cancel_staged cancels a row not sent, and refuses one whose order went out.
"""

from __future__ import annotations

import math
from datetime import date

import pytest

from trading_pipeline import settings
from trading_pipeline.broker.port import ContractSpec, OrderRequest
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import IntentPurpose
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger.orders import list_execution_runs
from trading_pipeline.ledger.scans import get_scan
from trading_pipeline.ledger.staging import LedgerStateError, get_staged, insert_staged, list_staged
from trading_pipeline.trading.clock import BrokerClock
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway, SubmitOutcome
from trading_pipeline.trading.staging import (
    REJECTED,
    cancel_staged,
    import_export_file,
    reason_kind,
    run_sunday_session,
    scan_candidates_to_stage,
    stage_manual,
    submit_staged,
    validate_staged,
)
from trading_pipeline_tests.trading.conftest import MONDAY, SIM_ACCOUNT, connect

PARAMS = ExecutionParameters()


@pytest.fixture
def sunday(sunday_gateway, engine):
    broker = connect(sunday_gateway.port)
    try:
        clock = BrokerClock(broker, rate=0)
        scan_id = import_export_file(engine, settings.sample_export_path(), clock)
        yield broker, clock, scan_id
    finally:
        broker.disconnect()


def test_candidates_are_the_selected_rows_in_rank_order(sunday, engine):
    _, _, scan_id = sunday
    candidates = scan_candidates_to_stage(engine, scan_id)
    assert len(candidates) == get_scan(engine, scan_import_id=scan_id)["selected_rows"] > 0
    assert [c.rank for c in candidates] == list(range(1, len(candidates) + 1))
    assert all(c.right == "P" and c.scan_import_id == scan_id for c in candidates)


def test_a_sunday_session_stages_rows_with_limits_sizes_and_reasons(sunday, engine):
    broker, clock, scan_id = sunday
    candidates = scan_candidates_to_stage(engine, scan_id)
    report = run_sunday_session(broker, engine, clock, PARAMS, candidates=candidates, sector_map={})

    assert report.session_day == MONDAY and report.as_of.isoformat() == "2026-11-22"
    buying_power = broker.account_summary().buying_power
    assert report.budget == pytest.approx(0.5 * buying_power)        # MARGIN_BUDGET_PCT 0.50
    assert len(report.outcomes) == len(candidates)
    assert report.staged and report.rejected
    stored = {row.id: row for row in list_staged(engine, MONDAY)}
    assert len(stored) == len(candidates)

    for outcome in report.staged:
        row = stored[outcome.staged_id]
        c = outcome.candidate
        [option] = broker.qualify(ContractSpec.option(c.symbol, c.expiration, c.strike, "P"))
        # The limit from the stored quote, by hand: bid + 0.5 x (mid - bid), up to the cent.
        bid, ask = float(row.staged_bid), float(row.staged_ask)
        expected_limit = math.ceil(round((bid + 0.5 * ((bid + ask) / 2 - bid)) * 100, 6)) / 100
        assert float(row.limit_price) == pytest.approx(expected_limit)
        assert bid <= float(row.limit_price) <= ask
        # The margin is the broker's whatIf of one contract at that limit.
        impact = broker.what_if_margin(option, OrderRequest.limit("SELL", 1, float(row.limit_price)))
        assert float(row.margin_per_contract) == pytest.approx(impact.init_margin_change)
        margin = float(row.margin_per_contract)
        assert row.contracts == min(5, math.floor(5000 / margin)) >= 1  # the budget is far from binding
        assert row.status == "STAGED" and row.validation_reasons == []
        assert row.session_day == MONDAY and row.dte == (c.expiration - MONDAY).days
        assert float(row.otm_pct) == pytest.approx((float(row.staged_stock_price) - c.strike)
                                                   / float(row.staged_stock_price) * 100)
        assert row.scan_candidate_id == c.scan_candidate_id and row.delta < 0

    for outcome in report.rejected:
        row = stored[outcome.staged_id]
        assert row.status == "ABANDONED" and row.contracts == 0
        assert row.validation_reasons == list(outcome.reasons) and outcome.reasons
        assert row.status_reason == "not staged: " + "; ".join(outcome.reasons)
    # Every reason counted once in the summary, by the check it names.
    assert sum(report.reasons_summary().values()) == sum(len(o.reasons) for o in report.rejected)
    too_big = [o for o in report.rejected if "(MAX_POSITION_SIZE)" in o.reasons[0]]
    assert too_big and all(o.margin_per_contract > 5000 for o in too_big)
    assert too_big[0].reasons[0] == (f"one contract needs ${too_big[0].margin_per_contract:,.2f} of margin, "
                                     "above the $5,000.00 a trade may use (MAX_POSITION_SIZE)")


def test_the_budget_is_consumed_in_rank_order(sunday, engine):
    broker, clock, scan_id = sunday
    buying_power = broker.account_summary().buying_power
    budget = 10_000.0
    tight = PARAMS.with_overrides(margin_budget_fraction=budget / buying_power)
    report = run_sunday_session(broker, engine, clock, tight, candidates=scan_candidates_to_stage(engine, scan_id))
    left = report.budget
    assert left == pytest.approx(budget)
    for outcome in report.outcomes:
        if outcome.margin_per_contract is None:
            continue                                  # refused before its margin was asked
        fits = min(5, math.floor(left / outcome.margin_per_contract + 1e-9),
                   math.floor(5000 / outcome.margin_per_contract + 1e-9))
        assert outcome.contracts == fits
        if fits == 0:
            assert outcome.status == REJECTED and outcome.reasons[0].endswith(")")
        left -= outcome.contracts * outcome.margin_per_contract
    assert report.margin_staged <= budget
    assert any(o.reasons[0].endswith("left (MARGIN_BUDGET_PCT)") for o in report.rejected)


def test_a_second_session_stages_nothing_twice(sunday, engine):
    broker, clock, scan_id = sunday
    candidates = scan_candidates_to_stage(engine, scan_id)
    first = run_sunday_session(broker, engine, clock, PARAMS, candidates=candidates)
    rows_before = len(list_staged(engine))
    again = run_sunday_session(broker, engine, clock, PARAMS, candidates=candidates)
    assert len(list_staged(engine)) == rows_before
    assert len(again.already_staged) == len(first.staged) and not again.staged
    assert {o.staged_id for o in again.already_staged} == {o.staged_id for o in first.staged}
    assert again.budget_used_before == pytest.approx(first.margin_staged)
    # Standing rejections are reported again (with the first row's id), not stored again.
    assert {o.staged_id for o in again.rejected} == {o.staged_id for o in first.rejected}


def test_a_cancelled_row_is_not_staged_again(sunday, engine):
    broker, clock, scan_id = sunday
    candidates = scan_candidates_to_stage(engine, scan_id)
    first = run_sunday_session(broker, engine, clock, PARAMS, candidates=candidates)
    cancelled = first.staged[0]
    cancel_staged(engine, clock, cancelled.staged_id)
    again = run_sunday_session(broker, engine, clock, PARAMS, candidates=candidates)
    [outcome] = [o for o in again.outcomes if o.candidate.key() == cancelled.candidate.key()]
    assert outcome.staged_id == cancelled.staged_id
    assert outcome.reasons == (f"cancelled for 2026-11-23 as #{cancelled.staged_id}: a cancellation stands",)
    assert not again.staged


def test_store_false_evaluates_without_writing(sunday, engine):
    broker, clock, scan_id = sunday
    report = run_sunday_session(broker, engine, clock, PARAMS, candidates=scan_candidates_to_stage(engine, scan_id),
                                store=False)
    assert report.staged and not report.stored
    assert list_staged(engine) == [] and all(o.staged_id is None for o in report.outcomes)


def test_validate_staged_marks_stale_and_back(sunday, engine):
    broker, clock, scan_id = sunday
    run_sunday_session(broker, engine, clock, PARAMS, candidates=scan_candidates_to_stage(engine, scan_id))
    staged = list_staged(engine, MONDAY, statuses=["STAGED"])
    fine = validate_staged(broker, engine, clock, PARAMS)
    assert fine.validated == len(staged) and fine.stale == 0
    assert {row.status for row in list_staged(engine, MONDAY) if row.id in {s.id for s in staged}} == {"VALIDATED"}

    picky = PARAMS.with_overrides(staging_min_open_interest=10**9)
    stale = validate_staged(broker, engine, clock, picky)
    assert stale.stale == len(staged)
    row = get_staged(engine, staged[0].id)
    assert row.status == "STALE" and row.status_reason.startswith("failed re-validation: open interest")
    assert row.validation_reasons[0].endswith(f"below {10**9} (STAGING_MIN_OI)")
    assert row.contracts == staged[0].contracts                   # sizes kept

    back = validate_staged(broker, engine, clock, PARAMS, ids=[staged[0].id])
    assert len(back.outcomes) == 1 and back.validated == 1
    assert get_staged(engine, staged[0].id).status == "VALIDATED"


def test_cancel_staged_before_and_after_sending(sunday, engine, sunday_gateway):
    broker, clock, scan_id = sunday
    report = run_sunday_session(broker, engine, clock, PARAMS, candidates=scan_candidates_to_stage(engine, scan_id))
    first, second = report.staged[0], report.staged[1]
    cancelled = cancel_staged(engine, clock, first.staged_id, reason="changed my mind")
    assert cancelled.status == "CANCELLED" and cancelled.status_reason == "changed my mind"

    c = second.candidate
    [option] = broker.qualify(ContractSpec.option(c.symbol, c.expiration, c.strike, "P"))
    with OrderGateway(broker, engine, clock, PARAMS, dry_run=False, account=SIM_ACCOUNT) as orders:
        sent = orders.submit(IntentSpec(MONDAY, IntentPurpose.ENTRY, second.staged_id, option, "SELL",
                                        second.contracts, "LMT", limit_price=second.limit_price))
    assert sent.outcome is SubmitOutcome.SENT
    assert get_staged(engine, second.staged_id).status == "SUBMITTED"
    with pytest.raises(LedgerStateError, match="already submitted"):
        cancel_staged(engine, clock, second.staged_id)


def test_reason_kinds():
    assert reason_kind("OTM 1.59% below the minimum 2.00% (STAGING_MIN_OTM_PCT) at stock $71.13") == \
        "STAGING_MIN_OTM_PCT"
    assert reason_kind("one contract needs $5,040.70 of margin, above the $5,000.00 a trade may use "
                       "(MAX_POSITION_SIZE)") == "MAX_POSITION_SIZE"
    assert reason_kind("no live bid") == "no live bid"
    assert reason_kind("margin unknown: the broker's whatIf gave no initial margin") == "margin unknown"


def test_submit_staged_routes_by_spread_and_skips_what_may_not_go(sunday, engine, sunday_gateway):
    broker, clock, _ = sunday
    base = {"session_day": MONDAY, "symbol": "AAPL", "expiration": date(2026, 12, 31), "strike": 215.0,
            "right": "P", "contracts": 1, "margin_per_contract": 3000.0}
    narrow, wide, no_algo, stale = insert_staged(engine, [
        {**base, "staged_bid": 3.34, "staged_ask": 3.40, "limit_price": 3.36},       # spread 0.06 < 0.10
        {**base, "staged_bid": 3.30, "staged_ask": 3.45, "limit_price": 3.34},       # spread 0.15 >= 0.10
        {**base, "staged_bid": 3.30, "staged_ask": 3.45, "limit_price": 3.34},
        {**base, "staged_bid": 3.30, "staged_ask": 3.45, "limit_price": 3.34, "status": "STALE"},
    ], at=clock.now())
    report = submit_staged(broker, engine, clock, PARAMS, staged_ids=[narrow, wide, stale, 999], dry_run=True,
                           account=SIM_ACCOUNT)
    orders = {r.order_ref: r for r in report.results}
    assert orders[f"tpd-20261123-{narrow}-E1"].description == "SELL 1 AAPL 2026-12-31 215 P (AAPL) ADAPTIVE 3.36 DAY"
    assert orders[f"tpd-20261123-{wide}-E1"].description == "SELL 1 AAPL 2026-12-31 215 P (AAPL) MIDPRICE 3.34 DAY"
    assert report.skipped == (f"#{stale} AAPL 2026-12-31 215 P: STALE", "#999: no such staged opportunity")
    # USE_ADAPTIVE_ALGO=false: a plain limit at the mid, (3.30 + 3.45) / 2 = 3.375 -> 3.38 (up to the cent).
    plain = submit_staged(broker, engine, clock, PARAMS.with_overrides(use_adaptive_algo=False),
                          staged_ids=[no_algo], dry_run=True, account=SIM_ACCOUNT)
    assert plain.results[0].description == "SELL 1 AAPL 2026-12-31 215 P (AAPL) LMT 3.38 DAY"
    runs = [run for run in list_execution_runs(engine) if run.mode == "trade"]
    assert len(runs) == 2 and all(run.status == "SUCCEEDED" and run.dry_run for run in runs)
    assert runs[-1].report["orders"][0]["outcome"] == "DRY_RUN"
    assert sunday_gateway.call(sunday_gateway.broker.open_orders, None) == []


def test_stage_manual_keeps_the_floor_and_the_contract_limit(sunday, engine):
    broker, clock, _ = sunday
    with pytest.raises(TradingPipelineError, match="below the premium floor 0.20"):
        stage_manual(broker, engine, clock, PARAMS, symbol="AAPL", strike=215, expiration=date(2026, 12, 31),
                     premium=0.10, contracts=1)
    with pytest.raises(TradingPipelineError, match="contracts must be 1 to 5"):
        stage_manual(broker, engine, clock, PARAMS, symbol="AAPL", strike=215, expiration=date(2026, 12, 31),
                     premium=3.40, contracts=6)
    with pytest.raises(TradingPipelineError, match="unknown to the broker"):
        stage_manual(broker, engine, clock, PARAMS, symbol="AAPL", strike=213.33, expiration=date(2026, 12, 31),
                     premium=3.40, contracts=1)
    row = stage_manual(broker, engine, clock, PARAMS, symbol="aapl", strike=215, expiration=date(2026, 12, 31),
                       premium=3.40, contracts=2)
    assert (row.symbol, row.session_day, row.contracts, float(row.limit_price)) == ("AAPL", MONDAY, 2, 3.40)
    assert row.status == "STAGED" and row.status_reason.startswith("manual order (tp execute)")
    assert float(row.margin_per_contract) > 0


def test_stage_manual_during_a_session_is_for_that_session(broker, engine, clock):
    # Monday 10:00 New York, the market open: the order is for today, not the next session.
    row = stage_manual(broker, engine, clock, PARAMS, symbol="AAPL", strike=220, expiration=date(2026, 12, 18),
                       premium=2.00, contracts=1)
    assert row.session_day == MONDAY and row.dte == (date(2026, 12, 18) - MONDAY).days
