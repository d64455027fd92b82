"""Lifecycle matching (trading_pipeline.core.lifecycles) on executions in the Flex layout.

Contract: option executions are matched per (account, underlying, right, strike, expiry)
and side, first in first out, into lifecycles with hand-checkable prices, P&L (price
difference x contracts x multiplier), commissions (costs, shared by contracts) and the
confidence of each match type (BTC/STC 1.0 full and 0.9 partial, expiration 0.95,
assignment and exercise 0.85); closings without an opening are gaps, never dropped and
never matched with later openings; cancelled and invalid executions never count; the
vectorized matcher agrees with a plain FIFO loop on random histories.
"""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_pipeline.core.lifecycles import (
    EXPIRY_PASSED_FLAG,
    GAP_COLUMNS,
    LIFECYCLE_COLUMNS,
    deduplicate_executions,
    link_cancellations,
    match_lifecycles,
)
from trading_pipeline.ingest.flex import EXECUTION_COLUMNS, parse_flex

EXPIRY = date(2026, 12, 18)
START = datetime(2026, 11, 2, 15, 0, tzinfo=timezone.utc)


def execution(
    exec_id: str,
    side: str,
    contracts: int,
    price: float,
    *,
    minutes: int = 0,
    open_close: str | None = None,
    event: str = "trade",
    commission: float = -1.0,
    order_id: str | None = None,
    strike: float = 100.0,
    right: str = "P",
    multiplier: float = 100.0,
    underlying: str = "XYZ",
    account: str = "U1",
    expiry: date = EXPIRY,
    trade_id: str | None = None,
    orig_trade_id: str | None = None,
    is_cancellation: bool = False,
    error: str | None = None,
    asset_category: str = "OPT",
) -> dict:
    """One execution row in the parser's layout; ``minutes`` after START."""
    when = START + timedelta(minutes=minutes)
    return {
        "line": minutes + 10,
        "statement": 0,
        "account": account,
        "exec_id": exec_id,
        "trade_id": trade_id or f"T-{exec_id}",
        "orig_trade_id": orig_trade_id,
        "order_id": order_id if order_id is not None else f"O-{exec_id}",
        "transaction_id": None,
        "transaction_type": "TradeCancel" if is_cancellation else "ExchTrade",
        "asset_category": asset_category,
        "symbol": f"{underlying} option",
        "description": None,
        "underlying": underlying,
        "con_id": 1,
        "put_call": right if asset_category == "OPT" else None,
        "strike": strike if asset_category == "OPT" else None,
        "expiry": expiry if asset_category == "OPT" else None,
        "multiplier": multiplier,
        "currency": "USD",
        "fx_rate_to_base": 1.0,
        "buy_sell": side,
        "quantity": float(contracts if side == "BUY" else -contracts),
        "price": price,
        "commission": commission,
        "commission_currency": "USD",
        "open_close": open_close,
        "notes": None,
        "event": "cancel" if is_cancellation else event,
        "date_time": when,
        "date_time_utc": when,
        "trade_date": when.date(),
        "is_cancellation": is_cancellation,
        "cancelled": False,
        "cancels_exec_id": None,
        "cancelled_by_exec_id": None,
        "raw_xml": "<Trade/>",
        "error": error,
    }


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=EXECUTION_COLUMNS)


def only(lifecycles: pl.DataFrame, **where) -> dict:
    rows = lifecycles.filter(*[pl.col(k) == v for k, v in where.items()])
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def test_sto_closed_by_one_btc_is_a_full_match():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 2, 3.00, open_close="O", commission=-1.30),
            execution("b1", "BUY", 2, 1.00, minutes=60 * 24, open_close="C", commission=-1.30),
        )
    )
    assert dict(result.lifecycles.schema) == LIFECYCLE_COLUMNS
    assert result.gaps.height == 0
    life = only(result.lifecycles)
    assert life["side"] == "short" and life["exit_type"] == "btc" and life["quantity"] == 2
    assert life["open_price"] == 3.00 and life["close_price"] == 1.00
    assert life["gross_pnl"] == pytest.approx((3.00 - 1.00) * 2 * 100)  # 400
    assert life["commissions"] == pytest.approx(2.60)
    assert life["net_pnl"] == pytest.approx(397.40)
    assert life["confidence"] == 1.0
    assert life["open_date"] == date(2026, 11, 2) and life["close_date"] == date(2026, 11, 3)
    assert life["open_exec_ids"] == ["s1"] and life["close_exec_ids"] == ["b1"]
    assert (life["account"], life["underlying"], life["right"], life["strike"], life["expiry"]) == (
        "U1", "XYZ", "P", 100.0, EXPIRY,
    )
    assert life["lifecycle_id"] == "s1:btc"


