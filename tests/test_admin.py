"""The admin: read-only record, usable filters, CSV export, constant queries per page."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from liquidations import admin as liquidation_admin
from liquidations.models import ConnectionGap, Liquidation, WorkerState
from liquidations.selectors.symbols import symbol_info_cache_clear
from liquidations.upstream.binance import parse_frame
from tests.factories import force_order, frame, symbol_listed
from tests.factories import store_events as liquidation_store_batch

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/liquidations/liquidation/"


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="liquidations", codename__startswith="view_"
        )
    )
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


@pytest.fixture
def liquidations():
    symbol_listed("BTCUSDT", "BTC", tick_size="0.10")
    now_ms = int(timezone.now().timestamp() * 1000)
    payloads = [
        force_order(symbol="BTCUSDT", side="SELL", z="12.5", ap="100000", T=now_ms - 3000),
        force_order(symbol="ETHUSDT", side="BUY", z="2", ap="2950.5", T=now_ms - 2000),
        force_order(symbol="1000PEPEUSDT", side="SELL", z="1500000", ap="0.0042", T=now_ms - 1000),
    ]
    return liquidation_store_batch(events=[parse_frame(frame(p)) for p in payloads])


def _rows(response) -> str:
    return response.content.decode()


def test_changelist_shows_time_symbol_side_quantity_price_and_usd(staff_client, liquidations):
    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    html = _rows(response)
    assert "Long liquidated" in html and "Short liquidated" in html
    assert "12.500 BTC" in html  # the symbol's quantityPrecision
    assert "1,500,000 1000PEPE" in html  # unlisted symbol: base asset guessed, no padding
    assert "$1,250,000" in html and "$5,901" in html
    assert "100000" in html  # average price
    # Read-only: no add button, no delete action.
    assert "/admin/liquidations/liquidation/add/" not in html
    assert "delete_selected" not in html
    assert "export_csv" in html


def test_a_finer_quantity_than_the_listing_is_shown_unrounded(staff_client, liquidations):
    """OKX's quantity (contracts × contract value) can be finer than Binance's listing."""
    from tests.factories import venue_event

    liquidation_store_batch(
        events=[venue_event(venue="okx", symbol="BTCUSDT", instrument="BTC-USDT-SWAP", z="0.0001")]
    )
    html = _rows(staff_client.get(f"{CHANGELIST}?venue__exact=okx"))
    assert "0.0001 BTC" in html  # not "0.000 BTC" at the listing's 3 places


def test_a_page_reads_only_the_columns_it_shows(staff_client, liquidations):
    """The 50 rows of a page: their shown columns, not every column of the record."""
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(CHANGELIST)
    rows = [q["sql"] for q in captured if "ORDER BY" in q["sql"] and "trade_time" in q["sql"]]
    assert rows and all("received_at" not in sql for sql in rows), rows
    # The export still writes whole rows.
    ids = [str(liq.pk) for liq in liquidations]
    response = staff_client.post(CHANGELIST, {"action": "export_csv", "_selected_action": ids})
    header = next(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert "received_at" in header and "order_status" in header, header


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("side=SELL", {"BTCUSDT", "1000PEPEUSDT"}),
        ("side=BUY", {"ETHUSDT"}),
        ("symbol=btcusdt", {"BTCUSDT"}),
        ("symbol=NOPE%21", set()),
        ("q=BTC", {"BTCUSDT"}),
        ("q=1000", {"1000PEPEUSDT"}),
        ("q=eth", {"ETHUSDT"}),
    ],
)
def test_filters_and_search(staff_client, liquidations, query, expected):
    response = staff_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    shown = {liq.symbol for liq in response.context["cl"].result_list}
    assert shown == expected


def test_date_filter_and_date_hierarchy(staff_client, liquidations):
    today = timezone.now()
    response = staff_client.get(
        f"{CHANGELIST}?trade_time__year={today.year}&trade_time__month={today.month}"
        f"&trade_time__day={today.day}"
    )
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 3
    yesterday = today - timedelta(days=1)
    response = staff_client.get(
        f"{CHANGELIST}?trade_time__year={yesterday.year}&trade_time__month={yesterday.month}"
        f"&trade_time__day={yesterday.day}"
    )
    assert len(response.context["cl"].result_list) == 0
    # The sidebar's "Past 7 days" link, as the date filter builds it.
    html = _rows(staff_client.get(CHANGELIST))
    assert "Past 7 days" in html
    week_ago = (today - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    response = staff_client.get(CHANGELIST, {"trade_time__gte": str(week_ago)})
    assert len(response.context["cl"].result_list) == 3
    # The fast date hierarchy offers today's day link.
    assert f"trade_time__day={today.day}" in html


def test_symbol_filter_is_a_text_box_with_known_symbols(staff_client, liquidations):
    html = _rows(staff_client.get(f"{CHANGELIST}?side=SELL"))
    assert 'name="symbol"' in html
    assert '<option value="BTCUSDT">' in html
    assert '<input type="hidden" name="side" value="SELL">' in html


def test_change_add_and_delete_are_refused_even_for_a_superuser(superuser_client, liquidations):
    liq = liquidations[0]
    detail = f"{CHANGELIST}{liq.pk}/change/"
    response = superuser_client.get(detail)
    assert response.status_code == 200
    assert 'name="_save"' not in _rows(response)  # a view, not a form
    assert superuser_client.post(detail, {"symbol": "X"}).status_code == 403
    assert superuser_client.get(f"{CHANGELIST}{liq.pk}/delete/").status_code == 403
    assert (
        superuser_client.post(f"{CHANGELIST}{liq.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert superuser_client.get(f"{CHANGELIST}add/").status_code == 403
    response = superuser_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [liq.pk], "post": "yes"}
    )
    assert Liquidation.objects.count() == 3
    liq.refresh_from_db()
    assert liq.symbol == "BTCUSDT"


def test_csv_export_streams_the_selection(staff_client, liquidations):
    selected = [liquidations[0].pk, liquidations[1].pk]
    response = staff_client.post(CHANGELIST, {"action": "export_csv", "_selected_action": selected})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["symbol"] for row in rows] == ["ETHUSDT", "BTCUSDT"]  # newest first
    btc = rows[1]
    assert btc["position_liquidated"] == "long" and btc["side"] == "SELL"
    assert rows[0]["position_liquidated"] == "short"
    assert btc["filled_quantity"].rstrip("0").rstrip(".") == "12.5"
    assert btc["trade_time"].endswith("+00:00")


def test_csv_export_of_everything_matching_a_filter(staff_client, liquidations):
    response = staff_client.post(
        f"{CHANGELIST}?side=SELL",
        {"action": "export_csv", "select_across": "1", "_selected_action": [liquidations[0].pk]},
    )
    text = b"".join(response.streaming_content).decode()
    symbols = [row["symbol"] for row in csv.DictReader(io.StringIO(text))]
    assert symbols == ["1000PEPEUSDT", "BTCUSDT"]


def test_changelist_queries_do_not_grow_with_rows(staff_client, liquidations):
    def queries() -> int:
        symbol_info_cache_clear()
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(CHANGELIST).status_code == 200
        return len(captured)

    few = queries()
    now_ms = int(timezone.now().timestamp() * 1000)
    liquidation_store_batch(
        events=[
            parse_frame(frame(force_order(symbol=s, T=now_ms - 10_000 - i)))
            for i, s in enumerate(["BTCUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"] * 20)
        ]
    )
    assert queries() == few


def test_large_tables_are_not_counted_in_full(staff_client, liquidations, monkeypatch):
    monkeypatch.setattr(liquidation_admin, "EXACT_COUNT_LIMIT", 2)
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    assert response.context["cl"].result_count >= 3


@pytest.mark.parametrize(
    "url",
    [
        "/admin/liquidations/symbol/",
        "/admin/liquidations/connectiongap/",
        "/admin/liquidations/workerstate/",
    ],
)
def test_other_lists_render_read_only(staff_client, url):
    symbol_listed("ETHUSDT", "ETH", tick_size="0.01")
    now = timezone.now()
    ConnectionGap.objects.create(
        started_at=now - timedelta(seconds=75), ended_at=now, reason="connection closed"
    )
    WorkerState.objects.create(state="streaming", heartbeat_at=now)
    response = staff_client.get(url)
    assert response.status_code == 200
    html = _rows(response)
    assert f"{url}add/" not in html
    if "connectiongap" in url:
        assert "1 min 15 s" in html and "connection closed" in html
    if "symbol" in url:
        assert "ETHUSDT" in html
    if "workerstate" in url:
        assert "streaming" in html


@pytest.mark.django_db
def test_row_checkbox_is_what_djangos_widget_renders():
    from django.contrib import admin as django_admin

    from liquidations.admin import LiquidationAdmin
    from tests.factories import liq, store

    (row,) = store(liq(T=1_766_880_000_000))
    model_admin = LiquidationAdmin(Liquidation, django_admin.site)
    assert model_admin.action_checkbox(row) == django_admin.ModelAdmin.action_checkbox(
        model_admin, row
    )
    # Its label is the row's str(), labels from the model's choices.
    assert str(row) == (
        f"{row.get_venue_display()} {row.symbol} {row.get_side_display()} "
        f"{row.filled_quantity} @ {row.average_price}"
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?venue__exact=bybit",
        "?q=BTC&side__exact=SELL",
        "?o=-1",
        "?trade_time__gte=2020-01-01+00%3A00%3A00%2B00%3A00",
    ],
)
def test_fast_rows_are_djangos_rows_byte_for_byte(liquidations, query, rf):
    """{% fast_result_list %} renders what Django's {% result_list %} renders."""
    from django.contrib import admin as django_admin
    from django.template import Context, Template

    from liquidations.templatetags import admin_result_list
    from tests.factories import store_events, venue_event

    # Bybit publishes no order type, time in force or status: empty cells, other labels.
    store_events([venue_event(venue="bybit", symbol="BTCUSDT", side="BUY", T=1_766_880_000_000)])
    request = rf.get(CHANGELIST + query)
    request.user = User.objects.create_superuser("root", password="x")
    model_admin = django_admin.site._registry[Liquidation]
    cl = model_admin.get_changelist_instance(request)
    cl.formset = None  # as changelist_view sets it for a list that is not editable
    assert len(cl.result_list) >= 1
    context = Context({"cl": cl, "opts": cl.opts})
    djangos = Template("{% load admin_list %}{% result_list cl %}").render(context)
    ours = Template("{% load admin_result_list %}{% fast_result_list cl %}").render(context)
    assert '<tr><td class="action-checkbox">' in ours
    assert ours == djangos
    # ... by its own path, not by handing this changelist to Django's tag.
    assert admin_result_list._columns(cl) is not None and admin_result_list._change_url(cl)


