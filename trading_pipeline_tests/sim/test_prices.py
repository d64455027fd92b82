"""Contract under test: trading_pipeline.sim.prices.load_prices (the --prices-from files).

Three formats told apart by the header: a Barchart main-view export (each symbol's
Price~), a symbol,price CSV, daily bars (date, open, high, low, close[, volume][, symbol],
any case, symbol otherwise from the file name's prefix). Symbols come back in TWS
spelling. A file that cannot be used raises InputFileError naming the file, the row and
the column. Real sample files are read from ../shared/data when present.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from trading_pipeline.errors import InputFileError
from trading_pipeline.sim.prices import load_prices
from trading_pipeline.sim.types import Bar

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
BUNDLED_EXPORT = PROJECT_ROOT / "trading_pipeline" / "sample_data" / "barchart_sample_mainview.csv"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        load_prices(path)
    assert caught.value.file == str(path)
    return caught.value


# ----- symbol,price -----


def test_symbol_price_csv(tmp_path):
    path = write(tmp_path, "prices.csv", "Symbol,Price,Note\nAAPL,230.50,x\n\nbrk.b,495\n$SPX,6650.25,\n^VIX,17.1,\n")
    prices, bars = load_prices(path)
    assert prices == {"AAPL": 230.5, "BRK B": 495.0, "SPX": 6650.25, "VIX": 17.1}
    assert bars == {}


@pytest.mark.parametrize(
    ("text", "row", "column", "reason"),
    [
        ("symbol,price\nAAPL,abc\n", 2, "price", "not a number"),
        ("symbol,price\nAAPL,-1\n", 2, "price", "positive"),
        ("symbol,price\nAAPL,0\n", 2, "price", "positive"),
        ("symbol,price\nAAPL,nan\n", 2, "price", "positive"),
        ("symbol,price\nAAPL,1\nMSFT,2\naapl,3\n", 4, "symbol", "listed twice (first on row 2)"),
        ("symbol,price\n!!,3\n", 2, "symbol", "not a ticker"),
        ("symbol,price\nAAPL\n", 2, "price", "has 1 fields"),
        ("symbol,note,price\nAAPL,x\n", 2, "price", "has 2 fields"),
    ],
)
def test_symbol_price_csv_refusals(tmp_path, text, row, column, reason):
    error = refusal(write(tmp_path, "prices.csv", text))
    assert (error.row, error.column) == (row, column)
    assert reason in error.reason


@pytest.mark.parametrize(
    ("content", "reason", "row"),
    [
        ("", "file is empty", None),
        ("\n \n", "file is empty", None),
        ("symbol,price\n", "no data rows", None),
        ("ticker,last\nAAPL,1\n", "not a price file", 1),
        (b"\x00\x01binary", "binary", None),
        (b"symbol,price\nAAPL,1\nCAF\xe9,2\n", "not UTF-8", 3),
    ],
)
def test_unusable_files(tmp_path, content, reason, row):
    error = refusal(write(tmp_path, "prices.csv", content))
    assert reason in error.reason and error.row == row


def test_missing_file(tmp_path):
    assert "not found" in refusal(tmp_path / "absent.csv").reason
    assert "folder" in refusal(tmp_path).reason


# ----- daily bars -----


def test_daily_bars_with_a_symbol_column(tmp_path):
    path = write(
        tmp_path,
        "bars.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume,Symbol\n"
        "2019-01-03,10,12,9,11,10.5,1500,XYZ\n"
        "2019-01-02,20,21,19,20.5,20,250,abc\n"
        "2019-01-02,10,11,9.5,10.5,10,1000,XYZ\n",
    )
    prices, bars = load_prices(path)
    assert prices == {}
    assert bars == {
        "XYZ": [
            Bar(day=date(2019, 1, 2), open=10, high=11, low=9.5, close=10.5, volume=1000, wap=31 / 3, bar_count=10),
            Bar(day=date(2019, 1, 3), open=10, high=12, low=9, close=11, volume=1500, wap=32 / 3, bar_count=15),
        ],
        "ABC": [Bar(day=date(2019, 1, 2), open=20, high=21, low=19, close=20.5, volume=250, wap=60.5 / 3, bar_count=2)],
    }


def test_daily_bars_symbol_from_the_file_name_and_us_dates(tmp_path):
    path = write(tmp_path, "spy_daily_2019.csv", "DATE,OPEN,HIGH,LOW,CLOSE\n01/03/2019,2,3,1,2.5\n1/2/2019,2,2,2,2\n")
    _, bars = load_prices(path)
    assert list(bars) == ["SPY"]
    assert [bar.day for bar in bars["SPY"]] == [date(2019, 1, 2), date(2019, 1, 3)]
    assert bars["SPY"][0].volume == 0


def test_iso_dates_with_a_time_part(tmp_path):
    path = write(tmp_path, "QQQ.csv", "date,open,high,low,close\n2019-01-02 00:00:00-05:00,1,1,1,1\n")
    assert load_prices(path)[1]["QQQ"][0].day == date(2019, 1, 2)


def test_bars_outside_their_range_are_widened(tmp_path):
    # CBOE's VIX history has such rows: an open above the high.
    path = write(tmp_path, "VIX_History.csv", "DATE,OPEN,HIGH,LOW,CLOSE\n02/11/1992,19.24,18.57,17.61,17.70\n")
    (bar,) = load_prices(path)[1]["VIX"]
    assert (bar.open, bar.high, bar.low, bar.close) == (19.24, 19.24, 17.61, 17.70)


@pytest.mark.parametrize(
    ("text", "row", "column", "reason"),
    [
        ("date,open,high,low,close\n2019-13-02,1,1,1,1\n", 2, "date", "not a date"),
        ("date,open,high,low,close\n2019-01-02,1,1,1,1\nyesterday,1,1,1,1\n", 3, "date", "not a date"),
        ("date,open,high,low,close\n2019-01-02,1,0.5,0.9,1\n", 2, "high", "below the low"),
        ("date,open,high,low,close\n2019-01-02,x,1,1,1\n", 2, "open", "not a number"),
        ("date,open,high,low,close,volume\n2019-01-02,1,1,1,1,-5\n", 2, "volume", "volume"),
        ("date,open,high,low,close\n2019-01-02,1,1,1,1\n2019-01-02,1,1,1,1\n", 3, "date", "two bars for 2019-01-02"),
        ("date,open,high,low,close\n2019-01-02,1,1\n", 2, "low", "has 3 fields"),
    ],
)
def test_daily_bars_refusals(tmp_path, text, row, column, reason):
    error = refusal(write(tmp_path, "SPY_bad.csv", text))
    assert (error.row, error.column) == (row, column)
    assert reason in error.reason


def test_daily_bars_need_a_symbol(tmp_path):
    error = refusal(write(tmp_path, "!!.csv", "date,open,high,low,close\n2019-01-02,1,1,1,1\n"))
    assert "symbol" in error.reason


# ----- Barchart exports -----


def test_bundled_barchart_export_gives_each_symbols_price():
    prices, bars = load_prices(BUNDLED_EXPORT)
    assert bars == {}
    assert len(prices) == 20
    # the sample's first rows: AAPL at 229.59, XOM (last row) at 115.27
    assert prices["AAPL"] == 229.59 and prices["XOM"] == 115.27


def test_barchart_export_problems_are_the_readers(tmp_path):
    header = (
        'Symbol,Price~,"Exp Date",DTE,Strike,Type,Moneyness,Bid,"BE (Bid)","%BE (Bid)",Volume,'
        '"Open Int","IV Rank",Delta,Return,"Ann Rtn","Profit Prob"\n'
    )
    error = refusal(write(tmp_path, "export.csv", header))
    assert "no data rows" in error.reason


# ----- real sample files -----


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared sample data not present at {path}")
    return path


@pytest.mark.shared_data
def test_real_barchart_main_view():
    prices, _ = load_prices(shared("barchart", "naked-put-option-screener-csp-stock-etf-08-28-2025_mainview.csv"))
    assert len(prices) == 20
    assert prices["AAPL"] == 230.49 and prices["SPY"] == 646.63 and prices["GLD"] == 312.71


@pytest.mark.shared_data
def test_real_custom_view_is_refused():
    error = refusal(shared("barchart", "naked-put-option-screener-csp-stock-etf-08-29-2025_customview.csv"))
    assert error.reason


@pytest.mark.shared_data
def test_real_yfinance_daily_bars():
    _, bars = load_prices(shared("prices", "SPY_daily_2019_yfinance.csv"))
    spy = bars["SPY"]
    assert len(spy) == 252
    first = spy[0]
    assert first.day == date(2019, 1, 2) and first.open == 245.97999572753906 and first.close == 250.17999267578125
    assert first.volume == 126925200 and spy[-1].day == date(2019, 12, 31)


@pytest.mark.shared_data
def test_real_cboe_vix_history():
    _, bars = load_prices(shared("prices", "VIX_History_cboe_1990-2026.csv"))
    vix = bars["VIX"]
    assert len(vix) == 9223
    assert vix[0].day == date(1990, 1, 2) and vix[0].close == 17.24
    assert all(bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close) for bar in vix)
