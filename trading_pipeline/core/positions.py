"""What an option position is worth: the one place for its P&L, and what a seller must see.

Prices are per share (the premium as quoted); ``multiplier`` shares per contract (100 for
equity options). A short position earns what it sold for less what it pays to close; a long
position the reverse.

:class:`PositionView` is one open position as monitoring sees it: the ledger's terms (entry
price, contracts, side) with the broker's quote and greeks, plain values only. Its derived
figures are properties:

- ``mark``: the mid when there is a two-sided quote, else the last price, else None (no
  quote). **Refinement of the brief** ("mid when both sides > 0"): a bid of exactly 0 with
  an ask above it is a real quote (nobody bids for a nearly worthless option) and gives the
  mid ``ask / 2``; otherwise exactly those options, the ones a short seller most wants to
  buy back, would have no mark. IBKR's "no quote" values (-1, NaN) are turned into None when
  the view is made, and a crossed quote (ask below bid) is not two-sided.
- ``pnl``: dollars at the mark, before commissions; ``pnl_pct``: percent of the premium
  (paid or received); ``premium``: the whole position's premium.
- ``dte``: calendar days from ``as_of_day`` to expiration (negative once expired).
- ``distance_to_strike_pct``: how far out of the money, in percent of the stock price:
  ``(underlying - strike) / underlying * 100`` for a put, ``(strike - underlying) /
  underlying * 100`` for a call. Negative means in the money.

:func:`position_alerts` lists the things to look at, each an :class:`Alert` (a code and a
short text); thresholds are the module constants below and the exit rules' numbers (passed
in as plain values; :meth:`trading_pipeline.core.exits.ExitRules.alerts` passes its own).
:func:`value_position` puts a view's figures and alerts in one flat :class:`PositionValue`
(for tables, JSON and position snapshots).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

SIDES = ("short", "long")
RIGHTS = ("P", "C")

# ---------------------------------------------------------------- alert thresholds
# The exit rules' defaults (core/exits.ExitRules holds the configured values; these are the
# seeds' numbers, repeated here only as defaults of position_alerts so this module needs no
# import of exits).
DEFAULT_PROFIT_TARGET_PCT = 50.0
DEFAULT_STOP_LOSS_PCT = -200.0
DEFAULT_TIME_EXIT_DTE = 3
# "Near the profit target": within this many percentage points below it (40 % with the
# 50 % target), so the seller sees an exit coming.
NEAR_PROFIT_TARGET_POINTS = 10.0
# A loss at or beyond the whole premium (-100 %): the trade has lost what it could earn.
PREMIUM_LOSS_ALERT_PCT = -100.0
# The stock within this percent of the strike (and still out of the money).
NEAR_STRIKE_PCT = 2.0
# |delta| above this: the option is more likely than not to finish in the money.
HIGH_DELTA = 0.50

# Alert codes (stable, for filters and colours); the texts carry the numbers.
ALERT_NO_QUOTE = "no_quote"
ALERT_EXPIRED = "expired"
ALERT_PROFIT_TARGET = "profit_target"
ALERT_NEAR_PROFIT_TARGET = "near_profit_target"
ALERT_STOP_LOSS = "stop_loss"
ALERT_PREMIUM_LOSS = "premium_loss"
ALERT_TIME_EXIT = "time_exit"
ALERT_HELD_TO_EXPIRATION = "held_to_expiration"
ALERT_IN_THE_MONEY = "in_the_money"
ALERT_NEAR_STRIKE = "near_strike"
ALERT_HIGH_DELTA = "high_delta"

# Percent figures closer than this to a threshold count as at it (binary float noise:
# 0.3 - 0.15 is 0.15000000000000002).
PCT_NOISE = 1e-9


# ---------------------------------------------------------------- P&L rule


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


def signed_quantity(side: str, contracts: int) -> int:
    """Contracts as the broker counts them: negative when short."""
    if side not in SIDES:
        raise ValueError(f"side must be 'short' or 'long', not {side!r}")
    return -contracts if side == "short" else contracts


def normalize_right(right: str) -> str:
    """"P" or "C" from any of P/C/PUT/CALL in any case (the ledger stores P/C, the Barchart
    frame put/call)."""
    text = str(right).strip().upper()
    if text in ("P", "PUT"):
        return "P"
    if text in ("C", "CALL"):
        return "C"
    raise ValueError(f"right must be P (put) or C (call), not {right!r}")


def _quote_value(value: float | None) -> float | None:
    """A broker price, or None for IBKR's "no value" (None, NaN, infinity, -1 or any negative)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        return None
    return value