def test_partial_closes_are_allocated_first_in_first_out():
    # Two openings (5 @ 2.00, then 3 @ 2.50) and two closings of 4 each: the first closing
    # takes 4 of the first opening; the second takes its last 1, then 3 of the second.
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 5, 2.00, minutes=0, open_close="O"),
            execution("s2", "SELL", 3, 2.50, minutes=10, open_close="O"),
            execution("b1", "BUY", 4, 1.00, minutes=20, open_close="C"),
            execution("b2", "BUY", 4, 0.50, minutes=30, open_close="C"),
        )
    )
    first = only(result.lifecycles, lifecycle_id="s1:btc")
    assert first["quantity"] == 5
    assert first["close_price"] == pytest.approx((4 * 1.00 + 1 * 0.50) / 5)  # 0.90
    assert first["gross_pnl"] == pytest.approx((2.00 - 0.90) * 5 * 100)  # 550
    # commissions: its own opening 1.00, all of b1 (4 of 4) 1.00, 1 of b2's 4 contracts 0.25
    assert first["commissions"] == pytest.approx(2.25)
    assert first["close_exec_ids"] == ["b1", "b2"]
    assert first["confidence"] == 0.9  # two closing orders: a partial-close history
    second = only(result.lifecycles, lifecycle_id="s2:btc")
    assert second["quantity"] == 3 and second["close_price"] == 0.50
    assert second["gross_pnl"] == pytest.approx((2.50 - 0.50) * 3 * 100)  # 600
    assert second["commissions"] == pytest.approx(1.00 + 0.75)
    assert second["confidence"] == 1.0  # one closing order closed the whole opening
    assert result.gaps.height == 0


def test_fills_of_one_order_are_one_opening_and_one_closing():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 1, 1.00, minutes=0, open_close="O", order_id="A"),
            execution("s2", "SELL", 3, 1.20, minutes=0, open_close="O", order_id="A"),
            execution("b1", "BUY", 2, 0.10, minutes=50, open_close="C", order_id="B"),
            execution("b2", "BUY", 2, 0.20, minutes=51, open_close="C", order_id="B"),
        )
    )
    life = only(result.lifecycles)
    assert life["quantity"] == 4
    assert life["open_price"] == pytest.approx((1.00 + 3 * 1.20) / 4)  # 1.15
    assert life["close_price"] == pytest.approx(0.15)
    assert life["gross_pnl"] == pytest.approx((1.15 - 0.15) * 4 * 100)  # 400
    assert life["commissions"] == pytest.approx(4.0)
    assert life["confidence"] == 1.0
    assert life["open_exec_ids"] == ["s1", "s2"]


def test_short_expiration_keeps_the_premium():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 2, 0.80, open_close="O", commission=-1.30),
            execution("x1", "BUY", 2, 0.0, minutes=9000, open_close="C", event="expiration", commission=0.0),
        )
    )
    life = only(result.lifecycles)
    assert life["exit_type"] == "expiration" and life["confidence"] == 0.95
    assert life["close_price"] == 0.0
    assert life["gross_pnl"] == pytest.approx(160.0)
    assert life["net_pnl"] == pytest.approx(158.70)


def test_short_assignment_closes_the_option_leg():
    stock = execution("k1", "BUY", 200, 100.0, minutes=9000, open_close="O", event="assignment",
                      asset_category="STK", multiplier=1.0, commission=0.0)
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 2, 1.50, open_close="O", commission=-1.30),
            execution("a1", "BUY", 2, 0.0, minutes=9000, open_close="C", event="assignment", commission=0.0),
            stock,
        )
    )
    life = only(result.lifecycles)  # the stock row is no option: no lifecycle of its own
    assert life["exit_type"] == "assignment" and life["confidence"] == 0.85
    assert life["gross_pnl"] == pytest.approx(300.0)  # the option leg: premium kept
    assert life["close_exec_ids"] == ["a1"]


