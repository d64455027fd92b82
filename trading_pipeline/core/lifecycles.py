"""Trade lifecycles from executions: cancellations, deduplication and FIFO matching.

Pure functions over polars frames in the layout of
:data:`trading_pipeline.ingest.flex.EXECUTION_COLUMNS` (no I/O, no clock: "today" is the
``as_of`` argument).

* :func:`link_cancellations`: a cancellation (``is_cancellation``, IBKR's ``TradeCancel``)
  cancels the earliest not yet cancelled execution before it, in the order given, with
  ``trade_id`` equal to its ``orig_trade_id`` in the same account. Both are marked
  ``cancelled``; the rebooked execution that follows keeps counting. A cancellation whose
  original is not in the frame (outside the imported window) cancels nothing here.
* :func:`deduplicate_executions`: one row per execution id (a cancellation is never a
  duplicate of the execution it cancels, even should both carry the same id).
* :func:`match_lifecycles`: option lifecycles keyed by (account, underlying, right,
  strike, expiry), short side (STO, then BTC / expiration / assignment) and long side
  (BTO, then STC / expiration / exercise).

Matching rules:

* Executions count only when valid (``error`` null) and not ``cancelled``; only options
  (``put_call`` set) are matched.
* Opening or closing comes from ``open_close``; expiration, assignment and exercise rows
  close. Without an indicator (IBKR's ``C;O``, or a file without indicators) the position
  decides: against an open position the execution closes up to its size and the rest
  opens the other side.
* A BUY closes the short side, a SELL the long side. Closings consume openings first in,
  first out, and only openings before them. A closing (or the part of one) with nothing
  open before it is a **gap**: its opening lies outside the imported window. It is
  reported in ``gaps``, not dropped, and does not consume later openings.
* A lifecycle is one opening (the fills of one opening order, or one execution when the
  order is unknown) with its closings of one exit type; what is still open forms a
  lifecycle with exit type "open". An opening closed partly by BTC and partly by
  expiration gives two lifecycles, each with its share of the opening.
* Confidence: BTC/STC 1.0 when one closing order closes the whole opening, 0.9 otherwise
  (partial closes); expiration 0.95; assignment and exercise 0.85; open: null.
* Prices are per share as IBKR prints them; P&L is price difference x contracts x
  multiplier (short: open - close, long: close - open), in the contract's currency.
  Assignment and exercise close the option at the booked price (0 at IBKR): the P&L is
  the option leg's; the stock leg is a position of its own. ``commissions`` are costs
  (positive when paid, IBKR prints them negative), each execution's commission shared
  by contracts; ``net_pnl`` = ``gross_pnl`` - ``commissions``. Open lifecycles have no
  close price and no P&L. The commission of a cancelled booking (the cancelled execution
  and its cancellation, net) belongs to the execution that rebooked it.
* An open lifecycle whose expiry is before ``as_of`` is flagged
  ``expiry_passed_without_close``: its closing is missing from the import.

* Executions are taken in time order (``date_time_utc``); at the same time, in the order
  given. ``cancelled`` is taken as given: a caller combining several imports runs
  :func:`link_cancellations` (and :func:`deduplicate_executions`) on the union first.

Everything is vectorized (sorts, running sums and one interval intersection, no loop over
executions or cancellations), and works on numbers: texts are coded (order ids by their
number when they are plain decimal numbers, as IBKR's are) and read back only for what is
reported. A million executions match in about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

KEY = ("account", "underlying", "right", "strike", "expiry")

CONFIDENCE = {
    "full": 1.0,
    "partial": 0.9,
    "expiration": 0.95,
    "assignment": 0.85,
    "exercise": 0.85,
}

EXPIRY_PASSED_FLAG = "expiry_passed_without_close"
GAP_REASON = "closing without an opening in the imported executions (opened before the window?)"

LIFECYCLE_COLUMNS: dict[str, pl.DataType] = {
    "lifecycle_id": pl.String(),  # first opening execution id + ":" + exit type
    "account": pl.String(),
    "underlying": pl.String(),
    "right": pl.String(),  # "P" / "C"
    "strike": pl.Float64(),
    "expiry": pl.Date(),
    "side": pl.String(),  # "short" / "long"
    "quantity": pl.Int64(),  # contracts
    "open_price": pl.Float64(),
    "close_price": pl.Float64(),
    "exit_type": pl.String(),  # btc, stc, expiration, assignment, exercise, open
    "open_date": pl.Date(),
    "close_date": pl.Date(),
    "multiplier": pl.Float64(),
    "currency": pl.String(),
    "gross_pnl": pl.Float64(),
    "commissions": pl.Float64(),
    "net_pnl": pl.Float64(),
    "confidence": pl.Float64(),
    "flag": pl.String(),
    "open_exec_ids": pl.List(pl.String()),
    "close_exec_ids": pl.List(pl.String()),
}

GAP_COLUMNS: dict[str, pl.DataType] = {
    "account": pl.String(),
    "underlying": pl.String(),
    "right": pl.String(),
    "strike": pl.Float64(),
    "expiry": pl.Date(),
    "side": pl.String(),
    "exec_id": pl.String(),
    "trade_date": pl.Date(),
    "quantity": pl.Int64(),  # contracts closed without an opening
    "exit_type": pl.String(),
    "reason": pl.String(),
}

_CLOSING_EVENTS = ("expiration", "assignment", "exercise")


@dataclass(frozen=True, eq=False)
class Lifecycles:
    """The result of matching: lifecycles (LIFECYCLE_COLUMNS) and gaps (GAP_COLUMNS)."""

    lifecycles: pl.DataFrame
    gaps: pl.DataFrame

    @property
    def closed(self) -> pl.DataFrame:
        return self.lifecycles.filter(pl.col("exit_type") != "open")

    @property
    def open(self) -> pl.DataFrame:
        return self.lifecycles.filter(pl.col("exit_type") == "open")


def deduplicate_executions(executions: pl.DataFrame) -> pl.DataFrame:
    """The first row of each execution id, in the given order (rows without an id stay)."""
    first = pl.struct("exec_id", "is_cancellation").is_first_distinct()
    return executions.filter(pl.col("exec_id").is_null() | first)


def link_cancellations(executions: pl.DataFrame) -> pl.DataFrame:
    """Recompute ``cancelled``, ``cancels_exec_id`` and ``cancelled_by_exec_id``.

    Rows are taken in the order given, which must be the order they happened in (a file's
    order; across imports, import order then file order).
    """
    frame = executions.with_columns(
        pl.col("is_cancellation").fill_null(False).alias("cancelled"),
        pl.lit(None, pl.String).alias("cancels_exec_id"),
        pl.lit(None, pl.String).alias("cancelled_by_exec_id"),
    )
    links = frame.select(  # the few columns linking needs: filtering them is cheap
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("position"),
        "account", "trade_id", "orig_trade_id", "exec_id", "cancelled",
    )
    cancels = links.filter(pl.col("cancelled") & pl.col("orig_trade_id").is_not_null()).select(
        "position", "account", "orig_trade_id", "exec_id"
    )
    if cancels.height == 0:
        return frame
    candidates = links.filter(
        ~pl.col("cancelled") & pl.col("trade_id").is_in(cancels["orig_trade_id"].unique().implode())
    ).select("position", "account", "trade_id", "exec_id")
    # Per account and trade id, in order: each cancellation takes the earliest candidate
    # before it not yet taken, so the k-th cancellation that finds one takes the k-th
    # candidate. It finds none where the candidates before it are used up: where the count
    # of candidates less cancellations reaches a new low below zero (the matcher's gaps).
    queue = pl.concat([
        candidates.with_columns(pl.lit(1, pl.Int64).alias("flow")),
        cancels.rename({"orig_trade_id": "trade_id"}).with_columns(pl.lit(-1, pl.Int64).alias("flow")),
    ]).sort("account", "trade_id", "position")
    queue = queue.with_columns(_group_starts(("account", "trade_id")).alias("start"))
    queue = queue.with_columns(
        _grouped_cum_sum("flow", "start").alias("balance"), pl.col("start").cast(pl.Int64).cum_sum().alias("key")
    )
    low = pl.min_horizontal(_grouped_cum_min("balance", "key", 2 * queue.height + 1), pl.lit(0))
    queue = queue.with_columns(low.alias("low"))
    low_before = pl.when(pl.col("start")).then(0).otherwise(pl.col("low").shift(1))
    queue = queue.with_columns((pl.col("flow") > 0).alias("is_candidate")).filter(
        pl.col("is_candidate") | (pl.col("low") == low_before)  # candidates, cancellations finding one
    )
    # The k-th of each kind within its group: counted per group and kind.
    queue = queue.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("key", "is_candidate").alias("k"))
    pairs = queue.filter(pl.col("is_candidate")).join(
        queue.filter(~pl.col("is_candidate")), on=["key", "k"], how="inner", suffix="_cancel"
    )
    if pairs.height == 0:
        return frame
    cancelled = frame["cancelled"].scatter(pairs["position"], True)
    cancelled_by = frame["cancelled_by_exec_id"].scatter(pairs["position"], pairs["exec_id_cancel"])
    cancels_exec = frame["cancels_exec_id"].scatter(pairs["position_cancel"], pairs["exec_id"])
    return frame.with_columns(cancelled, cancelled_by, cancels_exec)


def match_lifecycles(executions: pl.DataFrame, *, as_of: date | None = None) -> Lifecycles:
    """Match the option executions into lifecycles (see the module's rules)."""
    executions = _with_withdrawn_commissions(executions)
    numbers = _countable_options(executions)
    if numbers.height == 0:
        return Lifecycles(pl.DataFrame(schema=LIFECYCLE_COLUMNS), pl.DataFrame(schema=GAP_COLUMNS))
    rows = _open_and_close_amounts(_in_contract_order(numbers))
    events = _with_gaps(_events(rows))
    segments = _allocate(events)
    # The texts reported are gathered from here at scattered rows: from one contiguous
    # chunk that is many times faster than from several (a concatenation, a Parquet file).
    texts = executions.select(*_TEXT_COLUMNS.values(), "exec_id", "trade_date", "date_time_utc").rechunk()
    return Lifecycles(_lifecycles(segments, rows, events, texts, as_of), _gaps(events, rows, texts))


# --- steps --------------------------------------------------------------------------------
#
# The matching works on numbers only (category codes for texts), sorted by contract and
# time, and reaches back into the executions (column ``source``: the row there) for the
# texts of what it reports.
#
# Rows are sorted by contract (and events by contract and side), so each group is a run of
# consecutive rows. Per-group running sums and minima are computed as global ones that are
# re-based at each group's first row: a few vectorized passes, whatever the number of
# groups (a window function per group is far slower with hundreds of thousands of them).

_EXIT_OF_EVENT = {1: "expiration", 2: "assignment", 3: "exercise"}
# A lifecycle's (and gap's) texts: name -> column of the executions.
_TEXT_COLUMNS = {"account": "account", "underlying": "underlying", "right": "put_call", "strike": "strike",
                 "expiry": "expiry", "currency": "currency"}


def _group_starts(columns: Sequence[str]) -> pl.Expr:
    """True on the first row of each run of equal ``columns`` (rows sorted by them)."""
    return pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in columns]).fill_null(True)