def position_mid(bid: float | None, ask: float | None) -> float | None:
    """The mid of an option quote for valuing a position: a bid of 0 counts (a far
    out-of-the-money option quoted 0 / 0.05 is worth about 0.025, not nothing); None without
    an ask above 0, or when the quote is crossed. Prices as :func:`_quote_value` reads them."""
    bid, ask = _quote_value(bid), _quote_value(ask)
    if bid is None or ask is None or ask <= 0 or ask < bid:
        return None
    return (bid + ask) / 2


def position_mark(bid: float | None, ask: float | None, last: float | None) -> float | None:
    """The price a position is valued at: the mid (:func:`position_mid`), else the last
    price above 0, else None. Monitoring, exits and snapshots all use this one rule."""
    mid = position_mid(bid, ask)
    if mid is not None:
        return mid
    last = _quote_value(last)
    return last if last is not None and last > 0 else None


def _optional_number(value: float | None) -> float | None:
    """A greek or IV: None for missing or NaN (greeks may be negative)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- the view


@dataclass(frozen=True)
class PositionView:
    """What monitoring sees of one open option position; plain values only.

    ``contracts`` is the open count (positive; ``side`` says short or long); ``entry_price``
    per share. ``bid``/``ask``/``last`` and ``underlying_price`` are the broker's; missing,
    NaN and negative ("no quote") become None. Greeks as the broker gives them (put delta
    negative); ``iv`` as a fraction (0.32), as IBKR reports it. ``as_of_day``: the day the
    figures are for (the caller's clock; this module never reads one).
    """

    trade_id: int | None
    symbol: str
    right: str
    strike: float
    expiration: date
    contracts: int
    entry_price: float
    as_of_day: date
    side: str = "short"
    multiplier: int = 100
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    underlying_price: float | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    iv: float | None = None
    con_id: int | None = None
    account: str | None = None
    entry_day: date | None = None  # the New York day the position was opened, when known

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "symbol", str(self.symbol).strip().upper())
        set_(self, "right", normalize_right(self.right))
        # The ledger's money columns may arrive as Decimal or int; the arithmetic is float.
        set_(self, "strike", float(self.strike))
        set_(self, "entry_price", float(self.entry_price))
        if self.side not in SIDES:
            raise ValueError(f"{self._label()}: side must be 'short' or 'long', not {self.side!r}")
        if isinstance(self.contracts, bool) or not isinstance(self.contracts, int) or self.contracts < 1:
            raise ValueError(f"{self._label()}: contracts must be a whole number of 1 or more, not {self.contracts!r}")
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, int) or self.multiplier < 1:
            raise ValueError(f"{self._label()}: multiplier must be a whole number of 1 or more, not {self.multiplier!r}")
        if not (math.isfinite(self.strike) and self.strike > 0):
            raise ValueError(f"{self._label()}: strike must be a positive number, not {self.strike!r}")
        if not (math.isfinite(self.entry_price) and self.entry_price >= 0):
            raise ValueError(f"{self._label()}: entry price must be 0 or more, not {self.entry_price!r}")
        for name in ("bid", "ask", "last", "underlying_price"):
            set_(self, name, _quote_value(getattr(self, name)))
        if self.underlying_price == 0:
            set_(self, "underlying_price", None)  # a stock at $0 is a missing quote
        for name in ("delta", "gamma", "theta", "vega", "iv"):
            set_(self, name, _optional_number(getattr(self, name)))
        # The quote figures every rule reads, computed once (the view never changes); kept
        # outside the dataclass fields so equality and repr show only what was given.
        mid = position_mid(self.bid, self.ask)
        set_(self, "_two_sided", mid is not None)
        set_(self, "_mid", mid)
        set_(self, "_mark", position_mark(self.bid, self.ask, self.last))
        set_(self, "_premium", premium_received(self.entry_price, self.contracts, self.multiplier))
        set_(self, "_description", f"{self.symbol} {self.expiration.isoformat()} {self.strike:g} {self.right} "
                                   f"x{self.contracts} {self.side}")

    def _label(self) -> str:
        return f"position {self.trade_id if self.trade_id is not None else '?'} ({self.symbol})"

    def describe(self) -> str:
        """``AAPL 2026-12-04 180 P x2 short``."""
        return self._description  # type: ignore[attr-defined]

    # -- the quote

    @property
    def has_two_sided_quote(self) -> bool:
        """A bid (0 counts) and an ask above 0, not crossed."""
        return self._two_sided  # type: ignore[attr-defined]

    @property
    def mid(self) -> float | None:
        return self._mid  # type: ignore[attr-defined]

    @property
    def mark(self) -> float | None:
        """Mid, else the last price (above 0), else None."""
        return self._mark  # type: ignore[attr-defined]

    @property
    def has_quote(self) -> bool:
        return self._mark is not None  # type: ignore[attr-defined]

    # -- money

    @property
    def premium(self) -> float:
        """The whole position's premium (received when short, paid when long)."""
        return self._premium  # type: ignore[attr-defined]

    @property
    def market_value(self) -> float | None:
        """What closing at the mark would cost (short) or bring (long), in dollars."""
        mark = self.mark
        return None if mark is None else round(mark * self.contracts * self.multiplier, 6)

    @property
    def pnl(self) -> float | None:
        mark = self.mark
        if mark is None:
            return None
        return position_pnl(self.side, self.entry_price, mark, self.contracts, self.multiplier)

    @property
    def pnl_pct(self) -> float | None:
        """Percent of the premium; None without a mark or with a zero premium."""
        pnl = self.pnl
        if pnl is None:
            return None
        return pnl_pct_of_premium(pnl, self.entry_price, self.contracts, self.multiplier)

    # -- time and distance

    @property
    def dte(self) -> int:
        """Calendar days to expiration (0 on expiration day, negative after it)."""
        return (self.expiration - self.as_of_day).days

    @property
    def is_expired(self) -> bool:
        return self.dte < 0

    @property
    def distance_to_strike_pct(self) -> float | None:
        """Out-of-the-money distance in percent of the stock price (negative: in the money)."""
        price = self.underlying_price
        if price is None:
            return None
        gap = price - self.strike if self.right == "P" else self.strike - price
        return gap / price * 100.0

    @property
    def is_in_the_money(self) -> bool | None:
        distance = self.distance_to_strike_pct
        return None if distance is None else distance < 0

    @property
    def alerts(self) -> tuple[str, ...]:
        """The alert texts with the seeds' exit thresholds (ExitRules.alerts for configured ones)."""
        return tuple(alert.text for alert in position_alerts(self))


# ---------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Alert:
    code: str
    text: str

    def __str__(self) -> str:
        return self.text


def opened_inside_time_window(view: PositionView, time_exit_dte: int) -> bool:
    """True when the position was opened with ``time_exit_dte`` days or fewer to expiration (a
    weekly or 0DTE sale): it is held to expiration, the time exit does not apply to it
    (otherwise every short-dated sale would be bought back at the next monitoring pass).
    Unknown opening day: False (the time exit applies)."""
    return view.entry_day is not None and (view.expiration - view.entry_day).days <= time_exit_dte


def position_alerts(
    view: PositionView,
    *,
    profit_target_pct: float = DEFAULT_PROFIT_TARGET_PCT,
    stop_loss_pct: float = DEFAULT_STOP_LOSS_PCT,
    time_exit_dte: int = DEFAULT_TIME_EXIT_DTE,
) -> tuple[Alert, ...]:
    """Everything a seller must see about one position, most urgent first.

    - ``expired``: past expiration (expiration processing closes it, not an exit order);
    - ``no_quote``: no mark, so P&L and the price rules cannot be judged;
    - ``profit_target`` (P&L >= target) or ``near_profit_target`` (within
      NEAR_PROFIT_TARGET_POINTS below it);
    - ``stop_loss`` (P&L <= the stop), else ``premium_loss`` (P&L <= -100 % of the premium);
    - ``time_exit``: 0 <= DTE <= the time exit; ``held_to_expiration`` instead for a position
      opened inside that window (:func:`opened_inside_time_window`: no time exit for it);
    - for short positions only, where they mean assignment risk: ``in_the_money`` (the stock
      beyond the strike), else ``near_strike`` (within NEAR_STRIKE_PCT), and ``high_delta``
      (|delta| > HIGH_DELTA). For a long option being in the money is the good case.
    """
    alerts: list[Alert] = []
    dte = view.dte
    if dte < 0:
        alerts.append(Alert(ALERT_EXPIRED, f"expired {view.expiration.isoformat()} ({-dte} day(s) ago)"))
    pct = view.pnl_pct
    if view.mark is None:
        alerts.append(Alert(ALERT_NO_QUOTE, "no quote: P&L unknown"))
    elif pct is not None:
        if pct >= profit_target_pct - PCT_NOISE:
            alerts.append(Alert(ALERT_PROFIT_TARGET,
                                f"profit target reached: {pct:.1f}% of premium >= {profit_target_pct:g}%"))
        elif pct >= profit_target_pct - NEAR_PROFIT_TARGET_POINTS - PCT_NOISE:
            alerts.append(Alert(ALERT_NEAR_PROFIT_TARGET,
                                f"near profit target: {pct:.1f}% of premium (target {profit_target_pct:g}%)"))
        if pct <= stop_loss_pct + PCT_NOISE:
            alerts.append(Alert(ALERT_STOP_LOSS, f"stop loss reached: {pct:.1f}% of premium <= {stop_loss_pct:g}%"))
        elif pct <= PREMIUM_LOSS_ALERT_PCT + PCT_NOISE:
            alerts.append(Alert(ALERT_PREMIUM_LOSS, f"loss beyond the premium: {pct:.1f}% of premium"))
    if 0 <= dte <= time_exit_dte:
        if opened_inside_time_window(view, time_exit_dte):
            alerts.append(Alert(ALERT_HELD_TO_EXPIRATION,
                                f"held to expiration: {dte} DTE, opened with "
                                f"{(view.expiration - view.entry_day).days} DTE (inside the time exit, "  # type: ignore[operator]
                                f"{time_exit_dte} DTE)"))
        else:
            alerts.append(Alert(ALERT_TIME_EXIT, f"time exit: {dte} DTE <= {time_exit_dte}"))
    if view.side == "short":
        distance = view.distance_to_strike_pct
        kind = "put" if view.right == "P" else "call"
        if distance is not None and distance < 0:
            where = "below" if view.right == "P" else "above"
            alerts.append(Alert(ALERT_IN_THE_MONEY,
                                f"strike breached (ITM): stock {view.underlying_price:.2f} {where} "
                                f"the {view.strike:g} {kind}"))
        elif distance is not None and distance <= NEAR_STRIKE_PCT:
            alerts.append(Alert(ALERT_NEAR_STRIKE,
                                f"near strike: stock {distance:.2f}% from the {view.strike:g} {kind}"))
        if view.delta is not None and abs(view.delta) > HIGH_DELTA:
            alerts.append(Alert(ALERT_HIGH_DELTA, f"delta {abs(view.delta):.2f} above {HIGH_DELTA:.2f}"))
    return tuple(alerts)


# ---------------------------------------------------------------- one flat row


@dataclass(frozen=True)
class PositionValue:
    """A view's terms, figures and alerts as one flat row (tables, JSON, snapshots)."""

    trade_id: int | None
    symbol: str
    right: str
    strike: float
    expiration: date
    side: str
    contracts: int
    multiplier: int
    entry_price: float
    premium: float
    bid: float | None
    ask: float | None
    mark: float | None
    market_value: float | None
    pnl: float | None
    pnl_pct: float | None
    dte: int
    underlying_price: float | None
    distance_to_strike_pct: float | None
    delta: float | None
    gamma: float | None
    theta: float | None
    vega: float | None
    iv: float | None
    alerts: tuple[Alert, ...]

    @property
    def alert_texts(self) -> tuple[str, ...]:
        return tuple(alert.text for alert in self.alerts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the expiration as ISO text, alerts as their texts."""
        row: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        row["expiration"] = self.expiration.isoformat()
        row["alerts"] = list(self.alert_texts)
        return row


def value_position(
    view: PositionView,
    *,
    profit_target_pct: float = DEFAULT_PROFIT_TARGET_PCT,
    stop_loss_pct: float = DEFAULT_STOP_LOSS_PCT,
    time_exit_dte: int = DEFAULT_TIME_EXIT_DTE,
) -> PositionValue:
    """The view's derived figures and alerts, computed once (ExitRules.value gives the
    configured thresholds)."""
    return PositionValue(
        trade_id=view.trade_id,
        symbol=view.symbol,
        right=view.right,
        strike=view.strike,
        expiration=view.expiration,
        side=view.side,
        contracts=view.contracts,
        multiplier=view.multiplier,
        entry_price=view.entry_price,
        premium=view.premium,
        bid=view.bid,
        ask=view.ask,
        mark=view.mark,
        market_value=view.market_value,
        pnl=view.pnl,
        pnl_pct=view.pnl_pct,
        dte=view.dte,
        underlying_price=view.underlying_price,
        distance_to_strike_pct=view.distance_to_strike_pct,
        delta=view.delta,
        gamma=view.gamma,
        theta=view.theta,
        vega=view.vega,
        iv=view.iv,
        alerts=position_alerts(
            view, profit_target_pct=profit_target_pct, stop_loss_pct=stop_loss_pct, time_exit_dte=time_exit_dte
        ),
    )


def delivered_shares(side: str, right: str, contracts: int, multiplier: int) -> int:
    """Shares an assignment / exercise delivers, signed as a position: a short put or a long
    call buys the stock (+), a short call or a long put sells it (-)."""
    buys = (right == "P") == (side == "short")
    shares = contracts * multiplier
    return shares if buys else -shares
