"""Contract of the order gateway (trading/order_gateway.py), the one path of every order, run
against the simulated TWS through the real IBKR adapter and a SQLite ledger:

- dry run (the default) writes dry-run intents and sends nothing: the simulator sees no order;
- live to a paper (DU) account sends: the order is at the simulator under the intent's
  deterministic orderRef and the intent is ACKNOWLEDGED with the broker's ids;
- the live-account guard refuses a non-DU account without TP_LIVE_ARMED=1 and the confirmed
  account id, and lets it trade with both;
- risk refusals (limits, halt, daily loss breaker) send nothing and are recorded on the intent;
  a breaker trip is persisted and halts trading;
- submitting the same intent twice (also from a new gateway, as a re-run would) sends once;
- reconcile: an order sent but never recorded as acknowledged gets its broker ids; a fill that
  happened while nobody listened is recorded and the intent FILLED; reconcile never sends;
- record_events records statuses and fills once; modify and cancel act on the working order;
- a send that fails midway (the broker stalls) leaves the intent SENT, never re-sent.
"""

from __future__ import annotations

import pytest

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import IntentPurpose, IntentStatus
from trading_pipeline.core.risk import HaltKind
from trading_pipeline.ledger.orders import (
    NewIntent,
    create_intent,
    fills_for_intent,
    get_broker_order,
    get_intent,
    mark_sent,
    order_events_for_intent,
)
from trading_pipeline.ledger.risk import (
    get_daily_counters,
    get_trading_state,
    list_breaker_trips,
    set_halt,
    start_session,
)
from trading_pipeline.ledger.staging import get_staged
from trading_pipeline.trading.order_gateway import (
    IntentSpec,
    LiveTradingRefused,
    OrderGateway,
    SubmitOutcome,
    check_live_account,
    load_sector_map,
)
from trading_pipeline_tests.trading.conftest import (
    AAPL_PUT,
    MONDAY,
    SIM_ACCOUNT,
    connect,
    sim_orders_with_ref,
    stage,
    stalled,
)

PARAMS = ExecutionParameters()


@pytest.fixture
def aapl_put(broker):
    [contract] = broker.qualify(AAPL_PUT)
    return contract


@pytest.fixture
def put_quote(broker, aapl_put):
    [quote] = broker.quotes([aapl_put])
    assert quote.bid and quote.ask and quote.ask > quote.bid
    return quote


def resting_entry(staged_id, contract, quote, *, quantity=1, seq=1, margin=3000.0) -> IntentSpec:
    """A sell to open far above the ask: it rests (the stepped clock never moves it)."""
    return IntentSpec(MONDAY, IntentPurpose.ENTRY, staged_id, contract, "SELL", quantity, "LMT",
                      limit_price=round(quote.ask + 5.0, 2), seq=seq, margin_required=margin)


def gateway(broker, engine, clock, *, dry_run, params=PARAMS, **options) -> OrderGateway:
    return OrderGateway(broker, engine, clock, params, dry_run=dry_run, account=SIM_ACCOUNT, **options)


# ---------------------------------------------------------------------------- dry run and live


def test_dry_run_records_intents_and_sends_nothing(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    staged_id = stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=True) as orders:
        result = orders.submit(resting_entry(staged_id, aapl_put, put_quote, quantity=2))
    assert result.outcome is SubmitOutcome.DRY_RUN
    assert result.order_ref == f"tpd-20261123-{staged_id}-E1"
    intent = get_intent(engine, order_ref=result.order_ref)
    assert intent.dry_run and intent.status is IntentStatus.INTENDED
    assert (intent.action, intent.quantity, intent.symbol, float(intent.strike)) == ("SELL", 2, "AAPL", 220.0)
    assert "SELL 2 AAPL 2026-12-18 220 P" in result.description
    assert sim_gateway.call(sim_gateway.broker.open_orders, None) == []
    assert sim_gateway.call(sim_gateway.broker.completed_orders) == []


