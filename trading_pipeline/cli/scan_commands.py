"""placeholder: scan commands are being written."""
