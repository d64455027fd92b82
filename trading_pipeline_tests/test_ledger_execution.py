"""Contract of the ledger's execution tables and repositories (migration 0002; ledger.staging,
ledger.orders, ledger.risk), on SQLite and on PostgreSQL alike.

- migration 0002 comes up from an empty database and from 0001 (scans kept), matches
  schema.py, and goes down to 0001 again; reset empties the new tables too;
- staged opportunities: stored and read back exactly (money as Decimal), filtered, updated,
  cancelled only before their order went out (their unsent intents are cancelled with them);
  a replaced scan leaves its staged rows in place;
- order intents: written INTENDED under a unique deterministic ref (the same ref again
  returns the same intent; the same ref for a different order is refused), claimed for
  sending exactly once (never a dry run, never under a halt that forbids its purpose),
  acknowledged, moved by broker statuses without going backwards, filled by executions
  recorded once per exec id (commission filled in later), and the staged opportunity
  follows; every change is in the intent's event history;
- batches (create_intents, mark_sent_many, record_acknowledgements, cancel_unsent) follow the
  single-order rules in one transaction; limit changes are stored and logged;
- reconciliation applied to the ledger: ids attached, fills recorded, intents closed or
  flagged, broker orders without intent kept; applying twice changes nothing more, and an
  intent moved since the snapshot is skipped;
- trading state, breaker trips, session start, daily counters, approvals, execution runs;
- concurrency: two engines racing on one ref, one claim, one exec id, one counter, a cancel
  against a send, an emergency stop against a breaker trip (no deadlock on PostgreSQL).

PostgreSQL tests share one migrated database per module, emptied before each test (see the
``ledger_engine`` override below); SQLite tests get a fresh file each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from trading_pipeline.core.intents import (
    BrokerExecution,
    BrokerOrder,
    IntentPurpose,
    IntentStatus,
    deterministic_order_ref,
    reconcile_intents,
)
from trading_pipeline.core.risk import HaltKind
from trading_pipeline.ledger import (
    current_revision,
    head_revision,
    make_engine,
    migrate,
    replace_scan,
    reset,
    table_counts,
)
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.migrate import alembic_config
from trading_pipeline.ledger.orders import (
    Acknowledgement,
    NewIntent,
    apply_reconciliation,
    cancel_unsent,
    create_intent,
    create_intents,
    fills_for_intent,
    finish_execution_run,
    get_broker_order,
    get_execution_run,
    get_intent,
    intents_for_reconciliation,
    intents_for_session,
    intents_for_staged,
    list_execution_runs,
    list_fills,
    mark_acknowledged,
    mark_rejected,
    mark_sent,
    mark_sent_many,
    open_intents,
    order_events_for_intent,
    record_acknowledgements,
    record_fill,
    record_limit_change,
    record_status,
    recorded_exec_ids,
    start_execution_run,
)
from trading_pipeline.ledger.risk import (
    TradingHaltedError,
    clear_halt,
    decide_approval,
    get_approval,
    get_daily_counters,
    get_trading_state,
    increment_daily_counter,
    list_breaker_trips,
    pending_approvals,
    record_breaker_trip,
    request_approval,
    set_halt,
    start_session,
)
from trading_pipeline.ledger.schema import fills, metadata, order_intents, staged_opportunities
from trading_pipeline.ledger.staging import (
    LedgerStateError,
    cancel_staged,
    get_staged,
    insert_staged,
    list_staged,
    update_staged,
)

UTC = timezone.utc
SUNDAY = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
MONDAY = date(2026, 11, 23)
OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # 9:30 New York
EXECUTION_TABLES = {
    "staged_opportunities", "execution_runs", "order_intents", "broker_orders", "order_events", "fills",
    "trading_state", "breaker_trips", "daily_counters", "approvals",
}


def staged_row(**overrides) -> dict:
    row = {
        "session_day": MONDAY,
        "symbol": "aapl ",
        "sector": "Technology",
        "expiration": date(2026, 12, 18),
        "strike": 200.0,
        "contracts": 3,
        "staged_stock_price": 230.5,
        "staged_bid": 1.1,
        "staged_ask": 1.3,
        "staged_mid": 1.2,
        "limit_price": 1.15,
        "delta": -0.18,
        "iv": 0.31,
        "otm_pct": 13.23,
        "dte": 25,
        "margin_per_contract": 4150.25,
        "validation_reasons": [],
    }
    row.update(overrides)
    return row


def stage(engine, **overrides) -> int:
    (staged_id,) = insert_staged(engine, [staged_row(**overrides)], at=SUNDAY)
    return staged_id


def entry(staged_id: int, *, seq: int = 1, dry_run: bool = False, purpose=IntentPurpose.ENTRY, **overrides) -> NewIntent:
    terms = dict(
        order_ref=deterministic_order_ref(MONDAY, staged_id, purpose, seq, dry_run=dry_run),
        session_day=MONDAY,
        purpose=purpose,
        symbol="AAPL",
        action="SELL",
        quantity=3,
        order_type="LMT",
        limit_price=1.15,
        con_id=712345678901,  # above 2**32: needs BIGINT
        expiration=date(2026, 12, 18),
        strike=200.0,
        right="P",
        dry_run=dry_run,
        account="DU1234567",
        staged_opportunity_id=staged_id,
    )
    terms.update(overrides)
    return NewIntent(**terms)


def execution(exec_id: str, quantity: int, price: float, *, ref: str, perm_id: int = 9001, commission=None,
              minutes: int = 1) -> BrokerExecution:
    return BrokerExecution(
        exec_id=exec_id, order_ref=ref, perm_id=perm_id, broker_order_id=17, quantity=quantity, price=price,
        time=OPEN + timedelta(minutes=minutes), commission=commission, side="SLD", symbol="AAPL",
        con_id=712345678901, account="DU1234567", expiration=date(2026, 12, 18), strike=200.0, right="P",
    )


def sent_intent(engine, staged_id: int | None = None, **overrides):
    staged_id = staged_id if staged_id is not None else stage(engine)
    intent = create_intent(engine, entry(staged_id, **overrides), at=OPEN)
    return mark_sent(engine, intent.id, at=OPEN + timedelta(seconds=1))


def race(engines, action: Callable) -> list:
    """Run action(engine) in one thread per engine, started together; results or exceptions."""
    start = threading.Barrier(len(engines))
    results: list = [None] * len(engines)

    def run(index, engine):
        start.wait()
        try:
            results[index] = action(engine)
        except Exception as exc:  # collected for the assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index, engine)) for index, engine in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture(scope="module")
def postgres_execution_ledger(postgres_server) -> str:
    """One PostgreSQL database for this module, migrated once: creating a database per test
    costs about a second each (the migration tests below still start from empty ones)."""
    url = postgres_server.create_database("ledger_execution_tests")
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_engine(request, tmp_path):
    """Overrides conftest's: a ledger at head, empty, on a fresh SQLite file or on the
    module's PostgreSQL database with every table emptied and its ids restarted."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
        migrate(engine)
    else:
        engine = make_engine(request.getfixturevalue("postgres_execution_ledger"))
        names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    yield engine
    engine.dispose()


