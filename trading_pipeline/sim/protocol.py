"""TWS API messages at server version 176: one encoder per server message, one parser per request.

Encoders are pure functions returning the message's fields as text (``list[str]``), so tests
can count fields and feed them to the real client decoders; the session frames them with
:func:`wire.encode_frame`. Field counts follow ``/shared/docs/tws-protocol.md`` §6 and the
ib_insync 0.9.86 / ib_async 2.x decoders (several of which unpack an exact count and silently
drop a message of any other length).

Choices (documented once here, relied on by the session and the tests):

* openOrder (5) uses the minimal 128-field form: ``deltaNeutralOrderType`` is sent empty, so
  the eight delta-neutral fields are absent (real TWS sends the text ``None`` and then those
  eight fields, 136 in all; both forms decode the same). Each algo parameter adds two fields
  (plus one for the count).
* completedOrder (101) uses the matching 97-field form.
* Unset margin and commission values in an openOrder's OrderState are sent as TWS's own
  ``1.7976931348623157E308``; a whatIf answer carries numbers there.
* Open interest for one option goes out as generic tick 101's call/put open interest:
  tick 27 for a call, 28 for a put (what ``Ticker.callOpenInterest``/``putOpenInterest``
  hold); option volume (generic 100) likewise as 29/30.

Parsers read client messages with :class:`wire.FieldCursor` and assert nothing is left over.
Request layouts are ib_insync 0.9.86's and ib_async 2.x's at version 176 (the two are
identical there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable, Iterable

from trading_pipeline.sim.types import (
    Bar,
    ContractQuery,
    Execution,
    Instrument,
    MarginImpact,
    OptionGreeks,
    OptionParameters,
    OrderRecord,
    OrderRequest,
    PortfolioItem,
    Position,
    SecType,
)
from trading_pipeline.sim.wire import (
    UNSET_DOUBLE,
    Field,
    FieldCursor,
    ProtocolError,
    encode_fields,
)

# ---------------------------------------------------------------------------- message ids


class In:
    """Client -> server message ids."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_MARKET_RULE = 91
    REQ_COMPLETED_ORDERS = 99


class Tick:
    """Tick type ids (live). :data:`DELAYED_TICK` maps them to the delayed ids."""

    BID_SIZE = 0
    BID = 1
    ASK = 2
    ASK_SIZE = 3
    LAST = 4
    LAST_SIZE = 5
    HIGH = 6
    LOW = 7
    VOLUME = 8
    CLOSE = 9
    BID_OPTION = 10
    ASK_OPTION = 11
    LAST_OPTION = 12
    MODEL_OPTION = 13
    OPEN = 14
    OPTION_IMPLIED_VOL = 24
    OPTION_CALL_OPEN_INTEREST = 27
    OPTION_PUT_OPEN_INTEREST = 28
    OPTION_CALL_VOLUME = 29
    OPTION_PUT_VOLUME = 30
    LAST_TIMESTAMP = 45


DELAYED_TICK = {
    Tick.BID: 66, Tick.ASK: 67, Tick.LAST: 68, Tick.BID_SIZE: 69, Tick.ASK_SIZE: 70,
    Tick.LAST_SIZE: 71, Tick.HIGH: 72, Tick.LOW: 73, Tick.VOLUME: 74, Tick.CLOSE: 75,
    Tick.OPEN: 76, Tick.BID_OPTION: 80, Tick.ASK_OPTION: 81, Tick.LAST_OPTION: 82,
    Tick.MODEL_OPTION: 83,
}

TIME_ZONE_ID = "US/Eastern"
NO_SECURITY_DEFINITION = "No security definition has been found for the request"


# ---------------------------------------------------------------------------- helpers


def _message(*values: Field) -> list[str]:
    return encode_fields(values)


def _strike(instrument: Instrument) -> float:
    return float(instrument.strike) if instrument.is_option else 0.0


def _multiplier(instrument: Instrument) -> str:
    """Options carry their multiplier ("100"); stocks and indices an empty one, as TWS does."""
    return str(instrument.multiplier) if instrument.is_option else ""


def _contract11(instrument: Instrument, exchange: str | None = None) -> list[Field]:
    """conId .. tradingClass without primaryExchange (openOrder, execDetails, position)."""
    return [
        instrument.con_id, instrument.symbol, instrument.sec_type, instrument.expiry_text,
        _strike(instrument), instrument.right, _multiplier(instrument),
        exchange if exchange is not None else instrument.exchange,
        instrument.currency, instrument.local_symbol, instrument.trading_class,
    ]


def tws_time(at: datetime) -> str:
    """An instant as ``YYYYMMDD HH:MM:SS UTC``: explicit zone, so no client guesses one."""
    return at.astimezone(timezone.utc).strftime("%Y%m%d %H:%M:%S") + " UTC"


def _money_text(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.2f}"


# ---------------------------------------------------------------------------- 6.1 misc


def managed_accounts(accounts: Iterable[str]) -> list[str]:
    return _message(15, 1, ",".join(accounts))


def next_valid_id(order_id: int) -> list[str]:
    return _message(9, 1, int(order_id))


