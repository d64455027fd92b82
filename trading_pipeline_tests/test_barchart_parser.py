"""Contract of the Barchart main-view parser (trading_pipeline.ingest.barchart).

A main-view export becomes the canonical candidate frame: Barchart's quirks undone (quoted
header names, footer, percent strings, positive put delta, inclusive DTE, rounded
Return), row-level problems kept in each row's ``error``, and files that cannot be used
refused with an InputFileError naming file, row, column and reason. Expectations are
computed by hand in the comments next to them. Also covers the pandera schema of valid
rows, the bundled generated sample, and the real samples in ../shared/data/barchart/.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import pandera.errors
import polars as pl
import pytest

from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest.barchart import (
    CANONICAL_COLUMNS,
    MAIN_VIEW_COLUMNS,
    BarchartExport,
    parse_main_view,
    read_main_view,
)
from trading_pipeline.ingest.barchart_sample import (
    SAMPLE_DOWNLOADED_AT,
    SAMPLE_EXPORT_DATE,
    SAMPLE_ROWS,
    SAMPLE_SEED,
    generate_main_view,
)
from trading_pipeline.ingest.schemas import BarchartCandidates
from trading_pipeline.settings import sample_export_path

SHARED_BARCHART = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "barchart"
REAL_MAIN_VIEW = SHARED_BARCHART / "naked-put-option-screener-csp-stock-etf-08-28-2025_mainview.csv"
REAL_CUSTOM_VIEW = SHARED_BARCHART / "naked-put-option-screener-csp-stock-etf-08-29-2025_customview.csv"

HEADER = (
    'Symbol,Price~,"Exp Date",DTE,Strike,Type,Moneyness,Bid,"BE (Bid)","%BE (Bid)",'
    'Volume,"Open Int","IV Rank",Delta,Return,"Ann Rtn","Profit Prob"'
)
FOOTER = '"Downloaded from Barchart.com as of 11-20-2026 03:45pm CST"'
EXPORT_DATE = date(2026, 11, 20)
FILE_DATE = date(2026, 11, 23)  # differs from the footer, to see which one was used

# A hand-made row: KO at 70.00, the 65 put expiring 2026-12-18 (28 days after the
# export date; Barchart prints 29), bid 0.50.
KO_CELLS = {
    "Symbol": "KO",
    "Price~": "70.00",
    "Exp Date": "2026-12-18",
    "DTE": "29",
    "Strike": "65.00",
    "Type": "Put",
    "Moneyness": "-7.14%",
    "Bid": "0.5",
    "BE (Bid)": "64.5",
    "%BE (Bid)": "-7.86%",
    "Volume": "150",
    "Open Int": "2500",
    "IV Rank": "30.00%",
    "Delta": "0.150000",
    "Return": "0.8%",
    "Ann Rtn": "10.1%",
    "Profit Prob": "85.00%",
}


def data_row(**changes: str) -> str:
    """The KO row with some cells changed; keyword names are the headers without spaces
    and symbols (Exp_Date -> "Exp Date", Price -> "Price~", BE_pct -> "%BE (Bid)")."""
    aliases = {
        "Price": "Price~",
        "Exp_Date": "Exp Date",
        "BE": "BE (Bid)",
        "BE_pct": "%BE (Bid)",
        "Open_Int": "Open Int",
        "IV_Rank": "IV Rank",
        "Ann_Rtn": "Ann Rtn",
        "Profit_Prob": "Profit Prob",
    }
    cells = dict(KO_CELLS)
    for key, value in changes.items():
        cells[aliases.get(key, key)] = value
    return ",".join(cells[name] for name in MAIN_VIEW_COLUMNS)


def export_bytes(*rows: str, header: str = HEADER, footer: str | None = FOOTER) -> bytes:
    lines = [header, *rows] + ([footer] if footer is not None else [])
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse(data: bytes) -> BarchartExport:
    return parse_main_view(data, source="screener.csv", file_date=FILE_DATE)


def refusal(data: bytes) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        parse(data)
    return caught.value


def only_row(export: BarchartExport) -> dict:
    assert export.row_count == 1
    return export.rows.row(0, named=True)


# --- a valid file ---------------------------------------------------------------------


def test_valid_row_becomes_the_canonical_frame_with_recomputed_fields():
    export = parse(export_bytes(data_row()))
    assert export.source == "screener.csv"
    assert export.export_date == EXPORT_DATE
    assert export.export_date_source == "footer"
    assert export.downloaded_at == "11-20-2026 03:45pm CST"
    assert dict(export.rows.schema) == CANONICAL_COLUMNS

    row = only_row(export)
    assert row["row"] == 2  # the header is line 1
    assert row["symbol"] == "KO"
    assert row["underlying_price"] == 70.0
    assert row["expiration"] == date(2026, 12, 18)
    assert row["dte_reported"] == 29
    assert row["dte"] == 28  # 2026-11-20 -> 2026-12-18
    assert row["strike"] == 65.0
    assert row["option_type"] == "put"
    assert row["moneyness_pct"] == -7.14
    assert row["bid"] == 0.5
    assert row["breakeven"] == 64.5
    assert row["breakeven_pct"] == -7.86
    assert row["volume"] == 150
    assert row["open_interest"] == 2500
    assert row["iv_rank_pct"] == 30.0
    assert row["delta"] == -0.15  # printed positive, stored negative for a put
    assert row["return_pct_reported"] == 0.8
    assert row["annualized_return_pct_reported"] == 10.1
    assert row["profit_prob_pct"] == 85.0
    assert row["otm_pct"] == pytest.approx(7.142857142857143)  # (70 - 65) / 70 * 100
    assert row["return_pct"] == pytest.approx(0.7751937984496124)  # 0.5 / 64.5 * 100
    assert row["annualized_return_pct"] == pytest.approx(10.105204873)  # 282.945736 / 28
    assert row["error"] is None


def test_valid_and_invalid_rows_are_split_by_error():
    export = parse(export_bytes(data_row(), data_row(Strike="abc"), data_row(Symbol="XOM")))
    assert export.row_count == 3
    assert export.valid_rows["row"].to_list() == [2, 4]
    assert export.invalid_rows["row"].to_list() == [3]


def test_percent_cells_accept_a_leading_plus_and_a_missing_percent_sign():
    row = only_row(parse(export_bytes(data_row(Moneyness="+4.87%", BE_pct="+0.5%", IV_Rank="30"))))
    assert row["moneyness_pct"] == 4.87
    assert row["breakeven_pct"] == 0.5
    assert row["iv_rank_pct"] == 30.0
    assert row["error"] is None


def test_delta_sign_put_negative_call_positive_whatever_was_printed():
    export = parse(
        export_bytes(
            data_row(Delta="0.25"),
            data_row(Delta="-0.25"),
            data_row(Type="Call", Delta="0.4"),
            data_row(Type="CALL", Delta="-0.4"),
        )
    )
    assert export.rows["delta"].to_list() == [-0.25, -0.25, 0.4, 0.4]
    assert export.rows["option_type"].to_list() == ["put", "put", "call", "call"]


def test_expiring_on_the_export_day_is_valid_with_no_annualized_return():
    row = only_row(parse(export_bytes(data_row(Exp_Date="2026-11-20", DTE="1"))))
    assert (row["dte"], row["dte_reported"]) == (0, 1)
    assert row["return_pct"] == pytest.approx(0.7751937984496124)
    assert row["annualized_return_pct"] is None
    assert row["error"] is None


def test_symbol_and_type_are_normalized():
    row = only_row(parse(export_bytes(data_row(Symbol="brk.b", Type="put"))))
    assert (row["symbol"], row["option_type"], row["error"]) == ("BRK.B", "put", None)


def test_bid_of_zero_is_valid_with_zero_return():
    row = only_row(parse(export_bytes(data_row(Bid="0"))))
    assert (row["bid"], row["return_pct"], row["annualized_return_pct"]) == (0.0, 0.0, 0.0)
    assert row["error"] is None


# --- header ---------------------------------------------------------------------------


def test_header_names_may_be_quoted_or_not_and_padded():
    unquoted = ",".join(MAIN_VIEW_COLUMNS)
    all_quoted = ",".join(f'"{name}"' for name in MAIN_VIEW_COLUMNS)
    padded = ", ".join(f" {name} " for name in MAIN_VIEW_COLUMNS)
    for header in (unquoted, all_quoted, padded):
        assert only_row(parse(export_bytes(data_row(), header=header)))["strike"] == 65.0


def test_columns_are_found_by_name_in_any_order_and_extra_columns_are_ignored():
    order = list(reversed(MAIN_VIEW_COLUMNS)) + ["Theta"]
    header = ",".join(f'"{name}"' for name in order)
    cells = dict(KO_CELLS, Theta="-0.03")
    row = only_row(parse(export_bytes(",".join(cells[name] for name in order), header=header)))
    assert (row["symbol"], row["strike"], row["bid"], row["delta"]) == ("KO", 65.0, 0.5, -0.15)
    assert row["error"] is None
    assert "Theta" not in row


def test_unnamed_extra_columns_from_trailing_commas_are_ignored():
    row = only_row(parse(export_bytes(data_row() + ",,", header=HEADER + ",,")))
    assert (row["strike"], row["error"]) == (65.0, None)


def test_header_missing_columns_is_refused_naming_them():
    header = HEADER.replace(',"BE (Bid)"', "").replace(',"Profit Prob"', "")
    error = refusal(export_bytes("KO,1", header=header))
    assert error.file == "screener.csv"
    assert (error.row, error.column) == (1, None)
    assert error.reason == (
        "not a Barchart naked put screener main-view export: missing columns 'BE (Bid)', 'Profit Prob'"
    )


def test_header_with_a_duplicate_column_is_refused_naming_it():
    error = refusal(export_bytes(data_row() + ",1", header=HEADER + ",Bid"))
    assert error.row == 1
    assert error.reason == (
        "not a Barchart naked put screener main-view export: duplicate columns 'Bid' (columns 8, 18)"
    )


def test_header_problem_is_reported_before_any_row_problem():
    # The data row is garbage too, but the header is what makes the file unusable.
    error = refusal(export_bytes("@@@", header="Symbol,Ask,Ask"))
    assert error.row == 1
    assert "missing columns 'Price~'" in error.reason
    assert "duplicate columns 'Ask' (columns 2, 3)" in error.reason


def test_unreadable_header_line_is_refused():
    error = refusal(export_bytes(data_row(), header='Symbol,"Price~'))
    assert error.row == 1
    assert error.reason.startswith("header line is not valid CSV")


# --- footer and export date -----------------------------------------------------------


def test_without_a_footer_the_file_date_is_the_export_date():
    export = parse(export_bytes(data_row(), footer=None))
    assert export.export_date == FILE_DATE
    assert export.export_date_source == "file date"
    assert export.downloaded_at is None
    assert only_row(export)["dte"] == 25  # 2026-11-23 -> 2026-12-18


def test_unquoted_footer_with_daylight_time_zone_is_read():
    footer = "Downloaded from Barchart.com as of 08-28-2026 08:46am CDT"
    export = parse(export_bytes(data_row(), footer=footer))
    assert export.export_date == date(2026, 8, 28)
    assert export.downloaded_at == "08-28-2026 08:46am CDT"


def test_footer_that_cannot_be_read_is_refused_with_its_row():
    error = refusal(export_bytes(data_row(), footer='"Downloaded from Barchart.com as of yesterday"'))
    assert error.row == 3
    assert error.reason.startswith("footer not understood: 'Downloaded from Barchart.com as of yesterday'")


def test_footer_with_an_impossible_date_is_refused():
    footer = "Downloaded from Barchart.com as of 02-30-2026 03:45pm CST"
    error = refusal(export_bytes(data_row(), footer=f'"{footer}"'))
    assert error.row == 3
    assert error.reason == f"footer has an impossible date: '{footer}'"


# --- row-level problems: the row is kept with its reasons --------------------------------


@pytest.mark.parametrize(
    ("changes", "expected_error"),
    [
        ({"Strike": "abc"}, "column 'Strike': not a number 'abc'"),
        ({"Bid": ""}, "column 'Bid': empty"),
        ({"IV_Rank": "N/A"}, "column 'IV Rank': not a number 'N/A'"),
        ({"Price": "inf"}, "column 'Price~': not a number 'inf'"),
        ({"Volume": "12.5"}, "column 'Volume': not a whole number '12.5'"),
        ({"Exp_Date": "12/18/2026"}, "column 'Exp Date': not a date (yyyy-mm-dd) '12/18/2026'"),
        ({"Exp_Date": "2026-02-30"}, "column 'Exp Date': not a date (yyyy-mm-dd) '2026-02-30'"),
        ({"Type": "Straddle"}, "column 'Type': not 'Put' or 'Call' 'Straddle'"),
        ({"Symbol": "K O!"}, "column 'Symbol': not a ticker symbol 'K O!'"),
        ({"Strike": "-65"}, "column 'Strike': must be greater than 0 (got '-65')"),
        ({"Price": "0"}, "column 'Price~': must be greater than 0 (got '0')"),
        ({"Bid": "-0.1"}, "column 'Bid': must not be negative (got '-0.1')"),
        ({"Bid": "65"}, "column 'Bid': must be below the strike (got '65')"),
        ({"Volume": "-1"}, "column 'Volume': must not be negative (got '-1')"),
        ({"Open_Int": "-5"}, "column 'Open Int': must not be negative (got '-5')"),
        ({"DTE": "-2"}, "column 'DTE': must not be negative (got '-2')"),
        ({"IV_Rank": "130%"}, "column 'IV Rank': must be between 0% and 100% (got '130%')"),
        ({"Profit_Prob": "-1%"}, "column 'Profit Prob': must be between 0% and 100% (got '-1%')"),
        ({"Delta": "1.2"}, "column 'Delta': must be between -1 and 1 (got '1.2')"),
        (
            {"Exp_Date": "2026-11-13"},
            "column 'Exp Date': expired before the export date 2026-11-20 (got '2026-11-13')",
        ),
    ],
)
def test_row_problem_is_kept_in_the_row_and_does_not_fail_the_file(changes, expected_error):
    export = parse(export_bytes(data_row(), data_row(**changes)))
    assert export.valid_rows["row"].to_list() == [2]
    bad = export.invalid_rows.row(0, named=True)
    assert bad["row"] == 3
    assert bad["error"] == expected_error


def test_invalid_row_keeps_the_fields_that_did_parse():
    export = parse(export_bytes(data_row(), data_row(Strike="abc")))
    bad = export.rows.row(1, named=True)
    assert bad["strike"] is None
    assert bad["otm_pct"] is None and bad["return_pct"] is None  # both need the strike
    assert (bad["symbol"], bad["bid"], bad["dte"], bad["delta"]) == ("KO", 0.5, 28, -0.15)


def test_out_of_range_values_are_kept_as_read():
    bad = parse(export_bytes(data_row(), data_row(Strike="-65"))).rows.row(1, named=True)
    assert bad["strike"] == -65.0


def test_every_problem_of_a_row_is_listed_in_column_order():
    export = parse(export_bytes(data_row(), data_row(Price="x", Bid="", Delta="2")))
    assert export.rows["error"][1] == (
        "column 'Price~': not a number 'x'; column 'Bid': empty; "
        "column 'Delta': must be between -1 and 1 (got '2')"
    )


def test_short_row_in_the_middle_keeps_its_leading_fields():
    short = "KO,70.00,2026-12-18,29,65.00"
    export = parse(export_bytes(data_row(), short, data_row()))
    bad = export.rows.row(1, named=True)
    assert bad["error"] == "row has 5 fields, expected 17"  # missing cells are not listed again
    assert (bad["row"], bad["symbol"], bad["strike"], bad["bid"]) == (3, "KO", 65.0, None)
    assert export.valid_rows.height == 2


def test_long_row_is_an_error():
    export = parse(export_bytes(data_row(), data_row() + ",extra"))
    assert export.rows["error"].to_list() == [None, "row has 18 fields, expected 17"]


def test_quoted_cells_are_read_and_unbalanced_quotes_are_a_row_error():
    quoted = ",".join(f'"{KO_CELLS[name]}"' for name in MAIN_VIEW_COLUMNS)
    broken = data_row(Symbol='"KO')
    export = parse(export_bytes(quoted, broken))
    assert export.rows["strike"][0] == 65.0
    assert export.rows["error"].to_list() == [None, "not valid CSV (unbalanced quotes)"]


def test_blank_lines_are_skipped_and_rows_keep_their_line_numbers():
    export = parse(export_bytes("", data_row(), "   ", data_row(Strike="x")))
    assert export.rows["row"].to_list() == [3, 5]
    assert export.invalid_rows["row"].to_list() == [5]


def test_crlf_line_endings_bom_and_padded_cells_are_accepted():
    padded = ", ".join(f" {KO_CELLS[name]} " for name in MAIN_VIEW_COLUMNS)
    data = b"\xef\xbb\xbf" + export_bytes(padded, data_row()).replace(b"\n", b"\r\n")
    export = parse(data)
    assert export.export_date_source == "footer"
    assert export.rows["error"].to_list() == [None, None]
    assert export.rows["symbol"].to_list() == ["KO", "KO"]
    assert export.rows["profit_prob_pct"].to_list() == [85.0, 85.0]


# --- files that cannot be used ----------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"\xef\xbb\xbf"])
def test_empty_file_is_refused(data):
    error = refusal(data)
    assert (error.file, error.row, error.column) == ("screener.csv", None, None)
    assert error.reason == "file is empty"


@pytest.mark.parametrize("footer", [None, FOOTER])
def test_header_without_data_rows_is_refused(footer):
    error = refusal(export_bytes(footer=footer))
    assert error.reason == "no data rows: the file has a header but no candidates"


def test_nul_byte_is_refused_naming_row_and_column():
    data = export_bytes(data_row(), data_row())
    at = data.index(b"65.00", data.index(b"\n") + len(data_row()) + 1)  # the strike of row 3
    error = refusal(data[:at] + b"\x00" + data[at:])
    assert (error.row, error.column) == (3, "Strike")
    assert error.reason.startswith("binary data (NUL byte)")


def test_utf16_file_is_refused():
    error = refusal(export_bytes(data_row()).decode().encode("utf-16"))
    assert error.reason == "not a CSV text file: it is UTF-16 text; save it as UTF-8 CSV"


def test_excel_workbook_is_refused():
    error = refusal(b"PK\x03\x04" + bytes(range(256)))
    assert error.reason.startswith("not a CSV text file: it is a ZIP archive")


def test_latin1_text_is_refused_naming_row_and_column():
    data = export_bytes(data_row(), data_row(Type="Pút")).decode().encode("latin-1")
    error = refusal(data)
    assert (error.row, error.column) == (3, "Type")
    assert error.reason == "not UTF-8 text (byte 0xfa); save the export as UTF-8 CSV"


def test_truncated_file_is_refused_naming_the_last_row():
    data = export_bytes(data_row(), data_row(), footer=None)
    cut = data[: data.rindex(b",150,")]  # the last row ends after "%BE (Bid)", its 10th cell
    error = refusal(cut)
    assert error.row == 3
    assert error.column == "Volume"  # 10 of 17 fields survived; the 11th is Volume
    assert error.reason == (
        "file looks truncated: the last row has 10 of 17 fields and the "
        "'Downloaded from Barchart.com' footer is missing"
    )


def test_truncated_inside_a_quoted_cell_is_refused():
    error = refusal(export_bytes(data_row(), '"KO",70.00,"2026-12', footer=None))
    assert error.row == 3
    assert "an unclosed quote" in error.reason


def test_file_without_any_valid_row_is_refused_naming_the_first_problem():
    error = refusal(export_bytes(data_row(Bid="abc"), data_row(Strike="x")))
    assert (error.row, error.column) == (2, "Bid")
    assert error.reason == "no valid rows: all 2 data rows have errors; the first: not a number 'abc'"
    assert str(error) == (
        "screener.csv, row 2, column 'Bid': no valid rows: all 2 data rows have errors; "
        "the first: not a number 'abc'"
    )


# --- reading from disk ------------------------------------------------------------------


def test_read_main_view_uses_the_file_date_in_new_york(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_bytes(export_bytes(data_row(), footer=None))
    # 03:00 UTC on 2026-11-21 is 22:00 on 2026-11-20 in New York.
    modified = datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc).timestamp()
    os.utime(path, (modified, modified))
    export = read_main_view(path)
    assert export.source == str(path)
    assert (export.export_date, export.export_date_source) == (date(2026, 11, 20), "file date")


def test_read_main_view_refuses_missing_files_and_folders(tmp_path: Path):
    with pytest.raises(InputFileError) as missing:
        read_main_view(tmp_path / "nope.csv")
    assert missing.value.reason == "file not found"
    with pytest.raises(InputFileError) as folder:
        read_main_view(tmp_path)
    assert folder.value.reason == "is a folder, not a file"


# --- pandera schema of valid rows ---------------------------------------------------------


def test_schema_declares_the_canonical_columns_and_dtypes():
    declared = BarchartCandidates.to_schema().columns
    assert list(declared) == list(CANONICAL_COLUMNS)
    for name, dtype in CANONICAL_COLUMNS.items():
        assert declared[name].dtype.type == dtype, name


def test_schema_accepts_parsed_valid_rows():
    export = parse(export_bytes(data_row(), data_row(Type="Call"), data_row(Exp_Date="2026-11-20")))
    BarchartCandidates.validate(export.valid_rows)


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("strike", -1.0, "greater_than"),
        ("delta", 0.3, "put_delta_not_positive"),
        ("bid", 70.0, "bid_below_strike"),
        ("error", "column 'Bid': empty", "error_is_null"),
        ("dte", -1, "greater_than_or_equal_to"),
        ("option_type", "straddle", "isin"),
        ("annualized_return_pct", None, "annualized_when_days_remain"),
    ],
)
def test_schema_blocks_rows_the_parser_would_never_call_valid(column, value, check):
    rows = parse(export_bytes(data_row())).valid_rows
    broken = rows.with_columns(pl.lit(value, dtype=CANONICAL_COLUMNS[column]).alias(column))
    with pytest.raises(pandera.errors.SchemaError) as caught:
        BarchartCandidates.validate(broken)
    assert check in str(caught.value)


# --- the bundled sample -------------------------------------------------------------------


def test_bundled_sample_is_the_generators_output_and_parses_clean():
    path = sample_export_path()
    assert path.read_bytes() == generate_main_view(
        SAMPLE_ROWS, seed=SAMPLE_SEED, export_date=SAMPLE_EXPORT_DATE, downloaded_at=SAMPLE_DOWNLOADED_AT
    ), "regenerate with: python -m trading_pipeline.ingest.barchart_sample"
    export = read_main_view(path)
    assert (export.export_date, export.export_date_source) == (date(2026, 11, 20), "footer")
    assert export.downloaded_at == "11-20-2026 03:45pm CST"
    assert export.row_count == 60
    assert export.invalid_rows.height == 0
    assert export.rows["symbol"].n_unique() == 20
    assert 2 <= export.rows["expiration"].n_unique() <= 3
    assert (export.rows["dte_reported"] == export.rows["dte"] + 1).all()
    BarchartCandidates.validate(export.valid_rows)


# --- the real samples (test use only; never copied into the repo) ------------------------


@pytest.mark.shared_data
def test_real_main_view_export():
    if not REAL_MAIN_VIEW.is_file():
        pytest.skip(f"real Barchart sample not present at {REAL_MAIN_VIEW}")
    export = read_main_view(REAL_MAIN_VIEW)
    assert export.row_count == 52
    assert export.invalid_rows.height == 0
    assert export.rows["symbol"].n_unique() == 20
    assert (export.export_date, export.export_date_source) == (date(2025, 8, 28), "footer")
    assert export.downloaded_at == "08-28-2025 08:46am CDT"
    aapl = export.rows.filter((pl.col("symbol") == "AAPL") & (pl.col("strike") == 220.0)).row(0, named=True)
    assert aapl["option_type"] == "put"
    assert aapl["delta"] == -0.224038
    assert (aapl["dte"], aapl["dte_reported"]) == (22, 23)  # 2025-08-28 -> 2025-09-19
    # Barchart's rounded Return (0.9 %) against the recomputed 2.05 / 217.95 = 0.9406 %.
    assert aapl["return_pct_reported"] == 0.9
    assert aapl["return_pct"] == pytest.approx(0.940583620)
    BarchartCandidates.validate(export.valid_rows)


@pytest.mark.shared_data
def test_real_custom_view_is_refused_naming_missing_columns_and_the_duplicate():
    if not REAL_CUSTOM_VIEW.is_file():
        pytest.skip(f"real Barchart sample not present at {REAL_CUSTOM_VIEW}")
    with pytest.raises(InputFileError) as caught:
        read_main_view(REAL_CUSTOM_VIEW)
    error = caught.value
    assert error.row == 1
    assert error.reason == (
        "not a Barchart naked put screener main-view export: missing columns 'Price~', 'BE (Bid)', "
        "'%BE (Bid)', 'Open Int', 'Return', 'Ann Rtn', 'Profit Prob'; duplicate columns 'Ask' (columns 2, 11)"
    )
