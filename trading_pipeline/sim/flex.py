"""The simulated account's history as IBKR Flex XML: Activity and Trade Confirmation statements.

A pure function of a list of :class:`~trading_pipeline.sim.types.Execution` records (what
``SimBroker.executions()`` returns) and a few options; no clock, no I/O. The layout, element
and attribute names are IBKR's, modelled on real statements, so that the project's Flex
importer and ibflex read them as they read IBKR's:

Activity statement (``type="AF"``)::

    <FlexQueryResponse queryName="..." type="AF">
    <FlexStatements count="1">
    <FlexStatement accountId=".." fromDate="yyyyMMdd" toDate=".." period=".." whenGenerated="yyyyMMdd;HHmmss">
    <Trades>
    <Trade accountId=".." currency="USD" assetCategory="OPT" symbol="AAPL  261204P00190000" ... />
    </Trades>
    <OptionEAE>
    <OptionEAE ... transactionType="Assignment" tradeID=".." />
    </OptionEAE>
    </FlexStatement>
    </FlexStatements>
    </FlexQueryResponse>

Trade Confirmation statement (``type="TCF"``): ``<TradeConfirms><TradeConfirm .../>`` with the
TCF names (``price``, ``commission``, ``execID``, ``orderID``, open/close inside ``code``).

The realities reproduced (as IBKR books them):

- Every row is one execution: ``levelOfDetail="EXECUTION"``. ``quantity`` is signed (negative
  for sells), ``ibCommission`` / ``commission`` negative when charged, ``dateTime`` is
  ``yyyyMMdd;HHmmss`` in New York time. Options carry the OCC symbol padded with spaces.
- ``openCloseIndicator`` (TCF: inside ``code``) is worked out from the running position of
  the whole history given, so a closing trade inside the window whose opening is older
  still says "C". ``notes`` "P" marks every execution of an order that filled in parts.
- Expirations: ``transactionType="BookTrade"``, ``notes="Ep"``, price 0, no commission, at
  16:20 New York on the expiry day, ``ibExecID`` empty (IBKR gives book entries no
  execution id: importers must key them on ``transactionID`` / ``tradeID``), ``ibOrderID``
  equal to the ``transactionID``.
- Assignments / exercises: the option's BookTrade (``notes`` "A" / "Ex", price 0; the
  intrinsic value for cash-settled index options), the stock's BookTrade at the strike
  (same notes), and in the Activity statement ``<OptionEAE>`` rows (the option's with
  ``transactionType`` Assignment / Exercise / Expiration, the stock's Buy / Sell) carrying
  the ``tradeID`` of the Trade row they describe.
- Cancel and correct (``FlexOptions.correct_execution = N``): the Nth exchange execution of
  the statement is reported as booked, then a ``TradeCancel`` row (``notes="Ca"``, ``buySell``
  "BUY (Ca.)" / "SELL (Ca.)", the quantity reversed, empty ``tradeID`` and ``ibExecID``,
  ``origTradeID`` = the original's tradeID, commission 0), then the rebook under the same
  tradeID with the exec id's last part incremented (``.01.01`` -> ``.01.02``). IBKR does not
  refund a commission on a TradeCancel; the rebook carries the adjustment. So the original
  is reported with ``correction_refund`` dollars too much commission and the rebook with
  ``+correction_refund`` (a positive commission): the commissions of the three rows add up
  to what the account paid, and the quantities and proceeds of the original and the cancel
  cancel out (the cancelled execution does not count).

Ids are derived from the execution ids' sequence numbers, so an execution keeps its tradeID
and transactionID whatever window a statement covers.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from enum import Enum
from functools import lru_cache

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim.types import Execution, Instrument


class StatementKind(str, Enum):
    """The two Flex statements; the value is FlexQueryResponse's ``type``."""

    ACTIVITY = "AF"
    TRADE_CONFIRMATION = "TCF"


