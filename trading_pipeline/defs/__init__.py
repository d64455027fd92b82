"""Dagster definitions, one package per domain, auto-loaded by trading_pipeline.definitions."""
