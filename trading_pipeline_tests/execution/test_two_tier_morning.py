"""The two-tier morning end to end on the simulator (``trading.two_tier``): a Sunday session on
the bundled export, then Monday in simulated time through pre-market validation, quote
refresh, strike selection, Tier 1, fill monitoring, Tier 2 and the final reconciliation; the
ledger's fills match the simulator's executions and no orderRef is ever sent twice."""

from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.intents import IntentStatus
from trading_pipeline.ledger.orders import get_execution_run, intents_for_session
from trading_pipeline.ledger.staging import list_staged
from trading_pipeline_tests.execution.conftest import (
    MONDAY,
    assert_ledger_matches_the_simulator,
    new_york,
    stage_sunday,
)

# Orders that cannot fill in Tier 1 (plain limits at the mid, no adjustment, a one-minute
# window) and a market Tier 2 always finds favorable: Tier 2 must re-price what is left.
BOTH_TIERS = {
    "use_adaptive_algo": False,
    "fill_max_adjustments": 0,
    "fill_monitor_window_seconds": 60,
    "tier2_window_start": "09:33",
    "tier2_window_end": "09:45",
    "tier2_max_spread": 5.0,
    "tier2_vix_high": 90.0,
}


def test_autonomous_live_morning_through_both_tiers(market):
    staging = stage_sunday(market)
    assert len(staging.staged) >= 5
    market.monday(new_york(9, 13))
    lines: list[str] = []

    report = market.morning(mode="autonomous", overrides=BOTH_TIERS, say=lines.append)

    assert report.status == "SUCCEEDED" and not report.dry_run and report.mode == "autonomous"
    # The timeline ran on the broker's clock: the 9:15 check, then Tier 1 at 9:30 or later.
    timings = report.timings
    assert timings["premarket_validation"]["planned"] == new_york(9, 15).astimezone(timezone.utc).isoformat()
    assert timings["premarket_validation"]["started"] < timings["premarket_validation"]["planned"]
    intents = intents_for_session(market.engine, MONDAY, include_dry_run=False)
    entries = [i for i in intents if i.purpose.value == "ENTRY" and i.sent_at is not None]
    assert entries, lines
    assert all(i.sent_at >= new_york(9, 30) for i in entries)
    assert all(i.order_type == "LMT" for i in entries)  # USE_ADAPTIVE_ALGO=false: plain limits at the mid
    # Tier 1 left orders unfilled; the first Tier 2 check after the fill window re-priced them.
    assert report.tier2, lines
    first = report.tier2[0]
    assert first.favorable and first.level == "very favorable"
    assert first.repriced
    for repriced in first.repriced:
        assert repriced["to"] < repriced["from"]
        assert repriced["to"] >= 0.20  # PREMIUM_FLOOR
    # Each trade in the report agrees with the ledger.
    by_ref = {i.order_ref: i for i in intents}
    for trade in report.trades:
        if trade.order_refs:
            assert trade.filled == sum(by_ref[ref].filled_quantity for ref in trade.order_refs)
    sent = [t for t in report.trades if t.status in ("FILLED", "PARTIAL", "WORKING", "NOT_FILLED")]
    assert report.totals["contracts_filled"] == sum(t.filled for t in sent)
    assert report.fill_report["monitored"] == report.totals["sent"] == len(sent)
    # The governor let at most MAX_OPEN_POSITIONS (10) through; the rest are refused with reasons.
    refused = [t for t in report.trades if t.status == "REFUSED"]
    assert len(sent) <= 10 and all("MAX_OPEN_POSITIONS" in t.reason for t in refused)
    assert_ledger_matches_the_simulator(market)
    # The run and its report are in the ledger.
    run = get_execution_run(market.engine, report.execution_run_id)
    assert run.status == "SUCCEEDED" and run.report["totals"] == report.totals
    assert all(i.execution_run_id == run.id for i in intents)
    # Staged rows follow their orders.
    staged = {row.id: row for row in list_staged(market.engine, MONDAY)}
    for trade in sent:
        row = staged[trade.staged_id]
        expected = {"FILLED": "FILLED", "PARTIAL": "PARTIAL", "WORKING": "WORKING"}.get(trade.status)
        if expected:
            assert row.status == expected, (trade, row.status)


def test_hybrid_asks_before_tier1_and_executes_after_a_wait(market):
    stage_sunday(market)
    market.monday(new_york(9, 27))
    shown = []

    def decide(conditions):
        shown.append(conditions)
        return "wait" if len(shown) == 1 else "execute"

    report = market.morning(mode="hybrid", decide=decide, overrides={"tier2_enabled": False,
                                                                       "fill_monitor_window_seconds": 60})

    assert [c.asked for c in shown] == [1, 2]
    first, second = shown
    assert first.planned and all(order.limit is not None for order in first.planned)
    assert first.conditions.vix is not None and first.conditions.average_spread is not None
    assert first.deadline == new_york(9, 40)  # TIER2_WINDOW_END: the question closes with the window
    assert second.at - first.at >= timedelta(seconds=60)  # "wait": asked again a minute later
    assert "SELL" in first.summary() and "decide before 09:40" in first.summary()
    entries = [i for i in intents_for_session(market.engine, MONDAY, include_dry_run=False)
               if i.purpose.value == "ENTRY" and i.sent_at is not None]
    assert entries and all(i.sent_at >= second.at for i in entries)
    assert report.status == "SUCCEEDED"
    assert any(note.startswith("hybrid decision 2") and ": execute" in note for note in report.notes)
    assert_ledger_matches_the_simulator(market)


