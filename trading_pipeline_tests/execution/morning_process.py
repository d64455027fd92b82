"""A morning in its own process, for the fault-injection tests (not a test module).

``python -m trading_pipeline_tests.execution.morning_process LEDGER_URL PORT SPEED STOP_AT``
runs ``trading.two_tier.run_morning`` (autonomous, live, on the simulator's clock) against the
simulator listening on PORT. It prints ``READY`` once imported and connected-ready, waits for
one line on stdin (the test starts the simulated clock then), and prints every checkpoint.
At the point ``STOP_AT`` it prints ``STOPPED <where>`` and sleeps, so the test kills it with
SIGKILL exactly there:

- ``before-send``: inside the broker call that places the first order, before it leaves (the
  ledger already claimed the order SENT);
- ``after-send``: the broker acknowledged the first order; its acknowledgement is not yet
  written to the ledger;
- ``fill-check-N``: the N-th fill monitoring check.
"""

from __future__ import annotations

import json
import sys
import time

import trading_pipeline.broker.ibkr  # noqa: F401  (imported before READY: the clock runs after it)
from trading_pipeline.broker.port import BrokerPort
from trading_pipeline.ledger.db import make_engine
from trading_pipeline.trading.two_tier import MorningSetup, run_morning


def stop_here(where: str) -> None:
    print(f"STOPPED {where}", flush=True)
    time.sleep(600)  # the test kills the process now


class PausingBroker:
    """The real adapter, with a stop before or after placing the first order."""

    def __init__(self, broker: BrokerPort, stop_at: str):
        self._broker = broker
        self._stop_at = stop_at

    def __getattr__(self, name: str):
        return getattr(self._broker, name)

    def place_order(self, contract, request):
        if self._stop_at == "before-send":
            stop_here(f"before-send {request.order_ref}")
        handle = self._broker.place_order(contract, request)
        if self._stop_at == "after-send":
            stop_here(f"after-send {request.order_ref}")
        return handle


def main(argv: list[str]) -> int:
    url, port, speed, stop_at, overrides = argv[0], argv[1], float(argv[2]), argv[3], json.loads(argv[4])
    engine = make_engine(url)
    env = {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": port, "IBKR_CLIENT_ID": "1", "IBKR_MAX_MESSAGES_PER_SECOND": "0",
           "IBKR_TIMEOUT": "5"}
    checks = 0

    def checkpoint(name: str) -> None:
        nonlocal checks
        print(f"CHECKPOINT {name}", flush=True)
        if name == "fill-check":
            checks += 1
            if stop_at == f"fill-check-{checks}":
                stop_here(stop_at)

    print("READY", flush=True)
    sys.stdin.readline()
    report = run_morning(engine, MorningSetup(mode="autonomous", dry_run=False, clock="broker", clock_rate=speed,
                                              overrides=overrides), env,
                         checkpoint=checkpoint, say=lambda line: print(f"SAY {line}", flush=True),
                         wrap_broker=lambda broker: PausingBroker(broker, stop_at))
    print(f"DONE {report.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
