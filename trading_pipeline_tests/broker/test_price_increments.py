"""Contract: ``BrokerPort.price_increments`` on the IBKR adapter, and error 110 through it.

Against the simulated TWS (``sim_gateway``: seed 7, Monday 2026-11-23 10:00 New York):

- each contract's grid is its market rule (contract details' marketRuleIds -> reqMarketRule):
  a penny-program put (MMM) 0.01 below $3 / 0.05 above, an all-penny put (AAPL) 0.01, an SPXW
  put 0.05 / 0.10, a stock 0.01; in order, one answer per contract;
- a contract TWS gives no details for gets the fallback grid (0.05 / 0.10) with the reason,
  without spoiling the others' answers;
- the rule of a contract is the primary exchange's when listed, else the first listed one's;
- an order or a modification off the grid is refused as ``OrderRejected`` with code 110 (TWS's
  "minimum price variation"); a refused modification leaves the order working at its price,
  and a later modification on the grid goes through.
"""

from __future__ import annotations

from datetime import date

import pytest

from trading_pipeline.broker.ibkr import choose_market_rule_id
from trading_pipeline.broker.port import Contract, ContractSpec, OrderRejected, OrderRequest, SecType
from trading_pipeline.core.pricing import FALLBACK_OPTION_INCREMENTS, NICKEL_DIME, PENNY_EVERYWHERE, PENNY_PROGRAM

DEC18 = date(2026, 12, 18)


def test_the_rule_of_the_primary_exchange_else_the_first_listed():
    assert choose_market_rule_id("26,26", "SMART,NASDAQ", "NASDAQ") == 26
    assert choose_market_rule_id("239,26,67", "SMART,NYSE,ARCA", "NYSE") == 26
    assert choose_market_rule_id("32,109,109", "SMART,AMEX,CBOE", "") == 32      # options: no primary
    assert choose_market_rule_id("32,109", "SMART,AMEX,CBOE", "CBOE") == 32      # lists not aligned
    assert choose_market_rule_id("", "SMART", "") is None
    assert choose_market_rule_id("x,1", "SMART,CBOE", "") is None


def mmm_put_above_three_dollars(broker) -> tuple[Contract, float, float]:
    """The MMM December put with the lowest bid at or above $3 (penny program: 0.05 there)."""
    [stock] = broker.qualify(ContractSpec.stock("MMM"))
    price = broker.quotes([stock])[0].price
    puts = broker.strikes_near("MMM", DEC18, price, count=10, side="below")
    quotes = broker.quotes(puts)
    quote = min((q for q in quotes if q.bid and q.bid >= 3.0), key=lambda q: q.bid)
    return quote.contract, quote.bid, quote.ask


def test_each_contract_gets_its_market_rule(broker):
    mmm_put, _, _ = mmm_put_above_three_dollars(broker)
    [aapl_put, spxw_put, aapl] = broker.qualify(
        ContractSpec.option("AAPL", DEC18, 220.0, "P"),
        ContractSpec.option("SPX", DEC18, 6000.0, "P", trading_class="SPXW"),
        ContractSpec.stock("AAPL"))
    grids = broker.price_increments([mmm_put, aapl_put, spxw_put, aapl, mmm_put])
    assert grids == [PENNY_PROGRAM, PENNY_EVERYWHERE, NICKEL_DIME, PENNY_EVERYWHERE, PENNY_PROGRAM]
    assert [grid.source for grid in grids] == ["market rule 33", "market rule 32", "market rule 35",
                                               "market rule 26", "market rule 33"]
    assert broker.price_increments([]) == []


def test_what_the_broker_cannot_answer_gets_the_fallback_grid(broker):
    [aapl_put] = broker.qualify(ContractSpec.option("AAPL", DEC18, 220.0, "P"))
    unknown = Contract(con_id=987654321, symbol="ZZZZ", sec_type=SecType.OPTION, expiry=DEC18, strike=10.0,
                       right="P", multiplier=100)
    fallback, known = broker.price_increments([unknown, aapl_put])
    assert fallback == FALLBACK_OPTION_INCREMENTS == NICKEL_DIME
    assert fallback.source.startswith("fallback (") and "ZZZZ" in fallback.source
    assert known == PENNY_EVERYWHERE and known.source == "market rule 32"


def test_off_grid_orders_and_modifications_are_refused_with_110(sim_gateway, broker):
    put, bid, ask = mmm_put_above_three_dollars(broker)
    high = round(ask + 1.00, 2)                     # above the ask on the 0.05 grid: it rests
    with pytest.raises(OrderRejected) as refused:
        broker.place_order(put, OrderRequest.limit("SELL", 1, round(high + 0.02, 2)))
    assert refused.value.code == 110 and "minimum price variation" in str(refused.value)
    handle = broker.place_order(put, OrderRequest.limit("SELL", 1, high))
    with pytest.raises(OrderRejected) as refused:
        broker.modify_order(handle, round(high - 0.03, 2))
    assert refused.value.code == 110
    record = sim_gateway.call(sim_gateway.broker.order, 1, handle.order_id)
    assert record.request.lmt_price == high and record.status.value == "Submitted"
    moved = broker.modify_order(handle, round(high - 0.05, 2))
    assert moved.limit_price == pytest.approx(high - 0.05)
    assert sim_gateway.call(sim_gateway.broker.order, 1, handle.order_id).request.lmt_price == round(high - 0.05, 2)
    broker.cancel_order(handle)