def current_time(at: datetime) -> list[str]:
    return _message(49, 1, int(at.timestamp()))


def error(req_id: int, code: int, text: str) -> list[str]:
    """error (4); the 6th field (advancedOrderRejectJson) exists because version >= 166."""
    return _message(4, 2, int(req_id), int(code), text, "")


# ---------------------------------------------------------------------------- 6.2 contracts

_ORDER_TYPES = {
    SecType.STK: "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,DAY,GTC,GTD,"
                 "IOC,LIT,LMT,LOC,MIDPRICE,MKT,MOC,MTL,NONALGO,OCA,REL,SCALE,STP,STPLMT,"
                 "TRAIL,TRAILLIMIT,WHATIF",
    SecType.IND: "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,DAY,GTC,NONALGO,SCALE,WHATIF",
    SecType.OPT: "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,COND,DAY,GTC,GTD,IOC,LMT,MIDPRICE,"
                 "MKT,NONALGO,OCA,REL,SCALE,STP,STPLMT,TRAIL,TRAILLIMIT,WHATIF",
}


def _valid_exchanges(instrument: Instrument) -> list[str]:
    if instrument.sec_type is SecType.IND:
        return [instrument.exchange or "CBOE"]
    if instrument.sec_type is SecType.OPT:
        return ["SMART", "CBOE", "AMEX", "ISE", "PHLX", "BOX"]
    primary = instrument.primary_exchange or "NYSE"
    return ["SMART", primary] if primary != "SMART" else ["SMART"]


def contract_details(
    req_id: int,
    instrument: Instrument,
    *,
    exchange: str,
    trading_hours: str,
    liquid_hours: str,
) -> list[str]:
    """contractDetails (10): no version field since 164; 40 fields (no secIds)."""
    exchanges = _valid_exchanges(instrument)
    return _message(
        10, int(req_id),
        instrument.symbol, instrument.sec_type, instrument.expiry_text, _strike(instrument),
        instrument.right, exchange, instrument.currency, instrument.local_symbol,
        instrument.trading_class or instrument.symbol,   # marketName
        instrument.trading_class, instrument.con_id, float(instrument.min_tick),
        _multiplier(instrument), _ORDER_TYPES[instrument.sec_type], ",".join(exchanges),
        1,                                             # priceMagnifier
        int(instrument.underlying_con_id), instrument.long_name, instrument.primary_exchange,
        instrument.expiry_text[:6],                    # contractMonth
        "", "", "",                                    # industry, category, subcategory
        TIME_ZONE_ID, trading_hours, liquid_hours,
        "", "",                                        # evRule, evMultiplier
        0,                                             # numSecIds
        1,                                             # aggGroup
        instrument.underlying_symbol,
        instrument.underlying_sec_type.value if instrument.underlying_sec_type else "",
        ",".join(str(instrument.market_rule_id) for _ in exchanges),  # marketRuleIds, one per exchange
        instrument.expiry_text,                        # realExpirationDate
        "COMMON" if instrument.sec_type is SecType.STK else "",
        1.0, 1.0, 1.0,                                 # minSize, sizeIncrement, suggested
    )


def contract_details_end(req_id: int) -> list[str]:
    return _message(52, 1, int(req_id))


def sec_def_opt_params(req_id: int, row: OptionParameters) -> list[str]:
    """securityDefinitionOptionParameter (75), no version: 7 + expirations + 1 + strikes."""
    return _message(
        75, int(req_id), row.exchange, int(row.underlying_con_id), row.trading_class,
        str(row.multiplier), len(row.expirations), *row.expirations,
        len(row.strikes), *(float(strike) for strike in row.strikes),
    )


def sec_def_opt_params_end(req_id: int) -> list[str]:
    return _message(76, int(req_id))


def market_rule(rule_id: int, bands: Iterable[tuple[float, float]]) -> list[str]:
    """marketRule (93), no version: id, count, then (lowEdge, increment) per band."""
    pairs = list(bands)
    return _message(93, int(rule_id), len(pairs), *(float(v) for pair in pairs for v in pair))


# ---------------------------------------------------------------------------- 6.3 market data


def tick_req_params(req_id: int, min_tick: float, bbo_exchange: str = "9c0001",
                    snapshot_permissions: int = 3) -> list[str]:
    return _message(81, int(req_id), float(min_tick), bbo_exchange, int(snapshot_permissions))


def market_data_type(req_id: int, data_type: int) -> list[str]:
    return _message(58, 1, int(req_id), int(data_type))


def tick_price(req_id: int, tick_type: int, price: float, size: int = 0,
               attr_mask: int = 0) -> list[str]:
    """tickPrice (1): strict 7 fields; the size rides along for bid/ask/last."""
    return _message(1, 6, int(req_id), int(tick_type), float(price), int(size), int(attr_mask))


def tick_size(req_id: int, tick_type: int, size: int) -> list[str]:
    return _message(2, 6, int(req_id), int(tick_type), int(size))


def tick_generic(req_id: int, tick_type: int, value: float) -> list[str]:
    return _message(45, 6, int(req_id), int(tick_type), float(value))