def _grouped_cum_sum(value: str, start: str) -> pl.Expr:
    """Running sum of ``value`` that restarts on rows where ``start`` is true."""
    total = pl.col(value).cum_sum()
    before_group = pl.when(pl.col(start)).then(total - pl.col(value)).forward_fill()
    return total - before_group


def _grouped_cum_min(value: str, group: str, spread: int) -> pl.Expr:
    """Running minimum of ``value`` within runs numbered by ``group`` (ascending).

    Shifting group g down by g x ``spread`` (more than the values' range) puts every
    earlier group above all of g, so the global running minimum stays inside the group.
    """
    shift = pl.col(group).cast(pl.Int64) * spread
    return (pl.col(value) - shift).cum_min() + shift


def _with_withdrawn_commissions(executions: pl.DataFrame) -> pl.DataFrame:
    """Move the commissions of cancelled bookings to the executions that rebooked them.

    A cancelled execution and its cancellation never count as positions, but the money
    they moved does: what was charged for the withdrawn booking, less what the cancellation
    refunded (IBKR may refund it there, or not, and adjust on the rebook). Their net goes
    to the first valid, uncancelled execution with the same account and trade id (the
    rebook). Without a rebook in the frame it stays with no lifecycle.
    """
    if "cancelled" not in executions.columns or not executions["cancelled"].fill_null(False).any():
        return executions
    valid = pl.col("error").is_null() if "error" in executions.columns else pl.lit(True)
    withdrawn = (
        executions.filter(pl.col("cancelled").fill_null(False) & valid)
        .select(
            "account",
            pl.when(pl.col("is_cancellation")).then(pl.col("orig_trade_id")).otherwise(pl.col("trade_id"))
            .alias("trade_id"),
            pl.col("commission").fill_null(0.0),
        )
        .filter(pl.col("trade_id").is_not_null())
        .group_by("account", "trade_id")
        .agg(pl.col("commission").sum().alias("withdrawn"))
    )
    rebooks = (
        executions.with_row_index("position")
        .filter(
            ~pl.col("cancelled").fill_null(False) & valid & pl.col("trade_id").is_in(withdrawn["trade_id"].implode())
        )
        .select("position", "account", "trade_id", "commission")
        .unique(subset=["account", "trade_id"], keep="first", maintain_order=True)
        .join(withdrawn, on=["account", "trade_id"], how="inner")
    )
    if rebooks.height == 0:
        return executions
    adjusted = (rebooks["commission"].fill_null(0.0) + rebooks["withdrawn"]).alias("commission")
    return executions.with_columns(executions["commission"].scatter(rebooks["position"], adjusted))