# IBKR's date formats (a Flex query setting), as strftime patterns.
DATE_FORMATS = {
    "yyyyMMdd": "%Y%m%d",
    "yyyy-MM-dd": "%Y-%m-%d",
    "MM/dd/yyyy": "%m/%d/%Y",
    "dd/MM/yyyy": "%d/%m/%Y",
}
DEFAULT_QUERY_NAMES = {
    StatementKind.ACTIVITY: "TP Activity",
    StatementKind.TRADE_CONFIRMATION: "TP Trade Confirmations",
}
# Expirations, assignments and exercises are booked at 16:20 New York on the expiry day.
BOOK_TIME_NEW_YORK = time(16, 20)
BOOK_NOTES = {"expiration": "Ep", "assignment": "A", "exercise": "Ex"}
EAE_OPTION_ACTIONS = {"expiration": "Expiration", "assignment": "Assignment", "exercise": "Exercise"}
# Number ranges that look like IBKR's (ten-digit tradeIDs, eleven-digit transactionIDs).
TRADE_ID_BASE = 1_800_000_000
TRANSACTION_ID_BASE = 10_600_000_000
# transactionID = base + 4 x sequence + one of these: a row kind's place among its execution's rows.
_ORIGINAL, _CANCEL, _REBOOK = 0, 1, 2
_ASSET_ORDER = {"STK": 0, "OPT": 1}
# Month abbreviations of option descriptions (not strftime's %b, which follows the locale).
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class FlexOptions:
    """How a statement is made.

    ``from_date`` / ``to_date`` (New York trade dates, inclusive) default to the first and last
    execution's. ``correct_execution`` N > 0 injects a cancel-and-correct on the Nth exchange
    execution of the statement (1-based, in time order); 0, or N past the last one, injects
    none. ``correction_refund`` is the positive commission the rebook carries.
    """

    query_name: str = ""
    period: str = "Last365CalendarDays"
    from_date: date | None = None
    to_date: date | None = None
    date_format: str = "yyyyMMdd"
    correct_execution: int = 0
    correction_refund: float = 0.25

    def __post_init__(self) -> None:
        if self.date_format not in DATE_FORMATS:
            raise ValueError(f"date_format must be one of {', '.join(DATE_FORMATS)}, not {self.date_format!r}")
        if self.correct_execution < 0:
            raise ValueError(f"correct_execution must be 0 (none) or a 1-based position, not {self.correct_execution}")
        if self.correction_refund <= 0:
            raise ValueError("correction_refund must be a positive amount: the rebook's commission is positive")
        if self.from_date and self.to_date and self.from_date > self.to_date:
            raise ValueError(f"from_date {self.from_date} is after to_date {self.to_date}")


@dataclass(frozen=True)
class FlexTrade:
    """One row of the Trades (or TradeConfirms) section, before it is written as XML."""

    execution: Execution
    transaction_type: str            # ExchTrade, BookTrade, TradeCancel
    trade_id: str                    # empty for a TradeCancel
    transaction_id: str
    exec_id: str                     # empty for book entries and cancels
    order_id: str                    # ibOrderID / orderID
    quantity: float                  # signed: negative for sells
    buy_sell: str                    # BUY, SELL, BUY (Ca.), SELL (Ca.)
    price: float
    commission: float                # IBKR's sign: negative when charged
    open_close: str                  # O, C, C;O, or empty for a cancel
    notes: tuple[str, ...]
    realized_pnl: float
    trade_time: datetime             # New York
    orig_trade_id: str = ""

    @property
    def instrument(self) -> Instrument:
        return self.execution.instrument

    @property
    def trade_date(self) -> date:
        return self.trade_time.date()


# ----- the rows -----


def _sequence(execution: Execution) -> int:
    """The simulator's execution sequence number (``0000e0d5.0000002a.01.01`` -> 42).

    Execution ids of another shape get a stable number from their text instead.
    """
    parts = execution.exec_id.split(".")
    if len(parts) == 4:
        try:
            return int(parts[1], 16)
        except ValueError:
            pass
    return zlib.crc32(execution.exec_id.encode()) % 100_000_000


def _rebooked_exec_id(exec_id: str) -> str:
    """The exec id IBKR gives a rebooked execution: its last part incremented (.01.01 -> .01.02)."""
    head, _, last = exec_id.rpartition(".")
    if head and last.isdigit():
        return f"{head}.{int(last) + 1:0{len(last)}d}"
    return f"{exec_id}.02"


