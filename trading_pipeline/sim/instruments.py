"""The simulated market's contracts and the matching behind contract qualification.

:class:`InstrumentCatalog` lists, for a given day, the underlyings (STK for stocks and ETFs,
IND for indices) and their option chains (chains.py), and finds the contracts a client's
query (reqContractDetails / qualifyContracts) describes, the way docs/tws-protocol.md
section 6.2 says TWS does:

- a non-zero conId wins: the contract with that conId or nothing (options are decoded from
  their conId, so options listed on earlier days, expired ones included, are found);
- otherwise every non-empty field must match: symbol, secType, currency, localSymbol,
  tradingClass and, for options, the expiry prefix (YYYYMM or YYYYMMDD), the strike (as a
  float), the right (C/CALL/P/PUT) and the multiplier. Options are searched among those
  listed on ``today``.
- ``exchange`` and ``primaryExchange`` are not matched: TWS accepts SMART or a direct
  exchange for any listing, and clients spell primary exchanges differently (ISLAND vs
  NASDAQ); contract details report the catalog's own values.

The result is a list: empty (unknown: error 200), one (qualified) or several (ambiguous,
e.g. SPX on a third Friday without a trading class).

The strikes listed on a day center on a reference price: the underlying's default price
unless a price source is attached (:meth:`InstrumentCatalog.attach_reference_prices`; the
Market attaches the previous session's close, so chains follow the simulated prices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

from trading_pipeline.sim import chains
from trading_pipeline.sim.chains import OptionClass
from trading_pipeline.sim.types import ContractQuery, Instrument, OptionParameters, SecType
from trading_pipeline.sim.universe import Underlying, Universe, normalize_symbol

ReferencePrice = Callable[[str, date], float]

OPTION_PARAMETER_EXCHANGES = ("SMART", "CBOE")

_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}
_STRIKE_TOLERANCE = 1e-6
_MAX_CACHED_INSTRUMENTS = 200_000


class InstrumentCatalog:
    """Every contract of a universe, listed per day; see the module docstring."""

    def __init__(self, universe: Universe):
        self.universe = universe
        symbols = universe.symbols()
        if len(symbols) > chains.MAX_UNDERLYING_ORDINAL:
            raise ValueError(
                f"a universe of more than {chains.MAX_UNDERLYING_ORDINAL} underlyings cannot encode option conIds"
            )
        # 1-based position in the sorted symbols: the underlying's part of its options' conIds.
        self._ordinal = {symbol: index + 1 for index, symbol in enumerate(symbols)}
        self._by_ordinal = {index + 1: symbol for index, symbol in enumerate(symbols)}
        self._classes = {symbol: chains.option_classes(universe.get(symbol)) for symbol in symbols}
        self._root_to_symbol = {
            klass.name: symbol for symbol, classes in self._classes.items() for klass in classes
        }
        self._underlyings = {symbol: _underlying_instrument(universe.get(symbol)) for symbol in symbols}
        self._underlying_by_con_id = {inst.con_id: inst for inst in self._underlyings.values()}
        self._reference_price: ReferencePrice = self._default_reference_price
        self._options_cache: dict[tuple, list[Instrument]] = {}
        self._by_con_id_cache: dict[int, Instrument] = {}

    # ----- reference prices -----

    def attach_reference_prices(self, source: ReferencePrice) -> None:
        """Center each day's strikes on ``source(symbol, day)`` (e.g. the previous close)."""
        self._reference_price = source
        self._options_cache.clear()

    def reference_price(self, symbol: str, today: date) -> float:
        return float(self._reference_price(symbol, today))

    def _default_reference_price(self, symbol: str, today: date) -> float:
        return self.universe.get(symbol).price

    # ----- lookups -----

    def underlying(self, symbol: str) -> Instrument | None:
        """The STK/IND instrument of ``symbol``."""
        return self._underlyings.get(normalize_symbol(symbol))

    def by_con_id(self, con_id: int) -> Instrument | None:
        """The contract with ``con_id``: an underlying, or an option of any day (decoded)."""
        found = self._underlying_by_con_id.get(con_id)
        if found is not None:
            return found
        cached = self._by_con_id_cache.get(con_id)
        if cached is not None:
            return cached
        option = self._decode_option(con_id)
        if option is not None:
            self._remember(option)
        return option

    def _decode_option(self, con_id: int) -> Instrument | None:
        key = chains.decode_option_con_id(con_id)
        if key is None:
            return None
        symbol = self._by_ordinal.get(key.ordinal)
        if symbol is None:
            return None
        classes = self._classes[symbol]
        if key.class_index >= len(classes):
            return None
        klass = classes[key.class_index]
        if not chains.is_expiration_of(klass, key.expiry) or not chains.is_listed_strike(symbol, key.strike_tenths):
            return None
        return chains.make_option(
            self.universe.get(symbol), key.ordinal, key.class_index, klass, key.expiry, key.right, key.strike_tenths
        )

    def _remember(self, instrument: Instrument) -> None:
        if len(self._by_con_id_cache) >= _MAX_CACHED_INSTRUMENTS:
            self._by_con_id_cache.clear()
        self._by_con_id_cache[instrument.con_id] = instrument

    # ----- chains -----

    def option_parameters(self, symbol: str, today: date) -> list[OptionParameters]:
        """reqSecDefOptParams rows: one per (exchange, trading class); [] for unknown symbols."""
        underlying = self.universe.get(symbol)
        if underlying is None:
            return []
        strikes = tuple(tenths / 10 for tenths in self._strikes(underlying.symbol, today))
        rows = []
        for exchange in OPTION_PARAMETER_EXCHANGES:
            for klass in self._classes[underlying.symbol]:
                expirations = chains.listed_expirations(klass, today)
                if not expirations:
                    continue
                rows.append(
                    OptionParameters(
                        exchange=exchange,
                        underlying_con_id=underlying.con_id,
                        trading_class=klass.name,
                        multiplier=chains.MULTIPLIER,
                        expirations=tuple(day.strftime("%Y%m%d") for day in expirations),
                        strikes=strikes,
                    )
                )
        return rows

    def expirations(self, symbol: str, today: date, trading_class: str | None = None) -> list[date]:
        """Every expiry listed on ``today`` (of one trading class, or of all), ascending."""
        underlying = self.universe.get(symbol)
        if underlying is None:
            return []
        days: set[date] = set()
        for klass in self._classes[underlying.symbol]:
            if trading_class is None or klass.name == trading_class:
                days.update(chains.listed_expirations(klass, today))
        return sorted(days)

    def options(self, symbol: str, expiry: date, today: date, trading_class: str | None = None) -> list[Instrument]:
        """The options of one expiry listed on ``today``, by trading class, strike, then C before P."""
        underlying = self.universe.get(symbol)
        if underlying is None:
            return []
        key = (underlying.symbol, expiry, today, trading_class)
        cached = self._options_cache.get(key)
        if cached is None:
            cached = list(self._iter_options(underlying, today, trading_class=trading_class, expiries=(expiry,)))
            if len(self._options_cache) > 512:
                self._options_cache.clear()
            self._options_cache[key] = cached
        return list(cached)

    def _strikes(self, symbol: str, today: date) -> tuple[int, ...]:
        return chains.strike_ladder_tenths(symbol, round(self.reference_price(symbol, today), 2))

    def _iter_options(
        self,
        underlying: Underlying,
        today: date,
        *,
        trading_class: str | None = None,
        expiries: tuple[date, ...] | None = None,
        expiry_prefix: str = "",
        strike_tenths: int | None = None,
        right: str = "",
    ) -> Iterator[Instrument]:
        symbol = underlying.symbol
        ordinal = self._ordinal[symbol]
        strikes = self._strikes(symbol, today)
        if strike_tenths is not None:
            strikes = (strike_tenths,) if strike_tenths in strikes else ()
        rights = (right,) if right else ("C", "P")
        for class_index, klass in enumerate(self._classes[symbol]):
            if trading_class is not None and klass.name != trading_class:
                continue
            for expiry in chains.listed_expirations(klass, today):
                if expiries is not None and expiry not in expiries:
                    continue
                if expiry_prefix and not expiry.strftime("%Y%m%d").startswith(expiry_prefix):
                    continue
                for strike in strikes:
                    for option_right in rights:
                        yield self._option(underlying, ordinal, class_index, klass, expiry, option_right, strike)

    def _option(
        self,
        underlying: Underlying,
        ordinal: int,
        class_index: int,
        klass: OptionClass,
        expiry: date,
        right: str,
        strike: int,
    ) -> Instrument:
        con_id = chains.encode_option_con_id(chains.OptionKey(ordinal, class_index, expiry, right, strike))
        cached = self._by_con_id_cache.get(con_id)
        if cached is None:
            cached = chains.make_option(underlying, ordinal, class_index, klass, expiry, right, strike)
            self._remember(cached)
        return cached

    # ----- qualification -----

    def match(self, query: ContractQuery, today: date) -> list[Instrument]:
        """The contracts ``query`` describes (see the module docstring); options as listed on ``today``."""
        if query.con_id:
            found = self.by_con_id(query.con_id)
            return [found] if found is not None else []
        if query.currency and query.currency.upper() != "USD":
            return []
        sec_type = query.sec_type.upper()
        if sec_type not in ("", SecType.STK.value, SecType.IND.value, SecType.OPT.value):
            return []
        local_symbol = _compact(query.local_symbol)
        trading_class = query.trading_class.strip().upper()
        symbol = self._query_symbol(query, local_symbol, trading_class)
        if symbol is None:
            return []
        underlying = self.universe.get(symbol)

        results: list[Instrument] = []
        if sec_type in ("", underlying.sec_type.value):
            stock = self._underlyings[underlying.symbol]
            if _underlying_matches(stock, query, local_symbol, trading_class):
                results.append(stock)
        if sec_type in ("", SecType.OPT.value):
            results.extend(self._match_options(underlying, query, local_symbol, trading_class, today))
        return results

    def _query_symbol(self, query: ContractQuery, local_symbol: str, trading_class: str) -> str | None:
        """The underlying the query is about: its symbol, else its trading class or OCC root."""
        if query.symbol.strip():
            symbol = normalize_symbol(query.symbol)
            return symbol if symbol in self._ordinal else None
        if trading_class:
            return self._symbol_of_root(trading_class)
        if local_symbol:
            occ = _parse_occ(local_symbol)
            return self._symbol_of_root(occ[0] if occ is not None else local_symbol)
        return None

    def _symbol_of_root(self, root: str) -> str | None:
        """The underlying of a trading class, an OCC root or a ticker, if any."""
        return self._root_to_symbol.get(root) or (root if root in self._ordinal else None)

    def _match_options(
        self, underlying: Underlying, query: ContractQuery, local_symbol: str, trading_class: str, today: date
    ) -> list[Instrument]:
        if query.multiplier.strip():
            try:
                if abs(float(query.multiplier) - chains.MULTIPLIER) > _STRIKE_TOLERANCE:
                    return []
            except ValueError:
                return []
        right = ""
        if query.right.strip() and query.right.strip() != "?":
            right = _RIGHTS.get(query.right.strip().upper(), "")
            if not right:
                return []
        strike_tenths = None
        if query.strike:
            strike_tenths = chains.strike_to_tenths(query.strike)
            if abs(strike_tenths / 10 - query.strike) > _STRIKE_TOLERANCE:
                return []  # not on a tenth: no listed strike can match
        prefix = query.expiry_prefix.strip()
        if prefix and (not prefix.isdigit() or len(prefix) not in (6, 8)):
            return []
        occ = _parse_occ(local_symbol)
        if occ is not None:
            # The OCC symbol names one contract: search for it directly (every other
            # field given must still agree, which the comparisons below check).
            root, occ_expiry, occ_right, occ_strike = occ
            if (trading_class and trading_class != root) or (right and right != occ_right):
                return []
            if (strike_tenths is not None and strike_tenths != occ_strike) or not occ_expiry.startswith(prefix):
                return []
            trading_class, right, strike_tenths, prefix = root, occ_right, occ_strike, occ_expiry
        options = self._iter_options(
            underlying,
            today,
            trading_class=trading_class or None,
            expiry_prefix=prefix,
            strike_tenths=strike_tenths,
            right=right,
        )
        if local_symbol:
            return [option for option in options if _compact(option.local_symbol) == local_symbol]
        return list(options)


