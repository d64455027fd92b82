"""Trade history (TAAD): Flex import sessions, raw executions and option events (immutable,
their raw text compressed per session in flex_raw_chunks),
derived trade lifecycles (with the trade each was promoted to) and lifecycle gaps.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Rendered once from schema.py by Alembic's autogenerate and frozen here: schema.py will keep
changing after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('flex_import_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', _utc(), nullable=False),
    sa.Column('finished_at', _utc(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('file_name', sa.Text(), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=True),
    sa.Column('accounts', sa.JSON(), nullable=True),
    sa.Column('statement_kind', sa.String(length=24), nullable=False),
    sa.Column('from_date', sa.Date(), nullable=True),
    sa.Column('to_date', sa.Date(), nullable=True),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('new_count', sa.Integer(), nullable=False),
    sa.Column('duplicate_count', sa.Integer(), nullable=False),
    sa.Column('skipped_count', sa.Integer(), nullable=False),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('option_event_count', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.CheckConstraint('"source" IN (\'file\', \'web_service\')', name=op.f('ck_flex_import_sessions_source')),
    sa.CheckConstraint('"statement_kind" IN (\'activity\', \'trade_confirmation\')', name=op.f('ck_flex_import_sessions_statement_kind')),
    sa.CheckConstraint('"status" IN (\'completed\', \'failed\')', name=op.f('ck_flex_import_sessions_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flex_import_sessions'))
    )
    op.create_index('ix_flex_import_sessions_started_at', 'flex_import_sessions', ['started_at'], unique=False)
    op.create_table('lifecycle_gaps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('underlying', sa.String(length=32), nullable=False),
    sa.Column('right', sa.String(length=1), nullable=False),
    sa.Column('strike', sa.Float(), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=False),
    sa.Column('side', sa.String(length=5), nullable=False),
    sa.Column('exec_id', sa.String(length=64), nullable=False),
    sa.Column('trade_date', sa.Date(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('exit_type', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('built_at', _utc(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lifecycle_gaps'))
    )
    op.create_table('flex_raw_chunks',
    sa.Column('import_session_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('first_row', sa.Integer(), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.CheckConstraint('"kind" IN (\'execution\', \'option_event\')', name=op.f('ck_flex_raw_chunks_kind')),
    sa.ForeignKeyConstraint(['import_session_id'], ['flex_import_sessions.id'], name=op.f('fk_flex_raw_chunks_import_session_id_flex_import_sessions')),
    sa.PrimaryKeyConstraint('import_session_id', 'kind', 'first_row', name=op.f('pk_flex_raw_chunks'))
    )
    op.create_table('flex_executions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('import_session_id', sa.Integer(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('raw_row', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('exec_id', sa.String(length=64), nullable=False),
    sa.Column('is_cancellation', sa.Boolean(), nullable=False),
    sa.Column('trade_id', sa.String(length=64), nullable=True),
    sa.Column('orig_trade_id', sa.String(length=64), nullable=True),
    sa.Column('order_id', sa.String(length=64), nullable=True),
    sa.Column('asset_category', sa.String(length=16), nullable=True),
    sa.Column('symbol', sa.Text(), nullable=True),
    sa.Column('underlying', sa.String(length=32), nullable=True),
    sa.Column('con_id', sa.BigInteger(), nullable=True),
    sa.Column('put_call', sa.String(length=1), nullable=True),
    sa.Column('strike', sa.Float(), nullable=True),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('multiplier', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('buy_sell', sa.String(length=4), nullable=True),
    sa.Column('quantity', sa.Float(), nullable=True),
    sa.Column('price', sa.Float(), nullable=True),
    sa.Column('commission', sa.Float(), nullable=True),
    sa.Column('open_close', sa.String(length=1), nullable=True),
    sa.Column('event', sa.String(length=16), nullable=True),
    sa.Column('date_time_utc', _utc(), nullable=True),
    sa.Column('trade_date', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['import_session_id'], ['flex_import_sessions.id'], name=op.f('fk_flex_executions_import_session_id_flex_import_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flex_executions')),
    sa.UniqueConstraint('exec_id', 'is_cancellation', name='uq_flex_executions_exec_id_is_cancellation')
    )
    op.create_table('flex_option_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('import_session_id', sa.Integer(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('raw_row', sa.Integer(), nullable=False),
    sa.Column('event_key', sa.String(length=160), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('transaction_type', sa.String(length=32), nullable=True),
    sa.Column('asset_category', sa.String(length=16), nullable=True),
    sa.Column('symbol', sa.Text(), nullable=True),
    sa.Column('underlying', sa.String(length=32), nullable=True),
    sa.Column('con_id', sa.BigInteger(), nullable=True),
    sa.Column('put_call', sa.String(length=1), nullable=True),
    sa.Column('strike', sa.Float(), nullable=True),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('multiplier', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('event_date', sa.Date(), nullable=True),
    sa.Column('quantity', sa.Float(), nullable=True),
    sa.Column('trade_price', sa.Float(), nullable=True),
    sa.Column('mark_price', sa.Float(), nullable=True),
    sa.Column('realized_pnl', sa.Float(), nullable=True),
    sa.Column('trade_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['import_session_id'], ['flex_import_sessions.id'], name=op.f('fk_flex_option_events_import_session_id_flex_import_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flex_option_events')),
    sa.UniqueConstraint('event_key', name=op.f('uq_flex_option_events_event_key'))
    )
    op.create_table('trade_lifecycles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lifecycle_id', sa.String(length=160), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('underlying', sa.String(length=32), nullable=False),
    sa.Column('right', sa.String(length=1), nullable=False),
    sa.Column('strike', sa.Float(), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=False),
    sa.Column('side', sa.String(length=5), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('open_price', sa.Float(), nullable=True),
    sa.Column('close_price', sa.Float(), nullable=True),
    sa.Column('exit_type', sa.String(length=16), nullable=False),
    sa.Column('open_date', sa.Date(), nullable=True),
    sa.Column('close_date', sa.Date(), nullable=True),
    sa.Column('multiplier', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('gross_pnl', sa.Float(), nullable=True),
    sa.Column('commissions', sa.Float(), nullable=True),
    sa.Column('net_pnl', sa.Float(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('flag', sa.String(length=64), nullable=True),
    sa.Column('open_exec_ids', sa.JSON(), nullable=False),
    sa.Column('close_exec_ids', sa.JSON(), nullable=False),
    sa.Column('opening_unit', sa.String(length=96), nullable=True),
    sa.Column('built_at', _utc(), nullable=False),
    sa.Column('promoted_trade_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('"exit_type" = \'btc\' OR "exit_type" = \'stc\' OR "exit_type" = \'expiration\' OR "exit_type" = \'assignment\' OR "exit_type" = \'exercise\' OR "exit_type" = \'open\'', name=op.f('ck_trade_lifecycles_exit_type')),
    sa.CheckConstraint('"right" = \'P\' OR "right" = \'C\'', name=op.f('ck_trade_lifecycles_right')),
    sa.CheckConstraint('"side" = \'short\' OR "side" = \'long\'', name=op.f('ck_trade_lifecycles_side')),
    sa.ForeignKeyConstraint(['promoted_trade_id'], ['trades.id'], name=op.f('fk_trade_lifecycles_promoted_trade_id_trades')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trade_lifecycles')),
    sa.UniqueConstraint('lifecycle_id', name=op.f('uq_trade_lifecycles_lifecycle_id'))
    )


def downgrade() -> None:
    op.drop_table('trade_lifecycles')
    op.drop_table('flex_option_events')
    op.drop_table('flex_executions')
    op.drop_table('flex_raw_chunks')
    op.drop_table('lifecycle_gaps')
    op.drop_index('ix_flex_import_sessions_started_at', table_name='flex_import_sessions')
    op.drop_table('flex_import_sessions')