def tick_string(req_id: int, tick_type: int, value: str) -> list[str]:
    return _message(46, 6, int(req_id), int(tick_type), value)


def tick_option_computation(req_id: int, tick_type: int, greeks: OptionGreeks,
                            tick_attrib: int = 1) -> list[str]:
    """tickOptionComputation (21): no version, strict 12, every value numeric.

    tickAttrib 1 = price-based (the model's inputs are the option's own prices).
    """
    return _message(
        21, int(req_id), int(tick_type), int(tick_attrib),
        float(greeks.implied_vol), float(greeks.delta), float(greeks.price),
        float(greeks.pv_dividend), float(greeks.gamma), float(greeks.vega),
        float(greeks.theta), float(greeks.underlying_price),
    )


def tick_snapshot_end(req_id: int) -> list[str]:
    return _message(57, 1, int(req_id))


# ---------------------------------------------------------------------------- 6.4 orders


@dataclass(frozen=True)
class OrderView:
    """Everything an openOrder/orderStatus/completedOrder needs about one order."""

    order_id: int
    client_id: int
    perm_id: int
    instrument: Instrument
    request: OrderRequest
    status: str
    account: str
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    why_held: str = ""
    completed_time: datetime | None = None
    completed_status: str = ""
    margin: MarginImpact | None = None       # whatIf answers only
    commission: float | None = None          # the order's commission so far, when known

    @classmethod
    def of(cls, record: OrderRecord, account: str, status: str | None = None) -> "OrderView":
        return cls(
            order_id=record.order_id, client_id=record.client_id, perm_id=record.perm_id,
            instrument=record.instrument, request=record.request,
            status=status or record.status.value,
            account=record.request.account or account,
            filled=record.filled, remaining=record.remaining,
            avg_fill_price=record.avg_fill_price, last_fill_price=record.last_fill_price,
            why_held=record.why_held, completed_time=record.completed_time,
            completed_status=record.completed_status,
            commission=record.commission if record.commission else None,
        )


def _algo_fields(request: OrderRequest) -> list[Field]:
    if not request.algo_strategy:
        return [""]
    fields: list[Field] = [request.algo_strategy, len(request.algo_params)]
    for tag, value in request.algo_params:
        fields += [tag, value]
    return fields


def _margin_fields(view: OrderView) -> list[Field]:
    """OrderState's 9 margin texts and 3 commission numbers + currency."""
    margin = view.margin
    if margin is None:
        money: list[Field] = [UNSET_DOUBLE] * 9
        commission: list[Field] = [
            view.commission if view.commission is not None else UNSET_DOUBLE,
            UNSET_DOUBLE, UNSET_DOUBLE,
        ]
    else:
        money = [_money_text(value) for value in (
            margin.init_margin_before, margin.maint_margin_before,
            margin.equity_with_loan_before, margin.init_margin_change,
            margin.maint_margin_change, margin.equity_with_loan_change,
            margin.init_margin_after, margin.maint_margin_after,
            margin.equity_with_loan_after,
        )]
        commission = [float(margin.commission), float(margin.commission),
                      float(margin.commission)]
    return [*money, *commission, "USD" if (margin or view.commission) else "", ""]


def open_order(view: OrderView) -> list[str]:
    """openOrder (5), no version field; 128 fields (+1 +2 per parameter with an algo)."""
    request = view.request
    instrument = view.instrument
    return _message(
        5, int(view.order_id), *_contract11(instrument),
        request.action, float(request.total_quantity), request.order_type,
        request.lmt_price, request.aux_price, request.tif, request.oca_group, view.account,
        "O",                       # openClose
        0,                         # origin: customer
        request.order_ref, int(view.client_id), int(view.perm_id),
        request.outside_rth, False,                    # outsideRth, hidden
        0.0, "", "",                                   # discretionaryAmt, goodAfterTime, (deprecated)
        "", "", "", "",                                # faGroup, faMethod, faPercentage, faProfile
        "", "",                                        # modelCode, goodTillDate
        "", "", "", 0, "", -1,                         # rule80A, percentOffset, settlingFirm,
                                                       # shortSaleSlot, designatedLocation, exemptCode
        0, "", "", "", "", "",                         # auctionStrategy, startingPrice, stockRefPrice,
                                                       # delta, stockRangeLower, stockRangeUpper
        0, False, False, False, "",                    # displaySize, blockOrder, sweepToFill,
                                                       # allOrNone, minQty
        int(request.oca_type), False, False, "",       # ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
        int(request.parent_id), 0,                     # parentId, triggerMethod
        "", 0, "", "",                                 # volatility, volatilityType,
                                                       # deltaNeutralOrderType (empty: no DN block),
                                                       # deltaNeutralAuxPrice
        False, 0, "", "", "", "", "",                  # continuousUpdate, referencePriceType,
                                                       # trailStopPrice, trailingPercent, basisPoints,
                                                       # basisPointsType, comboLegsDescrip
        0, 0, 0,                                       # comboLegs, orderComboLegs, smartComboRoutingParams
        "", "", "",                                    # scaleInitLevelSize, scaleSubsLevelSize,
                                                       # scalePriceIncrement (empty: no scale block)
        "",                                            # hedgeType (empty: no hedgeParam)
        False, "", "", False,                          # optOutSmartRouting, clearingAccount,
                                                       # clearingIntent, notHeld
        False,                                         # deltaNeutralContract present
        *_algo_fields(request),
        False, request.what_if,                        # solicited, whatIf
        view.status,
        *_margin_fields(view),
        False, False,                                  # randomizeSize, randomizePrice
        0,                                             # conditions
        "", "", "", "", "", "", "", 0,                 # adjustedOrderType, triggerPrice,
                                                       # trailStopPrice, lmtPriceOffset,
                                                       # adjustedStopPrice, adjustedStopLimitPrice,
                                                       # adjustedTrailingAmount, adjustableTrailingUnit
        "", "", "",                                    # softDollarTier name, value, displayName
        "", False, False, False, False,                # cashQty, dontUseAutoPriceForHedge,
                                                       # isOmsContainer, discretionaryUpToLimitPrice,
                                                       # usePriceMgmtAlgo
        "", "", False,                                 # duration, postToAts, autoCancelParent
        "", "", "", "", "",                            # minTradeQty, minCompeteSize,
                                                       # competeAgainstBestOffset, midOffsetAtWhole,
                                                       # midOffsetAtHalf
    )


