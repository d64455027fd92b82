"""One client connection to the TWS stand-in, and the hub the connections share.

A :class:`Session` is transport-agnostic: it is fed the bytes the client sent
(:meth:`Session.receive`) and writes bytes through the ``write`` callable it was given, so
it can be driven by the asyncio server or directly by a test. It runs the handshake, answers
``startApi`` (managedAccounts, nextValidId, the farm-status infos 2104/2106/2158), dispatches
every request of tws-protocol.md §5 with its End marker, keeps the connection's
subscriptions (market data, positions, account updates, account summaries) and turns the
engine's events into the messages a TWS would push.

The :class:`SessionHub` holds what sessions share: the one ``SimBroker``, the client ids in
use (a second live connection with the same id gets error 326 and is closed), and the
fan-out of the broker's events to the sessions. Everything runs on one thread (the server's
event loop); nothing here locks.

Behaviour worth knowing (the choices the protocol leaves open):

* Order events go to the connection of the order's client id only (TWS's rule for API
  clients that are not the master client). Book entries at expiry (no order) go to every
  connection.
* A fill is sent in TWS's order: execDetails (reqId -1), then openOrder + orderStatus with the
  new state, then commissionReport. The engine publishes the order update first, so the
  session holds it until the execution arrives (:meth:`Session.flush` releases a held update).
* Cancels by a client: orderStatus Cancelled, then error 202 (the engine's ErrorEvent).
* Positions are pushed (61) to connections that called reqPositions, after every fill;
  portfolio rows (7), account values (6) and the account time (8) to connections with
  account updates on; 73 rows to reqAccountUpdatesMulti subscriptions; 63 rows plus 64 to
  account-summary subscriptions, whenever the account changes.
* Market data: 81 tickReqParams, 58 marketDataType, then bid/ask/last (with sizes),
  high/low/volume/close/open, option open interest on generic tick 101 (27 for calls, 28 for
  puts), option volume on 100 (29/30), implied volatility on 106 (24), and model greeks as
  tick 13 for options. Delayed types (3/4) use the delayed tick ids. A snapshot ends with 57.
  Streaming subscriptions get the ticks whose values changed when the hub refreshes (after
  simulated time moved).
* reqExecutions' time filter: ``yyyymmdd-hh:mm:ss`` is UTC, ``yyyymmdd hh:mm:ss ZONE`` is in
  ZONE, and a bare ``yyyymmdd hh:mm:ss`` is New York time (TWS's local time here).
* When a client disconnects its subscriptions end; its orders keep working (as in TWS).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trading_pipeline.core import calendar
from trading_pipeline.sim import protocol as P
from trading_pipeline.sim import ticks
from trading_pipeline.sim.types import (
    AccountEvent,
    ErrorEvent,
    FillEvent,
    Instrument,
    OrderEvent,
    OrderRecord,
    PortfolioItem,
    PositionEvent,
    Quote,
    SecType,
    SimError,
)
from trading_pipeline.sim.wire import (
    SERVER_VERSION,
    FrameDecoder,
    HandshakeDecoder,
    HandshakeRefused,
    ProtocolError,
    encode_frame,
    handshake_reply,
    negotiate_version,
)

if TYPE_CHECKING:
    from trading_pipeline.sim.engine import SimBroker

log = logging.getLogger(__name__)

NEW_YORK = calendar.NEW_YORK

FARM_STATUS = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
CLIENT_ID_IN_USE = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)
HISTORICAL_ERROR = "Historical Market Data Service error message:"
# Account values that are ratios or counts rather than money (more decimals).
_RATIO_KEYS = frozenset({"Cushion", "Leverage", "LookAheadNextChange"})
# How many days of sessions contract details list in tradingHours / liquidHours.
_HOURS_DAYS = 7


# ============================================================================ hub


class SessionHub:
    """The broker, the connected sessions by client id, and the event fan-out."""

    def __init__(self, broker: "SimBroker"):
        self.broker = broker
        self._sessions: list[Session] = []
        self._by_client_id: dict[int, Session] = {}
        self._refreshed_at: datetime | None = None
        broker.add_listener(self._on_event)

    @property
    def sessions(self) -> list["Session"]:
        return list(self._sessions)

    def client_ids(self) -> list[int]:
        return sorted(self._by_client_id)

    def attach(self, session: "Session") -> None:
        self._sessions.append(session)

    def claim_client_id(self, session: "Session", client_id: int) -> bool:
        """Register a live client id; False when another live connection holds it."""
        holder = self._by_client_id.get(client_id)
        if holder is not None and holder is not session:
            return False
        self._by_client_id[client_id] = session
        return True

    def detach(self, session: "Session") -> None:
        if session in self._sessions:
            self._sessions.remove(session)
        if session.client_id is not None and self._by_client_id.get(session.client_id) is session:
            del self._by_client_id[session.client_id]

    def close(self) -> None:
        self.broker.remove_listener(self._on_event)
        for session in list(self._sessions):
            session.close()

    def _on_event(self, event: Any) -> None:
        for session in list(self._sessions):
            session.on_event(event)

    def after_change(self, refresh_market_data: bool = True) -> None:
        """Flush held order updates and, if simulated time moved, push changed ticks."""
        for session in list(self._sessions):
            session.flush()
        if not refresh_market_data:
            return
        now = self.broker.clock.now()
        if now == self._refreshed_at:
            return
        self._refreshed_at = now
        for session in list(self._sessions):
            session.refresh_market_data()


# ============================================================================ subscriptions


@dataclass
class MarketDataSubscription:
    req_id: int
    instrument: Instrument
    generic_ticks: frozenset[int]
    last_sent: dict[tuple[str, int], Any] = field(default_factory=dict)


# ============================================================================ session


class Session:
    """One client connection (see the module docstring)."""

    def __init__(
        self,
        hub: SessionHub,
        write: Callable[[bytes], None],
        close: Callable[[], None] = lambda: None,
        peer: str = "",
    ):
        self.hub = hub
        self.broker = hub.broker
        self.peer = peer
        self._write = write
        self._close_transport = close
        self._handshake = HandshakeDecoder()
        self._frames = FrameDecoder()
        self.server_version: int | None = None
        self.client_id: int | None = None
        self.closed = False
        self.market_data_type = 1
        self._market_data: dict[int, MarketDataSubscription] = {}
        self._positions = False
        self._account_updates = False
        self._account_multi: set[int] = set()
        self._account_summaries: dict[int, tuple[str, ...]] = {}
        # An order update published just before its execution, sent after it (TWS's order).
        self._held_update: OrderRecord | None = None
        self._sent_filled: dict[int, float] = {}
        hub.attach(self)

    # ------------------------------------------------------------------ transport

    @property
    def ready(self) -> bool:
        return self.client_id is not None and not self.closed

    def receive(self, data: bytes) -> None:
        """Bytes from the client: the handshake first, then framed requests."""
        if self.closed:
            return
        try:
            if self.server_version is None:
                handshake = self._handshake.feed(data)
                if handshake is None:
                    return
                try:
                    self.server_version = negotiate_version(handshake)
                except HandshakeRefused as refusal:
                    log.warning("refusing %s: %s", self.peer or "client", refusal)
                    self.close()
                    return
                self._write(handshake_reply(SERVER_VERSION, self.broker.clock.now()))
                data = self._handshake.remainder
            for fields in self._frames.feed(data):
                self.handle(fields)
                if self.closed:
                    return
        except ProtocolError as problem:
            log.error("closing %s: %s", self.peer or "client", problem)
            self.close()
            return
        self.hub.after_change(refresh_market_data=False)

    def connection_lost(self) -> None:
        self.closed = True
        self._market_data.clear()
        self.hub.detach(self)

    def close(self) -> None:
        if self.closed:
            return
        self.connection_lost()
        self._close_transport()

    def send(self, fields: list[str]) -> None:
        if self.closed:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("client %s <<< %s", self.client_id, ",".join(fields))
        self._write(encode_frame(fields))

    def _error(self, req_id: int, code: int, text: str) -> None:
        self.send(P.error(req_id, code, text))

    # ------------------------------------------------------------------ dispatch

    def handle(self, fields: list[str]) -> None:
        """One framed client message."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("client %s >>> %s", self.client_id, ",".join(fields))
        try:
            request = P.parse_request(fields)
        except ProtocolError as problem:
            # A layout drift between client and server: loud in the log, the connection lives.
            log.error("unparseable request from client %s: %s", self.client_id, problem)
            self._error(-1, 320, f"Error reading request: {problem}")
            return
        if isinstance(request, P.UnsupportedRequest):
            log.warning("client %s sent message %s, which the simulator does not implement: %s",
                        self.client_id, request.message_id, list(request.fields))
            self._error(-1, 321, f"Error validating request: message {request.message_id} "
                                 "is not supported by the simulator")
            return
        if isinstance(request, P.StartApi):
            self._start_api(request)
            return
        if self.client_id is None:
            log.warning("request before startApi ignored: %s", fields)
            return
        handler = self._handlers.get(type(request))
        try:
            handler(self, request)
        except Exception:
            log.exception("simulator failed on request %s from client %s", fields, self.client_id)
            self._error(-1, 10000, "The simulator failed on this request; see its log")

    # ------------------------------------------------------------------ connection

    def _start_api(self, request: P.StartApi) -> None:
        if self.client_id is not None:
            log.warning("client %s sent startApi twice", self.client_id)
            return
        if not self.hub.claim_client_id(self, request.client_id):
            log.warning("client id %s is already in use; refusing %s", request.client_id,
                        self.peer or "the connection")
            self._error(-1, 326, CLIENT_ID_IN_USE)
            self.close()
            return
        self.client_id = request.client_id
        self.send(P.managed_accounts([self.broker.account_id]))
        self.send(P.next_valid_id(self.broker.next_order_id(self.client_id)))
        for code, text in FARM_STATUS:
            self._error(-1, code, text)

    def _current_time(self, request: P.ReqCurrentTime) -> None:
        self.send(P.current_time(self.broker.clock.now()))

    def _managed_accounts(self, request: P.ReqManagedAccts) -> None:
        self.send(P.managed_accounts([self.broker.account_id]))

    def _ids(self, request: P.ReqIds) -> None:
        self.send(P.next_valid_id(self.broker.next_order_id(self.client_id)))

    def _auto_open_orders(self, request: P.ReqAutoOpenOrders) -> None:
        pass        # no reply in TWS either; the simulator has no manual (TWS-entered) orders

    # ------------------------------------------------------------------ contracts

    def _resolve(self, query) -> tuple[Instrument | None, str]:
        """The one instrument a contract names, or None and the error text (code 200)."""
        if query.con_id:
            instrument = self.broker.instrument(query.con_id)
            return instrument, P.NO_SECURITY_DEFINITION
        matches = self.broker.match_contracts(query)
        if len(matches) == 1:
            return matches[0], ""
        if not matches:
            return None, P.NO_SECURITY_DEFINITION
        return None, f"The contract description specified for {query.symbol} is ambiguous."

    def _contract_details(self, request: P.ReqContractDetails) -> None:
        query = request.contract
        if query.con_id:
            instrument = self.broker.instrument(query.con_id)
            matches = [instrument] if instrument is not None else []
        else:
            matches = self.broker.match_contracts(query)
        if not matches:
            self._error(request.req_id, 200, P.NO_SECURITY_DEFINITION)
            return
        for instrument in matches:
            trading, liquid = self._hours(instrument)
            self.send(P.contract_details(
                request.req_id, instrument, exchange=query.exchange or instrument.exchange,
                trading_hours=trading, liquid_hours=liquid,
            ))
        self.send(P.contract_details_end(request.req_id))

    def _market_rule(self, request: P.ReqMarketRule) -> None:
        """marketRule (93) for a known rule id (sim/ticks.py); TWS's validation error else."""
        bands = ticks.MARKET_RULES.get(request.market_rule_id)
        if bands is None:
            self._error(-1, 321, f"Error validating request:-'unknown market rule id {request.market_rule_id}'")
            return
        self.send(P.market_rule(request.market_rule_id, bands))

    def _hours(self, instrument: Instrument) -> tuple[str, str]:
        """tradingHours and liquidHours for the coming week, in US/Eastern wall time."""
        today = self.broker.today()
        trading, liquid = [], []
        for offset in range(_HOURS_DAYS):
            day = today + timedelta(days=offset)
            stamp = day.strftime("%Y%m%d")
            if not calendar.is_session(day):
                trading.append(f"{stamp}:CLOSED")
                liquid.append(f"{stamp}:CLOSED")
                continue
            bounds = calendar.session_bounds(day)
            opens = bounds.open_utc.astimezone(NEW_YORK)
            closes = bounds.close_utc.astimezone(NEW_YORK)
            rth = f"{stamp}:{opens:%H%M}-{stamp}:{closes:%H%M}"
            liquid.append(rth)
            if instrument.sec_type is SecType.STK:
                # Stocks also trade before and after the regular session (4:00 to 20:00).
                late = "2000" if closes.hour >= 16 else "1700"
                trading.append(f"{stamp}:0400-{stamp}:{late}")
            else:
                trading.append(rth)
        return ";".join(trading), ";".join(liquid)

    def _sec_def_opt_params(self, request: P.ReqSecDefOptParams) -> None:
        rows = self.broker.option_parameters(
            request.underlying_symbol, request.underlying_sec_type, request.underlying_con_id
        )
        if not rows:
            self._error(request.req_id, 200, P.NO_SECURITY_DEFINITION)
            return
        for row in rows:
            self.send(P.sec_def_opt_params(request.req_id, row))
        self.send(P.sec_def_opt_params_end(request.req_id))

    # ------------------------------------------------------------------ market data

    def _market_data_type(self, request: P.ReqMarketDataType) -> None:
        self.market_data_type = request.data_type

    def _mkt_data(self, request: P.ReqMktData) -> None:
        instrument, problem = self._resolve(request.contract)
        if instrument is None:
            self._error(request.req_id, 200, problem)
            return
        subscription = MarketDataSubscription(request.req_id, instrument,
                                              frozenset(request.generic_ticks))
        self.send(P.tick_req_params(request.req_id, instrument.min_tick))
        self.send(P.market_data_type(request.req_id, self.market_data_type))
        self._send_ticks(subscription)
        if request.snapshot or request.regulatory_snapshot:
            self.send(P.tick_snapshot_end(request.req_id))
        else:
            self._market_data[request.req_id] = subscription

    def _cancel_mkt_data(self, request: P.CancelMktData) -> None:
        self._market_data.pop(request.req_id, None)

    def refresh_market_data(self) -> None:
        """Push the ticks that changed since they were last sent (streaming subscriptions)."""
        for subscription in list(self._market_data.values()):
            self._send_ticks(subscription)

    def _tick_id(self, live: int) -> int:
        if self.market_data_type in (3, 4):
            return P.DELAYED_TICK.get(live, live)
        return live

    def _send_ticks(self, subscription: MarketDataSubscription) -> None:
        try:
            quote = self.broker.quote(subscription.instrument.con_id)
        except SimError as problem:
            self._error(subscription.req_id, problem.code, problem.message)
            self._market_data.pop(subscription.req_id, None)
            return
        for message in self._changed_ticks(subscription, quote):
            self.send(message)

    def _changed_ticks(self, sub: MarketDataSubscription, quote: Quote) -> list[list[str]]:
        """The messages for every tick value that differs from what was last sent."""
        req_id = sub.req_id
        sent = sub.last_sent
        messages: list[list[str]] = []

        def price_tick(tick: int, price: float | None, size: int = 0, size_tick: int | None = None,
                       attr_mask: int = 0) -> None:
            if not _usable(price):
                return
            previous = sent.get(("price", tick))
            if previous == (price, size):
                return
            if previous is not None and previous[0] == price and size_tick is not None:
                messages.append(P.tick_size(req_id, self._tick_id(size_tick), size))
            else:
                messages.append(P.tick_price(req_id, self._tick_id(tick), price, size, attr_mask))
            sent[("price", tick)] = (price, size)

        def size_tick(tick: int, size: int, delayed: bool = True) -> None:
            if sent.get(("size", tick)) == size:
                return
            messages.append(P.tick_size(req_id, self._tick_id(tick) if delayed else tick, size))
            sent[("size", tick)] = size

        price_tick(P.Tick.BID, quote.bid, quote.bid_size, P.Tick.BID_SIZE, attr_mask=1)
        price_tick(P.Tick.ASK, quote.ask, quote.ask_size, P.Tick.ASK_SIZE, attr_mask=1)
        price_tick(P.Tick.LAST, quote.last, quote.last_size, P.Tick.LAST_SIZE)
        price_tick(P.Tick.HIGH, quote.high)
        price_tick(P.Tick.LOW, quote.low)
        if quote.volume:
            size_tick(P.Tick.VOLUME, int(quote.volume))
        price_tick(P.Tick.CLOSE, quote.close)
        price_tick(P.Tick.OPEN, quote.open)
        instrument = sub.instrument
        if instrument.is_option:
            call = instrument.right == "C"
            if 101 in sub.generic_ticks:
                size_tick(P.Tick.OPTION_CALL_OPEN_INTEREST if call
                          else P.Tick.OPTION_PUT_OPEN_INTEREST,
                          int(quote.open_interest), delayed=False)
            if 100 in sub.generic_ticks:
                size_tick(P.Tick.OPTION_CALL_VOLUME if call else P.Tick.OPTION_PUT_VOLUME,
                          int(quote.volume), delayed=False)
            greeks = quote.greeks
            if greeks is not None:
                if 106 in sub.generic_ticks and _usable(greeks.implied_vol):
                    if sent.get(("generic", P.Tick.OPTION_IMPLIED_VOL)) != greeks.implied_vol:
                        messages.append(P.tick_generic(req_id, P.Tick.OPTION_IMPLIED_VOL,
                                                       greeks.implied_vol))
                        sent[("generic", P.Tick.OPTION_IMPLIED_VOL)] = greeks.implied_vol
                if sent.get(("greeks", P.Tick.MODEL_OPTION)) != greeks and _all_finite(greeks):
                    messages.append(P.tick_option_computation(
                        req_id, self._tick_id(P.Tick.MODEL_OPTION), greeks))
                    sent[("greeks", P.Tick.MODEL_OPTION)] = greeks
        return messages

    # ------------------------------------------------------------------ history

    def _historical_data(self, request: P.ReqHistoricalData) -> None:
        instrument, problem = self._resolve(request.contract)
        if instrument is None:
            self._error(request.req_id, 200, problem)
            return
        bar_size = " ".join(request.bar_size.split()).lower()
        if bar_size not in ("1 day", "1 d"):
            self._error(request.req_id, 162, HISTORICAL_ERROR + "the simulator serves daily bars "
                                                                f"only, not {request.bar_size!r}")
            return
        try:
            end_day = self._end_day(request.end_date_time)
            count = self._bar_count(request.duration, end_day)
        except ValueError as problem:
            self._error(request.req_id, 321, f"Error validating request:-'{problem}'")
            return
        bars = self.broker.daily_bars(instrument.con_id, end_day, count)
        if bars:
            start, end = P.historical_range_text(bars[0].day, bars[-1].day)
        else:
            start, end = P.historical_range_text(end_day, end_day)
        self.send(P.historical_data(request.req_id, bars, start, end,
                                    index_volume=instrument.sec_type is SecType.IND))

    def _cancel_historical_data(self, request: P.CancelHistoricalData) -> None:
        pass        # answered at once; nothing keeps running

    def _end_day(self, text: str) -> date:
        if not text.strip():
            return self.broker.today()
        return calendar.new_york_date(parse_tws_time(text))

    @staticmethod
    def _bar_count(duration: str, end_day: date) -> int:
        parts = duration.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) <= 0:
            raise ValueError(f"invalid duration {duration!r}")
        amount, unit = int(parts[0]), parts[1].upper()
        if unit == "S":
            return 1
        if unit == "D":
            return amount
        span_days = {"W": 7, "M": 31, "Y": 365}.get(unit)
        if span_days is None:
            raise ValueError(f"invalid duration unit in {duration!r}")
        first = end_day - timedelta(days=span_days * amount - 1)
        return max(1, len(calendar.sessions_between(first, end_day)))

    # ------------------------------------------------------------------ orders

    def _view(self, record: OrderRecord, status: str | None = None) -> P.OrderView:
        return P.OrderView.of(record, self.broker.account_id, status)

    def _send_order(self, record: OrderRecord) -> None:
        view = self._view(record)
        self.send(P.open_order(view))
        self.send(P.order_status(view))
        self._sent_filled[record.perm_id] = record.filled

    def _place_order(self, request: P.PlaceOrder) -> None:
        instrument, problem = self._resolve(request.contract)
        if instrument is None:
            self._error(request.order_id, 200, problem)
            return
        try:
            self.broker.place_order(self.client_id, request.order_id, instrument, request.request)
            if request.request.what_if:
                impact = self.broker.what_if(instrument, request.request)
        except SimError as refusal:
            self._error(request.order_id, refusal.code, refusal.message)
            return
        if request.request.what_if:
            self.send(P.open_order(P.OrderView(
                order_id=request.order_id, client_id=self.client_id, perm_id=0,
                instrument=instrument, request=request.request, status="PreSubmitted",
                account=request.request.account or self.broker.account_id,
                remaining=request.request.total_quantity, margin=impact,
            )))

    def _cancel_order(self, request: P.CancelOrder) -> None:
        try:
            self.broker.cancel_order(self.client_id, request.order_id)
        except SimError as refusal:
            self._error(request.order_id, refusal.code, refusal.message)

    def _global_cancel(self, request: P.ReqGlobalCancel) -> None:
        self.broker.global_cancel()

    def _open_orders(self, request: P.ReqOpenOrders) -> None:
        for record in self.broker.open_orders(self.client_id):
            self._send_order(record)
        self.send(P.open_order_end())

    def _all_open_orders(self, request: P.ReqAllOpenOrders) -> None:
        for record in self.broker.open_orders(None):
            self._send_order(record)
        self.send(P.open_order_end())

    def _completed_orders(self, request: P.ReqCompletedOrders) -> None:
        for record in self.broker.completed_orders():
            self.send(P.completed_order(self._view(record)))
        self.send(P.completed_orders_end())

    def _executions(self, request: P.ReqExecutions) -> None:
        from trading_pipeline.sim.engine import ExecutionFilter

        wanted = request.filter
        try:
            time_from = parse_tws_time(wanted.time) if wanted.time.strip() else None
        except ValueError as problem:
            self._error(request.req_id, 321, f"Error validating request:-'{problem}'")
            return
        executions = self.broker.executions(ExecutionFilter(
            client_id=wanted.client_id, account=wanted.account, time_from=time_from,
            symbol=wanted.symbol, sec_type=wanted.sec_type, exchange=wanted.exchange,
            side=wanted.side,
        ))
        for execution in executions:
            self.send(P.exec_details(request.req_id, execution))
            self.send(P.commission_report(execution))
        self.send(P.exec_details_end(request.req_id))

    # ------------------------------------------------------------------ account

    def _positions_request(self, request: P.ReqPositions) -> None:
        for item in self.broker.positions():
            self.send(P.position(item))
        self.send(P.position_end())
        self._positions = True

    def _cancel_positions(self, request: P.CancelPositions) -> None:
        self._positions = False

    def _account_rows(self) -> list[tuple[str, str, str]]:
        """(key, value text, currency) rows of the account, TWS style."""
        account = self.broker.account_id
        rows = [("AccountCode", account, ""), ("AccountType", "INDIVIDUAL", ""),
                ("Currency", "USD", "USD")]
        for key, value in self.broker.account_values().items():
            text = f"{value:.4f}" if key in _RATIO_KEYS else f"{value:.2f}"
            rows.append((key, text, "USD"))
        return rows

    def _account_updates_request(self, request: P.ReqAccountUpdates) -> None:
        self._account_updates = request.subscribe
        if not request.subscribe:
            return
        self._push_account_updates()
        self.send(P.account_download_end(self.broker.account_id))

    def _push_account_updates(self) -> None:
        account = self.broker.account_id
        for key, value, currency in self._account_rows():
            self.send(P.update_account_value(key, value, currency, account))
        for item in self.broker.portfolio():
            self.send(P.update_portfolio(item))
        self.send(P.update_account_time(self.broker.clock.now(), NEW_YORK))

    def _account_updates_multi(self, request: P.ReqAccountUpdatesMulti) -> None:
        self._push_account_multi(request.req_id)
        self.send(P.account_update_multi_end(request.req_id))
        self._account_multi.add(request.req_id)

    def _push_account_multi(self, req_id: int) -> None:
        account = self.broker.account_id
        for key, value, currency in self._account_rows():
            self.send(P.account_update_multi(req_id, account, "", key, value, currency))

    def _cancel_account_updates_multi(self, request: P.CancelAccountUpdatesMulti) -> None:
        self._account_multi.discard(request.req_id)

    def _account_summary(self, request: P.ReqAccountSummary) -> None:
        self._account_summaries[request.req_id] = request.tags
        self._push_account_summary(request.req_id, request.tags)

    def _push_account_summary(self, req_id: int, tags: tuple[str, ...]) -> None:
        wanted = set(tags)
        account = self.broker.account_id
        for key, value, currency in self._account_rows():
            if key in wanted:
                self.send(P.account_summary(req_id, account, key, value, currency))
        self.send(P.account_summary_end(req_id))

    def _cancel_account_summary(self, request: P.CancelAccountSummary) -> None:
        self._account_summaries.pop(request.req_id, None)

    # ------------------------------------------------------------------ engine events

    def on_event(self, event: Any) -> None:
        """An event the broker published (to every session; each picks what is its own)."""
        if not self.ready:
            return
        if isinstance(event, OrderEvent):
            self._on_order(event.order)
        elif isinstance(event, FillEvent):
            self._on_fill(event)
        elif isinstance(event, PositionEvent):
            self.flush()
            self._on_position(event)
        elif isinstance(event, AccountEvent):
            self.flush()
            self._on_account()
        elif isinstance(event, ErrorEvent):
            self.flush()
            if event.client_id == self.client_id:
                self._error(event.req_id, event.code, event.message)

    def _on_order(self, record: OrderRecord) -> None:
        if record.client_id != self.client_id:
            return
        self.flush()
        if record.filled > self._sent_filled.get(record.perm_id, 0.0):
            self._held_update = record          # its execution follows; send that first
        else:
            self._send_order(record)

    def _on_fill(self, event: FillEvent) -> None:
        execution = event.execution
        if event.order is None:                 # a book entry at expiry: every connection
            self.flush()
            self.send(P.exec_details(-1, execution))
            self.send(P.commission_report(execution))
            return
        if execution.client_id != self.client_id:
            return
        self.send(P.exec_details(-1, execution))
        held = self._held_update
        if held is not None and held.perm_id == execution.perm_id:
            self._held_update = None
            self._send_order(held)
        self.send(P.commission_report(execution))

    def flush(self) -> None:
        """Send an order update held back for an execution that did not come."""
        held = self._held_update
        if held is not None:
            self._held_update = None
            self._send_order(held)

    def _on_position(self, event: PositionEvent) -> None:
        position = event.position
        if self._positions:
            self.send(P.position(position))
        if self._account_updates and position.quantity == 0:
            # A closed position leaves the portfolio: TWS sends it once more with 0.
            self.send(P.update_portfolio(PortfolioItem(
                account=position.account, instrument=position.instrument, position=0.0,
                market_price=0.0, market_value=0.0, average_cost=0.0, unrealized_pnl=0.0,
                realized_pnl=0.0,
            )))

    def _on_account(self) -> None:
        if self._account_updates:
            self._push_account_updates()
        for req_id in sorted(self._account_multi):
            self._push_account_multi(req_id)
        for req_id, tags in sorted(self._account_summaries.items()):
            self._push_account_summary(req_id, tags)

    _handlers: dict[type, Callable[["Session", Any], None]] = {
        P.ReqCurrentTime: _current_time,
        P.ReqManagedAccts: _managed_accounts,
        P.ReqIds: _ids,
        P.ReqAutoOpenOrders: _auto_open_orders,
        P.ReqContractDetails: _contract_details,
        P.ReqSecDefOptParams: _sec_def_opt_params,
        P.ReqMarketRule: _market_rule,
        P.ReqMarketDataType: _market_data_type,
        P.ReqMktData: _mkt_data,
        P.CancelMktData: _cancel_mkt_data,
        P.PlaceOrder: _place_order,
        P.CancelOrder: _cancel_order,
        P.ReqGlobalCancel: _global_cancel,
        P.ReqOpenOrders: _open_orders,
        P.ReqAllOpenOrders: _all_open_orders,
        P.ReqCompletedOrders: _completed_orders,
        P.ReqExecutions: _executions,
        P.ReqPositions: _positions_request,
        P.CancelPositions: _cancel_positions,
        P.ReqAccountUpdates: _account_updates_request,
        P.ReqAccountUpdatesMulti: _account_updates_multi,
        P.CancelAccountUpdatesMulti: _cancel_account_updates_multi,
        P.ReqAccountSummary: _account_summary,
        P.CancelAccountSummary: _cancel_account_summary,
        P.ReqHistoricalData: _historical_data,
        P.CancelHistoricalData: _cancel_historical_data,
    }


