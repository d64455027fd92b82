"""Rule-based exits: when to close an open option position, and with which order.

Three rules (seeds: Phase 2 checkpoint "ExitManager", operations guide "Exit Triggers"),
judged on the position's P&L at the mark (:class:`~trading_pipeline.core.positions.PositionView`):

1. **profit target**: P&L >= PROFIT_TARGET_PCT (50) percent of the premium, i.e. half of the
   most a short option can earn is kept. Exactly 50 % exits.
2. **stop loss**: P&L <= STOP_LOSS_PCT (-200) percent of the premium (the option costs three
   times what it was sold for). Exactly -200 % exits.
3. **time exit**: DTE <= TIME_EXIT_DTE (3) calendar days. Exactly 3 exits. Only for
   positions that *reached* the window: one opened inside it (a weekly put sold with 3 DTE, a
   0DTE index put, known from ``PositionView.entry_day``) was meant to be held to expiration,
   and the rule would otherwise buy it back on the first pass after the sale.

The first rule that holds decides, in that order (profit > stop > time): a position at its
profit target with 2 DTE left exits as a profit target. Percent figures within 1e-9 of a
threshold count as at it (float noise).

Orders: a LIMIT (``LMT``) for profit and time exits, a MARKET (``MKT``) order for stops
(getting out matters more than the price), each configurable. The limit of a closing order
(:func:`close_limit_price`): **the mid rounded to the tick toward the far side, capped at the
far side**: for a buy to close, the mid rounded *up* (paying at most a part of a tick more
than the mid so the order fills in an ordinary market), never above the ask; for a sell to
close, the mid rounded *down*, never below the bid. Not the ask itself: profit and time exits
are not urgent, and paying the whole spread on every exit would give away a few percent of
the premium each time; the fill management of the service re-prices an order that does not
fill. Without a two-sided quote the far side alone is used (the ask of a buy), else the last
price rounded the same way. A limit is always at least one tick (the broker refuses 0).

The tick is the contract's price grid (``core.pricing``: a plain tick, or the exchange's
market rule, e.g. 0.01 below $3 and 0.05 above for a penny-program class): every limit is a
point of that grid, since the broker refuses any other price (TWS error 110). When the grid
is coarser than the quote (the conservative fallback grid on a penny quote), the far side
itself is rounded away from the mid onto the grid (the ask of a buy up, the bid of a sell
down): the limit then crosses the far side by less than one increment and fills at the
market's price, where a limit rounded the other way might never fill.

Cases without an exit order, each with an explanation:

- **no quote** (no mid and no last price): "no quote: cannot decide" (a due time exit is
  named, but without any price a limit cannot be set and a blind market order is not sent);
- **expired** (DTE < 0): expiration and assignment processing closes it, not an order;
- no rule holds: "hold", with the figures.

**Long positions** mirror the rules on their own P&L (mark - entry): the same percent of the
premium paid, the same DTE; the closing order is a SELL to close. A long option cannot lose
more than its premium (-100 %), so the default stop (-200 %) never fires for it: its loss is
already bounded; set a stop above -100 % if long positions should be stopped out.

:class:`ExitRules` is built like :class:`~trading_pipeline.core.execution_params.ExecutionParameters`:
``ExitRules()`` (defaults), ``ExitRules.from_env(os.environ)`` (variables below; this module
reads nothing itself), ``rules.with_overrides(...)`` (run config), ``rules.as_env()``.
The seeds give these thresholds as fractions in a Python dict (``"profit_target": 0.50``,
``"stop_loss": -2.00``) without environment names; here the variables hold **percent
numbers** like every ``*_pct`` of the project (PROFIT_TARGET_PCT=50, STOP_LOSS_PCT=-200), and
values that look like the seeds' fractions (a target of 1 or less, a stop between -10 and 0)
are refused with a hint, since read as percent they would close every position at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Any

from trading_pipeline.core.positions import (
    PCT_NOISE,
    position_pnl,
    Alert,
    PositionValue,
    PositionView,
    opened_inside_time_window,
    position_alerts,
    value_position,
)
from trading_pipeline.core.pricing import DEFAULT_TICK, Tick, price_grid
from trading_pipeline.errors import ConfigurationError

__all__ = [
    "EXIT_RULE_MEANINGS",
    "EXIT_RULE_VARIABLES",
    "ExitDecision",
    "ExitReason",
    "ExitRules",
    "LIMIT",
    "MARKET",
    "ORDER_TYPES",
    "PositionView",
    "close_action",
    "close_limit_price",
    "decide_exit",
    "decide_exits",
]

LIMIT = "LMT"
MARKET = "MKT"
ORDER_TYPES = (LIMIT, MARKET)

# Guards against the seeds' fraction notation read as percent (see the module docstring).
_SMALLEST_PROFIT_TARGET_PCT = 1.0
_TIGHTEST_STOP_LOSS_PCT = -10.0


class ExitReason(str, Enum):
    """Why a rule closes a position; the values are the ledger's ``trades.exit_reason``."""

    PROFIT_TARGET = "profit_target"
    STOP_LOSS = "stop_loss"
    TIME_EXIT = "time_exit"