def order_status(view: OrderView, status: str | None = None) -> list[str]:
    """orderStatus (3), no version; 12 fields."""
    return _message(
        3, int(view.order_id), status or view.status, float(view.filled),
        float(view.remaining), float(view.avg_fill_price), int(view.perm_id),
        int(view.request.parent_id), float(view.last_fill_price), int(view.client_id),
        view.why_held, 0.0,
    )


def open_order_end() -> list[str]:
    return _message(53, 1)


def completed_order(view: OrderView) -> list[str]:
    """completedOrder (101), no version and no orderId; 97 fields (+1 +2 per algo param)."""
    request = view.request
    completed_at = tws_time(view.completed_time) if view.completed_time else ""
    return _message(
        101, *_contract11(view.instrument),
        request.action, float(request.total_quantity), request.order_type,
        request.lmt_price, request.aux_price, request.tif, request.oca_group, view.account,
        "O", 0, request.order_ref, int(view.perm_id),  # openClose, origin, orderRef, permId
        request.outside_rth, False, 0.0, "",           # outsideRth, hidden, discretionaryAmt,
                                                       # goodAfterTime
        "", "", "", "",                                # faGroup, faMethod, faPercentage, faProfile
        "", "", "", "", "", 0, "", -1,                 # modelCode, goodTillDate, rule80A,
                                                       # percentOffset, settlingFirm, shortSaleSlot,
                                                       # designatedLocation, exemptCode
        "", "", "", "", "",                            # startingPrice, stockRefPrice, delta,
                                                       # stockRangeLower, stockRangeUpper
        0, False, False, "", int(request.oca_type), 0,  # displaySize, sweepToFill, allOrNone,
                                                       # minQty, ocaType, triggerMethod
        "", 0, "", "",                                 # volatility, volatilityType,
                                                       # deltaNeutralOrderType, deltaNeutralAuxPrice
        False, 0, "", "", "",                          # continuousUpdate, referencePriceType,
                                                       # trailStopPrice, trailingPercent,
                                                       # comboLegsDescrip
        0, 0, 0,                                       # comboLegs, orderComboLegs, smartParams
        "", "", "", "",                                # scaleInit, scaleSubs, scalePriceIncrement,
                                                       # hedgeType
        "", "", False, False,                          # clearingAccount, clearingIntent, notHeld,
                                                       # deltaNeutralContract present
        *_algo_fields(request),
        False, view.status, False, False,              # solicited, status, randomizeSize,
                                                       # randomizePrice
        0,                                             # conditions
        "", "", "", False, False,                      # trailStopPrice, lmtPriceOffset, cashQty,
                                                       # dontUseAutoPriceForHedge, isOmsContainer
        "", float(view.filled), 0, False, "",          # autoCancelDate, filledQuantity,
                                                       # refFuturesConId, autoCancelParent, shareholder
        False, False, 0,                               # imbalanceOnly, routeMarketableToBbo,
                                                       # parentPermId
        completed_at, view.completed_status or view.status,
        "", "", "", "", "",                            # minTradeQty .. midOffsetAtHalf
    )


def completed_orders_end() -> list[str]:
    return _message(102)


# ---------------------------------------------------------------------------- 6.5 executions


def _execution_exchange(instrument: Instrument) -> str:
    if instrument.is_option or instrument.sec_type is SecType.IND:
        return "CBOE"
    return instrument.primary_exchange or "ISLAND"


def exec_details(req_id: int, execution: Execution) -> list[str]:
    """execDetails (11), no version; strict 31. reqId -1 marks a live fill."""
    instrument = execution.instrument
    return _message(
        11, int(req_id), int(execution.order_id), *_contract11(instrument),
        execution.exec_id, tws_time(execution.time), execution.account,
        _execution_exchange(instrument), execution.side, float(execution.shares),
        float(execution.price), int(execution.perm_id), int(execution.client_id),
        0,                                             # liquidation
        float(execution.cum_qty), float(execution.avg_price), execution.order_ref,
        "", "", "",                                    # evRule, evMultiplier, modelCode
        int(execution.liquidity),
    )


