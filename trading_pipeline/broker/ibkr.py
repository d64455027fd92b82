"""The IBKR adapter: :class:`IbkrBroker` implements the broker port on ib_async.

It trades a real TWS / IB Gateway and the project's simulator (``tp sim-gateway``) alike;
nothing here knows which one is on the other end.

Design
------

*One event loop, in its own thread.* ib_async is asyncio code. The adapter runs one
``IB`` object on a private event loop in a daemon thread; every public method is a
synchronous call that submits a coroutine to that loop and waits for its result. The
callers (CLI commands, Dagster ops, tests) therefore never share or nest event loops, so
"This event loop is already running" cannot happen, whatever the caller runs in.

*A timeout on every request.* Each request runs under ``asyncio.wait_for`` with
``IBKR_TIMEOUT`` seconds (some ib_async requests wait forever when TWS stalls); a request
that times out raises :class:`BrokerTimeout` naming the request and the gateway. The
synchronous wait has its own, longer, safety timeout in case the loop thread itself is
stuck.

*Reconnect with backoff, bounded; orders never re-sent.* When the connection drops, the
adapter reconnects in the background with the settings' :class:`ReconnectPolicy` (e.g. 5
attempts at 0.5, 1, 2, 4, 8 s). Requests made meanwhile wait for that to finish. A read
that was in flight when the socket dropped is repeated once after the reconnect; an order
(place, modify, cancel) is never repeated: it fails with :class:`BrokerDisconnected`
saying that it may have reached the broker and must be checked (open orders / executions),
which is what the project's reconciliation does. When every attempt fails the request
raises :class:`BrokerDisconnected`; the next request starts a new bounded round, so a
long-running process recovers once TWS is back.

*Clear errors.* Nothing listening, a handshake that never completes, client id already in
use (TWS error 326, detected at once instead of after the handshake timeout), unknown or
ambiguous contracts (with the candidates), order rejections (with TWS's reason), market
data refused (with the code): each is its own error type with a one-line message.

*Quotes with greeks.* Market data is requested as a stream (option generic ticks 100, 101,
106 for volume, open interest and implied volatility), read until every contract has a
two-sided market and, for options, model greeks and open interest, or until
``greeks_timeout``; ticks still in flight (last, close, sizes) are read until the streams
have been quiet for 50 ms; then the streams are cancelled. ib_async keeps the last values of
a cancelled stream, so each request starts from an empty ticker: stale greeks never pass for
fresh ones. Options whose model greeks did not come get greeks
computed by ``core.options_math`` from the bid/ask mid, the underlying's price, the
broker's time to the expiry's close, ``risk_free_rate`` and a zero dividend yield
(``source="computed"``).

*Price grids.* ``price_increments`` reads each contract's marketRuleIds from its contract
details and the rule itself with reqMarketRule, both cached for the adapter's life (rules do
not change); what TWS does not answer gets the port's conservative fallback grid, not cached.

*Pacing.* TWS disconnects clients that send more than 50 messages per second; ib_async
paces requests at ``IBKR_MAX_MESSAGES_PER_SECOND`` (45 by default; 0 turns pacing off,
for the simulator).

Logs carry no secrets: the account id is masked; nothing else sensitive passes here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import math
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time as wall_time, timezone
from typing import Any, TypeVar

import ib_async
import numpy as np

from trading_pipeline.broker.port import (
    DONE_STATUSES,
    AccountSummary,
    BracketHandle,
    BracketRequest,
    BrokerConnectionError,
    BrokerDisconnected,
    BrokerRequestError,
    BrokerTimeout,
    ClientIdInUseError,
    ConnectionInfo,
    Contract,
    ContractError,
    ContractProblem,
    ContractSpec,
    DailyBar,
    FillReport,
    MarginImpact,
    OptionChainParameters,
    OptionGreeks,
    OrderEvent,
    OrderHandle,
    OrderRejected,
    OrderRequest,
    OrderType,
    OrderUpdate,
    Position,
    Quote,
    SecType,
    fallback_increments,
)
from trading_pipeline.broker.settings import BrokerSettings, mask_account
from trading_pipeline.core import calendar
from trading_pipeline.core.enrichment import years_to_expiry
from trading_pipeline.core.pricing import PriceIncrements
from trading_pipeline.core.options_math import implied_volatility_and_greeks
from trading_pipeline.errors import ConfigurationError

log = logging.getLogger(__name__)
# ib_async logs every refusal it receives (e.g. "Error 200" while probing stock-or-index);
# the adapter turns those into its own clear errors. Without this, an application that has
# not configured logging would print them on stderr through logging's last-resort handler.
logging.getLogger("ib_async").addHandler(logging.NullHandler())

T = TypeVar("T")

DEFAULT_GREEKS_TIMEOUT = 3.0
DEFAULT_RISK_FREE_RATE = 0.04          # near the short T-bill yield; pass yours to IbkrBroker
OPTION_GENERIC_TICKS = "100,101,106"   # option volume, open interest, implied volatility
MAX_MARKET_DATA_LINES = 90             # TWS's default allowance is 100 simultaneous lines
# Once every stream has what a quote needs, ticks still in flight (last, close, sizes) are
# read until the streams stay quiet this long, for at most SETTLE_MAX_SECONDS.
SETTLE_SECONDS = 0.05
SETTLE_MAX_SECONDS = 0.3
ACKNOWLEDGED = frozenset({"PreSubmitted", "Submitted", "Filled"})
REJECTED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})
ACCOUNT_TAGS = {
    "NetLiquidation": "net_liquidation",
    "TotalCashValue": "total_cash_value",
    "BuyingPower": "buying_power",
    "ExcessLiquidity": "excess_liquidity",
    "AvailableFunds": "available_funds",
    "InitMarginReq": "init_margin_req",
    "MaintMarginReq": "maint_margin_req",
    "EquityWithLoanValue": "equity_with_loan",
    "GrossPositionValue": "gross_position_value",
}
# Seconds on top of a request's own timeout before the calling thread gives up on the loop.
_LOOP_GRACE = 5.0
_UNSET_DOUBLE = 1.7976931348623157e308
_SEC_TYPES = {member.value: member for member in SecType}


async def _settle(changed: asyncio.Event) -> None:
    """Wait until no update arrived for SETTLE_SECONDS (at most SETTLE_MAX_SECONDS)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + SETTLE_MAX_SECONDS
    while True:
        changed.clear()
        quiet = min(SETTLE_SECONDS, give_up - loop.time())
        if quiet <= 0:
            return
        try:
            await asyncio.wait_for(changed.wait(), quiet)
        except TimeoutError:
            return


def _informational(code: int) -> bool:
    """TWS messages that report something but refuse nothing (farm status, notices)."""
    return 2100 <= code < 2200 or code in (165, 399, 404, 492, 10167)


# ============================================================================ loop thread


class _LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coroutine: Awaitable[T]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


# ============================================================================ event stream


