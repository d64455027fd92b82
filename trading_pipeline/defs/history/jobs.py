"""Jobs of the trade-history domain (issue 6: TAAD).

- ``import_trade_history_job``: import one Flex statement (a file or the Web Service), then
  rebuild the lifecycles from every stored execution. Started by ``tp taad-import``, the
  Flex inbox sensor and the daily Web Service schedule;
- ``promote_trades_job``: closed lifecycles into ``trades`` (``tp taad-promote``);
- ``enrich_trades_job``: entry and exit snapshots of promoted trades (``tp taad-enrich``).

None of them places an order. Their writes are idempotent (execution ids, lifecycle ids,
one snapshot per trade), so a re-run adds nothing; the tag ``trading/lane: history`` groups
them in the UI.
"""

import dagster as dg

from trading_pipeline.defs.history.config import ENRICHED_ASSET, IMPORT_ASSET, LIFECYCLES_ASSET, PROMOTED_ASSET

HISTORY_TAGS = {"trading/lane": "history"}

import_trade_history_job = dg.define_asset_job(
    name="import_trade_history_job",
    selection=dg.AssetSelection.assets(IMPORT_ASSET, LIFECYCLES_ASSET),
    description="Import a Flex statement (file or Web Service), then rebuild the trade lifecycles.",
    tags=HISTORY_TAGS,
)

promote_trades_job = dg.define_asset_job(
    name="promote_trades_job",
    selection=dg.AssetSelection.assets(PROMOTED_ASSET),
    description="Promote closed lifecycles into the ledger's trades (trade_source ibkr_import).",
    tags=HISTORY_TAGS,
)

enrich_trades_job = dg.define_asset_job(
    name="enrich_trades_job",
    selection=dg.AssetSelection.assets(ENRICHED_ASSET),
    description="Reconstruct the market context of promoted trades into entry and exit snapshots.",
    tags=HISTORY_TAGS,
)