def commission_report(execution: Execution) -> list[str]:
    """commissionReport (59): strict 8; unset realized P&L and yield as TWS's max double."""
    realized: Field = (
        float(execution.realized_pnl) if execution.realized_pnl is not None else UNSET_DOUBLE
    )
    return _message(59, 1, execution.exec_id, float(execution.commission), "USD",
                    realized, UNSET_DOUBLE, "")


def exec_details_end(req_id: int) -> list[str]:
    return _message(55, 1, int(req_id))


# ---------------------------------------------------------------------------- 6.6 account


def position(item: Position) -> list[str]:
    """position (61): strict 16; quantity 0 removes the client's entry."""
    return _message(61, 3, item.account, *_contract11(item.instrument),
                    float(item.quantity), float(item.avg_cost))


def position_end() -> list[str]:
    return _message(62, 1)


def update_account_value(key: str, value: str, currency: str, account: str) -> list[str]:
    return _message(6, 2, key, value, currency, account)


def update_portfolio(item: PortfolioItem) -> list[str]:
    """updatePortfolio (7): strict 20, primaryExchange in the exchange slot, numbers non-empty."""
    instrument = item.instrument
    return _message(
        7, 8, instrument.con_id, instrument.symbol, instrument.sec_type,
        instrument.expiry_text, _strike(instrument), instrument.right,
        _multiplier(instrument), instrument.primary_exchange, instrument.currency,
        instrument.local_symbol, instrument.trading_class,
        float(item.position), float(item.market_price), float(item.market_value),
        float(item.average_cost), float(item.unrealized_pnl), float(item.realized_pnl),
        item.account,
    )


def update_account_time(at: datetime, zone) -> list[str]:
    return _message(8, 1, at.astimezone(zone).strftime("%H:%M"))


def account_download_end(account: str) -> list[str]:
    return _message(54, 1, account)


def account_update_multi(req_id: int, account: str, model_code: str, key: str, value: str,
                         currency: str) -> list[str]:
    return _message(73, 1, int(req_id), account, model_code, key, value, currency)


def account_update_multi_end(req_id: int) -> list[str]:
    return _message(74, 1, int(req_id))


def account_summary(req_id: int, account: str, tag: str, value: str,
                    currency: str) -> list[str]:
    return _message(63, 1, int(req_id), account, tag, value, currency)


def account_summary_end(req_id: int) -> list[str]:
    return _message(64, 1, int(req_id))


# ---------------------------------------------------------------------------- 6.7 history


def historical_data(req_id: int, bars: list[Bar], start: str, end: str,
                    index_volume: bool = False) -> list[str]:
    """historicalData (17), no version: 5 + 8 per bar. Daily bar dates are YYYYMMDD.

    ``index_volume``: indices have no traded volume; TWS sends -1 there.
    """
    fields: list[Field] = [17, int(req_id), start, end, len(bars)]
    for bar in bars:
        fields += [
            bar.day.strftime("%Y%m%d"), float(bar.open), float(bar.high), float(bar.low),
            float(bar.close), -1 if index_volume else int(bar.volume), float(bar.wap),
            int(bar.bar_count),
        ]
    return encode_fields(fields)


def historical_range_text(first: date, last: date) -> tuple[str, str]:
    """The informational start/end texts of historicalData."""
    return first.strftime("%Y%m%d  00:00:00"), last.strftime("%Y%m%d  23:59:59")


# ============================================================================ requests


@dataclass(frozen=True)
class StartApi:
    client_id: int
    optional_capabilities: str


@dataclass(frozen=True)
class ReqCurrentTime:
    pass


@dataclass(frozen=True)
class ReqManagedAccts:
    pass


@dataclass(frozen=True)
class ReqIds:
    count: int


@dataclass(frozen=True)
class ReqAutoOpenOrders:
    auto_bind: bool


@dataclass(frozen=True)
class ReqContractDetails:
    req_id: int
    contract: ContractQuery
    include_expired: bool
    sec_id_type: str
    sec_id: str
    issuer_id: str


@dataclass(frozen=True)
class ReqSecDefOptParams:
    req_id: int
    underlying_symbol: str
    fut_fop_exchange: str
    underlying_sec_type: str
    underlying_con_id: int


@dataclass(frozen=True)
class ReqMarketRule:
    market_rule_id: int


@dataclass(frozen=True)
class ReqMarketDataType:
    data_type: int


@dataclass(frozen=True)
class ReqMktData:
    req_id: int
    contract: ContractQuery
    combo_legs: int                       # a BAG's leg count (BAGs are not listed here)
    generic_ticks: tuple[int, ...]
    snapshot: bool
    regulatory_snapshot: bool
    options: str


@dataclass(frozen=True)
class CancelMktData:
    req_id: int