class _EventStream:
    """The order status and fill stream handed to a caller (see port.OrderEventStream)."""

    def __init__(self, on_close: Callable[["_EventStream"], None]):
        self._queue: queue.Queue[OrderEvent] = queue.Queue()
        self._on_close = on_close

    def put(self, event: OrderEvent) -> None:
        self._queue.put(event)

    def get(self, timeout: float) -> OrderEvent:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise BrokerTimeout(f"no order event within {timeout:g} s") from None

    def drain(self) -> list[OrderEvent]:
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def close(self) -> None:
        self._on_close(self)

    def __enter__(self) -> "_EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class _OrderTrack:
    """What the adapter watches of one of its orders while a call waits on it."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.open_orders_seen = 0
        self.errors: list[tuple[int, str]] = []


@dataclass
class _Ticks:
    """The values read from one market data stream before it was cancelled."""

    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    close: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    volume: float | None = None
    open_interest: float | None = None
    greeks: OptionGreeks | None = None


# ============================================================================ the adapter


class IbkrBroker:
    """The broker port on ib_async (see the module docstring).

    Use it as a context manager, or call :meth:`connect` and :meth:`disconnect`::

        with IbkrBroker(BrokerSettings.from_env()) as broker:
            [aapl] = broker.qualify(ContractSpec.stock("AAPL"))
            print(broker.quotes([aapl])[0].mid)
    """

    def __init__(self, settings: BrokerSettings | None = None, *,
                 greeks_timeout: float = DEFAULT_GREEKS_TIMEOUT,
                 risk_free_rate: float = DEFAULT_RISK_FREE_RATE):
        self.settings = settings if settings is not None else BrokerSettings.from_env()
        self.greeks_timeout = greeks_timeout
        self.risk_free_rate = risk_free_rate
        self._thread: _LoopThread | None = None
        self._ib: ib_async.IB | None = None
        self._state = "new"                         # new, connected, closed
        self._connecting = False
        self._reconnect_task: asyncio.Task | None = None
        self._account = ""
        self._streams: list[_EventStream] = []
        self._streams_lock = threading.Lock()
        self._tracks: dict[int, _OrderTrack] = {}
        self._request_locks: dict[str, asyncio.Lock] = {}
        self._underlyings: dict[str, ib_async.Contract] = {}
        # Price grids (price_increments): the market rule id of each conId, the rule of each id.
        self._rule_ids: dict[int, int] = {}
        self._market_rules: dict[int, PriceIncrements] = {}

    # ------------------------------------------------------------------ connection

    def connect(self) -> ConnectionInfo:
        """Open the connection (synchronizing orders, positions and account); idempotent."""
        if self._thread is None:
            self._thread = _LoopThread(f"ibkr-client-{self.settings.client_id}")
        try:
            return self._wait(self._thread.submit(self._open()), self._connect_budget(),
                              "connecting")
        except BaseException:
            if self._state != "connected":
                # Nothing to keep: the next connect() starts a fresh loop and client.
                self._stop_thread()
                self._ib = None
            raise

    def disconnect(self) -> None:
        """Close the connection and stop the loop thread; safe to call twice."""
        if self._thread is None:
            return
        try:
            self._wait(self._thread.submit(self._close()), 10.0, "disconnecting")
        finally:
            self._stop_thread()

    def __enter__(self) -> "IbkrBroker":
        self.connect()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.disconnect()

    @property
    def is_connected(self) -> bool:
        return self._state == "connected" and self._ib is not None and self._ib.isConnected()

    @property
    def account(self) -> str:
        return self._account

    def current_time(self) -> datetime:
        return self._call("the current time", self._current_time, retry=True)

    # ------------------------------------------------------------------ reference data

    def qualify(self, *specs: ContractSpec) -> list[Contract]:
        if not specs:
            return []
        return self._call("contract qualification", lambda: self._qualify(specs), retry=True)

    def option_chain_parameters(self, symbol: str) -> list[OptionChainParameters]:
        return self._call(f"option chain parameters of {symbol}",
                          lambda: self._chain_parameters(symbol.strip().upper()), retry=True)

    def strikes_near(self, symbol: str, expiry: date, price: float, *, right: str = "P",
                     count: int | None = None, pct: float | None = None, side: str = "both",
                     trading_class: str = "") -> list[Contract]:
        if (count is None) == (pct is None):
            raise ValueError("give either count (the n nearest strikes) or pct (a percent range)")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if pct is not None and not pct > 0:
            raise ValueError("pct must be a positive percentage")
        if side not in ("both", "below", "above"):
            raise ValueError("side must be both, below or above")
        spec = ContractSpec.option(symbol, expiry, 1.0, right, trading_class=trading_class)
        return self._call(
            f"the {spec.right} options of {spec.symbol} expiring {expiry.isoformat()}",
            lambda: self._strikes_near(spec, price, count, pct, side), retry=True)

    def price_increments(self, contracts: Sequence[Contract]) -> list[PriceIncrements]:
        """Each contract's market rule (see the port); the fallback grid where TWS gives none."""
        if not contracts:
            return []
        for contract in contracts:
            _require_qualified(contract)
        return self._call("the price increments (market rules)",
                          lambda: self._price_increments(list(contracts)), retry=True)

    # ------------------------------------------------------------------ market data

    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        if not contracts:
            return []
        for contract in contracts:
            _require_qualified(contract)
        budget = self.settings.timeout + self.greeks_timeout * 2
        return self._call("market data", lambda: self._quotes(list(contracts)), retry=True,
                          timeout=budget)

    def daily_bars(self, contract: Contract, days: int, end: date | None = None) -> list[DailyBar]:
        if days < 1:
            raise ValueError("days must be at least 1")
        _require_qualified(contract)
        return self._call(f"daily bars of {contract.describe()}",
                          lambda: self._daily_bars(contract, days, end), retry=True)

    # ------------------------------------------------------------------ orders

    def place_order(self, contract: Contract, request: OrderRequest) -> OrderHandle:
        _require_qualified(contract)
        return self._call(f"the acknowledgement of a {request.order_type.value} order on "
                          f"{contract.describe()}", lambda: self._place(contract, request),
                          hint=_MAY_HAVE_REACHED)

    def place_bracket(self, contract: Contract, bracket: BracketRequest) -> BracketHandle:
        _require_qualified(contract)
        return self._call(f"the acknowledgement of a bracket on {contract.describe()}",
                          lambda: self._place_bracket(contract, bracket), hint=_MAY_HAVE_REACHED)

    def modify_order(self, order: OrderHandle, limit_price: float) -> OrderHandle:
        if not (limit_price > 0 and math.isfinite(limit_price)):
            raise ValueError(f"limit price must be a positive number, not {limit_price!r}")
        return self._call(f"the acknowledgement of the modification of order {order.order_id}",
                          lambda: self._modify(order, limit_price), hint=_MAY_HAVE_REACHED)

    def cancel_order(self, order: OrderHandle | int) -> OrderUpdate:
        order_id = _order_id(order)
        return self._call(f"the confirmation of the cancel of order {order_id}",
                          lambda: self._cancel(order_id))

    def wait_for_order(self, order: OrderHandle | int, statuses: frozenset[str] | set[str],
                       timeout: float) -> OrderUpdate:
        """The order's update once its status is one of ``statuses`` or it is done."""
        order_id = _order_id(order)
        wanted = frozenset(statuses)
        return self._call(f"order {order_id}", lambda: self._wait_status(order_id, wanted),
                          timeout=timeout, timeout_message=(
                              f"order {order_id} did not reach {' or '.join(sorted(wanted))} "
                              f"within {timeout:g} s"))

    def order_events(self) -> _EventStream:
        """A new stream of this client's order updates and fills (with commissions), from
        now on, in the order IBKR sent them."""
        stream = _EventStream(self._remove_stream)
        with self._streams_lock:
            self._streams.append(stream)
        return stream

    def open_orders(self) -> list[OrderUpdate]:
        """Every open API order of the account, from every client id."""
        return self._call("open orders", self._open_orders, retry=True)

    def global_cancel(self) -> None:
        """reqGlobalCancel: every working order of the account, from every client id. Never
        retried on a reconnect (the emergency stop repeats it while orders remain)."""
        async def send() -> None:
            self._ib.reqGlobalCancel()

        self._call("the global cancel", send)

    def executions(self, since: datetime | None = None) -> list[FillReport]:
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        return self._call("executions", lambda: self._executions(since), retry=True)

    # ------------------------------------------------------------------ account

    def positions(self) -> list[Position]:
        return self._call("positions", self._positions, retry=True)

    def account_summary(self) -> AccountSummary:
        return self._call("the account summary", self._account_summary, retry=True)

    def what_if_margin(self, contract: Contract, request: OrderRequest) -> MarginImpact:
        _require_qualified(contract)
        return self._call(f"the margin impact of an order on {contract.describe()}",
                          lambda: self._what_if(contract, request), retry=True)

    # ================================================================== sync -> loop

    def _call(self, what: str, make: Callable[[], Awaitable[T]], *, retry: bool = False,
              timeout: float | None = None, hint: str = "", timeout_message: str = "") -> T:
        if self._thread is None or self._state == "closed":
            raise BrokerDisconnected(f"not connected to IBKR ({self.settings.describe()}): "
                                     "call connect() first")
        if self._thread.is_current():
            raise RuntimeError("the broker's synchronous API was called from its own event loop "
                               "thread (an event callback); hand the work to another thread")
        budget = timeout if timeout is not None else self.settings.timeout
        future = self._thread.submit(self._guarded(what, make, budget, retry, hint, timeout_message))
        return self._wait(future, budget + self._reconnect_budget() + _LOOP_GRACE, what)

    def _wait(self, future: concurrent.futures.Future, seconds: float, what: str) -> Any:
        try:
            return future.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BrokerTimeout(f"the IBKR client did not finish {what} within {seconds:g} s "
                                f"({self.settings.describe()})") from None
        except concurrent.futures.CancelledError:
            # disconnect() from another thread stopped the loop under this request.
            raise BrokerDisconnected(f"the connection to IBKR was closed during {what}") from None

    async def _guarded(self, what: str, make: Callable[[], Awaitable[T]], timeout: float,
                       retry: bool, hint: str, timeout_message: str) -> T:
        for attempt in (1, 2):
            await self._ensure_connected()
            try:
                return await asyncio.wait_for(make(), timeout)
            except TimeoutError:
                message = timeout_message or (f"IBKR did not answer {what} within {timeout:g} s "
                                              f"({self.settings.describe()})")
                raise BrokerTimeout(f"{message}; {hint}" if hint else message) from None
            except ConnectionError:
                # The socket dropped mid-request (ib_async fails the pending request).
                if retry and attempt == 1 and self._state == "connected":
                    log.warning("connection lost during %s; asking again after reconnecting", what)
                    continue
                message = f"the connection to IBKR dropped during {what}"
                raise BrokerDisconnected(f"{message}; {hint}" if hint else message) from None
        raise AssertionError("unreachable")

    def _connect_budget(self) -> float:
        # The handshake and the startup synchronization (orders, positions, account) each
        # get the timeout.
        return self.settings.timeout * 3 + _LOOP_GRACE

    def _reconnect_budget(self) -> float:
        policy = self.settings.reconnect
        return sum(policy.delays()) + policy.attempts * self._connect_budget()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    # ================================================================== connection (loop)

    async def _open(self) -> ConnectionInfo:
        if self._ib is None:
            # A fresh client on this loop: ib_async's objects, like asyncio's locks and
            # events, belong to the loop they were made on.
            self._ib = ib_async.IB()
            self._attach_handlers(self._ib)
            self._tracks.clear()
            self._request_locks.clear()
        if not self._ib.isConnected():
            await self._connect_once()
            self._state = "connected"
        return self._connection_info()

    async def _close(self) -> None:
        self._state = "closed"
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self._ib is not None and self._ib.isConnected():
            self._ib.disconnect()
        self._wake_all_orders()
        self._ib = None
        log.info("disconnected from IBKR (%s)", self.settings.describe())

    def _connection_info(self) -> ConnectionInfo:
        ib = self._ib
        return ConnectionInfo(
            host=self.settings.host, port=self.settings.port, client_id=self.settings.client_id,
            server_version=ib.client.serverVersion(), accounts=tuple(ib.managedAccounts()),
            account=self._account,
        )

    async def _connect_once(self) -> None:
        """One connection attempt, with the API handshake and ib_async's startup sync."""
        ib = self._ib
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        refused: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_error(req_id: int, code: int, message: str, contract: Any) -> None:
            if code == 326 and not refused.done():
                refused.set_result(message)

        ib.client.MaxRequests = settings.max_messages_per_second
        self._connecting = True
        ib.errorEvent += on_error
        connecting = asyncio.ensure_future(ib.connectAsync(
            settings.host, settings.port, clientId=settings.client_id, timeout=settings.timeout,
            account=settings.account))
        try:
            done, _ = await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
            if refused in done and not (connecting.done() and connecting.exception() is None):
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
                if ib.isConnected():
                    ib.disconnect()
                raise ClientIdInUseError(
                    f"IBKR at {where} refused client id {settings.client_id}: it is already in use "
                    "by another connection (another command, or a TWS session that has not let go "
                    "yet); use another client id or stop the other program")
            try:
                connecting.result()
            except ConnectionRefusedError:
                raise BrokerConnectionError(
                    f"cannot connect to IBKR at {where}: connection refused (nothing listens "
                    "there). Start TWS or IB Gateway with the API enabled on that port (paper "
                    "7497, live 7496), or the simulator: tp sim-gateway") from None
            except TimeoutError:
                raise BrokerConnectionError(
                    f"IBKR at {where} accepted the connection but did not complete the API "
                    f"handshake within {settings.timeout:g} s (TWS busy or waiting for an API "
                    "permission prompt, or not a TWS API port)") from None
            except (OSError, ConnectionError) as problem:
                raise BrokerConnectionError(f"cannot connect to IBKR at {where}: {problem}") from None
        finally:
            ib.errorEvent -= on_error
            self._connecting = False
            if not refused.done():
                refused.cancel()
        accounts = ib.managedAccounts()
        if settings.account and settings.account not in accounts:
            ib.disconnect()
            raise ConfigurationError(
                f"IBKR_ACCOUNT {mask_account(settings.account)} is not an account of this login "
                f"(it manages {', '.join(mask_account(a) for a in accounts) or 'none'})")
        self._account = settings.account or (accounts[0] if len(accounts) == 1 else "")
        if settings.market_data_type != 1:
            ib.reqMarketDataType(settings.market_data_type)
        self._underlyings.clear()
        log.info("connected to IBKR %s (server version %s)", settings.describe(),
                 ib.client.serverVersion())

    async def _ensure_connected(self) -> None:
        if self._state != "connected":
            raise BrokerDisconnected(f"not connected to IBKR ({self.settings.describe()})")
        if self._ib.isConnected():
            return
        task = self._reconnect_task
        if task is None or task.done():
            task = self._reconnect_task = asyncio.ensure_future(self._reconnect())
        failure = await asyncio.shield(task)
        if failure:
            raise BrokerDisconnected(failure)

    def _on_disconnected(self) -> None:
        if self._state != "connected" or self._connecting:
            return
        log.warning("lost the connection to IBKR (%s); reconnecting", self.settings.describe())
        self._wake_all_orders()
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> str:
        """Bounded reconnect rounds; returns "" on success, else why it gave up."""
        policy = self.settings.reconnect
        last = "no attempt was allowed (reconnect attempts = 0)"
        for attempt, delay in enumerate(policy.delays(), start=1):
            await asyncio.sleep(delay)
            if self._state != "connected":
                return "the connection was closed"
            if self._ib.isConnected():
                return ""
            try:
                await self._connect_once()
            except (BrokerConnectionError, ConfigurationError) as problem:
                last = str(problem)
                log.warning("reconnect attempt %d of %d failed: %s", attempt, policy.attempts, last)
                continue
            log.info("reconnected to IBKR after %d attempt(s)", attempt)
            return ""
        return (f"lost the connection to IBKR ({self.settings.describe()}) and "
                f"{policy.attempts} reconnect attempts over {sum(policy.delays()):g} s failed; "
                f"last error: {last}")

    # ================================================================== events (loop)

    def _attach_handlers(self, ib: ib_async.IB) -> None:
        ib.disconnectedEvent += self._on_disconnected
        ib.orderStatusEvent += self._on_order_status
        ib.openOrderEvent += self._on_open_order
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error

    def _track(self, order_id: int) -> _OrderTrack:
        track = self._tracks.get(order_id)
        if track is None:
            track = self._tracks[order_id] = _OrderTrack()
        return track

    def _notify(self, order_id: int) -> None:
        track = self._tracks.get(order_id)
        if track is not None:
            track.changed.set()

    def _wake_all_orders(self) -> None:
        for track in self._tracks.values():
            track.changed.set()

    def _publish(self, event: OrderEvent) -> None:
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.put(event)

    def _remove_stream(self, stream: _EventStream) -> None:
        with self._streams_lock:
            if stream in self._streams:
                self._streams.remove(stream)

    def _own(self, trade: ib_async.Trade) -> bool:
        return trade.order.clientId == self.settings.client_id

    def _on_order_status(self, trade: ib_async.Trade) -> None:
        # Only this client's orders: TWS reports other clients' orders to the master
        # client id alone, and open_orders() of every client must not echo into the stream.
        if self._own(trade):
            self._notify(trade.order.orderId)
            self._publish(_order_update(trade))

    def _on_open_order(self, trade: ib_async.Trade) -> None:
        if self._own(trade):
            track = self._tracks.get(trade.order.orderId)
            if track is not None:
                track.open_orders_seen += 1
                track.changed.set()

    def _on_commission(self, trade: ib_async.Trade, fill: ib_async.Fill, report: Any) -> None:
        self._publish(_fill_report(fill))

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        track = self._tracks.get(req_id)
        if track is not None and not _informational(code):
            track.errors.append((code, message))
            track.changed.set()

    # ================================================================== requests (loop)

    def _lock(self, key: str) -> asyncio.Lock:
        # ib_async keys some requests by name (one "currentTime", one "positions" ...): a
        # second request of the same kind would orphan the first, so they take turns.
        lock = self._request_locks.get(key)
        if lock is None:
            lock = self._request_locks[key] = asyncio.Lock()
        return lock

    async def _current_time(self) -> datetime:
        async with self._lock("currentTime"):
            moment = await self._ib.reqCurrentTimeAsync()
        return moment.astimezone(timezone.utc)

    async def _qualify(self, specs: Sequence[ContractSpec]) -> list[Contract]:
        requested = [_ib_contract_from_spec(spec) for spec in specs]
        details: dict[int, str] = {}

        def on_error(req_id: int, code: int, message: str, contract: Any) -> None:
            for position, candidate in enumerate(requested):
                if contract is candidate and not _informational(code):
                    details[position] = f"IBKR error {code}: {message}"

        self._ib.errorEvent += on_error
        try:
            results = await self._ib.qualifyContractsAsync(*requested, returnAll=True)
        finally:
            self._ib.errorEvent -= on_error
        contracts: list[Contract] = []
        problems: list[ContractProblem] = []
        for position, (spec, result) in enumerate(zip(specs, results, strict=True)):
            if result is None:
                problems.append(ContractProblem(spec, "unknown", detail=details.get(position, "")))
            elif isinstance(result, list):
                candidates = tuple(_contract(c) for c in result if c is not None)
                problems.append(ContractProblem(spec, "ambiguous", candidates))
            else:
                contracts.append(_contract(result))
        if problems:
            raise ContractError(problems)
        return contracts

    async def _underlying(self, symbol: str) -> ib_async.Contract:
        """The stock, else the index, named ``symbol`` (cached per connection)."""
        known = self._underlyings.get(symbol)
        if known is not None:
            return known
        stock = ib_async.Stock(symbol, "SMART", "USD")
        index = ib_async.Index(symbol, "", "USD")
        results = await self._ib.qualifyContractsAsync(stock, index, returnAll=True)
        for result in results:
            if isinstance(result, ib_async.Contract) and result.conId:
                self._underlyings[symbol] = result
                return result
        raise ContractError([ContractProblem(ContractSpec.stock(symbol), "unknown", subject=symbol,
                                             detail="neither a stock nor an index")])

    async def _chain_parameters(self, symbol: str) -> list[OptionChainParameters]:
        underlying = await self._underlying(symbol)
        rows = await self._ib.reqSecDefOptParamsAsync(symbol, "", underlying.secType, underlying.conId)
        smart = [row for row in rows if row.exchange == "SMART"]
        chosen = smart or list(rows)
        if not chosen:
            raise ContractError([ContractProblem(ContractSpec.stock(symbol), "unknown",
                                                 subject=f"the option chain of {symbol}",
                                                 detail="IBKR lists no options on it")])
        return [
            OptionChainParameters(
                symbol=symbol, underlying_con_id=int(row.underlyingConId), exchange=row.exchange,
                trading_class=row.tradingClass, multiplier=_multiplier(row.multiplier),
                expirations=tuple(sorted(_parse_day(text) for text in row.expirations)),
                strikes=tuple(sorted(float(strike) for strike in row.strikes)),
            )
            for row in sorted(chosen, key=lambda row: (row.exchange, row.tradingClass))
        ]

    async def _strikes_near(self, spec: ContractSpec, price: float, count: int | None,
                            pct: float | None, side: str) -> list[Contract]:
        # One contract-details request with the strike left open lists the options that
        # really exist for this expiry (the chain parameters' strikes are a union over
        # every expiry).
        query = ib_async.Option(spec.symbol, spec.expiry.strftime("%Y%m%d"), 0.0, spec.right,
                                "SMART", tradingClass=spec.trading_class, currency="USD")
        details = await self._ib.reqContractDetailsAsync(query)
        listed = [_contract(detail.contract) for detail in details if detail.contract is not None]
        if not listed:
            raise ContractError([ContractProblem(
                spec, "unknown", subject=f"{spec.symbol} {spec.expiry.isoformat()} {spec.right}",
                detail=f"no {spec.right} options on {spec.symbol} expire that day")])
        classes = sorted({contract.trading_class for contract in listed})
        if len(classes) > 1:
            raise BrokerRequestError(
                f"{spec.symbol} options expiring {spec.expiry.isoformat()} come in several trading "
                f"classes ({', '.join(classes)}); name one")
        if side == "below":
            listed = [c for c in listed if c.strike <= price]
        elif side == "above":
            listed = [c for c in listed if c.strike >= price]
        if count is not None:
            chosen = sorted(listed, key=lambda c: (abs(c.strike - price), c.strike))[:count]
        else:
            chosen = [c for c in listed if abs(c.strike - price) <= price * pct / 100.0]
        return sorted(chosen, key=lambda c: c.strike)

    async def _price_increments(self, contracts: list[Contract]) -> list[PriceIncrements]:
        problems: dict[int, str] = {}
        unknown = list({c.con_id: c for c in contracts if c.con_id not in self._rule_ids}.values())
        for contract, problem in zip(unknown, await asyncio.gather(*(self._learn_rule_id(c) for c in unknown))):
            if problem:
                problems[contract.con_id] = problem
        wanted = sorted({self._rule_ids[c.con_id] for c in contracts if c.con_id in self._rule_ids}
                        - set(self._market_rules))
        rule_problems = dict(zip(wanted, await asyncio.gather(*(self._learn_rule(rule_id) for rule_id in wanted))))
        grids = []
        for contract in contracts:
            rule_id = self._rule_ids.get(contract.con_id)
            grid = self._market_rules.get(rule_id) if rule_id is not None else None
            if grid is None:
                why = problems.get(contract.con_id) or rule_problems.get(rule_id) or "no market rule"
                log.warning("no price grid for %s (%s): pricing on the fallback grid", contract.describe(), why)
                grid = fallback_increments(f"{contract.describe()}: {why}")
            grids.append(grid)
        return grids

    async def _learn_rule_id(self, contract: Contract) -> str:
        """Remember the market rule id of ``contract``; the problem in words when TWS gives none."""
        try:
            details = await asyncio.wait_for(self._ib.reqContractDetailsAsync(_ib_contract(contract)),
                                             self.settings.timeout)
        except TimeoutError:
            return "the contract details did not come in time"
        except ib_async.RequestError as problem:
            return f"IBKR error {problem.code}: {problem.message}"
        matching = [d for d in details if d.contract is not None and d.contract.conId == contract.con_id] or details
        if not matching:
            return "IBKR sent no contract details"
        detail = matching[0]
        rule_id = choose_market_rule_id(detail.marketRuleIds, detail.validExchanges,
                                        detail.contract.primaryExchange if detail.contract else "")
        if rule_id is None:
            return f"no usable market rule id in {detail.marketRuleIds!r}"
        self._rule_ids[contract.con_id] = rule_id
        return ""

    async def _learn_rule(self, rule_id: int) -> str:
        """Remember market rule ``rule_id``; the problem in words when TWS does not answer it."""
        # ib_async keys the request by its id: two at once would orphan one.
        async with self._lock(f"marketRule-{rule_id}"):
            if rule_id in self._market_rules:
                return ""
            try:
                increments = await asyncio.wait_for(self._ib.reqMarketRuleAsync(rule_id), self.settings.timeout)
            except TimeoutError:
                increments = None
            if not increments:
                return f"market rule {rule_id} was not answered"
            try:
                grid = PriceIncrements(tuple((float(p.lowEdge), float(p.increment)) for p in increments),
                                       f"market rule {rule_id}")
            except ValueError as problem:
                return f"market rule {rule_id} is unusable: {problem}"
            self._market_rules[rule_id] = grid
            return ""

    async def _quotes(self, contracts: list[Contract]) -> list[Quote]:
        now = await self._current_time()
        unique = list({contract.con_id: contract for contract in contracts}.values())
        ticks: dict[int, _Ticks] = {}
        for start in range(0, len(unique), MAX_MARKET_DATA_LINES):
            ticks.update(await self._snapshot(unique[start:start + MAX_MARKET_DATA_LINES],
                                              want_greeks=True))
        problems: dict[int, str] = {}
        lacking = [c for c in unique if c.is_option and ticks[c.con_id].greeks is None]
        if lacking:
            problems = await self._fill_in_greeks(lacking, ticks, now)
        quotes = []
        for contract in contracts:
            values = ticks[contract.con_id]
            quotes.append(Quote(
                contract=contract, time=now, bid=values.bid, ask=values.ask, last=values.last,
                close=values.close, bid_size=values.bid_size, ask_size=values.ask_size,
                volume=values.volume, open_interest=values.open_interest, greeks=values.greeks,
                greeks_problem=problems.get(contract.con_id, ""),
            ))
        return quotes

    async def _snapshot(self, contracts: list[Contract], *, want_greeks: bool) -> dict[int, _Ticks]:
        """Stream market data for the contracts until complete (or the deadlines), then cancel."""
        ib = self._ib
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        errors: dict[int, tuple[int, str]] = {}
        streams: list[tuple[Contract, ib_async.Contract, ib_async.Ticker]] = []
        by_req_contract: dict[int, Contract] = {}

        def on_update(_tickers: Any) -> None:
            changed.set()

        def on_error(req_id: int, code: int, message: str, _contract: Any) -> None:
            ticker = ib.wrapper.reqId2Ticker.get(req_id)
            owner = by_req_contract.get(id(ticker)) if ticker is not None else None
            if owner is not None and not _informational(code):
                errors[owner.con_id] = (code, message)
                changed.set()

        ib.pendingTickersEvent += on_update
        ib.errorEvent += on_error
        try:
            for contract in contracts:
                requested = _ib_contract(contract)
                # ib_async keeps a Ticker per contract after a stream is cancelled; dropping
                # it makes this request start empty instead of showing the last request's
                # values (stale greeks would look current).
                ib.wrapper.tickers.pop(hash(requested), None)
                generic = OPTION_GENERIC_TICKS if contract.is_option else ""
                ticker = ib.reqMktData(requested, generic, False, False)
                by_req_contract[id(ticker)] = contract
                streams.append((contract, requested, ticker))
            started = loop.time()
            greeks_deadline = started + self.greeks_timeout
            data_deadline = started + self.settings.timeout
            while True:
                waiting = [(c, t) for c, _, t in streams
                           if c.con_id not in errors and not _complete(c, t, want_greeks)]
                if not waiting:
                    await _settle(changed)
                    break
                now = loop.time()
                if now >= greeks_deadline:
                    silent = [c for c, t in waiting if not _has_price(t)]
                    if not silent:
                        break
                    if now >= data_deadline:
                        names = ", ".join(c.describe() for c in silent[:5])
                        raise BrokerTimeout(
                            f"no market data for {names}{' ...' if len(silent) > 5 else ''} within "
                            f"{self.settings.timeout:g} s; without a market data subscription set "
                            "IBKR_MARKET_DATA_TYPE=3 (delayed)")
                    deadline = data_deadline
                else:
                    deadline = greeks_deadline
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), deadline - now)
                except TimeoutError:
                    pass
            refused = [(c, errors[c.con_id]) for c, _, t in streams
                       if c.con_id in errors and not _has_price(t)]
            if refused:
                raise BrokerRequestError("; ".join(
                    f"no market data for {c.describe()}: IBKR error {code}: {message}"
                    for c, (code, message) in refused), code=refused[0][1][0])
            return {contract.con_id: _read_ticks(contract, ticker) for contract, _, ticker in streams}
        finally:
            ib.pendingTickersEvent -= on_update
            ib.errorEvent -= on_error
            if ib.isConnected():
                for _, requested, _ in streams:
                    ib.cancelMktData(requested)

    async def _fill_in_greeks(self, options: list[Contract], ticks: dict[int, _Ticks],
                              now: datetime) -> dict[int, str]:
        """Compute greeks from the mid for options without model greeks; returns the
        reason for each option that still has none."""
        spots: dict[str, float | None] = {}
        for symbol in sorted({option.symbol for option in options}):
            try:
                underlying = _contract(await self._underlying(symbol))
                [(_, values)] = (await self._snapshot([underlying], want_greeks=False)).items()
                spots[symbol] = _spot(values)
            except (ContractError, BrokerRequestError, BrokerTimeout) as problem:
                log.warning("no price for %s to compute option greeks from: %s", symbol, problem)
                spots[symbol] = None
        computed = greeks_from_mid(
            rights=[o.right for o in options],
            spots=[spots[o.symbol] for o in options],
            strikes=[o.strike for o in options],
            years=[years_to_expiry(o.expiry, now) for o in options],
            bids=[ticks[o.con_id].bid for o in options],
            asks=[ticks[o.con_id].ask for o in options],
            rate=self.risk_free_rate,
        )
        problems = {}
        for option, (greeks, problem) in zip(options, computed, strict=True):
            ticks[option.con_id].greeks = greeks
            if greeks is None:
                problems[option.con_id] = f"no model greeks from IBKR within {self.greeks_timeout:g} s, " + problem
        return problems

    async def _daily_bars(self, contract: Contract, days: int, end: date | None) -> list[DailyBar]:
        requested = _ib_contract(contract)
        if end is None:
            end_text = ""
        else:
            # The end of that New York day, in TWS's UTC notation (no local-zone guessing).
            closing = datetime.combine(end, wall_time(23, 59, 59), tzinfo=calendar.NEW_YORK)
            end_text = closing.astimezone(timezone.utc).strftime("%Y%m%d-%H:%M:%S")
        duration = f"{days} D" if days <= 365 else f"{math.ceil(days / 250)} Y"
        show = "MIDPOINT" if contract.is_option else "TRADES"
        problems: list[str] = []

        def on_error(req_id: int, code: int, message: str, about: Any) -> None:
            if about is requested and not _informational(code):
                problems.append(f"IBKR error {code}: {message}")

        self._ib.errorEvent += on_error
        try:
            # timeout=0: ib_async's own timeout would return an empty list; ours raises.
            bars = await self._ib.reqHistoricalDataAsync(
                requested, end_text, duration, "1 day", show, True, formatDate=1, timeout=0)
        finally:
            self._ib.errorEvent -= on_error
        if not bars and problems:
            raise BrokerRequestError(f"IBKR refused daily bars of {contract.describe()}: {problems[0]}")
        result = [
            DailyBar(day=bar.date if not isinstance(bar.date, datetime) else bar.date.date(),
                     open=float(bar.open), high=float(bar.high), low=float(bar.low),
                     close=float(bar.close), volume=float(bar.volume))
            for bar in bars
        ]
        return result[-days:]

    # ------------------------------------------------------------------ orders (loop)

    async def _place(self, contract: Contract, request: OrderRequest) -> OrderHandle:
        order = _ib_order(request, self._account)
        trade = self._ib.placeOrder(_ib_contract(contract), order)
        track = self._track(trade.order.orderId)
        return await self._acknowledged(trade, track, contract)

    async def _place_bracket(self, contract: Contract, bracket: BracketRequest) -> BracketHandle:
        requested = _ib_contract(contract)
        orders = self._ib.bracketOrder(
            bracket.action, bracket.quantity, bracket.entry_limit, bracket.take_profit_limit,
            bracket.stop_loss_price, tif=bracket.tif, orderRef=bracket.order_ref,
            account=bracket.account or self._account)
        trades = []
        for order in orders:
            # Register before sending: the last (transmitting) order releases all three.
            self._track(order.orderId)
            trades.append(self._ib.placeOrder(requested, order))
        handles = [await self._acknowledged(trade, self._track(trade.order.orderId), contract)
                   for trade in trades]
        return BracketHandle(*handles)

    async def _acknowledged(self, trade: ib_async.Trade, track: _OrderTrack,
                            contract: Contract) -> OrderHandle:
        order_id = trade.order.orderId

        def settled() -> OrderHandle | None:
            status = trade.orderStatus.status
            if status in REJECTED:
                code, message = _last_error(trade, track)
                raise OrderRejected(
                    f"IBKR rejected order {order_id} on {contract.describe()}: "
                    f"{message or status}", order_id=order_id, code=code)
            perm_id = trade.orderStatus.permId or trade.order.permId
            if status in ACKNOWLEDGED and perm_id:
                return _handle(trade, contract)
            return None

        return await self._until(order_id, track, settled, f"order {order_id}")

    async def _until(self, order_id: int, track: _OrderTrack, check: Callable[[], T | None],
                     what: str) -> T:
        """Re-check ``check`` after every event about the order until it gives a result."""
        while True:
            result = check()
            if result is not None:
                return result
            if not self._ib.isConnected():
                raise BrokerDisconnected(
                    f"the connection to IBKR dropped while waiting for {what}; {_MAY_HAVE_REACHED}")
            track.changed.clear()
            await track.changed.wait()

    async def _trade(self, order_id: int) -> ib_async.Trade:
        """This client's trade for an order id (asking TWS for open orders if unknown)."""
        key = (self.settings.client_id, order_id)
        trade = self._ib.wrapper.trades.get(key)
        if trade is None:
            async with self._lock("openOrders"):
                await self._ib.reqOpenOrdersAsync()
            trade = self._ib.wrapper.trades.get(key)
        if trade is None:
            raise OrderRejected(f"order {order_id} of client id {self.settings.client_id} is not "
                                "known to IBKR as an open order (filled, cancelled or never placed)",
                                order_id=order_id)
        return trade

    async def _modify(self, handle: OrderHandle, limit_price: float) -> OrderHandle:
        order_id = handle.order_id
        trade = await self._trade(order_id)
        if trade.orderStatus.status in DONE_STATUSES:
            raise OrderRejected(f"order {order_id} cannot be modified: it is already "
                                f"{trade.orderStatus.status}", order_id=order_id)
        if trade.order.orderType == "MKT":
            raise OrderRejected(f"order {order_id} is a market order; it has no limit to change",
                                order_id=order_id)
        track = self._track(order_id)
        seen, errors_before = track.open_orders_seen, len(track.errors)
        changed = copy.copy(trade.order)
        changed.lmtPrice = limit_price
        self._ib.placeOrder(trade.contract, changed)
        contract = handle.contract

        def settled() -> OrderHandle | None:
            if len(track.errors) > errors_before:
                code, message = track.errors[-1]
                raise OrderRejected(f"IBKR refused to modify order {order_id}: {message}",
                                    order_id=order_id, code=code)
            if track.open_orders_seen > seen and _same_price(trade.order.lmtPrice, limit_price):
                return _handle(trade, contract)
            if trade.orderStatus.status in DONE_STATUSES:
                raise OrderRejected(f"order {order_id} was {trade.orderStatus.status} before "
                                    "the modification took effect", order_id=order_id)
            return None

        return await self._until(order_id, track, settled, f"the modification of order {order_id}")

    async def _cancel(self, order_id: int) -> OrderUpdate:
        trade = await self._trade(order_id)
        if trade.orderStatus.status in DONE_STATUSES:
            return _order_update(trade)
        track = self._track(order_id)
        errors_before = len(track.errors)
        self._ib.cancelOrder(trade.order)

        def settled() -> OrderUpdate | None:
            if trade.orderStatus.status in DONE_STATUSES:
                return _order_update(trade)
            if len(track.errors) > errors_before:
                code, message = track.errors[-1]
                if code != 202:          # 202 is the cancel's own confirmation
                    raise OrderRejected(f"IBKR refused to cancel order {order_id}: {message}",
                                        order_id=order_id, code=code)
            return None

        return await self._until(order_id, track, settled, f"the cancel of order {order_id}")

    async def _wait_status(self, order_id: int, statuses: frozenset[str]) -> OrderUpdate:
        trade = await self._trade(order_id)
        track = self._track(order_id)

        def settled() -> OrderUpdate | None:
            status = trade.orderStatus.status
            if status in statuses or status in DONE_STATUSES:
                return _order_update(trade)
            return None

        return await self._until(order_id, track, settled, f"order {order_id}")

    async def _open_orders(self) -> list[OrderUpdate]:
        async with self._lock("openOrders"):
            trades = await self._ib.reqAllOpenOrdersAsync()
        unique = {(t.order.clientId, t.order.orderId, t.order.permId): t for t in trades}
        return [_order_update(trade) for trade in unique.values()]

    async def _executions(self, since: datetime | None) -> list[FillReport]:
        wanted = ib_async.ExecutionFilter()
        if since is not None:
            wanted.time = since.astimezone(timezone.utc).strftime("%Y%m%d-%H:%M:%S")
        if self.settings.account:
            wanted.acctCode = self.settings.account
        fills = await self._ib.reqExecutionsAsync(wanted)
        known = self._ib.wrapper.fills
        reports = []
        for fill in fills:
            # An execution seen live earlier keeps its commission on the first Fill object
            # ib_async made for it; the answer to reqExecutions holds a fresh, empty one.
            reports.append(_fill_report(known.get(fill.execution.execId, fill)))
        return sorted(reports, key=lambda report: (report.time, report.exec_id))

    async def _positions(self) -> list[Position]:
        async with self._lock("positions"):
            rows = await self._ib.reqPositionsAsync()
        account = self.settings.account
        return [
            Position(account=row.account, contract=_contract(row.contract),
                     quantity=float(row.position), avg_cost=float(row.avgCost))
            for row in rows if not account or row.account == account
        ]

    async def _account_summary(self) -> AccountSummary:
        async with self._lock("accountSummary"):
            values = await self._ib.accountSummaryAsync()
        accounts = sorted({value.account for value in values if value.account != "All"})
        account = self._account or (accounts[0] if len(accounts) == 1 else "")
        if not account:
            raise ConfigurationError(
                f"this login manages {len(accounts)} accounts; set IBKR_ACCOUNT to pick one")
        tags = {value.tag: value.value for value in values
                if value.account == account and value.currency in ("USD", "BASE", "")}
        figures = {field: _number(tags.get(tag)) for tag, field in ACCOUNT_TAGS.items()}
        return AccountSummary(account=account, values=tags, **figures)

    async def _what_if(self, contract: Contract, request: OrderRequest) -> MarginImpact:
        requested = _ib_contract(contract)
        problems: list[tuple[int, str]] = []

        def on_error(req_id: int, code: int, message: str, about: Any) -> None:
            if about is requested and not _informational(code):
                problems.append((code, message))

        self._ib.errorEvent += on_error
        try:
            state = await self._ib.whatIfOrderAsync(requested, _ib_order(request, self._account))
        finally:
            self._ib.errorEvent -= on_error
        if not isinstance(state, ib_async.OrderState):
            code, message = problems[0] if problems else (None, "no margin figures returned")
            raise OrderRejected(f"IBKR rejected the what-if order on {contract.describe()}: {message}",
                                order_id=0, code=code)
        return MarginImpact(
            init_margin_before=_number(state.initMarginBefore),
            init_margin_change=_number(state.initMarginChange),
            init_margin_after=_number(state.initMarginAfter),
            maint_margin_before=_number(state.maintMarginBefore),
            maint_margin_change=_number(state.maintMarginChange),
            maint_margin_after=_number(state.maintMarginAfter),
            equity_with_loan_before=_number(state.equityWithLoanBefore),
            equity_with_loan_change=_number(state.equityWithLoanChange),
            equity_with_loan_after=_number(state.equityWithLoanAfter),
            commission=_number(state.commission),
            warning=state.warningText or "",
        )