def _countable_options(executions: pl.DataFrame) -> pl.DataFrame:
    """The numbers matching works on, for the valid, uncancelled option executions in the
    order given; ``source`` is the row in ``executions`` (texts are read from there at the
    end: filtering and sorting text columns costs far more than numbers)."""
    valid = pl.col("put_call").is_not_null() & pl.col("strike").is_not_null() & pl.col("expiry").is_not_null()
    valid = valid & pl.col("underlying").is_not_null() & pl.col("date_time_utc").is_not_null()
    if "error" in executions.columns:
        valid = valid & pl.col("error").is_null()
    if "cancelled" in executions.columns:
        valid = valid & ~pl.col("cancelled").fill_null(False)
    event = pl.col("event")  # coded 1-3 (see _EXIT_OF_EVENT), a trade 0
    return executions.select(
        valid.alias("countable"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source"),
        pl.col("account").cast(pl.Categorical).to_physical().alias("account_code"),
        pl.col("underlying").cast(pl.Categorical).to_physical().alias("underlying_code"),
        (pl.col("put_call") == "P").alias("is_put"),
        "strike",
        "expiry",
        (pl.col("buy_sell") == "BUY").alias("is_buy"),
        pl.col("quantity").abs().round(0).cast(pl.Int64).alias("contracts"),
        # Codes: 0 stands for "none" (null or another text) wherever they are read.
        pl.when(pl.col("open_close") == "O").then(1).when(pl.col("open_close") == "C").then(2).otherwise(0)
        .cast(pl.Int8).alias("indicator"),
        pl.coalesce([*[pl.when(event == name).then(code) for code, name in _EXIT_OF_EVENT.items()], pl.lit(0)])
        .cast(pl.Int8).alias("event_code"),
        "price",
        pl.col("commission").fill_null(0.0),
        "multiplier",
        "date_time_utc",
        "trade_date",
        _opening_units(executions["order_id"]).alias("unit"),
    ).filter(pl.col("countable")).drop("countable")


def _opening_units(order_ids: pl.Series) -> pl.Series:
    """One number per order id (an order's fills are one opening or closing), and a
    negative number of its own for each execution without one.

    IBKR's order ids are decimal numbers: when every id is the plain spelling of its number
    (digits only, no leading zero: as many characters as the number has digits), the
    number is the code (far cheaper than a dictionary of a million texts).
    """
    numbers = order_ids.str.to_integer(base=10, strict=False)
    length = order_ids.str.len_bytes().cast(pl.Int64)
    smallest = pl.lit(10, pl.Int64).pow(pl.lit(length).clip(1, 19) - 1)  # of as many digits
    plain = pl.select((numbers >= 0) & ((length == 1) | (numbers >= smallest))).to_series().fill_null(False)
    if not (plain | order_ids.is_null()).all():
        numbers = order_ids.cast(pl.Categorical).to_physical().cast(pl.Int64)
    own = pl.Series(np.arange(-1, -1 - order_ids.len(), -1, dtype=np.int64))
    return numbers.cast(pl.Int64).zip_with(order_ids.is_not_null(), own)


def _in_contract_order(numbers: pl.DataFrame) -> pl.DataFrame:
    """``numbers`` grouped by contract in time order (then the order given), numbered
    ``row``, with ``key_start`` marking each contract's first row."""
    key = ("account_code", "underlying_code", "is_put", "strike", "expiry")
    # Contracts are grouped by a hash of their key (sorting by one integer is several times
    # faster than by five columns); in the unlikely case two keys share a hash, exactly.
    codes = numbers.with_columns(pl.struct(*key).hash().alias("key_hash"))
    if codes["date_time_utc"].is_sorted():
        # Given in time order already (as imports are): a stable sort by contract keeps it.
        rows = codes.sort("key_hash", maintain_order=True)
    else:
        rows = codes.sort("key_hash", "date_time_utc", "source")
    rows = rows.with_columns(_group_starts(key).alias("key_start"), _group_starts(("key_hash",)).alias("hash_start"))
    if (rows["key_start"] != rows["hash_start"]).any():
        rows = codes.sort(*key, "date_time_utc", "source").with_columns(_group_starts(key).alias("key_start"))
    return rows.drop("key_hash", "hash_start", strict=False).with_row_index("row")


def _open_and_close_amounts(rows: pl.DataFrame) -> pl.DataFrame:
    """Contracts each execution opens and closes (explicit, or inferred from the position)."""
    rows = rows.with_columns(
        pl.when(pl.col("is_buy")).then(pl.col("contracts")).otherwise(-pl.col("contracts")).alias("signed")
    )
    before = _grouped_cum_sum("signed", "key_start") - pl.col("signed")
    opposite = (before * pl.col("signed")) < 0
    inferred_close = pl.when(opposite).then(pl.min_horizontal(pl.col("contracts"), before.abs())).otherwise(0)
    close = (
        pl.when(pl.col("indicator") == 2)
        .then(pl.col("contracts"))
        .when(pl.col("indicator") == 1)
        .then(0)
        .when(pl.col("event_code") > 0)  # expiration, assignment, exercise
        .then(pl.col("contracts"))
        .otherwise(inferred_close)
    )
    return rows.with_columns(close.cast(pl.Int64).alias("closes")).with_columns(
        (pl.col("contracts") - pl.col("closes")).alias("opens"),
        pl.col("key_start").cast(pl.Int64).cum_sum().alias("contract"),
    )


def _events(rows: pl.DataFrame) -> pl.DataFrame:
    """One event per opening or closing part of an execution, sorted by contract, side and
    time; a closing part comes before the opening part of the same execution. A BUY closes
    the short side and opens the long one; a SELL the other way round."""
    parts = rows.select("row", "contract", "is_buy", "closes", "opens")  # filtering copies every column
    closing = parts.filter(pl.col("closes") > 0).select(
        "row", "contract", pl.col("is_buy").alias("is_short"), pl.lit(0, pl.Int8).alias("is_open"),
        pl.col("closes").alias("quantity"),
    )
    opening = parts.filter(pl.col("opens") > 0).select(
        "row", "contract", (~pl.col("is_buy")).alias("is_short"), pl.lit(1, pl.Int8).alias("is_open"),
        pl.col("opens").alias("quantity"),
    )
    # One integer orders them as (contract, is_short, row, is_open) do: far faster to sort.
    rows_count = rows.height
    order = ((pl.col("contract") * 2 + pl.col("is_short")) * rows_count + pl.col("row")) * 2 + pl.col("is_open")
    events = pl.concat([closing, opening]).sort(order)
    events = events.with_columns(_group_starts(("contract", "is_short")).alias("group_start"))
    return events.with_columns(pl.col("group_start").cast(pl.Int64).cum_sum().alias("group"))


def _with_gaps(events: pl.DataFrame) -> pl.DataFrame:
    """Split each closing into the part an earlier opening covers and the gap.

    The position after each event is the running sum of opens minus closes; where that sum
    reaches a new low below zero, the closing went beyond what was open (a gap) by as much
    as the low deepened. Removing gaps keeps the position >= 0 at every step.
    """
    events = events.with_columns(
        pl.when(pl.col("is_open") == 1).then(pl.col("quantity")).otherwise(-pl.col("quantity")).alias("flow")
    )
    spread = 2 * int(events["quantity"].sum()) + 1
    events = events.with_columns(_grouped_cum_sum("flow", "group_start").alias("position"))
    events = events.with_columns(
        pl.min_horizontal(_grouped_cum_min("position", "group", spread), pl.lit(0)).alias("low")
    )
    low_before = pl.when(pl.col("group_start")).then(0).otherwise(pl.col("low").shift(1))
    events = events.with_columns((low_before - pl.col("low")).alias("gap"))
    return events.with_columns(
        pl.when(pl.col("is_open") == 1).then(pl.col("quantity")).otherwise(0).alias("open_quantity"),
        pl.when(pl.col("is_open") == 0).then(pl.col("quantity") - pl.col("gap")).otherwise(0).alias("matched_close"),
    )


def _allocate(events: pl.DataFrame) -> pl.DataFrame:
    """FIFO allocation as an intersection of intervals.

    On one axis the openings, one after another (groups end to end), fill consecutive
    stretches [opened before, opened after). Within its group, the closings, one after
    another, consume the stretch from the group's start; a closing's stretch overlaps
    exactly the openings FIFO gives it. Returns (open event, close event or -1, contracts)
    segments, including what is still open.
    """
    axis = events.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("event"),
        "open_quantity",
        "matched_close",
        pl.col("open_quantity").cum_sum().alias("open_end"),
        _grouped_cum_sum("matched_close", "group_start").alias("close_in_group"),
        "group_start",
    ).select(  # only what the intersection needs: the filters below copy every column
        "event",
        "open_quantity",
        "matched_close",
        "open_end",
        (pl.when(pl.col("group_start")).then(pl.col("open_end") - pl.col("open_quantity")).forward_fill()
         + pl.col("close_in_group")).alias("close_end"),
    )
    opens = axis.filter(pl.col("open_quantity") > 0)
    closes = axis.filter(pl.col("matched_close") > 0)
    open_end = opens["open_end"].to_numpy()
    open_start = open_end - opens["open_quantity"].to_numpy()
    close_end = closes["close_end"].to_numpy()
    close_start = close_end - closes["matched_close"].to_numpy()

    first_open = np.searchsorted(open_end, close_start, side="right")
    last_open = np.searchsorted(open_start, close_end, side="left") - 1
    counts = last_open - first_open + 1
    close_index = np.repeat(np.arange(close_end.size), counts)
    offsets = np.arange(close_index.size) - np.repeat(np.cumsum(counts) - counts, counts)
    open_index = first_open[close_index] + offsets
    matched = np.minimum(open_end[open_index], close_end[close_index]) - np.maximum(
        open_start[open_index], close_start[close_index]
    )
    open_events = opens["event"].to_numpy()
    close_events = closes["event"].to_numpy()
    allocated = np.bincount(open_index, weights=matched, minlength=open_end.size).astype(np.int64)
    remaining = opens["open_quantity"].to_numpy() - allocated
    still_open = remaining > 0
    return pl.DataFrame(
        {
            "open_event": np.concatenate([open_events[open_index], open_events[still_open]]),
            "close_event": np.concatenate([close_events[close_index], np.full(int(still_open.sum()), -1)]),
            "quantity": np.concatenate([matched, remaining[still_open]]).astype(np.int64),
        }
    )


