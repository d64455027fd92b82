"""The simulated market's underlyings: S&P 500 members, popular optionable ETFs, indices.

Each :class:`Underlying` carries what the rest of the simulator needs to list and price it:
security type, primary exchange, GICS sector ("ETF" for funds, "Index" for indices), a
plausible default price and annual volatility, a dividend yield, the conId and the long name.
``market_correlation`` is how strongly its returns follow the S&P 500 (the market factor the
price model mixes in; VIX's is negative).

The tables below are the S&P 500 membership as of autumn 2025 (about 500 tickers), with
approximate prices and volatilities of that time; they are defaults that ``--prices-from``
files override, not market data. Symbols use TWS's spelling ("BRK B", "BF B"); ``get``
also accepts the dotted and slashed forms ("BRK.B", "BRK/B") Barchart and others print.

conIds: the few known real ones (AAPL 265598, SPY 756733, SPX 416904) are used as is; every
other underlying gets ``10_000_000 + crc32(symbol) % 890_000_000``, stable across runs and
Python versions (crc32, unlike ``hash``, is not salted), and out of reach of the known ids
and of option conIds (which start at 10**12, see chains.py). A Universe refuses duplicate
conIds, so a collision could not go unnoticed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from trading_pipeline.sim.types import SecType

ETF_SECTOR = "ETF"
INDEX_SECTOR = "Index"

GICS_SECTORS: dict[str, str] = {
    "TEC": "Information Technology",
    "COM": "Communication Services",
    "DIS": "Consumer Discretionary",
    "STA": "Consumer Staples",
    "ENE": "Energy",
    "FIN": "Financials",
    "HLT": "Health Care",
    "IND": "Industrials",
    "MAT": "Materials",
    "REA": "Real Estate",
    "UTL": "Utilities",
}

# How much a stock of each sector moves with the market (correlation with SPX returns);
# defensive sectors less than cyclical ones. ETFs and indices carry their own in the table.
_SECTOR_MARKET_CORRELATION: dict[str, float] = {
    "Information Technology": 0.65,
    "Communication Services": 0.6,
    "Consumer Discretionary": 0.6,
    "Consumer Staples": 0.35,
    "Energy": 0.4,
    "Financials": 0.6,
    "Health Care": 0.45,
    "Industrials": 0.6,
    "Materials": 0.55,
    "Real Estate": 0.5,
    "Utilities": 0.35,
}

KNOWN_CON_IDS: dict[str, int] = {"AAPL": 265598, "SPY": 756733, "SPX": 416904}

_HASHED_CON_ID_BASE = 10_000_000
_HASHED_CON_ID_SPAN = 890_000_000


@dataclass(frozen=True)
class Underlying:
    symbol: str
    sec_type: SecType                 # STK (stocks and ETFs) or IND
    primary_exchange: str             # NASDAQ, NYSE, ARCA, BATS; CBOE for indices
    sector: str                       # GICS sector name, "ETF" or "Index"
    price: float                      # default starting price
    annual_vol: float                 # e.g. 0.25 for 25 % a year
    dividend_yield: float             # continuous yield, e.g. 0.012
    con_id: int
    long_name: str
    market_correlation: float = 0.0   # correlation of returns with SPX (-1 .. 1)

    @property
    def is_index(self) -> bool:
        return self.sec_type is SecType.IND

    @property
    def is_etf(self) -> bool:
        return self.sector == ETF_SECTOR


def normalize_symbol(symbol: str) -> str:
    """TWS's spelling of a ticker: upper case, share classes after a space ("brk.b" -> "BRK B")."""
    text = str(symbol).strip().upper().replace(".", " ").replace("/", " ")
    return " ".join(text.split())


def con_id_for(symbol: str) -> int:
    """The underlying's conId: the known real one, else a stable hash of the symbol."""
    symbol = normalize_symbol(symbol)
    known = KNOWN_CON_IDS.get(symbol)
    if known is not None:
        return known
    return _HASHED_CON_ID_BASE + zlib.crc32(symbol.encode("ascii")) % _HASHED_CON_ID_SPAN


class Universe:
    """An immutable set of underlyings, looked up by symbol or conId."""

    def __init__(self, underlyings: Iterable[Underlying]):
        by_symbol: dict[str, Underlying] = {}
        by_con_id: dict[int, Underlying] = {}
        for underlying in underlyings:
            if underlying.symbol != normalize_symbol(underlying.symbol):
                raise ValueError(f"symbol {underlying.symbol!r} is not in TWS spelling")
            if underlying.symbol in by_symbol:
                raise ValueError(f"symbol {underlying.symbol} listed twice")
            if underlying.con_id in by_con_id:
                other = by_con_id[underlying.con_id].symbol
                raise ValueError(f"conId {underlying.con_id} of {underlying.symbol} is already {other}'s")
            if not underlying.price > 0 or not underlying.annual_vol > 0:
                raise ValueError(f"{underlying.symbol}: price and annual_vol must be positive")
            by_symbol[underlying.symbol] = underlying
            by_con_id[underlying.con_id] = underlying
        self._by_symbol = by_symbol
        self._by_con_id = by_con_id
        self._symbols = sorted(by_symbol)

    def get(self, symbol: str) -> Underlying | None:
        return self._by_symbol.get(normalize_symbol(symbol))

    def symbols(self) -> list[str]:
        """Every symbol, sorted."""
        return list(self._symbols)

    def by_con_id(self, con_id: int) -> Underlying | None:
        return self._by_con_id.get(con_id)

    def sector_map(self) -> dict[str, str]:
        """symbol -> sector ("ETF" for funds, "Index" for indices)."""
        return {symbol: self._by_symbol[symbol].sector for symbol in self._symbols}

    def with_prices(self, prices: Mapping[str, float]) -> Universe:
        """A copy whose default prices are replaced by ``prices`` (symbols not in it are ignored)."""
        updated = dict(self._by_symbol)
        for symbol, price in prices.items():
            key = normalize_symbol(symbol)
            if key in updated:
                updated[key] = replace(updated[key], price=float(price))
        return Universe(updated.values())

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and normalize_symbol(symbol) in self._by_symbol

    def __iter__(self) -> Iterator[Underlying]:
        return (self._by_symbol[symbol] for symbol in self._symbols)

    def __len__(self) -> int:
        return len(self._by_symbol)


