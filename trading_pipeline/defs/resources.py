"""Resources shared by every domain."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine


class LedgerResource(dg.ConfigurableResource):
    """The operational ledger (SQLite by default, PostgreSQL by URL).

    ``url`` empty means the project's setting (TP_LEDGER_URL, else the embedded SQLite file),
    read when the run starts, not when the code location loads.
    """

    url: str = ""
    _engine: Engine | None = PrivateAttr(default=None)

    def engine(self) -> Engine:
        """The migrated engine, created once per run process."""
        if self._engine is None:
            from trading_pipeline.ledger.db import make_engine
            from trading_pipeline.ledger.migrate import migrate

            engine = make_engine(self.url or None)
            migrate(engine)
            self._engine = engine
        return self._engine