def _open_close_codes(executions: Sequence[Execution]) -> dict[str, str]:
    """Exec id -> O / C / C;O from the running position of each contract over the whole history."""
    positions: dict[int, float] = {}
    codes: dict[str, str] = {}
    for execution in executions:
        before = positions.get(execution.instrument.con_id, 0.0)
        change = execution.shares if execution.side == "BOT" else -execution.shares
        if before == 0 or (before > 0) == (change > 0):
            codes[execution.exec_id] = "O"
        elif abs(change) <= abs(before) + 1e-9:
            codes[execution.exec_id] = "C"
        else:
            codes[execution.exec_id] = "C;O"
        after = before + change
        positions[execution.instrument.con_id] = 0.0 if abs(after) < 1e-9 else after
    return codes


def _chronological(executions: Iterable[Execution]) -> list[Execution]:
    return sorted(executions, key=lambda e: (e.time, _sequence(e)))


def _new_york(moment: datetime) -> datetime:
    return moment.astimezone(NEW_YORK)


def flex_trades(
    executions: Iterable[Execution], *, account_id: str, options: FlexOptions | None = None
) -> list[FlexTrade]:
    """The statement's Trade rows in IBKR's order (asset category, symbol, time), the window applied."""
    options = options or FlexOptions()
    history = _chronological(e for e in executions if e.account == account_id)
    open_close = _open_close_codes(history)
    executions_per_order = Counter(e.perm_id for e in history if not e.book_reason and e.perm_id)
    from_date, to_date = statement_window(history, options)

    rows: list[FlexTrade] = []
    exchange_count = 0
    for execution in history:
        when = _new_york(execution.time)
        if not from_date <= when.date() <= to_date:
            continue
        sequence = _sequence(execution)
        trade_id = str(TRADE_ID_BASE + sequence)
        transaction_id = TRANSACTION_ID_BASE + 4 * sequence
        quantity = execution.shares if execution.side == "BOT" else -execution.shares
        buy_sell = "BUY" if execution.side == "BOT" else "SELL"
        realized = execution.realized_pnl or 0.0
        if execution.book_reason:
            rows.append(
                FlexTrade(
                    execution=execution,
                    transaction_type="BookTrade",
                    trade_id=trade_id,
                    transaction_id=str(transaction_id),
                    exec_id="",
                    order_id=str(transaction_id),
                    quantity=quantity,
                    buy_sell=buy_sell,
                    price=execution.price,
                    commission=-execution.commission,
                    open_close=open_close[execution.exec_id],
                    notes=(BOOK_NOTES[execution.book_reason],),
                    realized_pnl=realized,
                    trade_time=datetime.combine(when.date(), BOOK_TIME_NEW_YORK, NEW_YORK),
                )
            )
            continue
        exchange_count += 1
        notes = ("P",) if executions_per_order[execution.perm_id] > 1 else ()
        original = FlexTrade(
            execution=execution,
            transaction_type="ExchTrade",
            trade_id=trade_id,
            transaction_id=str(transaction_id + _ORIGINAL),
            exec_id=execution.exec_id,
            order_id=str(execution.perm_id),
            quantity=quantity,
            buy_sell=buy_sell,
            price=execution.price,
            commission=-execution.commission,
            open_close=open_close[execution.exec_id],
            notes=notes,
            realized_pnl=realized,
            trade_time=when,
        )
        if exchange_count != options.correct_execution:
            rows.append(original)
            continue
        refund = options.correction_refund
        rows.append(replace(original, commission=original.commission - refund))
        rows.append(
            replace(
                original,
                transaction_type="TradeCancel",
                trade_id="",
                transaction_id=str(transaction_id + _CANCEL),
                exec_id="",
                quantity=-quantity,
                buy_sell=f"{buy_sell} (Ca.)",
                commission=0.0,
                open_close="",
                notes=("Ca",),
                realized_pnl=-realized,
                orig_trade_id=trade_id,
            )
        )
        rows.append(
            replace(
                original,
                transaction_id=str(transaction_id + _REBOOK),
                exec_id=_rebooked_exec_id(execution.exec_id),
                commission=refund,
            )
        )
    # Stable: a cancel and its rebook stay right after the original.
    return sorted(rows, key=_statement_order)


