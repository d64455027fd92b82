"""Contract under test: trading_pipeline.sim.instruments.InstrumentCatalog.

Qualification as docs/tws-protocol.md section 6.2 describes: a conId wins (options decode
from it, expired ones included); otherwise every non-empty field must match (symbol,
secType, currency, localSymbol, tradingClass, expiry prefix YYYYMM/YYYYMMDD, strike as a
float, right C/CALL/P/PUT, multiplier); SPX on a third Friday is ambiguous between SPX and
SPXW unless a trading class is given. Also the listed chains (reqSecDefOptParams rows,
one expiry's options) and strikes that follow an attached reference price.

The catalog here has no market attached: strikes center on the universe's default prices
(SPX 6650, AAPL 268).
"""

from __future__ import annotations

from datetime import date

import pytest

from trading_pipeline.sim import chains
from trading_pipeline.sim.instruments import InstrumentCatalog
from trading_pipeline.sim.types import ContractQuery, SecType
from trading_pipeline.sim.universe import DEFAULT_UNIVERSE

MONDAY = date(2026, 11, 23)


@pytest.fixture(scope="module")
def catalog() -> InstrumentCatalog:
    return InstrumentCatalog(DEFAULT_UNIVERSE)


def match(catalog, **fields):
    return catalog.match(ContractQuery(**fields), MONDAY)


def test_underlyings(catalog):
    aapl = catalog.underlying("AAPL")
    assert (aapl.con_id, aapl.sec_type, aapl.exchange) == (265598, SecType.STK, "SMART")
    assert aapl.primary_exchange == "NASDAQ"
    assert aapl.trading_class == "NMS" and aapl.local_symbol == "AAPL" and aapl.expiry_text == ""
    assert catalog.underlying("JPM").trading_class == "JPM"
    spx = catalog.underlying("SPX")
    assert (spx.sec_type, spx.exchange, spx.primary_exchange) == (SecType.IND, "CBOE", "")
    assert catalog.underlying("brk.b").symbol == "BRK B"
    assert catalog.underlying("NOPE") is None


