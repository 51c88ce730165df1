"""Fast synthetic data for benchmarks: millions of realistic liquidations.

PostgreSQL gets COPY (psycopg 3 `cursor.copy`, text format written in large blocks),
SQLite an `executemany` of INSERT .. ON CONFLICT DO NOTHING. Rows are spread evenly
over [now - days, now], at distinct milliseconds with a random sub-step jitter, with
symbol popularity, sides and amounts shaped like the real stream (heavy-tailed USD
sizes, quantities on the symbol's step, prices on its tick), and notional = z × ap
exactly, as the parser computes it.
"""

from __future__ import annotations

import io
import logging
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connections, transaction
from django.db.models import Field

from ..models import Liquidation
from ..services.liquidations import INSERT_FIELDS
from ..services.planner_stats import planner_stats_refresh
from ..services.rollup import liquidation_rollup_catch_up

logger = logging.getLogger(__name__)

# (symbol, typical price, price decimals, quantity decimals): price × quantity decimals
# stay within notional_usd's 8 places, so z × ap is exact.
DEFAULT_SYMBOLS: tuple[tuple[str, float, int, int], ...] = (
    ("BTCUSDT", 90_000.0, 1, 3),
    ("ETHUSDT", 3_100.0, 2, 3),
    ("SOLUSDT", 140.0, 3, 2),
    ("XRPUSDT", 2.2, 4, 1),
    ("DOGEUSDT", 0.16, 5, 0),
    ("BNBUSDT", 880.0, 2, 2),
    ("ADAUSDT", 0.45, 4, 0),
    ("SUIUSDT", 1.6, 4, 1),
    ("LINKUSDT", 13.5, 3, 2),
    ("AVAXUSDT", 14.0, 3, 2),
    ("LTCUSDT", 82.0, 2, 3),
    ("1000PEPEUSDT", 0.0045, 7, 0),
    ("WIFUSDT", 0.38, 4, 1),
    ("ENAUSDT", 0.27, 4, 0),
    ("TRUMPUSDT", 5.6, 3, 1),
    ("HYPEUSDT", 33.0, 3, 2),
)
# The stored columns, in the order the ingest inserts them.
COLUMNS = INSERT_FIELDS
BLOCK_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class LoadResult:
    count: int
    seconds: float
    vendor: str

    @property
    def rows_per_second(self) -> float:
        return self.count / self.seconds if self.seconds else float("inf")


def _fixed(units: int, places: int) -> str:
    """Return the integer `units` × 10^-places as plain decimal text."""
    if places == 0:
        return str(units)
    text = str(units).rjust(places + 1, "0")
    return f"{text[:-places]}.{text[-places:]}"


