"""placeholder: ledger commands are being written."""