def test_hybrid_abort_sends_nothing(market):
    stage_sunday(market)
    market.monday(new_york(9, 27))

    report = market.morning(mode="hybrid", decide=lambda conditions: "abort")

    assert report.status == "ABORTED"
    assert market.orders() == [] and market.executions() == []
    assert intents_for_session(market.engine, MONDAY) == []
    assert {t.status for t in report.trades} <= {"ABORTED", "STALE", "NEEDS_REVIEW", "NO_DATA"}
    assert get_execution_run(market.engine, report.execution_run_id).status == "ABORTED"
    # The staged trades stay ready for another run (nothing was consumed).
    assert {row.status for row in list_staged(market.engine, MONDAY, statuses=["ADJUSTED"])} == {"ADJUSTED"}


def test_dry_run_sends_nothing_and_says_what_would_be_sent(market):
    staging = stage_sunday(market)
    ids = [outcome.staged_id for outcome in staging.staged]
    market.monday(new_york(9, 27))
    # Two staged prices made stale by hand: a 20 % move is STALE, a 7 % one needs review.
    from trading_pipeline.ledger.staging import get_staged, update_staged

    stale, review = get_staged(market.engine, ids[0]), get_staged(market.engine, ids[1])
    update_staged(market.engine, stale.id, staged_stock_price=float(stale.staged_stock_price) * 1.25, at=market.now())
    update_staged(market.engine, review.id, staged_stock_price=float(review.staged_stock_price) * 1.075,
                  at=market.now())

    before = {row.id: (row.status, row.strike) for row in list_staged(market.engine, MONDAY)}

    report = market.morning(mode="supervised", dry_run=True)

    assert report.status == "SUCCEEDED" and report.dry_run and report.review_required
    assert market.orders() == []
    statuses = {t.staged_id: t for t in report.trades}
    assert statuses[stale.id].status == "STALE" and "stale" in statuses[stale.id].reason
    assert statuses[review.id].status == "NEEDS_REVIEW" and "needs review" in statuses[review.id].reason
    would = [t for t in report.trades if t.status == "DRY_RUN"]
    assert would and all("would have sent SELL" in t.reason and "tpd-20261123-" in t.reason for t in would)
    intents = intents_for_session(market.engine, MONDAY)
    assert intents and all(i.dry_run and i.order_ref.startswith("tpd-") for i in intents)
    assert all(i.status is IntentStatus.INTENDED for i in intents)
    # A rehearsal changes no staged row: the live morning finds the trades as they were staged.
    assert {row.id: (row.status, row.strike) for row in list_staged(market.engine, MONDAY)} == before
    assert report.fill_report is None and report.tier2 == ()
    assert new_york(9, 30) <= max(i.created_at for i in intents).astimezone(NEW_YORK)


def test_partial_fills_are_replaced_and_the_rest_cancelled_when_the_window_ends(market):
    stage_sunday(market)
    from trading_pipeline.ledger.staging import update_staged

    # Eight contracts per trade, limits at the mid: a resting order fills one to eight contracts
    # at a time (about one minute in seven at the mid), so within ten minutes some trade is all
    # but certainly part filled; any fill above 10 % replaces the remainder.
    for row in list_staged(market.engine, MONDAY, statuses=["STAGED"]):
        update_staged(market.engine, row.id, contracts=8, at=market.now())
    market.monday(new_york(9, 27))

    report = market.morning(mode="autonomous", overrides={
        "use_adaptive_algo": False, "fill_max_adjustments": 0, "fill_partial_threshold": 0.1,
        "fill_monitor_window_seconds": 600, "fill_leave_working": False, "tier2_enabled": False,
        "use_rapid_fire": True, "tier2_window_end": "10:00"})

    intents = {i.id: i for i in intents_for_session(market.engine, MONDAY, include_dry_run=False)}
    replacements = [i for i in intents.values() if i.purpose.value == "REPLACE_REMAINDER"]
    assert replacements, [(t.symbol, t.status, t.filled, t.reason) for t in report.trades]
    for replacement in replacements:
        parent = intents[replacement.parent_intent_id]
        assert parent.status in (IntentStatus.CANCELLED, IntentStatus.FILLED) and parent.filled_quantity > 0
        assert replacement.quantity == parent.quantity - parent.filled_quantity
        assert replacement.order_ref == parent.order_ref[:-2] + "R1"
        assert replacement.limit_price >= Decimal("0.20")  # PREMIUM_FLOOR
    # FILL_LEAVE_WORKING=false: nothing of the morning is left working at the broker.
    assert market.gateway.call(market.sim.open_orders) == []
    sent = [t for t in report.trades if t.order_refs and t.status != "REFUSED"]
    assert sent and {t.status for t in sent} <= {"FILLED", "PARTIAL", "NOT_FILLED"}
    assert report.fill_report["working"] == 0
    assert_ledger_matches_the_simulator(market)
