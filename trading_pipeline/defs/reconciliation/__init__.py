"""Reconciliation of the ledger with the broker: positions and orders (``tp reconcile-positions``,
``tp sync-orders``)."""