def _statement_order(row: FlexTrade) -> tuple:
    instrument = row.instrument
    asset_rank = _ASSET_ORDER.get(_asset_category(instrument), 9)
    return (asset_rank, instrument.local_symbol or instrument.symbol, row.trade_time)


def statement_window(executions: Sequence[Execution], options: FlexOptions) -> tuple[date, date]:
    """The statement's fromDate / toDate: the options', else the executions' first and last days."""
    days = [_new_york(e.time).date() for e in executions]
    from_date = options.from_date or (min(days) if days else options.to_date)
    to_date = options.to_date or (max(days) if days else from_date)
    if from_date is None or to_date is None:
        # No executions and no dates: an empty statement of no day at all cannot be written.
        raise ValueError("a statement without executions needs from_date or to_date")
    return from_date, to_date


# ----- attribute values -----


def _number(value: float) -> str:
    """A number as IBKR writes it: no exponent, no trailing zeros (1.06, -0.65, 400, 0)."""
    text = f"{round(float(value), 8):.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _asset_category(instrument: Instrument) -> str:
    return "OPT" if instrument.is_option else instrument.sec_type.value


def _description(instrument: Instrument) -> str:
    """IBKR's description: ``AAPL 04DEC26 190 P`` for options, the company name for stocks."""
    if instrument.is_option and instrument.expiry is not None:
        underlying = instrument.underlying_symbol or instrument.symbol
        expiry = instrument.expiry
        day = f"{expiry.day:02d}{_MONTHS[expiry.month - 1]}{expiry:%y}"
        return f"{underlying} {day} {_number(instrument.strike)} {instrument.right}"
    return (instrument.long_name or instrument.symbol).upper()


def _listing_exchange(instrument: Instrument) -> str:
    if instrument.is_option:
        return "CBOE"
    return instrument.primary_exchange


class _Dates:
    def __init__(self, date_format: str):
        self.date_format = date_format
        self._pattern = DATE_FORMATS[date_format]

    def day(self, value: date | None) -> str:
        return value.strftime(self._pattern) if value else ""

    def moment(self, value: datetime) -> str:
        return f"{value.strftime(self._pattern)};{value:%H%M%S}"


def _contract_attributes(
    instrument: Instrument, dates: _Dates, *, stock_names_itself: bool = False
) -> tuple[tuple[str, str], ...]:
    """The contract's attributes. Trade rows leave a stock's underlyingSymbol empty; OptionEAE
    stock rows (``stock_names_itself``) name the stock there, as IBKR does."""
    return _contract_attributes_of(instrument, dates.date_format, stock_names_itself)


@lru_cache(maxsize=4096)
def _contract_attributes_of(
    instrument: Instrument, date_format: str, stock_names_itself: bool
) -> tuple[tuple[str, str], ...]:
    # Cached: a statement repeats a few contracts over many rows.
    dates = _Dates(date_format)
    option = instrument.is_option
    underlying_symbol = instrument.underlying_symbol if option else (instrument.symbol if stock_names_itself else "")
    return (
        ("symbol", (instrument.local_symbol or instrument.symbol) if option else instrument.symbol),
        ("description", _description(instrument)),
        ("conid", str(instrument.con_id)),
        ("listingExchange", _listing_exchange(instrument)),
        ("underlyingConid", str(instrument.underlying_con_id) if option else ""),
        ("underlyingSymbol", underlying_symbol),
        ("multiplier", str(instrument.multiplier or 1)),
        ("strike", _number(instrument.strike) if option else ""),
        ("expiry", dates.day(instrument.expiry) if option else ""),
        ("putCall", instrument.right if option else ""),
    )


# XML attribute escaping as one C-level pass (statements can hold a million rows).
_ATTRIBUTE_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;"})


def _attributes(attributes: Iterable[tuple[str, str]]) -> str:
    return " ".join(f'{name}="{value.translate(_ATTRIBUTE_ESCAPES)}"' for name, value in attributes)