def test_live_to_a_paper_account_sends_and_records_the_acknowledgement(sim_gateway, broker, engine, clock,
                                                                       aapl_put, put_quote):
    staged_id = stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        result = orders.submit(resting_entry(staged_id, aapl_put, put_quote))
    assert result.outcome is SubmitOutcome.SENT
    [order] = sim_orders_with_ref(sim_gateway, f"tp-20261123-{staged_id}-E1")
    assert order.request.action == "SELL" and order.request.lmt_price == pytest.approx(put_quote.ask + 5.0)
    intent = get_intent(engine, order_ref=result.order_ref)
    assert intent.status is IntentStatus.ACKNOWLEDGED and not intent.dry_run
    assert (intent.broker_order_id, intent.broker_perm_id) == (order.order_id, order.perm_id)
    assert intent.sent_at is not None and intent.acknowledged_at is not None


def test_a_live_batch_leaves_the_records_of_the_ledger_protocol(sim_gateway, broker, engine, clock, aapl_put,
                                                                 put_quote):
    staged = [stage(engine, aapl_put) for _ in range(3)]
    with gateway(broker, engine, clock, dry_run=False) as orders:
        results = orders.submit_batch([resting_entry(staged_id, aapl_put, put_quote) for staged_id in staged])
    assert [r.outcome for r in results] == [SubmitOutcome.SENT] * 3
    for result, staged_id in zip(results, staged):
        intent = get_intent(engine, order_ref=result.order_ref)
        assert intent == result.intent                      # what the batch returned is what it stored
        history = [(e.source, e.status) for e in order_events_for_intent(engine, intent.id)]
        assert history == [("ledger", "INTENDED"), ("ledger", "SENT"), ("broker", "Submitted")]
        order = get_broker_order(engine, result.handle.perm_id)
        assert (order.intent_id, order.order_ref, order.status, order.broker_order_id) == (
            intent.id, result.order_ref, "Submitted", result.handle.order_id)
        assert get_staged(engine, staged_id).status == "SUBMITTED"
    counters = get_daily_counters(engine, MONDAY)
    assert (counters.new_positions, counters.orders_submitted) == (3, 3)