@pytest.fixture
def second_engine(ledger_engine):
    engine = make_engine(ledger_engine.url.render_as_string(hide_password=False))
    yield engine
    engine.dispose()


# --- migration ---------------------------------------------------------------------------


def test_an_empty_database_migrates_to_head_with_the_execution_tables(ledger_url):
    engine = make_engine(ledger_url)
    try:
        assert migrate(engine) == head_revision()
        assert EXECUTION_TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def _alembic(engine, action: str, revision: str) -> None:
    with write_transaction(engine) as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_migration_from_0001_keeps_the_scans_and_goes_back_down(ledger_url):
    from trading_pipeline_tests.test_ledger import scan_record, scored_frame

    engine = make_engine(ledger_url)
    try:
        _alembic(engine, "upgrade", "0001")
        assert current_revision(engine) == "0001"
        scan_id = replace_scan(engine, scan_record(), scored_frame())

        assert migrate(engine) == head_revision()
        staged_id = stage(engine, scan_import_id=scan_id)
        assert get_staged(engine, staged_id).scan_import_id == scan_id
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata) == []

        _alembic(engine, "downgrade", "0001")
        assert current_revision(engine) == "0001"
        tables = set(inspect(engine).get_table_names())
        assert not (EXECUTION_TABLES & tables)
        assert {"scan_imports", "scan_candidates"} <= tables
        assert migrate(engine) == head_revision()  # and up again
    finally:
        engine.dispose()


def test_reset_empties_the_execution_tables_too(ledger_engine):
    intent = sent_intent(ledger_engine)
    record_fill(ledger_engine, execution("e1", 1, 1.2, ref=intent.order_ref), at=OPEN)
    set_halt(ledger_engine, "stop", by="cli", at=OPEN)

    assert reset(ledger_engine) == head_revision()

    counts = table_counts(ledger_engine)
    assert EXECUTION_TABLES <= set(counts) and set(counts.values()) == {0}
    assert get_trading_state(ledger_engine).halted is False


# --- staged opportunities ------------------------------------------------------------------


def test_staged_opportunity_round_trips_exactly(ledger_engine):
    staged_id = stage(ledger_engine, validation_reasons=["spread unknown"], strike_selection_outcome="UNCHANGED")
    staged = get_staged(ledger_engine, staged_id)

    assert staged.symbol == "AAPL" and staged.right == "P" and staged.status == "STAGED"
    assert staged.strike == Decimal("200") and isinstance(staged.strike, Decimal)
    # Floats are stored as the numbers they print as (1.1, not 1.10000000000000008882).
    assert (staged.staged_bid, staged.staged_ask, staged.staged_mid, staged.limit_price) == (
        Decimal("1.1"), Decimal("1.3"), Decimal("1.2"), Decimal("1.15"))
    assert staged.margin_per_contract == Decimal("4150.25")
    assert staged.staged_stock_price == Decimal("230.500000")
    assert (staged.delta, staged.iv, staged.otm_pct, staged.dte) == (-0.18, 0.31, 13.23, 25)
    assert staged.validation_reasons == ["spread unknown"]
    assert staged.strike_selection_outcome == "UNCHANGED"
    assert staged.staged_at == SUNDAY and staged.staged_at.tzinfo == UTC and staged.updated_at == SUNDAY
    assert get_staged(ledger_engine, staged_id + 100) is None


def test_list_staged_filters_by_day_and_status_in_staging_order(ledger_engine):
    ids = insert_staged(
        ledger_engine,
        [staged_row(symbol="MSFT"), staged_row(session_day=date(2026, 11, 30)), staged_row(symbol="KO", status="STALE")],
        at=SUNDAY,
    )
    assert [s.id for s in list_staged(ledger_engine)] == [ids[0], ids[2], ids[1]]  # by day, then id
    assert [s.symbol for s in list_staged(ledger_engine, MONDAY)] == ["MSFT", "KO"]
    assert [s.id for s in list_staged(ledger_engine, MONDAY, statuses=["STALE"])] == [ids[2]]
    assert list_staged(ledger_engine, date(2026, 11, 24)) == []
    with pytest.raises(ValueError, match="unknown staged status"):
        list_staged(ledger_engine, statuses=["LIVE"])


def test_bad_staged_rows_are_refused_and_nothing_is_written(ledger_engine):
    with pytest.raises(ValueError, match="lacks: strike"):
        insert_staged(ledger_engine, [staged_row(), staged_row(strike=None)], at=SUNDAY)
    with pytest.raises(ValueError, match="unknown staged opportunity fields: colour"):
        insert_staged(ledger_engine, [staged_row(colour="red")], at=SUNDAY)
    with pytest.raises(ValueError, match="unknown staged status"):
        insert_staged(ledger_engine, [staged_row(status="LIVE")], at=SUNDAY)
    with pytest.raises(ValueError, match="naive|timezone-aware"):
        insert_staged(ledger_engine, [staged_row()], at=datetime(2026, 11, 22, 21, 0))
    with pytest.raises(ValueError, match="not a number|finite"):
        insert_staged(ledger_engine, [staged_row(staged_bid=float("nan"))], at=SUNDAY)
    # The database's own CHECK (strike > 0) fails on the second row: the first is rolled back.
    with pytest.raises(IntegrityError):
        insert_staged(ledger_engine, [staged_row(), staged_row(strike=-5.0)], at=SUNDAY)
    assert list_staged(ledger_engine) == []


def test_update_staged_changes_fields_until_the_row_is_history(ledger_engine):
    staged_id = stage(ledger_engine)
    later = SUNDAY + timedelta(hours=12)
    updated = update_staged(
        ledger_engine, staged_id, at=later, status="ADJUSTED", strike=197.5, original_strike=200,
        strike_selection_outcome="SELECTED", live_delta=-0.21, strike_selection_method="delta",
        status_reason="stock moved -1.2% since staging",
    )
    assert (updated.status, updated.strike, updated.original_strike) == ("ADJUSTED", Decimal("197.5"), Decimal("200"))
    assert updated.updated_at == later and updated.staged_at == SUNDAY

    with pytest.raises(ValueError, match="unknown staged opportunity fields: id"):
        update_staged(ledger_engine, staged_id, at=later, id=5)
    with pytest.raises(ValueError, match="strike cannot be emptied"):
        update_staged(ledger_engine, staged_id, at=later, strike=None)
    update_staged(ledger_engine, staged_id, at=later, status="EXPIRED")
    with pytest.raises(LedgerStateError, match="is EXPIRED: it can no longer change"):
        update_staged(ledger_engine, staged_id, at=later, status="STAGED")
    with pytest.raises(LedgerStateError, match="does not exist"):
        update_staged(ledger_engine, staged_id + 1, at=later, status="STAGED")


def test_cancel_staged_before_sending_cancels_its_unsent_intents(ledger_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)

    cancelled = cancel_staged(ledger_engine, staged_id, at=OPEN, reason="earnings tomorrow")

    assert (cancelled.status, cancelled.status_reason) == ("CANCELLED", "earnings tomorrow")
    unsent = get_intent(ledger_engine, intent.id)
    assert unsent.status is IntentStatus.CANCELLED
    assert unsent.error == "staged opportunity cancelled: earnings tomorrow"
    assert [e.status for e in order_events_for_intent(ledger_engine, intent.id)] == ["INTENDED", "CANCELLED"]
    with pytest.raises(LedgerStateError, match="CANCELLED"):
        mark_sent(ledger_engine, intent.id, at=OPEN)  # can never be sent now
    assert cancel_staged(ledger_engine, staged_id, at=OPEN).status == "CANCELLED"  # again: no change