# symbol | primary exchange | sector code | price | annual vol | dividend yield % | long name
_STOCKS = """
# Information Technology
AAPL|NASDAQ|TEC|268|0.27|0.4|Apple Inc.
MSFT|NASDAQ|TEC|510|0.24|0.7|Microsoft Corp.
NVDA|NASDAQ|TEC|185|0.50|0.0|NVIDIA Corp.
AVGO|NASDAQ|TEC|345|0.48|0.7|Broadcom Inc.
ORCL|NYSE|TEC|250|0.45|0.8|Oracle Corp.
CRM|NYSE|TEC|245|0.32|0.7|Salesforce Inc.
CSCO|NASDAQ|TEC|70|0.22|2.3|Cisco Systems Inc.
IBM|NYSE|TEC|300|0.28|2.2|International Business Machines Corp.
ACN|NYSE|TEC|245|0.28|2.4|Accenture plc
AMD|NASDAQ|TEC|240|0.55|0.0|Advanced Micro Devices Inc.
ADBE|NASDAQ|TEC|340|0.33|0.0|Adobe Inc.
NOW|NYSE|TEC|900|0.36|0.0|ServiceNow Inc.
TXN|NASDAQ|TEC|165|0.33|3.3|Texas Instruments Inc.
QCOM|NASDAQ|TEC|170|0.38|2.1|Qualcomm Inc.
INTU|NASDAQ|TEC|660|0.32|0.6|Intuit Inc.
AMAT|NASDAQ|TEC|225|0.45|0.8|Applied Materials Inc.
MU|NASDAQ|TEC|220|0.55|0.2|Micron Technology Inc.
LRCX|NASDAQ|TEC|150|0.48|0.6|Lam Research Corp.
KLAC|NASDAQ|TEC|1150|0.42|0.7|KLA Corp.
ADI|NASDAQ|TEC|240|0.32|1.6|Analog Devices Inc.
PANW|NASDAQ|TEC|205|0.35|0.0|Palo Alto Networks Inc.
ANET|NYSE|TEC|145|0.50|0.0|Arista Networks Inc.
CRWD|NASDAQ|TEC|520|0.45|0.0|CrowdStrike Holdings Inc.
INTC|NASDAQ|TEC|38|0.55|0.0|Intel Corp.
SNPS|NASDAQ|TEC|450|0.40|0.0|Synopsys Inc.
CDNS|NASDAQ|TEC|340|0.36|0.0|Cadence Design Systems Inc.
APH|NYSE|TEC|135|0.35|0.5|Amphenol Corp.
MSI|NYSE|TEC|400|0.24|1.1|Motorola Solutions Inc.
FTNT|NASDAQ|TEC|85|0.40|0.0|Fortinet Inc.
ADSK|NASDAQ|TEC|310|0.32|0.0|Autodesk Inc.
ROP|NASDAQ|TEC|500|0.22|0.7|Roper Technologies Inc.
NXPI|NASDAQ|TEC|210|0.40|1.9|NXP Semiconductors N.V.
MCHP|NASDAQ|TEC|62|0.45|2.9|Microchip Technology Inc.
TEL|NYSE|TEC|230|0.28|1.2|TE Connectivity plc
WDAY|NASDAQ|TEC|235|0.35|0.0|Workday Inc.
FICO|NYSE|TEC|1700|0.45|0.0|Fair Isaac Corp.
IT|NYSE|TEC|250|0.40|0.0|Gartner Inc.
CTSH|NASDAQ|TEC|72|0.26|1.7|Cognizant Technology Solutions Corp.
GLW|NYSE|TEC|88|0.32|1.3|Corning Inc.
HPQ|NYSE|TEC|27|0.32|4.3|HP Inc.
HPE|NYSE|TEC|24|0.42|2.2|Hewlett Packard Enterprise Co.
DELL|NYSE|TEC|140|0.48|1.5|Dell Technologies Inc.
MPWR|NASDAQ|TEC|950|0.48|0.7|Monolithic Power Systems Inc.
ON|NASDAQ|TEC|50|0.50|0.0|ON Semiconductor Corp.
KEYS|NYSE|TEC|175|0.30|0.0|Keysight Technologies Inc.
CDW|NASDAQ|TEC|160|0.30|1.6|CDW Corp.
TYL|NYSE|TEC|480|0.28|0.0|Tyler Technologies Inc.
FSLR|NASDAQ|TEC|250|0.55|0.0|First Solar Inc.
TER|NASDAQ|TEC|140|0.50|0.3|Teradyne Inc.
NTAP|NASDAQ|TEC|115|0.35|1.8|NetApp Inc.
PTC|NASDAQ|TEC|195|0.30|0.0|PTC Inc.
STX|NASDAQ|TEC|230|0.50|1.2|Seagate Technology Holdings plc
WDC|NASDAQ|TEC|140|0.55|0.3|Western Digital Corp.
ZBRA|NASDAQ|TEC|290|0.35|0.0|Zebra Technologies Corp.
GDDY|NYSE|TEC|140|0.38|0.0|GoDaddy Inc.
JBL|NYSE|TEC|210|0.42|0.2|Jabil Inc.
SMCI|NASDAQ|TEC|45|0.80|0.0|Super Micro Computer Inc.
TDY|NYSE|TEC|520|0.24|0.0|Teledyne Technologies Inc.
FFIV|NASDAQ|TEC|250|0.32|0.0|F5 Inc.
VRSN|NASDAQ|TEC|250|0.25|1.2|VeriSign Inc.
GEN|NASDAQ|TEC|27|0.30|1.9|Gen Digital Inc.
AKAM|NASDAQ|TEC|80|0.38|0.0|Akamai Technologies Inc.
EPAM|NYSE|TEC|165|0.45|0.0|EPAM Systems Inc.
SWKS|NASDAQ|TEC|70|0.45|4.0|Skyworks Solutions Inc.
TRMB|NASDAQ|TEC|78|0.32|0.0|Trimble Inc.
PLTR|NASDAQ|TEC|180|0.65|0.0|Palantir Technologies Inc.
APP|NASDAQ|TEC|600|0.75|0.0|AppLovin Corp.
DDOG|NASDAQ|TEC|155|0.50|0.0|Datadog Inc.
TTD|NASDAQ|TEC|45|0.65|0.0|The Trade Desk Inc.
# Communication Services
GOOGL|NASDAQ|COM|280|0.32|0.3|Alphabet Inc. Class A
GOOG|NASDAQ|COM|281|0.32|0.3|Alphabet Inc. Class C
META|NASDAQ|COM|630|0.38|0.3|Meta Platforms Inc.
NFLX|NASDAQ|COM|110|0.38|0.0|Netflix Inc.
TMUS|NASDAQ|COM|215|0.24|1.6|T-Mobile US Inc.
DIS|NYSE|COM|112|0.28|1.1|The Walt Disney Co.
CMCSA|NASDAQ|COM|29|0.28|4.5|Comcast Corp.
VZ|NYSE|COM|41|0.20|6.6|Verizon Communications Inc.
T|NYSE|COM|26|0.22|4.3|AT&T Inc.
CHTR|NASDAQ|COM|230|0.38|0.0|Charter Communications Inc.
EA|NASDAQ|COM|200|0.15|0.4|Electronic Arts Inc.
TTWO|NASDAQ|COM|245|0.30|0.0|Take-Two Interactive Software Inc.
WBD|NASDAQ|COM|22|0.50|0.0|Warner Bros. Discovery Inc.
OMC|NYSE|COM|75|0.28|3.7|Omnicom Group Inc.
IPG|NYSE|COM|25|0.30|5.3|The Interpublic Group of Companies Inc.
LYV|NYSE|COM|150|0.30|0.0|Live Nation Entertainment Inc.
FOXA|NASDAQ|COM|60|0.28|0.9|Fox Corp. Class A
FOX|NASDAQ|COM|54|0.28|1.0|Fox Corp. Class B
NWSA|NASDAQ|COM|26|0.28|0.8|News Corp. Class A
NWS|NASDAQ|COM|30|0.28|0.7|News Corp. Class B
MTCH|NASDAQ|COM|33|0.38|2.3|Match Group Inc.
PSKY|NASDAQ|COM|16|0.50|1.2|Paramount Skydance Corp.
TKO|NYSE|COM|190|0.32|0.8|TKO Group Holdings Inc.
# Consumer Discretionary
AMZN|NASDAQ|DIS|235|0.32|0.0|Amazon.com Inc.
TSLA|NASDAQ|DIS|430|0.58|0.0|Tesla Inc.
HD|NYSE|DIS|370|0.24|2.5|The Home Depot Inc.
MCD|NYSE|DIS|300|0.18|2.4|McDonald's Corp.
BKNG|NASDAQ|DIS|5100|0.28|0.7|Booking Holdings Inc.
LOW|NYSE|DIS|240|0.26|2.0|Lowe's Companies Inc.
TJX|NYSE|DIS|145|0.20|1.2|The TJX Companies Inc.
SBUX|NASDAQ|DIS|85|0.32|2.9|Starbucks Corp.
NKE|NYSE|DIS|65|0.38|2.5|Nike Inc.
ABNB|NASDAQ|DIS|125|0.38|0.0|Airbnb Inc.
ORLY|NASDAQ|DIS|95|0.24|0.0|O'Reilly Automotive Inc.
MAR|NASDAQ|DIS|265|0.26|1.0|Marriott International Inc.
CMG|NYSE|DIS|33|0.42|0.0|Chipotle Mexican Grill Inc.
AZO|NYSE|DIS|3800|0.22|0.0|AutoZone Inc.
HLT|NYSE|DIS|265|0.24|0.2|Hilton Worldwide Holdings Inc.
GM|NYSE|DIS|70|0.35|0.9|General Motors Co.
F|NYSE|DIS|13|0.35|4.6|Ford Motor Co.
ROST|NASDAQ|DIS|160|0.26|1.0|Ross Stores Inc.
DHI|NYSE|DIS|150|0.35|1.1|D.R. Horton Inc.
LEN|NYSE|DIS|120|0.35|1.7|Lennar Corp.
RCL|NYSE|DIS|280|0.45|1.4|Royal Caribbean Cruises Ltd.
YUM|NYSE|DIS|145|0.20|2.0|Yum! Brands Inc.
DASH|NASDAQ|DIS|210|0.45|0.0|DoorDash Inc.
LULU|NASDAQ|DIS|170|0.48|0.0|Lululemon Athletica Inc.
EBAY|NASDAQ|DIS|85|0.35|1.4|eBay Inc.
TSCO|NASDAQ|DIS|55|0.28|1.7|Tractor Supply Co.
GRMN|NYSE|DIS|210|0.30|1.7|Garmin Ltd.
PHM|NYSE|DIS|120|0.36|0.7|PulteGroup Inc.
NVR|NYSE|DIS|7400|0.28|0.0|NVR Inc.
DECK|NYSE|DIS|90|0.50|0.0|Deckers Outdoor Corp.
CCL|NYSE|DIS|27|0.45|0.0|Carnival Corp.
EXPE|NASDAQ|DIS|260|0.42|0.6|Expedia Group Inc.
ULTA|NASDAQ|DIS|540|0.32|0.0|Ulta Beauty Inc.
DRI|NYSE|DIS|180|0.26|3.3|Darden Restaurants Inc.
TPR|NYSE|DIS|110|0.38|1.5|Tapestry Inc.
LVS|NYSE|DIS|55|0.38|1.8|Las Vegas Sands Corp.
WYNN|NASDAQ|DIS|120|0.40|0.8|Wynn Resorts Ltd.
MGM|NYSE|DIS|33|0.40|0.0|MGM Resorts International
POOL|NASDAQ|DIS|260|0.32|1.9|Pool Corp.
BBY|NYSE|DIS|78|0.35|4.9|Best Buy Co. Inc.
GPC|NYSE|DIS|130|0.28|3.2|Genuine Parts Co.
KMX|NYSE|DIS|32|0.50|0.0|CarMax Inc.
LKQ|NASDAQ|DIS|30|0.30|4.0|LKQ Corp.
APTV|NYSE|DIS|80|0.40|0.0|Aptiv plc
RL|NYSE|DIS|330|0.32|1.1|Ralph Lauren Corp.
HAS|NASDAQ|DIS|80|0.32|3.5|Hasbro Inc.
NCLH|NYSE|DIS|20|0.50|0.0|Norwegian Cruise Line Holdings Ltd.
MHK|NYSE|DIS|115|0.38|0.0|Mohawk Industries Inc.
WSM|NYSE|DIS|190|0.40|1.4|Williams-Sonoma Inc.
DPZ|NASDAQ|DIS|410|0.24|1.7|Domino's Pizza Inc.
# Consumer Staples
WMT|NASDAQ|STA|105|0.20|0.9|Walmart Inc.
COST|NASDAQ|STA|920|0.20|0.6|Costco Wholesale Corp.
PG|NYSE|STA|150|0.16|2.8|The Procter & Gamble Co.
KO|NYSE|STA|70|0.15|2.9|The Coca-Cola Co.
PEP|NASDAQ|STA|150|0.18|3.8|PepsiCo Inc.
PM|NYSE|STA|150|0.25|3.7|Philip Morris International Inc.
MO|NYSE|STA|58|0.20|7.2|Altria Group Inc.
MDLZ|NASDAQ|STA|57|0.20|3.5|Mondelez International Inc.
CL|NYSE|STA|78|0.18|2.7|Colgate-Palmolive Co.
TGT|NYSE|STA|92|0.35|4.9|Target Corp.
KMB|NYSE|STA|110|0.20|4.6|Kimberly-Clark Corp.
KDP|NASDAQ|STA|27|0.22|3.4|Keurig Dr Pepper Inc.
GIS|NYSE|STA|48|0.20|5.0|General Mills Inc.
KHC|NASDAQ|STA|25|0.22|6.4|The Kraft Heinz Co.
MNST|NASDAQ|STA|68|0.25|0.0|Monster Beverage Corp.
STZ|NYSE|STA|135|0.30|3.0|Constellation Brands Inc.
SYY|NYSE|STA|78|0.20|2.8|Sysco Corp.
HSY|NYSE|STA|175|0.24|3.1|The Hershey Co.
KR|NYSE|STA|65|0.22|2.1|The Kroger Co.
ADM|NYSE|STA|60|0.26|3.4|Archer-Daniels-Midland Co.
KVUE|NYSE|STA|15|0.35|5.5|Kenvue Inc.
CHD|NYSE|STA|88|0.22|1.3|Church & Dwight Co. Inc.
CLX|NYSE|STA|115|0.24|4.3|The Clorox Co.
MKC|NYSE|STA|66|0.24|2.7|McCormick & Co. Inc.
K|NYSE|STA|82|0.10|2.8|Kellanova
CAG|NYSE|STA|18|0.24|7.5|Conagra Brands Inc.
CPB|NASDAQ|STA|31|0.24|5.0|The Campbell's Co.
SJM|NYSE|STA|105|0.24|4.1|The J.M. Smucker Co.
HRL|NYSE|STA|23|0.24|5.0|Hormel Foods Corp.
TSN|NYSE|STA|52|0.24|3.8|Tyson Foods Inc.
BG|NYSE|STA|95|0.28|2.9|Bunge Global SA
LW|NYSE|STA|60|0.38|2.5|Lamb Weston Holdings Inc.
TAP|NYSE|STA|45|0.26|4.2|Molson Coors Beverage Co.
BF B|NYSE|STA|28|0.32|3.2|Brown-Forman Corp. Class B
EL|NYSE|STA|90|0.45|1.6|The Estee Lauder Companies Inc.
DG|NYSE|STA|105|0.38|2.2|Dollar General Corp.
DLTR|NASDAQ|STA|105|0.40|0.0|Dollar Tree Inc.
# Energy
XOM|NYSE|ENE|115|0.22|3.5|Exxon Mobil Corp.
CVX|NYSE|ENE|155|0.22|4.4|Chevron Corp.
COP|NYSE|ENE|90|0.28|3.5|ConocoPhillips
EOG|NYSE|ENE|110|0.28|3.7|EOG Resources Inc.
SLB|NYSE|ENE|36|0.35|3.2|SLB N.V.
PSX|NYSE|ENE|135|0.30|3.6|Phillips 66
MPC|NYSE|ENE|190|0.32|1.9|Marathon Petroleum Corp.
WMB|NYSE|ENE|60|0.22|3.3|The Williams Companies Inc.
OKE|NYSE|ENE|70|0.28|5.9|ONEOK Inc.
KMI|NYSE|ENE|27|0.22|4.3|Kinder Morgan Inc.
VLO|NYSE|ENE|175|0.32|2.6|Valero Energy Corp.
OXY|NYSE|ENE|42|0.30|2.3|Occidental Petroleum Corp.
HAL|NYSE|ENE|25|0.38|2.7|Halliburton Co.
BKR|NASDAQ|ENE|48|0.30|1.9|Baker Hughes Co.
FANG|NASDAQ|ENE|145|0.32|2.8|Diamondback Energy Inc.
DVN|NYSE|ENE|34|0.35|2.8|Devon Energy Corp.
CTRA|NYSE|ENE|25|0.30|3.5|Coterra Energy Inc.
EQT|NYSE|ENE|55|0.38|1.2|EQT Corp.
TRGP|NYSE|ENE|165|0.30|2.4|Targa Resources Corp.
APA|NASDAQ|ENE|24|0.42|4.2|APA Corp.
TPL|NYSE|ENE|950|0.45|0.7|Texas Pacific Land Corp.
EXE|NASDAQ|ENE|110|0.32|2.1|Expand Energy Corp.
# Financials
BRK B|NYSE|FIN|495|0.16|0.0|Berkshire Hathaway Inc. Class B
JPM|NYSE|FIN|310|0.24|1.9|JPMorgan Chase & Co.
V|NYSE|FIN|340|0.20|0.7|Visa Inc.
MA|NYSE|FIN|560|0.20|0.5|Mastercard Inc.
BAC|NYSE|FIN|53|0.26|2.1|Bank of America Corp.
WFC|NYSE|FIN|86|0.28|2.1|Wells Fargo & Co.
GS|NYSE|FIN|790|0.30|2.0|The Goldman Sachs Group Inc.
MS|NYSE|FIN|160|0.30|2.5|Morgan Stanley
AXP|NYSE|FIN|360|0.28|0.9|American Express Co.
SPGI|NYSE|FIN|490|0.22|0.8|S&P Global Inc.
BLK|NYSE|FIN|1050|0.26|2.0|BlackRock Inc.
C|NYSE|FIN|100|0.30|2.4|Citigroup Inc.
SCHW|NYSE|FIN|94|0.28|1.1|The Charles Schwab Corp.
PGR|NYSE|FIN|240|0.26|0.2|The Progressive Corp.
CB|NYSE|FIN|285|0.20|1.4|Chubb Ltd.
MMC|NYSE|FIN|180|0.20|2.0|Marsh & McLennan Companies Inc.
ICE|NYSE|FIN|155|0.20|1.2|Intercontinental Exchange Inc.
CME|NASDAQ|FIN|270|0.18|1.9|CME Group Inc.
BX|NYSE|FIN|150|0.38|2.7|Blackstone Inc.
KKR|NYSE|FIN|120|0.42|0.6|KKR & Co. Inc.
APO|NYSE|FIN|125|0.42|1.6|Apollo Global Management Inc.
PYPL|NASDAQ|FIN|68|0.35|0.0|PayPal Holdings Inc.
FI|NYSE|FIN|65|0.45|0.0|Fiserv Inc.
COF|NYSE|FIN|220|0.34|1.1|Capital One Financial Corp.
USB|NYSE|FIN|48|0.28|4.2|U.S. Bancorp
PNC|NYSE|FIN|185|0.28|3.6|The PNC Financial Services Group Inc.
AON|NYSE|FIN|350|0.22|0.9|Aon plc
MCO|NYSE|FIN|480|0.24|0.8|Moody's Corp.
AJG|NYSE|FIN|250|0.24|1.0|Arthur J. Gallagher & Co.
TRV|NYSE|FIN|280|0.20|1.6|The Travelers Companies Inc.
AFL|NYSE|FIN|108|0.20|2.1|Aflac Inc.
MET|NYSE|FIN|80|0.26|2.8|MetLife Inc.
AIG|NYSE|FIN|78|0.26|2.3|American International Group Inc.
PRU|NYSE|FIN|105|0.26|5.1|Prudential Financial Inc.
ALL|NYSE|FIN|200|0.22|2.0|The Allstate Corp.
TFC|NYSE|FIN|45|0.28|4.6|Truist Financial Corp.
BK|NYSE|FIN|108|0.24|2.0|The Bank of New York Mellon Corp.
AMP|NYSE|FIN|470|0.28|1.4|Ameriprise Financial Inc.
MSCI|NYSE|FIN|560|0.28|1.3|MSCI Inc.
FIS|NYSE|FIN|63|0.32|2.5|Fidelity National Information Services Inc.
GPN|NYSE|FIN|78|0.35|1.3|Global Payments Inc.
HIG|NYSE|FIN|128|0.22|1.6|The Hartford Insurance Group Inc.
ACGL|NASDAQ|FIN|88|0.24|0.0|Arch Capital Group Ltd.
STT|NYSE|FIN|115|0.28|2.8|State Street Corp.
NDAQ|NASDAQ|FIN|86|0.24|1.2|Nasdaq Inc.
RJF|NYSE|FIN|165|0.30|1.2|Raymond James Financial Inc.
WTW|NASDAQ|FIN|330|0.22|1.1|Willis Towers Watson plc
MTB|NYSE|FIN|185|0.28|3.0|M&T Bank Corp.
FITB|NASDAQ|FIN|43|0.30|3.7|Fifth Third Bancorp
HBAN|NASDAQ|FIN|16|0.30|3.9|Huntington Bancshares Inc.
RF|NYSE|FIN|25|0.30|4.2|Regions Financial Corp.
KEY|NYSE|FIN|18|0.32|4.5|KeyCorp
CFG|NYSE|FIN|52|0.32|3.4|Citizens Financial Group Inc.
NTRS|NASDAQ|FIN|130|0.28|2.4|Northern Trust Corp.
SYF|NYSE|FIN|72|0.36|1.6|Synchrony Financial
CINF|NASDAQ|FIN|160|0.24|2.2|Cincinnati Financial Corp.
BRO|NYSE|FIN|80|0.24|0.8|Brown & Brown Inc.
CBOE|BATS|FIN|250|0.20|1.0|Cboe Global Markets Inc.
WRB|NYSE|FIN|72|0.22|0.5|W. R. Berkley Corp.
L|NYSE|FIN|100|0.20|0.3|Loews Corp.
TROW|NASDAQ|FIN|105|0.28|4.8|T. Rowe Price Group Inc.
BEN|NYSE|FIN|23|0.32|5.5|Franklin Resources Inc.
IVZ|NYSE|FIN|23|0.35|3.6|Invesco Ltd.
GL|NYSE|FIN|125|0.26|0.8|Globe Life Inc.
AIZ|NYSE|FIN|220|0.22|1.5|Assurant Inc.
EG|NYSE|FIN|330|0.24|2.4|Everest Group Ltd.
ERIE|NASDAQ|FIN|330|0.30|1.7|Erie Indemnity Co.
PFG|NASDAQ|FIN|80|0.26|3.8|Principal Financial Group Inc.
FDS|NYSE|FIN|280|0.30|1.6|FactSet Research Systems Inc.
JKHY|NASDAQ|FIN|150|0.24|1.5|Jack Henry & Associates Inc.
CPAY|NYSE|FIN|300|0.30|0.0|Corpay Inc.
COIN|NASDAQ|FIN|320|0.70|0.0|Coinbase Global Inc.
XYZ|NYSE|FIN|75|0.50|0.0|Block Inc.
HOOD|NASDAQ|FIN|130|0.75|0.0|Robinhood Markets Inc.
IBKR|NASDAQ|FIN|68|0.40|0.5|Interactive Brokers Group Inc.
# Health Care
LLY|NYSE|HLT|900|0.32|0.7|Eli Lilly and Co.
UNH|NYSE|HLT|330|0.38|2.7|UnitedHealth Group Inc.
JNJ|NYSE|HLT|190|0.16|2.7|Johnson & Johnson
ABBV|NYSE|HLT|225|0.24|2.9|AbbVie Inc.
MRK|NYSE|HLT|88|0.24|3.7|Merck & Co. Inc.
TMO|NYSE|HLT|560|0.26|0.3|Thermo Fisher Scientific Inc.
ABT|NYSE|HLT|128|0.20|1.8|Abbott Laboratories
ISRG|NASDAQ|HLT|540|0.30|0.0|Intuitive Surgical Inc.
AMGN|NASDAQ|HLT|300|0.24|3.2|Amgen Inc.
DHR|NYSE|HLT|215|0.26|0.6|Danaher Corp.
PFE|NYSE|HLT|25|0.24|6.9|Pfizer Inc.
BSX|NYSE|HLT|100|0.26|0.0|Boston Scientific Corp.
SYK|NYSE|HLT|370|0.22|0.9|Stryker Corp.
GILD|NASDAQ|HLT|120|0.24|2.6|Gilead Sciences Inc.
VRTX|NASDAQ|HLT|430|0.28|0.0|Vertex Pharmaceuticals Inc.
MDT|NYSE|HLT|95|0.20|3.0|Medtronic plc
BMY|NYSE|HLT|46|0.28|5.4|Bristol-Myers Squibb Co.
ELV|NYSE|HLT|330|0.36|2.1|Elevance Health Inc.
CI|NYSE|HLT|270|0.32|2.2|The Cigna Group
REGN|NASDAQ|HLT|620|0.35|0.6|Regeneron Pharmaceuticals Inc.
ZTS|NYSE|HLT|140|0.28|1.4|Zoetis Inc.
MCK|NYSE|HLT|800|0.24|0.4|McKesson Corp.
CVS|NYSE|HLT|78|0.34|3.4|CVS Health Corp.
HCA|NYSE|HLT|450|0.28|0.6|HCA Healthcare Inc.
BDX|NYSE|HLT|190|0.24|2.2|Becton Dickinson and Co.
COR|NYSE|HLT|320|0.22|0.7|Cencora Inc.
EW|NYSE|HLT|82|0.30|0.0|Edwards Lifesciences Corp.
IDXX|NASDAQ|HLT|680|0.32|0.0|IDEXX Laboratories Inc.
A|NYSE|HLT|145|0.30|0.7|Agilent Technologies Inc.
GEHC|NASDAQ|HLT|78|0.30|0.2|GE HealthCare Technologies Inc.
IQV|NYSE|HLT|210|0.32|0.0|IQVIA Holdings Inc.
RMD|NYSE|HLT|260|0.28|0.9|ResMed Inc.
DXCM|NASDAQ|HLT|60|0.45|0.0|DexCom Inc.
HUM|NYSE|HLT|250|0.42|1.4|Humana Inc.
CNC|NYSE|HLT|38|0.55|0.0|Centene Corp.
CAH|NYSE|HLT|190|0.24|1.1|Cardinal Health Inc.
MTD|NYSE|HLT|1400|0.28|0.0|Mettler-Toledo International Inc.
WAT|NYSE|HLT|370|0.30|0.0|Waters Corp.
STE|NYSE|HLT|250|0.22|0.9|STERIS plc
ZBH|NYSE|HLT|95|0.24|1.0|Zimmer Biomet Holdings Inc.
BIIB|NASDAQ|HLT|150|0.30|0.0|Biogen Inc.
LH|NYSE|HLT|260|0.24|1.1|Labcorp Holdings Inc.
DGX|NYSE|HLT|180|0.20|1.8|Quest Diagnostics Inc.
PODD|NASDAQ|HLT|320|0.38|0.0|Insulet Corp.
COO|NASDAQ|HLT|75|0.32|0.0|The Cooper Companies Inc.
HOLX|NASDAQ|HLT|74|0.20|0.0|Hologic Inc.
BAX|NYSE|HLT|20|0.40|3.4|Baxter International Inc.
ALGN|NASDAQ|HLT|140|0.45|0.0|Align Technology Inc.
MOH|NYSE|HLT|160|0.50|0.0|Molina Healthcare Inc.
UHS|NYSE|HLT|220|0.32|0.4|Universal Health Services Inc.
RVTY|NYSE|HLT|95|0.32|0.3|Revvity Inc.
TECH|NASDAQ|HLT|60|0.40|0.5|Bio-Techne Corp.
INCY|NASDAQ|HLT|100|0.32|0.0|Incyte Corp.
CRL|NYSE|HLT|170|0.42|0.0|Charles River Laboratories International Inc.
VTRS|NASDAQ|HLT|11|0.32|4.4|Viatris Inc.
SOLV|NYSE|HLT|72|0.32|0.0|Solventum Corp.
DVA|NYSE|HLT|125|0.30|0.0|DaVita Inc.
HSIC|NASDAQ|HLT|72|0.28|0.0|Henry Schein Inc.
MRNA|NASDAQ|HLT|25|0.60|0.0|Moderna Inc.
WST|NYSE|HLT|280|0.38|0.3|West Pharmaceutical Services Inc.
# Industrials
GE|NYSE|IND|300|0.30|0.5|GE Aerospace
CAT|NYSE|IND|570|0.30|1.0|Caterpillar Inc.
RTX|NYSE|IND|175|0.22|1.6|RTX Corp.
HON|NASDAQ|IND|200|0.22|2.3|Honeywell International Inc.
UNP|NYSE|IND|225|0.22|2.4|Union Pacific Corp.
BA|NYSE|IND|205|0.35|0.0|The Boeing Co.
ETN|NYSE|IND|370|0.32|1.1|Eaton Corp. plc
LMT|NYSE|IND|480|0.22|2.8|Lockheed Martin Corp.
DE|NYSE|IND|470|0.26|1.4|Deere & Co.
UPS|NYSE|IND|95|0.30|6.9|United Parcel Service Inc.
ADP|NASDAQ|IND|260|0.20|2.4|Automatic Data Processing Inc.
WM|NYSE|IND|215|0.18|1.5|Waste Management Inc.
GEV|NYSE|IND|600|0.45|0.2|GE Vernova Inc.
PH|NYSE|IND|780|0.30|0.9|Parker-Hannifin Corp.
TT|NYSE|IND|420|0.30|0.9|Trane Technologies plc
CTAS|NASDAQ|IND|185|0.22|0.9|Cintas Corp.
TDG|NYSE|IND|1300|0.26|0.0|TransDigm Group Inc.
MMM|NYSE|IND|165|0.28|1.8|3M Co.
ITW|NYSE|IND|250|0.20|2.5|Illinois Tool Works Inc.
GD|NYSE|IND|340|0.20|1.8|General Dynamics Corp.
NOC|NYSE|IND|580|0.22|1.6|Northrop Grumman Corp.
EMR|NYSE|IND|135|0.28|1.6|Emerson Electric Co.
CSX|NASDAQ|IND|36|0.24|1.4|CSX Corp.
NSC|NYSE|IND|290|0.24|1.9|Norfolk Southern Corp.
FDX|NYSE|IND|260|0.32|2.2|FedEx Corp.
CARR|NYSE|IND|58|0.30|1.6|Carrier Global Corp.
JCI|NYSE|IND|115|0.26|1.3|Johnson Controls International plc
PCAR|NASDAQ|IND|100|0.26|1.3|PACCAR Inc.
CPRT|NASDAQ|IND|45|0.28|0.0|Copart Inc.
RSG|NYSE|IND|215|0.18|1.1|Republic Services Inc.
URI|NYSE|IND|850|0.35|0.8|United Rentals Inc.
PWR|NYSE|IND|430|0.38|0.1|Quanta Services Inc.
GWW|NYSE|IND|950|0.24|0.9|W.W. Grainger Inc.
FAST|NASDAQ|IND|42|0.24|2.1|Fastenal Co.
PAYX|NASDAQ|IND|120|0.22|3.6|Paychex Inc.
AME|NYSE|IND|195|0.24|0.6|AMETEK Inc.
OTIS|NYSE|IND|90|0.22|1.8|Otis Worldwide Corp.
CMI|NYSE|IND|480|0.28|1.6|Cummins Inc.
ROK|NYSE|IND|360|0.30|1.5|Rockwell Automation Inc.
ODFL|NASDAQ|IND|140|0.32|0.8|Old Dominion Freight Line Inc.
VRSK|NASDAQ|IND|230|0.22|0.8|Verisk Analytics Inc.
IR|NYSE|IND|78|0.30|0.1|Ingersoll Rand Inc.
AXON|NASDAQ|IND|560|0.45|0.0|Axon Enterprise Inc.
HWM|NYSE|IND|200|0.32|0.2|Howmet Aerospace Inc.
LHX|NYSE|IND|290|0.22|1.7|L3Harris Technologies Inc.
XYL|NYSE|IND|140|0.24|1.2|Xylem Inc.
DOV|NYSE|IND|175|0.26|1.2|Dover Corp.
WAB|NYSE|IND|200|0.26|0.5|Westinghouse Air Brake Technologies Corp.
EFX|NYSE|IND|220|0.30|0.9|Equifax Inc.
BR|NYSE|IND|230|0.22|1.7|Broadridge Financial Solutions Inc.
VLTO|NYSE|IND|100|0.22|0.5|Veralto Corp.
FTV|NYSE|IND|52|0.26|0.6|Fortive Corp.
HUBB|NYSE|IND|430|0.32|1.3|Hubbell Inc.
LDOS|NYSE|IND|190|0.26|0.9|Leidos Holdings Inc.
J|NYSE|IND|150|0.26|0.9|Jacobs Solutions Inc.
TXT|NYSE|IND|82|0.26|0.1|Textron Inc.
SNA|NYSE|IND|340|0.22|2.6|Snap-on Inc.
EXPD|NYSE|IND|130|0.24|1.2|Expeditors International of Washington Inc.
CHRW|NASDAQ|IND|130|0.30|1.9|C.H. Robinson Worldwide Inc.
JBHT|NASDAQ|IND|170|0.30|1.1|J.B. Hunt Transport Services Inc.
PNR|NYSE|IND|105|0.28|1.0|Pentair plc
IEX|NYSE|IND|165|0.26|1.7|IDEX Corp.
NDSN|NASDAQ|IND|230|0.26|1.4|Nordson Corp.
MAS|NYSE|IND|68|0.30|1.8|Masco Corp.
LUV|NYSE|IND|32|0.35|2.2|Southwest Airlines Co.
DAL|NYSE|IND|58|0.40|1.2|Delta Air Lines Inc.
UAL|NASDAQ|IND|95|0.48|0.0|United Airlines Holdings Inc.
ALLE|NYSE|IND|165|0.24|1.3|Allegion plc
AOS|NYSE|IND|68|0.26|2.1|A. O. Smith Corp.
HII|NYSE|IND|280|0.30|1.9|Huntington Ingalls Industries Inc.
GNRC|NYSE|IND|170|0.45|0.0|Generac Holdings Inc.
SWK|NYSE|IND|70|0.35|4.7|Stanley Black & Decker Inc.
ROL|NYSE|IND|58|0.22|1.2|Rollins Inc.
PAYC|NYSE|IND|200|0.38|0.8|Paycom Software Inc.
DAY|NYSE|IND|68|0.20|0.0|Dayforce Inc.
BLDR|NYSE|IND|110|0.40|0.0|Builders FirstSource Inc.
LII|NYSE|IND|500|0.32|1.0|Lennox International Inc.
EME|NYSE|IND|620|0.38|0.2|EMCOR Group Inc.
UBER|NYSE|IND|95|0.38|0.0|Uber Technologies Inc.
# Materials
LIN|NASDAQ|MAT|450|0.18|1.3|Linde plc
SHW|NYSE|MAT|340|0.26|0.9|The Sherwin-Williams Co.
APD|NYSE|MAT|260|0.26|2.7|Air Products and Chemicals Inc.
ECL|NYSE|MAT|270|0.20|1.0|Ecolab Inc.
FCX|NYSE|MAT|42|0.42|1.4|Freeport-McMoRan Inc.
NEM|NYSE|MAT|85|0.40|1.2|Newmont Corp.
CTVA|NYSE|MAT|64|0.28|1.1|Corteva Inc.
DOW|NYSE|MAT|23|0.40|6.0|Dow Inc.
DD|NYSE|MAT|38|0.30|2.0|DuPont de Nemours Inc.
NUE|NYSE|MAT|145|0.35|1.5|Nucor Corp.
MLM|NYSE|MAT|620|0.26|0.5|Martin Marietta Materials Inc.
VMC|NYSE|MAT|290|0.26|0.7|Vulcan Materials Co.
PPG|NYSE|MAT|98|0.26|2.8|PPG Industries Inc.
IFF|NYSE|MAT|62|0.30|2.6|International Flavors & Fragrances Inc.
LYB|NYSE|MAT|45|0.38|10.0|LyondellBasell Industries N.V.
STLD|NASDAQ|MAT|150|0.36|1.3|Steel Dynamics Inc.
PKG|NYSE|MAT|200|0.26|2.5|Packaging Corp. of America
IP|NYSE|MAT|40|0.35|4.6|International Paper Co.
SW|NYSE|MAT|38|0.35|4.5|Smurfit Westrock plc
BALL|NYSE|MAT|48|0.26|1.7|Ball Corp.
AMCR|NYSE|MAT|8.5|0.26|6.0|Amcor plc
AVY|NYSE|MAT|170|0.22|2.2|Avery Dennison Corp.
CF|NYSE|MAT|85|0.32|2.4|CF Industries Holdings Inc.
MOS|NYSE|MAT|26|0.42|3.4|The Mosaic Co.
ALB|NYSE|MAT|95|0.55|1.7|Albemarle Corp.
EMN|NYSE|MAT|60|0.32|5.5|Eastman Chemical Co.
# Real Estate
PLD|NYSE|REA|125|0.26|3.2|Prologis Inc.
AMT|NYSE|REA|180|0.26|3.8|American Tower Corp.
EQIX|NASDAQ|REA|800|0.26|2.3|Equinix Inc.
WELL|NYSE|REA|185|0.24|1.6|Welltower Inc.
SPG|NYSE|REA|180|0.24|4.8|Simon Property Group Inc.
PSA|NYSE|REA|280|0.24|4.3|Public Storage
O|NYSE|REA|57|0.20|5.6|Realty Income Corp.
DLR|NYSE|REA|165|0.32|3.0|Digital Realty Trust Inc.
CCI|NYSE|REA|95|0.28|4.5|Crown Castle Inc.
CBRE|NYSE|REA|155|0.30|0.0|CBRE Group Inc.
VICI|NYSE|REA|30|0.20|5.9|VICI Properties Inc.
EXR|NYSE|REA|140|0.26|4.6|Extra Space Storage Inc.
AVB|NYSE|REA|180|0.22|3.9|AvalonBay Communities Inc.
EQR|NYSE|REA|60|0.22|4.6|Equity Residential
IRM|NYSE|REA|100|0.35|3.2|Iron Mountain Inc.
CSGP|NASDAQ|REA|70|0.35|0.0|CoStar Group Inc.
VTR|NYSE|REA|72|0.24|2.7|Ventas Inc.
SBAC|NASDAQ|REA|190|0.28|2.3|SBA Communications Corp.
WY|NYSE|REA|23|0.28|3.6|Weyerhaeuser Co.
INVH|NYSE|REA|28|0.24|4.3|Invitation Homes Inc.
MAA|NYSE|REA|135|0.22|4.5|Mid-America Apartment Communities Inc.
ESS|NYSE|REA|260|0.22|4.0|Essex Property Trust Inc.
ARE|NYSE|REA|60|0.38|8.5|Alexandria Real Estate Equities Inc.
KIM|NYSE|REA|21|0.24|4.8|Kimco Realty Corp.
DOC|NYSE|REA|18|0.26|6.7|Healthpeak Properties Inc.
UDR|NYSE|REA|36|0.22|4.8|UDR Inc.
CPT|NYSE|REA|105|0.22|4.0|Camden Property Trust
REG|NASDAQ|REA|71|0.20|4.0|Regency Centers Corp.
HST|NASDAQ|REA|17|0.28|4.7|Host Hotels & Resorts Inc.
BXP|NYSE|REA|72|0.30|3.9|BXP Inc.
FRT|NYSE|REA|98|0.22|4.6|Federal Realty Investment Trust
# Utilities
NEE|NYSE|UTL|82|0.24|2.8|NextEra Energy Inc.
SO|NYSE|UTL|92|0.18|3.2|The Southern Co.
DUK|NYSE|UTL|122|0.17|3.5|Duke Energy Corp.
CEG|NASDAQ|UTL|350|0.50|0.4|Constellation Energy Corp.
AEP|NASDAQ|UTL|118|0.18|3.2|American Electric Power Co. Inc.
SRE|NYSE|UTL|90|0.22|2.9|Sempra
D|NYSE|UTL|60|0.20|4.5|Dominion Energy Inc.
EXC|NASDAQ|UTL|46|0.18|3.5|Exelon Corp.
XEL|NASDAQ|UTL|80|0.18|2.9|Xcel Energy Inc.
PEG|NYSE|UTL|83|0.20|3.0|Public Service Enterprise Group Inc.
ED|NYSE|UTL|100|0.16|3.4|Consolidated Edison Inc.
PCG|NYSE|UTL|16|0.28|0.6|PG&E Corp.
VST|NYSE|UTL|190|0.55|0.5|Vistra Corp.
WEC|NYSE|UTL|115|0.17|3.1|WEC Energy Group Inc.
EIX|NYSE|UTL|58|0.28|5.7|Edison International
ETR|NYSE|UTL|97|0.20|2.6|Entergy Corp.
DTE|NYSE|UTL|138|0.17|3.2|DTE Energy Co.
AEE|NYSE|UTL|104|0.17|2.8|Ameren Corp.
PPL|NYSE|UTL|37|0.17|2.9|PPL Corp.
FE|NYSE|UTL|46|0.17|3.8|FirstEnergy Corp.
ES|NYSE|UTL|72|0.22|4.2|Eversource Energy
CNP|NYSE|UTL|39|0.18|2.3|CenterPoint Energy Inc.
CMS|NYSE|UTL|74|0.16|3.0|CMS Energy Corp.
ATO|NYSE|UTL|170|0.16|2.1|Atmos Energy Corp.
NRG|NYSE|UTL|165|0.45|1.1|NRG Energy Inc.
NI|NYSE|UTL|43|0.17|2.6|NiSource Inc.
LNT|NASDAQ|UTL|66|0.17|3.1|Alliant Energy Corp.
EVRG|NASDAQ|UTL|76|0.17|3.6|Evergy Inc.
PNW|NYSE|UTL|90|0.17|4.0|Pinnacle West Capital Corp.
AES|NYSE|UTL|14|0.38|5.0|The AES Corp.
AWK|NYSE|UTL|130|0.18|2.5|American Water Works Co. Inc.
"""