# ============================================================================ helpers


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _all_finite(greeks) -> bool:
    return all(math.isfinite(value) for value in (
        greeks.implied_vol, greeks.delta, greeks.price, greeks.pv_dividend, greeks.gamma,
        greeks.vega, greeks.theta, greeks.underlying_price))


def parse_tws_time(text: str) -> datetime:
    """A TWS request time: ``yyyymmdd-hh:mm:ss`` (UTC), ``yyyymmdd hh:mm:ss [ZONE]``
    (New York when no zone is given), or ``yyyymmdd`` (the end of that New York day)."""
    text = text.strip()
    try:
        if len(text) == 8 and text.isdigit():
            day = datetime.strptime(text, "%Y%m%d")
            return day.replace(hour=23, minute=59, second=59, tzinfo=NEW_YORK).astimezone(timezone.utc)
        if "-" in text[:9] and len(text) >= 17 and text[8] == "-":
            naive = datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S")
            return naive.replace(tzinfo=timezone.utc)
        parts = text.split(" ", 2)
        naive = datetime.strptime(parts[0] + " " + parts[1], "%Y%m%d %H:%M:%S")
    except (ValueError, IndexError):
        raise ValueError(f"not a TWS time {text!r}") from None
    zone_name = parts[2].strip() if len(parts) == 3 else ""
    if not zone_name:
        zone = NEW_YORK
    else:
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone_name!r} in {text!r}") from None
    return naive.replace(tzinfo=zone).astimezone(timezone.utc)