@pytest.mark.parametrize(
    ("exit_side_event", "close_price", "exit_type", "confidence", "gross"),
    [
        ("trade", 2.40, "stc", 1.0, (2.40 - 1.60) * 3 * 100),
        ("expiration", 0.0, "expiration", 0.95, -1.60 * 3 * 100),
        ("exercise", 0.0, "exercise", 0.85, -1.60 * 3 * 100),
    ],
)
def test_long_side_lifecycles(exit_side_event, close_price, exit_type, confidence, gross):
    result = match_lifecycles(
        frame(
            execution("b1", "BUY", 3, 1.60, open_close="O", right="C"),
            execution("s1", "SELL", 3, close_price, minutes=60, open_close="C", event=exit_side_event, right="C"),
        )
    )
    life = only(result.lifecycles)
    assert life["side"] == "long" and life["right"] == "C"
    assert life["exit_type"] == exit_type and life["confidence"] == confidence
    assert life["gross_pnl"] == pytest.approx(gross)


def test_partly_bought_back_then_expired_gives_two_lifecycles():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 3, 1.00, open_close="O", commission=-3.0),
            execution("b1", "BUY", 1, 0.40, minutes=60, open_close="C", commission=-1.0),
            execution("x1", "BUY", 2, 0.0, minutes=9000, open_close="C", event="expiration", commission=0.0),
        )
    )
    btc = only(result.lifecycles, exit_type="btc")
    assert btc["quantity"] == 1 and btc["confidence"] == 0.9  # covers part of the opening
    assert btc["gross_pnl"] == pytest.approx(60.0)
    assert btc["commissions"] == pytest.approx(1.0 + 1.0)  # a third of the opening's 3.00, all of b1
    expired = only(result.lifecycles, exit_type="expiration")
    assert expired["quantity"] == 2 and expired["confidence"] == 0.95
    assert expired["gross_pnl"] == pytest.approx(200.0)
    assert expired["commissions"] == pytest.approx(2.0)


def test_closing_without_opening_is_a_gap_and_does_not_eat_later_openings():
    result = match_lifecycles(
        frame(
            execution("b0", "BUY", 2, 0.50, minutes=0, open_close="C"),  # opened before the window
            execution("s1", "SELL", 1, 1.00, minutes=10, open_close="O"),
        )
    )
    assert dict(result.gaps.schema) == GAP_COLUMNS
    gap = result.gaps.row(0, named=True)
    assert (gap["exec_id"], gap["quantity"], gap["side"], gap["exit_type"]) == ("b0", 2, "short", "btc")
    assert "outside" in gap["reason"] or "before" in gap["reason"]
    life = only(result.lifecycles)
    assert life["exit_type"] == "open" and life["quantity"] == 1
    assert life["close_price"] is None and life["gross_pnl"] is None and life["confidence"] is None


def test_closing_larger_than_what_is_open_splits_into_match_and_gap():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 1, 1.00, minutes=0, open_close="O"),
            execution("b1", "BUY", 3, 0.50, minutes=10, open_close="C"),
        )
    )
    life = only(result.lifecycles)
    assert life["exit_type"] == "btc" and life["quantity"] == 1
    assert result.gaps["quantity"].to_list() == [2]


def test_open_positions_past_expiry_are_flagged_when_told_the_date():
    executions = frame(execution("s1", "SELL", 1, 1.00, open_close="O"))
    assert match_lifecycles(executions).lifecycles["flag"].to_list() == [None]
    assert match_lifecycles(executions, as_of=EXPIRY).lifecycles["flag"].to_list() == [None]
    flagged = match_lifecycles(executions, as_of=EXPIRY + timedelta(days=1)).lifecycles
    assert flagged["flag"].to_list() == [EXPIRY_PASSED_FLAG]
    assert flagged["exit_type"].to_list() == ["open"]