_MAY_HAVE_REACHED = ("it may still have reached IBKR: check open orders and executions "
                     "(the adapter never re-sends an order)")


# ============================================================================ greeks fallback


def greeks_from_mid(*, rights: Sequence[str], spots: Sequence[float | None],
                    strikes: Sequence[float], years: Sequence[float],
                    bids: Sequence[float | None], asks: Sequence[float | None],
                    rate: float, dividend_yield: float = 0.0) -> list[tuple[OptionGreeks | None, str]]:
    """Implied volatility and greeks from each option's bid/ask mid (vectorized).

    Returns, per option, the greeks in TWS's units (vega per volatility point, theta per
    calendar day, ``source="computed"``) or None with the reason."""
    count = len(rights)
    reasons = [""] * count
    mids = np.full(count, np.nan)
    spot_array = np.full(count, np.nan)
    for n in range(count):
        bid, ask, spot = bids[n], asks[n], spots[n]
        if bid is None or ask is None or not bid > 0 or not ask >= bid:
            reasons[n] = "and there is no two-sided market (bid and ask) to compute them from"
        elif spot is None or not spot > 0:
            reasons[n] = "and the underlying has no price to compute them from"
        elif not years[n] > 0:
            reasons[n] = "and the option has expired"
        else:
            mids[n] = (bid + ask) / 2.0
            spot_array[n] = spot
    implied, greeks = implied_volatility_and_greeks(
        price=mids, option_type=np.array([right == "C" for right in rights], dtype=bool),
        spot=spot_array, strike=np.asarray(strikes, dtype=float),
        time_to_expiry=np.maximum(np.asarray(years, dtype=float), 1e-9), rate=rate,
        dividend_yield=dividend_yield, threads=1)
    results: list[tuple[OptionGreeks | None, str]] = []
    why = implied.reason_text()
    for n in range(count):
        if reasons[n]:
            results.append((None, reasons[n]))
        elif not implied.ok[n]:
            results.append((None, f"and no volatility fits the mid {mids[n]:g}: {why[n]}"))
        else:
            results.append((OptionGreeks(
                implied_vol=float(implied.volatility[n]), delta=float(greeks.delta[n]),
                gamma=float(greeks.gamma[n]), vega=float(greeks.vega_per_vol_point[n]),
                theta=float(greeks.theta_per_day[n]), underlying_price=float(spot_array[n]),
                model_price=float(greeks.price[n]), source="computed"), ""))
    return results


