"""File formats the project reads: Barchart screener CSV exports, IBKR Flex XML."""