def test_multiplier_other_than_100_is_respected():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 2, 55.0, open_close="O", multiplier=5.0, underlying="DAX", strike=12000.0),
            execution("b1", "BUY", 2, 40.0, minutes=5, open_close="C", multiplier=5.0, underlying="DAX",
                      strike=12000.0),
        )
    )
    assert only(result.lifecycles)["gross_pnl"] == pytest.approx((55.0 - 40.0) * 2 * 5)  # 150, not 3000


def test_contracts_are_matched_only_within_their_key():
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 1, 1.0, open_close="O", strike=100.0),
            execution("b1", "BUY", 1, 0.5, minutes=5, open_close="C", strike=105.0),
            execution("s2", "SELL", 1, 1.0, minutes=6, open_close="O", account="U2"),
            execution("s3", "SELL", 1, 1.0, minutes=7, open_close="O", right="C"),
        )
    )
    assert sorted(result.lifecycles["exit_type"].to_list()) == ["open", "open", "open"]
    assert result.gaps["exec_id"].to_list() == ["b1"]


def test_cancelled_and_invalid_executions_never_count():
    cancelled = execution("s0", "SELL", 5, 9.99, open_close="O")
    cancelled["cancelled"] = True
    result = match_lifecycles(
        frame(
            cancelled,
            execution("bad", "SELL", 5, 9.99, open_close="O", error="attribute 'tradePrice': not a number 'x'"),
            execution("s1", "SELL", 1, 1.00, minutes=1, open_close="O"),
            execution("b1", "BUY", 1, 0.25, minutes=2, open_close="C"),
        )
    )
    life = only(result.lifecycles)
    assert life["open_exec_ids"] == ["s1"] and life["quantity"] == 1


def test_without_indicators_the_position_decides_and_a_crossing_trade_splits():
    # Short 1, then a BUY of 3 without an open/close indicator (IBKR's "C;O"): it closes the
    # short contract and opens 2 long ones, which a later SELL closes.
    result = match_lifecycles(
        frame(
            execution("s1", "SELL", 1, 1.00, minutes=0),
            execution("b1", "BUY", 3, 0.50, minutes=10, commission=-3.0),
            execution("s2", "SELL", 2, 0.90, minutes=20),
        )
    )
    short = only(result.lifecycles, side="short")
    assert short["exit_type"] == "btc" and short["quantity"] == 1
    assert short["gross_pnl"] == pytest.approx(50.0)
    assert short["commissions"] == pytest.approx(1.0 + 1.0)  # s1, and a third of b1
    long = only(result.lifecycles, side="long")
    assert long["exit_type"] == "stc" and long["quantity"] == 2
    assert long["gross_pnl"] == pytest.approx((0.90 - 0.50) * 2 * 100)
    assert long["commissions"] == pytest.approx(2.0 + 1.0)  # two thirds of b1, all of s2


def test_deduplicate_keeps_the_first_row_per_execution_id():
    rows = frame(
        execution("s1", "SELL", 1, 1.00, open_close="O"),
        execution("s1", "SELL", 1, 1.00, open_close="O"),
        execution("s1", "SELL", 1, 1.00, open_close="O", is_cancellation=True, orig_trade_id="T-s1"),
        execution("b1", "BUY", 1, 0.50, minutes=5, open_close="C"),
    )
    unique = deduplicate_executions(rows)
    assert unique["exec_id"].to_list() == ["s1", "s1", "b1"]
    assert unique["is_cancellation"].to_list() == [False, True, False]


def test_link_cancellations_pairs_each_cancel_with_the_earlier_execution():
    rows = frame(
        execution("e1", "SELL", 1, 1.00, trade_id="T7"),
        execution("c1", "SELL", 1, 1.00, trade_id=None, orig_trade_id="T7", is_cancellation=True),
        execution("e2", "SELL", 1, 1.05, trade_id="T7"),  # rebooked under the same trade id
        execution("c2", "SELL", 1, 1.05, trade_id=None, orig_trade_id="T7", is_cancellation=True),
        execution("e3", "SELL", 1, 1.10, trade_id="T7"),
        execution("c9", "SELL", 1, 1.00, orig_trade_id="T9", is_cancellation=True),  # original not here
    )
    rows = rows.with_columns(pl.when(pl.col("is_cancellation")).then(None).otherwise(pl.col("trade_id"))
                             .alias("trade_id"))
    linked = link_cancellations(rows)
    assert linked["cancelled"].to_list() == [True, True, True, True, False, True]
    assert linked["cancels_exec_id"].to_list() == [None, "e1", None, "e2", None, None]
    assert linked["cancelled_by_exec_id"].to_list() == ["c1", None, "c2", None, None, None]


