"""Scoring and selection of Barchart naked put candidates.

Each valid row of the canonical candidate frame is scored on six dimensions, each 0-100,
by piecewise-linear curves around the optimal ranges of the predecessor's scoring table;
the composite is their weighted sum and maps to a letter grade. Selection then ranks the
scored rows and gives every row that does not make the list one specific reason.

The curves, weights, grades and reasons are documented, with a worked example, in
docs/scoring.md; the knots live in one table here (:data:`CURVES`) so that the document and
the code can be compared line by line.

Everything here is pure and vectorized: polars expressions over the whole frame, no Python
loop per row, no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from trading_pipeline.errors import ConfigurationError

# Weight of each dimension in the composite score; they add up to 1.
WEIGHTS: dict[str, float] = {
    "return": 0.25,
    "pop": 0.20,
    "iv_rank": 0.15,
    "liquidity": 0.15,
    "capital": 0.15,
    "safety": 0.10,
}


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear score curve over one column of the candidate frame.

    ``knots`` are (input value, score) pairs with strictly increasing inputs. Between two
    knots the score is interpolated linearly; below the first knot it is the first knot's
    score and above the last knot the last knot's score (the curve is flat outside its knots).
    """

    column: str
    knots: tuple[tuple[float, float], ...]


# The knots of every curve, in one table (docs/scoring.md shows the same numbers).
# Each curve scores 100 across the seeds' optimal range and falls off outside it; where
# "more" is also a warning (very high annualized return or IV rank, far OTM strikes with
# little premium) the curve falls on that side too.
CURVES: dict[str, Curve] = {
    # Risk-adjusted return, optimum 30-50 % annualized. Past 50 % the premium is pricing in
    # a real chance of a large move, and past 200 % it is a lottery ticket, not income.
    "return": Curve("annualized_return_pct", ((0, 0), (10, 20), (30, 100), (50, 100), (100, 40), (200, 0))),
    # Probability of profit, optimum 85 %+. A coin flip (50 %) is worth nothing to a seller.
    "pop": Curve("profit_prob_pct", ((50, 0), (70, 50), (85, 100))),
    # IV rank, optimum 60-80 %: rich premium without the extreme readings that usually mean
    # an event (earnings, a crash) is being priced in.
    "iv_rank": Curve("iv_rank_pct", ((0, 0), (60, 100), (80, 100), (100, 50))),
    # Liquidity is the mean of these two: open interest 2000+ and volume 300+.
    "liquidity_open_interest": Curve("open_interest", ((0, 0), (500, 50), (2000, 100))),
    "liquidity_volume": Curve("volume", ((0, 0), (100, 50), (300, 100))),
    # Capital efficiency, optimum 2.0 %+ return on the capital the put secures.
    "capital": Curve("return_pct", ((0, 0), (1, 40), (2, 100))),
    # Safety buffer, optimum 12-18 % OTM. At the money (0 %) there is no buffer; far beyond
    # 18 % the premium is thin for the capital tied up, so the score eases down to 60.
    "safety": Curve("otm_pct", ((0, 0), (12, 100), (18, 100), (38, 60))),
}

# Which curves make up each dimension (liquidity averages two).
DIMENSION_CURVES: dict[str, tuple[str, ...]] = {
    "return": ("return",),
    "pop": ("pop",),
    "iv_rank": ("iv_rank",),
    "liquidity": ("liquidity_open_interest", "liquidity_volume"),
    "capital": ("capital",),
    "safety": ("safety",),
}

# Lowest composite score of each grade, best first; anything below the last is an F.
GRADE_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (85.0, "A+"),
    (75.0, "A"),
    (65.0, "B"),
    (55.0, "C"),
    (45.0, "D"),
)
LOWEST_GRADE = "F"
GRADES: tuple[str, ...] = tuple(grade for _, grade in GRADE_THRESHOLDS) + (LOWEST_GRADE,)