# ============================================================================ conversions


def choose_market_rule_id(market_rule_ids: str, valid_exchanges: str, primary_exchange: str) -> int | None:
    """The market rule of a contract's orders, from its contract details (see
    ``BrokerPort.price_increments``): ``marketRuleIds`` lists one id per ``validExchanges``
    entry; the primary exchange's when it is listed, else the first listed exchange's.
    None when no id is usable."""
    ids = [text.strip() for text in (market_rule_ids or "").split(",")]
    exchanges = [text.strip() for text in (valid_exchanges or "").split(",")]
    chosen = ids[0] if ids else ""
    if primary_exchange and primary_exchange in exchanges and len(ids) == len(exchanges):
        chosen = ids[exchanges.index(primary_exchange)]
    return int(chosen) if chosen.isdigit() else None


def _require_qualified(contract: Contract) -> None:
    if not contract.con_id:
        raise ValueError(f"{contract.describe()} has no conId: qualify it first")


def _order_id(order: OrderHandle | int) -> int:
    return order.order_id if isinstance(order, OrderHandle) else int(order)


def _number(value: Any) -> float | None:
    """A finite float from TWS's text or number; None for empty, unset or not a number."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or abs(number) >= _UNSET_DOUBLE:
        return None
    return number


def _price(value: Any) -> float | None:
    number = _number(value)
    return None if number is None or number == -1 else number


def _same_price(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def _parse_day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _multiplier(text: Any) -> int:
    number = _number(text)
    return int(number) if number else 1


def _contract(c: ib_async.Contract) -> Contract:
    sec_type = _SEC_TYPES.get(c.secType, SecType.OTHER)
    expiry_text = c.lastTradeDateOrContractMonth or ""
    expiry = _parse_day(expiry_text) if len(expiry_text) >= 8 and expiry_text[:8].isdigit() else None
    right = (c.right or "")[:1].upper()
    return Contract(
        con_id=int(c.conId), symbol=c.symbol, sec_type=sec_type, exchange=c.exchange or "",
        currency=c.currency or "", primary_exchange=c.primaryExchange or "",
        local_symbol=c.localSymbol or "", trading_class=c.tradingClass or "",
        expiry=expiry, strike=float(c.strike) if c.strike and sec_type is SecType.OPTION else None,
        right=right if right in ("P", "C") else None, multiplier=_multiplier(c.multiplier),
    )


def _ib_contract(c: Contract) -> ib_async.Contract:
    exchange = c.exchange or ("SMART" if c.sec_type is not SecType.INDEX else c.primary_exchange)
    return ib_async.Contract(
        secType=c.sec_type.value, conId=c.con_id, symbol=c.symbol,
        lastTradeDateOrContractMonth=c.expiry.strftime("%Y%m%d") if c.expiry else "",
        strike=c.strike or 0.0, right=c.right or "",
        multiplier=str(c.multiplier) if c.is_option else "", exchange=exchange,
        primaryExchange=c.primary_exchange, currency=c.currency, localSymbol=c.local_symbol,
        tradingClass=c.trading_class,
    )


def _ib_contract_from_spec(spec: ContractSpec) -> ib_async.Contract:
    exchange = spec.exchange if spec.sec_type is not SecType.INDEX or spec.exchange != "SMART" else ""
    return ib_async.Contract(
        secType=spec.sec_type.value, symbol=spec.symbol,
        lastTradeDateOrContractMonth=spec.expiry.strftime("%Y%m%d") if spec.expiry else "",
        strike=spec.strike or 0.0, right=spec.right or "", exchange=exchange,
        primaryExchange=spec.primary_exchange, currency=spec.currency,
        tradingClass=spec.trading_class,
    )


def _ib_order(request: OrderRequest, default_account: str) -> ib_async.Order:
    order = ib_async.Order(
        action=request.action, totalQuantity=request.quantity, tif=request.tif,
        orderRef=request.order_ref, account=request.account or default_account,
        outsideRth=request.outside_rth,
    )
    kind = request.order_type
    if kind is OrderType.LIMIT:
        order.orderType, order.lmtPrice = "LMT", request.limit_price
    elif kind is OrderType.MARKET:
        order.orderType = "MKT"
    elif kind is OrderType.ADAPTIVE:
        order.orderType = "LMT" if request.limit_price is not None else "MKT"
        if request.limit_price is not None:
            order.lmtPrice = request.limit_price
        order.algoStrategy = "Adaptive"
        order.algoParams = [ib_async.TagValue("adaptivePriority", request.adaptive_priority)]
    elif kind is OrderType.MIDPRICE:
        order.orderType = "MIDPRICE"
        if request.limit_price is not None:
            order.lmtPrice = request.limit_price
    return order


def _limit_of(order: ib_async.Order) -> float | None:
    return _price(order.lmtPrice) if order.orderType not in ("MKT", "STP") else None


def _handle(trade: ib_async.Trade, contract: Contract) -> OrderHandle:
    order = trade.order
    return OrderHandle(
        order_id=order.orderId, perm_id=trade.orderStatus.permId or order.permId,
        client_id=order.clientId, order_ref=order.orderRef, contract=contract,
        action=order.action, quantity=float(order.totalQuantity), order_type=order.orderType,
        limit_price=_limit_of(order), status=trade.orderStatus.status,
        algo=order.algoStrategy or "",
    )


def _last_error(trade: ib_async.Trade, track: _OrderTrack | None = None) -> tuple[int | None, str]:
    """The broker's latest refusal of an order: from our error record, else the trade log."""
    if track is not None and track.errors:
        return track.errors[-1]
    for entry in reversed(trade.log):
        if entry.errorCode:
            return entry.errorCode, _strip_error_prefix(entry.message)
    return None, ""


