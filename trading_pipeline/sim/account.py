"""The simulated account: cash, positions, realized P&L, commissions, Reg-T margin, expiry.

Pure bookkeeping. Prices come in as plain numbers (the engine reads them from the market),
so every figure here can be computed by hand.

Conventions, as TWS reports them:

- A position's ``avg_cost`` is per unit *including the multiplier and the commission*: selling
  one put at 1.20 with a $1.00 commission gives avg_cost 119.00 (the net credit per contract);
  buying 100 shares at 50.00 with $1.00 commission gives 50.01 per share.
- Realized P&L is booked when a position is reduced: the closing price (net of its share of
  the commission) against the average cost. An opening fill has no realized P&L (None).
- Commissions (IBKR fixed-rate style): options $0.65 per contract, stocks $0.005 per share,
  with a $1.00 minimum per *order*: an order's executions together pay
  ``max(minimum, rate x filled)``, so the minimum is charged once, on its first execution.
- Margin (Reg-T, as IBKR applies it to a margin account):
    * short put:  premium + max(p x S - OTM, 10% x K),  OTM = max(S - K, 0)
    * short call: premium + max(p x S - OTM, 10% x S),  OTM = max(K - S, 0)
      per share, x multiplier x contracts; p is 20% (15% for options on an index).
      Initial and maintenance are equal. A short call covered by long stock of the same
      underlying (100 shares per contract) needs no option margin.
    * long options: none (the premium has been paid in full).
    * long stock: 50% initial, 25% maintenance; short stock: 50% initial, 30% maintenance.
- Equity with loan value excludes the value of options (IBKR's definition for US options),
  which is why the short option margin adds the premium back.
- BuyingPower is 4 x AvailableFunds (IBKR's figure for a Reg-T margin account), never
  below 0. Cushion is ExcessLiquidity / NetLiquidation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from math import floor

from trading_pipeline.sim.types import Instrument, SecType

OPTION_RATE = 0.65             # $ per contract
STOCK_RATE = 0.005             # $ per share
MINIMUM_PER_ORDER = 1.00       # $

SHORT_OPTION_RATE = 0.20
SHORT_INDEX_OPTION_RATE = 0.15
SHORT_OPTION_FLOOR_RATE = 0.10
LONG_STOCK_INITIAL = 0.50
LONG_STOCK_MAINTENANCE = 0.25
SHORT_STOCK_INITIAL = 0.50
SHORT_STOCK_MAINTENANCE = 0.30
BUYING_POWER_MULTIPLE = 4.0
# IBKR exercises long options and assigns short ones in the money by at least this much.
AUTO_EXERCISE_THRESHOLD = 0.01


def _multiplier(instrument: Instrument) -> int:
    return instrument.multiplier or 1


def order_commission(instrument: Instrument, filled_before: float, filled_after: float) -> float:
    """The commission of one execution taking an order from ``filled_before`` to ``filled_after``.

    The order as a whole pays max(minimum, rate x quantity); each execution pays its increment.
    """
    rate = OPTION_RATE if instrument.is_option else STOCK_RATE

    def total(quantity: float) -> float:
        return max(MINIMUM_PER_ORDER, rate * quantity) if quantity > 0 else 0.0

    return round(total(filled_after) - total(filled_before), 10)


# ----- margin -----


@dataclass(frozen=True)
class MarginRequirement:
    initial: float
    maintenance: float


NO_MARGIN = MarginRequirement(0.0, 0.0)


def short_option_margin_per_share(
    right: str, strike: float, underlying_price: float, premium: float, index_underlying: bool = False
) -> float:
    """Reg-T margin of one short option, per share of the deliverable (before the multiplier)."""
    rate = SHORT_INDEX_OPTION_RATE if index_underlying else SHORT_OPTION_RATE
    if right == "P":
        out_of_the_money = max(underlying_price - strike, 0.0)
        floor_amount = SHORT_OPTION_FLOOR_RATE * strike
    else:
        out_of_the_money = max(strike - underlying_price, 0.0)
        floor_amount = SHORT_OPTION_FLOOR_RATE * underlying_price
    return premium + max(rate * underlying_price - out_of_the_money, floor_amount)


def position_margin(
    instrument: Instrument, quantity: float, mark: float, underlying_price: float | None
) -> MarginRequirement:
    """Margin of one position, without offsets against other positions."""
    if quantity == 0 or instrument.sec_type is SecType.IND:
        return NO_MARGIN
    if instrument.is_option:
        if quantity > 0:
            return NO_MARGIN
        if underlying_price is None:
            raise ValueError(f"the margin of {instrument.local_symbol} needs its underlying price")
        per_share = short_option_margin_per_share(
            instrument.right,
            instrument.strike,
            underlying_price,
            mark,
            index_underlying=instrument.underlying_sec_type is SecType.IND,
        )
        amount = per_share * _multiplier(instrument) * abs(quantity)
        return MarginRequirement(amount, amount)
    value = abs(quantity) * mark
    if quantity > 0:
        return MarginRequirement(LONG_STOCK_INITIAL * value, LONG_STOCK_MAINTENANCE * value)
    return MarginRequirement(SHORT_STOCK_INITIAL * value, SHORT_STOCK_MAINTENANCE * value)


# ----- positions and the account -----


@dataclass
class Holding:
    instrument: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0            # per unit incl. multiplier and commission
    realized_pnl: float = 0.0        # since the simulation started


@dataclass(frozen=True)
class AccountSnapshot:
    """The account's figures at one set of marks (TWS account-value names in comments)."""

    cash: float                       # TotalCashValue
    stock_value: float                # StockMarketValue (signed)
    option_value: float               # OptionMarketValue (signed)
    gross_position_value: float       # GrossPositionValue
    net_liquidation: float            # NetLiquidation
    equity_with_loan: float           # EquityWithLoanValue
    init_margin: float                # InitMarginReq
    maint_margin: float               # MaintMarginReq
    available_funds: float            # AvailableFunds
    excess_liquidity: float           # ExcessLiquidity
    buying_power: float               # BuyingPower
    cushion: float                    # Cushion
    realized_pnl: float               # RealizedPnL
    unrealized_pnl: float             # UnrealizedPnL

    def tws_values(self) -> dict[str, float]:
        """The values under the keys TWS uses in updateAccountValue / accountSummary (USD)."""
        return {
            "NetLiquidation": self.net_liquidation,
            "TotalCashValue": self.cash,
            "SettledCash": self.cash,
            "GrossPositionValue": self.gross_position_value,
            "StockMarketValue": self.stock_value,
            "OptionMarketValue": self.option_value,
            "EquityWithLoanValue": self.equity_with_loan,
            "InitMarginReq": self.init_margin,
            "MaintMarginReq": self.maint_margin,
            "FullInitMarginReq": self.init_margin,
            "FullMaintMarginReq": self.maint_margin,
            "AvailableFunds": self.available_funds,
            "FullAvailableFunds": self.available_funds,
            "ExcessLiquidity": self.excess_liquidity,
            "FullExcessLiquidity": self.excess_liquidity,
            "BuyingPower": self.buying_power,
            "Cushion": self.cushion,
            "RealizedPnL": self.realized_pnl,
            "UnrealizedPnL": self.unrealized_pnl,
        }


