"""Broker commands: ``tp test-ibkr``, ``tp quote``, ``tp option-chain``.

They read the broker settings from the environment (``IBKR_HOST``, ``IBKR_PORT``,
``IBKR_CLIENT_ID``, ``IBKR_ACCOUNT``, ``IBKR_TIMEOUT`` ...; paper port 7497 by default),
which ``--host``, ``--port`` and ``--client-id`` override, and print a rich table or, with
``--format json``, one JSON document. Every failure (nothing listening, client id in use,
unknown or ambiguous contract, timeout) is one clear line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from trading_pipeline.broker.port import Contract, ContractError, ContractSpec, Quote
from trading_pipeline.broker.settings import BrokerSettings
from trading_pipeline.cli.app import app, console, fail, run_guarded
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.errors import TradingPipelineError

if TYPE_CHECKING:
    from trading_pipeline.broker.ibkr import IbkrBroker

LATENCY_SAMPLES = 5
DEFAULT_CHAIN_STRIKES = 20           # strikes around the price when no delta range is given
DEFAULT_OTM_STRIKES = 40             # strikes on the out-of-the-money side with --delta-range


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class Right(str, Enum):
    P = "P"
    C = "C"


HOST_OPTION = typer.Option(None, "--host", help="TWS / IB Gateway host (default IBKR_HOST or 127.0.0.1).")
PORT_OPTION = typer.Option(None, "--port", help="API port (default IBKR_PORT or 7497, paper).")
CLIENT_ID_OPTION = typer.Option(None, "--client-id", help="API client id (default IBKR_CLIENT_ID or 1; 3 is reserved).")
FORMAT_OPTION = typer.Option(OutputFormat.table, "--format", help="table or json.")


# ============================================================================ commands


@app.command("test-ibkr")
def test_ibkr(
    host: str = HOST_OPTION,
    port: int = PORT_OPTION,
    client_id: int = CLIENT_ID_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Connect to TWS / IB Gateway and show server time, account, NLV, buying power and latency."""
    settings = _settings(host, port, client_id)
    with _broker(settings) as broker:
        info = run_guarded(broker.connect)
        server_time = run_guarded(broker.current_time)
        summary = run_guarded(broker.account_summary)
        samples = []
        for _ in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            run_guarded(broker.current_time)
            samples.append((time.perf_counter() - started) * 1000.0)
    report = {
        "host": info.host, "port": info.port, "client_id": info.client_id,
        "server_version": info.server_version, "server_time": server_time.isoformat(),
        "accounts": list(info.accounts), "account": summary.account,
        "net_liquidation": summary.net_liquidation, "buying_power": summary.buying_power,
        "excess_liquidity": summary.excess_liquidity,
        "latency_ms": {"median": round(statistics.median(samples), 3),
                       "min": round(min(samples), 3), "max": round(max(samples), 3)},
    }
    if output is OutputFormat.json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title="IBKR connection OK", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("Gateway", f"{info.host}:{info.port} (server version {info.server_version})")
    table.add_row("Client id", str(info.client_id))
    table.add_row("Server time", f"{server_time:%Y-%m-%d %H:%M:%S} UTC "
                                 f"({server_time.astimezone(NEW_YORK):%H:%M:%S} New York)")
    table.add_row("Account", summary.account)
    table.add_row("Net liquidation", _money(summary.net_liquidation))
    table.add_row("Buying power", _money(summary.buying_power))
    table.add_row("Excess liquidity", _money(summary.excess_liquidity))
    table.add_row("Round-trip latency",
                  f"{report['latency_ms']['median']:.2f} ms median of {LATENCY_SAMPLES} "
                  f"(min {report['latency_ms']['min']:.2f}, max {report['latency_ms']['max']:.2f})")
    console.print(table)


