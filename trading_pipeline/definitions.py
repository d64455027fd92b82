"""The code location: every definition under ``trading_pipeline/defs/``, plus shared resources.

No logic lives here. Each domain folder holds its own assets, checks, jobs, schedules and
sensors; this module only assembles them.
"""

import warnings
from pathlib import Path

import dagster as dg

from trading_pipeline.defs.resources import LedgerResource


# Dagster copies each sensor with its beta ``owners`` parameter (None), when loading and when
# running, and warns about it every time; nothing here uses it.
warnings.filterwarnings("ignore", message=r"Parameter `owners`", category=dg.BetaWarning)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs"),
        dg.Definitions(resources={"ledger": LedgerResource()}),
    )
