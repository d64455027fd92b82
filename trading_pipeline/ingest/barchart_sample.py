"""Generator of realistic Barchart naked put screener "main view" exports.

The project's own sample data: the bundled sample file, the benchmark's 100,000-row
export and test fixtures all come from here, never from real downloads.

Each row is a put priced by Black-Scholes with a simple volatility skew, then printed the
way Barchart prints it (see ``../shared/data/README.md``): header names with spaces
quoted, percent cells with ``%`` (and ``+`` when positive), put delta positive, DTE
counting the download day too, ``Return`` = Bid / (Strike - Bid) rounded to 0.1 %,
``Ann Rtn`` = Return * 365 / DTE, and the one-field footer
``"Downloaded from Barchart.com as of MM-DD-YYYY hh:mmam TZ"``.

Regenerate the bundled sample with ``python -m trading_pipeline.ingest.barchart_sample``.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from trading_pipeline.core.calendar import is_session
from trading_pipeline.ingest.barchart import FOOTER_PREFIX, MAIN_VIEW_COLUMNS
from trading_pipeline.settings import sample_export_path

SAMPLE_SEED = 20261120
SAMPLE_ROWS = 60
SAMPLE_EXPORT_DATE = date(2026, 11, 20)  # a Friday
SAMPLE_DOWNLOADED_AT = "11-20-2026 03:45pm CST"

RISK_FREE_RATE = 0.04


@dataclass(frozen=True)
class Underlying:
    symbol: str
    price: float  # typical price level
    volatility: float  # typical at-the-money implied volatility, annual


# Well-known, heavily traded optionable names with plausible price and volatility levels.
WELL_KNOWN_UNDERLYINGS: tuple[Underlying, ...] = (
    Underlying("AAPL", 231.0, 0.26),
    Underlying("AMD", 165.0, 0.48),
    Underlying("AMZN", 226.0, 0.33),
    Underlying("AVGO", 305.0, 0.45),
    Underlying("CRM", 250.0, 0.38),
    Underlying("DIS", 118.0, 0.28),
    Underlying("GLD", 312.0, 0.17),
    Underlying("GOOGL", 205.0, 0.31),
    Underlying("IWM", 236.0, 0.22),
    Underlying("JPM", 298.0, 0.24),
    Underlying("KO", 70.0, 0.17),
    Underlying("META", 745.0, 0.36),
    Underlying("MSFT", 505.0, 0.25),
    Underlying("NVDA", 182.0, 0.50),
    Underlying("PLTR", 157.0, 0.65),
    Underlying("QQQ", 573.0, 0.20),
    Underlying("SPY", 646.0, 0.16),
    Underlying("TSLA", 340.0, 0.60),
    Underlying("V", 350.0, 0.22),
    Underlying("XOM", 113.0, 0.23),
)


def default_downloaded_at(export_date: date) -> str:
    """Footer timestamp text for a download at 3:45 pm in Barchart's (Central) time zone."""
    moment = datetime.combine(export_date, time(15, 45), tzinfo=ZoneInfo("America/Chicago"))
    return f"{moment:%m-%d-%Y} 03:45pm {moment.tzname()}"


def generate_main_view(
    rows: int,
    *,
    seed: int,
    export_date: date,
    downloaded_at: str | None = None,
    footer: bool = True,
    symbols: int | None = None,
    itm_share: float = 0.04,
) -> bytes:
    """A main-view export of ``rows`` puts, as the bytes Barchart would send.

    Contracts are distinct unless a name's chain has too few strikes for its share of rows.

    ``symbols`` defaults to the 20 well-known names for small exports and grows (with
    made-up four-letter tickers) so big exports keep about ten strikes per name.
    ``itm_share`` of the rows are slightly in the money, which prints ``+`` moneyness.
    """
    if rows < 1:
        raise ValueError("rows must be at least 1")
    rng = random.Random(seed)
    symbol_count = symbols or max(len(WELL_KNOWN_UNDERLYINGS), math.ceil(rows / 10))
    universe = _universe(symbol_count, rng)
    expirations = _expirations(export_date, rng)
    rows_per_symbol = _share_out(rows, len(universe), rng)

    lines = [",".join(_quote_if_spaced(name) for name in MAIN_VIEW_COLUMNS)]
    for underlying, count in zip(universe, rows_per_symbol, strict=True):
        lines.extend(_symbol_rows(underlying, count, expirations, export_date, itm_share, rng))
    if footer:
        stamp = downloaded_at or default_downloaded_at(export_date)
        lines.append(f'"{FOOTER_PREFIX} as of {stamp}"')
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_sample(path: Path | None = None) -> Path:
    """Write the bundled sample export (fixed seed, so the file never changes by itself)."""
    target = path or sample_export_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(
        generate_main_view(
            SAMPLE_ROWS,
            seed=SAMPLE_SEED,
            export_date=SAMPLE_EXPORT_DATE,
            downloaded_at=SAMPLE_DOWNLOADED_AT,
        )
    )
    return target


