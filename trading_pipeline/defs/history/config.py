"""Run configuration of the trade-history domain, shared by the assets, the sensor, the
schedule and the ``taad-*`` commands (one place that knows the asset names), and the Flex
inbox folder.

| setting        | environment variable | default                        |
|----------------|----------------------|--------------------------------|
| Flex inbox     | ``TP_FLEX_INBOX``    | ``<home>/data/inbox/flex`` (beside the Barchart inbox) |

Flex Web Service accounts are broker/flex_web.py's ``IBKR_FLEX_TOKEN_n``,
``IBKR_FLEX_QUERY_ID_n``, ``IBKR_FLEX_ACCOUNT_n`` (n = 1, 2, 3). Commands and run config name
an account by its id (``IBKR_FLEX_ACCOUNT_n``) or by its slot number n.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from trading_pipeline import settings
from trading_pipeline.broker.flex_web import DEFAULT_POLL_INTERVAL_SECONDS
from trading_pipeline.core.enrichment import DEFAULT_RISK_FREE_RATE

FLEX_INBOX_VARIABLE = "TP_FLEX_INBOX"

IMPORT_ASSET = "flex_raw_imports"
LIFECYCLES_ASSET = "trade_lifecycles"
PROMOTED_ASSET = "promoted_trades"
ENRICHED_ASSET = "enriched_trades"

# Every configured Flex account needs these three (slot 1 named; 2 and 3 alike).
FLEX_ACCOUNT_VARIABLES = ("IBKR_FLEX_TOKEN_1", "IBKR_FLEX_QUERY_ID_1", "IBKR_FLEX_ACCOUNT_1")


def flex_inbox() -> Path:
    """Folder the Flex inbox sensor watches for saved Flex statements (*.xml)."""
    configured = os.environ.get(FLEX_INBOX_VARIABLE)
    if configured:
        return Path(configured).expanduser().resolve()
    return settings.data_dir() / "inbox" / "flex"


def resolve_flex_account(given: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The account id a command or run config means: a slot number 1-3 becomes that slot's
    IBKR_FLEX_ACCOUNT_n; anything else is taken as the account id itself (empty: None)."""
    text = (given or "").strip()
    if not text:
        return None
    env = os.environ if env is None else env
    if text in ("1", "2", "3"):
        configured = env.get(f"IBKR_FLEX_ACCOUNT_{text}", "").strip()
        if configured:
            return configured
    return text


class FlexImportConfig(dg.Config):
    """What to import: a saved Flex statement (``path``) or, without a path, the Flex Web
    Service statement of ``account`` (its id or slot 1-3; empty: the only configured one).
    With a path, ``account`` keeps only that account's executions (empty: all in the file).
    ``dry_run``: count what would be imported, write nothing (reported as an observation)."""

    path: str = ""
    account: str = ""
    dry_run: bool = False
    # Seconds between polls while IBKR generates the statement (its client's default).
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS


class LifecyclesConfig(dg.Config):
    """The day the rebuild takes as today (YYYY-MM-DD; empty: today in New York): an open
    lifecycle whose expiry is before it is flagged as missing its closing."""

    as_of: str = ""


class PromoteConfig(dg.Config):
    """Promote closed lifecycles into ``trades`` (``account`` empty: every account)."""

    dry_run: bool = False
    account: str = ""


class EnrichConfig(dg.Config):
    """Enrich promoted trades' snapshots. ``limit`` 0: every trade still missing them;
    ``with_ibkr``: daily bars of the underlying and VIX from the broker (client id 1)."""

    limit: int = 0
    with_ibkr: bool = False
    risk_free_rate: float = DEFAULT_RISK_FREE_RATE


def import_run_config(*, path: str = "", account: str = "", dry_run: bool = False, as_of: str = "",
                      poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS) -> dict:
    """Run config of import_trade_history_job."""
    return {"ops": {IMPORT_ASSET: {"config": {"path": path, "account": account, "dry_run": dry_run,
                                              "poll_interval_seconds": poll_interval_seconds}},
                    LIFECYCLES_ASSET: {"config": {"as_of": as_of}}}}


def promote_run_config(*, dry_run: bool = False, account: str = "") -> dict:
    """Run config of promote_trades_job."""
    return {"ops": {PROMOTED_ASSET: {"config": {"dry_run": dry_run, "account": account}}}}


def enrich_run_config(*, limit: int = 0, with_ibkr: bool = False,
                      risk_free_rate: float = DEFAULT_RISK_FREE_RATE) -> dict:
    """Run config of enrich_trades_job."""
    return {"ops": {ENRICHED_ASSET: {"config": {"limit": limit, "with_ibkr": with_ibkr,
                                                "risk_free_rate": risk_free_rate}}}}