@dataclass(frozen=True)
class PlaceOrder:
    order_id: int
    contract: ContractQuery
    request: OrderRequest
    combo_legs: int


@dataclass(frozen=True)
class CancelOrder:
    order_id: int
    manual_cancel_time: str


@dataclass(frozen=True)
class ReqOpenOrders:
    pass


@dataclass(frozen=True)
class ReqAllOpenOrders:
    pass


@dataclass(frozen=True)
class ReqCompletedOrders:
    api_only: bool


@dataclass(frozen=True)
class ExecutionFilter:
    client_id: int = 0         # 0: any client (what ib_insync/ib_async send by default)
    account: str = ""
    time: str = ""             # "yyyymmdd hh:mm:ss" (optionally with a zone): at or after
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""             # BUY/SELL


@dataclass(frozen=True)
class ReqExecutions:
    req_id: int
    filter: ExecutionFilter


@dataclass(frozen=True)
class ReqPositions:
    pass


@dataclass(frozen=True)
class CancelPositions:
    pass


@dataclass(frozen=True)
class ReqAccountUpdates:
    subscribe: bool
    account: str


@dataclass(frozen=True)
class ReqAccountUpdatesMulti:
    req_id: int
    account: str
    model_code: str
    ledger_and_nlv: bool


@dataclass(frozen=True)
class CancelAccountUpdatesMulti:
    req_id: int


