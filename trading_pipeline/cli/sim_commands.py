"""``tp sim-gateway``: run the TWS stand-in in the foreground until Ctrl+C.

The project's broker settings (``IBKR_HOST`` / ``IBKR_PORT``) point at it like at a real TWS
(paper port 7497 by default).
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import typer

from trading_pipeline.cli.app import app, console, fail, run_guarded
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.clock import SystemClock

DEFAULT_PORT = 7497
DEFAULT_SEED = 1


def parse_start(text: str) -> datetime:
    """``2026-11-23 09:00`` (New York when naive), or ISO 8601 with an offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(f"--start: not a date and time: {text!r} (expected e.g. '2026-11-23 09:00')")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=NEW_YORK)
    return moment.astimezone(timezone.utc)


@app.command("sim-gateway")
def sim_gateway(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="TCP port (0 picks a free one)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Seed of the simulated market."),
    speed: float = typer.Option(
        1.0, "--speed", help="Simulated seconds per real second (0 = the clock stands still)."
    ),
    start: str = typer.Option(
        None, "--start",
        help="Simulated start, e.g. '2026-11-23 09:00' (New York when naive); default now.",
    ),
    prices_from: Path = typer.Option(
        None, "--prices-from", exists=True, dir_okay=False, readable=True,
        help="Starting prices: a Barchart export, a symbol,price CSV, or daily bars to replay.",
    ),
    no_model_greeks: bool = typer.Option(
        False, "--no-model-greeks", help="Send option quotes without model greeks (test a client's fallback).",
    ),
) -> None:
    """Run the simulated TWS (API server version 176) in the foreground until Ctrl+C."""
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway

    if speed < 0:
        raise fail("--speed must be 0 or more")
    started_at = parse_start(start) if start else SystemClock().now()
    prices = bars = None
    if prices_from is not None:
        from trading_pipeline.sim.prices import load_prices

        prices, bars = run_guarded(load_prices, prices_from)
    broker = SimBroker(seed=seed, start=started_at, speed=speed, prices=prices, bars=bars,
                       model_greeks=not no_model_greeks)
    gateway = SimGateway(broker, host=host, port=port)
    # Ctrl+C (SIGINT) and a supervisor's SIGTERM both just ask the loop below to end, so the
    # shutdown is the same clean one whenever the signal lands (even before the loop starts).
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            listen_host, listen_port = gateway.start()
        except OSError as error:
            raise fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
        local_start = started_at.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")
        console.print(
            f"Simulated TWS listening on {listen_host}:{listen_port} (API version 176, "
            f"seed {seed}, speed {speed:g}x, start {local_start}); Ctrl+C stops it.",
            highlight=False, soft_wrap=True,
        )
        sys.stdout.flush()      # a supervisor or test reading a pipe sees the address at once
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        gateway.stop()
    console.print("Simulated TWS stopped.", highlight=False)