def _lifecycles(
    segments: pl.DataFrame, rows: pl.DataFrame, events: pl.DataFrame, texts: pl.DataFrame, as_of: date | None
) -> pl.DataFrame:
    """One lifecycle per opening and exit type, from the (open, close, contracts) segments.

    ``texts``: the executions' text columns (rows numbered as ``source``)."""
    if segments.height == 0:  # nothing opened (only gaps)
        return pl.DataFrame(schema=LIFECYCLE_COLUMNS)
    event_row = events["row"].to_numpy()
    open_event = segments["open_event"].to_numpy()
    open_row = event_row[open_event]
    close_event = segments["close_event"].to_numpy()
    has_close = close_event >= 0
    close_row = np.where(has_close, event_row[np.where(has_close, close_event, 0)], 0)
    closing = pl.Series(has_close)

    def at_open(name: str) -> pl.Series:
        return rows[name].gather(open_row)

    def at_close(name: str) -> pl.Series:
        return pl.select(pl.when(closing).then(rows[name].gather(close_row))).to_series()

    frame = pl.DataFrame(
        {
            "quantity": segments["quantity"],
            "side_group": events["group"].gather(open_event),  # contract and side
            "is_short": events["is_short"].gather(open_event),
            "open_row": pl.Series(open_row),
            "open_source": at_open("source"),
            "open_unit": at_open("unit"),
            "open_price": at_open("price"),
            "open_commission_each": at_open("commission") / at_open("contracts"),
            "multiplier": at_open("multiplier"),
            "open_time": at_open("date_time_utc"),
            "open_date": at_open("trade_date"),
            "close_date": at_close("trade_date"),
            "close_source": at_close("source"),
            "close_unit": at_close("unit"),
            "close_price": at_close("price"),
            "close_commission_each": at_close("commission") / at_close("contracts"),
            "close_event": at_close("event_code"),
        }
    )
    direction = pl.when(pl.col("is_short")).then(-1.0).otherwise(1.0)
    exit_code = (  # 0 open, 1-3 the closing events, 4 btc, 5 stc
        pl.when(pl.col("close_source").is_null())
        .then(0)
        .when(pl.col("close_event") > 0)
        .then(pl.col("close_event"))
        .when(pl.col("is_short"))
        .then(4)
        .otherwise(5)
        .cast(pl.Int8)
    )
    frame = frame.with_columns(
        exit_code.alias("exit_code"),
        (direction * (pl.col("close_price") - pl.col("open_price")) * pl.col("quantity") * pl.col("multiplier")).alias(
            "segment_pnl"
        ),
        (
            -(pl.col("open_commission_each") * pl.col("quantity"))
            - (pl.col("close_commission_each").fill_null(0.0) * pl.col("quantity"))
        ).alias("segment_cost"),
    )
    frame = _numbered_lifecycles(frame)
    # Most lifecycles are one segment: they need no grouping (a sum of one number is that
    # number); only the others go through a group_by.
    alone = frame.filter(pl.col("alone")).select(
        "lifecycle",
        "exit_code",
        "is_short",
        "quantity",
        # What the group_by below computes for one row (a sum of nothing but nulls is 0).
        (pl.col("open_price") * pl.col("quantity")).fill_null(0.0).truediv(pl.col("quantity")).alias("open_price"),
        (pl.col("close_price") * pl.col("quantity")).fill_null(0.0).truediv(pl.col("quantity")).alias("close_price"),
        pl.col("segment_pnl").fill_null(0.0).alias("gross_pnl"),
        pl.col("segment_cost").fill_null(0.0).alias("commissions"),
        pl.lit(True).alias("one_closing_unit"),
        pl.col("open_row").alias("first_row"),
        "open_date",
        "close_date",
        "multiplier",
        "open_time",
        pl.col("open_source").alias("open_order"),
        "unit_total",
        "close_source",
    )
    shared = frame.filter(~pl.col("alone"))
    exec_ids = texts["exec_id"]
    shared = shared.with_columns(
        exec_ids.gather(shared["open_source"]).alias("open_exec_id"),
        pl.when(pl.col("close_source").is_not_null())
        .then(pl.lit(exec_ids.gather(shared["close_source"].fill_null(0))))
        .alias("close_exec_id"),
    )
    together = shared.group_by("lifecycle").agg(
        pl.col("exit_code").first(),
        pl.col("is_short").first(),
        pl.col("quantity").sum(),
        ((pl.col("open_price") * pl.col("quantity")).sum() / pl.col("quantity").sum()).alias("open_price"),
        ((pl.col("close_price") * pl.col("quantity")).sum() / pl.col("quantity").sum()).alias("close_price"),
        pl.col("segment_pnl").sum().alias("gross_pnl"),
        pl.col("segment_cost").sum().alias("commissions"),
        # Closed by one closing order: its only closing unit (cheaper than counting them).
        (pl.col("close_unit").min() == pl.col("close_unit").max()).alias("one_closing_unit"),
        pl.col("open_row").min().alias("first_row"),
        pl.col("open_date").min(),
        pl.col("close_date").max(),
        pl.col("multiplier").first(),
        pl.col("open_time").min(),
        pl.col("open_source").min().alias("open_order"),
        pl.col("unit_total").first(),
        pl.lit(None, pl.Int64).alias("close_source"),
        pl.col("open_exec_id").unique(maintain_order=True).alias("open_exec_ids"),
        pl.col("close_exec_id").drop_nulls().unique(maintain_order=True).alias("close_exec_ids"),
    )
    # The result's order first (numbers sort faster than the texts and lists they stand
    # for), then the texts, once per lifecycle, gathered in about the executions' order.
    exit_types = {0: "open", 4: "btc", 5: "stc", **_EXIT_OF_EVENT}
    exit_rank = {code: rank for rank, code in enumerate(sorted(exit_types, key=exit_types.__getitem__))}
    lists = together.select("open_exec_ids", "close_exec_ids")
    grouped = pl.concat(
        [alone.with_columns(pl.lit(None, pl.UInt32).alias("lists_at")),
         together.drop(lists.columns).with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("lists_at"))],
        how="vertical",
    ).rechunk()  # sorting gathers: from one chunk several times faster
    rank = pl.col("exit_code").replace_strict(exit_rank, return_dtype=pl.Int64)
    # Executions in time order (as imports give them): the first opening execution's place
    # orders the lifecycles by time too, and one integer sorts faster than three columns.
    # (Each lifecycle has its own (open_order, exit type), so either order is the same.)
    in_order = grouped.sort(pl.col("open_order") * len(exit_rank) + rank)
    grouped = in_order if in_order["open_time"].is_sorted() else grouped.sort("open_time", "open_order", rank)
    first = rows["source"].gather(grouped["first_row"])
    lists_at = grouped["lists_at"]
    close_exec_id = exec_ids.gather(grouped["close_source"].fill_null(0)).alias("close_exec_id")
    grouped = grouped.with_columns(
        *[texts[column].gather(first).alias(name) for name, column in _TEXT_COLUMNS.items()],
        exec_ids.gather(first).alias("first_open_exec_id"),
        close_exec_id,
    ).with_columns(
        # A lifecycle of one segment lists its opening and closing execution (none: open).
        pl.when(pl.col("lists_at").is_null())
        .then(pl.concat_list("first_open_exec_id"))
        .otherwise(pl.lit(lists["open_exec_ids"].gather(lists_at)))
        .alias("open_exec_ids"),
        pl.when(pl.col("lists_at").is_not_null())
        .then(pl.lit(lists["close_exec_ids"].gather(lists_at)))
        .when(pl.col("close_source").is_not_null() & pl.col("close_exec_id").is_not_null())
        .then(pl.concat_list("close_exec_id"))
        .otherwise(pl.lit([], pl.List(pl.String)))
        .alias("close_exec_ids"),
    ).with_columns(
        pl.col("exit_code").replace_strict(exit_types, return_dtype=pl.String).alias("exit_type"),
        pl.when(pl.col("is_short")).then(pl.lit("short")).otherwise(pl.lit("long")).alias("side"),
    )
    is_open = pl.col("exit_type") == "open"
    confidence = (
        pl.when(is_open)
        .then(None)
        .when(pl.col("exit_type").is_in(list(_EXIT_OF_EVENT.values())))
        .then(pl.col("exit_type").replace_strict(CONFIDENCE, default=None, return_dtype=pl.Float64))
        .when((pl.col("quantity") == pl.col("unit_total")) & pl.col("one_closing_unit"))
        .then(CONFIDENCE["full"])
        .otherwise(CONFIDENCE["partial"])
    )
    flag = pl.lit(None, pl.String)
    if as_of is not None:
        flag = pl.when(is_open & (pl.col("expiry") < as_of)).then(pl.lit(EXPIRY_PASSED_FLAG))
    return grouped.select(
        (pl.col("first_open_exec_id") + ":" + pl.col("exit_type")).alias("lifecycle_id"),
        *KEY,
        "side",
        "quantity",
        "open_price",
        pl.when(is_open).then(None).otherwise(pl.col("close_price")).alias("close_price"),
        "exit_type",
        "open_date",
        "close_date",
        "multiplier",
        "currency",
        pl.when(is_open).then(None).otherwise(pl.col("gross_pnl")).alias("gross_pnl"),
        "commissions",
        pl.when(is_open).then(None).otherwise(pl.col("gross_pnl") - pl.col("commissions")).alias("net_pnl"),
        confidence.alias("confidence"),
        flag.alias("flag"),
        "open_exec_ids",
        "close_exec_ids",
    ).cast(LIFECYCLE_COLUMNS)  # type: ignore[arg-type]


