"""Stats windows (1h/4h/12h/24h), the strip partial, and its live push."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from liquidations.ingest.stats_publisher import StatsPublisher
from liquidations.live.broadcast import stats_html
from liquidations.live.contracts import STATS_MESSAGE_TYPE
from liquidations.models import LiquidationHour, LiquidationMinute
from liquidations.selectors import stats as stats_selectors
from liquidations.selectors.stats import liquidation_stats, liquidation_stats_many
from liquidations.services.rollup import liquidation_rollup_advance, liquidation_rollup_catch_up
from liquidations.upstream.events import ms_to_datetime
from tests.factories import DAY_BOUNDARY_S, liq, store

# 2025-12-28 12:00:30.500 UTC: windows start mid-minute, so the rollup's minutes and the
# raw edge rows must add up exactly.
NOW_MS = DAY_BOUNDARY_S * 1000 + 12 * 3600 * 1000 + 30_500
NOW = ms_to_datetime(NOW_MS)
HOUR = 3600 * 1000
SETTLED = ms_to_datetime(NOW_MS + 10 * 365 * 24 * HOUR)  # every stored row counts as settled

DAY = [
    liq(symbol="BTCUSDT", side="SELL", T=NOW_MS - HOUR // 2, z="1", ap="1000"),  # long 1,000
    liq(symbol="ETHUSDT", side="BUY", T=NOW_MS - HOUR, z="2", ap="1000"),  # on the 1h edge
    # 1 ms before the 1h window, in the same minute as the row above.
    liq(symbol="ETHUSDT", side="BUY", T=NOW_MS - HOUR - 1, z="7", ap="1000"),
    liq(symbol="ETHUSDT", side="SELL", T=NOW_MS - 6 * HOUR, z="5", ap="1000"),  # long 5,000
    liq(symbol="BTCUSDT", side="BUY", T=NOW_MS - 20 * HOUR, z="3", ap="100"),  # short 300
    liq(symbol="BTCUSDT", side="SELL", T=NOW_MS - 24 * HOUR, z="1", ap="50"),  # on the 24h edge
    liq(symbol="BTCUSDT", side="SELL", T=NOW_MS - 24 * HOUR - 1, z="9", ap="9999"),  # too old
]


def _store_day(mode: str = "raw") -> None:
    """Store the day; "rolled": all in the rollup; "mixed": half rolled, half newer."""
    if mode == "mixed":
        store(*DAY[::2])
        liquidation_rollup_catch_up(now=NOW, settled_before=SETTLED)
        store(*DAY[1::2])
        return
    store(*DAY)
    if mode == "rolled":
        liquidation_rollup_catch_up(now=NOW, settled_before=SETTLED)


def check_windows(mode: str) -> None:
    _store_day(mode)
    stats = {w.label: w for w in liquidation_stats(now=NOW)}
    assert list(stats) == ["1h", "4h", "12h", "24h"]
    got = {
        label: (w.long_usd, w.short_usd, w.count, w.largest.symbol, w.largest.usd)
        for label, w in stats.items()
    }
    assert got == {
        "1h": (Decimal("1000.00"), Decimal("2000.00"), 2, "ETHUSDT", Decimal(2000)),
        "4h": (Decimal("1000.00"), Decimal("9000.00"), 3, "ETHUSDT", Decimal(7000)),
        "12h": (Decimal("6000.00"), Decimal("9000.00"), 4, "ETHUSDT", Decimal(7000)),
        "24h": (Decimal("6050.00"), Decimal("9300.00"), 6, "ETHUSDT", Decimal(7000)),
    }, mode
    assert stats["4h"].largest.trade_time == ms_to_datetime(NOW_MS - HOUR - 1)
    assert not stats["4h"].largest.is_long_liquidated
    btc = {w.label: w for w in liquidation_stats(symbol="BTCUSDT", now=NOW)}
    assert (btc["1h"].long_usd, btc["1h"].short_usd, btc["1h"].count) == (
        Decimal("1000.00"),
        Decimal("0.00"),
        1,
    )
    assert (btc["24h"].long_usd, btc["24h"].short_usd, btc["24h"].count) == (
        Decimal("1050.00"),
        Decimal("300.00"),
        3,
    )
    assert btc["24h"].largest.usd == Decimal(1000)


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["raw", "rolled", "mixed"])
def test_stats_windows_sum_count_and_find_the_largest(mode):
    check_windows(mode)


@pytest.mark.production
@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["raw", "rolled", "mixed"])
def test_pg_stats_windows_sum_count_and_find_the_largest(mode):
    check_windows(mode)


def check_many_scopes_at_once(mode: str) -> None:
    _store_day(mode)
    # A symbol with a row newer than the rollup's watermark, one without any row.
    store(liq(symbol="SOLUSDT", side="BUY", T=NOW_MS - 1000, z="4", ap="10"))
    scopes = [None, "BTCUSDT", "ETHUSDT", "SOLUSDT", "NONEUSDT"]
    together = liquidation_stats_many(scopes=scopes, now=NOW)
    assert list(together) == scopes
    for scope in scopes:
        assert together[scope] == liquidation_stats(symbol=scope, now=NOW), (mode, scope)
    assert together["SOLUSDT"][0].count == 1 and together["SOLUSDT"][0].short_usd == 40
    assert together["NONEUSDT"][-1].count == 0 and together["NONEUSDT"][-1].largest is None
    # Without the all-market scope, only the named symbols are read.
    assert liquidation_stats_many(scopes=["BTCUSDT"], now=NOW) == {"BTCUSDT": together["BTCUSDT"]}


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["raw", "rolled", "mixed"])
def test_stats_of_many_scopes_at_once_equal_each_alone(mode):
    check_many_scopes_at_once(mode)


@pytest.mark.production
@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["raw", "rolled", "mixed"])
def test_pg_stats_of_many_scopes_at_once_equal_each_alone(mode):
    check_many_scopes_at_once(mode)


@pytest.mark.django_db
def test_rollup_keeps_minute_totals_and_a_watermark():
    _store_day("rolled")
    minutes = {
        (m.scope, m.start, m.side): (m.usd, m.count, m.max_usd)
        for m in LiquidationMinute.objects.all()
    }
    edge_minute = (NOW_MS - HOUR) // 60_000 * 60
    assert minutes[("ETHUSDT", edge_minute, "BUY")] == (Decimal(9000), 2, Decimal(7000))
    assert minutes[("", edge_minute, "BUY")] == (Decimal(9000), 2, Decimal(7000))
    # Every row, once per symbol and once for the market (the one just outside 24 h too:
    # the rollup keeps 15 days; the stats only read whole minutes inside their windows).
    assert sum(count for _, count, _ in minutes.values()) == 2 * 7
    # Nothing new: the watermark stays, nothing is counted twice.
    assert liquidation_rollup_advance(now=NOW, settled_before=SETTLED) == 0
    store(liq(symbol="ETHUSDT", side="BUY", T=NOW_MS - HOUR + 1, z="1", ap="1"))
    assert liquidation_rollup_advance(now=NOW, settled_before=SETTLED) == 1
    assert LiquidationMinute.objects.get(scope="ETHUSDT", start=edge_minute, side="BUY").count == 3
    hour = (NOW_MS - HOUR) // 3_600_000 * 3600
    assert LiquidationHour.objects.get(scope="", start=hour, side="BUY").usd == Decimal(9001)


@pytest.mark.django_db
def test_rollup_waits_for_rows_to_settle():
    store(liq(symbol="BTCUSDT", T=NOW_MS - HOUR))
    # Stored just now (received_at): not yet settled, so not rolled up; stats still see it.
    assert liquidation_rollup_advance(now=NOW) == 0
    assert LiquidationMinute.objects.count() == 0
    assert liquidation_stats(now=NOW)[-1].count == 1


@pytest.mark.django_db
def test_stats_of_an_empty_record_are_zero():
    stats = liquidation_stats(now=NOW)
    assert [(w.long_usd, w.short_usd, w.count, w.largest) for w in stats] == [
        (Decimal("0.00"), Decimal("0.00"), 0, None)
    ] * 4
    assert "—" in stats_html(symbol=None, stats=liquidation_stats(now=NOW))


def check_largest_when_candidates_overflow(monkeypatch) -> None:
    # On a crash day thousands of rows hold some window's maximum; the newest few are read
    # first. A window whose maximum is older than those must still find its own row.
    monkeypatch.setattr(stats_selectors, "LARGEST_CANDIDATES", 2)
    store(
        liq(symbol="BTCUSDT", T=NOW_MS - 20 * HOUR, z="9", ap="1000"),  # 24h max, 9,000
        liq(symbol="BTCUSDT", T=NOW_MS - HOUR // 2, z="1", ap="1000"),
        liq(symbol="ETHUSDT", T=NOW_MS - HOUR // 12, z="1", ap="1000"),
    )
    for scope in (None, "BTCUSDT"):
        stats = {w.label: w for w in liquidation_stats(symbol=scope, now=NOW)}
        assert (stats["24h"].largest.symbol, stats["24h"].largest.usd) == ("BTCUSDT", 9000)
        assert stats["1h"].largest.usd == 1000


@pytest.mark.django_db
def test_largest_is_the_window_maximum_when_candidates_overflow(monkeypatch):
    check_largest_when_candidates_overflow(monkeypatch)


@pytest.mark.production
@pytest.mark.django_db
def test_pg_largest_is_the_window_maximum_when_candidates_overflow(monkeypatch):
    check_largest_when_candidates_overflow(monkeypatch)


@pytest.mark.django_db
def test_largest_tie_goes_to_the_newest():
    store(
        liq(symbol="BTCUSDT", T=NOW_MS - 2 * HOUR, z="1", ap="500"),
        liq(symbol="SOLUSDT", T=NOW_MS - HOUR // 4, z="5", ap="100"),
    )
    stats = {w.label: w for w in liquidation_stats(now=NOW)}
    assert stats["4h"].largest.symbol == "SOLUSDT"


@pytest.mark.django_db
def test_stats_strip_renders_each_window():
    _store_day()
    html = stats_html(symbol=None, stats=liquidation_stats(now=NOW), oob=True)
    assert 'id="liquidation-stats"' in html
    assert 'hx-swap-oob="outerHTML"' in html
    for label in ("1h", "4h", "12h", "24h"):
        assert f'data-window="{label}"' in html
    assert "$6,050" in html and "$9,300" in html
    assert 'href="/ETHUSDT/"' in html
    assert "hx-swap-oob" not in stats_html(symbol=None, stats=liquidation_stats(now=NOW))


@pytest.mark.django_db
def test_pages_show_the_stats_strip(client):
    _store_day()
    for url in ("/", "/BTCUSDT/"):
        body = client.get(url).content.decode()
        assert 'id="liquidation-stats"' in body, url
    assert 'data-scope="BTCUSDT"' in client.get("/BTCUSDT/").content.decode()


@pytest.mark.django_db
def test_a_page_reuses_its_scopes_strip_for_a_second(client, monkeypatch):
    now_ms = int(time.time() * 1000)
    store(liq(symbol="BTCUSDT", side="SELL", T=now_ms - 2000, z="1", ap="1234"))
    assert "$2,234" not in client.get("/BTCUSDT/").content.decode()
    store(liq(symbol="BTCUSDT", side="SELL", T=now_ms - 1000, z="1", ap="1000"))
    # Within the second the strip of the first load is reused (the rows are fresh).
    body = client.get("/BTCUSDT/").content.decode()
    assert "$2,234" not in body and body.count('class="liq-row') == 2
    monkeypatch.setattr(stats_selectors, "PAGE_STATS_SECONDS", 0.0)
    assert "$2,234" in client.get("/BTCUSDT/").content.decode()


@pytest.mark.django_db(transaction=True)
async def test_publisher_sends_bounded_strips_for_touched_scopes():
    layer = get_channel_layer()
    members = {}
    for group in ("stats.all", "stats.AUSDT", "stats.BUSDT"):
        members[group] = await layer.new_channel()
        await layer.group_add(group, members[group])
    publisher = StatsPublisher(channel_layer=layer, max_symbols=1, idle_refresh=3600, interval=0.05)
    # Just published (monotonic clock): the idle refresh is an hour away.
    state = (0, time.monotonic())
    # Nothing new: nothing sent.
    state = await publisher.tick(*state)
    assert publisher.published == 0
    now_ms = int(time.time() * 1000)
    await sync_to_async(store)(
        liq(symbol="AUSDT", T=now_ms - 1000, z="1", ap="10"),
        liq(symbol="BUSDT", T=now_ms - 500, z="2", ap="10"),
    )
    state = await publisher.tick(*state)
    # The all-market strip and one symbol (the bound), oldest-touched first.
    message = await layer.receive(members["stats.all"])
    assert message["type"] == STATS_MESSAGE_TYPE
    assert 'id="liquidation-stats"' in message["html"] and "$30" in message["html"]
    first = await layer.receive(members["stats.AUSDT"])
    assert 'data-scope="AUSDT"' in first["html"]
    assert publisher.published == 2
    # Next tick, no new rows: the waiting symbol gets its turn, the all strip does not.
    state = await publisher.tick(*state)
    second = await layer.receive(members["stats.BUSDT"])
    assert 'data-scope="BUSDT"' in second["html"]
    assert publisher.published == 3
    state = await publisher.tick(*state)
    assert publisher.published == 3
    for group, member in members.items():
        await layer.group_discard(group, member)


@pytest.mark.django_db(transaction=True)
async def test_feed_socket_forwards_the_stats_strip():
    from orderfox.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/liquidations/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    connected, _ = await communicator.connect()
    assert connected
    html = '<section id="liquidation-stats" hx-swap-oob="outerHTML">x</section>'
    await get_channel_layer().group_send("stats.all", {"type": STATS_MESSAGE_TYPE, "html": html})
    for _ in range(5):  # skip the status frames the feed also sends
        frame = await communicator.receive_from(timeout=2)
        if "liquidation-stats" in frame:
            break
    assert frame == html
    await communicator.disconnect()
