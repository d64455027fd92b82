"""trading_pipeline: an options seller's operating system for Interactive Brokers."""

__version__ = "0.1.0"