def test_cancel_before_its_original_cancels_nothing():
    rows = frame(
        execution("c1", "SELL", 1, 1.00, orig_trade_id="T7", is_cancellation=True),
        execution("e1", "SELL", 1, 1.00, trade_id="T7"),
    )
    linked = link_cancellations(rows)
    assert linked["cancelled"].to_list() == [True, False]


def test_cancel_and_correct_from_a_flex_statement():
    """End to end: the cancelled original never counts, the rebook does (with its refund)."""
    statement = b"""<FlexQueryResponse queryName="t" type="AF">
<FlexStatements count="1">
<FlexStatement accountId="U1" fromDate="20261102" toDate="20261130" period="x" whenGenerated="20261130;180000">
<Trades>
<Trade accountId="U1" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" conid="5" underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" tradeID="700" dateTime="20261102;100000" tradeDate="20261102" transactionType="ExchTrade" quantity="-2" tradePrice="1.5" ibCommission="-1.30" openCloseIndicator="O" notes="" origTradeID="" buySell="SELL" ibOrderID="11" ibExecID="0001.aa.01.01" levelOfDetail="EXECUTION" />
<Trade accountId="U1" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" conid="5" underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" tradeID="" dateTime="20261102;100000" tradeDate="20261102" transactionType="TradeCancel" quantity="2" tradePrice="1.5" ibCommission="1.30" openCloseIndicator="O" notes="Ca" origTradeID="700" buySell="SELL (Ca.)" ibOrderID="11" ibExecID="0001.aa.01.99" levelOfDetail="EXECUTION" />
<Trade accountId="U1" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" conid="5" underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" tradeID="700" dateTime="20261102;100000" tradeDate="20261102" transactionType="ExchTrade" quantity="-2" tradePrice="1.55" ibCommission="0.20" openCloseIndicator="O" notes="" origTradeID="" buySell="SELL" ibOrderID="11" ibExecID="0001.aa.01.02" levelOfDetail="EXECUTION" />
<Trade accountId="U1" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" conid="5" underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" tradeID="701" dateTime="20261110;110000" tradeDate="20261110" transactionType="ExchTrade" quantity="2" tradePrice="0.55" ibCommission="-1.30" openCloseIndicator="C" notes="" origTradeID="" buySell="BUY" ibOrderID="12" ibExecID="0001.bb.01.01" levelOfDetail="EXECUTION" />
</Trades>
</FlexStatement>
</FlexStatements>
</FlexQueryResponse>
"""
    parsed = parse_flex(statement, source="cancel.xml")
    assert parsed.executions["cancelled"].to_list() == [True, True, False, False]
    result = match_lifecycles(deduplicate_executions(parsed.valid_executions))
    life = only(result.lifecycles)
    assert life["open_exec_ids"] == ["0001.aa.01.02"]
    assert life["open_price"] == 1.55 and life["close_price"] == 0.55
    assert life["gross_pnl"] == pytest.approx(200.0)
    assert life["commissions"] == pytest.approx(-0.20 + 1.30)  # the rebook's refund offsets a cost
    assert life["net_pnl"] == pytest.approx(198.90)
    assert life["confidence"] == 1.0
    assert result.gaps.height == 0