def test_cancel_staged_is_refused_once_its_order_went_out(ledger_engine):
    intent = sent_intent(ledger_engine)
    staged_id = intent.staged_opportunity_id
    assert get_staged(ledger_engine, staged_id).status == "SUBMITTED"

    with pytest.raises(LedgerStateError, match="already submitted .status SUBMITTED.: cancel its order at the broker"):
        cancel_staged(ledger_engine, staged_id, at=OPEN)
    # Even when the staged status was moved back by hand, the sent intent still blocks.
    with write_transaction(ledger_engine) as connection:
        connection.execute(staged_opportunities.update().values(status="VALIDATED"))
    with pytest.raises(LedgerStateError, match=f"{intent.order_ref} .SENT."):
        cancel_staged(ledger_engine, staged_id, at=OPEN)
    assert get_intent(ledger_engine, intent.id).status is IntentStatus.SENT
    with pytest.raises(LedgerStateError, match="does not exist"):
        cancel_staged(ledger_engine, staged_id + 1, at=OPEN)


def test_a_replaced_scan_leaves_its_staged_rows(ledger_engine):
    from trading_pipeline_tests.test_ledger import scan_record, scored_frame

    scan_id = replace_scan(ledger_engine, scan_record(), scored_frame())
    with ledger_engine.connect() as connection:
        candidate_id = connection.exec_driver_sql("SELECT min(id) FROM scan_candidates").scalar_one()
    staged_id = stage(ledger_engine, scan_import_id=scan_id, scan_candidate_id=candidate_id)

    replace_scan(ledger_engine, scan_record(sha256="cd" * 32), scored_frame())  # same partition

    staged = get_staged(ledger_engine, staged_id)
    assert (staged.scan_import_id, staged.scan_candidate_id, staged.symbol) == (None, None, "AAPL")


# --- order intents ---------------------------------------------------------------------------


def test_create_intent_writes_an_intended_order(ledger_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)

    assert intent.order_ref == f"tp-20261123-{staged_id}-E1"
    assert (intent.status, intent.purpose, intent.dry_run) == (IntentStatus.INTENDED, IntentPurpose.ENTRY, False)
    assert (intent.con_id, intent.strike, intent.limit_price) == (712345678901, Decimal("200"), Decimal("1.15"))
    assert (intent.quantity, intent.filled_quantity, intent.remaining) == (3, 0, 3)
    assert intent.created_at == OPEN and intent.sent_at is None
    assert intents_for_session(ledger_engine, MONDAY) == [intent]
    assert intents_for_staged(ledger_engine, staged_id) == [intent]
    assert open_intents(ledger_engine) == [intent]
    assert [e.status for e in order_events_for_intent(ledger_engine, intent.id)] == ["INTENDED"]


def test_the_same_ref_returns_the_existing_intent_and_a_different_order_is_refused(ledger_engine):
    staged_id = stage(ledger_engine)
    first = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    # A re-run prices again: a new limit under the same ref is the same order.
    again = create_intent(ledger_engine, entry(staged_id, limit_price=1.05), at=OPEN + timedelta(minutes=3))
    assert again == first and again.limit_price == Decimal("1.15")
    with ledger_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(order_intents)).scalar_one() == 1
    assert len(order_events_for_intent(ledger_engine, first.id)) == 1

    with pytest.raises(LedgerStateError, match=r"already names a different order: strike Decimal\('200.000000'\)"):
        create_intent(ledger_engine, entry(staged_id, strike=197.5), at=OPEN)
    with pytest.raises(LedgerStateError, match="quantity 3 .given 2."):
        create_intent(ledger_engine, entry(staged_id, quantity=2), at=OPEN)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"order_ref": "my-order-1"}, "is not one of ours"),
        ({"dry_run": True, "order_ref": "tp-20261123-1-E1"}, "is a live ref but dry_run is True"),
        ({"dry_run": False, "order_ref": "tpd-20261123-1-E1"}, "is a dry-run ref but dry_run is False"),
        ({"purpose": IntentPurpose.EXIT, "order_ref": "tp-20261123-1-E1"}, "is an ENTRY ref, not EXIT"),
        ({"session_day": date(2026, 11, 24)}, "is for 2026-11-23, not 2026-11-24"),
        ({"staged_opportunity_id": 999}, "names staged id 1, not 999"),
        ({"limit_price": None}, "a limit order needs a limit price"),
        ({"limit_price": -1.0}, "limit price must be positive"),
        ({"action": "SHORT"}, "action must be BUY or SELL"),
        ({"quantity": 0}, "quantity must be a whole number, 1 or more"),
        ({"order_type": "STP"}, "order type must be one of"),
        ({"strike": None}, "an option order needs expiration, strike and right"),
    ],
)
def test_new_intent_checks_itself(overrides, message):
    with pytest.raises(ValueError, match=message):
        entry(1, **overrides)


def test_a_stock_liquidation_at_market_needs_no_option_terms():
    liquidation = NewIntent(
        order_ref=deterministic_order_ref(MONDAY, 265598, IntentPurpose.LIQUIDATE, dry_run=True), session_day=MONDAY,
        purpose="LIQUIDATE", symbol="aapl", action="sell", quantity=100, order_type="MKT", sec_type="STK",
    )
    assert (liquidation.symbol, liquidation.action, liquidation.dry_run) == ("AAPL", "SELL", True)  # dry by default


def test_mark_sent_claims_once_and_counts_the_order(ledger_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)

    sent = mark_sent(ledger_engine, intent.id, at=OPEN + timedelta(seconds=1))

    assert sent.status is IntentStatus.SENT and sent.sent_at == OPEN + timedelta(seconds=1)
    assert get_staged(ledger_engine, staged_id).status == "SUBMITTED"
    counters = get_daily_counters(ledger_engine, MONDAY)
    assert (counters.orders_submitted, counters.new_positions) == (1, 1)
    with pytest.raises(LedgerStateError, match="is SENT: an order is claimed for sending once, never again"):
        mark_sent(ledger_engine, intent.id, at=OPEN)
    # A remainder replacement is another order but not another position.
    replacement = create_intent(
        ledger_engine, entry(staged_id, purpose=IntentPurpose.REPLACE_REMAINDER, quantity=1, parent_intent_id=intent.id),
        at=OPEN,
    )
    mark_sent(ledger_engine, replacement.id, at=OPEN)
    counters = get_daily_counters(ledger_engine, MONDAY)
    assert (counters.orders_submitted, counters.new_positions) == (2, 1)