def test_stock_and_index_qualification(catalog):
    aapl = [catalog.underlying("AAPL")]
    assert match(catalog, symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD") == aapl
    # exchange and primary exchange are not matched (SMART, direct routes, ISLAND spellings)
    assert match(catalog, symbol="AAPL", sec_type="STK", exchange="ISLAND", primary_exchange="ISLAND") == [
        catalog.underlying("AAPL")
    ]
    assert match(catalog, symbol="SPX", sec_type="IND", exchange="CBOE") == [catalog.underlying("SPX")]
    assert match(catalog, symbol="BRK.B", sec_type="STK") == [catalog.underlying("BRK B")]
    assert match(catalog, symbol="AAPL", sec_type="STK", local_symbol="AAPL", trading_class="NMS") != []


@pytest.mark.parametrize(
    "fields",
    [
        {"symbol": "NOPE", "sec_type": "STK"},
        {"symbol": "AAPL", "sec_type": "STK", "currency": "EUR"},
        {"symbol": "AAPL", "sec_type": "FUT"},
        {"symbol": "AAPL", "sec_type": "IND"},
        {"symbol": "AAPL", "sec_type": "STK", "trading_class": "AAPL"},
        {"symbol": "AAPL", "sec_type": "STK", "local_symbol": "MSFT"},
        {"symbol": "AAPL", "sec_type": "STK", "multiplier": "100"},
        {},
    ],
)
def test_queries_that_match_nothing(catalog, fields):
    assert match(catalog, **fields) == []


def test_con_id_wins(catalog):
    assert match(catalog, con_id=265598) == [catalog.underlying("AAPL")]
    assert match(catalog, con_id=265598, symbol="MSFT", sec_type="OPT") == [catalog.underlying("AAPL")]
    assert match(catalog, con_id=12345) == []


def test_spx_on_a_third_friday_is_ambiguous_without_a_trading_class(catalog):
    third_friday_call = dict(symbol="SPX", sec_type="OPT", expiry_prefix="20261218", strike=6600.0, right="C")
    both = match(catalog, **third_friday_call, exchange="SMART")
    assert sorted(option.trading_class for option in both) == ["SPX", "SPXW"]
    (weekly,) = match(catalog, **third_friday_call, trading_class="SPXW")
    assert weekly.local_symbol == "SPXW  261218C06600000"
    assert (weekly.expiry, weekly.strike, weekly.right, weekly.multiplier) == (date(2026, 12, 18), 6600.0, "C", 100)
    assert weekly.underlying_con_id == 416904 and weekly.underlying_sec_type is SecType.IND
    # a weekly Friday has only the SPXW class
    (only,) = match(catalog, symbol="SPX", sec_type="OPT", expiry_prefix="20261211", strike=6600.0, right="C")
    assert only.trading_class == "SPXW"


@pytest.mark.parametrize("right", ["P", "PUT", "p", "put"])
def test_rights_in_any_spelling(catalog, right):
    (option,) = match(catalog, symbol="AAPL", sec_type="OPT", expiry_prefix="20261218", strike=250, right=right)
    assert option.right == "P" and option.local_symbol == "AAPL  261218P00250000"


def test_expiry_prefix_yyyymm_lists_the_month(catalog):
    found = match(
        catalog, symbol="SPX", sec_type="OPT", expiry_prefix="202612", strike=6600, right="C", trading_class="SPXW"
    )
    # dailies to Dec 7, then the Fridays (Christmas and New Year moved to Thursday)
    assert sorted(option.expiry.day for option in found) == [1, 2, 3, 4, 7, 11, 18, 24, 31]


@pytest.mark.parametrize(
    "fields",
    [
        {"strike": 6601.0},  # not on the 5-point grid
        {"strike": 6600.25},  # not on a tenth
        {"strike": 1000.0},  # below today's range
        {"expiry_prefix": "20261217"},  # not an SPX expiry
        {"expiry_prefix": "2026-12"},  # not YYYYMM
        {"right": "X"},
        {"multiplier": "10"},
        {"trading_class": "XSP"},
    ],
)
def test_option_fields_that_match_nothing(catalog, fields):
    query = {"symbol": "SPX", "sec_type": "OPT", "expiry_prefix": "20261218", "strike": 6600.0, "right": "C"}
    query.update(fields)
    assert match(catalog, **query) == []


def test_local_symbol_alone_identifies_an_option(catalog):
    (option,) = match(catalog, sec_type="OPT", local_symbol="SPXW  261218C06600000")
    assert option.trading_class == "SPXW" and option.strike == 6600.0
    assert match(catalog, local_symbol="SPXW 261218C06600000") == [option]  # padding differs
    assert match(catalog, sec_type="OPT", local_symbol="SPXW  261218C06600000", multiplier="100.0") == [option]


def test_by_con_id_decodes_options_of_any_day(catalog):
    listed = catalog.options("AAPL", date(2026, 12, 18), MONDAY)
    assert all(catalog.by_con_id(option.con_id) == option for option in listed[:10])
    aapl = DEFAULT_UNIVERSE.get("AAPL")
    ordinal = DEFAULT_UNIVERSE.symbols().index("AAPL") + 1
    old_key = chains.OptionKey(ordinal, 0, date(2025, 12, 19), "P", 2300)
    expired = catalog.by_con_id(chains.encode_option_con_id(old_key))
    assert expired.expiry == date(2025, 12, 19) and expired.strike == 230.0 and expired.right == "P"
    assert expired.symbol == "AAPL" and expired.underlying_con_id == aapl.con_id
    # well-formed but never listed: AAPL has no Tuesday expiries, 212.5 is off the grid above 200
    def decoded(class_index, expiry, strike_tenths):
        key = chains.OptionKey(ordinal, class_index, expiry, "P", strike_tenths)
        return catalog.by_con_id(chains.encode_option_con_id(key))

    assert decoded(0, date(2026, 12, 18), 2300) is not None
    assert decoded(0, date(2026, 11, 24), 2300) is None
    assert decoded(0, date(2026, 12, 18), 2125) is None
    assert decoded(1, date(2026, 12, 18), 2300) is None  # AAPL has one trading class


def test_option_parameters(catalog):
    rows = catalog.option_parameters("SPX", MONDAY)
    assert [(row.exchange, row.trading_class) for row in rows] == [
        ("SMART", "SPX"), ("SMART", "SPXW"), ("CBOE", "SPX"), ("CBOE", "SPXW"),
    ]  # fmt: skip
    spxw = rows[1]
    assert spxw.underlying_con_id == 416904 and spxw.multiplier == 100
    assert spxw.expirations[0] == "20261123" and list(spxw.expirations) == sorted(spxw.expirations)
    assert spxw.strikes[0] == 3325.0 and spxw.strikes[-1] == 8645.0 and 6650.0 in spxw.strikes
    assert catalog.option_parameters("NOPE", MONDAY) == []


def test_options_of_one_expiry(catalog):
    options = catalog.options("AAPL", date(2026, 12, 18), MONDAY)
    strikes = chains.strike_ladder("AAPL", 268.0)
    assert len(options) == 2 * len(strikes)
    assert [(o.strike, o.right) for o in options[:3]] == [(strikes[0], "C"), (strikes[0], "P"), (strikes[1], "C")]
    assert {o.expiry for o in options} == {date(2026, 12, 18)}
    spx = catalog.options("SPX", date(2026, 12, 18), MONDAY, trading_class="SPX")
    assert {o.trading_class for o in spx} == {"SPX"}
    assert catalog.options("AAPL", date(2026, 12, 17), MONDAY) == []
    assert catalog.expirations("SPX", MONDAY, "SPX")[0] == date(2026, 12, 18)


def test_strikes_follow_an_attached_reference_price():
    catalog = InstrumentCatalog(DEFAULT_UNIVERSE)
    catalog.attach_reference_prices(lambda symbol, day: 100.0)
    strikes = catalog.option_parameters("AAPL", MONDAY)[0].strikes
    assert strikes[0] == 50.0 and strikes[-1] == 130.0