def test_the_commission_of_a_withdrawn_booking_goes_to_its_rebook():
    # IBKR may refund the original commission on the cancellation, or not and adjust on
    # the rebook: either way the lifecycle carries what was charged in the end.
    def history(cancel_refund: float, rebook_commission: float) -> pl.DataFrame:
        original = execution("e1", "SELL", 2, 1.50, open_close="O", trade_id="T7", commission=-1.30)
        cancel = execution("c1", "SELL", 2, 1.50, open_close="O", orig_trade_id="T7", is_cancellation=True,
                           commission=cancel_refund)
        cancel["trade_id"] = None
        rebook = execution("e2", "SELL", 2, 1.55, open_close="O", trade_id="T7", commission=rebook_commission)
        close = execution("b1", "BUY", 2, 0.55, minutes=60, open_close="C", commission=-1.30)
        return link_cancellations(frame(original, cancel, rebook, close))

    refunded = only(match_lifecycles(history(cancel_refund=1.30, rebook_commission=-1.30)).lifecycles)
    assert refunded["commissions"] == pytest.approx(1.30 + 1.30)
    adjusted = only(match_lifecycles(history(cancel_refund=0.0, rebook_commission=0.25)).lifecycles)
    assert adjusted["commissions"] == pytest.approx(1.30 - 0.25 + 1.30)
    assert adjusted["open_exec_ids"] == ["e2"] and adjusted["open_price"] == 1.55


def test_no_option_executions_give_empty_results():
    result = match_lifecycles(frame(execution("k1", "BUY", 100, 10.0, asset_category="STK")))
    assert result.lifecycles.height == 0 and dict(result.lifecycles.schema) == LIFECYCLE_COLUMNS
    assert result.gaps.height == 0 and dict(result.gaps.schema) == GAP_COLUMNS


# --- the vectorized matcher against a plain FIFO loop ------------------------------------------


def reference_fifo(rows: list[dict]) -> tuple[dict, dict]:
    """Contracts and gross P&L per (opening order, exit type), and gap contracts per exec id,
    by the obvious loop over each contract's executions in time order."""
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        by_key[(row["account"], row["underlying"], row["put_call"], row["strike"], row["expiry"])].append(row)
    totals: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0])
    gaps: dict[str, int] = defaultdict(int)
    for executions in by_key.values():
        executions.sort(key=lambda r: (r["date_time_utc"], r["position"]))
        lots = {"short": deque(), "long": deque()}
        position = 0
        for row in executions:
            contracts = int(abs(row["quantity"]))
            signed = contracts if row["buy_sell"] == "BUY" else -contracts
            if row["open_close"] == "C" or (row["open_close"] is None and row["event"] != "trade"):
                closes = contracts
            elif row["open_close"] == "O":
                closes = 0
            else:
                closes = min(contracts, abs(position)) if position * signed < 0 else 0
            position += signed
            closing_side = "short" if row["buy_sell"] == "BUY" else "long"
            remaining = closes
            while remaining and lots[closing_side]:
                lot = lots[closing_side][0]
                taken = min(remaining, lot["left"])
                lot["left"] -= taken
                remaining -= taken
                exit_type = row["event"] if row["event"] != "trade" else ("btc" if closing_side == "short" else "stc")
                direction = -1 if closing_side == "short" else 1
                total = totals[(lot["unit"], exit_type)]
                total[0] += taken
                total[1] += direction * (row["price"] - lot["price"]) * taken * lot["multiplier"]
                if lot["left"] == 0:
                    lots[closing_side].popleft()
            if remaining:
                gaps[row["exec_id"]] += remaining
            opens = contracts - closes
            if opens:
                side = "short" if row["buy_sell"] == "SELL" else "long"
                unit = f"{row['account']}|{row['underlying']}|{row['put_call']}|{row['strike']}|{side}|{row['order_id']}"
                lots[side].append({"left": opens, "price": row["price"], "multiplier": row["multiplier"], "unit": unit})
        for side, queue in lots.items():
            for lot in queue:
                totals[(lot["unit"], "open")][0] += lot["left"]
    return dict(totals), dict(gaps)


history = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.integers(1, 5),  # contracts
        st.sampled_from([0.0, 0.5, 1.0, 1.75]),  # price
        st.sampled_from(["O", "C", None]),
        st.sampled_from(["trade", "trade", "trade", "expiration", "assignment"]),
        st.integers(0, 3),  # minute: several executions share a time
        st.sampled_from([100.0, 105.0]),  # strike: two contracts
        st.sampled_from(["A", "B", "C", None]),  # order id (None: one per execution)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history)
