"""Execution tables: staged opportunities, order intents, broker orders and their events,
fills, trading state, circuit breaker trips, daily counters, approvals, execution runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02

Written out column by column (not ``metadata.create_all``): a migration is a frozen
snapshot, and schema.py will keep changing after it. Money columns are Numeric(18, 6)
(schema.Money), conIds and broker ids BIGINT, times timezone-aware.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _money() -> sa.Numeric:
    return sa.Numeric(18, 6)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f'"{column}" IN ({listed})'


STAGED_STATUSES = (
    "STAGED", "VALIDATED", "STALE", "ADJUSTED", "ABANDONED", "CANCELLED",
    "SUBMITTED", "WORKING", "PARTIAL", "FILLED", "EXPIRED", "FAILED",
)
INTENT_PURPOSES = ("ENTRY", "REPLACE_REMAINDER", "EXIT", "LIQUIDATE")
INTENT_STATUSES = (
    "INTENDED", "SENT", "ACKNOWLEDGED", "PARTIAL", "FILLED", "CANCELLED", "REJECTED", "UNKNOWN",
)


def upgrade() -> None:
    op.create_table(
        "staged_opportunities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("scan_import_id", sa.Integer(), nullable=True),
        sa.Column("scan_candidate_id", sa.Integer(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("sector", sa.String(64), nullable=True),
        sa.Column("expiration", sa.Date(), nullable=False),
        sa.Column("strike", _money(), nullable=False),
        sa.Column("right", sa.String(1), nullable=False),
        sa.Column("contracts", sa.Integer(), nullable=False),
        sa.Column("staged_stock_price", _money(), nullable=True),
        sa.Column("staged_bid", _money(), nullable=True),
        sa.Column("staged_ask", _money(), nullable=True),
        sa.Column("staged_mid", _money(), nullable=True),
        sa.Column("limit_price", _money(), nullable=True),
        sa.Column("delta", sa.Float(), nullable=True),
        sa.Column("iv", sa.Float(), nullable=True),
        sa.Column("otm_pct", sa.Float(), nullable=True),
        sa.Column("dte", sa.Integer(), nullable=True),
        sa.Column("margin_per_contract", _money(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("validation_reasons", sa.JSON(), nullable=True),
        sa.Column("strike_selection_outcome", sa.String(16), nullable=True),
        sa.Column("original_strike", _money(), nullable=True),
        sa.Column("live_delta", sa.Float(), nullable=True),
        sa.Column("strike_selection_method", sa.String(16), nullable=True),
        sa.Column("strike_selection_reason", sa.Text(), nullable=True),
        sa.Column("dagster_run_id", sa.String(64), nullable=True),
        sa.Column("staged_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staged_opportunities"),
        sa.ForeignKeyConstraint(
            ["scan_import_id"], ["scan_imports.id"],
            name="fk_staged_opportunities_scan_import_id_scan_imports", ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["scan_candidate_id"], ["scan_candidates.id"],
            name="fk_staged_opportunities_scan_candidate_id_scan_candidates", ondelete="SET NULL",
        ),
        sa.CheckConstraint(_one_of("status", STAGED_STATUSES), name="ck_staged_opportunities_status"),
        sa.CheckConstraint(_one_of("right", ("P", "C")), name="ck_staged_opportunities_right"),
        sa.CheckConstraint('"contracts" >= 0', name="ck_staged_opportunities_contracts"),
        sa.CheckConstraint('"strike" > 0', name="ck_staged_opportunities_strike"),
        sa.CheckConstraint(
            _one_of("strike_selection_outcome", ("SELECTED", "UNCHANGED", "ABANDONED")),
            name="ck_staged_opportunities_strike_selection_outcome",
        ),
    )
    op.create_index(
        "ix_staged_opportunities_session_day_status", "staged_opportunities", ["session_day", "status"]
    )

    op.create_table(
        "execution_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dagster_run_id", sa.String(64), nullable=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_execution_runs"),
        sa.UniqueConstraint("dagster_run_id", name="uq_execution_runs_dagster_run_id"),
        sa.CheckConstraint(
            _one_of("status", ("RUNNING", "SUCCEEDED", "FAILED", "ABORTED")), name="ck_execution_runs_status"
        ),
    )
    op.create_index("ix_execution_runs_session_day", "execution_runs", ["session_day"])

    op.create_table(
        "order_intents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_ref", sa.String(40), nullable=False),
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("purpose", sa.String(24), nullable=False),
        sa.Column("staged_opportunity_id", sa.Integer(), nullable=True),
        sa.Column("parent_intent_id", sa.Integer(), nullable=True),
        sa.Column("execution_run_id", sa.Integer(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("sec_type", sa.String(8), nullable=False),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("expiration", sa.Date(), nullable=True),
        sa.Column("strike", _money(), nullable=True),
        sa.Column("right", sa.String(1), nullable=True),
        sa.Column("action", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("limit_price", _money(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("account", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filled_quantity", sa.Integer(), nullable=False),
        sa.Column("avg_fill_price", _money(), nullable=True),
        sa.Column("broker_order_id", sa.BigInteger(), nullable=True),
        sa.Column("broker_perm_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("sent_at", _utc(), nullable=True),
        sa.Column("acknowledged_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("dagster_run_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_order_intents"),
        sa.UniqueConstraint("order_ref", name="uq_order_intents_order_ref"),
        sa.ForeignKeyConstraint(
            ["staged_opportunity_id"], ["staged_opportunities.id"],
            name="fk_order_intents_staged_opportunity_id_staged_opportunities",
        ),
        sa.ForeignKeyConstraint(
            ["parent_intent_id"], ["order_intents.id"], name="fk_order_intents_parent_intent_id_order_intents"
        ),
        sa.ForeignKeyConstraint(
            ["execution_run_id"], ["execution_runs.id"], name="fk_order_intents_execution_run_id_execution_runs"
        ),
        sa.CheckConstraint(_one_of("purpose", INTENT_PURPOSES), name="ck_order_intents_purpose"),
        sa.CheckConstraint(_one_of("status", INTENT_STATUSES), name="ck_order_intents_status"),
        sa.CheckConstraint(_one_of("sec_type", ("OPT", "STK")), name="ck_order_intents_sec_type"),
        sa.CheckConstraint(_one_of("action", ("BUY", "SELL")), name="ck_order_intents_action"),
        sa.CheckConstraint(
            _one_of("order_type", ("LMT", "MKT", "ADAPTIVE", "MIDPRICE")), name="ck_order_intents_order_type"
        ),
        sa.CheckConstraint(_one_of("right", ("P", "C")), name="ck_order_intents_right"),
        sa.CheckConstraint('"quantity" > 0', name="ck_order_intents_quantity"),
        sa.CheckConstraint('"filled_quantity" >= 0', name="ck_order_intents_filled_quantity"),
        sa.CheckConstraint('"limit_price" > 0', name="ck_order_intents_limit_price"),
        sa.CheckConstraint(
            "\"order_type\" <> 'LMT' OR \"limit_price\" IS NOT NULL", name="ck_order_intents_limit_needs_price"
        ),
        sa.CheckConstraint(
            "\"sec_type\" <> 'OPT' OR (\"expiration\" IS NOT NULL AND \"strike\" IS NOT NULL "
            "AND \"right\" IS NOT NULL)",
            name="ck_order_intents_option_terms",
        ),
    )
    op.create_index("ix_order_intents_session_day_status", "order_intents", ["session_day", "status"])
    op.create_index("ix_order_intents_status", "order_intents", ["status"])
    op.create_index("ix_order_intents_staged_opportunity_id", "order_intents", ["staged_opportunity_id"])

    op.create_table(
        "broker_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("perm_id", sa.BigInteger(), nullable=False),
        sa.Column("broker_order_id", sa.BigInteger(), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("intent_id", sa.Integer(), nullable=True),
        sa.Column("order_ref", sa.String(255), nullable=True),
        sa.Column("account", sa.String(32), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=True),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(4), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("order_type", sa.String(16), nullable=True),
        sa.Column("limit_price", _money(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("filled", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("avg_fill_price", _money(), nullable=True),
        sa.Column("first_seen_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_broker_orders"),
        sa.UniqueConstraint("perm_id", name="uq_broker_orders_perm_id"),
        sa.ForeignKeyConstraint(["intent_id"], ["order_intents.id"], name="fk_broker_orders_intent_id_order_intents"),
    )
    op.create_index("ix_broker_orders_intent_id", "broker_orders", ["intent_id"])

    op.create_table(
        "order_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("intent_id", sa.Integer(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("event_time", _utc(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("filled", sa.Integer(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("avg_fill_price", _money(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(["intent_id"], ["order_intents.id"], name="fk_order_events_intent_id_order_intents"),
        sa.CheckConstraint(
            _one_of("source", ("ledger", "broker", "reconciliation")), name="ck_order_events_source"
        ),
    )
    op.create_index("ix_order_events_intent_id", "order_events", ["intent_id"])

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exec_id", sa.String(64), nullable=False),
        sa.Column("intent_id", sa.Integer(), nullable=True),
        sa.Column("order_ref", sa.String(255), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("broker_order_id", sa.BigInteger(), nullable=True),
        sa.Column("account", sa.String(32), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("sec_type", sa.String(8), nullable=True),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("expiration", sa.Date(), nullable=True),
        sa.Column("strike", _money(), nullable=True),
        sa.Column("right", sa.String(1), nullable=True),
        sa.Column("side", sa.String(3), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("commission", _money(), nullable=True),
        sa.Column("commission_currency", sa.String(3), nullable=True),
        sa.Column("realized_pnl", _money(), nullable=True),
        sa.Column("executed_at", _utc(), nullable=False),
        sa.Column("recorded_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fills"),
        sa.UniqueConstraint("exec_id", name="uq_fills_exec_id"),
        sa.ForeignKeyConstraint(["intent_id"], ["order_intents.id"], name="fk_fills_intent_id_order_intents"),
        sa.CheckConstraint(_one_of("side", ("BOT", "SLD")), name="ck_fills_side"),
        sa.CheckConstraint('"quantity" > 0', name="ck_fills_quantity"),
    )
    op.create_index("ix_fills_intent_id", "fills", ["intent_id"])
    op.create_index("ix_fills_executed_at", "fills", ["executed_at"])

    op.create_table(
        "trading_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("halted", sa.Boolean(), nullable=False),
        sa.Column("halt_kind", sa.String(16), nullable=True),
        sa.Column("halt_reason", sa.Text(), nullable=True),
        sa.Column("halted_at", _utc(), nullable=True),
        sa.Column("halted_by", sa.String(64), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trading_state"),
        sa.CheckConstraint('"id" = 1', name="ck_trading_state_single_row"),
        sa.CheckConstraint(_one_of("halt_kind", ("manual", "daily_loss")), name="ck_trading_state_halt_kind"),
    )

    op.create_table(
        "breaker_trips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("tripped_at", _utc(), nullable=False),
        sa.Column("cleared_at", _utc(), nullable=True),
        sa.Column("cleared_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_breaker_trips"),
    )
    op.create_index("ix_breaker_trips_session_day", "breaker_trips", ["session_day"])

    op.create_table(
        "daily_counters",
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("start_nlv", _money(), nullable=True),
        sa.Column("new_positions", sa.Integer(), nullable=False),
        sa.Column("orders_submitted", sa.Integer(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("session_day", name="pk_daily_counters"),
        sa.CheckConstraint('"new_positions" >= 0', name="ck_daily_counters_new_positions"),
        sa.CheckConstraint('"orders_submitted" >= 0', name="ck_daily_counters_orders_submitted"),
    )

    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(128), nullable=False),
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("requested_at", _utc(), nullable=False),
        sa.Column("deadline", _utc(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint("run_key", name="uq_approvals_run_key"),
        sa.CheckConstraint(
            _one_of("decision", ("PENDING", "EXECUTE", "WAIT", "ABORT")), name="ck_approvals_decision"
        ),
    )
    op.create_index("ix_approvals_session_day", "approvals", ["session_day"])


def downgrade() -> None:
    op.drop_index("ix_approvals_session_day", table_name="approvals")
    op.drop_table("approvals")
    op.drop_table("daily_counters")
    op.drop_index("ix_breaker_trips_session_day", table_name="breaker_trips")
    op.drop_table("breaker_trips")
    op.drop_table("trading_state")
    op.drop_index("ix_fills_executed_at", table_name="fills")
    op.drop_index("ix_fills_intent_id", table_name="fills")
    op.drop_table("fills")
    op.drop_index("ix_order_events_intent_id", table_name="order_events")
    op.drop_table("order_events")
    op.drop_index("ix_broker_orders_intent_id", table_name="broker_orders")
    op.drop_table("broker_orders")
    op.drop_index("ix_order_intents_staged_opportunity_id", table_name="order_intents")
    op.drop_index("ix_order_intents_status", table_name="order_intents")
    op.drop_index("ix_order_intents_session_day_status", table_name="order_intents")
    op.drop_table("order_intents")
    op.drop_index("ix_execution_runs_session_day", table_name="execution_runs")
    op.drop_table("execution_runs")
    op.drop_index("ix_staged_opportunities_session_day_status", table_name="staged_opportunities")
    op.drop_table("staged_opportunities")