@app.command("quote")
def quote(
    symbol: str = typer.Argument(..., help="Underlying symbol, e.g. AAPL or SPX."),
    expiry: str = typer.Option(None, "--expiry", help="Option expiry, YYYY-MM-DD."),
    strike: float = typer.Option(None, "--strike", help="Option strike."),
    right: Right = typer.Option(None, "--right", help="P or C."),
    trading_class: str = typer.Option("", "--trading-class", help="e.g. SPXW, when an expiry has several."),
    host: str = HOST_OPTION,
    port: int = PORT_OPTION,
    client_id: int = CLIENT_ID_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Quote a stock, an index, or (with --expiry, --strike, --right) an option with greeks."""
    option_terms = (expiry, strike, right)
    if any(term is not None for term in option_terms) and not all(term is not None for term in option_terms):
        raise fail("an option quote needs --expiry, --strike and --right together")
    settings = _settings(host, port, client_id)
    with _broker(settings) as broker:
        run_guarded(broker.connect)
        if expiry is not None:
            spec = _option_spec(symbol, _parse_date(expiry, "--expiry"), strike, right.value, trading_class)
            [contract] = run_guarded(broker.qualify, spec)
        else:
            contract = _underlying(broker, symbol)
        [snapshot] = run_guarded(broker.quotes, [contract])
    if output is OutputFormat.json:
        print(json.dumps(_quote_dict(snapshot), indent=2))
        return
    table = Table(title=contract.describe(), show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    table.add_row("conId", str(contract.con_id))
    table.add_row("Time (New York)", f"{snapshot.time.astimezone(NEW_YORK):%Y-%m-%d %H:%M:%S}")
    for label, value in (
        ("Bid", _num(snapshot.bid)), ("Ask", _num(snapshot.ask)), ("Mid", _num(snapshot.mid)),
        ("Last", _num(snapshot.last)), ("Close", _num(snapshot.close)),
        ("Bid size", _num(snapshot.bid_size, 0)), ("Ask size", _num(snapshot.ask_size, 0)),
        ("Volume", _num(snapshot.volume, 0)),
    ):
        table.add_row(label, value)
    if contract.is_option:
        table.add_row("Open interest", _num(snapshot.open_interest, 0))
        greeks = snapshot.greeks
        if greeks is None:
            table.add_row("Greeks", snapshot.greeks_problem or "none")
        else:
            table.add_row("Implied volatility", f"{greeks.implied_vol * 100:.2f} %")
            table.add_row("Delta", f"{greeks.delta:.4f}")
            table.add_row("Gamma", f"{greeks.gamma:.5f}")
            table.add_row("Vega (per vol point)", f"{greeks.vega:.4f}")
            table.add_row("Theta (per day)", f"{greeks.theta:.4f}")
            table.add_row("Underlying", _num(greeks.underlying_price))
            table.add_row("Greeks from", "IBKR model" if greeks.source == "model" else "computed from the mid")
    console.print(table)


@app.command("option-chain")
def option_chain(
    symbol: str = typer.Argument(..., help="Underlying symbol, e.g. SPY or SPX."),
    expiry: str = typer.Option(None, "--expiry", help="Show the chain of this expiry (YYYY-MM-DD); "
                                                      "without it, list the expirations."),
    delta_range: str = typer.Option(None, "--delta-range", help="Keep options with |delta| in this "
                                                                "range, e.g. 0.10-0.30."),
    right: Right = typer.Option(Right.P, "--right", help="P (default) or C."),
    strikes: int = typer.Option(None, "--strikes", min=1, help="How many strikes to quote (default "
                                f"{DEFAULT_CHAIN_STRIKES} around the price, {DEFAULT_OTM_STRIKES} "
                                "out of the money with --delta-range)."),
    trading_class: str = typer.Option("", "--trading-class", help="e.g. SPXW, when an expiry has several."),
    host: str = HOST_OPTION,
    port: int = PORT_OPTION,
    client_id: int = CLIENT_ID_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """List an underlying's expirations, or one expiry's chain with bid/ask/delta/IV/OI."""
    deltas = _parse_delta_range(delta_range) if delta_range else None
    settings = _settings(host, port, client_id)
    symbol = symbol.strip().upper()
    with _broker(settings) as broker:
        run_guarded(broker.connect)
        if expiry is None:
            rows = run_guarded(broker.option_chain_parameters, symbol)
            today = run_guarded(broker.current_time).astimezone(NEW_YORK).date()
            _print_expirations(symbol, rows, today, output)
            return
        day = _parse_date(expiry, "--expiry")
        underlying = _underlying(broker, symbol)
        [underlying_quote] = run_guarded(broker.quotes, [underlying])
        price = underlying_quote.price
        if price is None:
            raise fail(f"{symbol} has no price to center the chain on")
        side = "both" if deltas is None else ("below" if right is Right.P else "above")
        count = strikes or (DEFAULT_CHAIN_STRIKES if deltas is None else DEFAULT_OTM_STRIKES)
        options = run_guarded(broker.strikes_near, symbol, day, price, right=right.value,
                              count=count, side=side, trading_class=trading_class)
        snapshots = run_guarded(broker.quotes, options)
    if deltas is not None:
        low, high = deltas
        snapshots = [q for q in snapshots if q.greeks is not None and low <= abs(q.greeks.delta) <= high]
    if output is OutputFormat.json:
        print(json.dumps({"symbol": symbol, "expiry": day.isoformat(), "right": right.value,
                          "underlying_price": price, "options": [_quote_dict(q) for q in snapshots]},
                         indent=2))
        return
    title = (f"{symbol} {day.isoformat()} {'puts' if right is Right.P else 'calls'}  "
             f"(underlying {price:,.2f}"
             f"{f', |delta| {deltas[0]:g}-{deltas[1]:g}' if deltas else ''})")
    table = Table(title=title, title_justify="left")
    for column in ("Strike", "Bid", "Ask", "Mid", "Delta", "IV %", "OI", "Volume", "Greeks"):
        table.add_column(column, justify="right" if column != "Greeks" else "left")
    for q in snapshots:
        greeks = q.greeks
        table.add_row(
            f"{q.contract.strike:g}", _num(q.bid), _num(q.ask), _num(q.mid),
            f"{greeks.delta:.3f}" if greeks else "-",
            f"{greeks.implied_vol * 100:.1f}" if greeks else "-",
            _num(q.open_interest, 0), _num(q.volume, 0),
            (greeks.source if greeks else "none"),
        )
    console.print(table)
    if not snapshots:
        console.print("No option of this expiry matches; widen --delta-range or raise --strikes.")


# ============================================================================ helpers


def _settings(host: str | None, port: int | None, client_id: int | None) -> BrokerSettings:
    def build() -> BrokerSettings:
        return BrokerSettings.from_env().with_overrides(host=host, port=port, client_id=client_id)

    return run_guarded(build)


@contextmanager
def _broker(settings: BrokerSettings) -> Iterator["IbkrBroker"]:
    # Imported here: ib_async and the options math cost most of a second, which the other
    # tp commands should not pay.
    from trading_pipeline.broker.ibkr import IbkrBroker

    broker = IbkrBroker(settings)
    try:
        yield broker
    finally:
        try:
            broker.disconnect()
        except TradingPipelineError:
            pass            # the command's own result or error is what the user needs


def _underlying(broker: "IbkrBroker", symbol: str) -> Contract:
    """The stock named ``symbol``, else the index (SPX, VIX ...)."""
    if not symbol.strip():
        raise fail("the symbol is empty")
    for spec in (ContractSpec.stock(symbol), ContractSpec.index(symbol)):
        try:
            [contract] = broker.qualify(spec)
            return contract
        except ContractError:
            continue
        except TradingPipelineError as problem:
            raise fail(str(problem)) from None
    raise fail(f"{symbol.strip().upper()} is neither a stock nor an index IBKR knows")


def _option_spec(symbol: str, expiry: date, strike: float, right: str, trading_class: str) -> ContractSpec:
    try:
        return ContractSpec.option(symbol, expiry, strike, right, trading_class=trading_class)
    except ValueError as problem:
        raise fail(str(problem)) from None


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise fail(f"{option}: not a date {text!r} (expected YYYY-MM-DD)") from None


def _parse_delta_range(text: str) -> tuple[float, float]:
    low_text, separator, high_text = text.strip().partition("-")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise fail(f"--delta-range: expected two numbers like 0.10-0.30, not {text!r}") from None
    if not separator or not 0.0 <= low <= high <= 1.0:
        raise fail(f"--delta-range: expected LOW-HIGH with 0 <= LOW <= HIGH <= 1, not {text!r}")
    return low, high


def _print_expirations(symbol: str, rows: list, today: date, output: OutputFormat) -> None:
    by_day: dict[date, list[str]] = {}
    multipliers = {row.trading_class: row.multiplier for row in rows}
    strike_counts = {row.trading_class: len(row.strikes) for row in rows}
    for row in rows:
        for day in row.expirations:
            by_day.setdefault(day, []).append(row.trading_class)
    if output is OutputFormat.json:
        print(json.dumps({
            "symbol": symbol,
            "trading_classes": [{"trading_class": row.trading_class, "exchange": row.exchange,
                                 "multiplier": row.multiplier, "strikes": len(row.strikes)}
                                for row in rows],
            "expirations": [{"expiry": day.isoformat(), "dte": (day - today).days,
                             "trading_classes": sorted(classes)}
                            for day, classes in sorted(by_day.items())],
        }, indent=2))
        return
    table = Table(title=f"{symbol} option expirations", title_justify="left")
    table.add_column("Expiry")
    table.add_column("DTE", justify="right")
    table.add_column("Trading classes")
    for day, classes in sorted(by_day.items()):
        table.add_row(day.isoformat(), str((day - today).days), ", ".join(sorted(classes)))
    console.print(table)
    console.print(", ".join(f"{name}: multiplier {multipliers[name]}, {strike_counts[name]} strikes"
                            for name in sorted(multipliers)), highlight=False)


def _quote_dict(q: Quote) -> dict[str, Any]:
    c = q.contract
    greeks = q.greeks
    return {
        "symbol": c.symbol, "sec_type": c.sec_type.value, "con_id": c.con_id,
        "local_symbol": c.local_symbol, "trading_class": c.trading_class or None,
        "expiry": c.expiry.isoformat() if c.expiry else None, "strike": c.strike, "right": c.right,
        "time": q.time.isoformat(), "bid": q.bid, "ask": q.ask, "mid": q.mid, "last": q.last,
        "close": q.close, "bid_size": q.bid_size, "ask_size": q.ask_size, "volume": q.volume,
        "open_interest": q.open_interest,
        "greeks": None if greeks is None else {
            "implied_vol": greeks.implied_vol, "delta": greeks.delta, "gamma": greeks.gamma,
            "vega": greeks.vega, "theta": greeks.theta, "underlying_price": greeks.underlying_price,
            "source": greeks.source,
        },
        "greeks_problem": q.greeks_problem or None,
    }


def _num(value: float | None, decimals: int = 2) -> str:
    return "-" if value is None else f"{value:,.{decimals}f}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} USD"


__all__ = ["option_chain", "quote", "test_ibkr"]
