"""Contract under test: trading_pipeline.sim.universe.

The default universe holds the S&P 500 members (GICS sectors), the popular optionable ETFs
(sector "ETF") and the indices SPX, XSP, VIX, NDX, RUT (IND on CBOE), each with a
plausible price and volatility; conIds are the known real ones for AAPL, SPY and SPX and a
stable crc32 hash otherwise, all distinct; symbols are looked up in TWS spelling whatever
the form given; a symbol -> sector map is available.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from trading_pipeline.sim.types import SecType
from trading_pipeline.sim.universe import (
    DEFAULT_UNIVERSE,
    GICS_SECTORS,
    SECTOR_BY_SYMBOL,
    SP500_SYMBOLS,
    Universe,
    con_id_for,
    normalize_symbol,
)

BRIEF_ETFS = (
    "SPY QQQ IWM DIA GLD SLV TLT SMH XLE XLF XLK XLV XLY XLP XLI XLU XLB XLRE XLC EEM EFA HYG LQD USO KRE XBI GDX ARKK"
).split()


def test_sp500_members_cover_every_gics_sector():
    assert 495 <= len(SP500_SYMBOLS) <= 510
    sectors = {DEFAULT_UNIVERSE.get(symbol).sector for symbol in SP500_SYMBOLS}
    assert sectors == set(GICS_SECTORS.values())
    for symbol in ("AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "BRK B", "GOOGL", "GOOG", "NEE", "PLD"):
        assert symbol in SP500_SYMBOLS
    assert all(DEFAULT_UNIVERSE.get(s).sec_type is SecType.STK for s in SP500_SYMBOLS)


def test_brief_etfs_are_etfs_and_indices_are_cboe_indices():
    for symbol in BRIEF_ETFS:
        underlying = DEFAULT_UNIVERSE.get(symbol)
        assert underlying is not None, symbol
        assert underlying.sector == "ETF" and underlying.sec_type is SecType.STK and underlying.is_etf
    for symbol in ("SPX", "XSP", "VIX", "NDX", "RUT"):
        underlying = DEFAULT_UNIVERSE.get(symbol)
        assert underlying.sec_type is SecType.IND and underlying.is_index
        assert underlying.primary_exchange == "CBOE" and underlying.sector == "Index"


def test_known_con_ids_and_stable_hashed_ones():
    assert DEFAULT_UNIVERSE.get("AAPL").con_id == 265598
    assert DEFAULT_UNIVERSE.get("SPY").con_id == 756733
    assert DEFAULT_UNIVERSE.get("SPX").con_id == 416904
    # 10_000_000 + crc32(b"MSFT") % 890_000_000; crc32 is a fixed standard, so this value
    # is the same on every run and Python version.
    assert con_id_for("MSFT") == 424476411
    assert DEFAULT_UNIVERSE.get("MSFT").con_id == 424476411
    assert con_id_for("brk.b") == con_id_for("BRK B")


def test_con_ids_are_distinct_and_in_their_ranges():
    con_ids = [underlying.con_id for underlying in DEFAULT_UNIVERSE]
    assert len(set(con_ids)) == len(con_ids) == len(DEFAULT_UNIVERSE)
    for underlying in DEFAULT_UNIVERSE:
        if underlying.symbol not in ("AAPL", "SPY", "SPX"):
            assert 10_000_000 <= underlying.con_id < 900_000_000
    assert DEFAULT_UNIVERSE.by_con_id(265598).symbol == "AAPL"
    assert DEFAULT_UNIVERSE.by_con_id(1) is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [("brk.b", "BRK B"), ("BRK/B", "BRK B"), ("  brk   b ", "BRK B"), ("aapl", "AAPL"), ("BF.B", "BF B")],
)
def test_symbols_are_found_in_any_spelling(given, expected):
    assert normalize_symbol(given) == expected
    assert DEFAULT_UNIVERSE.get(given).symbol == expected
    assert given in DEFAULT_UNIVERSE


def test_unknown_symbols_are_none():
    assert DEFAULT_UNIVERSE.get("NOPE") is None
    assert "NOPE" not in DEFAULT_UNIVERSE


def test_sector_map():
    assert SECTOR_BY_SYMBOL["AAPL"] == "Information Technology"
    assert SECTOR_BY_SYMBOL["JPM"] == "Financials"
    assert SECTOR_BY_SYMBOL["XLE"] == "ETF"
    assert SECTOR_BY_SYMBOL["SPX"] == "Index"
    assert SECTOR_BY_SYMBOL == DEFAULT_UNIVERSE.sector_map()
    assert len(SECTOR_BY_SYMBOL) == len(DEFAULT_UNIVERSE)


def test_defaults_are_plausible():
    for underlying in DEFAULT_UNIVERSE:
        assert underlying.price > 0, underlying.symbol
        assert 0.05 <= underlying.annual_vol <= 1.5, underlying.symbol
        assert 0.0 <= underlying.dividend_yield < 0.15, underlying.symbol
        assert -1.0 <= underlying.market_correlation <= 1.0, underlying.symbol
        assert underlying.long_name, underlying.symbol
    assert DEFAULT_UNIVERSE.get("VIX").market_correlation < 0
    assert DEFAULT_UNIVERSE.get("AAPL").primary_exchange == "NASDAQ"
    assert DEFAULT_UNIVERSE.get("JPM").primary_exchange == "NYSE"


def test_with_prices_copies_with_new_defaults():
    updated = DEFAULT_UNIVERSE.with_prices({"aapl": 123.45, "NOPE": 1.0})
    assert updated.get("AAPL").price == 123.45
    assert DEFAULT_UNIVERSE.get("AAPL").price != 123.45
    assert updated.get("MSFT") == DEFAULT_UNIVERSE.get("MSFT")
    assert "NOPE" not in updated


def test_a_universe_refuses_duplicates_and_bad_values():
    aapl = DEFAULT_UNIVERSE.get("AAPL")
    with pytest.raises(ValueError, match="twice"):
        Universe([aapl, aapl])
    with pytest.raises(ValueError, match="conId"):
        Universe([aapl, replace(aapl, symbol="APPL")])
    with pytest.raises(ValueError, match="positive"):
        Universe([replace(aapl, price=0.0)])
    with pytest.raises(ValueError, match="spelling"):
        Universe([replace(aapl, symbol="brk.b")])
    small = Universe([aapl])
    assert small.symbols() == ["AAPL"] and len(small) == 1