# symbol | primary exchange | "ETF" | price | annual vol | dividend yield % | long name | market correlation
_ETFS = """
SPY|ARCA|ETF|665|0.16|1.1|SPDR S&P 500 ETF Trust|1.0
QQQ|NASDAQ|ETF|600|0.21|0.5|Invesco QQQ Trust Series 1|0.92
IWM|ARCA|ETF|245|0.23|1.1|iShares Russell 2000 ETF|0.85
DIA|ARCA|ETF|465|0.15|1.5|SPDR Dow Jones Industrial Average ETF Trust|0.95
GLD|ARCA|ETF|370|0.18|0.0|SPDR Gold Shares|0.05
SLV|ARCA|ETF|44|0.32|0.0|iShares Silver Trust|0.15
TLT|NASDAQ|ETF|90|0.15|4.3|iShares 20+ Year Treasury Bond ETF|-0.2
SMH|NASDAQ|ETF|330|0.35|0.4|VanEck Semiconductor ETF|0.8
XLE|ARCA|ETF|90|0.24|3.2|Energy Select Sector SPDR Fund|0.5
XLF|ARCA|ETF|53|0.19|1.4|Financial Select Sector SPDR Fund|0.85
XLK|ARCA|ETF|285|0.24|0.6|Technology Select Sector SPDR Fund|0.9
XLV|ARCA|ETF|145|0.16|1.6|Health Care Select Sector SPDR Fund|0.65
XLY|ARCA|ETF|235|0.22|0.8|Consumer Discretionary Select Sector SPDR Fund|0.85
XLP|ARCA|ETF|78|0.13|2.7|Consumer Staples Select Sector SPDR Fund|0.45
XLI|ARCA|ETF|152|0.18|1.3|Industrial Select Sector SPDR Fund|0.85
XLU|ARCA|ETF|87|0.17|2.8|Utilities Select Sector SPDR Fund|0.45
XLB|ARCA|ETF|88|0.19|2.0|Materials Select Sector SPDR Fund|0.75
XLRE|ARCA|ETF|42|0.19|3.2|Real Estate Select Sector SPDR Fund|0.65
XLC|ARCA|ETF|115|0.20|1.0|Communication Services Select Sector SPDR Fund|0.8
EEM|ARCA|ETF|53|0.18|2.2|iShares MSCI Emerging Markets ETF|0.6
EFA|ARCA|ETF|93|0.15|3.0|iShares MSCI EAFE ETF|0.7
HYG|ARCA|ETF|80|0.06|5.8|iShares iBoxx $ High Yield Corporate Bond ETF|0.6
LQD|ARCA|ETF|111|0.08|4.4|iShares iBoxx $ Investment Grade Corporate Bond ETF|0.1
USO|ARCA|ETF|72|0.32|0.0|United States Oil Fund LP|0.25
KRE|ARCA|ETF|62|0.28|2.5|SPDR S&P Regional Banking ETF|0.7
XBI|ARCA|ETF|100|0.30|0.0|SPDR S&P Biotech ETF|0.6
GDX|ARCA|ETF|75|0.38|0.8|VanEck Gold Miners ETF|0.15
ARKK|ARCA|ETF|80|0.45|0.0|ARK Innovation ETF|0.75
XOP|ARCA|ETF|130|0.32|2.6|SPDR S&P Oil & Gas Exploration & Production ETF|0.45
IBB|NASDAQ|ETF|150|0.22|0.3|iShares Biotechnology ETF|0.6
SOXX|NASDAQ|ETF|280|0.36|0.6|iShares Semiconductor ETF|0.8
EWZ|ARCA|ETF|30|0.28|5.0|iShares MSCI Brazil ETF|0.45
FXI|ARCA|ETF|40|0.30|2.3|iShares China Large-Cap ETF|0.4
VNQ|ARCA|ETF|91|0.19|3.9|Vanguard Real Estate ETF|0.65
IEF|NASDAQ|ETF|96|0.07|3.7|iShares 7-10 Year Treasury Bond ETF|-0.15
TQQQ|NASDAQ|ETF|100|0.62|0.6|ProShares UltraPro QQQ|0.92
"""