def test_matcher_agrees_with_a_plain_fifo_loop(steps):
    rows = []
    for position, (side, contracts, price, open_close, event, minute, strike, order) in enumerate(steps):
        row = execution(f"e{position}", side, contracts, price, minutes=minute, open_close=open_close,
                        event=event, strike=strike, order_id=f"{order}{strike}" if order else f"solo{position}")
        row["position"] = position
        rows.append(row)
    expected_totals, expected_gaps = reference_fifo([dict(r) for r in rows])
    result = match_lifecycles(frame(*[{k: v for k, v in r.items() if k != "position"} for r in rows]))

    unit = pl.concat_str(
        [pl.col("account"), pl.col("underlying"), pl.col("right"), pl.col("strike"), pl.col("side")], separator="|"
    )
    ids = {r["exec_id"]: r["order_id"] for r in rows}
    got: dict[tuple, list[float]] = {}
    for life in result.lifecycles.with_columns(unit.alias("unit")).iter_rows(named=True):
        key = (f"{life['unit']}|{ids[life['open_exec_ids'][0]]}", life["exit_type"])
        assert key not in got
        got[key] = [life["quantity"], life["gross_pnl"] or 0.0]
    assert set(got) == set(expected_totals)
    for key, (contracts, pnl) in expected_totals.items():
        assert got[key][0] == contracts
        assert got[key][1] == pytest.approx(pnl if key[1] != "open" else 0.0, abs=1e-6)
    got_gaps: dict[str, int] = defaultdict(int)
    for gap in result.gaps.iter_rows(named=True):
        got_gaps[gap["exec_id"]] += gap["quantity"]
    assert dict(got_gaps) == expected_gaps


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history)
def test_matcher_agrees_with_a_plain_fifo_loop_on_numeric_order_ids(steps):
    """IBKR's order ids are numbers: the matcher codes them by their number, which must
    keep the same openings together (and apart) as the texts do."""
    rows = []
    for position, (side, contracts, price, open_close, event, minute, strike, order) in enumerate(steps):
        order_id = f"{'ABC'.index(order) + 1}{int(strike)}" if order else str(900 + position)
        row = execution(f"e{position}", side, contracts, price, minutes=minute, open_close=open_close,
                        event=event, strike=strike, order_id=order_id)
        row["position"] = position
        rows.append(row)
    expected_totals, expected_gaps = reference_fifo([dict(r) for r in rows])
    result = match_lifecycles(frame(*[{k: v for k, v in r.items() if k != "position"} for r in rows]))
    side_of = {"short": "SELL", "long": "BUY"}
    ids = {r["exec_id"]: r["order_id"] for r in rows}
    got = {}
    for life in result.lifecycles.iter_rows(named=True):
        unit = f"U1|XYZ|P|{life['strike']}|{life['side']}|{ids[life['open_exec_ids'][0]]}"
        got[(unit, life["exit_type"])] = life["quantity"]
        assert side_of[life["side"]]  # a known side
    assert got == {key: contracts for key, (contracts, _) in expected_totals.items()}
    assert {g["exec_id"]: g["quantity"] for g in result.gaps.iter_rows(named=True)} == expected_gaps


def test_order_ids_are_compared_as_texts_even_when_they_are_numbers():
    # "11" and "011" are two orders (IBKR never writes a leading zero, but a file might):
    # their fills are two openings, while the two fills of "11" are one.
    def lifecycles(order_ids: tuple[str, str, str]) -> list[tuple[list[str], int, float]]:
        rows = frame(
            execution("s1", "SELL", 1, 1.00, open_close="O", order_id=order_ids[0]),
            execution("s2", "SELL", 1, 1.20, minutes=1, open_close="O", order_id=order_ids[1]),
            execution("s3", "SELL", 2, 1.50, minutes=2, open_close="O", order_id=order_ids[2]),
            execution("b1", "BUY", 4, 0.50, minutes=60, open_close="C", order_id="99"),
        )
        found = match_lifecycles(rows).lifecycles.sort("open_date", "lifecycle_id")
        return [(life["open_exec_ids"], life["quantity"], life["confidence"]) for life in found.iter_rows(named=True)]

    # The first two fills are one order: one opening of 2 contracts; s3 another of 2.
    assert lifecycles(("11", "11", "12")) == [(["s1", "s2"], 2, 1.0), (["s3"], 2, 1.0)]
    assert lifecycles(("11", "011", "12")) == [(["s1"], 1, 1.0), (["s2"], 1, 1.0), (["s3"], 2, 1.0)]
    assert lifecycles(("A", "A", "B")) == [(["s1", "s2"], 2, 1.0), (["s3"], 2, 1.0)]