def test_a_dry_run_intent_can_never_be_sent(ledger_engine):
    staged_id = stage(ledger_engine)
    dry = create_intent(ledger_engine, entry(staged_id, dry_run=True), at=OPEN)
    assert dry.order_ref.startswith("tpd-")
    with pytest.raises(LedgerStateError, match="is a dry run: it is never sent"):
        mark_sent(ledger_engine, dry.id, at=OPEN)
    assert get_intent(ledger_engine, dry.id).status is IntentStatus.INTENDED
    assert open_intents(ledger_engine) == []
    # The live order of the same trade has its own ref and is not blocked by the dry run.
    live = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    assert live.id != dry.id and mark_sent(ledger_engine, live.id, at=OPEN).status is IntentStatus.SENT
    assert [i.id for i in intents_for_session(ledger_engine, MONDAY, include_dry_run=False)] == [live.id]


@pytest.mark.parametrize(
    ("halt_kind", "purpose", "sent"),
    [
        (HaltKind.MANUAL, IntentPurpose.ENTRY, False),
        (HaltKind.MANUAL, IntentPurpose.REPLACE_REMAINDER, False),
        (HaltKind.MANUAL, IntentPurpose.EXIT, False),
        (HaltKind.MANUAL, IntentPurpose.LIQUIDATE, True),
        (HaltKind.DAILY_LOSS, IntentPurpose.ENTRY, False),
        (HaltKind.DAILY_LOSS, IntentPurpose.EXIT, True),  # the breaker must not stop stop-losses
    ],
)
def test_mark_sent_respects_the_halt(ledger_engine, halt_kind, purpose, sent):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id, purpose=purpose, action="BUY"), at=OPEN)
    set_halt(ledger_engine, "emergency stop", by="tester", at=OPEN, kind=halt_kind)

    if sent:
        assert mark_sent(ledger_engine, intent.id, at=OPEN).status is IntentStatus.SENT
        return
    with pytest.raises(TradingHaltedError, match=f"not sent: trading halted .{halt_kind.value}.: emergency stop"):
        mark_sent(ledger_engine, intent.id, at=OPEN)
    refused = get_intent(ledger_engine, intent.id)
    assert refused.status is IntentStatus.CANCELLED and "trading halted" in refused.error
    assert get_daily_counters(ledger_engine, MONDAY) is None  # nothing counted
    assert get_staged(ledger_engine, staged_id).status == "STAGED"


