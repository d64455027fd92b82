"""Contract under test: trading_pipeline.core.intents (pure).

- deterministic_order_ref gives "tp-<yyyymmdd>-<staged id>-<purpose code><seq>" (dry runs
  "tpd-..."), never longer than 40 characters, and parse_order_ref reads it back; any other
  text is not ours;
- status_from_broker maps every TWS order status (and the fill count) to an intent status;
  next_status never moves an intent backwards, FILLED is final, a fill completes any intent,
  CANCELLED / REJECTED are not reopened by a late event, UNKNOWN takes what the broker says;
- reconcile_intents, the table of cases: broker ids attached to intents found at the broker,
  missing fills recorded once (recorded exec ids skipped, duplicates collapsed), intents not
  at the broker closed only when that is provable, otherwise UNKNOWN for review with a reason
  (never re-sent), duplicates at the broker flagged, and open broker orders with our prefix
  but no intent reported.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_pipeline.core.intents import (
    MAX_ORDER_REF_LENGTH,
    BrokerExecution,
    BrokerOrder,
    IntentPurpose,
    IntentStatus,
    LedgerIntent,
    ParsedOrderRef,
    deterministic_order_ref,
    is_our_order_ref,
    next_status,
    parse_order_ref,
    reconcile_intents,
    status_from_broker,
)

S = IntentStatus
DAY = date(2026, 11, 23)
CREATED = datetime(2026, 11, 23, 14, 29, tzinfo=timezone.utc)
EXEC_TIME = datetime(2026, 11, 23, 14, 31, tzinfo=timezone.utc)
REF = "tp-20261123-42-E1"


# --- order refs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("staged_id", "purpose", "seq", "dry_run", "expected"),
    [
        (42, IntentPurpose.ENTRY, 1, False, "tp-20261123-42-E1"),
        (42, IntentPurpose.ENTRY, 1, True, "tpd-20261123-42-E1"),
        (42, IntentPurpose.REPLACE_REMAINDER, 2, False, "tp-20261123-42-R2"),
        (7, "EXIT", 1, False, "tp-20261123-7-X1"),
        (512345678901, IntentPurpose.LIQUIDATE, 3, False, "tp-20261123-512345678901-L3"),  # a conId
        (0, IntentPurpose.ENTRY, 999_999, False, "tp-20261123-0-E999999"),
    ],
)
def test_deterministic_order_ref_format(staged_id, purpose, seq, dry_run, expected):
    assert deterministic_order_ref(DAY, staged_id, purpose, seq, dry_run=dry_run) == expected
    assert parse_order_ref(expected) == ParsedOrderRef(DAY, staged_id, IntentPurpose(purpose), seq, dry_run)


def test_longest_possible_ref_is_exactly_forty_characters():
    # "tpd-" 4 + "20261123" 8 + "-" + 19 digits + "-" + "L" + 6 digits = 40
    ref = deterministic_order_ref(DAY, 10**19 - 1, IntentPurpose.LIQUIDATE, 999_999, dry_run=True)
    assert ref == "tpd-20261123-9999999999999999999-L999999"
    assert len(ref) == MAX_ORDER_REF_LENGTH == 40


@given(
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2199, 12, 31)),
    staged_id=st.integers(min_value=0, max_value=10**19 - 1),
    purpose=st.sampled_from(list(IntentPurpose)),
    seq=st.integers(min_value=1, max_value=999_999),
    dry_run=st.booleans(),
)
def test_every_ref_fits_and_parses_back(day, staged_id, purpose, seq, dry_run):
    ref = deterministic_order_ref(day, staged_id, purpose, seq, dry_run=dry_run)
    assert len(ref) <= 40
    assert parse_order_ref(ref) == ParsedOrderRef(day, staged_id, purpose, seq, dry_run)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((DAY, -1, "ENTRY", 1), "staged_id"),
        ((DAY, 10**19, "ENTRY", 1), "staged_id"),
        ((DAY, True, "ENTRY", 1), "staged_id"),
        ((DAY, 1, "ENTRY", 0), "seq"),
        ((DAY, 1, "ENTRY", 1_000_000), "seq"),
        ((datetime(2026, 11, 23, tzinfo=timezone.utc), 1, "ENTRY", 1), "session_day"),
    ],
)
def test_bad_ref_inputs_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        deterministic_order_ref(*args)
    with pytest.raises(ValueError):
        deterministic_order_ref(DAY, 1, "BUY", 1)  # not a purpose


@pytest.mark.parametrize(
    "text",
    [None, "", "manual order", "tp-2026112-42-E1", "tp-20261323-42-E1", "tp-20261123-42-Q1",
     "tp-20261123-42-E0", "xtp-20261123-42-E1", "tp-20261123-42-E1 ", "TP-20261123-42-E1",
     "tp-20261123--E1", "tp-20261123-42-E1234567"],
)
def test_other_texts_are_not_our_refs(text):
    assert parse_order_ref(text) is None
    assert not is_our_order_ref(text)


# --- broker statuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker_status", "filled", "expected"),
    [
        ("PendingSubmit", 0, S.SENT),
        ("ApiPending", 0, S.SENT),
        ("PreSubmitted", 0, S.ACKNOWLEDGED),
        ("Submitted", 0, S.ACKNOWLEDGED),
        ("Submitted", 1, S.PARTIAL),
        ("PendingCancel", 1, S.PARTIAL),  # still working until the cancel is confirmed
        ("Submitted", 3, S.FILLED),  # the count wins over a lagging status text
        ("Filled", 0, S.FILLED),  # and the Filled text over a lagging count
        ("Cancelled", 0, S.CANCELLED),
        ("ApiCancelled", 2, S.CANCELLED),  # cancelled with 2 of 3 filled: done, not working
        ("Inactive", 0, S.REJECTED),
        ("ValidationError", 0, S.ACKNOWLEDGED),  # ib_async's mark of a refused change: still live
        ("ValidationError", 1, S.PARTIAL),
    ],
)
def test_status_from_broker(broker_status, filled, expected):
    assert status_from_broker(broker_status, filled, 3) is expected


def test_unknown_broker_status_is_refused_not_guessed():
    with pytest.raises(ValueError, match="unknown broker order status 'Working'"):
        status_from_broker("Working", 0, 1)
    with pytest.raises(ValueError, match="quantity"):
        status_from_broker("Submitted", 0, 0)


@pytest.mark.parametrize(
    ("current", "observed", "expected"),
    [
        (S.SENT, S.ACKNOWLEDGED, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.SENT, S.ACKNOWLEDGED),  # a late PendingSubmit does not go back
        (S.PARTIAL, S.ACKNOWLEDGED, S.PARTIAL),  # a stale event with fewer fills
        (S.PARTIAL, S.CANCELLED, S.CANCELLED),
        (S.CANCELLED, S.ACKNOWLEDGED, S.CANCELLED),  # not reopened by a late event
        (S.REJECTED, S.PARTIAL, S.REJECTED),
        (S.CANCELLED, S.FILLED, S.FILLED),  # the fill won the race with the cancel
        (S.FILLED, S.CANCELLED, S.FILLED),  # final
        (S.UNKNOWN, S.SENT, S.SENT),  # broker evidence resolves UNKNOWN
        (S.UNKNOWN, S.CANCELLED, S.CANCELLED),
        (S.INTENDED, S.PARTIAL, S.PARTIAL),
    ],
)
def test_next_status(current, observed, expected):
    assert next_status(current, observed) is expected


# --- reconciliation: the table of cases ------------------------------------------------------


def intent(status, *, quantity=3, filled=0, ref=REF, intent_id=1, perm_id=None, order_id=None,
           created_at=CREATED, dry_run=False):
    return LedgerIntent(intent_id=intent_id, order_ref=ref, status=status, quantity=quantity, filled=filled,
                        broker_order_id=order_id, perm_id=perm_id, created_at=created_at, dry_run=dry_run)


def order(status="Submitted", *, filled=0, remaining=3, ref=REF, perm_id=9001, order_id=17):
    return BrokerOrder(order_ref=ref, perm_id=perm_id, broker_order_id=order_id, status=status, filled=filled,
                       remaining=remaining)


def execution(exec_id, quantity, *, ref=REF, perm_id=9001, order_id=17, price=1.25):
    return BrokerExecution(exec_id=exec_id, order_ref=ref, perm_id=perm_id, broker_order_id=order_id,
                           quantity=quantity, price=price, time=EXEC_TIME, side="SLD", symbol="AAPL")


SINCE_LATER = CREATED + timedelta(minutes=5)  # executions listed only from after the intent

# (case, ledger intent, open orders, executions, executions_since,
#  expected status or None for "no update", a fragment of the reason, expected (order id, perm id))
CASES = [
    ("intended, no trace: never sent",
     intent(S.INTENDED), [], [], None, S.CANCELLED, "never sent", (None, None)),
    ("intended, no trace, executions incomplete: still provably never sent",
     intent(S.INTENDED), [], [], SINCE_LATER, S.CANCELLED, "never sent", (None, None)),
    ("sent, found open: ids attached",
     intent(S.SENT), [order("Submitted")], [], None, S.ACKNOWLEDGED, "open at the broker (Submitted", (17, 9001)),
    ("sent, found pending",
     intent(S.SENT), [order("PendingSubmit")], [], None, S.SENT, "PendingSubmit", (17, 9001)),
    ("sent, not at the broker, no executions: review",
     intent(S.SENT), [], [], None, S.UNKNOWN, "never re-sent", (None, None)),
    ("sent, gone, executions fill it: filled (ids from the executions)",
     intent(S.SENT), [], [execution("e1", 1), execution("e2", 2)], None, S.FILLED, "filled at the broker: 3 of 3",
     (17, 9001)),
    ("acknowledged, open and partly filled",
     intent(S.ACKNOWLEDGED, perm_id=9001, order_id=17), [order("PreSubmitted", filled=1, remaining=2)],
     [execution("e1", 1)], None, S.PARTIAL, "filled 1 of 3", (17, 9001)),
    ("acknowledged, open with the Filled status",
     intent(S.ACKNOWLEDGED, perm_id=9001, order_id=17), [order("Filled", filled=3, remaining=0)], [], None,
     S.FILLED, "Filled", (17, 9001)),
    ("sent, open with the Cancelled status",
     intent(S.SENT), [order("Cancelled")], [], None, S.CANCELLED, "Cancelled", (17, 9001)),
    ("acknowledged, no longer open, never filled: cancelled or expired",
     intent(S.ACKNOWLEDGED, perm_id=9001, order_id=17), [], [], None, S.CANCELLED, "never filled", (17, 9001)),
    ("acknowledged, gone, executions before the list starts: review",
     intent(S.ACKNOWLEDGED, perm_id=9001, order_id=17), [], [], SINCE_LATER, S.UNKNOWN, "not available",
     (17, 9001)),
    ("partial with a recorded fill, gone: the remainder is not working",
     intent(S.PARTIAL, filled=1, perm_id=9001, order_id=17), [], [], None, S.CANCELLED, "filled 1 of 3",
     (17, 9001)),
    ("partial without any fill: the ledger contradicts the broker",
     intent(S.PARTIAL, perm_id=9001, order_id=17), [], [], None, S.UNKNOWN, "no fill is recorded", (17, 9001)),
    ("unknown, still no trace: nothing new",
     intent(S.UNKNOWN), [], [], None, None, "", (None, None)),
    ("unknown, found open: resolved",
     intent(S.UNKNOWN), [order("Submitted")], [], None, S.ACKNOWLEDGED, "open at the broker", (17, 9001)),
    ("cancelled in the ledger but open at the broker: broker truth wins",
     intent(S.CANCELLED), [order("Submitted")], [], None, S.ACKNOWLEDGED, "open at the broker", (17, 9001)),
    ("cancelled, a late execution completes it",
     intent(S.CANCELLED, filled=2, perm_id=9001, order_id=17), [], [execution("e3", 1)], None, S.FILLED,
     "filled at the broker: 3 of 3", (17, 9001)),
    ("cancelled with a late partial execution: stays cancelled",
     intent(S.CANCELLED, filled=1, perm_id=9001, order_id=17), [], [execution("e3", 1)], None, None, "",
     (17, 9001)),
    ("filled, nothing new",
     intent(S.FILLED, filled=3, perm_id=9001, order_id=17), [], [], None, None, "", (17, 9001)),
    ("rejected, nothing new",
     intent(S.REJECTED), [], [], None, None, "", (None, None)),
    ("two open orders carry the ref: a duplicate",
     intent(S.ACKNOWLEDGED, perm_id=9001, order_id=17), [order(), order(perm_id=9002, order_id=18)], [], None,
     S.UNKNOWN, "2 open broker orders carry order ref tp-20261123-42-E1 (perm ids 9001, 9002)", (17, 9001)),
    ("a dry-run intent is never reconciled",
     intent(S.INTENDED, dry_run=True, ref="tpd-20261123-42-E1"), [], [], None, None, "", (None, None)),
    ("a created_at of None counts as not covered",
     intent(S.ACKNOWLEDGED, created_at=None, perm_id=9001, order_id=17), [], [], SINCE_LATER, S.UNKNOWN,
     "not available", (17, 9001)),
]


@pytest.mark.parametrize(
    ("ledger", "orders", "executions", "since", "expected", "reason", "ids"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_reconciliation_case(ledger, orders, executions, since, expected, reason, ids):
    result = reconcile_intents([ledger], orders, executions, executions_since=since)
    if expected is None:
        assert result.updates == ()
        return
    (update,) = result.updates
    assert update.intent_id == ledger.intent_id
    assert update.previous_status is ledger.status
    assert update.status is expected
    assert reason in update.reason
    assert (update.broker_order_id, update.perm_id) == ids
    assert update.needs_review is (expected is S.UNKNOWN)


def test_ids_are_attached_even_when_the_status_stays():
    # SENT, the broker still says PendingSubmit: the status stays SENT, the ids are new.
    result = reconcile_intents([intent(S.SENT)], [order("PendingSubmit")], [])
    (update,) = result.updates
    assert (update.previous_status, update.status) == (S.SENT, S.SENT)
    assert (update.broker_order_id, update.perm_id, update.broker_status) == (17, 9001, "PendingSubmit")


def test_recorded_executions_are_neither_recorded_nor_counted_twice():
    # The ledger holds e1 (1 contract, in `filled`); the broker lists e1 and e2 (1 each).
    # Filled is 1 + 1 = 2 of 3, not 3: the order is still open, so PARTIAL.
    ledger = intent(S.PARTIAL, filled=1, perm_id=9001, order_id=17)
    result = reconcile_intents(
        [ledger], [order("Submitted", filled=2, remaining=1)], [execution("e1", 1), execution("e2", 1)],
        recorded_exec_ids={"e1"},
    )
    assert [fill.execution.exec_id for fill in result.fills] == ["e2"]
    assert result.fills[0].intent_id == 1
    assert result.updates == ()  # PARTIAL stays PARTIAL, ids known


def test_an_execution_listed_twice_is_one_fill():
    result = reconcile_intents([intent(S.SENT)], [], [execution("e1", 3), execution("e1", 3)])
    assert [fill.execution.exec_id for fill in result.fills] == ["e1"]
    assert result.updates[0].status is S.FILLED
    assert result.updates[0].filled == 3  # not 6


def test_fills_without_intent_are_recorded_and_ours_are_reported():
    ours_unknown = execution("e7", 1, ref="tp-20261120-5-E1", perm_id=7001)
    manual = execution("e8", 2, ref="", perm_id=7002)
    result = reconcile_intents([intent(S.FILLED, filled=3)], [], [ours_unknown, manual])
    assert [(fill.execution.exec_id, fill.intent_id) for fill in result.fills] == [("e7", None), ("e8", None)]
    assert [fill.execution.exec_id for fill in result.unmatched_fills] == ["e7"]  # the manual trade is not ours
    assert not result.clean


def test_open_orders_with_our_prefix_and_no_intent_are_reported_never_adopted():
    stray = order("Submitted", ref="tp-20261123-99-E1", perm_id=8001)
    foreign = order("Submitted", ref="my manual order", perm_id=8002)
    dry = order("Submitted", ref="tpd-20261123-98-E1", perm_id=8003)
    result = reconcile_intents([], [stray, foreign, dry], [])
    assert [unmatched.order.perm_id for unmatched in result.unmatched_orders] == [8001, 8003]
    assert "never adopted automatically" in result.unmatched_orders[0].reason
    assert result.updates == () and result.fills == ()


def test_several_intents_at_once_and_the_summary():
    entry = intent(S.SENT, intent_id=1, ref="tp-20261123-1-E1")
    lost = intent(S.SENT, intent_id=2, ref="tp-20261123-2-E1")
    unsent = intent(S.INTENDED, intent_id=3, ref="tp-20261123-3-E1")
    done = intent(S.FILLED, intent_id=4, ref="tp-20261123-4-E1", filled=3)
    result = reconcile_intents(
        [entry, lost, unsent, done], [order("Submitted", ref="tp-20261123-1-E1")], [],
    )
    assert {(u.intent_id, u.status) for u in result.updates} == {
        (1, S.ACKNOWLEDGED), (2, S.UNKNOWN), (3, S.CANCELLED)
    }
    assert [u.intent_id for u in result.needs_review] == [2]
    assert result.summary() == (
        "3 intent update(s), 0 fill(s) to record, 1 for review, 0 broker order(s) and 0 fill(s) without an intent"
    )
    assert not result.clean


def test_nothing_to_do_is_clean():
    result = reconcile_intents([intent(S.FILLED, filled=3)], [], [])
    assert result.clean and result.updates == () and result.fills == ()


def test_two_intents_with_one_ref_are_refused():
    with pytest.raises(ValueError, match="two intents share the order ref"):
        reconcile_intents([intent(S.SENT, intent_id=1), intent(S.SENT, intent_id=2)], [], [])


def test_input_records_validate_themselves():
    with pytest.raises(ValueError, match="quantity"):
        intent(S.SENT, quantity=0)
    with pytest.raises(ValueError, match="quantity"):
        execution("e1", 0)
    with pytest.raises(ValueError, match="exec id"):
        execution("", 1)
    assert intent("SENT").status is S.SENT  # text is read as the enum
