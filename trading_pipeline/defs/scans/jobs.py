"""Jobs of the scan domain."""

import dagster as dg

scan_candidates_job = dg.define_asset_job(
    name="scan_candidates_job",
    selection=dg.AssetSelection.groups("scans"),
    description="Parse, validate, score and rank one Barchart export (one partition per file).",
    tags={"trading/lane": "research"},
)