def _strip_error_prefix(message: str) -> str:
    # ib_async logs "Error 201, reqId 7: Order rejected - reason: ..."; keep TWS's words.
    head, separator, tail = message.partition(": ")
    return tail if separator and head.startswith(("Error ", "Warning ")) else message


def _order_update(trade: ib_async.Trade) -> OrderUpdate:
    order, status = trade.order, trade.orderStatus
    code, message = _last_error(trade)
    if status.status not in REJECTED:
        code, message = None, ""
    return OrderUpdate(
        order_id=order.orderId, perm_id=status.permId or order.permId, client_id=order.clientId,
        order_ref=order.orderRef, contract=_contract(trade.contract), action=order.action,
        quantity=float(order.totalQuantity), order_type=order.orderType,
        limit_price=_limit_of(order), status=status.status, filled=float(status.filled),
        remaining=float(status.remaining), avg_fill_price=float(status.avgFillPrice),
        last_fill_price=float(status.lastFillPrice), parent_id=order.parentId,
        message=message, error_code=code, algo=order.algoStrategy or "",
    )


def _fill_report(fill: ib_async.Fill) -> FillReport:
    execution, report = fill.execution, fill.commissionReport
    has_commission = bool(report.execId)
    return FillReport(
        exec_id=execution.execId, time=execution.time.astimezone(timezone.utc),
        account=execution.acctNumber, contract=_contract(fill.contract),
        order_id=execution.orderId, perm_id=execution.permId, client_id=execution.clientId,
        order_ref=execution.orderRef, side=execution.side, quantity=float(execution.shares),
        price=float(execution.price), cum_quantity=float(execution.cumQty),
        avg_price=float(execution.avgPrice),
        commission=_number(report.commission) if has_commission else None,
        commission_currency=report.currency if has_commission else "",
        realized_pnl=_number(report.realizedPNL) if has_commission else None,
    )