def _timestamp(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{millis:03d}+00"


def synthetic_rows(
    *,
    count: int,
    start_ms: int,
    end_ms: int,
    symbols: tuple[tuple[str, float, int, int], ...] = DEFAULT_SYMBOLS,
    rng: random.Random,
):
    """Yield `count` rows (tuples of text in COLUMNS order), oldest first."""
    span = max(end_ms - start_ms, 1)
    step = span / count
    if step < 1:
        raise ValueError(f"{count} rows do not fit in {span} ms at one row per millisecond")
    # Zipf-like popularity: BTC and ETH dominate the stream, as they do on Binance.
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(symbols))]
    picks = rng.choices(range(len(symbols)), weights=weights, k=min(count, 1_000_000))
    random_ = rng.random
    lognormal = rng.lognormvariate
    received = _timestamp(end_ms)
    for index in range(count):
        symbol, typical, price_places, qty_places = symbols[picks[index % len(picks)]]
        trade_ms = start_ms + int(index * step + random_() * (step - 1 if step > 1 else 0))
        # Median about $1,500, a long tail to tens of millions (a crash day's whales).
        usd = min(lognormal(7.3, 1.7), 50_000_000.0)
        price_units = max(1, round(typical * (0.8 + 0.4 * random_()) * 10**price_places))
        avg_units = max(1, round(price_units * (1 + (random_() - 0.5) * 0.002)))
        qty_units = max(1, round(usd / (avg_units / 10**price_places) * 10**qty_places))
        last_units = qty_units if random_() < 0.5 else max(1, qty_units // 2)
        side = "SELL" if random_() < 0.55 else "BUY"
        notional_units = qty_units * avg_units * 10 ** (8 - price_places - qty_places)
        venue, instrument = _venue_of(symbol, random_())
        yield (
            venue,
            instrument,
            symbol,
            side,
            "LIMIT",
            "IOC",
            _fixed(qty_units, qty_places),
            _fixed(price_units, price_places),
            _fixed(avg_units, price_places),
            "FILLED",
            _fixed(last_units, qty_places),
            _fixed(qty_units, qty_places),
            _timestamp(trade_ms),
            _timestamp(trade_ms + 5),
            _fixed(notional_units, 8),
            received,
        )


def _venue_of(symbol: str, roll: float) -> tuple[str, str]:
    """Return a venue and its instrument id: Binance 60 %, Bybit 30 %, OKX 10 % of rows."""
    if roll < 0.6:
        return "binance", symbol
    if roll < 0.9 or not symbol.endswith("USDT"):
        return "bybit", symbol
    return "okx", f"{symbol[:-4]}-USDT-SWAP"


def symbol_profiles(
    symbols: Sequence[str] | Sequence[tuple[str, float, int, int]] | None,
) -> tuple[tuple[str, float, int, int], ...]:
    """Return (symbol, price, price places, quantity places) for names or full profiles."""
    if not symbols:
        return DEFAULT_SYMBOLS
    known = {profile[0]: profile for profile in DEFAULT_SYMBOLS}
    profiles: list[tuple[str, float, int, int]] = []
    for item in symbols:
        if isinstance(item, str):
            # An unknown name gets a mid-cap profile: $1 price, 4 and 1 decimals.
            profiles.append(known.get(item.upper(), (item.upper(), 1.0, 4, 1)))
        else:
            name, price, price_places, quantity_places = item
            profiles.append((name, price, price_places, quantity_places))
    return tuple(profiles)


def bulk_load_synthetic(
    *,
    count: int,
    days: float,
    symbols: Sequence[str] | Sequence[tuple[str, float, int, int]] | None = None,
    using: str = "default",
    seed: int | None = None,
    end: datetime | None = None,
    progress: bool = False,
) -> LoadResult:
    """Insert `count` synthetic liquidations spread over the last `days`; return timing.

    `symbols`: names (profiles of well-known ones are built in) or full profiles;
    default: 16 busy USD-M contracts. `progress`: a progress bar (rate, ETA) on stderr
    while rows are written, only when stderr is a terminal.

    On PostgreSQL, refreshes the planner statistics and visibility map afterwards
    (VACUUM ANALYZE), so index-only scans work at once, as they would in production;
    then rolls the rows up into the per-minute stats table, as the worker would.
    """
    if count <= 0:
        return LoadResult(0, 0.0, connections[using].vendor)
    end_at = end or datetime.now(tz=UTC)
    end_ms = int(end_at.timestamp() * 1000)
    start_ms = end_ms - int(timedelta(days=days).total_seconds() * 1000)
    rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8)))
    rows = synthetic_rows(
        count=count,
        start_ms=start_ms,
        end_ms=end_ms,
        symbols=symbol_profiles(symbols),
        rng=rng,
    )
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        rows = tqdm(rows, total=count, unit=" rows", unit_scale=True, mininterval=1, smoothing=0.05)
    elif progress:  # a log file (a benchmark's, a container's): a line now and then
        rows = _logged_progress(rows, total=count)
    connection = connections[using]
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        _copy_postgresql(connection, rows)
        elapsed = time.perf_counter() - started
        # VACUUM cannot run in a transaction (as in a test); autovacuum gets there later.
        if not connection.in_atomic_block:
            logger.info("Refreshing the planner statistics and visibility map (VACUUM ANALYZE)")
            with connection.cursor() as cursor:
                cursor.execute(
                    f"VACUUM ANALYZE {connection.ops.quote_name(Liquidation._meta.db_table)}"
                )
    else:
        _insert_many(connection, rows)
        elapsed = time.perf_counter() - started
        planner_stats_refresh(using=using)
    if using == "default":
        # What the running worker would do within a second: roll the new rows up.
        logger.info("Rolling the rows up into the per-minute stats")
        liquidation_rollup_catch_up(settled_before=datetime.now(tz=UTC) + timedelta(seconds=1))
    result = LoadResult(count=count, seconds=elapsed, vendor=connection.vendor)
    logger.info(
        "Loaded %d synthetic liquidations over %.1f days in %.1f s (%.0f rows/s, %s)",
        count,
        days,
        result.seconds,
        result.rows_per_second,
        result.vendor,
    )
    return result


