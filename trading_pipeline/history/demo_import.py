"""The main job's last step: the simulated account's history through the real Flex path.

:func:`import_simulated_history` serves the simulator's account on a loopback Flex Web
Service (``sim.flex_service.FlexServiceGateway``: IBKR's two-step protocol, a statement
"being generated" for one poll), points the project's Flex client at it (``IBKR_FLEX_TOKEN_1``
/ ``IBKR_FLEX_QUERY_ID_1`` / ``IBKR_FLEX_ACCOUNT_1`` with a token and query id made up for
the run, ``IBKR_FLEX_BASE_URL`` on the loopback; the client accepts plain http only there),
and then does what a user does: ``import_trade_history_job`` through the Web Service client
(a Dagster run), ``promote_trades_job`` (a run), and prints the lifecycle report that
``tp taad-report`` prints. The statement is an Activity statement with a cancel-and-correct
injected on its first execution, as IBKR sometimes books one: the import must not count the
cancelled execution.

The variables are set for the duration of the call only, and every Flex slot the user may
have configured (2 and 3, date formats) is blanked meanwhile, so the user's own accounts
are never asked. The runs write to the ledger of ``engine`` (passed to the runs as the
ledger resource's URL), which the demo points at its own demo ledger.
"""

from __future__ import annotations

import secrets

from rich.console import Console
from sqlalchemy import Engine

from trading_pipeline import settings
from trading_pipeline.broker.flex_web import MAX_ACCOUNTS
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.sim.flex import FlexOptions, StatementKind
from trading_pipeline.sim.flex_service import FlexServiceGateway, ServedAccount, ServedQuery

# The loopback service answers at once; a short poll keeps the demo quick while still
# going through IBKR's "statement generation in progress" answer once.
POLL_INTERVAL_SECONDS = 0.2
PENDING_POLLS = 1


def _flex_environment(service: FlexServiceGateway) -> dict[str, str]:
    """The client's settings for the loopback service; every other Flex slot blanked."""
    env = {f"IBKR_FLEX_{part}_{slot}": "" for slot in range(1, MAX_ACCOUNTS + 1)
           for part in ("TOKEN", "QUERY_ID", "ACCOUNT", "DATE_FORMAT")}
    env["IBKR_FLEX_DATE_FORMAT"] = ""
    env.update(service.client_env())
    env["IBKR_FLEX_DATE_FORMAT_1"] = FlexOptions().date_format  # what the simulator writes
    return env


def import_simulated_history(console: Console, sim_gateway, sim_broker, engine: Engine, *, account: str) -> dict:
    """Import the simulated account's Flex statement through the Web Service client, promote
    the closed lifecycles and print the lifecycle report (see the module text).

    ``sim_gateway`` is the running SimGateway (its thread reads the broker), ``sim_broker``
    its SimBroker, ``account`` the simulated account's id. Returns the counts: the import's
    result, the promotion's, and the lifecycles (total, closed, open, the closed ones' net P&L per
    currency)."""
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.cli.taad_commands import print_import, print_lifecycle_report, print_promotion, reported_result
    from trading_pipeline.defs.history.config import IMPORT_ASSET, PROMOTED_ASSET, import_run_config, promote_run_config
    from trading_pipeline.ledger.history import lifecycle_summary, list_lifecycles

    if account != sim_broker.account_id:
        raise TradingPipelineError(f"the simulator's account is {sim_broker.account_id}, not {account}")
    served = ServedAccount(
        sim_broker,
        token=secrets.token_hex(16),
        queries=(ServedQuery(str(100000 + secrets.randbelow(900000)), StatementKind.ACTIVITY,
                             options=FlexOptions(query_name="TP demo activity", correct_execution=1)),),
    )
    service = FlexServiceGateway([served], pending_polls=PENDING_POLLS, run_on_broker=sim_gateway.call)
    service.start()
    ledger = {"resources": {"ledger": {"config": {"url": engine.url.render_as_string(hide_password=False)}}}}
    tags = {"trading/source": "demo"}
    try:
        with settings.temporary_environment(_flex_environment(service)):
            today = sim_gateway.call(lambda: sim_broker.clock.now()).astimezone(NEW_YORK).date()
            instance = get_instance()
            console.print(f"Flex Web Service (simulated) at {service.base_url}: importing the Activity statement of "
                          f"{account} through the project's client", highlight=False)
            imported = run_job("import_trade_history_job", instance=instance, tags=tags, run_config={
                **import_run_config(account=account, as_of=today.isoformat(),
                                    poll_interval_seconds=POLL_INTERVAL_SECONDS), **ledger})
            if not imported.success:
                raise TradingPipelineError(f"the Flex import run {imported.run_id} failed: {imported.error}")
            import_result = reported_result(instance, imported.run_id, IMPORT_ASSET) or {}
            promoted = run_job("promote_trades_job", instance=instance, tags=tags,
                               run_config={**promote_run_config(account=account), **ledger})
            if not promoted.success:
                raise TradingPipelineError(f"the promotion run {promoted.run_id} failed: {promoted.error}")
            promotion = reported_result(instance, promoted.run_id, PROMOTED_ASSET) or {}
    finally:
        service.stop()

    print_import(console, import_result)
    print_promotion(console, promotion, dry_run=False)
    print_lifecycle_report(console, list_lifecycles(engine, account=account))
    summary = lifecycle_summary(engine, account=account)
    return {
        "import": import_result,
        "promotion": promotion,
        "lifecycles": summary["lifecycles"],
        "closed": summary["closed"],
        "open": summary["open"],
        "net_pnl_by_currency": summary["net_pnl_by_currency"],
    }


__all__ = ["import_simulated_history"]