def _element(tag: str, attributes: Iterable[tuple[str, str]]) -> str:
    return f"<{tag} {_attributes(attributes)} />"


def _trade_element(row: FlexTrade, account_id: str, dates: _Dates) -> str:
    instrument = row.instrument
    multiplier = instrument.multiplier or 1
    trade_money = row.quantity * row.price * multiplier
    proceeds = -trade_money
    book = row.transaction_type == "BookTrade"
    attributes = [
        ("accountId", account_id),
        ("acctAlias", ""),
        ("model", ""),
        ("currency", instrument.currency),
        ("fxRateToBase", "1"),
        ("assetCategory", _asset_category(instrument)),
        *_contract_attributes(instrument, dates),
        ("tradeID", row.trade_id),
        ("reportDate", dates.day(row.trade_date)),
        ("dateTime", dates.moment(row.trade_time)),
        ("tradeDate", dates.day(row.trade_date)),
        ("transactionType", row.transaction_type),
        ("exchange", "--" if book else ("CBOE" if instrument.is_option else instrument.primary_exchange or "NYSE")),
        ("quantity", _number(row.quantity)),
        ("tradePrice", _number(row.price)),
        ("tradeMoney", _number(trade_money)),
        ("proceeds", _number(proceeds)),
        ("taxes", "0"),
        ("ibCommission", _number(row.commission)),
        ("ibCommissionCurrency", instrument.currency),
        ("netCash", _number(proceeds + row.commission)),
        ("openCloseIndicator", row.open_close),
        ("notes", ";".join(row.notes)),
        ("fifoPnlRealized", _number(row.realized_pnl)),
        ("origTradePrice", _number(row.price) if row.orig_trade_id else "0"),
        ("origTradeDate", dates.day(row.trade_date) if row.orig_trade_id else ""),
        ("origTradeID", row.orig_trade_id),
        ("origOrderID", row.order_id if row.orig_trade_id else "0"),
        ("transactionID", row.transaction_id),
        ("buySell", row.buy_sell),
        ("ibOrderID", row.order_id),
        ("ibExecID", row.exec_id),
        ("orderReference", row.execution.order_ref),
        ("levelOfDetail", "EXECUTION"),
        ("isAPIOrder", "N" if book else "Y"),
    ]
    return _element("Trade", attributes)


def _trade_confirm_element(row: FlexTrade, account_id: str, dates: _Dates) -> str:
    instrument = row.instrument
    multiplier = instrument.multiplier or 1
    amount = row.quantity * row.price * multiplier
    codes = [code for code in row.open_close.split(";") if code] + list(row.notes)
    attributes = [
        ("accountId", account_id),
        ("currency", instrument.currency),
        ("assetCategory", _asset_category(instrument)),
        *_contract_attributes(instrument, dates),
        ("transactionType", row.transaction_type),
        ("tradeID", row.trade_id),
        ("orderID", row.order_id),
        ("execID", row.exec_id),
        ("origTradeID", row.orig_trade_id),
        ("dateTime", dates.moment(row.trade_time)),
        ("tradeDate", dates.day(row.trade_date)),
        ("reportDate", dates.day(row.trade_date)),
        ("buySell", row.buy_sell),
        ("quantity", _number(row.quantity)),
        ("price", _number(row.price)),
        ("amount", _number(amount)),
        ("proceeds", _number(-amount)),
        ("commission", _number(row.commission)),
        ("commissionCurrency", instrument.currency),
        ("tax", "0"),
        ("netCash", _number(-amount + row.commission)),
        ("code", ";".join(codes)),
        ("orderReference", row.execution.order_ref),
        ("levelOfDetail", "EXECUTION"),
    ]
    return _element("TradeConfirm", attributes)


