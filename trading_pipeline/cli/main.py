"""The ``tp`` command line.

Each group of commands lives in its own module, ``trading_pipeline/cli/<group>_commands.py``,
and registers itself on :data:`app`; this module only imports them all (by that file name
pattern, so a new group needs no edit here). Commands that change data run as Dagster runs in
the project's instance (so they show in the UI); read-only commands read the ledger.
"""

from __future__ import annotations

import importlib
import pkgutil

from trading_pipeline import cli as _cli_package
from trading_pipeline.cli import app as _app_module

for _module in sorted(info.name for info in pkgutil.iter_modules(_cli_package.__path__)):
    if _module.endswith("_commands"):
        importlib.import_module(f"trading_pipeline.cli.{_module}")

app = _app_module.app


if __name__ == "__main__":  # pragma: no cover
    app()