# The composite is rounded to this many decimals only to remove the binary floating-point
# noise of the weighted sum: a row whose exact composite is 55 can sum to 54.99999999999999
# and would be a D instead of a C. No other rounding happens before grading.
SCORE_DECIMALS = 6

SCORE_COLUMNS: tuple[str, ...] = tuple(f"score_{dimension}" for dimension in WEIGHTS)

_SCORING_INPUTS: tuple[str, ...] = ("error",) + tuple(curve.column for curve in CURVES.values())
_SELECTION_INPUTS: tuple[str, ...] = (
    "row", "symbol", "expiration", "option_type", "bid", "dte", "strike",
    "underlying_price", "annualized_return_pct", "score", "error",
)


@dataclass(frozen=True)
class ScanPolicy:
    """How scored candidates become the list.

    top_n: how many candidates make the list.
    diversify: cap the picks per symbol (on by default, so one name cannot fill the list).
    max_per_symbol: the cap when diversify is on.
    min_score: candidates scoring below it are rejected (0 keeps everything).
    """

    top_n: int = 20
    diversify: bool = True
    max_per_symbol: int = 1
    min_score: float = 0.0

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ConfigurationError(f"top N must be at least 1, got {self.top_n}")
        if self.max_per_symbol < 1:
            raise ConfigurationError(f"max per symbol must be at least 1, got {self.max_per_symbol}")
        if not (math.isfinite(self.min_score) and 0 <= self.min_score <= 100):
            raise ConfigurationError(f"minimum score must be between 0 and 100, got {self.min_score}")


def grade_for_score(score: float) -> str:
    """The letter grade of a composite score (>= thresholds on the score as given)."""
    if math.isnan(score):
        raise ValueError("a NaN score has no grade")
    for threshold, grade in GRADE_THRESHOLDS:
        if score >= threshold:
            return grade
    return LOWEST_GRADE


def score_candidates(rows: pl.DataFrame) -> pl.DataFrame:
    """Add the six dimension scores, the composite ``score`` and its ``grade``.

    Input: the canonical candidate frame (all rows, valid and invalid), in any row order,
    which is kept. Rows whose ``error`` is not null get null scores and grade. In a valid
    row a missing (null or NaN) input scores 0 on its curve: no evidence is not good news.
    """
    _require_columns(rows, _SCORING_INPUTS, "score_candidates")

    curve_scores = {name: _curve_expr(pl.col(curve.column), curve.knots) for name, curve in CURVES.items()}
    dimension_scores = {
        dimension: pl.mean_horizontal([curve_scores[name] for name in names])
        if len(names) > 1
        else curve_scores[names[0]]
        for dimension, names in DIMENSION_CURVES.items()
    }
    composite = pl.sum_horizontal(
        [pl.col(f"score_{dimension}") * weight for dimension, weight in WEIGHTS.items()]
    ).round(SCORE_DECIMALS)

    return (
        rows.with_columns(
            _only_for_valid_rows(expr).alias(f"score_{dimension}") for dimension, expr in dimension_scores.items()
        )
        .with_columns(_only_for_valid_rows(composite).alias("score"))
        .with_columns(_grade_expr(pl.col("score")).alias("grade"))
    )