def test_an_order_of_an_abandoned_trade_is_not_sent(ledger_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    update_staged(ledger_engine, staged_id, at=OPEN, status="ABANDONED")
    with pytest.raises(LedgerStateError, match="its staged opportunity is ABANDONED"):
        mark_sent(ledger_engine, intent.id, at=OPEN)
    assert get_intent(ledger_engine, intent.id).status is IntentStatus.CANCELLED


def test_acknowledgement_attaches_broker_ids(ledger_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    with pytest.raises(LedgerStateError, match="never claimed with mark_sent"):
        mark_acknowledged(ledger_engine, intent.id, broker_order_id=17, perm_id=9001, at=OPEN)
    mark_sent(ledger_engine, intent.id, at=OPEN)

    acked = mark_acknowledged(ledger_engine, intent.id, broker_order_id=17, perm_id=9001, client_id=3,
                              at=OPEN + timedelta(milliseconds=40))

    assert (acked.status, acked.broker_order_id, acked.broker_perm_id) == (IntentStatus.ACKNOWLEDGED, 17, 9001)
    assert acked.acknowledged_at == OPEN + timedelta(milliseconds=40)
    order = get_broker_order(ledger_engine, 9001)
    assert (order.intent_id, order.order_ref, order.status, order.client_id) == (intent.id, intent.order_ref, "Submitted", 3)
    assert (order.con_id, order.limit_price, order.quantity) == (712345678901, Decimal("1.15"), 3)


def test_broker_statuses_move_the_intent_forward_only(ledger_engine):
    intent = sent_intent(ledger_engine)
    mark_acknowledged(ledger_engine, intent.id, broker_order_id=17, perm_id=9001, at=OPEN)
    t = OPEN + timedelta(seconds=5)

    assert record_status(ledger_engine, intent.id, broker_status="Submitted", filled=1, remaining=2,
                         avg_fill_price=1.15, at=t).status is IntentStatus.PARTIAL
    # A stale event (sent before the fill) arrives late: no step back.
    assert record_status(ledger_engine, intent.id, broker_status="PreSubmitted", filled=0, at=t).status is IntentStatus.PARTIAL
    cancelled = record_status(ledger_engine, intent.id, broker_status="Cancelled", filled=1, remaining=0, at=t,
                              message="cancelled by the fill manager")
    assert cancelled.status is IntentStatus.CANCELLED and cancelled.error == "cancelled by the fill manager"
    assert record_status(ledger_engine, intent.id, broker_status="Submitted", filled=1, at=t).status is IntentStatus.CANCELLED
    with pytest.raises(ValueError, match="unknown broker order status"):
        record_status(ledger_engine, intent.id, broker_status="Working", filled=1, at=t)

    history = [(e.source, e.status, e.filled) for e in order_events_for_intent(ledger_engine, intent.id)]
    assert history == [
        ("ledger", "INTENDED", None), ("ledger", "SENT", None), ("broker", "Submitted", 0),
        ("broker", "Submitted", 1), ("broker", "PreSubmitted", 0), ("broker", "Cancelled", 1),
        ("broker", "Submitted", 1),
    ]
    assert get_broker_order(ledger_engine, 9001).status == "Submitted"  # the row mirrors the last report


def test_a_second_broker_order_under_one_ref_needs_review(ledger_engine):
    intent = sent_intent(ledger_engine)
    mark_acknowledged(ledger_engine, intent.id, broker_order_id=17, perm_id=9001, at=OPEN)
    flagged = record_status(ledger_engine, intent.id, broker_status="Submitted", filled=0, perm_id=9555, at=OPEN)
    assert flagged.status is IntentStatus.UNKNOWN and "second order (perm id 9555)" in flagged.error
    assert flagged.broker_perm_id == 9001


def test_rejection(ledger_engine):
    intent = sent_intent(ledger_engine)
    rejected = mark_rejected(ledger_engine, intent.id, reason="201: margin requirement not met", at=OPEN)
    assert (rejected.status, rejected.error) == (IntentStatus.REJECTED, "201: margin requirement not met")
    assert open_intents(ledger_engine) == []


def test_fills_are_recorded_once_and_move_the_intent_and_its_trade(ledger_engine):
    intent = sent_intent(ledger_engine)
    ref, staged_id = intent.order_ref, intent.staged_opportunity_id
    mark_acknowledged(ledger_engine, intent.id, broker_order_id=17, perm_id=9001, at=OPEN)

    assert record_fill(ledger_engine, execution("e1", 1, 1.25, ref=ref), at=OPEN + timedelta(minutes=1))
    partial = get_intent(ledger_engine, intent.id)
    assert (partial.status, partial.filled_quantity, partial.avg_fill_price) == (IntentStatus.PARTIAL, 1, Decimal("1.25"))
    assert get_staged(ledger_engine, staged_id).status == "PARTIAL"

    assert record_fill(ledger_engine, execution("e2", 2, 1.1, ref=ref, minutes=2), at=OPEN + timedelta(minutes=2))
    filled = get_intent(ledger_engine, intent.id)
    # (1 x 1.25 + 2 x 1.10) / 3 = 3.45 / 3 = 1.15 exactly
    assert (filled.status, filled.filled_quantity, filled.avg_fill_price) == (IntentStatus.FILLED, 3, Decimal("1.15"))
    staged = get_staged(ledger_engine, staged_id)
    assert (staged.status, staged.status_reason) == ("FILLED", "filled 3 of 3 contract(s)")

    # The same execution again (a replayed event, a reconciliation): nothing changes ...
    assert not record_fill(ledger_engine, execution("e1", 1, 1.25, ref=ref), at=OPEN + timedelta(minutes=3))
    assert get_intent(ledger_engine, intent.id).filled_quantity == 3
    # ... except a commission that arrives later and was missing.
    assert not record_fill(ledger_engine, execution("e1", 1, 1.25, ref=ref, commission=0.65), at=OPEN)
    stored = fills_for_intent(ledger_engine, intent.id)
    assert [(f.exec_id, f.quantity, f.price, f.commission) for f in stored] == [
        ("e1", 1, Decimal("1.25"), Decimal("0.65")), ("e2", 2, Decimal("1.1"), None)]
    assert (stored[0].side, stored[0].con_id, stored[0].executed_at) == ("SLD", 712345678901, OPEN + timedelta(minutes=1))
    assert recorded_exec_ids(ledger_engine, ["e1", "e2", "e9"]) == {"e1", "e2"}
    assert [e.status for e in order_events_for_intent(ledger_engine, intent.id)][-2:] == ["PARTIAL", "FILLED"]


def test_a_fill_without_intent_is_kept(ledger_engine):
    manual = BrokerExecution(exec_id="m1", order_ref="", perm_id=7001, broker_order_id=0, quantity=100, price=228.4,
                             time=OPEN, side="BOT", symbol="aapl", sec_type="STK")
    assert record_fill(ledger_engine, manual, at=OPEN)
    (stored,) = list_fills(ledger_engine, without_intent=True)
    assert (stored.intent_id, stored.symbol, stored.side, stored.price) == (None, "AAPL", "BOT", Decimal("228.4"))
    assert list_fills(ledger_engine, since=OPEN + timedelta(seconds=1)) == []
    with pytest.raises(ValueError, match="side must be BOT or SLD"):
        record_fill(ledger_engine, BrokerExecution(exec_id="m2", order_ref="", perm_id=1, broker_order_id=1,
                                                   quantity=1, price=1.0, time=OPEN, side="?", symbol="X"), at=OPEN)


# --- batches (one transaction per Tier 1 phase) ------------------------------------------------


def test_create_intents_is_all_or_nothing(ledger_engine):
    ids = insert_staged(ledger_engine, [staged_row(symbol=s) for s in ("A", "B", "C")], at=SUNDAY)
    existing = create_intent(ledger_engine, entry(ids[0], symbol="A"), at=OPEN)

    with pytest.raises(LedgerStateError, match="already names a different order: quantity 3 .given 1."):
        create_intents(ledger_engine, [entry(ids[1], symbol="B"), entry(ids[2], symbol="C"),
                                       entry(ids[0], symbol="A", quantity=1)], at=OPEN)
    assert intents_for_session(ledger_engine, MONDAY) == [existing]  # B and C rolled back

    batch = create_intents(ledger_engine, [entry(ids[1], symbol="B"), entry(ids[0], symbol="A"),
                                           entry(ids[2], symbol="C")], at=OPEN)
    assert [i.symbol for i in batch] == ["B", "A", "C"] and batch[1] == existing


def test_mark_sent_many_claims_each_order_or_says_why_not(ledger_engine):
    ids = insert_staged(ledger_engine, [staged_row(symbol=s) for s in ("A", "B", "C", "D")], at=SUNDAY)
    go = create_intent(ledger_engine, entry(ids[0], symbol="A"), at=OPEN)
    dry = create_intent(ledger_engine, entry(ids[1], symbol="B", dry_run=True), at=OPEN)
    already = sent_intent(ledger_engine, ids[2], symbol="C")
    abandoned = create_intent(ledger_engine, entry(ids[3], symbol="D"), at=OPEN)
    update_staged(ledger_engine, ids[3], at=OPEN, status="ABANDONED")

    results = mark_sent_many(ledger_engine, [go.id, dry.id, already.id, abandoned.id, go.id], at=OPEN)

    assert list(results) == [go.id, dry.id, already.id, abandoned.id]  # given order, duplicates once
    assert results[go.id].status is IntentStatus.SENT
    assert "is a dry run" in str(results[dry.id])
    assert "is SENT: an order is claimed for sending once" in str(results[already.id])
    assert "its staged opportunity is ABANDONED" in str(results[abandoned.id])
    statuses = [get_intent(ledger_engine, i.id).status for i in (go, dry, already, abandoned)]
    assert statuses == [IntentStatus.SENT, IntentStatus.INTENDED, IntentStatus.SENT, IntentStatus.CANCELLED]
    assert get_daily_counters(ledger_engine, MONDAY).orders_submitted == 2  # C earlier, A now
    with pytest.raises(LedgerStateError, match="order intent.s. 999 do not exist"):
        mark_sent_many(ledger_engine, [999], at=OPEN)


def test_a_batch_under_the_breaker_sends_exits_but_no_entries(ledger_engine):
    staged_id = stage(ledger_engine)
    opening = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    closing = create_intent(ledger_engine, entry(staged_id, purpose=IntentPurpose.EXIT, action="BUY"), at=OPEN)
    record_breaker_trip(ledger_engine, session_day=MONDAY, rule="daily_loss", details="-2.0%", at=OPEN)

    results = mark_sent_many(ledger_engine, [opening.id, closing.id], at=OPEN)

    assert isinstance(results[opening.id], TradingHaltedError)
    assert results[closing.id].status is IntentStatus.SENT


def test_acknowledgements_of_a_batch(ledger_engine):
    ids = insert_staged(ledger_engine, [staged_row(symbol=s) for s in ("A", "B", "C")], at=SUNDAY)
    a, b = (sent_intent(ledger_engine, i, symbol=s) for i, s in zip(ids, "AB"))
    unclaimed = create_intent(ledger_engine, entry(ids[2], symbol="C"), at=OPEN)

    with pytest.raises(LedgerStateError, match=f"{unclaimed.order_ref} acknowledged but never claimed"):
        record_acknowledgements(ledger_engine, [Acknowledgement(a.id, 17, 9001),
                                                Acknowledgement(unclaimed.id, 19, 9003)], at=OPEN)
    assert get_intent(ledger_engine, a.id).status is IntentStatus.SENT  # nothing written

    done = record_acknowledgements(
        ledger_engine,
        [Acknowledgement(a.id, 17, 9001, client_id=3), Acknowledgement(b.id, rejection="201: no margin")],
        at=OPEN,
    )
    assert (done[a.id].status, done[a.id].broker_perm_id, done[a.id].acknowledged_at) == (
        IntentStatus.ACKNOWLEDGED, 9001, OPEN)
    assert (done[b.id].status, done[b.id].error) == (IntentStatus.REJECTED, "201: no margin")
    with pytest.raises(ValueError, match="needs the broker order id and perm id"):
        Acknowledgement(a.id)


def test_cancel_unsent_closes_only_what_never_reached_the_broker(ledger_engine):
    ids = insert_staged(ledger_engine, [staged_row(symbol=s) for s in ("A", "B", "C")], at=SUNDAY)
    refused = create_intent(ledger_engine, entry(ids[0], symbol="A"), at=OPEN)
    failed_locally = sent_intent(ledger_engine, ids[1], symbol="B")
    acked = sent_intent(ledger_engine, ids[2], symbol="C")
    mark_acknowledged(ledger_engine, acked.id, broker_order_id=18, perm_id=9002, at=OPEN)
    assert get_daily_counters(ledger_engine, MONDAY).new_positions == 2

    kept = cancel_unsent(ledger_engine, {failed_locally.id: "socket closed before sending"}, at=OPEN)
    assert kept[failed_locally.id].status is IntentStatus.SENT  # without withdraw_sent: may be at the broker

    closed = cancel_unsent(
        ledger_engine,
        {refused.id: "refused by the risk governor: max open positions", failed_locally.id: "socket closed before sending",
         acked.id: "too late"},
        at=OPEN, withdraw_sent=True,
    )
    assert (closed[refused.id].status, closed[refused.id].error) == (
        IntentStatus.CANCELLED, "refused by the risk governor: max open positions")
    assert closed[failed_locally.id].status is IntentStatus.CANCELLED
    assert closed[acked.id].status is IntentStatus.ACKNOWLEDGED  # at the broker: not ours to close here
    counters = get_daily_counters(ledger_engine, MONDAY)
    assert (counters.orders_submitted, counters.new_positions) == (1, 1)  # B taken back off


def test_limit_changes_are_stored_and_logged(ledger_engine):
    intent = sent_intent(ledger_engine)
    changed = record_limit_change(ledger_engine, intent.id, 1.14, at=OPEN, reason="fill manager step 1")
    assert changed.limit_price == Decimal("1.14")
    assert order_events_for_intent(ledger_engine, intent.id)[-1].message == "fill manager step 1: limit 1.15 -> 1.14"
    with pytest.raises(ValueError, match="must be positive"):
        record_limit_change(ledger_engine, intent.id, 0, at=OPEN, reason="x")
    mark_rejected(ledger_engine, intent.id, reason="no", at=OPEN)
    with pytest.raises(LedgerStateError, match="is REJECTED: its limit no longer changes"):
        record_limit_change(ledger_engine, intent.id, 1.13, at=OPEN, reason="x")


# --- reconciliation applied -----------------------------------------------------------------


def test_reconciliation_after_a_crash_brings_the_ledger_to_the_broker(ledger_engine):
    # The state a killed run leaves: A claimed and sent (no ack recorded), B claimed but the
    # process died before the broker call, C never claimed, D acknowledged and then filled
    # while nobody listened.
    ids = insert_staged(ledger_engine, [staged_row(symbol=s) for s in "ABCD"], at=SUNDAY)
    a, b, c, d = (create_intent(ledger_engine, entry(i, symbol=s), at=OPEN) for i, s in zip(ids, "ABCD"))
    for intent in (a, b, d):
        mark_sent(ledger_engine, intent.id, at=OPEN)
    mark_acknowledged(ledger_engine, d.id, broker_order_id=20, perm_id=9004, at=OPEN)
    record_fill(ledger_engine, execution("d1", 1, 1.2, ref=d.order_ref, perm_id=9004), at=OPEN)

    broker_open = [
        BrokerOrder(order_ref=a.order_ref, perm_id=9001, broker_order_id=17, status="Submitted", filled=1, remaining=2),
        BrokerOrder(order_ref="tp-20261123-999-E1", perm_id=9999, broker_order_id=99, status="Submitted"),
    ]
    broker_executions = [
        execution("a1", 1, 1.15, ref=a.order_ref),
        execution("d1", 1, 1.2, ref=d.order_ref, perm_id=9004),  # already recorded
        execution("d2", 2, 1.1, ref=d.order_ref, perm_id=9004),
    ]
    snapshot = intents_for_reconciliation(ledger_engine)
    known = recorded_exec_ids(ledger_engine, [e.exec_id for e in broker_executions])
    result = reconcile_intents(snapshot, broker_open, broker_executions, known)

    applied = apply_reconciliation(ledger_engine, result, at=OPEN + timedelta(minutes=10))

    assert (applied.fills_recorded, applied.updates_applied, applied.skipped) == (2, 4, ())
    assert applied.unmatched_orders_recorded == 1
    status = {i.order_ref[-5:]: (get_intent(ledger_engine, i.id).status, get_intent(ledger_engine, i.id).filled_quantity)
              for i in (a, b, c, d)}
    assert status == {
        a.order_ref[-5:]: (IntentStatus.PARTIAL, 1),
        b.order_ref[-5:]: (IntentStatus.UNKNOWN, 0),
        c.order_ref[-5:]: (IntentStatus.CANCELLED, 0),
        d.order_ref[-5:]: (IntentStatus.FILLED, 3),
    }
    assert get_intent(ledger_engine, a.id).broker_perm_id == 9001
    assert "never re-sent automatically" in get_intent(ledger_engine, b.id).error
    assert "never sent" in get_intent(ledger_engine, c.id).error
    assert get_broker_order(ledger_engine, 9999).intent_id is None  # kept, never adopted
    assert get_broker_order(ledger_engine, 9001).intent_id == a.id
    assert [s.status for s in list_staged(ledger_engine)] == ["PARTIAL", "SUBMITTED", "STAGED", "FILLED"]
    assert order_events_for_intent(ledger_engine, b.id)[-1].source == "reconciliation"

    # Reconciling again with the same broker state: nothing left to do.
    known = recorded_exec_ids(ledger_engine, [e.exec_id for e in broker_executions])
    again = reconcile_intents(intents_for_reconciliation(ledger_engine), broker_open, broker_executions, known)
    assert again.updates == () and again.fills == ()
    # Applying the first result a second time records nothing and skips every update.
    twice = apply_reconciliation(ledger_engine, result, at=OPEN + timedelta(minutes=11))
    assert (twice.fills_recorded, twice.updates_applied, len(twice.skipped)) == (0, 0, 4)
    with ledger_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(fills)).scalar_one() == 3  # d1, a1, d2


def test_an_intent_claimed_after_the_snapshot_is_not_cancelled(ledger_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    result = reconcile_intents(intents_for_reconciliation(ledger_engine), [], [])
    assert result.updates[0].status is IntentStatus.CANCELLED  # "never sent", as of the snapshot
    mark_sent(ledger_engine, intent.id, at=OPEN)  # another process claims it meanwhile

    applied = apply_reconciliation(ledger_engine, result, at=OPEN)

    assert applied.updates_applied == 0 and [u.intent_id for u in applied.skipped] == [intent.id]
    assert get_intent(ledger_engine, intent.id).status is IntentStatus.SENT


def test_reconciliation_input_covers_open_intents_and_recent_sessions(ledger_engine):
    staged_id = stage(ledger_engine)
    old = create_intent(ledger_engine, entry(staged_id, session_day=date(2026, 11, 20),
                        order_ref=deterministic_order_ref(date(2026, 11, 20), staged_id, "ENTRY")), at=OPEN)
    mark_rejected(ledger_engine, mark_sent(ledger_engine, old.id, at=OPEN).id, reason="no", at=OPEN)
    today = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    mark_rejected(ledger_engine, mark_sent(ledger_engine, today.id, at=OPEN).id, reason="no", at=OPEN)
    still_open = create_intent(ledger_engine, entry(staged_id, seq=2), at=OPEN)
    create_intent(ledger_engine, entry(staged_id, dry_run=True), at=OPEN)

    assert [i.intent_id for i in intents_for_reconciliation(ledger_engine)] == [still_open.id]
    since = intents_for_reconciliation(ledger_engine, since_day=MONDAY)
    assert [(i.intent_id, i.status) for i in since] == [(today.id, IntentStatus.REJECTED), (still_open.id, IntentStatus.INTENDED)]


# --- trading state, breaker, counters ------------------------------------------------------------


def test_halt_set_and_cleared(ledger_engine):
    assert get_trading_state(ledger_engine).halted is False
    halted = set_halt(ledger_engine, "  emergency stop  ", by="cli", at=OPEN)
    assert (halted.halted, halted.halt_kind, halted.halt_reason, halted.halted_by, halted.halted_at) == (
        True, HaltKind.MANUAL, "emergency stop", "cli", OPEN)
    assert get_trading_state(ledger_engine) == halted
    with pytest.raises(ValueError, match="needs a reason"):
        set_halt(ledger_engine, " ", by="cli", at=OPEN)
    cleared = clear_halt(ledger_engine, by="operator", at=OPEN + timedelta(hours=1))
    assert (cleared.halted, cleared.halt_kind, cleared.halt_reason) == (False, None, None)


def test_a_breaker_trip_halts_but_never_loosens_a_manual_halt(ledger_engine):
    trip, state = record_breaker_trip(ledger_engine, session_day=MONDAY, rule="daily_loss",
                                      details="P&L -2.10% of start-of-day NLV", at=OPEN)
    assert (state.halt_kind, state.halt_reason) == (HaltKind.DAILY_LOSS, "P&L -2.10% of start-of-day NLV")
    assert (trip.rule, trip.session_day, trip.cleared_at) == ("daily_loss", MONDAY, None)

    set_halt(ledger_engine, "emergency stop", by="cli", at=OPEN)
    _, state = record_breaker_trip(ledger_engine, session_day=MONDAY, rule="daily_loss", details="again", at=OPEN)
    assert (state.halt_kind, state.halt_reason) == (HaltKind.MANUAL, "emergency stop")
    assert len(list_breaker_trips(ledger_engine, MONDAY)) == 2

    clear_halt(ledger_engine, by="operator", at=OPEN + timedelta(hours=2))
    assert list_breaker_trips(ledger_engine, uncleared_only=True) == []
    assert {t.cleared_by for t in list_breaker_trips(ledger_engine)} == {"operator"}


def test_session_start_lifts_yesterdays_breaker_and_keeps_a_manual_halt(ledger_engine):
    friday = date(2026, 11, 20)
    record_breaker_trip(ledger_engine, session_day=friday, rule="daily_loss", details="-2.5%", at=OPEN)

    counters, state = start_session(ledger_engine, friday, start_nlv=100_000, at=OPEN)
    assert state.halted, "the breaker stays for the rest of the day it tripped"

    counters, state = start_session(ledger_engine, MONDAY, start_nlv=97_500.5, at=OPEN + timedelta(days=3))
    assert state.halted is False
    assert (counters.session_day, counters.start_nlv, counters.new_positions, counters.orders_submitted) == (
        MONDAY, Decimal("97500.5"), 0, 0)
    assert list_breaker_trips(ledger_engine)[0].cleared_by == "session reset"

    # The first start of the day sets the NLV; later starts keep it.
    counters, _ = start_session(ledger_engine, MONDAY, start_nlv=1.0, at=OPEN + timedelta(days=3, hours=1))
    assert counters.start_nlv == Decimal("97500.5")

    set_halt(ledger_engine, "operator stop", by="cli", at=OPEN)
    _, state = start_session(ledger_engine, date(2026, 11, 24), start_nlv=None, at=OPEN + timedelta(days=4))
    assert state.halted and state.halt_kind is HaltKind.MANUAL


def test_daily_counters(ledger_engine):
    assert get_daily_counters(ledger_engine, MONDAY) is None
    assert increment_daily_counter(ledger_engine, MONDAY, "new_positions", at=OPEN) == 1
    assert increment_daily_counter(ledger_engine, MONDAY, "new_positions", 2, at=OPEN) == 3
    assert get_daily_counters(ledger_engine, MONDAY).start_nlv is None
    with pytest.raises(ValueError, match="unknown daily counter"):
        increment_daily_counter(ledger_engine, MONDAY, "losses", at=OPEN)
    with pytest.raises(IntegrityError):  # CHECK new_positions >= 0
        increment_daily_counter(ledger_engine, MONDAY, "new_positions", -4, at=OPEN)
    assert get_daily_counters(ledger_engine, MONDAY).new_positions == 3


# --- approvals -------------------------------------------------------------------------------------


def test_approval_wait_then_execute(ledger_engine):
    deadline = OPEN + timedelta(minutes=15)
    asked = request_approval(ledger_engine, run_key="run-1", session_day=MONDAY, deadline=deadline,
                             at=OPEN, summary="VIX 14.2, spreads $0.03")
    assert (asked.decision, asked.summary, asked.deadline) == ("PENDING", "VIX 14.2, spreads $0.03", deadline)
    assert request_approval(ledger_engine, run_key="run-1", session_day=MONDAY, deadline=deadline + timedelta(hours=1),
                            at=OPEN) == asked  # asking again: the same approval
    assert [a.run_key for a in pending_approvals(ledger_engine, MONDAY)] == ["run-1"]

    waiting = decide_approval(ledger_engine, "run-1", "wait", by="alice", at=OPEN + timedelta(minutes=1))
    assert waiting.decision == "WAIT" and pending_approvals(ledger_engine) == [waiting]
    go = decide_approval(ledger_engine, "run-1", "EXECUTE", by="alice", at=OPEN + timedelta(minutes=2), note="ok")
    assert (go.decision, go.decided_by, go.note, go.is_final) == ("EXECUTE", "alice", "ok", True)
    assert decide_approval(ledger_engine, "run-1", "EXECUTE", by="bob", at=OPEN + timedelta(minutes=3)) == go
    with pytest.raises(LedgerStateError, match="already decided: EXECUTE by alice"):
        decide_approval(ledger_engine, "run-1", "ABORT", by="bob", at=OPEN + timedelta(minutes=3))
    assert pending_approvals(ledger_engine) == []
    assert get_approval(ledger_engine, "run-1") == go


def test_after_the_deadline_only_abort_is_accepted(ledger_engine):
    deadline = OPEN + timedelta(minutes=15)
    request_approval(ledger_engine, run_key="run-2", session_day=MONDAY, deadline=deadline, at=OPEN)
    with pytest.raises(LedgerStateError, match="closed at 2026-11-23T14:45:00\\+00:00: too late to EXECUTE"):
        decide_approval(ledger_engine, "run-2", "EXECUTE", by="alice", at=deadline + timedelta(seconds=1))
    # Exactly at the deadline is still in time; here the run aborts itself after it.
    aborted = decide_approval(ledger_engine, "run-2", "ABORT", by="deadline", at=deadline + timedelta(seconds=1))
    assert aborted.decision == "ABORT"
    with pytest.raises(LedgerStateError, match="no approval was requested for run nope"):
        decide_approval(ledger_engine, "nope", "EXECUTE", by="alice", at=OPEN)
    with pytest.raises(ValueError, match="EXECUTE, WAIT or ABORT"):
        decide_approval(ledger_engine, "run-2", "PENDING", by="alice", at=OPEN)
    with pytest.raises(ValueError, match="must be after the request"):
        request_approval(ledger_engine, run_key="run-3", session_day=MONDAY, deadline=OPEN, at=OPEN)


def test_a_decision_exactly_at_the_deadline_counts(ledger_engine):
    deadline = OPEN + timedelta(minutes=15)
    request_approval(ledger_engine, run_key="run-4", session_day=MONDAY, deadline=deadline, at=OPEN)
    assert decide_approval(ledger_engine, "run-4", "EXECUTE", by="alice", at=deadline).decision == "EXECUTE"


# --- execution runs ---------------------------------------------------------------------------------


def test_execution_run_lifecycle_and_report(ledger_engine):
    run = start_execution_run(ledger_engine, mode="hybrid", dry_run=True, session_day=MONDAY, at=OPEN,
                              dagster_run_id="abc-123")
    assert (run.status, run.mode, run.dry_run, run.started_at) == ("RUNNING", "hybrid", True, OPEN)
    assert start_execution_run(ledger_engine, mode="hybrid", dry_run=True, session_day=MONDAY,
                               at=OPEN + timedelta(minutes=1), dagster_run_id="abc-123") == run  # a retried step

    report = {"filled": 2, "premium": Decimal("345.00"), "session_day": MONDAY, "symbols": ("AAPL", "KO"),
              "status": IntentStatus.FILLED}
    done = finish_execution_run(ledger_engine, run.id, status="SUCCEEDED", at=OPEN + timedelta(hours=1), report=report)
    assert done.report == {"filled": 2, "premium": "345.00", "session_day": "2026-11-23", "symbols": ["AAPL", "KO"],
                           "status": "FILLED"}
    assert get_execution_run(ledger_engine, dagster_run_id="abc-123") == done
    with pytest.raises(LedgerStateError, match="already finished .SUCCEEDED."):
        finish_execution_run(ledger_engine, run.id, status="FAILED", at=OPEN)

    other = start_execution_run(ledger_engine, mode="execute", dry_run=False, session_day=MONDAY,
                                at=OPEN + timedelta(hours=2))
    with pytest.raises(ValueError, match="not valid JSON"):
        finish_execution_run(ledger_engine, other.id, status="FAILED", at=OPEN, report={"x": float("nan")})
    with pytest.raises(ValueError, match="SUCCEEDED, FAILED or ABORTED"):
        finish_execution_run(ledger_engine, other.id, status="RUNNING", at=OPEN)
    assert [r.id for r in list_execution_runs(ledger_engine, MONDAY)] == [other.id, run.id]


# --- concurrency: two engines on one ledger ------------------------------------------------------------


def test_two_writers_of_one_intent_get_one_row(ledger_engine, second_engine):
    staged_id = stage(ledger_engine)
    results = race([ledger_engine, second_engine], lambda engine: create_intent(engine, entry(staged_id), at=OPEN))
    assert not any(isinstance(result, Exception) for result in results), results
    assert results[0].id == results[1].id
    with ledger_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(order_intents)).scalar_one() == 1


def test_two_senders_racing_for_one_intent_one_wins(ledger_engine, second_engine):
    staged_id = stage(ledger_engine)
    intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)
    results = race([ledger_engine, second_engine], lambda engine: mark_sent(engine, intent.id, at=OPEN))
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and winners[0].status is IntentStatus.SENT
    assert len(losers) == 1 and isinstance(losers[0], LedgerStateError), losers
    assert get_daily_counters(ledger_engine, MONDAY).orders_submitted == 1


