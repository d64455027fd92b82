"""Snapshots: the daily position snapshot of every open trade (asset, job, schedule)."""
