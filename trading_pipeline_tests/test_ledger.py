"""Contract of the ledger (trading_pipeline.ledger), on SQLite and on PostgreSQL alike.

- migrations: an empty database migrates to head in one all-or-nothing transaction, the
  result matches schema.py exactly, migrating again changes nothing, concurrent migrations
  are safe, a revision the code does not know is refused; reset empties the ledger's own
  tables (and only those) and returns to head;
- replace_scan stores an import and all its candidates in one transaction, replacing an
  earlier import of the same partition; a failure anywhere leaves the old scan intact;
- every candidate column and dtype survives a round trip; candidates load in the scorer's
  order (selected by rank, then rejected by score, invalid last);
- get_scan / list_scans / table_counts; 100,000 candidates insert in reasonable time;
- the SQLite connection settings (WAL, busy timeout, foreign keys) and the default location.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from polars.testing import assert_frame_equal
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from trading_pipeline.errors import ConfigurationError
from trading_pipeline.ledger import (
    CANDIDATE_SCHEMA,
    current_revision,
    get_scan,
    head_revision,
    list_scans,
    load_candidates,
    make_engine,
    migrate,
    replace_scan,
    reset,
    table_counts,
)
from trading_pipeline.ledger.migrate import MIGRATIONS_DIR
from trading_pipeline.ledger.schema import metadata

UTC = timezone.utc
IMPORTED_AT = datetime(2026, 11, 20, 21, 50, 0, 123456, tzinfo=UTC)


# --- hand-made scans ---------------------------------------------------------------



HEAD = head_revision()


def scan_table_counts(engine) -> dict[str, int]:
    counts = table_counts(engine)
    return {name: counts[name] for name in ("scan_imports", "scan_candidates")}

def scored_frame() -> pl.DataFrame:
    """Five scored rows in file order, covering every kind of row the scorer emits.

    row 2 AAPL selected rank 1; row 3 MSFT selected rank 2; row 4 AAPL rejected by the
    symbol cap (score 80); row 5 invalid (strike did not parse, no scores); row 6 expired
    (dte 0: annualized return is +inf) rejected with score 30.
    """
    third = 1.0 / 3.0  # needs all 17 significant digits to round-trip
    return pl.DataFrame(
        {
            "row": [2, 3, 4, 5, 6],
            "symbol": ["AAPL", "MSFT", "AAPL", "XYZ", "KO"],
            "underlying_price": [230.5, 410.25, 230.5, 12.0, 61.0],
            "expiration": [date(2026, 12, 18), date(2026, 12, 18), date(2027, 1, 15), None, date(2026, 11, 20)],
            "dte_reported": [29, 29, 57, 29, 1],
            "dte": [28, 28, 56, None, 0],
            "strike": [200.0, 370.0, 195.0, None, 60.0],
            "option_type": ["put", "put", "put", "put", "put"],
            "moneyness_pct": [-13.23, -9.81, -15.4, None, -1.64],
            "bid": [2.1, 3.35, 2.9, 0.4, 0.05],
            "breakeven": [197.9, 366.65, 192.1, None, 59.95],
            "breakeven_pct": [-14.14, -10.63, -16.66, None, -1.72],
            "volume": [1520, 310, 45, 0, 9_000_000_000],  # > 2**31: BigInteger on both backends
            "open_interest": [10_400, 2_250, 880, 12, 5],
            "iv_rank_pct": [63.2, 71.0, 63.2, None, 5.5],
            "delta": [-0.18, -0.21, -0.15, None, -0.45],
            "return_pct_reported": [1.06, 0.91, 1.53, None, 0.08],
            "annualized_return_pct_reported": [13.37, 11.45, 9.8, None, 29.2],
            "profit_prob_pct": [84.1, 80.2, 86.0, None, 55.0],
            "otm_pct": [13.232104121475055, 9.810786106032907, 15.401301518438178, None, 1.639344262295082],
            "return_pct": [1.0611419909045984, 0.9137462155870724, third, None, 0.08340283569641367],
            "annualized_return_pct": [13.832743810469657, 11.911334238, 2.1749, None, math.inf],
            "error": [None, None, None, "column 'Strike': not a number 'abc'", None],
            "score_return": [62.5, 48.0, 30.0, None, 0.0],
            "score_pop": [97.0, 86.0, 100.0, None, 0.0],
            "score_iv_rank": [100.0, 100.0, 100.0, None, 10.0],
            "score_liquidity": [100.0, 85.5, 20.0, None, 50.0],
            "score_capital": [53.0, 45.7, 76.5, None, 4.2],
            "score_safety": [100.0, 60.0, 100.0, None, 0.0],
            "score": [88.5, 77.25, 80.0, None, 30.0],
            "grade": ["A+", "A", "A", None, "F"],
            "rank": [1, 2, None, None, None],
            "rejected": [False, False, True, True, True],
            "reason": [
                None,
                None,
                "symbol cap: AAPL already has 1 higher-scored pick (max 1 per symbol)",
                "invalid: column 'Strike': not a number 'abc'",
                "expired (dte 0)",
            ],
        },
        schema=CANDIDATE_SCHEMA,
    )


# The scorer's order of scored_frame(): ranks 1, 2; then rejected by score 80, 30; then
# the invalid row (no score).
SCORER_ORDER_ROWS = [2, 3, 4, 6, 5]


def scan_record(partition_key: str = "2026-11-20_screener.csv", **overrides) -> dict:
    record = {
        "partition_key": partition_key,
        "source_path": "/inbox/barchart/screener.csv",
        "file_name": "screener.csv",
        "sha256": "ab" * 32,
        "export_date": date(2026, 11, 20),
        "export_date_source": "footer",
        "downloaded_at": "11-20-2026 03:45pm CST",
        "top_n": 20,
        "diversify": True,
        "max_per_symbol": 1,
        "min_score": 0.0,
        "dagster_run_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "imported_at": IMPORTED_AT,
    }
    record.update(overrides)
    return record


def synthetic_frame(rows: int) -> pl.DataFrame:
    """rows scored candidates built column-wise (fast), top 20 selected."""
    index = pl.int_range(0, rows, eager=True)
    return pl.DataFrame({"row": index + 2}).with_columns(
        symbol=pl.format("S{}", index % 500),
        underlying_price=100.0 + index.cast(pl.Float64) / 1000.0,
        expiration=pl.lit(date(2026, 12, 18)),
        dte_reported=pl.lit(29, dtype=pl.Int64),
        dte=pl.lit(28, dtype=pl.Int64),
        strike=pl.lit(90.0),
        option_type=pl.lit("put"),
        moneyness_pct=pl.lit(-10.0),
        bid=pl.lit(1.25),
        breakeven=pl.lit(88.75),
        breakeven_pct=pl.lit(-11.25),
        volume=index % 1000,
        open_interest=index % 5000,
        iv_rank_pct=pl.lit(65.0),
        delta=pl.lit(-0.2),
        return_pct_reported=pl.lit(1.41),
        annualized_return_pct_reported=pl.lit(18.4),
        profit_prob_pct=pl.lit(85.0),
        otm_pct=pl.lit(10.0),
        return_pct=pl.lit(1.4124),
        annualized_return_pct=pl.lit(18.41),
        error=pl.lit(None, dtype=pl.String),
        score_return=pl.lit(50.0),
        score_pop=pl.lit(90.0),
        score_iv_rank=pl.lit(100.0),
        score_liquidity=pl.lit(100.0),
        score_capital=pl.lit(70.0),
        score_safety=pl.lit(60.0),
        score=100.0 - index.cast(pl.Float64) / rows,
        grade=pl.lit("B"),
        rank=pl.when(index < 20).then(index + 1),
        rejected=index >= 20,
        reason=pl.when(index >= 20).then(pl.lit("ranked outside the top 20")),
    ).select(list(CANDIDATE_SCHEMA))


# --- migrations --------------------------------------------------------------------


def test_migrations_ship_inside_the_package():
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    # The newest migration file is head.
    assert head_revision() == sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py"))[-1].split("_")[0]


def test_empty_database_migrates_to_head_matching_schema(ledger_url):
    engine = make_engine(ledger_url)
    try:
        assert current_revision(engine) is None
        assert migrate(engine) == HEAD
        assert current_revision(engine) == HEAD

        inspector = inspect(engine)
        assert {"scan_imports", "scan_candidates", "alembic_version"} <= set(inspector.get_table_names())
        assert [index["column_names"] for index in inspector.get_indexes("scan_candidates")] == [
            ["scan_import_id", "rank"]
        ]
        (foreign_key,) = inspector.get_foreign_keys("scan_candidates")
        assert foreign_key["referred_table"] == "scan_imports"
        assert foreign_key["options"].get("ondelete") == "CASCADE"
        # The migrated database and schema.py describe the same tables, columns and types.
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_migrate_again_changes_nothing(ledger_engine):
    scan_id = replace_scan(ledger_engine, scan_record(), scored_frame())
    assert migrate(ledger_engine) == HEAD
    assert migrate(ledger_engine) == HEAD
    assert scan_table_counts(ledger_engine) == {"scan_imports": 1, "scan_candidates": 5}
    assert get_scan(ledger_engine)["id"] == scan_id


def test_failed_migration_leaves_the_database_untouched(ledger_url):
    # A table in the way makes 0001 fail at its second CREATE TABLE; the first one and
    # the version stamp must be rolled back with it (transactional DDL on both backends).
    engine = make_engine(ledger_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE scan_candidates (x INTEGER)"))
        with pytest.raises(Exception, match="scan_candidates"):
            migrate(engine)
        assert set(inspect(engine).get_table_names()) == {"scan_candidates"}
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_concurrent_migrations_both_succeed(ledger_url):
    engines = [make_engine(ledger_url) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[object] = []

    def run(engine):
        start.wait()
        try:
            results.append(migrate(engine))
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert results == [HEAD, HEAD]


def test_unknown_revision_is_refused_and_reset_recovers(ledger_engine):
    with ledger_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ConfigurationError, match=f"revision 9999.*newest is {HEAD}"):
        migrate(ledger_engine)
    assert reset(ledger_engine) == HEAD
    assert current_revision(ledger_engine) == HEAD


def test_reset_empties_the_ledger_and_keeps_other_tables(ledger_engine):
    replace_scan(ledger_engine, scan_record(), scored_frame())
    with ledger_engine.begin() as connection:
        connection.execute(text("CREATE TABLE other_application (note VARCHAR(20))"))
        connection.execute(text("INSERT INTO other_application VALUES ('keep me')"))

    assert reset(ledger_engine) == HEAD

    assert current_revision(ledger_engine) == HEAD
    assert scan_table_counts(ledger_engine) == {"scan_imports": 0, "scan_candidates": 0}
    with ledger_engine.connect() as connection:
        assert connection.execute(text("SELECT note FROM other_application")).scalars().all() == ["keep me"]
    # The recreated tables work.
    replace_scan(ledger_engine, scan_record(), scored_frame())
    assert scan_table_counts(ledger_engine) == {"scan_imports": 1, "scan_candidates": 5}


def test_reset_of_an_empty_database_creates_the_ledger(ledger_url):
    engine = make_engine(ledger_url)
    try:
        assert reset(engine) == HEAD
        assert scan_table_counts(engine) == {"scan_imports": 0, "scan_candidates": 0}
    finally:
        engine.dispose()


# --- replace_scan and reads ----------------------------------------------------------


def test_round_trip_keeps_every_column_value_and_dtype(ledger_engine):
    frame = scored_frame()
    scan_id = replace_scan(ledger_engine, scan_record(), frame.with_columns(debug_note=pl.lit("not stored")))

    loaded = load_candidates(ledger_engine, scan_id)

    assert loaded.schema == pl.Schema(CANDIDATE_SCHEMA)
    assert loaded["row"].to_list() == SCORER_ORDER_ROWS
    expected = frame.sort(pl.col("row").replace_strict({r: i for i, r in enumerate(SCORER_ORDER_ROWS)}))
    assert_frame_equal(loaded, expected, check_exact=True)
    assert loaded["annualized_return_pct"][3] == math.inf
    assert loaded["return_pct"][2] == 1.0 / 3.0


def test_import_record_round_trips_with_counts_from_the_frame(ledger_engine):
    new_york_time = IMPORTED_AT.astimezone(ZoneInfo("America/New_York"))
    scan_id = replace_scan(ledger_engine, scan_record(imported_at=new_york_time), scored_frame())

    stored = get_scan(ledger_engine, scan_import_id=scan_id)

    assert stored == {
        "id": scan_id,
        **scan_record(),
        "total_rows": 5,
        "valid_rows": 4,
        "invalid_rows": 1,
        "selected_rows": 2,
        "rejected_rows": 3,
    }
    # The same instant, given in New York time, comes back in UTC.
    assert stored["imported_at"].tzinfo == UTC
    assert stored["imported_at"] == IMPORTED_AT


def test_replacing_a_partition_replaces_the_import_and_its_candidates(ledger_engine):
    first_id = replace_scan(ledger_engine, scan_record(), scored_frame())
    other_id = replace_scan(ledger_engine, scan_record("2026-11-19_other.csv"), scored_frame())

    second = scored_frame().head(2)
    second_id = replace_scan(ledger_engine, scan_record(sha256="cd" * 32), second)

    assert second_id != first_id
    assert get_scan(ledger_engine, scan_import_id=first_id) is None
    assert load_candidates(ledger_engine, first_id).height == 0  # cascaded away
    assert get_scan(ledger_engine, partition_key="2026-11-20_screener.csv")["sha256"] == "cd" * 32
    assert load_candidates(ledger_engine, second_id)["row"].to_list() == [2, 3]
    assert load_candidates(ledger_engine, other_id).height == 5  # other partitions untouched
    assert scan_table_counts(ledger_engine) == {"scan_imports": 2, "scan_candidates": 7}


def test_failing_candidate_insert_leaves_the_old_scan_intact(ledger_engine):
    old_id = replace_scan(ledger_engine, scan_record(), scored_frame())
    # The last row breaks NOT NULL on `rejected`: the old import was already deleted and
    # the new import and four candidates inserted when it fails.
    broken = scored_frame().with_columns(
        rejected=pl.when(pl.col("row") == 6).then(None).otherwise(pl.col("rejected"))
    )

    with pytest.raises(IntegrityError):
        replace_scan(ledger_engine, scan_record(sha256="ee" * 32), broken)

    assert get_scan(ledger_engine)["id"] == old_id
    assert get_scan(ledger_engine)["sha256"] == "ab" * 32
    assert load_candidates(ledger_engine, old_id).height == 5
    assert scan_table_counts(ledger_engine) == {"scan_imports": 1, "scan_candidates": 5}


def test_failing_import_insert_leaves_the_old_scan_intact(ledger_engine):
    old_id = replace_scan(ledger_engine, scan_record(), scored_frame())

    with pytest.raises(IntegrityError):  # CHECK constraint on export_date_source
        replace_scan(ledger_engine, scan_record(export_date_source="guessed"), scored_frame())

    assert get_scan(ledger_engine)["id"] == old_id
    assert scan_table_counts(ledger_engine) == {"scan_imports": 1, "scan_candidates": 5}


def test_concurrent_replacements_of_one_partition_leave_exactly_one_scan(ledger_engine):
    engines = [make_engine(ledger_engine.url.render_as_string(hide_password=False)) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[Exception] = []

    def run(engine, sha):
        start.wait()
        try:
            replace_scan(engine, scan_record(sha256=sha), scored_frame())
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engine, c * 64)) for engine, c in zip(engines, "12")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert scan_table_counts(ledger_engine) == {"scan_imports": 1, "scan_candidates": 5}


def test_scan_with_no_candidates_is_stored(ledger_engine):
    scan_id = replace_scan(ledger_engine, scan_record(), scored_frame().clear())
    assert get_scan(ledger_engine)["total_rows"] == 0
    loaded = load_candidates(ledger_engine, scan_id)
    assert loaded.height == 0
    assert loaded.schema == pl.Schema(CANDIDATE_SCHEMA)


def test_get_scan_and_list_scans_find_by_key_id_and_recency(ledger_engine):
    older = replace_scan(ledger_engine, scan_record("a", imported_at=IMPORTED_AT - timedelta(days=1)), scored_frame())
    newest = replace_scan(ledger_engine, scan_record("b"), scored_frame())
    middle = replace_scan(ledger_engine, scan_record("c", imported_at=IMPORTED_AT - timedelta(hours=1)), scored_frame())

    assert get_scan(ledger_engine)["id"] == newest  # latest by imported_at, not by id
    assert get_scan(ledger_engine, partition_key="a")["id"] == older
    assert get_scan(ledger_engine, scan_import_id=middle)["partition_key"] == "c"
    assert get_scan(ledger_engine, partition_key="missing") is None
    assert [scan["partition_key"] for scan in list_scans(ledger_engine)] == ["b", "c", "a"]
    assert [scan["partition_key"] for scan in list_scans(ledger_engine, limit=2)] == ["b", "c"]
    with pytest.raises(ValueError, match="not both"):
        get_scan(ledger_engine, partition_key="a", scan_import_id=older)


def test_empty_ledger_reads(ledger_engine):
    assert get_scan(ledger_engine) is None
    assert list_scans(ledger_engine) == []
    assert scan_table_counts(ledger_engine) == {"scan_imports": 0, "scan_candidates": 0}


def test_hundred_thousand_candidates_insert_and_load(ledger_engine):
    frame = synthetic_frame(100_000)
    started = time.perf_counter()
    scan_id = replace_scan(ledger_engine, scan_record(), frame)
    inserted = time.perf_counter()
    loaded = load_candidates(ledger_engine, scan_id)
    loaded_at = time.perf_counter()
    print(
        f"\n{ledger_engine.dialect.name}: insert 100,000 rows {inserted - started:.2f} s, "
        f"load {loaded_at - inserted:.2f} s"
    )
    assert get_scan(ledger_engine)["total_rows"] == 100_000
    assert get_scan(ledger_engine)["selected_rows"] == 20
    # Scorer order: ranks 1..20 first, then the rest by falling score (= file order here).
    assert_frame_equal(loaded, frame)


# --- invalid input ------------------------------------------------------------------------


def test_record_and_frame_problems_are_refused_before_writing(ledger_engine):
    frame = scored_frame()
    with pytest.raises(ValueError, match="naive|timezone-aware"):
        replace_scan(ledger_engine, scan_record(imported_at=datetime(2026, 11, 20, 21, 50)), frame)
    with pytest.raises(ValueError, match="lacks: sha256"):
        record = scan_record()
        del record["sha256"]
        replace_scan(ledger_engine, record, frame)
    with pytest.raises(ValueError, match="unknown scan import fields: colour"):
        replace_scan(ledger_engine, scan_record(colour="red"), frame)
    with pytest.raises(ValueError, match="selected_rows is 3 but the candidate frame has 2"):
        replace_scan(ledger_engine, scan_record(selected_rows=3), frame)
    with pytest.raises(ValueError, match="lacks columns: error, rank"):
        replace_scan(ledger_engine, scan_record(), frame.drop("error", "rank"))
    with pytest.raises(ValueError, match="wrong type"):
        replace_scan(ledger_engine, scan_record(), frame.with_columns(strike=pl.lit("ninety")))
    assert scan_table_counts(ledger_engine) == {"scan_imports": 0, "scan_candidates": 0}


def test_text_with_csv_and_null_markers_round_trips(ledger_engine):
    # The PostgreSQL bulk load goes through CSV with \N as NULL: text that looks like
    # either must come back unchanged, and an empty string must stay a string.
    awkward = {
        "symbol": r"\N",
        "error": 'column \'Strike\': not a number "1,5"\nand a second line',
        "reason": "",
    }
    frame = scored_frame().with_columns(
        **{name: pl.when(pl.col("row") == 5).then(pl.lit(value)).otherwise(pl.col(name)) for name, value in awkward.items()}
    )
    scan_id = replace_scan(ledger_engine, scan_record(), frame)
    stored = load_candidates(ledger_engine, scan_id).filter(pl.col("row") == 5).row(0, named=True)
    assert {name: stored[name] for name in awkward} == awkward


def test_nan_is_stored_as_null_on_both_backends(ledger_engine):
    frame = scored_frame().with_columns(return_pct=pl.when(pl.col("row") == 2).then(float("nan")).otherwise(pl.col("return_pct")))
    scan_id = replace_scan(ledger_engine, scan_record(), frame)
    loaded = load_candidates(ledger_engine, scan_id)
    assert loaded.filter(pl.col("row") == 2)["return_pct"].to_list() == [None]


# --- engine ---------------------------------------------------------------------------------


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'folder' / 'ledger.sqlite'}")
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("busy_timeout") == 30_000
            assert pragma("foreign_keys") == 1
        assert (tmp_path / "nested" / "folder" / "ledger.sqlite").is_file()
    finally:
        engine.dispose()


def test_default_ledger_is_sqlite_under_the_project_home(isolated_home):
    engine = make_engine()
    try:
        assert engine.dialect.name == "sqlite"
        assert migrate(engine) == HEAD
        assert (isolated_home / "data" / "ledger.sqlite").is_file()
    finally:
        engine.dispose()


def test_bare_postgresql_url_uses_the_installed_psycopg2_driver():
    engine = make_engine("postgresql://user:pw@127.0.0.1:1/ledger")  # no connection is made
    assert engine.dialect.driver == "psycopg2"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://user:hunter2@db/ledger", "supports SQLite and PostgreSQL, not 'mysql'"),
        ("not a url hunter2", "not a valid SQLAlchemy URL"),
    ],
)
def test_unusable_urls_are_refused_without_echoing_the_password(url, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        make_engine(url)
    assert "hunter2" not in str(raised.value)
