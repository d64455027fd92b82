"""Benchmark: import a 1,000,000-execution Activity Flex statement in under 15 s.

Goals (issue 6):

1. parse + deduplicate (by execution id) + match lifecycles + store in the ledger, of a
   generated Activity statement with 1,000,000 executions, in under 15 s. "Store" is the
   real import service (trading_pipeline.history.imports.import_statement) on a fresh
   SQLite ledger in a temporary folder, in its real configuration (WAL, synchronous as the
   ledger sets it): the raw executions (typed columns, and every element's text compressed
   per import session), the OptionEAE rows, the import session, and the lifecycles and gaps
   rebuilt from the stored executions, in one transaction, committed. The import service
   does the deduplication and matching itself, so goal 1's total is parse + import.
2. parsing alone at least 5x faster than ibflex on the same file, measured in the same run.

Printed besides, not part of goal 1: parse + deduplicate + match in memory (no ledger: the
figure earlier sessions reported), and a rebuild of the lifecycles from the stored ledger.

The statement is generated here (not timed): an Activity statement as IBKR writes it,
one ``<Trade>`` per line with the attributes of IBKR's Trades section (``--fields all``,
the default: 53 attributes, about 1.1 kB a line; ``--fields taad``: the 30 a TAAD query
needs), made of lifecycles of every kind the importer handles: STO+BTC, partial fills
and partial closes, expirations (BookTrade "Ep" at 16:20), assignments and exercises
(with the stock BookTrade and OptionEAE rows), BTO+STC, cancel-and-correct, positions
still open, and closings whose opening is before the statement (gaps).

    .venv/bin/python benchmarks/taad.py [--executions N] [--fields all|taad] [--skip-ibflex]
        [--ibflex-executions M] [--skip-reference] [--strict]

Both parsers read the same file from disk (ibflex given the path: given the bytes, its
ElementTree feed of a 1.1 GB document fails with expat's "out of memory"). ibflex runs in
a child process on the same file by default (several minutes and several GB of memory for
a million executions); ``--ibflex-executions M`` compares on an M-execution statement
instead (reported as such, with our parser timed on that file too).
Exits 0 unless ``--strict`` is given and a goal is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from trading_pipeline.core.lifecycles import deduplicate_executions, match_lifecycles
from trading_pipeline.history.imports import import_statement, rebuild_lifecycles
from trading_pipeline.ingest.flex import read_flex
from trading_pipeline.ledger import make_engine, migrate

EXECUTIONS = 1_000_000
GOAL_SECONDS = 15.0
GOAL_RATIO = 5.0
ACCOUNT = "U7654321"

# IBKR's Trades section, execution level, in IBKR's attribute order. "taad": the subset a
# TAAD Flex query selects.
ALL_FIELDS = (
    "accountId acctAlias model currency fxRateToBase assetCategory symbol description conid securityID "
    "underlyingConid underlyingSymbol multiplier strike expiry putCall tradeID reportDate dateTime tradeDate "
    "settleDateTarget transactionType exchange quantity tradePrice tradeMoney proceeds taxes ibCommission "
    "ibCommissionCurrency netCash closePrice openCloseIndicator notes cost fifoPnlRealized mtmPnl origTradePrice "
    "origTradeDate origTradeID origOrderID transactionID buySell ibOrderID ibExecID brokerageOrderID "
    "orderReference exchOrderId extExecID orderTime levelOfDetail orderType isAPIOrder"
).split()
TAAD_FIELDS = (
    "accountId currency fxRateToBase assetCategory symbol description conid underlyingSymbol multiplier strike "
    "expiry putCall tradeID dateTime tradeDate transactionType quantity tradePrice ibCommission "
    "ibCommissionCurrency openCloseIndicator notes origTradeID transactionID buySell ibOrderID ibExecID "
    "orderTime levelOfDetail orderType"
).split()

UNDERLYINGS = [f"{a}{b}{c}" for a in "ABCDEFGHKLMNPRSTVWXZ" for b in "AEIOU" for c in ("", "X")]


class StatementWriter:
    """Writes executions as IBKR Activity Flex ``<Trade>`` lines."""

    def __init__(self, fields: list[str], seed: int):
        self.fields = fields
        self.random = random.Random(seed)
        self.lines: list[str] = []
        self.option_events: list[str] = []
        self.next_id = 1_000_000_000
        self.template = "<Trade " + " ".join(f'{name}="{{{name}}}"' for name in fields) + " />"

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def execution(
        self,
        *,
        contract: dict,
        when: datetime,
        side: str,
        contracts: int,
        price: float,
        open_close: str,
        notes: str = "",
        transaction_type: str = "ExchTrade",
        order_id: int | None = None,
        trade_id: int | None = None,
        exec_id: str | None = None,
        orig_trade_id: str = "",
        commission: float | None = None,
        cancel: bool = False,
    ) -> dict:
        trade_id = self.new_id() if trade_id is None else trade_id
        order_id = self.new_id() if order_id is None else order_id
        exec_id = exec_id or f"0000{trade_id:08x}.{order_id % 0xFFFFFFFF:08x}.01.01"
        sign = 1 if side == "BUY" else -1
        multiplier = contract["multiplier"]
        money = round(sign * contracts * price * multiplier, 2)
        commission = -round(0.65 * contracts, 4) if commission is None else commission
        stamp = when.strftime("%Y%m%d;%H%M%S")
        values = {
            "accountId": ACCOUNT,
            "acctAlias": "",
            "model": "Independent",
            "currency": "USD",
            "fxRateToBase": "1",
            "assetCategory": contract["category"],
            "symbol": contract["symbol"],
            "description": contract["description"],
            "conid": contract["conid"],
            "securityID": "",
            "underlyingConid": contract["underlying_conid"],
            "underlyingSymbol": contract["underlying"],
            "multiplier": multiplier,
            "strike": contract["strike"],
            "expiry": contract["expiry"],
            "putCall": contract["right"],
            "tradeID": "" if cancel else trade_id,
            "reportDate": when.strftime("%Y%m%d"),
            "dateTime": stamp,
            "tradeDate": when.strftime("%Y%m%d"),
            "settleDateTarget": (when + timedelta(days=1)).strftime("%Y%m%d"),
            "transactionType": transaction_type,
            "exchange": "--" if transaction_type == "BookTrade" else "CBOE",
            "quantity": sign * contracts,
            "tradePrice": f"{price:g}",
            "tradeMoney": money,
            "proceeds": -money,
            "taxes": 0,
            "ibCommission": commission,
            "ibCommissionCurrency": "USD",
            "netCash": round(-money + commission, 4),
            "closePrice": f"{price:g}",
            "openCloseIndicator": open_close,
            "notes": notes,
            "cost": round(money - commission, 4),
            "fifoPnlRealized": 0,
            "mtmPnl": 0,
            "origTradePrice": 0,
            "origTradeDate": "",
            "origTradeID": orig_trade_id,
            "origOrderID": 0,
            "transactionID": self.new_id(),
            "buySell": f"{side} (Ca.)" if cancel else side,
            "ibOrderID": order_id,
            "ibExecID": exec_id,
            "brokerageOrderID": f"002e.{order_id:08x}.01",
            "orderReference": "",
            "exchOrderId": "N/A",
            "extExecID": f"{trade_id}S",
            "orderTime": stamp,
            "levelOfDetail": "EXECUTION",
            "orderType": "LMT",
            "isAPIOrder": "Y",
        }
        self.lines.append(self.template.format(**values))
        return {"trade_id": trade_id, "order_id": order_id, "exec_id": exec_id}

    def option_event(self, contract: dict, when: datetime, kind: str, contracts: int, trade_id: int) -> None:
        self.option_events.append(
            f'<OptionEAE accountId="{ACCOUNT}" currency="USD" assetCategory="OPT" symbol="{contract["symbol"]}" '
            f'description="{contract["description"]}" conid="{contract["conid"]}" '
            f'underlyingSymbol="{contract["underlying"]}" multiplier="100" strike="{contract["strike"]}" '
            f'expiry="{contract["expiry"]}" putCall="{contract["right"]}" date="{when:%Y%m%d}" '
            f'transactionType="{kind}" quantity="{contracts}" tradePrice="0" markPrice="0" realizedPnl="0" '
            f'tradeID="{trade_id}" />'
        )


def contract_for(index: int) -> dict:
    underlying = UNDERLYINGS[index % len(UNDERLYINGS)]
    strike = 20 + 5 * ((index // len(UNDERLYINGS)) % 80)
    expiry = date(2025, 1, 3) + timedelta(weeks=(index // (len(UNDERLYINGS) * 80)) % 60)
    right = "P" if index % 7 else "C"
    occ = f"{underlying:<6}{expiry:%y%m%d}{right}{strike * 1000:08d}"
    return {
        "category": "OPT",
        "symbol": occ,
        "description": f"{underlying} {expiry:%d%b%y}".upper() + f" {strike} {right}",
        "conid": 300_000_000 + index,
        "underlying_conid": 1000 + index % len(UNDERLYINGS),
        "underlying": underlying,
        "multiplier": 100,
        "strike": strike,
        "expiry": f"{expiry:%Y%m%d}",
        "right": right,
        "expiry_date": expiry,
    }


def generate_activity_statement(executions: int, *, fields: list[str] = ALL_FIELDS, seed: int = 2026) -> bytes:
    """An Activity statement with (at least) ``executions`` Trade rows of mixed lifecycles."""
    writer = StatementWriter(list(fields), seed)
    rng = writer.random
    index = 0
    while len(writer.lines) < executions:
        contract = contract_for(index)
        index += 1
        expiry = contract["expiry_date"]
        opened = datetime.combine(expiry - timedelta(days=rng.randint(5, 40)), datetime.min.time()) + timedelta(
            hours=9, minutes=31 + rng.randint(0, 300)
        )
        contracts = rng.randint(1, 10)
        premium = round(rng.uniform(0.2, 6.0), 2)
        kind = rng.random()
        expiration_time = datetime.combine(expiry, datetime.min.time()) + timedelta(hours=16, minutes=20)
        if kind < 0.30:  # STO + BTC
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts, price=premium,
                             open_close="O")
            writer.execution(contract=contract, when=opened + timedelta(days=3), side="BUY", contracts=contracts,
                             price=round(premium / 2, 2), open_close="C")
        elif kind < 0.42:  # STO in two fills, closed in two orders (partial closes)
            order = writer.new_id()
            first = max(1, contracts // 2)
            writer.execution(contract=contract, when=opened, side="SELL", contracts=first, price=premium,
                             open_close="O", notes="P", order_id=order)
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts + 1 - first,
                             price=premium, open_close="O", order_id=order)
            writer.execution(contract=contract, when=opened + timedelta(days=2), side="BUY", contracts=first,
                             price=round(premium * 0.4, 2), open_close="C")
            writer.execution(contract=contract, when=opened + timedelta(days=4), side="BUY",
                             contracts=contracts + 1 - first, price=round(premium * 0.3, 2), open_close="C")
        elif kind < 0.64:  # STO + expiration
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts, price=premium,
                             open_close="O")
            ids = writer.execution(contract=contract, when=expiration_time, side="BUY", contracts=contracts,
                                   price=0.0, open_close="C", notes="Ep", transaction_type="BookTrade",
                                   commission=0.0)
            writer.option_event(contract, expiration_time, "Expiration", contracts, ids["trade_id"])
        elif kind < 0.72:  # STO + assignment (option row + stock row)
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts, price=premium,
                             open_close="O")
            ids = writer.execution(contract=contract, when=expiration_time, side="BUY", contracts=contracts,
                                   price=0.0, open_close="C", notes="A", transaction_type="BookTrade",
                                   commission=0.0)
            stock = {**contract, "category": "STK", "symbol": contract["underlying"], "multiplier": 1,
                     "strike": "", "expiry": "", "right": "", "conid": contract["underlying_conid"],
                     "description": contract["underlying"]}
            writer.execution(contract=stock, when=expiration_time, side="BUY", contracts=100 * contracts,
                             price=float(contract["strike"]), open_close="O", notes="A",
                             transaction_type="BookTrade", commission=0.0)
            writer.option_event(contract, expiration_time, "Assignment", contracts, ids["trade_id"])
        elif kind < 0.82:  # BTO + STC
            writer.execution(contract=contract, when=opened, side="BUY", contracts=contracts, price=premium,
                             open_close="O")
            writer.execution(contract=contract, when=opened + timedelta(days=1), side="SELL", contracts=contracts,
                             price=round(premium * 1.2, 2), open_close="C")
        elif kind < 0.86:  # BTO + expiration
            writer.execution(contract=contract, when=opened, side="BUY", contracts=contracts, price=premium,
                             open_close="O")
            writer.execution(contract=contract, when=expiration_time, side="SELL", contracts=contracts, price=0.0,
                             open_close="C", notes="Ep", transaction_type="BookTrade", commission=0.0)
        elif kind < 0.89:  # BTO + exercise
            writer.execution(contract=contract, when=opened, side="BUY", contracts=contracts, price=premium,
                             open_close="O")
            writer.execution(contract=contract, when=expiration_time, side="SELL", contracts=contracts, price=0.0,
                             open_close="C", notes="Ex", transaction_type="BookTrade", commission=0.0)
        elif kind < 0.93:  # cancel-and-correct, then BTC
            original = writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts,
                                        price=premium, open_close="O")
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts, price=premium,
                             open_close="O", notes="Ca", transaction_type="TradeCancel",
                             orig_trade_id=str(original["trade_id"]), cancel=True,
                             exec_id=original["exec_id"][:-2] + "99", commission=0.65 * contracts)
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts,
                             price=round(premium + 0.05, 2), open_close="O", trade_id=original["trade_id"],
                             order_id=original["order_id"], exec_id=original["exec_id"][:-2] + "02",
                             commission=0.1)
            writer.execution(contract=contract, when=opened + timedelta(days=5), side="BUY", contracts=contracts,
                             price=round(premium / 3, 2), open_close="C")
        elif kind < 0.97:  # still open
            writer.execution(contract=contract, when=opened, side="SELL", contracts=contracts, price=premium,
                             open_close="O")
        else:  # closing whose opening is before the statement: a gap
            writer.execution(contract=contract, when=opened, side="BUY", contracts=contracts,
                             price=round(premium / 2, 2), open_close="C")
    head = (
        '<FlexQueryResponse queryName="TAAD benchmark" type="AF">\n<FlexStatements count="1">\n'
        f'<FlexStatement accountId="{ACCOUNT}" fromDate="20241101" toDate="20260331" period="Custom" '
        'whenGenerated="20260401;080000">\n<Trades>\n'
    )
    option_events = "\n".join(writer.option_events)
    tail = (
        f"\n</Trades>\n<OptionEAE>\n{option_events}\n</OptionEAE>\n"
        "</FlexStatement>\n</FlexStatements>\n</FlexQueryResponse>\n"
    )
    return (head + "\n".join(writer.lines) + tail).encode("utf-8")


AS_OF = date(2026, 4, 1)
IMPORTED_AT = datetime(2026, 4, 1, 12, 0, tzinfo=timezone.utc)


def import_once(path: Path, ledger_file: Path, *, reference: bool = True) -> dict:
    """Seconds of one import: parse, then the import service's steps (deduplicate against the
    ledger, store executions and option events, match, store lifecycles, commit), the
    totals, and what it found. ``reference``: also parse + deduplicate + match in memory."""
    timings: dict = {}
    started, started_cpu = time.perf_counter(), time.process_time()
    statement = read_flex(path)
    timings["parse"] = time.perf_counter() - started
    timings["parse cpu"] = time.process_time() - started_cpu

    engine = make_engine(f"sqlite:///{ledger_file}")
    migrate(engine)  # an empty ledger at head: not timed
    steps: dict[str, float] = {}
    steps_cpu: dict[str, float] = {}
    mark, mark_cpu = time.perf_counter(), time.process_time()
    result = import_statement(engine, statement, source="file", file_name=path.name, at=IMPORTED_AT,
                              timings=steps, cpu_timings=steps_cpu)
    timings["import"] = time.perf_counter() - mark
    timings["import cpu"] = time.process_time() - mark_cpu
    timings["steps"] = steps
    timings["steps cpu"] = steps_cpu
    timings["total"] = timings["parse"] + timings["import"]
    timings["total cpu"] = timings["parse cpu"] + timings["import cpu"]
    timings["executions"] = statement.executions.height
    timings["invalid"] = statement.invalid_executions.height
    timings["cancelled"] = int(statement.executions["cancelled"].sum())
    timings["stored"] = result.new
    timings["option events"] = result.option_events_new
    timings["lifecycles"] = result.rebuild["lifecycles"] if result.rebuild else 0
    timings["gaps"] = result.rebuild["gaps"] if result.rebuild else 0
    timings["ledger MB"] = ledger_file.stat().st_size / 1e6
    wal = ledger_file.with_name(ledger_file.name + "-wal")
    timings["wal MB"] = wal.stat().st_size / 1e6 if wal.exists() else 0.0  # kept at its size after checkpoints

    mark = time.perf_counter()
    rebuilt = rebuild_lifecycles(engine, as_of=AS_OF, at=IMPORTED_AT)
    timings["rebuild from ledger"] = time.perf_counter() - mark
    timings["rebuild lifecycles"] = rebuilt["lifecycles"]
    engine.dispose()

    if reference:
        gc.collect()
        mark = time.perf_counter()
        unique = deduplicate_executions(statement.valid_executions)
        matched = match_lifecycles(unique, as_of=AS_OF)
        timings["reference dedupe+match"] = time.perf_counter() - mark
        timings["reference lifecycles"] = matched.lifecycles.height
    return timings


# ibflex runs in a child process: it holds the whole document as an ElementTree and one
# dataclass per row (several GB for a million rows), and a failure there must not end this
# run. The child times only ibflex.parser.parse(path).
IBFLEX_CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")  # ibflex warns once per unknown attribute
from ibflex import parser
started = time.perf_counter()
response = parser.parse(sys.argv[1])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "trades": sum(len(s.Trades) for s in response.FlexStatements)}))
"""