class Account:
    def __init__(self, account_id: str, cash: float):
        self.account_id = account_id
        self.cash = float(cash)
        self._holdings: dict[int, Holding] = {}

    def copy(self) -> Account:
        """An independent copy, for what-if calculations (instruments are shared: immutable)."""
        twin = Account(self.account_id, self.cash)
        twin._holdings = {con_id: replace(holding) for con_id, holding in self._holdings.items()}
        return twin

    def holding(self, con_id: int) -> Holding | None:
        return self._holdings.get(con_id)

    def holdings(self) -> list[Holding]:
        """Open positions (non-zero), in the order they were first opened."""
        return [h for h in self._holdings.values() if h.quantity != 0]

    @property
    def realized_pnl(self) -> float:
        return sum(h.realized_pnl for h in self._holdings.values())

    def apply_fill(self, instrument: Instrument, side: str, quantity: float, price: float, commission: float) -> float | None:
        """Book one execution; return its realized P&L (None when it only opened or added).

        ``side`` is "BOT" or "SLD"; ``price`` per share (per unit before the multiplier).
        """
        if side not in ("BOT", "SLD"):
            raise ValueError(f"side must be BOT or SLD, got {side!r}")
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, got {quantity}")
        multiplier = _multiplier(instrument)
        direction = 1.0 if side == "BOT" else -1.0
        self.cash -= direction * quantity * price * multiplier + commission

        holding = self._holdings.setdefault(instrument.con_id, Holding(instrument))
        commission_per_unit = commission / quantity
        # What one unit costs (buy) or brings in (sell), net of its share of the commission.
        unit_value = price * multiplier + direction * commission_per_unit

        realized: float | None = None
        opening = quantity
        if holding.quantity * direction < 0:          # reduces (or flips) the position
            closing = min(quantity, abs(holding.quantity))
            if holding.quantity > 0:
                realized = closing * (unit_value - holding.avg_cost)
            else:
                realized = closing * (holding.avg_cost - unit_value)
            holding.realized_pnl += realized
            holding.quantity += direction * closing
            opening = quantity - closing
            if holding.quantity == 0:
                holding.avg_cost = 0.0
        if opening > 0:
            held = abs(holding.quantity)
            holding.avg_cost = (held * holding.avg_cost + opening * unit_value) / (held + opening)
            holding.quantity += direction * opening
        return realized

    def snapshot(self, marks: Mapping[int, float], underlying_prices: Mapping[str, float]) -> AccountSnapshot:
        """The account valued at ``marks`` (per share, by conId) and underlying prices (by symbol).

        Every held instrument needs a mark, every short option its underlying's price.
        """
        stock_value = option_value = gross = unrealized = 0.0
        initial = maintenance = 0.0
        long_shares: dict[str, float] = {}
        for holding in self.holdings():
            if holding.instrument.sec_type is SecType.STK and holding.quantity > 0:
                long_shares[holding.instrument.symbol] = long_shares.get(holding.instrument.symbol, 0.0) + holding.quantity

        for holding in self.holdings():
            instrument = holding.instrument
            mark = marks[instrument.con_id]
            value = holding.quantity * mark * _multiplier(instrument)
            gross += abs(value)
            unrealized += value - holding.quantity * holding.avg_cost
            if instrument.is_option:
                option_value += value
                quantity = holding.quantity
                if quantity < 0 and instrument.right == "C" and instrument.underlying_sec_type is SecType.STK:
                    # Covered calls: long stock of the underlying covers whole contracts.
                    available = long_shares.get(instrument.underlying_symbol, 0.0)
                    covered = min(float(floor(available / _multiplier(instrument))), abs(quantity))
                    long_shares[instrument.underlying_symbol] = available - covered * _multiplier(instrument)
                    quantity += covered
                underlying = underlying_prices.get(instrument.underlying_symbol) if quantity < 0 else None
                requirement = position_margin(instrument, quantity, mark, underlying)
            else:
                stock_value += value
                requirement = position_margin(instrument, holding.quantity, mark, None)
            initial += requirement.initial
            maintenance += requirement.maintenance

        net_liquidation = self.cash + stock_value + option_value
        equity_with_loan = self.cash + stock_value
        available = equity_with_loan - initial
        excess = equity_with_loan - maintenance
        return AccountSnapshot(
            cash=self.cash,
            stock_value=stock_value,
            option_value=option_value,
            gross_position_value=gross,
            net_liquidation=net_liquidation,
            equity_with_loan=equity_with_loan,
            init_margin=initial,
            maint_margin=maintenance,
            available_funds=available,
            excess_liquidity=excess,
            buying_power=max(available, 0.0) * BUYING_POWER_MULTIPLE,
            cushion=excess / net_liquidation if net_liquidation > 0 else 0.0,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=unrealized,
        )