@dataclass(frozen=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class CancelAccountSummary:
    req_id: int


@dataclass(frozen=True)
class ReqHistoricalData:
    req_id: int
    contract: ContractQuery
    include_expired: bool
    end_date_time: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool
    chart_options: str


@dataclass(frozen=True)
class CancelHistoricalData:
    req_id: int


@dataclass(frozen=True)
class ReqGlobalCancel:
    pass


@dataclass(frozen=True)
class UnsupportedRequest:
    """A well-framed message of a kind the simulator does not implement."""

    message_id: int
    fields: tuple[str, ...]


Request = (
    StartApi | ReqCurrentTime | ReqManagedAccts | ReqIds | ReqAutoOpenOrders
    | ReqContractDetails | ReqSecDefOptParams | ReqMarketDataType | ReqMktData
    | CancelMktData | PlaceOrder | CancelOrder | ReqOpenOrders | ReqAllOpenOrders
    | ReqCompletedOrders | ReqExecutions | ReqPositions | CancelPositions
    | ReqAccountUpdates | ReqAccountUpdatesMulti | CancelAccountUpdatesMulti
    | ReqAccountSummary | CancelAccountSummary | ReqHistoricalData | CancelHistoricalData
    | ReqGlobalCancel | ReqMarketRule | UnsupportedRequest
)


def _contract12(cursor: FieldCursor) -> ContractQuery:
    """The 12-field contract block: conId .. tradingClass (with primaryExchange)."""
    con_id = cursor.optional_int() or 0
    symbol = cursor.text()
    sec_type = cursor.text()
    expiry = cursor.text()
    strike = cursor.optional_float() or 0.0
    right = cursor.text()
    multiplier = cursor.text()
    exchange = cursor.text()
    primary_exchange = cursor.text()
    currency = cursor.text()
    local_symbol = cursor.text()
    trading_class = cursor.text()
    right = right.strip().upper()[:1]           # C, CALL, P, PUT -> C / P
    if right not in ("C", "P"):
        right = ""                              # "", "?" or "0" mean "any"
    return ContractQuery(
        con_id=con_id, symbol=symbol.strip().upper(), sec_type=sec_type.strip().upper(),
        expiry_prefix=expiry.strip().split(" ")[0], strike=strike, right=right,
        multiplier=multiplier.strip(), exchange=exchange.strip().upper(),
        primary_exchange=primary_exchange.strip().upper(), currency=currency.strip().upper(),
        local_symbol=local_symbol, trading_class=trading_class.strip().upper(),
    )


def _combo_legs(cursor: FieldCursor, contract: ContractQuery, per_leg: int) -> int:
    """Skip a BAG's legs (per_leg fields each); the simulator lists no combos."""
    if contract.sec_type != "BAG":
        return 0
    legs = cursor.int()
    cursor.skip(legs * per_leg)
    return legs


def _version(cursor: FieldCursor, version: str) -> None:
    cursor.expect(version)


def _start_api(c: FieldCursor) -> StartApi:
    _version(c, "2")
    return StartApi(c.int(), c.text())


def _req_contract_details(c: FieldCursor) -> ReqContractDetails:
    _version(c, "8")
    req_id = c.int()
    contract = _contract12(c)
    return ReqContractDetails(req_id, contract, c.bool(), c.text(), c.text(), c.text())


def _req_sec_def_opt_params(c: FieldCursor) -> ReqSecDefOptParams:
    # no version field
    return ReqSecDefOptParams(c.int(), c.text().strip().upper(), c.text(),
                              c.text().strip().upper(), c.optional_int() or 0)


def _generic_ticks(text: str) -> tuple[int, ...]:
    ticks = []
    for part in text.split(","):
        part = part.strip()
        if part:
            try:
                ticks.append(int(part))
            except ValueError:
                raise ProtocolError(f"reqMktData: generic tick list {text!r}") from None
    return tuple(ticks)


def _req_mkt_data(c: FieldCursor) -> ReqMktData:
    _version(c, "11")
    req_id = c.int()
    contract = _contract12(c)
    legs = _combo_legs(c, contract, per_leg=4)
    if c.bool():                                   # delta-neutral contract: conId, delta, price
        c.skip(3)
    return ReqMktData(req_id, contract, legs, _generic_ticks(c.text()), c.bool(), c.bool(),
                      c.text())


def _place_order(c: FieldCursor) -> PlaceOrder:
    """placeOrder (3) at version 176: the sequential layout of tws-protocol.md §5.1."""
    order_id = c.int()
    contract = _contract12(c)
    c.skip(2)                                      # secIdType, secId
    action = c.text().strip().upper()
    total_quantity = c.float()
    order_type = c.text().strip().upper()
    lmt_price = c.optional_float()
    aux_price = c.optional_float()
    tif = c.text().strip().upper() or "DAY"
    oca_group = c.text()
    account = c.text()
    c.skip(2)                                      # openClose, origin
    order_ref = c.text()
    transmit = c.bool()
    parent_id = c.optional_int() or 0
    c.skip(4)                                      # blockOrder, sweepToFill, displaySize,
                                                   # triggerMethod
    outside_rth = c.bool()
    c.skip(1)                                      # hidden
    legs = 0
    if contract.sec_type == "BAG":
        legs = c.int()
        c.skip(legs * 8)
        c.skip(c.int())                            # order combo leg prices
        c.skip(2 * c.int())                        # smart combo routing params
    c.skip(1)                                      # deprecated sharesAllocation
    c.skip(3)                                      # discretionaryAmt, goodAfterTime, goodTillDate
    c.skip(4)                                      # faGroup, faMethod, faPercentage, faProfile
    c.skip(4)                                      # modelCode, shortSaleSlot, designatedLocation,
                                                   # exemptCode
    oca_type = c.optional_int() or 0
    c.skip(17)                                     # rule80A .. volatilityType (see §5.1 47..64)
    delta_neutral_order_type = c.text()
    c.skip(1)                                      # deltaNeutralAuxPrice
    if delta_neutral_order_type:
        c.skip(8)
    c.skip(6)                                      # continuousUpdate .. scaleSubsLevelSize
    scale_price_increment = c.optional_float()
    if scale_price_increment is not None and 0 < scale_price_increment < 1.7e308:
        c.skip(7)
    c.skip(3)                                      # scaleTable, activeStartTime, activeStopTime
    if c.text():                                   # hedgeType
        c.skip(1)                                  # hedgeParam
    c.skip(4)                                      # optOutSmartRouting, clearingAccount,
                                                   # clearingIntent, notHeld
    if c.bool():                                   # deltaNeutralContract: conId, delta, price
        c.skip(3)
    algo_strategy = c.text()
    algo_params: list[tuple[str, str]] = []
    if algo_strategy:
        for _ in range(c.int()):
            algo_params.append((c.text(), c.text()))
    c.skip(1)                                      # algoId
    what_if = c.bool()
    c.skip(4)                                      # orderMiscOptions, solicited, randomizeSize,
                                                   # randomizePrice
    if order_type in ("PEG BENCH", "PEGBENCH"):
        c.skip(5)
    conditions = c.int()
    for _ in range(conditions):
        condition_type = c.int()
        if condition_type not in _CONDITION_FIELDS:
            raise ProtocolError(f"placeOrder: unknown order condition type {condition_type}")
        c.skip(_CONDITION_FIELDS[condition_type])
    if conditions:
        c.skip(2)                                  # conditionsIgnoreRth, conditionsCancelOrder
    c.skip(19)                                     # adjustedOrderType .. usePriceMgmtAlgo
    c.skip(5)                                      # duration, postToAts, autoCancelParent,
                                                   # advancedErrorOverride, manualOrderTime
    if contract.exchange == "IBKRATS":
        c.skip(1)                                  # minTradeQty
    if order_type in ("PEG BEST", "PEGBEST"):
        c.skip(1)                                  # minCompeteSize
        if c.text() == "Infinite":                 # competeAgainstBestOffset
            c.skip(2)
    elif order_type in ("PEG MID", "PEGMID"):
        c.skip(2)
    request = OrderRequest(
        action=action, total_quantity=total_quantity, order_type=order_type,
        lmt_price=lmt_price, aux_price=aux_price, tif=tif, oca_group=oca_group,
        oca_type=oca_type, account=account, order_ref=order_ref, transmit=transmit,
        parent_id=parent_id, outside_rth=outside_rth, algo_strategy=algo_strategy,
        algo_params=tuple(algo_params), what_if=what_if,
    )
    return PlaceOrder(order_id, contract, request, legs)


# Fields after the condition type, per condition type (the clients' dataclasses in order).
_CONDITION_FIELDS = {
    1: 6,   # price: conjunction, isMore, price, conId, exch, triggerMethod
    3: 3,   # time: conjunction, isMore, time
    4: 3,   # margin: conjunction, isMore, percent
    5: 4,   # execution: conjunction, secType, exch, symbol
    6: 5,   # volume: conjunction, isMore, volume, conId, exch
    7: 5,   # percent change: conjunction, isMore, changePercent, conId, exch
}


def _cancel_order(c: FieldCursor) -> CancelOrder:
    _version(c, "1")
    return CancelOrder(c.int(), c.text())


def _req_executions(c: FieldCursor) -> ReqExecutions:
    _version(c, "3")
    req_id = c.int()
    return ReqExecutions(req_id, ExecutionFilter(
        client_id=c.optional_int() or 0, account=c.text(), time=c.text(),
        symbol=c.text().strip().upper(), sec_type=c.text().strip().upper(),
        exchange=c.text().strip().upper(), side=c.text().strip().upper(),
    ))


def _req_account_summary(c: FieldCursor) -> ReqAccountSummary:
    _version(c, "1")
    req_id = c.int()
    group = c.text()
    tags = tuple(tag.strip() for tag in c.text().split(",") if tag.strip())
    return ReqAccountSummary(req_id, group, tags)


def _req_historical_data(c: FieldCursor) -> ReqHistoricalData:
    # no version field
    req_id = c.int()
    contract = _contract12(c)
    include_expired = c.bool()
    end_date_time = c.text()
    bar_size = c.text()
    duration = c.text()
    use_rth = c.bool()
    what_to_show = c.text()
    format_date = c.optional_int() or 1
    _combo_legs(c, contract, per_leg=4)
    keep_up_to_date = c.bool()
    chart_options = c.text()
    return ReqHistoricalData(req_id, contract, include_expired, end_date_time, bar_size,
                             duration, use_rth, what_to_show, format_date, keep_up_to_date,
                             chart_options)


def _versioned(version: str, build: Callable[[FieldCursor], Request]):
    def parse(c: FieldCursor) -> Request:
        _version(c, version)
        return build(c)
    return parse


_PARSERS: dict[int, Callable[[FieldCursor], Request]] = {
    In.START_API: _start_api,
    In.REQ_CURRENT_TIME: _versioned("1", lambda c: ReqCurrentTime()),
    In.REQ_MANAGED_ACCTS: _versioned("1", lambda c: ReqManagedAccts()),
    In.REQ_IDS: _versioned("1", lambda c: ReqIds(c.int())),
    In.REQ_AUTO_OPEN_ORDERS: _versioned("1", lambda c: ReqAutoOpenOrders(c.bool())),
    In.REQ_CONTRACT_DETAILS: _req_contract_details,
    In.REQ_SEC_DEF_OPT_PARAMS: _req_sec_def_opt_params,
    In.REQ_MARKET_RULE: lambda c: ReqMarketRule(c.int()),               # no version
    In.REQ_MARKET_DATA_TYPE: _versioned("1", lambda c: ReqMarketDataType(c.int())),
    In.REQ_MKT_DATA: _req_mkt_data,
    In.CANCEL_MKT_DATA: _versioned("2", lambda c: CancelMktData(c.int())),
    In.PLACE_ORDER: _place_order,
    In.CANCEL_ORDER: _cancel_order,
    In.REQ_OPEN_ORDERS: _versioned("1", lambda c: ReqOpenOrders()),
    In.REQ_ALL_OPEN_ORDERS: _versioned("1", lambda c: ReqAllOpenOrders()),
    In.REQ_COMPLETED_ORDERS: lambda c: ReqCompletedOrders(c.bool()),   # no version
    In.REQ_EXECUTIONS: _req_executions,
    In.REQ_POSITIONS: _versioned("1", lambda c: ReqPositions()),
    In.CANCEL_POSITIONS: _versioned("1", lambda c: CancelPositions()),
    In.REQ_ACCOUNT_UPDATES: _versioned("2", lambda c: ReqAccountUpdates(c.bool(), c.text())),
    In.REQ_ACCOUNT_UPDATES_MULTI: _versioned(
        "1", lambda c: ReqAccountUpdatesMulti(c.int(), c.text(), c.text(), c.bool())),
    In.CANCEL_ACCOUNT_UPDATES_MULTI: _versioned(
        "1", lambda c: CancelAccountUpdatesMulti(c.int())),
    In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
    In.CANCEL_ACCOUNT_SUMMARY: _versioned("1", lambda c: CancelAccountSummary(c.int())),
    In.REQ_HISTORICAL_DATA: _req_historical_data,
    In.CANCEL_HISTORICAL_DATA: _versioned("1", lambda c: CancelHistoricalData(c.int())),
    In.REQ_GLOBAL_CANCEL: _versioned("1", lambda c: ReqGlobalCancel()),
}


def parse_request(fields: list[str]) -> Request:
    """One client message as a typed request; ProtocolError when its layout is wrong."""
    if not fields:
        raise ProtocolError("empty message")
    cursor = FieldCursor(fields)
    message_id = cursor.int()
    parser = _PARSERS.get(message_id)
    if parser is None:
        return UnsupportedRequest(message_id, tuple(fields))
    request = parser(cursor)
    cursor.finish()
    return request