# --- the market being sampled ---------------------------------------------------------


def _universe(count: int, rng: random.Random) -> list[Underlying]:
    universe = list(WELL_KNOWN_UNDERLYINGS[:count])
    taken = {u.symbol for u in universe}
    while len(universe) < count:
        symbol = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        if symbol in taken:
            continue
        taken.add(symbol)
        price = round(math.exp(rng.uniform(math.log(20), math.log(800))), 2)
        universe.append(Underlying(symbol, price, rng.uniform(0.18, 0.80)))
    return universe


def _expirations(export_date: date, rng: random.Random, count: int = 3) -> list[date]:
    """The export's expirations: ``count`` of the listed expirations 20 to 50 days out, as a
    screener set to that DTE window shows them."""
    listed = _weekly_expirations(export_date + timedelta(days=20), export_date + timedelta(days=50))
    return sorted(rng.sample(listed, min(count, len(listed))))


@functools.lru_cache(maxsize=16)
def _weekly_expirations(first: date, last: date) -> tuple[date, ...]:
    """Fridays from first to last; a Friday that is an NYSE holiday expires on Thursday."""
    expirations = []
    for day in (first + timedelta(days=n) for n in range((last - first).days + 1)):
        if day.weekday() != 4:
            continue
        while not is_session(day):
            day -= timedelta(days=1)
        expirations.append(day)
    return tuple(expirations)


def _share_out(total: int, buckets: int, rng: random.Random) -> list[int]:
    """Split total rows over the symbols, every symbol at least one row when possible."""
    base, extra = divmod(total, buckets)
    counts = [base] * buckets
    for index in rng.sample(range(buckets), extra):
        counts[index] += 1
    return counts


def _strike_step(price: float) -> float:
    if price < 50:
        return 1.0
    if price < 200:
        return 2.5
    if price < 500:
        return 5.0
    return 10.0


def _symbol_rows(
    underlying: Underlying,
    count: int,
    expirations: list[date],
    export_date: date,
    itm_share: float,
    rng: random.Random,
) -> list[str]:
    if count == 0:
        return []
    # Today's price and IV rank drift around the symbol's typical level.
    price = round(underlying.price * math.exp(rng.gauss(0.0, 0.02)), 2)
    iv_rank = rng.betavariate(1.6, 3.0) * 100
    step = _strike_step(price)
    top_strike = math.floor(price * 0.99 / step) * step
    grid = [top_strike - i * step for i in range(60) if top_strike - i * step >= price * 0.70]
    itm_strikes = [top_strike + i * step for i in range(2, 5)]
    chosen_expirations = rng.sample(expirations, min(len(expirations), rng.choice((1, 2, 3))))
    # A put seller's screener keeps strikes around 0.15-0.35 delta; take those, and the
    # next nearest to 0.25 delta when a quiet name has too few of them for `count` rows.
    per_expiry = math.ceil(count / len(chosen_expirations))
    contracts = []
    for expiry in chosen_expirations:
        years = ((expiry - export_date).days + 1) / 365
        deltas = {k: abs(_put_delta(price, k, years, underlying.volatility)) for k in grid}
        by_delta = sorted(grid, key=lambda k: abs(deltas[k] - 0.25))
        in_band = sum(1 for k in grid if 0.15 <= deltas[k] <= 0.35)
        contracts += [(expiry, strike) for strike in by_delta[: max(in_band, per_expiry)]]
    picked = rng.sample(contracts, min(count, len(contracts)))
    while len(picked) < count:  # a chain too thin for `count` rows: repeat rather than return fewer
        picked.append(rng.choice(contracts))
    for index, (expiry, _) in enumerate(picked):
        itm_contract = (expiry, rng.choice(itm_strikes))
        if rng.random() < itm_share and itm_contract not in picked:
            picked[index] = itm_contract
    picked.sort(key=lambda contract: (contract[0], -contract[1]))  # nearest expiry, highest strike first
    return [_row(underlying, price, iv_rank, expiry, strike, export_date, rng) for expiry, strike in picked]