# ----- expiry -----


@dataclass(frozen=True)
class BookTrade:
    """One book entry at expiry: the option leaving the account, or the stock delivered."""

    instrument: Instrument
    side: str                          # BOT / SLD
    quantity: float
    price: float
    reason: str                        # "expiration", "assignment", "exercise"


def intrinsic_value(instrument: Instrument, underlying_price: float) -> float:
    if instrument.right == "P":
        return max(instrument.strike - underlying_price, 0.0)
    return max(underlying_price - instrument.strike, 0.0)


def expiry_trades(
    option: Instrument, quantity: float, underlying_price: float, underlying: Instrument | None
) -> list[BookTrade]:
    """What happens to a position of ``quantity`` contracts at the close of its expiry day.

    Out of the money (intrinsic < $0.01): the contracts expire worthless (booked at 0).
    In the money: long contracts are exercised, short ones assigned. Physically settled
    (``underlying`` is a stock): the option is booked out at 0 and the stock changes hands at
    the strike, multiplier shares per contract. Cash settled (``underlying`` None or an
    index): the option is booked out at its intrinsic value.
    """
    if quantity == 0:
        return []
    contracts = abs(quantity)
    close_side = "SLD" if quantity > 0 else "BOT"
    intrinsic = intrinsic_value(option, underlying_price)
    if intrinsic < AUTO_EXERCISE_THRESHOLD:
        return [BookTrade(option, close_side, contracts, 0.0, "expiration")]
    reason = "exercise" if quantity > 0 else "assignment"
    if underlying is None or underlying.sec_type is not SecType.STK:
        return [BookTrade(option, close_side, contracts, intrinsic, reason)]
    # Long put exercised / short call assigned: stock is sold; long call / short put: bought.
    receives_stock = (option.right == "C") == (quantity > 0)
    return [
        BookTrade(option, close_side, contracts, 0.0, reason),
        BookTrade(
            underlying,
            "BOT" if receives_stock else "SLD",
            contracts * _multiplier(option),
            option.strike,
            reason,
        ),
    ]