# symbol | exchange | "Index" | level | annual vol | dividend yield % | long name | market correlation
_INDICES = """
SPX|CBOE|Index|6650|0.16|1.2|S&P 500 Stock Index|1.0
XSP|CBOE|Index|665|0.16|1.2|Mini-SPX Index|1.0
NDX|CBOE|Index|24500|0.21|0.6|NASDAQ 100 Stock Index|0.92
RUT|CBOE|Index|2450|0.23|1.1|Russell 2000 Stock Index|0.85
VIX|CBOE|Index|17|0.95|0.0|CBOE Volatility Index|-0.8
"""


def _parse(table: str, *, sec_type: SecType) -> list[Underlying]:
    rows = []
    for line in table.strip().splitlines():
        if not line or line.startswith("#"):
            continue
        cells = line.split("|")
        symbol, exchange, sector_code, price, vol, dividend_pct, name = cells[:7]
        sector = GICS_SECTORS.get(sector_code, sector_code)
        correlation = float(cells[7]) if len(cells) > 7 else _SECTOR_MARKET_CORRELATION[sector]
        rows.append(
            Underlying(
                symbol=symbol,
                sec_type=sec_type,
                primary_exchange=exchange,
                sector=sector,
                price=float(price),
                annual_vol=float(vol),
                dividend_yield=float(dividend_pct) / 100.0,
                con_id=con_id_for(symbol),
                long_name=name,
                market_correlation=correlation,
            )
        )
    return rows


DEFAULT_UNIVERSE = Universe(
    _parse(_STOCKS, sec_type=SecType.STK)
    + _parse(_ETFS, sec_type=SecType.STK)
    + _parse(_INDICES, sec_type=SecType.IND)
)

#: symbol -> sector for every default underlying (GICS sector, "ETF" or "Index"); the
#: default sector map for concentration limits.
SECTOR_BY_SYMBOL: dict[str, str] = DEFAULT_UNIVERSE.sector_map()

#: The S&P 500 members of the default universe.
SP500_SYMBOLS: tuple[str, ...] = tuple(
    sorted(u.symbol for u in DEFAULT_UNIVERSE if u.sector in GICS_SECTORS.values())
)