def test_an_opening_closed_in_parts_by_several_orders_lists_each_execution_once():
    rows = frame(
        execution("s1", "SELL", 2, 1.00, open_close="O", order_id="5"),
        execution("s2", "SELL", 2, 1.30, minutes=1, open_close="O", order_id="5"),
        execution("b1", "BUY", 1, 0.40, minutes=30, open_close="C", order_id="6"),
        execution("b2", "BUY", 2, 0.60, minutes=40, open_close="C", order_id="7"),
        execution("x1", "BUY", 1, 0.0, minutes=90, open_close="C", event="expiration", order_id=None),
    )
    found = match_lifecycles(rows).lifecycles
    btc = only(found, exit_type="btc")
    # s1 (2 @ 1.00) closed by b1 (1) and b2 (1); s2 (2 @ 1.30): 1 by b2, 1 expires.
    assert btc["open_exec_ids"] == ["s1", "s2"] and btc["close_exec_ids"] == ["b1", "b2"]
    assert btc["quantity"] == 3
    assert btc["open_price"] == pytest.approx((1.00 * 2 + 1.30) / 3)
    assert btc["close_price"] == pytest.approx((0.40 + 0.60 * 2) / 3)
    assert btc["gross_pnl"] == pytest.approx((1.00 - 0.40) * 100 + (1.00 - 0.60) * 100 + (1.30 - 0.60) * 100)
    assert btc["confidence"] == 0.9  # two closing orders, and only part of the opening
    expired = only(found, exit_type="expiration")
    assert expired["open_exec_ids"] == ["s2"] and expired["close_exec_ids"] == ["x1"]
    assert expired["quantity"] == 1 and expired["gross_pnl"] == pytest.approx(130.0)
    assert expired["lifecycle_id"] == "s2:expiration"  # named by its own first opening execution
    assert btc["lifecycle_id"] == "s1:btc"


def reference_links(rows: list[dict]) -> list[tuple[bool, str | None, str | None]]:
    """(cancelled, cancels_exec_id, cancelled_by_exec_id) per row, by the obvious loop."""
    result = [[bool(r["is_cancellation"]), None, None] for r in rows]
    for position, row in enumerate(rows):
        if not row["is_cancellation"] or row["orig_trade_id"] is None:
            continue
        for before in range(position):
            other = rows[before]
            if (not other["is_cancellation"] and not result[before][0] and other["account"] == row["account"]
                    and other["trade_id"] == row["orig_trade_id"]):
                result[before] = [True, None, row["exec_id"]]
                result[position][1] = other["exec_id"]
                break
    return [tuple(r) for r in result]


links_history = st.lists(
    st.tuples(
        st.booleans(),  # a cancellation
        st.sampled_from(["T1", "T2", "T3"]),  # trade id (of the original, for a cancellation)
        st.sampled_from(["U1", "U2", None]),  # account
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=150, deadline=None)
@given(links_history)
def test_link_cancellations_agrees_with_a_plain_loop(steps):
    """Each cancellation cancels the earliest execution before it, not yet cancelled, with
    its original's trade id in its account; otherwise nothing (whatever the order)."""
    rows = []
    for position, (is_cancellation, trade_id, account) in enumerate(steps):
        row = execution(f"e{position}", "SELL", 1, 1.0, account=account, is_cancellation=is_cancellation,
                        trade_id=trade_id, orig_trade_id=trade_id if is_cancellation else None)
        if is_cancellation:
            row["trade_id"] = None
        rows.append(row)
    linked = link_cancellations(frame(*rows))
    got = list(zip(linked["cancelled"], linked["cancels_exec_id"], linked["cancelled_by_exec_id"], strict=True))
    assert got == reference_links(rows)