def _numbered_lifecycles(frame: pl.DataFrame) -> pl.DataFrame:
    """Number the segments' lifecycles (``lifecycle``) and add the contracts of their
    opening (``unit_total``) and whether the lifecycle is this one segment (``alone``).

    An opening is the fills of one opening order (or one execution) on one contract and
    side; with an exit type, one lifecycle. Sorted by those numbers, each is a run.
    """
    order = frame.select(pl.arg_sort_by("side_group", "open_unit", "exit_code", maintain_order=True)).to_series()
    keys = frame.select("side_group", "open_unit", "exit_code", "quantity")[order]
    side_group, open_unit, exit_code, quantity = (keys[name].to_numpy() for name in keys.columns)
    same_unit = (side_group[1:] == side_group[:-1]) & (open_unit[1:] == open_unit[:-1])
    unit_number = np.cumsum(np.r_[True, ~same_unit]) - 1
    lifecycle_number = np.cumsum(np.r_[True, ~(same_unit & (exit_code[1:] == exit_code[:-1]))]) - 1
    unit_total = np.bincount(unit_number, weights=quantity).astype(np.int64)[unit_number]
    segment_count = np.bincount(lifecycle_number)[lifecycle_number]
    position = order.to_numpy()
    return frame.with_columns(
        pl.Series("lifecycle", _scattered(lifecycle_number, position)),
        pl.Series("unit_total", _scattered(unit_total, position)),
        pl.Series("alone", _scattered(segment_count == 1, position)),
    )


