"""Positions, snapshots and reconciliation: trades (an option position from opening to
closing, whatever way it came in), stock positions from assignments, entry and exit
snapshots (their fields as one JSON document), daily position snapshots, reconciliation runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Rendered once from schema.py by Alembic's autogenerate and frozen here: schema.py will keep
changing after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _money() -> sa.Numeric:
    return sa.Numeric(18, 6)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('reconciliation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('started_at', _utc(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('discrepancies', sa.Integer(), nullable=False),
    sa.Column('applied', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_runs'))
    )
    op.create_index('ix_reconciliation_runs_started_at', 'reconciliation_runs', ['started_at'], unique=False)
    op.create_table('trades',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trade_key', sa.String(length=160), nullable=False),
    sa.Column('trade_source', sa.String(length=16), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('con_id', sa.BigInteger(), nullable=True),
    sa.Column('right', sa.String(length=1), nullable=False),
    sa.Column('strike', _money(), nullable=False),
    sa.Column('expiration', sa.Date(), nullable=False),
    sa.Column('multiplier', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('side', sa.String(length=5), nullable=False),
    sa.Column('contracts', sa.Integer(), nullable=False),
    sa.Column('open_contracts', sa.Integer(), nullable=False),
    sa.Column('entry_price', _money(), nullable=False),
    sa.Column('entry_time', _utc(), nullable=False),
    sa.Column('entry_commission', _money(), nullable=True),
    sa.Column('staged_opportunity_id', sa.Integer(), nullable=True),
    sa.Column('entry_intent_id', sa.Integer(), nullable=True),
    sa.Column('strike_selection_method', sa.String(length=24), nullable=True),
    sa.Column('original_strike', _money(), nullable=True),
    sa.Column('live_delta', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('exit_price', _money(), nullable=True),
    sa.Column('exit_time', _utc(), nullable=True),
    sa.Column('exit_reason', sa.String(length=16), nullable=True),
    sa.Column('exit_commission', _money(), nullable=True),
    sa.Column('exit_intent_id', sa.Integer(), nullable=True),
    sa.Column('gross_pnl', _money(), nullable=True),
    sa.Column('net_pnl', _money(), nullable=True),
    sa.Column('lifecycle_id', sa.String(length=160), nullable=True),
    sa.Column('created_at', _utc(), nullable=False),
    sa.Column('updated_at', _utc(), nullable=False),
    sa.CheckConstraint('"contracts" > 0', name=op.f('ck_trades_contracts')),
    sa.CheckConstraint('"entry_price" >= 0', name=op.f('ck_trades_entry_price')),
    sa.CheckConstraint('"exit_reason" IN (\'profit_target\', \'stop_loss\', \'time_exit\', \'expiration\', \'assignment\', \'exercise\', \'btc\', \'stc\', \'manual\', \'reconciliation\')', name=op.f('ck_trades_exit_reason')),
    sa.CheckConstraint('"multiplier" > 0', name=op.f('ck_trades_multiplier')),
    sa.CheckConstraint('"open_contracts" >= 0 AND "open_contracts" <= "contracts"', name=op.f('ck_trades_open_contracts')),
    sa.CheckConstraint('"right" IN (\'P\', \'C\')', name=op.f('ck_trades_right')),
    sa.CheckConstraint('"side" IN (\'short\', \'long\')', name=op.f('ck_trades_side')),
    sa.CheckConstraint('"status" <> \'closed\' OR "exit_reason" IS NOT NULL', name=op.f('ck_trades_closed_has_reason')),
    sa.CheckConstraint('"status" IN (\'open\', \'closed\')', name=op.f('ck_trades_status')),
    sa.CheckConstraint('"strike" > 0', name=op.f('ck_trades_strike')),
    sa.CheckConstraint('"trade_source" IN (\'execution\', \'ibkr_import\', \'reconciliation\', \'manual\')', name=op.f('ck_trades_trade_source')),
    sa.ForeignKeyConstraint(['entry_intent_id'], ['order_intents.id'], name=op.f('fk_trades_entry_intent_id_order_intents')),
    sa.ForeignKeyConstraint(['exit_intent_id'], ['order_intents.id'], name=op.f('fk_trades_exit_intent_id_order_intents')),
    sa.ForeignKeyConstraint(['staged_opportunity_id'], ['staged_opportunities.id'], name=op.f('fk_trades_staged_opportunity_id_staged_opportunities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trades')),
    sa.UniqueConstraint('trade_key', name=op.f('uq_trades_trade_key'))
    )
    op.create_index('ix_trades_status', 'trades', ['status'], unique=False)
    op.create_index('ix_trades_symbol', 'trades', ['symbol'], unique=False)
    op.create_index('ix_trades_trade_source', 'trades', ['trade_source'], unique=False)
    op.create_table('entry_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trade_id', sa.Integer(), nullable=False),
    sa.Column('captured_at', _utc(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('data_quality_score', sa.Float(), nullable=True),
    sa.Column('critical_fields_present', sa.Integer(), nullable=True),
    sa.Column('fields_present', sa.Integer(), nullable=True),
    sa.Column('fields', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint('"source" IN (\'live\', \'enrichment\')', name=op.f('ck_entry_snapshots_source')),
    sa.CheckConstraint('"status" IN (\'captured\', \'partial\', \'failed\', \'enriched\')', name=op.f('ck_entry_snapshots_status')),
    sa.ForeignKeyConstraint(['trade_id'], ['trades.id'], name=op.f('fk_entry_snapshots_trade_id_trades'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entry_snapshots')),
    sa.UniqueConstraint('trade_id', name=op.f('uq_entry_snapshots_trade_id'))
    )
    op.create_table('exit_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trade_id', sa.Integer(), nullable=False),
    sa.Column('captured_at', _utc(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trade_quality_score', sa.Float(), nullable=True),
    sa.Column('fields_present', sa.Integer(), nullable=True),
    sa.Column('fields', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint('"source" IN (\'live\', \'enrichment\')', name=op.f('ck_exit_snapshots_source')),
    sa.CheckConstraint('"status" IN (\'captured\', \'partial\', \'failed\', \'enriched\')', name=op.f('ck_exit_snapshots_status')),
    sa.ForeignKeyConstraint(['trade_id'], ['trades.id'], name=op.f('fk_exit_snapshots_trade_id_trades'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exit_snapshots')),
    sa.UniqueConstraint('trade_id', name=op.f('uq_exit_snapshots_trade_id'))
    )
    op.create_table('position_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trade_id', sa.Integer(), nullable=False),
    sa.Column('trading_day', sa.Date(), nullable=False),
    sa.Column('captured_at', _utc(), nullable=False),
    sa.Column('current_premium', _money(), nullable=True),
    sa.Column('current_pnl', _money(), nullable=True),
    sa.Column('current_pnl_pct', sa.Float(), nullable=True),
    sa.Column('dte_remaining', sa.Integer(), nullable=True),
    sa.Column('delta', sa.Float(), nullable=True),
    sa.Column('gamma', sa.Float(), nullable=True),
    sa.Column('theta', sa.Float(), nullable=True),
    sa.Column('vega', sa.Float(), nullable=True),
    sa.Column('iv', sa.Float(), nullable=True),
    sa.Column('stock_price', _money(), nullable=True),
    sa.Column('distance_to_strike_pct', sa.Float(), nullable=True),
    sa.Column('vix', sa.Float(), nullable=True),
    sa.Column('spy_price', _money(), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['trade_id'], ['trades.id'], name=op.f('fk_position_snapshots_trade_id_trades'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_position_snapshots')),
    sa.UniqueConstraint('trade_id', 'trading_day', name='uq_position_snapshots_trade_day')
    )
    op.create_index('ix_position_snapshots_trading_day', 'position_snapshots', ['trading_day'], unique=False)
    op.create_table('stock_positions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_trade_id', sa.Integer(), nullable=True),
    sa.Column('account', sa.String(length=32), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('cost_price', _money(), nullable=False),
    sa.Column('opened_at', _utc(), nullable=False),
    sa.Column('closed_at', _utc(), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.CheckConstraint('"quantity" <> 0', name=op.f('ck_stock_positions_quantity')),
    sa.CheckConstraint('"status" IN (\'open\', \'closed\')', name=op.f('ck_stock_positions_status')),
    sa.ForeignKeyConstraint(['source_trade_id'], ['trades.id'], name=op.f('fk_stock_positions_source_trade_id_trades')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_positions')),
    sa.UniqueConstraint('source_trade_id', name=op.f('uq_stock_positions_source_trade_id'))
    )


def downgrade() -> None:
    op.drop_table('stock_positions')
    op.drop_index('ix_position_snapshots_trading_day', table_name='position_snapshots')
    op.drop_table('position_snapshots')
    op.drop_table('exit_snapshots')
    op.drop_table('entry_snapshots')
    op.drop_index('ix_trades_trade_source', table_name='trades')
    op.drop_index('ix_trades_symbol', table_name='trades')
    op.drop_index('ix_trades_status', table_name='trades')
    op.drop_table('trades')
    op.drop_index('ix_reconciliation_runs_started_at', table_name='reconciliation_runs')
    op.drop_table('reconciliation_runs')
