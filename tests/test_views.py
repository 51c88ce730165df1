from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from liquidations.models import Liquidation, Symbol, WorkerState
from liquidations.upstream.binance import parse_frame
from tests.factories import force_order, frame, symbol_listed
from tests.factories import store_events as liquidation_store_batch

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"
ROW_ID = re.compile(r'<tr id="liq-(\d+)"')


def store(*payloads: dict) -> list[Liquidation]:
    return liquidation_store_batch(events=[parse_frame(frame(p)) for p in payloads])


def listed(symbol: str, base: str, quantity_precision: int = 3) -> Symbol:
    return symbol_listed(symbol, base, quantity_precision=quantity_precision)


def row_ids(html: str) -> list[int]:
    return [int(match) for match in ROW_ID.findall(html)]


def test_empty_dashboard_says_it_is_waiting_and_links_the_socket(client):
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<tbody id="liquidation-rows">' in html
    assert "Waiting for liquidations…" in html
    assert "at most one liquidation per symbol per second" in html
    assert 'class="connection-status"' in html and ">Disconnected<" in html
    assert 'ws-connect="/ws/liquidations/"' in html
    assert 'href="/history/"' in html
    assert "/static/vendor/htmx-2.0.11.min.js" in html


def test_first_response_has_the_newest_fifty_rows_newest_first(client):
    stored = store(*(force_order(symbol="BTCUSDT", T=1_766_845_000_000 + i) for i in range(60)))
    html = client.get("/").content.decode()
    newest_first = [liq.pk for liq in sorted(stored, key=lambda liq: liq.trade_time, reverse=True)]
    assert row_ids(html) == newest_first[:50]
    assert "Waiting for liquidations…" not in html
    assert f'data-cursor="{max(newest_first)}"' in html


def test_row_columns_sides_amounts_and_tiers(client):
    listed("BTCUSDT", "BTC", quantity_precision=3)
    store(
        force_order(symbol="BTCUSDT", side="SELL", z="12.5", ap="100000", T=1_766_845_000_001),
        force_order(symbol="BTCUSDT", side="BUY", z="1.5", ap="100000", T=1_766_845_000_002),
        force_order(symbol="ETHUSDT", side="BUY", z="0.25", ap="3000.5", T=1_766_845_000_003),
    )
    html = client.get("/").content.decode()
    small, large, huge = html.split('<tr id="liq-')[1:4]
    assert "liq-short" in small and "Short liquidated" in small and "$750" in small
    assert "0.25 ETH" in small
    assert "liq-large" in large and "$150,000" in large
    assert "liq-huge" in huge and "Long liquidated" in huge and "$1,250,000" in huge
    assert "12.500 BTC" in huge
    # Full UTC timestamp on hover, link to the symbol page.
    assert 'title="2025-12-27 14:16:40.001 UTC"' in huge
    assert 'href="/BTCUSDT/"' in huge


def test_symbol_page_lowercase_redirects_keeping_the_filter(client):
    store(force_order(symbol="BTCUSDT"))
    response = client.get("/btcusdt/?min_usd=1000&side=long")
    assert response.status_code == 302
    assert response["Location"] == "/BTCUSDT/?min_usd=1000&side=long"


def test_symbol_page_shows_only_that_symbol_and_its_socket(client):
    btc = store(force_order(symbol="BTCUSDT"), force_order(symbol="ETHUSDT"))[0]
    response = client.get("/BTCUSDT/")
    html = response.content.decode()
    assert response.status_code == 200
    assert row_ids(html) == [btc.pk]
    assert 'ws-connect="/ws/liquidations/BTCUSDT/"' in html
    assert "<h1>BTCUSDT" in html


def test_listed_symbol_without_liquidations_has_a_page(client):
    listed("SOLUSDT", "SOL")
    response = client.get("/SOLUSDT/")
    assert response.status_code == 200
    assert "Waiting for liquidations…" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/NOPEUSDT/", "is not a known symbol"),
        ("/BTC-USDT/", "is not a known symbol"),
        ("/BTC%20USDT/", "is not a valid symbol"),
        ("/BTCUSDT%0A/", "is not a valid symbol"),
    ],
)
def test_unknown_or_invalid_symbol_is_a_404_that_links_back(client, path, reason):
    store(force_order(symbol="BTCUSDT"))
    response = client.get(path)
    html = response.content.decode()
    assert response.status_code == 404
    assert reason in html
    assert 'href="/">← Back to all liquidations' in html


