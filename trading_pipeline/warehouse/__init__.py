"""The DuckDB warehouse: built from the ledger, published by atomic rename."""