def time_ibflex(path: Path) -> tuple[float | None, str]:
    """(seconds, note) of ibflex parsing the file at ``path``; None when it could not."""
    try:
        done = subprocess.run([sys.executable, "-c", IBFLEX_CHILD, str(path)], capture_output=True, text=True)
    except OSError as exc:
        return None, f"could not start: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed: {last}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], f"{result['trades']:,} trades"


def ibflex_version() -> str:
    try:
        return version("ibflex")
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=EXECUTIONS)
    parser.add_argument("--fields", choices=("all", "taad"), default="all")
    parser.add_argument("--skip-ibflex", action="store_true")
    parser.add_argument("--ibflex-executions", type=int, default=None,
                        help="compare with ibflex on a statement of this many executions instead of the full one")
    parser.add_argument("--skip-reference", action="store_true",
                        help="skip the in-memory parse + deduplicate + match reference figure")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    options = parser.parse_args(argv)
    fields = ALL_FIELDS if options.fields == "all" else TAAD_FIELDS

    print(f"generating an Activity statement of {options.executions:,} executions ({len(fields)} attributes) ...",
          flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "benchmark_activity.xml"
        path.write_bytes(generate_activity_statement(options.executions, fields=fields))
        print(f"  {path.stat().st_size / 1e6:,.0f} MB at {path}")
        gc.collect()

        timings = import_once(path, Path(folder) / "ledger.sqlite", reference=not options.skip_reference)
        print(f"import of {timings['executions']:,.0f} executions ({timings['cancelled']:,.0f} cancelled, "
              f"{timings['invalid']:,.0f} invalid): {timings['stored']:,.0f} stored, "
              f"{timings['option events']:,.0f} option events, {timings['lifecycles']:,.0f} lifecycles, "
              f"{timings['gaps']:,.0f} gaps; ledger file {timings['ledger MB']:,.0f} MB "
              f"(write-ahead log {timings['wal MB']:,.0f} MB)")
        print(f"  {'parse':<40} {timings['parse']:7.2f} s wall  {timings['parse cpu']:7.2f} s cpu (all threads)")
        for step, seconds in timings["steps"].items():
            print(f"    {step:<38} {seconds:7.2f} s wall  {timings['steps cpu'].get(step, 0.0):7.2f} s cpu")
        print(f"  {'import (the steps above)':<40} {timings['import']:7.2f} s wall  "
              f"{timings['import cpu']:7.2f} s cpu (all threads)")
        print(f"  {'total: parse + import':<40} {timings['total']:7.2f} s wall  {timings['total cpu']:7.2f} s cpu")
        print(f"  (parse includes reading the file; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        import_ok = timings["total"] < GOAL_SECONDS
        print(f"goal 1: parse + deduplicate + match + store < {GOAL_SECONDS:.0f} s: "
              f"{timings['total']:.2f} s -> {'met' if import_ok else 'MISSED'}")
        if "reference dedupe+match" in timings:
            in_memory = timings["parse"] + timings["reference dedupe+match"]
            print(f"  for reference, not goal 1: parse + deduplicate + match in memory, no ledger: {in_memory:.2f} s "
                  f"({timings['reference lifecycles']:,.0f} lifecycles)")
        print(f"  for reference, not goal 1: rebuild of the lifecycles from the stored ledger: "
              f"{timings['rebuild from ledger']:.2f} s ({timings['rebuild lifecycles']:,.0f} lifecycles)")

        ratio_ok = True
        if not options.skip_ibflex:
            compared, ours = path, timings["parse"]
            if options.ibflex_executions:
                compared = Path(folder) / "benchmark_prefix.xml"
                compared.write_bytes(generate_activity_statement(options.ibflex_executions, fields=fields))
                started = time.perf_counter()
                read_flex(compared)
                ours = time.perf_counter() - started
                print(f"compared with ibflex on a {options.ibflex_executions:,}-execution statement "
                      f"(not the full one): ours {ours:.2f} s")
            print(f"timing ibflex {ibflex_version()} on the same file (a few minutes per million rows) ...",
                  flush=True)
            theirs, note = time_ibflex(compared)
            if theirs is None:
                print(f"  ibflex {note}")
                ratio_ok = False
            else:
                ratio = theirs / ours
                ratio_ok = ratio >= GOAL_RATIO
                print(f"  ibflex {theirs:.2f} s ({note}) vs ours {ours:.2f} s: {ratio:.1f}x")
                print(f"goal 2: parsing >= {GOAL_RATIO:.0f}x faster than ibflex: {'met' if ratio_ok else 'MISSED'}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process {peak:,.0f} MB")
    if options.strict and not (import_ok and ratio_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
