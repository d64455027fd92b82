"""pandera (polars backend) schemas of the frames the ingest layer hands on.

:class:`BarchartCandidates` describes the VALID rows of the canonical Barchart candidate
frame (``BarchartExport.valid_rows``): a row that passed the parser. It is the check that
blocks bad data before scoring and the ledger; a failure here means the parser let
something through, so it is a bug, not a user error.

Extra columns are allowed (``strict = False``) so the same schema also checks the scored
frame, which adds score columns to the canonical ones.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.polars import PolarsData

from trading_pipeline.ingest.barchart import SYMBOL_PATTERN

PERCENT_RANGE = {"ge": 0.0, "le": 100.0}


class BarchartCandidates(pa.DataFrameModel):
    """Valid rows of a parsed Barchart naked put screener main-view export."""

    row: pl.Int64 = pa.Field(ge=2)  # the header is line 1
    symbol: pl.String = pa.Field(str_matches=SYMBOL_PATTERN)
    underlying_price: pl.Float64 = pa.Field(gt=0)
    expiration: pl.Date
    dte_reported: pl.Int64 = pa.Field(ge=0)
    dte: pl.Int64 = pa.Field(ge=0)
    strike: pl.Float64 = pa.Field(gt=0)
    option_type: pl.String = pa.Field(isin=["put", "call"])
    moneyness_pct: pl.Float64
    bid: pl.Float64 = pa.Field(ge=0)
    breakeven: pl.Float64
    breakeven_pct: pl.Float64
    volume: pl.Int64 = pa.Field(ge=0)
    open_interest: pl.Int64 = pa.Field(ge=0)
    iv_rank_pct: pl.Float64 = pa.Field(**PERCENT_RANGE)
    delta: pl.Float64 = pa.Field(ge=-1.0, le=1.0)
    return_pct_reported: pl.Float64
    annualized_return_pct_reported: pl.Float64
    profit_prob_pct: pl.Float64 = pa.Field(**PERCENT_RANGE)
    otm_pct: pl.Float64
    return_pct: pl.Float64 = pa.Field(ge=0)
    # null when the option expires on the export day (dte 0): nothing to annualize over
    annualized_return_pct: pl.Float64 = pa.Field(nullable=True, ge=0)
    error: pl.String = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check("error", name="error_is_null")
    def error_is_null(cls, data: PolarsData) -> pl.LazyFrame:
        """A valid row carries no error text."""
        return data.lazyframe.select(pl.col(data.key).is_null())

    @pa.check("annualized_return_pct", name="annualized_when_days_remain")
    def annualized_when_days_remain(cls, data: PolarsData) -> pl.LazyFrame:
        """Null only where there are no days left (dte 0)."""
        return data.lazyframe.select(pl.col(data.key).is_not_null() | (pl.col("dte") == 0))

    @pa.dataframe_check(name="bid_below_strike")
    def bid_below_strike(cls, data: PolarsData) -> pl.LazyFrame:
        """A put's bid below its strike, or the return on capital is meaningless."""
        return data.lazyframe.select(pl.col("bid") < pl.col("strike"))

    @pa.dataframe_check(name="put_delta_not_positive")
    def put_delta_not_positive(cls, data: PolarsData) -> pl.LazyFrame:
        """Puts are stored with negative delta, calls with positive."""
        return data.lazyframe.select(
            pl.when(pl.col("option_type") == "put").then(pl.col("delta") <= 0).otherwise(pl.col("delta") >= 0)
        )
