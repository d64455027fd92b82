"""Benchmark: the IBKR adapter and the simulated TWS, in one process on loopback.

1. Orders (goal: under 1 s). A ``SimGateway`` runs in process; ``IbkrBroker`` connects and
   places 50 limit orders to buy AAPL far below the market (they rest). ``place_order``
   returns once the simulator has acknowledged the order (status Submitted, with its permId),
   so the clock stops when the 50th acknowledgement is in. Measured with message pacing off
   (``IBKR_MAX_MESSAGES_PER_SECOND=0``, the setting for the simulator) and, for information,
   with the default pacing of 45 messages per second that a real TWS needs: that run is
   bounded by the pacing by design (46 messages and more wait for the next second).
2. Market data (goal: at least 2,000 ticks per second to one client). The simulated clock
   runs at ``--speed`` times real time; one ib_async client streams ``--subscriptions``
   SPY options (with the option generic ticks) plus a few stocks, and counts the tick
   messages it decodes (price, size, generic, string and option computation ticks) over
   ``--seconds`` after a short warm-up.

    .venv/bin/python benchmarks/broker.py [--orders 50] [--subscriptions 200] [--speed 600] [--seconds 3]

Prints the figures and whether each goal is met; exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import datetime, timezone

import ib_async

from trading_pipeline.broker.ibkr import IbkrBroker
from trading_pipeline.broker.port import ContractSpec, OrderRequest
from trading_pipeline.broker.settings import BrokerSettings
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.server import SimGateway

START = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK).astimezone(timezone.utc)
ORDER_GOAL_SECONDS = 1.0
TICK_GOAL_PER_SECOND = 2000.0
TICK_METHODS = ("priceSizeTick", "tickSize", "tickGeneric", "tickString", "tickOptionComputation")
STOCKS = ("AAPL", "MSFT", "NVDA", "AMZN", "SPY", "QQQ", "IWM", "TSLA")


def place_orders(count: int, pacing: int) -> tuple[float, list[float]]:
    """Seconds until ``count`` resting limit orders are acknowledged; per-order latencies."""
    gateway = SimGateway(SimBroker(seed=7, start=START))
    gateway.start()
    settings = BrokerSettings(host=gateway.host, port=gateway.port, max_messages_per_second=pacing)
    try:
        with IbkrBroker(settings) as broker:
            [aapl] = broker.qualify(ContractSpec.stock("AAPL"))
            time.sleep(1.1)         # let the connection's own messages leave the pacing window
            latencies = []
            started = time.perf_counter()
            for n in range(count):
                sent = time.perf_counter()
                handle = broker.place_order(aapl, OrderRequest.limit("BUY", 1, 100.0, order_ref=f"bench-{n}"))
                assert handle.status == "Submitted" and handle.perm_id
                latencies.append(time.perf_counter() - sent)
            elapsed = time.perf_counter() - started
            working = gateway.call(gateway.broker.open_orders, None)
            assert len(working) == count, f"the simulator holds {len(working)} orders, not {count}"
    finally:
        gateway.stop()
    return elapsed, latencies


async def _stream_ticks(host: str, port: int, subscriptions: int, seconds: float) -> tuple[int, float, int]:
    ib = ib_async.IB()
    ib.client.MaxRequests = 0       # no pacing: the simulator needs none (a real TWS does)
    await ib.connectAsync(host, port, clientId=9, timeout=10)
    counted = [0]
    for name in TICK_METHODS:
        method = getattr(ib.wrapper, name)

        def counting(*args, _method=method, **kwargs):
            counted[0] += 1
            return _method(*args, **kwargs)

        setattr(ib.wrapper, name, counting)
    try:
        [spy] = await ib.qualifyContractsAsync(ib_async.Stock("SPY", "SMART", "USD"))
        [chain] = [c for c in await ib.reqSecDefOptParamsAsync("SPY", "", "STK", spy.conId)
                   if c.exchange == "SMART"]
        spot = (await ib.reqTickersAsync(spy))[0].marketPrice()
        expiry = sorted(chain.expirations)[3]
        details = await ib.reqContractDetailsAsync(ib_async.Option("SPY", expiry, 0.0, "", "SMART"))
        options = sorted((d.contract for d in details), key=lambda c: abs(c.strike - spot))[:subscriptions]
        stocks = [c for c in await ib.qualifyContractsAsync(*(ib_async.Stock(s, "SMART", "USD") for s in STOCKS))
                  if c is not None]
        for contract in options:
            ib.reqMktData(contract, "100,101,106")
        for contract in stocks:
            ib.reqMktData(contract)
        await asyncio.sleep(0.5)                      # warm-up: the initial snapshots
        before, started = counted[0], time.perf_counter()
        await asyncio.sleep(seconds)
        ticks, elapsed = counted[0] - before, time.perf_counter() - started
        # Stop the streams before hanging up, so the simulator is not left writing to a
        # socket that is closing.
        for contract in options + stocks:
            ib.cancelMktData(contract)
        await asyncio.sleep(0.2)
        return ticks, elapsed, len(options) + len(stocks)
    finally:
        ib.disconnect()


def stream_ticks(subscriptions: int, speed: float, seconds: float) -> tuple[int, float, int]:
    gateway = SimGateway(SimBroker(seed=7, start=START, speed=speed))
    gateway.start()
    try:
        return asyncio.run(_stream_ticks(gateway.host, gateway.port, subscriptions, seconds))
    finally:
        gateway.stop()


def verdict(met: bool) -> str:
    return "goal met" if met else "goal NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--subscriptions", type=int, default=200)
    parser.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second")
    parser.add_argument("--seconds", type=float, default=3.0, help="tick measuring window")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f}; Python {sys.version.split()[0]}, "
          f"ib_async {ib_async.__version__}")

    elapsed, latencies = place_orders(args.orders, pacing=0)
    print(f"\norders: {args.orders} resting limit orders acknowledged in {elapsed:.3f} s "
          f"({args.orders / elapsed:,.0f} orders/s; per order median {statistics.median(latencies) * 1000:.2f} ms, "
          f"max {max(latencies) * 1000:.2f} ms), pacing off: "
          f"{verdict(elapsed < ORDER_GOAL_SECONDS)} (< {ORDER_GOAL_SECONDS:g} s)")
    paced, _ = place_orders(args.orders, pacing=45)
    print(f"orders with the real-TWS pacing of 45 messages/s: {paced:.3f} s "
          "(information: bounded by the pacing, not by the adapter or the simulator)")

    ticks, window, streams = stream_ticks(args.subscriptions, args.speed, args.seconds)
    rate = ticks / window
    print(f"\nmarket data: {ticks:,} tick messages in {window:.2f} s over {streams} subscriptions "
          f"(clock at {args.speed:g}x) = {rate:,.0f} ticks/s to one client: "
          f"{verdict(rate >= TICK_GOAL_PER_SECOND)} (>= {TICK_GOAL_PER_SECOND:,.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
