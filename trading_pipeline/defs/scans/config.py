"""Run configuration of the scan, shared by the assets, the sensor and the CLI."""

from __future__ import annotations

import dagster as dg

from trading_pipeline.core.scoring import ScanPolicy

_DEFAULTS = ScanPolicy()


class ExportSourceConfig(dg.Config):
    """Where the export of this partition is. Empty: the file of that name in the inbox."""

    source_path: str = ""


class ScanPolicyConfig(dg.Config):
    """How the scored candidates are selected (the defaults are ScanPolicy's)."""

    top_n: int = _DEFAULTS.top_n
    diversify: bool = _DEFAULTS.diversify
    max_per_symbol: int = _DEFAULTS.max_per_symbol
    min_score: float = _DEFAULTS.min_score

    def policy(self) -> ScanPolicy:
        return ScanPolicy(
            top_n=self.top_n,
            diversify=self.diversify,
            max_per_symbol=self.max_per_symbol,
            min_score=self.min_score,
        )


def scan_run_config(*, source_path: str, policy: ScanPolicy = _DEFAULTS) -> dict:
    """Run config for scan_candidates_job: one place that knows the asset names."""
    return {
        "ops": {
            "barchart_candidates": {"config": {"source_path": source_path}},
            "scored_candidates": {
                "config": {
                    "top_n": policy.top_n,
                    "diversify": policy.diversify,
                    "max_per_symbol": policy.max_per_symbol,
                    "min_score": policy.min_score,
                }
            },
        }
    }