@dataclass(frozen=True)
class ExitRules:
    """The exit thresholds and order types (seeds' defaults)."""

    profit_target_pct: float = 50.0  # close when P&L >= 50 % of the premium (max profit)
    stop_loss_pct: float = -200.0  # close when P&L <= -200 % of the premium
    time_exit_dte: int = 3  # close when DTE <= 3
    profit_order_type: str = LIMIT
    stop_order_type: str = MARKET
    time_order_type: str = LIMIT

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("profit_target_pct", "stop_loss_pct"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{_ENV_BY_FIELD[name]}={value!r}: must be a number")
            else:
                object.__setattr__(self, name, float(value))
        if isinstance(self.time_exit_dte, bool) or not isinstance(self.time_exit_dte, int):
            problems.append(f"TIME_EXIT_DTE={self.time_exit_dte!r}: must be a whole number of days")
        elif self.time_exit_dte < 0:
            problems.append(f"TIME_EXIT_DTE={self.time_exit_dte}: must be 0 or more")
        for name in ("profit_order_type", "stop_order_type", "time_order_type"):
            value = getattr(self, name)
            text = str(value).strip().upper()
            if text not in ORDER_TYPES:
                problems.append(f"{_ENV_BY_FIELD[name]}={value!r}: must be LMT or MKT")
            else:
                object.__setattr__(self, name, text)
        if not problems:
            target, stop = self.profit_target_pct, self.stop_loss_pct
            if not 0 < target <= 100:
                problems.append(f"PROFIT_TARGET_PCT={target:g}: must be above 0 and at most 100 (percent of the premium)")
            elif target <= _SMALLEST_PROFIT_TARGET_PCT:
                problems.append(f"PROFIT_TARGET_PCT={target:g}: looks like a fraction; the value is a percent "
                                f"number (write 50 for 50 %)")
            if stop >= 0:
                problems.append(f"STOP_LOSS_PCT={stop:g}: must be negative (a loss, e.g. -200 for -200 % of the premium)")
            elif stop > _TIGHTEST_STOP_LOSS_PCT:
                problems.append(f"STOP_LOSS_PCT={stop:g}: looks like a fraction or is inside the bid-ask noise; "
                                f"the value is a percent number (write -200 for -200 %), {_TIGHTEST_STOP_LOSS_PCT:g} at most")
        if problems:
            raise ConfigurationError("; ".join(problems))

    # -- building

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ExitRules":
        """Rules from environment variable names (unset names keep their defaults; names this
        class does not know are ignored, as ``os.environ`` holds many)."""
        values: dict[str, Any] = {}
        for field_name, variable in _ENV_BY_FIELD.items():
            if variable in env:
                values[field_name] = _parse(field_name, env[variable])
        return cls(**values)

    from_mapping = from_env  # the name ExecutionParameters uses

    def with_overrides(self, **overrides: Any) -> "ExitRules":
        """A copy with some fields changed (Dagster run config); values native or as text."""
        unknown = sorted(set(overrides) - set(_ENV_BY_FIELD))
        if unknown:
            raise ConfigurationError(
                f"unknown exit rule(s): {', '.join(unknown)}; known: {', '.join(_ENV_BY_FIELD)}"
            )
        parsed = {
            name: _parse(name, value) if isinstance(value, str) else value for name, value in overrides.items()
        }
        return replace(self, **parsed)

    def as_env(self) -> dict[str, str]:
        """Every rule as environment variable text (``from_env`` reads it back)."""
        return {variable: _format(getattr(self, name)) for name, variable in _ENV_BY_FIELD.items()}

    # -- using

    def order_type_for(self, reason: ExitReason) -> str:
        return {
            ExitReason.PROFIT_TARGET: self.profit_order_type,
            ExitReason.STOP_LOSS: self.stop_order_type,
            ExitReason.TIME_EXIT: self.time_order_type,
        }[ExitReason(reason)]

    def alerts(self, view: PositionView) -> tuple[Alert, ...]:
        """The position's alerts with these thresholds."""
        return position_alerts(
            view,
            profit_target_pct=self.profit_target_pct,
            stop_loss_pct=self.stop_loss_pct,
            time_exit_dte=self.time_exit_dte,
        )

    def value(self, view: PositionView) -> PositionValue:
        """The position's figures and alerts with these thresholds."""
        return value_position(
            view,
            profit_target_pct=self.profit_target_pct,
            stop_loss_pct=self.stop_loss_pct,
            time_exit_dte=self.time_exit_dte,
        )

    def describe(self) -> str:
        return (f"profit target {self.profit_target_pct:g}% ({self.profit_order_type}), "
                f"stop loss {self.stop_loss_pct:g}% ({self.stop_order_type}), "
                f"time exit at {self.time_exit_dte} DTE ({self.time_order_type})")


# Field -> environment variable; the seeds name none, these follow their style.
_ENV_BY_FIELD: dict[str, str] = {
    "profit_target_pct": "PROFIT_TARGET_PCT",
    "stop_loss_pct": "STOP_LOSS_PCT",
    "time_exit_dte": "TIME_EXIT_DTE",
    "profit_order_type": "PROFIT_TARGET_ORDER_TYPE",
    "stop_order_type": "STOP_LOSS_ORDER_TYPE",
    "time_order_type": "TIME_EXIT_ORDER_TYPE",
}
EXIT_RULE_VARIABLES: tuple[str, ...] = tuple(_ENV_BY_FIELD.values())
# Each variable's meaning, for help texts and docs (defaults: ExitRules()).
EXIT_RULE_MEANINGS: dict[str, str] = {
    "PROFIT_TARGET_PCT": "close when the P&L reaches this percent of the premium (50 = half the max profit)",
    "STOP_LOSS_PCT": "close when the P&L falls to this percent of the premium (-200 = the option at 3x its sale price)",
    "TIME_EXIT_DTE": "close when this many calendar days to expiration or fewer remain",
    "PROFIT_TARGET_ORDER_TYPE": "order type of profit target exits: LMT or MKT",
    "STOP_LOSS_ORDER_TYPE": "order type of stop loss exits: LMT or MKT",
    "TIME_EXIT_ORDER_TYPE": "order type of time exits: LMT or MKT",
}
_KINDS: dict[str, type] = {f.name: type(f.default) for f in fields(ExitRules)}


def _parse(field_name: str, text: str) -> Any:
    variable = _ENV_BY_FIELD[field_name]
    raw = str(text).strip()
    kind = _KINDS[field_name]
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{variable}={text!r}: not a whole number") from None
    if kind is float:
        try:
            number = float(raw.rstrip("%").strip())  # "50%" is read as 50
        except ValueError:
            raise ConfigurationError(f"{variable}={text!r}: not a number") from None
        if not math.isfinite(number):
            raise ConfigurationError(f"{variable}={text!r}: not a finite number")
        return number
    return raw.upper()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class ExitDecision:
    """What to do with one position. ``reason`` None: no exit (``explanation`` says why).

    For an exit: ``action`` BUY (close a short) or SELL (close a long), ``contracts`` the
    open contracts, ``order_type`` LMT or MKT, ``limit_price`` per share for LMT (None for
    MKT). ``mark``, ``pnl_pct`` and ``dte`` are the figures the decision was made on.
    """

    trade_id: int | None
    reason: ExitReason | None
    order_type: str | None
    limit_price: float | None
    explanation: str
    action: str | None = None
    contracts: int = 0
    mark: float | None = None
    pnl_pct: float | None = None
    dte: int | None = None

    @property
    def should_exit(self) -> bool:
        return self.reason is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "reason": None if self.reason is None else self.reason.value,
            "order_type": self.order_type,
            "limit_price": self.limit_price,
            "action": self.action,
            "contracts": self.contracts,
            "mark": self.mark,
            "pnl_pct": self.pnl_pct,
            "dte": self.dte,
            "explanation": self.explanation,
        }


