"""The broker port and its IBKR implementation on ib_async."""
