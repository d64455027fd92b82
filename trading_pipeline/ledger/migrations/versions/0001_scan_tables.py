"""Barchart scan imports and their scored candidates.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Written out column by column (not ``metadata.create_all``): a migration is a frozen
snapshot, and schema.py will keep changing after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partition_key", sa.String(255), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("export_date", sa.Date(), nullable=False),
        sa.Column("export_date_source", sa.String(16), nullable=False),
        sa.Column("downloaded_at", sa.Text(), nullable=True),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("valid_rows", sa.Integer(), nullable=False),
        sa.Column("invalid_rows", sa.Integer(), nullable=False),
        sa.Column("selected_rows", sa.Integer(), nullable=False),
        sa.Column("rejected_rows", sa.Integer(), nullable=False),
        sa.Column("top_n", sa.Integer(), nullable=False),
        sa.Column("diversify", sa.Boolean(), nullable=False),
        sa.Column("max_per_symbol", sa.Integer(), nullable=False),
        sa.Column("min_score", sa.Float(), nullable=False),
        sa.Column("dagster_run_id", sa.String(64), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scan_imports"),
        sa.UniqueConstraint("partition_key", name="uq_scan_imports_partition_key"),
        sa.CheckConstraint(
            "export_date_source IN ('footer', 'file date')",
            name="ck_scan_imports_export_date_source",
        ),
    )
    op.create_table(
        "scan_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_import_id", sa.Integer(), nullable=False),
        sa.Column("file_row", sa.Integer(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=True),
        sa.Column("underlying_price", sa.Float(), nullable=True),
        sa.Column("expiration", sa.Date(), nullable=True),
        sa.Column("dte_reported", sa.Integer(), nullable=True),
        sa.Column("dte", sa.Integer(), nullable=True),
        sa.Column("strike", sa.Float(), nullable=True),
        sa.Column("option_type", sa.String(8), nullable=True),
        sa.Column("moneyness_pct", sa.Float(), nullable=True),
        sa.Column("bid", sa.Float(), nullable=True),
        sa.Column("breakeven", sa.Float(), nullable=True),
        sa.Column("breakeven_pct", sa.Float(), nullable=True),
        sa.Column("volume", sa.BigInteger(), nullable=True),
        sa.Column("open_interest", sa.BigInteger(), nullable=True),
        sa.Column("iv_rank_pct", sa.Float(), nullable=True),
        sa.Column("delta", sa.Float(), nullable=True),
        sa.Column("return_pct_reported", sa.Float(), nullable=True),
        sa.Column("annualized_return_pct_reported", sa.Float(), nullable=True),
        sa.Column("profit_prob_pct", sa.Float(), nullable=True),
        sa.Column("otm_pct", sa.Float(), nullable=True),
        sa.Column("return_pct", sa.Float(), nullable=True),
        sa.Column("annualized_return_pct", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("score_return", sa.Float(), nullable=True),
        sa.Column("score_pop", sa.Float(), nullable=True),
        sa.Column("score_iv_rank", sa.Float(), nullable=True),
        sa.Column("score_liquidity", sa.Float(), nullable=True),
        sa.Column("score_capital", sa.Float(), nullable=True),
        sa.Column("score_safety", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("grade", sa.String(2), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scan_candidates"),
        sa.ForeignKeyConstraint(
            ["scan_import_id"],
            ["scan_imports.id"],
            name="fk_scan_candidates_scan_import_id_scan_imports",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_scan_candidates_scan_import_id_rank",
        "scan_candidates",
        ["scan_import_id", "rank"],
    )


def downgrade() -> None:
    op.drop_index("ix_scan_candidates_scan_import_id_rank", table_name="scan_candidates")
    op.drop_table("scan_candidates")
    op.drop_table("scan_imports")
