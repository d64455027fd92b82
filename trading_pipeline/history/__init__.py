"""Trade history (TAAD): IBKR's executions imported from Flex statements, matched into
lifecycles, promoted into the ledger's trades and enriched with market context.

* ``imports``: read or fetch a Flex statement, store it (raw, deduplicated), rebuild lifecycles.
* ``promotion``: closed lifecycles into ``trades`` (trade_source ``ibkr_import``), idempotently.
* ``enrichment``: entry and exit snapshots of promoted trades.

The ledger side (tables, bulk storage, report queries) is ``trading_pipeline.ledger.history``;
the matching itself is pure, in ``trading_pipeline.core.lifecycles``. Modules are imported
by their full name (nothing is re-exported here), so importing one does not load the others.
"""
