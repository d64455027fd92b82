"""The contract of the scored and selected candidates, checked before they reach the ledger."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from trading_pipeline.core.scoring import GRADES


class ScoredCandidates(pa.DataFrameModel):
    """One row per export row: its scores, grade, and whether it made the list (and why not)."""

    row: int = pa.Field(ge=2)
    symbol: str = pa.Field(nullable=True)
    score: float = pa.Field(ge=0, le=100, nullable=True)
    score_return: float = pa.Field(ge=0, le=100, nullable=True)
    score_pop: float = pa.Field(ge=0, le=100, nullable=True)
    score_iv_rank: float = pa.Field(ge=0, le=100, nullable=True)
    score_liquidity: float = pa.Field(ge=0, le=100, nullable=True)
    score_capital: float = pa.Field(ge=0, le=100, nullable=True)
    score_safety: float = pa.Field(ge=0, le=100, nullable=True)
    grade: str = pa.Field(isin=list(GRADES), nullable=True)
    rank: int = pa.Field(ge=1, nullable=True)
    rejected: bool
    reason: str = pa.Field(nullable=True)

    class Config:
        strict = False  # the canonical candidate columns ride along unchecked here

    @pa.dataframe_check
    def every_rejection_has_a_reason(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("rejected") == pl.col("reason").is_not_null())

    @pa.dataframe_check
    def ranks_are_one_to_n(cls, data: pa.PolarsData) -> pl.LazyFrame:
        ranks = pl.col("rank").drop_nulls()
        return data.lazyframe.select(
            (ranks.sort() == pl.int_range(1, ranks.len() + 1, dtype=pl.Int64)).all()
        )

    @pa.dataframe_check
    def selected_rows_are_ranked_and_valid(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("rejected") | (pl.col("rank").is_not_null() & pl.col("score").is_not_null())
        )