def _row(
    underlying: Underlying,
    price: float,
    iv_rank: float,
    expiry: date,
    strike: float,
    export_date: date,
    rng: random.Random,
) -> str:
    dte_reported = (expiry - export_date).days + 1  # Barchart counts the download day
    years = dte_reported / 365
    volatility = _skewed_volatility(underlying.volatility, price, strike)
    put_value, put_delta = _black_scholes_put(price, strike, years, volatility)
    spread = rng.uniform(0.02, 0.08)
    bid = max(0.05, round(put_value * (1 - spread / 2), 2))
    breakeven = strike - bid
    profit_prob = _normal_cdf(_d2(price, breakeven, years, volatility)) * 100
    return_pct = bid / (strike - bid) * 100
    volume = int(math.exp(rng.gauss(6.0, 1.2)))
    open_interest = int(math.exp(rng.gauss(8.5, 1.1)))
    cells = (
        underlying.symbol,
        _trimmed(price, 2),
        expiry.isoformat(),
        str(dte_reported),
        f"{strike:.2f}",
        "Put",
        _signed_percent((strike - price) / price * 100, 2),
        _trimmed(bid, 2),
        _trimmed(breakeven, 2),
        _signed_percent((breakeven - price) / price * 100, 2),
        str(volume),
        str(open_interest),
        f"{iv_rank:.2f}%",
        _trimmed(abs(put_delta), 6),  # Barchart prints put delta positive
        f"{return_pct:.1f}%",
        f"{return_pct * 365 / dte_reported:.1f}%",
        f"{profit_prob:.2f}%",
    )
    return ",".join(cells)


# --- pricing --------------------------------------------------------------------------


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _d1(spot: float, strike: float, years: float, volatility: float) -> float:
    return (math.log(spot / strike) + (RISK_FREE_RATE + volatility**2 / 2) * years) / (
        volatility * math.sqrt(years)
    )


def _d2(spot: float, strike: float, years: float, volatility: float) -> float:
    return _d1(spot, strike, years, volatility) - volatility * math.sqrt(years)


def _skewed_volatility(at_the_money: float, spot: float, strike: float) -> float:
    """Put skew: lower strikes trade at higher implied volatility."""
    return at_the_money * (1 + 1.2 * max(0.0, 1 - strike / spot))


def _put_delta(spot: float, strike: float, years: float, at_the_money: float) -> float:
    return _normal_cdf(_d1(spot, strike, years, _skewed_volatility(at_the_money, spot, strike))) - 1


def _black_scholes_put(spot: float, strike: float, years: float, volatility: float) -> tuple[float, float]:
    """European put value and delta (negative)."""
    d1 = _d1(spot, strike, years, volatility)
    d2 = d1 - volatility * math.sqrt(years)
    value = strike * math.exp(-RISK_FREE_RATE * years) * _normal_cdf(-d2) - spot * _normal_cdf(-d1)
    return value, _normal_cdf(d1) - 1


# --- printing the way Barchart prints -------------------------------------------------


def _trimmed(value: float, places: int) -> str:
    """2.50 -> "2.5", 4.00 -> "4": Barchart drops trailing zeros in prices."""
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _signed_percent(value: float, places: int) -> str:
    text = f"{value:.{places}f}%"
    return "+" + text if value > 0 and float(f"{value:.{places}f}") != 0 else text


def _quote_if_spaced(name: str) -> str:
    return f'"{name}"' if " " in name else name


if __name__ == "__main__":
    print(f"wrote {write_sample()}")
