"""Jobs of the snapshots domain.

``snapshot_positions_job`` materializes ``position_snapshots`` for one trading day (the
schedule's run, ``tp snapshot-positions``). Read-only at the broker, idempotent per day.
"""

import dagster as dg

from trading_pipeline.defs.snapshots.assets import position_snapshots

SNAPSHOT_TAGS = {"trading/lane": "snapshots"}

snapshot_positions_job = dg.define_asset_job(
    name="snapshot_positions_job",
    selection=dg.AssetSelection.assets(position_snapshots),
    description="Snapshot every open position for one trading day (read-only at the broker).",
    tags=SNAPSHOT_TAGS,
)
