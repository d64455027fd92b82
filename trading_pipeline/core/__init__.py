"""Pure domain logic: no I/O, no Dagster, no clock reads. Everything here is a function of its arguments."""
