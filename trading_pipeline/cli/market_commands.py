"""placeholder: market commands are being written."""