PROGRESS_LOG_SECONDS = 30.0


def _logged_progress(rows: Iterator[tuple[str, ...]], *, total: int) -> Iterator[tuple[str, ...]]:
    """Yield the rows, logging how many were written, the rate and the time left."""
    started = last = time.perf_counter()
    for done, row in enumerate(rows, 1):
        yield row
        now = time.perf_counter()
        if now - last >= PROGRESS_LOG_SECONDS and done < total:
            last = now
            rate = done / (now - started)
            logger.info(
                "Written %d of %d rows (%.0f%%), %.0f rows/s, about %.0f s left",
                done,
                total,
                100 * done / total,
                rate,
                (total - done) / rate,
            )


def _column(name: str) -> str:
    field = Liquidation._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None
    return field.column


def _copy_postgresql(connection, rows) -> None:
    quote = connection.ops.quote_name
    table = quote(Liquidation._meta.db_table)
    columns = ", ".join(quote(_column(name)) for name in COLUMNS)
    sql = f"COPY {table} ({columns}) FROM STDIN"
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # Losing this load on a crash is harmless; waiting for each WAL flush is not.
        cursor.execute("SET LOCAL synchronous_commit = off")
        rebuild = _set_indexes_aside(cursor, table)
        _copy_rows(cursor, sql, rows)
        if rebuild:
            # Sorting each index in one go: sort memory, and the load's lock held meanwhile.
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            logger.info("Rows written; building %d indexes and constraints", len(rebuild))
            for n, statement in enumerate(rebuild, 1):
                started = time.perf_counter()
                cursor.execute(statement)
                logger.info(
                    "Index %d of %d built in %.1f s: %s",
                    n,
                    len(rebuild),
                    time.perf_counter() - started,
                    statement.split(" USING ", 1)[0],
                )


def _set_indexes_aside(cursor, table: str) -> list[str]:
    """Into an empty table, drop the secondary indexes; return what rebuilds them.

    Six indexes kept up to date row by row made a 20-million-row load write ~15 kB per
    row (random pages of every index); built after the COPY, each is one sort. The
    statements come from PostgreSQL's own definitions (pg_get_indexdef / _constraintdef),
    so INCLUDE columns and constraints come back as they were, in the same transaction:
    a failed rebuild rolls the whole load back, never leaves the table without them.
    A table holding rows keeps its indexes (a running worker relies on them).
    """
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
    if cursor.fetchone()[0]:
        return []
    cursor.execute(
        "SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
        "WHERE con.conrelid = %s::regclass AND con.contype = 'u'",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT pg_get_indexdef(ix.indexrelid) FROM pg_index ix "
        "WHERE ix.indrelid = %s::regclass AND NOT ix.indisprimary AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint con WHERE con.conindid = ix.indexrelid)",
        [table],
    )
    indexes = [row[0] for row in cursor.fetchall()]
    rebuild = []
    for name, definition in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for definition in indexes:
        name = definition.split(" ON ", 1)[0].split()[-1]
        cursor.execute(f"DROP INDEX {name}")
        rebuild.append(definition)
    return rebuild


def _copy_rows(cursor, sql: str, rows) -> None:
    raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
    with raw.copy(sql) as copy:
        buffer = io.StringIO()
        pending = 0
        for row in rows:
            # Every value is digits, letters, '.', ':', '-', '+' or ' ': nothing needs
            # escaping in COPY's text format.
            buffer.write("\t".join(row))
            buffer.write("\n")
            pending += 1
            if pending == BLOCK_ROWS:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
                pending = 0
        if pending:
            copy.write(buffer.getvalue())


def _insert_many(connection, rows) -> None:
    quote = connection.ops.quote_name
    table = quote(Liquidation._meta.db_table)
    columns = ", ".join(quote(_column(name)) for name in COLUMNS)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    block: list[tuple] = []
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for row in rows:
            block.append(row[:12] + (_sqlite(row[12]), _sqlite(row[13]), row[14], _sqlite(row[15])))
            if len(block) == BLOCK_ROWS:
                cursor.executemany(sql, block)
                block = []
        if block:
            cursor.executemany(sql, block)


def _sqlite(timestamp: str) -> str:
    # Django keeps SQLite datetimes as naive UTC text like str(datetime): microseconds
    # in six digits, none at all on a whole second. Text comparisons need the same form.
    text = timestamp[:-3]
    return text[:-4] if text.endswith(".000") else text + "000"