def _has_price(ticker: ib_async.Ticker) -> bool:
    return any(_price(v) is not None for v in (ticker.bid, ticker.ask, ticker.last, ticker.close))


def _model_greeks(ticker: ib_async.Ticker) -> OptionGreeks | None:
    model = ticker.modelGreeks
    if model is None:
        return None
    values = [_number(v) for v in (model.impliedVol, model.delta, model.gamma, model.vega,
                                   model.theta, model.undPrice)]
    if any(v is None for v in values):
        return None
    implied_vol, delta, gamma, vega, theta, underlying = values
    return OptionGreeks(implied_vol=implied_vol, delta=delta, gamma=gamma, vega=vega,
                        theta=theta, underlying_price=underlying,
                        model_price=_number(model.optPrice), source="model")


def _open_interest(contract: Contract, ticker: ib_async.Ticker) -> float | None:
    value = ticker.callOpenInterest if contract.right == "C" else ticker.putOpenInterest
    return _number(value)


def _received(value: Any) -> bool:
    """A tick arrived for this field (TWS's -1 "no bid / no ask" counts as an answer)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _complete(contract: Contract, ticker: ib_async.Ticker, want_greeks: bool) -> bool:
    if contract.sec_type is SecType.INDEX:
        priced = _price(ticker.last) is not None or _price(ticker.close) is not None
    else:
        priced = _received(ticker.bid) and _received(ticker.ask)
    if not priced:
        return False
    if contract.is_option and want_greeks:
        return _model_greeks(ticker) is not None and _open_interest(contract, ticker) is not None
    return True


def _read_ticks(contract: Contract, ticker: ib_async.Ticker) -> _Ticks:
    return _Ticks(
        bid=_price(ticker.bid), ask=_price(ticker.ask), last=_price(ticker.last),
        close=_price(ticker.close), bid_size=_number(ticker.bidSize),
        ask_size=_number(ticker.askSize), volume=_number(ticker.volume),
        open_interest=_open_interest(contract, ticker) if contract.is_option else None,
        greeks=_model_greeks(ticker) if contract.is_option else None,
    )


def _spot(ticks: _Ticks) -> float | None:
    if ticks.bid is not None and ticks.ask is not None and ticks.bid > 0 and ticks.ask >= ticks.bid:
        return (ticks.bid + ticks.ask) / 2.0
    return ticks.last if ticks.last is not None else ticks.close


__all__ = ["IbkrBroker", "greeks_from_mid"]