def select_candidates(scored: pl.DataFrame, policy: ScanPolicy = ScanPolicy()) -> pl.DataFrame:
    """Rank the scored candidates and pick the list; give every other row its reason.

    Adds ``rank`` (1..N for the picks, null otherwise), ``rejected`` and ``reason`` (null for
    picks). Reasons, first match wins: invalid row, incomplete row, not a put, no bid,
    expired, in the money, below the minimum score, the per-symbol cap, outside the top N.
    Order: picks by rank; then rejected rows by score, best first; invalid rows last (by row).
    Ties are broken by annualized return (higher first), then symbol, strike, expiration, row.
    """
    _require_columns(scored, _SELECTION_INPUTS, "select_candidates")

    # Work on the few columns the rules need; the full frame is reordered once, at the end.
    is_invalid = pl.col("error").is_not_null()
    work = (
        scored.select(
            pl.col("row", "symbol", "expiration", "option_type", "dte", "error", "annualized_return_pct"),
            *(pl.col(name).cast(pl.Float64).fill_nan(None) for name in ("bid", "strike", "underlying_price", "score")),
        )
        .with_row_index("_input_index")
        .with_columns(_is_invalid=is_invalid, _invalid_row=pl.when(is_invalid).then(pl.col("row")))
        .sort(
            ["_is_invalid", "_invalid_row", "score", "annualized_return_pct", "symbol", "strike", "expiration", "row"],
            descending=[False, False, True, True, False, False, False, False],
            nulls_last=True,
            maintain_order=True,
            # The parallel multi-key sort burns about twice the CPU for little gain on the
            # 2-core machines this runs on (measured: 72 ms vs 33 ms CPU for 100,000 rows).
            multithreaded=False,
        )
        .with_row_index("_position")
    )

    # The frame is now in ranking order, so "how many better rows" is a position in it.
    screening = _screening_rules(policy.min_score)
    work = work.with_columns(_screen_code=_first_match([condition for condition, _ in screening]))
    work = work.with_columns(_eligible=pl.col("_screen_code").is_null())
    if policy.diversify:
        symbol_place = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(["symbol", "_eligible"])
        work = work.with_columns(_capped=pl.col("_eligible") & (symbol_place > policy.max_per_symbol))
    else:
        work = work.with_columns(_capped=pl.lit(False))
    survives = pl.col("_eligible") & ~pl.col("_capped")
    work = work.with_columns(_place=survives.cast(pl.Int64).cum_sum())
    is_selected = survives & (pl.col("_place") <= policy.top_n)

    cap_code, top_n_code = len(screening), len(screening) + 1
    work = work.with_columns(
        rank=pl.when(is_selected).then(pl.col("_place")).cast(pl.Int64),
        rejected=~is_selected,
        _reason_code=pl.when(~pl.col("_eligible")).then(pl.col("_screen_code"))
        .when(pl.col("_capped")).then(pl.lit(cap_code, dtype=pl.UInt8))
        .when(~is_selected).then(pl.lit(top_n_code, dtype=pl.UInt8)),
    )

    picks = "pick" if policy.max_per_symbol == 1 else "picks"
    cap_message = pl.format(
        f"symbol cap: {{}} already has {policy.max_per_symbol} higher-scored {picks} "
        f"(max {policy.max_per_symbol} per symbol)",
        pl.col("symbol"),
    )
    top_n_message = pl.format(
        f"ranked {{}} by score, outside the top {policy.top_n}"
        + ("" if policy.diversify else " (diversification off)"),
        pl.col("_place"),
    )
    messages = [message for _, message in screening] + [cap_message, top_n_message]
    reason = _render_reasons(work, messages)

    # Picks first, then the rest, each half keeping the ranking order (no second sort needed).
    picks_first = pl.concat([pl.arg_where(~pl.col("rejected")), pl.arg_where(pl.col("rejected"))])
    order = work.select("_input_index", "rank", "rejected").with_columns(reason).select(pl.all().gather(picks_first))
    return scored[order["_input_index"]].with_columns(order["rank"], order["rejected"], order["reason"])


def _curve_expr(value: pl.Expr, knots: tuple[tuple[float, float], ...]) -> pl.Expr:
    """The curve as one when/then chain: one branch per segment, evaluated for all rows at once."""
    value = value.cast(pl.Float64).fill_nan(None)
    first_x, first_y = knots[0]
    expr = pl.when(value.is_null()).then(pl.lit(0.0)).when(value <= first_x).then(pl.lit(float(first_y)))
    for (x_from, y_from), (x_to, y_to) in zip(knots, knots[1:]):
        slope = (y_to - y_from) / (x_to - x_from)
        # Strict "<" so a value exactly on a knot takes the next segment's start: the knot's
        # own score, with no rounding error from the interpolation.
        expr = expr.when(value < x_to).then(y_from + (value - x_from) * slope)
    # The clip absorbs interpolation rounding (e.g. -1e-15 on a falling segment).
    return expr.otherwise(pl.lit(float(knots[-1][1]))).clip(0.0, 100.0)