def test_pages_go_as_deep_as_the_listed_rows_and_say_how_to_reach_the_rest(
    staff_client, monkeypatch
):
    """The last of 50 million rows' pages would be a 10 s OFFSET: pages stop at
    MAX_LISTED_ROWS, a deeper page number shows the last listed page, and the page says
    the filters reach the rest."""
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[Liquidation]
    monkeypatch.setattr(model_admin, "list_per_page", 2)
    monkeypatch.setattr(liquidation_admin, "EXACT_COUNT_LIMIT", 4)  # estimated beyond
    monkeypatch.setattr(liquidation_admin, "MAX_LISTED_ROWS", 6)
    now_ms = int(timezone.now().timestamp() * 1000)
    rows = liquidation_store_batch(
        events=[parse_frame(frame(force_order(T=now_ms - 1000 * n))) for n in range(12)]
    )
    newest_first = [row.pk for row in sorted(rows, key=lambda r: r.trade_time, reverse=True)]
    for query, shown in [("?p=2", newest_first[2:4]), ("?p=3", newest_first[4:6])]:
        response = staff_client.get(CHANGELIST + query)
        assert [row.pk for row in response.context["cl"].result_list] == shown
    deep = staff_client.get(CHANGELIST + "?p=999975")
    assert deep.status_code == 200
    cl = deep.context["cl"]
    assert [row.pk for row in cl.result_list] == newest_first[4:6]  # the last listed page
    assert cl.page_num == cl.paginator.num_pages == 3 and cl.result_count == 12
    html = _rows(deep)
    assert '<span class="this-page">3</span>' in html and "?p=4" not in html
    assert "The pages list the first 6 of these in this order" in html
    # Fewer rows than the listed ones: every page, no note.
    monkeypatch.setattr(liquidation_admin, "MAX_LISTED_ROWS", 100)
    html = _rows(staff_client.get(CHANGELIST))
    assert "?p=6" in html and "The pages list" not in html