def test_two_recorders_of_one_execution_record_it_once(ledger_engine, second_engine):
    intent = sent_intent(ledger_engine)
    fill = execution("e1", 2, 1.2, ref=intent.order_ref)
    results = race([ledger_engine, second_engine], lambda engine: record_fill(engine, fill, at=OPEN))
    assert sorted(results) == [False, True]
    assert get_intent(ledger_engine, intent.id).filled_quantity == 2


def test_counters_from_two_engines_lose_nothing(ledger_engine, second_engine):
    def bump_five_times(engine):
        for _ in range(5):
            increment_daily_counter(engine, MONDAY, "new_positions", at=OPEN)

    results = race([ledger_engine, second_engine], bump_five_times)
    assert results == [None, None]
    assert get_daily_counters(ledger_engine, MONDAY).new_positions == 10


def test_an_emergency_stop_and_a_breaker_trip_at_once_both_land(ledger_engine, second_engine):
    for attempt in range(3):
        clear_halt(ledger_engine, by="operator", at=OPEN)
        results = race(
            [ledger_engine, second_engine],
            lambda engine: (set_halt(engine, "emergency stop", by="cli", at=OPEN) if engine is ledger_engine
                            else record_breaker_trip(engine, session_day=MONDAY, rule="daily_loss", details="-2%",
                                                     at=OPEN)),
        )
        assert not any(isinstance(result, Exception) for result in results), results  # no deadlock
        # Whichever came first, the manual halt is what stays in force.
        state = get_trading_state(ledger_engine)
        assert (state.halted, state.halt_kind) == (True, HaltKind.MANUAL)
    assert len(list_breaker_trips(ledger_engine)) == 3


def test_a_cancel_racing_a_send_of_one_trade_lets_exactly_one_through(ledger_engine, second_engine):
    for attempt in range(3):  # either may win; whichever does, the other is refused cleanly
        staged_id = stage(ledger_engine)
        intent = create_intent(ledger_engine, entry(staged_id), at=OPEN)
        send, cancel = race(
            [ledger_engine, second_engine],
            lambda engine: (mark_sent(engine, intent.id, at=OPEN) if engine is ledger_engine
                            else cancel_staged(engine, staged_id, at=OPEN)),
        )
        sent = not isinstance(send, Exception)
        cancelled = not isinstance(cancel, Exception)
        assert sent != cancelled, (send, cancel)
        failure = cancel if sent else send
        assert isinstance(failure, LedgerStateError), failure  # not a deadlock, not a lock timeout
        final_intent, final_staged = get_intent(ledger_engine, intent.id), get_staged(ledger_engine, staged_id)
        if sent:
            assert (final_intent.status, final_staged.status) == (IntentStatus.SENT, "SUBMITTED")
        else:
            assert (final_intent.status, final_staged.status) == (IntentStatus.CANCELLED, "CANCELLED")