def close_action(side: str) -> str:
    """The order that closes a position: BUY for a short, SELL for a long."""
    if side == "short":
        return "BUY"
    if side == "long":
        return "SELL"
    raise ValueError(f"side must be 'short' or 'long', not {side!r}")


def close_limit_price(view: PositionView, tick: Tick = DEFAULT_TICK) -> float | None:
    """The limit of an order closing ``view`` (see the module docstring); None without any price.

    Buy to close: mid rounded up to the grid, at most the ask; else the ask; else the last
    price rounded up. Sell to close: mid rounded down, at least the bid; else the bid; else
    the last price rounded down. Never below one tick; always a point of ``tick``'s grid
    (a plain tick or the contract's :class:`~trading_pipeline.core.pricing.PriceIncrements`)."""
    grid = price_grid(tick)
    mid = view.mid
    if view.side == "short":
        if mid is not None:
            price = min(grid.round_up(mid), grid.round_up(view.ask))  # type: ignore[arg-type]
        elif view.ask is not None and view.ask > 0:
            price = grid.round_up(view.ask)
        elif view.last is not None and view.last > 0:
            price = grid.round_up(view.last)
        else:
            return None
    else:
        if mid is not None:
            price = max(grid.round_down(mid), grid.round_down(view.bid))  # type: ignore[arg-type]
        elif view.bid is not None and view.bid > 0:
            price = grid.round_down(view.bid)
        elif view.last is not None and view.last > 0:
            price = grid.round_down(view.last)
        else:
            return None
    return round(max(price, grid.bands[0][1]), 10)