def _scattered(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values`` (in some order) put back at their ``positions``."""
    result = np.empty_like(values)
    result[positions] = values
    return result


def _gaps(events: pl.DataFrame, rows: pl.DataFrame, executions: pl.DataFrame) -> pl.DataFrame:
    gaps = events.filter(pl.col("gap") > 0).select("row", "is_short", "gap")
    at = rows["source"].gather(gaps["row"])
    frame = gaps.with_columns(
        *[executions[column].gather(at).alias(name) for name, column in _TEXT_COLUMNS.items() if name in KEY],
        *[executions[name].gather(at) for name in ("exec_id", "trade_date", "date_time_utc")],
        at.alias("given_order"),
        rows["event_code"].gather(gaps["row"]).alias("event_code"),
    )
    exit_type = (
        pl.when(pl.col("event_code") > 0)
        .then(pl.col("event_code").replace_strict(_EXIT_OF_EVENT, default=None, return_dtype=pl.String))
        .when(pl.col("is_short"))
        .then(pl.lit("btc"))
        .otherwise(pl.lit("stc"))
    )
    return (
        frame.sort("date_time_utc", "given_order")
        .select(
            *KEY,
            pl.when(pl.col("is_short")).then(pl.lit("short")).otherwise(pl.lit("long")).alias("side"),
            "exec_id",
            "trade_date",
            pl.col("gap").alias("quantity"),
            exit_type.alias("exit_type"),
            pl.lit(GAP_REASON).alias("reason"),
        )
        .cast(GAP_COLUMNS)  # type: ignore[arg-type]
    )