def test_a_refused_margin_check_rejects_that_order_only(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    # The broker refuses the what-if of an order priced off the contract's grid (error 110):
    # that order is rejected without an intent, the rest of the batch is sent.
    off_grid = IntentSpec(MONDAY, IntentPurpose.ENTRY, stage(engine, aapl_put), aapl_put, "SELL", 1, "LMT",
                          limit_price=round(put_quote.ask + 5.0, 2) + 0.005, seq=1, margin_required=None)
    fine = resting_entry(stage(engine, aapl_put), aapl_put, put_quote)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        rejected, sent = orders.submit_batch([off_grid, fine])
    assert rejected.outcome is SubmitOutcome.REJECTED and rejected.intent is None
    assert "no margin check" in rejected.reasons[0] and "minimum price variation" in rejected.reasons[0]
    assert get_intent(engine, order_ref=rejected.order_ref) is None
    assert sent.outcome is SubmitOutcome.SENT


def test_a_halt_set_while_a_batch_is_placed_stops_the_rest(sim_gateway, broker, engine, clock, aapl_put,
                                                            put_quote, monkeypatch):
    import trading_pipeline.trading.order_gateway as module

    monkeypatch.setattr(module, "HALT_RECHECK_SECONDS", 0.0)     # re-read the halt before every order

    class HaltAfterFirstOrder:
        """The broker, with an emergency stop landing right after the first placement."""

        def __init__(self, inner):
            self._inner, self.placed = inner, 0

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def place_order(self, contract, request):
            handle = self._inner.place_order(contract, request)
            self.placed += 1
            if self.placed == 1:
                set_halt(engine, "emergency stop", by="another process", at=clock.now())
            return handle

    staged = [stage(engine, aapl_put) for _ in range(4)]
    with OrderGateway(HaltAfterFirstOrder(broker), engine, clock, PARAMS, dry_run=False,
                      account=SIM_ACCOUNT) as orders:
        results = orders.submit_batch([resting_entry(staged_id, aapl_put, put_quote) for staged_id in staged])
    assert [r.outcome for r in results] == [SubmitOutcome.SENT] + [SubmitOutcome.REFUSED] * 3
    assert results[1].reasons == ("not sent: trading halted (manual): emergency stop "
                                  "(set after the batch was claimed)",)
    assert get_intent(engine, results[1].intent.id).status is IntentStatus.CANCELLED
    assert len(sim_gateway.call(sim_gateway.broker.open_orders, None)) == 1


# ---------------------------------------------------------------------------- live-account guard


def test_live_guard_rules():
    check_live_account("DU1234567", armed=False, confirmed_account=None)
    with pytest.raises(LiveTradingRefused, match="TP_LIVE_ARMED=1 is not set.*not confirmed"):
        check_live_account("U1234567", armed=False, confirmed_account=None)
    with pytest.raises(LiveTradingRefused, match="not confirmed") as refused:
        check_live_account("U1234567", armed=True, confirmed_account=None)
    assert "TP_LIVE_ARMED" not in str(refused.value)
    with pytest.raises(LiveTradingRefused, match="does not match"):
        check_live_account("U1234567", armed=True, confirmed_account="U7654321")
    with pytest.raises(LiveTradingRefused, match="TP_LIVE_ARMED"):
        check_live_account("U1234567", armed=False, confirmed_account="U1234567")
    check_live_account("U1234567", armed=True, confirmed_account="U1234567")
    with pytest.raises(LiveTradingRefused, match="no account"):
        check_live_account("", armed=True, confirmed_account="")


def test_live_guard_refuses_a_real_account_unless_armed_and_confirmed(engine, monkeypatch):
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway
    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline_tests.sim.conftest import SIM_START

    real = SimGateway(SimBroker(seed=7, start=SIM_START, account_id="U1234567"))
    real.start()
    adapter = connect(real.port)
    try:
        clock = BrokerClock(adapter, rate=0)
        [contract] = adapter.qualify(AAPL_PUT)
        [quote] = adapter.quotes([contract])
        staged_id = stage(engine, contract)
        monkeypatch.delenv("TP_LIVE_ARMED", raising=False)
        with pytest.raises(LiveTradingRefused, match="U1\\*\\*\\*567.*not a paper account"):
            OrderGateway(adapter, engine, clock, PARAMS, dry_run=False, account="U1234567")
        monkeypatch.setenv("TP_LIVE_ARMED", "1")
        with pytest.raises(LiveTradingRefused, match="not confirmed"):
            OrderGateway(adapter, engine, clock, PARAMS, dry_run=False, account="U1234567")
        assert real.call(real.broker.open_orders, None) == []
        # A dry run needs neither.
        with OrderGateway(adapter, engine, clock, PARAMS, dry_run=True, account="U1234567") as orders:
            assert orders.submit(resting_entry(staged_id, contract, quote)).outcome is SubmitOutcome.DRY_RUN
        with OrderGateway(adapter, engine, clock, PARAMS, dry_run=False, account="U1234567",
                          confirmed_account="U1234567") as orders:
            result = orders.submit(resting_entry(staged_id, contract, quote))
        assert result.outcome is SubmitOutcome.SENT
        assert len(real.call(real.broker.open_orders, None)) == 1
    finally:
        adapter.disconnect()
        real.stop()


# ---------------------------------------------------------------------------- risk


def test_a_risk_refusal_sends_nothing_and_is_recorded(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    one_position = PARAMS.with_overrides(max_open_positions=1)
    first, second = stage(engine, aapl_put), stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=False, params=one_position) as orders:
        sent = orders.submit(resting_entry(first, aapl_put, put_quote))
        refused = orders.submit(resting_entry(second, aapl_put, put_quote))
    assert sent.outcome is SubmitOutcome.SENT
    assert refused.outcome is SubmitOutcome.REFUSED
    assert refused.reasons == ("max open positions: 1 open + this order = 2 > 1 (MAX_OPEN_POSITIONS)",)
    intent = get_intent(engine, order_ref=refused.order_ref)
    assert intent.status is IntentStatus.CANCELLED
    assert intent.error == "refused by the risk governor: " + refused.reasons[0]
    assert sim_orders_with_ref(sim_gateway, refused.order_ref) == []


def test_a_batch_counts_each_approved_order_before_checking_the_next(sim_gateway, broker, engine, clock,
                                                                     aapl_put, put_quote):
    two_per_day = PARAMS.with_overrides(max_new_positions_per_day=2)
    specs = [resting_entry(stage(engine, aapl_put), aapl_put, put_quote) for _ in range(3)]
    with gateway(broker, engine, clock, dry_run=False, params=two_per_day) as orders:
        results = orders.submit_batch(specs)
    assert [r.outcome for r in results] == [SubmitOutcome.SENT, SubmitOutcome.SENT, SubmitOutcome.REFUSED]
    assert "3 > 2 (MAX_NEW_POSITIONS_PER_DAY)" in results[2].reasons[0]
    assert len(sim_gateway.call(sim_gateway.broker.open_orders, None)) == 2


def test_a_halt_refuses_new_orders(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    set_halt(engine, "operator stop", by="test", at=clock.now())
    staged_id = stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        result = orders.submit(resting_entry(staged_id, aapl_put, put_quote))
    assert result.outcome is SubmitOutcome.REFUSED
    assert result.reasons == ("trading halted (manual): operator stop",)
    assert sim_gateway.call(sim_gateway.broker.open_orders, None) == []


def test_the_daily_loss_breaker_trips_persists_and_refuses(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    # The session opened with 3 % more NLV than now: P&L today -2.91 % of the start NLV.
    nlv = broker.account_summary().net_liquidation
    start_session(engine, MONDAY, start_nlv=nlv * 1.03, at=clock.now())
    staged_id = stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        result = orders.submit(resting_entry(staged_id, aapl_put, put_quote))
    assert result.outcome is SubmitOutcome.REFUSED and result.risk.trips_breaker
    assert result.reasons[0].startswith("daily loss limit reached: P&L today -$30,000.00 is -2.91%")
    state = get_trading_state(engine)
    assert state.halted and state.halt_kind is HaltKind.DAILY_LOSS
    [trip] = list_breaker_trips(engine, MONDAY)
    assert trip.rule == "daily_loss" and trip.details == result.reasons[0]
    assert sim_gateway.call(sim_gateway.broker.open_orders, None) == []


# ---------------------------------------------------------------------------- idempotency


def test_the_same_intent_submitted_twice_is_sent_once(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    staged_id = stage(engine, aapl_put)
    spec = resting_entry(staged_id, aapl_put, put_quote)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        first = orders.submit(spec)
        again = orders.submit(spec)
    with gateway(broker, engine, clock, dry_run=False) as rerun:   # a re-run of the job
        third = rerun.submit(spec)
    assert first.outcome is SubmitOutcome.SENT
    assert again.outcome is third.outcome is SubmitOutcome.DUPLICATE
    assert "already ACKNOWLEDGED" in third.reasons[0]
    assert len(sim_orders_with_ref(sim_gateway, first.order_ref)) == 1


# ---------------------------------------------------------------------------- reconcile


def test_reconcile_attaches_an_order_sent_but_never_recorded_as_acknowledged(sim_gateway, broker, engine, clock,
                                                                              aapl_put, put_quote):
    # A run wrote and claimed the intent, the order reached the broker, and the run died
    # before it recorded the acknowledgement.
    staged_id = stage(engine, aapl_put)
    spec = resting_entry(staged_id, aapl_put, put_quote)
    ref = spec.order_ref(dry_run=False)
    intent = create_intent(engine, NewIntent(
        order_ref=ref, session_day=MONDAY, purpose=IntentPurpose.ENTRY, symbol="AAPL", action="SELL", quantity=1,
        order_type="LMT", limit_price=spec.limit_price, con_id=aapl_put.con_id, expiration=aapl_put.expiry,
        strike=220.0, right="P", dry_run=False, staged_opportunity_id=staged_id), at=clock.now())
    mark_sent(engine, intent.id, at=clock.now())
    handle = broker.place_order(aapl_put, spec.request(ref, SIM_ACCOUNT))
    with gateway(broker, engine, clock, dry_run=False) as orders:
        report = orders.reconcile()
        assert report.clean and report.applied.updates_applied == 1
        assert orders.submit(spec).outcome is SubmitOutcome.DUPLICATE
    intent = get_intent(engine, intent.id)
    assert intent.status is IntentStatus.ACKNOWLEDGED
    assert (intent.broker_order_id, intent.broker_perm_id) == (handle.order_id, handle.perm_id)
    assert len(sim_orders_with_ref(sim_gateway, ref)) == 1


def test_reconcile_records_a_fill_missed_while_down(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    staged_id = stage(engine, aapl_put, contracts=2)
    marketable = IntentSpec(MONDAY, IntentPurpose.ENTRY, staged_id, aapl_put, "SELL", 2, "LMT",
                            limit_price=put_quote.bid, margin_required=6000.0)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        result = orders.submit(marketable)
    # The gateway closed before it recorded any event: the fill happened "while down".
    assert result.outcome is SubmitOutcome.SENT
    assert get_intent(engine, result.intent.id).filled_quantity == 0
    executions = [e for e in sim_gateway.call(sim_gateway.broker.executions) if e.perm_id == result.handle.perm_id]
    assert sum(e.shares for e in executions) == 2
    with gateway(broker, engine, clock, dry_run=True) as later:
        report = later.reconcile()
        again = later.reconcile()
    intent = get_intent(engine, result.intent.id)
    assert intent.status is IntentStatus.FILLED and intent.filled_quantity == 2
    fills = fills_for_intent(engine, intent.id)
    assert sorted(f.exec_id for f in fills) == sorted(e.exec_id for e in executions)
    assert all(float(f.price) == pytest.approx(put_quote.bid) and f.side == "SLD" for f in fills)
    assert report.applied.fills_recorded == len(executions) and again.applied.fills_recorded == 0
    assert len(sim_orders_with_ref(sim_gateway, result.order_ref)) == 1


def test_an_intent_sent_but_never_at_the_broker_goes_to_review(sim_gateway, broker, engine, clock, aapl_put):
    staged_id = stage(engine, aapl_put)
    ref = f"tp-20261123-{staged_id}-E1"
    intent = create_intent(engine, NewIntent(
        order_ref=ref, session_day=MONDAY, purpose=IntentPurpose.ENTRY, symbol="AAPL", action="SELL", quantity=1,
        order_type="LMT", limit_price=9.0, con_id=aapl_put.con_id, expiration=aapl_put.expiry, strike=220.0,
        right="P", dry_run=False, staged_opportunity_id=staged_id), at=clock.now())
    mark_sent(engine, intent.id, at=clock.now())
    with gateway(broker, engine, clock, dry_run=False) as orders:
        report = orders.reconcile()
    assert not report.clean and report.review[0].startswith(f"{ref}: sent but neither open at the broker")
    assert get_intent(engine, intent.id).status is IntentStatus.UNKNOWN
    assert sim_orders_with_ref(sim_gateway, ref) == []        # never re-sent


# ---------------------------------------------------------------------------- events, modify, cancel


def test_record_events_records_statuses_and_fills_once(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    staged_id = stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        result = orders.submit(IntentSpec(MONDAY, IntentPurpose.ENTRY, staged_id, aapl_put, "SELL", 1, "MKT",
                                          margin_required=3000.0))
        broker.wait_for_order(result.handle, {"Filled"}, 2.0)
        first = orders.record_events()
        orders.reconcile()                    # the same fill, listed by the broker: not again
    assert first.fills_recorded == 1 and first.statuses >= 1
    intent = get_intent(engine, result.intent.id)
    assert intent.status is IntentStatus.FILLED and len(fills_for_intent(engine, intent.id)) == 1


def test_modify_and_cancel_a_working_order(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    staged_id = stage(engine, aapl_put)
    with gateway(broker, engine, clock, dry_run=False) as orders:
        result = orders.submit(resting_entry(staged_id, aapl_put, put_quote))
        lower = round(put_quote.ask + 4.0, 2)
        modified = orders.modify(result.intent, lower)
        below_floor = orders.modify(result.intent, 0.05)
        cancelled = orders.cancel(result.intent)
        again = orders.cancel(result.intent)
    assert modified.done and float(modified.intent.limit_price) == pytest.approx(lower)
    [order] = sim_orders_with_ref(sim_gateway, result.order_ref)
    assert order.request.lmt_price == pytest.approx(lower)
    assert not below_floor.done and "below the premium floor 0.20" in below_floor.reason
    assert cancelled.done and cancelled.intent.status is IntentStatus.CANCELLED
    assert order.status.value == "Cancelled"
    assert not again.done and "already CANCELLED" in again.reason


def test_a_send_that_times_out_stays_sent_and_is_never_resent(sim_gateway, engine, aapl_put, put_quote):
    from trading_pipeline.core.clock import FixedClock
    from trading_pipeline_tests.sim.conftest import SIM_START

    impatient = connect(sim_gateway.port, client_id=11, timeout=0.3)
    try:
        # A liquidation goes out without reading the account first (no risk check), so the
        # broker call that stalls is the placement itself. A buy far under the bid rests.
        spec = IntentSpec(MONDAY, IntentPurpose.LIQUIDATE, aapl_put.con_id, aapl_put, "BUY", 1, "LMT",
                          limit_price=0.05)
        second = IntentSpec(MONDAY, IntentPurpose.LIQUIDATE, aapl_put.con_id, aapl_put, "BUY", 1, "LMT",
                            limit_price=0.05, seq=2)
        clock = FixedClock(SIM_START)
        with gateway(impatient, engine, clock, dry_run=False) as orders:
            with stalled(sim_gateway):
                result, rest = orders.submit_batch([spec, second])
            assert result.outcome is SubmitOutcome.UNCERTAIN
            assert "never re-sent automatically" in result.reasons[0]
            assert get_intent(engine, result.intent.id).status is IntentStatus.SENT
            # The rest of the batch is not sent once a send failed midway.
            assert rest.outcome is SubmitOutcome.REFUSED
            assert rest.reasons[0].startswith("not sent: an earlier order of the batch could not be sent")
            assert get_intent(engine, rest.intent.id).status is IntentStatus.CANCELLED
            # The order did reach the simulator once it woke up: reconcile (its late status
            # event, or the open orders) attaches it; the resubmission is refused.
            report = orders.reconcile()
            assert orders.submit(spec).outcome is SubmitOutcome.DUPLICATE
        assert report.clean
        intent = get_intent(engine, result.intent.id)
        assert intent.status is IntentStatus.ACKNOWLEDGED and intent.broker_perm_id
        assert len(sim_orders_with_ref(sim_gateway, result.order_ref)) == 1
        assert sim_orders_with_ref(sim_gateway, rest.order_ref) == []
    finally:
        impatient.disconnect()


# ---------------------------------------------------------------------------- sector map


def test_sector_map_file(tmp_path):
    from trading_pipeline.errors import InputFileError

    good = tmp_path / "sectors.csv"
    good.write_text("symbol,sector\naapl,Technology\nXOM, Energy\n")
    assert load_sector_map(good) == {"AAPL": "Technology", "XOM": "Energy"}
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,industry\nAAPL,Tech\n")
    with pytest.raises(InputFileError, match="columns symbol and sector"):
        load_sector_map(bad)
    missing = tmp_path / "holes.csv"
    missing.write_text("symbol,sector\nAAPL,\n")
    with pytest.raises(InputFileError) as problem:
        load_sector_map(missing)
    assert problem.value.row == 2


def test_the_sector_map_feeds_the_concentration_check(sim_gateway, broker, engine, clock, aapl_put, put_quote):
    # Capacity 0.8 x NLV 1,000,000 = 800,000; 30 % of it is 240,000 per sector.
    big = PARAMS.with_overrides(max_position_size=1_000_000.0)
    with gateway(broker, engine, clock, dry_run=True, params=big, sector_map={"AAPL": "Technology"}) as orders:
        result = orders.submit(resting_entry(stage(engine, aapl_put), aapl_put, put_quote, margin=250_000.0))
    assert result.outcome is SubmitOutcome.REFUSED
    assert result.reasons[0].startswith("sector concentration: Technology would hold $250,000.00 = 31.25%")