def _option_eae_element(row: FlexTrade, account_id: str, dates: _Dates) -> str:
    """The OptionEAE row of one book entry: the option's action, or the stock's Buy / Sell."""
    instrument = row.instrument
    if instrument.is_option:
        action = EAE_OPTION_ACTIONS[row.execution.book_reason]
    else:
        action = "Buy" if row.quantity > 0 else "Sell"
    multiplier = instrument.multiplier or 1
    proceeds = -row.quantity * row.price * multiplier
    attributes = [
        ("accountId", account_id),
        ("currency", instrument.currency),
        ("fxRateToBase", "1"),
        ("assetCategory", _asset_category(instrument)),
        *_contract_attributes(instrument, dates, stock_names_itself=True),
        ("date", dates.day(row.trade_date)),
        ("transactionType", action),
        ("quantity", _number(row.quantity)),
        ("tradePrice", _number(row.price)),
        ("proceeds", _number(proceeds)),
        ("commisionsAndTax", _number(row.commission)),   # sic: IBKR's spelling
        ("realizedPnl", _number(row.realized_pnl)),
        ("tradeID", row.trade_id),
    ]
    return _element("OptionEAE", attributes)


# ----- the statements -----


def statement(
    kind: StatementKind,
    executions: Iterable[Execution],
    *,
    account_id: str,
    generated_at: datetime,
    options: FlexOptions | None = None,
) -> bytes:
    """The Flex statement of ``kind`` for ``account_id``'s executions, as UTF-8 XML bytes."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    options = options or FlexOptions()
    executions = list(executions)
    mine = [e for e in executions if e.account == account_id]
    if not mine and options.from_date is None and options.to_date is None:
        # Nothing traded and no window asked: the statement covers the day it was made.
        today = _new_york(generated_at).date()
        options = replace(options, from_date=today, to_date=today)
    from_date, to_date = statement_window(_chronological(mine), options)
    rows = flex_trades(executions, account_id=account_id, options=options)
    dates = _Dates(options.date_format)
    query_name = options.query_name or DEFAULT_QUERY_NAMES[kind]

    lines = [
        _element("FlexQueryResponse", [("queryName", query_name), ("type", kind.value)]).replace(" />", ">"),
        '<FlexStatements count="1">',
        _element(
            "FlexStatement",
            [
                ("accountId", account_id),
                ("fromDate", dates.day(from_date)),
                ("toDate", dates.day(to_date)),
                ("period", options.period),
                ("whenGenerated", dates.moment(_new_york(generated_at))),
            ],
        ).replace(" />", ">"),
    ]
    if kind is StatementKind.ACTIVITY:
        lines.append("<Trades>")
        lines.extend(_trade_element(row, account_id, dates) for row in rows)
        lines.append("</Trades>")
        lines.append("<OptionEAE>")
        book_rows = sorted(
            (row for row in rows if row.transaction_type == "BookTrade"),
            key=lambda row: (row.trade_time, _sequence(row.execution)),
        )
        lines.extend(_option_eae_element(row, account_id, dates) for row in book_rows)
        lines.append("</OptionEAE>")
    else:
        lines.append("<TradeConfirms>")
        lines.extend(_trade_confirm_element(row, account_id, dates) for row in rows)
        lines.append("</TradeConfirms>")
    lines += ["</FlexStatement>", "</FlexStatements>", "</FlexQueryResponse>", ""]
    return "\n".join(lines).encode("utf-8")


def activity_statement(
    executions: Iterable[Execution], *, account_id: str, generated_at: datetime, options: FlexOptions | None = None
) -> bytes:
    """An Activity Flex statement (``type="AF"``): Trades and OptionEAE sections."""
    return statement(
        StatementKind.ACTIVITY, executions, account_id=account_id, generated_at=generated_at, options=options
    )


def trade_confirmation_statement(
    executions: Iterable[Execution], *, account_id: str, generated_at: datetime, options: FlexOptions | None = None
) -> bytes:
    """A Trade Confirmation Flex statement (``type="TCF"``): the TradeConfirms section."""
    return statement(
        StatementKind.TRADE_CONFIRMATION, executions, account_id=account_id, generated_at=generated_at, options=options
    )


__all__ = [
    "DATE_FORMATS",
    "FlexOptions",
    "FlexTrade",
    "StatementKind",
    "activity_statement",
    "flex_trades",
    "statement",
    "statement_window",
    "trade_confirmation_statement",
]