def test_filters_in_the_query_string_narrow_the_table(client):
    small_long = force_order(symbol="BTCUSDT", side="SELL", z="0.01", ap="50000")
    big_long = force_order(symbol="BTCUSDT", side="SELL", z="1", ap="50000")
    big_short = force_order(symbol="ETHUSDT", side="BUY", z="20", ap="3000")
    stored = {liq.notional_usd: liq.pk for liq in store(small_long, big_long, big_short)}
    html = client.get("/?min_usd=10000&side=long").content.decode()
    assert row_ids(html) == [stored[Decimal("50000")]]
    assert 'data-min-usd="10000" data-side="long"' in html
    # The active chips, and links that keep the other filter (shareable URLs).
    assert '<a class="chip active" href="/?min_usd=10000&amp;side=long" aria-current' in html
    assert 'href="/?min_usd=1000000&amp;side=long"' in html
    assert 'href="/?min_usd=10000&amp;side=short"' in html
    assert 'ws-connect="/ws/liquidations/?min_usd=10000&amp;side=long"' in html
    shorts = client.get("/?side=short").content.decode()
    assert row_ids(shorts) == [stored[Decimal("60000")]]


def test_custom_minimum_amount_fills_the_custom_field(client):
    store(force_order(z="1", ap="2400"), force_order(z="1", ap="2600"))
    html = client.get("/?min_usd=2500").content.decode()
    assert len(row_ids(html)) == 1
    assert 'value="2500" class="active"' in html


def test_bad_filter_values_are_ignored_and_explained(client):
    store(force_order())
    response = client.get("/?min_usd=1e9&side=sideways")
    html = response.content.decode()
    assert response.status_code == 200
    assert len(row_ids(html)) == 1
    assert "Ignored the minimum amount" in html
    assert "Ignored the side" in html


def test_htmx_filter_request_gets_only_the_feed_partial(client):
    store(force_order(side="BUY"), force_order(side="SELL"))
    response = client.get("/?side=short", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="feed"')
    assert "<html" not in html
    assert len(row_ids(html)) == 1
    assert "HX-Request" in response["Vary"]
    # A history restore needs the whole page.
    restore = client.get(
        "/?side=short", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.content.decode()


def test_hostile_strings_from_the_database_are_escaped(client):
    now = timezone.now()
    Liquidation.objects.create(
        venue="binance",
        instrument=HOSTILE,
        symbol=HOSTILE,
        side="SELL",
        order_type=HOSTILE[:20],
        time_in_force="IOC",
        original_quantity=1,
        price=1,
        average_price=1,
        order_status="FILLED",
        last_filled_quantity=1,
        filled_quantity=1,
        trade_time=now,
        event_time=now,
        notional_usd=1,
        received_at=now,
    )
    html = client.get("/").content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="/%3Cscript%3Ealert%281%29%3C%2Fscript%3E/"' in html
    search = client.get("/symbols/search/", {"q": "<SCRIPT"}, headers={"HX-Request": "true"})
    assert "<script" not in search.content.decode().lower().replace("&lt;script", "")
    not_found = client.get("/%3CSCRIPT%3E/")
    assert not_found.status_code == 404
    assert "<SCRIPT>" not in not_found.content.decode()
    assert "&lt;SCRIPT&gt;" in not_found.content.decode()


def test_symbol_search_lists_matches_prefix_first(client):
    for symbol, base in (
        ("ETHUSDT", "ETH"),
        ("ETHBTC", "ETH"),
        ("BETHUSDT", "BETH"),
        ("BTCUSDT", "BTC"),
    ):
        listed(symbol, base)
    response = client.get("/symbols/search/", {"q": "eth"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert re.findall(r">([A-Z]+)</a>", html) == ["ETHBTC", "ETHUSDT", "BETHUSDT"]
    none = client.get("/symbols/search/", {"q": "zzz"}, headers={"HX-Request": "true"})
    assert "No symbol matches" in none.content.decode()


def test_symbol_search_without_js_goes_to_an_exact_match(client):
    listed("ETHUSDT", "ETH")
    response = client.get("/symbols/search/", {"q": "ethusdt"})
    assert response.status_code == 302
    assert response["Location"] == "/ETHUSDT/"
    page = client.get("/symbols/search/", {"q": "eth"})
    assert page.status_code == 200 and 'href="/ETHUSDT/"' in page.content.decode()


def test_search_falls_back_to_seen_symbols_before_the_listing_is_fetched(client):
    store(force_order(symbol="PEPEUSDT"))
    html = client.get("/symbols/search/", {"q": "pep"}, headers={"HX-Request": "true"})
    assert 'href="/PEPEUSDT/"' in html.content.decode()


def test_header_shows_the_worker_state_and_a_silent_worker_as_stopped(client):
    now = timezone.now()
    WorkerState.objects.create(
        id=1, state="streaming", heartbeat_at=now, last_event_at=now - timedelta(seconds=4)
    )
    html = client.get("/").content.decode()
    assert 'data-state="streaming"' in html
    assert 'class="age">4 s</span> ago' in html
    WorkerState.objects.filter(id=1).update(heartbeat_at=now - timedelta(minutes=5))
    html = client.get("/").content.decode()
    assert 'data-state="stopped"' in html