def _hold(view: PositionView, explanation: str, *, mark: float | None, pnl_pct: float | None, dte: int) -> ExitDecision:
    return ExitDecision(view.trade_id, None, None, None, explanation, None, 0, mark, pnl_pct, dte)


def decide_exit(view: PositionView, rules: ExitRules = ExitRules(), *, tick: Tick = DEFAULT_TICK) -> ExitDecision:
    """The exit of one position under ``rules`` (priority profit > stop > time); see the
    module docstring for the rules, the orders and the cases without an exit. ``tick``: the
    contract's price grid (a plain tick or its market rule); a limit is a point of it."""
    dte = view.dte
    mark = view.mark
    if dte < 0:
        return _hold(view, f"{view.describe()}: expired {view.expiration.isoformat()}: closed by expiration "
                           f"processing, not by an exit order", mark=mark, pnl_pct=None, dte=dte)
    if mark is None:
        due = f" (time exit due: {dte} DTE <= {rules.time_exit_dte})" if dte <= rules.time_exit_dte else ""
        return _hold(view, f"{view.describe()}: no quote: cannot decide{due}", mark=None, pnl_pct=None, dte=dte)
    # The P&L at this mark (the view's pnl_pct, without computing the mark again).
    premium = view.premium
    pnl_pct = None if premium <= 0 else position_pnl(
        view.side, view.entry_price, mark, view.contracts, view.multiplier) / premium * 100.0

    # Priority: profit > stop > time. Each threshold is inclusive (float noise counts as at it).
    if pnl_pct is not None and pnl_pct >= rules.profit_target_pct - PCT_NOISE:
        reason, order_type = ExitReason.PROFIT_TARGET, rules.profit_order_type
        why = f"profit target: {pnl_pct:.1f}% >= {rules.profit_target_pct:g}%"
    elif pnl_pct is not None and pnl_pct <= rules.stop_loss_pct + PCT_NOISE:
        reason, order_type = ExitReason.STOP_LOSS, rules.stop_order_type
        why = f"stop loss: {pnl_pct:.1f}% <= {rules.stop_loss_pct:g}%"
    elif dte <= rules.time_exit_dte and not opened_inside_time_window(view, rules.time_exit_dte):
        reason, order_type = ExitReason.TIME_EXIT, rules.time_order_type
        why = f"time exit: {dte} DTE <= {rules.time_exit_dte}"
    elif dte <= rules.time_exit_dte:
        return _hold(view, f"{view.describe()}: hold to expiration: opened with "
                           f"{(view.expiration - view.entry_day).days} DTE, inside the time-exit window "
                           f"({rules.time_exit_dte} DTE)", mark=mark, pnl_pct=pnl_pct, dte=dte)
    else:
        return _hold(view, f"{view.describe()}: hold: P&L {pnl_pct:.1f}% of premium, {dte} DTE (target "
                           f"{rules.profit_target_pct:g}%, stop {rules.stop_loss_pct:g}%, time exit at "
                           f"{rules.time_exit_dte} DTE)" if pnl_pct is not None else
                           f"{view.describe()}: hold: no premium to measure P&L against, {dte} DTE "
                           f"(time exit at {rules.time_exit_dte} DTE)",
                     mark=mark, pnl_pct=pnl_pct, dte=dte)

    action = close_action(view.side)
    limit: float | None = None
    if order_type == LIMIT:
        limit = close_limit_price(view, tick)
        if limit is None:  # unreachable with a mark; kept so a LMT never goes out without a price
            return _hold(view, f"{view.describe()}: {why}, but no price for a limit order",
                         mark=mark, pnl_pct=pnl_pct, dte=dte)
        order_text = f"limit {limit:.2f}"
    else:
        order_text = "market"
    explanation = (f"{view.describe()}: {why} (mark {mark:.4g}, entry {view.entry_price:.4g}): "
                   f"{'buy' if action == 'BUY' else 'sell'} to close {view.contracts} at {order_text}")
    return ExitDecision(view.trade_id, reason, order_type, limit, explanation, action, view.contracts,
                        mark, pnl_pct, dte)


def decide_exits(
    views: Iterable[PositionView], rules: ExitRules = ExitRules(), *, tick: Tick = DEFAULT_TICK
) -> list[ExitDecision]:
    """One decision per view, in order (a plain loop: 500 positions take about a millisecond)."""
    return [decide_exit(view, rules, tick=tick) for view in views]
