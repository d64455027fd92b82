"""Contract under test: trading_pipeline.core.scoring.

score_candidates adds six dimension scores (each 0-100, by the piecewise-linear curves of
docs/scoring.md), a weighted composite ``score`` and a ``grade`` to the canonical candidate
frame, leaving invalid rows (``error`` set) unscored. select_candidates ranks the scored rows,
picks the top N under the per-symbol cap, and gives every other row one specific reason, in
the documented priority order, with deterministic tie-breaking and output order.

Expected numbers are computed by hand from the knots in docs/scoring.md (the arithmetic is
written next to each case), never by calling the code under test.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.core.scoring import (
    CURVES,
    WEIGHTS,
    ScanPolicy,
    grade_for_score,
    score_candidates,
    select_candidates,
)
from trading_pipeline.errors import ConfigurationError

# The canonical Barchart candidate frame (docs: /work/brief/common.md).
CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64,
    "symbol": pl.String,
    "underlying_price": pl.Float64,
    "expiration": pl.Date,
    "dte_reported": pl.Int64,
    "dte": pl.Int64,
    "strike": pl.Float64,
    "option_type": pl.String,
    "moneyness_pct": pl.Float64,
    "bid": pl.Float64,
    "breakeven": pl.Float64,
    "breakeven_pct": pl.Float64,
    "volume": pl.Int64,
    "open_interest": pl.Int64,
    "iv_rank_pct": pl.Float64,
    "delta": pl.Float64,
    "return_pct_reported": pl.Float64,
    "annualized_return_pct_reported": pl.Float64,
    "profit_prob_pct": pl.Float64,
    "otm_pct": pl.Float64,
    "return_pct": pl.Float64,
    "annualized_return_pct": pl.Float64,
    "error": pl.String,
}

SCORE_COLUMNS = ["score_return", "score_pop", "score_iv_rank", "score_liquidity", "score_capital", "score_safety"]

# The worked example of docs/scoring.md: a 101.5 put on a 116.00 stock, bid 1.50, 25 days.
#   otm      = (116 - 101.5) / 116 * 100 = 12.5 %
#   return   = 1.5 / (101.5 - 1.5) * 100 = 1.5 %
#   ann. rtn = 1.5 * 365 / 25 = 21.9 %
WORKED_EXAMPLE = {
    "row": 2,
    "symbol": "XYZ",
    "underlying_price": 116.0,
    "expiration": date(2025, 9, 22),
    "dte_reported": 26,
    "dte": 25,
    "strike": 101.5,
    "option_type": "put",
    "moneyness_pct": -12.5,
    "bid": 1.5,
    "breakeven": 100.0,
    "breakeven_pct": -13.79,
    "volume": 150,
    "open_interest": 1250,
    "iv_rank_pct": 45.0,
    "delta": -0.2,
    "return_pct_reported": 1.5,
    "annualized_return_pct_reported": 21.1,
    "profit_prob_pct": 79.0,
    "otm_pct": 12.5,
    "return_pct": 1.5,
    "annualized_return_pct": 21.9,
    "error": None,
}

# Inputs at which every curve scores 100 (within each optimum).
PERFECT = {
    "annualized_return_pct": 40.0,
    "profit_prob_pct": 90.0,
    "iv_rank_pct": 70.0,
    "open_interest": 5000,
    "volume": 1000,
    "return_pct": 2.5,
    "otm_pct": 15.0,
}


def candidate(**overrides) -> dict:
    """One canonical row: the worked example with the given fields replaced."""
    unknown = set(overrides) - set(CANONICAL_SCHEMA)
    assert not unknown, f"not canonical columns: {unknown}"
    return {**WORKED_EXAMPLE, **overrides}


def rows_of(*rows: dict) -> pl.DataFrame:
    """A canonical frame of these rows, numbered 2, 3, ... like the data lines of a file."""
    return pl.DataFrame([{**row, "row": index + 2} for index, row in enumerate(rows)], schema=CANONICAL_SCHEMA)


def scored_one(**overrides) -> dict:
    return score_candidates(rows_of(candidate(**overrides))).row(0, named=True)


def select(*rows: dict, policy: ScanPolicy = ScanPolicy()) -> pl.DataFrame:
    return select_candidates(score_candidates(rows_of(*rows)), policy)


# --------------------------------------------------------------------------- curves


@pytest.mark.parametrize(
    ("annualized", "expected"),
    [
        (-5.0, 0.0),  # below the first knot: flat at its score
        (0.0, 0.0),
        (5.0, 10.0),  # 0 + 5 * (20 / 10)
        (10.0, 20.0),
        (21.9, 67.6),  # 20 + 11.9 * (80 / 20)
        (30.0, 100.0),
        (40.0, 100.0),
        (50.0, 100.0),
        (75.0, 70.0),  # 100 - 25 * (60 / 50)
        (100.0, 40.0),
        (150.0, 20.0),  # 40 - 50 * (40 / 100)
        (200.0, 0.0),
        (500.0, 0.0),
    ],
)
def test_return_curve_peaks_between_30_and_50_percent_annualized(annualized, expected):
    assert scored_one(annualized_return_pct=annualized)["score_return"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("profit_prob", "expected"),
    [
        (30.0, 0.0),
        (50.0, 0.0),
        (60.0, 25.0),  # 0 + 10 * (50 / 20)
        (70.0, 50.0),
        (79.0, 80.0),  # 50 + 9 * (50 / 15)
        (85.0, 100.0),
        (99.0, 100.0),
    ],
)
def test_probability_of_profit_curve_is_full_from_85_percent(profit_prob, expected):
    assert scored_one(profit_prob_pct=profit_prob)["score_pop"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("iv_rank", "expected"),
    [
        (0.0, 0.0),
        (30.0, 50.0),  # 30 * (100 / 60)
        (45.0, 75.0),
        (60.0, 100.0),
        (70.0, 100.0),
        (80.0, 100.0),
        (90.0, 75.0),  # 100 - 10 * (50 / 20)
        (100.0, 50.0),
    ],
)
def test_iv_rank_curve_peaks_between_60_and_80(iv_rank, expected):
    assert scored_one(iv_rank_pct=iv_rank)["score_iv_rank"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("open_interest", "expected"),
    [
        # volume 300 scores 100, so liquidity = (open interest score + 100) / 2
        (0, 50.0),
        (250, 62.5),  # OI score 25 = 250 * (50 / 500)
        (500, 75.0),  # OI score 50
        (1250, 87.5),  # OI score 75 = 50 + 750 * (50 / 1500)
        (2000, 100.0),
        (50_000, 100.0),
    ],
)
def test_liquidity_averages_the_open_interest_curve_with_volume(open_interest, expected):
    row = scored_one(open_interest=open_interest, volume=300)
    assert row["score_liquidity"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        # open interest 2000 scores 100, so liquidity = (volume score + 100) / 2
        (0, 50.0),
        (50, 62.5),  # volume score 25 = 50 * (50 / 100)
        (100, 75.0),  # volume score 50
        (200, 87.5),  # volume score 75 = 50 + 100 * (50 / 200)
        (300, 100.0),
        (10_000, 100.0),
    ],
)
def test_liquidity_averages_the_volume_curve_with_open_interest(volume, expected):
    row = scored_one(open_interest=2000, volume=volume)
    assert row["score_liquidity"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("return_pct", "expected"),
    [
        (-1.0, 0.0),
        (0.0, 0.0),
        (0.5, 20.0),  # 0.5 * (40 / 1)
        (1.0, 40.0),
        (1.5, 70.0),  # 40 + 0.5 * (60 / 1)
        (2.0, 100.0),
        (5.0, 100.0),
    ],
)
def test_capital_efficiency_curve_is_full_from_2_percent(return_pct, expected):
    assert scored_one(return_pct=return_pct)["score_capital"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("otm", "expected"),
    [
        (-3.0, 0.0),  # in the money: no buffer at all
        (0.0, 0.0),
        (6.0, 50.0),  # 6 * (100 / 12)
        (12.0, 100.0),
        (15.0, 100.0),
        (18.0, 100.0),
        (28.0, 80.0),  # 100 - 10 * (40 / 20)
        (38.0, 60.0),
        (60.0, 60.0),
    ],
)
def test_safety_curve_peaks_between_12_and_18_percent_otm(otm, expected):
    assert scored_one(otm_pct=otm)["score_safety"] == pytest.approx(expected, abs=1e-9)


def test_every_curve_has_increasing_inputs_and_scores_within_0_and_100():
    for name, curve in CURVES.items():
        inputs = [x for x, _ in curve.knots]
        assert inputs == sorted(set(inputs)), name
        assert all(0 <= y <= 100 for _, y in curve.knots), name
        assert max(y for _, y in curve.knots) == 100, name


def test_the_documented_knots_are_the_knots_in_the_code():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "scoring.md").read_text(encoding="utf-8")
    documented_rows = {
        "return (annualized %)": "return",
        "probability of profit (%)": "pop",
        "IV rank (%)": "iv_rank",
        "open interest (contracts)": "liquidity_open_interest",
        "volume (contracts)": "liquidity_volume",
        "capital efficiency (%)": "capital",
        "safety buffer (% OTM)": "safety",
    }
    for label, name in documented_rows.items():
        line = re.search(rf"^\| {re.escape(label)} +\| (.+?) +\|$", doc, re.MULTILINE)
        assert line, f"docs/scoring.md has no knots row for {label}"
        documented = [tuple(float(n) for n in knot.split(" → ")) for knot in line[1].replace("**", "").split(", ")]
        assert documented == [(float(x), float(y)) for x, y in CURVES[name].knots], label


def test_a_missing_or_nan_input_in_a_valid_row_scores_zero_on_its_curve():
    scored = score_candidates(rows_of(candidate(iv_rank_pct=None), candidate(iv_rank_pct=float("nan"))))
    assert scored["score_iv_rank"].to_list() == [0.0, 0.0]
    assert scored["score_pop"].to_list() == pytest.approx([80.0, 80.0])


# --------------------------------------------------------------------------- composite and grade


def test_weights_are_the_seed_table_and_add_up_to_one():
    assert WEIGHTS == {"return": 0.25, "pop": 0.20, "iv_rank": 0.15, "liquidity": 0.15, "capital": 0.15, "safety": 0.10}
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)


def test_worked_example_composite_and_grade():
    row = scored_one()
    # return 67.6, pop 80, IV rank 75, liquidity (75 + 62.5) / 2 = 68.75, capital 70, safety 100
    assert [row[column] for column in SCORE_COLUMNS] == pytest.approx([67.6, 80.0, 75.0, 68.75, 70.0, 100.0])
    # 0.25*67.6 + 0.20*80 + 0.15*75 + 0.15*68.75 + 0.15*70 + 0.10*100
    # = 16.9 + 16 + 11.25 + 10.3125 + 10.5 + 10 = 74.9625
    assert row["score"] == pytest.approx(74.9625, abs=1e-9)
    assert row["grade"] == "B"  # 74.9625 is below 75: no rounding up into an A


def test_a_candidate_inside_every_optimum_scores_100_and_gets_an_a_plus():
    row = scored_one(**PERFECT)
    assert [row[column] for column in SCORE_COLUMNS] == [100.0] * 6
    assert row["score"] == 100.0
    assert row["grade"] == "A+"


def test_a_composite_exactly_on_a_grade_boundary_is_not_lost_to_float_noise():
    # return 6.3*2 = 12.6; pop 100; IV rank 12.1*100/60 = 20.1666..; liquidity
    # (50 + 123/30 + 73/2) / 2 = (54.1 + 36.5) / 2 = 45.3; capital 40 + 0.67*60 = 80.2; safety 100
    # 3.15 + 20 + 3.025 + 6.795 + 12.03 + 10 = 55 exactly (the plain float sum is 54.99999999999999)
    row = scored_one(annualized_return_pct=6.3, profit_prob_pct=87.6, iv_rank_pct=12.1,
                     open_interest=623, volume=73, return_pct=1.67, otm_pct=13.4)
    assert row["score"] == 55.0
    assert row["grade"] == "C"


@pytest.mark.parametrize(
    ("score", "grade"),
    [
        (100.0, "A+"), (85.0, "A+"), (84.99, "A"), (75.0, "A"), (74.99, "B"), (65.0, "B"),
        (64.99, "C"), (55.0, "C"), (54.99, "D"), (45.0, "D"), (44.99, "F"), (0.0, "F"),
    ],
)
def test_grade_boundaries_are_inclusive_lower_bounds(score, grade):
    assert grade_for_score(score) == grade


def test_grade_of_nan_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        grade_for_score(float("nan"))


def test_invalid_rows_get_no_scores_and_no_grade_and_valid_rows_are_unaffected():
    scored = score_candidates(rows_of(candidate(error="column 'Strike': not a number 'abc'", strike=None), candidate()))
    invalid, valid = scored.row(0, named=True), scored.row(1, named=True)
    assert all(invalid[column] is None for column in [*SCORE_COLUMNS, "score", "grade"])
    assert valid["score"] == pytest.approx(74.9625)
    assert valid["grade"] == "B"


def test_scoring_keeps_rows_columns_and_order_and_adds_typed_columns():
    rows = rows_of(candidate(symbol="BBB"), candidate(symbol="AAA", error="bad"), candidate(symbol="CCC"))
    scored = score_candidates(rows)
    assert scored.columns == [*rows.columns, *SCORE_COLUMNS, "score", "grade"]
    assert scored.select(rows.columns).equals(rows)
    assert {column: scored.schema[column] for column in [*SCORE_COLUMNS, "score", "grade"]} == {
        **{column: pl.Float64 for column in [*SCORE_COLUMNS, "score"]},
        "grade": pl.String,
    }


def test_scoring_an_empty_frame_gives_an_empty_frame_with_the_score_columns():
    scored = score_candidates(pl.DataFrame(schema=CANONICAL_SCHEMA))
    assert scored.height == 0
    assert scored.columns[-8:] == [*SCORE_COLUMNS, "score", "grade"]


def test_scoring_a_frame_without_the_canonical_columns_names_what_is_missing():
    with pytest.raises(ValueError, match="otm_pct"):
        score_candidates(rows_of(candidate()).drop("otm_pct"))


# --------------------------------------------------------------------------- rejection reasons


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"error": "column 'Strike': not a number 'abc'", "strike": None},
         "invalid row: column 'Strike': not a number 'abc'"),
        ({"bid": None, "dte": None}, "incomplete row: no value for bid, dte"),
        ({"option_type": "call"}, "not a put (type 'call')"),
        ({"bid": 0.0}, "no bid (bid 0.0)"),
        ({"bid": -0.05}, "no bid (bid -0.05)"),
        ({"dte": 0}, "expires on or before the export date (DTE 0)"),
        ({"dte": -3}, "expires on or before the export date (DTE -3)"),
        ({"strike": 120.0}, "in the money: strike 120.0 at or above the underlying price 116.0"),
        ({"strike": 116.0}, "in the money: strike 116.0 at or above the underlying price 116.0"),
    ],
)
def test_each_screening_rule_rejects_with_its_reason(overrides, reason):
    selected = select(candidate(**overrides), candidate(symbol="OK"))
    rejected = selected.filter(pl.col("row") == 2).row(0, named=True)
    assert rejected["rejected"] is True
    assert rejected["rank"] is None
    assert rejected["reason"] == reason
    # the good row beside it still makes the list
    assert selected.filter(pl.col("row") == 3)["rank"].to_list() == [1]


def test_below_the_minimum_score_names_both_scores():
    selected = select(candidate(), policy=ScanPolicy(min_score=80))
    assert selected["reason"].to_list() == ["score 74.96 below the minimum score 80.0"]
    assert selected["rejected"].to_list() == [True]


def test_a_score_just_below_the_minimum_is_shown_truncated_so_it_never_reads_as_equal():
    # open interest 1252: liquidity (50 + 752/30 + 62.5) / 2 = 68.78333..; composite
    # 74.9625 + 0.15 * (68.78333.. - 68.75) = 74.9675, which would round to 74.97
    selected = select(candidate(open_interest=1252), policy=ScanPolicy(min_score=74.97))
    assert selected["score"][0] == pytest.approx(74.9675)
    assert selected["reason"].to_list() == ["score 74.96 below the minimum score 74.97"]


def test_a_score_equal_to_the_minimum_is_kept():
    selected = select(candidate(**PERFECT), policy=ScanPolicy(min_score=100))
    assert selected["rank"].to_list() == [1]
    assert selected["reason"].to_list() == [None]


@pytest.mark.parametrize(
    ("overrides", "reason_start"),
    [
        # each row breaks several rules; the first in priority order is reported
        ({"error": "bad row", "option_type": "call", "bid": 0.0}, "invalid row"),
        ({"option_type": "call", "bid": 0.0, "dte": 0}, "not a put"),
        ({"bid": 0.0, "dte": 0, "strike": 200.0}, "no bid"),
        ({"dte": 0, "strike": 200.0}, "expires on or before"),
        ({"strike": 200.0, "profit_prob_pct": 0.0}, "in the money"),
    ],
)
def test_the_first_broken_rule_in_priority_order_is_the_reason(overrides, reason_start):
    selected = select(candidate(**overrides), policy=ScanPolicy(min_score=99))
    assert selected["reason"][0].startswith(reason_start)


def test_symbol_cap_keeps_the_best_pick_per_symbol_and_names_the_cap():
    selected = select(
        candidate(symbol="AMD", profit_prob_pct=70.0),  # pop 50: scores 10 * 0.20 = 6 points less
        candidate(symbol="AMD", profit_prob_pct=85.0),
        candidate(symbol="NVDA"),
    )
    by_row = {row["row"]: row for row in selected.iter_rows(named=True)}
    assert by_row[3]["rank"] == 1  # AMD at pop 85: 74.9625 + 0.20 * 20 = 78.9625
    assert by_row[4]["rank"] == 2  # NVDA 74.9625
    assert by_row[2]["reason"] == "symbol cap: AMD already has 1 higher-scored pick (max 1 per symbol)"


def test_symbol_cap_of_two_says_picks_in_the_plural():
    selected = select(
        candidate(symbol="AMD", profit_prob_pct=85.0),
        candidate(symbol="AMD", profit_prob_pct=80.0),
        candidate(symbol="AMD", profit_prob_pct=75.0),
        policy=ScanPolicy(max_per_symbol=2),
    )
    assert selected["rank"].to_list() == [1, 2, None]
    assert selected["reason"][2] == "symbol cap: AMD already has 2 higher-scored picks (max 2 per symbol)"


def test_without_diversification_one_symbol_can_fill_the_list_and_the_reason_says_so():
    rows = [candidate(symbol="AMD", profit_prob_pct=pop) for pop in (85.0, 80.0, 75.0)]
    selected = select(*rows, policy=ScanPolicy(top_n=2, diversify=False))
    assert selected["symbol"].to_list() == ["AMD", "AMD", "AMD"]
    assert selected["rank"].to_list() == [1, 2, None]
    assert selected["reason"].to_list() == [None, None, "ranked 3 by score, outside the top 2 (diversification off)"]


def test_top_n_keeps_the_n_best_and_says_where_the_others_ranked():
    rows = [candidate(symbol=f"S{pop:.0f}", profit_prob_pct=pop) for pop in (71.0, 75.0, 73.0, 79.0, 77.0)]
    selected = select(*rows, policy=ScanPolicy(top_n=3))
    assert selected["symbol"].to_list() == ["S79", "S77", "S75", "S73", "S71"]
    assert selected["rank"].to_list() == [1, 2, 3, None, None]
    assert selected["reason"].to_list() == [
        None, None, None, "ranked 4 by score, outside the top 3", "ranked 5 by score, outside the top 3",
    ]


def test_capped_rows_do_not_use_up_places_in_the_top_n():
    selected = select(
        candidate(symbol="AMD", profit_prob_pct=85.0),
        candidate(symbol="AMD", profit_prob_pct=80.0),
        candidate(symbol="BBB", profit_prob_pct=75.0),
        candidate(symbol="CCC", profit_prob_pct=70.0),
        policy=ScanPolicy(top_n=2),
    )
    by_symbol_row = {(row["symbol"], row["row"]): row for row in selected.iter_rows(named=True)}
    assert by_symbol_row[("BBB", 4)]["rank"] == 2
    assert by_symbol_row[("CCC", 5)]["reason"] == "ranked 3 by score, outside the top 2"
    assert by_symbol_row[("AMD", 3)]["reason"].startswith("symbol cap")


def test_rejected_rows_do_not_count_towards_the_symbol_cap():
    # the call scores higher but is not eligible, so the put of the same symbol is the pick
    selected = select(candidate(symbol="AMD", option_type="call", **PERFECT), candidate(symbol="AMD"))
    assert selected["row"].to_list() == [3, 2]
    assert selected["rank"].to_list() == [1, None]
    assert selected["reason"].to_list() == [None, "not a put (type 'call')"]


def test_output_order_is_picks_by_rank_then_rejected_by_score_then_invalid_by_row():
    selected = select(
        candidate(error="late problem"),  # row 2
        candidate(symbol="LOW", profit_prob_pct=60.0),  # row 3, ranked 3: outside the top 2
        candidate(symbol="CALL", option_type="call", **PERFECT),  # row 4, rejected with score 100
        candidate(error="early problem"),  # row 5
        candidate(symbol="TOP", **PERFECT),  # row 6, rank 1
        candidate(symbol="MID"),  # row 7, rank 2
        policy=ScanPolicy(top_n=2),
    )
    # scores: TOP 100, CALL 100 (rejected), MID 74.9625, LOW 74.9625 - 0.2 * (80 - 25) = 63.9625
    assert selected["row"].to_list() == [6, 7, 4, 3, 2, 5]
    assert selected["rank"].to_list() == [1, 2, None, None, None, None]
    assert selected["reason"].to_list()[2:] == [
        "not a put (type 'call')",
        "ranked 3 by score, outside the top 2",
        "invalid row: late problem",
        "invalid row: early problem",
    ]


def test_ties_on_score_are_broken_by_annualized_return_then_symbol_strike_expiration_row():
    # annualized 35 and 45 both score 100 on the return curve, so the scores tie;
    # strike and expiration are not inputs of the score either
    expiry = date(2025, 9, 22)
    rows = [
        candidate(symbol="BBB", annualized_return_pct=35.0, strike=100.0, expiration=expiry),  # row 2
        candidate(symbol="BBB", annualized_return_pct=35.0, strike=99.0, expiration=expiry),  # row 3
        candidate(symbol="AAA", annualized_return_pct=35.0, strike=100.0, expiration=expiry),  # row 4
        candidate(symbol="ZZZ", annualized_return_pct=45.0, strike=100.0, expiration=expiry),  # row 5
        candidate(symbol="BBB", annualized_return_pct=35.0, strike=99.0, expiration=expiry - timedelta(days=7)),  # row 6
        candidate(symbol="BBB", annualized_return_pct=35.0, strike=99.0, expiration=expiry - timedelta(days=7)),  # row 7
        candidate(symbol="BBB", annualized_return_pct=35.0, strike=100.0, expiration=expiry - timedelta(days=7)),  # row 8
    ]
    selected = select(*rows, policy=ScanPolicy(diversify=False))
    assert selected["score"].n_unique() == 1
    # strike before expiration: row 3 (99, later) comes before row 8 (100, earlier)
    assert selected["row"].to_list() == [5, 4, 6, 7, 3, 8, 2]
    assert selected["rank"].to_list() == [1, 2, 3, 4, 5, 6, 7]


def test_selection_adds_typed_columns_and_keeps_every_row():
    rows = rows_of(candidate(symbol="AMD"), candidate(symbol="AMD"), candidate(error="x"))
    selected = select_candidates(score_candidates(rows))
    assert selected.height == 3
    assert sorted(selected["row"].to_list()) == [2, 3, 4]
    assert {column: selected.schema[column] for column in ("rank", "rejected", "reason")} == {
        "rank": pl.Int64, "rejected": pl.Boolean, "reason": pl.String,
    }


def test_selecting_from_an_empty_frame_gives_an_empty_frame():
    selected = select_candidates(score_candidates(pl.DataFrame(schema=CANONICAL_SCHEMA)))
    assert selected.height == 0
    assert selected.columns[-3:] == ["rank", "rejected", "reason"]


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"top_n": 0}, "top N"),
        ({"max_per_symbol": 0}, "max per symbol"),
        ({"min_score": -1.0}, "minimum score"),
        ({"min_score": 101.0}, "minimum score"),
        ({"min_score": float("nan")}, "minimum score"),
    ],
)
def test_an_impossible_policy_is_refused_with_a_clear_error(settings_, message):
    with pytest.raises(ConfigurationError, match=message):
        ScanPolicy(**settings_)


# --------------------------------------------------------------------------- properties

# Input values across and beyond every curve's knots.
finite = {"allow_nan": False, "allow_infinity": False}
candidate_rows = st.fixed_dictionaries(
    {
        "symbol": st.sampled_from(["AAA", "BBB", "CCC", "DDD"]),
        "option_type": st.sampled_from(["put", "put", "put", "call"]),
        "bid": st.sampled_from([0.0, 0.5, 1.5, 3.0]),
        "dte": st.integers(-2, 60),
        "strike": st.sampled_from([90.0, 100.0, 110.0, 120.0]),
        "expiration": st.sampled_from([date(2025, 9, 19), date(2025, 9, 26)]),
        "annualized_return_pct": st.floats(-20, 400, **finite),
        "profit_prob_pct": st.floats(0, 100, **finite),
        "iv_rank_pct": st.floats(0, 100, **finite),
        "open_interest": st.integers(0, 100_000),
        "volume": st.integers(0, 10_000),
        "return_pct": st.floats(-1, 10, **finite),
        "otm_pct": st.floats(-20, 80, **finite),
        "error": st.sampled_from([None, None, None, None, "column 'Bid': not a number 'x'"]),
    }
)
candidate_frames = st.lists(candidate_rows, min_size=0, max_size=25).map(
    lambda rows: rows_of(*(candidate(**row) for row in rows))
)
policies = st.builds(
    ScanPolicy,
    top_n=st.integers(1, 8),
    diversify=st.booleans(),
    max_per_symbol=st.integers(1, 3),
    min_score=st.sampled_from([0.0, 40.0, 60.0]),
)


@settings(max_examples=100, deadline=None)
@given(candidate_frames)
def test_property_scores_are_within_0_and_100_and_grades_follow_the_scalar_rule(rows):
    scored = score_candidates(rows)
    valid = scored.filter(pl.col("error").is_null())
    invalid = scored.filter(pl.col("error").is_not_null())
    for column in [*SCORE_COLUMNS, "score"]:
        assert valid[column].null_count() == 0
        assert valid[column].is_between(0.0, 100.0).all()
        assert invalid[column].null_count() == invalid.height
    assert valid["grade"].to_list() == [grade_for_score(score) for score in valid["score"]]


# (dimension, input column, rising up to, falling from): where each curve is monotonic.
MONOTONIC_REGIONS = [
    ("score_return", "annualized_return_pct", 30.0, 50.0),
    ("score_pop", "profit_prob_pct", math.inf, math.inf),
    ("score_iv_rank", "iv_rank_pct", 60.0, 80.0),
    ("score_capital", "return_pct", math.inf, math.inf),
    ("score_safety", "otm_pct", 12.0, 18.0),
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-50, 500, **finite), min_size=2, max_size=40))
def test_property_curves_rise_up_to_their_optimum_and_fall_after_it(values):
    values = sorted(values)
    for dimension, column, rising_until, falling_from in MONOTONIC_REGIONS:
        scores = score_candidates(rows_of(*(candidate(**{column: value}) for value in values)))[dimension].to_list()
        for (low_value, low_score), (high_value, high_score) in zip(zip(values, scores), zip(values[1:], scores[1:])):
            if high_value <= rising_until:
                assert high_score >= low_score - 1e-9, (dimension, low_value, high_value)
            if low_value >= falling_from:
                assert high_score <= low_score + 1e-9, (dimension, low_value, high_value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 100_000), min_size=2, max_size=40), st.integers(0, 10_000))
def test_property_liquidity_never_falls_as_open_interest_or_volume_rise(counts, other):
    counts = sorted(counts)
    by_open_interest = score_candidates(rows_of(*(candidate(open_interest=n, volume=other) for n in counts)))
    by_volume = score_candidates(rows_of(*(candidate(open_interest=other, volume=n) for n in counts)))
    for scores in (by_open_interest["score_liquidity"], by_volume["score_liquidity"]):
        assert (scores.diff().drop_nulls() >= -1e-9).all()


@settings(max_examples=100, deadline=None)
@given(candidate_frames, policies)
def test_property_selection_respects_top_n_cap_and_gives_every_other_row_a_reason(rows, policy):
    selected = select_candidates(score_candidates(rows), policy)
    picks = selected.filter(~pl.col("rejected"))
    others = selected.filter(pl.col("rejected"))

    assert sorted(selected["row"].to_list()) == sorted(rows["row"].to_list())
    assert picks.height <= policy.top_n
    assert picks["rank"].to_list() == list(range(1, picks.height + 1))
    assert selected["rejected"].to_list() == [False] * picks.height + [True] * others.height
    assert picks["reason"].null_count() == picks.height
    assert others["reason"].null_count() == 0 and others["rank"].null_count() == others.height
    assert (picks["score"].diff().drop_nulls() <= 0).all()
    assert (picks["score"] >= policy.min_score).all()
    if policy.diversify:
        assert (picks.group_by("symbol").len()["len"] <= policy.max_per_symbol).all()
    assert picks.filter(
        pl.col("error").is_not_null() | (pl.col("option_type") != "put") | (pl.col("bid") <= 0)
        | (pl.col("dte") <= 0) | (pl.col("strike") >= pl.col("underlying_price"))
    ).height == 0


@settings(max_examples=60, deadline=None)
@given(candidate_frames, policies, st.randoms(use_true_random=False))
def test_property_selection_does_not_depend_on_input_row_order(rows, policy, random):
    order = list(range(rows.height))
    random.shuffle(order)
    shuffled = rows[order]
    assert select_candidates(score_candidates(shuffled), policy).equals(
        select_candidates(score_candidates(rows), policy)
    )