def _underlying_instrument(underlying: Underlying) -> Instrument:
    if underlying.is_index:
        return Instrument(
            con_id=underlying.con_id,
            symbol=underlying.symbol,
            sec_type=SecType.IND,
            exchange="CBOE",
            primary_exchange="",
            local_symbol=underlying.symbol,
            trading_class=underlying.symbol,
            long_name=underlying.long_name,
            min_tick=0.01,
        )
    return Instrument(
        con_id=underlying.con_id,
        symbol=underlying.symbol,
        sec_type=SecType.STK,
        exchange="SMART",
        primary_exchange=underlying.primary_exchange,
        local_symbol=underlying.symbol,
        # TWS reports NMS as the trading class of NASDAQ-listed stocks, the ticker otherwise.
        trading_class="NMS" if underlying.primary_exchange == "NASDAQ" else underlying.symbol,
        long_name=underlying.long_name,
        min_tick=0.01,
    )


def _underlying_matches(instrument: Instrument, query: ContractQuery, local_symbol: str, trading_class: str) -> bool:
    if local_symbol and local_symbol != _compact(instrument.local_symbol):
        return False
    if trading_class and trading_class != instrument.trading_class:
        return False
    # Option-only fields make a query an option query.
    if query.expiry_prefix.strip() or query.strike or (query.right.strip() not in ("", "?")):
        return False
    if query.multiplier.strip():
        try:
            return float(query.multiplier) == 1.0
        except ValueError:
            return False
    return True


def _parse_occ(compact_symbol: str) -> tuple[str, str, str, int] | None:
    """(root, YYYYMMDD, right, strike tenths) of a space-free OCC symbol, or None."""
    if len(compact_symbol) <= 15:
        return None
    root, yymmdd, right, strike = compact_symbol[:-15], compact_symbol[-15:-9], compact_symbol[-9], compact_symbol[-8:]
    if not (yymmdd.isdigit() and strike.isdigit() and right in ("C", "P")) or int(strike) % 100:
        return None
    return root, "20" + yymmdd, right, int(strike) // 100


def _compact(text: str) -> str:
    """Upper case without spaces: OCC symbols are padded, clients do not always pad alike."""
    return "".join(text.split()).upper()
