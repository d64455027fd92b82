"""Contract under test: trading_pipeline.core.reconciliation (ledger against broker).

compare_positions: contracts keyed by account + conId, else by (symbol, right, strike,
expiration) in the row's account (or the only account holding them); signed quantities
(short negative), several ledger trades of one contract summed; matched, quantity_mismatches
(difference = broker - ledger), only_at_broker (import), only_in_ledger (close), ambiguous
(review); zero broker quantities ignored; as_dict is JSON. compare_orders: matched by perm_id,
else by a ref unique on both sides; new_at_broker, to_update (a working order moving on, fills
growing, commission or average price first known), conflicts (final status against another
meaning, fewer fills, fills changed after the ledger closed the order, commission or price
differing) with nothing of a conflicting order updated, unchanged, missing_at_broker.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from trading_pipeline.core.reconciliation import (
    BrokerOrderRecord,
    BrokerPosition,
    LedgerOrder,
    LedgerPosition,
    compare_orders,
    compare_positions,
    final_meaning,
)

EXPIRY = date(2026, 12, 4)


def ledger(trade_id: int, quantity: int, *, symbol="AAPL", strike=180.0, right="P", account="U1",
           con_id: int | None = 1001) -> LedgerPosition:
    return LedgerPosition(trade_id, symbol, right, strike, EXPIRY, quantity, account=account, con_id=con_id)


def broker(con_id: int, quantity: float, *, symbol="AAPL", strike=180.0, right="P", account="U1") -> BrokerPosition:
    return BrokerPosition(account, con_id, symbol, right, strike, EXPIRY, quantity)


# ============================================================================ positions


def test_same_contract_same_quantity_is_matched():
    result = compare_positions([ledger(1, -2)], [broker(1001, -2.0)])
    assert len(result.matched) == 1 and result.clean and result.discrepancies == 0
    match = result.matched[0]
    assert (match.ledger_quantity, match.broker_quantity, match.difference, match.trade_ids) == (-2, -2, 0, (1,))
    assert match.explanation == "AAPL 2026-12-04 180 P: 2 short in the ledger (trade(s) 1) and at the broker"


def test_terms_match_when_the_ledger_has_no_con_id():
    # A trade imported without a conId; the strike stored as a Decimal with four places.
    row = LedgerPosition(5, "aapl", "put", Decimal("180.0000"), EXPIRY, -1, account="U1")
    result = compare_positions([row], [broker(1001, -1)])
    assert [match.trade_ids for match in result.matched] == [(5,)]


def test_a_row_without_account_matches_the_only_account_holding_the_contract():
    result = compare_positions([ledger(5, -1, account=None, con_id=None)], [broker(1001, -1, account="U9")])
    assert len(result.matched) == 1


def test_a_row_without_account_is_ambiguous_when_two_accounts_hold_the_contract():
    result = compare_positions(
        [ledger(5, -1, account=None, con_id=None)],
        [broker(1001, -1, account="U1"), broker(1001, -1, account="U2")],
    )
    assert [item.ledger.trade_id for item in result.ambiguous] == [5]
    assert "several (U1, U2): review it by hand" in result.ambiguous[0].explanation
    # Neither broker position is claimed, and the row is not proposed for closing.
    assert len(result.only_at_broker) == 2 and result.only_in_ledger == ()
    assert result.discrepancies == 3


def test_two_ledger_trades_of_one_contract_are_summed():
    # Sold 2 on Monday and 1 on Tuesday: the broker holds 3 short.
    result = compare_positions([ledger(1, -2), ledger(2, -1)], [broker(1001, -3)])
    assert [match.trade_ids for match in result.matched] == [(1, 2)]


def test_broker_holds_more():
    result = compare_positions([ledger(1, -2)], [broker(1001, -3)])
    mismatch = result.quantity_mismatches[0]
    assert (mismatch.ledger_quantity, mismatch.broker_quantity, mismatch.difference) == (-2, -3, -1)
    assert mismatch.explanation == ("AAPL 2026-12-04 180 P: ledger 2 short (trade(s) 1), broker 3 short: "
                                    "the broker holds 1 more (difference -1)")


def test_broker_holds_fewer():
    result = compare_positions([ledger(1, -3)], [broker(1001, -1)])
    mismatch = result.quantity_mismatches[0]
    assert mismatch.difference == 2 and "the broker holds 2 fewer (difference +2)" in mismatch.explanation


def test_broker_holds_the_other_side():
    result = compare_positions([ledger(1, -1)], [broker(1001, 1)])
    mismatch = result.quantity_mismatches[0]
    assert mismatch.difference == 2 and "ledger 1 short (trade(s) 1), broker 1 long: the broker holds the other side" \
        in mismatch.explanation


def test_only_at_the_broker_is_to_import():
    result = compare_positions([], [broker(2002, -1, symbol="TSLA", strike=400.0, right="C")])
    item = result.only_at_broker[0]
    assert item.broker.con_id == 2002
    assert item.explanation == ("TSLA 2026-12-04 400 C is held at the broker (1 short, account U1, conId 2002) "
                                "but not open in the ledger: import it as a reconciliation trade")


def test_only_in_the_ledger_is_to_close():
    result = compare_positions([ledger(9, -2, symbol="NVDA", strike=100.0, con_id=3003)], [])
    item = result.only_in_ledger[0]
    assert item.ledger.trade_id == 9
    assert item.explanation == ("trade 9 NVDA 2026-12-04 100 P is open in the ledger (2 short) but not held at the "
                                "broker in account U1: it was closed outside the pipeline, expired or was assigned; "
                                "close it in the ledger")


def test_a_different_con_id_with_the_same_terms_is_a_different_contract():
    # e.g. an adjusted option after a corporate action keeps its terms but not its conId
    result = compare_positions([ledger(1, -1, con_id=1001)], [broker(1999, -1)])
    assert len(result.only_in_ledger) == 1 and len(result.only_at_broker) == 1 and not result.matched


def test_another_account_is_another_position():
    result = compare_positions([ledger(1, -1, account="U1")], [broker(1001, -1, account="U2")])
    assert len(result.only_in_ledger) == 1 and len(result.only_at_broker) == 1


def test_zero_broker_quantities_are_ignored_and_duplicates_summed():
    # IBKR lists a position closed today with 0; the same contract listed twice is summed.
    result = compare_positions([ledger(1, -2)], [broker(1001, -1), broker(1001, -1), broker(4004, 0, symbol="X")])
    assert len(result.matched) == 1 and result.matched[0].broker_quantity == -2 and result.clean


def test_both_directions_at_once_with_a_json_report():
    result = compare_positions(
        [ledger(1, -2), ledger(2, -1, symbol="MSFT", strike=300.0, con_id=None), ledger(3, -3, symbol="NVDA",
                                                                                       strike=100.0, con_id=3003)],
        [broker(1001, -2), broker(2001, -2, symbol="MSFT", strike=300.0), broker(4004, 1, symbol="TSLA",
                                                                                  strike=400.0, right="C")],
    )
    assert result.summary() == "1 matched, 1 quantity mismatch(es), 1 only at the broker, 1 only in the ledger"
    report = json.loads(json.dumps(result.as_dict()))
    assert report["discrepancies"] == 3
    assert report["quantity_mismatches"][0]["difference"] == -1
    assert report["only_at_broker"][0]["broker"]["con_id"] == 4004
    assert report["only_in_ledger"][0]["ledger"]["trade_id"] == 3
    assert report["matched"][0]["ledger"][0]["expiration"] == "2026-12-04"


def test_bad_quantities_are_refused():
    with pytest.raises(ValueError, match="non-zero"):
        ledger(1, 0)
    with pytest.raises(ValueError, match="whole contracts"):
        broker(1001, -1.5)


# ============================================================================ orders


def test_final_meanings_in_both_vocabularies():
    assert [final_meaning(s) for s in ("Filled", "FILLED", "ApiCancelled", "CANCELLED", "Inactive", "Submitted",
                                       "ACKNOWLEDGED")] == ["filled", "filled", "cancelled", "cancelled",
                                                            "rejected", None, None]


def test_a_broker_order_the_ledger_does_not_know_is_new():
    result = compare_orders([], [BrokerOrderRecord(77, "", "Filled", 1, 1, 0.40, 0.65, symbol="AAPL")])
    assert [item.broker.perm_id for item in result.new_at_broker] == [77]
    assert result.new_at_broker[0].explanation == "order perm 77 AAPL (Filled, 1 filled) is not in the ledger: add it"


def test_a_working_order_that_filled_is_updated():
    result = compare_orders(
        [LedgerOrder(10, "tp-20261123-4-X1", "Submitted", 0, 2)],
        [BrokerOrderRecord(10, "tp-20261123-4-X1", "Filled", 2, 2, 0.48, 1.30)],
    )
    update = result.to_update[0]
    assert update.changes == {"status": "Filled", "filled": 2, "avg_fill_price": 0.48, "commission": 1.30}
    assert update.explanation == ("order perm 10: status Submitted -> Filled; filled 0 -> 2; "
                                  "average fill price none -> 0.48; commission 1.3 reported")
    assert result.conflicts == () and result.clean


def test_more_fills_move_the_average_price():
    result = compare_orders(
        [LedgerOrder(10, "r", "Submitted", 1, 3, 0.50)],
        [BrokerOrderRecord(10, "r", "Submitted", 3, 3, 0.52)],
    )
    assert result.to_update[0].changes == {"filled": 3, "avg_fill_price": 0.52}


def test_a_working_status_text_moving_on_is_an_update():
    result = compare_orders([LedgerOrder(10, "r", "PreSubmitted")], [BrokerOrderRecord(10, "r", "Submitted")])
    assert result.to_update[0].changes == {"status": "Submitted"}


@pytest.mark.parametrize("ledger_status, broker_status", [
    ("ACKNOWLEDGED", "Submitted"),  # an intent status against a working text: the same
    ("FILLED", "Filled"),
    ("Cancelled", "ApiCancelled"),
])
def test_same_meaning_in_other_words_is_unchanged(ledger_status, broker_status):
    filled = 1 if "ill" in broker_status.lower() else 0
    result = compare_orders([LedgerOrder(10, "r", ledger_status, filled, 1)],
                            [BrokerOrderRecord(10, "r", broker_status, filled, 1)])
    assert len(result.unchanged) == 1 and result.discrepancies == 0


def test_filled_in_the_ledger_cancelled_at_the_broker_is_a_conflict_and_nothing_is_written():
    result = compare_orders(
        [LedgerOrder(10, "r", "FILLED", 2, 2, 0.48, None)],
        [BrokerOrderRecord(10, "r", "Cancelled", 2, 2, 0.48, 1.30)],
    )
    assert result.to_update == () and not result.clean
    conflict = result.conflicts[0]
    assert conflict.explanation == ("order perm 10: conflict: the ledger says FILLED, the broker Cancelled; "
                                    "not changed, review it")
    # The commission the broker now reports is listed with the conflict, not written.
    assert [difference.field for difference in conflict.differences] == ["status", "commission"]


def test_fewer_fills_at_the_broker_is_a_conflict():
    result = compare_orders([LedgerOrder(10, "r", "Submitted", 2, 3)], [BrokerOrderRecord(10, "r", "Submitted", 1, 3)])
    assert "the ledger has 2 filled, the broker only 1" in result.conflicts[0].explanation


def test_fills_after_the_ledger_closed_the_order_are_a_conflict():
    result = compare_orders([LedgerOrder(10, "r", "Cancelled", 1, 3)], [BrokerOrderRecord(10, "r", "Cancelled", 2, 3)])
    assert "the ledger closed the order (Cancelled) with 1 filled, the broker reports 2" in \
        result.conflicts[0].explanation


def test_a_different_commission_is_a_conflict_but_half_a_cent_is_not():
    differs = compare_orders([LedgerOrder(10, "r", "Filled", 1, 1, 0.5, 0.65)],
                             [BrokerOrderRecord(10, "r", "Filled", 1, 1, 0.5, 1.30)])
    assert "commission: ledger 0.65, broker 1.3" in differs.conflicts[0].explanation
    close = compare_orders([LedgerOrder(10, "r", "Filled", 1, 1, 0.5, 0.65)],
                           [BrokerOrderRecord(10, "r", "Filled", 1, 1, 0.5, 0.654)])
    assert len(close.unchanged) == 1


def test_a_different_average_price_on_a_settled_order_is_a_conflict():
    result = compare_orders([LedgerOrder(10, "r", "Filled", 1, 1, 0.50)],
                            [BrokerOrderRecord(10, "r", "Filled", 1, 1, 0.55)])
    assert "average fill price: ledger 0.5, broker 0.55" in result.conflicts[0].explanation


def test_matching_by_ref_when_the_ledger_has_no_perm_id():
    result = compare_orders([LedgerOrder(None, "tp-20261123-4-X1", "Submitted")],
                            [BrokerOrderRecord(55, "tp-20261123-4-X1", "Filled", 1, 1)])
    assert result.to_update[0].broker.perm_id == 55 and result.new_at_broker == ()


def test_a_ref_shared_by_two_broker_orders_cannot_be_matched():
    result = compare_orders([LedgerOrder(None, "dup", "Submitted")],
                            [BrokerOrderRecord(55, "dup", "Submitted"), BrokerOrderRecord(56, "dup", "Submitted")])
    assert "2 broker orders carry its ref dup" in result.missing_at_broker[0].explanation
    assert [item.broker.perm_id for item in result.new_at_broker] == [55, 56]


def test_a_replaced_order_with_a_new_perm_id_is_not_matched_by_its_ref():
    result = compare_orders([LedgerOrder(10, "r", "Cancelled")], [BrokerOrderRecord(11, "r", "Submitted")])
    assert [item.ledger.perm_id for item in result.missing_at_broker] == [10]
    assert [item.broker.perm_id for item in result.new_at_broker] == [11]


def test_ledger_orders_missing_at_the_broker_are_information():
    result = compare_orders([LedgerOrder(10, "r", "Filled", 1, 1)], [])
    assert result.discrepancies == 0 and result.clean
    assert "not in the broker's list (IBKR lists the current session's orders only)" in \
        result.missing_at_broker[0].explanation


def test_order_report_is_json():
    result = compare_orders(
        [LedgerOrder(10, "a", "Submitted"), LedgerOrder(11, "b", "Filled", 1, 1, 0.5, 0.65)],
        [BrokerOrderRecord(10, "a", "Filled", 1, 1, 0.45), BrokerOrderRecord(11, "b", "Cancelled", 1, 1, 0.5, 0.65),
         BrokerOrderRecord(12, "c", "Submitted")],
    )
    report = json.loads(json.dumps(result.as_dict()))
    assert report["summary"] == "1 new at the broker, 1 to update, 1 conflict(s), 0 unchanged, 0 not in the broker's list"
    assert report["discrepancies"] == 3
    assert report["conflicts"][0]["differences"][0] == {
        "field": "status", "ledger": "Filled", "broker": "Cancelled",
        "explanation": "the ledger says Filled, the broker Cancelled"}


def test_a_perm_id_listed_twice_by_the_broker_is_refused():
    with pytest.raises(ValueError, match="perm_id 10 twice"):
        compare_orders([], [BrokerOrderRecord(10, "a", "Filled"), BrokerOrderRecord(10, "a", "Filled")])
