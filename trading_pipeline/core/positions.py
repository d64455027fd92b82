"""What an option position is worth: the one place for its P&L.

Prices are per share (the premium as quoted); ``multiplier`` shares per contract (100 for
equity options). A short position earns what it sold for less what it pays to close; a long
position the reverse.
"""

from __future__ import annotations

SIDES = ("short", "long")


def position_pnl(side: str, entry_price: float, exit_price: float, contracts: int, multiplier: int = 100) -> float:
    """P&L in account currency of ``contracts`` contracts opened at ``entry_price`` and
    closed (or marked) at ``exit_price``, before commissions."""
    if side not in SIDES:
        raise ValueError(f"side must be 'short' or 'long', not {side!r}")
    per_share = entry_price - exit_price if side == "short" else exit_price - entry_price
    return round(per_share * contracts * multiplier, 6)


def premium_received(entry_price: float, contracts: int, multiplier: int = 100) -> float:
    """The whole position's premium: the most a short option can earn."""
    return round(entry_price * contracts * multiplier, 6)


def pnl_pct_of_premium(pnl: float, entry_price: float, contracts: int, multiplier: int = 100) -> float | None:
    """P&L as a percent of the premium (50.0 = half the premium kept); None without a premium."""
    premium = premium_received(entry_price, contracts, multiplier)
    return None if premium <= 0 else pnl / premium * 100.0
