"""The daily Flex Web Service import: every session morning at 06:00 New York.

IBKR's Activity statements are final the morning after the session (commissions, book
trades for expirations and assignments come in overnight), so at 06:00 on a session day the
statement covers the previous session for good. Each evaluation decides:

* not a session (weekend or NYSE holiday) -> SkipReason naming the day and why;
* no Flex account configured -> SkipReason naming the variables to set
  (``IBKR_FLEX_TOKEN_n``, ``IBKR_FLEX_QUERY_ID_n``, ``IBKR_FLEX_ACCOUNT_n``, n = 1..3); an
  incomplete account -> SkipReason with the configuration error (never a token);
* otherwise one ``import_trade_history_job`` run per configured account, run key
  ``flex-web:<account>:<previous session>`` so a tick evaluated twice launches one run.

Which days the statement holds is the Flex query's own setting at IBKR (e.g. the last 7
days); importing overlaps is harmless because executions are deduplicated by id.

Default status RUNNING: the schedule only imports (idempotent) and never trades, and with
no account configured it skips with the reason above, so a fresh install does nothing
unexpected. Reading the environment here is cheap and local; the Web Service is called in
the run, never in the evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime

import dagster as dg

from trading_pipeline.broker.flex_web import MAX_ACCOUNTS, FlexAccountSettings
from trading_pipeline.core.calendar import NEW_YORK, non_session_reason, previous_session
from trading_pipeline.defs.history.config import import_run_config
from trading_pipeline.defs.history.jobs import import_trade_history_job
from trading_pipeline.errors import ConfigurationError

DAILY_IMPORT_CRON = "0 6 * * *"


def _variables_hint() -> str:
    return ", ".join(f"IBKR_FLEX_{part}_n" for part in ("TOKEN", "QUERY_ID", "ACCOUNT")) + \
        f" (n = 1..{MAX_ACCOUNTS})"


def plan_daily_import(moment: datetime, env: Mapping[str, str]) -> list[dg.RunRequest] | dg.SkipReason:
    """The runs of one evaluation at ``moment`` (aware) with the environment ``env``."""
    day = moment.astimezone(NEW_YORK).date()
    why_not = non_session_reason(day)
    if why_not is not None:
        return dg.SkipReason(f"{day:%A} {day.isoformat()} is not an NYSE session ({why_not}): no Flex import")
    try:
        configured = FlexAccountSettings.from_env(env)
    except ConfigurationError as problem:
        return dg.SkipReason(f"Flex Web Service settings are incomplete: {problem}")
    if not configured.accounts:
        return dg.SkipReason(
            f"no Flex Web Service account is configured: set {_variables_hint()}, e.g. IBKR_FLEX_TOKEN_1, "
            "IBKR_FLEX_QUERY_ID_1 and IBKR_FLEX_ACCOUNT_1"
        )
    statement_day = previous_session(day).isoformat()
    return [
        dg.RunRequest(
            run_key=f"flex-web:{account.account}:{statement_day}",
            run_config=import_run_config(account=account.account),
            tags={"trading/source": "schedule", "trading/flex_account": account.account,
                  "trading/statement_session": statement_day},
        )
        for account in configured.accounts
    ]


@dg.schedule(
    job=import_trade_history_job,
    cron_schedule=DAILY_IMPORT_CRON,
    execution_timezone=NEW_YORK.key,
    # Read-only towards the broker (the Flex Web Service) and idempotent: it may run by default.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every session morning at 06:00 New York: import each configured account's Flex statement "
                "from the Web Service (the previous session is final by then).",
)
def daily_flex_import_schedule(context: dg.ScheduleEvaluationContext):
    return plan_daily_import(context.scheduled_execution_time, os.environ)