def _only_for_valid_rows(score: pl.Expr) -> pl.Expr:
    """The score where the row is valid, null where the parser found it invalid."""
    return pl.when(pl.col("error").is_null()).then(score).cast(pl.Float64)


def _grade_expr(score: pl.Expr) -> pl.Expr:
    expr = pl.when(score.is_null()).then(pl.lit(None, dtype=pl.String))
    for threshold, grade in GRADE_THRESHOLDS:
        expr = expr.when(score >= threshold).then(pl.lit(grade))
    return expr.otherwise(pl.lit(LOWEST_GRADE))


def _screening_rules(min_score: float) -> list[tuple[pl.Expr, pl.Expr]]:
    """Why a row cannot be picked at all: (condition, message) in priority order.

    Each condition is only asked of rows that passed the ones before it, so later rules can
    assume the earlier ones (e.g. that the fields are present). The float columns have had
    NaN turned into null.
    """
    required_fields = ("symbol", "option_type", "bid", "dte", "strike", "underlying_price", "score")
    missing_fields = pl.concat_str(
        [pl.when(pl.col(name).is_null()).then(pl.lit(name)) for name in required_fields],
        separator=", ",
        ignore_nulls=True,
    )
    # Shown truncated (not rounded) to 2 decimals so a score just under the minimum never
    # reads as equal to it.
    score_shown = (pl.col("score") * 100).floor() / 100
    return [
        (pl.col("error").is_not_null(), pl.format("invalid row: {}", pl.col("error"))),
        (
            pl.any_horizontal([pl.col(name).is_null() for name in required_fields]),
            pl.format("incomplete row: no value for {}", missing_fields),
        ),
        (pl.col("option_type") != "put", pl.format("not a put (type '{}')", pl.col("option_type"))),
        (pl.col("bid") <= 0, pl.format("no bid (bid {})", pl.col("bid"))),
        (pl.col("dte") <= 0, pl.format("expires on or before the export date (DTE {})", pl.col("dte"))),
        (
            pl.col("strike") >= pl.col("underlying_price"),
            pl.format(
                "in the money: strike {} at or above the underlying price {}",
                pl.col("strike"),
                pl.col("underlying_price"),
            ),
        ),
        (
            pl.col("score") < min_score,
            pl.format(f"score {{}} below the minimum score {float(min_score)}", score_shown),
        ),
    ]


def _first_match(conditions: list[pl.Expr]) -> pl.Expr:
    """Index (UInt8) of the first true condition of each row, null when none is."""
    expr = pl.when(conditions[0]).then(pl.lit(0, dtype=pl.UInt8))
    for index, condition in enumerate(conditions[1:], start=1):
        expr = expr.when(condition).then(pl.lit(index, dtype=pl.UInt8))
    return expr.otherwise(pl.lit(None, dtype=pl.UInt8))


def _render_reasons(work: pl.DataFrame, messages: list[pl.Expr]) -> pl.Series:
    """The ``reason`` column: message number ``_reason_code`` of each row, null where none.

    Each message is formatted only for the rows it applies to (a when/then chain would
    format every message for every row, which is most of the selection's run time).
    """
    reason = pl.repeat(None, work.height, dtype=pl.String, eager=True).alias("reason")
    for code, message in enumerate(messages):
        # Lazy, so only the columns the message reads are filtered.
        rendered = work.lazy().filter(pl.col("_reason_code") == code).select("_position", message).collect()
        if rendered.height:
            reason.scatter(rendered["_position"], rendered.to_series(1))
    return reason


def _require_columns(frame: pl.DataFrame, columns: tuple[str, ...], caller: str) -> None:
    missing = [column for column in dict.fromkeys(columns) if column not in frame.columns]
    if missing:
        raise ValueError(f"{caller} needs the canonical candidate columns; missing: {', '.join(missing)}")
