"""ingest.earnings: the user's earnings calendar CSV (symbol, date, timing BMO|AMC|unknown).

The contract: days to the next earnings on or after a day, with its timing; no file means
unknown (None), never an error; a malformed file is refused whole with an InputFileError
naming the file, the row, the column and the reason; the path comes from
TP_EARNINGS_CALENDAR, else the project's data folder.
"""

from datetime import date

import pytest

from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest.earnings import earnings_calendar_path, load_earnings_calendar

# ##### TESTS


def test_days_to_the_next_earnings_and_timing(tmp_path):
    path = tmp_path / "earnings.csv"
    path.write_text("Symbol, Date ,Timing,notes\n"
                    "aapl,2026-10-29,AMC,last quarter\n"
                    "AAPL,2027-01-28,amc,\n"
                    "JPM,2027-01-14,BMO,\n"
                    "\n"
                    "XYZ,2026-12-01,,\n", encoding="utf-8")
    calendar = load_earnings_calendar(path)
    assert calendar.present and calendar.source == str(path)
    assert calendar.days_to_earnings("AAPL", date(2026, 11, 23)) == 66
    assert calendar.next_earnings("aapl", date(2026, 11, 23)).timing == "AMC"
    assert calendar.days_to_earnings("JPM", date(2027, 1, 14)) == 0  # reporting that very day
    assert calendar.next_earnings("XYZ", date(2026, 11, 23)).timing == "unknown"
    assert calendar.days_to_earnings("XYZ", date(2026, 12, 2)) is None  # its only date has passed
    assert calendar.days_to_earnings("MSFT", date(2026, 11, 23)) is None  # not in the file


def test_no_file_means_unknown_not_an_error(tmp_path):
    calendar = load_earnings_calendar(tmp_path / "missing.csv")
    assert not calendar.present
    assert calendar.days_to_earnings("AAPL", date(2026, 11, 23)) is None


def test_the_path_comes_from_the_environment_else_the_data_folder(isolated_home, monkeypatch, tmp_path):
    assert earnings_calendar_path() == isolated_home / "data" / "earnings_calendar.csv"
    monkeypatch.setenv("TP_EARNINGS_CALENDAR", str(tmp_path / "mine.csv"))
    assert earnings_calendar_path() == tmp_path / "mine.csv"
    (tmp_path / "mine.csv").write_text("symbol,date\nAAPL,2027-01-28\n", encoding="utf-8")
    assert load_earnings_calendar().days_to_earnings("AAPL", date(2027, 1, 27)) == 1


@pytest.mark.parametrize(("text", "row", "column", "reason"), [
    ("ticker,date\nAAPL,2027-01-28\n", 1, "symbol", "no 'symbol' column"),
    ("symbol,when\nAAPL,2027-01-28\n", 1, "date", "no 'date' column"),
    ("symbol,date,timing\nAAPL,2027-01-28,AMC\nMSFT,28/01/2027,AMC\n", 3, "date", "not a date"),
    ("symbol,date,timing\nAAPL,2027-01-28,after close\n", 2, "timing", "BMO, AMC or unknown"),
    ("symbol,date\n ,2027-01-28\n", 2, "symbol", "symbol is empty"),
    ("", 1, None, "empty"),
])
def test_a_malformed_file_is_refused_with_row_column_and_reason(tmp_path, text, row, column, reason):
    path = tmp_path / "earnings.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputFileError) as refused:
        load_earnings_calendar(path)
    assert refused.value.file == str(path) and refused.value.row == row and refused.value.column == column
    assert reason in refused.value.reason


def test_a_binary_file_is_refused(tmp_path):
    path = tmp_path / "earnings.csv"
    path.write_bytes(b"\xff\xfe\x00s\x00y")
    with pytest.raises(InputFileError, match="not UTF-8"):
        load_earnings_calendar(path)
