"""The ``tp`` command line.

Each group of commands lives in its own module and registers itself on :data:`app`;
this module only assembles them. Commands that change data run as Dagster runs in the
project's instance (so they show in the UI); read-only commands read the ledger.
"""

from __future__ import annotations

from trading_pipeline.cli import app as _app_module
from trading_pipeline.cli import (  # noqa: F401  (imported for their command registrations)
    broker_commands,
    execution_commands,
    ledger_commands,
    market_commands,
    scan_commands,
    sim_commands,
    staging_commands,
    ui_commands,
)

app = _app_module.app


if __name__ == "__main__":  # pragma: no cover
    app()
