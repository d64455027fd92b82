"""Fixtures of the snapshot tests: a stepped simulator (Monday 2026-11-23 10:00 New York), an
IBKR adapter on it (client id 1), the broker's clock, a fresh SQLite ledger, and an open
short AAPL put in it."""

from __future__ import annotations

from datetime import date

from trading_pipeline.ledger.trades import NewTrade, open_trade
from trading_pipeline_tests.sim.conftest import SIM_START, sim_gateway  # noqa: F401
from trading_pipeline_tests.trading.conftest import broker, clock, engine  # noqa: F401

AAPL_EXPIRY = date(2026, 12, 18)


def open_put(engine, *, key: str = "manual:aapl-220", symbol: str = "AAPL", strike: float = 220.0,  # noqa: F811
             contracts: int = 2, entry_price: float = 0.57, at=SIM_START, **terms):
    return open_trade(engine, NewTrade(trade_key=key, trade_source="manual", symbol=symbol, right="P", strike=strike,
                                       expiration=AAPL_EXPIRY, side="short", contracts=contracts,
                                       entry_price=entry_price, entry_time=at, **terms), at=at)
